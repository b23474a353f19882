//! The response cache of the real gateway binary against real upstreams:
//! hit/miss/bypass by the origin's headers, Vary, tenant isolation under
//! host and header tricks, purges (local, bad input, across two gateways
//! through a real Redis, queued while Redis is down), the stampede lock,
//! objects over the plan's size, and stale-if-error.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Gateway, Response, send};
use testkit::{RedisServer, Upstream};

fn snapshot(a: &Upstream, big: &Upstream, slow: &Upstream, flaky: &Upstream) -> String {
    format!(
        r#"
version = 1
regions = [{{ name = "eu-west" }}]
plans = [
  {{ name = "cached", rate_per_sec = 100000, burst = 100000, max_body_bytes = 1024, cache = true, cache_ttl_secs = 60 }},
  {{ name = "small-objects", rate_per_sec = 100000, burst = 100000, max_body_bytes = 1024, cache = true, cache_ttl_secs = 60, cache_max_object_bytes = 1024 }},
  {{ name = "uncached", rate_per_sec = 100000, burst = 100000, max_body_bytes = 1024 }},
]

[[targets]]
id = "shard-a"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = ["{a}"] }}

[[targets]]
id = "shard-big"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = ["{big}"] }}

[[targets]]
id = "shard-slow"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = ["{slow}"] }}

[[targets]]
id = "shard-flaky"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = ["{flaky}"] }}

[[tenants]]
id = "t-acme"
slug = "acme"
plan = "cached"
region = "eu-west"
target = "shard-a"
domains = ["shop.acme.test"]

[[tenants]]
id = "t-globex"
slug = "globex"
plan = "cached"
region = "eu-west"
target = "shard-a"
domains = ["shop.globex.test"]

[[tenants]]
id = "t-initech"
slug = "initech"
plan = "uncached"
region = "eu-west"
target = "shard-a"

[[tenants]]
id = "t-big"
slug = "big"
plan = "small-objects"
region = "eu-west"
target = "shard-big"

[[tenants]]
id = "t-slow"
slug = "slow"
plan = "cached"
region = "eu-west"
target = "shard-slow"

[[tenants]]
id = "t-flaky"
slug = "flaky"
plan = "cached"
region = "eu-west"
target = "shard-flaky"
"#,
        a = a.addr(),
        big = big.addr(),
        slow = slow.addr(),
        flaky = flaky.addr(),
    )
}

struct Stack {
    a: Upstream,
    big: Upstream,
    slow: Upstream,
    flaky: Upstream,
}

impl Stack {
    fn new() -> Self {
        Self {
            a: Upstream::echo("shard-a").unwrap(),
            big: Upstream::builder()
                .name("shard-big")
                .respond(200, vec![b'x'; 5000])
                .start()
                .unwrap(),
            slow: Upstream::builder()
                .name("shard-slow")
                .delay(Duration::from_millis(400))
                .start()
                .unwrap(),
            flaky: Upstream::echo("shard-flaky").unwrap(),
        }
    }

    fn snapshot(&self) -> String {
        snapshot(&self.a, &self.big, &self.slow, &self.flaky)
    }

    fn gateway(&self, sections: &str) -> Gateway {
        // Health checks far apart, so a stopped upstream is found by the
        // request itself.
        let upstream = "[upstream]\nconnect_timeout_ms = 500\nread_timeout_ms = 2000\nhealth_check_interval_ms = 60000\n";
        Gateway::start_in(
            tempfile::tempdir().unwrap(),
            &self.snapshot(),
            "",
            &format!("{upstream}\n{sections}"),
        )
    }
}

fn get(addr: SocketAddr, host: &str, target: &str, extra: &[&str]) -> Response {
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: {host}");
    for line in extra {
        head.push_str("\r\n");
        head.push_str(line);
    }
    send(addr, &head)
}

fn x_cache(r: &Response) -> &str {
    r.header("x-cache").unwrap_or("(none)")
}

/// The echo document of a response, chunked or not.
fn echo(r: &Response) -> serde_json::Value {
    let body = if r
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        let mut out = String::new();
        let mut rest = r.body.as_str();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        out
    } else {
        r.body.clone()
    };
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

fn tenant_of(r: &Response) -> String {
    echo(r)["headers"]["x-tenant-id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The request id the upstream saw: which request filled an entry.
fn filled_by(r: &Response) -> String {
    echo(r)["headers"]["x-request-id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

const ACME: &str = "acme.app.example.test";
const GLOBEX: &str = "globex.app.example.test";

#[test]
fn hits_misses_and_bypasses_follow_the_origin_and_the_plan() {
    let stack = Stack::new();
    let gw = stack.gateway("");
    let first = get(gw.addr, ACME, "/p/1", &[]);
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    let second = get(gw.addr, ACME, "/p/1", &[]);
    assert_eq!((second.status, x_cache(&second)), (200, "HIT"));
    assert_eq!(filled_by(&first), filled_by(&second));
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
    let head = send(gw.addr, &format!("HEAD /p/1 HTTP/1.1\r\nHost: {ACME}"));
    assert_eq!(x_cache(&head), "HIT");
    assert_eq!(stack.a.request_count(), 1);

    // The origin says no: never stored.
    for target in [
        "/p/2?h=cache-control:no-store",
        "/p/3?h=cache-control:private",
        "/p/4?h=set-cookie:session%3Dabc",
        "/p/5?h=vary:*",
        "/p/6?status=500",
    ] {
        for _ in 0..2 {
            let r = get(gw.addr, ACME, target, &[]);
            assert_eq!(x_cache(&r), "BYPASS", "{target}");
        }
    }
    assert_eq!(stack.a.request_count(), 11);

    // An explicit lifetime wins over the plan's, and the origin may make
    // an error page cacheable only among the statuses RFC 9111 allows.
    let r = get(gw.addr, ACME, "/p/7?status=404", &[]);
    assert_eq!((r.status, x_cache(&r)), (404, "MISS"));
    assert_eq!(x_cache(&get(gw.addr, ACME, "/p/7?status=404", &[])), "HIT");

    // A request with Authorization is stored only if the origin says public.
    let auth = "Authorization: Bearer secret";
    assert_eq!(x_cache(&get(gw.addr, ACME, "/me", &[auth])), "BYPASS");
    assert_eq!(x_cache(&get(gw.addr, ACME, "/me", &[auth])), "BYPASS");
    let public = "/pub?h=cache-control:public";
    assert_eq!(x_cache(&get(gw.addr, ACME, public, &[auth])), "MISS");
    assert_eq!(x_cache(&get(gw.addr, ACME, public, &[auth])), "HIT");

    // Methods other than GET and HEAD pass through.
    let post = send(
        gw.addr,
        &format!("POST /p/1 HTTP/1.1\r\nHost: {ACME}\r\nContent-Length: 0"),
    );
    assert_eq!((post.status, x_cache(&post)), (200, "BYPASS"));

    // A tenant whose plan does not cache gets no x-cache at all.
    let r = get(gw.addr, "initech.app.example.test", "/p/1", &[]);
    assert_eq!((r.status, r.header("x-cache")), (200, None));
    let before = stack.a.request_count();
    get(gw.addr, "initech.app.example.test", "/p/1", &[]);
    assert_eq!(stack.a.request_count(), before + 1);

    // Objects over the plan's maximum stream whole and are not stored.
    for _ in 0..2 {
        let r = get(gw.addr, "big.app.example.test", "/file", &[]);
        assert_eq!((r.status, x_cache(&r), r.body.len()), (200, "BYPASS", 5000));
    }
    assert_eq!(stack.big.request_count(), 2);

    let hits = gw
        .metric("switchyard_gateway_cache_responses_total{result=\"hit\"}")
        .unwrap();
    // /p/1 twice (GET and HEAD), /p/7 and /pub once each.
    assert_eq!(hits, 4.0);
    assert!(gw.metric("switchyard_gateway_cache_bytes").unwrap() > 0.0);
    // The access log says how the cache answered.
    std::thread::sleep(Duration::from_millis(200));
    let log = gw.stdout.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.contains("\"cache\":\"HIT\"")));
    assert!(log.iter().any(|l| l.contains("\"cache\":\"MISS\"")));
}

#[test]
fn vary_keeps_one_entry_per_variant() {
    let stack = Stack::new();
    let gw = stack.gateway("");
    let target = "/catalog?h=vary:accept-language";
    let en = "Accept-Language: en";
    let de = "Accept-Language: de";
    let sequence = [
        (en, "MISS"),
        (en, "HIT"),
        (de, "MISS"),
        (de, "HIT"),
        (en, "HIT"),
    ];
    let mut fillers = Vec::new();
    for (lang, expected) in sequence {
        let r = get(gw.addr, ACME, target, &[lang]);
        assert_eq!(x_cache(&r), expected, "{lang}");
        fillers.push(filled_by(&r));
    }
    assert_eq!(stack.a.request_count(), 2);
    assert_eq!(fillers[0], fillers[4], "en is served en's entry");
    assert_ne!(fillers[0], fillers[2], "de has its own");
    // No Accept-Language at all is a variant of its own.
    assert_eq!(x_cache(&get(gw.addr, ACME, target, &[])), "MISS");
}

#[test]
fn a_tenant_never_receives_another_tenants_entry() {
    let stack = Stack::new();
    let gw = stack.gateway("");
    // Warm acme's entries first, then try every trick from globex's side
    // and the other way round.
    for path in ["/same", "/same?x=1", "//same", "/same/"] {
        assert_eq!(tenant_of(&get(gw.addr, ACME, path, &[])), "t-acme");
    }
    let tricks: [(&str, &str, &[&str]); 8] = [
        (GLOBEX, "/same", &[]),
        ("GLOBEX.app.example.test.", "/same", &[]),
        ("shop.globex.test:80", "/same", &[]),
        // An untrusted peer's x-tenant-id is ignored: still globex.
        (GLOBEX, "/same", &["x-tenant-id: t-acme"]),
        (
            GLOBEX,
            "/same?x=1",
            &["X-Forwarded-Host: acme.app.example.test"],
        ),
        // Absolute form: the authority decides, and it says globex.
        (GLOBEX, "http://globex.app.example.test/same", &[]),
        (GLOBEX, "//same", &["x-forwarded-proto: https"]),
        (GLOBEX, "/same/", &["Accept-Language: en"]),
    ];
    for (host, path, extra) in tricks {
        let r = get(gw.addr, host, path, extra);
        assert_eq!(r.status, 200, "{host} {path}");
        assert_eq!(tenant_of(&r), "t-globex", "{host} {path} {extra:?}");
    }
    // And acme, its hosts in every spelling, still gets its own.
    for (host, path) in [
        (ACME, "/same"),
        ("Acme.App.Example.Test", "/same"),
        ("shop.acme.test", "/same"),
        (ACME, "http://acme.app.example.test/same?x=1"),
    ] {
        let r = get(gw.addr, host, path, &[]);
        assert_eq!(tenant_of(&r), "t-acme", "{host} {path}");
    }
    // A request whose Host and absolute-form authority disagree is refused.
    for (host, path) in [
        (ACME, "http://globex.app.example.test/same"),
        (GLOBEX, "http://acme.app.example.test/same"),
    ] {
        assert_eq!(get(gw.addr, host, path, &[]).status, 400, "{host} {path}");
    }
    // Hits happened on both sides, each from its own entries.
    assert_eq!(x_cache(&get(gw.addr, GLOBEX, "/same", &[])), "HIT");
    assert_eq!(tenant_of(&get(gw.addr, GLOBEX, "/same", &[])), "t-globex");
}

/// `POST /cache/purge` with `body` (`send` cannot carry a body).
fn post_purge(admin: SocketAddr, body: &str) -> Response {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "POST /cache/purge HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    Response {
        status,
        headers: lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        body: body.to_owned(),
    }
}

#[test]
fn purges_by_tenant_and_by_path_and_bad_purges_change_nothing() {
    let stack = Stack::new();
    let gw = stack.gateway("");
    let warm = |host, path| {
        get(gw.addr, host, path, &[]);
        assert_eq!(
            x_cache(&get(gw.addr, host, path, &[])),
            "HIT",
            "{host}{path}"
        );
    };
    for path in ["/a", "/a?page=2", "/b"] {
        warm(ACME, path);
        warm("shop.acme.test", path);
        warm(GLOBEX, path);
    }

    // Bad purges: a clear problem each, and nothing purged.
    for (body, status, needle) in [
        ("not json", 400, "expected"),
        (r#"{"tenant": "t-nobody"}"#, 404, "tenant"),
        (r#"{"tenant": "t-acme", "paths": ["a"]}"#, 400, "paths[0]"),
        (r#"{"tenant": "t-acme", "paths": []}"#, 400, "paths"),
        (r#"{"paths": ["/a"]}"#, 400, "tenant"),
    ] {
        let r = post_purge(gw.admin, body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(r.body.contains(needle), "{body}: {}", r.body);
    }
    let huge = format!(
        r#"{{"tenant": "t-acme", "paths": ["/{}"]}}"#,
        "a".repeat(70_000)
    );
    assert_eq!(post_purge(gw.admin, &huge).status, 413);
    let r = send(gw.admin, "GET /cache/purge HTTP/1.1\r\nHost: localhost");
    assert_eq!(r.status, 405);
    assert_eq!(x_cache(&get(gw.addr, ACME, "/a", &[])), "HIT");

    // By path: every host and query of acme's /a; not /b, not globex.
    let r = post_purge(gw.admin, r#"{"tenant": "t-acme", "paths": ["/a"]}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let reply: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(reply["removed"], 4);
    assert_eq!(reply["propagation"], "local");
    for host in [ACME, "shop.acme.test"] {
        assert_eq!(x_cache(&get(gw.addr, host, "/a", &[])), "MISS");
        assert_eq!(x_cache(&get(gw.addr, host, "/a?page=2", &[])), "MISS");
        assert_eq!(x_cache(&get(gw.addr, host, "/b", &[])), "HIT");
    }
    assert_eq!(x_cache(&get(gw.addr, GLOBEX, "/a", &[])), "HIT");

    // The whole tenant.
    let r = post_purge(gw.admin, r#"{"tenant": "t-acme"}"#);
    assert_eq!(r.status, 200);
    for path in ["/a", "/b"] {
        assert_eq!(x_cache(&get(gw.addr, ACME, path, &[])), "MISS");
    }
    assert_eq!(x_cache(&get(gw.addr, GLOBEX, "/b", &[])), "HIT");
    assert_eq!(
        gw.metric("switchyard_gateway_cache_purges_total{origin=\"local\",scope=\"paths\"}"),
        Some(1.0)
    );
}

#[test]
fn purges_reach_the_other_gateway_through_redis_and_queue_while_it_is_down() {
    let mut redis = RedisServer::start().unwrap();
    let stack = Stack::new();
    let section = format!("[redis]\nurl = \"{}\"\n", redis.url());
    let (a, b) = (stack.gateway(&section), stack.gateway(&section));
    let warm = |gw: &Gateway, path| {
        get(gw.addr, ACME, path, &[]);
        assert_eq!(x_cache(&get(gw.addr, ACME, path, &[])), "HIT");
    };
    let until_miss = |gw: &Gateway, path: &str| -> Duration {
        let start = Instant::now();
        loop {
            // A probe that hits does not refill: only a purge makes it miss.
            if x_cache(&get(gw.addr, ACME, path, &[])) == "MISS" {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{path} never purged"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for path in ["/x", "/y"] {
        warm(&a, path);
        warm(&b, path);
    }
    // Both gateways follow the stream before the purge is sent.
    std::thread::sleep(Duration::from_millis(300));
    let r = post_purge(a.admin, r#"{"tenant": "t-acme", "paths": ["/x"]}"#);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"propagation\":\"redis\""), "{}", r.body);
    let took = until_miss(&b, "/x");
    assert!(
        took < Duration::from_secs(1),
        "purge reached b after {took:?}"
    );
    assert_eq!(x_cache(&get(b.addr, ACME, "/y", &[])), "HIT");

    // Redis down: the purge applies on a at once and waits for b.
    redis.kill();
    let r = post_purge(a.admin, r#"{"tenant": "t-acme"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(x_cache(&get(a.addr, ACME, "/y", &[])), "MISS");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(x_cache(&get(b.addr, ACME, "/y", &[])), "HIT");
    redis.restart().unwrap();
    until_miss(&b, "/y");
    assert_eq!(
        a.log_lines("cache purges apply to this gateway only").len(),
        1
    );
    assert!(
        b.metric("switchyard_gateway_cache_purges_total{origin=\"remote\",scope=\"tenant\"}")
            == Some(1.0)
    );
}

#[test]
fn a_hundred_concurrent_misses_make_one_upstream_request() {
    let stack = Stack::new();
    let gw = stack.gateway("");
    let addr = gw.addr;
    let replies: Vec<Response> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|_| s.spawn(move || get(addr, "slow.app.example.test", "/report", &[])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(
        stack.slow.request_count(),
        1,
        "one request filled the entry"
    );
    let filler = filled_by(&replies[0]);
    assert!(replies.iter().all(|r| filled_by(r) == filler));
    let misses = replies.iter().filter(|r| x_cache(r) == "MISS").count();
    assert_eq!(misses, 1, "the others waited and hit");
}

#[test]
fn an_expired_entry_is_served_stale_when_the_upstream_fails() {
    let mut stack = Stack::new();
    let gw = stack.gateway("");
    let host = "flaky.app.example.test";
    let target = "/prices?h=cache-control:max-age%3D1";
    let first = get(gw.addr, host, target, &[]);
    assert_eq!(x_cache(&first), "MISS");
    std::thread::sleep(Duration::from_millis(2100));
    let refreshed = get(gw.addr, host, target, &[]);
    assert_eq!(x_cache(&refreshed), "EXPIRED");
    std::thread::sleep(Duration::from_millis(2100));
    stack.flaky.stop();
    let stale = get(gw.addr, host, target, &[]);
    assert_eq!((stale.status, x_cache(&stale)), (200, "STALE"));
    assert_eq!(filled_by(&stale), filled_by(&refreshed));
    // Nothing cached: the failure shows.
    let r = get(gw.addr, host, "/never-cached", &[]);
    assert_eq!(r.status, 502);
}
