//! What the end-to-end tests of `loadtest` share: the built binaries, the demo
//! upstream as a child process, scenario files and reports.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use loadtest::report::Report;
use tempfile::TempDir;

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_loadtest");

/// `loadtest upstream` on a free loopback port, killed when dropped.
pub struct Upstream {
    child: Child,
    pub addr: SocketAddr,
}

impl Upstream {
    pub fn start() -> Self {
        let mut child = Command::new(BINARY)
            .args([
                "upstream",
                "--listen",
                "127.0.0.1:0",
                "--name",
                "harness-test",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("loadtest upstream starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scenario file in a fresh directory.
pub fn scenario(text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Runs the binary with `args` and returns what it did.
pub fn loadtest(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .output()
        .expect("loadtest runs")
}

pub fn read_report(dir: &Path) -> Report {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json is a report")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway binary, built beside this crate's by `cargo test --workspace`.
pub fn gateway_binary() -> PathBuf {
    testkit::workspace_binary(BINARY, "gateway")
}

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `addr` accepts TCP connections, for at most 30 s.
pub fn wait_for(addr: SocketAddr, child: &mut Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
            .is_ok()
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the process serving {addr} exited with {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never accepted a connection"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `loadtest run` of the scenario `text` against `target` with `extra` flags, its
/// report written into a fresh directory: the process's output and that directory.
pub fn run(text: &str, target: &str, extra: &[&str]) -> (Output, TempDir) {
    let (dir, file) = scenario(text);
    let report_dir = dir.path().join("report");
    let mut args = vec![
        "run",
        "--scenario",
        file.to_str().unwrap(),
        "--target",
        target,
        "--report",
        report_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (loadtest(&args), dir)
}

/// The report a [`run`] wrote.
pub fn report_of(dir: &TempDir) -> Report {
    read_report(&dir.path().join("report"))
}
