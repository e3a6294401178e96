//! Latency reports for spinwire runs: HDR histogram files, percentile tables, SVG plots and
//! run-to-run comparison.
//!
//! A *run directory* (the demo writes `latency-reports/out/<run>/`) holds:
//!
//! | file | what |
//! |---|---|
//! | `<stage>.hgrm` | the stage's percentile distribution in HdrHistogram's own text format ([`format_hgrm`]), values in µs |
//! | `intervals.hlog` | a V2 (deflate) interval log: one histogram per stage per interval, tagged with the stage name, values in ns ([`IntervalLogWriter`]) |
//! | `percentiles.svg` | latency vs percentile on a log `1/(1-p)` axis, one line per stage ([`percentile_svg`]) |
//! | `index.html` | the settings, the summary table, the plot and every `.hgrm` table |
//! | `run.json` | the settings and per-stage count/p50/p99/p99.9/max ([`RunFile`]) |
//!
//! [`RunWriter`] writes one; [`Run::load`] reads one back (or any directory of `.hgrm` files);
//! [`compare`] flags stages whose p50/p99/p99.9 regressed beyond a threshold; [`format_run_table`]
//! and [`format_comparison`] print what `spinwire report` shows.
//!
//! Histograms are `hdrhistogram::Histogram<u64>` in nanoseconds; this crate does not depend on
//! the engine, so stages are plain names.
//!
//! # Example
//!
//! ```
//! use hdrhistogram::Histogram;
//! use spinwire_latency_reports::{compare, Run, RunInfo, RunWriter, StageData};
//!
//! let dir = std::env::temp_dir().join(format!("sw-doc-{}", std::process::id()));
//! let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
//! for v in 1..=1000u64 {
//!     h.record(v * 100).unwrap();
//! }
//! let mut run = RunWriter::create(&dir, RunInfo::new("doc")).unwrap();
//! let start = std::time::Duration::ZERO;
//! run.write_interval("wire_to_strategy", &h, start, std::time::Duration::from_secs(1)).unwrap();
//! run.finish(&[StageData::new("wire_to_strategy", &h)]).unwrap();
//!
//! let back = Run::load(&dir).unwrap();
//! assert_eq!(back.stage("wire_to_strategy").unwrap().summary.p50, h.value_at_quantile(0.5));
//! assert!(!compare(&back, &back, 10.0).has_regression());
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```
#![deny(missing_docs)]

use std::path::PathBuf;

/// The `hdrhistogram` crate this one works with (re-exported so callers use the same version).
pub use hdrhistogram;

mod compare;
mod hgrm;
mod html;
mod interval;
mod run;
mod svg;
mod table;

pub use compare::{compare, Comparison, Metric, StageComparison};
pub use hgrm::{
    format_hgrm, java_fixed, java_mean, java_stddev, parse_hgrm, percentile_steps,
    sub_bucket_count, Hgrm, HgrmRow, PercentileStep, DEFAULT_TICKS_PER_HALF, NS_PER_US,
};
pub use interval::{
    parse_interval_log, read_interval_log, IntervalLog, IntervalLogWriter, LoggedInterval,
};
pub use run::{
    Run, RunFile, RunInfo, RunStage, RunWriter, StageData, StageSummary, HGRM_UNIT_RATIO,
    INDEX_FILE, INTERVAL_LOG_FILE, PLOT_FILE, RUN_FILE, RUN_FORMAT,
};
pub use svg::percentile_svg;
pub use table::{format_comparison, format_run_table, Unit};

/// What went wrong reading or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory could not be read or written; check the path and permissions.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The directory holds no run: neither a `run.json` nor any `.hgrm` file. Pass the directory
    /// a run was written to (e.g. `latency-reports/out/<run>`).
    #[error("{} is not a run directory: {reason}", path.display())]
    NotARunDir {
        /// The directory given.
        path: PathBuf,
        /// Why it is not one.
        reason: String,
    },
    /// A file's content is not what its name says (`line` 0 when the problem is not one line).
    #[error("{what}: line {line}: {msg}")]
    Parse {
        /// The file (or other input) being parsed.
        what: String,
        /// 1-based line number, or 0.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A stage name cannot be an interval-log tag or a file name (it is empty, or has a space,
    /// comma, slash or newline); rename the stage.
    #[error("stage name {0:?} cannot be used as a tag or file name")]
    BadTag(String),
    /// A histogram could not be serialized into the interval log.
    #[error("histogram serialization failed: {0}")]
    Serialize(String),
}
