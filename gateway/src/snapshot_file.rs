//! Loading a routing snapshot file into a routing table this gateway can
//! use: parsed, validated against the gateway's base domains, and known to
//! contain the gateway's region. Used at start-up, by the file watcher on
//! every change, and by `gateway --check`.

use std::path::Path;

use router::{BuildOptions, RegionIdx, RoutingTable, Snapshot};

use crate::config::Config;
use crate::limits::TenantLimits;
use crate::metrics::RequestCounters;
use crate::upstreams::{Balancers, Upstreams};

/// A routing table and this gateway's region in it.
#[derive(Debug)]
pub struct LoadedTable {
    /// The compiled snapshot.
    pub table: RoutingTable,
    /// The gateway's region, resolved once per table.
    pub region: RegionIdx,
    /// A load balancer per pool; empty until attached for serving.
    pub balancers: Balancers,
    /// Request counters per target; empty until the snapshot is accepted.
    pub counters: RequestCounters,
    /// Each tenant's rate-limit state; empty until prepared for serving.
    pub limits: TenantLimits,
}

impl LoadedTable {
    /// Readies the table for serving: a balancer per pool, and each
    /// tenant's rate-limit state carried over from `previous` (the table in
    /// force, if any). Returns what could not be set up.
    pub fn prepare(
        &mut self,
        upstreams: &Upstreams,
        previous: Option<&LoadedTable>,
    ) -> Vec<String> {
        self.limits = TenantLimits::for_table(&self.table, previous.map(|p| (&p.table, &p.limits)));
        upstreams.attach(self)
    }
}

/// Why a snapshot file cannot be used. Each string is one problem, ready
/// for a log line or `--check` output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot {path} is not usable:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
pub struct SnapshotRejected {
    /// The file.
    pub path: String,
    /// Every problem found.
    pub problems: Vec<String>,
}

/// Reads, validates and compiles the snapshot at `path` for `config`.
///
/// # Errors
///
/// [`SnapshotRejected`] listing every problem: unreadable or unparsable
/// file, invalid snapshot, or a snapshot without the gateway's region.
pub fn load(path: &Path, config: &Config) -> Result<LoadedTable, SnapshotRejected> {
    let rejected = |problems: Vec<String>| SnapshotRejected {
        path: path.display().to_string(),
        problems,
    };
    let snapshot = Snapshot::from_path(path).map_err(|e| match e {
        router::SnapshotError::Invalid(p) => rejected(
            p.iter()
                .map(|p| format!("{}: {}", p.location, p.message))
                .collect(),
        ),
        other => rejected(vec![other.to_string()]),
    })?;
    let options = BuildOptions {
        base_domains: config.base_domains.clone(),
    };
    let table = RoutingTable::build(&snapshot, &options).map_err(|p| {
        rejected(
            p.iter()
                .map(|p| format!("{}: {}", p.location, p.message))
                .collect(),
        )
    })?;
    let region = table.region(config.region.as_str()).ok_or_else(|| {
        let known: Vec<&str> = table.regions().iter().map(|r| r.as_str()).collect();
        rejected(vec![format!(
            "regions: the gateway's region {:?} (gateway.region in {}) is not in the snapshot, which has {known:?}",
            config.region.as_str(),
            config.path.display()
        )])
    })?;
    Ok(LoadedTable {
        table,
        region,
        balancers: Balancers::default(),
        counters: RequestCounters::default(),
        limits: TenantLimits::default(),
    })
}
