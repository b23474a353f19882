//! The real `gateway` binary in a temp dir, and a small HTTP/1.1 client.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `addr` (at most 20 s).
pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running gateway process with its config and snapshot in a temp dir.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Lines the gateway wrote to stdout (the access log), drained by a
    /// thread so the pipe never fills.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Lines the gateway wrote to stderr (its operational log), also
    /// echoed to the test's stderr.
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub snapshot: PathBuf,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway on `snapshot`; `extra` is added to `[gateway]`.
    pub fn start(snapshot: &str, extra: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), snapshot, extra, "")
    }

    /// Starts a gateway whose files live in `dir`; `extra` is added to
    /// `[gateway]` and `sections` after the config's own sections.
    pub fn start_in(dir: tempfile::TempDir, snapshot: &str, extra: &str, sections: &str) -> Self {
        std::fs::write(dir.path().join("routing.toml"), snapshot).unwrap();
        let source = "kind = \"file\"\npath = \"routing.toml\"";
        Self::start_with_source(dir, source, extra, sections)
    }

    /// Starts a gateway whose files live in `dir`, with `source` as the
    /// body of its `[source]` section (e.g. `kind = "admin"` and its keys,
    /// paths relative to `dir`); `extra` and `sections` as for
    /// [`Gateway::start_in`]. `snapshot` is `dir/routing.toml` either way.
    pub fn start_with_source(
        dir: tempfile::TempDir,
        source: &str,
        extra: &str,
        sections: &str,
    ) -> Self {
        let http = free_port();
        let admin = free_port();
        let snapshot_path = dir.path().join("routing.toml");
        // Tests may bring their own [upstream]; otherwise short timeouts.
        let upstream = if sections.contains("[upstream]") {
            ""
        } else {
            "[upstream]\nconnect_timeout_ms = 500\nread_timeout_ms = 1000\n"
        };
        let config = format!(
            r#"
[gateway]
region = "eu-west"
http_listen = "127.0.0.1:{http}"
admin_listen = "127.0.0.1:{admin}"
base_domains = ["app.example.test"]
{extra}

[source]
{source}

{upstream}

[shutdown]
grace_period_secs = 2
graceful_shutdown_timeout_secs = 1
upgrade_sock = "upgrade.sock"
pid_file = "gateway.pid"

{sections}
"#
        );
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--config", config_path.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stdout.take().unwrap();
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("{line}");
                lines.lock().unwrap().push(line);
            }
        });
        let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
        // Both listeners: the admin one (metrics, /readyz) may come up a
        // moment after the proxy's.
        wait_listening(addr);
        wait_listening(admin);
        Gateway {
            child,
            addr,
            admin,
            stdout,
            stderr,
            snapshot: snapshot_path,
            config: config_path,
            dir,
        }
    }
}

impl Gateway {
    /// The access log line naming `request_id`, waiting up to 5 s for it.
    pub fn access_log_line(&self, request_id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(request_id))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no access log line for {request_id}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stderr lines so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits up to `limit` for a stderr line containing `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log_lines(needle).pop() {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of the metric line starting with `name` (labels included
    /// in `name` when given), if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = send(self.admin, "GET /metrics HTTP/1.1\r\nHost: localhost").body;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "TERM", "QUIT") to the gateway.
    pub fn signal(&self, signal: &str) {
        signal_pid(self.pid(), signal);
    }

    /// Waits up to `limit` for the gateway to exit; its status, or None.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and asserts the gateway exits with status 0 within
    /// 15 s.
    pub fn terminate(&mut self) {
        self.signal("TERM");
        let status = self
            .wait_exit(Duration::from_secs(15))
            .expect("the gateway did not exit after SIGTERM");
        assert!(status.success(), "{status:?}");
    }

    /// Starts a second gateway on the same config with `--upgrade`: it
    /// waits for this one's listening sockets.
    pub fn spawn_upgrade(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--upgrade", "--config", self.config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }
}

/// Sends `signal` to process `pid` with kill(1).
pub fn signal_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one request over a fresh connection; `head` is the request line
/// and headers without the final blank line.
pub fn send(addr: SocketAddr, head: &str) -> Response {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send_on(stream, head)
}

/// Sends one request on `stream` and reads the response to the end.
pub fn send_on(mut stream: impl Read + Write, head: &str) -> Response {
    write!(stream, "{head}\r\nConnection: close\r\n\r\n").unwrap();
    read_response(stream)
}

/// Reads a response from `stream` to the end (the request asked for
/// `Connection: close`).
pub fn read_response(mut stream: impl Read) -> Response {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Like [`get`], but a connection error is returned, not a panic: for
/// request loops that must count refused or reset connections.
pub fn try_get(addr: SocketAddr, host: &str) -> Result<u16, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    try_get_on(stream, host)
}

/// `GET /` for `host` on `stream` (plain or TLS), closing it; the status,
/// or what failed.
pub fn try_get_on(mut stream: impl Read + Write, host: &str) -> Result<u16, String> {
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    status_of(&raw)
}

/// The status code of a raw HTTP/1.1 response.
pub fn status_of(raw: &[u8]) -> Result<u16, String> {
    let text = String::from_utf8_lossy(raw);
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))
}

pub fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    send(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}"))
}

/// A snapshot with two shards and a dedicated cluster in eu-west, each
/// pool one of `ups`, and tenants on each.
pub fn snapshot(version: u64, shard_a: &str, shard_b: &str, dedicated: &str) -> String {
    format!(
        r#"
version = {version}
regions = [{{ name = "eu-west" }}]
plans = [{{ name = "p", rate_per_sec = 1000000, burst = 1000000, max_body_bytes = 1024 }}]

[[targets]]
id = "shard-a"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = [{shard_a}] }}

[[targets]]
id = "shard-b"
kind = "shard"
region = "eu-west"
pools = {{ eu-west = [{shard_b}] }}

[[targets]]
id = "dedicated-globex"
kind = "dedicated"
region = "eu-west"
pools = {{ eu-west = [{dedicated}] }}

[[tenants]]
id = "t-acme"
slug = "acme"
plan = "p"
region = "eu-west"
target = "shard-a"

[[tenants]]
id = "t-initech"
slug = "initech"
plan = "p"
region = "eu-west"
target = "shard-b"

[[tenants]]
id = "t-globex"
slug = "globex"
plan = "p"
region = "eu-west"
target = "dedicated-globex"
domains = ["erp.globex.example"]

[[tenants]]
id = "t-gone"
slug = "gone"
plan = "p"
region = "eu-west"
target = "shard-a"
status = "suspended"
"#
    )
}

pub fn q(u: &testkit::Upstream) -> String {
    format!("\"{}\"", u.addr())
}
