//! SVG plots of one run, or of several runs of a scenario overlaid (one series
//! per target, in distinct colours, named in a legend), drawn with plotters
//! into strings for the HTML reports.
//!
//! - [`latency_percentiles`]: latency against percentile on the classic
//!   HdrHistogram scale, where 90%, 99%, 99.9% … are evenly spaced (x is
//!   `log10(1 / (1 - p))`, "the number of nines").
//! - [`latency_over_time`]: p50, p99 and max of each second, or p99 per target.
//! - [`throughput_over_time`]: intended and completed requests per second with
//!   errors and 429s, or completed per target against the intended rate.
//!
//! Time plots shade the warm-up seconds. A plot with nothing to show is drawn
//! empty with a "no data" note. Text is written as SVG `<text>` elements that
//! the browser lays out with its own sans-serif font: plotters is built without
//! its font features, so no font file is read, and it only estimates text
//! widths (to lay out the legend) from the character count.

use std::error::Error;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Latency, Report, Second};

/// Width and height of every plot in pixels; the HTML page scales them.
const SIZE: (u32, u32) = (960, 420);

/// Space around the chart, pixels.
const MARGIN: i32 = 16;
/// Width of the y axis labels and title, pixels.
const Y_LABELS: i32 = 64;
/// Height of one row of legend entries, pixels.
const LEGEND_ROW: i32 = 24;
/// Length of a legend entry's swatch, pixels.
const SWATCH: i32 = 24;

/// Series colours, distinguishable from one another (Tableau 10).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x4e, 0x79, 0xa7), // blue
    RGBColor(0xf2, 0x8e, 0x2b), // orange
    RGBColor(0xe1, 0x57, 0x59), // red
    RGBColor(0x59, 0xa1, 0x4f), // green
    RGBColor(0xb0, 0x7a, 0xa1), // purple
    RGBColor(0x76, 0xb7, 0xb2), // teal
    RGBColor(0x9c, 0x75, 0x5f), // brown
    RGBColor(0xed, 0xc9, 0x48), // yellow
];
/// The intended rate: the schedule, not a measurement.
const GREY: RGBColor = RGBColor(0x79, 0x70, 0x6e);
/// The fill of the warm-up seconds.
const WARMUP_SHADE: RGBAColor = RGBAColor(0, 0, 0, 0.07);

/// Percentile ticks on the "nines" axis, from 50% to 99.9999%.
const PERCENTILE_TICKS: [(f64, &str); 7] = [
    (50.0, "50%"),
    (90.0, "90%"),
    (99.0, "99%"),
    (99.9, "99.9%"),
    (99.99, "99.99%"),
    (99.999, "99.999%"),
    (99.9999, "99.9999%"),
];
/// The longest percentile axis, in nines (99.9999%); finer points are left out.
const MAX_NINES: f64 = 6.0;

/// Latency by percentile: one curve per report, named after its target.
/// The 100% point (the max) cannot be placed on this scale and is left out; the
/// axis reaches the decade past the finest percentile measured (at least 99%).
pub fn latency_percentiles(reports: &[Report]) -> String {
    let lines = reports
        .iter()
        .enumerate()
        .map(|(i, report)| Line {
            label: report.target.name.clone(),
            color: series_color(i),
            dashed: false,
            points: percentile_points(&report.latency),
        })
        .collect();
    render(&LineChart {
        title: "Latency by percentile",
        x: XAxis::Percentile,
        y_desc: "latency (ms)",
        lines,
        warmup_secs: 0.0,
    })
}

/// Latency over time. For one report: the p50, p99 and max of the requests
/// intended in each second. For several: each target's p99. Seconds in which no
/// request completed are gaps.
pub fn latency_over_time(reports: &[Report]) -> String {
    let lines = match reports {
        [report] => {
            let metric = |label: &str, color, value: fn(&Second) -> f64| Line {
                label: label.to_owned(),
                color,
                dashed: false,
                points: latency_points(&report.timeline, value),
            };
            vec![
                metric("p50", series_color(0), |s| s.p50_ms),
                metric("p99", series_color(1), |s| s.p99_ms),
                metric("max", series_color(2), |s| s.max_ms),
            ]
        }
        _ => reports
            .iter()
            .enumerate()
            .map(|(i, report)| Line {
                label: format!("{} p99", report.target.name),
                color: series_color(i),
                dashed: false,
                points: latency_points(&report.timeline, |s| s.p99_ms),
            })
            .collect(),
    };
    render(&LineChart {
        title: if reports.len() > 1 {
            "p99 latency over time"
        } else {
            "Latency over time"
        },
        x: XAxis::Seconds,
        y_desc: "latency (ms)",
        lines,
        warmup_secs: warmup_secs(reports),
    })
}

/// Requests per second over time. For one report: intended (dashed) and
/// completed, errors and 429s. For several: each target's completed requests
/// against the first report's intended rate.
pub fn throughput_over_time(reports: &[Report]) -> String {
    let mut lines = Vec::new();
    if let Some(first) = reports.first() {
        lines.push(Line {
            dashed: true,
            ..per_second("intended", GREY, first, |s| s.intended)
        });
    }
    match reports {
        [report] => lines.extend([
            per_second("completed", series_color(0), report, |s| s.completed),
            per_second("429", series_color(1), report, |s| s.rate_limited),
            per_second("errors", series_color(2), report, |s| s.errors),
        ]),
        _ => lines.extend(reports.iter().enumerate().map(|(i, report)| {
            let label = format!("{} completed", report.target.name);
            per_second(label, series_color(i), report, |s| s.completed)
        })),
    }
    render(&LineChart {
        title: "Throughput over time",
        x: XAxis::Seconds,
        y_desc: "requests per second",
        lines,
        warmup_secs: warmup_secs(reports),
    })
}

/// A chart of lines over a shared x axis, before it is drawn.
struct LineChart {
    /// The caption.
    title: &'static str,
    /// What x is.
    x: XAxis,
    /// What y is, with its unit.
    y_desc: &'static str,
    /// The series, drawn in order.
    lines: Vec<Line>,
    /// Seconds from 0 to shade as warm-up (time axes only; 0 for none).
    warmup_secs: f64,
}

/// One series.
struct Line {
    /// Its legend entry.
    label: String,
    color: RGBColor,
    /// Whether it is drawn dashed (a schedule rather than a measurement).
    dashed: bool,
    /// Its points as runs without gaps, each drawn as one line.
    points: Vec<Vec<(f64, f64)>>,
}

impl Line {
    /// Whether there is anything to draw.
    fn has_points(&self) -> bool {
        self.points.iter().any(|run| !run.is_empty())
    }
}

/// The kinds of x axis.
#[derive(Clone, Copy)]
enum XAxis {
    /// Nines, `log10(1 / (1 - p))`, ticks labelled as percentiles.
    Percentile,
    /// Seconds since the start of the run.
    Seconds,
}

/// A linear f64 axis with the ticks we choose (plotters picks round numbers,
/// and its own key-point wrapper cannot be given a label formatter).
struct TickedAxis {
    linear: RangedCoordf64,
    /// Where the ticks, labels and grid lines go.
    ticks: Vec<f64>,
}

impl TickedAxis {
    fn new(range: Range<f64>, ticks: Vec<f64>) -> Self {
        Self {
            linear: range.into(),
            ticks,
        }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Bold grid lines at the ticks, no light ones in between.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
}

impl XAxis {
    /// The axis from 0 to past the furthest point, with its ticks.
    fn coord(self, lines: &[Line]) -> TickedAxis {
        let furthest = lines
            .iter()
            .flat_map(|line| line.points.iter().flatten())
            .map(|&(x, _)| x)
            .fold(0.0, f64::max);
        match self {
            XAxis::Percentile => {
                // The decade past the finest percentile, at least 99%.
                let end = (furthest - 1e-9).ceil().clamp(2.0, MAX_NINES);
                let ticks = PERCENTILE_TICKS
                    .iter()
                    .map(|&(p, _)| nines(p))
                    .filter(|&x| x <= end + 1e-9)
                    .collect();
                TickedAxis::new(0.0..end, ticks)
            }
            XAxis::Seconds => {
                // A time series point at t stands for the second [t, t + 1).
                let end = (furthest + 1.0).max(1.0);
                let step = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
                    .into_iter()
                    .find(|step| end / step <= 12.0)
                    .unwrap_or((end / 12.0 / 600.0).ceil() * 600.0);
                let ticks = (0..)
                    .map(|i| f64::from(i) * step)
                    .take_while(|&t| t <= end)
                    .collect();
                TickedAxis::new(0.0..end, ticks)
            }
        }
    }

    /// A tick's label.
    fn label(self, x: f64) -> String {
        match self {
            XAxis::Percentile => PERCENTILE_TICKS
                .iter()
                .find(|&&(p, _)| (nines(p) - x).abs() < 1e-6)
                .map_or_else(
                    || format!("{}%", super::format::plain(100.0 * (1.0 - 10f64.powf(-x)))),
                    |&(_, label)| label.to_owned(),
                ),
            XAxis::Seconds => format!("{x:.0}"),
        }
    }

    /// The axis title.
    fn desc(self) -> &'static str {
        match self {
            XAxis::Percentile => "percentile (log scale of 1 / (1 - p))",
            XAxis::Seconds => "time since start (s)",
        }
    }
}

/// The drawing surface of one plot.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws `chart` into an SVG document; should plotters fail, the document says so
/// instead.
fn render(chart: &LineChart) -> String {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, chart).and_then(|()| Ok(root.present()?))
    };
    match drawn {
        Ok(()) => svg,
        Err(err) => failed(&err.to_string()),
    }
}

/// Draws `chart` on `root`: title, a legend row under it (so the legend never
/// hides a line), axes, warm-up shading, lines, and a "no data" note when there
/// are no points.
fn draw(root: &Area<'_>, chart: &LineChart) -> Result<(), Box<dyn Error>> {
    root.fill(&WHITE)?;
    let titled = root.titled(chart.title, ("sans-serif", 24))?;
    let entries = legend_entries(chart);
    let placed = place_legend(&titled, &entries)?;
    let rows = placed.iter().map(|&(_, row)| row + 1).max().unwrap_or(0);
    let (legend_area, plot_area) = titled.split_vertically(rows * LEGEND_ROW + 4);
    draw_legend(&legend_area, &entries, &placed)?;

    let x_coord = chart.x.coord(&chart.lines);
    let highest = chart
        .lines
        .iter()
        .flat_map(|line| line.points.iter().flatten())
        .map(|&(_, y)| y)
        .fold(0.0, f64::max);
    let top = if highest > 0.0 { highest * 1.08 } else { 1.0 };

    let mut context = ChartBuilder::on(&plot_area)
        .margin(MARGIN)
        .margin_right(28)
        .x_label_area_size(48)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d(x_coord, 0.0..top)?;

    let x_label = |x: &f64| chart.x.label(*x);
    let y_label = |y: &f64| super::format::plain(*y);
    context
        .configure_mesh()
        .x_desc(chart.x.desc())
        .y_desc(chart.y_desc)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
        .y_max_light_lines(1)
        .draw()?;

    if chart.warmup_secs > 0.0 {
        context.draw_series([Rectangle::new(
            [(0.0, 0.0), (chart.warmup_secs, top)],
            WARMUP_SHADE.filled(),
        )])?;
    }

    for line in &chart.lines {
        let style = line.color.stroke_width(2);
        for run in &line.points {
            if run.len() == 1 {
                context.draw_series(run.iter().map(|&p| Circle::new(p, 3, style.filled())))?;
            } else if line.dashed {
                context.draw_series(DashedLineSeries::new(run.iter().copied(), 8, 5, style))?;
            } else {
                context.draw_series(LineSeries::new(run.iter().copied(), style))?;
            }
        }
    }

    if !chart.lines.iter().any(Line::has_points) {
        let (x_range, y_range) = (context.x_range(), context.y_range());
        let centre = (
            (x_range.start + x_range.end) / 2.0,
            (y_range.start + y_range.end) / 2.0,
        );
        let style = ("sans-serif", 28)
            .into_font()
            .color(&GREY)
            .pos(Pos::new(HPos::Center, VPos::Center));
        context
            .plotting_area()
            .draw(&Text::new("no data", centre, style))?;
    }
    Ok(())
}

/// How a legend entry shows its series.
enum Swatch {
    /// A line in the series' colour, dashed or not.
    Line { color: RGBColor, dashed: bool },
    /// The warm-up shading.
    Shade,
}

/// The legend: the warm-up, if shaded, then every line with points.
fn legend_entries(chart: &LineChart) -> Vec<(Swatch, &str)> {
    let warmup = (chart.warmup_secs > 0.0).then_some((Swatch::Shade, "warm-up"));
    let lines = chart
        .lines
        .iter()
        .filter(|line| line.has_points())
        .map(|line| {
            let swatch = Swatch::Line {
                color: line.color,
                dashed: line.dashed,
            };
            (swatch, line.label.as_str())
        });
    warmup.into_iter().chain(lines).collect()
}

/// The legend's font.
fn legend_font() -> TextStyle<'static> {
    ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center))
}

/// Places the legend entries left to right from the plot's left edge, wrapping
/// to a new row when one would pass the right margin: each entry's x and row.
/// Text widths are plotters' estimate from the character count.
fn place_legend(
    area: &Area<'_>,
    entries: &[(Swatch, &str)],
) -> Result<Vec<(i32, i32)>, Box<dyn Error>> {
    let right = area.dim_in_pixel().0 as i32 - MARGIN;
    let left = MARGIN + Y_LABELS;
    let (mut x, mut row) = (left, 0);
    let mut placed = Vec::with_capacity(entries.len());
    for (_, label) in entries {
        let (text_width, _) = area.estimate_text_size(label, &legend_font())?;
        let width = SWATCH + 6 + text_width as i32 + 22;
        if x > left && x + width > right {
            (x, row) = (left, row + 1);
        }
        placed.push((x, row));
        x += width;
    }
    Ok(placed)
}

/// Draws the legend entries where [`place_legend`] put them.
fn draw_legend(
    area: &Area<'_>,
    entries: &[(Swatch, &str)],
    placed: &[(i32, i32)],
) -> Result<(), Box<dyn Error>> {
    for ((swatch, label), &(x, row)) in entries.iter().zip(placed) {
        let y = row * LEGEND_ROW + LEGEND_ROW / 2;
        match *swatch {
            Swatch::Line {
                color,
                dashed: false,
            } => {
                area.draw(&PathElement::new(
                    [(x, y), (x + SWATCH, y)],
                    color.stroke_width(2),
                ))?;
            }
            Swatch::Line {
                color,
                dashed: true,
            } => {
                let style = color.stroke_width(2);
                area.draw(&PathElement::new([(x, y), (x + 9, y)], style))?;
                area.draw(&PathElement::new([(x + 15, y), (x + SWATCH, y)], style))?;
            }
            Swatch::Shade => {
                area.draw(&Rectangle::new(
                    [(x, y - 7), (x + SWATCH, y + 7)],
                    WARMUP_SHADE.filled(),
                ))?;
            }
        }
        area.draw(&Text::new(*label, (x + SWATCH + 6, y), legend_font()))?;
    }
    Ok(())
}

/// A minimal SVG document carrying an error message, escaped.
fn failed(message: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"60\">\
         <text x=\"10\" y=\"30\" font-family=\"sans-serif\">plot failed: {}</text></svg>",
        SIZE.0,
        super::format::html(message)
    )
}

/// The colour of the `i`th series (colours repeat after eight).
fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Percentile `p` (0–100) as nines: `log10(1 / (1 - p / 100))`, 1 for 90%, 2 for 99%.
fn nines(p: f64) -> f64 {
    -(1.0 - p / 100.0).log10()
}

/// A latency curve on the nines axis: one run, without the 100% point (infinitely
/// far right) and anything beyond [`MAX_NINES`].
fn percentile_points(latency: &Latency) -> Vec<Vec<(f64, f64)>> {
    let run: Vec<(f64, f64)> = latency
        .curve
        .iter()
        .filter(|&&(p, _)| (0.0..100.0).contains(&p))
        .map(|&(p, ms)| (nines(p), ms))
        .filter(|&(x, _)| x <= MAX_NINES + 1e-9)
        .collect();
    vec![run]
}

/// One latency value per second, split into runs at the seconds in which no
/// request completed (all values 0).
fn latency_points(timeline: &[Second], value: fn(&Second) -> f64) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for second in timeline {
        if second.max_ms > 0.0 {
            if let Some(run) = runs.last_mut() {
                run.push((f64::from(second.t), value(second)));
            }
        } else if runs.last().is_some_and(|run| !run.is_empty()) {
            runs.push(Vec::new());
        }
    }
    runs.retain(|run| !run.is_empty());
    runs
}

/// A count per second of `report`'s timeline as a solid line, without gaps.
fn per_second(
    label: impl Into<String>,
    color: RGBColor,
    report: &Report,
    value: fn(&Second) -> u64,
) -> Line {
    let points = report
        .timeline
        .iter()
        .map(|second| (f64::from(second.t), value(second) as f64))
        .collect();
    Line {
        label: label.into(),
        color,
        dashed: false,
        points: vec![points],
    }
}

/// The warm-up to shade: the first report's (all runs of a comparison share
/// the scenario).
fn warmup_secs(reports: &[Report]) -> f64 {
    reports.first().map_or(0.0, |report| report.warmup_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|rest| rest.split_once('>'))
            .filter_map(|(_, rest)| rest.split_once("</text>"))
            .map(|(text, _)| text.trim().to_owned())
            .collect()
    }

    #[test]
    fn percentile_axis_is_labelled_in_nines() {
        let svg = latency_percentiles(std::slice::from_ref(&sample::report()));
        let texts = texts(&svg);
        for expected in [
            "50%",
            "90%",
            "99%",
            "99.9%",
            "99.99%",
            "latency (ms)",
            "gateway",
        ] {
            assert!(
                texts.iter().any(|t| t == expected),
                "{expected:?} not in {texts:?}"
            );
        }
        assert!(
            !texts.iter().any(|t| t == "99.999%"),
            "axis should stop at 99.99%: {texts:?}"
        );
    }

    #[test]
    fn time_plots_name_their_series_and_mark_warm_up() {
        let report = sample::report();
        let latency = texts(&latency_over_time(std::slice::from_ref(&report)));
        let throughput = texts(&throughput_over_time(std::slice::from_ref(&report)));
        for expected in ["p50", "p99", "max", "warm-up", "time since start (s)"] {
            assert!(
                latency.iter().any(|t| t == expected),
                "{expected:?} not in {latency:?}"
            );
        }
        for expected in [
            "intended",
            "completed",
            "429",
            "errors",
            "requests per second",
        ] {
            assert!(
                throughput.iter().any(|t| t == expected),
                "{expected:?} not in {throughput:?}"
            );
        }
    }

    #[test]
    fn several_reports_get_one_series_each() {
        let reports = [
            sample::target("haproxy", 1.0),
            sample::target("gateway", 1.4),
        ];
        let svg = latency_over_time(&reports);
        let texts = texts(&svg);
        assert!(texts.iter().any(|t| t == "haproxy p99"), "{texts:?}");
        assert!(texts.iter().any(|t| t == "gateway p99"), "{texts:?}");
        assert!(
            svg.contains("#4E79A7") && svg.contains("#F28E2B"),
            "two colours"
        );
    }

    #[test]
    fn plotters_escapes_target_names() {
        let svg = latency_percentiles(&[sample::target("<script>", 1.0)]);
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(!svg.contains("<script>"));
    }

    #[test]
    fn empty_data_draws_an_empty_chart_with_a_note() {
        let empty = sample::empty();
        for svg in [
            latency_percentiles(std::slice::from_ref(&empty)),
            latency_over_time(std::slice::from_ref(&empty)),
            throughput_over_time(std::slice::from_ref(&empty)),
            latency_percentiles(&[]),
            throughput_over_time(&[]),
        ] {
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(texts(&svg).iter().any(|t| t == "no data"), "{svg}");
        }
    }

    #[test]
    fn seconds_without_latency_are_gaps() {
        let mut timeline = sample::report().timeline;
        timeline[3].max_ms = 0.0;
        let runs = latency_points(&timeline[..6], |s| s.p99_ms);
        let lengths: Vec<usize> = runs.iter().map(Vec::len).collect();
        assert_eq!(lengths, [3, 2]);
    }

    #[test]
    fn a_long_legend_wraps_into_rows() {
        let labels: Vec<String> = (0..8)
            .map(|i| format!("target-number-{i} completed"))
            .collect();
        let entries: Vec<(Swatch, &str)> = labels
            .iter()
            .map(|label| (Swatch::Shade, label.as_str()))
            .collect();
        let mut svg = String::new();
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let placed = place_legend(&root, &entries).unwrap();
        let rows = placed.iter().map(|&(_, row)| row).max().unwrap() + 1;
        assert!(rows >= 2, "{placed:?}");
        for pair in placed.windows(2) {
            let ((x0, row0), (x1, row1)) = (pair[0], pair[1]);
            assert!(row1 > row0 || x1 > x0, "{placed:?}");
        }
        assert!(placed.iter().all(|&(x, _)| x < SIZE.0 as i32 - MARGIN));
    }
}
