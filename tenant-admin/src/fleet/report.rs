//! What jobs and probes report: serialisable, and documented for the API's
//! OpenAPI document.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::migrations::Schema;

/// A job's state, as in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Pending,
    /// Claimed by a worker holding a lease.
    Running,
    /// Every target applied.
    Succeeded,
    /// At least one target failed.
    Failed,
}

impl JobState {
    pub(super) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        })
    }
}

/// What became of one target in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Migrations were applied now.
    Applied,
    /// Nothing was pending.
    UpToDate,
    /// Dry run: migrations are pending.
    WouldApply,
    /// Applied by an earlier attempt of this job; not contacted again.
    Earlier,
    /// Unreachable, or a migration failed.
    Failed,
}

/// A migration not yet applied to a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingMigration {
    /// Its number, e.g. 1 for `0001_initial.sql`.
    pub version: i64,
    /// Its description, e.g. `initial`.
    pub description: String,
}

/// One target's part of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetOutcome {
    /// The target's id.
    pub target: String,
    /// What happened.
    pub outcome: Outcome,
    /// Versions applied by this attempt.
    pub applied: Vec<i64>,
    /// Dry run: what would be applied.
    pub would_apply: Vec<PendingMigration>,
    /// The latest version applied to the database afterwards, when known.
    pub version: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// How many targets ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    /// Every target of the job.
    pub targets: usize,
    /// Migrated now.
    pub applied: usize,
    /// Nothing pending.
    pub up_to_date: usize,
    /// Dry run: something pending.
    pub would_apply: usize,
    /// Done by an earlier attempt.
    pub earlier: usize,
    /// Unreachable or failed.
    pub failed: usize,
}

/// A finished job, also stored as its `result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobOutcome {
    /// The job's id.
    pub job_id: i64,
    /// `succeeded` when no target failed, else `failed`.
    pub state: JobState,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The tenant schema's latest version in this build.
    pub schema_version: i64,
    /// The targets' outcomes, counted.
    pub counts: Counts,
    /// Per target, by id.
    pub targets: Vec<TargetOutcome>,
}

/// A shard or a dedicated cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A shared database with many tenants.
    Shard,
    /// One tenant's own database.
    Dedicated,
}

/// A target's status in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    /// Takes new tenants.
    Active,
    /// Serves its tenants, takes no new ones.
    Draining,
    /// Out of service; not migrated unless named, not probed.
    Offline,
}

/// One target's tenant-schema version, for `GET /v1/migrations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetVersion {
    /// The target's id.
    pub id: String,
    /// Shard or dedicated cluster.
    pub kind: TargetKind,
    /// Where its database lives.
    pub region: String,
    /// Its status in the catalog.
    pub status: TargetStatus,
    /// The versions applied to its database.
    pub applied: Vec<i64>,
    /// The latest of them; `None` when none is, or it could not be read.
    pub version: Option<i64>,
    /// How many of this build's migrations it lacks; `None` when unknown.
    pub pending: Option<usize>,
    /// Why it could not be read.
    pub error: Option<String>,
}

impl TargetOutcome {
    pub(super) fn new(target: String, outcome: Outcome) -> Self {
        Self {
            target,
            outcome,
            applied: Vec::new(),
            would_apply: Vec::new(),
            version: None,
            error: None,
        }
    }
}

impl JobOutcome {
    pub(super) fn new(job_id: i64, dry_run: bool, targets: Vec<TargetOutcome>) -> Self {
        let mut counts = Counts {
            targets: targets.len(),
            ..Counts::default()
        };
        for target in &targets {
            *match target.outcome {
                Outcome::Applied => &mut counts.applied,
                Outcome::UpToDate => &mut counts.up_to_date,
                Outcome::WouldApply => &mut counts.would_apply,
                Outcome::Earlier => &mut counts.earlier,
                Outcome::Failed => &mut counts.failed,
            } += 1;
        }
        Self {
            job_id,
            state: if counts.failed == 0 {
                JobState::Succeeded
            } else {
                JobState::Failed
            },
            dry_run,
            schema_version: Schema::Tenant.latest(),
            counts,
            targets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_succeeds_only_when_no_target_failed() {
        let ok = JobOutcome::new(
            7,
            false,
            vec![
                TargetOutcome::new("a".into(), Outcome::Applied),
                TargetOutcome::new("b".into(), Outcome::Earlier),
            ],
        );
        assert_eq!(ok.state, JobState::Succeeded);
        assert_eq!(
            (ok.counts.targets, ok.counts.applied, ok.counts.earlier),
            (2, 1, 1)
        );
        let bad = JobOutcome::new(
            7,
            false,
            vec![TargetOutcome::new("a".into(), Outcome::Failed)],
        );
        assert_eq!(bad.state, JobState::Failed);
        let json = serde_json::to_value(&bad).unwrap();
        assert_eq!(json["targets"][0]["outcome"], "failed");
        assert_eq!(json["state"], "failed");
    }
}
