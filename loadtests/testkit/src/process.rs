//! A spawned server process that is always stopped and reaped.
//!
//! Every server the testkit starts runs in the foreground as a child of the test process,
//! with its output in a log file inside the server's throwaway directory. Stopping sends the
//! server's preferred shutdown signal, waits a bounded time, then falls back to `SIGKILL`;
//! the child is always reaped, so once a server handle is dropped its pid is gone from
//! `/proc`. If a handle is dropped without being stopped (a panic during startup), `Drop`
//! kills the process.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Result, TestkitError};

/// How many log lines an error message quotes.
const LOG_TAIL_LINES: usize = 30;

/// How often startup and shutdown are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long a killed process is given to be reaped before the testkit stops waiting.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A running server process.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    /// The child itself; waited for so it never lingers as a zombie.
    child: Child,
    /// How it exited, once reaped; `Some` means there is nothing left to stop.
    exit: Option<ExitStatus>,
    /// The file its stdout and stderr go to, quoted in startup errors.
    log: PathBuf,
    /// What to call it in errors, e.g. "PostgreSQL on 127.0.0.1:40123".
    label: String,
}

impl ServerProcess {
    /// Spawns `command` with its output truncated into `log` and no stdin.
    pub(crate) fn spawn(command: &mut Command, log: &Path, label: String) -> Result<Self> {
        let open_log = || {
            File::create(log).map_err(|source| {
                TestkitError::io(format!("creating the log file {}", log.display()), source)
            })
        };
        let stdout = open_log()?;
        let stderr = stdout
            .try_clone()
            .map_err(|source| TestkitError::io("duplicating the log file handle", source))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| {
                TestkitError::io(format!("spawning {}", command_line(command)), source)
            })?;
        Ok(Self {
            child,
            exit: None,
            log: log.to_owned(),
            label,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `ready` until it returns true, failing if the process exits or `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`TestkitError::ExitedDuringStartup`] or [`TestkitError::StartTimeout`], both quoting
    /// the end of the server's log.
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_reap() {
                return Err(TestkitError::ExitedDuringStartup {
                    server: self.label.clone(),
                    status,
                    log: self.log.clone(),
                    log_tail: log_tail(&self.log),
                });
            }
            if ready() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(TestkitError::StartTimeout {
                    server: self.label.clone(),
                    waited: timeout,
                    log: self.log.clone(),
                    log_tail: log_tail(&self.log),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `signal`, waits up to `grace` for the process to exit, then kills it.
    ///
    /// Never fails: a server that cannot be signalled has already exited, and one that
    /// ignores `SIGKILL` for [`KILL_WAIT`] is left behind rather than hanging the test.
    pub(crate) fn stop(&mut self, signal: Signal, grace: Duration) {
        if self.try_reap().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // ESRCH only means it died between the check and now.
            let _ = kill(Pid::from_raw(pid), signal);
        }
        if self.wait_reaped(grace) {
            return;
        }
        let _ = self.child.kill();
        self.wait_reaped(KILL_WAIT);
    }

    /// Whether the process has exited (and was reaped).
    pub(crate) fn has_exited(&mut self) -> bool {
        self.try_reap().is_some()
    }

    /// Reaps the process if it has exited, returning how.
    fn try_reap(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Polls for exit for up to `limit`; true once the process is reaped.
    fn wait_reaped(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.try_reap().is_some() {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop(Signal::SIGKILL, Duration::ZERO);
    }
}

/// The last [`LOG_TAIL_LINES`] lines of the file at `path`, or why it could not be read.
pub(crate) fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(err) => format!("(could not read {}: {err})", path.display()),
    }
}

/// Runs a helper program to completion, failing with its output if it exits non-zero.
///
/// Returns its stdout.
pub(crate) fn run_to_completion(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TestkitError::io(format!("running {}", command_line(command)), source))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(TestkitError::CommandFailed {
        command: command_line(command),
        status: output.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// The command as one shell-like line, for error messages.
pub(crate) fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
