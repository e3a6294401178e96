//! Plain-text tables for the terminal (`spinwire report`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::compare::{Comparison, Metric};
use crate::run::Run;

/// The unit values are printed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds, whole numbers.
    Ns,
    /// Microseconds, three decimals.
    #[default]
    Us,
}

impl Unit {
    /// `ns` or `µs`.
    pub fn label(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Us => "µs",
        }
    }

    /// A nanosecond value in this unit.
    pub fn format(self, ns: u64) -> String {
        match self {
            Unit::Ns => ns.to_string(),
            Unit::Us => format!("{:.3}", ns as f64 / 1000.0),
        }
    }
}

/// The percentile table of one run: a heading with its directory and settings, then per stage
/// count, p50, p99, p99.9, max (in `unit`) and values out of range.
pub fn format_run_table(run: &Run, unit: Unit) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "run {} ({})", run.name, run.dir.display());
    if !run.settings.is_empty() {
        let settings: Vec<String> = run
            .settings
            .iter()
            .map(|(k, v)| match v {
                Value::String(t) => format!("{k}={t}"),
                other => format!("{k}={other}"),
            })
            .collect();
        let _ = writeln!(s, "  {}", settings.join(" "));
    }
    if !run.from_run_json {
        let _ = writeln!(
            s,
            "  (no run.json: percentiles read from the .hgrm tables, rounded to their rows)"
        );
    }
    let u = unit.label();
    let _ = writeln!(
        s,
        "{:<22} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "stage",
        "count",
        format!("p50 {u}"),
        format!("p99 {u}"),
        format!("p99.9 {u}"),
        format!("max {u}"),
        "out-of-range"
    );
    for st in &run.stages {
        let m = &st.summary;
        let v = |ns: u64| {
            if m.count == 0 {
                "-".to_string()
            } else {
                unit.format(ns)
            }
        };
        let _ = writeln!(
            s,
            "{:<22} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
            m.name,
            m.count,
            v(m.p50),
            v(m.p99),
            v(m.p999),
            v(m.max),
            m.out_of_range
        );
    }
    s
}

/// The comparison table: per stage and metric `base -> new (xRATIO)`, and a verdict that names
/// the regressed metrics; a last line says how many stages regressed.
pub fn format_comparison(cmp: &Comparison, unit: Unit) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "compare {} (new) with {} (base), threshold +{}%, values in {}",
        cmp.new_name,
        cmp.base_name,
        cmp.threshold_pct,
        unit.label()
    );
    let _ = writeln!(
        s,
        "{:<22} {:>28} {:>28} {:>28}  verdict",
        "stage", "p50", "p99", "p99.9"
    );
    for st in &cmp.stages {
        let mut cols = Vec::new();
        for (i, m) in Metric::ALL.into_iter().enumerate() {
            let cell = match (&st.base, &st.new, st.ratios[i]) {
                (Some(b), Some(n), Some(r)) => format!(
                    "{} -> {} (x{:.2})",
                    unit.format(m.of(b)),
                    unit.format(m.of(n)),
                    r
                ),
                _ => "-".to_string(),
            };
            cols.push(cell);
        }
        let verdict = match (&st.base, &st.new) {
            (None, _) => "new stage".to_string(),
            (_, None) => "missing in new run".to_string(),
            (Some(b), Some(n)) if b.count == 0 || n.count == 0 => "no data".to_string(),
            _ if st.is_regression() => {
                let which: Vec<&str> = Metric::ALL
                    .into_iter()
                    .zip(st.regressed)
                    .filter(|(_, r)| *r)
                    .map(|(m, _)| m.label())
                    .collect();
                format!("REGRESSED ({})", which.join(", "))
            }
            _ => "ok".to_string(),
        };
        let _ = writeln!(
            s,
            "{:<22} {:>28} {:>28} {:>28}  {}",
            st.name, cols[0], cols[1], cols[2], verdict
        );
    }
    let n = cmp.regressions().count();
    if n == 0 {
        let _ = writeln!(s, "no regression beyond {}%", cmp.threshold_pct);
    } else {
        let _ = writeln!(s, "{n} stage(s) regressed beyond {}%", cmp.threshold_pct);
    }
    s
}
