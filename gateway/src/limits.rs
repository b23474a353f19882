//! Rate limits of this gateway process: per tenant (the plan's
//! `rate_per_sec` and `burst`) and per client IP within a tenant (the
//! plan's `ip_rate_per_sec`).
//!
//! Both use GCRA, the generic cell rate algorithm: a limited key keeps one
//! number, its *theoretical arrival time* (TAT), and a request at `now` is
//! admitted when `TAT - now <= tolerance`, after which TAT becomes
//! `max(TAT, now) + 1/rate`. With `tolerance = burst / rate`, a rested
//! tenant may send `burst + 1` requests at once and then `rate` a second.
//! One atomic compare-and-swap per decision; no lock, no timer, no refill
//! task.
//!
//! - A tenant's TAT lives in an array indexed by the routed tenant's index
//!   in the snapshot ([`TenantLimits`]): no hashing on the request path. A
//!   new snapshot inherits each tenant's TAT by tenant id.
//! - A client IP's TAT lives in a concurrent map keyed by tenant and
//!   address ([`IpLimits`]), swept of rested entries every few seconds and
//!   capped in size: past the cap, new addresses are not tracked (admitted)
//!   and counted, so a flood of addresses cannot exhaust memory.
//!
//! The shared limits through Redis (issue 4's second part) will build on
//! these: each gateway keeps deciding locally, against a share of the rate.

use std::hash::BuildHasher;
use std::net::IpAddr;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::clock;
use http::HeaderValue;
use router::{Plan, RoutingTable, TenantRef};

/// One limit: a rate and the burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Requests per second, the policy's quota over a one-second window.
    pub rate_per_sec: u32,
    /// Time one request uses up.
    emission_ns: u64,
    /// How far ahead of now the TAT may run.
    tolerance_ns: u64,
}

/// What a limit decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; `remaining` more could be right now, and the quota is
    /// whole again after `reset`.
    Allowed {
        /// Requests that would still be admitted at this instant.
        remaining: u64,
        /// Until the limit is fully rested.
        reset: Duration,
    },
    /// Refused; a request is admitted again after `retry_after`.
    Limited {
        /// Until the next request would be admitted.
        retry_after: Duration,
    },
}

impl Gcra {
    /// `rate_per_sec` sustained (at least 1), `burst` more at once.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        let rate_per_sec = rate_per_sec.max(1);
        let emission_ns = 1_000_000_000 / u64::from(rate_per_sec);
        Self {
            rate_per_sec,
            emission_ns,
            tolerance_ns: emission_ns.saturating_mul(u64::from(burst)),
        }
    }

    /// Decides one request at `now` (see [`clock::now_ns`]) against the key's `tat`.
    pub fn check(&self, tat: &AtomicU64, now: u64) -> Decision {
        let mut current = tat.load(Ordering::Acquire);
        loop {
            let start = current.max(now);
            let ahead = start - now;
            if ahead > self.tolerance_ns {
                return Decision::Limited {
                    retry_after: Duration::from_nanos(ahead - self.tolerance_ns),
                };
            }
            let next = start + self.emission_ns;
            match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let room = (now + self.tolerance_ns).saturating_sub(next - self.emission_ns);
                    let remaining = if next <= now + self.tolerance_ns {
                        room / self.emission_ns
                    } else {
                        0
                    };
                    return Decision::Allowed {
                        remaining,
                        reset: Duration::from_nanos(next - now),
                    };
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// A policy's decision on one request, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The policy's name in the headers: `tenant` or `ip`.
    pub policy: &'static str,
    /// The limit applied.
    pub limit: Gcra,
    /// What it decided.
    pub decision: Decision,
}

impl Applied {
    /// Until a refused request would be admitted; `None` when admitted.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.decision {
            Decision::Limited { retry_after } => Some(retry_after),
            Decision::Allowed { .. } => None,
        }
    }
}

/// Whole seconds, rounded up, at least 1: the unit of `Retry-After` and
/// of the `t` parameter.
pub fn ceil_secs(d: Duration) -> u64 {
    (d.as_nanos().div_ceil(1_000_000_000) as u64).max(1)
}

/// The `RateLimit-Policy` and `RateLimit` header values
/// (draft-ietf-httpapi-ratelimit-headers-11) for the policies applied, e.g.
/// `"tenant";q=100;w=1` and `"tenant";r=42;t=1`. A refused policy shows
/// `r=0` and `t` = seconds until a request is admitted again.
pub fn header_values(applied: &[Applied]) -> (HeaderValue, HeaderValue) {
    let mut policy = Vec::with_capacity(48);
    let mut state = Vec::with_capacity(48);
    for (i, a) in applied.iter().enumerate() {
        if i > 0 {
            policy.extend_from_slice(b", ");
            state.extend_from_slice(b", ");
        }
        let (remaining, t) = match a.decision {
            Decision::Allowed { remaining, reset } => (remaining, ceil_secs(reset)),
            Decision::Limited { retry_after } => (0, ceil_secs(retry_after)),
        };
        let mut num = itoa::Buffer::new();
        for (out, key, value) in [
            (&mut policy, &b"\";q="[..], u64::from(a.limit.rate_per_sec)),
            (&mut state, &b"\";r="[..], remaining),
        ] {
            out.push(b'"');
            out.extend_from_slice(a.policy.as_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(num.format(value).as_bytes());
        }
        policy.extend_from_slice(b";w=1");
        state.extend_from_slice(b";t=");
        state.extend_from_slice(num.format(t).as_bytes());
    }
    let value = |bytes: Vec<u8>| {
        // Policy names and digits only: always a valid header value.
        HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    };
    (value(policy), value(state))
}

/// The tenant limit of `plan`.
pub fn tenant_limit(plan: &Plan) -> Gcra {
    Gcra::new(plan.rate_per_sec, plan.burst)
}

/// The per-IP limit of `plan`, if it has one: its rate, with a second's
/// worth of burst.
pub fn ip_limit(plan: &Plan) -> Option<Gcra> {
    plan.ip_rate_per_sec.map(|rate| Gcra::new(rate, rate))
}

/// Each tenant's TAT, by tenant index in one snapshot.
#[derive(Debug, Default)]
pub struct TenantLimits {
    tats: Box<[AtomicU64]>,
}

impl TenantLimits {
    /// TATs for every tenant of `table`, carried over by tenant id from
    /// `previous` (the table in force and its limits) so a reload neither
    /// forgets a busy tenant nor hands it a fresh burst.
    pub fn for_table(table: &RoutingTable, previous: Option<(&RoutingTable, &Self)>) -> Self {
        let tats = table
            .tenants()
            .map(|tenant| {
                let inherited = previous.and_then(|(old_table, old)| {
                    let old_tenant = old_table.tenant_by_id(tenant.id())?;
                    old.tats.get(old_tenant.index() as usize)
                });
                AtomicU64::new(inherited.map_or(0, |t| t.load(Ordering::Acquire)))
            })
            .collect();
        Self { tats }
    }

    /// Decides one request of `tenant` at `now`.
    pub fn check(&self, tenant: TenantRef<'_>, now: u64) -> Option<Applied> {
        let tat = self.tats.get(tenant.index() as usize)?;
        let limit = tenant_limit(tenant.plan());
        Some(Applied {
            policy: "tenant",
            limit,
            decision: limit.check(tat, now),
        })
    }
}

/// How many client addresses are tracked at most, over all tenants.
pub const MAX_TRACKED_IPS: usize = 1_000_000;

/// Per-client-IP TATs, keyed by tenant id and address.
#[derive(Debug)]
pub struct IpLimits {
    tats: DashMap<(u64, IpAddr), AtomicU64>,
    /// A hasher for tenant ids, so a key holds no string.
    ids: std::collections::hash_map::RandomState,
    max: usize,
    /// Requests from addresses not tracked because the map was full.
    untracked: AtomicUsize,
}

impl Default for IpLimits {
    fn default() -> Self {
        Self::with_capacity(MAX_TRACKED_IPS)
    }
}

impl IpLimits {
    /// Tracks at most `max` addresses.
    pub fn with_capacity(max: usize) -> Self {
        Self {
            tats: DashMap::new(),
            ids: std::collections::hash_map::RandomState::new(),
            max,
            untracked: AtomicUsize::new(0),
        }
    }

    /// Decides one request from `ip` to `tenant` at `now`, if the tenant's
    /// plan limits addresses.
    pub fn check(&self, tenant: TenantRef<'_>, ip: IpAddr, now: u64) -> Option<Applied> {
        let limit = ip_limit(tenant.plan())?;
        let applied = |decision| Applied {
            policy: "ip",
            limit,
            decision,
        };
        let key = (self.ids.hash_one(tenant.id()), ip);
        if let Some(tat) = self.tats.get(&key) {
            return Some(applied(limit.check(&tat, now)));
        }
        if self.tats.len() >= self.max {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let tat = self.tats.entry(key).or_insert_with(|| AtomicU64::new(0));
        Some(applied(limit.check(&tat, now)))
    }

    /// Forgets addresses whose limit has fully rested by `now`: they would
    /// start from scratch anyway.
    pub fn sweep(&self, now: u64) {
        self.tats.retain(|_, tat| tat.load(Ordering::Acquire) > now);
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.tats.len()
    }

    /// True when no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }

    /// Requests whose address went untracked because the map was full.
    pub fn untracked(&self) -> usize {
        self.untracked.load(Ordering::Relaxed)
    }
}

/// How often rested client addresses are forgotten.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Sweeps [`IpLimits`] every [`SWEEP_INTERVAL`] and reports its size.
#[derive(Debug)]
pub struct IpSweeper {
    limits: std::sync::Arc<IpLimits>,
    metrics: crate::metrics::Metrics,
}

impl IpSweeper {
    /// Sweeps `limits`.
    pub fn new(limits: std::sync::Arc<IpLimits>, metrics: crate::metrics::Metrics) -> Self {
        Self { limits, metrics }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for IpSweeper {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            let limits = self.limits.clone();
            let _ = tokio::task::spawn_blocking(move || limits.sweep(clock::now_ns())).await;
            self.metrics.tracked_ips(self.limits.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn allowed(d: Decision) -> bool {
        matches!(d, Decision::Allowed { .. })
    }

    #[test]
    fn a_rested_key_gets_burst_plus_one_then_the_rate() {
        let limit = Gcra::new(10, 5);
        let tat = AtomicU64::new(0);
        let now = 100 * SEC;
        let admitted = (0..20).filter(|_| allowed(limit.check(&tat, now))).count();
        assert_eq!(admitted, 6);
        // A tenth of a second later, exactly one more.
        let later = now + SEC / 10;
        assert!(allowed(limit.check(&tat, later)));
        assert!(!allowed(limit.check(&tat, later)));
    }

    #[test]
    fn remaining_counts_down_and_reset_grows() {
        let limit = Gcra::new(10, 2);
        let tat = AtomicU64::new(0);
        let now = 10 * SEC;
        let mut seen = Vec::new();
        for _ in 0..3 {
            match limit.check(&tat, now) {
                Decision::Allowed { remaining, reset } => seen.push((remaining, reset)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![2, 1, 0]);
        assert_eq!(seen[2].1, Duration::from_millis(300));
    }

    #[test]
    fn a_refusal_says_when_to_retry_and_changes_nothing() {
        let limit = Gcra::new(2, 0);
        let tat = AtomicU64::new(0);
        let now = 5 * SEC;
        assert!(allowed(limit.check(&tat, now)));
        let before = tat.load(Ordering::Relaxed);
        assert_eq!(
            limit.check(&tat, now + SEC / 4),
            Decision::Limited {
                retry_after: Duration::from_millis(250)
            }
        );
        assert_eq!(tat.load(Ordering::Relaxed), before);
        assert!(allowed(limit.check(&tat, now + SEC / 2)));
    }

    fn table(tenants: &[&str]) -> RoutingTable {
        let mut text = String::from(
            "version = 1\nregions = [{ name = \"eu\" }]\n\
             plans = [{ name = \"p\", rate_per_sec = 10, burst = 1, max_body_bytes = 1 }]\n\
             [[targets]]\nid = \"s\"\nkind = \"shard\"\nregion = \"eu\"\n\
             pools = { eu = [\"127.0.0.1:1\"] }\n",
        );
        for id in tenants {
            text.push_str(&format!(
                "[[tenants]]\nid = \"{id}\"\nslug = \"{id}\"\nplan = \"p\"\n\
                 region = \"eu\"\ntarget = \"s\"\n"
            ));
        }
        let snapshot = router::Snapshot::from_toml(&text).unwrap();
        RoutingTable::build(
            &snapshot,
            &router::BuildOptions {
                base_domains: vec![],
            },
        )
        .unwrap()
    }

    #[test]
    fn a_reload_carries_each_tenants_state_over_by_id() {
        let old_table = table(&["a", "b"]);
        let old = TenantLimits::for_table(&old_table, None);
        let now = 30 * SEC;
        let b = old_table.tenant_by_id("b").unwrap();
        assert!(allowed(old.check(b, now).unwrap().decision));
        assert!(allowed(old.check(b, now).unwrap().decision));
        assert!(!allowed(old.check(b, now).unwrap().decision));

        // b moves to another index; c is new.
        let new_table = table(&["c", "b", "a"]);
        let new = TenantLimits::for_table(&new_table, Some((&old_table, &old)));
        let b = new_table.tenant_by_id("b").unwrap();
        assert!(
            !allowed(new.check(b, now).unwrap().decision),
            "b keeps its spent quota"
        );
        let c = new_table.tenant_by_id("c").unwrap();
        assert!(allowed(new.check(c, now).unwrap().decision));
    }

    #[test]
    fn headers_follow_draft_11() {
        let tenant = Applied {
            policy: "tenant",
            limit: Gcra::new(100, 50),
            decision: Decision::Allowed {
                remaining: 42,
                reset: Duration::from_millis(300),
            },
        };
        let ip = Applied {
            policy: "ip",
            limit: Gcra::new(10, 10),
            decision: Decision::Limited {
                retry_after: Duration::from_millis(1500),
            },
        };
        let (policy, state) = header_values(&[tenant, ip]);
        assert_eq!(policy, r#""tenant";q=100;w=1, "ip";q=10;w=1"#);
        assert_eq!(state, r#""tenant";r=42;t=1, "ip";r=0;t=2"#);
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        // 1,000 requests a second offered for 10 s to a 100/s limit.
        let limit = Gcra::new(100, 20);
        let tat = AtomicU64::new(0);
        let start = 50 * SEC;
        let admitted = (0..10_000)
            .filter(|i| allowed(limit.check(&tat, start + i * SEC / 1000)))
            .count();
        assert!((1000..=1030).contains(&admitted), "{admitted}");
    }

    #[test]
    fn concurrent_callers_never_admit_more_than_the_limit() {
        let limit = Gcra::new(1000, 99);
        let tat = std::sync::Arc::new(AtomicU64::new(0));
        let now = 20 * SEC;
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let tat = tat.clone();
                    s.spawn(move || {
                        (0..1000)
                            .filter(|_| allowed(limit.check(&tat, now)))
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 100);
    }
}
