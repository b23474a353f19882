//! The TLS side of a snapshot, validated: which certificate each custom
//! domain is served with, and the HTTP challenges gateways answer while a
//! domain's ownership is proven or its certificate issued.
//!
//! Both are small next to the tenants (one entry per custom domain at
//! most), so plain hash maps do.

use std::collections::HashMap;

use crate::hostname::Hostname;
use crate::snapshot::{CertificateDoc, ChallengeDoc, ChallengeKind, Problems};

/// Longest challenge token accepted (ACME tokens are 43 characters).
pub const MAX_TOKEN_LEN: usize = 128;
/// Longest challenge response accepted (a key authorization is 87).
pub const MAX_RESPONSE_LEN: usize = 512;

/// A custom domain's certificate in force, by reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRef {
    /// The domain it is served for.
    pub hostname: Hostname,
    /// The issuance, to fetch its chain and key.
    pub id: u64,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

/// The certificate references and challenges of one table.
#[derive(Debug, Default)]
pub(crate) struct TlsRefs {
    pub(crate) certificates: Box<[CertRef]>,
    /// ACME HTTP-01 responses by token.
    acme: HashMap<Box<str>, Box<str>>,
    /// Ownership hostname and response by token.
    ownership: HashMap<Box<str>, (Box<str>, Box<str>)>,
}

impl TlsRefs {
    pub(crate) fn acme_response(&self, token: &str) -> Option<&str> {
        self.acme.get(token).map(|r| &**r)
    }

    pub(crate) fn ownership_response(&self, host: &str, token: &str) -> Option<&str> {
        match self.ownership.get(token) {
            Some((h, r)) if **h == *host => Some(r),
            _ => None,
        }
    }

    pub(crate) fn challenge_count(&self) -> usize {
        self.acme.len() + self.ownership.len()
    }
}

/// A challenge token: 1 to [`MAX_TOKEN_LEN`] base64url characters.
pub fn is_valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validates the certificate references and challenges of a snapshot.
/// `routed` tells whether a normalised hostname is a custom domain of a
/// tenant that is not deleted: a certificate for anything else is refused.
pub(crate) fn build(
    certificates: &[CertificateDoc],
    challenges: &[ChallengeDoc],
    routed: impl Fn(&str) -> bool,
    problems: &mut Problems,
) -> TlsRefs {
    let mut refs = TlsRefs::default();
    let mut certs: Vec<CertRef> = Vec::with_capacity(certificates.len());
    let mut seen: HashMap<Hostname, usize> = HashMap::with_capacity(certificates.len());
    for (i, doc) in certificates.iter().enumerate() {
        let loc = format!("certificates[{i}]");
        let host = match Hostname::parse(&doc.hostname) {
            Ok(h) => h,
            Err(e) => {
                problems.push(
                    format!("{loc}.hostname"),
                    format!("invalid hostname {:?}: {e}", doc.hostname),
                );
                continue;
            }
        };
        if let Some(first) = seen.insert(host.clone(), i) {
            problems.push(
                format!("{loc}.hostname"),
                format!("{host} already has a certificate (certificates[{first}])"),
            );
            continue;
        }
        if !routed(host.as_str()) {
            problems.push(
                format!("{loc}.hostname"),
                format!("{host} is not a custom domain of any tenant"),
            );
            continue;
        }
        certs.push(CertRef {
            hostname: host,
            id: doc.id,
            not_after: doc.not_after,
        });
    }
    refs.certificates = certs.into();

    for (i, doc) in challenges.iter().enumerate() {
        let loc = format!("challenges[{i}]");
        let host = Hostname::parse(&doc.hostname)
            .map_err(|e| {
                problems.push(
                    format!("{loc}.hostname"),
                    format!("invalid hostname {:?}: {e}", doc.hostname),
                );
            })
            .ok();
        if !is_valid_token(&doc.token) {
            problems.push(
                format!("{loc}.token"),
                format!("must be 1 to {MAX_TOKEN_LEN} characters of A-Z, a-z, 0-9, - and _"),
            );
            continue;
        }
        if doc.response.is_empty()
            || doc.response.len() > MAX_RESPONSE_LEN
            || !doc.response.bytes().all(|b| b.is_ascii_graphic())
        {
            problems.push(
                format!("{loc}.response"),
                format!("must be 1 to {MAX_RESPONSE_LEN} printable ASCII characters"),
            );
            continue;
        }
        let Some(host) = host else { continue };
        let response: Box<str> = doc.response.as_str().into();
        let duplicate = match doc.kind {
            ChallengeKind::AcmeHttp01 => refs
                .acme
                .insert(doc.token.as_str().into(), response)
                .is_some(),
            ChallengeKind::Ownership => refs
                .ownership
                .insert(doc.token.as_str().into(), (host.as_str().into(), response))
                .is_some(),
        };
        if duplicate {
            problems.push(
                format!("{loc}.token"),
                "the same challenge is listed twice".to_owned(),
            );
        }
    }
    refs
}
