//! The seed's certificate authority and the certificates it issues: one per
//! custom domain into the gateway's `cert_dir` layout (`<hostname>.crt` and
//! `<hostname>.key`), and the platform's wildcard default.
//!
//! Keys are ECDSA P-256 (cheap to make and to handshake with). Thousands of
//! certificates are issued on every core: each worker takes the next domain
//! from a shared counter, makes its key, signs it and writes the pair.
//!
//! The CA is kept (`ca.pem` and `ca.key`) and reused by the next seed into
//! the same directory, so clients that trust `ca.pem` and a gateway already
//! serving the default certificate (read only at its start) keep working
//! across re-seeds.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::SeedError;
use super::files::{self, Privacy};

/// Common name of the seed's CA certificate.
const CA_NAME: &str = "Switchyard loadtest seed CA";

/// Domains one worker thread is worth starting for.
const DOMAINS_PER_THREAD: usize = 64;

/// The seed's certificate authority: made by the first seed into a
/// directory, reused by the next.
pub(super) struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// Validity of everything the seed issues: from the start of last year to
/// the start of the year after next, so clocks a little off still accept it.
fn validity(params: &mut CertificateParams) {
    const SECS_PER_YEAR: u64 = 31_556_952; // the Gregorian average
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let year = 1970 + i32::try_from(secs / SECS_PER_YEAR).unwrap_or(0);
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + 2, 1, 1);
}

/// The CA certificate's parameters. Everything an issued certificate takes
/// from its issuer (the subject name, how key identifiers are made) is
/// fixed here, so an issuer rebuilt from a kept key signs certificates that
/// chain to the CA certificate written earlier.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

impl Authority {
    /// A new CA with a fresh P-256 key.
    pub(super) fn new() -> Result<Self, rcgen::Error> {
        let mut params = ca_params()?;
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA an earlier seed made: its certificate and key (PEM). Whether
    /// they still belong together and are in date is for [`Self::vouches_for`]
    /// to tell.
    pub(super) fn kept(cert_pem: String, key_pem: &str) -> Result<Self, rcgen::Error> {
        Ok(Self {
            issuer: Issuer::new(ca_params()?, KeyPair::from_pem(key_pem)?),
            pem: cert_pem,
        })
    }

    /// The CA certificate (PEM), for clients to trust.
    pub(super) fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA's private key (PEM), kept for the next seed.
    pub(super) fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Whether a TLS client trusting only this CA's certificate accepts
    /// `cert_pem` for `host` now: the chain, the signature, the dates and
    /// the name, as webpki checks them.
    pub(super) fn vouches_for(&self, cert_pem: &str, host: &str) -> bool {
        let (Ok(root), Ok(leaf), Ok(name)) = (
            CertificateDer::from_pem_slice(self.pem.as_bytes()),
            CertificateDer::from_pem_slice(cert_pem.as_bytes()),
            ServerName::try_from(host.to_owned()),
        ) else {
            return false;
        };
        let mut roots = RootCertStore::empty();
        if roots.add(root).is_err() {
            return false;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .is_ok_and(|verifier| {
                verifier
                    .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
                    .is_ok()
            })
    }

    /// A server certificate for `names` (the first is also its common
    /// name): the certificate's PEM and its private key's PEM.
    pub(super) fn issue(&self, names: &[String]) -> Result<(String, String), rcgen::Error> {
        let mut params = CertificateParams::new(names.to_vec())?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a certificate for `names`: its PEM and its key's.
    ///
    /// # Errors
    ///
    /// [`SeedError::Certificate`] naming them.
    pub(super) fn issue_pair(&self, names: &[String]) -> Result<(String, String), SeedError> {
        self.issue(names).map_err(|source| SeedError::Certificate {
            names: names.join(", "),
            source,
        })
    }

    /// Issues a certificate for `names` and writes it as `cert` + `key`.
    pub(super) fn write_pair(
        &self,
        names: &[String],
        cert: &Path,
        key: &Path,
    ) -> Result<(), SeedError> {
        let (cert_pem, key_pem) = self.issue_pair(names)?;
        write_pair(&cert_pem, &key_pem, cert, key)
    }
}

/// Writes a pair, the key first so a watching gateway never sees a
/// certificate without its key.
pub(super) fn write_pair(
    cert_pem: &str,
    key_pem: &str,
    cert: &Path,
    key: &Path,
) -> Result<(), SeedError> {
    files::write(key, key_pem.as_bytes(), Privacy::Secret)?;
    files::write(cert, cert_pem.as_bytes(), Privacy::Public)
}

/// Issues a certificate for each of `hosts` into `dir` as `<host>.crt` and
/// `<host>.key`, on up to every available core; stops at the first failure.
///
/// # Errors
///
/// The first [`SeedError`] any worker met.
pub(super) fn issue_all(ca: &Authority, dir: &Path, hosts: &[String]) -> Result<(), SeedError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(hosts.len().div_ceil(DOMAINS_PER_THREAD))
        .max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || -> Result<(), SeedError> {
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(host) = hosts.get(i) else {
                return Ok(());
            };
            let result = ca.write_pair(
                std::slice::from_ref(host),
                &dir.join(format!("{host}.crt")),
                &dir.join(format!("{host}.key")),
            );
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
                return result;
            }
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut result = work();
        for worker in workers {
            let outcome = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            result = result.and(outcome);
        }
        result
    })
}
