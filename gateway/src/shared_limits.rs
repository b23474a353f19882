//! Tenant rate limits shared by every gateway on one Redis, without a
//! Redis round trip per request.
//!
//! # Design
//!
//! Each gateway keeps deciding every request locally, with the GCRA of
//! [`crate::limits`], against its *share* of the tenant's rate. Every
//! [`SYNC_INTERVAL`] one background task per gateway
//!
//! 1. takes the requests each tenant offered here since the last sync
//!    (admitted or not: demand, not admissions) and folds them into a
//!    per-tenant moving average, in requests per second;
//! 2. sends all of them in one script call ([`SYNC_SCRIPT`]) that, inside
//!    Redis and atomically, records this gateway as live, stores its demand
//!    per tenant, forgets what no gateway refreshed within [`STALE`], and
//!    returns the number of live gateways `N` and each tenant's total
//!    demand `D` over all gateways;
//! 3. gives each tenant the share `(d + 1) / (D + N)` of its plan here,
//!    where `d` is this gateway's demand: the shares of all gateways add up
//!    to one, so together they admit the plan's rate, split as the traffic
//!    is split. A tenant without traffic here gets `1 / N`.
//!
//! The cost on the request path is one relaxed atomic add per request; the
//! cost on Redis is one script call per gateway per interval, whatever
//! the request rate.
//!
//! # When Redis fails
//!
//! A sync that fails or takes longer than [`SYNC_TIMEOUT`] switches the
//! gateway to local limits at once: every tenant gets `1 / N` of its plan,
//! with `N` the number of live gateways last seen, or the whole plan if
//! Redis was never reached. The switch is logged once and counted in
//! `switchyard_gateway_rate_limit_fallbacks_total`; the sync keeps trying
//! every interval (the connection reconnects by itself) and the first
//! success restores shared limits, logged once too. No request ever waits
//! for Redis.
//!
//! Per-client-IP limits stay local to each gateway: a client's connection
//! stays on one gateway, and keeping up to a million addresses per
//! gateway in Redis would cost a round trip or a flood of writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::clock;
use crate::limits::{TenantLimits, WHOLE};
use crate::metrics::Metrics;
use crate::redis_link::{self, Outage, PREFIX};
use crate::state::RoutingState;

/// How often each gateway syncs with Redis.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// A sync slower than this counts as a failure.
pub const SYNC_TIMEOUT: Duration = Duration::from_millis(300);

/// A gateway, or a gateway's demand for a tenant, not refreshed for this
/// long is forgotten.
pub const STALE: Duration = Duration::from_secs(1);

/// The weight of the newest interval in each tenant's moving average of
/// demand: a half-life of one interval.
const SMOOTHING: f64 = 0.5;

/// Below this demand (requests per second) a tenant is no longer tracked
/// here and falls back to the base share.
const IDLE: f64 = 0.05;

/// The Redis script of one sync.
///
/// `KEYS[1]` is the sorted set of live gateways (score: last sync, in ms of
/// Redis time); `KEYS[2..]` are one hash per tenant (field: gateway id,
/// value: `"<demand> <ms>"`). `ARGV[1]` is this gateway's id, `ARGV[2]` the
/// staleness in ms, `ARGV[3..]` the demands matching `KEYS[2..]`. Returns
/// the live gateway count followed by each tenant's total demand, all as
/// strings.
pub const SYNC_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local stale = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - stale)
redis.call('PEXPIRE', KEYS[1], stale * 10)
local out = { tostring(redis.call('ZCARD', KEYS[1])) }
for i = 2, #KEYS do
  local key = KEYS[i]
  redis.call('HSET', key, id, ARGV[i + 1] .. ' ' .. now)
  redis.call('PEXPIRE', key, stale * 2)
  local total = 0
  local fields = redis.call('HGETALL', key)
  for j = 1, #fields, 2 do
    local demand, at = string.match(fields[j + 1], '^(%S+) (%d+)$')
    if demand and tonumber(at) >= now - stale then
      total = total + tonumber(demand)
    else
      redis.call('HDEL', key, fields[j])
    end
  end
  out[#out + 1] = tostring(total)
end
return out
";

/// What a sync learned from Redis.
#[derive(Debug, Clone, PartialEq)]
struct Totals {
    live: u32,
    /// Total demand per tenant, in the order sent.
    demand: Vec<f64>,
}

/// The shares of every tracked tenant, from one sync's totals.
///
/// `own` is this gateway's demand per tenant, `totals` the sums over all
/// live gateways; each share is in millionths of the plan.
fn shares(own: &[f64], totals: &Totals) -> Vec<u32> {
    let live = f64::from(totals.live.max(1));
    own.iter()
        .zip(&totals.demand)
        .map(|(&mine, &all)| {
            // Our own demand is in the total unless Redis lost it since.
            let all = all.max(mine);
            let share = (mine + 1.0) / (all + live);
            (share * f64::from(WHOLE))
                .round()
                .clamp(1.0, f64::from(WHOLE)) as u32
        })
        .collect()
}

/// The background task that keeps this gateway's tenant limits in step
/// with every other gateway on the same Redis.
pub struct SharedLimits {
    url: String,
    id: String,
    state: Arc<RoutingState>,
    metrics: Metrics,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("SharedLimits")
            .field("id", &self.id)
            .finish()
    }
}

impl SharedLimits {
    /// Shares the limits of the tables in `state` through the Redis at
    /// `url`, as the gateway `id` (see [`redis_link::gateway_id`]).
    pub fn new(url: String, id: String, state: Arc<RoutingState>, metrics: Metrics) -> Self {
        Self {
            url,
            id,
            state,
            metrics,
        }
    }
}

/// The sync loop's memory across intervals.
#[derive(Debug, Default)]
struct Tracker {
    /// Each tracked tenant's demand here, in requests per second, by id.
    demand: HashMap<String, f64>,
    /// Live gateways at the last successful sync, if any.
    live: Option<u32>,
    /// Live counts of the syncs within [`STALE`], to smooth restarts: a
    /// Redis that comes back empty sees one gateway until the others sync.
    recent: std::collections::VecDeque<(std::time::Instant, u32)>,
    /// Whether syncs are failing.
    outage: Outage,
}

/// The most gateways seen live within [`STALE`] in `recent`, counting
/// `live` now.
fn smoothed_live(
    recent: &mut std::collections::VecDeque<(std::time::Instant, u32)>,
    live: u32,
) -> u32 {
    let now = std::time::Instant::now();
    recent.push_back((now, live));
    while recent
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > STALE)
    {
        recent.pop_front();
    }
    recent.iter().map(|(_, n)| *n).max().unwrap_or(live)
}

impl Tracker {
    /// Folds the requests offered since the last sync into the averages
    /// and drops tenants gone idle, returning their ids.
    fn fold(&mut self, limits: &TenantLimits, table: &router::RoutingTable) -> Vec<String> {
        let per_sec = 1.0 / SYNC_INTERVAL.as_secs_f64();
        let mut fresh: HashMap<&str, f64> = HashMap::new();
        for (index, count) in limits.take_offered() {
            if let Some(tenant) = table.tenant(index) {
                *fresh.entry(tenant.id()).or_default() += f64::from(count) * per_sec;
            }
        }
        for (id, rate) in &fresh {
            self.demand.entry((*id).to_owned()).or_insert(*rate);
        }
        let mut idle = Vec::new();
        self.demand.retain(|id, avg| {
            let now = fresh.get(id.as_str()).copied().unwrap_or(0.0);
            *avg = SMOOTHING * now + (1.0 - SMOOTHING) * *avg;
            let keep = *avg >= IDLE;
            if !keep {
                idle.push(id.clone());
            }
            keep
        });
        idle
    }
}

impl SharedLimits {
    async fn sync(
        &self,
        conn: &mut ConnectionManager,
        script: &redis::Script,
        tenants: &[(&String, f64)],
    ) -> Result<Totals, String> {
        let mut call = script.prepare_invoke();
        call.key(format!("{PREFIX}gateways"))
            .arg(&self.id)
            .arg(STALE.as_millis() as u64);
        for (id, demand) in tenants {
            call.key(format!("{PREFIX}demand:{id}"))
                .arg(format!("{demand:.3}"));
        }
        let reply: Vec<String> = tokio::time::timeout(SYNC_TIMEOUT, call.invoke_async(conn))
            .await
            .map_err(|_| format!("no reply within {SYNC_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let mut numbers = reply.iter().map(|v| v.parse::<f64>());
        let live = match numbers.next() {
            Some(Ok(n)) if n >= 1.0 => n as u32,
            _ => return Err(format!("unexpected reply {reply:?}")),
        };
        let demand = numbers
            .collect::<Result<Vec<f64>, _>>()
            .map_err(|_| format!("unexpected reply {reply:?}"))?;
        if demand.len() != tenants.len() {
            return Err(format!("unexpected reply {reply:?}"));
        }
        Ok(Totals { live, demand })
    }

    /// One interval: fold demand, sync, set shares or fall back.
    async fn tick(
        &self,
        conn: &mut ConnectionManager,
        script: &redis::Script,
        tracker: &mut Tracker,
    ) {
        let Some(loaded) = self.state.current() else {
            return;
        };
        let (table, limits) = (&loaded.table, &loaded.limits);
        let idle = tracker.fold(limits, table);
        let now = clock::now_ns();
        for id in &idle {
            if let Some(tenant) = table.tenant_by_id(id) {
                limits.set_share(tenant.index(), 0, now);
            }
        }
        let tenants: Vec<(&String, f64)> = tracker.demand.iter().map(|(k, v)| (k, *v)).collect();
        match self.sync(conn, script, &tenants).await {
            Ok(mut totals) => {
                if tracker.outage.is_down() {
                    // Those live before the outage are likely back within
                    // a sync or two; count them until then.
                    if let Some(before) = tracker.live {
                        tracker
                            .recent
                            .push_back((std::time::Instant::now(), before));
                    }
                }
                totals.live = smoothed_live(&mut tracker.recent, totals.live);
                if tracker.outage.recovered() {
                    eprintln!(
                        "gateway: redis reachable again: tenant rate limits are shared again ({} gateways live)",
                        totals.live
                    );
                }
                tracker.live = Some(totals.live);
                self.metrics.shared_limits(true, totals.live);
                let own: Vec<f64> = tenants.iter().map(|t| t.1).collect();
                let now = clock::now_ns();
                // Own shares before the base changes: a tenant tracked for
                // the first time ran up its debt under the old base.
                for ((id, _), share) in tenants.iter().zip(shares(&own, &totals)) {
                    if let Some(tenant) = table.tenant_by_id(id) {
                        limits.set_share(tenant.index(), share, now);
                    }
                }
                limits.sharing().set_base(WHOLE / totals.live.max(1));
            }
            Err(error) => {
                self.metrics.redis_error("limit_sync");
                if !tracker.outage.failed() {
                    return;
                }
                let live = tracker.live.unwrap_or(1);
                eprintln!(
                    "gateway: redis unavailable ({error}): tenant rate limits fall back to this gateway alone, \
                     each tenant at 1/{live} of its plan, until redis answers again"
                );
                self.metrics.shared_limits_fallback();
                self.metrics.shared_limits(false, live);
                limits.sharing().set_base(WHOLE / live.max(1));
                let now = clock::now_ns();
                for id in tracker.demand.keys() {
                    if let Some(tenant) = table.tenant_by_id(id) {
                        limits.set_share(tenant.index(), 0, now);
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for SharedLimits {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut conn = match redis_link::connect(&self.url, SYNC_TIMEOUT, SYNC_TIMEOUT) {
            Ok(conn) => conn,
            Err(e) => {
                // Config validation checks the URL; this is a last resort.
                eprintln!("gateway: redis.url is not usable ({e}); rate limits stay local");
                return;
            }
        };
        let script = redis::Script::new(SYNC_SCRIPT);
        let mut tracker = Tracker::default();
        let mut interval = tokio::time::interval(SYNC_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            // Every tick: a reload may have brought new limits (their
            // sharing state is carried over, but the first table may
            // arrive after this task starts).
            if let Some(loaded) = self.state.current() {
                loaded.limits.sharing().start_counting();
            }
            self.tick(&mut conn, &script, &mut tracker).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_plan_as_the_traffic_is_split() {
        let totals = Totals {
            live: 2,
            demand: vec![300.0, 100.0, 0.0],
        };
        let s = shares(&[150.0, 100.0, 0.0], &totals);
        // Half the traffic: about half the plan.
        assert!((495_000..=505_000).contains(&s[0]), "{s:?}");
        // All the traffic: nearly all of it.
        assert!(s[1] > 985_000, "{s:?}");
        // None anywhere: an even split.
        assert_eq!(s[2], 500_000);
    }

    #[test]
    fn every_gateways_share_adds_up_to_the_whole_plan() {
        let demands = [120.0, 30.0, 0.0, 850.0];
        let total: f64 = demands.iter().sum();
        let totals = Totals {
            live: 4,
            demand: vec![total],
        };
        let sum: u32 = demands.iter().map(|d| shares(&[*d], &totals)[0]).sum();
        assert!((WHOLE - 4..=WHOLE + 4).contains(&sum), "{sum}");
    }

    #[test]
    fn own_demand_missing_from_the_total_still_counts() {
        let totals = Totals {
            live: 1,
            demand: vec![0.0],
        };
        assert_eq!(shares(&[50.0], &totals), vec![WHOLE]);
    }
}
