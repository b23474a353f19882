//! Certificates at scale: SPEC's target of 10,000 tenant certificates
//! loaded, SNI selection O(1), and a new certificate served within 1 s of
//! being published, with no restart. A measurement, not a test: it prints
//! numbers for a note.
//!
//! ```text
//! cargo build --release -p gateway --bins --example cert_scale
//! target/release/examples/cert_scale [--certs 10000] [--publishes 10]
//! ```
//!
//! 1. Issues `--certs` certificates from a throwaway CA into a directory.
//! 2. Loads them into a [`CertStore`] and times the scan, a rescan with
//!    nothing changed, and the SNI lookup (median of many) against a store
//!    of 10, to show the lookup does not grow with the count.
//! 3. Starts the real gateway binary (next to this example's directory) on
//!    that directory, then publishes new certificates one by one and times
//!    each from the moment its files are in place to the first TLS
//!    handshake that is served it, checked against the CA by rustls.
//!    Also reports the gateway's memory and its idle CPU while watching.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use gateway::cert_store::CertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, StreamOwned};
use testkit::TestCa;

#[derive(Debug, Parser)]
struct Args {
    /// Certificates in the directory.
    #[arg(long, default_value_t = 10_000)]
    certs: usize,
    /// New certificates published while the gateway runs.
    #[arg(long, default_value_t = 10)]
    publishes: usize,
}

/// Gives up on a publish after this long.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);

fn host(i: usize) -> String {
    format!("tenant-{i:05}.scale.example")
}

fn main() {
    let args = Args::parse();
    let work = tempfile::tempdir().expect("temporary directory");
    let dir = work.path().join("certs");
    std::fs::create_dir(&dir).expect("certificate directory");
    let ca = TestCa::new();

    let started = Instant::now();
    for i in 0..args.certs {
        let name = host(i);
        ca.issue(&dir, &name, &[&name]);
    }
    println!(
        "issued {} certificates in {:.1} s",
        args.certs,
        started.elapsed().as_secs_f64()
    );

    let store = CertStore::default();
    let started = Instant::now();
    let report = store.scan(&dir);
    let load = started.elapsed();
    assert_eq!(report.loaded.len(), args.certs, "{:?}", report.errors);
    let started = Instant::now();
    let report = store.scan(&dir);
    let rescan = started.elapsed();
    assert!(report.loaded.is_empty() && report.removed.is_empty());
    println!(
        "CertStore: first scan {:.0} ms ({:.0} µs a pair), rescan with nothing changed {:.1} ms",
        load.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e6 / args.certs.max(1) as f64,
        rescan.as_secs_f64() * 1e3
    );

    let small = CertStore::default();
    let small_dir = work.path().join("small");
    std::fs::create_dir(&small_dir).expect("directory");
    for i in 0..10 {
        let name = host(i);
        ca.issue(&small_dir, &name, &[&name]);
    }
    small.scan(&small_dir);
    println!(
        "SNI lookup, median: {:.0} ns with 10 certificates, {:.0} ns with {}",
        lookup_ns(&small, 10),
        lookup_ns(&store, args.certs),
        args.certs
    );

    serve_and_publish(&args, work.path(), &dir, &ca);
}

/// Median nanoseconds of a lookup of a known name (the name varies, so no
/// one entry stays hot in the cache).
fn lookup_ns(store: &CertStore, certs: usize) -> f64 {
    let names: Vec<String> = (0..1024).map(|i| host(i * 7919 % certs)).collect();
    let mut samples = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        for name in &names {
            std::hint::black_box(store.lookup(Some(name)));
        }
        samples.push(started.elapsed().as_nanos() as f64 / names.len() as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Stops the gateway however the measurement ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_and_publish(args: &Args, work: &Path, dir: &Path, ca: &TestCa) {
    let binary: PathBuf = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("gateway")))
        .filter(|p| p.exists())
        .expect("the gateway binary next to examples/ (cargo build --release -p gateway --bins)");
    let (https, admin) = (free_port(), free_port());
    std::fs::write(
        work.join("snapshot.toml"),
        "version = 1\nregions = [{ name = \"eu-west\" }]\n\
         plans = [{ name = \"p\", rate_per_sec = 10, burst = 10, max_body_bytes = 1024 }]\n",
    )
    .expect("snapshot written");
    std::fs::write(
        work.join("gateway.toml"),
        format!(
            "[gateway]\nregion = \"eu-west\"\nhttps_listen = \"127.0.0.1:{https}\"\n\
             admin_listen = \"127.0.0.1:{admin}\"\nbase_domains = [\"app.example.test\"]\n\
             access_log = false\n[tls]\ncert_dir = \"certs\"\n\
             [source]\nkind = \"file\"\npath = \"snapshot.toml\"\n\
             [shutdown]\ngrace_period_secs = 0\ngraceful_shutdown_timeout_secs = 1\n\
             upgrade_sock = \"upgrade.sock\"\npid_file = \"gateway.pid\"\n"
        ),
    )
    .expect("config written");
    let started = Instant::now();
    let child = Command::new(&binary)
        .arg("--config")
        .arg(work.join("gateway.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway started");
    let gateway = Running(child);
    let addr: SocketAddr = format!("127.0.0.1:{https}").parse().expect("address");
    let first = host(0);
    while handshake(addr, ca, &first).is_none() {
        assert!(
            started.elapsed() < PUBLISH_DEADLINE,
            "the gateway never served {first}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "gateway serving {} certificates {:.2} s after start",
        args.certs,
        started.elapsed().as_secs_f64()
    );

    let mut latencies = Vec::new();
    for n in 0..args.publishes {
        let name = format!("new-{n}.scale.example");
        // Issue into a side directory, then rename into place: how a
        // careful publisher (and issue 6's ACME client) writes.
        let staging = work.join("staging");
        std::fs::create_dir_all(&staging).expect("staging directory");
        let der = ca.issue(&staging, &name, &[&name]);
        for ext in ["key", "crt"] {
            std::fs::rename(
                staging.join(format!("{name}.{ext}")),
                dir.join(format!("{name}.{ext}")),
            )
            .expect("published");
        }
        let published = Instant::now();
        loop {
            if handshake(addr, ca, &name).is_some_and(|served| served == der) {
                latencies.push(published.elapsed());
                break;
            }
            assert!(
                published.elapsed() < PUBLISH_DEADLINE,
                "{name} was never served"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Publishes a little apart, as they are in production.
        std::thread::sleep(Duration::from_millis(300));
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "new certificate served after publishing: median {:.0} ms, max {:.0} ms over {} publishes",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1]),
        latencies.len()
    );

    let pid = gateway.0.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(10));
    let idle = cpu_ticks(pid).saturating_sub(before);
    println!(
        "gateway resident memory {} MiB; idle CPU while watching: {:.2}% of a core",
        rss_kib(pid) / 1024,
        idle as f64 / 10.0 // 100 ticks a second over 10 s, as a percentage
    );
}

/// The leaf certificate the gateway serves for `sni`, if the handshake
/// succeeds and verifies against the CA.
fn handshake(addr: SocketAddr, ca: &TestCa, sni: &str) -> Option<CertificateDer<'static>> {
    let tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let name = ServerName::try_from(sni.to_owned()).ok()?;
    let conn = ClientConnection::new(ca.client(&[]), name).ok()?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).ok()?;
    }
    stream.conn.peer_certificates()?.first().cloned()
}

/// User + system CPU ticks of `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
