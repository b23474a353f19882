//! [`UpstreamError`]: why an upstream server could not start.
//!
//! Once it runs, nothing a client sends is an error of the server: bad requests get 4xx
//! answers (see [`super::behaviour`]), and broken connections are the client's business.

use std::io;
use std::net::SocketAddr;

use thiserror::Error;

/// Why an upstream server could not be configured or started.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// The name given with `--name` cannot be used.
    #[error("invalid upstream name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },

    /// Something the server needs from the operating system failed: the tokio runtime,
    /// the bound socket's address, or the signal handlers.
    #[error("cannot start the upstream: {what}: {source}")]
    Startup {
        /// What was being done, e.g. "registering the SIGTERM handler".
        what: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
}

impl UpstreamError {
    /// A [`UpstreamError::Startup`] for `what`.
    pub(crate) fn startup(what: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Startup { what, source }
    }
}
