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

/// When requests are due.
///
/// Request `k` is due when the integral of the rate reaches `w_k`: `w_k = k` for
/// uniform arrivals, a sum of exponential draws for Poisson ones. The time is found
/// piece by piece of the rate, so a gap never jumps over a change of rate (a spike
/// after a slow start is sent as a spike), and uniform due times are exact
/// (`k / rate` within a piece), not sums that drift.
#[derive(Debug, Clone)]
pub(crate) struct Arrival {
    rng: SmallRng,
    poisson: bool,
    /// `(from_secs, rps, work at from_secs)` of each piece of the rate.
    pieces: Vec<(f64, f64, f64)>,
    end: f64,
    next_work: f64,
}

impl Arrival {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let mut pieces = Vec::new();
        let mut work = 0.0;
        let segments = scenario.rate.segments();
        for (i, (from, rps)) in segments.iter().enumerate() {
            pieces.push((*from, *rps, work));
            if let Some((next, _)) = segments.get(i + 1) {
                work += (next - from) * rps;
            }
        }
        let mut arrival = Self {
            rng: SmallRng::seed_from_u64(scenario.seed ^ 0xa5a5_a5a5),
            poisson: scenario.rate.arrivals == Arrivals::Poisson,
            pieces,
            end: scenario.total_secs(),
            next_work: 0.0,
        };
        arrival.next_work = arrival.gap();
        arrival
    }

    /// The work to the next request: 1, or an exponential draw.
    fn gap(&mut self) -> f64 {
        if self.poisson {
            Exp1.sample(&mut self.rng)
        } else {
            1.0
        }
    }

    /// The time at which the rate's integral reaches `work`.
    fn time_of(&self, work: f64) -> f64 {
        let (from, rps, at) = self
            .pieces
            .iter()
            .rev()
            .find(|(_, _, at)| *at <= work)
            .copied()
            .unwrap_or(self.pieces[0]);
        from + (work - at) / rps
    }

    /// The next due time in seconds, or `None` once past the end of the run.
    pub(crate) fn next(&mut self) -> Option<f64> {
        // The first request is due at once; each later one a gap of work after it.
        let work = self.next_work - if self.poisson { 0.0 } else { 1.0 };
        let at = self.time_of(work);
        if at >= self.end {
            return None;
        }
        self.next_work += self.gap();
        Some(at)
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
            arrival: Arrival::new(scenario),
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
        let due = self.arrival.next()?;
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn scenario(rate: &str) -> Scenario {
        let text = format!(
            "name = \"t\"\nduration_secs = 5\n[tenants]\ncount = 3\n[rate]\n{rate}\n[[requests]]\npath = \"/\"\n"
        );
        Scenario::parse(&text, "t", Path::new(".")).unwrap()
    }

    fn due_times(scenario: &Scenario) -> Vec<f64> {
        let mut arrival = Arrival::new(scenario);
        std::iter::from_fn(|| arrival.next()).collect()
    }

    #[test]
    fn uniform_arrivals_are_exact() {
        let times = due_times(&scenario("rps = 200"));
        assert_eq!(times.len(), 1000);
        assert_eq!(times[0], 0.0);
        assert_eq!(times[1], 0.005);
        assert_eq!(times[999], 4.995);
    }

    #[test]
    fn a_slow_start_does_not_skip_a_later_step() {
        let times = due_times(&scenario(
            "kind = \"stepped\"\nsteps = [{ at_secs = 0, rps = 0.2 }, { at_secs = 1, rps = 500 }]",
        ));
        // 0.2 of a request in the first second, then 500 a second for 4 seconds.
        assert_eq!(times.len(), 2001);
        assert!(times[1] >= 1.0 && times[1] < 1.01, "{}", times[1]);
    }

    #[test]
    fn a_spike_is_sent_even_after_a_slow_base() {
        let times = due_times(&scenario(
            "kind = \"spike\"\nrps = 0.5\nspike_rps = 500\nspike_at_secs = 1\nspike_secs = 0.9",
        ));
        let in_spike = times.iter().filter(|t| (1.0..1.9).contains(*t)).count();
        assert!((449..=451).contains(&in_spike), "{in_spike}");
    }

    #[test]
    fn poisson_arrivals_keep_the_mean_rate() {
        let times = due_times(&scenario("rps = 1000\narrivals = \"poisson\""));
        // 5,000 expected; a Poisson count's standard deviation is about 71.
        assert!((4_700..=5_300).contains(&times.len()), "{}", times.len());
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}
