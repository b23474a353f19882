//! A throwaway certificate authority for TLS tests: issues certificates
//! into a directory the way the gateway reads them (`<stem>.crt` and
//! `<stem>.key`), and gives a rustls client that trusts only it.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A certificate authority that lives as long as the value.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A new CA with a fresh P-256 key.
    ///
    /// # Panics
    ///
    /// When rcgen cannot make a key or sign, which only a broken build does.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("P-256 key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// Writes `<file_stem>.crt` and `<file_stem>.key` for `names` into
    /// `dir`, the key first, so a watcher never sees a certificate without
    /// its key; returns the certificate's DER.
    ///
    /// # Panics
    ///
    /// When a name is not valid for a certificate or a file cannot be written.
    pub fn issue(&self, dir: &Path, file_stem: &str, names: &[&str]) -> CertificateDer<'static> {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("valid subject names");
        let key = KeyPair::generate().expect("P-256 key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signed certificate");
        std::fs::write(dir.join(format!("{file_stem}.key")), key.serialize_pem())
            .expect("key written");
        std::fs::write(dir.join(format!("{file_stem}.crt")), cert.pem())
            .expect("certificate written");
        cert.der().clone()
    }

    /// A rustls client configuration trusting only this CA, offering `alpn`.
    ///
    /// # Panics
    ///
    /// Never in practice: the CA certificate and protocol versions are valid.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("CA certificate");
        client_for(roots, alpn)
    }
}

/// A rustls client configuration trusting only the certificates in `pem`
/// (for example an ACME CA's issuing root), offering `alpn`.
///
/// # Panics
///
/// When `pem` holds no certificate or one rustls cannot use as a root.
pub fn client_trusting_pem(pem: &str, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable root certificate");
    }
    assert!(!roots.is_empty(), "no certificate in the PEM text");
    client_for(roots, alpn)
}

fn client_for(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
