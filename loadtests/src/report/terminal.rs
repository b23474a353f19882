//! The plain-text summary printed on the terminal after a run: the run at a
//! glance, then latency, totals, tenant classes, statuses, errors and SLO
//! checks as aligned tables, and the verdict on the last line. No colours, so
//! it reads the same in a log file.

use super::Report;
use super::sections;
use super::table::Table;

/// The summary of `report`, several lines ending in a newline; the last line is
/// the SLO verdict (`Verdict  PASS — …` or `Verdict  FAIL — …`).
pub fn summary(report: &Report) -> String {
    let facts = sections::facts(report);
    let label_width = facts
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, text) in &facts {
        out.push_str(&format!("{label:<label_width$}  {text}\n"));
    }
    section(&mut out, "Latency", &sections::latency(report));
    section(&mut out, "Totals", &sections::totals(report));
    section(&mut out, "Tenant classes", &sections::classes(report));
    section(&mut out, "Statuses", &sections::statuses(report));
    section(&mut out, "Errors", &sections::errors(report));
    section(&mut out, "SLO checks", &sections::slo(report));
    out.push_str(&format!("\nVerdict  {}\n", sections::verdict(report)));
    out
}

/// Appends a blank line, `title` and the table indented under it (or `none`).
fn section(out: &mut String, title: &str, table: &Table) {
    out.push('\n');
    out.push_str(title);
    out.push('\n');
    if table.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&table.to_text(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    #[test]
    fn summary_lists_every_check_with_its_result_and_ends_in_the_verdict() {
        let text = summary(&sample::report());
        let checks: Vec<&str> = text
            .lines()
            .skip_while(|line| *line != "SLO checks")
            .skip(3)
            .take_while(|line| !line.is_empty())
            .collect();
        assert_eq!(checks.len(), 4, "{text}");
        assert!(
            checks[0].starts_with("  p99_ms") && checks[0].ends_with("PASS"),
            "{text}"
        );
        assert!(
            checks[1].starts_with("  p95_ms") && checks[1].ends_with("FAIL"),
            "{text}"
        );
        assert_eq!(
            text.lines().last(),
            Some("Verdict  FAIL — 1 of 4 SLO checks failed")
        );
    }

    #[test]
    fn summary_shows_the_key_numbers() {
        let text = summary(&sample::report());
        for expected in [
            "target       gateway (https://gateway.example.test:8443)",
            "995.0 req/s completed of 1,000.0 req/s intended (99.50%)",
            "31.7",
            "154",
            "rate limited (429)",
            "503 Service Unavailable: no healthy backend",
            "hot",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }

    #[test]
    fn empty_run_says_none_instead_of_empty_tables() {
        let text = summary(&sample::empty());
        assert!(text.contains("Errors\n  none\n"), "{text}");
        assert!(text.ends_with("Verdict  PASS — no SLO checks\n"), "{text}");
    }
}
