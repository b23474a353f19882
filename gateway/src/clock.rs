//! The gateway's one monotonic clock, shared by the circuit breakers
//! (milliseconds) and the rate limits (nanoseconds): time since a process
//! epoch, so state fits in an atomic integer. Callers that have just read
//! the time pass their `Instant` rather than read the clock again.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `at` in nanoseconds on the gateway's clock.
pub fn ns_at(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // A second before first use, so 0 ("never", "rested", "closed") is
    // always in the past.
    let epoch = *EPOCH.get_or_init(|| Instant::now() - Duration::from_secs(1));
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// Now, in nanoseconds.
pub fn now_ns() -> u64 {
    ns_at(Instant::now())
}

/// `at` in milliseconds on the same clock.
pub fn ms_at(at: Instant) -> u64 {
    ns_at(at) / 1_000_000
}

/// Now, in milliseconds.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}
