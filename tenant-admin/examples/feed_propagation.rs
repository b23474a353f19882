//! How fast a change made through tenant-admin's API reaches every gateway.
//!
//! Starts a real catalog and shard (PostgreSQL clusters from the test
//! support), the real `tenant-admin serve`, and `GATEWAYS` real gateways
//! (default 4) following the routing feed, all on loopback. Then creates
//! `TENANTS` tenants (default 100) one after another through the API and,
//! for each, polls every gateway's `/debug/route` every 2 ms until it
//! routes the new tenant. Prints the distribution of the delay from the
//! API's 201 to each gateway routing the tenant, over every (tenant,
//! gateway) pair.
//!
//!     cargo build -p gateway -p tenant-admin
//!     cargo run -p tenant-admin --example feed_propagation
//!     GATEWAYS=8 TENANTS=200 cargo run -p tenant-admin --example feed_propagation
//!
//! Binaries are taken from the same target directory as this example.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Admin, Killed, binary, free_addr, wait_for};
use testkit::PgCluster;

const TOKEN: &str = "feed-propagation-operator-token";

fn main() {
    let gateways: usize = env_or("GATEWAYS", 4);
    let tenants: usize = env_or("TENANTS", 100);
    let gateway = binary("gateway");
    let dir = tempfile::tempdir().expect("temp dir");

    let catalog = PgCluster::start().expect("catalog cluster");
    let catalog_url = catalog.create_database("catalog").expect("catalog db");
    let shard = PgCluster::start().expect("shard cluster");
    let shard_url = shard.create_database("shard").expect("shard db");

    let admin_log = std::fs::File::create(dir.path().join("tenant-admin.log")).unwrap();
    let api = Admin::start(&catalog_url, TOKEN, admin_log);
    let call = |method: &str, path: &str, body: &str| api.call(method, path, body);
    call("POST", "/v1/regions", r#"{"name":"eu-west"}"#);
    call(
        "POST",
        "/v1/plans",
        r#"{"name":"starter","rate_per_sec":100,"burst":100,"max_body_bytes":1048576}"#,
    );
    call(
        "POST",
        "/v1/shards",
        &format!(
            r#"{{"id":"shard-1","region":"eu-west","dsn":"{shard_url}","pools":{{"eu-west":["127.0.0.1:9"]}}}}"#
        ),
    );
    let created = call(
        "POST",
        "/v1/tokens",
        r#"{"name":"gateways","role":"gateway"}"#,
    );
    let secret = created
        .split("\"secret\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a token secret");
    std::fs::write(dir.path().join("gateway.token"), secret).unwrap();

    let mut admins = Vec::new();
    let mut children = Vec::new();
    for i in 0..gateways {
        let admin = free_addr();
        let config = dir.path().join(format!("gateway-{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "[gateway]\nregion = \"eu-west\"\nhttp_listen = \"127.0.0.1:{}\"\nadmin_listen = \"{admin}\"\n\
                 base_domains = [\"app.example.test\"]\naccess_log = false\n\n\
                 [source]\nkind = \"admin\"\nurl = \"http://{}\"\ntoken_file = \"gateway.token\"\n\
                 cache_path = \"gateway-{i}.snapshot.json\"\n\n\
                 [shutdown]\ngrace_period_secs = 0\ngraceful_shutdown_timeout_secs = 1\n\
                 upgrade_sock = \"gw-{i}.sock\"\npid_file = \"gw-{i}.pid\"\n",
                free_addr().port(),
                api.addr,
            ),
        )
        .unwrap();
        children.push(Killed(
            Command::new(&gateway)
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join(format!("gateway-{i}.log"))).unwrap())
                .spawn()
                .expect("gateway starts"),
        ));
        admins.push(admin);
    }
    for admin in &admins {
        wait_for(|| get(*admin, "/readyz").0 == 200, "gateway ready");
    }

    eprintln!("{gateways} gateways following the feed; creating {tenants} tenants");
    let mut from_201 = Vec::new();
    let mut from_post = Vec::new();
    for n in 0..tenants {
        let slug = format!("tenant-{n}");
        let sent = Instant::now();
        call(
            "POST",
            "/v1/tenants",
            &format!(r#"{{"id":"t-{n}","slug":"{slug}","plan":"starter","region":"eu-west"}}"#),
        );
        let answered = Instant::now();
        let path = format!("/debug/route?host={slug}.app.example.test");
        let id = format!("\"t-{n}\"");
        let mut pending: Vec<SocketAddr> = admins.clone();
        let deadline = answered + Duration::from_secs(10);
        while !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "tenant {slug} not routed within 10 s"
            );
            pending.retain(|admin| {
                let (status, body) = get(*admin, &path);
                if status == 200 && body.contains(&id) {
                    let now = Instant::now();
                    from_201.push(now - answered);
                    from_post.push(now - sent);
                    false
                } else {
                    true
                }
            });
            if !pending.is_empty() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    report("API 201 -> gateway routes it", &mut from_201);
    report(
        "POST sent -> gateway routes it (includes provisioning)",
        &mut from_post,
    );
    drop(children);
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what}: n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(1.0))
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A GET without a token; the status (0 when the connection failed) and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    testkit::plain_http::request(addr, "GET", path, &[], None)
}
