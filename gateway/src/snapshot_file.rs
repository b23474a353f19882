//! Turning a routing snapshot (a file, or the JSON the tenant-admin feed
//! serves) into a routing table this gateway can use: parsed, validated
//! against the gateway's base domains, and known to contain the gateway's
//! region. Used at start-up, by the file watcher and the feed follower on
//! every new version, and by `gateway --check`.

use std::path::Path;
use std::sync::Arc;

use router::{BuildOptions, Problems, RegionIdx, RoutingTable, Snapshot, SnapshotError};

use crate::config::{Config, Source};
use crate::limits::TenantLimits;
use crate::metrics::RequestCounters;
use crate::state::RoutingState;
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

/// Why a snapshot cannot be used. Each string is one problem, ready for a
/// log line or `--check` output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot {origin} is not usable:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
pub struct SnapshotRejected {
    /// Where it came from: the file's path, or `from the feed at <url>`.
    pub origin: String,
    /// Every problem found.
    pub problems: Vec<String>,
}

impl SnapshotRejected {
    fn new(origin: &str, problems: Vec<String>) -> Self {
        Self {
            origin: origin.to_owned(),
            problems,
        }
    }

    /// A snapshot that could not be read or parsed.
    fn unreadable(origin: &str, e: SnapshotError) -> Self {
        match e {
            SnapshotError::Invalid(p) => Self::new(origin, listed(&p)),
            other => Self::new(origin, vec![other.to_string()]),
        }
    }
}

fn listed(problems: &Problems) -> Vec<String> {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.location, p.message))
        .collect()
}

/// Reads, validates and compiles the snapshot at `path` (TOML or JSON) for
/// `config`.
///
/// # Errors
///
/// [`SnapshotRejected`] listing every problem: unreadable or unparsable
/// file, invalid snapshot, or a snapshot without the gateway's region.
pub fn load(path: &Path, config: &Config) -> Result<LoadedTable, SnapshotRejected> {
    let origin = path.display().to_string();
    let snapshot =
        Snapshot::from_path(path).map_err(|e| SnapshotRejected::unreadable(&origin, e))?;
    compile(&snapshot, config, &origin)
}

/// Parses, validates and compiles a JSON snapshot (the feed's body) for
/// `config`; `origin` names where it came from in messages.
///
/// # Errors
///
/// As [`load`].
pub fn from_json(
    json: &[u8],
    config: &Config,
    origin: &str,
) -> Result<LoadedTable, SnapshotRejected> {
    let snapshot = std::str::from_utf8(json)
        .map_err(|e| SnapshotRejected::new(origin, vec![format!("not UTF-8: {e}")]))
        .and_then(|text| {
            Snapshot::from_json(text).map_err(|e| SnapshotRejected::unreadable(origin, e))
        })?;
    compile(&snapshot, config, origin)
}

/// The problem reported for each certificate reference in a snapshot file.
pub const FILE_CERTIFICATE_PROBLEM: &str = "certificates in a snapshot file need [source] kind = \"admin\"; put PEM files in tls.cert_dir instead";

/// Validates `snapshot` against the gateway's base domains, compiles it and
/// finds the gateway's region in it. A snapshot file (`[source] kind =
/// "file"`) may not refer to certificates: only tenant-admin can hand
/// them out.
fn compile(
    snapshot: &Snapshot,
    config: &Config,
    origin: &str,
) -> Result<LoadedTable, SnapshotRejected> {
    let options = BuildOptions {
        base_domains: config.base_domains.clone(),
    };
    let mut problems: Vec<String> = match config.source {
        Source::File { .. } => (0..snapshot.certificates.len())
            .map(|i| format!("certificates[{i}]: {FILE_CERTIFICATE_PROBLEM}"))
            .collect(),
        Source::Admin { .. } => Vec::new(),
    };
    let table = match RoutingTable::build(snapshot, &options) {
        Ok(table) if problems.is_empty() => table,
        Ok(_) => return Err(SnapshotRejected::new(origin, problems)),
        Err(p) => {
            let mut all = listed(&p);
            all.append(&mut problems);
            return Err(SnapshotRejected::new(origin, all));
        }
    };
    let region = table.region(config.region.as_str()).ok_or_else(|| {
        let known: Vec<&str> = table.regions().iter().map(|r| r.as_str()).collect();
        SnapshotRejected::new(origin, vec![format!(
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

/// Builds a table with `build` and readies it for serving next to the
/// table in force in `state`, on a blocking thread: parsing and compiling a
/// large snapshot takes a while and must not stall the runtime.
///
/// # Errors
///
/// What `build` rejects, or a build task that died (named after `origin`).
pub async fn build_off_runtime(
    build: impl FnOnce() -> Result<LoadedTable, SnapshotRejected> + Send + 'static,
    origin: &str,
    upstreams: &Arc<Upstreams>,
    state: &RoutingState,
) -> Result<LoadedTable, SnapshotRejected> {
    let upstreams = upstreams.clone();
    let previous = state.current();
    tokio::task::spawn_blocking(move || {
        let mut loaded = build()?;
        for p in loaded.prepare(&upstreams, previous.as_deref()) {
            eprintln!("gateway: {p}");
        }
        Ok(loaded)
    })
    .await
    .unwrap_or_else(|e| {
        Err(SnapshotRejected::new(
            origin,
            vec![format!("the snapshot build task failed: {e}")],
        ))
    })
}
