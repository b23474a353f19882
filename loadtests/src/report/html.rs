//! The HTML report of one run: a single self-contained page (inline CSS and
//! SVG plots, no scripts, no external resources) that can be opened from disk
//! or attached to a ticket. It shows the SLO verdict first, the headline
//! numbers, the three plots, then the same tables as the terminal summary.
//!
//! Every text taken from the report (scenario, description, target, error
//! examples …) is HTML-escaped; the plots escape their own text.

use std::fmt::Write as _;

use super::table::Table;
use super::{Report, format, plot, sections};

/// The page for `report`.
pub fn render(report: &Report) -> String {
    let one = std::slice::from_ref(report);
    let mut body = String::new();

    let _ = write!(
        body,
        "<header>\n<p class=\"kicker\">Switchyard load test</p>\n<h1>{}</h1>\n",
        format::html(&report.scenario)
    );
    if !report.description.is_empty() {
        let _ = writeln!(
            body,
            "<p class=\"description\">{}</p>",
            format::html(&report.description)
        );
    }
    body.push_str("<dl class=\"facts\">\n");
    for (label, text) in sections::facts(report) {
        if !matches!(label, "scenario" | "description") {
            let _ = writeln!(body, "<dt>{label}</dt><dd>{}</dd>", format::html(&text));
        }
    }
    body.push_str("</dl>\n</header>\n");

    body.push_str(&verdict_banner(
        report.slo.passed,
        &sections::verdict_detail(report),
    ));
    body.push_str(&headline(report));
    section(&mut body, "SLO checks", &sections::slo(report));
    section(&mut body, "Latency", &sections::latency(report));

    body.push_str("<h2>Plots</h2>\n");
    figure(
        &mut body,
        &plot::latency_percentiles(one),
        "Latency by percentile over the measured window. The x axis stretches the tail: \
         each step right is ten times rarer.",
    );
    figure(
        &mut body,
        &plot::latency_over_time(one),
        "Latency of the requests intended in each second, measured from their intended \
         send time; the shaded seconds are warm-up.",
    );
    figure(
        &mut body,
        &plot::throughput_over_time(one),
        "Requests per second: intended by the schedule (dashed) and completed, with the \
         errors and 429s among the requests intended in each second.",
    );

    section(&mut body, "Totals", &sections::totals(report));
    section(&mut body, "Tenant classes", &sections::classes(report));
    section(&mut body, "Statuses", &sections::statuses(report));
    section(&mut body, "Errors", &sections::errors(report));

    page(
        &format!("{} → {}: load test", report.scenario, report.target.name),
        "report.json",
        &body,
    )
}

/// A whole HTML document titled `title` (escaped here) around `body` (already
/// HTML), with the report style sheet inline and a footer pointing to the JSON
/// file written beside it.
pub(super) fn page(title: &str, json_file: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\
         <footer>Written by <code>loadtest</code>; the numbers are in <code>{json_file}</code> \
         next to this page.</footer>\n</main>\n</body>\n</html>\n",
        format::html(title)
    )
}

/// The SLO verdict as a coloured banner: `PASS` or `FAIL` and what it rests on.
pub(super) fn verdict_banner(passed: bool, detail: &str) -> String {
    let (class, word) = if passed {
        ("pass", "PASS")
    } else {
        ("fail", "FAIL")
    };
    format!(
        "<section class=\"verdict {class}\"><span class=\"badge\">SLO {word}</span> {}</section>\n",
        format::html(detail)
    )
}

/// `<h2>title</h2>` and the table, or "none" when it has no rows.
pub(super) fn section(body: &mut String, title: &str, table: &Table) {
    let _ = writeln!(body, "<h2>{}</h2>", format::html(title));
    if table.is_empty() {
        body.push_str("<p class=\"none\">none</p>\n");
    } else {
        body.push_str(&table.to_html());
    }
}

/// A plot (an SVG document from [`plot`]) and its caption.
pub(super) fn figure(body: &mut String, svg: &str, caption: &str) {
    let _ = writeln!(
        body,
        "<figure>\n{svg}<figcaption>{}</figcaption>\n</figure>",
        format::html(caption)
    );
}

/// The numbers one looks at first, as large tiles.
fn headline(report: &Report) -> String {
    let (totals, latency) = (&report.totals, &report.latency);
    let tiles = [
        ("throughput", format::rps(totals.throughput_rps), "req/s"),
        ("p50", format::ms(latency.p50_ms), "ms"),
        ("p99", format::ms(latency.p99_ms), "ms"),
        ("p99.9", format::ms(latency.p999_ms), "ms"),
        ("max", format::ms(latency.max_ms), "ms"),
        ("errors", format::percent(totals.error_rate), ""),
        ("429", format::percent(totals.rate_limited_share), ""),
        ("cache hits", format::percent(totals.cache_hit_share), ""),
    ];
    let mut out = String::from("<section class=\"tiles\">\n");
    for (label, value, unit) in tiles {
        let _ = writeln!(
            out,
            "<div class=\"tile\"><div class=\"label\">{label}</div>\
             <div class=\"value\">{value}<span class=\"unit\">{unit}</span></div></div>"
        );
    }
    out.push_str("</section>\n");
    out
}

/// The style sheet: readable type, aligned numbers, green and red verdicts.
const STYLE: &str = "\
:root { color-scheme: light; --pass: #1b7a3a; --fail: #b3261e; --line: #d9d9de; }
body { margin: 0; background: #f6f6f8; color: #1d1d22;
  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { margin: 0 0 4px; font-size: 28px; }
h2 { margin: 32px 0 10px; font-size: 19px; }
.kicker { margin: 0; color: #6b6b75; text-transform: uppercase; letter-spacing: .06em; font-size: 12px; }
.description { margin: 0 0 12px; color: #45454d; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0; }
.facts dt { color: #6b6b75; }
.facts dd { margin: 0; }
.verdict { margin: 20px 0; padding: 14px 18px; border-radius: 8px; font-size: 17px; color: #fff; }
.verdict.pass { background: var(--pass); }
.verdict.fail { background: var(--fail); }
.verdict .badge { font-weight: 700; font-size: 22px; margin-right: 10px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 10px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.tile .label { color: #6b6b75; font-size: 13px; }
.tile .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.tile .unit { font-size: 13px; font-weight: 400; color: #6b6b75; margin-left: 4px; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #eeeef2; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.pass { color: var(--pass); font-weight: 700; }
td.fail { color: var(--fail); font-weight: 700; }
.none { color: #6b6b75; }
figure { margin: 0 0 20px; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { color: #45454d; font-size: 13px; padding: 4px 8px; }
ul.targets { padding-left: 20px; }
.tag { display: inline-block; padding: 0 6px; border-radius: 4px; color: #fff; font-size: 12px; font-weight: 700; }
.tag.pass { background: var(--pass); }
.tag.fail { background: var(--fail); }
footer { margin-top: 40px; color: #6b6b75; font-size: 13px; }
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    #[test]
    fn page_has_the_plots_numbers_and_verdict() {
        let report = sample::report();
        let html = render(&report);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 3, "three plots");
        assert!(html.contains(&format::ms(report.latency.p99_ms)));
        assert!(html.contains(">31.7<"), "p99 as formatted");
        assert!(html.contains("<span class=\"badge\">SLO FAIL</span> 1 of 4 SLO checks failed"));
        assert!(html.contains("<td class=\"fail\">FAIL</td>"));
        assert!(html.contains("503 Service Unavailable: no healthy backend"));
    }

    #[test]
    fn page_is_self_contained() {
        let html = render(&sample::report());
        for external in ["<script", "<link", "src=\"http", "@import", "url("] {
            assert!(!html.contains(external), "{external:?} in the page");
        }
    }

    #[test]
    fn text_from_the_report_is_escaped() {
        let mut report = sample::target("<img src=x onerror=alert(1)>", 1.0);
        report.scenario = "<script>alert(1)</script>".to_owned();
        report.description = "a & b \"quoted\"".to_owned();
        report.errors[0].example = "<b>bold</b>".to_owned();
        let html = render(&report);
        assert!(!html.contains("<script>"), "scenario name not escaped");
        assert!(!html.contains("<img"), "target name not escaped");
        assert!(!html.contains("<b>"), "error example not escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a &amp; b &quot;quoted&quot;"));
    }

    #[test]
    fn empty_run_renders() {
        let html = render(&sample::empty());
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("no data"));
        assert!(html.contains("SLO PASS"));
    }
}
