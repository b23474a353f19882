//! Side-by-side runs of one scenario against several targets: a terminal table
//! with one column per target and an HTML page with that table and the plots
//! of every target overlaid. The first report is the baseline: every other
//! target's throughput and latencies also show their ratio to it (`1.23×` —
//! above 1 is more throughput, or slower).

use std::fmt::Write as _;

use super::table::{Align, Cell, Table};
use super::{Report, format, html, plot, sections};

/// The comparison as plain text: a line naming the scenario and the baseline,
/// then the table.
pub fn table(reports: &[Report]) -> String {
    let Some(baseline) = reports.first() else {
        return "no runs to compare\n".to_owned();
    };
    format!(
        "{}: {} targets; ratios are to the baseline, {}\n\n{}",
        baseline.scenario,
        reports.len(),
        baseline.target.name,
        comparison(reports).to_text(0)
    )
}

/// The comparison as a self-contained HTML page: the targets with links to
/// their own reports (`<name>/report.html`) and SLO verdicts, the table, and
/// the plots overlaid (percentile curves, p99 over time, throughput over time).
pub fn render_html(reports: &[Report]) -> String {
    let scenario = reports
        .first()
        .map_or("", |report| report.scenario.as_str());
    let mut body = String::new();
    let _ = write!(
        body,
        "<header>\n<p class=\"kicker\">Switchyard load test comparison</p>\n<h1>{}</h1>\n",
        format::html(scenario)
    );
    if let Some(description) = reports.first().map(|report| &report.description)
        && !description.is_empty()
    {
        let _ = writeln!(
            body,
            "<p class=\"description\">{}</p>",
            format::html(description)
        );
    }
    body.push_str("</header>\n");

    let failed = reports.iter().filter(|report| !report.slo.passed).count();
    match (reports.len(), failed) {
        (0, _) => body.push_str("<p class=\"none\">no runs</p>\n"),
        (n, 0) => body.push_str(&html::verdict_banner(
            true,
            &format!("all {n} targets met the SLO"),
        )),
        (n, failed) => body.push_str(&html::verdict_banner(
            false,
            &format!("{failed} of {n} targets missed the SLO"),
        )),
    }

    body.push_str("<h2>Targets</h2>\n<ul class=\"targets\">\n");
    for (i, report) in reports.iter().enumerate() {
        let name = format::html(&report.target.name);
        let (class, word) = if report.slo.passed {
            ("pass", "PASS")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            body,
            "<li><a href=\"{name}/report.html\">{name}</a>{} — {} \
             <span class=\"tag {class}\">{word}</span> {}</li>",
            if i == 0 { " (baseline)" } else { "" },
            format::html(&report.target.url),
            format::html(&sections::verdict_detail(report)),
        );
    }
    body.push_str("</ul>\n");

    html::section(&mut body, "Side by side", &comparison(reports));

    body.push_str("<h2>Plots</h2>\n");
    html::figure(
        &mut body,
        &plot::latency_percentiles(reports),
        "Latency by percentile of every target over its measured window.",
    );
    html::figure(
        &mut body,
        &plot::latency_over_time(reports),
        "p99 latency of the requests intended in each second, per target; the shaded \
         seconds are warm-up.",
    );
    html::figure(
        &mut body,
        &plot::throughput_over_time(reports),
        "Completed requests per second of every target against the schedule's intended \
         rate (dashed).",
    );

    html::page(
        &format!("{scenario}: load test comparison"),
        "compare.json",
        &body,
    )
}

/// One row per measure, one column per target; non-baseline columns show the
/// ratio to the baseline for throughput and latencies.
fn comparison(reports: &[Report]) -> Table {
    let mut columns = vec![(String::new(), Align::Left)];
    columns.extend(reports.iter().enumerate().map(|(i, report)| {
        let suffix = if i == 0 { " (baseline)" } else { "" };
        (format!("{}{suffix}", report.target.name), Align::Right)
    }));
    let mut table = Table::with_columns(columns);
    let Some(baseline) = reports.first() else {
        return table;
    };

    // A measure compared with the baseline: the value, then "(1.23×)".
    let ratio_row = |label: &str, value: fn(&Report) -> f64, show: fn(f64) -> String| {
        let mut row = vec![Cell::from(label)];
        row.extend(reports.iter().enumerate().map(|(i, report)| {
            let text = show(value(report));
            if i == 0 {
                text.into()
            } else {
                format!("{text} ({})", format::ratio(value(report), value(baseline))).into()
            }
        }));
        row
    };
    // A measure shown as is.
    let plain_row = |label: &str, show: &dyn Fn(&Report) -> String| {
        let mut row = vec![Cell::from(label)];
        row.extend(reports.iter().map(|report| Cell::from(show(report))));
        row
    };

    table.row(ratio_row(
        "throughput (req/s)",
        |r| r.totals.throughput_rps,
        format::rps,
    ));
    table.row(ratio_row("p50 (ms)", |r| r.latency.p50_ms, format::ms));
    table.row(ratio_row("p90 (ms)", |r| r.latency.p90_ms, format::ms));
    table.row(ratio_row("p99 (ms)", |r| r.latency.p99_ms, format::ms));
    table.row(ratio_row("p99.9 (ms)", |r| r.latency.p999_ms, format::ms));
    table.row(ratio_row("max (ms)", |r| r.latency.max_ms, format::ms));
    table.row(plain_row("completed", &|r| {
        format::count(r.totals.completed)
    }));
    table.row(plain_row("error rate", &|r| {
        format::percent(r.totals.error_rate)
    }));
    table.row(plain_row("429 share", &|r| {
        format::percent(r.totals.rate_limited_share)
    }));
    table.row(plain_row("cache hits", &|r| {
        format::percent(r.totals.cache_hit_share)
    }));
    table.row(plain_row("connections opened", &|r| {
        format::count(r.totals.connections_opened)
    }));
    let mut slo = vec![Cell::from("SLO")];
    slo.extend(
        reports
            .iter()
            .map(|report| Cell::verdict(report.slo.passed)),
    );
    table.row(slo);
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    fn reports() -> Vec<Report> {
        vec![
            sample::target("haproxy", 1.0),
            sample::target("gateway", 1.5),
        ]
    }

    #[test]
    fn table_shows_each_target_with_ratios_to_the_baseline() {
        let text = table(&reports());
        assert!(
            text.starts_with("mixed-tenants: 2 targets; ratios are to the baseline, haproxy\n")
        );
        let row = |label: &str| {
            text.lines()
                .find(|line| line.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("no {label:?} row in\n{text}"))
                .to_owned()
        };
        assert!(row("haproxy (baseline)").ends_with("gateway"), "{text}");
        let cells = |label: &str| -> Vec<String> {
            row(label)
                .split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(cells("p99 (ms)"), ["p99 (ms)", "31.7", "47.5 (1.50×)"]);
        assert_eq!(
            cells("throughput (req/s)"),
            ["throughput (req/s)", "995.0", "663.3 (0.67×)"]
        );
        assert!(row("error rate").contains("0.50%"), "{text}");
        assert_eq!(cells("SLO"), ["SLO", "FAIL", "FAIL"]);
    }

    #[test]
    fn page_links_each_target_and_overlays_the_plots() {
        let html = render_html(&reports());
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("<a href=\"haproxy/report.html\">haproxy</a> (baseline)"));
        assert!(html.contains("<a href=\"gateway/report.html\">gateway</a>"));
        assert!(html.contains("47.5 (1.50×)"));
        assert!(html.contains("gateway p99"), "p99 series per target");
    }

    #[test]
    fn nothing_to_compare_does_not_panic() {
        assert_eq!(table(&[]), "no runs to compare\n");
        let html = render_html(&[]);
        assert!(html.contains("no runs") && html.contains("no data"));
        let empty = [sample::empty(), sample::empty()];
        assert!(table(&empty).contains("0.000  0.000 (-)"));
        assert_eq!(render_html(&empty).matches("<svg").count(), 3);
    }
}
