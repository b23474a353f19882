//! Holding the writes of a tenant that is being moved (status `moving`).
//!
//! tenant-admin moves a tenant by publishing a snapshot with the tenant
//! `moving`, waiting until the gateways have applied it, copying the data,
//! then publishing a snapshot with the tenant `active` on its new target.
//! In between, the old target still has every row, so reads are served
//! there at once; a write would land in a database that is being copied
//! from, so it is held until a newer snapshot is in force and then routed
//! again by that one (the tenant may be active elsewhere by then, or
//! suspended, or deleted). A write still moving when the hold runs out is
//! answered 503 `tenant-moving` with `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use router::TenantStatus;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::{HoldOutcome, Metrics};
use crate::snapshot_file::LoadedTable;
use crate::state::RoutingState;

/// Whether a request with `method` to a tenant with `status` waits for a
/// newer snapshot: anything but a safe method (GET, HEAD, OPTIONS, TRACE)
/// while the tenant is moving.
pub fn holds_writes(status: TenantStatus, method: &str) -> bool {
    status == TenantStatus::Moving && !router::is_safe_method(method)
}

/// One held write: counted in the `writes_waiting` gauge while it lives
/// (also when the client goes away and the request is dropped), and by
/// outcome when [`WriteHold::end`]ed.
#[derive(Debug)]
pub struct WriteHold<'m> {
    /// Sees every swap of the routing table since the hold started.
    swaps: watch::Receiver<u64>,
    /// When the hold runs out.
    deadline: Instant,
    metrics: &'m Metrics,
}

impl<'m> WriteHold<'m> {
    /// Starts holding a write for at most `hold`. Call it before
    /// [`WriteHold::newer`] is first given the table the request was
    /// resolved by: a swap after that is then never missed.
    pub fn start(state: &RoutingState, hold: Duration, metrics: &'m Metrics) -> Self {
        metrics.writes_waiting(1);
        Self {
            swaps: state.swaps(),
            deadline: Instant::now() + hold,
            metrics,
        }
    }

    /// Waits for a table other than `seen` to be in force and returns it;
    /// `None` when the hold runs out first.
    pub async fn newer(
        &mut self,
        state: &RoutingState,
        seen: &Arc<LoadedTable>,
    ) -> Option<Arc<LoadedTable>> {
        loop {
            // Swapped before the subscription (or since the last wake-up):
            // seen here rather than by the receiver.
            if let Some(now) = state.current()
                && !Arc::ptr_eq(&now, seen)
            {
                return Some(now);
            }
            match tokio::time::timeout_at(self.deadline, self.swaps.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the state is gone (never while serving).
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Ends the hold, counting its `outcome`.
    pub fn end(self, outcome: HoldOutcome) {
        self.metrics.write_held(outcome);
    }
}

impl Drop for WriteHold<'_> {
    fn drop(&mut self) {
        self.metrics.writes_waiting(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unsafe_methods_of_moving_tenants_are_held() {
        for method in ["POST", "PUT", "PATCH", "DELETE", "CONNECT", "PROPFIND"] {
            assert!(holds_writes(TenantStatus::Moving, method), "{method}");
        }
        for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            assert!(!holds_writes(TenantStatus::Moving, method), "{method}");
        }
        for status in [
            TenantStatus::Active,
            TenantStatus::Suspended,
            TenantStatus::Deleted,
        ] {
            assert!(!holds_writes(status, "POST"), "{status:?}");
        }
    }

    #[test]
    fn the_gauge_counts_holds_until_they_end_or_are_dropped() {
        let state = RoutingState::default();
        let metrics = Metrics::new();
        let waiting = |m: &Metrics| {
            let text = String::from_utf8(m.render()).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("switchyard_gateway_writes_waiting "))
                .map(str::to_owned)
        };
        let a = WriteHold::start(&state, Duration::ZERO, &metrics);
        let b = WriteHold::start(&state, Duration::ZERO, &metrics);
        assert_eq!(waiting(&metrics).as_deref(), Some("2"));
        a.end(HoldOutcome::TimedOut);
        drop(b);
        assert_eq!(waiting(&metrics).as_deref(), Some("0"));
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("switchyard_gateway_writes_held_total{outcome=\"timed_out\"} 1"),
            "{text}"
        );
    }

    /// A state in force with a one-tenant snapshot of `version`.
    fn table(version: u64) -> LoadedTable {
        let config = crate::config::Config::from_toml(
            "[gateway]\nregion = \"eu-west\"\nhttp_listen = \"127.0.0.1:0\"\n\
             admin_listen = \"127.0.0.1:1\"\n[source]\nkind = \"file\"\npath = \"r.toml\"\n",
            std::path::Path::new("/tmp/gateway.toml"),
        )
        .unwrap();
        let json = serde_json::json!({
            "version": version,
            "regions": [{"name": "eu-west"}],
            "plans": [{"name": "p", "rate_per_sec": 10, "burst": 10, "max_body_bytes": 1024}],
            "targets": [{"id": "shard-a", "kind": "shard", "region": "eu-west",
                         "pools": {"eu-west": ["127.0.0.1:1"]}}],
            "tenants": [{"id": "t-acme", "slug": "acme", "plan": "p", "region": "eu-west",
                         "target": "shard-a", "status": "moving"}],
        });
        crate::snapshot_file::from_json(json.to_string().as_bytes(), &config, "test").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_with_no_newer_table_runs_out_at_its_deadline() {
        let state = RoutingState::default();
        state.replace(table(1));
        let seen = state.current().unwrap();
        let metrics = Metrics::new();
        let mut hold = WriteHold::start(&state, Duration::from_secs(5), &metrics);
        let started = Instant::now();
        assert!(hold.newer(&state, &seen).await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_swap_during_the_hold_releases_it_with_the_new_table() {
        let state = Arc::new(RoutingState::default());
        state.replace(table(1));
        let seen = state.current().unwrap();
        let metrics = Metrics::new();
        let mut hold = WriteHold::start(&state, Duration::from_secs(5), &metrics);
        let swapper = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            swapper.replace(table(2));
        });
        let started = Instant::now();
        let newer = hold.newer(&state, &seen).await.unwrap();
        assert_eq!(newer.table.version(), 2);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_swap_before_the_hold_started_is_not_missed() {
        let state = RoutingState::default();
        state.replace(table(1));
        let seen = state.current().unwrap();
        // Swapped after the request read the table, before it subscribed.
        state.replace(table(2));
        let metrics = Metrics::new();
        let mut hold = WriteHold::start(&state, Duration::from_secs(5), &metrics);
        let started = Instant::now();
        let newer = hold.newer(&state, &seen).await.unwrap();
        assert_eq!(newer.table.version(), 2);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
