//! How numbers, times and text are written in the terminal summary and the HTML
//! report, so both (and the comparison) show the same value the same way.

/// Latency in milliseconds, without the unit: about three significant digits
/// (`0.412`, `4.12`, `41.2`, `412`, `4,120`).
pub(super) fn ms(value: f64) -> String {
    let decimals = match value.abs() {
        v if v < 1.0 => 3,
        v if v < 10.0 => 2,
        v if v < 100.0 => 1,
        _ => 0,
    };
    grouped(value, decimals)
}

/// A rate in requests per second, without the unit, one decimal (`1,234.5`).
pub(super) fn rps(value: f64) -> String {
    grouped(value, 1)
}

/// A count with thousands separators (`12,345`).
pub(super) fn count(value: u64) -> String {
    group_digits(&value.to_string())
}

/// A share (0–1) as a percentage: `0%`, `<0.01%`, `1.23%`.
pub(super) fn percent(share: f64) -> String {
    if share == 0.0 {
        "0%".to_owned()
    } else if share.abs() < 0.0001 {
        "<0.01%".to_owned()
    } else {
        format!("{:.2}%", share * 100.0)
    }
}

/// `part / whole` as a percentage, or `-` when `whole` is zero.
pub(super) fn percent_of(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        percent(part as f64 / whole as f64)
    }
}

/// `value / baseline` as a factor (`1.23×`), or `-` when there is no baseline
/// to divide by.
pub(super) fn ratio(value: f64, baseline: f64) -> String {
    if baseline > 0.0 && value.is_finite() && baseline.is_finite() {
        format!("{:.2}×", value / baseline)
    } else {
        "-".to_owned()
    }
}

/// A duration in seconds, without needless decimals (`60 s`, `2.5 s`).
pub(super) fn secs(value: f64) -> String {
    format!("{} s", trim_decimals(value, 1))
}

/// A byte count in binary units (`512 B`, `1.5 KiB`, `20.3 MiB`).
pub(super) fn bytes(value: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if value < 1024 {
        return format!("{value} B");
    }
    let mut scaled = value as f64 / 1024.0;
    let mut unit = 0;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    format!("{scaled:.1} {}", UNITS[unit])
}

/// A number for an axis tick or an SLO limit: at most three decimals, trailing
/// zeros dropped (`0.25`, `10`, `1,500`).
pub(super) fn plain(value: f64) -> String {
    let text = trim_decimals(value, 3);
    match text.split_once('.') {
        Some((int, frac)) => format!("{}.{frac}", group_digits(int)),
        None => group_digits(&text),
    }
}

/// Unix milliseconds as a UTC date and time (`2025-03-01 14:05:09 UTC`).
pub(super) fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, in_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_date(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// Text escaped for HTML element content and quoted attribute values.
pub(super) fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// `value` with `decimals` decimals and its integer part grouped by thousands.
fn grouped(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let text = format!("{value:.decimals$}");
    match text.split_once('.') {
        Some((int, frac)) => format!("{}.{frac}", group_digits(int)),
        None => group_digits(&text),
    }
}

/// `value` with at most `decimals` decimals, trailing zeros (and a bare point)
/// dropped.
fn trim_decimals(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        let text = text.trim_end_matches('0').trim_end_matches('.');
        if text == "-0" {
            "0".to_owned()
        } else {
            text.to_owned()
        }
    } else {
        text
    }
}

/// Thousands separators in a string of digits with an optional leading sign.
fn group_digits(int: &str) -> String {
    let (sign, digits) = match int.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", int),
    };
    let mut out = String::with_capacity(int.len() + digits.len() / 3);
    out.push_str(sign);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01,
/// counting in 400-year eras of 146,097 days that start on 1 March so that the
/// leap day falls at the end of each year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_keeps_about_three_significant_digits() {
        assert_eq!(ms(0.41234), "0.412");
        assert_eq!(ms(4.1234), "4.12");
        assert_eq!(ms(41.234), "41.2");
        assert_eq!(ms(412.34), "412");
        assert_eq!(ms(4123.4), "4,123");
    }

    #[test]
    fn counts_and_rates_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(rps(12_345.67), "12,345.7");
        assert_eq!(plain(1500.0), "1,500");
        assert_eq!(plain(0.25), "0.25");
    }

    #[test]
    fn shares_and_ratios() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.000_01), "<0.01%");
        assert_eq!(percent(0.0123), "1.23%");
        assert_eq!(percent_of(1, 0), "-");
        assert_eq!(ratio(12.3, 10.0), "1.23×");
        assert_eq!(ratio(1.0, 0.0), "-");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(secs(60.0), "60 s");
        assert_eq!(secs(2.5), "2.5 s");
    }

    #[test]
    fn utc_dates_cross_leap_days() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_709_251_199_999), "2024-02-29 23:59:59 UTC");
        assert_eq!(utc(1_740_837_909_000), "2025-03-01 14:05:09 UTC");
    }

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
