//! One tenant's rows in a tenant database: which tables hold them, and
//! copying or deleting them as a whole.
//!
//! The tables are found in the database itself (every table of the schema
//! with a `tenant_id` column, ordered by their foreign keys), so a table a
//! later migration adds is moved and purged without a change here.
//!
//! Statements filter on `tenant_id` explicitly and set `app.tenant_id` as
//! well, so row-level security confines them to the tenant even for a
//! role it applies to. Copying into a database uses `COPY FROM`, which
//! PostgreSQL allows only to roles exempt from row-level security: the
//! superuser or a `BYPASSRLS` maintenance role, as tenant-admin's DSNs are.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, PgConnection};

/// A table holding tenant rows, with what copying it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TenantTable {
    /// The table's name, quoted for SQL.
    pub quoted: String,
    /// Its name as stored.
    pub name: String,
    /// Its stored (non-generated) columns, quoted and comma-separated.
    pub columns: String,
    /// The tables it references (other than itself).
    parents: BTreeSet<String>,
}

/// The tables holding tenant rows, parents before the tables that
/// reference them.
///
/// # Errors
///
/// When the database fails, or the foreign keys form a cycle between
/// tables (no order would do).
pub(crate) async fn tables(conn: &mut PgConnection) -> Result<Vec<TenantTable>, String> {
    let rows: Vec<(String, String, String, Vec<String>)> = sqlx::query_as(
        "SELECT c.relname::text, quote_ident(c.relname), \
            (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), \
            coalesce((SELECT array_agg(DISTINCT p.relname::text) FROM pg_constraint k \
                JOIN pg_class p ON p.oid = k.confrelid \
             WHERE k.conrelid = c.oid AND k.contype = 'f' AND k.confrelid <> c.oid), '{}') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
            AND c.relname <> 'tenant_fences' \
            AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                AND a.attname = 'tenant_id' AND NOT a.attisdropped) \
         ORDER BY c.relname",
    )
    .fetch_all(conn)
    .await
    .map_err(|e| format!("cannot list the tenant tables: {e}"))?;
    let tables = rows
        .into_iter()
        .map(|(name, quoted, columns, parents)| TenantTable {
            quoted,
            name,
            columns,
            parents: parents.into_iter().collect(),
        })
        .collect();
    parents_first(tables)
}

/// Orders `tables` so that every table comes after the tables it references.
fn parents_first(tables: Vec<TenantTable>) -> Result<Vec<TenantTable>, String> {
    let known: BTreeSet<String> = tables.iter().map(|t| t.name.clone()).collect();
    let mut left: BTreeMap<String, TenantTable> =
        tables.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut ordered: Vec<TenantTable> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let placed: BTreeSet<&str> = ordered.iter().map(|t| t.name.as_str()).collect();
        let ready: Vec<String> = left
            .values()
            .filter(|t| {
                t.parents
                    .iter()
                    .all(|p| placed.contains(p.as_str()) || !known.contains(p))
            })
            .map(|t| t.name.clone())
            .collect();
        if ready.is_empty() {
            let names: Vec<&str> = left.keys().map(String::as_str).collect();
            return Err(format!(
                "the foreign keys between tables {} form a cycle",
                names.join(", ")
            ));
        }
        for name in ready {
            ordered.extend(left.remove(&name));
        }
    }
    Ok(ordered)
}

/// Confines the rest of the transaction on `conn` to `tenant`'s rows
/// (row-level security), for roles the policies apply to.
///
/// # Errors
///
/// When the database fails.
pub(crate) async fn act_for(conn: &mut PgConnection, tenant: &str) -> Result<(), String> {
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant)
        .execute(conn)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Deletes every row of `tenant` from `tables` (children first), in the
/// transaction open on `conn`; the rows removed per table.
///
/// # Errors
///
/// When a statement fails.
pub(crate) async fn delete(
    conn: &mut PgConnection,
    tables: &[TenantTable],
    tenant: &str,
) -> Result<BTreeMap<String, u64>, String> {
    act_for(conn, tenant).await?;
    let mut removed = BTreeMap::new();
    for table in tables.iter().rev() {
        let sql = format!("DELETE FROM {} WHERE tenant_id = $1", table.quoted);
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant)
            .execute(&mut *conn)
            .await
            .map_err(|e| format!("{}: {e}", table.name))?;
        removed.insert(table.name.clone(), done.rows_affected());
    }
    Ok(removed)
}

/// Fences `tenant` in the database behind `db` (its writes there fail with
/// SQLSTATE `SY503`, see `migrations/tenant/0003_tenant_write_fence.sql`),
/// then waits up to `wait` for every transaction that began before the
/// fence to end: from then on a snapshot holds every write of the tenant
/// that will ever succeed there.
///
/// # Errors
///
/// When the database fails, or a transaction older than the fence is
/// still running after `wait` (the fence stays; lift it with [`unfence`]).
pub(crate) async fn fence(
    db: &sqlx::PgPool,
    tenant: &str,
    reason: &str,
    wait: std::time::Duration,
) -> Result<(), String> {
    let mut tx = db.begin().await.map_err(|e| e.to_string())?;
    sqlx::query(
        "INSERT INTO tenant_fences (tenant_id, reason) VALUES ($1, $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET reason = EXCLUDED.reason, since = now()",
    )
    .bind(tenant)
    .bind(reason)
    .execute(&mut *tx)
    .await
    .map_err(|e| format!("cannot fence the tenant: {e}"))?;
    let fenced_by: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let clear: bool =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8")
                .bind(&fenced_by)
                .fetch_one(db)
                .await
                .map_err(|e| e.to_string())?;
        if clear {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "transactions that began before the tenant was fenced were still running after {} s",
                wait.as_secs()
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Lifts `tenant`'s fence, if any, in the transaction open on `conn`.
///
/// # Errors
///
/// When the database fails.
pub(crate) async fn unfence(conn: &mut PgConnection, tenant: &str) -> Result<(), String> {
    sqlx::query("DELETE FROM tenant_fences WHERE tenant_id = $1")
        .bind(tenant)
        .execute(conn)
        .await
        .map(drop)
        .map_err(|e| format!("cannot lift the tenant's fence: {e}"))
}

/// Lets the rest of the transaction on `conn` write a fenced tenant's
/// rows (tenant-admin's clean-up after a move).
///
/// # Errors
///
/// When the database fails.
pub(crate) async fn pass_fence(conn: &mut PgConnection) -> Result<(), String> {
    sqlx::query("SELECT set_config('switchyard.fence_bypass', 'on', true)")
        .execute(conn)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Counts `tenant`'s rows in each of `tables`.
///
/// # Errors
///
/// When a statement fails.
pub(crate) async fn count(
    conn: &mut PgConnection,
    tables: &[TenantTable],
    tenant: &str,
) -> Result<BTreeMap<String, u64>, String> {
    let mut counts = BTreeMap::new();
    for table in tables {
        let sql = format!("SELECT count(*) FROM {} WHERE tenant_id = $1", table.quoted);
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| format!("{}: {e}", table.name))?;
        counts.insert(table.name.clone(), u64::try_from(n).unwrap_or(0));
    }
    Ok(counts)
}

/// Copies every row of the tenant both transactions act for ([`act_for`])
/// in `tables` from `from` to `to`, table by
/// table in PostgreSQL's binary COPY format, streamed (nothing is held in
/// memory but a chunk); the rows copied per table.
///
/// Both connections must be in a transaction acting for the tenant, `to`'s with its constraints deferred (rows may arrive
/// before the rows they reference) and without rows of `tenant`.
///
/// # Errors
///
/// When reading, writing, or a table's columns differ between the two.
pub(crate) async fn copy(
    from: &mut PgConnection,
    to: &mut PgConnection,
    tables: &[TenantTable],
) -> Result<BTreeMap<String, u64>, String> {
    let mut copied = BTreeMap::new();
    for table in tables {
        // COPY takes no parameters: the tenant comes from the session
        // setting, never spliced into the statement.
        let out = format!(
            "COPY (SELECT {} FROM {} WHERE tenant_id = current_setting('app.tenant_id')) \
             TO STDOUT (FORMAT binary)",
            table.columns, table.quoted
        );
        let into = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            table.quoted, table.columns
        );
        let mut writer = to
            .copy_in_raw(&into)
            .await
            .map_err(|e| format!("{}: cannot start writing: {e}", table.name))?;
        let mut reader = from
            .copy_out_raw(&out)
            .await
            .map_err(|e| format!("{}: cannot start reading: {e}", table.name))?;
        let mut failed = None;
        loop {
            match reader.try_next().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = writer.send(chunk).await {
                        failed = Some(format!("{}: writing: {e}", table.name));
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(format!("{}: reading: {e}", table.name));
                    break;
                }
            }
        }
        drop(reader);
        if let Some(failed) = failed {
            let _ = writer.abort(failed.clone()).await;
            return Err(failed);
        }
        let rows = writer
            .finish()
            .await
            .map_err(|e| format!("{}: {e}", table.name))?;
        copied.insert(table.name.clone(), rows);
    }
    Ok(copied)
}

/// Raises every sequence behind `tables`' columns (identity or serial)
/// on `conn` to at least the largest value `tenant` now has in that
/// column, so the tenant's next rows do not collide with the rows copied
/// in. Each sequence is altered first (to its own options), which holds
/// other sessions' `nextval` until the transaction ends: the raise cannot
/// race them. Call it last before the commit.
///
/// # Errors
///
/// When a statement fails.
pub(crate) async fn raise_sequences(
    conn: &mut PgConnection,
    tables: &[TenantTable],
    tenant: &str,
) -> Result<(), String> {
    // Waiting on an app transaction that holds a sequence fails the copy
    // (retried later) rather than stalling every insert behind it.
    sqlx::query("SET LOCAL lock_timeout = '5s'")
        .execute(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    for table in tables {
        let sequences: Vec<(String, String)> = sqlx::query_as(
            "SELECT quote_ident(a.attname), s.seq FROM pg_attribute a, \
                LATERAL (SELECT pg_get_serial_sequence($1, a.attname) AS seq) s \
             WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped \
                AND s.seq IS NOT NULL",
        )
        .bind(&table.quoted)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| format!("{}: {e}", table.name))?;
        for (column, sequence) in sequences {
            let sql = format!(
                "SELECT max({column})::bigint FROM {} WHERE tenant_id = $1",
                table.quoted
            );
            let Some(max): Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(tenant)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| format!("{}.{column}: {e}", table.name))?
            else {
                continue;
            };
            // `sequence` comes from pg_get_serial_sequence: already quoted.
            // Its own CYCLE option is restated: the ALTER only locks it.
            let cycles: bool = sqlx::query_scalar(
                "SELECT seqcycle FROM pg_sequence WHERE seqrelid = $1::regclass",
            )
            .bind(&sequence)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| format!("{sequence}: {e}"))?;
            let option = if cycles { "CYCLE" } else { "NO CYCLE" };
            let lock = format!("ALTER SEQUENCE {sequence} {option}");
            sqlx::query(AssertSqlSafe(lock))
                .execute(&mut *conn)
                .await
                .map_err(|e| format!("{sequence}: {e}"))?;
            let raise = format!(
                "SELECT setval($1, $2) FROM {sequence} WHERE last_value < $2 OR (NOT is_called AND last_value <= $2)"
            );
            sqlx::query(AssertSqlSafe(raise))
                .bind(&sequence)
                .bind(max)
                .execute(&mut *conn)
                .await
                .map_err(|e| format!("{sequence}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, parents: &[&str]) -> TenantTable {
        TenantTable {
            quoted: name.to_owned(),
            name: name.to_owned(),
            columns: "tenant_id".to_owned(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn names(tables: &[TenantTable]) -> Vec<&str> {
        tables.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn parents_come_before_the_tables_referencing_them() {
        let ordered = parents_first(vec![
            table("invoice_items", &["invoices", "tenants"]),
            table("invoices", &["sales", "customers", "tenants"]),
            table("sales", &["customers", "tenants"]),
            table("customers", &["tenants"]),
            table("tenants", &[]),
        ])
        .unwrap();
        assert_eq!(
            names(&ordered),
            ["tenants", "customers", "sales", "invoices", "invoice_items"]
        );
    }

    #[test]
    fn references_outside_the_tenant_tables_do_not_block() {
        let ordered = parents_first(vec![
            table("products", &["currencies", "tenants"]),
            table("tenants", &[]),
        ])
        .unwrap();
        assert_eq!(names(&ordered), ["tenants", "products"]);
    }

    #[test]
    fn a_cycle_between_tables_is_an_error_naming_them() {
        let e = parents_first(vec![
            table("a", &["b"]),
            table("b", &["a"]),
            table("c", &[]),
        ])
        .unwrap_err();
        assert!(e.contains("a, b"), "{e}");
    }
}
