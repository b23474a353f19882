//! The routing feed end to end: real gateways (the `gateway` binary Cargo
//! built beside `tenant-admin`) following the real `tenant-admin serve`,
//! proxying to a real upstream. A tenant created through the API is routed
//! within a second; with tenant-admin killed, a gateway keeps routing, also
//! after its own restart (from its last-known-good snapshot on disk), and
//! follows again once tenant-admin is back. A tenant moved to another shard
//! is read from its old shard while its rows are copied, its writes held,
//! then both go to the new shard.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::gateway::{Gateway, get};
use support::{Admin, ShardSpec};
use testkit::{PgCluster, Upstream};

async fn stack() -> (Admin, PgCluster, Upstream, String) {
    let admin = Admin::start();
    let cluster = PgCluster::start().unwrap();
    let upstream = Upstream::echo("shard-1").unwrap();
    admin.add_region("eu-west").await;
    // No per-IP limit: the tests poll the gateway every few milliseconds.
    admin
        .post(
            "/v1/plans",
            admin.token(),
            &json!({"name": "starter", "rate_per_sec": 100_000, "burst": 100_000, "max_body_bytes": 65536}),
        )
        .await
        .expect_status(201);
    admin
        .add_shard(
            &ShardSpec::new("shard-1", "eu-west", &cluster)
                .pool("eu-west", upstream.addr().to_string()),
        )
        .await;
    let (_, token) = admin.create_token("gateways", "gateway").await;
    (admin, cluster, upstream, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_route_a_tenant_created_through_the_api_within_a_second() {
    let (admin, _cluster, _upstream, token) = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let gateways: Vec<Gateway> = (0..3)
        .map(|i| Gateway::start(dir.path(), &format!("gw{i}"), &admin.base_url(), &token))
        .collect();
    for gateway in &gateways {
        assert_eq!(gateway.tenant_of("acme.app.example.test"), Err(404));
    }

    for n in 0..5 {
        let slug = format!("acme{n}");
        let id = format!("t-acme-{n}");
        admin
            .create_tenant(&json!({"id": id, "slug": slug, "plan": "starter", "region": "eu-west"}))
            .await;
        for gateway in &gateways {
            gateway.routed_within(
                &format!("{slug}.app.example.test"),
                &id,
                Duration::from_secs(1),
            );
        }
    }

    // A suspension reaches every gateway too.
    admin
        .post("/v1/tenants/t-acme-0/suspend", admin.token(), &json!({}))
        .await
        .expect_status(200);
    let start = Instant::now();
    for gateway in &gateways {
        while gateway.tenant_of("acme0.app.example.test") != Err(403) {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "suspension not applied within 1 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // Every gateway reports the newest version as applied.
    let version = admin.snapshot_version().await;
    support::eventually(
        "gateways report the newest version",
        Duration::from_secs(5),
        || async {
            let listed = admin
                .get("/v1/gateways", admin.token())
                .await
                .expect_status(200)
                .json;
            let items = listed["items"].as_array().cloned().unwrap_or_default();
            (items.len() == 3
                && items.iter().all(|g| {
                    g["applied_version"].as_u64() == Some(version)
                        && g["region"] == "eu-west"
                        && g["behind"] == 0
                }))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_keeps_routing_while_tenant_admin_is_down_also_after_its_own_restart() {
    let (mut admin, _cluster, _upstream, token) = stack().await;
    admin
        .create_tenant(
            &json!({"id": "t-acme", "slug": "acme", "plan": "starter", "region": "eu-west"}),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::start(dir.path(), "gw", &admin.base_url(), &token);
    gateway.routed_within("acme.app.example.test", "t-acme", Duration::from_secs(1));
    assert!(
        dir.path().join("gw.snapshot.json").exists(),
        "no last-known-good snapshot written"
    );

    admin.stop();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        gateway.tenant_of("acme.app.example.test").as_deref(),
        Ok("t-acme")
    );

    // Restarted with tenant-admin still down: serves the cached snapshot.
    gateway.kill();
    gateway.spawn();
    assert_eq!(
        gateway.tenant_of("acme.app.example.test").as_deref(),
        Ok("t-acme")
    );
    assert!(
        gateway.logs().matches("routing snapshot").count() >= 2,
        "{}",
        gateway.logs()
    );

    // tenant-admin back: the gateway follows again.
    admin.start_again();
    admin
        .create_tenant(
            &json!({"id": "t-initech", "slug": "initech", "plan": "starter", "region": "eu-west"}),
        )
        .await;
    gateway.routed_within(
        "initech.app.example.test",
        "t-initech",
        Duration::from_secs(10),
    );
    assert_eq!(
        gateway.tenant_of("acme.app.example.test").as_deref(),
        Ok("t-acme")
    );
}

/// Which upstream answered a request: `(status, upstream name)`.
fn answered_by(addr: SocketAddr, method: &str, host: &str) -> (u16, String) {
    let body = (method == "POST").then_some("{\"qty\": 1}");
    let (status, body) =
        testkit::plain_http::request(addr, method, "/orders", &[("host", host)], body);
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    (
        status,
        echo["upstream"].as_str().unwrap_or(&body).to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tenant_reads_from_its_old_shard_while_copied_and_its_held_writes_reach_the_new_one()
 {
    let (admin, cluster, _one, token) = stack().await;
    let cluster_two = PgCluster::start().unwrap();
    let two = Upstream::echo("shard-2").unwrap();
    admin
        .add_shard(
            &ShardSpec::new("shard-2", "eu-west", &cluster_two)
                .pool("eu-west", two.addr().to_string()),
        )
        .await;
    admin
        .create_tenant(&json!({"id": "t-acme", "slug": "acme", "plan": "starter",
                               "region": "eu-west", "placement": {"kind": "shared", "shard": "shard-1"}}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), "gw", &admin.base_url(), &token);
    let host = "acme.app.example.test";
    gateway.routed_within(host, "t-acme", Duration::from_secs(1));
    assert_eq!(
        answered_by(gateway.http, "POST", host),
        (200, "shard-1".into())
    );

    // The copy is kept waiting on a lock in the old shard, so the test sees
    // the move in the middle, writes held.
    let catalog = admin.catalog().await;
    let old = support::connect(&cluster.database_url("shard_1")).await;
    let mut lock = old.begin().await.unwrap();
    sqlx::query("LOCK TABLE invoice_items IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mover = {
        let client = admin.client();
        let op = admin.token().to_owned();
        tokio::spawn(async move {
            client
                .request(http::Method::POST, "/v1/tenants/t-acme/move")
                .bearer(&op)
                .json(&json!({"placement": {"kind": "shared", "shard": "shard-2"}}))
                .timeout(Duration::from_secs(60))
                .send()
                .await
        })
    };
    support::eventually(
        "the gateway holds the tenant's writes",
        Duration::from_secs(10),
        || async {
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT max(v.version) FROM snapshot_versions v \
                 WHERE v.reason = 'tenant t-acme moving to shard-2: writes held' \
                    AND v.version <= (SELECT min(applied_version) FROM gateways)",
            )
            .fetch_one(&catalog)
            .await
            .unwrap();
            held.map(|_| ())
        },
    )
    .await;

    // Reads: the old shard, at once. Writes: held until the move is done.
    assert_eq!(
        answered_by(gateway.http, "GET", host),
        (200, "shard-1".into())
    );
    let http = gateway.http;
    let write = tokio::task::spawn_blocking(move || answered_by(http, "POST", host));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!write.is_finished(), "the write was not held");
    lock.commit().await.unwrap();
    assert_eq!(write.await.unwrap(), (200, "shard-2".into()));
    let moved = mover.await.unwrap();
    assert_eq!(moved.status, 200, "{}", moved.text());
    assert_eq!(moved.json["target"], "shard-2");
    assert_eq!(
        answered_by(gateway.http, "GET", host),
        (200, "shard-2".into())
    );
    let (_, metrics) = get(gateway.admin, "/metrics", "gateway.admin");
    assert!(
        metrics.contains("switchyard_gateway_writes_held_total{outcome=\"released\"} 1"),
        "{metrics}"
    );
}
