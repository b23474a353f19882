//! `loadtest run` end to end: the built binary against real servers on loopback
//! (the demo upstream, a closed port, a server that stalls), its exit status, its
//! summary and the report it writes.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use common::{Upstream, loadtest, report_of, run, scenario, text};

/// A small scenario: `rps` for `secs` with a half-second warm-up, evenly spaced.
fn small(rps: u32, secs: u32, path: &str, extra: &str) -> String {
    format!(
        r#"
name = "small"
description = "a small end-to-end run"
duration_secs = {secs}
warmup_secs = 0.5
timeout_ms = 5000
[tenants]
count = 40
custom_domains = 4
[rate]
rps = {rps}
[connections]
max = 64
[[requests]]
weight = 3
path = "{path}"
[[requests]]
method = "POST"
path = "/orders/{{tenant}}"
body_bytes = [100, 3000]
{extra}
"#
    )
}

#[test]
fn a_run_against_an_upstream_counts_every_request_and_writes_the_report() {
    let upstream = Upstream::start();
    let (out, dir) = run(
        &small(
            300,
            2,
            "/items/{rand:50}?bytes=512",
            "[slo]\np99_ms = 5000\nmax_error_rate = 0.0\nmin_throughput_rps = 1",
        ),
        &upstream.url(),
        &[],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));

    let report = report_of(&dir);
    assert_eq!(report.scenario, "small");
    assert_eq!(report.target.url, upstream.url());
    // 300 req/s evenly spaced over the 2 measured seconds.
    let totals = &report.totals;
    assert!(
        (599..=601).contains(&totals.intended),
        "intended {}",
        totals.intended
    );
    assert_eq!(totals.completed, totals.intended);
    assert_eq!(totals.ok, totals.completed);
    assert_eq!(totals.errors, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.statuses.len(), 1);
    assert_eq!(report.statuses[0].status, 200);
    assert_eq!(report.statuses[0].count, totals.completed);
    assert_eq!(report.latency.count, totals.completed);
    assert!(report.latency.p50_ms > 0.0);
    assert!(report.latency.p50_ms <= report.latency.p99_ms);
    assert!(report.latency.p99_ms <= report.latency.max_ms);
    assert!(totals.bytes_received >= 512 * totals.completed / 2);
    assert!(totals.bytes_sent >= 100 * (totals.completed / 10));
    // Keep-alive: far fewer connections than requests.
    assert!(
        totals.connections_opened >= 1 && totals.connections_opened < 100,
        "{} connections",
        totals.connections_opened
    );
    // The classes split the requests and name the tenants they hold.
    let per_class: u64 = report.classes.iter().map(|c| c.completed).sum();
    assert_eq!(per_class, totals.completed);
    assert_eq!(report.classes[0].class, "large");
    assert_eq!(report.classes.iter().map(|c| c.tenants).sum::<u32>(), 40);
    // The timeline covers the warm-up and the window, one entry a second.
    assert!(report.timeline.len() >= 3, "{:?}", report.timeline);
    assert!(report.timeline[0].warmup);
    assert!(!report.timeline[1].warmup);
    let intended: u64 = report.timeline.iter().map(|s| s.intended).sum();
    assert!(intended > totals.intended, "the warm-up is in the timeline");
    assert!(report.slo.passed);
    assert_eq!(report.slo.checks.len(), 3);
    // The harness's own lateness is measured for every request of the window.
    assert_eq!(report.schedule_lag.count, totals.completed);
    assert!(report.schedule_lag.max_ms <= report.latency.max_ms);

    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 3, "three plots");
    assert!(html.contains("small"));
    assert!(stdout.contains("PASS"), "{stdout}");
    assert!(stdout.contains("p99"), "{stdout}");
}

#[test]
fn a_failed_slo_exits_1_and_names_the_check() {
    let upstream = Upstream::start();
    let (out, dir) = run(
        &small(
            100,
            1,
            "/?delay_ms=2",
            "[slo]\np99_ms = 0.001\n[slo.classes.small]\nmax_error_rate = 0.5",
        ),
        &upstream.url(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("FAIL"));
    let report = report_of(&dir);
    assert!(!report.slo.passed);
    let failed: Vec<_> = report.slo.checks.iter().filter(|c| !c.passed).collect();
    assert_eq!(failed.len(), 1, "{:?}", report.slo.checks);
    assert_eq!(failed[0].name, "p99_ms");
    assert_eq!(failed[0].scope, "all");
    assert!(
        failed[0].actual >= 2.0,
        "the upstream's 2 ms delay is in p99"
    );
    let class_check = report
        .slo
        .checks
        .iter()
        .find(|c| c.scope == "small")
        .expect("the class check");
    assert!(class_check.passed);
}

#[test]
fn statuses_429s_and_timeouts_are_told_apart() {
    let upstream = Upstream::start();
    let extra = r#"
[[requests]]
weight = 2
path = "/?status=503"
[[requests]]
weight = 2
path = "/?status=429"
[[requests]]
weight = 1
path = "/?delay_ms=3000"
"#;
    let text_of = small(200, 1, "/ok", extra).replace("timeout_ms = 5000", "timeout_ms = 300");
    let (out, dir) = run(&text_of, &upstream.url(), &[]);
    assert!(
        out.status.success(),
        "no SLO: exit 0\n{}",
        text(&out.stderr)
    );
    let report = report_of(&dir);
    let totals = &report.totals;
    let status = |code: u16| {
        report
            .statuses
            .iter()
            .find(|s| s.status == code)
            .map_or(0, |s| s.count)
    };
    let error = |kind: &str| {
        report
            .errors
            .iter()
            .find(|e| e.kind == kind)
            .map_or(0, |e| e.count)
    };
    assert!(status(503) > 0 && status(429) > 0 && status(200) > 0);
    assert_eq!(totals.rate_limited, status(429), "429s are counted apart");
    assert_eq!(error("status"), status(503), "a 503 is a status error");
    assert!(error("timeout") > 0, "{:?}", report.errors);
    assert_eq!(totals.errors, error("status") + error("timeout"));
    assert_eq!(
        totals.completed,
        status(200) + status(503) + status(429) + error("timeout")
    );
    let timeout = report.errors.iter().find(|e| e.kind == "timeout").unwrap();
    assert!(timeout.example.contains("300 ms"), "{}", timeout.example);
    // A timed-out request's latency is at least the timeout.
    assert!(report.latency.max_ms >= 300.0);
}

#[test]
fn a_closed_port_gives_connect_errors_and_fails_the_error_slo() {
    // Bind and drop: a loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (out, dir) = run(
        &small(50, 1, "/", "[slo]\nmax_error_rate = 0.01\np99_ms = 1000"),
        &format!("http://127.0.0.1:{port}"),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let report = report_of(&dir);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].kind, "connect");
    assert_eq!(report.errors[0].count, report.totals.completed);
    assert!(report.errors[0].example.contains(&port.to_string()));
    assert_eq!(report.totals.error_rate, 1.0);
    assert_eq!(report.totals.throughput_rps, 0.0);
    // A refused connection is an error, not a fast latency: nothing to measure, so
    // the latency objective fails rather than passing on no data.
    assert_eq!(report.latency.count, 0);
    let p99 = report
        .slo
        .checks
        .iter()
        .find(|c| c.name == "p99_ms")
        .unwrap();
    assert!(!p99.passed);
    assert_eq!(p99.note.as_deref(), Some("no request to measure"));
}

#[test]
fn a_bad_scenario_exits_78_listing_every_problem_and_writes_nothing() {
    let (out, dir) = run(
        "name = \"bad\"\nduration_secs = 0\n[tenants]\ncount = 0\n[rate]\nkind = \"wavy\"\n[[requests]]\npath = \"x\"\n",
        "http://127.0.0.1:9",
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    for key in [
        "duration_secs:",
        "tenants.count:",
        "rate.kind:",
        "requests[0].path:",
    ] {
        assert!(stderr.contains(key), "{key} missing in {stderr}");
    }
    assert!(!dir.path().join("report").exists());

    let out = loadtest(&[
        "run",
        "--scenario",
        "/nonexistent.toml",
        "--target",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("/nonexistent.toml"));
}

#[test]
fn bad_targets_and_flags_exit_64() {
    let (_dir, file) = scenario(&small(10, 1, "/", ""));
    let file = file.to_str().unwrap();
    for (target, says) in [
        ("ftp://127.0.0.1:21", "use http or https"),
        ("http://127.0.0.1:8080/api", "no path"),
        ("http://10.1.2.3:8080", "--allow-remote"),
    ] {
        let out = loadtest(&["run", "--scenario", file, "--target", target]);
        assert_eq!(out.status.code(), Some(64), "{target}");
        assert!(
            text(&out.stderr).contains(says),
            "{target}: {}",
            text(&out.stderr)
        );
    }
    let out = loadtest(&[
        "run",
        "--scenario",
        file,
        "--target",
        "http://127.0.0.1:9",
        "--rate-scale",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(64));
    let out = loadtest(&[
        "compare",
        "--scenario",
        file,
        "--target",
        "bad name=http://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("target name"));
    let out = loadtest(&[
        "compare",
        "--scenario",
        file,
        "--target",
        "one=http://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("two targets"));
}

/// A server that answers at once, except that from its `stall_after`-th request on it
/// holds every answer until `stall` has passed since that request: a stalled app
/// server, GC pause or full queue. Counts requests that arrived during the stall.
struct Staller {
    addr: SocketAddr,
    arrived_during_stall: Arc<AtomicU64>,
    _runtime: std::thread::JoinHandle<()>,
}

impl Staller {
    fn start(stall_after: u64, stall: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let arrived_during_stall = Arc::new(AtomicU64::new(0));
        let during = arrived_during_stall.clone();
        let runtime = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let seen = Arc::new(AtomicU64::new(0));
                let stall_until: Arc<Mutex<Option<Instant>>> = Arc::default();
                // Serves for at most a minute, then stops by itself.
                let deadline = tokio::time::sleep(Duration::from_secs(60));
                tokio::pin!(deadline);
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => accepted.unwrap().0,
                        () = &mut deadline => return,
                    };
                    let (seen, stall_until, during) =
                        (seen.clone(), stall_until.clone(), during.clone());
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |_request: Request<hyper::body::Incoming>| {
                                let (seen, stall_until, during) =
                                    (seen.clone(), stall_until.clone(), during.clone());
                                async move {
                                    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                                    let until = {
                                        let mut until = stall_until.lock().unwrap();
                                        if n == stall_after {
                                            *until = Some(Instant::now() + stall);
                                        }
                                        *until
                                    };
                                    if let Some(until) = until.filter(|u| *u > Instant::now()) {
                                        during.fetch_add(1, Ordering::SeqCst);
                                        tokio::time::sleep_until(until.into()).await;
                                    }
                                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                        Bytes::from_static(b"ok"),
                                    )))
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self {
            addr,
            arrived_during_stall,
            _runtime: runtime,
        }
    }
}

#[test]
fn the_schedule_keeps_its_rate_through_a_stall_and_the_latency_shows_it() {
    // 200 req/s for 3 s; the server stalls for 1 s from its 250th request (a
    // quarter second into the second second). A closed-loop generator would stop
    // sending for that second and report a handful of slow requests; an open-loop
    // one keeps sending 200 a second and each of them waits out the rest of the
    // stall.
    let staller = Staller::start(250, Duration::from_secs(1));
    let (out, dir) = run(
        r#"
name = "stall"
duration_secs = 3
timeout_ms = 8000
[tenants]
count = 10
[rate]
rps = 200
[connections]
max = 1000
[[requests]]
path = "/"
"#,
        &format!("http://{}", staller.addr),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = report_of(&dir);
    assert!((599..=601).contains(&report.totals.intended));
    assert_eq!(
        report.totals.ok, report.totals.intended,
        "{:?}",
        report.errors
    );
    // The schedule did not slow down: every second sent its 200, and the server saw
    // the second's worth of requests arrive while it was stalled.
    for second in &report.timeline[..3] {
        assert!((199..=201).contains(&second.intended), "{second:?}");
    }
    let during = staller.arrived_during_stall.load(Ordering::SeqCst);
    assert!(
        during >= 150,
        "only {during} requests arrived during the stall"
    );
    // The stall is in the latency: the first request held waited about the whole
    // second, and more than 1% of all requests were held.
    assert!(
        report.latency.max_ms >= 900.0,
        "max {}",
        report.latency.max_ms
    );
    assert!(
        report.latency.p99_ms >= 500.0,
        "p99 {}",
        report.latency.p99_ms
    );
    let worst = report
        .timeline
        .iter()
        .max_by(|a, b| a.max_ms.total_cmp(&b.max_ms))
        .unwrap();
    assert!(
        worst.max_ms >= 900.0 && (1..=2).contains(&worst.t),
        "{worst:?}"
    );
}
