//! What the examples share: binaries beside them, free loopback ports,
//! child processes that die with the example, and `tenant-admin serve`
//! started on a catalog with an operator token. Each example uses a part.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Binary `name` from the target directory this example was built in.
pub(crate) fn binary(name: &str) -> PathBuf {
    let path = std::env::current_exe()
        .expect("own path")
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>/examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p {name}` first",
        path.display()
    );
    path
}

/// A loopback address with a port free right now.
pub(crate) fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Waits up to 30 s for `ready`.
pub(crate) fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when this is dropped, also while panicking.
#[derive(Debug)]
pub(crate) struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `tenant-admin serve` and its operator token.
#[derive(Debug)]
pub(crate) struct Admin {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    token: &'static str,
    _process: Killed,
}

impl Admin {
    /// Starts `tenant-admin serve --migrate` on `catalog_url` with `token`
    /// as its bootstrap operator token, its log to `stderr`; returns once
    /// it is ready.
    pub(crate) fn start(catalog_url: &str, token: &'static str, stderr: impl Into<Stdio>) -> Self {
        Self::start_with_env(catalog_url, token, stderr, &[])
    }

    /// As [`Admin::start`], with more environment variables.
    pub(crate) fn start_with_env(
        catalog_url: &str,
        token: &'static str,
        stderr: impl Into<Stdio>,
        env: &[(&str, String)],
    ) -> Self {
        let addr = free_addr();
        let process = Killed(
            Command::new(binary("tenant-admin"))
                .args(["serve", "--migrate", "--listen", &addr.to_string()])
                .env("DATABASE_URL", catalog_url)
                .env("ADMIN_BOOTSTRAP_TOKEN", token)
                .env("RUST_LOG", "warn")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stderr(stderr)
                .spawn()
                .expect("tenant-admin starts"),
        );
        let admin = Self {
            addr,
            token,
            _process: process,
        };
        wait_for(
            || admin.request("GET", "/readyz", None).0 == 200,
            "tenant-admin ready",
        );
        admin
    }

    /// One request as the operator: the status (0 when the connection
    /// failed or timed out) and the body.
    pub(crate) fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let auth = format!("Bearer {}", self.token);
        testkit::plain_http::request(self.addr, method, path, &[("authorization", &auth)], body)
    }

    /// A request that must succeed (2xx); its body.
    pub(crate) fn call(&self, method: &str, path: &str, body: &str) -> String {
        let (status, text) = self.request(method, path, Some(body));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        text
    }
}
