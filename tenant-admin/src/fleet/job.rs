//! A `migrate_tenants` job: creating or resuming it ([`start_job`]), and
//! claiming and running it under a lease ([`run_job`]). The rules are in
//! the [module docs](super).

use std::collections::BTreeSet;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};

use super::report::{JobOutcome, JobState, Outcome, TargetOutcome};
use super::target::{self, Stored};
use super::{FleetError, FleetOptions, JOB_KIND, LEASE};
use crate::migrations::Schema;
use crate::secrets::SecretsKey;

/// Serialises [`start_job`]s (`pg_advisory_xact_lock`): "mtenants" in ASCII.
const START_LOCK: i64 = 0x6d74_656e_616e_7473;

/// What a job was asked to do: its `params`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Params {
    /// Sorted target ids, or `None` for all.
    targets: Option<Vec<String>>,
    dry_run: bool,
    /// The tenant schema's latest version when the job was made: a job made
    /// by an older build is not resumed, its "applied" means less.
    version: i64,
    concurrency: usize,
}

impl Params {
    fn same_work(&self, other: &Self) -> bool {
        self.targets == other.targets
            && self.dry_run == other.dry_run
            && self.version == other.version
    }
}

/// Creates (or resumes, see the module docs) a `migrate_tenants` job; returns
/// its id, to pass to [`run_job`].
///
/// # Errors
///
/// [`FleetError::UnknownTargets`] and [`FleetError::NoTargets`] for a bad
/// choice, [`FleetError::Busy`] when another live job is open, and
/// [`FleetError::Catalog`]. Nothing is written on error.
pub async fn start_job(catalog: &PgPool, opts: &FleetOptions) -> Result<i64, FleetError> {
    let chosen = match &opts.targets {
        None => None,
        Some(ids) => {
            let ids: BTreeSet<String> = ids.iter().map(|id| id.trim().to_owned()).collect();
            if ids.is_empty() {
                return Err(FleetError::NoTargets);
            }
            Some(ids.into_iter().collect::<Vec<_>>())
        }
    };
    let params = Params {
        targets: chosen,
        dry_run: opts.dry_run,
        version: Schema::Tenant.latest(),
        concurrency: opts.concurrency.max(1),
    };
    let mut tx = catalog.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(START_LOCK)
        .execute(&mut *tx)
        .await?;
    if let Some(ids) = &params.targets {
        let known: Vec<String> =
            sqlx::query_scalar("SELECT id::text FROM targets WHERE id = ANY($1::text[])")
                .bind(ids)
                .fetch_all(&mut *tx)
                .await?;
        let unknown: Vec<String> = ids
            .iter()
            .filter(|id| !known.contains(id))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(FleetError::UnknownTargets(unknown));
        }
    }
    let id = match latest_open_or_failed(&mut tx, &params).await? {
        Some(id) => id,
        None => {
            let id: i64 =
                sqlx::query_scalar("INSERT INTO jobs (kind, params) VALUES ($1, $2) RETURNING id")
                    .bind(JOB_KIND)
                    .bind(Json(&params))
                    .fetch_one(&mut *tx)
                    .await?;
            add_targets(&mut tx, id, &params).await?;
            id
        }
    };
    tx.commit().await?;
    Ok(id)
}

/// The job to resume instead of creating one, if any, made ready to run;
/// closes an abandoned one that is in the way.
async fn latest_open_or_failed(
    tx: &mut Transaction<'_, Postgres>,
    params: &Params,
) -> Result<Option<i64>, FleetError> {
    if params.dry_run {
        return Ok(None);
    }
    let latest: Option<(i64, String, Json<serde_json::Value>, bool)> = sqlx::query_as(
        "SELECT id, state::text, params, \
                CASE WHEN state = 'running' THEN coalesce(lease_until > now(), false) \
                     ELSE updated_at > now() - make_interval(secs => $2) END \
         FROM jobs \
         WHERE kind = $1 AND NOT coalesce((params->>'dry_run')::boolean, false) \
         ORDER BY id DESC LIMIT 1 FOR UPDATE",
    )
    .bind(JOB_KIND)
    .bind(LEASE.as_secs_f64())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((id, state, Json(theirs), alive)) = latest else {
        return Ok(None);
    };
    let same =
        serde_json::from_value::<Params>(theirs).is_ok_and(|theirs| theirs.same_work(params));
    match JobState::parse(&state) {
        Some(JobState::Running) if same => Ok(Some(id)),
        Some(JobState::Pending) if same => {
            add_targets(tx, id, params).await?;
            Ok(Some(id))
        }
        Some(JobState::Failed) if same => {
            sqlx::query(
                "UPDATE job_targets SET state = 'pending', error = NULL, updated_at = now() \
                 WHERE job_id = $1 AND state <> 'applied'",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "UPDATE jobs SET state = 'pending', error = NULL, lease_until = NULL, \
                 updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
            add_targets(tx, id, params).await?;
            Ok(Some(id))
        }
        Some(JobState::Pending | JobState::Running) if alive => Err(FleetError::Busy(id)),
        Some(JobState::Pending | JobState::Running) => {
            sqlx::query(
                "UPDATE jobs SET state = 'failed', lease_until = NULL, updated_at = now(), \
                 error = 'abandoned: no worker held it, and another migration was asked for' \
                 WHERE id = $1",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Adds the job's targets that it lacks (all of them for a new job).
async fn add_targets(
    tx: &mut Transaction<'_, Postgres>,
    job_id: i64,
    params: &Params,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO job_targets (job_id, target_id) \
         SELECT $1, id FROM targets \
         WHERE CASE WHEN $2::text[] IS NULL THEN status <> 'offline' ELSE id = ANY($2) END \
         ON CONFLICT DO NOTHING",
    )
    .bind(job_id)
    .bind(&params.targets)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Claims job `job_id` and migrates its targets that are not yet applied,
/// `concurrency` at once; `key` opens sealed DSN passwords.
///
/// # Errors
///
/// [`FleetError::NoSuchJob`], [`FleetError::Leased`] and
/// [`FleetError::Finished`] when the job cannot be claimed,
/// [`FleetError::LeaseLost`] when another worker took it over meanwhile,
/// and [`FleetError::Catalog`]. Targets that fail are reported in the
/// outcome, not as an error.
pub async fn run_job(
    catalog: &PgPool,
    key: Option<&SecretsKey>,
    job_id: i64,
    concurrency: usize,
) -> Result<JobOutcome, FleetError> {
    let (lease, params) = Lease::claim(catalog, job_id).await?;
    let rows: Vec<(String, String, String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT jt.target_id::text, jt.state::text, t.dsn, t.dsn_password_enc \
         FROM job_targets jt JOIN targets t ON t.id = jt.target_id \
         WHERE jt.job_id = $1 ORDER BY jt.target_id",
    )
    .bind(job_id)
    .fetch_all(catalog)
    .await?;
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut todo = Vec::new();
    for (target, state, dsn, sealed) in rows {
        if state == "applied" {
            outcomes.push(TargetOutcome::new(target, Outcome::Earlier));
        } else {
            todo.push(Stored {
                id: target,
                dsn,
                sealed,
            });
        }
    }
    let work = stream::iter(todo)
        .map(|target| lease.migrate(key, target, params.dry_run))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>();
    tokio::select! {
        done = work => outcomes.extend(done),
        () = lease.keep_alive() => return Err(FleetError::LeaseLost(job_id)),
    }
    outcomes.sort_by(|a, b| a.target.cmp(&b.target));
    let outcome = JobOutcome::new(job_id, params.dry_run, outcomes);
    lease.finish(&outcome).await?;
    Ok(outcome)
}

/// A claimed job; every write is fenced by `attempt`, so a worker whose
/// lease was taken over writes nothing more.
#[derive(Debug)]
struct Lease<'a> {
    catalog: &'a PgPool,
    job_id: i64,
    /// `jobs.attempts` as this claim set it.
    attempt: i32,
}

impl<'a> Lease<'a> {
    async fn claim(catalog: &'a PgPool, job_id: i64) -> Result<(Self, Params), FleetError> {
        let claimed: Option<(i32, Json<serde_json::Value>)> = sqlx::query_as(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, error = NULL, \
                    lease_until = now() + make_interval(secs => $3), updated_at = now() \
             WHERE id = $1 AND kind = $2 \
               AND (state = 'pending' \
                    OR (state = 'running' AND coalesce(lease_until < now(), true))) \
             RETURNING attempts, params",
        )
        .bind(job_id)
        .bind(JOB_KIND)
        .bind(LEASE.as_secs_f64())
        .fetch_optional(catalog)
        .await?;
        let Some((attempt, Json(params))) = claimed else {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state::text FROM jobs WHERE id = $1 AND kind = $2")
                    .bind(job_id)
                    .bind(JOB_KIND)
                    .fetch_optional(catalog)
                    .await?;
            return Err(match state.as_deref().and_then(JobState::parse) {
                None => FleetError::NoSuchJob(job_id),
                Some(JobState::Pending | JobState::Running) => FleetError::Leased(job_id),
                Some(state) => FleetError::Finished { id: job_id, state },
            });
        };
        let lease = Self {
            catalog,
            job_id,
            attempt,
        };
        match serde_json::from_value(params) {
            Ok(params) => Ok((lease, params)),
            Err(source) => {
                let error = FleetError::BadParams { id: job_id, source };
                lease.fail(&error.to_string()).await?;
                Err(error)
            }
        }
    }

    /// Renews the lease every third of [`LEASE`]; returns once it was lost.
    async fn keep_alive(&self) {
        let every = LEASE / 3;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticks.tick().await;
            let renewed = sqlx::query(
                "UPDATE jobs SET lease_until = now() + make_interval(secs => $3), \
                 updated_at = now() WHERE id = $1 AND attempts = $2 AND state = 'running'",
            )
            .bind(self.job_id)
            .bind(self.attempt)
            .bind(LEASE.as_secs_f64())
            .execute(self.catalog)
            .await;
            match renewed {
                Ok(done) if done.rows_affected() == 0 => return,
                Ok(_) => {}
                // A catalog hiccup: try again at the next tick, the lease
                // has two more in it.
                Err(e) => tracing::warn!(job = self.job_id, "renewing the lease failed: {e}"),
            }
        }
    }

    /// Records a target's state; a catalog failure here is logged, the
    /// target's work is not undone by it.
    async fn mark(&self, target: &str, state: &str, error: Option<&str>) {
        let marked = sqlx::query(
            "UPDATE job_targets SET state = $3::job_target_state, error = $4, updated_at = now() \
             WHERE job_id = $1 AND target_id = $2 \
               AND EXISTS (SELECT FROM jobs WHERE id = $1 AND attempts = $5)",
        )
        .bind(self.job_id)
        .bind(target)
        .bind(state)
        .bind(error)
        .bind(self.attempt)
        .execute(self.catalog)
        .await;
        if let Err(e) = marked {
            tracing::warn!(
                job = self.job_id,
                target,
                "recording the target as {state} failed: {e}"
            );
        }
    }

    /// Migrates (or, in a dry run, checks) one target and records how it went.
    async fn migrate(
        &self,
        key: Option<&SecretsKey>,
        stored: Stored,
        dry_run: bool,
    ) -> TargetOutcome {
        self.mark(&stored.id, "running", None).await;
        let outcome = target::migrate(key, &stored, dry_run).await;
        match &outcome.error {
            None => self.mark(&stored.id, "applied", None).await,
            Some(error) => self.mark(&stored.id, "failed", Some(error)).await,
        }
        outcome
    }

    async fn finish(&self, outcome: &JobOutcome) -> Result<(), FleetError> {
        let error = (outcome.counts.failed > 0).then(|| {
            let failed: Vec<&str> = outcome
                .targets
                .iter()
                .filter(|t| t.outcome == Outcome::Failed)
                .map(|t| t.target.as_str())
                .collect();
            format!(
                "{} of {} targets failed: {}",
                failed.len(),
                outcome.counts.targets,
                failed.join(", ")
            )
        });
        let result = serde_json::to_value(outcome).unwrap_or_default();
        let done = sqlx::query(
            "UPDATE jobs SET state = $3::job_state, result = $4, error = $5, lease_until = NULL, \
             updated_at = now() WHERE id = $1 AND attempts = $2",
        )
        .bind(self.job_id)
        .bind(self.attempt)
        .bind(outcome.state.to_string())
        .bind(Json(result))
        .bind(error)
        .execute(self.catalog)
        .await?;
        if done.rows_affected() == 0 {
            return Err(FleetError::LeaseLost(self.job_id));
        }
        Ok(())
    }

    async fn fail(&self, error: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET state = 'failed', error = $3, lease_until = NULL, updated_at = now() \
             WHERE id = $1 AND attempts = $2",
        )
        .bind(self.job_id)
        .bind(self.attempt)
        .bind(error)
        .execute(self.catalog)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_needs_the_same_targets_and_version() {
        let all = Params {
            targets: None,
            dry_run: false,
            version: 1,
            concurrency: 4,
        };
        assert!(all.same_work(&Params {
            concurrency: 8,
            ..all.clone()
        }));
        assert!(!all.same_work(&Params {
            targets: Some(vec!["shard-1".into()]),
            ..all.clone()
        }));
        assert!(!all.same_work(&Params {
            version: 2,
            ..all.clone()
        }));
    }
}
