//! The audit log: one row per mutation, with actor and request id.

use serde_json::{Value, json};

use crate::support::{Admin, Reply};
use crate::tenant_with_id;

#[tokio::test]
async fn every_mutation_writes_one_audit_row_with_actor_and_request_id() {
    let admin = Admin::start();
    let db = admin.catalog().await;
    let host = admin.catalog_cluster().unwrap();
    let shard_url = host.create_database("shard_1").unwrap();
    let (_, bot) = admin.create_token("ci-bot", "operator").await;
    let bot = bot.as_str();

    // (reply, action, resource, has before, has after)
    let mut done: Vec<(Reply, &str, String, bool, bool)> = Vec::new();
    // One that is not is replaced.
    let r = admin
        .request(http::Method::POST, "/v1/regions")
        .bearer(bot)
        .header("x-request-id", "two words")
        .json(&json!({"name": "eu-west"}))
        .send()
        .await
        .expect_status(201);
    assert_ne!(r.request_id(), "two words");
    done.push((
        r,
        "region.create",
        "/v1/regions/eu-west".into(),
        false,
        true,
    ));
    // A valid request id sent by the client is kept.
    let r = admin
        .request(http::Method::POST, "/v1/regions")
        .bearer(bot)
        .header("x-request-id", "change-4711:us-east")
        .json(&json!({"name": "us-east"}))
        .send()
        .await
        .expect_status(201);
    assert_eq!(r.request_id(), "change-4711:us-east");
    done.push((
        r,
        "region.create",
        "/v1/regions/us-east".into(),
        false,
        true,
    ));
    let r = admin
        .post(
            "/v1/plans",
            bot,
            &json!({"name": "starter", "rate_per_sec": 10, "burst": 10, "max_body_bytes": 1000}),
        )
        .await
        .expect_status(201);
    done.push((r, "plan.create", "/v1/plans/starter".into(), false, true));
    let r = admin
        .patch("/v1/plans/starter", bot, &json!({"burst": 20}))
        .await
        .expect_status(200);
    done.push((r, "plan.update", "/v1/plans/starter".into(), true, true));
    let r = admin
        .post(
            "/v1/shards",
            bot,
            &json!({"id": "shard-1", "region": "eu-west", "dsn": shard_url, "pools": {"eu-west": ["127.0.0.1:9"]}}),
        )
        .await
        .expect_status(201);
    done.push((r, "shard.create", "/v1/shards/shard-1".into(), false, true));
    let r = admin
        .patch("/v1/shards/shard-1", bot, &json!({"weight": 50}))
        .await
        .expect_status(200);
    done.push((r, "shard.update", "/v1/shards/shard-1".into(), true, true));
    let r = admin
        .post(
            "/v1/cluster-servers",
            bot,
            &json!({"id": "pg-eu-1", "region": "eu-west", "admin_dsn": host.url()}),
        )
        .await
        .expect_status(201);
    done.push((
        r,
        "cluster_server.create",
        "/v1/cluster-servers/pg-eu-1".into(),
        false,
        true,
    ));
    let r = admin
        .post(
            "/v1/tokens",
            bot,
            &json!({"name": "temp", "role": "viewer"}),
        )
        .await
        .expect_status(201);
    let temp_id = r.json["id"].as_i64().unwrap();
    done.push((
        r,
        "token.create",
        format!("/v1/tokens/{temp_id}"),
        false,
        true,
    ));
    let r = admin
        .delete(&format!("/v1/tokens/{temp_id}"), bot)
        .await
        .expect_status(204);
    done.push((
        r,
        "token.revoke",
        format!("/v1/tokens/{temp_id}"),
        false,
        true,
    ));
    let r = admin
        .post(
            "/v1/tenants",
            bot,
            &tenant_with_id("t-acme", "acme", "starter", "eu-west"),
        )
        .await
        .expect_status(201);
    done.push((r, "tenant.create", "/v1/tenants/t-acme".into(), false, true));
    let r = admin
        .post("/v1/tenants/t-acme/suspend", bot, &json!({}))
        .await
        .expect_status(200);
    done.push((r, "tenant.suspend", "/v1/tenants/t-acme".into(), true, true));
    let r = admin
        .post("/v1/tenants/t-acme/resume", bot, &json!({}))
        .await
        .expect_status(200);
    done.push((r, "tenant.resume", "/v1/tenants/t-acme".into(), true, true));
    let r = admin
        .patch("/v1/tenants/t-acme", bot, &json!({"plan": "starter"}))
        .await
        .expect_status(200);
    // The same plan: nothing changed, so nothing is audited.
    let unchanged = r.request_id().to_owned();
    let r = admin
        .delete("/v1/tenants/t-acme", bot)
        .await
        .expect_status(200);
    done.push((r, "tenant.delete", "/v1/tenants/t-acme".into(), true, true));
    let r = admin
        .delete("/v1/regions/us-east", bot)
        .await
        .expect_status(204);
    done.push((
        r,
        "region.delete",
        "/v1/regions/us-east".into(),
        true,
        false,
    ));

    type Row = (String, String, String, Option<Value>, Option<Value>);
    for (reply, action, resource, has_before, has_after) in &done {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT actor, action, resource, before, after FROM audit_log WHERE request_id = $1",
        )
        .bind(reply.request_id())
        .fetch_all(&db)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        let (actor, a, res, before, after) = &rows[0];
        assert_eq!(actor, "ci-bot (operator)");
        assert_eq!(a, action);
        assert_eq!(res, resource);
        assert_eq!(before.is_some(), *has_before, "{action} before: {before:?}");
        assert_eq!(after.is_some(), *has_after, "{action} after: {after:?}");
    }
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE request_id = $1")
        .bind(&unchanged)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(audited, 0);
    // Before and after say what changed.
    let (before, after): (Value, Value) =
        sqlx::query_as("SELECT before, after FROM audit_log WHERE action = 'plan.update'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        (before["burst"].clone(), after["burst"].clone()),
        (json!(10), json!(20))
    );
    let (before, after): (Value, Value) =
        sqlx::query_as("SELECT before, after FROM audit_log WHERE action = 'tenant.suspend'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        (before["status"].as_str(), after["status"].as_str()),
        (Some("active"), Some("suspended"))
    );

    // The log, filtered by resource: only that tenant's entries, newest first.
    let log = admin
        .get("/v1/audit?resource=/v1/tenants/t-acme", bot)
        .await
        .expect_status(200);
    let actions: Vec<&str> = log.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["resource"], "/v1/tenants/t-acme");
            e["action"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.delete",
            "tenant.resume",
            "tenant.suspend",
            "tenant.activate",
            "tenant.create"
        ]
    );
    let creates = admin
        .get("/v1/audit?action=region.create", bot)
        .await
        .expect_status(200);
    assert_eq!(creates.json["items"].as_array().unwrap().len(), 2);
    let item = &log.json["items"][0];
    assert_eq!(item["actor"], "ci-bot (operator)");
    assert_eq!(
        item["request_id"],
        json!(done[done.len() - 2].0.request_id())
    );
}
