//! `spinwire report DIR... [--compare BASE_DIR] [--threshold PCT] [--unit us|ns]`: prints the
//! percentile table of each run directory and, with `--compare`, each run's ratios against a base
//! run, flagging stages whose p50, p99 or p99.9 regressed beyond the threshold.
//!
//! Exit status: 0 when all is well, [`EXIT_REGRESSION`] (3) when a regression was flagged (for
//! CI), 1 when a directory is not a run directory or a file in it is damaged (the message names
//! it), 2 for bad arguments (from clap).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use spinwire_latency_reports::{
    compare, format_comparison, format_run_table, ReportError, Run, Unit,
};

/// Exit status when `--compare` flagged a regression.
pub const EXIT_REGRESSION: u8 = 3;

/// Arguments of `spinwire report`.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Run directories to print (e.g. `latency-reports/out/RUN`): a run.json with its .hgrm
    /// files, or any directory of HdrHistogram .hgrm files (values in µs).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Compare every DIR with this base run; exit with status 3 if any stage regressed.
    #[arg(long, value_name = "BASE_DIR")]
    pub compare: Option<PathBuf>,
    /// Regression threshold in percent: a stage regressed when its p50, p99 or p99.9 is more
    /// than PCT percent above the base's.
    #[arg(long, value_name = "PCT", default_value_t = 10.0, value_parser = parse_threshold)]
    pub threshold: f64,
    /// Unit of the printed latencies.
    #[arg(long, value_enum, default_value = "us")]
    pub unit: UnitArg,
}

/// `--unit`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum UnitArg {
    /// Microseconds, three decimals.
    Us,
    /// Nanoseconds.
    Ns,
}

impl From<UnitArg> for Unit {
    fn from(u: UnitArg) -> Unit {
        match u {
            UnitArg::Us => Unit::Us,
            UnitArg::Ns => Unit::Ns,
        }
    }
}

fn parse_threshold(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of percent"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{s:?}: the threshold must be a percentage >= 0"))
    }
}

/// What a report found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Printed; nothing regressed (or nothing was compared).
    Clean,
    /// At least one stage of one run regressed against the base.
    Regressed,
}

/// Loads every run (the base first), then writes the tables (and comparisons) to `out`.
///
/// # Errors
///
/// The first directory that is not a run directory or holds a damaged file; nothing is printed
/// then. Write errors on `out` are reported as [`ReportError::Io`].
pub fn report(args: &ReportArgs, out: &mut dyn Write) -> Result<Outcome, ReportError> {
    let base = args.compare.as_deref().map(Run::load).transpose()?;
    let runs = args
        .dirs
        .iter()
        .map(|d| Run::load(d))
        .collect::<Result<Vec<_>, _>>()?;
    let unit = Unit::from(args.unit);
    let mut text = String::new();
    let mut outcome = Outcome::Clean;
    if let Some(base) = &base {
        text.push_str("base: ");
        text.push_str(&format_run_table(base, unit));
        text.push('\n');
    }
    for run in &runs {
        text.push_str(&format_run_table(run, unit));
        if let Some(base) = &base {
            let cmp = compare(base, run, args.threshold);
            if cmp.has_regression() {
                outcome = Outcome::Regressed;
            }
            text.push('\n');
            text.push_str(&format_comparison(&cmp, unit));
        }
        text.push('\n');
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| ReportError::Io {
            path: "standard output".into(),
            source,
        })?;
    Ok(outcome)
}

/// Runs `spinwire report`: prints to standard output, errors to standard error, and returns the
/// exit status described in the module docs.
pub fn main(args: &ReportArgs) -> ExitCode {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    match report(args, &mut lock) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Regressed) => ExitCode::from(EXIT_REGRESSION),
        Err(e) => {
            eprintln!("spinwire report: {e}");
            ExitCode::FAILURE
        }
    }
}
