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
    latency: Histogram<u64>,
    completed: u64,
    errors: u64,
    rate_limited: u64,
}

impl Group {
    fn new(sigfig: u8) -> Self {
        Self {
            latency: histogram(sigfig),
            completed: 0,
            errors: 0,
            rate_limited: 0,
        }
    }

    fn add(&mut self, latency_us: u64, error: bool, rate_limited: bool) {
        self.latency.saturating_record(latency_us.max(1));
        self.completed += 1;
        self.errors += u64::from(error);
        self.rate_limited += u64::from(rate_limited);
    }
}

/// One second of the timeline.
#[derive(Debug)]
struct SecondAcc {
    intended: Group,
    completed: u64,
}

/// Accumulates samples.
#[derive(Debug)]
pub(crate) struct Recorder {
    warmup: Duration,
    end: Duration,
    all: Group,
    classes: [Group; 4],
    statuses: BTreeMap<u16, Histogram<u64>>,
    errors: BTreeMap<&'static str, (u64, String)>,
    seconds: Vec<SecondAcc>,
    responses: u64,
    responses_in_window: u64,
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
            all: Group::new(3),
            classes: std::array::from_fn(|_| Group::new(3)),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            seconds: Vec::new(),
            responses: 0,
            responses_in_window: 0,
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
            });
        }
        &mut self.seconds[index]
    }

    /// Takes one sample in.
    pub(crate) fn record(&mut self, sample: &Sample) {
        let latency_us =
            u64::try_from(sample.done.saturating_sub(sample.due).as_micros()).unwrap_or(u64::MAX);
        let (error, rate_limited, status) = match &sample.outcome {
            Outcome::Response { status, .. } => (
                *status >= 400 && *status != 429,
                *status == 429,
                Some(*status),
            ),
            Outcome::Failed { .. } => (true, false, None),
        };
        self.second(sample.due)
            .intended
            .add(latency_us, error, rate_limited);
        let measured_done = sample.done >= self.warmup && sample.done < self.end;
        if status.is_some() {
            self.second(sample.done).completed += 1;
            if measured_done {
                self.responses_in_window += 1;
            }
        }
        if sample.due < self.warmup {
            return;
        }
        self.all.add(latency_us, error, rate_limited);
        self.classes[usize::from(sample.class).min(3)].add(latency_us, error, rate_limited);
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
                    .saturating_record(latency_us.max(1));
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
        self,
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
            throughput_rps: per_sec(self.responses_in_window),
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
                rate_limited: group.rate_limited,
                errors: group.errors,
                latency: latency(&group.latency),
            })
            .collect();
        let mut checks = checks(
            "all",
            &scenario.slo.all,
            &totals,
            &self.all.latency,
            duration,
        );
        for (class, objectives) in &scenario.slo.classes {
            let index = CLASSES.iter().position(|c| c == class).unwrap_or(3);
            let group = &self.classes[index];
            let class_totals = Totals {
                error_rate: share(group.errors, group.completed),
                throughput_rps: per_sec(group.completed - group.errors),
                ..Totals::default()
            };
            checks.extend(self::checks(
                class,
                objectives,
                &class_totals,
                &group.latency,
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
        Report {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            target,
            started_unix_ms,
            warmup_secs: scenario.warmup_secs,
            duration_secs: duration,
            totals,
            latency: latency(&self.all.latency),
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
                    let hist = &second.intended.latency;
                    let quiet = second.intended.completed == 0;
                    let ms = |q: f64| {
                        if quiet {
                            0.0
                        } else {
                            us_to_ms(hist.value_at_quantile(q))
                        }
                    };
                    Second {
                        t: t as u32,
                        warmup: Duration::from_secs(t as u64) < warmup,
                        intended: second.intended.completed,
                        completed: second.completed,
                        errors: second.intended.errors,
                        rate_limited: second.intended.rate_limited,
                        p50_ms: ms(0.5),
                        p99_ms: ms(0.99),
                        max_ms: if quiet { 0.0 } else { us_to_ms(hist.max()) },
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

/// The checks `objectives` asks for.
fn checks(
    scope: &str,
    objectives: &Objectives,
    totals: &Totals,
    histogram: &Histogram<u64>,
    _duration: f64,
) -> Vec<SloCheck> {
    let percentile = |p: f64| {
        if histogram.is_empty() {
            0.0
        } else {
            us_to_ms(histogram.value_at_percentile(p))
        }
    };
    let at_most = |name: &str, limit: Option<f64>, actual: f64| {
        limit.map(|limit| SloCheck {
            name: name.to_owned(),
            scope: scope.to_owned(),
            limit,
            actual,
            passed: actual <= limit,
        })
    };
    [
        at_most("p95_ms", objectives.p95_ms, percentile(95.0)),
        at_most("p99_ms", objectives.p99_ms, percentile(99.0)),
        at_most(
            "max_error_rate",
            objectives.max_error_rate,
            totals.error_rate,
        ),
        objectives.min_throughput_rps.map(|limit| SloCheck {
            name: "min_throughput_rps".to_owned(),
            scope: scope.to_owned(),
            limit,
            actual: totals.throughput_rps,
            passed: totals.throughput_rps >= limit,
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}
