//! The routing feed: ETags, long polls and gateway heartbeats.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;

use crate::support::Admin;
use crate::{snapshot_tenant, tenant_with_id, version_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routing_feed_long_polls_and_records_gateway_heartbeats() {
    let mut admin = Admin::start();
    let op = admin.token();
    admin.seed_one_tenant("t-first", "first").await;
    let (_, gateway) = admin.create_token("gw-1", "gateway").await;

    let current = admin
        .get("/v1/routing/snapshot", &gateway)
        .await
        .expect_status(200);
    let v = current.json["version"].as_u64().unwrap();
    assert!(v > 0);
    assert_eq!(current.header("etag"), Some(format!("\"{v}\"").as_str()));
    assert_eq!(version_of(&current), v);
    assert_eq!(current.header("content-type"), Some("application/json"));

    // Nothing changes: 304 when the wait is over.
    let started = Instant::now();
    let idle = admin
        .get(&format!("/v1/routing/snapshot?since={v}&wait=5"), &gateway)
        .await
        .expect_status(304);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(4500),
        "answered after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(15),
        "answered after {waited:?}"
    );
    assert_eq!(idle.header("etag"), Some(format!("\"{v}\"").as_str()));
    assert!(idle.body.is_empty());

    // A change during the wait answers at once with the newer version.
    let poll = {
        let client = admin.client();
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = client
                .request(
                    Method::GET,
                    &format!("/v1/routing/snapshot?since={v}&wait=10"),
                )
                .bearer(&gateway)
                .send()
                .await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin
        .create_tenant(&tenant_with_id("t-second", "second", "starter", "eu-west"))
        .await;
    let (reply, took) = poll.await.unwrap();
    let reply = reply.expect_status(200);
    assert!(
        took < Duration::from_secs(3),
        "the long poll answered after {took:?}"
    );
    let newer = reply.json["version"].as_u64().unwrap();
    assert!(newer > v);
    assert_eq!(version_of(&reply), newer);
    assert_eq!(reply.header("etag"), Some(format!("\"{newer}\"").as_str()));
    assert!(snapshot_tenant(&reply.json, "t-second").is_some());

    // If-None-Match with the current ETag: 304; with an old one: 200.
    admin
        .request(Method::GET, "/v1/routing/snapshot")
        .bearer(&gateway)
        .header("if-none-match", &format!("\"{newer}\""))
        .send()
        .await
        .expect_status(304);
    admin
        .request(Method::GET, "/v1/routing/snapshot")
        .bearer(&gateway)
        .header("if-none-match", &format!("\"{v}\""))
        .send()
        .await
        .expect_status(200);
    admin
        .get("/v1/routing/snapshot?wait=61", &gateway)
        .await
        .expect_problem(400, Some("wait"));
    admin
        .get("/v1/routing/snapshot?region=mars", &gateway)
        .await
        .expect_problem(404, None);

    // Heartbeats: each gateway's applied version and how far behind it is.
    admin
        .get(
            &format!("/v1/routing/snapshot?gateway=g1&region=eu-west&since={newer}"),
            &gateway,
        )
        .await
        .expect_status(304);
    admin
        .get(
            &format!("/v1/routing/snapshot?gateway=g2&region=eu-west&since={v}"),
            &gateway,
        )
        .await
        .expect_status(200);
    let gateways = admin.get("/v1/gateways", op).await.expect_status(200);
    let items = gateways.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", gateways.text());
    assert_eq!(items[0]["id"], "g1");
    assert_eq!(items[0]["region"], "eu-west");
    assert_eq!(items[0]["applied_version"], json!(newer));
    assert_eq!(items[0]["behind"], json!(0));
    assert_eq!(items[1]["id"], "g2");
    assert_eq!(items[1]["applied_version"], json!(v));
    assert_eq!(items[1]["behind"], json!(newer - v));
    assert!(items[0]["last_seen_at"].is_string());

    // Restarted on the same port and catalog, it serves the same version.
    admin.stop();
    assert!(std::net::TcpStream::connect(admin.addr).is_err());
    admin.start_again();
    let after = admin
        .get(&format!("/v1/routing/snapshot?since={v}"), &gateway)
        .await
        .expect_status(200);
    assert_eq!(version_of(&after), newer);
}
