//! A real `gateway` process (the binary Cargo built beside `tenant-admin`)
//! following a tenant-admin's routing feed, with its HTTP, admin and
//! optionally HTTPS listeners on loopback. Killed when dropped; its log is
//! printed when a test panics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The gateway binary, built by `cargo test --workspace` (or `cargo build -p gateway`).
pub fn gateway_binary() -> PathBuf {
    testkit::workspace_binary(env!("CARGO_BIN_EXE_tenant-admin"), "gateway")
}

/// A GET with `Host: host`: status (0 when the connection failed) and body.
pub fn get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    testkit::plain_http::request(addr, "GET", path, &[("host", host)], None)
}

/// A gateway process following the feed.
pub struct Gateway {
    child: Option<Child>,
    config: PathBuf,
    /// The HTTP listener.
    pub http: SocketAddr,
    /// The HTTPS listener, when asked for.
    pub https: Option<SocketAddr>,
    /// The admin listener (`/metrics`, `/readyz`, `/debug/route`).
    pub admin: SocketAddr,
    log: PathBuf,
}

impl Gateway {
    /// Starts gateway `name` in `dir`, following `feed` with `token`, on
    /// free ports.
    pub fn start(dir: &Path, name: &str, feed: &str, token: &str) -> Self {
        Self::start_with(dir, name, feed, token, free_port(), false)
    }

    /// Starts gateway `name` with its HTTP listener on `http_port` (known
    /// ahead, e.g. by an ACME CA) and, when `https`, an HTTPS listener whose
    /// certificates all come from the feed.
    pub fn start_with(
        dir: &Path,
        name: &str,
        feed: &str,
        token: &str,
        http_port: u16,
        https: bool,
    ) -> Self {
        let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let https: Option<SocketAddr> =
            https.then(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
        std::fs::write(dir.join(format!("{name}.token")), format!("{token}\n")).unwrap();
        let config = dir.join(format!("{name}.toml"));
        let https_line = https.map_or(String::new(), |a| format!("https_listen = \"{a}\"\n"));
        std::fs::write(
            &config,
            format!(
                "[gateway]\nregion = \"eu-west\"\nhttp_listen = \"{http}\"\n{https_line}admin_listen = \"{admin}\"\n\
                 base_domains = [\"app.example.test\"]\naccess_log = false\n\n\
                 [source]\nkind = \"admin\"\nurl = \"{feed}\"\ntoken_file = \"{name}.token\"\n\
                 cache_path = \"{name}.snapshot.json\"\n\n\
                 [shutdown]\ngrace_period_secs = 0\ngraceful_shutdown_timeout_secs = 1\n\
                 upgrade_sock = \"{name}.sock\"\npid_file = \"{name}.pid\"\n"
            ),
        )
        .unwrap();
        let mut gateway = Self {
            child: None,
            config,
            http,
            https,
            admin,
            log: dir.join(format!("{name}.log")),
        };
        gateway.spawn();
        gateway
    }

    /// Starts the process (again) and waits until it is ready.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(gateway_binary())
                .arg("--config")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("the gateway starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while get(self.admin, "/readyz", "gateway.admin").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "the gateway did not become ready:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The gateway's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The tenant id the upstream saw for a request to `host`, or the status.
    pub fn tenant_of(&self, host: &str) -> Result<String, u16> {
        let (status, body) = get(self.http, "/", host);
        if status != 200 {
            return Err(status);
        }
        let echo: serde_json::Value = serde_json::from_str(&body).map_err(|_| 0u16)?;
        echo["headers"]["x-tenant-id"]
            .as_str()
            .map(str::to_owned)
            .ok_or(0)
    }

    /// Waits up to `limit` for `host` to be routed to `tenant`; how long it took.
    pub fn routed_within(&self, host: &str, tenant: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.tenant_of(host).as_deref() == Ok(tenant) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{host} was not routed to {tenant} within {limit:?}: last answer {:?}",
                self.tenant_of(host)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- gateway log ----\n{}\n---- end ----", self.logs());
        }
        self.kill();
    }
}
