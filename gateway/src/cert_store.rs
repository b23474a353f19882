//! TLS certificates chosen by SNI: the platform's default certificate plus
//! one per hostname from the certificate directory (`<hostname>.crt` +
//! `<hostname>.key`), looked up in a hash map (O(1)) and swapped whole when
//! the directory changes.
//!
//! An SNI name with no certificate of its own gets the default certificate
//! when there is one; otherwise the handshake fails. It never gets another
//! hostname's certificate. (rustls ends such a handshake with the
//! `access_denied` alert; Pingora's listener offers no earlier hook to send
//! `unrecognized_name` instead.)

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use router::Hostname;

use crate::file_stamp::Stamp;

/// Why a certificate pair could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct CertError {
    /// The certificate file.
    pub path: PathBuf,
    /// What is wrong, never the key material.
    pub reason: String,
}

/// Loads a PEM certificate chain and its private key.
///
/// # Errors
///
/// [`CertError`] naming the file when either cannot be read or parsed, or
/// the key does not belong to the certificate.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let fail = |reason: String| CertError {
        path: cert.to_owned(),
        reason,
    };
    let (chain, key_der) = pingora::tls::load_certs_and_key_files(
        &cert.display().to_string(),
        &key.display().to_string(),
    )
    .map_err(|e| fail(format!("cannot read the certificate or its key: {e}")))?
    .ok_or_else(|| fail("no certificate or no private key found in the PEM files".to_owned()))?;
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| fail("no TLS crypto provider installed".to_owned()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|_| fail("the private key is not a supported type".to_owned()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|_| fail("the private key does not belong to the certificate".to_owned()))?;
    Ok(Arc::new(certified))
}

/// One hostname's loaded pair and the file versions it came from.
#[derive(Clone)]
struct Entry {
    stamps: (Stamp, Stamp),
    key: Arc<CertifiedKey>,
}

/// The certificates in force.
#[derive(Default)]
pub struct CertStore {
    default: ArcSwapOption<CertifiedKey>,
    by_host: ArcSwap<HashMap<String, Entry>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("default", &self.default.load().is_some())
            .field("hosts", &self.by_host.load().len())
            .finish()
    }
}

/// What a directory scan changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Hostnames whose certificate was loaded or replaced.
    pub loaded: Vec<String>,
    /// Hostnames whose files vanished.
    pub removed: Vec<String>,
    /// Pairs that could not be used; the previous certificate (if any) stays.
    pub errors: Vec<CertError>,
}

impl CertStore {
    /// Sets the default certificate.
    pub fn set_default(&self, key: Arc<CertifiedKey>) {
        self.default.store(Some(key));
    }

    /// Number of per-host certificates in force.
    pub fn len(&self) -> usize {
        self.by_host.load().len()
    }

    /// True when no per-host certificate is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The certificate for an SNI name: its own, else the default.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let own = sni.and_then(|name| {
            let name = router::normalize(name).ok()?;
            self.by_host.load().get(&*name).map(|e| e.key.clone())
        });
        own.or_else(|| self.default.load_full())
    }

    /// Brings the per-host certificates in line with `dir`: new and changed
    /// pairs are loaded, vanished ones dropped, unchanged ones kept as they
    /// are. A pair that fails to load keeps its previous certificate.
    pub fn scan(&self, dir: &Path) -> ScanReport {
        let mut report = ScanReport::default();
        let current = self.by_host.load_full();
        let mut next: HashMap<String, Entry> = HashMap::with_capacity(current.len());
        let Ok(entries) = std::fs::read_dir(dir) else {
            report.errors.push(CertError {
                path: dir.to_owned(),
                reason: "cannot read the certificate directory".to_owned(),
            });
            // Keep serving what we have.
            return report;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".crt"))
            else {
                continue;
            };
            let host = match Hostname::parse(stem) {
                Ok(h) if h.as_str() == stem => stem.to_owned(),
                _ => {
                    report.errors.push(CertError {
                        path: path.clone(),
                        reason: "the file name is not a lowercase hostname followed by .crt"
                            .to_owned(),
                    });
                    continue;
                }
            };
            let key_path = dir.join(format!("{host}.key"));
            let (Some(cert_stamp), Some(key_stamp)) = (Stamp::of(&path), Stamp::of(&key_path))
            else {
                report.errors.push(CertError {
                    path: path.clone(),
                    reason: format!("{host}.key is missing"),
                });
                continue;
            };
            let stamps = (cert_stamp, key_stamp);
            match current.get(&host) {
                Some(e) if e.stamps == stamps => {
                    next.insert(host, e.clone());
                }
                previous => match load_pair(&path, &key_path) {
                    Ok(key) => {
                        report.loaded.push(host.clone());
                        next.insert(host, Entry { stamps, key });
                    }
                    Err(e) => {
                        report.errors.push(e);
                        if let Some(previous) = previous {
                            next.insert(host, previous.clone());
                        }
                    }
                },
            }
        }
        report.removed = current
            .keys()
            .filter(|h| !next.contains_key(*h))
            .cloned()
            .collect();
        report.loaded.sort();
        report.removed.sort();
        if !report.loaded.is_empty() || !report.removed.is_empty() {
            self.by_host.store(Arc::new(next));
        }
        report
    }
}

/// rustls asks the store for each handshake's certificate.
#[derive(Debug)]
pub struct SniResolver(pub Arc<CertStore>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.lookup(hello.server_name())
    }
}
