//! How long `DOMAINS` custom domains (default 1,000) take from "added" to
//! "served over HTTPS by the gateway", and what each certificate costs the
//! gateway in memory.
//!
//! Starts Debian's Pebble and pebble-challtestsrv (the test support's
//! harness), a catalog and a shard (PostgreSQL clusters), the real
//! `tenant-admin serve` ordering from Pebble, and one real gateway following
//! the feed with an HTTPS listener, all on loopback. Adds the domains
//! spread over `TENANTS` tenants (default 10), proves each through the
//! gateway's HTTP answer (`POST …/verify`), and waits until tenant-admin has
//! every certificate and the gateway has loaded every one; then checks a
//! few handshakes by SNI against Pebble's root.
//!
//!     cargo build -p gateway -p tenant-admin
//!     cargo run -p tenant-admin --example domain_scale
//!     DOMAINS=200 CONCURRENCY=4 cargo run -p tenant-admin --example domain_scale
//!
//! Binaries are taken from the same target directory as this example.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Admin, Killed, binary, free_addr, wait_for};
use rustls::pki_types::ServerName;
use testkit::{Pebble, PebbleOptions, PgCluster};

const TOKEN: &str = "domain-scale-operator-token-000000";
const SECRETS_KEY: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn main() {
    let domains: usize = env_or("DOMAINS", 1000);
    let tenants: usize = env_or("TENANTS", 10).max(1);
    let concurrency: usize = env_or("CONCURRENCY", 8);
    let dir = tempfile::tempdir().expect("temp dir");

    let http = free_addr();
    let https = free_addr();
    let gw_admin = free_addr();
    let pebble = Pebble::start(PebbleOptions {
        http_port: http.port(),
        ..PebbleOptions::default()
    })
    .expect("Pebble starts");
    let catalog = PgCluster::start().expect("catalog cluster");
    let catalog_url = catalog.create_database("catalog").expect("catalog db");
    let shard = PgCluster::start().expect("shard cluster");
    let shard_url = shard.create_database("shard").expect("shard db");
    let upstream = testkit::Upstream::echo("shard-1").expect("an upstream");

    let env = [
        ("SECRETS_KEY", SECRETS_KEY.to_owned()),
        ("ACME_DIRECTORY", pebble.directory_url()),
        (
            "ACME_CA_ROOT",
            pebble.api_ca_pem_path().display().to_string(),
        ),
        ("DNS_RESOLVER", pebble.dns_addr().to_string()),
        ("CHALLENGE_HTTP_PORT", http.port().to_string()),
        ("CHALLENGE_ALLOW_PRIVATE", "true".to_owned()),
        ("ACME_CONCURRENCY", concurrency.to_string()),
        ("ACME_ORDERS_PER_HOUR", "100000".to_owned()),
        ("ACME_TENANT_ORDERS_PER_HOUR", "100000".to_owned()),
    ];
    let admin_log = std::fs::File::create(dir.path().join("tenant-admin.log")).unwrap();
    let api = Admin::start_with_env(&catalog_url, TOKEN, admin_log, &env);
    let call = |method: &str, path: &str, body: &str| api.call(method, path, body);
    call("POST", "/v1/regions", r#"{"name":"eu-west"}"#);
    call(
        "POST",
        "/v1/plans",
        r#"{"name":"enterprise","rate_per_sec":100000,"burst":100000,"max_body_bytes":1048576,"max_domains":10000}"#,
    );
    call(
        "POST",
        "/v1/shards",
        &format!(
            r#"{{"id":"shard-1","region":"eu-west","dsn":"{shard_url}","pools":{{"eu-west":["{}"]}}}}"#,
            upstream.addr()
        ),
    );
    for t in 0..tenants {
        call(
            "POST",
            "/v1/tenants",
            &format!(
                r#"{{"id":"t-{t:03}","slug":"tenant{t:03}","plan":"enterprise","region":"eu-west"}}"#
            ),
        );
    }
    let created = call(
        "POST",
        "/v1/tokens",
        r#"{"name":"gateways","role":"gateway"}"#,
    );
    let gateway_token = serde_json::from_str::<serde_json::Value>(&created).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(dir.path().join("gw.token"), gateway_token).unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nregion = \"eu-west\"\nhttp_listen = \"{http}\"\nhttps_listen = \"{https}\"\n\
             admin_listen = \"{gw_admin}\"\nbase_domains = [\"app.example.test\"]\naccess_log = false\n\n\
             [source]\nkind = \"admin\"\nurl = \"http://{}\"\ntoken_file = \"gw.token\"\n\
             cache_path = \"gw.snapshot.json\"\n\n\
             [shutdown]\ngrace_period_secs = 0\ngraceful_shutdown_timeout_secs = 1\n\
             upgrade_sock = \"gw.sock\"\npid_file = \"gw.pid\"\n",
            api.addr
        ),
    )
    .unwrap();
    let gateway_log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let gateway = Killed(
        Command::new(binary("gateway"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(gateway_log)
            .spawn()
            .expect("the gateway starts"),
    );
    let gateway_pid = gateway.0.id();
    wait_for(
        || get(gw_admin, "/readyz", "gw").0 == 200,
        "the gateway ready",
    );
    let rss_before = rss_kib(gateway_pid);

    let names: Vec<(String, String)> = (0..domains)
        .map(|i| {
            (
                format!("t-{:03}", i % tenants),
                format!("erp{i:05}.customer{:03}.test", i % tenants),
            )
        })
        .collect();
    let start = Instant::now();
    in_parallel(&names, concurrency, |(tenant, host)| {
        call(
            "POST",
            &format!("/v1/tenants/{tenant}/domains"),
            &format!(r#"{{"hostname":"{host}"}}"#),
        );
    });
    let added = start.elapsed();
    in_parallel(&names, concurrency, |(tenant, host)| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body = call(
                "POST",
                &format!("/v1/tenants/{tenant}/domains/{host}/verify"),
                "{}",
            );
            if body.contains("\"verified_by\":\"http\"") {
                break;
            }
            // The gateway may not have applied the snapshot with the proof yet.
            assert!(Instant::now() < deadline, "{host} not verified: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let verified = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut issued = None;
    loop {
        let admin_metrics = api.call("GET", "/metrics", "");
        let active = gauge(&admin_metrics, "switchyard_admin_domains{state=\"active\"}");
        if issued.is_none() && active >= domains as f64 {
            issued = Some(start.elapsed());
        }
        let loaded = gauge(
            &get(gw_admin, "/metrics", "gw").1,
            "switchyard_gateway_certificates{source=\"feed\"}",
        );
        if issued.is_some() && loaded >= domains as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not done: {active} active, {loaded} loaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let loaded = start.elapsed();
    let issued = issued.unwrap();
    // Let the gateway settle (the cache written, old tables dropped).
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kib(gateway_pid);

    // A few handshakes by SNI, verified against Pebble's root.
    let root = pebble.issuer_root_pem().unwrap();
    let client = testkit::client_trusting_pem(&root, &[]);
    for (_, host) in names.iter().step_by((domains / 5).max(1)) {
        let status = https_status(https, host, client.clone());
        assert_eq!(status, 200, "{host}");
    }

    let per_cert = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / domains as f64;
    println!("domains                          {domains} over {tenants} tenants");
    println!(
        "all added                        {:.1} s",
        added.as_secs_f64()
    );
    println!(
        "all verified (HTTP proof)        {:.1} s",
        verified.as_secs_f64()
    );
    println!(
        "all issued (tenant-admin)        {:.1} s  ({:.1} certificates/s from the first add)",
        issued.as_secs_f64(),
        domains as f64 / issued.as_secs_f64()
    );
    println!(
        "all loaded (gateway)             {:.1} s",
        loaded.as_secs_f64()
    );
    println!(
        "gateway RSS                      {:.1} MiB -> {:.1} MiB: {:.1} KiB per certificate",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        per_cert / 1024.0
    );
    drop(gateway);
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `work` over `items` on `threads` threads.
fn in_parallel<T: Sync>(items: &[T], threads: usize, work: impl Fn(&T) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { return };
                    work(item);
                }
            });
        }
    });
}

fn get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    testkit::plain_http::request(addr, "GET", path, &[("host", host)], None)
}

/// The value of the first sample line starting with `series`, or 0.
fn gauge(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The status of `GET /` over TLS with SNI and Host `host` (chain verified).
fn https_status(addr: SocketAddr, host: &str, client: Arc<rustls::ClientConfig>) -> u16 {
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(client, name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
