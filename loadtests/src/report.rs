//! Reports: `report.json`, the terminal summary and the self-contained HTML report
//! with its plots, for one run and for a side-by-side comparison.
//!
//! # Layout
//!
//! - `model`: the [`Report`] document, written as `report.json`.
//! - [`terminal`]: the plain-text summary printed after a run.
//! - [`html`]: the one-page HTML report; [`plot`]: its SVG plots.
//! - [`compare`]: the table and page for runs against several targets.
//! - [`write()`] and [`write_compare`] put them in a directory:
//!
//! ```text
//! DIR/report.json  DIR/report.html                 (loadtest run --report DIR)
//! DIR/compare.json DIR/index.html DIR/NAME/report.* (loadtest compare --report DIR)
//! ```

mod model;

pub mod compare;
mod format;
pub mod html;
pub mod plot;
#[cfg(test)]
mod sample;
mod sections;
mod table;
pub mod terminal;

pub use model::*;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

/// Writes `report.json` (pretty-printed) and `report.html` into `dir`,
/// creating it and its parents as needed.
///
/// # Errors
///
/// Any error creating the directory or writing the files.
pub fn write(dir: &Path, report: &Report) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    write_json(&dir.join("report.json"), report)?;
    fs::write(dir.join("report.html"), html::render(report))
}

/// Writes a comparison into `dir`: `compare.json` (the reports as an array, the
/// baseline first), `index.html`, and each target's own report into
/// `dir/<target name>/` (see [`write()`]), where `index.html` links to it.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`], before anything is written, when a target
/// name could escape `dir` (empty, `.`, or containing `/`, `\` or `..`) or two
/// targets share a name; otherwise any error creating or writing the files.
pub fn write_compare(dir: &Path, reports: &[Report]) -> io::Result<()> {
    let mut names = HashSet::new();
    for report in reports {
        let name = report.target.name.as_str();
        if name.is_empty() || name == "." || name.contains(['/', '\\']) || name.contains("..") {
            return Err(invalid(format!(
                "target name {name:?} cannot name a directory"
            )));
        }
        if !names.insert(name) {
            return Err(invalid(format!("two targets are named {name:?}")));
        }
    }
    fs::create_dir_all(dir)?;
    write_json(&dir.join("compare.json"), reports)?;
    fs::write(dir.join("index.html"), compare::render_html(reports))?;
    for report in reports {
        write(&dir.join(&report.target.name), report)?;
    }
    Ok(())
}

/// Writes `value` as pretty-printed JSON and a final newline.
fn write_json(path: &Path, value: &(impl serde::Serialize + ?Sized)) -> io::Result<()> {
    let mut json = serde_json::to_string_pretty(value)?;
    json.push('\n');
    fs::write(path, json)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_puts_json_and_html_in_a_new_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runs/first");
        let report = sample::report();
        write(&dir, &report).unwrap();
        let json = fs::read_to_string(dir.join("report.json")).unwrap();
        assert!(
            json.starts_with("{\n  \"scenario\": \"mixed-tenants\""),
            "pretty-printed"
        );
        let read: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (read.target, read.totals.completed, read.timeline.len()),
            (
                report.target,
                report.totals.completed,
                report.timeline.len()
            )
        );
        let html = fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.contains("mixed-tenants"));
    }

    #[test]
    fn write_compare_writes_the_index_and_each_target() {
        let tmp = tempfile::tempdir().unwrap();
        let reports = [
            sample::target("haproxy", 1.0),
            sample::target("gateway", 1.5),
        ];
        write_compare(tmp.path(), &reports).unwrap();
        let json = fs::read_to_string(tmp.path().join("compare.json")).unwrap();
        let read: Vec<Report> = serde_json::from_str(&json).unwrap();
        let names: Vec<&str> = read.iter().map(|r| r.target.name.as_str()).collect();
        assert_eq!(names, ["haproxy", "gateway"], "baseline first");
        assert!(tmp.path().join("index.html").is_file());
        for name in ["haproxy", "gateway"] {
            assert!(
                tmp.path().join(name).join("report.json").is_file(),
                "{name}"
            );
            assert!(
                tmp.path().join(name).join("report.html").is_file(),
                "{name}"
            );
        }
    }

    #[test]
    fn write_compare_refuses_names_that_leave_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["../up", "a/b", "..", ".", ""] {
            let reports = [sample::target("ok", 1.0), sample::target(name, 1.0)];
            let err = write_compare(tmp.path(), &reports).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        let twice = [sample::target("same", 1.0), sample::target("same", 2.0)];
        let err = write_compare(tmp.path(), &twice).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }
}
