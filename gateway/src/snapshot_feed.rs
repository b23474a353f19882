//! Following tenant-admin's routing feed (`[source] kind = "admin"`).
//!
//! At start-up the last-known-good copy ([`crate::snapshot_cache`]) is
//! served at once if there is a valid one; otherwise the gateway is not
//! ready (`/readyz` 503, requests a 503 problem) until the feed answers.
//! Then [`FeedFollower`] long-polls
//! `GET {url}/v1/routing/snapshot?region=&gateway=&since=&wait=25`: the
//! feed answers as soon as a newer version exists, so a change is applied
//! within a round trip plus the table build, with no polling delay. Each
//! poll is also this gateway's heartbeat, so it keeps polling when nothing
//! changes.
//!
//! A new version is validated like a snapshot file, built off the runtime,
//! swapped in atomically, and then written to the cache in the background;
//! the swap wakes [`crate::cert_sync`], which fetches the certificates it
//! refers to.
//! A rejected one is logged with every problem and counted; the table in
//! force keeps serving. Versions never go back. When the feed is down or refuses the
//! token, the gateway keeps serving what it has and retries with capped,
//! jittered exponential backoff, logging once when the trouble starts and
//! once when it ends. Tests and operators can wait for the line
//! `gateway: routing snapshot version N applied from the feed`.

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::cert_store::CertStore;
use crate::cert_sync;
use crate::config::{Config, Source};
use crate::feed_client::{self, Answer, FeedClient, FeedUrl};
use crate::metrics::Metrics;
use crate::snapshot_cache;
use crate::snapshot_file;
use crate::state::RoutingState;
use crate::upstreams::Upstreams;

/// How long the feed may hold a poll when nothing changes.
pub const WAIT: Duration = Duration::from_secs(25);
/// First retry delay after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Retry delay while the feed refuses the token: a person has to act.
pub const AUTH_RETRY: Duration = Duration::from_secs(10);
/// A `304` sooner than this did not wait as asked: pause before the next
/// poll rather than spin.
const MIN_POLL: Duration = Duration::from_secs(1);

/// For the feed source: puts the last-known-good copy at
/// `source.cache_path` in force if there is a valid one, with the
/// certificates it refers to that are kept in `source.cert_cache_dir`, so
/// the gateway serves before the feed answers; logs what it found.
pub fn start_from_cache(
    config: &Config,
    state: &RoutingState,
    metrics: &Metrics,
    upstreams: &Upstreams,
    certs: &CertStore,
) {
    let Source::Admin {
        url, cache_path, ..
    } = &config.source
    else {
        return;
    };
    let path = cache_path.display();
    match snapshot_cache::load(cache_path, config) {
        Ok(Some(mut loaded)) => {
            for p in loaded.prepare(upstreams, None) {
                eprintln!("gateway: {p}");
            }
            let version = state.install(loaded, metrics);
            eprintln!(
                "gateway: routing snapshot version {version} loaded from the last-known-good copy {path}; following the feed at {url}"
            );
            if let Some(current) = state.current() {
                cert_sync::load_kept(config, &current.table, certs, metrics);
            }
        }
        Ok(None) => eprintln!(
            "gateway: no last-known-good snapshot at {path} yet: not ready until the feed at {url} answers"
        ),
        Err(rejected) => eprintln!(
            "gateway: ignoring the last-known-good copy: {rejected}\ngateway: not ready until the feed at {url} answers"
        ),
    }
}

/// The background service that follows the feed.
#[derive(Debug)]
pub struct FeedFollower {
    /// Shared with the certificates' follower.
    client: Arc<FeedClient>,
    /// Re-read before every poll, so a rotated token applies at once.
    token_file: PathBuf,
    /// Where each applied snapshot is kept for the next start.
    cache_path: PathBuf,
    /// The last version written to `cache_path`; held while writing.
    cache_written: Arc<Mutex<u64>>,
    /// This process's id, sent with every poll (the heartbeat).
    gateway_id: String,
    /// Validates snapshots; its region is sent with every poll.
    config: Config,
    state: Arc<RoutingState>,
    metrics: Metrics,
    upstreams: Arc<Upstreams>,
}

impl FeedFollower {
    /// A follower of `config`'s feed as gateway `gateway_id`, loading
    /// accepted versions into `state`; `None` unless the source is the feed.
    pub fn new(
        config: &Config,
        gateway_id: String,
        state: Arc<RoutingState>,
        metrics: Metrics,
        upstreams: Arc<Upstreams>,
    ) -> Option<Self> {
        let Source::Admin {
            url,
            token_file,
            cache_path,
            ..
        } = &config.source
        else {
            return None;
        };
        let roots = if url.is_https() {
            feed_client::system_roots().unwrap_or_else(|e| {
                eprintln!("gateway: cannot read the system's trusted certificates for {url}: {e}");
                pingora::tls::RootCertStore::empty()
            })
        } else {
            pingora::tls::RootCertStore::empty()
        };
        Some(Self {
            client: Arc::new(FeedClient::new(url.clone(), roots)),
            token_file: token_file.clone(),
            cache_path: cache_path.clone(),
            cache_written: Arc::default(),
            gateway_id,
            config: config.clone(),
            state,
            metrics,
            upstreams,
        })
    }

    fn url(&self) -> &FeedUrl {
        self.client.url()
    }

    /// The feed's client, for fetching the certificates snapshots refer to.
    pub fn client(&self) -> Arc<FeedClient> {
        self.client.clone()
    }

    /// One poll and what follows from its answer; the pause before the
    /// next one, if any.
    async fn poll(&self, follow: &mut Follow) -> Option<Duration> {
        let since = self.state.version();
        // No wait for the first snapshot, nor while in trouble: a feed
        // that is back answers at once, so its return is seen (and logged)
        // without holding the poll.
        let wait = if since.is_some() && follow.trouble.is_none() {
            WAIT
        } else {
            Duration::ZERO
        };
        let target =
            self.url()
                .request_target(self.config.region.as_str(), &self.gateway_id, since, wait);
        let started = Instant::now();
        let token = match read_token(&self.token_file) {
            Ok(token) => token,
            Err(e) => {
                self.trouble(follow, Trouble::Refused, "auth", &e);
                return Some(AUTH_RETRY);
            }
        };
        match self.client.get(&target, &token, wait).await {
            Ok(Answer::NotModified) => {
                self.reachable(follow);
                // A 304 to a first poll, or sooner than the wait asked for,
                // is the feed misbehaving: pause rather than spin.
                let premature =
                    since.is_none() || (!wait.is_zero() && started.elapsed() < MIN_POLL);
                if premature {
                    Some(follow.backoff.next())
                } else {
                    follow.backoff.reset();
                    None
                }
            }
            Ok(Answer::Snapshot { version, body }) => {
                self.reachable(follow);
                self.apply(follow, version, body).await
            }
            Ok(Answer::Refused { status, detail }) => {
                let auth = matches!(status.as_u16(), 401 | 403);
                let what = if auth {
                    format!(
                        "refused the token in {} ({status}: {detail}): it needs a token with the gateway role",
                        self.token_file.display()
                    )
                } else {
                    format!("answered {status}: {detail}")
                };
                if auth {
                    self.trouble(follow, Trouble::Refused, "auth", &what);
                    Some(AUTH_RETRY)
                } else {
                    let kind = if status.is_server_error() {
                        "status_5xx"
                    } else {
                        "status_other"
                    };
                    self.trouble(follow, Trouble::Unreachable, kind, &what);
                    Some(follow.backoff.next())
                }
            }
            Err(e) => {
                self.trouble(follow, Trouble::Unreachable, e.kind(), &e.to_string());
                Some(follow.backoff.next())
            }
        }
    }

    /// Validates, builds and installs a snapshot from the feed, then keeps
    /// it in the cache; the pause before the next poll when it was not
    /// applied.
    async fn apply(
        &self,
        follow: &mut Follow,
        announced: Option<u64>,
        body: Bytes,
    ) -> Option<Duration> {
        // The version applied, when `v` is not newer.
        let newer_applied = |v: u64| self.state.version().filter(|applied| v <= *applied);
        if let Some(version) = announced {
            if let Some(applied) = newer_applied(version) {
                return Some(self.ignore_old(follow, version, applied));
            }
            if follow.rejected == Some(version) {
                return Some(follow.backoff.next());
            }
        }
        let origin = format!("from the feed at {}", self.url());
        let json = body.clone();
        let config = self.config.clone();
        let build_origin = origin.clone();
        let build = move || snapshot_file::from_json(&json, &config, &build_origin);
        let loaded =
            match snapshot_file::build_off_runtime(build, &origin, &self.upstreams, &self.state)
                .await
            {
                Ok(loaded) => loaded,
                Err(rejected) => {
                    self.state.reject(&rejected, &self.metrics);
                    follow.rejected = announced;
                    return Some(follow.backoff.next());
                }
            };
        if let Some(applied) = newer_applied(loaded.table.version()) {
            return Some(self.ignore_old(follow, loaded.table.version(), applied));
        }
        let version = self.state.install(loaded, &self.metrics);
        eprintln!("gateway: routing snapshot version {version} applied from the feed");
        follow.backoff.reset();
        follow.rejected = None;
        self.keep(version, body);
        None
    }

    /// Skips a version not newer than the one applied (logged once per
    /// version); the pause before the next poll.
    fn ignore_old(&self, follow: &mut Follow, version: u64, applied: u64) -> Duration {
        if follow.ignored != Some(version) {
            follow.ignored = Some(version);
            eprintln!(
                "gateway: ignoring snapshot version {version} from the feed: version {applied} is applied and versions never go back"
            );
        }
        follow.backoff.next()
    }

    /// Writes an applied snapshot to the cache on a blocking thread, not
    /// waited for: the next poll must not wait on the disk. A write that
    /// finds a newer version already written does nothing, so writes
    /// finishing out of order never put an older copy back.
    fn keep(&self, version: u64, json: Bytes) {
        let path = self.cache_path.clone();
        let written = self.cache_written.clone();
        tokio::task::spawn_blocking(move || {
            let mut written = written.lock().unwrap_or_else(PoisonError::into_inner);
            if *written >= version {
                return;
            }
            match snapshot_cache::store(&path, &json) {
                Ok(()) => *written = version,
                Err(e) => eprintln!(
                    "gateway: cannot keep snapshot version {version} at source.cache_path {}: {e}; a restart while tenant-admin is down would start from an older copy",
                    path.display()
                ),
            }
        });
    }

    /// Records a failed poll; logs it when the trouble starts or changes
    /// nature.
    fn trouble(&self, follow: &mut Follow, trouble: Trouble, kind: &'static str, what: &str) {
        self.metrics.feed_error(kind);
        self.metrics.feed_up(false);
        if follow.trouble == Some(trouble) {
            return;
        }
        follow.trouble = Some(trouble);
        let retry = match trouble {
            Trouble::Unreachable => "retrying with backoff",
            Trouble::Refused => "retrying every 10 s",
        };
        let serving = match self.state.version() {
            Some(v) => format!("serving snapshot version {v} meanwhile"),
            None => "not ready until it answers".to_owned(),
        };
        eprintln!(
            "gateway: routing feed {}: {what}; {serving}, {retry}",
            self.url()
        );
    }

    /// Records an answered poll; logs the end of a trouble.
    fn reachable(&self, follow: &mut Follow) {
        self.metrics.feed_up(true);
        if follow.trouble.take().is_some() {
            eprintln!("gateway: routing feed {} is back", self.url());
        }
    }
}

#[async_trait]
impl BackgroundService for FeedFollower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut follow = Follow::default();
        loop {
            let pause = tokio::select! {
                pause = self.poll(&mut follow) => pause,
                _ = shutdown.changed() => return,
            };
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// What the follower remembers between polls.
#[derive(Debug, Default)]
struct Follow {
    backoff: Backoff,
    /// The trouble in progress, logged when it started.
    trouble: Option<Trouble>,
    /// The last version rejected, not rebuilt while the feed still offers it.
    rejected: Option<u64>,
    /// The last old version ignored, logged once.
    ignored: Option<u64>,
}

/// The nature of a trouble with the feed: a change is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// Down, failing or too slow: it will come back by itself.
    Unreachable,
    /// The token is missing or refused: someone has to fix it.
    Refused,
}

/// The bearer token in `path`, trimmed.
pub(crate) fn read_token(path: &std::path::Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(format!("source.token_file {} is empty", path.display())),
        Err(e) => Err(format!(
            "cannot read source.token_file {}: {e}",
            path.display()
        )),
    }
}

/// Capped exponential backoff with jitter: the n-th delay in a row is
/// drawn between half and all of `BACKOFF_MIN × 2ⁿ` (capped at
/// [`BACKOFF_MAX`]), and never below [`BACKOFF_MIN`], so gateways that lost
/// the feed together do not come back in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    failures: u32,
    /// xorshift state for the jitter, seeded per process.
    seed: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(crate::clock::now_ns());
        Self {
            failures: 0,
            seed: seed | 1,
        }
    }
}

impl Backoff {
    /// The next delay.
    pub(crate) fn next(&mut self) -> Duration {
        let ceiling = BACKOFF_MIN
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = ceiling / 2;
        let jitter = Duration::from_nanos(self.seed % (half.as_nanos() as u64 + 1));
        (half + jitter).max(BACKOFF_MIN)
    }

    /// Back to the first delay after a success.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_250_ms_to_5_s_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next()).collect();
        assert_eq!(delays[0], BACKOFF_MIN);
        for (n, d) in delays.iter().enumerate() {
            let ceiling = BACKOFF_MIN.saturating_mul(1 << n).min(BACKOFF_MAX);
            assert!(
                *d >= BACKOFF_MIN.max(ceiling / 2) && *d <= ceiling,
                "delay {n}: {d:?}"
            );
        }
        assert!(delays[6..].iter().all(|d| *d >= BACKOFF_MAX / 2));
        let capped: std::collections::HashSet<_> = delays[6..].iter().collect();
        assert!(capped.len() > 1, "no jitter: {delays:?}");
        backoff.reset();
        assert_eq!(backoff.next(), BACKOFF_MIN);
    }

    #[test]
    fn the_token_is_trimmed_and_an_empty_or_missing_file_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  abc.def \n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "abc.def");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_token(&path).unwrap_err().contains("is empty"));
        let missing = read_token(&dir.path().join("nope")).unwrap_err();
        assert!(
            missing.contains("cannot read source.token_file"),
            "{missing}"
        );
    }
}
