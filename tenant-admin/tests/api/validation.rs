//! Bad input and conflicting changes: refused with a problem naming the
//! field, and nothing written.

use http::Method;
use serde_json::{Value, json};

use crate::support::{Admin, ShardSpec};
use crate::{tenant, tenant_with_id, written};

#[tokio::test]
async fn rejected_input_names_the_field_and_writes_nothing() {
    let admin = Admin::start();
    let db = admin.catalog().await;
    let op = admin.token();
    admin.add_region("eu-west").await;
    admin.add_plan("starter").await;
    // A shard only registered (its database is never contacted here).
    admin
        .post(
            "/v1/shards",
            op,
            &json!({"id": "shard-1", "region": "eu-west", "dsn": "postgres://app@db1.internal:5432/shard1",
                    "pools": {"eu-west": ["10.0.0.1:8080"]}}),
        )
        .await
        .expect_status(201);
    let before = written(&db).await;

    let long_slug = "a".repeat(64);
    let shard = |pools: Value| json!({"id": "shard-2", "region": "eu-west", "dsn": "postgres://app@db2.internal/shard2", "pools": pools});
    let cases: Vec<(&str, &str, Value, u16, Option<&str>)> = vec![
        (
            "POST",
            "/v1/tenants",
            tenant("Acme", "starter", "eu-west"),
            422,
            Some("slug"),
        ),
        (
            "POST",
            "/v1/tenants",
            tenant(&long_slug, "starter", "eu-west"),
            422,
            Some("slug"),
        ),
        (
            "POST",
            "/v1/tenants",
            tenant("café", "starter", "eu-west"),
            422,
            Some("slug"),
        ),
        (
            "POST",
            "/v1/tenants",
            tenant("-acme", "starter", "eu-west"),
            422,
            Some("slug"),
        ),
        (
            "POST",
            "/v1/tenants",
            json!({"slug": "acme", "plan": "starter", "region": "eu-west", "colour": "blue"}),
            422,
            Some("colour"),
        ),
        (
            "POST",
            "/v1/tenants",
            json!({"slug": "acme", "plan": "starter"}),
            422,
            Some("region"),
        ),
        (
            "POST",
            "/v1/tenants",
            json!({"slug": 7, "plan": "starter", "region": "eu-west"}),
            422,
            Some("slug"),
        ),
        (
            "POST",
            "/v1/tenants",
            json!({"slug": "acme", "plan": "starter", "region": "eu-west",
                   "placement": {"kind": "shared", "shard": "Shard One"}}),
            422,
            Some("placement.shard"),
        ),
        (
            "POST",
            "/v1/tenants",
            json!({"slug": "acme", "plan": "starter", "region": "eu-west", "placement": {"kind": "dedicated"}}),
            422,
            Some("placement"),
        ),
        (
            "POST",
            "/v1/shards",
            shard(json!({"eu-west": ["10.0.0.1"]})),
            422,
            Some("pools.eu-west[0]"),
        ),
        (
            "POST",
            "/v1/shards",
            shard(json!({"eu-west": ["host:0"]})),
            422,
            Some("pools.eu-west[0]"),
        ),
        (
            "POST",
            "/v1/shards",
            shard(json!({"eu-west": ["a b:80"]})),
            422,
            Some("pools.eu-west[0]"),
        ),
        (
            "POST",
            "/v1/shards",
            shard(json!({"eu-west": ["10.0.0.2:80", "app.internal:99999"]})),
            422,
            Some("pools.eu-west[1]"),
        ),
        (
            "POST",
            "/v1/shards",
            shard(json!({"eu-west": [{"addr": "10.0.0.2:80", "weight": 0}]})),
            422,
            Some("pools.eu-west[0].weight"),
        ),
        (
            "POST",
            "/v1/shards",
            shard(json!({"us-east": ["10.0.0.2:80"]})),
            422,
            Some("pools"),
        ),
        ("POST", "/v1/shards", shard(json!({})), 422, Some("pools")),
        (
            "POST",
            "/v1/shards",
            json!({"id": "shard-2", "region": "eu-west", "weight": 0, "dsn": "postgres://app@db2/shard2",
                   "pools": {"eu-west": ["10.0.0.2:80"]}}),
            422,
            Some("weight"),
        ),
        (
            "POST",
            "/v1/shards",
            json!({"id": "shard-2", "region": "eu-west", "weight": 5000, "dsn": "postgres://app@db2/shard2",
                   "pools": {"eu-west": ["10.0.0.2:80"]}}),
            422,
            Some("weight"),
        ),
        (
            "POST",
            "/v1/shards",
            json!({"id": "shard-2", "region": "eu-west", "dsn": "mysql://app@db2/shard2",
                   "pools": {"eu-west": ["10.0.0.2:80"]}}),
            422,
            Some("dsn"),
        ),
        (
            "POST",
            "/v1/shards",
            json!({"id": "shard-2", "region": "eu-west", "dsn": "postgres://app@db2",
                   "pools": {"eu-west": ["10.0.0.2:80"]}}),
            422,
            Some("dsn"),
        ),
        (
            "PATCH",
            "/v1/shards/shard-1",
            json!({"weight": 0}),
            422,
            Some("weight"),
        ),
        (
            "PATCH",
            "/v1/shards/shard-1",
            json!({"weight": 5000}),
            422,
            Some("weight"),
        ),
        (
            "PATCH",
            "/v1/shards/shard-1",
            json!({"status": "gone"}),
            422,
            Some("status"),
        ),
        (
            "PATCH",
            "/v1/shards/shard-1",
            json!({"dsn": "http://db1/x"}),
            422,
            Some("dsn"),
        ),
        (
            "PATCH",
            "/v1/shards/shard-1",
            json!({"pools": {"eu-west": ["10.0.0.1"]}}),
            422,
            Some("pools.eu-west[0]"),
        ),
        (
            "POST",
            "/v1/regions",
            json!({"name": "EU West"}),
            422,
            Some("name"),
        ),
        (
            "POST",
            "/v1/plans",
            json!({"name": "free", "rate_per_sec": 0, "burst": 1, "max_body_bytes": 1}),
            422,
            Some("rate_per_sec"),
        ),
        (
            "POST",
            "/v1/plans",
            json!({"name": "free", "burst": 1, "max_body_bytes": 1}),
            422,
            Some("rate_per_sec"),
        ),
        (
            "PATCH",
            "/v1/plans/starter",
            json!({"burst": -1}),
            422,
            Some("burst"),
        ),
        (
            "POST",
            "/v1/tokens",
            json!({"name": "x", "role": "root"}),
            422,
            Some("role"),
        ),
        (
            "POST",
            "/v1/tokens",
            json!({"name": "", "role": "viewer"}),
            422,
            Some("name"),
        ),
    ];
    for (method, path, body, status, field) in cases {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = admin
            .request(method.clone(), path)
            .bearer(op)
            .json(&body)
            .send()
            .await;
        assert!(
            reply.status.as_u16() == status,
            "{method} {path} {body}: expected {status}, got {}: {}",
            reply.status,
            reply.text()
        );
        reply.expect_problem(status, field);
        assert_eq!(
            written(&db).await,
            before,
            "{method} {path} {body} wrote something"
        );
    }

    // Not JSON: 400. Another content type: 415. Over 1 MiB: 413.
    admin
        .request(Method::POST, "/v1/tenants")
        .bearer(op)
        .body("application/json", r#"{"slug": "acme", "#)
        .send()
        .await
        .expect_problem(400, None);
    admin
        .request(Method::POST, "/v1/regions")
        .bearer(op)
        .body("application/json", "")
        .send()
        .await
        .expect_problem(400, None);
    admin
        .request(Method::POST, "/v1/tenants")
        .bearer(op)
        .body(
            "text/plain",
            r#"{"slug": "acme", "plan": "starter", "region": "eu-west"}"#,
        )
        .send()
        .await
        .expect_problem(415, None);
    admin
        .request(Method::POST, "/v1/regions")
        .bearer(op)
        .raw_body(r#"{"name": "us-east"}"#)
        .send()
        .await
        .expect_problem(415, None);
    let huge = format!(
        r#"{{"slug": "acme", "plan": "starter", "region": "eu-west", "id": "{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    admin
        .request(Method::POST, "/v1/tenants")
        .bearer(op)
        .body("application/json", huge.clone())
        .send()
        .await
        .expect_problem(413, None);
    admin
        .request(Method::POST, "/v1/tenants")
        .bearer(op)
        .header("idempotency-key", "huge-1")
        .body("application/json", huge)
        .send()
        .await
        .expect_problem(413, None);
    // Query strings are input too.
    for query in ["limit=abc", "limit=-1", "cursor=%%%"] {
        let reply = admin.get(&format!("/v1/regions?{query}"), op).await;
        assert_eq!(reply.status.as_u16(), 400, "{query}: {}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{query}: {}",
            reply.text()
        );
    }
    admin
        .delete("/v1/tokens/abc", op)
        .await
        .expect_problem(400, None);

    assert_eq!(
        written(&db).await,
        before,
        "a rejected request wrote something"
    );
}

#[tokio::test]
async fn conflicts_are_409_or_422_naming_the_field_never_500() {
    let admin = Admin::start();
    let db = admin.catalog().await;
    let op = admin.token();
    let host = admin.catalog_cluster().unwrap();
    admin.add_region("eu-west").await;
    admin.add_region("us-east").await;
    admin.add_plan("starter").await;
    admin
        .add_shard(&ShardSpec::new("shard-1", "eu-west", host))
        .await;
    admin
        .add_shard(&ShardSpec::new("shard-us", "us-east", host))
        .await;
    admin
        .create_tenant(&tenant_with_id("t-acme", "acme", "starter", "eu-west"))
        .await;
    let before = written(&db).await;

    admin
        .post("/v1/regions", op, &json!({"name": "eu-west"}))
        .await
        .expect_problem(409, Some("name"));
    admin
        .post(
            "/v1/plans",
            op,
            &json!({"name": "starter", "rate_per_sec": 5, "burst": 5, "max_body_bytes": 1000}),
        )
        .await
        .expect_problem(409, Some("name"));
    let shard = json!({"id": "shard-1", "region": "eu-west", "dsn": "postgres://app@db9/x",
                       "pools": {"eu-west": ["10.0.0.9:80"]}});
    admin
        .post("/v1/shards", op, &shard)
        .await
        .expect_problem(409, Some("id"));
    // A cluster cannot take a shard's id either.
    admin
        .post("/v1/clusters", op, &shard)
        .await
        .expect_problem(409, Some("id"));
    // The same slug under another id; the same id again.
    admin
        .post("/v1/tenants", op, &tenant("acme", "starter", "eu-west"))
        .await
        .expect_problem(409, Some("slug"));
    admin
        .post(
            "/v1/tenants",
            op,
            &tenant_with_id("t-other", "acme", "starter", "eu-west"),
        )
        .await
        .expect_problem(409, Some("slug"));
    admin
        .post(
            "/v1/tenants",
            op,
            &tenant_with_id("t-acme", "acme-2", "starter", "eu-west"),
        )
        .await
        .expect_problem(409, Some("id"));
    // A region in use by shards and tenants.
    admin
        .delete("/v1/regions/eu-west", op)
        .await
        .expect_problem(409, None);
    admin
        .get("/v1/regions/eu-west", op)
        .await
        .expect_status(200);
    // References to nothing.
    admin
        .post("/v1/tenants", op, &tenant("globex", "platinum", "eu-west"))
        .await
        .expect_problem(422, Some("plan"));
    admin
        .post("/v1/tenants", op, &tenant("globex", "starter", "mars"))
        .await
        .expect_problem(422, Some("region"));
    admin
        .patch("/v1/tenants/t-acme", op, &json!({"plan": "platinum"}))
        .await
        .expect_problem(422, Some("plan"));
    admin
        .post(
            "/v1/tenants",
            op,
            &json!({"slug": "globex", "plan": "starter", "region": "eu-west",
                    "placement": {"kind": "shared", "shard": "shard-9"}}),
        )
        .await
        .expect_problem(422, Some("placement.shard"));
    admin
        .post(
            "/v1/tenants",
            op,
            &json!({"slug": "globex", "plan": "starter", "region": "eu-west",
                    "placement": {"kind": "shared", "shard": "shard-us"}}),
        )
        .await
        .expect_problem(422, Some("placement.shard"));
    admin
        .post(
            "/v1/shards",
            op,
            &json!({"id": "shard-2", "region": "mars", "dsn": "postgres://app@db9/x",
                    "pools": {"mars": ["10.0.0.9:80"]}}),
        )
        .await
        .expect_problem(422, Some("region"));
    admin
        .post(
            "/v1/shards",
            op,
            &json!({"id": "shard-2", "region": "eu-west", "dsn": "postgres://app@db9/x",
                    "pools": {"eu-west": ["10.0.0.9:80"], "mars": ["10.0.0.9:80"]}}),
        )
        .await
        .expect_problem(422, Some("pools.mars"));
    admin
        .get("/v1/tenants/t-nobody", op)
        .await
        .expect_problem(404, None);
    admin
        .patch("/v1/shards/shard-9", op, &json!({"weight": 5}))
        .await
        .expect_problem(404, None);
    admin.get("/v1/nowhere", op).await.expect_problem(404, None);
    assert_eq!(
        written(&db).await,
        before,
        "a refused change wrote something"
    );

    // A region nothing uses can go.
    admin.add_region("ap-south").await;
    admin
        .delete("/v1/regions/ap-south", op)
        .await
        .expect_status(204);
    admin
        .get("/v1/regions/ap-south", op)
        .await
        .expect_problem(404, None);
    assert!(
        !admin.logs().contains("\"level\":\"ERROR\""),
        "{}",
        admin.log_tail()
    );
}
