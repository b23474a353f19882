//! Throwaway PostgreSQL clusters.
//!
//! Each [`PgCluster`] is a fresh `initdb` in its own temporary directory, served by a
//! `postgres` process on a free port of 127.0.0.1 with trust authentication and durability
//! switched off (`fsync`, `synchronous_commit`, `full_page_writes`): a test's data is worth
//! nothing once the test ends, and a cluster starts in about a second.
//!
//! ```text
//! <tmp>/switchyard-pg-XXXX/
//!     data/           PGDATA, written by initdb
//!     socket/         unix_socket_directories, so no two clusters share /var/run/postgresql
//!     postgres.log    the server's stdout and stderr, quoted in startup errors
//! ```

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::account::Account;
use crate::binary::PgBinDir;
use crate::error::{Result, TestkitError};
use crate::port;
use crate::process::{self, ServerProcess};

/// The superuser `initdb` creates; every URL logs in as it.
pub const SUPERUSER: &str = "postgres";

/// The system account PostgreSQL runs as when the tests run as root.
const SYSTEM_USER: &str = "postgres";

/// The Debian package that creates [`SYSTEM_USER`] and ships the binaries.
const PACKAGE: &str = "postgresql";

/// How long a cluster may take to accept connections after `postgres` starts.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an immediate shutdown (`SIGQUIT`) may take before `SIGKILL`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a fast shutdown (`SIGINT`, see [`PgCluster::stop`]) may take before `SIGKILL`.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Server settings that trade durability and background work for speed.
const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("autovacuum", "off"),
    ("shared_buffers", "32MB"),
    ("max_connections", "100"),
    ("logging_collector", "off"),
    ("lc_messages", "C"),
];

/// A running, throwaway PostgreSQL cluster.
///
/// Dropping it shuts the server down (`SIGQUIT`, then `SIGKILL` after a bounded wait), reaps
/// the process and deletes its directory, also while a panicking test unwinds.
///
/// ```no_run
/// let pg = switchyard_testkit::PgCluster::start()?;
/// let url = pg.create_database("catalog")?;
/// assert_eq!(url, format!("postgres://postgres@127.0.0.1:{}/catalog", pg.port()));
/// # Ok::<(), switchyard_testkit::TestkitError>(())
/// ```
#[derive(Debug)]
pub struct PgCluster {
    /// The postmaster; stopped in `Drop` before `dir` is removed. After
    /// [`PgCluster::stop`] it is a reaped process until [`PgCluster::start_again`].
    process: ServerProcess,
    /// Who the postmaster runs as, kept to start it again.
    account: Account,
    /// The TCP port on 127.0.0.1 that clients connect to.
    port: u16,
    /// Where `createdb` and `psql` come from, so client and server versions match.
    bin: PgBinDir,
    /// Where PGDATA, the socket and the log are, inside `dir`.
    layout: Layout,
    /// Everything the cluster wrote; deleted when this field drops, after the server stopped.
    dir: TempDir,
}

impl PgCluster {
    /// Initialises and starts a cluster, returning once it accepts connections.
    ///
    /// # Errors
    ///
    /// [`TestkitError::BinaryNotFound`] when PostgreSQL is not installed,
    /// [`TestkitError::ServiceUserMissing`] when running as root without a `postgres` user,
    /// [`TestkitError::CommandFailed`] when `initdb` fails, and the startup errors of
    /// [`TestkitError`] (quoting the server log) when the server does not come up.
    pub fn start() -> Result<Self> {
        let bin = PgBinDir::find()?;
        let account = Account::for_server(SYSTEM_USER, PACKAGE)?;
        let (dir, layout) = create_cluster(&bin, account)?;
        let (port, process) = port::start_on_free_port("PostgreSQL", |port| {
            spawn_postmaster(&bin, account, dir.path(), &layout, port)
        })?;
        Ok(Self {
            process,
            account,
            port,
            bin,
            layout,
            dir,
        })
    }

    /// Starts `count` clusters in parallel, e.g. one per shard.
    ///
    /// # Errors
    ///
    /// The first error of any start, as for [`PgCluster::start`]; the clusters that did
    /// start are shut down again.
    pub fn start_many(count: usize) -> Result<Vec<Self>> {
        thread::scope(|scope| {
            let starts: Vec<_> = (0..count).map(|_| scope.spawn(Self::start)).collect();
            starts
                .into_iter()
                .map(|start| {
                    start
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        port::loopback(self.port)
    }

    /// The URL of the `postgres` maintenance database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` (which must not need percent-encoding), logging in as
    /// [`SUPERUSER`] without a password.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    ///
    /// # Errors
    ///
    /// [`TestkitError::CommandFailed`] with `createdb`'s message, e.g. when it already exists.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let mut command = Command::new(self.bin.tool("createdb")?);
        self.connect_args(&mut command).arg("--").arg(name);
        process::run_to_completion(&mut command)?;
        Ok(self.database_url(name))
    }

    /// Runs `sql` in database `db` with `psql` and returns its unaligned, tuples-only output,
    /// one row per line with `|` between columns. Handy for seeding and for checks from
    /// synchronous tests.
    ///
    /// # Errors
    ///
    /// [`TestkitError::CommandFailed`] with `psql`'s message when any statement fails.
    pub fn execute(&self, db: &str, sql: &str) -> Result<String> {
        let mut command = Command::new(self.bin.tool("psql")?);
        self.connect_args(&mut command)
            .args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"])
            .args(["--set", "ON_ERROR_STOP=1"])
            .arg("--dbname")
            .arg(db)
            .arg("--command")
            .arg(sql);
        process::run_to_completion(&mut command)
    }

    /// The postmaster's process id, to check it is gone after drop; after
    /// [`PgCluster::stop`], the id it had.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Shuts the server down (fast shutdown: sessions are ended, data is kept), for tests of
    /// what happens while a database is unreachable. Connections are refused until
    /// [`PgCluster::start_again`]. Does nothing if it is stopped.
    pub fn stop(&mut self) {
        self.process.stop(Signal::SIGINT, STOP_GRACE);
    }

    /// Starts a stopped server again on the same port with the same data, returning once it
    /// accepts connections. Does nothing if it runs.
    ///
    /// # Errors
    ///
    /// [`TestkitError::PortTaken`] when another process took the port meanwhile, and the
    /// startup errors of [`PgCluster::start`].
    pub fn start_again(&mut self) -> Result<()> {
        if !self.process.has_exited() {
            return Ok(());
        }
        self.process = port::restart_on_port("PostgreSQL", self.port, |port| {
            spawn_postmaster(&self.bin, self.account, self.dir.path(), &self.layout, port)
        })?;
        Ok(())
    }

    /// PGDATA; it and its parent directory are deleted on drop.
    pub fn data_dir(&self) -> &Path {
        &self.layout.data_dir
    }

    /// The server's log file, to read when a test fails in a puzzling way.
    pub fn log_path(&self) -> &Path {
        &self.layout.log
    }

    /// The throwaway directory holding PGDATA, the socket directory and the log.
    pub fn root_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds the host, port and user flags that every client tool takes.
    fn connect_args<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--username", SUPERUSER, "--no-password"])
            .env("LC_ALL", "C")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate shutdown: nothing in a throwaway cluster is worth a checkpoint.
        self.process.stop(Signal::SIGQUIT, SHUTDOWN_GRACE);
    }
}

/// Where a cluster keeps its files inside its throwaway directory.
#[derive(Debug, Clone)]
struct Layout {
    /// PGDATA, written by `initdb`.
    data_dir: PathBuf,
    /// `unix_socket_directories`: private, so clusters never meet in `/var/run/postgresql`.
    socket_dir: PathBuf,
    /// The server's stdout and stderr.
    log: PathBuf,
}

impl Layout {
    /// The layout inside `root`.
    fn under(root: &Path) -> Self {
        Self {
            data_dir: root.join("data"),
            socket_dir: root.join("socket"),
            log: root.join("postgres.log"),
        }
    }
}

/// Creates the throwaway directory, hands it to `account` and runs `initdb` in it.
fn create_cluster(bin: &PgBinDir, account: Account) -> Result<(TempDir, Layout)> {
    let dir = tempfile::Builder::new()
        .prefix("switchyard-pg-")
        .tempdir()
        .map_err(|source| {
            TestkitError::io("creating the temporary directory for PostgreSQL", source)
        })?;
    let layout = Layout::under(dir.path());
    fs::create_dir(&layout.socket_dir).map_err(|source| {
        TestkitError::io(format!("creating {}", layout.socket_dir.display()), source)
    })?;
    account.give(dir.path())?;
    account.give(&layout.socket_dir)?;
    init_data_dir(bin, account, dir.path(), &layout.data_dir)?;
    Ok((dir, layout))
}

/// Starts `postgres` on `port` and waits until it accepts connections.
fn spawn_postmaster(
    bin: &PgBinDir,
    account: Account,
    root: &Path,
    layout: &Layout,
    port: u16,
) -> Result<ServerProcess> {
    let mut command = Command::new(bin.tool("postgres")?);
    command
        .arg("-D")
        .arg(&layout.data_dir)
        .args(["-p", &port.to_string()])
        .arg("-c")
        .arg(format!(
            "unix_socket_directories={}",
            layout.socket_dir.display()
        ))
        .current_dir(root)
        .env("LC_ALL", "C");
    for (name, value) in SETTINGS {
        command.arg("-c").arg(format!("{name}={value}"));
    }
    account.apply(&mut command);
    let label = format!("PostgreSQL on 127.0.0.1:{port}");
    let mut process = ServerProcess::spawn(&mut command, &layout.log, label)?;
    let pid = process.pid();
    process.wait_ready(STARTUP_TIMEOUT, || {
        reports_ready(&layout.data_dir, pid) && port::accepts_connections(port)
    })?;
    Ok(process)
}

/// Runs `initdb` for a trust-authenticated, UTF-8, C-locale cluster in `data_dir`.
fn init_data_dir(bin: &PgBinDir, account: Account, cwd: &Path, data_dir: &Path) -> Result<()> {
    let mut command = Command::new(bin.tool("initdb")?);
    command
        .arg("--pgdata")
        .arg(data_dir)
        .args(["--username", SUPERUSER, "--auth", "trust"])
        .args(["--encoding", "UTF8", "--locale", "C"])
        .arg("--no-sync")
        .current_dir(cwd)
        .env("LC_ALL", "C");
    account.apply(&mut command);
    process::run_to_completion(&mut command).map(drop)
}

/// Whether `postmaster.pid` in `data_dir` belongs to `pid` and says the server is ready.
///
/// This is what `pg_ctl start --wait` checks: the eighth line of the file turns to `ready`
/// once startup finished and the server accepts connections.
fn reports_ready(data_dir: &Path, pid: u32) -> bool {
    let Ok(contents) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return false;
    };
    let lines: Vec<&str> = contents.lines().collect();
    lines
        .first()
        .is_some_and(|line| line.trim() == pid.to_string())
        && lines.get(7).is_some_and(|line| line.trim() == "ready")
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};

    use super::*;

    #[test]
    fn taken_port_is_recognised_as_a_lost_race() {
        let bin = PgBinDir::find().unwrap();
        let account = Account::for_server(SYSTEM_USER, PACKAGE).unwrap();
        let (dir, layout) = create_cluster(&bin, account).unwrap();
        let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = squatter.local_addr().unwrap().port();

        let err = spawn_postmaster(&bin, account, dir.path(), &layout, port).unwrap_err();
        let TestkitError::ExitedDuringStartup { log_tail, .. } = &err else {
            panic!("expected the server to exit, got {err:?}");
        };
        assert!(port::lost_port_race(log_tail), "{err}");
    }
}
