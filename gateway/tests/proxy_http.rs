//! The real `gateway` binary proxying plain HTTP to real upstreams.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Gateway, free_port, get, q, send, snapshot};
use testkit::Upstream;

struct Stack {
    a: Upstream,
    b: Upstream,
    d: Upstream,
    gateway: Gateway,
}

fn stack(extra: &str) -> Stack {
    let a = Upstream::echo("shard-a").unwrap();
    let b = Upstream::echo("shard-b").unwrap();
    let d = Upstream::echo("dedicated").unwrap();
    let gateway = Gateway::start(&snapshot(1, &q(&a), &q(&b), &q(&d)), extra);
    Stack { a, b, d, gateway }
}

#[test]
fn tenants_land_on_their_own_targets_with_tenant_headers() {
    let s = stack("");
    for (host, upstream, id, target) in [
        ("acme.app.example.test", &s.a, "t-acme", "shard-a"),
        ("initech.app.example.test", &s.b, "t-initech", "shard-b"),
        (
            "ERP.Globex.example:80",
            &s.d,
            "t-globex",
            "dedicated-globex",
        ),
    ] {
        let before = upstream.request_count();
        let r = get(s.gateway.addr, host, "/orders?page=2");
        assert_eq!(r.status, 200, "{host}: {r:?}");
        assert_eq!(upstream.request_count(), before + 1, "{host}");
        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.header("x-tenant-id"), Some(id));
        assert_eq!(seen.header("x-tenant-target"), Some(target));
        assert_eq!(seen.header("x-tenant-region"), Some("eu-west"));
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
        assert_eq!(seen.header("x-forwarded-host"), Some(host));
        assert_eq!(seen.path_and_query, "/orders?page=2");
        let id = r.header("x-request-id").unwrap();
        assert_eq!(seen.header("x-request-id"), Some(id));
    }
}

#[test]
fn spoofed_tenant_headers_are_stripped_from_untrusted_peers() {
    let s = stack("");
    let r = send(
        s.gateway.addr,
        "GET / HTTP/1.1\r\nHost: acme.app.example.test\r\nx-tenant-id: t-globex\r\nx-tenant-admin: yes\r\nx-forwarded-for: 6.6.6.6\r\nx-forwarded-host: evil.example",
    );
    assert_eq!(r.status, 200);
    let seen = s.a.last_request().unwrap();
    assert_eq!(seen.header("x-tenant-id"), Some("t-acme"));
    assert_eq!(seen.header("x-tenant-admin"), None);
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some("acme.app.example.test")
    );
    assert_eq!(s.d.request_count(), 0);
}

#[test]
fn trusted_proxy_names_the_tenant_and_keeps_forwarding_headers() {
    let s = stack("trusted_proxies = [\"127.0.0.1/32\"]");
    let r = send(
        s.gateway.addr,
        "GET / HTTP/1.1\r\nHost: internal.svc.local\r\nx-tenant-id: t-globex\r\nx-forwarded-for: 203.0.113.7\r\nx-forwarded-proto: https",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = s.d.last_request().unwrap();
    assert_eq!(seen.header("x-tenant-id"), Some("t-globex"));
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[test]
fn refused_requests_get_problem_json_and_never_reach_an_upstream() {
    let s = stack("");
    for (host, status, type_) in [
        ("nobody.app.example.test", 404, "unknown-tenant"),
        ("gone.app.example.test", 403, "tenant-suspended"),
        ("10.0.0.1", 400, "malformed-host"),
        ("a..b.example", 400, "malformed-host"),
    ] {
        let r = get(s.gateway.addr, host, "/");
        assert_eq!(r.status, status, "{host}: {r:?}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let body = r.json();
        assert_eq!(body["status"], status);
        assert!(body["type"].as_str().unwrap().ends_with(type_), "{body}");
        assert_eq!(body["request_id"].as_str(), r.header("x-request-id"));
        // Nothing of the request is echoed back.
        assert!(!r.body.contains(host), "{}", r.body);
    }
    assert_eq!(
        s.a.request_count() + s.b.request_count() + s.d.request_count(),
        0
    );
}

#[test]
fn a_body_over_the_plan_limit_is_413() {
    let s = stack("");
    let r = send(
        s.gateway.addr,
        "POST /upload HTTP/1.1\r\nHost: acme.app.example.test\r\nContent-Length: 5000",
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(s.a.request_count(), 0);
}

#[test]
fn a_streamed_body_over_the_plan_limit_is_cut_off_with_413() {
    let s = stack("");
    // Chunked: no Content-Length to check up front. Two 800-byte chunks
    // against a 1024-byte plan limit.
    let chunk = "x".repeat(800);
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: acme.app.example.test\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n"
    );
    // `send` appends the final blank line and Connection: close after the
    // head; put them in the head instead so the chunked body stays intact.
    let mut stream = std::net::TcpStream::connect(s.gateway.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(&mut stream, format!("{head}\r\n").as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("body-too-large"), "{text}");

    // Under the limit, the same way, goes through.
    let small = "y".repeat(300);
    let mut stream = std::net::TcpStream::connect(s.gateway.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!("POST /upload HTTP/1.1\r\nHost: acme.app.example.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n12c\r\n{small}\r\n0\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[test]
fn a_valid_client_request_id_is_kept_and_a_bad_one_replaced() {
    let s = stack("");
    let r = send(
        s.gateway.addr,
        "GET / HTTP/1.1\r\nHost: acme.app.example.test\r\nx-request-id: abc-123",
    );
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let r = send(
        s.gateway.addr,
        "GET / HTTP/1.1\r\nHost: acme.app.example.test\r\nx-request-id: a b",
    );
    let id = r.header("x-request-id").unwrap();
    assert_eq!(id.len(), 32, "{id}");
}

/// `[upstream]` with health checks every `check_ms` and a breaker opening
/// after `failures` for `open_ms`.
fn upstream_section(check_ms: u64, failures: u32, open_ms: u64) -> String {
    format!(
        "[upstream]\nconnect_timeout_ms = 500\nread_timeout_ms = 1000\nhealth_check_interval_ms = {check_ms}\ncircuit_failures = {failures}\ncircuit_open_ms = {open_ms}\n"
    )
}

fn start_with_pool(pool: &str, other: &Upstream, upstream: &str) -> Gateway {
    Gateway::start_in(
        tempfile::tempdir().unwrap(),
        &snapshot(1, pool, &q(other), &q(other)),
        "",
        upstream,
    )
}

#[test]
fn a_pool_without_a_healthy_backend_is_503_with_retry_after() {
    let dead = free_port();
    let other = Upstream::echo("other").unwrap();
    let gateway = start_with_pool(
        &format!("\"127.0.0.1:{dead}\""),
        &other,
        &upstream_section(100, 5, 10_000),
    );
    // Until the first health check has run, a request may still try the
    // backend and get the connect failure; after it, the pool is empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = get(gateway.addr, "acme.app.example.test", "/");
        assert!(r.status == 502 || r.status == 503, "{r:?}");
        if r.status == 503 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the dead backend was never taken out"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(
        r.json()["type"],
        "https://switchyard.dev/problems/no-healthy-upstream"
    );
    assert!(
        !r.body.contains(&dead.to_string()),
        "upstream address leaked: {}",
        r.body
    );
}

#[test]
fn a_backend_dying_between_health_checks_is_a_502_and_a_slow_one_a_504() {
    let up = Upstream::echo("shard-a").unwrap();
    let slow = Upstream::builder()
        .name("slow")
        .delay(Duration::from_secs(3))
        .start()
        .unwrap();
    // Health checks every minute: only the request itself finds out.
    let gateway = Gateway::start_in(
        tempfile::tempdir().unwrap(),
        &snapshot(1, &q(&up), &q(&slow), &q(&slow)),
        "",
        &upstream_section(60_000, 100, 10_000),
    );
    assert_eq!(get(gateway.addr, "acme.app.example.test", "/").status, 200);
    let addr = up.addr();
    drop(up);
    for head in [
        "GET / HTTP/1.1\r\nHost: acme.app.example.test",
        "POST / HTTP/1.1\r\nHost: acme.app.example.test\r\nContent-Length: 0",
    ] {
        let r = send(gateway.addr, head);
        assert_eq!(r.status, 502, "{head}: {r:?}");
        assert_eq!(
            r.json()["type"],
            "https://switchyard.dev/problems/bad-gateway"
        );
        assert!(!r.body.contains(&addr.port().to_string()), "{}", r.body);
    }
    let r = get(gateway.addr, "initech.app.example.test", "/");
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(
        r.json()["type"],
        "https://switchyard.dev/problems/gateway-timeout"
    );
}

#[test]
fn idempotent_requests_are_retried_once_on_another_backend() {
    let a = Upstream::echo("a").unwrap();
    let b = Upstream::echo("b").unwrap();
    let pool = format!("{}, {}", q(&a), q(&b));
    // No health checks and no breaker in the way: only the retry acts.
    let gateway = start_with_pool(&pool, &b, &upstream_section(60_000, 1000, 10_000));
    assert_eq!(get(gateway.addr, "acme.app.example.test", "/").status, 200);
    drop(a);
    // Round robin sends every other request to the dead backend first.
    for _ in 0..6 {
        let r = get(gateway.addr, "acme.app.example.test", "/");
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A POST is not retried: the ones that hit the dead backend fail.
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            send(
                gateway.addr,
                "POST / HTTP/1.1\r\nHost: acme.app.example.test\r\nContent-Length: 0",
            )
            .status
        })
        .collect();
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[test]
fn a_killed_backend_is_taken_out_and_comes_back_with_no_failed_get() {
    let a = Upstream::echo("a").unwrap();
    let b = Upstream::echo("b").unwrap();
    let port = a.port();
    let pool = format!("{}, {}", q(&a), q(&b));
    let gateway = start_with_pool(&pool, &b, &upstream_section(100, 2, 300));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = gateway.addr;
    let flag = stop.clone();
    // A bounded request loop running through the whole outage.
    let load = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        for _ in 0..5_000 {
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            statuses.push(get(addr, "acme.app.example.test", "/").status);
            std::thread::sleep(Duration::from_millis(5));
        }
        statuses
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(a);
    std::thread::sleep(Duration::from_millis(800));
    let b_before = b.request_count();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        b.request_count() > b_before,
        "traffic stopped while a was down"
    );
    // The dead backend shows as unhealthy or with its circuit open.
    let metrics = get(gateway.admin, "localhost", "/metrics").body;
    assert!(
        metrics.contains("switchyard_gateway_backends{state=\"healthy\"} 1"),
        "{metrics}"
    );

    let back = Upstream::builder()
        .name("a-again")
        .port(port)
        .start()
        .unwrap();
    let returned = Instant::now();
    while back.request_count() == 0 {
        assert!(
            returned.elapsed() < Duration::from_secs(10),
            "the returning backend got no traffic"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.join().unwrap();
    assert!(
        statuses.len() > 50,
        "the loop barely ran: {}",
        statuses.len()
    );
    let failed: Vec<_> = statuses.iter().filter(|&&s| s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} GETs failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
}

#[test]
fn snapshot_changes_apply_without_restart_and_a_broken_one_is_ignored() {
    let s = stack("");
    assert_eq!(
        get(s.gateway.addr, "acme.app.example.test", "/").status,
        200
    );
    assert_eq!(s.a.request_count(), 1);

    // Move acme's shard-a pool to shard-b's upstream in a new version.
    let moved = snapshot(2, &q(&s.b), &q(&s.b), &q(&s.d));
    std::fs::write(&s.gateway.snapshot, moved).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        get(s.gateway.addr, "acme.app.example.test", "/");
        if s.b.request_count() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "new snapshot was not applied");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A broken file is rejected and version 2 keeps serving.
    std::fs::write(&s.gateway.snapshot, "version = 3\n[[tenants]]\nid = 1\n").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let before = s.b.request_count();
    assert_eq!(
        get(s.gateway.addr, "acme.app.example.test", "/").status,
        200
    );
    assert_eq!(s.b.request_count(), before + 1);
}

#[test]
fn admin_listener_reports_health_readiness_metrics_and_routes() {
    let s = stack("");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(s.gateway.admin).is_err() {
        assert!(Instant::now() < deadline, "admin listener did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let admin = s.gateway.admin;
    assert_eq!(get(admin, "localhost", "/healthz").status, 200);
    let ready = get(admin, "localhost", "/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["snapshot_version"], 1);

    let route = get(
        admin,
        "localhost",
        "/debug/route?host=ACME.app.example.test&method=post&path=/x",
    );
    assert_eq!(route.status, 200, "{route:?}");
    let body = route.json();
    assert_eq!(body["routed"], true);
    assert_eq!(body["tenant"]["id"], "t-acme");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["backends"][0], s.a.addr().to_string());
    assert!(body["steps"].as_array().unwrap().len() >= 3, "{body}");
    assert_eq!(get(admin, "localhost", "/debug/route").status, 400);

    assert_eq!(
        get(s.gateway.addr, "acme.app.example.test", "/").status,
        200
    );
    assert_eq!(
        get(s.gateway.addr, "globex.app.example.test", "/").status,
        200
    );
    assert_eq!(
        get(s.gateway.addr, "nobody.app.example.test", "/").status,
        404
    );
    let metrics = get(admin, "localhost", "/metrics").body;
    for expected in [
        "switchyard_gateway_requests_total{decision=\"local\",status_class=\"2xx\",target=\"shard-a\"} 1",
        "switchyard_gateway_requests_total{decision=\"local\",status_class=\"2xx\",target=\"dedicated\"} 1",
        "switchyard_gateway_requests_total{decision=\"none\",status_class=\"4xx\",target=\"none\"} 1",
        "switchyard_gateway_errors_total{kind=\"user\"} 1",
        "switchyard_gateway_snapshot_version 1",
        "switchyard_gateway_tenants 4",
        "switchyard_gateway_upstream_duration_seconds_count 2",
        "switchyard_gateway_backends{state=\"healthy\"} 3",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }
    // No label names a tenant.
    assert!(
        !metrics.contains("t-acme") && !metrics.contains("globex"),
        "{metrics}"
    );
}

#[test]
fn access_log_has_one_json_line_per_request_and_never_the_query() {
    let s = stack("");
    let r = get(
        s.gateway.addr,
        "acme.app.example.test",
        "/orders?token=hunter2",
    );
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").unwrap().to_owned();
    let line = s.gateway.access_log_line(&id);
    assert!(!line.contains("hunter2"), "{line}");
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["tenant_id"], "t-acme");
    assert_eq!(entry["target"], "shard-a");
    assert_eq!(entry["decision"], "local");
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/orders");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["upstream"], s.a.addr().to_string());
    assert!(entry["bytes"].as_u64().unwrap() > 0);
    assert!(entry["duration_ms"].as_f64().unwrap() >= entry["upstream_ms"].as_f64().unwrap());
}
