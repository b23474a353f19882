//! What an upstream server is told before it starts: its name and its shutdown grace.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use hyper::header::HeaderValue;

use super::error::UpstreamError;

/// The longest name an upstream accepts, in bytes.
pub const MAX_NAME_LEN: usize = 100;

/// How long requests in flight get to finish after shutdown is asked for, unless told
/// otherwise: long enough for ordinary requests and short `delay_ms` ones, short enough
/// that a stop between load-test runs is not noticed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How an upstream server behaves; where it listens and on how many threads are the
/// caller's business (see [`super::run`] and [`super::serve`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// Echoed as `upstream` in every body and sent as `x-upstream`, so one response through
    /// the gateway shows which upstream (shard, cluster, region) the request was routed to.
    pub name: UpstreamName,
    /// How long requests in flight may take to finish once shutdown begins; requests still
    /// running after it are cut off so a stuck client can never hold the process up.
    pub grace: Duration,
}

impl Config {
    /// A server called `name` with the [`DEFAULT_GRACE`].
    pub fn new(name: UpstreamName) -> Self {
        Self {
            name,
            grace: DEFAULT_GRACE,
        }
    }
}

/// An upstream's name: 1 to [`MAX_NAME_LEN`] bytes of visible ASCII (`!` to `~`, no
/// spaces), so it is always a valid header value and never needs quoting in a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamName {
    /// The name as given.
    text: String,
    /// The same name as a header value, built once so answering never re-validates it.
    header: HeaderValue,
}

impl UpstreamName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name as the value of `x-upstream`.
    pub(crate) fn header(&self) -> &HeaderValue {
        &self.header
    }
}

impl FromStr for UpstreamName {
    type Err = UpstreamError;

    /// # Errors
    ///
    /// [`UpstreamError::InvalidName`] when the name is empty, longer than
    /// [`MAX_NAME_LEN`] bytes, or holds anything but visible ASCII.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &'static str| UpstreamError::InvalidName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("it is longer than 100 bytes"));
        }
        if !name.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(invalid(
                "it may hold only visible ASCII characters, without spaces",
            ));
        }
        let header = HeaderValue::from_str(name)
            .map_err(|_| invalid("it is not a valid HTTP header value"))?;
        Ok(Self {
            text: name.to_owned(),
            header,
        })
    }
}

impl fmt::Display for UpstreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_takes_visible_ascii_up_to_the_limit() {
        let longest = "a".repeat(MAX_NAME_LEN);
        for name in ["shard-a", "eu-west/1:a_b.c", longest.as_str()] {
            assert_eq!(name.parse::<UpstreamName>().unwrap().as_str(), name);
        }
    }

    #[test]
    fn name_refuses_empty_long_spaced_and_non_ascii() {
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        for name in ["", too_long.as_str(), "shard a", "shärd", "a\tb"] {
            let err = name.parse::<UpstreamName>().unwrap_err();
            assert!(err.to_string().contains("upstream name"), "{err}");
        }
    }
}
