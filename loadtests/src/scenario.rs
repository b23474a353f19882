//! Scenarios: what load to send, read from a commented TOML file.
//!
//! A scenario names the tenants it addresses ([`Population`] plus their size skew),
//! the open-loop arrival rate over time, the connection cap, the request mix and the
//! SLOs that decide the exit status. [`Scenario::parse`] reads and checks one: TOML
//! syntax and unknown keys are reported by the TOML parser with their line; every
//! other problem is listed at once, each naming its key (`rate.rps: ...`), and a
//! scenario with any problem is refused as a whole. `loadtests/scenarios/` holds the
//! shipped ones, each key commented.

mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue, Method};
use router::{Hostname, Slug};
use serde::Deserialize;

use crate::population::{
    DEFAULT_BASE_DOMAIN, DEFAULT_DOMAIN_SUFFIX, DEFAULT_SLUG_PREFIX, Population,
};
pub use template::{PathTemplate, Segment};

/// The most tenants a scenario may address.
pub const MAX_TENANTS: u32 = 1_000_000;
/// The largest request body a scenario may send.
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// The longest run, warm-up included: a day.
pub const MAX_RUN_SECS: f64 = 86_400.0;
/// The highest arrival rate a scenario may ask for.
pub const MAX_RPS: f64 = 10_000_000.0;
/// The most connections a scenario may hold open.
pub const MAX_CONNECTIONS: u32 = 100_000;

/// The tenant size classes results are broken down by, largest first.
pub const CLASSES: [&str; 4] = ["hot", "large", "medium", "small"];

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name, in reports.
    pub name: String,
    /// What it plays, in reports.
    pub description: String,
    /// Seconds measured, after the warm-up.
    pub duration_secs: f64,
    /// Seconds of load sent before the measured window (connections, caches and
    /// JITs warm up; not counted).
    pub warmup_secs: f64,
    /// Milliseconds a request may take from its intended send time before it
    /// counts as a `timeout` error.
    pub timeout_ms: u64,
    /// Seed of every random choice, so two runs send the same requests.
    pub seed: u64,
    /// The tenants and their skew.
    pub tenants: Tenants,
    /// The arrival rate over time.
    pub rate: Rate,
    /// Connection handling.
    pub connections: Connections,
    /// The request mix.
    pub requests: Vec<RequestKind>,
    /// TLS settings for https targets.
    pub tls: Tls,
    /// Host patterns (`name` or `*.suffix`) sent to another address than the target's.
    pub resolve: Vec<(String, SocketAddr)>,
    /// The service-level objectives.
    pub slo: Slo,
}

/// The tenants addressed and how traffic spreads over them.
#[derive(Debug, Clone)]
pub struct Tenants {
    /// Their names.
    pub population: Population,
    /// Zipf exponent of tenant sizes: tenant of rank `k` gets traffic ∝ 1/k^zipf
    /// (0 is uniform).
    pub zipf: f64,
    /// Share of all requests taken by the largest tenant alone (0: none beyond Zipf).
    pub hot_share: f64,
    /// Share of a tenant-with-custom-domain's requests addressed to that domain
    /// (the rest go to its platform subdomain).
    pub custom_domain_share: f64,
}

/// How the arrival rate changes over the run (seconds since its start, warm-up
/// included).
#[derive(Debug, Clone, PartialEq)]
pub enum RateShape {
    /// The same rate throughout.
    Constant {
        /// Requests per second.
        rps: f64,
    },
    /// A rate that changes at given times and then holds.
    Stepped {
        /// `(at_secs, rps)`, ascending, the first at 0.
        steps: Vec<(f64, f64)>,
    },
    /// A base rate with one burst.
    Spike {
        /// The base rate.
        rps: f64,
        /// The rate during the spike.
        spike_rps: f64,
        /// When the spike starts.
        at_secs: f64,
        /// How long it lasts.
        secs: f64,
    },
}

/// When requests are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// Evenly spaced at the rate.
    Uniform,
    /// A Poisson process at the rate (exponential gaps), as independent users send.
    Poisson,
}

/// The open-loop arrival rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// Its shape over time.
    pub shape: RateShape,
    /// How arrivals are spaced.
    pub arrivals: Arrivals,
}

impl Rate {
    /// The same shape with every rate multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        let shape = match &self.shape {
            RateShape::Constant { rps } => RateShape::Constant { rps: rps * factor },
            RateShape::Stepped { steps } => RateShape::Stepped {
                steps: steps.iter().map(|(at, rps)| (*at, rps * factor)).collect(),
            },
            RateShape::Spike {
                rps,
                spike_rps,
                at_secs,
                secs,
            } => RateShape::Spike {
                rps: rps * factor,
                spike_rps: spike_rps * factor,
                at_secs: *at_secs,
                secs: *secs,
            },
        };
        Self {
            shape,
            arrivals: self.arrivals,
        }
    }

    /// The rate's constant pieces, `(from_secs, rps)`, ascending, the first at 0.
    pub fn segments(&self) -> Vec<(f64, f64)> {
        match &self.shape {
            RateShape::Constant { rps } => vec![(0.0, *rps)],
            RateShape::Stepped { steps } => steps.clone(),
            RateShape::Spike {
                rps,
                spike_rps,
                at_secs,
                secs,
            } => {
                let mut segments =
                    vec![(0.0, *rps), (*at_secs, *spike_rps), (at_secs + secs, *rps)];
                if *at_secs == 0.0 {
                    segments.remove(0);
                }
                segments
            }
        }
    }

    /// Requests due from the start to `t` seconds: the integral of the rate.
    pub fn work(&self, t: f64) -> f64 {
        let segments = self.segments();
        let mut total = 0.0;
        for (i, (from, rps)) in segments.iter().enumerate() {
            if *from >= t {
                break;
            }
            let until = segments.get(i + 1).map_or(t, |(next, _)| next.min(t));
            total += (until - from) * rps;
        }
        total
    }

    /// The rate at `t` seconds since the start.
    pub fn at(&self, t: f64) -> f64 {
        self.segments()
            .iter()
            .take_while(|(from, _)| *from <= t)
            .last()
            .map_or(0.0, |(_, rps)| *rps)
    }
}

/// Connection handling.
#[derive(Debug, Clone, PartialEq)]
pub struct Connections {
    /// The most connections open at once, idle ones included; requests beyond it
    /// wait for one (and that wait counts in their latency).
    pub max: u32,
    /// Share of requests sent on a new connection, closed after it (a TLS handshake
    /// each on an https target: 1.0 is a handshake storm).
    pub new_share: f64,
}

/// A request body size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// Always this many bytes.
    Fixed(u64),
    /// Uniformly between the two, inclusive.
    Between(u64, u64),
}

/// One kind of request of the mix.
#[derive(Debug, Clone)]
pub struct RequestKind {
    /// Relative frequency.
    pub weight: u32,
    /// The method.
    pub method: Method,
    /// The path and query, with `{rand:N}`, `{seq}` and `{tenant}` filled in per request.
    pub path: PathTemplate,
    /// The body size (0: no body).
    pub body: BodySize,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// A PEM file of CA certificates to trust instead of the system's (relative paths
    /// are taken from the scenario file's directory).
    pub ca: Option<PathBuf>,
}

/// Service-level objectives; each one set becomes a check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slo {
    /// For all requests.
    pub all: Objectives,
    /// For one tenant size class each.
    pub classes: BTreeMap<String, Objectives>,
}

/// Limits on one set of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Objectives {
    /// Highest 95th-percentile latency, ms.
    pub p95_ms: Option<f64>,
    /// Highest 99th-percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// Highest share of errors (0–1; 429s are not errors).
    pub max_error_rate: Option<f64>,
    /// Lowest throughput, completed requests per second.
    pub min_throughput_rps: Option<f64>,
}

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or a key or type the format does not have.
    #[error("scenario {origin}: {message}")]
    Syntax {
        /// The file, or `<text>`.
        origin: String,
        /// The parser's message, with the line.
        message: String,
    },
    /// Values that do not make a scenario, each naming its key.
    #[error("scenario {origin} has {} problem(s):\n{}", problems.len(), Problems(problems))]
    Invalid {
        /// The file, or `<text>`.
        origin: String,
        /// Each problem, `key: what is wrong`.
        problems: Vec<String>,
    },
}

/// Problems, one per line.
struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl Scenario {
    /// Reads and checks the scenario at `path`.
    ///
    /// # Errors
    ///
    /// [`ScenarioError`] when it cannot be read, parsed or checked.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Parses and checks scenario text; `origin` names it in errors and relative
    /// paths in it are taken from `base`.
    ///
    /// # Errors
    ///
    /// [`ScenarioError::Syntax`] or [`ScenarioError::Invalid`].
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Self, ScenarioError> {
        let file: file::ScenarioFile =
            toml::from_str(text).map_err(|err| ScenarioError::Syntax {
                origin: origin.to_owned(),
                message: err.to_string().trim_end().to_owned(),
            })?;
        let mut problems = Vec::new();
        let scenario = file.check(base, &mut problems);
        match scenario {
            Some(scenario) if problems.is_empty() => Ok(scenario),
            _ => Err(ScenarioError::Invalid {
                origin: origin.to_owned(),
                problems,
            }),
        }
    }

    /// The scenario with the command line's overrides of its duration, warm-up and
    /// rate, checked as the file's own values are.
    ///
    /// # Errors
    ///
    /// [`ScenarioError::Invalid`] naming the flag.
    pub fn with_overrides(
        mut self,
        duration_secs: Option<f64>,
        warmup_secs: Option<f64>,
        rate_scale: Option<f64>,
    ) -> Result<Self, ScenarioError> {
        let mut problems = Vec::new();
        if let Some(secs) = duration_secs {
            if !(0.001..=MAX_RUN_SECS).contains(&secs) {
                problems.push(format!(
                    "--duration-secs: {secs} is not between 0.001 and {MAX_RUN_SECS}"
                ));
            }
            self.duration_secs = secs;
        }
        if let Some(secs) = warmup_secs {
            if !(0.0..=MAX_RUN_SECS).contains(&secs) {
                problems.push(format!(
                    "--warmup-secs: {secs} is not between 0 and {MAX_RUN_SECS}"
                ));
            }
            self.warmup_secs = secs;
        }
        if let Some(factor) = rate_scale {
            if !(factor > 0.0 && factor <= 1000.0) {
                problems.push(format!(
                    "--rate-scale: {factor} is not a factor above 0 and at most 1000"
                ));
            }
            self.rate = self.rate.scaled(factor);
            let highest = self
                .rate
                .segments()
                .iter()
                .map(|(_, rps)| *rps)
                .fold(0.0, f64::max);
            if highest > MAX_RPS {
                problems.push(format!(
                    "--rate-scale: makes a rate of {highest} req/s, above {MAX_RPS}"
                ));
            }
        }
        self.check_schedule("the flags", &mut problems);
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ScenarioError::Invalid {
                origin: "with these flags".to_owned(),
                problems,
            })
        }
    }

    /// Checks what the rate, duration and warm-up make together: the run is not too
    /// long, and at least one request falls in the measured window.
    fn check_schedule(&self, key: &str, problems: &mut Vec<String>) {
        if self.total_secs() > MAX_RUN_SECS {
            problems.push(format!(
                "{key}: warm-up and duration together are more than {MAX_RUN_SECS} s"
            ));
        }
        let measured = self.rate.work(self.total_secs()) - self.rate.work(self.warmup_secs);
        if measured < 1.0 {
            problems.push(format!(
                "{key}: less than one request falls in the measured window ({measured:.2} at this rate and duration)"
            ));
        }
    }

    /// Seconds from the start to the end of the schedule (warm-up plus duration).
    pub fn total_secs(&self) -> f64 {
        self.warmup_secs + self.duration_secs
    }

    /// The address requests for `host` go to: a `resolve` entry, else `target`.
    pub fn resolve(&self, host: &str, target: SocketAddr) -> SocketAddr {
        self.resolve
            .iter()
            .find(|(pattern, _)| match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                None => pattern == host,
            })
            .map_or(target, |(_, addr)| *addr)
    }

    /// The class of tenant rank `rank`: `hot` (rank 0 when `hot_share` is set),
    /// `large` (the top 1% of ranks), `medium` (the next 9%) or `small`, as an index
    /// into [`CLASSES`].
    pub fn class_of(&self, rank: u32) -> usize {
        class_of(
            self.tenants.population.count,
            self.tenants.hot_share > 0.0,
            rank,
        )
    }

    /// How many tenants each class of [`CLASSES`] holds.
    pub fn class_sizes(&self) -> [u32; 4] {
        class_sizes(self.tenants.population.count, self.tenants.hot_share > 0.0)
    }
}

/// The class of rank `rank` among `count` tenants (see [`Scenario::class_of`]).
fn class_of(count: u32, hot: bool, rank: u32) -> usize {
    let [hot, large, medium, _] = class_sizes(count, hot);
    if rank < hot {
        0
    } else if rank < hot + large {
        1
    } else if rank < hot + large + medium {
        2
    } else {
        3
    }
}

/// How many of `count` tenants each class of [`CLASSES`] holds.
fn class_sizes(count: u32, hot: bool) -> [u32; 4] {
    let hot = u32::from(hot);
    let large = (count / 100).max(1).min(count - hot);
    let medium = (count / 10).saturating_sub(large).min(count - hot - large);
    [hot, large, medium, count - hot - large - medium]
}

/// The file's shape, as serde reads it, and its checks.
mod file {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct ScenarioFile {
        name: String,
        #[serde(default)]
        description: String,
        duration_secs: f64,
        #[serde(default)]
        warmup_secs: f64,
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        #[serde(default = "default_seed")]
        seed: u64,
        tenants: TenantsFile,
        rate: RateFile,
        #[serde(default)]
        connections: ConnectionsFile,
        requests: Vec<RequestFile>,
        #[serde(default)]
        tls: TlsFile,
        #[serde(default)]
        resolve: BTreeMap<String, String>,
        #[serde(default)]
        slo: SloFile,
    }

    fn default_timeout_ms() -> u64 {
        10_000
    }

    fn default_seed() -> u64 {
        1
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TenantsFile {
        count: u32,
        #[serde(default = "default_zipf")]
        zipf: f64,
        #[serde(default)]
        hot_share: f64,
        #[serde(default = "default_slug_prefix")]
        slug_prefix: String,
        #[serde(default = "default_base_domain")]
        base_domain: String,
        #[serde(default)]
        custom_domains: u32,
        #[serde(default = "default_domain_suffix")]
        domain_suffix: String,
        #[serde(default = "default_custom_domain_share")]
        custom_domain_share: f64,
    }

    fn default_zipf() -> f64 {
        1.0
    }
    fn default_slug_prefix() -> String {
        DEFAULT_SLUG_PREFIX.to_owned()
    }
    fn default_base_domain() -> String {
        DEFAULT_BASE_DOMAIN.to_owned()
    }
    fn default_domain_suffix() -> String {
        DEFAULT_DOMAIN_SUFFIX.to_owned()
    }
    fn default_custom_domain_share() -> f64 {
        1.0
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RateFile {
        #[serde(default = "default_kind")]
        kind: String,
        rps: Option<f64>,
        steps: Option<Vec<StepFile>>,
        spike_rps: Option<f64>,
        spike_at_secs: Option<f64>,
        spike_secs: Option<f64>,
        #[serde(default = "default_arrivals")]
        arrivals: String,
    }

    fn default_kind() -> String {
        "constant".to_owned()
    }
    fn default_arrivals() -> String {
        "uniform".to_owned()
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct StepFile {
        at_secs: f64,
        rps: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ConnectionsFile {
        #[serde(default = "default_max_connections")]
        max: u32,
        #[serde(default)]
        new_share: f64,
    }

    impl Default for ConnectionsFile {
        fn default() -> Self {
            Self {
                max: default_max_connections(),
                new_share: 0.0,
            }
        }
    }

    fn default_max_connections() -> u32 {
        1_000
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RequestFile {
        #[serde(default = "default_weight")]
        weight: u32,
        #[serde(default = "default_method")]
        method: String,
        path: String,
        #[serde(default)]
        body_bytes: BodyFile,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    }

    fn default_weight() -> u32 {
        1
    }
    fn default_method() -> String {
        "GET".to_owned()
    }

    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    enum BodyFile {
        Fixed(u64),
        Range(Vec<u64>),
    }

    impl Default for BodyFile {
        fn default() -> Self {
            Self::Fixed(0)
        }
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TlsFile {
        ca: Option<PathBuf>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SloFile {
        p95_ms: Option<f64>,
        p99_ms: Option<f64>,
        max_error_rate: Option<f64>,
        min_throughput_rps: Option<f64>,
        #[serde(default)]
        classes: BTreeMap<String, ObjectivesFile>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ObjectivesFile {
        p95_ms: Option<f64>,
        p99_ms: Option<f64>,
        max_error_rate: Option<f64>,
        min_throughput_rps: Option<f64>,
    }

    /// Collects problems, each naming its key.
    struct Checker<'p>(&'p mut Vec<String>);

    impl Checker<'_> {
        fn problem(&mut self, key: &str, what: impl fmt::Display) {
            self.0.push(format!("{key}: {what}"));
        }

        /// A number within `[min, max]`.
        fn range(&mut self, key: &str, value: f64, min: f64, max: f64) -> f64 {
            if !value.is_finite() || value < min || value > max {
                self.problem(key, format_args!("{value} is not between {min} and {max}"));
            }
            value
        }

        /// A share: within `[0, 1]`.
        fn share(&mut self, key: &str, value: f64) -> f64 {
            self.range(key, value, 0.0, 1.0)
        }

        /// A positive rate.
        fn rps(&mut self, key: &str, value: Option<f64>, kind: &str) -> f64 {
            match value {
                Some(rps) => {
                    if !rps.is_finite() || rps <= 0.0 || rps > MAX_RPS {
                        self.problem(
                            key,
                            format_args!("{rps} is not a rate above 0 and at most {MAX_RPS}"),
                        );
                    }
                    rps
                }
                None => {
                    self.problem(key, format_args!("required when kind = \"{kind}\""));
                    1.0
                }
            }
        }

        /// A key that must not be set for this kind.
        fn unused<T>(&mut self, key: &str, value: &Option<T>, kind: &str) {
            if value.is_some() {
                self.problem(key, format_args!("not used when kind = \"{kind}\""));
            }
        }

        fn hostname(&mut self, key: &str, value: &str) -> Option<Hostname> {
            match Hostname::parse(value) {
                Ok(host) if host.as_str() == value => Some(host),
                Ok(host) => {
                    self.problem(key, format_args!("write it as \"{host}\""));
                    None
                }
                Err(err) => {
                    self.problem(key, format_args!("\"{value}\" is not a hostname: {err}"));
                    None
                }
            }
        }

        /// A generated hostname must be valid: says which one is not.
        fn hostname_quietly(&mut self, key: &str, host: &str) {
            if let Err(err) = Hostname::parse(host) {
                self.problem(key, format_args!("makes hostnames like \"{host}\": {err}"));
            }
        }

        fn objectives(&mut self, key: &str, file: &ObjectivesFile) -> Objectives {
            let mut latency = |name: &str, value: Option<f64>| {
                value.map(|ms| self.range(&format!("{key}{name}"), ms, 0.001, 3_600_000.0))
            };
            let p95_ms = latency("p95_ms", file.p95_ms);
            let p99_ms = latency("p99_ms", file.p99_ms);
            Objectives {
                p95_ms,
                p99_ms,
                max_error_rate: file
                    .max_error_rate
                    .map(|rate| self.share(&format!("{key}max_error_rate"), rate)),
                min_throughput_rps: file
                    .min_throughput_rps
                    .map(|rps| self.range(&format!("{key}min_throughput_rps"), rps, 0.0, MAX_RPS)),
            }
        }
    }

    impl ScenarioFile {
        /// The scenario, with every problem pushed to `problems` (`None` only when a
        /// problem leaves nothing to build).
        pub(super) fn check(self, base: &Path, problems: &mut Vec<String>) -> Option<Scenario> {
            let problems_before = problems.len();
            let mut c = Checker(problems);
            if self.name.trim().is_empty() || self.name.len() > 100 {
                c.problem("name", "must be 1 to 100 characters");
            }
            if self.name.chars().any(char::is_control) {
                c.problem("name", "must not hold control characters");
            }
            let duration_secs = c.range("duration_secs", self.duration_secs, 0.001, MAX_RUN_SECS);
            let warmup_secs = c.range("warmup_secs", self.warmup_secs, 0.0, MAX_RUN_SECS);
            if self.timeout_ms == 0 || self.timeout_ms > 3_600_000 {
                c.problem("timeout_ms", "must be 1 to 3600000");
            }

            let tenants = self.tenants.check(&mut c);
            let rate = self.rate.check(&mut c);
            let max = self.connections.max;
            if max == 0 || max > MAX_CONNECTIONS {
                c.problem(
                    "connections.max",
                    format_args!("{max} is not 1 to {MAX_CONNECTIONS}"),
                );
            }
            let connections = Connections {
                max,
                new_share: c.share("connections.new_share", self.connections.new_share),
            };

            if self.requests.is_empty() {
                c.problem("requests", "at least one [[requests]] entry is needed");
            }
            let weights: u64 = self.requests.iter().map(|r| u64::from(r.weight)).sum();
            if weights > u64::from(u32::MAX) {
                c.problem(
                    "requests",
                    format_args!("the weights add up to {weights}, more than {}", u32::MAX),
                );
            }
            let requests: Vec<RequestKind> = self
                .requests
                .into_iter()
                .enumerate()
                .filter_map(|(i, request)| request.check(&format!("requests[{i}]"), &mut c))
                .collect();

            let resolve = self
                .resolve
                .into_iter()
                .filter_map(|(pattern, addr)| {
                    let key = format!("resolve.\"{pattern}\"");
                    let name = pattern.strip_prefix("*.").unwrap_or(&pattern);
                    let host = c.hostname(&key, name);
                    match addr.parse::<SocketAddr>() {
                        Ok(addr) => host.map(|_| (pattern, addr)),
                        Err(_) => {
                            c.problem(&key, format_args!("\"{addr}\" is not IP:PORT"));
                            None
                        }
                    }
                })
                .collect();

            let mut slo = Slo {
                all: c.objectives(
                    "slo.",
                    &ObjectivesFile {
                        p95_ms: self.slo.p95_ms,
                        p99_ms: self.slo.p99_ms,
                        max_error_rate: self.slo.max_error_rate,
                        min_throughput_rps: self.slo.min_throughput_rps,
                    },
                ),
                classes: BTreeMap::new(),
            };
            for (class, objectives) in &self.slo.classes {
                let key = format!("slo.classes.{class}");
                if !CLASSES.contains(&class.as_str()) {
                    c.problem(
                        &key,
                        format_args!("unknown class; the classes are {}", CLASSES.join(", ")),
                    );
                    continue;
                }
                if class == "hot" && tenants.as_ref().is_some_and(|t| t.hot_share == 0.0) {
                    c.problem(&key, "there is no hot tenant: set tenants.hot_share");
                } else if let Some(tenants) = &tenants {
                    let index = CLASSES.iter().position(|c| c == class).unwrap_or(3);
                    let sizes = class_sizes(tenants.population.count, tenants.hot_share > 0.0);
                    if sizes[index] == 0 {
                        c.problem(
                            &key,
                            format_args!(
                                "no tenant is in this class with tenants.count = {}",
                                tenants.population.count
                            ),
                        );
                    }
                }
                let objectives = c.objectives(&format!("{key}."), objectives);
                slo.classes.insert(class.clone(), objectives);
            }

            let scenario = Scenario {
                name: self.name,
                description: self.description,
                duration_secs,
                warmup_secs,
                timeout_ms: self.timeout_ms,
                seed: self.seed,
                tenants: tenants?,
                rate: rate?,
                connections,
                requests,
                tls: Tls {
                    ca: self.tls.ca.map(|ca| base.join(ca)),
                },
                resolve,
                slo,
            };
            if problems_before == c.0.len() {
                scenario.check_schedule("rate", c.0);
            }
            Some(scenario)
        }
    }

    impl TenantsFile {
        fn check(self, c: &mut Checker<'_>) -> Option<Tenants> {
            if self.count == 0 || self.count > MAX_TENANTS {
                c.problem(
                    "tenants.count",
                    format_args!("{} is not 1 to {MAX_TENANTS}", self.count),
                );
            }
            let zipf = c.range("tenants.zipf", self.zipf, 0.0, 10.0);
            let hot_share = c.share("tenants.hot_share", self.hot_share);
            if hot_share >= 1.0 {
                c.problem(
                    "tenants.hot_share",
                    "must leave traffic to the others (< 1)",
                );
            }
            if hot_share > 0.0 && self.count < 2 {
                c.problem(
                    "tenants.hot_share",
                    "needs at least 2 tenants: the hot one and others",
                );
            }
            let custom_domain_share =
                c.share("tenants.custom_domain_share", self.custom_domain_share);
            if self.custom_domains > self.count {
                c.problem(
                    "tenants.custom_domains",
                    format_args!("{} is more than tenants.count", self.custom_domains),
                );
            }
            // The longest slug must be a valid one: checks the prefix's characters
            // and its length at once.
            let longest = format!("{}{}", self.slug_prefix, self.count.saturating_sub(1));
            if let Err(err) = Slug::new(&longest) {
                c.problem(
                    "tenants.slug_prefix",
                    format_args!("makes slugs like \"{longest}\": {err}"),
                );
            }
            let base = c.hostname("tenants.base_domain", &self.base_domain);
            let suffix = c.hostname("tenants.domain_suffix", &self.domain_suffix);
            if let (Some(base), Some(suffix)) = (&base, &suffix) {
                let (base, suffix) = (base.as_str(), suffix.as_str());
                let below = |inner: &str, outer: &str| {
                    inner == outer || inner.ends_with(&format!(".{outer}"))
                };
                if self.custom_domains > 0 && (below(suffix, base) || below(base, suffix)) {
                    c.problem(
                        "tenants.domain_suffix",
                        "must not be tenants.base_domain, below it or above it",
                    );
                }
            }
            if let (Some(base), Some(suffix)) = (&base, &suffix) {
                let last = self.count.saturating_sub(1);
                let longest = format!("{}{last}.{}", self.slug_prefix, base.as_str());
                c.hostname_quietly("tenants.base_domain", &longest);
                if self.custom_domains > 0 {
                    let last = self.custom_domains - 1;
                    let longest = format!("{}{last}.{}", self.slug_prefix, suffix.as_str());
                    c.hostname_quietly("tenants.domain_suffix", &longest);
                }
            }
            Some(Tenants {
                population: Population {
                    count: self.count,
                    slug_prefix: self.slug_prefix,
                    base_domain: base?.as_str().to_owned(),
                    custom_domains: self.custom_domains,
                    domain_suffix: suffix?.as_str().to_owned(),
                },
                zipf,
                hot_share,
                custom_domain_share,
            })
        }
    }

    impl RateFile {
        fn check(self, c: &mut Checker<'_>) -> Option<Rate> {
            let arrivals = match self.arrivals.as_str() {
                "uniform" => Arrivals::Uniform,
                "poisson" => Arrivals::Poisson,
                other => {
                    c.problem(
                        "rate.arrivals",
                        format_args!("\"{other}\" is not \"uniform\" or \"poisson\""),
                    );
                    Arrivals::Uniform
                }
            };
            let kind = self.kind.as_str();
            let shape = match kind {
                "constant" => {
                    c.unused("rate.steps", &self.steps, kind);
                    c.unused("rate.spike_rps", &self.spike_rps, kind);
                    c.unused("rate.spike_at_secs", &self.spike_at_secs, kind);
                    c.unused("rate.spike_secs", &self.spike_secs, kind);
                    RateShape::Constant {
                        rps: c.rps("rate.rps", self.rps, kind),
                    }
                }
                "stepped" => {
                    c.unused("rate.rps", &self.rps, kind);
                    c.unused("rate.spike_rps", &self.spike_rps, kind);
                    c.unused("rate.spike_at_secs", &self.spike_at_secs, kind);
                    c.unused("rate.spike_secs", &self.spike_secs, kind);
                    let steps = self.steps.unwrap_or_default();
                    if steps.is_empty() {
                        c.problem(
                            "rate.steps",
                            "required when kind = \"stepped\": [{ at_secs = 0, rps = 100 }, ...]",
                        );
                    }
                    let mut previous = None;
                    let steps = steps
                        .iter()
                        .enumerate()
                        .map(|(i, step)| {
                            let key = format!("rate.steps[{i}]");
                            let at =
                                c.range(&format!("{key}.at_secs"), step.at_secs, 0.0, MAX_RUN_SECS);
                            if i == 0 && at != 0.0 {
                                c.problem(&format!("{key}.at_secs"), "the first step starts at 0");
                            }
                            if previous.is_some_and(|p| at <= p) {
                                c.problem(
                                    &format!("{key}.at_secs"),
                                    "steps must be in ascending order of at_secs",
                                );
                            }
                            previous = Some(at);
                            (at, c.rps(&format!("{key}.rps"), Some(step.rps), kind))
                        })
                        .collect();
                    RateShape::Stepped { steps }
                }
                "spike" => {
                    c.unused("rate.steps", &self.steps, kind);
                    let at_secs = self.spike_at_secs.unwrap_or_else(|| {
                        c.problem("rate.spike_at_secs", "required when kind = \"spike\"");
                        0.0
                    });
                    let secs = self.spike_secs.unwrap_or_else(|| {
                        c.problem("rate.spike_secs", "required when kind = \"spike\"");
                        1.0
                    });
                    RateShape::Spike {
                        rps: c.rps("rate.rps", self.rps, kind),
                        spike_rps: c.rps("rate.spike_rps", self.spike_rps, kind),
                        at_secs: c.range("rate.spike_at_secs", at_secs, 0.0, MAX_RUN_SECS),
                        secs: c.range("rate.spike_secs", secs, 0.001, MAX_RUN_SECS),
                    }
                }
                other => {
                    c.problem(
                        "rate.kind",
                        format_args!("\"{other}\" is not \"constant\", \"stepped\" or \"spike\""),
                    );
                    return None;
                }
            };
            Some(Rate { shape, arrivals })
        }
    }

    impl RequestFile {
        fn check(self, key: &str, c: &mut Checker<'_>) -> Option<RequestKind> {
            if self.weight == 0 {
                c.problem(&format!("{key}.weight"), "must be at least 1");
            }
            let method = match Method::from_bytes(self.method.as_bytes()) {
                Ok(method) if self.method.bytes().all(|b| b.is_ascii_uppercase()) => Some(method),
                _ => {
                    c.problem(
                        &format!("{key}.method"),
                        format_args!("\"{}\" is not an uppercase HTTP method", self.method),
                    );
                    None
                }
            };
            let path = match PathTemplate::parse(&self.path) {
                Ok(path) => Some(path),
                Err(err) => {
                    c.problem(&format!("{key}.path"), err);
                    None
                }
            };
            let body = match self.body_bytes {
                BodyFile::Fixed(bytes) => BodySize::Fixed(bytes),
                BodyFile::Range(range) => match range[..] {
                    [min, max] if min <= max => BodySize::Between(min, max),
                    _ => {
                        c.problem(
                            &format!("{key}.body_bytes"),
                            "a size, or [min, max] with min <= max",
                        );
                        BodySize::Fixed(0)
                    }
                },
            };
            let largest = match body {
                BodySize::Fixed(bytes) | BodySize::Between(_, bytes) => bytes,
            };
            if largest > MAX_BODY_BYTES {
                c.problem(
                    &format!("{key}.body_bytes"),
                    format_args!("{largest} is more than {MAX_BODY_BYTES}"),
                );
            }
            let mut headers = Vec::new();
            for (name, value) in &self.headers {
                let header_key = format!("{key}.headers.\"{name}\"");
                let name = match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) => name,
                    Err(_) => {
                        c.problem(&header_key, "not a header name");
                        continue;
                    }
                };
                if [
                    http::header::HOST,
                    http::header::CONTENT_LENGTH,
                    http::header::TRANSFER_ENCODING,
                    http::header::CONNECTION,
                ]
                .contains(&name)
                {
                    c.problem(&header_key, "set by the harness itself");
                    continue;
                }
                match HeaderValue::from_str(value) {
                    Ok(value) => headers.push((name, value)),
                    Err(_) => c.problem(&header_key, "not a header value (visible ASCII)"),
                }
            }
            Some(RequestKind {
                weight: self.weight,
                method: method?,
                path: path?,
                body,
                headers,
            })
        }
    }
}

#[cfg(test)]
mod tests;
