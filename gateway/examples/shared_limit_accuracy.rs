//! How closely N gateways sharing one Redis hold a tenant to its plan.
//!
//! Starts a Redis and an echo upstream (from the test support), N gateway
//! processes with `[redis] url`, and drives each gateway at a fixed rate
//! (open loop, keep-alive connections) so that together they offer
//! `--offered` times the plan's rate, split evenly or with `--skew` of it
//! on the first gateway. Reports what each gateway admitted and how far
//! the total is from the plan.
//!
//! ```text
//! cargo build --release -p gateway
//! cargo run --release -p gateway --example shared_limit_accuracy -- --gateways 4
//! cargo run --release -p gateway --example shared_limit_accuracy -- --gateways 2 --skew 0.8
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{RedisServer, Upstream};

struct Args {
    gateways: usize,
    rate: u32,
    burst: u32,
    offered: f64,
    skew: Option<f64>,
    seconds: u64,
    binary: PathBuf,
}

fn parse() -> Args {
    let mut args = Args {
        gateways: 2,
        rate: 400,
        burst: 20,
        offered: 1.5,
        skew: None,
        seconds: 10,
        binary: PathBuf::from("target/release/gateway"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--gateways" => args.gateways = value().parse().expect("--gateways N"),
            "--rate" => args.rate = value().parse().expect("--rate REQ_PER_SEC"),
            "--burst" => args.burst = value().parse().expect("--burst N"),
            "--offered" => args.offered = value().parse().expect("--offered FACTOR"),
            "--skew" => args.skew = Some(value().parse().expect("--skew SHARE")),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--gateway-bin" => args.binary = PathBuf::from(value()),
            other => panic!(
                "unknown flag {other}; flags: --gateways --rate --burst --offered --skew --seconds --gateway-bin"
            ),
        }
    }
    assert!(args.gateways >= 1, "--gateways must be at least 1");
    args
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(args: &Args, redis: &str, upstream: SocketAddr) -> GatewayProcess {
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("routing.toml"),
        format!(
            "version = 1\nregions = [{{ name = \"eu-west\" }}]\n\
             plans = [{{ name = \"p\", rate_per_sec = {}, burst = {}, max_body_bytes = 1024 }}]\n\
             [[targets]]\nid = \"s\"\nkind = \"shard\"\nregion = \"eu-west\"\npools = {{ eu-west = [\"{upstream}\"] }}\n\
             [[tenants]]\nid = \"t-acme\"\nslug = \"acme\"\nplan = \"p\"\nregion = \"eu-west\"\ntarget = \"s\"\n",
            args.rate, args.burst
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            "[gateway]\nregion = \"eu-west\"\nhttp_listen = \"127.0.0.1:{http}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             base_domains = [\"app.example.test\"]\naccess_log = false\n\
             [source]\nkind = \"file\"\npath = \"routing.toml\"\n\
             [redis]\nurl = \"{redis}\"\n\
             [shutdown]\ngrace_period_secs = 0\ngraceful_shutdown_timeout_secs = 1\n\
             upgrade_sock = \"upgrade.sock\"\npid_file = \"gateway.pid\"\n"
        ),
    )
    .unwrap();
    let child = Command::new(&args.binary)
        .arg("--config")
        .arg(dir.path().join("gateway.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (build it first)", args.binary.display()));
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    GatewayProcess {
        child,
        addr,
        _dir: dir,
    }
}

/// One request on a keep-alive connection; the status.
fn request(conn: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    conn.get_mut()
        .write_all(b"GET /orders HTTP/1.1\r\nHost: acme.app.example.test\r\n\r\n")?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status = line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok(status)
}

/// Sends at `rate` a second to `addr` for `duration`, over `threads`
/// keep-alive connections; counts admitted, refused and other outcomes.
fn drive(addr: SocketAddr, rate: f64, threads: usize, duration: Duration) -> [usize; 3] {
    let per_thread = rate / threads as f64;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let gap = Duration::from_secs_f64(1.0 / per_thread);
                let mut counts = [0usize; 3];
                let mut conn: Option<BufReader<TcpStream>> = None;
                let start = Instant::now();
                let mut next = start;
                while next - start < duration {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    next += gap;
                    let c = match &mut conn {
                        Some(c) => c,
                        None => match TcpStream::connect(addr) {
                            Ok(s) => conn.insert(BufReader::new(s)),
                            Err(_) => {
                                counts[2] += 1;
                                continue;
                            }
                        },
                    };
                    match request(c) {
                        Ok(200) => counts[0] += 1,
                        Ok(429) => counts[1] += 1,
                        _ => {
                            counts[2] += 1;
                            conn = None;
                        }
                    }
                }
                counts
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold([0; 3], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]])
}

fn main() {
    let args = parse();
    let redis = RedisServer::start().expect("redis-server");
    let upstream = Upstream::echo("shard").expect("upstream");
    let gateways: Vec<GatewayProcess> = (0..args.gateways)
        .map(|_| start_gateway(&args, &redis.url(), upstream.addr()))
        .collect();
    // Every gateway has synced a few times.
    std::thread::sleep(Duration::from_millis(1500));

    let total = f64::from(args.rate) * args.offered;
    let n = args.gateways as f64;
    let shares: Vec<f64> = (0..args.gateways)
        .map(|i| match args.skew {
            Some(first) if args.gateways > 1 => {
                if i == 0 {
                    first
                } else {
                    (1.0 - first) / (n - 1.0)
                }
            }
            _ => 1.0 / n,
        })
        .collect();
    let duration = Duration::from_secs(args.seconds);
    println!(
        "{} gateway(s), plan {}/s burst {}, offered {:.0}/s for {} s, split {:?}",
        args.gateways,
        args.rate,
        args.burst,
        total,
        args.seconds,
        shares
            .iter()
            .map(|s| format!("{:.0}%", s * 100.0))
            .collect::<Vec<_>>()
    );
    let results: Vec<[usize; 3]> = std::thread::scope(|s| {
        let handles: Vec<_> = gateways
            .iter()
            .zip(&shares)
            .map(|(g, share)| {
                let rate = total * share;
                let threads = ((rate / 100.0).ceil() as usize).clamp(1, 16);
                s.spawn(move || drive(g.addr, rate, threads, duration))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let plan = f64::from(args.rate) * args.seconds as f64 + f64::from(args.burst);
    let (mut admitted, mut refused) = (0, 0);
    for (i, [ok, limited, other]) in results.iter().enumerate() {
        println!("  gateway {i}: admitted {ok}, refused {limited}, other {other}");
        admitted += ok;
        refused += limited;
    }
    if refused == 0 {
        println!("admitted all {admitted} requests: the offered load stayed within the plan");
        return;
    }
    let error = (admitted as f64 - plan) / plan * 100.0;
    println!(
        "admitted {admitted} of a plan allowing {plan:.0} ({:.0}/s for {} s + burst): {error:+.1}%",
        f64::from(args.rate),
        args.seconds
    );
}
