//! The one error type of the testkit.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while starting, driving or stopping a throwaway server.
///
/// Every message names what was being attempted, so a failing test's output says which
/// binary, port or directory was involved without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// A server binary is not installed where the testkit looks for it.
    #[error(
        "`{binary}` was not found (looked in {searched}); install the Debian package `{package}`"
    )]
    BinaryNotFound {
        /// The executable's file name, e.g. `initdb`.
        binary: &'static str,
        /// The Debian package that ships it, e.g. `postgresql`.
        package: &'static str,
        /// Where the testkit looked, for the reader who has it installed elsewhere.
        searched: String,
    },

    /// The tests run as root, the server refuses to, and its system user is missing.
    #[error(
        "running as root, but the system user `{user}` to run the server as does not exist \
         (install the Debian package `{package}`, which creates it)"
    )]
    ServiceUserMissing {
        /// The account looked up, e.g. `postgres`.
        user: &'static str,
        /// The Debian package whose installation creates the account.
        package: &'static str,
    },

    /// Looking up a system user failed outright (not merely "no such user").
    #[error("could not look up the system user `{user}`: {source}")]
    UserLookup {
        /// The account looked up.
        user: &'static str,
        /// The error from `getpwnam_r`.
        #[source]
        source: nix::errno::Errno,
    },

    /// An operating-system call failed; `action` says which and on what.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "creating the temporary directory for PostgreSQL".
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A helper program (`initdb`, `createdb`, `psql`, …) ran and reported failure.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line, for copy-pasting into a shell.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its combined stdout and stderr.
        output: String,
    },

    /// The server process exited while the testkit waited for it to become ready.
    #[error("{server} exited during startup ({status}); last lines of {}:\n{log_tail}", log.display())]
    ExitedDuringStartup {
        /// Which server, e.g. "PostgreSQL on 127.0.0.1:40123".
        server: String,
        /// How it exited.
        status: ExitStatus,
        /// The server's log file.
        log: PathBuf,
        /// The last lines of that log, where the reason usually is.
        log_tail: String,
    },

    /// The server kept running but did not answer within the startup timeout.
    #[error("{server} did not become ready within {waited:?}; last lines of {}:\n{log_tail}", log.display())]
    StartTimeout {
        /// Which server.
        server: String,
        /// How long the testkit waited.
        waited: Duration,
        /// The server's log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// Every free port the testkit picked was taken by someone else before the server bound it.
    #[error(
        "{server} could not bind a free port on 127.0.0.1 after {attempts} attempts; last log lines:\n{log_tail}"
    )]
    PortsExhausted {
        /// Which server.
        server: &'static str,
        /// How many ports were tried.
        attempts: u32,
        /// The last lines of the last attempt's log.
        log_tail: String,
    },

    /// A restart could not bind the server's old port because another process holds it now.
    #[error("{server} could not be restarted: port {port} is now taken by another process")]
    PortTaken {
        /// Which server.
        server: &'static str,
        /// The port it used to have.
        port: u16,
    },

    /// An upstream builder was given a status or header that HTTP does not allow.
    #[error("upstream `{name}` cannot start: {reason}")]
    InvalidUpstream {
        /// The upstream's name.
        name: String,
        /// What was invalid.
        reason: String,
    },
}

impl TestkitError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}

/// The testkit's `Result`.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;
