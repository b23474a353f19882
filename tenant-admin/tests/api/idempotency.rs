//! `Idempotency-Key` on POST.

use serde_json::json;

use crate::support::{Admin, ShardSpec, count};
use crate::tenant;

#[tokio::test]
async fn idempotency_key_replays_the_first_answer_per_token() {
    let admin = Admin::start();
    let db = admin.catalog().await;
    let op = admin.token();

    let first = admin
        .post_idempotent("/v1/regions", op, "key-1", &json!({"name": "eu-west"}))
        .await
        .expect_status(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = admin
        .post_idempotent("/v1/regions", op, "key-1", &json!({"name": "eu-west"}))
        .await
        .expect_status(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json, first.json);
    assert_eq!(count(&db, "regions").await, 1);
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'region.create'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(audited, 1, "a replay is not a second change");

    // The same key with another request.
    admin
        .post_idempotent("/v1/regions", op, "key-1", &json!({"name": "us-east"}))
        .await
        .expect_problem(422, Some("Idempotency-Key"));
    admin
        .post_idempotent("/v1/plans", op, "key-1", &json!({"name": "eu-west"}))
        .await
        .expect_problem(422, Some("Idempotency-Key"));
    assert_eq!(count(&db, "regions").await, 1);

    // Another token's keys are its own.
    let (_, other) = admin.create_token("other-operator", "operator").await;
    let theirs = admin
        .post_idempotent("/v1/regions", &other, "key-1", &json!({"name": "us-east"}))
        .await
        .expect_status(201);
    assert_eq!(theirs.header("idempotent-replayed"), None);
    assert_eq!(theirs.json["name"], "us-east");
    let conflict = admin
        .post_idempotent("/v1/regions", &other, "key-2", &json!({"name": "eu-west"}))
        .await
        .expect_problem(409, Some("name"));
    assert_eq!(conflict.header("idempotent-replayed"), None);
    // A refusal is replayed too, as a problem document.
    let replayed = admin
        .post_idempotent("/v1/regions", &other, "key-2", &json!({"name": "eu-west"}))
        .await
        .expect_status(409);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        replayed.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(replayed.json, conflict.json);
    assert_eq!(count(&db, "regions").await, 2);

    // A tenant created twice under one key exists once.
    let host = admin.catalog_cluster().unwrap();
    admin.add_plan("starter").await;
    admin
        .add_shard(&ShardSpec::new("shard-1", "eu-west", host))
        .await;
    let body = tenant("acme", "starter", "eu-west");
    let created = admin
        .post_idempotent("/v1/tenants", op, "tenant-acme", &body)
        .await
        .expect_status(201);
    let replay = admin
        .post_idempotent("/v1/tenants", op, "tenant-acme", &body)
        .await
        .expect_status(201);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json["id"], created.json["id"]);
    assert_eq!(count(&db, "tenants").await, 1);

    // A key must be visible ASCII.
    admin
        .post_idempotent("/v1/regions", op, "a key", &json!({"name": "ap-south"}))
        .await
        .expect_problem(400, Some("Idempotency-Key"));
    assert_eq!(count(&db, "regions").await, 2);
}
