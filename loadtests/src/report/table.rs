//! A small table of text cells that renders as aligned plain text for the
//! terminal and as an HTML `<table>`, so both show the same rows.

use std::fmt::Write as _;

use super::format;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    /// Labels and names.
    Left,
    /// Numbers, so their digits line up.
    Right,
}

/// A cell's standing, which the HTML page colours (the text says it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mark {
    /// Nothing to point out.
    Plain,
    /// A check that held.
    Pass,
    /// A check that failed.
    Fail,
}

/// One cell: its text and standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cell {
    text: String,
    mark: Mark,
}

impl Cell {
    /// `PASS` or `FAIL`, marked as such.
    pub(super) fn verdict(passed: bool) -> Self {
        Self::marked(if passed { "PASS" } else { "FAIL" }, passed)
    }

    /// `text`, marked as passing or failing.
    pub(super) fn marked(text: impl Into<String>, passed: bool) -> Self {
        Self {
            text: text.into(),
            mark: if passed { Mark::Pass } else { Mark::Fail },
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self {
            text,
            mark: Mark::Plain,
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self::from(text.to_owned())
    }
}

/// Rows of cells under titled columns.
#[derive(Debug, Clone, Default)]
pub(super) struct Table {
    /// Column titles and alignment.
    columns: Vec<(String, Align)>,
    /// The rows, each as wide as `columns` (short rows are padded).
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these columns.
    pub(super) fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|&(title, align)| (title.to_owned(), align))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// An empty table with these owned column titles.
    pub(super) fn with_columns(columns: Vec<(String, Align)>) -> Self {
        Self {
            columns,
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are left blank, extra ones dropped.
    pub(super) fn row(&mut self, cells: Vec<Cell>) {
        let mut cells = cells;
        cells.resize(self.columns.len(), Cell::from(""));
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as aligned plain text, each line starting with `indent`
    /// spaces, columns two spaces apart, the titles underlined with dashes.
    pub(super) fn to_text(&self, indent: usize) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (title, _))| {
                self.rows
                    .iter()
                    .map(|row| width(&row[i].text))
                    .chain([width(title)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = " ".repeat(indent);
            for (i, text) in cells.enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - width(text));
                match self.columns[i].1 {
                    Align::Left => {
                        out.push_str(text);
                        out.push_str(&pad);
                    }
                    Align::Right => {
                        out.push_str(&pad);
                        out.push_str(text);
                    }
                }
            }
            let mut out = out.trim_end().to_owned();
            out.push('\n');
            out
        };
        let mut out = line(&mut self.columns.iter().map(|(title, _)| title.as_str()));
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        out.push_str(&line(&mut rule.iter().map(String::as_str)));
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(|cell| cell.text.as_str())));
        }
        out
    }

    /// The table as an HTML `<table>`, every text escaped; numeric columns get
    /// class `num`, passing and failing cells `pass` and `fail`.
    pub(super) fn to_html(&self) -> String {
        let mut out = String::from("<table>\n<thead><tr>");
        for (title, align) in &self.columns {
            let _ = write!(
                out,
                "<th{}>{}</th>",
                align_class(*align),
                format::html(title)
            );
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in &self.rows {
            out.push_str("<tr>");
            for (cell, (_, align)) in row.iter().zip(&self.columns) {
                let mut classes = Vec::new();
                if *align == Align::Right {
                    classes.push("num");
                }
                match cell.mark {
                    Mark::Plain => {}
                    Mark::Pass => classes.push("pass"),
                    Mark::Fail => classes.push("fail"),
                }
                if classes.is_empty() {
                    out.push_str("<td>");
                } else {
                    let _ = write!(out, "<td class=\"{}\">", classes.join(" "));
                }
                out.push_str(&format::html(&cell.text));
                out.push_str("</td>");
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }
}

/// A text's width on the terminal, counting `×` and `≤` as one column each.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// The `class` attribute of a header cell.
fn align_class(align: Align) -> &'static str {
    match align {
        Align::Left => "",
        Align::Right => " class=\"num\"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut table = Table::new(&[("name", Align::Left), ("value", Align::Right)]);
        table.row(vec!["p99".into(), "12.3".into()]);
        table.row(vec!["throughput".into(), "1,234.5".into()]);
        table.row(vec![Cell::verdict(false)]);
        table
    }

    #[test]
    fn text_columns_are_aligned_and_trimmed() {
        assert_eq!(
            sample().to_text(2),
            "  name          value\n  \
               ----------  -------\n  \
               p99            12.3\n  \
               throughput  1,234.5\n  \
               FAIL\n"
        );
    }

    #[test]
    fn html_escapes_cells_and_marks_verdicts() {
        let mut table = Table::new(&[("<b>", Align::Left)]);
        table.row(vec!["a&b".into()]);
        table.row(vec![Cell::verdict(true)]);
        let html = table.to_html();
        assert!(html.contains("<th>&lt;b&gt;</th>"), "{html}");
        assert!(html.contains("<td>a&amp;b</td>"), "{html}");
        assert!(html.contains("<td class=\"pass\">PASS</td>"), "{html}");
    }
}
