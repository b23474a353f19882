//! The JSON access log: one line per request, written by a dedicated thread
//! so a request never waits on the output.
//!
//! Each request serialises its line into one buffer and hands it over a
//! bounded queue; every 50 ms the writer thread drains the queue through a
//! buffer and flushes, so a busy gateway makes one write for many lines and
//! a line appears within 50 ms. A full queue (output slower than traffic) drops lines and counts them in
//! `switchyard_gateway_access_log_dropped_total` rather than slowing
//! requests down.

use std::io::{BufWriter, Write};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::Serialize;

use crate::metrics::Metrics;

/// Lines waiting for the writer at most.
const QUEUE: usize = 65_536;

/// One request's line. Borrowed fields: serialising it allocates only the
/// output buffer.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    /// Kept or generated request id.
    pub request_id: &'a str,
    /// The routed tenant, if any.
    pub tenant_id: Option<&'a str>,
    /// Its target.
    pub target: Option<&'a str>,
    /// `local`, `cross_region` or `none`.
    pub decision: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// The path only: query strings may carry tokens.
    pub path: &'a str,
    /// Status sent, 0 when none was.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: usize,
    /// Total time, milliseconds.
    pub duration_ms: f64,
    /// Time to the upstream's response header, milliseconds.
    pub upstream_ms: Option<f64>,
    /// The backend that served, `ip:port`.
    pub upstream: Option<&'a str>,
    /// The kind of error the gateway answered with, if any.
    pub error: Option<&'a str>,
}

/// The sending side, shared by all request handlers.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    metrics: Metrics,
}

impl AccessLog {
    /// Starts the writer thread on `out` (stdout in production).
    pub fn start(out: impl Write + Send + 'static, metrics: Metrics) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || write_lines(rx, out))
            .expect("spawning the access-log thread");
        Self { tx, metrics }
    }

    /// Queues `line`; drops it (and counts the drop) when the queue is full.
    pub fn log(&self, line: &Line<'_>) {
        let mut buf = Vec::with_capacity(320);
        if serde_json::to_writer(&mut buf, line).is_err() {
            return;
        }
        buf.push(b'\n');
        match self.tx.try_send(buf) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.access_log_dropped();
            }
        }
    }
}

/// How often the writer drains the queue. Senders never wake it: a
/// receiver parked on the channel would cost every request a futex wake.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

fn write_lines(rx: Receiver<Vec<u8>>, out: impl Write) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    loop {
        std::thread::sleep(DRAIN_EVERY);
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    if out.write_all(&line).is_err() {
                        return;
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if out.flush().is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_and_in_order_as_json() {
        let out = Shared::default();
        let log = AccessLog::start(out.clone(), Metrics::new());
        for i in 0..1000 {
            let id = format!("req-{i}");
            log.log(&Line {
                request_id: &id,
                tenant_id: Some("t-1"),
                target: None,
                decision: "local",
                method: "GET",
                path: "/a\"b",
                status: 200,
                bytes: 10,
                duration_ms: 1.5,
                upstream_ms: None,
                upstream: Some("127.0.0.1:1"),
                error: None,
            });
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() == 1000 {
                for (i, l) in lines.iter().enumerate() {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    assert_eq!(v["request_id"], format!("req-{i}"));
                    assert_eq!(v["path"], "/a\"b");
                }
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} lines",
                lines.len()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
