//! The HTTPS listener's TLS settings: certificates chosen by SNI from the
//! [`CertStore`], ALPN `h2` and `http/1.1`, and the SNI name recorded on
//! the connection so requests can be checked against it (421).

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::tls::TlsRef;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::cert_store::{CertStore, SniResolver};
use crate::file_stamp::Stamp;
use crate::metrics::Metrics;

/// The SNI name a TLS connection was opened with, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sni(pub Option<String>);

/// Records each connection's SNI name in its TLS digest, and counts the
/// handshake.
#[derive(Debug)]
struct SniRecorder(Metrics);

#[async_trait]
impl TlsAccept for SniRecorder {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let sni = tls
            .server_name()
            .and_then(|name| router::normalize(name).ok())
            .map(|name| name.into_owned());
        self.0.tls_handshake(sni.is_some());
        Some(Arc::new(Sni(sni)))
    }
}

/// TLS settings for the HTTPS listener, selecting certificates from `store`.
///
/// # Errors
///
/// Never in practice: Pingora's constructor is fallible only in signature.
pub fn settings(store: Arc<CertStore>, metrics: Metrics) -> pingora::Result<TlsSettings> {
    let mut settings = TlsSettings::with_callbacks(Box::new(SniRecorder(metrics)))?;
    settings.set_cert_resolver(Arc::new(SniResolver(store)));
    settings.enable_h2();
    Ok(settings)
}

/// How often the certificate directory's own stamp is checked: a file
/// added, removed or renamed into it (how a careful writer publishes)
/// changes it, and triggers a scan.
pub const CERT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often every pair is checked even when the directory's stamp did not
/// change: a file rewritten in place leaves the directory as it was.
pub const CERT_FULL_SCAN_INTERVAL: Duration = Duration::from_secs(5);

/// Hostnames listed by name in a reload log line; past that, a count.
const LOGGED_HOSTS: usize = 20;

/// Reloads the certificate directory when files appear, change or vanish.
///
/// With 10,000 pairs a full scan stats 20,000 files, so it runs only when
/// the directory changed, or every [`CERT_FULL_SCAN_INTERVAL`]; the check
/// every [`CERT_POLL_INTERVAL`] is one `stat`.
#[derive(Debug)]
pub struct CertWatcher {
    dir: PathBuf,
    store: Arc<CertStore>,
    metrics: Metrics,
}

impl CertWatcher {
    /// Watches `dir` for `store`.
    pub fn new(dir: PathBuf, store: Arc<CertStore>, metrics: Metrics) -> Self {
        Self {
            dir,
            store,
            metrics,
        }
    }
}

#[async_trait]
impl BackgroundService for CertWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut interval = tokio::time::interval(CERT_POLL_INTERVAL);
        let mut last_errors = Vec::new();
        let mut seen = None;
        let mut last_full = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            let stamp = Stamp::of(&self.dir);
            if stamp.is_some() && stamp == seen && last_full.elapsed() < CERT_FULL_SCAN_INTERVAL {
                continue;
            }
            // A stamp younger than a clock tick may hide a second change.
            seen = stamp.filter(|s| !s.is_recent(Duration::from_secs(1)));
            last_full = tokio::time::Instant::now();
            let (dir, store) = (self.dir.clone(), self.store.clone());
            let Ok(report) = tokio::task::spawn_blocking(move || store.scan(&dir)).await else {
                continue;
            };
            self.metrics.dir_certificates(self.store.len());
            if !report.loaded.is_empty() || !report.removed.is_empty() {
                eprintln!(
                    "gateway: certificates loaded: {}; removed: {}; {} in force",
                    hosts(&report.loaded),
                    hosts(&report.removed),
                    self.store.len()
                );
            }
            // Report a broken pair once, not every scan.
            if report.errors != last_errors {
                for e in &report.errors {
                    eprintln!("gateway: certificate not loaded: {e}");
                }
                last_errors = report.errors;
            }
        }
    }
}

/// A list of hostnames for a log line: all of them when few, else the
/// first few and a count.
pub(crate) fn hosts(names: &[String]) -> String {
    if names.len() <= LOGGED_HOSTS {
        return format!("{names:?}");
    }
    format!(
        "{:?} and {} more",
        &names[..LOGGED_HOSTS],
        names.len() - LOGGED_HOSTS
    )
}
