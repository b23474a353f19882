//! The routing table the gateway serves from, swapped whole and atomically
//! when a new snapshot is accepted. Requests hold the table they started
//! with until they finish, so a swap never changes a request midway
//! (except a write held for a moving tenant, which waits for a newer table
//! through [`RoutingState::swaps`] and is routed again by it).

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::snapshot_file::{LoadedTable, SnapshotRejected};

/// The current routing table, or none before the first snapshot loads.
#[derive(Debug)]
pub struct RoutingState {
    current: ArcSwapOption<LoadedTable>,
    /// Counts swaps, bumped after each one: requests waiting for a newer
    /// table (held writes) subscribe to it. Untouched on the request path
    /// otherwise.
    swaps: watch::Sender<u64>,
}

impl Default for RoutingState {
    fn default() -> Self {
        Self {
            current: ArcSwapOption::default(),
            swaps: watch::Sender::new(0),
        }
    }
}

impl RoutingState {
    /// The table in force now, if any.
    pub fn current(&self) -> Option<Arc<LoadedTable>> {
        self.current.load_full()
    }

    /// Makes `table` the one in force, then wakes whoever waits for a swap.
    pub fn replace(&self, table: LoadedTable) {
        self.current.store(Some(Arc::new(table)));
        // Stored first: a waiter woken by the bump always finds the new
        // table. `send_modify` updates even with nobody subscribed.
        self.swaps.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every swap made after this call. Subscribe
    /// *before* reading [`Self::current`], so a swap between that read and
    /// the wait cannot be missed.
    pub fn swaps(&self) -> watch::Receiver<u64> {
        self.swaps.subscribe()
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
