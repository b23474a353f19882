//! Turns the samples of a run into its [`Report`]: HDR histograms overall, per
//! tenant size class, per status and per second; counts; SLO checks.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::report::{
    ClassStats, ErrorStats, Latency, Report, Second, SloCheck, SloVerdict, StatusStats, TargetInfo,
    Totals,
};
use crate::scenario::{CLASSES, Objectives, Scenario};

/// The highest latency histograms hold, µs: an hour (larger values are clamped).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why a request failed without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ErrorKind {
    /// The TCP connection could not be made.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// No answer within the scenario's `timeout_ms` of the intended send time.
    Timeout,
    /// The connection broke or the answer was not HTTP.
    Protocol,
}

impl ErrorKind {
    fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response, read to its end.
    Response {
        /// Its status.
        status: u16,
        /// `x-cache` said HIT or STALE.
        cache_hit: bool,
    },
    /// No (complete) response.
    Failed {
        /// Why.
        kind: ErrorKind,
        /// What happened, for the report's example.
        message: String,
    },
}

/// One request's result.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// When it was due, since the start of the run.
    pub(crate) due: Duration,
    /// When it ended, since the start of the run.
    pub(crate) done: Duration,
    /// How late the harness started it after its due time.
    pub(crate) lag: Duration,
    /// Its tenant's size class.
    pub(crate) class: u8,
    /// How it ended.
    pub(crate) outcome: Outcome,
    /// Body bytes sent.
    pub(crate) bytes_out: u64,
    /// Body bytes received.
    pub(crate) bytes_in: u64,
}

/// A latency histogram in microseconds.
fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig).expect("valid histogram bounds")
}

/// Requests of one class, status or second.
#[derive(Debug)]
struct Group {
    /// Latencies of responses and timeouts (fast failures have none).
    latency: Histogram<u64>,
    completed: u64,
    errors: u64,
    rate_limited: u64,
    /// Answers (not errors) that arrived within the measured window.
    answered_in_window: u64,
}

impl Group {
    fn new(sigfig: u8) -> Self {
        Self {
            latency: histogram(sigfig),
            completed: 0,
            errors: 0,
            rate_limited: 0,
            answered_in_window: 0,
        }
    }

    fn add(&mut self, latency_us: Option<u64>, error: bool, rate_limited: bool) {
        if let Some(us) = latency_us {
            self.latency.saturating_record(us.max(1));
        }
        self.completed += 1;
        self.errors += u64::from(error);
        self.rate_limited += u64::from(rate_limited);
    }
}

/// One second of the timeline: its requests' histogram while they may still end,
/// then only the figures drawn from it (so a long run holds a few histograms, not
/// one per second).
#[derive(Debug)]
struct SecondAcc {
    intended: Group,
    completed: u64,
    /// `(p50, p99, max)` in ms once the second is closed.
    closed: Option<(f64, f64, f64)>,
}

impl SecondAcc {
    fn close(&mut self) {
        if self.closed.is_none() {
            let hist = &self.intended.latency;
            let ms = |q: f64| us_to_ms(hist.value_at_quantile(q));
            self.closed = Some(if hist.is_empty() {
                (0.0, 0.0, 0.0)
            } else {
                (ms(0.5), ms(0.99), us_to_ms(hist.max()))
            });
            self.intended.latency = Histogram::new(1).expect("a tiny histogram");
        }
    }
}

/// Accumulates samples.
#[derive(Debug)]
pub(crate) struct Recorder {
    warmup: Duration,
    end: Duration,
    timeout: Duration,
    lag: Histogram<u64>,
    all: Group,
    classes: [Group; 4],
    statuses: BTreeMap<u16, Histogram<u64>>,
    errors: BTreeMap<&'static str, (u64, String)>,
    seconds: Vec<SecondAcc>,
    responses: u64,
    ok: u64,
    cache_hits: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Recorder {
    /// A recorder for a run of `scenario`.
    pub(crate) fn new(scenario: &Scenario) -> Self {
        Self {
            warmup: Duration::from_secs_f64(scenario.warmup_secs),
            end: Duration::from_secs_f64(scenario.total_secs()),
            timeout: Duration::from_millis(scenario.timeout_ms),
            lag: histogram(3),
            all: Group::new(3),
            classes: std::array::from_fn(|_| Group::new(3)),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            seconds: Vec::new(),
            responses: 0,
            ok: 0,
            cache_hits: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    fn second(&mut self, at: Duration) -> &mut SecondAcc {
        let index = usize::try_from(at.as_secs())
            .unwrap_or(usize::MAX)
            .min(1 << 20);
        while self.seconds.len() <= index {
            self.seconds.push(SecondAcc {
                intended: Group::new(2),
                completed: 0,
                closed: None,
            });
        }
        &mut self.seconds[index]
    }

    /// Takes one sample in.
    pub(crate) fn record(&mut self, sample: &Sample) {
        let elapsed_us =
            u64::try_from(sample.done.saturating_sub(sample.due).as_micros()).unwrap_or(u64::MAX);
        let (error, rate_limited, latency_us) = match &sample.outcome {
            Outcome::Response { status, .. } => (
                *status >= 400 && *status != 429,
                *status == 429,
                Some(elapsed_us),
            ),
            Outcome::Failed { kind, .. } => (
                true,
                false,
                (*kind == ErrorKind::Timeout).then_some(elapsed_us),
            ),
        };
        let answered = matches!(sample.outcome, Outcome::Response { .. }) && !error;
        self.second(sample.due)
            .intended
            .add(latency_us, error, rate_limited);
        if matches!(sample.outcome, Outcome::Response { .. }) {
            self.second(sample.done).completed += 1;
        }
        // Every request due more than a timeout before this one ended has ended too:
        // the seconds before that are closed.
        let settled = sample
            .done
            .saturating_sub(self.timeout + Duration::from_secs(1));
        let settled = usize::try_from(settled.as_secs()).unwrap_or(usize::MAX);
        for second in self.seconds.iter_mut().take(settled) {
            second.close();
        }
        if sample.due < self.warmup {
            return;
        }
        let in_window = answered && sample.done >= self.warmup && sample.done < self.end;
        let class = usize::from(sample.class).min(3);
        self.all.add(latency_us, error, rate_limited);
        self.classes[class].add(latency_us, error, rate_limited);
        if in_window {
            self.all.answered_in_window += 1;
            self.classes[class].answered_in_window += 1;
        }
        self.lag.saturating_record(
            u64::try_from(sample.lag.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        self.bytes_in += sample.bytes_in;
        self.bytes_out += sample.bytes_out;
        match &sample.outcome {
            Outcome::Response { status, cache_hit } => {
                self.responses += 1;
                self.ok += u64::from(*status < 400);
                self.cache_hits += u64::from(*cache_hit);
                self.statuses
                    .entry(*status)
                    .or_insert_with(|| histogram(3))
                    .saturating_record(elapsed_us.max(1));
                if error {
                    self.errors
                        .entry("status")
                        .or_insert_with(|| (0, format!("HTTP status {status}")))
                        .0 += 1;
                }
            }
            Outcome::Failed { kind, message } => {
                self.errors
                    .entry(kind.name())
                    .or_insert_with(|| (0, message.clone()))
                    .0 += 1;
            }
        }
    }

    /// The report.
    pub(crate) fn finish(
        mut self,
        scenario: &Scenario,
        target: TargetInfo,
        started_unix_ms: u64,
        connections_opened: u64,
    ) -> Report {
        let duration = scenario.duration_secs;
        let per_sec = |n: u64| n as f64 / duration;
        let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        let completed = self.all.completed;
        let totals = Totals {
            intended: completed,
            completed,
            ok: self.ok,
            rate_limited: self.all.rate_limited,
            errors: self.all.errors,
            error_rate: share(self.all.errors, completed),
            rate_limited_share: share(self.all.rate_limited, completed),
            cache_hits: self.cache_hits,
            cache_hit_share: share(self.cache_hits, self.responses),
            intended_rps: per_sec(completed),
            throughput_rps: per_sec(self.all.answered_in_window),
            connections_opened,
            bytes_received: self.bytes_in,
            bytes_sent: self.bytes_out,
        };
        let sizes = scenario.class_sizes();
        let classes: Vec<ClassStats> = CLASSES
            .iter()
            .zip(&self.classes)
            .zip(sizes)
            .filter(|((_, group), _)| group.completed > 0)
            .map(|((name, group), tenants)| ClassStats {
                class: (*name).to_owned(),
                tenants,
                completed: group.completed,
                throughput_rps: per_sec(group.answered_in_window),
                rate_limited: group.rate_limited,
                errors: group.errors,
                latency: latency(&group.latency),
            })
            .collect();
        let mut checks = checks("all", &scenario.slo.all, &self.all, duration);
        for (class, objectives) in &scenario.slo.classes {
            let index = CLASSES.iter().position(|c| c == class).unwrap_or(3);
            checks.extend(self::checks(
                class,
                objectives,
                &self.classes[index],
                duration,
            ));
        }
        let mut errors: Vec<ErrorStats> = self
            .errors
            .into_iter()
            .map(|(kind, (count, example))| ErrorStats {
                kind: kind.to_owned(),
                count,
                example,
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)));
        let warmup = self.warmup;
        for second in &mut self.seconds {
            second.close();
        }
        Report {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            target,
            started_unix_ms,
            warmup_secs: scenario.warmup_secs,
            duration_secs: duration,
            totals,
            latency: latency(&self.all.latency),
            schedule_lag: latency(&self.lag),
            classes,
            statuses: self
                .statuses
                .iter()
                .map(|(status, histogram)| StatusStats {
                    status: *status,
                    count: histogram.len(),
                    latency: latency(histogram),
                })
                .collect(),
            errors,
            timeline: self
                .seconds
                .iter()
                .enumerate()
                .map(|(t, second)| {
                    let (p50_ms, p99_ms, max_ms) = second.closed.unwrap_or_default();
                    Second {
                        t: t as u32,
                        warmup: Duration::from_secs(t as u64) < warmup,
                        intended: second.intended.completed,
                        completed: second.completed,
                        errors: second.intended.errors,
                        rate_limited: second.intended.rate_limited,
                        p50_ms,
                        p99_ms,
                        max_ms,
                    }
                })
                .collect(),
            slo: SloVerdict {
                passed: checks.iter().all(|check| check.passed),
                checks,
            },
        }
    }
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Percentiles at which the curve is sampled: ever finer toward the tail.
fn curve_points() -> impl Iterator<Item = f64> {
    // 0, then 1 - 10^(-k/10): 20.6%, 36.9% ... 90%, 99%, 99.9%, 99.99%, 99.999%.
    (0..=50).map(|k| 100.0 * (1.0 - 10f64.powf(-f64::from(k) / 10.0)))
}

/// The summary of a histogram in µs, in ms.
fn latency(histogram: &Histogram<u64>) -> Latency {
    if histogram.is_empty() {
        return Latency::default();
    }
    let at = |percentile: f64| us_to_ms(histogram.value_at_percentile(percentile));
    let mut curve: Vec<(f64, f64)> = curve_points().map(|p| (p, at(p))).collect();
    curve.push((100.0, us_to_ms(histogram.max())));
    Latency {
        count: histogram.len(),
        mean_ms: histogram.mean() / 1000.0,
        p50_ms: at(50.0),
        p90_ms: at(90.0),
        p95_ms: at(95.0),
        p99_ms: at(99.0),
        p999_ms: at(99.9),
        max_ms: us_to_ms(histogram.max()),
        curve,
    }
}

/// The checks `objectives` asks for, on the requests of `group`. A check of a
/// group with nothing to measure fails: an SLO that was never exercised did not hold.
fn checks(scope: &str, objectives: &Objectives, group: &Group, duration: f64) -> Vec<SloCheck> {
    let empty = group.completed == 0;
    let no_latency = group.latency.is_empty();
    let check = |name: &str, limit: Option<f64>, actual: f64, at_most: bool, nothing: bool| {
        limit.map(|limit| SloCheck {
            name: name.to_owned(),
            scope: scope.to_owned(),
            limit,
            actual,
            passed: !nothing
                && if at_most {
                    actual <= limit
                } else {
                    actual >= limit
                },
            note: nothing.then(|| "no request to measure".to_owned()),
        })
    };
    let percentile = |p: f64| {
        if no_latency {
            0.0
        } else {
            us_to_ms(group.latency.value_at_percentile(p))
        }
    };
    let error_rate = if empty {
        0.0
    } else {
        group.errors as f64 / group.completed as f64
    };
    [
        check(
            "p95_ms",
            objectives.p95_ms,
            percentile(95.0),
            true,
            no_latency,
        ),
        check(
            "p99_ms",
            objectives.p99_ms,
            percentile(99.0),
            true,
            no_latency,
        ),
        check(
            "max_error_rate",
            objectives.max_error_rate,
            error_rate,
            true,
            empty,
        ),
        check(
            "min_throughput_rps",
            objectives.min_throughput_rps,
            group.answered_in_window as f64 / duration,
            false,
            empty,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}
