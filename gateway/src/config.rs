//! The gateway's configuration: the TOML file an operator writes (every key
//! documented in `deploy/gateway.sample.toml`), converted into one
//! validated [`Config`].
//!
//! Validation reports *every* problem at once, each naming its key
//! (`gateway.https_listen: …`), and never panics. Relative paths are taken
//! relative to the directory of the config file, so a config and its
//! certificates can move together.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use router::{Hostname, RegionName};
use serde::Deserialize;

use crate::feed_client::FeedUrl;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    /// This gateway's region: decides local or cross-region pools.
    pub region: RegionName,
    /// Plain-HTTP listener (also answers ACME HTTP-01 challenges).
    pub http_listen: Option<SocketAddr>,
    /// TLS listener; requires `[tls]` unless certificates come from
    /// tenant-admin's feed.
    pub https_listen: Option<SocketAddr>,
    /// Metrics, health, readiness and `/debug/route`.
    pub admin_listen: SocketAddr,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// The platform's domains: `{slug}.{base}` routes to a tenant.
    pub base_domains: Vec<Hostname>,
    /// Peers allowed to send `x-tenant-id` and `x-forwarded-*`.
    pub trusted_proxies: Vec<IpNet>,
    /// One JSON line per request on stdout.
    pub access_log: bool,
    /// Certificates, when HTTPS is served.
    pub tls: Option<TlsConfig>,
    /// Where routing snapshots come from.
    pub source: Source,
    /// Shared limits and purges; absent: local to this gateway.
    pub redis: Option<RedisConfig>,
    /// The response cache's bounds.
    pub cache: CacheConfig,
    /// Timeouts, health checks and the circuit breaker.
    pub upstream: UpstreamConfig,
    /// How requests of tenants in transition are treated.
    pub routing: RoutingConfig,
    /// How long a stopping gateway keeps serving.
    pub shutdown: ShutdownConfig,
}

/// `[tls]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The platform's certificate and key (PEM), served when no per-host
    /// certificate matches the SNI name.
    pub default_cert: Option<(PathBuf, PathBuf)>,
    /// Directory of `<hostname>.crt` + `<hostname>.key` pairs, hot-reloaded.
    pub cert_dir: Option<PathBuf>,
}

/// `[source]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A routing snapshot file (TOML or JSON), watched and reloaded: the
    /// embedded default.
    File {
        /// The snapshot file.
        path: PathBuf,
    },
    /// tenant-admin's routing feed.
    Admin {
        /// Base URL of tenant-admin (`http://` or `https://`).
        url: FeedUrl,
        /// File holding the `gateway` role's bearer token.
        token_file: PathBuf,
        /// Where the last-known-good snapshot is kept across restarts.
        cache_path: PathBuf,
        /// Where the certificates its snapshots refer to are kept across
        /// restarts (default: `<cache_path>.certs`).
        cert_cache_dir: PathBuf,
    },
}

/// `[redis]`
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL; may hold a password, so never logged.
    pub url: String,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &"<redacted>")
            .finish()
    }
}

/// `[cache]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Memory for cached responses, all tenants together; the least
    /// recently used entries go first.
    pub max_bytes: usize,
    /// How long concurrent misses of one key wait for the request filling
    /// it before going to the upstream themselves.
    pub lock_timeout: Duration,
    /// How long past its freshness an entry may still be served when the
    /// upstream fails (unless the origin says otherwise).
    pub stale_if_error: Duration,
}

/// `[upstream]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// TCP connect timeout to a backend.
    pub connect_timeout: Duration,
    /// Longest wait for a backend's response bytes.
    pub read_timeout: Duration,
    /// Longest wait to write the request to a backend.
    pub write_timeout: Duration,
    /// How long an idle upstream connection is kept for reuse.
    pub idle_timeout: Duration,
    /// Interval of the shared health check over every backend.
    pub health_check_interval: Duration,
    /// Consecutive failures that open a backend's circuit.
    pub circuit_failures: u32,
    /// How long an open circuit waits before one half-open probe.
    pub circuit_open: Duration,
}

/// `[routing]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// How long a write (a method other than GET, HEAD, OPTIONS, TRACE) to
    /// a tenant whose status is `moving` waits for a snapshot that ends the
    /// move before it is answered 503; zero refuses such writes at once.
    /// Reads are served meanwhile by the old target, which still has the
    /// data.
    pub move_write_hold: Duration,
}

/// The longest `routing.move_write_hold_ms` accepted: a client waits that
/// long for an answer.
pub const MAX_MOVE_WRITE_HOLD_MS: u64 = 60_000;

/// `[shutdown]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// After SIGTERM (or SIGQUIT, once the sockets are handed over) no new
    /// connection is accepted and requests in flight get this long to
    /// finish; what is still running then is cut off.
    pub grace_period: Duration,
    /// After the grace period, how long blocking background work gets to
    /// stop before the process exits anyway.
    pub graceful_shutdown_timeout: Duration,
    /// Unix socket over which listening sockets are handed to a new process
    /// started with `--upgrade`.
    pub upgrade_sock: PathBuf,
    /// Where the process id is written.
    pub pid_file: PathBuf,
}

/// The config could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or an unknown key or a wrong type (the message has the line).
    #[error("config {} is not valid: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml says, with the line and column.
        source: toml::de::Error,
    },
    /// Parsed, but with problems: every one of them.
    #[error("config {} has {} problem{}:{}", path.display(), problems.len(), if problems.len() == 1 { "" } else { "s" }, list(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Each problem as `key: message`.
        problems: Vec<String>,
    },
}

fn list(problems: &[String]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

// ---- The file as written --------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateway: RawGateway,
    tls: Option<RawTls>,
    source: RawSource,
    redis: Option<RawRedis>,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    shutdown: RawShutdown,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    region: String,
    http_listen: Option<String>,
    https_listen: Option<String>,
    admin_listen: String,
    #[serde(default = "default_threads")]
    threads: usize,
    #[serde(default)]
    base_domains: Vec<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default = "default_true")]
    access_log: bool,
}

fn default_true() -> bool {
    true
}

fn default_threads() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    default_cert: Option<PathBuf>,
    default_key: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum RawSource {
    File {
        path: PathBuf,
    },
    Admin {
        url: String,
        token_file: PathBuf,
        cache_path: PathBuf,
        cert_cache_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    max_bytes: u64,
    lock_timeout_ms: u64,
    stale_if_error_secs: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            lock_timeout_ms: 5_000,
            stale_if_error_secs: 300,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    connect_timeout_ms: u64,
    read_timeout_ms: u64,
    write_timeout_ms: u64,
    idle_timeout_secs: u64,
    health_check_interval_ms: u64,
    circuit_failures: u32,
    circuit_open_ms: u64,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 1_000,
            read_timeout_ms: 30_000,
            write_timeout_ms: 30_000,
            idle_timeout_secs: 60,
            health_check_interval_ms: 2_000,
            circuit_failures: 5,
            circuit_open_ms: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRouting {
    move_write_hold_ms: u64,
}

impl Default for RawRouting {
    fn default() -> Self {
        Self {
            move_write_hold_ms: 5_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawShutdown {
    grace_period_secs: u64,
    graceful_shutdown_timeout_secs: u64,
    upgrade_sock: PathBuf,
    pid_file: PathBuf,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self {
            grace_period_secs: 5,
            graceful_shutdown_timeout_secs: 30,
            upgrade_sock: PathBuf::from("/tmp/switchyard-gateway-upgrade.sock"),
            pid_file: PathBuf::from("/tmp/switchyard-gateway.pid"),
        }
    }
}

// ---- Validation -------------------------------------------------------------

/// Collects problems, each prefixed with its key.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, key: &str, message: impl fmt::Display) {
        self.0.push(format!("{key}: {message}"));
    }

    /// Runs `parse` and records its error under `key`.
    fn check<T, E: fmt::Display>(&mut self, key: &str, parse: Result<T, E>) -> Option<T> {
        parse.map_err(|e| self.push(key, e)).ok()
    }
}

impl Config {
    /// Reads and validates the config file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file and every problem found.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates config text; `path` locates relative paths and
    /// names the file in messages.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        raw.validate(path, base)
            .map_err(|problems| ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
    }
}

fn listen(p: &mut Problems, key: &str, value: &str) -> Option<SocketAddr> {
    p.check(
        key,
        value.parse::<SocketAddr>().map_err(|_| {
            format!("{value:?} is not an IP address and port, e.g. \"127.0.0.1:8080\"")
        }),
    )
}

fn positive_ms(p: &mut Problems, key: &str, ms: u64) -> Duration {
    if ms == 0 {
        p.push(key, "must be at least 1");
    }
    Duration::from_millis(ms)
}

impl RawConfig {
    fn validate(self, path: &Path, base: &Path) -> Result<Config, Vec<String>> {
        let mut p = Problems::default();
        let resolve = |file: PathBuf| {
            if file.is_absolute() {
                file
            } else {
                base.join(file)
            }
        };
        let g = self.gateway;

        let region = p.check("gateway.region", RegionName::new(&g.region));
        let http_listen = g
            .http_listen
            .as_deref()
            .and_then(|v| listen(&mut p, "gateway.http_listen", v));
        let https_listen = g
            .https_listen
            .as_deref()
            .and_then(|v| listen(&mut p, "gateway.https_listen", v));
        let admin_listen = listen(&mut p, "gateway.admin_listen", &g.admin_listen);
        if g.http_listen.is_none() && g.https_listen.is_none() {
            p.push("gateway", "set http_listen, https_listen or both");
        }
        let listeners = [
            ("http_listen", http_listen),
            ("https_listen", https_listen),
            ("admin_listen", admin_listen),
        ];
        for (i, (a, x)) in listeners.iter().enumerate() {
            for (b, y) in &listeners[i + 1..] {
                if x.is_some() && x == y {
                    p.push(
                        &format!("gateway.{b}"),
                        format!("same address as gateway.{a}"),
                    );
                }
            }
        }
        if !(1..=1024).contains(&g.threads) {
            p.push("gateway.threads", "must be from 1 to 1024");
        }
        let mut base_domains = Vec::new();
        for (i, d) in g.base_domains.iter().enumerate() {
            let key = format!("gateway.base_domains[{i}]");
            if let Some(h) = p.check(&key, Hostname::parse(d).map_err(|e| format!("{d:?}: {e}"))) {
                if base_domains.contains(&h) {
                    p.push(&key, format!("{h} is listed twice"));
                } else {
                    base_domains.push(h);
                }
            }
        }
        let trusted_proxies = g
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let key = format!("gateway.trusted_proxies[{i}]");
                let parsed = c
                    .parse::<IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{c:?} is not a CIDR such as \"10.0.0.0/8\" or an IP address")
                    });
                p.check(&key, parsed)
            })
            .collect();

        // The feed brings the custom domains' certificates: HTTPS needs no
        // certificate of its own then.
        let feed_certs = matches!(self.source, RawSource::Admin { .. });
        let tls = self.tls.map(|t| {
            let default_cert = match (t.default_cert, t.default_key) {
                (Some(c), Some(k)) => Some((resolve(c), resolve(k))),
                (None, None) => None,
                (Some(_), None) => {
                    p.push("tls.default_key", "required with tls.default_cert");
                    None
                }
                (None, Some(_)) => {
                    p.push("tls.default_cert", "required with tls.default_key");
                    None
                }
            };
            TlsConfig {
                default_cert,
                cert_dir: t.cert_dir.map(resolve),
            }
        });
        if let Some(t) = &tls {
            if let Some((cert, key)) = &t.default_cert {
                for (k, f) in [("tls.default_cert", cert), ("tls.default_key", key)] {
                    if !f.is_file() {
                        p.push(k, format!("{} is not a readable file", f.display()));
                    }
                }
            }
            if let Some(dir) = &t.cert_dir
                && !dir.is_dir()
            {
                p.push(
                    "tls.cert_dir",
                    format!("{} is not a directory", dir.display()),
                );
            }
            if t.default_cert.is_none() && t.cert_dir.is_none() && !feed_certs {
                p.push("tls", "set default_cert + default_key, cert_dir, or both");
            }
        } else if g.https_listen.is_some() && !feed_certs {
            p.push(
                "gateway.https_listen",
                "needs a [tls] section with certificates (or [source] kind = \"admin\", whose snapshots bring the custom domains' certificates)",
            );
        }

        let source = match self.source {
            RawSource::File { path } => Some(Source::File {
                path: resolve(path),
            }),
            RawSource::Admin {
                url,
                token_file,
                cache_path,
                cert_cache_dir,
            } => {
                let cache_path = resolve(cache_path);
                let cert_cache_dir = match cert_cache_dir {
                    Some(dir) => resolve(dir),
                    None => {
                        let mut dir = cache_path.clone().into_os_string();
                        dir.push(".certs");
                        PathBuf::from(dir)
                    }
                };
                if cert_cache_dir == cache_path {
                    p.push(
                        "source.cert_cache_dir",
                        "must differ from source.cache_path",
                    );
                } else if cert_cache_dir.exists() && !cert_cache_dir.is_dir() {
                    p.push(
                        "source.cert_cache_dir",
                        format!("{} is not a directory", cert_cache_dir.display()),
                    );
                }
                p.check("source.url", FeedUrl::parse(&url))
                    .map(|url| Source::Admin {
                        url,
                        token_file: resolve(token_file),
                        cache_path,
                        cert_cache_dir,
                    })
            }
        };

        let redis = self.redis.map(|r| {
            // The URL may contain a password: never echo it.
            if r.url.starts_with("rediss://") {
                p.push(
                    "redis.url",
                    "TLS to Redis (rediss://) is not supported yet; use redis:// on a private network or through a local TLS tunnel",
                );
            } else if !r.url.starts_with("redis://") {
                p.push("redis.url", "must start with redis://");
            } else if redis::Client::open(r.url.as_str()).is_err() {
                p.push("redis.url", "is not a valid Redis URL (expected redis://[user:password@]host[:port][/db])");
            }
            RedisConfig { url: r.url }
        });

        let c = self.cache;
        if !(1024 * 1024..=1 << 40).contains(&c.max_bytes) {
            p.push(
                "cache.max_bytes",
                "must be between 1 MiB (1048576) and 1 TiB",
            );
        }
        if c.stale_if_error_secs > u64::from(u32::MAX) {
            p.push("cache.stale_if_error_secs", "is too large");
        }
        let cache = CacheConfig {
            max_bytes: usize::try_from(c.max_bytes).unwrap_or(usize::MAX),
            lock_timeout: positive_ms(&mut p, "cache.lock_timeout_ms", c.lock_timeout_ms),
            stale_if_error: Duration::from_secs(c.stale_if_error_secs),
        };

        let u = self.upstream;
        let upstream = UpstreamConfig {
            connect_timeout: positive_ms(
                &mut p,
                "upstream.connect_timeout_ms",
                u.connect_timeout_ms,
            ),
            read_timeout: positive_ms(&mut p, "upstream.read_timeout_ms", u.read_timeout_ms),
            write_timeout: positive_ms(&mut p, "upstream.write_timeout_ms", u.write_timeout_ms),
            idle_timeout: Duration::from_secs(u.idle_timeout_secs),
            health_check_interval: positive_ms(
                &mut p,
                "upstream.health_check_interval_ms",
                u.health_check_interval_ms,
            ),
            circuit_failures: u.circuit_failures,
            circuit_open: positive_ms(&mut p, "upstream.circuit_open_ms", u.circuit_open_ms),
        };
        if u.circuit_failures == 0 {
            p.push("upstream.circuit_failures", "must be at least 1");
        }
        let hold_ms = self.routing.move_write_hold_ms;
        if hold_ms > MAX_MOVE_WRITE_HOLD_MS {
            p.push(
                "routing.move_write_hold_ms",
                format!("must be from 0 to {MAX_MOVE_WRITE_HOLD_MS}"),
            );
        }
        let routing = RoutingConfig {
            move_write_hold: Duration::from_millis(hold_ms.min(MAX_MOVE_WRITE_HOLD_MS)),
        };
        let shutdown = ShutdownConfig {
            grace_period: Duration::from_secs(self.shutdown.grace_period_secs),
            graceful_shutdown_timeout: Duration::from_secs(
                self.shutdown.graceful_shutdown_timeout_secs,
            ),
            upgrade_sock: resolve(self.shutdown.upgrade_sock),
            pid_file: resolve(self.shutdown.pid_file),
        };

        match (region, admin_listen, source) {
            (Some(region), Some(admin_listen), Some(source)) if p.0.is_empty() => Ok(Config {
                path: path.to_owned(),
                region,
                http_listen,
                https_listen,
                admin_listen,
                threads: g.threads,
                base_domains,
                trusted_proxies,
                access_log: g.access_log,
                tls,
                source,
                redis,
                cache,
                upstream,
                routing,
                shutdown,
            }),
            _ => Err(p.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid config, with `sections` appended.
    fn parse(sections: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[gateway]\nregion = \"eu-west\"\nhttp_listen = \"127.0.0.1:8080\"\n\
             admin_listen = \"127.0.0.1:9090\"\n\n[source]\nkind = \"file\"\n\
             path = \"routing.toml\"\n\n{sections}"
        );
        Config::from_toml(&text, Path::new("/etc/switchyard/gateway.toml"))
    }

    fn problems(sections: &str) -> Vec<String> {
        match parse(sections) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn move_write_hold_defaults_to_five_seconds() {
        let config = parse("").unwrap();
        assert_eq!(config.routing.move_write_hold, Duration::from_secs(5));
    }

    #[test]
    fn move_write_hold_accepts_zero_and_the_maximum() {
        for ms in [0, 1_500, MAX_MOVE_WRITE_HOLD_MS] {
            let config = parse(&format!("[routing]\nmove_write_hold_ms = {ms}")).unwrap();
            assert_eq!(config.routing.move_write_hold, Duration::from_millis(ms));
        }
    }

    #[test]
    fn move_write_hold_over_a_minute_is_a_problem_naming_the_key() {
        assert_eq!(
            problems("[routing]\nmove_write_hold_ms = 60001"),
            ["routing.move_write_hold_ms: must be from 0 to 60000"]
        );
    }

    /// A config with an HTTPS listener, `source` and `sections`.
    fn https(source: &str, sections: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[gateway]\nregion = \"eu-west\"\nhttps_listen = \"127.0.0.1:8443\"\n\
             admin_listen = \"127.0.0.1:9090\"\n\n[source]\n{source}\n\n{sections}"
        );
        Config::from_toml(&text, Path::new("/etc/switchyard/gateway.toml"))
    }

    const FEED: &str = "kind = \"admin\"\nurl = \"http://127.0.0.1:1\"\n\
                        token_file = \"token\"\ncache_path = \"/var/lib/sy/snapshot.json\"";

    #[test]
    fn https_needs_certificates_of_its_own_unless_the_feed_brings_them() {
        let file = "kind = \"file\"\npath = \"routing.toml\"";
        let Err(ConfigError::Invalid { problems, .. }) = https(file, "") else {
            panic!("a file source with HTTPS and no [tls] was accepted");
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("gateway.https_listen: needs a [tls] section"),
            "{problems:?}"
        );
        let Err(ConfigError::Invalid { problems, .. }) = https(file, "[tls]\n") else {
            panic!("an empty [tls] was accepted with a file source");
        };
        assert_eq!(
            problems,
            ["tls: set default_cert + default_key, cert_dir, or both"]
        );

        for sections in ["", "[tls]\n"] {
            let config = https(FEED, sections).unwrap();
            assert_eq!(config.https_listen.map(|a| a.port()), Some(8443));
        }
    }

    #[test]
    fn the_certificate_cache_sits_next_to_the_snapshot_cache_unless_set() {
        let config = https(FEED, "").unwrap();
        let Source::Admin { cert_cache_dir, .. } = &config.source else {
            panic!("not the feed");
        };
        assert_eq!(cert_cache_dir, Path::new("/var/lib/sy/snapshot.json.certs"));

        let config = https(&format!("{FEED}\ncert_cache_dir = \"certs\""), "").unwrap();
        let Source::Admin { cert_cache_dir, .. } = &config.source else {
            panic!("not the feed");
        };
        assert_eq!(cert_cache_dir, Path::new("/etc/switchyard/certs"));

        let same = format!("{FEED}\ncert_cache_dir = \"/var/lib/sy/snapshot.json\"");
        let Err(ConfigError::Invalid { problems, .. }) = https(&same, "") else {
            panic!("the same path twice was accepted");
        };
        assert_eq!(
            problems,
            ["source.cert_cache_dir: must differ from source.cache_path"]
        );
    }

    #[test]
    fn unknown_routing_keys_and_negative_holds_are_parse_errors() {
        for sections in [
            "[routing]\nmove_write_hold = 5",
            "[routing]\nmove_write_hold_ms = -1",
        ] {
            let e = parse(sections).unwrap_err();
            assert!(matches!(e, ConfigError::Parse { .. }), "{sections}: {e}");
            assert!(e.to_string().contains("move_write_hold"), "{e}");
        }
    }
}
