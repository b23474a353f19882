//! Request ids: kept when the client sent a valid one, else generated.
//!
//! A generated id is 32 hex digits: a random per-process prefix, then a
//! counter mixed with the seed through SplitMix64, so ids are unique within a process,
//! unpredictable across processes, and cost no system call or lock.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest client-sent id that is kept.
pub const MAX_LEN: usize = 128;

/// True when a client-sent `x-request-id` is safe to keep: 1 to
/// [`MAX_LEN`] characters of letters, digits, `-`, `_`, `.` and `:`.
/// Anything else (spaces, quotes, control characters) could corrupt a log
/// line or a header, so it is replaced.
pub fn is_valid(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new request id.
pub fn generate() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // std's RandomState is seeded from the OS's random source once per process.
    let seed = *SEED.get_or_init(|| RandomState::new().build_hasher().finish());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}{:016x}",
        splitmix(seed),
        splitmix(seed ^ splitmix(n))
    )
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_valid() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && is_valid(id.as_bytes()))
        );
    }

    #[test]
    fn unsafe_client_ids_are_not_kept() {
        assert!(is_valid(b"req-42_a.b:c"));
        for bad in [&b""[..], b"a b", b"a\"b", b"a\r\nx-evil: 1", &[b'a'; 129]] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
