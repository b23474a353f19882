//! Fetching the certificates a snapshot refers to from tenant-admin:
//! `GET {url}/v1/routing/certificates?ids=1,2,3` with the gateway's bearer
//! token (only the `gateway` role may call it; others get 403), at most
//! [`MAX_IDS_PER_REQUEST`] ids per request. The answer is `200
//! application/json`:
//!
//! ```json
//! {"certificates": [{"id": 1, "hostname": "erp.customer.test",
//!   "not_after": 1790000000, "chain_pem": "-----BEGIN CERTIFICATE-----…",
//!   "key_pem": "-----BEGIN PRIVATE KEY-----…"}]}
//! ```
//!
//! Ids tenant-admin no longer has are simply absent (a newer snapshot
//! follows). Unknown fields are ignored, so tenant-admin may add some.
//!
//! The private key never reaches a log line or an error message: the
//! entry's `Debug` hides it, and parse errors give only their category and
//! position, never the text they choke on.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use pingora::tls::sign::CertifiedKey;
use router::CertRef;
use serde::{Deserialize, Serialize};

use crate::cert_store;
use crate::feed_client::{FeedClient, FeedError, FeedUrl};

/// Most ids asked for in one request.
pub const MAX_IDS_PER_REQUEST: usize = 100;
/// Largest answer accepted: 100 chains and keys with room to spare.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;
/// Longest wait for the response header.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the whole body once the header arrived.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// One certificate as tenant-admin serves it (and as it is kept on disk).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedCertificate {
    /// The issuance, as a snapshot's `certificates[].id`.
    pub id: u64,
    /// The custom domain it was issued for.
    pub hostname: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
    /// The certificate chain, leaf first (PEM).
    pub chain_pem: String,
    /// The private key (PEM). Never logged.
    pub key_pem: String,
}

impl fmt::Debug for FetchedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedCertificate")
            .field("id", &self.id)
            .field("hostname", &self.hostname)
            .field("not_after", &self.not_after)
            .field(
                "chain_pem",
                &format_args!("<{} bytes>", self.chain_pem.len()),
            )
            .field("key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

impl FetchedCertificate {
    /// Checks the entry against the snapshot reference it was fetched for
    /// (same id, same hostname) and loads its chain and key (the key must
    /// belong to the certificate, which must name the hostname).
    ///
    /// # Errors
    ///
    /// Why it is refused, naming neither key nor chain.
    pub fn load_for(&self, expected: &CertRef) -> Result<Arc<CertifiedKey>, String> {
        if self.id != expected.id {
            return Err(format!("the entry has id {}", self.id));
        }
        let same_host = router::normalize(&self.hostname)
            .is_ok_and(|h| h.as_ref() == expected.hostname.as_str());
        if !same_host {
            // The entry's hostname is tenant-admin's data, not a secret,
            // but it is shortened and stripped of control characters.
            let shown: String = self
                .hostname
                .chars()
                .filter(|c| !c.is_control())
                .take(255)
                .collect();
            return Err(format!("the entry is for the hostname {shown:?}"));
        }
        cert_store::load_pem(
            self.chain_pem.as_bytes(),
            self.key_pem.as_bytes(),
            &expected.hostname,
        )
        .map_err(str::to_owned)
    }
}

/// The answer's document.
#[derive(Deserialize)]
struct Answer {
    certificates: Vec<FetchedCertificate>,
}

/// Why certificates could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum CertFetchError {
    /// No HTTP answer (connect, TLS, timeout, broken body, bad token).
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// An answer other than 200, with its problem detail.
    #[error("answered {status}: {detail}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// What the problem+json body says, shortened.
        detail: String,
    },
    /// A 200 whose body is not the expected document.
    #[error("the answer is not a certificates document: {0}")]
    Invalid(String),
    /// More ids than one request may carry.
    #[error("{0} ids in one request; at most {MAX_IDS_PER_REQUEST}")]
    TooManyIds(usize),
}

impl CertFetchError {
    /// A bounded metric label for the error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Feed(e) => e.kind(),
            Self::Refused { status, .. } if matches!(status.as_u16(), 401 | 403) => "auth",
            Self::Refused { status, .. } if status.is_server_error() => "status_5xx",
            Self::Refused { .. } => "status_other",
            Self::Invalid(_) => "invalid",
            Self::TooManyIds(_) => "request",
        }
    }

    /// The token is missing or refused: retrying soon will not help.
    pub fn is_auth(&self) -> bool {
        self.kind() == "auth"
    }
}

/// Parses an answer's body. Entries are not checked here (see
/// [`FetchedCertificate::load_for`]).
///
/// # Errors
///
/// [`CertFetchError::Invalid`] with the JSON error's category and
/// position only: its message could quote the body, key included.
pub fn parse_answer(body: &[u8]) -> Result<Vec<FetchedCertificate>, CertFetchError> {
    serde_json::from_slice::<Answer>(body)
        .map(|a| a.certificates)
        .map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "not valid JSON",
                serde_json::error::Category::Data => "not the expected shape",
                serde_json::error::Category::Eof => "cut short",
            };
            CertFetchError::Invalid(format!("{what} at line {} column {}", e.line(), e.column()))
        })
}

impl FeedUrl {
    /// The path and query of a request for the certificates `ids`.
    pub fn certificates_target(&self, ids: &[u64]) -> String {
        let mut target = format!("{}/v1/routing/certificates?ids=", self.prefix());
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                target.push(',');
            }
            target.push_str(itoa::Buffer::new().format(*id));
        }
        target
    }
}

impl FeedClient {
    /// Fetches the certificates `ids` (at most [`MAX_IDS_PER_REQUEST`])
    /// with `token`; those tenant-admin no longer has are absent from the
    /// result.
    ///
    /// # Errors
    ///
    /// [`CertFetchError`] when there is no 200 answer with a valid
    /// document.
    pub async fn certificates(
        &self,
        ids: &[u64],
        token: &str,
    ) -> Result<Vec<FetchedCertificate>, CertFetchError> {
        if ids.len() > MAX_IDS_PER_REQUEST {
            return Err(CertFetchError::TooManyIds(ids.len()));
        }
        let target = self.url().certificates_target(ids);
        let exchange = self.exchange(&target, token, RESPONSE_TIMEOUT).await?;
        let status = exchange.status();
        if status != StatusCode::OK {
            let detail = exchange.problem_detail().await;
            return Err(CertFetchError::Refused { status, detail });
        }
        let body = exchange
            .body(
                MAX_ANSWER_BYTES,
                BODY_TIMEOUT,
                "reading the certificates body",
            )
            .await?;
        parse_answer(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_LINE: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";

    fn entry(id: u64, host: &str) -> serde_json::Value {
        serde_json::json!({
            "id": id, "hostname": host, "not_after": 1_790_000_000,
            "chain_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "key_pem": format!("-----BEGIN PRIVATE KEY-----\n{KEY_LINE}\n-----END PRIVATE KEY-----\n"),
        })
    }

    #[test]
    fn the_target_lists_the_ids_after_the_prefix() {
        let url = FeedUrl::parse("https://tenant-admin.internal:8443/admin/").unwrap();
        assert_eq!(
            url.certificates_target(&[1, 22, 333]),
            "/admin/v1/routing/certificates?ids=1,22,333"
        );
        let url = FeedUrl::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            url.certificates_target(&[u64::MAX]),
            format!("/v1/routing/certificates?ids={}", u64::MAX)
        );
    }

    #[test]
    fn an_answer_parses_and_ignores_unknown_fields() {
        let mut first = entry(1, "erp.customer.test");
        first["issuer"] = "Pebble".into();
        let body = serde_json::json!({
            "certificates": [first, entry(2, "shop.other.test")],
            "generated_at": 1,
        });
        let certs = parse_answer(body.to_string().as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(
            (certs[0].id, certs[0].hostname.as_str(), certs[0].not_after),
            (1, "erp.customer.test", 1_790_000_000)
        );
        assert!(certs[1].key_pem.contains(KEY_LINE));
        assert!(parse_answer(br#"{"certificates": []}"#).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_answer_is_described_without_quoting_it() {
        // A key where the id belongs: serde would quote the string.
        let mut bad = entry(1, "erp.customer.test");
        bad["id"] = bad["key_pem"].clone();
        let body = serde_json::json!({ "certificates": [bad] }).to_string();
        let e = parse_answer(body.as_bytes()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("not the expected shape at line 1"), "{text}");
        assert!(
            !text.contains(KEY_LINE) && !text.contains("PRIVATE"),
            "{text}"
        );
        assert_eq!(e.kind(), "invalid");

        for (body, what) in [
            (&b"{\"certificates\": [{\"id\": 1,"[..], "cut short"),
            (b"<html>", "not valid JSON"),
            (b"{\"certs\": []}", "not the expected shape"),
        ] {
            let e = parse_answer(body).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn the_debug_form_hides_the_key() {
        let cert: FetchedCertificate = serde_json::from_value(entry(7, "a.test")).unwrap();
        let shown = format!("{cert:?}");
        assert!(
            shown.contains("id: 7") && shown.contains("a.test"),
            "{shown}"
        );
        assert!(
            !shown.contains(KEY_LINE) && !shown.contains("BEGIN"),
            "{shown}"
        );
    }

    #[test]
    fn an_entry_for_another_id_or_hostname_is_refused_before_its_pem_is_read() {
        let cert: FetchedCertificate =
            serde_json::from_value(entry(7, "ERP.Customer.test.")).unwrap();
        let reference = |host: &str, id| CertRef {
            hostname: router::Hostname::parse(host).unwrap(),
            id,
            not_after: 0,
        };
        let e = cert
            .load_for(&reference("erp.customer.test", 8))
            .unwrap_err();
        assert_eq!(e, "the entry has id 7");
        let e = cert.load_for(&reference("shop.other.test", 7)).unwrap_err();
        assert_eq!(e, "the entry is for the hostname \"ERP.Customer.test.\"");
        // Same host once normalised: the PEM is read, and refused as such.
        let e = cert
            .load_for(&reference("erp.customer.test", 7))
            .unwrap_err();
        assert!(!e.contains(KEY_LINE), "{e}");
    }

    #[test]
    fn errors_have_bounded_kinds() {
        let refused = |code| CertFetchError::Refused {
            status: StatusCode::from_u16(code).unwrap(),
            detail: String::new(),
        };
        assert_eq!(refused(403).kind(), "auth");
        assert!(refused(401).is_auth());
        assert_eq!(refused(502).kind(), "status_5xx");
        assert_eq!(refused(404).kind(), "status_other");
        assert_eq!(CertFetchError::TooManyIds(101).kind(), "request");
    }

    #[tokio::test]
    async fn more_than_a_hundred_ids_are_refused_before_connecting() {
        let client = FeedClient::new(
            FeedUrl::parse("http://127.0.0.1:1").unwrap(),
            pingora::tls::RootCertStore::empty(),
        );
        let ids: Vec<u64> = (0..101).collect();
        let e = client.certificates(&ids, "t").await.unwrap_err();
        assert!(matches!(e, CertFetchError::TooManyIds(101)), "{e}");
    }
}
