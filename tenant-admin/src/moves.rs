//! Moving a tenant to another target: its rows are copied from the
//! database it lives in to another one (a shard, or a dedicated cluster),
//! then its placement is switched, then its rows are removed from where it
//! was. One `move_tenant` job does it, resumably:
//!
//! 1. **Prepare** (traffic untouched): reach both databases, bring the
//!    destination's tenant schema up to date (creating its database first
//!    for a new dedicated cluster), and check both are at the same version.
//! 2. **Hold writes**: publish the tenant as `moving`; gateways then serve
//!    its reads from the old target and hold its writes. Wait until every
//!    gateway following the feed reports that version ([`ACK_TIMEOUT`]),
//!    then a moment more for writes already on their way ([`IN_FLIGHT_GRACE`]).
//!    Then **fence** the tenant in the source database: its writes there
//!    fail (SQLSTATE `SY503`) whoever sends them, and the move waits for
//!    the transactions that began before the fence ([`FENCE_WAIT`]).
//! 3. **Copy** in one destination transaction: the tenant's earlier rows
//!    there (from an attempt cut short) deleted, every row copied from a
//!    consistent snapshot of the source, the counts compared, foreign keys
//!    checked, sequences raised past the copied ids.
//! 4. **Switch**, in one catalog transaction: the tenant's target becomes
//!    the destination, the hold ends, and the snapshot is published; the
//!    held writes go to the new target.
//! 5. **Clean up**: the tenant's rows are deleted from the source, where
//!    its fence stays (until it moves back in).
//!
//! A failure before the switch lifts the fence and releases the hold at
//! once (the tenant goes on being served where it was) and fails the job,
//! which the worker retries with backoff; a crash is taken over when the
//! job's lease ends. One run per tenant at a time. After the switch, a
//! retry only repeats the clean-up.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::api::request::audit;
use crate::app::AppState;
use crate::jobs::{self, bump, target_db, worker};
use crate::migrations::{self, Schema};
use crate::tenant_data::{self, TenantTable};

/// Moves a tenant.
pub const MOVE: &str = "move_tenant";

/// How long the move waits for the gateways to hold the tenant's writes.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// After the gateways hold writes, how long writes they had already sent
/// on get to reach the old database.
pub const IN_FLIGHT_GRACE: Duration = Duration::from_millis(1000);
/// How long the fence waits for transactions that began before it.
pub const FENCE_WAIT: Duration = Duration::from_secs(10);

/// What the catalog says of the tenant now.
#[derive(Debug, sqlx::FromRow)]
struct Now {
    target_id: Option<String>,
    moving_to: Option<String>,
}

/// Runs move job `job` (`params`: `tenant`, `from`, `to`, `create_database`).
///
/// One run at a time per tenant, across every tenant-admin replica: the
/// run holds a catalog advisory lock on the tenant from start to end (a
/// run whose process died loses it with its connection).
pub(crate) async fn run(st: &AppState, job: i64, params: &Value) -> Result<Value, String> {
    let text = |key: &str| {
        params[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("params.{key} is missing"))
    };
    let (tenant, from, to) = (text("tenant")?, text("from")?, text("to")?);
    let mut lock = st.db.acquire().await.map_err(|e| format!("catalog: {e}"))?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(5379, hashtext($1))")
        .bind(&tenant)
        .fetch_one(&mut *lock)
        .await
        .map_err(|e| format!("catalog: {e}"))?;
    if !locked {
        return Err(format!(
            "another run is moving tenant {tenant:?}; this one will be retried"
        ));
    }
    let outcome = run_locked(st, job, params, tenant.clone(), from, to).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(5379, hashtext($1))")
        .bind(&tenant)
        .execute(&mut *lock)
        .await;
    if unlocked.is_err() {
        // Never hand a connection still holding the lock back to the pool.
        let _ = lock.close().await;
    }
    outcome
}

async fn run_locked(
    st: &AppState,
    job: i64,
    params: &Value,
    tenant: String,
    from: String,
    to: String,
) -> Result<Value, String> {
    let now: Option<Now> = sqlx::query_as("SELECT target_id, moving_to FROM tenants WHERE id = $1")
        .bind(&tenant)
        .fetch_optional(&st.db)
        .await
        .map_err(|e| format!("catalog: {e}"))?;
    let now = now.ok_or_else(|| format!("tenant {tenant:?} is gone"))?;
    if now.target_id.as_deref() == Some(to.as_str()) && now.moving_to.is_none() {
        // Switched by an earlier attempt: only the clean-up is left.
        let removed = clean_up(st, &tenant, &from).await?;
        return Ok(
            json!({ "tenant": tenant, "from": from, "to": to, "rows_removed_from_source": removed }),
        );
    }
    if now.moving_to.as_deref() != Some(to.as_str()) || now.target_id.as_deref() != Some(&from) {
        return Ok(json!({ "skipped": "the move was cancelled or superseded" }));
    }

    // 1. Prepare.
    if params["create_database"].as_bool() == Some(true) {
        jobs::create_database(st, &to).await?;
    }
    let source = target_db(st, &from).await?;
    let destination = target_db(st, &to).await?;
    migrations::apply(&destination, Schema::Tenant)
        .await
        .map_err(|e| format!("tenant schema on {to}: {e}"))?;
    let versions = (
        migrations::applied(&source)
            .await
            .map_err(|e| format!("{from}: {e}"))?,
        migrations::applied(&destination)
            .await
            .map_err(|e| format!("{to}: {e}"))?,
    );
    may_copy_in(&destination, &to).await?;
    // A fence left by an earlier run that could not lift it: the tenant
    // still lives here.
    let mut tx = source.begin().await.map_err(|e| format!("{from}: {e}"))?;
    tenant_data::unfence(&mut tx, &tenant).await?;
    tx.commit().await.map_err(|e| format!("{from}: {e}"))?;
    if versions.0 != versions.1 {
        return Err(format!(
            "{from} has tenant schema versions {:?} and {to} has {:?}: \
             run `tenant-admin migrate tenants` first",
            versions.0, versions.1
        ));
    }

    // 2. Hold writes.
    let held = Instant::now();
    let version = hold_writes(st, job, &tenant, &to).await?;
    let Some(version) = version else {
        return Ok(json!({ "skipped": "the move was cancelled or superseded" }));
    };
    let outcome = async {
        wait_for_gateways(st, version).await?;
        tokio::time::sleep(IN_FLIGHT_GRACE).await;
        // Whatever still writes to the source from here on (a request
        // slower than the grace, a background worker) fails there
        // rather than being lost.
        tenant_data::fence(&source, &tenant, &format!("moving to {to}"), FENCE_WAIT)
            .await
            .map_err(|e| format!("{from}: {e}"))?;
        // 3. Copy.
        let copied = copy(&source, &destination, &tenant).await?;
        // 4. Switch.
        switch(st, job, &tenant, &from, &to, &copied).await?;
        Ok::<_, String>(copied)
    }
    .await;
    let copied = match outcome {
        Ok(copied) => copied,
        Err(error) => {
            if let Err(e) = unfence_source(&source, &tenant).await {
                tracing::error!(tenant = %tenant, source = %from, error = %e,
                    "cannot lift a failed move's fence; the next run lifts it");
            }
            if let Err(e) = release(st, job, &tenant, &to, &error).await {
                tracing::error!(tenant = %tenant, error = %e, "cannot release a move's write hold");
            }
            return Err(error);
        }
    };
    let held_ms = u64::try_from(held.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(tenant = %tenant, from = %from, to = %to, held_ms, "tenant moved");
    source.close().await;
    destination.close().await;

    // 5. Clean up.
    let removed = clean_up(st, &tenant, &from).await?;
    Ok(json!({
        "tenant": tenant, "from": from, "to": to,
        "rows_copied": copied, "writes_held_ms": held_ms,
        "rows_removed_from_source": removed,
    }))
}

/// The destination's role may write rows past row-level security (COPY
/// FROM refuses otherwise): checked before any write is held.
async fn may_copy_in(destination: &PgPool, to: &str) -> Result<(), String> {
    let (role, allowed): (String, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(destination)
    .await
    .map_err(|e| format!("{to}: {e}"))?;
    if allowed {
        return Ok(());
    }
    Err(format!(
        "{to}'s role {role:?} is neither a superuser nor BYPASSRLS, so it cannot copy a tenant's \
         rows in; register the target with a maintenance role that is"
    ))
}

/// Publishes the tenant as `moving`; the version that does, or `None` when
/// the move is no longer wanted.
async fn hold_writes(
    st: &AppState,
    job: i64,
    tenant: &str,
    to: &str,
) -> Result<Option<u64>, String> {
    let mut tx = st.db.begin().await.map_err(|e| format!("catalog: {e}"))?;
    let held = sqlx::query(
        "UPDATE tenants SET writes_held_since = coalesce(writes_held_since, now()), updated_at = now() \
         WHERE id = $1 AND moving_to = $2",
    )
    .bind(tenant)
    .bind(to)
    .execute(&mut *tx)
    .await
    .map_err(|e| format!("catalog: {e}"))?;
    if held.rows_affected() == 0 {
        return Ok(None);
    }
    audit(
        &mut tx,
        &worker(job),
        "tenant.move.hold_writes",
        &format!("/v1/tenants/{tenant}"),
        None::<&()>,
        Some(&json!({ "moving_to": to })),
    )
    .await
    .map_err(|e| e.problem(None).detail)?;
    let version = bump(
        &mut tx,
        &format!("tenant {tenant} moving to {to}: writes held"),
    )
    .await?;
    tx.commit().await.map_err(|e| format!("catalog: {e}"))?;
    Ok(Some(version))
}

/// Lifts the tenant's fence in the source (the move failed this time).
async fn unfence_source(source: &PgPool, tenant: &str) -> Result<(), String> {
    let mut tx = source.begin().await.map_err(|e| e.to_string())?;
    tenant_data::unfence(&mut tx, tenant).await?;
    tx.commit().await.map_err(|e| e.to_string())
}

/// Ends the hold without switching (the move failed this time).
async fn release(
    st: &AppState,
    job: i64,
    tenant: &str,
    to: &str,
    error: &str,
) -> Result<(), String> {
    let mut tx = st.db.begin().await.map_err(|e| format!("catalog: {e}"))?;
    let released = sqlx::query(
        "UPDATE tenants SET writes_held_since = NULL, updated_at = now() \
         WHERE id = $1 AND moving_to = $2 AND writes_held_since IS NOT NULL",
    )
    .bind(tenant)
    .bind(to)
    .execute(&mut *tx)
    .await
    .map_err(|e| format!("catalog: {e}"))?;
    if released.rows_affected() == 1 {
        audit(
            &mut tx,
            &worker(job),
            "tenant.move.release_writes",
            &format!("/v1/tenants/{tenant}"),
            None::<&()>,
            Some(&json!({ "moving_to": to, "error": error })),
        )
        .await
        .map_err(|e| e.problem(None).detail)?;
        bump(
            &mut tx,
            &format!("tenant {tenant} move failed: writes released"),
        )
        .await?;
    }
    tx.commit().await.map_err(|e| format!("catalog: {e}"))
}

/// Waits until every live gateway has applied `version`.
async fn wait_for_gateways(st: &AppState, version: u64) -> Result<(), String> {
    match crate::feed::wait_for_gateways(&st.db, version, ACK_TIMEOUT).await {
        Ok(()) => Ok(()),
        Err(crate::feed::Behind::Catalog(e)) => Err(format!("catalog: {e}")),
        Err(crate::feed::Behind::Gateways(behind)) => Err(format!(
            "gateways {} did not apply snapshot version {version} within {} s, so they may \
             still send the tenant's writes to its old database; the move will be retried",
            behind.join(", "),
            ACK_TIMEOUT.as_secs()
        )),
    }
}

/// Copies the tenant's rows from `source` to `destination` (one
/// transaction there, committed only when every count matches).
async fn copy(
    source: &PgPool,
    destination: &PgPool,
    tenant: &str,
) -> Result<BTreeMap<String, u64>, String> {
    let mut from = source.begin().await.map_err(|e| format!("source: {e}"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *from)
        .await
        .map_err(|e| format!("source: {e}"))?;
    tenant_data::act_for(&mut from, tenant).await?;
    let mut to = destination
        .begin()
        .await
        .map_err(|e| format!("destination: {e}"))?;
    sqlx::query("SET CONSTRAINTS ALL DEFERRED")
        .execute(&mut *to)
        .await
        .map_err(|e| format!("destination: {e}"))?;
    let tables = tenant_data::tables(&mut from).await?;
    same_tables(&tables, &tenant_data::tables(&mut to).await?)?;
    // Moving back in: the fence it left here is lifted with the copy.
    tenant_data::unfence(&mut to, tenant).await?;
    tenant_data::delete(&mut to, &tables, tenant).await?;
    let copied = tenant_data::copy(&mut from, &mut to, &tables).await?;
    let there = tenant_data::count(&mut to, &tables, tenant).await?;
    let here = tenant_data::count(&mut from, &tables, tenant).await?;
    if here != copied || there != copied {
        return Err(format!(
            "row counts differ after the copy (source {here:?}, copied {copied:?}, destination {there:?}); nothing was committed"
        ));
    }
    // Foreign keys checked now rather than at commit, so the sequences
    // below are held (other tenants' inserts wait) only for a moment.
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(&mut *to)
        .await
        .map_err(|e| format!("destination: a copied row breaks a foreign key: {e}"))?;
    tenant_data::raise_sequences(&mut to, &tables, tenant).await?;
    to.commit()
        .await
        .map_err(|e| format!("destination: the copy could not be committed: {e}"))?;
    from.rollback().await.map_err(|e| format!("source: {e}"))?;
    Ok(copied)
}

/// Both databases hold the same tenant tables with the same columns.
fn same_tables(source: &[TenantTable], destination: &[TenantTable]) -> Result<(), String> {
    let shape = |tables: &[TenantTable]| -> BTreeMap<String, String> {
        tables
            .iter()
            .map(|t| (t.name.clone(), t.columns.clone()))
            .collect()
    };
    let (here, there) = (shape(source), shape(destination));
    if here == there {
        return Ok(());
    }
    let differ: Vec<&String> = here
        .keys()
        .chain(there.keys())
        .filter(|t| here.get(*t) != there.get(*t))
        .collect();
    Err(format!(
        "the tenant tables differ between source and destination ({differ:?}); migrate both to the same schema"
    ))
}

/// Points the tenant at its new target and publishes it.
async fn switch(
    st: &AppState,
    job: i64,
    tenant: &str,
    from: &str,
    to: &str,
    copied: &BTreeMap<String, u64>,
) -> Result<(), String> {
    let mut tx = st.db.begin().await.map_err(|e| format!("catalog: {e}"))?;
    let switched = sqlx::query(
        "UPDATE tenants SET target_id = $3, moving_to = NULL, writes_held_since = NULL, updated_at = now() \
         WHERE id = $1 AND target_id = $2 AND moving_to = $3 AND writes_held_since IS NOT NULL",
    )
    .bind(tenant)
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await
    .map_err(|e| format!("catalog: {e}"))?;
    if switched.rows_affected() == 0 {
        return Err(
            "the tenant's move changed while its rows were copied; nothing switched".to_owned(),
        );
    }
    audit(
        &mut tx,
        &worker(job),
        "tenant.move.switch",
        &format!("/v1/tenants/{tenant}"),
        Some(&json!({ "target": from })),
        Some(&json!({ "target": to, "rows_copied": copied })),
    )
    .await
    .map_err(|e| e.problem(None).detail)?;
    bump(
        &mut tx,
        &format!("tenant {tenant} moved from {from} to {to}"),
    )
    .await?;
    tx.commit().await.map_err(|e| format!("catalog: {e}"))
}

/// Deletes the tenant's rows from `from`, unless it lives there again.
/// The tenant's catalog row stays locked meanwhile, so no move back to
/// `from` can start before the rows are gone.
async fn clean_up(
    st: &AppState,
    tenant: &str,
    from: &str,
) -> Result<BTreeMap<String, u64>, String> {
    let mut catalog = st.db.begin().await.map_err(|e| format!("catalog: {e}"))?;
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR SHARE")
        .bind(tenant)
        .execute(&mut *catalog)
        .await
        .map_err(|e| format!("catalog: {e}"))?;
    let back: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM tenants WHERE id = $1 AND (target_id = $2 OR moving_to = $2)",
    )
    .bind(tenant)
    .bind(from)
    .fetch_optional(&mut *catalog)
    .await
    .map_err(|e| format!("catalog: {e}"))?;
    if back.is_some() {
        return Ok(BTreeMap::new());
    }
    let source = target_db(st, from).await?;
    let mut tx = source.begin().await.map_err(|e| format!("{from}: {e}"))?;
    // The tenant stays fenced here; only this transaction passes.
    tenant_data::pass_fence(&mut tx).await?;
    let tables = tenant_data::tables(&mut tx).await?;
    let removed = tenant_data::delete(&mut tx, &tables, tenant).await?;
    tx.commit().await.map_err(|e| format!("{from}: {e}"))?;
    source.close().await;
    catalog
        .commit()
        .await
        .map_err(|e| format!("catalog: {e}"))?;
    Ok(removed)
}
