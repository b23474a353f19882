//! Operations through the API: tenant-schema migrations as a job with
//! per-database progress, and cache purges published on the Redis stream
//! gateways follow.

use std::time::Duration;

use serde_json::{Value, json};
use tenant_admin::migrations::Schema;
use testkit::{PgCluster, RedisServer};

use crate::support::{Admin, eventually};

fn target<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == id))
        .unwrap_or_else(|| panic!("no target {id} in {status}"))
}

/// Waits for job `id` to succeed; the job.
async fn job_succeeded(admin: &Admin, id: i64) -> Value {
    eventually(
        "the migration job succeeds",
        Duration::from_secs(30),
        || async {
            let job = admin
                .get(&format!("/v1/jobs/{id}"), admin.token())
                .await
                .expect_status(200)
                .json;
            (job["state"] == "succeeded").then_some(job)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_as_a_job_and_versions_show_per_target() {
    let admin = Admin::start();
    let op = admin.token();
    let clusters = PgCluster::start_many(2).unwrap();
    admin.seed("eu-west", "starter", &clusters).await;

    // Registered, never migrated: skew is visible.
    let before = admin
        .get("/v1/migrations", op)
        .await
        .expect_status(200)
        .json;
    let latest = Schema::Tenant.latest();
    assert_eq!(before["latest"], latest);
    for id in ["shard-1", "shard-2"] {
        assert_eq!(target(&before, id)["version"], Value::Null, "{before}");
        assert_eq!(
            target(&before, id)["pending"],
            Schema::Tenant.migrations().len(),
            "{before}"
        );
    }

    // Bad requests write nothing.
    admin
        .post("/v1/migrations/apply", op, &json!({"targets": ["nope"]}))
        .await
        .expect_problem(422, Some("targets"));
    admin
        .post("/v1/migrations/apply", op, &json!({"concurrency": 0}))
        .await
        .expect_problem(422, Some("concurrency"));

    // Only shard-1.
    let job = admin
        .post("/v1/migrations/apply", op, &json!({"targets": ["shard-1"]}))
        .await
        .expect_status(202)
        .json;
    let id = job["id"].as_i64().unwrap();
    let done = job_succeeded(&admin, id).await;
    assert_eq!(done["kind"], "migrate_tenants");
    assert_eq!(done["targets"].as_array().unwrap().len(), 1, "{done}");
    assert_eq!(done["targets"][0]["target"], "shard-1");
    assert_eq!(done["targets"][0]["state"], "applied");

    let after = admin
        .get("/v1/migrations", op)
        .await
        .expect_status(200)
        .json;
    assert_eq!(target(&after, "shard-1")["version"], latest, "{after}");
    assert_eq!(target(&after, "shard-1")["pending"], 0, "{after}");
    assert_eq!(target(&after, "shard-2")["version"], Value::Null, "{after}");

    // Every target: shard-2 too.
    let job = admin
        .post("/v1/migrations/apply", op, &json!({}))
        .await
        .expect_status(202)
        .json;
    let id = job["id"].as_i64().unwrap();
    job_succeeded(&admin, id).await;
    let after = admin
        .get("/v1/migrations", op)
        .await
        .expect_status(200)
        .json;
    assert_eq!(target(&after, "shard-2")["version"], latest, "{after}");
    let audit = admin
        .get("/v1/audit?action=migrations.apply", op)
        .await
        .expect_status(200)
        .json;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_purges_are_published_on_the_gateways_redis_stream() {
    let mut redis = RedisServer::start().unwrap();
    let admin = Admin::builder().redis_url(redis.url()).start();
    let op = admin.token();
    admin.seed_one_tenant("t-acme", "acme").await;

    let path = "/v1/tenants/t-acme/cache/purge";
    admin
        .post(path, op, &json!({"paths": ["no-slash"]}))
        .await
        .expect_problem(422, Some("paths[0]"));
    admin
        .post("/v1/tenants/t-nobody/cache/purge", op, &json!({}))
        .await
        .expect_status(404);

    let some = admin
        .post(path, op, &json!({"paths": ["/catalog", "/prices?page=2"]}))
        .await
        .expect_status(202)
        .json;
    let all = admin
        .post(path, op, &json!({}))
        .await
        .expect_status(202)
        .json;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(tenant_admin::PURGE_STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].0, some["stream_id"].as_str().unwrap());
    assert_eq!(entries[1].0, all["stream_id"].as_str().unwrap());
    let fields = |i: usize| -> std::collections::HashMap<String, String> {
        entries[i].1.iter().cloned().collect()
    };
    assert_eq!(fields(0)["tenant"], "t-acme");
    assert_eq!(fields(0)["paths"], r#"["/catalog","/prices?page=2"]"#);
    assert_eq!(fields(1)["tenant"], "t-acme");
    assert_eq!(
        fields(1)["paths"],
        "",
        "an empty paths field purges the whole tenant"
    );

    // Redis down: a clear 503, nothing claimed.
    redis.stop();
    admin.post(path, op, &json!({})).await.expect_status(503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_without_redis_configured_is_a_clear_503_and_unknown_methods_a_405() {
    let admin = Admin::start();
    let op = admin.token();
    admin.seed_one_tenant("t-acme", "acme").await;
    let reply = admin
        .post("/v1/tenants/t-acme/cache/purge", op, &json!({}))
        .await
        .expect_status(503);
    assert!(
        reply.json["detail"]
            .as_str()
            .unwrap()
            .contains("--redis-url"),
        "{}",
        reply.json
    );
    let reply = admin
        .request(http::Method::PUT, "/v1/regions")
        .bearer(op)
        .send()
        .await;
    assert_eq!(reply.status.as_u16(), 405);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
}
