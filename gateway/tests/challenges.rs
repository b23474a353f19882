//! HTTP challenges published in the snapshot: ACME HTTP-01 answered for any
//! host, ownership proofs only for their own host, both before any tenant
//! is resolved (no upstream, no rate limit, no cache), on the HTTP and the
//! HTTPS listener; anything else under those paths a problem that reveals
//! nothing.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use support::{Gateway, Response, free_port, get, send, send_on};
use testkit::{TestCa, Upstream};

const ACME_TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
const KEY_AUTHORIZATION: &str =
    "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";
const OWNERSHIP_TOKEN: &str = "own_7f3a";
const OWNERSHIP_RESPONSE: &str = "switchyard-domain-verification=4c1b9e";

/// One tenant on a cached plan that admits a single request, with the
/// custom domain erp.globex.example, and `challenges` appended.
fn snapshot(version: u64, upstream: &Upstream, challenges: &str) -> String {
    format!(
        r#"
version = {version}
regions = [{{ name = "eu-west" }}]
plans = [{{ name = "tiny", rate_per_sec = 1, burst = 1, max_body_bytes = 1024, cache = true, cache_ttl_secs = 60 }}]

[[targets]]
id = "shard-a"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = ["{}"] }}

[[tenants]]
id = "t-globex"
slug = "globex"
plan = "tiny"
region = "eu-west"
target = "shard-a"
domains = ["erp.globex.example"]
{challenges}"#,
        upstream.addr()
    )
}

fn challenges() -> String {
    format!(
        r#"
[[challenges]]
kind = "acme-http01"
hostname = "erp.globex.example"
token = "{ACME_TOKEN}"
response = "{KEY_AUTHORIZATION}"

[[challenges]]
kind = "ownership"
hostname = "erp.globex.example"
token = "{OWNERSHIP_TOKEN}"
response = "{OWNERSHIP_RESPONSE}"
"#
    )
}

struct Setup {
    gateway: Gateway,
    https: SocketAddr,
    ca: TestCa,
    upstream: Upstream,
}

/// A gateway on [`snapshot`] with the challenges, an HTTPS listener
/// serving a certificate for erp.globex.example from `tls.cert_dir`.
fn start() -> Setup {
    let upstream = Upstream::echo("shard-a").unwrap();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::create_dir(&hosts).unwrap();
    ca.issue(&hosts, "erp.globex.example", &["erp.globex.example"]);
    let https = free_port();
    let gateway = Gateway::start_in(
        dir,
        &snapshot(1, &upstream, &challenges()),
        &format!("https_listen = \"127.0.0.1:{https}\""),
        "[tls]\ncert_dir = \"hosts\"\n",
    );
    let https: SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    support::wait_listening(https);
    Setup {
        gateway,
        https,
        ca,
        upstream,
    }
}

fn acme_path(token: &str) -> String {
    format!("/.well-known/acme-challenge/{token}")
}

fn ownership_path(token: &str) -> String {
    format!("/.well-known/switchyard-challenge/{token}")
}

fn assert_answer(r: &Response, body: &str) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain"), "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    assert!(r.header("x-request-id").is_some(), "{r:?}");
    assert_eq!(r.header("x-cache"), None, "went through the cache: {r:?}");
    assert_eq!(r.header("ratelimit"), None, "went through a limit: {r:?}");
    assert_eq!(r.body, body);
}

/// A 404 problem that says nothing of what is published elsewhere.
fn assert_not_found(r: &Response) -> serde_json::Value {
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let mut problem = r.json();
    assert_eq!(problem["status"], 404);
    assert!(problem["request_id"].is_string());
    problem.as_object_mut().unwrap().remove("request_id");
    problem
}

#[test]
fn acme_challenges_are_answered_for_any_host_without_touching_the_tenant() {
    let setup = start();
    let gateway = &setup.gateway;
    // The tenant's plan admits one request per second, and caches: three
    // answers in a row show neither is in the way.
    for host in [
        "erp.globex.example",
        "unknown.example",
        "globex.app.example.test:8080",
    ] {
        let r = get(gateway.addr, host, &acme_path(ACME_TOKEN));
        assert_answer(&r, KEY_AUTHORIZATION);
    }
    // A request with no Host at all (HTTP/1.0).
    let r = send(
        gateway.addr,
        &format!("GET {} HTTP/1.0", acme_path(ACME_TOKEN)),
    );
    assert_answer(&r, KEY_AUTHORIZATION);
    let head = send(
        gateway.addr,
        &format!(
            "HEAD {} HTTP/1.1\r\nHost: erp.globex.example",
            acme_path(ACME_TOKEN)
        ),
    );
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        head.header("content-length"),
        Some(KEY_AUTHORIZATION.len().to_string().as_str())
    );
    assert_eq!(head.body, "");
    assert_eq!(
        setup.upstream.request_count(),
        0,
        "a challenge went upstream"
    );
    // The tenant's one request of the second is still there.
    let r = get(gateway.addr, "erp.globex.example", "/orders");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(setup.upstream.request_count(), 1);

    let id = r.header("x-request-id").unwrap().to_owned();
    gateway.access_log_line(&id);
    let r = get(gateway.addr, "erp.globex.example", &acme_path(ACME_TOKEN));
    let line = gateway.access_log_line(r.header("x-request-id").unwrap());
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["path"], acme_path(ACME_TOKEN));
    assert_eq!(
        (line["status"].as_u64(), line["tenant_id"].is_null()),
        (Some(200), true)
    );
    assert_eq!(
        gateway.metric(
            "switchyard_gateway_challenges_total{kind=\"acme-http01\",outcome=\"answered\"}"
        ),
        Some(6.0)
    );
}

#[test]
fn an_ownership_proof_is_answered_only_for_its_own_host_and_reveals_nothing_elsewhere() {
    let setup = start();
    let gateway = &setup.gateway;
    let r = get(
        gateway.addr,
        "ERP.Globex.Example.:80",
        &ownership_path(OWNERSHIP_TOKEN),
    );
    assert_answer(&r, OWNERSHIP_RESPONSE);

    // The right token through another host, a token that does not exist,
    // an ACME token on the ownership path and the reverse: one and the
    // same 404.
    let unknown = assert_not_found(&get(
        gateway.addr,
        "erp.globex.example",
        &ownership_path("nope"),
    ));
    for (host, path) in [
        ("globex.app.example.test", ownership_path(OWNERSHIP_TOKEN)),
        ("unknown.example", ownership_path(OWNERSHIP_TOKEN)),
        ("erp.globex.example", ownership_path(ACME_TOKEN)),
        ("erp.globex.example", acme_path(OWNERSHIP_TOKEN)),
        ("erp.globex.example", acme_path("")),
        ("erp.globex.example", format!("{}/x", acme_path(ACME_TOKEN))),
    ] {
        let r = get(gateway.addr, host, &path);
        assert_eq!(assert_not_found(&r), unknown, "{host} {path}");
        assert!(!r.body.contains(OWNERSHIP_RESPONSE) && !r.body.contains("globex"));
    }
    assert_eq!(unknown["type"], "https://switchyard.dev/problems/not-found");

    let post = send(
        gateway.addr,
        &format!(
            "POST {} HTTP/1.1\r\nHost: erp.globex.example\r\nContent-Length: 0",
            acme_path(ACME_TOKEN)
        ),
    );
    assert_eq!(post.status, 405, "{post:?}");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        post.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        setup.upstream.request_count(),
        0,
        "a challenge went upstream"
    );

    // Other well-known paths belong to the tenant.
    let r = get(
        gateway.addr,
        "erp.globex.example",
        "/.well-known/openid-configuration",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["headers"]["x-tenant-id"], "t-globex");

    for (labels, count) in [
        ("kind=\"ownership\",outcome=\"answered\"", 1.0),
        ("kind=\"ownership\",outcome=\"unknown\"", 4.0),
        ("kind=\"acme-http01\",outcome=\"unknown\"", 3.0),
        ("kind=\"acme-http01\",outcome=\"method_not_allowed\"", 1.0),
    ] {
        let name = format!("switchyard_gateway_challenges_total{{{labels}}}");
        assert_eq!(gateway.metric(&name), Some(count), "{name}");
    }
}

#[test]
fn challenges_follow_the_snapshot_in_force_and_are_answered_over_https_too() {
    let setup = start();
    let gateway = &setup.gateway;

    let tcp = TcpStream::connect(setup.https).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("erp.globex.example").unwrap();
    let conn = ClientConnection::new(setup.ca.client(&[]), name).unwrap();
    let r = send_on(
        StreamOwned::new(conn, tcp),
        &format!(
            "GET {} HTTP/1.1\r\nHost: erp.globex.example",
            acme_path(ACME_TOKEN)
        ),
    );
    assert_answer(&r, KEY_AUTHORIZATION);

    // Version 2 withdraws the challenges: they are no longer answered.
    let next = snapshot(2, &setup.upstream, "");
    let temp = gateway.snapshot.with_extension("tmp");
    std::fs::write(&temp, next).unwrap();
    std::fs::rename(&temp, &gateway.snapshot).unwrap();
    gateway.wait_for_log("routing snapshot version 2 loaded", Duration::from_secs(10));
    assert_not_found(&get(
        gateway.addr,
        "erp.globex.example",
        &acme_path(ACME_TOKEN),
    ));
    assert_not_found(&get(
        gateway.addr,
        "erp.globex.example",
        &ownership_path(OWNERSHIP_TOKEN),
    ));
}
