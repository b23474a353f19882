//! How a request asks the upstream to behave: the query parameters `delay_ms`, `status`,
//! `bytes`, `cache` and `mirror`, their limits, and the errors for values outside them.
//!
//! Values are plain decimal digits (no sign, no percent-encoding); the last occurrence of
//! a parameter wins, and parameters the upstream does not know are ignored, so load tests
//! can add cache busters such as `?n=17`. Values outside a limit are refused, never
//! silently clamped: a load test that asked for two minutes of latency and got one would
//! measure the wrong thing without noticing.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use hyper::StatusCode;
use thiserror::Error;

/// The longest `delay_ms` accepted: one minute, past any proxy timeout worth testing.
pub const MAX_DELAY_MS: u64 = 60_000;

/// The largest `bytes` accepted: 64 MiB, past any plan's body limit worth testing while
/// keeping one request from taking a noticeable share of memory.
pub const MAX_PAD_BYTES: usize = 64 * 1024 * 1024;

/// The longest `cache` lifetime accepted: one year, in seconds.
pub const MAX_CACHE_SECS: u32 = 31_536_000;

/// The query parameters as `loadtest upstream --help` lists them.
pub const QUERY_HELP: &str = "\
Query parameters, on any request (decimal digits; the last occurrence wins; unknown
parameters are ignored; a value out of range is answered 400 naming the parameter):
  delay_ms=N    wait N milliseconds before answering (0 to 60000)
  status=NNN    answer with this status, still with the echo body (200 to 599;
                1xx cannot end a response and is refused)
  bytes=N       pad the body with spaces to exactly N bytes, still valid JSON
                (0 to 67108864; the echo itself is never cut)
  cache=SECS    add `Cache-Control: public, max-age=SECS` (0 to 31536000)
  mirror=0|1    0 leaves out the x-seen-* response headers (default 1), so every
                proxy in a benchmark gets byte-identical response headers";

/// What one request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Behaviour {
    /// How long to wait before answering, to play a slow app server.
    pub(crate) delay: Duration,
    /// The status to answer with, to play a failing one.
    pub(crate) status: StatusCode,
    /// The body size to pad the echo up to, for body-size and bandwidth tests.
    pub(crate) pad_to: usize,
    /// The `max-age` of a `Cache-Control: public` header, for the gateway's response cache.
    pub(crate) max_age: Option<u32>,
    /// Whether the response mirrors the tenant headers as `x-seen-*`. Benchmarks turn it
    /// off: a proxy that adds more headers would otherwise get a bigger response back.
    pub(crate) mirror: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            status: StatusCode::OK,
            pad_to: 0,
            max_age: None,
            mirror: true,
        }
    }
}

/// A query parameter the upstream cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum QueryError {
    /// The value is not a number, or outside the parameter's range.
    #[error("{name} must be {expected}, got {got:?}")]
    Invalid {
        /// The parameter, e.g. `delay_ms`.
        name: &'static str,
        /// What it takes, e.g. "a number of milliseconds from 0 to 60000".
        expected: String,
        /// The value sent, shortened if long.
        got: String,
    },

    /// `status` asked for an informational status, which cannot be a final response
    /// (hyper would quietly send a 500 instead).
    #[error(
        "status {0} is informational (1xx) and cannot end a response; use a status from 200 to 599"
    )]
    Informational(u16),
}

/// How many characters of a refused value an error quotes.
const QUOTED_VALUE_LEN: usize = 40;

impl Behaviour {
    /// Reads the parameters out of a request's query string (`None`: no `?` at all).
    pub(crate) fn from_query(query: Option<&str>) -> Result<Self, QueryError> {
        let mut behaviour = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "delay_ms" => {
                    let millis =
                        number("delay_ms", "a number of milliseconds", value, MAX_DELAY_MS)?;
                    behaviour.delay = Duration::from_millis(millis);
                }
                "status" => behaviour.status = status(value)?,
                "bytes" => {
                    behaviour.pad_to =
                        number("bytes", "a body size in bytes", value, MAX_PAD_BYTES)?;
                }
                "cache" => {
                    let secs = number("cache", "a max-age in seconds", value, MAX_CACHE_SECS)?;
                    behaviour.max_age = Some(secs);
                }
                "mirror" => behaviour.mirror = number("mirror", "0 or 1", value, 1u8)? == 1,
                _ => {}
            }
        }
        Ok(behaviour)
    }
}

/// `value` as a number from zero to `max`, or the error naming parameter `name`.
fn number<T>(name: &'static str, what: &str, value: &str, max: T) -> Result<T, QueryError>
where
    T: FromStr + PartialOrd + Display + Default + Copy,
{
    digits(value)
        .and_then(|digits| digits.parse::<T>().ok())
        .filter(|number| (T::default()..=max).contains(number))
        .ok_or_else(|| QueryError::Invalid {
            name,
            expected: format!("{what} from {} to {max}", T::default()),
            got: quote(value),
        })
}

/// `value` as a final status code, from 200 to 599.
fn status(value: &str) -> Result<StatusCode, QueryError> {
    let invalid = || QueryError::Invalid {
        name: "status",
        expected: "an HTTP status code from 200 to 599".to_owned(),
        got: quote(value),
    };
    let code: u16 = digits(value)
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(invalid)?;
    match code {
        100..=199 => Err(QueryError::Informational(code)),
        200..=599 => StatusCode::from_u16(code).map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

/// The start of a refused value, for an error message.
fn quote(value: &str) -> String {
    value.chars().take(QUOTED_VALUE_LEN).collect()
}

/// `value` if it is one or more ASCII digits and nothing else (`parse` would take a `+`).
fn digits(value: &str) -> Option<&str> {
    (!value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit())).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Behaviour, QueryError> {
        Behaviour::from_query(Some(query))
    }

    #[test]
    fn no_query_means_an_immediate_plain_200() {
        assert_eq!(Behaviour::from_query(None), Ok(Behaviour::default()));
        assert_eq!(parse(""), Ok(Behaviour::default()));
    }

    #[test]
    fn every_parameter_is_read_and_unknown_ones_are_ignored() {
        let behaviour =
            parse("n=17&delay_ms=250&status=503&bytes=4096&cache=60&mirror=0&flag").unwrap();
        assert_eq!(
            behaviour,
            Behaviour {
                delay: Duration::from_millis(250),
                status: StatusCode::SERVICE_UNAVAILABLE,
                pad_to: 4096,
                max_age: Some(60),
                mirror: false,
            }
        );
    }

    #[test]
    fn last_occurrence_of_a_parameter_wins() {
        assert_eq!(parse("status=500&status=204").unwrap().status, 204);
    }

    #[test]
    fn limits_are_inclusive() {
        let query = format!(
            "delay_ms={MAX_DELAY_MS}&status=599&bytes={MAX_PAD_BYTES}&cache={MAX_CACHE_SECS}"
        );
        let behaviour = parse(&query).unwrap();
        assert_eq!(behaviour.delay, Duration::from_millis(MAX_DELAY_MS));
        assert_eq!(behaviour.pad_to, MAX_PAD_BYTES);
        assert_eq!(behaviour.max_age, Some(MAX_CACHE_SECS));
        assert_eq!(parse("status=200").unwrap().status, 200);
    }

    #[test]
    fn values_past_a_limit_are_refused_not_clamped() {
        for (query, name) in [
            (format!("delay_ms={}", MAX_DELAY_MS + 1), "delay_ms"),
            (format!("bytes={}", MAX_PAD_BYTES + 1), "bytes"),
            (format!("cache={}", u64::from(MAX_CACHE_SECS) + 1), "cache"),
            ("delay_ms=99999999999999999999999".to_owned(), "delay_ms"),
            ("mirror=2".to_owned(), "mirror"),
        ] {
            let err = parse(&query).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name} must be ")), "{err}");
        }
    }

    #[test]
    fn only_plain_digits_are_numbers() {
        for value in ["", "+5", "-5", "5ms", "1e3", "%35", " 5"] {
            let err = parse(&format!("delay_ms={value}")).unwrap_err();
            assert!(matches!(err, QueryError::Invalid { .. }), "{value}: {err}");
        }
    }

    #[test]
    fn status_outside_200_to_599_names_the_range() {
        for value in ["0", "99", "600", "999", "abc"] {
            let err = parse(&format!("status={value}")).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("status must be an HTTP status code from 200 to 599, got {value:?}")
            );
        }
    }

    #[test]
    fn informational_status_is_refused_with_the_reason() {
        for code in [100, 101, 103, 199] {
            let err = parse(&format!("status={code}")).unwrap_err();
            assert_eq!(err, QueryError::Informational(code));
        }
    }

    #[test]
    fn a_long_refused_value_is_quoted_shortened() {
        let err = parse(&format!("bytes={}", "9".repeat(500))).unwrap_err();
        let QueryError::Invalid { got, .. } = err else {
            panic!("expected Invalid, got {err:?}");
        };
        assert_eq!(got.len(), QUOTED_VALUE_LEN);
    }

    #[test]
    fn help_states_every_limit() {
        for limit in [
            MAX_DELAY_MS.to_string(),
            MAX_PAD_BYTES.to_string(),
            MAX_CACHE_SECS.to_string(),
        ] {
            assert!(QUERY_HELP.contains(&limit), "{limit} missing from the help");
        }
    }
}
