//! What a run measured: the document written as `report.json` and rendered on the
//! terminal and in the HTML report.
//!
//! Latencies are in milliseconds (fractional), measured from each request's
//! *intended* send time, so a stalled target shows in them rather than in a lower
//! request rate (no coordinated omission).

use serde::{Deserialize, Serialize};

/// One run of one scenario against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The scenario's `name`.
    pub scenario: String,
    /// The scenario's `description`.
    pub description: String,
    /// The target: its name in a compare run (else "target") and URL.
    pub target: TargetInfo,
    /// When the run started, Unix milliseconds.
    pub started_unix_ms: u64,
    /// Seconds of warm-up (sent, not counted) before the measured window.
    pub warmup_secs: f64,
    /// Seconds of the measured window.
    pub duration_secs: f64,
    /// Totals over the measured window.
    pub totals: Totals,
    /// Latency of the requests of the measured window that got a response (any
    /// status) or timed out (at the time they gave up); fast failures such as a
    /// refused connection are errors, not latencies.
    pub latency: Latency,
    /// How late the harness itself started requests after their due time (its
    /// sleep and scheduling): part of every latency above, shown on its own so an
    /// overloaded load generator is seen, not mistaken for a slow target.
    #[serde(default)]
    pub schedule_lag: Latency,
    /// Per tenant size class (`hot`, `large`, `medium`, `small`), largest first;
    /// classes with no requests are left out.
    pub classes: Vec<ClassStats>,
    /// Per response status, ascending.
    pub statuses: Vec<StatusStats>,
    /// Errors by kind, most frequent first.
    pub errors: Vec<ErrorStats>,
    /// One entry per second of the whole run, warm-up included.
    pub timeline: Vec<Second>,
    /// The SLO verdict.
    pub slo: SloVerdict,
}

/// The target of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// Its name (`NAME` of `--target NAME=URL`), "target" in a single run.
    pub name: String,
    /// The URL requests were sent to.
    pub url: String,
}

/// Counts over the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Requests the schedule intended to send.
    pub intended: u64,
    /// Requests that ended (with a response or an error).
    pub completed: u64,
    /// Responses with a status below 400.
    pub ok: u64,
    /// 429 responses (rate limited; not counted as errors).
    pub rate_limited: u64,
    /// Failed requests: connect, TLS, timeout, protocol errors and statuses ≥ 400
    /// other than 429.
    pub errors: u64,
    /// `errors / completed` (0 when nothing completed).
    pub error_rate: f64,
    /// `rate_limited / completed`.
    pub rate_limited_share: f64,
    /// Responses that said they were served from cache (`x-cache: HIT` or `STALE`).
    pub cache_hits: u64,
    /// `cache_hits / responses` (0 when there were none).
    pub cache_hit_share: f64,
    /// Intended requests per second over the window.
    pub intended_rps: f64,
    /// Responses that are not errors (status below 400, or 429) that arrived within
    /// the window, per second of it: the throughput.
    pub throughput_rps: f64,
    /// Connections opened over the whole run, warm-up included (each a TLS
    /// handshake on an https target).
    pub connections_opened: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
}

/// A latency distribution, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// How many values.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest value.
    pub max_ms: f64,
    /// The percentile curve for plots: (percentile 0–100, ms), from 0 to 100
    /// with ever finer steps toward the tail.
    pub curve: Vec<(f64, f64)>,
}

/// A tenant size class's share of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    /// `hot` (the one tenant of `hot_share`), `large` (the top 1% of tenants by
    /// rank), `medium` (the next 9%) or `small` (the rest).
    pub class: String,
    /// How many tenants the class holds.
    pub tenants: u32,
    /// Requests completed for it.
    pub completed: u64,
    /// Its throughput, as [`Totals::throughput_rps`].
    #[serde(default)]
    pub throughput_rps: f64,
    /// Its 429s.
    pub rate_limited: u64,
    /// Its errors.
    pub errors: u64,
    /// Its latency.
    pub latency: Latency,
}

/// The responses with one status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusStats {
    /// The HTTP status.
    pub status: u16,
    /// How many.
    pub count: u64,
    /// Their latency.
    pub latency: Latency,
}

/// The errors of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorStats {
    /// `connect`, `tls`, `timeout`, `protocol` or `status`.
    pub kind: String,
    /// How many.
    pub count: u64,
    /// The first one's message, for a lead.
    pub example: String,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start of the run (warm-up included).
    pub t: u32,
    /// Whether this second is part of the warm-up.
    pub warmup: bool,
    /// Requests intended to be sent in this second.
    pub intended: u64,
    /// Requests that ended in this second (throughput).
    pub completed: u64,
    /// Errors among the requests intended in this second.
    pub errors: u64,
    /// 429s among the requests intended in this second.
    pub rate_limited: u64,
    /// Median latency of the requests intended in this second (0 if none).
    pub p50_ms: f64,
    /// Their 99th percentile.
    pub p99_ms: f64,
    /// Their largest.
    pub max_ms: f64,
}

/// The SLO checks and their outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SloVerdict {
    /// All checks passed (true when there are none).
    pub passed: bool,
    /// Each check.
    pub checks: Vec<SloCheck>,
}

/// One SLO check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloCheck {
    /// What is checked, as the scenario's key: `p95_ms`, `p99_ms`,
    /// `max_error_rate`, `min_throughput_rps`.
    pub name: String,
    /// `all`, or the tenant size class it applies to.
    pub scope: String,
    /// The limit (a maximum, or a minimum for `min_throughput_rps`).
    pub limit: f64,
    /// What was measured.
    pub actual: f64,
    /// Whether it held.
    pub passed: bool,
    /// Why it failed when there was nothing to measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
