//! Upstream backends: a Pingora load balancer (weighted round robin) per
//! target pool, one shared health-check service for every backend, and a
//! circuit breaker per backend.
//!
//! Balancers are rebuilt with each routing snapshot, but health state and
//! breakers belong to the backend *address*: they live in one
//! [`HealthRegistry`] and one [`BackendState`] map for the whole process, so a
//! backend that appears in several pools or survives a snapshot reload is
//! checked once and remembers its failures. Hundreds of pools cost no
//! threads: the single [`HealthCheckService`] probes every address.
//!
//! A breaker opens after `circuit_failures` consecutive failures (connect
//! errors, timeouts, broken responses), rejects the backend for
//! `circuit_open`, then lets exactly one request through as a half-open
//! probe: its success closes the circuit, its failure opens it again.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, HealthCheckService, HealthRegistry, LoadBalancer};
use router::RoutingTable;

use crate::config::UpstreamConfig;
use crate::snapshot_file::LoadedTable;

/// One backend's circuit breaker. Lock-free: the request path only touches
/// atomics. Methods take the time so tests can drive the clock.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for_ms: u64,
    failures: AtomicU32,
    /// 0 when closed; otherwise when the open period ends.
    open_until: AtomicU64,
    /// A half-open probe is in flight.
    probing: AtomicBool,
}

/// What a breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the open period ends.
    Open,
    /// The open period ended: one probe may go through.
    HalfOpen,
}

impl Breaker {
    /// A closed breaker opening after `threshold` consecutive failures for
    /// `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for_ms: open_for.as_millis() as u64,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: u64) -> BreakerState {
        match self.open_until.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            until if now < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go to this backend at `now`. In the half-open
    /// state only the first caller gets through (it becomes the probe).
    pub fn allow(&self, now: u64) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
        }
    }

    /// The backend answered: close the circuit.
    pub fn success(&self) {
        // The common case, a closed breaker with no failures, only reads:
        // stores would bounce the cache line between worker threads.
        if self.failures.load(Ordering::Acquire) == 0
            && self.open_until.load(Ordering::Acquire) == 0
            && !self.probing.load(Ordering::Acquire)
        {
            return;
        }
        self.failures.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    /// The backend failed at `now`: count it, and open the circuit at the
    /// threshold or when a half-open probe failed.
    pub fn failure(&self, now: u64) {
        let probe_failed = self.probing.swap(false, Ordering::AcqRel);
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if probe_failed || failures >= self.threshold {
            self.open_until
                .store(now + self.open_for_ms.max(1), Ordering::Release);
        }
    }
}

/// What the process keeps per backend address, shared by every pool and
/// snapshot that names it: the circuit breaker and the address as logged.
#[derive(Debug)]
pub struct BackendState {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `addr` as text, formatted once for the access log.
    pub label: Box<str>,
    /// Its circuit breaker.
    pub breaker: Breaker,
}

/// One target pool: its balancer and the state of each of its backends.
pub struct Pool {
    lb: LoadBalancer<RoundRobin>,
    /// A handful per pool: a scan beats a hash.
    backends: Box<[Arc<BackendState>]>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// The state of the pool's backend at `addr`.
    fn state(&self, addr: &SocketAddr) -> Option<&Arc<BackendState>> {
        self.backends.iter().find(|b| b.addr == *addr)
    }

    /// The next backend by weighted round robin that is healthy, whose
    /// circuit lets a request through at `now` (or makes this request its
    /// half-open probe), and that is not `tried`.
    pub fn select(&self, tried: Option<SocketAddr>, now: u64) -> Option<Arc<BackendState>> {
        let chosen = self.lb.select_with(b"", 64, |b, healthy| {
            healthy
                && b.addr.as_inet().is_some_and(|addr| {
                    Some(*addr) != tried
                        && self
                            .state(addr)
                            .is_none_or(|state| state.breaker.allow(now))
                })
        })?;
        self.state(chosen.addr.as_inet()?).cloned()
    }
}

/// The pool balancers of one routing snapshot, indexed by target and region.
#[derive(Default)]
pub struct Balancers {
    regions: usize,
    pools: Vec<Option<Pool>>,
}

impl std::fmt::Debug for Balancers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancers")
            .field("pools", &self.pools.iter().flatten().count())
            .finish()
    }
}

impl Balancers {
    /// Distinct backends by state: (healthy, unhealthy, circuit open at `now`).
    /// A backend is counted once even when several pools share it.
    pub fn census(&self, now: u64) -> (usize, usize, usize) {
        let mut seen = std::collections::HashSet::new();
        let (mut healthy, mut unhealthy, mut open) = (0, 0, 0);
        for pool in self.pools.iter().flatten() {
            let backends = pool.lb.backends();
            for b in backends.get_backend().iter() {
                if !seen.insert(b.addr.clone()) {
                    continue;
                }
                let breaker_open = b
                    .addr
                    .as_inet()
                    .and_then(|addr| pool.state(addr))
                    .is_some_and(|state| state.breaker.state(now) == BreakerState::Open);
                if breaker_open {
                    open += 1;
                } else if backends.ready(b) {
                    healthy += 1;
                } else {
                    unhealthy += 1;
                }
            }
        }
        (healthy, unhealthy, open)
    }

    /// The pool of target `target` in region `region`.
    pub fn get(&self, target: u32, region: usize) -> Option<&Pool> {
        self.pools
            .get(target as usize * self.regions + region)
            .and_then(Option::as_ref)
    }
}

/// Health and breakers for every backend of the process.
pub struct Upstreams {
    registry: Arc<HealthRegistry>,
    backends: Mutex<HashMap<SocketAddr, Arc<BackendState>>>,
    config: UpstreamConfig,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    /// Health checks by TCP connect with the configured connect timeout.
    pub fn new(config: UpstreamConfig) -> Self {
        let registry = Arc::new(HealthRegistry::new());
        let mut check = TcpHealthCheck::new();
        check.consecutive_failure = 1;
        check.consecutive_success = 1;
        check.peer_template.options.connection_timeout = Some(config.connect_timeout);
        registry.set_health_check(check);
        Self {
            registry,
            backends: Mutex::new(HashMap::new()),
            config,
        }
    }

    /// The one background service that probes every backend.
    pub fn health_service(&self) -> HealthCheckService {
        let mut service = HealthCheckService::new(self.registry.clone());
        service.health_check_frequency = Some(self.config.health_check_interval);
        service.parallel_health_check = true;
        service
    }

    fn backend_state(&self, addr: SocketAddr) -> Arc<BackendState> {
        let mut backends = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        backends
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(BackendState {
                    addr,
                    label: addr.to_string().into_boxed_str(),
                    breaker: Breaker::new(self.config.circuit_failures, self.config.circuit_open),
                })
            })
            .clone()
    }

    /// Gives `loaded` a balancer for each of its pools, returning what could
    /// not be set up (backends that do not resolve).
    pub fn attach(&self, loaded: &mut LoadedTable) -> Vec<String> {
        let (balancers, problems) = self.balancers(&loaded.table);
        loaded.balancers = balancers;
        problems
    }

    /// Builds the balancers of every pool of `table`. Backend hostnames are
    /// resolved here, once per snapshot, never on the request path; one
    /// that does not resolve is left out and reported.
    pub fn balancers(&self, table: &RoutingTable) -> (Balancers, Vec<String>) {
        let regions = table.regions().len();
        let mut problems = Vec::new();
        let mut pools = Vec::with_capacity(table.targets().len() * regions);
        for target in table.targets() {
            for r in 0..regions {
                let region = table.region(table.regions()[r].as_str());
                let Some(pool) = region.and_then(|r| target.pool(r)) else {
                    pools.push(None);
                    continue;
                };
                let mut backends = std::collections::BTreeSet::new();
                let mut states = Vec::with_capacity(pool.backends.len());
                for b in pool.backends.iter() {
                    let addr = match b.addr.to_socket_addrs().map(|mut a| a.next()) {
                        Ok(Some(addr)) => addr,
                        _ => {
                            problems.push(format!(
                                "target {} pool {}: backend {} does not resolve",
                                target.id, pool.region, b.addr
                            ));
                            continue;
                        }
                    };
                    backends.insert(Backend {
                        addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
                        weight: b.weight as usize,
                        ext: Default::default(),
                    });
                    if states.iter().all(|s: &Arc<BackendState>| s.addr != addr) {
                        states.push(self.backend_state(addr));
                    }
                }
                let view = Backends::new_with_health_registry(
                    Static::new(backends),
                    self.registry.clone(),
                );
                let lb = LoadBalancer::<RoundRobin>::from_backends(view);
                // Static discovery completes at once.
                if let Some(Err(e)) = lb.update().now_or_never() {
                    problems.push(format!("target {} pool {}: {e}", target.id, pool.region));
                }
                pools.push(Some(Pool {
                    lb,
                    backends: states.into_boxed_slice(),
                }));
            }
        }
        (Balancers { regions, pools }, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_consecutive_failures() {
        let b = Breaker::new(3, Duration::from_secs(10));
        b.failure(0);
        b.failure(1);
        assert_eq!(b.state(2), BreakerState::Closed);
        b.success();
        b.failure(3);
        b.failure(4);
        assert!(b.allow(5), "a success resets the count");
        b.failure(5);
        assert_eq!(b.state(6), BreakerState::Open);
        assert!(!b.allow(6));
        assert!(!b.allow(10_004));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_result_decides() {
        let b = Breaker::new(1, Duration::from_millis(100));
        b.failure(0);
        assert!(!b.allow(50));
        assert_eq!(b.state(100), BreakerState::HalfOpen);
        assert!(
            b.allow(100),
            "the first request after the open period is the probe"
        );
        assert!(!b.allow(101), "only one probe at a time");
        b.failure(120);
        assert_eq!(
            b.state(150),
            BreakerState::Open,
            "a failed probe opens again"
        );
        assert!(b.allow(220));
        b.success();
        assert_eq!(b.state(221), BreakerState::Closed);
        assert!(b.allow(221) && b.allow(222));
    }
}
