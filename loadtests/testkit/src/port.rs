//! Free TCP ports on the loopback interface.
//!
//! External servers (PostgreSQL, Redis) need a port number on their command line, so the
//! testkit asks the kernel for one by binding `127.0.0.1:0` and letting go of it. Another
//! process can take that port before the server binds it; the servers' start functions
//! detect "Address already in use" and retry on a fresh port.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Result, TestkitError};

/// How many fresh ports a server start tries before giving up.
const PORT_ATTEMPTS: u32 = 5;

/// How long a restart keeps trying to get its server's old port back.
const RESTART_PORT_WAIT: Duration = Duration::from_secs(1);

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| TestkitError::io("picking a free port on 127.0.0.1", source))
}

/// `127.0.0.1:port`.
pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Whether something accepts TCP connections on `127.0.0.1:port` right now.
pub(crate) fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(&loopback(port), Duration::from_millis(250)).is_ok()
}

/// Whether a server's log says it lost the race for its port.
pub(crate) fn lost_port_race(log_tail: &str) -> bool {
    log_tail.contains("Address already in use")
}

/// Starts a server on a free port with `spawn`, trying a fresh port each
/// time the server reports it lost the race for one.
///
/// # Errors
///
/// The first error that is not a lost port race, or
/// [`TestkitError::PortsExhausted`] after [`PORT_ATTEMPTS`] lost races.
pub(crate) fn start_on_free_port<T>(
    server: &'static str,
    mut spawn: impl FnMut(u16) -> Result<T>,
) -> Result<(u16, T)> {
    let mut last_tail = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        match spawn(port) {
            Ok(started) => return Ok((port, started)),
            Err(TestkitError::ExitedDuringStartup { log_tail, .. })
                if lost_port_race(&log_tail) =>
            {
                last_tail = log_tail;
            }
            Err(err) => return Err(err),
        }
    }
    Err(TestkitError::PortsExhausted {
        server,
        attempts: PORT_ATTEMPTS,
        log_tail: last_tail,
    })
}

/// Starts a server again on its old `port` with `spawn`, retrying for a moment while the
/// port is still held (by the old process's lingering socket, or by a newcomer).
///
/// # Errors
///
/// The first error that is not a lost port race, or [`TestkitError::PortTaken`] once
/// [`RESTART_PORT_WAIT`] has passed.
pub(crate) fn restart_on_port<T>(
    server: &'static str,
    port: u16,
    mut spawn: impl FnMut(u16) -> Result<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        match spawn(port) {
            Err(TestkitError::ExitedDuringStartup { log_tail, .. })
                if lost_port_race(&log_tail) =>
            {
                if start.elapsed() > RESTART_PORT_WAIT {
                    return Err(TestkitError::PortTaken { server, port });
                }
                thread::sleep(Duration::from_millis(50));
            }
            started => return started,
        }
    }
}
