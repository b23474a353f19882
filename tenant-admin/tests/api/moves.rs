//! Tenant moves: a tenant's rows copied to another shard, then to a
//! dedicated database of its own, routing switched, the source cleaned;
//! refusals that write nothing; a move to an unreachable shard that fails
//! without holding writes, is cancelled, and is resumed once it is back.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, PgPool};
use testkit::PgCluster;

use crate::support::{Admin, ShardSpec, connect};
use crate::{snapshot_tenant, tenant_with_id, written};

/// The application tables, parents first.
const TABLES: [&str; 9] = [
    "tenants",
    "categories",
    "customers",
    "products",
    "stock_movements",
    "sales",
    "sale_items",
    "invoices",
    "invoice_items",
];

/// Gives tenant `t` rows in every table of `db`, named after `batch`:
/// `products` products, a child category stored before its parent, sales
/// with items, invoices.
async fn fill(db: &PgPool, t: &str, batch: &str, products: u32) {
    let script = format!(
        "INSERT INTO categories (tenant_id, name) VALUES ('{t}', 'Parent {batch}');
         INSERT INTO categories (tenant_id, name, parent_id)
             SELECT '{t}', 'Child {batch}', id FROM categories WHERE tenant_id = '{t}' AND name = 'Parent {batch}';
         -- The parent's new row version now comes after its child's.
         UPDATE categories SET name = 'Parent {batch} (renamed)' WHERE tenant_id = '{t}' AND name = 'Parent {batch}';
         INSERT INTO products (tenant_id, sku, name, category_id, price_cents, stock)
             SELECT '{t}', 'SKU-{batch}-' || g, 'Product ' || g,
                 (SELECT id FROM categories WHERE tenant_id = '{t}' AND name = 'Child {batch}'), 100 * g, g
             FROM generate_series(1, {products}) g;
         INSERT INTO stock_movements (tenant_id, product_id, quantity, reason)
             SELECT '{t}', id, 5, 'purchase' FROM products WHERE tenant_id = '{t}' AND sku LIKE 'SKU-{batch}-%';
         INSERT INTO customers (tenant_id, name, email)
             SELECT '{t}', 'Customer {batch} ' || g, 'c' || g || '@example.com' FROM generate_series(1, 3) g;
         INSERT INTO sales (tenant_id, customer_id, status, total_cents)
             SELECT '{t}', id, 'paid', 300 FROM customers WHERE tenant_id = '{t}' AND name LIKE 'Customer {batch} %';
         INSERT INTO sale_items (tenant_id, sale_id, product_id, quantity, unit_price_cents)
             SELECT '{t}', s.id, (SELECT min(id) FROM products WHERE tenant_id = '{t}'), 3, 100
             FROM sales s WHERE s.tenant_id = '{t}'
                 AND s.id NOT IN (SELECT sale_id FROM sale_items WHERE tenant_id = '{t}');
         INSERT INTO invoices (tenant_id, number, sale_id, customer_id, total_cents)
             SELECT '{t}', '{batch}-' || lpad(id::text, 6, '0'), id, customer_id, total_cents
             FROM sales WHERE tenant_id = '{t}' AND id NOT IN (SELECT sale_id FROM invoices WHERE tenant_id = '{t}');
         INSERT INTO invoice_items (tenant_id, invoice_id, description, quantity, unit_price_cents, tax_rate_bp)
             SELECT '{t}', id, 'Goods', 3, 100, 2100 FROM invoices WHERE tenant_id = '{t}' AND number LIKE '{batch}-%';"
    );
    sqlx::raw_sql(AssertSqlSafe(script))
        .execute(db)
        .await
        .expect("the tenant's rows");
}

/// Every row of tenant `t` in `db`, per table, in a stable order.
async fn rows_of(db: &PgPool, t: &str) -> BTreeMap<&'static str, Value> {
    let mut rows = BTreeMap::new();
    for table in TABLES {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY to_jsonb(x)::text), '[]') \
             FROM {table} x WHERE tenant_id = $1"
        );
        let found: Value = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(t)
            .fetch_one(db)
            .await
            .unwrap();
        rows.insert(table, found);
    }
    rows
}

/// The SQLSTATE of a database error.
fn sql_state(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

fn row_count(rows: &BTreeMap<&'static str, Value>) -> usize {
    rows.values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum()
}

/// The reasons of every snapshot version, oldest first.
async fn version_reasons(db: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT reason FROM snapshot_versions ORDER BY version")
        .fetch_all(db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_to_another_shard_then_to_a_database_of_its_own_with_every_row() {
    let clusters = PgCluster::start_many(2).unwrap();
    let admin = Admin::start();
    let catalog = admin.catalog().await;
    let op = admin.token();
    let seeded = admin.seed("eu-west", "starter", &clusters).await;
    for (id, slug) in [("t-move", "mover"), ("t-stay", "stayer")] {
        let mut body = tenant_with_id(id, slug, "starter", "eu-west");
        body["placement"] = json!({"kind": "shared", "shard": "shard-1"});
        admin.create_tenant(&body).await;
    }
    let (one, two) = (
        seeded.shard("shard-1").pool().await,
        seeded.shard("shard-2").pool().await,
    );
    // Interleaved, so the ids of the two tenants interleave too.
    fill(&one, "t-stay", "a", 7).await;
    fill(&one, "t-move", "a", 25).await;
    fill(&one, "t-stay", "b", 4).await;
    let moving = rows_of(&one, "t-move").await;
    let staying = rows_of(&one, "t-stay").await;
    assert!(row_count(&moving) > 60, "{moving:?}");

    let reply = admin
        .post(
            "/v1/tenants/t-move/move",
            op,
            &json!({"placement": {"kind": "shared", "shard": "shard-2"}}),
        )
        .await
        .expect_status(200);
    assert_eq!(reply.json["target"], "shard-2");
    assert_eq!(reply.json["status"], "active");
    assert_eq!(reply.json["moving_to"], Value::Null);
    assert_eq!(reply.json["job"], Value::Null);

    // Every row is on shard-2 as it was, and gone from shard-1; the other
    // tenant is untouched on shard-1 and absent from shard-2.
    assert_eq!(rows_of(&two, "t-move").await, moving);
    assert_eq!(row_count(&rows_of(&one, "t-move").await), 0);
    assert_eq!(rows_of(&one, "t-stay").await, staying);
    assert_eq!(row_count(&rows_of(&two, "t-stay").await), 0);
    // New rows of the moved tenant get ids past the copied ones.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO products (tenant_id, sku, name, price_cents) \
         VALUES ('t-move', 'NEW-1', 'After the move', 1) RETURNING id",
    )
    .fetch_one(&two)
    .await
    .expect("a new row on the new shard");
    let max_copied: i64 = moving["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .max()
        .unwrap();
    assert!(id > max_copied, "new id {id}, copied up to {max_copied}");

    // Fenced in shard-1 for good: a late write there fails rather than
    // being lost; the tenant left behind writes as before.
    let late =
        sqlx::query("INSERT INTO customers (tenant_id, name) VALUES ('t-move', 'late writer')")
            .execute(&one)
            .await
            .expect_err("a write of the moved tenant in its old shard");
    assert_eq!(sql_state(&late).as_deref(), Some("SY503"), "{late}");
    sqlx::query("INSERT INTO customers (tenant_id, name) VALUES ('t-stay', 'still here')")
        .execute(&one)
        .await
        .expect("the other tenant writes on");

    // Routed to shard-2; its writes were held while the rows were copied.
    let snapshot = admin.snapshot().await;
    let routed = snapshot_tenant(&snapshot, "t-move").expect("routed");
    assert_eq!(routed["target"], "shard-2");
    assert_eq!(routed["status"], "active");
    let reasons = version_reasons(&catalog).await;
    let held = reasons
        .iter()
        .position(|r| r == "tenant t-move moving to shard-2: writes held")
        .unwrap_or_else(|| panic!("{reasons:?}"));
    assert_eq!(
        reasons[held + 1],
        "tenant t-move moved from shard-1 to shard-2"
    );
    let job: (String, Value) = sqlx::query_as(
        "SELECT state::text, result FROM jobs WHERE kind = 'move_tenant' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&catalog)
    .await
    .unwrap();
    assert_eq!(job.0, "succeeded");
    for table in TABLES {
        let n = moving[table].as_array().unwrap().len();
        assert_eq!(job.1["rows_copied"][table], json!(n), "{table}: {}", job.1);
        assert_eq!(
            job.1["rows_removed_from_source"][table],
            json!(n),
            "{table}"
        );
    }
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE resource = '/v1/tenants/t-move' \
            AND action LIKE 'tenant.move%' ORDER BY id",
    )
    .fetch_all(&catalog)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "tenant.move",
            "tenant.move.hold_writes",
            "tenant.move.switch"
        ]
    );

    // Refusals write nothing.
    let (_, viewer) = admin.create_token("watcher", "viewer").await;
    let before = written(&catalog).await;
    let to = |placement: Value| json!({ "placement": placement });
    admin
        .post(
            "/v1/tenants/t-move/move",
            op,
            &to(json!({"kind": "shared", "shard": "shard-2"})),
        )
        .await
        .expect_problem(409, Some("placement"));
    admin
        .post(
            "/v1/tenants/t-move/move",
            op,
            &to(json!({"kind": "shared", "shard": "shard-9"})),
        )
        .await
        .expect_problem(422, Some("placement.shard"));
    admin
        .post(
            "/v1/tenants/t-move/move",
            op,
            &json!({"placement": {"kind": "elsewhere"}}),
        )
        .await
        .expect_problem(422, Some("placement.kind"));
    admin
        .post(
            "/v1/tenants/t-nobody/move",
            op,
            &to(json!({"kind": "shared"})),
        )
        .await
        .expect_problem(404, None);
    admin
        .post(
            "/v1/tenants/t-move/move",
            &viewer,
            &to(json!({"kind": "shared", "shard": "shard-1"})),
        )
        .await
        .expect_problem(403, None);
    admin
        .delete("/v1/tenants/t-move/move", op)
        .await
        .expect_problem(409, None);
    assert_eq!(written(&catalog).await, before);

    // Then to a database of its own, created on a cluster server.
    let server = admin.catalog_cluster().expect("the catalog's cluster");
    admin
        .post(
            "/v1/cluster-servers",
            op,
            &json!({"id": "pg-eu-1", "region": "eu-west", "admin_dsn": server.url()}),
        )
        .await
        .expect_status(201);
    let moving = rows_of(&two, "t-move").await;
    let reply = admin
        .post(
            "/v1/tenants/t-move/move",
            op,
            &to(json!({"kind": "dedicated", "server": "pg-eu-1",
                       "pools": {"eu-west": ["127.0.0.1:9999"]}})),
        )
        .await
        .expect_status(200);
    assert_eq!(reply.json["target"], "ded-mover");
    assert_eq!(reply.json["placement"], "dedicated");
    let own = connect(&server.database_url("t_mover")).await;
    assert_eq!(rows_of(&own, "t-move").await, moving);
    assert_eq!(row_count(&rows_of(&two, "t-move").await), 0);
    assert_eq!(
        snapshot_tenant(&admin.snapshot().await, "t-move").unwrap()["target"],
        "ded-mover"
    );
    // The dedicated cluster is the tenant's: nobody else may be placed there.
    let mut other = tenant_with_id("t-other", "other", "starter", "eu-west");
    other["placement"] = json!({"kind": "dedicated", "cluster": "ded-mover"});
    admin
        .post("/v1/tenants", op, &other)
        .await
        .expect_problem(409, Some("placement.cluster"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_an_unreachable_shard_holds_nothing_can_be_cancelled_and_resumes() {
    let clusters = PgCluster::start_many(2).unwrap();
    let admin = Admin::start();
    let catalog = admin.catalog().await;
    let op = admin.token();
    let host = admin.catalog_cluster().expect("the catalog's cluster");
    admin.add_region("eu-west").await;
    admin.add_plan("starter").await;
    let one = admin
        .add_shard(&ShardSpec::new("shard-1", "eu-west", host))
        .await;
    admin
        .add_shard(&ShardSpec::new("shard-2", "eu-west", &clusters[0]))
        .await;
    admin
        .add_shard(&ShardSpec::new("shard-3", "eu-west", &clusters[1]))
        .await;
    let mut body = tenant_with_id("t-move", "mover", "starter", "eu-west");
    body["placement"] = json!({"kind": "shared", "shard": "shard-1"});
    admin.create_tenant(&body).await;
    let one_db = one.pool().await;
    fill(&one_db, "t-move", "a", 5).await;
    let rows = rows_of(&one_db, "t-move").await;

    let mut down = clusters.into_iter();
    let (mut two, _three) = (down.next().unwrap(), down.next().unwrap());
    two.stop();
    let to_two = json!({"placement": {"kind": "shared", "shard": "shard-2"}});
    let accepted = admin
        .post("/v1/tenants/t-move/move", op, &to_two)
        .await
        .expect_status(202);
    assert_eq!(accepted.json["target"], "shard-1");
    assert_eq!(accepted.json["moving_to"], "shard-2");
    assert_eq!(accepted.json["status"], "active", "writes are not held");
    let job = accepted.json["job"].as_i64().expect("a job");
    assert_eq!(
        accepted.header("location"),
        Some(format!("/v1/jobs/{job}").as_str())
    );
    let progress = admin
        .get(&format!("/v1/jobs/{job}"), op)
        .await
        .expect_status(200);
    let error = progress.json["error"].as_str().expect("an error");
    assert!(error.contains("cannot reach"), "{error}");
    // Still routed, and never held, where it was.
    let routed = snapshot_tenant(&admin.snapshot().await, "t-move")
        .unwrap()
        .clone();
    assert_eq!(routed["target"], "shard-1");
    assert_eq!(routed["status"], "active");
    assert!(
        !version_reasons(&catalog)
            .await
            .iter()
            .any(|r| r.contains("writes held")),
        "writes were held for a move that could not start"
    );

    // One move at a time; no delete in the middle of one.
    admin
        .post(
            "/v1/tenants/t-move/move",
            op,
            &json!({"placement": {"kind": "shared", "shard": "shard-3"}}),
        )
        .await
        .expect_problem(409, Some("placement"));
    let refused = admin
        .delete("/v1/tenants/t-move", op)
        .await
        .expect_problem(409, None);
    assert!(
        refused.text().contains("DELETE /v1/tenants/t-move/move"),
        "{}",
        refused.text()
    );

    // Cancelled: the job is closed and the tenant stays where it is.
    let cancelled = admin
        .delete("/v1/tenants/t-move/move", op)
        .await
        .expect_status(200);
    assert_eq!(cancelled.json["moving_to"], Value::Null);
    assert_eq!(cancelled.json["job"], Value::Null);
    let closed = admin
        .get(&format!("/v1/jobs/{job}"), op)
        .await
        .expect_status(200);
    assert_eq!(closed.json["state"], "succeeded");
    assert_eq!(closed.json["result"]["superseded"], "move cancelled");

    // Asked again while shard-2 is down, then again once it is back: the
    // repeated request resumes the failed move at once.
    admin
        .post("/v1/tenants/t-move/move", op, &to_two)
        .await
        .expect_status(202);
    two.start_again().unwrap();
    let moved = admin
        .post("/v1/tenants/t-move/move", op, &to_two)
        .await
        .expect_status(200);
    assert_eq!(moved.json["target"], "shard-2");
    let two_db = connect(&two.database_url("shard_2")).await;
    assert_eq!(rows_of(&two_db, "t-move").await, rows);
    assert_eq!(row_count(&rows_of(&one_db, "t-move").await), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_begun_before_the_fence_is_waited_for_and_copied_and_later_ones_fail() {
    let cluster = PgCluster::start().unwrap();
    let admin = Admin::start();
    let op = admin.token();
    let host = admin.catalog_cluster().expect("the catalog's cluster");
    admin.add_region("eu-west").await;
    admin.add_plan("starter").await;
    let one = admin
        .add_shard(&ShardSpec::new("shard-1", "eu-west", host))
        .await;
    let two = admin
        .add_shard(&ShardSpec::new("shard-2", "eu-west", &cluster))
        .await;
    let mut body = tenant_with_id("t-move", "mover", "starter", "eu-west");
    body["placement"] = json!({"kind": "shared", "shard": "shard-1"});
    admin.create_tenant(&body).await;
    let one_db = one.pool().await;
    fill(&one_db, "t-move", "a", 3).await;

    // A background worker's transaction, begun before the move, commits
    // only while the move waits at its fence.
    let mut straggler = one_db.begin().await.unwrap();
    sqlx::query("INSERT INTO customers (tenant_id, name) VALUES ('t-move', 'slow worker')")
        .execute(&mut *straggler)
        .await
        .unwrap();
    let mover = {
        let client = admin.client();
        let op = op.to_owned();
        tokio::spawn(async move {
            client
                .request(http::Method::POST, "/v1/tenants/t-move/move")
                .bearer(&op)
                .json(&json!({"placement": {"kind": "shared", "shard": "shard-2"}}))
                .timeout(std::time::Duration::from_secs(60))
                .send()
                .await
        })
    };
    // Past the gateways' acknowledgement and the grace: fenced, waiting.
    crate::support::eventually(
        "the tenant is fenced in shard-1",
        std::time::Duration::from_secs(15),
        || async {
            let fenced: Option<String> =
                sqlx::query_scalar("SELECT reason FROM tenant_fences WHERE tenant_id = 't-move'")
                    .fetch_optional(&one_db)
                    .await
                    .unwrap();
            fenced
        },
    )
    .await;
    let refused = sqlx::query("UPDATE products SET price_cents = 1 WHERE tenant_id = 't-move'")
        .execute(&one_db)
        .await
        .expect_err("a write after the fence");
    assert_eq!(sql_state(&refused).as_deref(), Some("SY503"), "{refused}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !mover.is_finished(),
        "the move did not wait for the straggler"
    );
    straggler.commit().await.unwrap();

    let moved = mover.await.unwrap().expect_status(200);
    assert_eq!(moved.json["target"], "shard-2");
    let two_db = two.pool().await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM customers WHERE tenant_id = 't-move' AND name = 'slow worker'",
    )
    .fetch_all(&two_db)
    .await
    .unwrap();
    assert_eq!(names, ["slow worker"], "the straggler's write was lost");
    let prices: Vec<i64> =
        sqlx::query_scalar("SELECT price_cents FROM products WHERE tenant_id = 't-move'")
            .fetch_all(&two_db)
            .await
            .unwrap();
    assert!(prices.iter().all(|p| *p != 1), "{prices:?}");

    // Moved back: the fence in shard-1 is lifted with the copy.
    admin
        .post(
            "/v1/tenants/t-move/move",
            op,
            &json!({"placement": {"kind": "shared", "shard": "shard-1"}}),
        )
        .await
        .expect_status(200);
    sqlx::query("INSERT INTO customers (tenant_id, name) VALUES ('t-move', 'home again')")
        .execute(&one_db)
        .await
        .expect("writes in shard-1 again");
    let fenced: Option<String> =
        sqlx::query_scalar("SELECT reason FROM tenant_fences WHERE tenant_id = 't-move'")
            .fetch_optional(&two_db)
            .await
            .unwrap();
    assert_eq!(fenced.as_deref(), Some("moving to shard-1"));
}
