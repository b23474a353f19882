//! `[source] kind = "admin"` with tenant-admin down (its port closed): a
//! gateway with a last-known-good copy routes from it at once and keeps
//! retrying quietly; one without a usable copy starts, is not ready and
//! answers 503 problems instead of failing.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Gateway, free_port, get, q};
use testkit::Upstream;

/// The `[source]` body for a feed on a closed port, the token in `token`
/// and the copy at `cache/snapshot.json`.
fn feed_down() -> String {
    format!(
        "kind = \"admin\"\nurl = \"http://127.0.0.1:{}\"\ntoken_file = \"token\"\ncache_path = \"cache/snapshot.json\"",
        free_port()
    )
}

/// Writes the shared fixture (every pool on `up`) as the JSON copy the
/// follower keeps.
fn write_cache(dir: &Path, version: u64, up: &Upstream) {
    let toml = support::snapshot(version, &q(up), &q(up), &q(up));
    let json: serde_json::Value = toml::from_str(&toml).unwrap();
    write_cache_text(dir, &json.to_string());
}

fn write_cache_text(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    std::fs::write(dir.join("cache/snapshot.json"), text).unwrap();
}

fn start(dir: tempfile::TempDir, token: bool) -> Gateway {
    if token {
        std::fs::write(dir.path().join("token"), "gw-token\n").unwrap();
    }
    Gateway::start_with_source(dir, &feed_down(), "", "")
}

#[test]
fn a_cached_snapshot_routes_at_once_while_tenant_admin_is_down() {
    let up = Upstream::echo("shard-a").unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_cache(dir.path(), 7, &up);
    let mut gateway = start(dir, true);
    let line = gateway.wait_for_log(
        "loaded from the last-known-good copy",
        Duration::from_secs(5),
    );
    assert!(line.contains("routing snapshot version 7"), "{line}");

    let r = get(gateway.addr, "acme.app.example.test", "/orders");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["upstream"], "shard-a");
    assert_eq!(r.json()["headers"]["x-tenant-id"], "t-acme");
    let ready = get(gateway.admin, "localhost", "/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["snapshot_version"], 7);

    // The outage is logged once, however many retries follow.
    gateway.wait_for_log("cannot connect", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway
        .metric("switchyard_gateway_feed_errors_total{kind=\"connect\"}")
        .unwrap_or(0.0)
        < 4.0
    {
        assert!(Instant::now() < deadline, "the follower stopped retrying");
        std::thread::sleep(Duration::from_millis(100));
    }
    let outage = gateway.log_lines("routing feed http://127.0.0.1:");
    assert_eq!(outage.len(), 1, "{outage:#?}");
    assert!(
        outage[0].contains("serving snapshot version 7 meanwhile"),
        "{}",
        outage[0]
    );
    assert!(
        !gateway
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("gw-token")),
        "the token was logged"
    );
    assert_eq!(gateway.metric("switchyard_gateway_feed_up"), Some(0.0));
    assert_eq!(get(gateway.addr, "acme.app.example.test", "/").status, 200);

    // The follower stops with the gateway.
    gateway.terminate();
}

#[test]
fn without_a_cached_snapshot_the_gateway_is_not_ready_and_answers_503_problems() {
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = start(dir, true);
    gateway.wait_for_log("no last-known-good snapshot", Duration::from_secs(5));

    let ready = get(gateway.admin, "localhost", "/readyz");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["ready"], false);
    assert_eq!(get(gateway.admin, "localhost", "/healthz").status, 200);

    let r = get(gateway.addr, "acme.app.example.test", "/");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["status"], 503);
    assert!(
        gateway.wait_exit(Duration::ZERO).is_none(),
        "the gateway died"
    );
}

#[test]
fn a_corrupt_cached_snapshot_and_a_missing_token_are_logged_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    write_cache_text(dir.path(), "{\"version\": 3, \"regi");
    let mut gateway = start(dir, false);
    let line = gateway.wait_for_log("ignoring the last-known-good copy", Duration::from_secs(5));
    assert!(line.contains("cache/snapshot.json is not usable"), "{line}");
    gateway.wait_for_log("not valid JSON", Duration::from_secs(1));
    gateway.wait_for_log("cannot read source.token_file", Duration::from_secs(5));

    assert_eq!(get(gateway.admin, "localhost", "/readyz").status, 503);
    assert_eq!(get(gateway.addr, "acme.app.example.test", "/").status, 503);
    assert_eq!(
        gateway.metric("switchyard_gateway_feed_errors_total{kind=\"auth\"}"),
        Some(1.0)
    );
    assert!(
        gateway.wait_exit(Duration::ZERO).is_none(),
        "the gateway died"
    );
}
