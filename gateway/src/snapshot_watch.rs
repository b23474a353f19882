//! Watching the routing snapshot file (`[source] kind = "file"`).
//!
//! The file is polled: its modification time, size and inode are compared
//! every interval, which works on every filesystem and catches the atomic
//! rename a careful writer does. A changed file is loaded in full; a valid
//! one replaces the table in force, an invalid one is logged with every
//! problem and the previous table keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::Config;
use crate::file_stamp::Stamp;
use crate::metrics::Metrics;
use crate::snapshot_file;
use crate::state::RoutingState;
use crate::upstreams::Upstreams;

/// How often the file is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The background service that reloads the snapshot file.
#[derive(Debug)]
pub struct SnapshotWatcher {
    path: PathBuf,
    config: Config,
    state: Arc<RoutingState>,
    metrics: Metrics,
    upstreams: Arc<Upstreams>,
}

impl SnapshotWatcher {
    /// Watches `path`, loading accepted versions into `state`.
    pub fn new(
        path: PathBuf,
        config: Config,
        state: Arc<RoutingState>,
        metrics: Metrics,
        upstreams: Arc<Upstreams>,
    ) -> Self {
        Self {
            path,
            config,
            state,
            metrics,
            upstreams,
        }
    }
}

#[async_trait]
impl BackgroundService for SnapshotWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut seen = Stamp::of(&self.path);
        let mut interval = tokio::time::interval(POLL_INTERVAL);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = Stamp::of(&self.path);
            if now == seen {
                continue;
            }
            seen = now;
            let path = self.path.clone();
            let config = self.config.clone();
            let upstreams = self.upstreams.clone();
            let previous = self.state.current();
            // Building a large table takes a while: keep it off the runtime.
            let loaded = tokio::task::spawn_blocking(move || {
                let mut loaded = snapshot_file::load(&path, &config)?;
                for p in loaded.prepare(&upstreams, previous.as_deref()) {
                    eprintln!("gateway: {p}");
                }
                Ok::<_, snapshot_file::SnapshotRejected>(loaded)
            })
            .await;
            match loaded {
                Ok(Ok(mut loaded)) => {
                    let version = loaded.table.version();
                    self.metrics.snapshot_accepted(&mut loaded);
                    self.state.replace(loaded);
                    eprintln!(
                        "gateway: routing snapshot version {version} loaded from {}",
                        self.path.display()
                    );
                }
                Ok(Err(rejected)) => {
                    self.metrics.snapshot_rejected();
                    eprintln!(
                        "gateway: {rejected}\ngateway: keeping snapshot version {:?}",
                        self.state.version()
                    );
                }
                Err(e) => eprintln!("gateway: snapshot load task failed: {e}"),
            }
        }
    }
}
