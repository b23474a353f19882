//! The catalog schema through the real `tenant-admin migrate catalog`
//! against a real PostgreSQL cluster, and the tenant schema's row-level
//! security seen by a real non-superuser app role.

use std::process::{Command, Output};

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use tenant_admin::migrations::{self, Schema};
use testkit::PgCluster;

fn tenant_admin(args: &[&str], database_url: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenant-admin"));
    command.args(args).env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn migrate_catalog_applies_once_and_dry_run_changes_nothing() {
    let pg = PgCluster::start().unwrap();
    let url = pg.create_database("catalog").unwrap();

    let dry = tenant_admin(&["migrate", "catalog", "--dry-run"], Some(&url));
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let would: String = Schema::Catalog
        .migrations()
        .iter()
        .map(|(v, d)| format!("catalog: would apply {v:04} {d}\n"))
        .collect();
    assert_eq!(text(&dry.stdout), would);
    let db = pool(&url).await;
    assert_eq!(migrations::applied(&db).await.unwrap(), Vec::<i64>::new());

    let run = tenant_admin(&["migrate", "catalog", "--database-url", &url], None);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let versions: Vec<i64> = Schema::Catalog
        .migrations()
        .iter()
        .map(|(v, _)| *v)
        .collect();
    let applied: String = versions
        .iter()
        .map(|v| format!("catalog: applied {v:04}\n"))
        .collect();
    assert_eq!(text(&run.stdout), applied);
    let again = tenant_admin(&["migrate", "catalog"], Some(&url));
    assert!(again.status.success());
    assert_eq!(
        text(&again.stdout),
        format!(
            "catalog: up to date at version {}\n",
            Schema::Catalog.latest()
        )
    );
    assert_eq!(migrations::applied(&db).await.unwrap(), versions);

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "acme_accounts",
            "acme_challenges",
            "acme_orders",
            "api_tokens",
            "audit_log",
            "certificates",
            "cluster_servers",
            "domains",
            "gateways",
            "idempotency_keys",
            "job_targets",
            "jobs",
            "plans",
            "regions",
            "snapshot_versions",
            "target_pools",
            "targets",
            "tenants"
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_catalog_refuses_what_the_router_would() {
    let pg = PgCluster::start().unwrap();
    let url = pg.create_database("catalog").unwrap();
    let db = pool(&url).await;
    migrations::apply(&db, Schema::Catalog).await.unwrap();
    let exec = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::query(sql).execute(&db).await }
    };
    exec("INSERT INTO regions (name) VALUES ('eu-west')")
        .await
        .unwrap();
    exec("INSERT INTO plans (name, rate_per_sec, burst, max_body_bytes) VALUES ('starter', 100, 50, 1048576)")
        .await
        .unwrap();
    exec("INSERT INTO targets (id, kind, region, dsn) VALUES ('shard-1', 'shard', 'eu-west', 'postgres://app@db1/app')")
        .await
        .unwrap();
    exec("INSERT INTO tenants (id, slug, plan, region, target_id, status) VALUES ('t-acme', 'acme', 'starter', 'eu-west', 'shard-1', 'active')")
        .await
        .unwrap();
    // Identifiers the router refuses, a plan without a rate, an active
    // tenant without a placement, an unknown region.
    for bad in [
        "INSERT INTO regions (name) VALUES ('EU West')",
        "INSERT INTO tenants (id, slug, plan, region, status) VALUES ('t-x', 'Not A Label', 'starter', 'eu-west', 'provisioning')",
        "INSERT INTO plans (name, rate_per_sec, burst, max_body_bytes) VALUES ('free', 0, 1, 1)",
        "INSERT INTO tenants (id, slug, plan, region, status) VALUES ('t-y', 'y', 'starter', 'eu-west', 'active')",
        "INSERT INTO targets (id, kind, region, dsn) VALUES ('shard-2', 'shard', 'mars', 'postgres://x@y/z')",
    ] {
        assert!(exec(bad).await.is_err(), "accepted: {bad}");
    }
    // A hostname is claimed by one tenant at a time; removed, it is free.
    exec("INSERT INTO domains (hostname, tenant_id, verification_token) VALUES ('erp.acme.com', 't-acme', 'tok1')")
        .await
        .unwrap();
    let twice = exec("INSERT INTO domains (hostname, tenant_id, verification_token) VALUES ('erp.acme.com', 't-acme', 'tok2')").await;
    let code = twice
        .unwrap_err()
        .as_database_error()
        .and_then(|e| e.code().map(|c| c.into_owned()));
    assert_eq!(
        code.as_deref(),
        Some("23505"),
        "a unique violation, for a 409"
    );
    exec("UPDATE domains SET state = 'removed' WHERE hostname = 'erp.acme.com'")
        .await
        .unwrap();
    exec("INSERT INTO domains (hostname, tenant_id, verification_token) VALUES ('erp.acme.com', 't-acme', 'tok3')")
        .await
        .unwrap();
}

#[test]
fn missing_or_unreachable_databases_get_clear_errors_and_no_secret() {
    let missing = tenant_admin(&["migrate", "catalog"], None);
    assert_eq!(missing.status.code(), Some(78));
    assert!(text(&missing.stderr).contains("--database-url (or DATABASE_URL) is required"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{port}/catalog");
    let down = tenant_admin(&["migrate", "catalog"], Some(&url));
    assert_eq!(down.status.code(), Some(69));
    let stderr = text(&down.stderr);
    assert!(
        stderr.contains("cannot reach the catalog database"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let bad_flag = tenant_admin(&["migrate", "everything"], None);
    assert_eq!(bad_flag.status.code(), Some(64));
}

/// Runs `sql` as `role` acting for `tenant` (or no tenant), in one transaction.
async fn as_tenant(
    db: &PgPool,
    tenant: Option<&str>,
    sql: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL ROLE app").execute(&mut *tx).await?;
    if let Some(tenant) = tenant {
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
        .collect())
}

#[tokio::test(flavor = "current_thread")]
async fn row_level_security_hides_every_other_tenants_rows() {
    let pg = PgCluster::start().unwrap();
    let url = pg.create_database("shard").unwrap();
    let db = pool(&url).await;
    let every: Vec<i64> = Schema::Tenant
        .migrations()
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(migrations::apply(&db, Schema::Tenant).await.unwrap(), every);
    sqlx::query("CREATE ROLE app NOLOGIN IN ROLE switchyard_app")
        .execute(&db)
        .await
        .unwrap();

    for (tenant, sku) in [("t-a", "A-1"), ("t-b", "B-1")] {
        as_tenant(&db, Some(tenant), &format!(
            "INSERT INTO tenants (tenant_id, slug) VALUES ('{tenant}', '{tenant}') RETURNING tenant_id"
        ))
        .await
        .unwrap();
        as_tenant(&db, Some(tenant), &format!(
            "INSERT INTO products (tenant_id, sku, name, price_cents) VALUES ('{tenant}', '{sku}', 'x', 100) RETURNING sku"
        ))
        .await
        .unwrap();
    }
    let select = "SELECT sku FROM products ORDER BY sku";
    assert_eq!(as_tenant(&db, Some("t-a"), select).await.unwrap(), ["A-1"]);
    assert_eq!(as_tenant(&db, Some("t-b"), select).await.unwrap(), ["B-1"]);
    // No tenant set: nothing at all, not everything.
    assert!(as_tenant(&db, None, select).await.unwrap().is_empty());
    assert!(
        as_tenant(&db, None, "SELECT tenant_id FROM tenants")
            .await
            .unwrap()
            .is_empty()
    );
    // Writing another tenant's rows, or reaching them by update, fails or
    // touches nothing.
    assert!(as_tenant(&db, Some("t-b"), "INSERT INTO products (tenant_id, sku, name, price_cents) VALUES ('t-a', 'A-2', 'x', 1) RETURNING sku").await.is_err());
    assert!(
        as_tenant(
            &db,
            Some("t-b"),
            "UPDATE products SET price_cents = 0 WHERE sku = 'A-1' RETURNING sku"
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert!(
        as_tenant(
            &db,
            Some("t-b"),
            "DELETE FROM products WHERE tenant_id = 't-a' RETURNING sku"
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(as_tenant(&db, Some("t-a"), select).await.unwrap(), ["A-1"]);
    // The superuser (tenant-admin's maintenance path) sees both.
    let all: Vec<String> = sqlx::query_scalar(select).fetch_all(&db).await.unwrap();
    assert_eq!(all, ["A-1", "B-1"]);
}
