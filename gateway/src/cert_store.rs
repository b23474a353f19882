//! TLS certificates chosen by SNI, from three sources, in this order:
//!
//! 1. the certificate directory (`tls.cert_dir`: `<hostname>.crt` +
//!    `<hostname>.key`), the operator's override, swapped whole when the
//!    directory changes;
//! 2. the certificates tenant-admin's snapshots refer to (`[source] kind =
//!    "admin"`), one per custom domain, swapped whole by
//!    [`crate::cert_sync`] when a snapshot changes them;
//! 3. the platform's default certificate (`tls.default_cert`).
//!
//! Each is a hash map lookup (O(1)). An SNI name with no certificate of its
//! own gets the default certificate when there is one; otherwise the
//! handshake fails. It never gets another hostname's certificate. (rustls
//! ends such a handshake with the `access_denied` alert; Pingora's listener
//! offers no earlier hook to send `unrecognized_name` instead.)

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{
    CertificateDer, ClientHello, CryptoProvider, PrivateKeyDer, ResolvesServerCert, ServerName,
};
use router::{CertRef, Hostname};
use rustls::pki_types::pem::PemObject;

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
    certified_key(chain, key_der).map_err(|reason| fail(reason.to_owned()))
}

/// Pairs a chain with its private key, checking they belong together.
/// The reason it cannot is a fixed text: never key material.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, &'static str> {
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider installed")?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| "the private key is not a supported type")?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|_| "the private key does not belong to the certificate")?;
    Ok(Arc::new(certified))
}

/// Loads a PEM chain (leaf first) and its PEM private key held in memory,
/// for `host`: the key must belong to the leaf, and the leaf must name
/// `host` (a certificate filed under the wrong domain is never served).
///
/// # Errors
///
/// Why not, as a fixed text: never the PEM, nor anything parsed from it.
pub fn load_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
    host: &Hostname,
) -> Result<Arc<CertifiedKey>, &'static str> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "chain_pem is not a PEM certificate chain")?;
    let leaf = chain.first().ok_or("chain_pem holds no certificate")?;
    // Parse errors are not echoed: they may quote the PEM.
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| "key_pem is not a PEM private key (PKCS#8, PKCS#1 or SEC1)")?;
    let parsed = rustls::server::ParsedCertificate::try_from(leaf)
        .map_err(|_| "the certificate cannot be parsed")?;
    let name = ServerName::try_from(host.as_str()).map_err(|_| "the hostname is not a DNS name")?;
    rustls::client::verify_server_name(&parsed, &name)
        .map_err(|_| "the certificate is not valid for the hostname")?;
    certified_key(chain, key)
}

/// One hostname's loaded pair and the file versions it came from.
#[derive(Clone)]
struct Entry {
    stamps: (Stamp, Stamp),
    key: Arc<CertifiedKey>,
}

/// A certificate from tenant-admin, and the snapshot reference it was
/// loaded for.
#[derive(Clone)]
pub struct FeedCert {
    /// The issuance the snapshot names; a renewal has another.
    pub id: u64,
    /// Its expiry (seconds since the Unix epoch), from the reference.
    pub not_after: i64,
    /// The tenant the routing table gave the hostname when it was loaded.
    pub tenant: Option<String>,
    /// The chain and signing key.
    pub key: Arc<CertifiedKey>,
}

impl fmt::Debug for FeedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedCert")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// The feed's certificates by normalised hostname.
pub type FeedCerts = HashMap<String, FeedCert>;

/// The certificates in force.
#[derive(Default)]
pub struct CertStore {
    default: ArcSwapOption<CertifiedKey>,
    /// `tls.cert_dir`: the operator's pairs, looked up first.
    by_host: ArcSwap<HashMap<String, Entry>>,
    /// tenant-admin's certificates for custom domains, looked up next.
    feed: ArcSwap<FeedCerts>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("default", &self.default.load().is_some())
            .field("hosts", &self.by_host.load().len())
            .field("feed", &self.feed.load().len())
            .finish()
    }
}

/// How the feed's certificates follow a snapshot's references.
#[derive(Debug, Default)]
pub struct FeedPlan {
    /// What to serve now: every loaded certificate still referenced, and,
    /// for a host whose reference moved to a new issuance not loaded yet,
    /// its previous certificate while that has not expired and the host
    /// still belongs to the tenant it was loaded for.
    pub serve: FeedCerts,
    /// References whose certificate is not loaded.
    pub missing: Vec<CertRef>,
    /// Hosts whose certificate is no longer served, sorted.
    pub dropped: Vec<String>,
}

/// Compares the feed's certificates in force with a snapshot's references
/// (`wanted`), at `now` (seconds since the Unix epoch); `owner` gives the
/// snapshot's tenant id for a hostname. `serve` holds only entries of
/// `current`: anything a snapshot stopped referencing (a removed domain, a
/// tenant suspended or deleted) is gone from it, and so is a previous
/// certificate whose host now belongs to another tenant.
pub fn plan_feed<'t>(
    current: &FeedCerts,
    wanted: &[CertRef],
    owner: impl Fn(&str) -> Option<&'t str>,
    now: i64,
) -> FeedPlan {
    let mut plan = FeedPlan {
        serve: HashMap::with_capacity(wanted.len()),
        ..FeedPlan::default()
    };
    for reference in wanted {
        let host = reference.hostname.as_str();
        match current.get(host) {
            Some(held) if held.id == reference.id => {
                plan.serve.insert(host.to_owned(), held.clone());
            }
            held => {
                plan.missing.push(reference.clone());
                let same_owner =
                    |p: &FeedCert| p.tenant.is_some() && p.tenant.as_deref() == owner(host);
                if let Some(previous) = held.filter(|p| p.not_after > now && same_owner(p)) {
                    plan.serve.insert(host.to_owned(), previous.clone());
                }
            }
        }
    }
    plan.dropped = current
        .keys()
        .filter(|h| !plan.serve.contains_key(*h))
        .cloned()
        .collect();
    plan.dropped.sort();
    plan
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

    /// Number of per-host certificates in force from the directory.
    pub fn len(&self) -> usize {
        self.by_host.load().len()
    }

    /// True when no per-host certificate is loaded from the directory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The feed's certificates in force.
    pub fn feed(&self) -> Arc<FeedCerts> {
        self.feed.load_full()
    }

    /// Replaces the feed's certificates, atomically.
    pub fn set_feed(&self, certs: FeedCerts) {
        self.feed.store(Arc::new(certs));
    }

    /// The certificate for an SNI name: the directory's, else the feed's,
    /// else the default.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let own = sni.and_then(|name| {
            let name = router::normalize(name).ok()?;
            if let Some(e) = self.by_host.load().get(&*name) {
                return Some(e.key.clone());
            }
            self.feed.load().get(&*name).map(|c| c.key.clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issues a pair for `names` as `<stem>.crt`/`<stem>.key` in `dir`
    /// and loads it.
    fn issue(ca: &testkit::TestCa, dir: &Path, stem: &str, names: &[&str]) -> Arc<CertifiedKey> {
        ca.issue(dir, stem, names);
        let (cert, key) = pem_files(dir, stem);
        load_pem(cert.as_bytes(), key.as_bytes(), &host(names[0])).unwrap()
    }

    fn pem_files(dir: &Path, stem: &str) -> (String, String) {
        let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{stem}.{ext}"))).unwrap();
        (read("crt"), read("key"))
    }

    fn host(name: &str) -> Hostname {
        Hostname::parse(name).unwrap()
    }

    fn reference(name: &str, id: u64, not_after: i64) -> CertRef {
        CertRef {
            hostname: host(name),
            id,
            not_after,
        }
    }

    fn held(key: &Arc<CertifiedKey>, id: u64, not_after: i64) -> FeedCert {
        FeedCert {
            id,
            not_after,
            tenant: Some("t_acme".to_owned()),
            key: key.clone(),
        }
    }

    fn acme(_: &str) -> Option<&'static str> {
        Some("t_acme")
    }

    #[test]
    fn a_snapshot_keeps_its_certificates_drops_the_rest_and_asks_for_new_ones() {
        let ca = testkit::TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let key = issue(&ca, dir.path(), "a", &["a.test"]);
        let now = 1_000;
        let current = FeedCerts::from([
            ("kept.test".to_owned(), held(&key, 1, 5_000)),
            ("removed.test".to_owned(), held(&key, 2, 5_000)),
            ("renewed.test".to_owned(), held(&key, 3, 5_000)),
            ("expired.test".to_owned(), held(&key, 4, now)),
        ]);
        let wanted = [
            reference("kept.test", 1, 5_000),
            reference("renewed.test", 30, 9_000),
            reference("expired.test", 40, 9_000),
            reference("new.test", 5, 9_000),
        ];
        let plan = plan_feed(&current, &wanted, acme, now);

        let mut serving: Vec<_> = plan.serve.iter().map(|(h, c)| (h.as_str(), c.id)).collect();
        serving.sort();
        // The renewed host keeps its previous, still valid, certificate
        // until the new one is loaded; an expired one is not kept.
        assert_eq!(serving, [("kept.test", 1), ("renewed.test", 3)]);
        let missing: Vec<_> = plan.missing.iter().map(|r| r.id).collect();
        assert_eq!(missing, [30, 40, 5]);
        assert_eq!(plan.dropped, ["expired.test", "removed.test"]);

        let nothing = plan_feed(&current, &[], acme, now);
        assert!(nothing.serve.is_empty() && nothing.missing.is_empty());
        assert_eq!(nothing.dropped.len(), 4);
    }

    #[test]
    fn a_previous_certificate_stands_in_only_while_its_host_keeps_its_tenant() {
        let ca = testkit::TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let key = issue(&ca, dir.path(), "a", &["shop.acme.test"]);
        let now = 1_000;
        let current = FeedCerts::from([("shop.acme.test".to_owned(), held(&key, 1, 5_000))]);
        let wanted = [reference("shop.acme.test", 2, 9_000)];
        let serving = |plan: &FeedPlan| {
            plan.serve
                .iter()
                .map(|(h, c)| (h.clone(), c.id))
                .collect::<Vec<_>>()
        };

        // A renewal for the same tenant: the previous one stands in.
        let renewed = plan_feed(&current, &wanted, acme, now);
        assert_eq!(serving(&renewed), [("shop.acme.test".to_owned(), 1)]);
        assert!(renewed.dropped.is_empty());
        assert_eq!(renewed.missing.len(), 1);

        // The domain moved to another tenant (or none): the previous
        // owner's certificate is dropped at once.
        for owner in [Some("t_globex"), None] {
            let moved = plan_feed(&current, &wanted, |_| owner, now);
            assert!(moved.serve.is_empty(), "{owner:?}");
            assert_eq!(moved.dropped, ["shop.acme.test"]);
            assert_eq!(moved.missing.len(), 1);
        }

        // One loaded without a known tenant never stands in.
        let unknown = FeedCerts::from([(
            "shop.acme.test".to_owned(),
            FeedCert {
                tenant: None,
                ..held(&key, 1, 5_000)
            },
        )]);
        assert!(plan_feed(&unknown, &wanted, acme, now).serve.is_empty());
    }

    #[test]
    fn the_directory_overrides_the_feed_which_overrides_the_default() {
        let ca = testkit::TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::create_dir(&hosts).unwrap();
        ca.issue(dir.path(), "wildcard", &["*.app.example.test"]);
        let default = load_pair(
            &dir.path().join("wildcard.crt"),
            &dir.path().join("wildcard.key"),
        )
        .unwrap();
        let from_feed = issue(&ca, dir.path(), "feed", &["erp.acme.test"]);
        let other_feed = issue(&ca, dir.path(), "other", &["shop.globex.test"]);

        let store = CertStore::default();
        assert!(store.lookup(Some("erp.acme.test")).is_none());
        store.set_default(default.clone());
        store.set_feed(FeedCerts::from([
            ("erp.acme.test".to_owned(), held(&from_feed, 1, 0)),
            ("shop.globex.test".to_owned(), held(&other_feed, 2, 0)),
        ]));
        let served = |sni| store.lookup(sni).unwrap();
        assert!(Arc::ptr_eq(&served(Some("ERP.acme.test.")), &from_feed));
        assert!(Arc::ptr_eq(
            &served(Some("acme.app.example.test")),
            &default
        ));
        assert!(Arc::ptr_eq(&served(None), &default));

        // An operator's pair for the same host wins over the feed's.
        ca.issue(&hosts, "erp.acme.test", &["erp.acme.test"]);
        let report = store.scan(&hosts);
        assert_eq!(report.loaded, ["erp.acme.test"]);
        let own = served(Some("erp.acme.test"));
        assert!(!Arc::ptr_eq(&own, &from_feed) && !Arc::ptr_eq(&own, &default));
        assert!(Arc::ptr_eq(&served(Some("shop.globex.test")), &other_feed));

        // A feed swap that drops a host stops serving it.
        store.set_feed(FeedCerts::new());
        assert!(Arc::ptr_eq(&served(Some("shop.globex.test")), &default));
        assert_eq!((store.len(), store.feed().len()), (1, 0));
    }

    #[test]
    fn pem_pairs_are_refused_for_the_wrong_key_host_or_format_without_quoting_them() {
        let ca = testkit::TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        ca.issue(dir.path(), "erp", &["erp.acme.test"]);
        ca.issue(dir.path(), "wild", &["*.acme.test"]);
        let (cert, key) = pem_files(dir.path(), "erp");
        let (wild_cert, wild_key) = pem_files(dir.path(), "wild");
        let erp = host("erp.acme.test");

        assert!(load_pem(cert.as_bytes(), key.as_bytes(), &erp).is_ok());
        // A wildcard covers the host: it names it.
        assert!(load_pem(wild_cert.as_bytes(), wild_key.as_bytes(), &erp).is_ok());
        let refused = [
            (cert.as_str(), wild_key.as_str(), &erp, "does not belong"),
            (
                cert.as_str(),
                key.as_str(),
                &host("shop.acme.test"),
                "not valid for the hostname",
            ),
            ("", key.as_str(), &erp, "holds no certificate"),
            (cert.as_str(), cert.as_str(), &erp, "not a PEM private key"),
        ];
        for (chain, key_pem, name, expected) in refused {
            let e = load_pem(chain.as_bytes(), key_pem.as_bytes(), name).unwrap_err();
            assert!(e.contains(expected), "{e}");
        }
        // A broken PEM line is never echoed.
        let broken = key.replacen("-----END", "garbage-line\n-----END", 1);
        let e = load_pem(cert.as_bytes(), broken.as_bytes(), &erp).unwrap_err();
        assert!(!e.contains("garbage") && !e.contains("BEGIN"), "{e}");
    }
}
