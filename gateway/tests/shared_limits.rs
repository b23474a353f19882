//! Tenant rate limits shared by two real gateway processes through a real
//! Redis: the pair admits the plan's rate, not twice it; a Redis that
//! dies or stalls never fails a request, the gateways fall back to local
//! limits within a second and share again once Redis is back.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Gateway, send, signal_pid};
use testkit::{RedisServer, Upstream};

/// The plan's rate and burst.
const RATE: u32 = 200;
const BURST: u32 = 10;

fn snapshot(upstream: &str) -> String {
    format!(
        r#"
version = 1
regions = [{{ name = "eu-west" }}]
plans = [{{ name = "shared", rate_per_sec = {RATE}, burst = {BURST}, max_body_bytes = 1024 }}]

[[targets]]
id = "shard-a"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = ["{upstream}"] }}

[[tenants]]
id = "t-acme"
slug = "acme"
plan = "shared"
region = "eu-west"
target = "shard-a"
"#
    )
}

fn gateways(redis: &RedisServer, upstream: &Upstream) -> (Gateway, Gateway) {
    let snapshot = snapshot(&upstream.addr().to_string());
    let redis = format!("[redis]\nurl = \"{}\"\n", redis.url());
    let start = || Gateway::start_in(tempfile::tempdir().unwrap(), &snapshot, "", &redis);
    let pair = (start(), start());
    // Both have seen each other before the load starts.
    wait_for(Duration::from_secs(5), "both gateways sharing", || {
        [&pair.0, &pair.1]
            .iter()
            .all(|g| g.metric("switchyard_gateway_rate_limit_gateways") == Some(2.0))
    });
    pair
}

fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Statuses of requests sent at a fixed rate (open loop: each has its
/// slot, whatever the previous one took) to `addr` for `duration`, from
/// `threads` threads that each send `per_thread` requests a second.
fn fixed_rate(addr: SocketAddr, per_thread: u32, threads: u32, duration: Duration) -> Vec<u16> {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let gap = Duration::from_secs(1) / per_thread;
                let start = Instant::now();
                let mut statuses = Vec::new();
                let mut next = start;
                while next - start < duration {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let reply = send(addr, "GET /orders HTTP/1.1\r\nHost: acme.app.example.test");
                    statuses.push(reply.status);
                    next += gap;
                }
                statuses
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

fn admitted(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| **s == 200).count()
}

#[test]
fn two_gateways_on_one_redis_admit_the_plans_rate_between_them() {
    let redis = RedisServer::start().unwrap();
    let upstream = Upstream::echo("shard-a").unwrap();
    let (a, b) = gateways(&redis, &upstream);

    // 300 requests a second at each gateway, 1.5 times the plan at each,
    // for 4 s: alone, each would admit the plan's 800.
    let secs = 4;
    let duration = Duration::from_secs(secs);
    let (sa, sb) = std::thread::scope(|s| {
        let ha = s.spawn(|| fixed_rate(a.addr, 150, 2, duration));
        let hb = s.spawn(|| fixed_rate(b.addr, 150, 2, duration));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let total = admitted(&sa) + admitted(&sb);
    let plan = f64::from(RATE) * secs as f64 + f64::from(BURST);
    eprintln!(
        "shared: admitted {total} = {} + {} of {} offered; plan {plan}",
        admitted(&sa),
        admitted(&sb),
        sa.len() + sb.len()
    );
    assert!(
        (total as f64 - plan).abs() <= plan * 0.10,
        "admitted {total} ({} + {}) for a plan allowing {plan}",
        admitted(&sa),
        admitted(&sb)
    );
    // Each gateway took part: the split follows the traffic.
    for (name, s) in [("a", &sa), ("b", &sb)] {
        let share = admitted(s) as f64 / total as f64;
        assert!((0.35..=0.65).contains(&share), "gateway {name}: {share}");
        assert!(s.iter().all(|s| *s == 200 || *s == 429), "{s:?}");
    }
    assert_eq!(upstream.requests().len(), total);
}

#[test]
fn a_failing_redis_never_fails_a_request_and_sharing_comes_back() {
    let mut redis = RedisServer::start().unwrap();
    let upstream = Upstream::echo("shard-a").unwrap();
    let (a, b) = gateways(&redis, &upstream);
    let gauge = "switchyard_gateway_rate_limit_shared";
    let load = |d| {
        std::thread::scope(|s| {
            let ha = s.spawn(|| fixed_rate(a.addr, 150, 2, d));
            let hb = s.spawn(|| fixed_rate(b.addr, 150, 2, d));
            let mut all = ha.join().unwrap();
            all.extend(hb.join().unwrap());
            all
        })
    };

    // Redis stalls (SIGSTOP): every sync times out.
    let pid = redis.pid().unwrap();
    signal_pid(pid, "STOP");
    let took = wait_for(Duration::from_secs(3), "fallback after a stall", || {
        a.metric(gauge) == Some(0.0) && b.metric(gauge) == Some(0.0)
    });
    assert!(took < Duration::from_secs(1), "fell back after {took:?}");
    // Local limits: each gateway admits half the plan (two were live).
    let stalled = load(Duration::from_secs(2));
    assert!(stalled.iter().all(|s| *s == 200 || *s == 429));
    let plan = f64::from(RATE) * 2.0 + f64::from(BURST);
    let got = admitted(&stalled) as f64;
    eprintln!(
        "stalled redis: admitted {got} of {}; plan {plan}",
        stalled.len()
    );
    assert!(
        (got - plan).abs() <= plan * 0.15,
        "{got} admitted for {plan}"
    );
    signal_pid(pid, "CONT");
    wait_for(Duration::from_secs(3), "sharing after the stall", || {
        a.metric(gauge) == Some(1.0) && b.metric(gauge) == Some(1.0)
    });

    // Redis dies mid-run, then comes back empty on the same port.
    let during = std::thread::scope(|s| {
        let run = s.spawn(|| load(Duration::from_secs(3)));
        std::thread::sleep(Duration::from_millis(1000));
        redis.kill();
        let took = wait_for(Duration::from_secs(3), "fallback after a crash", || {
            a.metric(gauge) == Some(0.0) && b.metric(gauge) == Some(0.0)
        });
        assert!(took < Duration::from_secs(1), "fell back after {took:?}");
        run.join().unwrap()
    });
    assert!(
        during.iter().all(|s| *s == 200 || *s == 429),
        "a Redis failure never fails a request: {:?}",
        during
            .iter()
            .filter(|s| **s != 200 && **s != 429)
            .collect::<Vec<_>>()
    );
    redis.restart().unwrap();
    wait_for(Duration::from_secs(5), "sharing after the restart", || {
        a.metric(gauge) == Some(1.0) && b.metric(gauge) == Some(1.0)
    });

    for g in [&a, &b] {
        assert_eq!(
            g.metric("switchyard_gateway_rate_limit_fallbacks_total"),
            Some(2.0)
        );
        // One line per switch, not one per failed sync.
        assert_eq!(g.log_lines("tenant rate limits fall back").len(), 2);
        assert_eq!(g.log_lines("tenant rate limits are shared again").len(), 2);
        assert!(
            g.metric("switchyard_gateway_redis_errors_total{operation=\"limit_sync\"}")
                .unwrap()
                >= 2.0
        );
    }
}
