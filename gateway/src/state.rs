//! The routing table the gateway serves from, swapped whole and atomically
//! when a new snapshot is accepted. Requests hold the table they started
//! with until they finish, so a swap never changes a request midway.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::metrics::Metrics;
use crate::snapshot_file::{LoadedTable, SnapshotRejected};

/// The current routing table, or none before the first snapshot loads.
#[derive(Debug, Default)]
pub struct RoutingState {
    current: ArcSwapOption<LoadedTable>,
}

impl RoutingState {
    /// The table in force now, if any.
    pub fn current(&self) -> Option<Arc<LoadedTable>> {
        self.current.load_full()
    }

    /// Makes `table` the one in force.
    pub fn replace(&self, table: LoadedTable) {
        self.current.store(Some(Arc::new(table)));
    }

    /// Puts an accepted table in force, counting it in `metrics`; returns
    /// its version.
    pub fn install(&self, mut table: LoadedTable, metrics: &Metrics) -> u64 {
        let version = table.table.version();
        metrics.snapshot_accepted(&mut table);
        self.replace(table);
        version
    }

    /// Logs and counts a rejected snapshot; the table in force stays.
    pub fn reject(&self, rejected: &SnapshotRejected, metrics: &Metrics) {
        metrics.snapshot_rejected();
        match self.version() {
            Some(v) => eprintln!("gateway: {rejected}\ngateway: keeping snapshot version {v}"),
            None => eprintln!("gateway: {rejected}\ngateway: no snapshot in force yet: not ready"),
        }
    }

    /// The version in force, if any.
    pub fn version(&self) -> Option<u64> {
        self.current.load().as_ref().map(|t| t.table.version())
    }
}
