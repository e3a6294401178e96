//! `index.html`: the run's settings, summary table, plot and `.hgrm` tables on one page.

use std::fmt::Write as _;

use serde_json::Value;

use crate::run::{RunFile, INTERVAL_LOG_FILE, PLOT_FILE, RUN_FILE};
use crate::svg::{ns_label, xml_escape};

/// Renders the page for `run`; `tables[i]` is the `.hgrm` text of `run.stages[i]`.
pub(crate) fn index_html(run: &RunFile, tables: &[String]) -> String {
    let title = format!("spinwire latency: {}", run.name);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>",
        xml_escape(&title)
    );
    s.push_str(
        "<style>\nbody{font-family:sans-serif;margin:2em;color:#222}\n\
         table{border-collapse:collapse;margin:1em 0}\n\
         th,td{border:1px solid #ccc;padding:4px 10px}\n\
         td.n{text-align:right;font-family:monospace}\n\
         th{background:#f3f3f3;text-align:left}\n\
         pre{background:#f8f8f8;padding:8px;overflow-x:auto}\n\
         </style>\n</head>\n<body>\n",
    );
    let _ = writeln!(s, "<h1>{}</h1>", xml_escape(&title));

    s.push_str("<h2>Settings</h2>\n<table>\n");
    let _ = writeln!(
        s,
        "<tr><th>run</th><td>{}</td></tr>\n<tr><th>started (unix ms)</th><td>{}</td></tr>",
        xml_escape(&run.name),
        run.created_unix_ms
    );
    for (k, v) in &run.settings {
        let v = match v {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(
            s,
            "<tr><th>{}</th><td>{}</td></tr>",
            xml_escape(k),
            xml_escape(&v)
        );
    }
    s.push_str("</table>\n");

    s.push_str(
        "<h2>Summary</h2>\n<table>\n<tr><th>stage</th><th>what</th><th>count</th><th>p50</th>\
         <th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th><th>out of range</th></tr>\n",
    );
    for st in &run.stages {
        let cell = |ns: u64| {
            if st.count == 0 {
                "-".to_string()
            } else {
                ns_label(ns as f64)
            }
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            xml_escape(&st.name),
            xml_escape(&st.description),
            st.count,
            cell(st.p50),
            cell(st.p90),
            cell(st.p99),
            cell(st.p999),
            cell(st.p9999),
            cell(st.max),
            st.out_of_range
        );
    }
    s.push_str("</table>\n");

    let _ = writeln!(
        s,
        "<h2>Percentile plot</h2>\n<p><img src=\"{PLOT_FILE}\" alt=\"latency by percentile, one \
         line per stage\"></p>"
    );

    s.push_str("<h2>Percentile distributions</h2>\n");
    let _ = writeln!(
        s,
        "<p>HdrHistogram percentile distributions, values in µs (also in each stage's \
         <code>.hgrm</code> file). Interval histograms: <a href=\"{INTERVAL_LOG_FILE}\">\
         {INTERVAL_LOG_FILE}</a> (V2 interval log, ns). Numbers: <a href=\"{RUN_FILE}\">\
         {RUN_FILE}</a>.</p>"
    );
    for (st, table) in run.stages.iter().zip(tables) {
        let file = st.hgrm.clone().unwrap_or_default();
        let _ = writeln!(
            s,
            "<h3>{} <small>(<a href=\"{}\">{}</a>)</small></h3>\n<pre>{}</pre>",
            xml_escape(&st.name),
            xml_escape(&file),
            xml_escape(&file),
            xml_escape(table)
        );
    }
    s.push_str("</body>\n</html>\n");
    s
}
