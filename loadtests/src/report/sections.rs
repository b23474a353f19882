//! The summary of one run as labelled facts and tables: what the terminal
//! summary prints and the HTML report shows, built once so they agree.

use super::format;
use super::table::{Align, Cell, Table};
use super::{Report, SloCheck};

/// The run at a glance, as (label, text) pairs: scenario, description (when
/// there is one), target, start, window and throughput.
pub(super) fn facts(report: &Report) -> Vec<(&'static str, String)> {
    let mut facts = vec![("scenario", report.scenario.clone())];
    if !report.description.is_empty() {
        facts.push(("description", report.description.clone()));
    }
    facts.extend([
        (
            "target",
            format!("{} ({})", report.target.name, report.target.url),
        ),
        ("started", format::utc(report.started_unix_ms)),
        (
            "window",
            format!(
                "{} warm-up, {} measured",
                format::secs(report.warmup_secs),
                format::secs(report.duration_secs)
            ),
        ),
        ("throughput", throughput(report)),
    ]);
    facts
}

/// Completed against intended requests per second, e.g.
/// `950.2 req/s completed of 1,000.0 req/s intended (95.02%)`.
pub(super) fn throughput(report: &Report) -> String {
    let totals = &report.totals;
    let share = if totals.intended_rps > 0.0 {
        format!(
            " ({})",
            format::percent(totals.throughput_rps / totals.intended_rps)
        )
    } else {
        String::new()
    };
    format!(
        "{} req/s completed of {} req/s intended{share}",
        format::rps(totals.throughput_rps),
        format::rps(totals.intended_rps)
    )
}

/// The latency distribution of every completed request, one row.
pub(super) fn latency(report: &Report) -> Table {
    let mut table = Table::new(&[
        ("", Align::Left),
        ("requests", Align::Right),
        ("mean ms", Align::Right),
        ("p50 ms", Align::Right),
        ("p90 ms", Align::Right),
        ("p95 ms", Align::Right),
        ("p99 ms", Align::Right),
        ("p99.9 ms", Align::Right),
        ("max ms", Align::Right),
    ]);
    // The harness's own lateness is part of every latency: shown beneath it, an
    // overloaded load generator is seen for what it is.
    for (what, latency) in [
        ("latency", &report.latency),
        ("harness lag", &report.schedule_lag),
    ] {
        table.row(vec![
            what.into(),
            format::count(latency.count).into(),
            format::ms(latency.mean_ms).into(),
            format::ms(latency.p50_ms).into(),
            format::ms(latency.p90_ms).into(),
            format::ms(latency.p95_ms).into(),
            format::ms(latency.p99_ms).into(),
            format::ms(latency.p999_ms).into(),
            format::ms(latency.max_ms).into(),
        ]);
    }
    table
}

/// Counts over the measured window, each with its share of what it is a part of.
pub(super) fn totals(report: &Report) -> Table {
    let totals = &report.totals;
    let mut table = Table::new(&[
        ("", Align::Left),
        ("count", Align::Right),
        ("share", Align::Right),
        ("of", Align::Left),
    ]);
    let rows: [(&str, String, String, &str); 9] = [
        (
            "intended",
            format::count(totals.intended),
            String::new(),
            "",
        ),
        (
            "completed",
            format::count(totals.completed),
            format::percent_of(totals.completed, totals.intended),
            "intended",
        ),
        (
            "ok (< 400)",
            format::count(totals.ok),
            format::percent_of(totals.ok, totals.completed),
            "completed",
        ),
        (
            "rate limited (429)",
            format::count(totals.rate_limited),
            format::percent(totals.rate_limited_share),
            "completed",
        ),
        (
            "errors",
            format::count(totals.errors),
            format::percent(totals.error_rate),
            "completed",
        ),
        (
            "cache hits",
            format::count(totals.cache_hits),
            format::percent(totals.cache_hit_share),
            "responses",
        ),
        (
            "connections opened",
            format::count(totals.connections_opened),
            String::new(),
            "",
        ),
        (
            "bytes received",
            format::bytes(totals.bytes_received),
            String::new(),
            "",
        ),
        (
            "bytes sent",
            format::bytes(totals.bytes_sent),
            String::new(),
            "",
        ),
    ];
    for (label, count, share, of) in rows {
        table.row(vec![label.into(), count.into(), share.into(), of.into()]);
    }
    table
}

/// One row per tenant size class.
pub(super) fn classes(report: &Report) -> Table {
    let mut table = Table::new(&[
        ("class", Align::Left),
        ("tenants", Align::Right),
        ("completed", Align::Right),
        ("req/s", Align::Right),
        ("429", Align::Right),
        ("errors", Align::Right),
        ("p50 ms", Align::Right),
        ("p99 ms", Align::Right),
        ("p99.9 ms", Align::Right),
        ("max ms", Align::Right),
    ]);
    for class in &report.classes {
        table.row(vec![
            class.class.as_str().into(),
            format::count(u64::from(class.tenants)).into(),
            format::count(class.completed).into(),
            format!("{:.1}", class.throughput_rps).into(),
            format::count(class.rate_limited).into(),
            format::count(class.errors).into(),
            format::ms(class.latency.p50_ms).into(),
            format::ms(class.latency.p99_ms).into(),
            format::ms(class.latency.p999_ms).into(),
            format::ms(class.latency.max_ms).into(),
        ]);
    }
    table
}

/// One row per response status.
pub(super) fn statuses(report: &Report) -> Table {
    let mut table = Table::new(&[
        ("status", Align::Left),
        ("count", Align::Right),
        ("share", Align::Right),
        ("p50 ms", Align::Right),
        ("p99 ms", Align::Right),
        ("max ms", Align::Right),
    ]);
    for status in &report.statuses {
        table.row(vec![
            status.status.to_string().into(),
            format::count(status.count).into(),
            format::percent_of(status.count, report.totals.completed).into(),
            format::ms(status.latency.p50_ms).into(),
            format::ms(status.latency.p99_ms).into(),
            format::ms(status.latency.max_ms).into(),
        ]);
    }
    table
}

/// One row per error kind, with the first error's message.
pub(super) fn errors(report: &Report) -> Table {
    let mut table = Table::new(&[
        ("kind", Align::Left),
        ("count", Align::Right),
        ("share", Align::Right),
        ("example", Align::Left),
    ]);
    for error in &report.errors {
        table.row(vec![
            error.kind.as_str().into(),
            format::count(error.count).into(),
            format::percent_of(error.count, report.totals.completed).into(),
            error.example.as_str().into(),
        ]);
    }
    table
}

/// One row per SLO check, ending in `PASS` or `FAIL`.
pub(super) fn slo(report: &Report) -> Table {
    let mut table = Table::new(&[
        ("check", Align::Left),
        ("scope", Align::Left),
        ("limit", Align::Right),
        ("actual", Align::Right),
        ("result", Align::Left),
    ]);
    for check in &report.slo.checks {
        let (op, limit, actual) = slo_values(check);
        let actual = check.note.clone().unwrap_or(actual);
        table.row(vec![
            check.name.as_str().into(),
            check.scope.as_str().into(),
            format!("{op} {limit}").into(),
            actual.into(),
            Cell::verdict(check.passed),
        ]);
    }
    table
}

/// The SLO verdict in a sentence: `PASS — all 3 SLO checks held`,
/// `FAIL — 1 of 3 SLO checks failed`, or `PASS — no SLO checks`.
pub(super) fn verdict(report: &Report) -> String {
    let word = if report.slo.passed { "PASS" } else { "FAIL" };
    format!("{word} — {}", verdict_detail(report))
}

/// What the verdict rests on: `all 3 SLO checks held`, `1 of 3 SLO checks
/// failed` or `no SLO checks`.
pub(super) fn verdict_detail(report: &Report) -> String {
    let checks = &report.slo.checks;
    let failed = checks.iter().filter(|check| !check.passed).count();
    match (checks.len(), failed) {
        (0, _) => "no SLO checks".to_owned(),
        (1, 0) => "the SLO check held".to_owned(),
        (n, 0) => format!("all {n} SLO checks held"),
        (n, failed) => format!("{failed} of {n} SLO checks failed"),
    }
}

/// A check's comparison, limit and measured value in its own unit: latency
/// keys (`*_ms`) in ms, `max_error_rate` as a percentage, `min_throughput_rps`
/// in req/s; an unknown key as a plain number, a maximum unless it starts
/// with `min_`.
fn slo_values(check: &SloCheck) -> (&'static str, String, String) {
    let op = if check.name.starts_with("min_") {
        "≥"
    } else {
        "≤"
    };
    let show = |value: f64| -> String {
        if check.name.ends_with("_ms") {
            format!("{} ms", format::ms(value))
        } else if check.name.ends_with("_rps") {
            format!("{} req/s", format::rps(value))
        } else if check.name.ends_with("_rate") {
            format::percent(value)
        } else {
            format::plain(value)
        }
    };
    (op, show(check.limit), show(check.actual))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    #[test]
    fn slo_rows_show_limits_in_their_units() {
        let text = slo(&sample::report()).to_text(0);
        assert!(text.contains("≤ 250 ms"), "{text}");
        assert!(text.contains("≤ 1.00%"), "{text}");
        assert!(text.contains("≥ 900.0 req/s"), "{text}");
    }

    #[test]
    fn verdict_counts_failed_checks() {
        let mut report = sample::report();
        assert_eq!(verdict(&report), "FAIL — 1 of 4 SLO checks failed");
        report.slo.checks.retain(|check| check.passed);
        report.slo.passed = true;
        assert_eq!(verdict(&report), "PASS — all 3 SLO checks held");
        report.slo.checks.clear();
        assert_eq!(verdict(&report), "PASS — no SLO checks");
    }
}
