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
//! With Redis, limits are shared across gateways without a round trip per
//! request: each gateway keeps deciding locally, against its *share* of
//! each tenant's rate, and [`crate::shared_limits`] resets the shares a
//! few times a second from every gateway's demand. A share scales the
//! emission interval only: the tolerance (burst / rate, in time) stays the
//! plan's, so the shares of all gateways add up to the plan's rate and
//! burst.

use std::hash::BuildHasher;
use std::net::IpAddr;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
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

    /// This limit for a gateway holding `share` millionths of it: the same
    /// tolerance in time, a longer emission interval.
    pub fn scaled(self, share: u32) -> Self {
        if share >= WHOLE {
            return self;
        }
        let emission = u128::from(self.emission_ns) * u128::from(WHOLE) / u128::from(share.max(1));
        Self {
            emission_ns: u64::try_from(emission).unwrap_or(u64::MAX / 4),
            ..self
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

/// A whole limit, in millionths: the share of a gateway limiting alone.
pub const WHOLE: u32 = 1_000_000;

/// Sharing state common to every snapshot's [`TenantLimits`] of one
/// process.
#[derive(Debug)]
pub struct Sharing {
    /// The share of tenants without one of their own, in millionths.
    base: AtomicU32,
    /// Whether requests are counted for the shared-limit sync.
    counting: AtomicBool,
}

impl Default for Sharing {
    fn default() -> Self {
        Self {
            base: AtomicU32::new(WHOLE),
            counting: AtomicBool::new(false),
        }
    }
}

impl Sharing {
    /// Starts counting each tenant's requests for the sync.
    pub fn start_counting(&self) {
        self.counting.store(true, Ordering::Relaxed);
    }

    /// Sets the share of every tenant without one of its own.
    pub fn set_base(&self, share: u32) {
        self.base.store(share.clamp(1, WHOLE), Ordering::Relaxed);
    }

    /// The share of every tenant without one of its own.
    pub fn base(&self) -> u32 {
        self.base.load(Ordering::Relaxed)
    }
}

/// Each tenant's TAT, by tenant index in one snapshot, with this
/// gateway's share of the tenant's rate and the requests it offered since
/// the last sync.
#[derive(Debug, Default)]
pub struct TenantLimits {
    tats: Box<[AtomicU64]>,
    /// Millionths of the plan's rate; 0 = the [`Sharing`] base.
    shares: Box<[AtomicU32]>,
    /// Requests since the last sync, when counting.
    offered: Box<[AtomicU32]>,
    /// Indexes whose `offered` went from 0 to 1 since the last sync.
    active: Mutex<Vec<u32>>,
    sharing: Arc<Sharing>,
}

impl TenantLimits {
    /// TATs for every tenant of `table`, carried over by tenant id from
    /// `previous` (the table in force and its limits) so a reload neither
    /// forgets a busy tenant nor hands it a fresh burst. Shares carry over
    /// too; the [`Sharing`] state is the previous one's, or a new one.
    pub fn for_table(table: &RoutingTable, previous: Option<(&RoutingTable, &Self)>) -> Self {
        let count = table.tenant_count();
        let mut tats = Vec::with_capacity(count);
        let mut shares = Vec::with_capacity(count);
        for tenant in table.tenants() {
            let inherited = previous.and_then(|(old_table, old)| {
                let i = old_table.tenant_by_id(tenant.id())?.index() as usize;
                Some((old.tats.get(i)?, old.shares.get(i)?))
            });
            let (tat, share) = inherited.map_or((0, 0), |(t, s)| {
                (t.load(Ordering::Acquire), s.load(Ordering::Relaxed))
            });
            tats.push(AtomicU64::new(tat));
            shares.push(AtomicU32::new(share));
        }
        Self {
            tats: tats.into(),
            shares: shares.into(),
            offered: (0..count).map(|_| AtomicU32::new(0)).collect(),
            active: Mutex::default(),
            sharing: previous.map_or_else(Arc::default, |(_, old)| old.sharing.clone()),
        }
    }

    /// The sharing state these limits follow.
    pub fn sharing(&self) -> &Arc<Sharing> {
        &self.sharing
    }

    /// Decides one request of `tenant` at `now`.
    pub fn check(&self, tenant: TenantRef<'_>, now: u64) -> Option<Applied> {
        let index = tenant.index() as usize;
        let tat = self.tats.get(index)?;
        let limit = tenant_limit(tenant.plan());
        if self.sharing.counting.load(Ordering::Relaxed)
            && self.offered[index].fetch_add(1, Ordering::Relaxed) == 0
        {
            self.active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(index as u32);
        }
        Some(Applied {
            policy: "tenant",
            limit,
            decision: limit.scaled(self.share(index)).check(tat, now),
        })
    }

    fn share(&self, index: usize) -> u32 {
        match self.shares[index].load(Ordering::Relaxed) {
            0 => self.sharing.base(),
            own => own,
        }
    }

    /// Takes the requests each tenant offered since the last call, as
    /// (tenant index, count) pairs.
    pub fn take_offered(&self) -> Vec<(u32, u32)> {
        let active = std::mem::take(
            &mut *self
                .active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        active
            .into_iter()
            .map(|i| (i, self.offered[i as usize].swap(0, Ordering::Relaxed)))
            .collect()
    }

    /// Gives the tenant at `index` `share` millionths of its plan's rate
    /// (0: back to the base share), rescaling the debt it has run up so
    /// that it means the same number of requests under the new share.
    pub fn set_share(&self, index: u32, share: u32, now: u64) {
        let index = index as usize;
        let (Some(slot), Some(tat)) = (self.shares.get(index), self.tats.get(index)) else {
            return;
        };
        let before = self.share(index);
        slot.store(share.min(WHOLE), Ordering::Relaxed);
        let after = self.share(index);
        if before == after {
            return;
        }
        let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
            let debt = t.checked_sub(now).filter(|d| *d > 0)?;
            let scaled = u128::from(debt) * u128::from(before) / u128::from(after.max(1));
            Some(
                now + u64::try_from(scaled)
                    .unwrap_or(u64::MAX / 4)
                    .min(u64::MAX / 4),
            )
        });
    }

    /// The tenant at `index`'s share in millionths, for tests and metrics.
    pub fn share_of(&self, index: u32) -> Option<u32> {
        let index = index as usize;
        (index < self.shares.len()).then(|| self.share(index))
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
    fn a_share_scales_the_rate_and_a_new_share_rescales_the_debt() {
        let t = table(&["a"]);
        let limits = TenantLimits::for_table(&t, None);
        let a = t.tenant_by_id("a").unwrap();
        let now = 40 * SEC;
        // Half of 10/s, burst 1: tolerance 0.1 s, emission 0.2 s.
        limits.set_share(a.index(), WHOLE / 2, now);
        let admitted = (0..10)
            .filter(|_| allowed(limits.check(a, now).unwrap().decision))
            .count();
        assert_eq!(admitted, 1);
        // The 0.2 s of debt is one request at half the rate; at the whole
        // rate that request is 0.1 s of debt, so the burst fits one more.
        limits.set_share(a.index(), WHOLE, now);
        assert_eq!(limits.share_of(a.index()), Some(WHOLE));
        assert!(allowed(limits.check(a, now).unwrap().decision));
        assert!(!allowed(limits.check(a, now).unwrap().decision));
        // Counting is off until the sync starts it.
        assert!(limits.take_offered().is_empty());
        limits.sharing().start_counting();
        limits.check(a, now);
        limits.check(a, now);
        assert_eq!(limits.take_offered(), vec![(a.index(), 2)]);
        assert!(limits.take_offered().is_empty());
        // The base share applies to tenants without one.
        limits.set_share(a.index(), 0, now);
        limits.sharing().set_base(WHOLE / 4);
        assert_eq!(limits.share_of(a.index()), Some(WHOLE / 4));
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
