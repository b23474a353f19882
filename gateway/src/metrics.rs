//! The gateway's Prometheus metrics. Labels are bounded: status class,
//! region decision, error kind, held-write outcome, certificate source,
//! challenge kind and outcome, and the target only for shards (dedicated
//! clusters are one per tenant, so they share the label `dedicated`). No
//! label ever names a tenant or a hostname.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use router::{ChallengeKind, Locality, RoutingTable, TargetKind};

use crate::snapshot_file::LoadedTable;

/// Every metric of one gateway process.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by status class, target and region decision.
    requests: IntCounterVec,
    /// Errors the gateway answered itself, by kind.
    errors: IntCounterVec,
    /// Time from request header to the end of the response, for each of
    /// [`CLASSES`] (the `status_class` label), resolved once.
    duration_by_class: [Histogram; 6],
    /// Request counters of requests routed by no snapshot.
    unrouted: std::sync::Arc<TargetCounters>,
    /// Time from choosing a backend to its response header.
    upstream_duration: Histogram,
    /// Snapshot reloads by result (accepted, rejected).
    reloads: IntCounterVec,
    snapshot_version: IntGauge,
    tenants: IntGauge,
    domains: IntGauge,
    /// Completed TLS handshakes, by whether the client sent SNI.
    tls_handshakes: IntCounterVec,
    /// Per-host certificates in force by source (`dir`, `feed`); the
    /// default is not counted.
    certificates: IntGaugeVec,
    /// Certificates the feed's snapshots refer to that could not be
    /// loaded, by reason.
    certificate_fetch_failures: IntCounterVec,
    /// Seconds until the earliest expiry among the feed's certificates;
    /// set and exposed at each scrape, only while there is one.
    certificate_expiry: IntGauge,
    /// That earliest expiry (seconds since the Unix epoch), or `i64::MAX`.
    nearest_not_after: std::sync::Arc<AtomicI64>,
    /// HTTP challenges asked, by [`ChallengeKind`] and
    /// [`ChallengeOutcome`], resolved once.
    challenges: std::sync::Arc<[IntCounter; 6]>,
    /// Backends by state: healthy, unhealthy, circuit_open.
    backends: IntGaugeVec,
    /// Access-log lines dropped because the writer fell behind.
    access_log_dropped: prometheus::IntCounter,
    /// Rate-limit decisions: tenant allowed, tenant limited, ip allowed,
    /// ip limited (`policy` and `decision` labels), resolved once.
    rate_limits: std::sync::Arc<[IntCounter; 4]>,
    /// Client addresses whose per-IP limit is being tracked.
    tracked_ips: IntGauge,
    /// 1 while tenant limits are shared through Redis, 0 otherwise.
    limits_shared: IntGauge,
    /// Gateways sharing the limits, as last seen in Redis.
    live_gateways: IntGauge,
    /// Switches from shared to local limits.
    limit_fallbacks: IntCounter,
    /// Failed Redis operations, by operation.
    redis_errors: IntCounterVec,
    /// Responses of caching tenants by `x-cache` value, resolved once.
    cache_results: std::sync::Arc<[IntCounter; 5]>,
    /// Bytes and entries in the response cache.
    cache_bytes: IntGauge,
    cache_entries: IntGauge,
    /// Purges applied, by scope (tenant, paths) and origin (local, remote).
    cache_purges: IntCounterVec,
    /// Failed polls of tenant-admin's routing feed, by kind.
    feed_errors: IntCounterVec,
    /// 1 while the last poll of the routing feed was answered.
    feed_up: IntGauge,
    /// Writes to moving tenants whose hold ended, by [`HoldOutcome`]
    /// (the `outcome` label), resolved once.
    writes_held: std::sync::Arc<[IntCounter; 2]>,
    /// Writes to moving tenants being held now.
    writes_waiting: IntGauge,
}

/// How the hold of a write to a moving tenant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    /// A newer snapshot ended the move (whatever it decided: another
    /// target, suspended, deleted…) and the write was routed by it.
    Released = 0,
    /// The tenant was still moving when the hold ran out: 503.
    TimedOut = 1,
}

/// `outcome` labels, by [`HoldOutcome`] discriminant.
const HOLD_OUTCOMES: [&str; 2] = ["released", "timed_out"];

/// How a request for an HTTP challenge was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeOutcome {
    /// 200 with the published response.
    Answered = 0,
    /// 404: no such challenge (for this host).
    Unknown = 1,
    /// 405: a method other than GET or HEAD.
    MethodNotAllowed = 2,
}

/// `kind` labels of challenges.
const CHALLENGE_KINDS: [&str; 2] = ["acme-http01", "ownership"];
/// `outcome` labels, by [`ChallengeOutcome`] discriminant.
const CHALLENGE_OUTCOMES: [&str; 3] = ["answered", "unknown", "method_not_allowed"];

/// The `x-cache` values, in the order of `cache_results`.
const CACHE_RESULTS: [&str; 5] = ["HIT", "MISS", "BYPASS", "EXPIRED", "STALE"];

/// Latency buckets from 0.5 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    ///
    /// # Panics
    ///
    /// Never in practice: names and labels are constants, checked by the
    /// tests.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_requests_total",
                "Requests by status class, target and region decision",
            ),
            &["status_class", "target", "decision"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_errors_total",
                "Error responses the gateway produced, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_gateway_request_duration_seconds",
                "Request duration",
            )
            .buckets(BUCKETS.to_vec()),
            &["status_class"],
        )
        .expect("valid metric");
        let upstream_duration = Histogram::with_opts(
            HistogramOpts::new(
                "switchyard_gateway_upstream_duration_seconds",
                "Time from choosing a backend to its response header",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_snapshot_reloads_total",
                "Routing snapshot loads by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let snapshot_version = IntGauge::new(
            "switchyard_gateway_snapshot_version",
            "Version of the routing snapshot in force",
        )
        .expect("valid metric");
        let tenants = IntGauge::new(
            "switchyard_gateway_tenants",
            "Tenants in the snapshot in force",
        )
        .expect("valid metric");
        let domains = IntGauge::new(
            "switchyard_gateway_custom_domains",
            "Routable custom domains in the snapshot in force",
        )
        .expect("valid metric");
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_tls_handshakes_total",
                "Completed TLS handshakes",
            ),
            &["sni"],
        )
        .expect("valid metric");
        let certificates = IntGaugeVec::new(
            Opts::new(
                "switchyard_gateway_certificates",
                "Per-host TLS certificates in force, by source (dir: tls.cert_dir, feed: tenant-admin)",
            ),
            &["source"],
        )
        .expect("valid metric");
        let certificate_fetch_failures = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_certificate_fetch_failures_total",
                "Failed loads of certificates the routing snapshot refers to, by reason (connect, tls, timeout, http, body, auth, status_5xx, status_other, invalid, rejected, absent, internal, plain_http)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let certificate_expiry = IntGauge::new(
            "switchyard_gateway_certificate_expiry_seconds_min",
            "Seconds until the earliest expiry among the certificates from tenant-admin in force (absent when there is none)",
        )
        .expect("valid metric");
        let challenge_vec = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_challenges_total",
                "HTTP challenge requests, by kind (acme-http01, ownership) and outcome (answered, unknown, method_not_allowed)",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        let challenges = std::sync::Arc::new(std::array::from_fn(|i| {
            challenge_vec.with_label_values(&[
                CHALLENGE_KINDS[i / CHALLENGE_OUTCOMES.len()],
                CHALLENGE_OUTCOMES[i % CHALLENGE_OUTCOMES.len()],
            ])
        }));
        // Present from the start, so dashboards see 0 rather than nothing.
        for source in ["dir", "feed"] {
            certificates.with_label_values(&[source]).set(0);
        }
        let backends = IntGaugeVec::new(
            Opts::new(
                "switchyard_gateway_backends",
                "Backends of the snapshot in force, by state",
            ),
            &["state"],
        )
        .expect("valid metric");
        let access_log_dropped = prometheus::IntCounter::new(
            "switchyard_gateway_access_log_dropped_total",
            "Access-log lines dropped because the output fell behind",
        )
        .expect("valid metric");
        let rate_limit_vec = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_rate_limit_decisions_total",
                "Rate-limit decisions by policy (tenant, ip) and decision (allowed, limited)",
            ),
            &["policy", "decision"],
        )
        .expect("valid metric");
        let rate_limits = std::sync::Arc::new(
            [
                ("tenant", "allowed"),
                ("tenant", "limited"),
                ("ip", "allowed"),
                ("ip", "limited"),
            ]
            .map(|(policy, decision)| rate_limit_vec.with_label_values(&[policy, decision])),
        );
        let tracked_ips = IntGauge::new(
            "switchyard_gateway_rate_limit_tracked_ips",
            "Client addresses whose per-IP rate limit is being tracked",
        )
        .expect("valid metric");
        let limits_shared = IntGauge::new(
            "switchyard_gateway_rate_limit_shared",
            "1 while tenant rate limits are shared with other gateways through Redis",
        )
        .expect("valid metric");
        let live_gateways = IntGauge::new(
            "switchyard_gateway_rate_limit_gateways",
            "Gateways sharing tenant rate limits, as last seen in Redis",
        )
        .expect("valid metric");
        let limit_fallbacks = IntCounter::new(
            "switchyard_gateway_rate_limit_fallbacks_total",
            "Switches from limits shared through Redis to limits local to this gateway",
        )
        .expect("valid metric");
        let redis_errors = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_redis_errors_total",
                "Failed or timed-out Redis operations, by operation",
            ),
            &["operation"],
        )
        .expect("valid metric");
        let cache_vec = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_cache_responses_total",
                "Responses of tenants whose plan caches, by x-cache result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let cache_results = std::sync::Arc::new(
            CACHE_RESULTS.map(|r| cache_vec.with_label_values(&[&r.to_ascii_lowercase()])),
        );
        let cache_bytes = IntGauge::new(
            "switchyard_gateway_cache_bytes",
            "Bytes held by the response cache, headers and bookkeeping included",
        )
        .expect("valid metric");
        let cache_entries = IntGauge::new(
            "switchyard_gateway_cache_entries",
            "Responses held by the response cache",
        )
        .expect("valid metric");
        let cache_purges = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_cache_purges_total",
                "Cache purges applied, by scope (tenant, paths) and origin (local, remote)",
            ),
            &["scope", "origin"],
        )
        .expect("valid metric");
        let feed_errors = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_feed_errors_total",
                "Failed polls of tenant-admin's routing feed, by kind (connect, tls, timeout, http, body, auth, status_5xx, status_other)",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let feed_up = IntGauge::new(
            "switchyard_gateway_feed_up",
            "1 while tenant-admin's routing feed answers this gateway's polls, 0 while it does not",
        )
        .expect("valid metric");
        let writes_held_vec = IntCounterVec::new(
            Opts::new(
                "switchyard_gateway_writes_held_total",
                "Writes to moving tenants held for a newer routing snapshot, by outcome (released, timed_out)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let writes_held = std::sync::Arc::new(
            HOLD_OUTCOMES.map(|outcome| writes_held_vec.with_label_values(&[outcome])),
        );
        let writes_waiting = IntGauge::new(
            "switchyard_gateway_writes_waiting",
            "Writes to moving tenants being held now",
        )
        .expect("valid metric");
        for c in [
            Box::new(rate_limit_vec) as Box<dyn prometheus::core::Collector>,
            Box::new(writes_held_vec),
            Box::new(writes_waiting.clone()),
            Box::new(feed_errors.clone()),
            Box::new(feed_up.clone()),
            Box::new(cache_vec),
            Box::new(cache_bytes.clone()),
            Box::new(cache_entries.clone()),
            Box::new(cache_purges.clone()),
            Box::new(limits_shared.clone()),
            Box::new(live_gateways.clone()),
            Box::new(limit_fallbacks.clone()),
            Box::new(redis_errors.clone()),
            Box::new(tracked_ips.clone()),
            Box::new(requests.clone()),
            Box::new(errors.clone()),
            Box::new(request_duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(reloads.clone()),
            Box::new(snapshot_version.clone()),
            Box::new(tenants.clone()),
            Box::new(domains.clone()),
            Box::new(tls_handshakes.clone()),
            Box::new(certificates.clone()),
            Box::new(certificate_fetch_failures.clone()),
            Box::new(challenge_vec),
            Box::new(backends.clone()),
            Box::new(access_log_dropped.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            duration_by_class: CLASSES.map(|class| request_duration.with_label_values(&[class])),
            unrouted: std::sync::Arc::new(TargetCounters::new("none")),
            requests,
            errors,
            upstream_duration,
            reloads,
            snapshot_version,
            tenants,
            domains,
            tls_handshakes,
            certificates,
            certificate_fetch_failures,
            certificate_expiry,
            nearest_not_after: std::sync::Arc::new(AtomicI64::new(i64::MAX)),
            challenges,
            backends,
            access_log_dropped,
            rate_limits,
            tracked_ips,
            limits_shared,
            live_gateways,
            limit_fallbacks,
            redis_errors,
            cache_results,
            cache_bytes,
            cache_entries,
            cache_purges,
            feed_errors,
            feed_up,
            writes_held,
            writes_waiting,
        }
    }

    /// Counts a held write whose hold ended with `outcome`.
    pub fn write_held(&self, outcome: HoldOutcome) {
        self.writes_held[outcome as usize].inc();
    }

    /// Adds `delta` (1 or -1) to the writes held now.
    pub fn writes_waiting(&self, delta: i64) {
        self.writes_waiting.add(delta);
    }

    /// Counts a failed poll of the routing feed; `kind` is a constant
    /// (bounded label).
    pub fn feed_error(&self, kind: &'static str) {
        self.feed_errors.with_label_values(&[kind]).inc();
    }

    /// Records whether the routing feed answered the last poll.
    pub fn feed_up(&self, up: bool) {
        self.feed_up.set(i64::from(up));
    }

    /// Counts a response of a caching tenant by its `x-cache` value.
    pub fn cache_result(&self, status: &str) {
        if let Some(i) = CACHE_RESULTS.iter().position(|r| *r == status) {
            self.cache_results[i].inc();
        }
    }

    /// Records the response cache's size.
    pub fn cache_usage(&self, entries: usize, bytes: usize) {
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Counts a purge: of a whole tenant or of paths, asked here or
    /// through Redis.
    pub fn cache_purge(&self, whole_tenant: bool, remote: bool) {
        let scope = if whole_tenant { "tenant" } else { "paths" };
        let origin = if remote { "remote" } else { "local" };
        self.cache_purges.with_label_values(&[scope, origin]).inc();
    }

    /// Records whether limits are shared now, and by how many gateways.
    pub fn shared_limits(&self, shared: bool, gateways: u32) {
        self.limits_shared.set(i64::from(shared));
        self.live_gateways.set(i64::from(gateways));
    }

    /// Counts a switch from shared to local limits.
    pub fn shared_limits_fallback(&self) {
        self.limit_fallbacks.inc();
    }

    /// Counts a failed Redis `operation` (a constant: bounded label).
    pub fn redis_error(&self, operation: &'static str) {
        self.redis_errors.with_label_values(&[operation]).inc();
    }

    /// Counts a rate-limit decision of the `ip` or the tenant policy.
    pub fn rate_limit(&self, ip: bool, limited: bool) {
        self.rate_limits[usize::from(ip) * 2 + usize::from(limited)].inc();
    }

    /// Records how many client addresses are tracked.
    pub fn tracked_ips(&self, count: usize) {
        self.tracked_ips
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts an access-log line dropped under backpressure.
    pub fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }

    /// Records a completed TLS handshake.
    pub fn tls_handshake(&self, sni: bool) {
        self.tls_handshakes
            .with_label_values(&[if sni { "present" } else { "absent" }])
            .inc();
    }

    /// Records how many per-host certificates from `tls.cert_dir` are in
    /// force.
    pub fn dir_certificates(&self, count: usize) {
        self.certificates
            .with_label_values(&["dir"])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Records how many certificates from tenant-admin are in force, and
    /// the earliest expiry among them (seconds since the Unix epoch).
    pub fn feed_certificates(&self, count: usize, nearest_not_after: Option<i64>) {
        self.certificates
            .with_label_values(&["feed"])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        self.nearest_not_after
            .store(nearest_not_after.unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Counts a certificate (or a request for some) that could not be
    /// loaded; `reason` is a constant (bounded label).
    pub fn certificate_fetch_failure(&self, reason: &'static str) {
        self.certificate_fetch_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// Counts a request for an HTTP challenge.
    pub fn challenge(&self, kind: ChallengeKind, outcome: ChallengeOutcome) {
        let kind = match kind {
            ChallengeKind::AcmeHttp01 => 0,
            ChallengeKind::Ownership => 1,
        };
        self.challenges[kind * CHALLENGE_OUTCOMES.len() + outcome as usize].inc();
    }

    /// Records the backends of the snapshot in force by state.
    pub fn backends(&self, healthy: usize, unhealthy: usize, circuit_open: usize) {
        for (state, n) in [
            ("healthy", healthy),
            ("unhealthy", unhealthy),
            ("circuit_open", circuit_open),
        ] {
            self.backends
                .with_label_values(&[state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records a finished request, counted for `target` (the counters of
    /// the snapshot that routed it, or `None`).
    pub fn request(
        &self,
        status: u16,
        target: Option<&TargetCounters>,
        locality: Option<Locality>,
        duration: Duration,
    ) {
        let class = class_index(status);
        target
            .unwrap_or(&self.unrouted)
            .get(&self.requests, class, locality)
            .inc();
        self.duration_by_class[class].observe(duration.as_secs_f64());
    }

    /// Request counters for every target of `table`, for the table's life.
    pub fn counters_for(&self, table: &RoutingTable) -> RequestCounters {
        RequestCounters(
            table
                .targets()
                .iter()
                .map(|t| {
                    let label = match t.kind {
                        TargetKind::Shard => t.id.as_str(),
                        TargetKind::Dedicated => "dedicated",
                    };
                    TargetCounters::new(label)
                })
                .collect(),
        )
    }

    /// Records an error response the gateway produced.
    pub fn error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    /// Records an upstream's time to response header.
    pub fn upstream(&self, duration: Duration) {
        self.upstream_duration.observe(duration.as_secs_f64());
    }

    /// Records an accepted snapshot and its size, and gives it its request
    /// counters.
    pub fn snapshot_accepted(&self, loaded: &mut LoadedTable) {
        loaded.counters = self.counters_for(&loaded.table);
        self.reloads.with_label_values(&["accepted"]).inc();
        self.snapshot_version
            .set(i64::try_from(loaded.table.version()).unwrap_or(i64::MAX));
        self.tenants
            .set(i64::try_from(loaded.table.tenant_count()).unwrap_or(i64::MAX));
        self.domains
            .set(i64::try_from(loaded.table.domain_count()).unwrap_or(i64::MAX));
    }

    /// Records a rejected snapshot.
    pub fn snapshot_rejected(&self) {
        self.reloads.with_label_values(&["rejected"]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut families = self.registry.gather();
        let nearest = self.nearest_not_after.load(Ordering::Relaxed);
        if nearest != i64::MAX {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            self.certificate_expiry.set(nearest.saturating_sub(now));
            families.extend(prometheus::core::Collector::collect(
                &self.certificate_expiry,
            ));
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&families, &mut out);
        out
    }
}

/// Status class labels; the last is for requests that sent no status.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
/// Region decision labels, by [`decision_index`].
const DECISIONS: [&str; 3] = ["local", "cross_region", "none"];

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 5,
    }
}

fn decision_index(locality: Option<Locality>) -> usize {
    match locality {
        Some(Locality::Local) => 0,
        Some(Locality::CrossRegion) => 1,
        None => 2,
    }
}

/// One target label's request counters, each resolved from the vector on
/// first use: after that, counting a request is one atomic add, with no
/// label hashing and no read lock shared by every worker thread.
#[derive(Debug)]
pub struct TargetCounters {
    label: Box<str>,
    slots: [OnceLock<IntCounter>; CLASSES.len() * DECISIONS.len()],
}

impl TargetCounters {
    fn new(label: &str) -> Self {
        Self {
            label: label.into(),
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn get(
        &self,
        requests: &IntCounterVec,
        class: usize,
        locality: Option<Locality>,
    ) -> &IntCounter {
        let decision = decision_index(locality);
        self.slots[class * DECISIONS.len() + decision].get_or_init(|| {
            requests.with_label_values(&[CLASSES[class], &self.label, DECISIONS[decision]])
        })
    }
}

/// The request counters of one snapshot, by target index.
#[derive(Debug, Default)]
pub struct RequestCounters(Vec<TargetCounters>);

impl RequestCounters {
    /// The counters of target `index`.
    pub fn target(&self, index: u32) -> Option<&TargetCounters> {
        self.0.get(index as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &Metrics) -> String {
        String::from_utf8(metrics.render()).unwrap()
    }

    #[test]
    fn certificates_are_counted_by_source_and_the_nearest_expiry_only_when_there_is_one() {
        let metrics = Metrics::new();
        let out = text(&metrics);
        for line in [
            "switchyard_gateway_certificates{source=\"dir\"} 0",
            "switchyard_gateway_certificates{source=\"feed\"} 0",
        ] {
            assert!(out.contains(line), "missing {line:?} in:\n{out}");
        }
        assert!(!out.contains("expiry_seconds_min"), "{out}");

        let in_a_day = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 86_400;
        metrics.dir_certificates(2);
        metrics.feed_certificates(3, Some(in_a_day));
        metrics.certificate_fetch_failure("absent");
        let out = text(&metrics);
        assert!(
            out.contains("switchyard_gateway_certificates{source=\"dir\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("switchyard_gateway_certificates{source=\"feed\"} 3"),
            "{out}"
        );
        assert!(
            out.contains(
                "switchyard_gateway_certificate_fetch_failures_total{reason=\"absent\"} 1"
            ),
            "{out}"
        );
        let expiry: i64 = out
            .lines()
            .find_map(|l| l.strip_prefix("switchyard_gateway_certificate_expiry_seconds_min "))
            .expect("the expiry gauge")
            .parse()
            .unwrap();
        assert!((86_300..=86_400).contains(&expiry), "{expiry}");

        metrics.feed_certificates(0, None);
        assert!(!text(&metrics).contains("expiry_seconds_min"));
    }

    #[test]
    fn challenges_are_counted_by_kind_and_outcome() {
        let metrics = Metrics::new();
        metrics.challenge(ChallengeKind::AcmeHttp01, ChallengeOutcome::Answered);
        metrics.challenge(ChallengeKind::Ownership, ChallengeOutcome::Unknown);
        metrics.challenge(ChallengeKind::Ownership, ChallengeOutcome::MethodNotAllowed);
        let out = text(&metrics);
        for line in [
            "switchyard_gateway_challenges_total{kind=\"acme-http01\",outcome=\"answered\"} 1",
            "switchyard_gateway_challenges_total{kind=\"acme-http01\",outcome=\"unknown\"} 0",
            "switchyard_gateway_challenges_total{kind=\"ownership\",outcome=\"unknown\"} 1",
            "switchyard_gateway_challenges_total{kind=\"ownership\",outcome=\"method_not_allowed\"} 1",
        ] {
            assert!(out.contains(line), "missing {line:?} in:\n{out}");
        }
    }
}
