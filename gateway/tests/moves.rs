//! A tenant being moved (status `moving`): its reads are served by the old
//! target at once, its writes are held until a newer snapshot ends the move
//! and are routed by that one, or answered 503 `tenant-moving` when the
//! hold runs out.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{Gateway, Response, get, read_response};
use testkit::Upstream;

/// Two shards, acme on `target` with `status`, initech active on shard-b.
fn snapshot(version: u64, target: &str, status: &str, a: &Upstream, b: &Upstream) -> String {
    let (a, b) = (a.addr(), b.addr());
    format!(
        r#"
version = {version}
regions = [{{ name = "eu-west" }}]
plans = [{{ name = "p", rate_per_sec = 1000000, burst = 1000000, max_body_bytes = 1024 }}]

[[targets]]
id = "shard-a"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = ["{a}"] }}

[[targets]]
id = "shard-b"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = ["{b}"] }}

[[tenants]]
id = "t-acme"
slug = "acme"
plan = "p"
region = "eu-west"
target = "{target}"
status = "{status}"

[[tenants]]
id = "t-initech"
slug = "initech"
plan = "p"
region = "eu-west"
target = "shard-b"
"#
    )
}

struct Stack {
    a: Upstream,
    b: Upstream,
    gateway: Gateway,
}

/// acme moving on shard-a; writes held for `hold_ms`.
fn stack(hold_ms: u64) -> Stack {
    let a = Upstream::echo("shard-a").unwrap();
    let b = Upstream::echo("shard-b").unwrap();
    let gateway = Gateway::start_in(
        tempfile::tempdir().unwrap(),
        &snapshot(1, "shard-a", "moving", &a, &b),
        "",
        &format!("[routing]\nmove_write_hold_ms = {hold_ms}\n"),
    );
    Stack { a, b, gateway }
}

impl Stack {
    /// Publishes a new snapshot the way a careful writer does (a new file
    /// renamed over the old one); returns when it was renamed in.
    fn publish(&self, text: &str) -> Instant {
        let temp = self.gateway.snapshot.with_extension("toml.new");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &self.gateway.snapshot).unwrap();
        Instant::now()
    }

    /// Waits until `n` writes are being held (at most 5 s).
    fn wait_held(&self, n: u32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.gateway.metric("switchyard_gateway_writes_waiting") != Some(f64::from(n)) {
            assert!(Instant::now() < deadline, "{n} writes were never held");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn held_total(&self, outcome: &str) -> Option<f64> {
        self.gateway.metric(&format!(
            "switchyard_gateway_writes_held_total{{outcome=\"{outcome}\"}}"
        ))
    }

    fn upstream_requests(&self) -> usize {
        self.a.request_count() + self.b.request_count()
    }
}

/// `POST /orders` for acme with a small JSON body, on another thread:
/// its response and when it arrived.
fn post(addr: SocketAddr) -> JoinHandle<(Response, Instant)> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let body = r#"{"qty":3}"#;
        write!(
            stream,
            "POST /orders HTTP/1.1\r\nHost: acme.app.example.test\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let response = read_response(stream);
        (response, Instant::now())
    })
}

fn assert_problem(r: &Response, status: u16, type_: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let body = r.json();
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().unwrap().ends_with(type_), "{body}");
    assert_eq!(body["request_id"].as_str(), r.header("x-request-id"));
}

#[test]
fn a_write_to_a_moving_tenant_is_held_then_proxied_to_its_new_target() {
    let s = stack(4_000);
    let started = Instant::now();
    let write = post(s.gateway.addr);
    s.wait_held(1);
    assert_eq!(s.upstream_requests(), 0, "a held write reached an upstream");

    let published = s.publish(&snapshot(2, "shard-b", "active", &s.a, &s.b));
    let (r, answered) = write.join().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(answered > published, "answered before the move ended");
    assert!(
        answered - started < Duration::from_secs(4),
        "released only by the end of the hold"
    );
    assert_eq!(r.header("x-upstream"), Some("shard-b"));
    assert_eq!(s.a.request_count(), 0);
    assert_eq!(s.b.request_count(), 1);
    let seen = s.b.last_request().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, br#"{"qty":3}"#);
    assert_eq!(seen.header("x-tenant-id"), Some("t-acme"));
    assert_eq!(seen.header("x-tenant-target"), Some("shard-b"));

    assert_eq!(s.held_total("released"), Some(1.0));
    assert_eq!(s.held_total("timed_out"), Some(0.0));
    assert_eq!(
        s.gateway.metric("switchyard_gateway_writes_waiting"),
        Some(0.0)
    );
    // Counted for the target of the new snapshot.
    assert_eq!(
        s.gateway.metric(
            "switchyard_gateway_requests_total{decision=\"local\",status_class=\"2xx\",target=\"shard-b\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn a_read_of_a_moving_tenant_is_served_at_once_by_the_old_target() {
    let s = stack(4_000);
    for method in ["GET", "HEAD", "OPTIONS"] {
        let started = Instant::now();
        let r = support::send(
            s.gateway.addr,
            &format!("{method} /orders HTTP/1.1\r\nHost: acme.app.example.test"),
        );
        assert_eq!(r.status, 200, "{method}: {r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{method} was held"
        );
        assert_eq!(r.header("x-upstream"), Some("shard-a"), "{method}");
    }
    assert_eq!(s.a.request_count(), 3);
    assert_eq!(s.b.request_count(), 0);
    assert_eq!(s.held_total("released"), Some(0.0));
}

#[test]
fn a_write_still_moving_when_the_hold_runs_out_is_503_tenant_moving() {
    let s = stack(1_500);
    let started = Instant::now();
    let (r, answered) = post(s.gateway.addr).join().unwrap();
    let waited = answered - started;
    assert_problem(&r, 503, "tenant-moving");
    assert_eq!(r.header("retry-after"), Some("2"));
    assert!(
        waited >= Duration::from_millis(1_500),
        "answered after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    // Nothing internal in the answer.
    for leak in ["shard", "127.0.0.1", "t-acme", "acme"] {
        assert!(!r.body.contains(leak), "{leak} in {}", r.body);
    }
    assert_eq!(s.upstream_requests(), 0);
    assert_eq!(s.held_total("timed_out"), Some(1.0));
    assert_eq!(s.held_total("released"), Some(0.0));
    assert_eq!(
        s.gateway
            .metric("switchyard_gateway_errors_total{kind=\"control_plane\"}"),
        Some(1.0)
    );

    let id = r.header("x-request-id").unwrap().to_owned();
    let line = s.gateway.access_log_line(&id);
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["tenant_id"], "t-acme");
    assert_eq!(entry["target"], "shard-a");
    assert_eq!(entry["status"], 503);
    assert_eq!(entry["error"], "control_plane");
}

#[test]
fn with_no_hold_a_write_to_a_moving_tenant_is_refused_at_once() {
    let s = stack(0);
    let started = Instant::now();
    let (r, _) = post(s.gateway.addr).join().unwrap();
    assert_problem(&r, 503, "tenant-moving");
    assert_eq!(r.header("retry-after"), Some("2"));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(s.upstream_requests(), 0);
    // Reads are still served.
    assert_eq!(
        get(s.gateway.addr, "acme.app.example.test", "/").status,
        200
    );
    assert_eq!(s.a.request_count(), 1);
}

#[test]
fn a_tenant_suspended_while_its_write_is_held_gets_403() {
    let s = stack(4_000);
    let write = post(s.gateway.addr);
    s.wait_held(1);
    let published = s.publish(&snapshot(2, "shard-b", "suspended", &s.a, &s.b));
    let (r, answered) = write.join().unwrap();
    assert!(answered > published);
    assert_problem(&r, 403, "tenant-suspended");
    assert_eq!(s.upstream_requests(), 0);
    assert_eq!(s.held_total("released"), Some(1.0));
}

#[test]
fn an_unrelated_snapshot_keeps_the_write_held_within_the_same_hold() {
    let s = stack(1_500);
    let started = Instant::now();
    let write = post(s.gateway.addr);
    s.wait_held(1);
    // Late in the hold, a new version that still has acme moving: the
    // write keeps waiting, and its hold is not restarted (which would
    // answer after 2.4 s at the earliest).
    std::thread::sleep(Duration::from_millis(900).saturating_sub(started.elapsed()));
    s.publish(&snapshot(2, "shard-a", "moving", &s.a, &s.b));
    let (r, answered) = write.join().unwrap();
    assert_problem(&r, 503, "tenant-moving");
    let waited = answered - started;
    assert!(
        (Duration::from_millis(1_500)..Duration::from_millis(2_300)).contains(&waited),
        "answered after {waited:?}"
    );
    assert_eq!(
        s.gateway.metric("switchyard_gateway_snapshot_version"),
        Some(2.0)
    );
    assert_eq!(s.upstream_requests(), 0);
}
