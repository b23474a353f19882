//! Long-running work, kept as rows of `jobs` so it survives a crash: a job
//! is claimed with a lease; a job whose process died is taken over when
//! its lease runs out; a failed job is retried with backoff. Requests run
//! their own job at once ([`run_or_wait`]); the worker ([`start_worker`])
//! picks up whatever was left behind.
//!
//! Kinds: [`PROVISION`] makes a placed tenant exist in its database, then
//! routes it; [`PURGE`] removes a deleted tenant's rows from its database;
//! [`crate::moves::MOVE`] moves a tenant to another target.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::api::request::audit;
use crate::app::AppState;
use crate::migrations::{self, Schema};
use crate::secrets::Purpose;
use crate::tenant_data;

/// Provisions a placed tenant.
pub const PROVISION: &str = "provision_tenant";
/// Removes a deleted tenant's rows.
pub const PURGE: &str = "purge_tenant";

/// How long a claimed job is ours before another worker may take it over.
const LEASE_SECS: f64 = 60.0;
/// Retries of a failed job before it stays failed.
const MAX_ATTEMPTS: i32 = 12;
/// How long connecting to a tenant database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates a pending job in `tx`; its id.
///
/// # Errors
///
/// When the catalog fails.
pub async fn create(tx: &mut PgConnection, kind: &str, params: &Value) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO jobs (kind, params) VALUES ($1, $2) RETURNING id")
        .bind(kind)
        .bind(params)
        .fetch_one(tx)
        .await
}

/// Claims the job if it is runnable now; its kind and params.
async fn claim(db: &PgPool, id: i64) -> Result<Option<(String, Value)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, \
            lease_until = now() + make_interval(secs => $2), updated_at = now() \
         WHERE id = $1 AND (state IN ('pending', 'failed') \
            OR (state = 'running' AND lease_until < now())) \
         RETURNING kind, params",
    )
    .bind(id)
    .bind(LEASE_SECS)
    .fetch_optional(db)
    .await
}

/// Runs job `id` if nobody else is, else waits for whoever is; returns
/// when it is done, failed, or `wait` has passed.
pub async fn run_or_wait(st: Arc<AppState>, id: i64, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    match claim(&st.db, id).await {
        Ok(Some((kind, params))) => {
            // Run to the end (and record the outcome) even when the caller
            // stops waiting: a request timing out must not cut a job
            // half-way or leave it `running` until its lease runs out.
            let run = tokio::spawn(execute(st.clone(), id, kind, params));
            let _ = tokio::time::timeout_at(deadline, run).await;
        }
        Ok(None) => {
            while tokio::time::Instant::now() < deadline {
                let state: Result<Option<String>, _> =
                    sqlx::query_scalar("SELECT state::text FROM jobs WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&st.db)
                        .await;
                if !matches!(
                    state.as_ref().map(|s| s.as_deref()),
                    Ok(Some("pending" | "running"))
                ) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(e) => tracing::warn!(job = id, error = %e, "cannot claim job"),
    }
}

/// Runs a claimed job to its end and records the outcome.
async fn execute(st: Arc<AppState>, id: i64, kind: String, params: Value) {
    let task = tokio::spawn({
        let st = st.clone();
        let kind = kind.clone();
        async move {
            match kind.as_str() {
                PROVISION => provision(&st, id, &params).await,
                PURGE => purge(&st, &params).await,
                crate::moves::MOVE => crate::moves::run(&st, id, &params).await,
                other => Err(format!("unknown job kind {other:?}")),
            }
        }
    });
    // The lease is renewed while the job runs, so a long job is never
    // taken over by another worker while this one is still at it.
    let renew = async {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(LEASE_SECS / 3.0));
        tick.tick().await;
        loop {
            tick.tick().await;
            let renewed = sqlx::query(
                "UPDATE jobs SET lease_until = now() + make_interval(secs => $2) \
                 WHERE id = $1 AND state = 'running'",
            )
            .bind(id)
            .bind(LEASE_SECS)
            .execute(&st.db)
            .await;
            if let Err(e) = renewed {
                tracing::warn!(job = id, error = %e, "cannot renew a job's lease");
            }
        }
    };
    let outcome = tokio::select! {
        joined = task => joined.unwrap_or_else(|e| Err(format!("the job panicked: {e}"))),
        () = renew => unreachable!("the renewal loop never ends"),
    };
    let recorded = match &outcome {
        Ok(result) => sqlx::query(
            "UPDATE jobs SET state = 'succeeded', result = $2, error = NULL, lease_until = NULL, \
                updated_at = now() WHERE id = $1 AND state = 'running'",
        )
        .bind(id)
        .bind(result)
        .execute(&st.db)
        .await,
        Err(error) => {
            tracing::warn!(job = id, kind = %kind, error = %error, "job failed; will retry");
            sqlx::query(
                "UPDATE jobs SET state = 'failed', error = $2, lease_until = NULL, updated_at = now() \
                 WHERE id = $1 AND state = 'running'",
            )
            .bind(id)
            .bind(error)
            .execute(&st.db)
            .await
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(job = id, error = %e, "cannot record a job's outcome");
    }
}

/// Starts the worker: every second, runs one job left pending, running
/// past its lease, or failed and due for a retry (backoff doubling from
/// 2 s to about 8 minutes).
pub fn start_worker(st: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let due: Result<Vec<i64>, _> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE kind = ANY($1) AND ( \
                    (state = 'pending' AND created_at < now() - interval '2 seconds') \
                    OR (state = 'running' AND lease_until < now()) \
                    OR (state = 'failed' AND attempts < $2 \
                        AND updated_at < now() - make_interval(secs => power(2, least(attempts, 8))))) \
                 ORDER BY id LIMIT 4",
            )
            .bind(vec![PROVISION, PURGE, crate::moves::MOVE])
            .bind(MAX_ATTEMPTS)
            .fetch_all(&st.db)
            .await;
            match due {
                Ok(ids) => {
                    for id in ids {
                        run_or_wait(st.clone(), id, Duration::from_secs(120)).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "job worker: catalog unavailable"),
            }
        }
    });
}

/// The actor a job's audit rows name.
pub(crate) fn worker(job: i64) -> crate::api::request::Caller {
    crate::api::request::Caller {
        token_id: 0,
        name: format!("job {job}"),
        role: crate::api::request::Role::Operator,
    }
}

/// Publishes a new routing snapshot version from a job's transaction.
pub(crate) async fn bump(tx: &mut PgConnection, reason: &str) -> Result<u64, String> {
    crate::feed::bump(tx, reason).await.map_err(|e| match e {
        crate::feed::BumpError::Db(e) => format!("catalog: {e}"),
        crate::feed::BumpError::Invalid(p) => {
            format!("routing would be invalid: {}", p.join("; "))
        }
    })
}

/// A connection to a target's database.
pub(crate) async fn target_db(st: &AppState, target: &str) -> Result<sqlx::PgPool, String> {
    connect(&target_dsn(st, target).await?).await
}

/// A target's connection string, its password decrypted.
async fn target_dsn(st: &AppState, target: &str) -> Result<crate::secrets::Dsn, String> {
    let (dsn, sealed): (String, Option<Vec<u8>>) =
        sqlx::query_as("SELECT dsn, dsn_password_enc FROM targets WHERE id = $1")
            .bind(target)
            .fetch_one(&st.db)
            .await
            .map_err(|e| format!("catalog: {e}"))?;
    crate::api::tenants::stored_dsn(st, dsn, sealed.as_deref(), Purpose::DsnPassword)
        .map_err(|e| e.problem(None).detail)
}

async fn connect(dsn: &crate::secrets::Dsn) -> Result<PgPool, String> {
    let options = dsn.connect_options().map_err(|e| e.to_string())?;
    crate::db::connect(options, 1, CONNECT_TIMEOUT)
        .await
        .map_err(|e| format!("cannot reach {}: {e}", dsn.public))
}

/// Makes the tenant exist in its database, then routes it.
async fn provision(st: &AppState, job: i64, params: &Value) -> Result<Value, String> {
    let tenant = params["tenant"]
        .as_str()
        .ok_or("params.tenant is missing")?;
    let row: Option<(String, String, Option<String>)> =
        sqlx::query_as("SELECT slug, status::text, target_id FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(&st.db)
            .await
            .map_err(|e| format!("catalog: {e}"))?;
    let (slug, status, target) = row.ok_or_else(|| format!("tenant {tenant:?} is gone"))?;
    if status != "provisioning" {
        return Ok(serde_json::json!({ "skipped": format!("tenant is {status}") }));
    }
    let target = target.ok_or("the tenant has no placement")?;
    if params["create_database"].as_bool() == Some(true) {
        create_database(st, &target).await?;
    }
    let pool = target_db(st, &target).await?;
    let applied = migrations::apply(&pool, Schema::Tenant)
        .await
        .map_err(|e| format!("tenant schema on {target}: {e}"))?;
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(
        "INSERT INTO tenants (tenant_id, slug) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant)
    .bind(&slug)
    .execute(&mut *tx)
    .await
    .map_err(|e| format!("cannot add the tenant to {target}: {e}"))?;
    tx.commit().await.map_err(|e| e.to_string())?;
    pool.close().await;

    let mut tx = st.db.begin().await.map_err(|e| format!("catalog: {e}"))?;
    let updated = sqlx::query(
        "UPDATE tenants SET status = 'active', updated_at = now() WHERE id = $1 AND status = 'provisioning'",
    )
    .bind(tenant)
    .execute(&mut *tx)
    .await
    .map_err(|e| format!("catalog: {e}"))?;
    if updated.rows_affected() == 1 {
        audit(
            &mut tx,
            &worker(job),
            "tenant.activate",
            &format!("/v1/tenants/{tenant}"),
            None::<&()>,
            Some(&serde_json::json!({ "status": "active", "target": target })),
        )
        .await
        .map_err(|e| e.problem(None).detail)?;
        bump(&mut tx, &format!("tenant {tenant} provisioned")).await?;
    }
    tx.commit().await.map_err(|e| format!("catalog: {e}"))?;
    Ok(serde_json::json!({ "tenant": tenant, "target": target, "migrations_applied": applied }))
}

/// Creates the dedicated database of `target` on its cluster server, if missing.
pub(crate) async fn create_database(st: &AppState, target: &str) -> Result<(), String> {
    let dsn = target_dsn(st, target).await?;
    let options = dsn.connect_options().map_err(|e| e.to_string())?;
    let database = options
        .get_database()
        .ok_or("the target's DSN names no database")?
        .to_owned();
    if !database
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!("refusing to create a database named {database:?}"));
    }
    let admin = connect(&dsn.with_database("postgres").map_err(|e| e.to_string())?).await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_optional(&admin)
        .await
        .map_err(|e| e.to_string())?;
    if exists.is_none() {
        // The name was checked above: lowercase letters, digits and '_'.
        let sql = format!("CREATE DATABASE \"{database}\"");
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await {
            // Created meanwhile by another attempt: fine.
            let duplicate =
                matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P04"));
            if !duplicate {
                return Err(format!("cannot create database {database}: {e}"));
            }
        }
        tracing::info!(target = %target, database = %database, "dedicated database created");
    }
    admin.close().await;
    Ok(())
}

/// Removes a deleted tenant's rows from its database.
async fn purge(st: &AppState, params: &Value) -> Result<Value, String> {
    let tenant = params["tenant"]
        .as_str()
        .ok_or("params.tenant is missing")?;
    let target: Option<String> =
        sqlx::query_scalar("SELECT target_id FROM tenants WHERE id = $1 AND status = 'deleted'")
            .bind(tenant)
            .fetch_optional(&st.db)
            .await
            .map_err(|e| format!("catalog: {e}"))?
            .flatten();
    let Some(target) = target else {
        return Ok(serde_json::json!({ "skipped": "the tenant is not deleted" }));
    };
    let pool = target_db(st, &target).await?;
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let tables = tenant_data::tables(&mut tx).await?;
    let removed = tenant_data::delete(&mut tx, &tables, tenant).await?;
    tx.commit().await.map_err(|e| e.to_string())?;
    pool.close().await;
    Ok(serde_json::json!({ "tenant": tenant, "target": target, "rows_removed": removed }))
}
