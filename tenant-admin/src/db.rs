//! Opening PostgreSQL pools: a bounded connect that says why it failed.
//!
//! sqlx's pool retries a refused connection until its acquire timeout and
//! then reports only "pool timed out". An operator looking at a failed
//! target, or at an unreachable catalog, needs the server's or the OS's own
//! error ("Connection refused", "password authentication failed"), so one
//! connection is made directly first.

use std::io;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Opens a pool of up to `max_connections` to `options`, first connecting
/// once within `timeout`.
///
/// # Errors
///
/// The first connection's own error, or an I/O `TimedOut` error when the
/// server did not answer within `timeout`. sqlx's messages name host and
/// database, never the password.
pub(crate) async fn connect(
    options: PgConnectOptions,
    max_connections: u32,
    timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let first = tokio::time::timeout(timeout, options.connect())
        .await
        .map_err(|_| {
            sqlx::Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} s", timeout.as_secs()),
            ))
        })??;
    // Closing politely is a courtesy; the pool below opens its own.
    let _ = first.close().await;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
}
