//! Rate limits of one gateway (no Redis): per tenant by plan, per client
//! address within a tenant, with draft-11 `RateLimit` headers and 429
//! problems, against the real binary and a real upstream.

mod support;

use support::{Gateway, Response, send};
use testkit::Upstream;

/// acme on a tight plan (5/s, burst 2), initech on a roomy one, globex
/// with a per-IP limit (2/s a client, burst 2) on a roomy tenant rate.
fn snapshot(upstream: &str) -> String {
    format!(
        r#"
version = 1
regions = [{{ name = "eu-west" }}]
plans = [
  {{ name = "tight", rate_per_sec = 5, burst = 2, max_body_bytes = 1024 }},
  {{ name = "roomy", rate_per_sec = 100000, burst = 100000, max_body_bytes = 1024 }},
  {{ name = "per-ip", rate_per_sec = 100000, burst = 100000, ip_rate_per_sec = 2, max_body_bytes = 1024 }},
]

[[targets]]
id = "shard-a"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = ["{upstream}"] }}

[[tenants]]
id = "t-acme"
slug = "acme"
plan = "tight"
region = "eu-west"
target = "shard-a"

[[tenants]]
id = "t-initech"
slug = "initech"
plan = "roomy"
region = "eu-west"
target = "shard-a"

[[tenants]]
id = "t-globex"
slug = "globex"
plan = "per-ip"
region = "eu-west"
target = "shard-a"
"#
    )
}

fn start() -> (Gateway, Upstream) {
    let upstream = Upstream::echo("shard-a").unwrap();
    let gateway = Gateway::start(
        &snapshot(&upstream.addr().to_string()),
        "trusted_proxies = [\"127.0.0.1/32\"]",
    );
    (gateway, upstream)
}

fn get(gateway: &Gateway, host: &str, client: Option<&str>) -> Response {
    let forwarded = client.map_or(String::new(), |ip| format!("\r\nx-forwarded-for: {ip}"));
    send(
        gateway.addr,
        &format!("GET /orders HTTP/1.1\r\nHost: {host}{forwarded}"),
    )
}

#[test]
fn a_tenant_over_its_plan_gets_429_with_the_headers_and_others_are_untouched() {
    let (gateway, upstream) = start();
    let host = "acme.app.example.test";
    let replies: Vec<Response> = (0..10).map(|_| get(&gateway, host, None)).collect();
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    // burst + 1 at once; a sixth of a second more could add one.
    assert!((3..=4).contains(&admitted), "admitted {admitted}");
    assert_eq!(
        upstream.requests().len(),
        admitted,
        "refusals never reach the upstream"
    );

    let first = &replies[0];
    assert_eq!(
        first.header("ratelimit-policy"),
        Some(r#""tenant";q=5;w=1"#)
    );
    assert_eq!(first.header("ratelimit"), Some(r#""tenant";r=2;t=1"#));

    let refused = replies.iter().find(|r| r.status == 429).expect("a 429");
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    // At 5/s a token comes back within 200 ms, rounded up to a second.
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some(r#""tenant";q=5;w=1"#)
    );
    assert_eq!(refused.header("ratelimit"), Some(r#""tenant";r=0;t=1"#));
    let problem = refused.json();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/quota-exceeded")
    );
    assert_eq!(problem["status"], 429);
    assert!(problem["detail"].as_str().unwrap().contains("\"tenant\""));
    assert!(refused.header("x-request-id").is_some());

    // Another tenant on the same shard is not slowed by acme.
    for _ in 0..20 {
        assert_eq!(get(&gateway, "initech.app.example.test", None).status, 200);
    }

    // After the window, acme is admitted again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(get(&gateway, host, None).status, 200);

    let metrics = send(gateway.admin, "GET /metrics HTTP/1.1\r\nHost: localhost").body;
    let limited = metrics
        .lines()
        .find(|l| {
            l.starts_with("switchyard_gateway_rate_limit_decisions_total")
                && l.contains("policy=\"tenant\"")
                && l.contains("decision=\"limited\"")
        })
        .expect("the limited counter");
    let count: u64 = limited.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(count as usize, 10 - admitted);
}

#[test]
fn per_ip_limits_are_per_address_and_per_tenant() {
    let (gateway, _upstream) = start();
    let host = "globex.app.example.test";
    // A client behind the trusted proxy (127.0.0.1) is known by the last
    // x-forwarded-for entry.
    let statuses = |client: &str, n: usize| -> Vec<u16> {
        (0..n)
            .map(|_| get(&gateway, host, Some(client)).status)
            .collect()
    };
    let a = statuses("203.0.113.1", 6);
    assert_eq!(&a[..3], &[200, 200, 200], "{a:?}");
    assert!(a[3..].contains(&429), "{a:?}");
    let refused = get(&gateway, host, Some("203.0.113.1"));
    assert_eq!(refused.status, 429);
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("\"ip\"")
    );
    assert_eq!(refused.header("ratelimit-policy"), Some(r#""ip";q=2;w=1"#));

    // Another address of the same tenant has its own budget.
    assert_eq!(&statuses("203.0.113.2", 3), &[200, 200, 200]);
    // An admitted request names both policies.
    let ok = get(&gateway, host, Some("203.0.113.3"));
    assert_eq!(
        ok.header("ratelimit-policy"),
        Some(r#""tenant";q=100000;w=1, "ip";q=2;w=1"#)
    );
    // The limited address is not limited on a tenant without a per-IP limit.
    assert_eq!(
        get(&gateway, "initech.app.example.test", Some("203.0.113.1")).status,
        200
    );
}
