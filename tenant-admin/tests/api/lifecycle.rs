//! A tenant's life after provisioning (plan changes, suspension, deletion
//! and the purge of its rows) and the isolation of its rows on a shard.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;

use crate::support::{Admin, ShardSpec, connect, eventually};
use crate::{snapshot_tenant, tenant_with_id};

#[tokio::test]
async fn suspend_resume_plan_change_and_delete_reach_the_snapshot_and_the_shard() {
    let admin = Admin::start();
    let op = admin.token();
    let host = admin.catalog_cluster().unwrap();
    admin.add_region("eu-west").await;
    admin.add_plan("starter").await;
    admin.add_plan("gold").await;
    let shard = admin
        .add_shard(&ShardSpec::new("shard-1", "eu-west", host))
        .await;
    admin
        .create_tenant(&tenant_with_id("t-a", "alpha", "starter", "eu-west"))
        .await;
    admin
        .create_tenant(&tenant_with_id("t-b", "beta", "starter", "eu-west"))
        .await;
    // Application rows of both tenants on the shard.
    let rows = shard.pool().await;
    for t in ["t-a", "t-b"] {
        let mut tx = rows.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(t)
            .execute(&mut *tx)
            .await
            .unwrap();
        for sku in ["sku-1", "sku-2", "sku-3"] {
            sqlx::query("INSERT INTO products (tenant_id, sku, name, price_cents) VALUES ($1, $2, 'thing', 100)")
                .bind(t)
                .bind(sku)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO customers (tenant_id, name) VALUES ($1, 'someone')")
            .bind(t)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let rows_of = |t: &'static str| {
        let rows = rows.clone();
        async move {
            let mut n = 0;
            for table in ["products", "customers", "tenants"] {
                let c: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM {table} WHERE tenant_id = $1"
                )))
                .bind(t)
                .fetch_one(&rows)
                .await
                .unwrap();
                n += c;
            }
            n
        }
    };
    assert_eq!(rows_of("t-a").await, 5);
    assert_eq!(rows_of("t-b").await, 5);

    let v0 = admin.snapshot_version().await;
    let changed = admin
        .patch("/v1/tenants/t-a", op, &json!({"plan": "gold"}))
        .await
        .expect_status(200);
    assert_eq!(changed.json["plan"], "gold");
    let s1 = admin.snapshot().await;
    assert_eq!(snapshot_tenant(&s1, "t-a").unwrap()["plan"], "gold");
    let v1 = s1["version"].as_u64().unwrap();
    assert!(v1 > v0);

    admin
        .post("/v1/tenants/t-a/suspend", op, &json!({}))
        .await
        .expect_status(200);
    let s2 = admin.snapshot().await;
    assert_eq!(snapshot_tenant(&s2, "t-a").unwrap()["status"], "suspended");
    let v2 = s2["version"].as_u64().unwrap();
    assert!(v2 > v1);
    // Suspending again changes nothing and publishes nothing.
    let again = admin
        .post("/v1/tenants/t-a/suspend", op, &json!({}))
        .await
        .expect_status(200);
    assert_eq!(again.json["status"], "suspended");
    assert_eq!(admin.snapshot_version().await, v2);

    admin
        .post("/v1/tenants/t-a/resume", op, &json!({}))
        .await
        .expect_status(200);
    let s3 = admin.snapshot().await;
    assert_eq!(snapshot_tenant(&s3, "t-a").unwrap()["status"], "active");
    let v3 = s3["version"].as_u64().unwrap();
    assert!(v3 > v2);

    let deleted = admin.delete("/v1/tenants/t-a", op).await.expect_status(200);
    assert_eq!(deleted.json["status"], "deleted");
    assert!(deleted.json["deleted_at"].is_string());
    let s4 = admin.snapshot().await;
    assert!(snapshot_tenant(&s4, "t-a").is_none());
    assert!(snapshot_tenant(&s4, "t-b").is_some());
    let v4 = s4["version"].as_u64().unwrap();
    assert!(v4 > v3);

    // The purge job removes the tenant's rows, and only them.
    eventually(
        "t-a's rows to be purged",
        Duration::from_secs(20),
        || async { (rows_of("t-a").await == 0).then_some(()) },
    )
    .await;
    assert_eq!(rows_of("t-b").await, 5);
    assert_eq!(shard.tenant_ids().await, ["t-b"]);
    let purge = eventually(
        "the purge job to succeed",
        Duration::from_secs(10),
        || async {
            let jobs = admin.get("/v1/jobs", op).await.expect_status(200);
            jobs.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["kind"] == "purge_tenant" && j["state"] == "succeeded")
                .cloned()
        },
    )
    .await;
    assert_eq!(purge["params"]["tenant"], "t-a");
    assert_eq!(purge["result"]["rows_removed"]["products"], json!(3));
    assert_eq!(purge["result"]["rows_removed"]["customers"], json!(1));

    // A deleted tenant stays deleted; deleting again is a no-op.
    let gone = admin.get("/v1/tenants/t-a", op).await.expect_status(200);
    assert_eq!(gone.json["status"], "deleted");
    assert!(gone.json["job"].is_null());
    admin.delete("/v1/tenants/t-a", op).await.expect_status(200);
    admin
        .patch("/v1/tenants/t-a", op, &json!({"plan": "starter"}))
        .await
        .expect_problem(409, None);
    admin
        .post("/v1/tenants/t-a/resume", op, &json!({}))
        .await
        .expect_problem(409, None);
    assert_eq!(admin.snapshot_version().await, v4);
    admin
        .delete("/v1/tenants/t-nobody", op)
        .await
        .expect_problem(404, None);
}

#[tokio::test]
async fn row_level_security_hides_other_tenants_on_a_provisioned_shard() {
    let admin = Admin::start();
    let host = admin.catalog_cluster().unwrap();
    admin.add_region("eu-west").await;
    admin.add_plan("starter").await;
    let shard = admin
        .add_shard(&ShardSpec::new("shard-1", "eu-west", host))
        .await;
    for (id, slug) in [("t-a", "alpha"), ("t-b", "beta")] {
        admin
            .create_tenant(&tenant_with_id(id, slug, "starter", "eu-west"))
            .await;
    }
    // The app servers' role: a login in switchyard_app, not a superuser.
    host.execute("shard_1", "CREATE ROLE app LOGIN IN ROLE switchyard_app")
        .unwrap();
    assert!(shard.url.ends_with("/shard_1"));
    let app_url = format!("postgres://app@127.0.0.1:{}/shard_1", host.port());
    let app = connect(&app_url).await;
    let is_super: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&app)
            .await
            .unwrap();
    assert!(!is_super);

    async fn as_tenant(
        app: &PgPool,
        tenant: Option<&str>,
        sql: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut tx = app.begin().await?;
        if let Some(tenant) = tenant {
            sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
        }
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }
    for (t, sku) in [("t-a", "A-1"), ("t-a", "A-2"), ("t-b", "B-1")] {
        as_tenant(
            &app,
            Some(t),
            &format!("INSERT INTO products (tenant_id, sku, name, price_cents) VALUES ('{t}', '{sku}', 'x', 1) RETURNING sku"),
        )
        .await
        .unwrap();
    }
    let skus = "SELECT sku FROM products ORDER BY sku";
    assert_eq!(
        as_tenant(&app, Some("t-a"), skus).await.unwrap(),
        ["A-1", "A-2"]
    );
    assert_eq!(as_tenant(&app, Some("t-b"), skus).await.unwrap(), ["B-1"]);
    assert!(as_tenant(&app, None, skus).await.unwrap().is_empty());
    assert_eq!(
        as_tenant(&app, Some("t-a"), "SELECT tenant_id FROM tenants")
            .await
            .unwrap(),
        ["t-a"]
    );
    assert!(
        as_tenant(&app, None, "SELECT tenant_id FROM tenants")
            .await
            .unwrap()
            .is_empty()
    );
    // Writing as another tenant fails; reaching its rows touches nothing.
    assert!(
        as_tenant(
            &app,
            Some("t-a"),
            "INSERT INTO products (tenant_id, sku, name, price_cents) VALUES ('t-b', 'B-2', 'x', 1) RETURNING sku",
        )
        .await
        .is_err()
    );
    assert!(
        as_tenant(
            &app,
            Some("t-a"),
            "DELETE FROM products WHERE tenant_id = 't-b' RETURNING sku"
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(as_tenant(&app, Some("t-b"), skus).await.unwrap(), ["B-1"]);
    app.close().await;
}
