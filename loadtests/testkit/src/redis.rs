//! Throwaway Redis servers.
//!
//! A [`RedisServer`] is `redis-server` on a free port of 127.0.0.1 with persistence off
//! (`--save "" --appendonly no`) and its working directory in a temporary directory. It can
//! be stopped and restarted on the same port mid-test, for tests of what the gateway does
//! while Redis is down.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::binary;
use crate::error::{Result, TestkitError};
use crate::port;
use crate::process::ServerProcess;

/// How long Redis may take to answer `PING` after it starts.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a `SIGTERM` shutdown may take before `SIGKILL`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running, throwaway Redis server.
///
/// Dropping it stops the server (`SIGTERM`, then `SIGKILL` after a bounded wait), reaps the
/// process and deletes its directory, also while a panicking test unwinds.
///
/// ```no_run
/// let mut redis = switchyard_testkit::RedisServer::start()?;
/// let url = redis.url(); // redis://127.0.0.1:PORT
/// redis.stop();          // now connections are refused
/// redis.restart()?;      // same port, empty data set
/// # Ok::<(), switchyard_testkit::TestkitError>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    /// The server while it runs; `None` between [`RedisServer::stop`] and a restart.
    process: Option<ServerProcess>,
    /// The port on 127.0.0.1, kept across restarts so clients reconnect to the same URL.
    port: u16,
    /// The `redis-server` executable, kept for restarts.
    binary: PathBuf,
    /// The server's log, inside `dir`.
    log: PathBuf,
    /// The server's working directory; deleted when this field drops, after the server stopped.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server and returns once it answers `PING`.
    ///
    /// # Errors
    ///
    /// [`TestkitError::BinaryNotFound`] when `redis-server` is not installed, and the startup
    /// errors of [`TestkitError`] (quoting the server log) when it does not come up.
    pub fn start() -> Result<Self> {
        let binary = binary::redis_server()?;
        let dir = tempfile::Builder::new()
            .prefix("switchyard-redis-")
            .tempdir()
            .map_err(|source| {
                TestkitError::io("creating the temporary directory for Redis", source)
            })?;
        let log = dir.path().join("redis.log");
        let (port, process) =
            port::start_on_free_port("Redis", |port| spawn(&binary, dir.path(), &log, port))?;
        Ok(Self {
            process: Some(process),
            port,
            binary,
            log,
            dir,
        })
    }

    /// Stops the server, as an outage would; the port refuses connections afterwards.
    /// Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::SIGTERM, SHUTDOWN_GRACE);
        }
    }

    /// Kills the server with `SIGKILL`, as a crash would. Does nothing if it is stopped.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::SIGKILL, Duration::ZERO);
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs). The data
    /// set starts empty: nothing is persisted.
    ///
    /// # Errors
    ///
    /// [`TestkitError::PortTaken`] when another process took the port meanwhile, and the
    /// startup errors of [`RedisServer::start`].
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let process = port::restart_on_port("Redis", self.port, |port| {
            spawn(&self.binary, self.dir.path(), &self.log, port)
        })?;
        self.process = Some(process);
        Ok(())
    }

    /// Whether the server process is running (it has not been stopped or killed).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// The TCP port on 127.0.0.1; unchanged by restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        port::loopback(self.port)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process id, or `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// The server's working directory; deleted on drop.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `redis-server` on `port` and waits until it answers `PING`.
fn spawn(binary: &Path, dir: &Path, log: &Path, port: u16) -> Result<ServerProcess> {
    let mut command = Command::new(binary);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--daemonize", "no", "--logfile", ""])
        .current_dir(dir);
    let mut server = ServerProcess::spawn(&mut command, log, format!("Redis on 127.0.0.1:{port}"))?;
    server.wait_ready(STARTUP_TIMEOUT, || answers_ping(port))?;
    Ok(server)
}

/// Whether a Redis server on `127.0.0.1:port` answers an inline `PING` with `+PONG`.
fn answers_ping(port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let timeout = Duration::from_millis(250);
        let mut stream = TcpStream::connect_timeout(&port::loopback(port), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0_u8; 16];
        let read = stream.read(&mut reply)?;
        Ok(reply[..read].starts_with(b"+PONG"))
    };
    probe().unwrap_or(false)
}
