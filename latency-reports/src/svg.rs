//! The percentile plot: latency (log scale) against percentile on HdrHistogram's `1/(1-p)` log
//! axis (0%, 90%, 99%, 99.9%, ...), one line per stage. Hand-written SVG, no dependencies.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::hgrm::{percentile_steps, DEFAULT_TICKS_PER_HALF};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// Line colours, one per stage (cycled past the last).
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

/// One stage's drawn line.
struct Line {
    /// Index of the stage in the input (picks its colour and name).
    stage: usize,
    /// (log10(1/(1-p)), value ns) for every percentile step below 100%.
    points: Vec<(f64, f64)>,
    /// The stage's maximum (ns), drawn at the right edge.
    max: u64,
}

/// Escapes text for XML content and attribute values.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A nanosecond value as a short label: `250 ns`, `1 µs`, `10 ms`, `1.5 s`.
pub(crate) fn ns_label(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// The label of the percentile axis at `decade` (1/(1-p) = 10^decade): 0%, 90%, 99%, 99.9%, ...
fn percentile_label(decade: u32) -> String {
    if decade == 0 {
        return "0%".into();
    }
    // 100 - 100/10^decade, written with exactly the nines it has.
    let nines = decade as usize;
    if nines <= 2 {
        format!("{}%", 100 - 100 / 10u64.pow(decade))
    } else {
        format!("99.{}%", "9".repeat(nines - 2))
    }
}

/// Renders the plot of `stages` (name, histogram in ns) titled `title`. Empty histograms are
/// listed in the legend as "no data" and not drawn.
pub fn percentile_svg(title: &str, stages: &[(&str, &Histogram<u64>)]) -> String {
    // Points per stage: (log10(1/(1-p)), value ns), plus the max at p = 1.
    let mut lines: Vec<Line> = Vec::new();
    let mut max_count = 1u64;
    for (i, (_, h)) in stages.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        max_count = max_count.max(h.len());
        let mut pts = Vec::new();
        for step in percentile_steps(h, DEFAULT_TICKS_PER_HALF) {
            let q = step.percentile / 100.0;
            if q < 1.0 {
                pts.push(((1.0 / (1.0 - q)).log10(), step.value as f64));
            }
        }
        lines.push(Line {
            stage: i,
            points: pts,
            max: h.max(),
        });
    }
    // Percentile axis: as many decades as the largest count supports, 2..=7.
    let decades = ((max_count as f64).log10().ceil() as u32).clamp(2, 7);
    let xmax = f64::from(decades);
    // Latency axis: whole decades around every drawn value.
    let mut lo = f64::INFINITY;
    let mut hi: f64 = 0.0;
    for line in &lines {
        for &(x, v) in &line.points {
            if x <= xmax && v > 0.0 {
                lo = lo.min(v);
            }
        }
        hi = hi.max(line.max as f64);
    }
    if !lo.is_finite() {
        lo = 1.0;
    }
    let ylo = lo.max(1.0).log10().floor();
    let mut yhi = hi.max(1.0).log10().ceil();
    if yhi <= ylo {
        yhi = ylo + 1.0;
    }
    let pw = WIDTH - LEFT - RIGHT;
    let ph = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + x.min(xmax) / xmax * pw;
    let py = |v: f64| {
        let l = if v > 0.0 { v.log10().max(ylo) } else { ylo };
        TOP + ph - (l - ylo) / (yhi - ylo) * ph
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="25" text-anchor="middle" font-size="15">Latency by percentile: {}</text>"#,
        LEFT + pw / 2.0,
        xml_escape(title)
    );
    // Grid and axis labels.
    for d in 0..=decades {
        let x = px(f64::from(d));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            percentile_label(d)
        );
    }
    let mut e = ylo;
    while e <= yhi + 1e-9 {
        let y = py(10f64.powf(e));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            xml_escape(&ns_label(10f64.powf(e)))
        );
        e += 1.0;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Percentile (log scale of 1/(1-p))</text>"#,
        LEFT + pw / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">Latency (log scale)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // Lines.
    for line in &lines {
        let color = COLORS[line.stage % COLORS.len()];
        let mut points = String::new();
        for &(x, v) in line.points.iter().filter(|(x, _)| *x <= xmax) {
            let _ = write!(points, "{:.1},{:.1} ", px(x), py(v));
        }
        // The maximum, at the right edge.
        let _ = write!(points, "{:.1},{:.1}", px(xmax), py(line.max as f64));
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{points}"><title>{}</title></polyline>"#,
            xml_escape(stages[line.stage].0)
        );
    }
    // Legend.
    let lx = LEFT + pw + 15.0;
    for (i, (name, h)) in stages.iter().enumerate() {
        let y = TOP + 10.0 + 20.0 * i as f64;
        let color = COLORS[i % COLORS.len()];
        let label = if h.is_empty() {
            format!("{name} (no data)")
        } else {
            format!("{name} p99 {}", ns_label(h.value_at_quantile(0.99) as f64))
        };
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            y + 4.0,
            xml_escape(&label)
        );
    }
    if lines.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="16">no data</text>"#,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_count_the_nines() {
        let l: Vec<String> = (0..=5).map(percentile_label).collect();
        assert_eq!(l, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn ns_labels_pick_the_unit() {
        assert_eq!(ns_label(250.0), "250 ns");
        assert_eq!(ns_label(1000.0), "1 µs");
        assert_eq!(ns_label(1_500_000.0), "1.5 ms");
        assert_eq!(ns_label(10e9), "10 s");
    }

    #[test]
    fn names_are_escaped() {
        let h = Histogram::<u64>::new_with_bounds(1, 1000, 3).unwrap();
        let svg = percentile_svg("a<b>&\"c\"", &[("x<y", &h)]);
        assert!(svg.contains("a&lt;b&gt;&amp;&quot;c&quot;"));
        assert!(svg.contains("x&lt;y (no data)"));
        assert!(!svg.contains("x<y"));
    }
}
