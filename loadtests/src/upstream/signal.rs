//! SIGTERM and SIGINT (Ctrl-C) as the upstream's shutdown signal.

use std::future::poll_fn;
use std::task::Poll;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::error::UpstreamError;

/// The signals that stop the upstream, registered up front: from the moment
/// [`Termination::register`] returns, SIGTERM and SIGINT no longer kill the process but
/// start a graceful shutdown, so a script may signal as soon as it reads the
/// `listening on` line.
#[derive(Debug)]
pub(crate) struct Termination {
    /// SIGTERM, what service managers and `kill` send.
    terminate: Signal,
    /// SIGINT, what Ctrl-C sends.
    interrupt: Signal,
}

impl Termination {
    /// Installs the handlers; must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`UpstreamError::Startup`] when a handler cannot be installed.
    pub(crate) fn register() -> Result<Self, UpstreamError> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())
                .map_err(UpstreamError::startup("registering the SIGTERM handler"))?,
            interrupt: signal(SignalKind::interrupt())
                .map_err(UpstreamError::startup("registering the SIGINT handler"))?,
        })
    }

    /// Waits for either signal and names the one that came.
    pub(crate) async fn received(mut self) -> &'static str {
        poll_fn(|cx| {
            if self.terminate.poll_recv(cx).is_ready() {
                Poll::Ready("SIGTERM")
            } else if self.interrupt.poll_recv(cx).is_ready() {
                Poll::Ready("SIGINT")
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
