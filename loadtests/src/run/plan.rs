//! The schedule: which request is due when, decided before anything is sent.
//!
//! Arrival times come from the scenario's rate alone (open loop), never from how
//! fast the target answers, so a stall cannot slow the schedule down. Every choice
//! (tenant, host, request kind, path, body size, new connection or not) comes from
//! a generator seeded by the scenario, so two runs send the same requests: a
//! compare run gives every target the same load.

use std::net::SocketAddr;
use std::time::Duration;

use rand::distr::weighted::WeightedIndex;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp1, Zipf};

use crate::scenario::{Arrivals, BodySize, Scenario};

/// One request of the schedule.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    /// When it is due, since the start of the run.
    pub(crate) due: Duration,
    /// Its tenant's size class (an index into `CLASSES`).
    pub(crate) class: u8,
    /// The request host (and SNI on an https target).
    pub(crate) host: String,
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// Index of its kind in the scenario's `requests`.
    pub(crate) kind: usize,
    /// Path and query.
    pub(crate) path: String,
    /// Body length.
    pub(crate) body_len: usize,
    /// Sent on a connection of its own, closed afterwards.
    pub(crate) new_connection: bool,
}

/// When requests are due: the arrival process alone, so it can be replayed to count
/// them.
#[derive(Debug, Clone)]
pub(crate) struct Arrival {
    rng: SmallRng,
    next: f64,
}

impl Arrival {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed ^ 0xa5a5_a5a5),
            next: 0.0,
        }
    }

    /// The next due time in seconds, or `None` once past the end of the run.
    pub(crate) fn next(&mut self, scenario: &Scenario) -> Option<f64> {
        let at = self.next;
        if at >= scenario.total_secs() {
            return None;
        }
        let rate = scenario.rate.at(at);
        let gap = match scenario.rate.arrivals {
            Arrivals::Uniform => 1.0 / rate,
            Arrivals::Poisson => {
                let unit: f64 = Exp1.sample(&mut self.rng);
                unit / rate
            }
        };
        self.next = at + gap;
        Some(at)
    }

    /// How many requests the whole schedule holds.
    pub(crate) fn count(mut self, scenario: &Scenario) -> u64 {
        let mut count = 0;
        while self.next(scenario).is_some() {
            count += 1;
        }
        count
    }
}

/// The schedule, one request at a time.
#[derive(Debug)]
pub(crate) struct Plan<'s> {
    scenario: &'s Scenario,
    target: SocketAddr,
    arrival: Arrival,
    rng: SmallRng,
    zipf: Zipf<f64>,
    kinds: WeightedIndex<u32>,
    seq: u64,
}

impl<'s> Plan<'s> {
    /// The schedule of `scenario`, sending to `target` unless `resolve` says otherwise.
    ///
    /// # Panics
    ///
    /// Never for a checked scenario (at least one tenant and one request kind with a
    /// weight above 0).
    pub(crate) fn new(scenario: &'s Scenario, target: SocketAddr) -> Self {
        let tenants = &scenario.tenants;
        // The hot tenant (rank 0) is chosen on its own; Zipf spreads the rest.
        let hot = u32::from(tenants.hot_share > 0.0);
        let others = (tenants.population.count - hot).max(1);
        Self {
            scenario,
            target,
            arrival: Arrival::new(scenario.seed),
            rng: SmallRng::seed_from_u64(scenario.seed),
            zipf: Zipf::new(f64::from(others), tenants.zipf).expect("checked exponent"),
            kinds: WeightedIndex::new(scenario.requests.iter().map(|kind| kind.weight))
                .expect("checked weights"),
            seq: 0,
        }
    }

    /// A tenant rank: 0 is the largest.
    fn tenant(&mut self) -> u32 {
        let tenants = &self.scenario.tenants;
        if tenants.hot_share > 0.0 {
            if self.rng.random_bool(tenants.hot_share) {
                return 0;
            }
            // Zipf draws 1..=n: ranks 1..=n.
            return self.zipf.sample(&mut self.rng) as u32;
        }
        self.zipf.sample(&mut self.rng) as u32 - 1
    }
}

impl Iterator for Plan<'_> {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        let due = self.arrival.next(self.scenario)?;
        let scenario = self.scenario;
        let rank = self.tenant().min(scenario.tenants.population.count - 1);
        let population = &scenario.tenants.population;
        let host = match population.custom_domain(rank) {
            Some(domain) if self.rng.random_bool(scenario.tenants.custom_domain_share) => domain,
            _ => population.subdomain(rank),
        };
        let kind = self.kinds.sample(&mut self.rng);
        let request = &scenario.requests[kind];
        let mut path = String::new();
        let rng = &mut self.rng;
        request.path.render(
            &mut path,
            |n| rng.random_range(0..n),
            self.seq,
            &population.slug(rank),
        );
        let body_len = match request.body {
            BodySize::Fixed(bytes) => bytes,
            BodySize::Between(min, max) => self.rng.random_range(min..=max),
        };
        let new_connection = scenario.connections.new_share > 0.0
            && self.rng.random_bool(scenario.connections.new_share);
        let planned = Planned {
            due: Duration::from_secs_f64(due),
            class: scenario.class_of(rank) as u8,
            addr: scenario.resolve(&host, self.target),
            host,
            kind,
            path,
            body_len: usize::try_from(body_len).unwrap_or(usize::MAX),
            new_connection,
        };
        self.seq += 1;
        Some(planned)
    }
}
