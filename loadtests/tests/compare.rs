//! End to end at small scale: `loadtest seed` writes the snapshot, CA and
//! certificates of a scenario's tenants; a real gateway serves them over TLS in
//! front of the demo upstream; `loadtest compare` runs the scenario against the
//! gateway (HTTPS, SNI per custom domain) and against the upstream directly, and
//! reports them side by side.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{
    Killed, Upstream, free_port, gateway_binary, loadtest, read_report, scenario, text, wait_for,
};
use loadtest::report::Report;

/// Seeds `out` for `tenants` tenants with `domains` custom domains behind `upstream`,
/// the gateway listening on the given ports.
fn seed(
    out: &Path,
    upstream: &Upstream,
    tenants: u32,
    domains: u32,
    https: u16,
    http: u16,
    admin: u16,
) {
    let output = loadtest(&[
        "seed",
        "--out",
        out.to_str().unwrap(),
        "--upstream",
        &upstream.addr.to_string(),
        "--tenants",
        &tenants.to_string(),
        "--domains",
        &domains.to_string(),
        "--cache-ttl-secs",
        "30",
        "--http-listen",
        &format!("127.0.0.1:{http}"),
        "--https-listen",
        &format!("127.0.0.1:{https}"),
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
    ]);
    assert!(output.status.success(), "seed: {}", text(&output.stderr));
}

const SCENARIO: &str = r#"
name = "gateway-vs-upstream"
description = "custom domains over TLS through the gateway, against the upstream itself"
duration_secs = 2
warmup_secs = 0.5
[tenants]
count = 30
custom_domains = 6
custom_domain_share = 0.5
[rate]
rps = 150
[connections]
max = 100
new_share = 0.1
[[requests]]
weight = 7
path = "/catalog/{rand:5}?cache=30&bytes=1024"
[[requests]]
weight = 3
method = "POST"
path = "/orders"
body_bytes = 2048
[slo]
max_error_rate = 0.0
p99_ms = 5000
"#;

#[test]
fn compare_runs_the_gateway_and_its_upstream_side_by_side() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let seeded = dir.path().join("seed");
    let (https, http, admin) = (free_port(), free_port(), free_port());
    seed(&seeded, &upstream, 30, 6, https, http, admin);

    let mut gateway = Command::new(gateway_binary())
        .args(["--config", seeded.join("gateway.toml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway starts");
    wait_for(format!("127.0.0.1:{https}").parse().unwrap(), &mut gateway);
    let _gateway = Killed(gateway);

    let (_scenario_dir, file) = scenario(SCENARIO);
    let report_dir = dir.path().join("compare");
    let out = loadtest(&[
        "compare",
        "--scenario",
        file.to_str().unwrap(),
        "--target",
        &format!("gateway=https://127.0.0.1:{https}"),
        "--target",
        &format!("upstream={}", upstream.url()),
        "--ca",
        seeded.join("ca.pem").to_str().unwrap(),
        "--pause-secs",
        "0.2",
        "--report",
        report_dir.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));

    let compared: Vec<Report> =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("compare.json")).unwrap())
            .unwrap();
    assert_eq!(compared.len(), 2);
    let (through_gateway, direct) = (&compared[0], &compared[1]);
    assert_eq!(through_gateway.target.name, "gateway");
    assert_eq!(direct.target.name, "upstream");
    // Both got the same schedule, and every request of it was answered with a
    // success: the gateway routed every tenant's subdomain and custom domain
    // (an unknown host would be a 404, a wrong certificate a TLS error).
    assert_eq!(through_gateway.totals.intended, direct.totals.intended);
    for report in &compared {
        assert!(report.totals.intended >= 290, "{}", report.totals.intended);
        assert_eq!(
            report.totals.ok, report.totals.intended,
            "{}: {:?}",
            report.target.name, report.errors
        );
        assert!(report.slo.passed);
    }
    // The gateway caches the cacheable GETs; the upstream has no cache.
    assert!(through_gateway.totals.cache_hits > 0);
    assert_eq!(direct.totals.cache_hits, 0);
    // Each SNI name needs connections of its own; a tenth of requests also open one.
    assert!(through_gateway.totals.connections_opened >= 20);

    // Each target's own report sits beside the comparison.
    for name in ["gateway", "upstream"] {
        let own = read_report(&report_dir.join(name));
        assert_eq!(own.target.name, name);
        assert!(report_dir.join(name).join("report.html").exists());
    }
    let index = std::fs::read_to_string(report_dir.join("index.html")).unwrap();
    assert!(index.contains("gateway/report.html") && index.contains("upstream/report.html"));
    assert!(index.matches("<svg").count() >= 3);
    assert!(stdout.contains("gateway") && stdout.contains("upstream"));
    assert!(stdout.contains('×'), "ratios to the baseline: {stdout}");

    // A client that does not trust the gateway's CA fails every handshake: TLS errors.
    let other = dir.path().join("other-ca");
    seed(
        &other,
        &upstream,
        1,
        1,
        free_port(),
        free_port(),
        free_port(),
    );
    let report_dir = dir.path().join("untrusted");
    let out = loadtest(&[
        "run",
        "--scenario",
        file.to_str().unwrap(),
        "--target",
        &format!("https://127.0.0.1:{https}"),
        "--ca",
        other.join("ca.pem").to_str().unwrap(),
        "--duration-secs",
        "0.5",
        "--report",
        report_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = read_report(&report_dir);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].kind, "tls");
    assert_eq!(report.errors[0].count, report.totals.completed);
}
