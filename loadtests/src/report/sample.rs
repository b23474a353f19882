//! Hand-built reports for the rendering tests: a plausible run with warm-up,
//! tenant classes, statuses, errors and one failed SLO check, the same run
//! against a slower target, and a run that sent nothing.

use super::{
    ClassStats, ErrorStats, Latency, Report, Second, SloCheck, SloVerdict, StatusStats, TargetInfo,
    Totals,
};

/// Seconds of warm-up in the sample run.
const WARMUP: u32 = 5;
/// Measured seconds in the sample run.
const MEASURED: u32 = 30;

/// A 1,000 req/s run against target `gateway`: p99 31.7 ms, 0.5% errors, 2% 429s,
/// an error burst around second 20, and four SLO checks of which `p95_ms` for
/// the `hot` class fails.
pub(super) fn report() -> Report {
    target("gateway", 1.0)
}

/// The sample run against target `name` whose latencies are `slowness` times
/// the sample's and whose throughput is divided by it.
pub(super) fn target(name: &str, slowness: f64) -> Report {
    let latency = latency(
        [0.8, 4.12, 9.8, 14.2, 31.7, 88.4, 153.6].map(|ms| ms * slowness),
        100_000,
    );
    let throughput = 995.0 / slowness;
    let completed = (throughput * f64::from(MEASURED)) as u64;
    let errors = completed / 200;
    let rate_limited = completed / 50;
    Report {
        scenario: "mixed-tenants".to_owned(),
        description: "Zipf-skewed reads and writes over 1,000 tenants".to_owned(),
        target: TargetInfo {
            name: name.to_owned(),
            url: format!("https://{name}.example.test:8443"),
        },
        started_unix_ms: 1_740_837_909_000,
        schedule_lag: Latency::default(),
        warmup_secs: f64::from(WARMUP),
        duration_secs: f64::from(MEASURED),
        totals: Totals {
            intended: 30_000,
            completed,
            ok: completed - errors - rate_limited,
            rate_limited,
            errors,
            error_rate: errors as f64 / completed as f64,
            rate_limited_share: rate_limited as f64 / completed as f64,
            cache_hits: completed / 4,
            cache_hit_share: 0.25,
            intended_rps: 1000.0,
            throughput_rps: throughput,
            connections_opened: 64,
            bytes_received: 48 * 1024 * 1024,
            bytes_sent: 3 * 1024 * 1024,
        },
        classes: vec![
            class("hot", 1, completed / 5, latency.clone()),
            class("large", 10, completed / 4, latency.clone()),
            class("medium", 90, completed / 4, latency.clone()),
            class(
                "small",
                899,
                completed - 3 * (completed / 4),
                latency.clone(),
            ),
        ],
        statuses: vec![
            status(200, completed - errors - rate_limited, &latency),
            status(429, rate_limited, &latency),
            status(503, 2 * errors / 3, &latency),
        ],
        errors: vec![
            ErrorStats {
                kind: "status".to_owned(),
                count: 2 * errors / 3,
                example: "503 Service Unavailable: no healthy backend".to_owned(),
            },
            ErrorStats {
                kind: "timeout".to_owned(),
                count: errors / 3,
                example: "no response within 2 s".to_owned(),
            },
        ],
        timeline: (0..WARMUP + MEASURED)
            .map(|t| second(t, slowness))
            .collect(),
        slo: SloVerdict {
            passed: false,
            checks: vec![
                check("p99_ms", "all", 250.0, latency.p99_ms),
                check("p95_ms", "hot", 10.0, latency.p95_ms),
                check(
                    "max_error_rate",
                    "all",
                    0.01,
                    errors as f64 / completed as f64,
                ),
                SloCheck {
                    passed: throughput >= 900.0,
                    ..check("min_throughput_rps", "all", 900.0, throughput)
                },
            ],
        },
        latency,
    }
}

/// A run in which nothing was sent or measured.
pub(super) fn empty() -> Report {
    Report {
        scenario: "idle".to_owned(),
        description: String::new(),
        target: TargetInfo {
            name: "target".to_owned(),
            url: "http://127.0.0.1:1".to_owned(),
        },
        started_unix_ms: 0,
        schedule_lag: Latency::default(),
        warmup_secs: 0.0,
        duration_secs: 0.0,
        totals: Totals::default(),
        latency: Latency::default(),
        classes: Vec::new(),
        statuses: Vec::new(),
        errors: Vec::new(),
        timeline: Vec::new(),
        slo: SloVerdict {
            passed: true,
            checks: Vec::new(),
        },
    }
}

/// A latency distribution through `anchors` (min, p50, p90, p95, p99, p99.9, max
/// in ms), its curve interpolated in "nines" (`-log10(1 - p)`) with a point
/// every 0.05 nines up to 99.99% and the max at 100%.
fn latency(anchors: [f64; 7], count: u64) -> Latency {
    let [min, p50, p90, p95, p99, p999, max] = anchors;
    let knots = [
        (0.0, min),
        (2f64.log10(), p50),
        (1.0, p90),
        (20f64.log10(), p95),
        (2.0, p99),
        (3.0, p999),
        (4.0, max),
    ];
    let at = |nines: f64| {
        let i = knots
            .windows(2)
            .position(|w| nines <= w[1].0)
            .unwrap_or(knots.len() - 2);
        let ((x0, y0), (x1, y1)) = (knots[i], knots[i + 1]);
        y0 + (y1 - y0) * (nines - x0) / (x1 - x0)
    };
    let mut curve: Vec<(f64, f64)> = (0..=80)
        .map(|step| {
            let nines = f64::from(step) * 0.05;
            (100.0 * (1.0 - 10f64.powf(-nines)), at(nines))
        })
        .collect();
    curve.push((100.0, max));
    Latency {
        count,
        mean_ms: p50 * 1.3,
        p50_ms: p50,
        p90_ms: p90,
        p95_ms: p95,
        p99_ms: p99,
        p999_ms: p999,
        max_ms: max,
        curve,
    }
}

fn class(name: &str, tenants: u32, completed: u64, latency: Latency) -> ClassStats {
    ClassStats {
        class: name.to_owned(),
        tenants,
        completed,
        throughput_rps: completed as f64 / 60.0,
        rate_limited: completed / 50,
        errors: completed / 200,
        latency,
    }
}

fn status(status: u16, count: u64, latency: &Latency) -> StatusStats {
    StatusStats {
        status,
        count,
        latency: latency.clone(),
    }
}

fn check(name: &str, scope: &str, limit: f64, actual: f64) -> SloCheck {
    SloCheck {
        name: name.to_owned(),
        scope: scope.to_owned(),
        limit,
        actual,
        passed: actual <= limit,
        note: None,
    }
}

/// Second `t`: a ramp during warm-up, then 1,000 req/s with some wobble and a
/// burst of slow, failing requests in seconds 20–22.
fn second(t: u32, slowness: f64) -> Second {
    let warmup = t < WARMUP;
    let wobble = (f64::from(t) * 0.7).sin();
    let burst = (20..=22).contains(&t);
    let intended = if warmup { u64::from(t + 1) * 200 } else { 1000 };
    let p50 = (4.0 + 0.4 * wobble) * slowness;
    let p99 = (if burst { 120.0 } else { 30.0 + 4.0 * wobble }) * slowness;
    Second {
        t,
        warmup,
        intended,
        completed: ((intended as f64 - 10.0 - 8.0 * wobble) / slowness).max(0.0) as u64,
        errors: if burst { 40 } else { 3 },
        rate_limited: (20.0 + 5.0 * wobble) as u64,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: p99 * 1.6,
    }
}
