//! One target: connecting with bounded waits, migrating or checking it,
//! and reading its version ([`target_versions`]).

use futures::stream::{self, StreamExt};
use sqlx::PgPool;

use super::report::{
    Outcome, PendingMigration, TargetKind, TargetOutcome, TargetStatus, TargetVersion,
};
use super::{CONNECT_TIMEOUT, FleetError};
use crate::db;
use crate::migrations::{self, Schema};
use crate::secrets::{Dsn, Purpose, SecretsError, SecretsKey};

/// The longest one statement of a migration may run.
const MIGRATION_STATEMENT_TIMEOUT: &str = "15min";

/// The longest a migration waits for a lock (an app transaction, another
/// migrator): failing and retrying beats stalling the app's queries behind it.
const MIGRATION_LOCK_TIMEOUT: &str = "30s";

/// The longest a version probe's query, or its wait for a lock, may run.
const PROBE_TIMEOUT: &str = "10s";

/// A target's row: id, kind, region, status, DSN, sealed password.
type TargetRow = (String, String, String, String, String, Option<Vec<u8>>);

/// A target as stored in the catalog.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) id: String,
    /// The connection string without its password.
    pub(super) dsn: String,
    /// The password, sealed under `SECRETS_KEY`.
    pub(super) sealed: Option<Vec<u8>>,
}

/// One target's migration (or dry-run check); failures land in the outcome.
pub(super) async fn migrate(
    key: Option<&SecretsKey>,
    target: &Stored,
    dry_run: bool,
) -> TargetOutcome {
    let mut outcome = TargetOutcome::new(target.id.clone(), Outcome::Failed);
    let (db, password) = match connect(
        key,
        target,
        MIGRATION_STATEMENT_TIMEOUT,
        MIGRATION_LOCK_TIMEOUT,
    )
    .await
    {
        Ok(connected) => connected,
        Err(error) => {
            outcome.error = Some(error);
            return outcome;
        }
    };
    let done = if dry_run {
        migrations::pending(&db, Schema::Tenant)
            .await
            .map(|pending| {
                outcome.would_apply = pending
                    .into_iter()
                    .map(|(version, description)| PendingMigration {
                        version,
                        description: description.to_owned(),
                    })
                    .collect();
            })
            .map_err(|e| e.to_string())
    } else {
        migrations::apply(&db, Schema::Tenant)
            .await
            .map(|applied| outcome.applied = applied)
            .map_err(|e| format!("migration failed: {e}"))
    };
    match done {
        Ok(()) => {
            outcome.outcome = if !outcome.applied.is_empty() {
                Outcome::Applied
            } else if !outcome.would_apply.is_empty() {
                Outcome::WouldApply
            } else {
                Outcome::UpToDate
            };
            outcome.version = migrations::applied(&db)
                .await
                .ok()
                .and_then(|v| v.last().copied());
        }
        Err(error) => outcome.error = Some(scrub(error, password.as_deref())),
    }
    db.close().await;
    outcome
}

/// Connects to a target with bounded connect, statement and lock waits;
/// also returns the password, to scrub from messages.
async fn connect(
    key: Option<&SecretsKey>,
    target: &Stored,
    statement_timeout: &str,
    lock_timeout: &str,
) -> Result<(PgPool, Option<String>), String> {
    let dsn = Dsn::from_stored(
        target.dsn.clone(),
        target.sealed.as_deref(),
        key,
        Purpose::DsnPassword,
    )
    .map_err(|e| match e {
        SecretsError::NoKey => {
            "its DSN password is sealed and SECRETS_KEY is not set: cannot connect".to_owned()
        }
        other => other.to_string(),
    })?;
    let options = dsn
        .connect_options()
        .map_err(|e| format!("its stored DSN {e}"))?
        .application_name("switchyard-tenant-admin")
        .options([
            ("statement_timeout", statement_timeout),
            ("lock_timeout", lock_timeout),
        ]);
    let pool = db::connect(options, 1, CONNECT_TIMEOUT)
        .await
        .map_err(|e| scrub(format!("cannot connect: {e}"), dsn.password.as_deref()))?;
    Ok((pool, dsn.password))
}

/// `message` with `password` blanked out: sqlx's messages do not include it,
/// and this keeps it so should a server or driver ever echo it.
fn scrub(message: String, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() && message.contains(p) => message.replace(p, "***"),
        _ => message,
    }
}

/// Every target's tenant-schema version, read `concurrency` at once with
/// bounded waits; an unreachable target carries its error. Offline targets
/// are listed, not contacted.
///
/// # Errors
///
/// [`FleetError::Catalog`] when the targets cannot be listed.
pub async fn target_versions(
    catalog: &PgPool,
    key: Option<&SecretsKey>,
    concurrency: usize,
) -> Result<Vec<TargetVersion>, FleetError> {
    let rows: Vec<TargetRow> = sqlx::query_as(
        "SELECT id::text, kind::text, region::text, status::text, dsn, dsn_password_enc \
         FROM targets ORDER BY id",
    )
    .fetch_all(catalog)
    .await?;
    Ok(stream::iter(rows)
        .map(|(id, kind, region, status, dsn, sealed)| async move {
            let status = match status.as_str() {
                "active" => TargetStatus::Active,
                "draining" => TargetStatus::Draining,
                _ => TargetStatus::Offline,
            };
            let mut version = TargetVersion {
                kind: if kind == "dedicated" {
                    TargetKind::Dedicated
                } else {
                    TargetKind::Shard
                },
                region,
                status,
                applied: Vec::new(),
                version: None,
                pending: None,
                error: None,
                id,
            };
            if status == TargetStatus::Offline {
                version.error = Some("offline: not contacted".to_owned());
                return version;
            }
            let target = Stored {
                id: version.id.clone(),
                dsn,
                sealed,
            };
            match probe(key, &target).await {
                Ok(applied) => {
                    version.version = applied.last().copied();
                    version.pending = Some(
                        Schema::Tenant
                            .migrations()
                            .iter()
                            .filter(|(v, _)| !applied.contains(v))
                            .count(),
                    );
                    version.applied = applied;
                }
                Err(error) => version.error = Some(error),
            }
            version
        })
        .buffered(concurrency.max(1))
        .collect()
        .await)
}

/// The versions applied to a target's database.
async fn probe(key: Option<&SecretsKey>, target: &Stored) -> Result<Vec<i64>, String> {
    let (db, password) = connect(key, target, PROBE_TIMEOUT, PROBE_TIMEOUT).await?;
    let applied = migrations::applied(&db)
        .await
        .map_err(|e| scrub(e.to_string(), password.as_deref()));
    db.close().await;
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_blanks_the_password_only() {
        assert_eq!(
            scrub("auth failed for hunter2".into(), Some("hunter2")),
            "auth failed for ***"
        );
        assert_eq!(scrub("refused".into(), Some("hunter2")), "refused");
        assert_eq!(scrub("refused".into(), Some("")), "refused");
        assert_eq!(scrub("refused".into(), None), "refused");
    }
}
