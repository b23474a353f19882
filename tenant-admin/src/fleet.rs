//! Tenant-schema migrations across the fleet: every shard and dedicated
//! cluster registered in the catalog's `targets`, migrated by a resumable
//! `migrate_tenants` job (`tenant-admin migrate tenants`, and the REST
//! layer's `POST /v1/migrations/apply`), and the fleet's versions for
//! `GET /v1/migrations`.
//!
//! # A job
//!
//! [`start_job`] writes a `jobs` row (kind `migrate_tenants`, params
//! `{targets, dry_run, version, concurrency}`) and one `job_targets` row per
//! target, all `pending`; [`run_job`] claims it and works through them:
//!
//! - Which targets: every target whose status is not `offline` (shards and
//!   dedicated clusters, `draining` ones too: they still serve tenants), or
//!   exactly the ones named, whatever their status — naming one is asking
//!   for it. An unknown name is refused before anything is written.
//! - Claiming sets the job `running` with a lease ([`LEASE`]) and bumps
//!   `attempts`; the lease is renewed while targets are worked on. A
//!   `pending` job, or a `running` one whose lease ran out (its worker
//!   died), can be claimed; `attempts` is the fencing token, so a worker that
//!   lost its lease writes nothing more and stops.
//! - Each target, at most `concurrency` at once: `running`, then connect
//!   ([`CONNECT_TIMEOUT`], statements bounded by `statement_timeout` and
//!   `lock_timeout`), apply the pending tenant migrations, then `applied`, or
//!   `failed` with the reason (never a password). One failed or unreachable
//!   database never stops the others.
//! - Finally the job is `succeeded` when every target is applied, else
//!   `failed`, with a [`JobOutcome`] as its `result`.
//! - A dry run connects and lists each target's pending migrations into the
//!   result, changing no database; its targets end `applied`, meaning
//!   "checked".
//!
//! # Resuming
//!
//! One non-dry-run job is open (`pending` or `running`) at a time, and a
//! re-run resumes where the last one stopped. [`start_job`] looks at the
//! latest non-dry-run `migrate_tenants` job:
//!
//! - `failed`, asked for the same targets (the same names, or "all") and the
//!   same schema version: it is resumed — its `applied` targets stay applied
//!   and are not contacted again, the others go back to `pending`, targets
//!   registered since are added (when it covers all targets), and the job is
//!   `pending` again under the same id.
//! - open with the same targets and version: that job is returned, to be
//!   run (or taken over once its lease expires).
//! - open for other targets, and alive (`running` under a lease, or
//!   `pending` for less than [`LEASE`]): [`FleetError::Busy`].
//! - open for other targets but abandoned: it is closed as `failed`
//!   ("abandoned") and a new job is created.
//! - otherwise (none, `succeeded`, or other targets): a new job.
//!
//! A target that is already migrated costs nothing in a new job either: the
//! migrator skips applied versions (it reports "up to date"). Dry runs are
//! never resumed and never block.

//!
//! # Layout
//!
//! - `job.rs`: [`start_job`] and [`run_job`]: params, resuming, the lease.
//! - `target.rs`: one target — connecting, migrating, probing — and
//!   [`target_versions`].
//! - `report.rs`: what jobs and probes report ([`JobOutcome`],
//!   [`TargetVersion`]), serialisable and documented for the API.

mod job;
mod report;
mod target;

use std::time::Duration;

pub use job::{run_job, start_job};
pub use report::{
    Counts, JobOutcome, JobState, Outcome, PendingMigration, TargetKind, TargetOutcome,
    TargetStatus, TargetVersion,
};
pub use target::target_versions;

/// The `jobs.kind` of a tenant-schema migration.
pub const JOB_KIND: &str = "migrate_tenants";

/// How many targets are worked on at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// How long connecting to a target may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a claimed job is held without renewal; renewed every third of it.
pub const LEASE: Duration = Duration::from_secs(60);

/// What to migrate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetOptions {
    /// Target ids; `None`: every target that is not offline.
    pub targets: Option<Vec<String>>,
    /// Targets worked on at once, recorded in the job's params; `run_job`
    /// takes its own.
    pub concurrency: usize,
    /// List pending migrations, change no database.
    pub dry_run: bool,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            targets: None,
            concurrency: DEFAULT_CONCURRENCY,
            dry_run: false,
        }
    }
}

/// Why a fleet migration could not start or finish. A target that fails is
/// not an error: it is reported in the [`JobOutcome`].
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Named targets that are not in the catalog.
    #[error("unknown target{}: {}", if .0.len() == 1 { "" } else { "s" }, .0.join(", "))]
    UnknownTargets(Vec<String>),
    /// A target list was given but it is empty.
    #[error("no target chosen: name at least one, or none for all")]
    NoTargets,
    /// No `migrate_tenants` job has this id.
    #[error("there is no migrate_tenants job {0}")]
    NoSuchJob(i64),
    /// Another migration job, for other targets, is open and alive.
    #[error(
        "migration job {0} is still open for other targets; wait for it, or re-run it with its targets"
    )]
    Busy(i64),
    /// The job is being run by a worker whose lease has not run out.
    #[error("migration job {0} is being run by another worker")]
    Leased(i64),
    /// The job has finished; [`start_job`] resumes a failed one.
    #[error("migration job {id} has already {state}")]
    Finished {
        /// The job.
        id: i64,
        /// `succeeded` or `failed`.
        state: JobState,
    },
    /// Another worker took the job over (this one's lease ran out).
    #[error("lost the lease on migration job {0} to another worker")]
    LeaseLost(i64),
    /// A job's `params` are not what this version writes.
    #[error("migration job {id} has unreadable params: {source}")]
    BadParams {
        /// The job.
        id: i64,
        /// Why.
        source: serde_json::Error,
    },
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] sqlx::Error),
}
