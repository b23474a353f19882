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

/// How often the certificate directory is scanned.
pub const CERT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Reloads the certificate directory when files appear, change or vanish.
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
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            let (dir, store) = (self.dir.clone(), self.store.clone());
            let Ok(report) = tokio::task::spawn_blocking(move || store.scan(&dir)).await else {
                continue;
            };
            self.metrics.certificates(self.store.len());
            if !report.loaded.is_empty() || !report.removed.is_empty() {
                eprintln!(
                    "gateway: certificates loaded: {:?}; removed: {:?}; {} in force",
                    report.loaded,
                    report.removed,
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
