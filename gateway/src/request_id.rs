//! Request ids: kept when the client sent a valid one, else generated.
//!
//! A generated id is 32 hex digits: a random per-process prefix, then a
//! counter mixed with the seed through SplitMix64, so ids are unique within a process,
//! unpredictable across processes, and cost no system call or lock.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

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

/// A request's id, held as the header value it is sent as: a kept client
/// id shares the request's bytes, and every copy (upstream request,
/// response) is a reference count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl Default for RequestId {
    fn default() -> Self {
        Self(HeaderValue::from_static(""))
    }
}

impl RequestId {
    /// The client's `x-request-id` when [`is_valid`], else a new one.
    pub fn keep_or_generate(sent: Option<&HeaderValue>) -> Self {
        match sent {
            Some(id) if is_valid(id.as_bytes()) => Self(id.clone()),
            _ => generate(),
        }
    }

    /// The id as text: always ASCII, checked by [`is_valid`] or generated.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header(&self) -> &HeaderValue {
        &self.0
    }

    /// No id has been assigned yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A new request id.
pub fn generate() -> RequestId {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // std's RandomState is seeded from the OS's random source once per process.
    let seed = *SEED.get_or_init(|| RandomState::new().build_hasher().finish());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hex = [0u8; 32];
    write_hex(&mut hex[..16], splitmix(seed));
    write_hex(&mut hex[16..], splitmix(seed ^ splitmix(n)));
    // Hex digits are always a valid header value.
    RequestId(HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("")))
}

/// `value` as 16 lowercase hex digits into `out`.
fn write_hex(out: &mut [u8], value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[(value >> (60 - 4 * i)) as usize & 0xf];
    }
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
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| generate().as_str().to_owned())
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && is_valid(id.as_bytes()))
        );
    }

    #[test]
    fn hex_digits_are_most_significant_first() {
        let mut out = [0u8; 16];
        write_hex(&mut out, 0x0123_4567_89ab_cdef);
        assert_eq!(&out, b"0123456789abcdef");
    }

    #[test]
    fn a_valid_client_id_is_kept_and_an_unsafe_one_replaced() {
        let kept = RequestId::keep_or_generate(Some(&HeaderValue::from_static("req-1")));
        assert_eq!(kept.as_str(), "req-1");
        let replaced = RequestId::keep_or_generate(Some(&HeaderValue::from_static("a b")));
        assert_eq!(replaced.as_str().len(), 32);
        assert!(RequestId::default().is_empty());
    }

    #[test]
    fn unsafe_client_ids_are_not_kept() {
        assert!(is_valid(b"req-42_a.b:c"));
        for bad in [&b""[..], b"a b", b"a\"b", b"a\r\nx-evil: 1", &[b'a'; 129]] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
