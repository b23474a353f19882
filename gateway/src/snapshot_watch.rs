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
            let origin = self.path.display().to_string();
            let build = move || snapshot_file::load(&path, &config);
            match snapshot_file::build_off_runtime(build, &origin, &self.upstreams, &self.state)
                .await
            {
                Ok(loaded) => {
                    let version = self.state.install(loaded, &self.metrics);
                    eprintln!("gateway: routing snapshot version {version} loaded from {origin}");
                }
                Err(rejected) => self.state.reject(&rejected, &self.metrics),
            }
        }
    }
}
