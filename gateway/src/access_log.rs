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
use std::time::Duration;

use crate::metrics::Metrics;

/// Lines waiting for the writer at most.
const QUEUE: usize = 65_536;

/// One request's line. Borrowed fields: writing it allocates only the
/// output buffer.
#[derive(Debug)]
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
    /// Total time, logged as `duration_ms` with microsecond precision.
    pub duration: Duration,
    /// Time to the upstream's response header, logged as `upstream_ms`.
    pub upstream: Option<Duration>,
    /// The backend that served, `ip:port`, logged as `upstream`.
    pub backend: Option<&'a str>,
    /// The kind of error the gateway answered with, if any.
    pub error: Option<&'a str>,
    /// The `x-cache` value, for tenants whose plan caches.
    pub cache: Option<&'a str>,
}

impl Line<'_> {
    /// The line as one JSON object and a newline. Written by hand rather
    /// than through serde: this runs on every request, and the fields are
    /// fixed.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"request_id\":");
        json_str(out, self.request_id);
        out.extend_from_slice(b",\"tenant_id\":");
        json_opt_str(out, self.tenant_id);
        out.extend_from_slice(b",\"target\":");
        json_opt_str(out, self.target);
        out.extend_from_slice(b",\"decision\":");
        json_str(out, self.decision);
        out.extend_from_slice(b",\"method\":");
        json_str(out, self.method);
        out.extend_from_slice(b",\"path\":");
        json_str(out, self.path);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.extend_from_slice(b",\"bytes\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.bytes).as_bytes());
        out.extend_from_slice(b",\"duration_ms\":");
        json_millis(out, self.duration);
        out.extend_from_slice(b",\"upstream_ms\":");
        match self.upstream {
            Some(upstream) => json_millis(out, upstream),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"upstream\":");
        json_opt_str(out, self.backend);
        out.extend_from_slice(b",\"error\":");
        json_opt_str(out, self.error);
        out.extend_from_slice(b",\"cache\":");
        json_opt_str(out, self.cache);
        out.extend_from_slice(b"}\n");
    }
}

/// `text` as a JSON string: quotes, backslashes and control characters
/// escaped, everything else (UTF-8 included) as is.
fn json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    // Most values need no escape: check without branching (the compiler
    // vectorises this), then copy them whole.
    let needs_escape = bytes.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut clean = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        clean = i + 1;
    }
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

fn json_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => json_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// `duration` in milliseconds with three decimals (microseconds).
fn json_millis(out: &mut Vec<u8>, duration: Duration) {
    // u64 microseconds cover 584,000 years; u128 formatting is slower.
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let frac = (micros % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
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
        line.write_json(&mut buf);
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

    fn line<'a>(path: &'a str, tenant: Option<&'a str>) -> Line<'a> {
        Line {
            request_id: "req-1",
            tenant_id: tenant,
            target: Some("shard-1"),
            decision: "local",
            method: "GET",
            path,
            status: 404,
            bytes: 1234,
            duration: Duration::from_micros(12_345_678),
            upstream: Some(Duration::from_micros(7)),
            backend: None,
            error: Some("not_found"),
            cache: None,
        }
    }

    fn parse(line: &Line<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        line.write_json(&mut out);
        assert_eq!(out.pop(), Some(b'\n'));
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn every_field_is_written_with_its_json_type() {
        let v = parse(&line("/orders", None));
        assert_eq!(
            v,
            serde_json::json!({
                "request_id": "req-1", "tenant_id": null, "target": "shard-1",
                "decision": "local", "method": "GET", "path": "/orders", "status": 404,
                "bytes": 1234, "duration_ms": 12345.678, "upstream_ms": 0.007,
                "upstream": null, "error": "not_found", "cache": null,
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_survives_as_a_json_string(path in "\\PC*|[\\x00-\\x7f]*", tenant in ".*") {
            let v = parse(&line(&path, Some(&tenant)));
            proptest::prop_assert_eq!(v["path"].as_str(), Some(path.as_str()));
            proptest::prop_assert_eq!(v["tenant_id"].as_str(), Some(tenant.as_str()));
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
                duration: Duration::from_micros(1500),
                upstream: None,
                backend: Some("127.0.0.1:1"),
                error: None,
                cache: Some("HIT"),
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
