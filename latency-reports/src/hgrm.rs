//! The percentile-distribution text format (`.hgrm`) that HdrHistogram's own tools print
//! (Java `AbstractHistogram.outputPercentileDistribution`) and read (the HistogramPlotter page).
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.100 0.000000000000          1           1.00
//!        ...
//!      100.000 1.000000000000       1000
//! #[Mean    =       50.050, StdDeviation   =       28.868]
//! #[Max     =      100.000, Total count    =         1000]
//! #[Buckets =           22, SubBuckets     =         2048]
//! ```
//!
//! Values are divided by a unit scaling ratio (1000 turns nanoseconds into microseconds) and
//! printed with as many decimals as the histogram has significant digits, as Java does.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::ReportError;

/// Percentile ticks per half distance to 100%, as HdrHistogram's tools use by default.
pub const DEFAULT_TICKS_PER_HALF: u32 = 5;

/// Nanoseconds → microseconds: the unit scaling ratio of every `.hgrm` spinwire writes.
pub const NS_PER_US: f64 = 1000.0;

/// One row of a percentile distribution, as HdrHistogram's Java `PercentileIterator` yields it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PercentileStep {
    /// Highest value equivalent to the recorded value the step stopped at (histogram units).
    pub value: u64,
    /// The percentile level iterated to, 0..=100.
    pub percentile: f64,
    /// Values at or below `value`.
    pub total_count: u64,
}

/// The percentile steps HdrHistogram's Java `PercentileIterator` reports: levels start at 0%
/// and advance in `ticks_per_half` equal ticks per half distance to 100%; each level is reported
/// at the first recorded value whose cumulative percentile reaches it; after the last recorded
/// value one more step at exactly 100%.
///
/// Levels are kept in percent, as Java does: the tick sizes (20/2^k percent for 5 ticks) are
/// exact in binary there, so a level like 75% is reached by a value at exactly 75%, where
/// iterating in quantiles (0.05 is not exact in binary) would overshoot it and report the next
/// value. That is why this does not use `hdrhistogram`'s `iter_quantiles`.
pub fn percentile_steps(hist: &Histogram<u64>, ticks_per_half: u32) -> Vec<PercentileStep> {
    let total = hist.len();
    let mut steps = Vec::new();
    if total == 0 {
        return steps;
    }
    let ticks = u64::from(ticks_per_half.max(1));
    let mut level = 0.0f64;
    let mut cumulative = 0u64;
    let mut last_value = 0u64;
    for v in hist.iter_recorded() {
        let count = v.count_at_value();
        cumulative = cumulative.saturating_add(count);
        let value = hist.highest_equivalent(v.value_iterated_to());
        last_value = value;
        loop {
            let current = (100.0 * cumulative as f64) / total as f64;
            if current < level {
                break;
            }
            steps.push(PercentileStep {
                value,
                percentile: level,
                total_count: cumulative,
            });
            // Java's incrementIterationLevel.
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64;
            let reporting_ticks = ticks.saturating_mul(2f64.powi((halvings + 1) as i32) as u64);
            level += 100.0 / reporting_ticks as f64;
            if cumulative >= total {
                // Java's hasNext: the last recorded value was reached; one more step at 100%.
                break;
            }
        }
        if cumulative >= total {
            break;
        }
    }
    steps.push(PercentileStep {
        value: last_value,
        percentile: 100.0,
        total_count: cumulative,
    });
    steps
}

/// The mean as HdrHistogram's Java `getMean` computes it (sum of median-equivalent values times
/// counts, divided by the total once).
pub fn java_mean(hist: &Histogram<u64>) -> f64 {
    if hist.is_empty() {
        return 0.0;
    }
    let mut total = 0.0f64;
    for v in hist.iter_recorded() {
        total += hist.median_equivalent(v.value_iterated_to()) as f64 * v.count_at_value() as f64;
    }
    total / hist.len() as f64
}

/// The standard deviation as HdrHistogram's Java `getStdDeviation` computes it.
pub fn java_stddev(hist: &Histogram<u64>) -> f64 {
    if hist.is_empty() {
        return 0.0;
    }
    let mean = java_mean(hist);
    let mut dev_total = 0.0f64;
    for v in hist.iter_recorded() {
        let d = hist.median_equivalent(v.value_iterated_to()) as f64 - mean;
        dev_total += d * d * v.count_at_value() as f64;
    }
    (dev_total / hist.len() as f64).sqrt()
}

/// Renders `hist` as a `.hgrm` percentile distribution, byte for byte as HdrHistogram's Java
/// `outputPercentileDistribution(out, ticks_per_half, scale)` prints it: values divided by
/// `scale` (e.g. [`NS_PER_US`]) with as many decimals as the histogram has significant digits,
/// `ticks_per_half` rows per half distance to 100% (0 is taken as 1).
///
/// An empty histogram gives the header and footer with no rows, as Java does.
pub fn format_hgrm(hist: &Histogram<u64>, ticks_per_half: u32, scale: f64) -> String {
    let digits = usize::from(hist.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let f = |x: f64, prec: usize| java_fixed(x, prec);
    for step in percentile_steps(hist, ticks_per_half) {
        let value = f(step.value as f64 / scale, digits);
        let q = step.percentile / 100.0;
        let total = step.total_count;
        if step.percentile != 100.0 {
            let _ = writeln!(
                out,
                "{value:>12} {:>2} {total:>10} {:>14}",
                f(q, 12),
                f(1.0 / (1.0 - q), 2)
            );
        } else {
            let _ = writeln!(out, "{value:>12} {:>2} {total:>10}", f(q, 12));
        }
    }
    let max = if hist.is_empty() { 0 } else { hist.max() };
    let _ = writeln!(
        out,
        "#[Mean    = {:>12}, StdDeviation   = {:>12}]",
        f(java_mean(hist) / scale, digits),
        f(java_stddev(hist) / scale, digits)
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12}, Total count    = {:>12}]",
        f(max as f64 / scale, digits),
        hist.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_bucket_count(hist.sigfig())
    );
    out
}

/// Formats `x` with `prec` decimals as Java's `String.format("%.<prec>f", x)` does: the
/// shortest decimal digits that identify the double, rounded half-up (Rust's `{:.N}` rounds the
/// exact binary value instead, so e.g. 0.9997802734375 prints as ...437 there and ...438 in
/// Java).
pub fn java_fixed(x: f64, prec: usize) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let neg = x.is_sign_negative();
    // Shortest round-trip digits: "d.ddde±x".
    let sci = format!("{:e}", x.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mant
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    // The decimal point sits after `point` digits.
    let mut point = exp + 1;
    if point < 1 {
        let pad = (1 - point) as usize;
        digits.splice(0..0, std::iter::repeat_n(0, pad));
        point = 1;
    }
    let point = point as usize;
    let keep = point + prec;
    if keep < digits.len() {
        let round_up = digits[keep] >= 5;
        digits.truncate(keep);
        if round_up {
            let mut i = keep;
            loop {
                if i == 0 {
                    digits.insert(0, 1);
                    break;
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
    }
    // A carry may have added a leading digit.
    let point = digits.len().max(keep) - prec;
    digits.resize(point + prec, 0);
    let int: String = {
        let s: String = digits[..point]
            .iter()
            .map(|d| char::from(b'0' + d))
            .collect();
        let t = s.trim_start_matches('0');
        if t.is_empty() {
            "0".to_string()
        } else {
            t.to_string()
        }
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&int);
    if prec > 0 {
        out.push('.');
        out.extend(digits[point..].iter().map(|d| char::from(b'0' + d)));
    }
    out
}

/// HdrHistogram's sub-bucket count for `sigfig` significant digits: 2·10^sigfig rounded up to a
/// power of two (2048 for 3 digits).
pub fn sub_bucket_count(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

/// One row of a `.hgrm` table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HgrmRow {
    /// The value column (already divided by the file's unit scaling ratio).
    pub value: f64,
    /// The percentile column, as a fraction 0..=1.
    pub percentile: f64,
    /// Values at or below this one.
    pub total_count: u64,
}

/// A parsed `.hgrm` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Hgrm {
    /// The table rows, in file order.
    pub rows: Vec<HgrmRow>,
    /// `#[Mean = ...]`.
    pub mean: f64,
    /// `StdDeviation = ...`.
    pub stddev: f64,
    /// `#[Max = ...]`.
    pub max: f64,
    /// `Total count = ...`.
    pub total_count: u64,
    /// `#[Buckets = ...]`.
    pub buckets: u64,
    /// `SubBuckets = ...`.
    pub sub_buckets: u64,
}

impl Hgrm {
    /// The value at quantile `q` (0..=1) as the table gives it: the first row whose percentile
    /// is at least `q` (the table's resolution, not the histogram's). `None` for an empty table.
    pub fn value_at_quantile(&self, q: f64) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.percentile >= q)
            .or(self.rows.last())
            .map(|r| r.value)
    }
}

/// Parses a `.hgrm` percentile distribution (the text [`format_hgrm`] and HdrHistogram's tools
/// write).
///
/// # Errors
///
/// [`ReportError::Parse`] naming the line that is not a header, table row or footer.
pub fn parse_hgrm(text: &str, what: &str) -> Result<Hgrm, ReportError> {
    let err = |line: usize, msg: &str| ReportError::Parse {
        what: what.to_string(),
        line,
        msg: msg.to_string(),
    };
    let mut h = Hgrm {
        rows: Vec::new(),
        mean: 0.0,
        stddev: 0.0,
        max: 0.0,
        total_count: 0,
        buckets: 0,
        sub_buckets: 0,
    };
    let mut saw_header = false;
    let mut footer = 0;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("#[") {
            let rest = rest
                .strip_suffix(']')
                .ok_or_else(|| err(n, "footer line without closing ']'"))?;
            let mut pairs = rest.split(',').map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.trim(), v.trim())
            });
            let (k1, v1) = pairs.next().unwrap_or(("", ""));
            let (k2, v2) = pairs.next().unwrap_or(("", ""));
            let f = |v: &str| v.parse::<f64>().map_err(|_| err(n, "bad number in footer"));
            let u = |v: &str| v.parse::<u64>().map_err(|_| err(n, "bad count in footer"));
            match (k1, k2) {
                ("Mean", "StdDeviation") => {
                    h.mean = f(v1)?;
                    h.stddev = f(v2)?;
                }
                ("Max", "Total count") => {
                    h.max = f(v1)?;
                    h.total_count = u(v2)?;
                }
                ("Buckets", "SubBuckets") => {
                    h.buckets = u(v1)?;
                    h.sub_buckets = u(v2)?;
                }
                _ => return Err(err(n, "unknown footer line")),
            }
            footer += 1;
            continue;
        }
        if line.starts_with("Value") {
            saw_header = true;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if !saw_header {
            return Err(err(n, "table row before the 'Value Percentile ...' header"));
        }
        let mut cols = line.split_whitespace();
        let mut next = |name: &str| {
            cols.next()
                .ok_or_else(|| err(n, &format!("missing {name} column")))
        };
        let value = next("Value")?
            .parse::<f64>()
            .map_err(|_| err(n, "bad Value"))?;
        let percentile = next("Percentile")?
            .parse::<f64>()
            .map_err(|_| err(n, "bad Percentile"))?;
        let total_count = next("TotalCount")?
            .parse::<u64>()
            .map_err(|_| err(n, "bad TotalCount"))?;
        if !(0.0..=1.0).contains(&percentile) {
            return Err(err(n, "Percentile outside 0..1"));
        }
        h.rows.push(HgrmRow {
            value,
            percentile,
            total_count,
        });
    }
    if !saw_header {
        return Err(err(
            0,
            "no 'Value Percentile TotalCount' header: not a .hgrm file",
        ));
    }
    if footer < 3 {
        return Err(err(
            0,
            "missing the #[Mean ...], #[Max ...] or #[Buckets ...] footer",
        ));
    }
    Ok(h)
}
