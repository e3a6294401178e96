//! Writing a run directory and reading it back.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::hgrm::{format_hgrm, parse_hgrm, Hgrm, DEFAULT_TICKS_PER_HALF};
use crate::interval::{read_interval_log, IntervalLog, IntervalLogWriter};
use crate::{html, svg, ReportError};

/// The `format` field of every `run.json` this crate writes.
pub const RUN_FORMAT: &str = "spinwire-latency-run/1";
/// The run's settings and summary.
pub const RUN_FILE: &str = "run.json";
/// The HTML page.
pub const INDEX_FILE: &str = "index.html";
/// The percentile plot.
pub const PLOT_FILE: &str = "percentiles.svg";
/// The V2 interval log.
pub const INTERVAL_LOG_FILE: &str = "intervals.hlog";
/// Unit scaling ratio of the `.hgrm` files: histograms are in ns, tables in µs.
pub const HGRM_UNIT_RATIO: f64 = crate::hgrm::NS_PER_US;

/// A run's name and settings, as shown in `index.html` and stored in `run.json`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunInfo {
    /// A short name for the run (e.g. its directory name).
    pub name: String,
    /// Free-form settings (venue, rate, seconds, clock source, machine, ...), in insertion order.
    pub settings: Map<String, Value>,
}

impl RunInfo {
    /// A run called `name` with no settings yet.
    pub fn new(name: impl Into<String>) -> RunInfo {
        RunInfo {
            name: name.into(),
            settings: Map::new(),
        }
    }

    /// Adds (or replaces) a setting.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> RunInfo {
        self.settings.insert(key.into(), value.into());
        self
    }
}

/// One stage's final histogram, handed to [`RunWriter::finish`].
#[derive(Clone, Copy, Debug)]
pub struct StageData<'a> {
    /// The stage's name: letters, digits, `_`, `-` and `.` only (it names a file and an
    /// interval-log tag).
    pub name: &'a str,
    /// A one-line description (may be empty).
    pub description: &'a str,
    /// The values, in nanoseconds.
    pub histogram: &'a Histogram<u64>,
    /// Values the recorder could not record as they were (clamped or negative).
    pub out_of_range: u64,
}

impl<'a> StageData<'a> {
    /// A stage with no description and nothing out of range.
    pub fn new(name: &'a str, histogram: &'a Histogram<u64>) -> StageData<'a> {
        StageData {
            name,
            description: "",
            histogram,
            out_of_range: 0,
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: &'a str) -> StageData<'a> {
        self.description = description;
        self
    }

    /// Sets the out-of-range count.
    pub fn out_of_range(mut self, n: u64) -> StageData<'a> {
        self.out_of_range = n;
        self
    }
}

/// One stage's numbers in `run.json`. All values in nanoseconds (the histogram's
/// highest-equivalent value at each quantile, as HdrHistogram reports them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    /// Stage name.
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Values recorded.
    pub count: u64,
    /// Smallest value.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    #[serde(default)]
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    #[serde(default)]
    pub p9999: u64,
    /// Largest value.
    pub max: u64,
    /// Mean.
    #[serde(default)]
    pub mean: f64,
    /// Standard deviation.
    #[serde(default)]
    pub stddev: f64,
    /// Values recorded out of range (clamped to the highest value, or negative recorded as 0).
    #[serde(default)]
    pub out_of_range: u64,
    /// The stage's `.hgrm` file, relative to the run directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hgrm: Option<String>,
}

impl StageSummary {
    /// The summary of `hist` (all zero when it is empty).
    pub fn from_histogram(
        name: &str,
        description: &str,
        hist: &Histogram<u64>,
        out_of_range: u64,
    ) -> StageSummary {
        let empty = hist.is_empty();
        let q = |q: f64| if empty { 0 } else { hist.value_at_quantile(q) };
        StageSummary {
            name: name.to_string(),
            description: description.to_string(),
            count: hist.len(),
            min: if empty { 0 } else { hist.min() },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: if empty { 0 } else { hist.max() },
            mean: hist.mean(),
            stddev: hist.stdev(),
            out_of_range,
            hgrm: None,
        }
    }

    /// An approximate summary from a `.hgrm` table in µs (for directories without `run.json`):
    /// each quantile is the first table row at or above it.
    pub fn from_hgrm(name: &str, h: &Hgrm) -> StageSummary {
        let ns = |v: f64| (v * HGRM_UNIT_RATIO).round().max(0.0) as u64;
        let q = |q: f64| h.value_at_quantile(q).map_or(0, ns);
        StageSummary {
            name: name.to_string(),
            description: String::new(),
            count: h.total_count,
            min: h.rows.first().map_or(0, |r| ns(r.value)),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: ns(h.max),
            mean: h.mean * HGRM_UNIT_RATIO,
            stddev: h.stddev * HGRM_UNIT_RATIO,
            out_of_range: 0,
            hgrm: None,
        }
    }
}

/// The content of `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    /// Always [`RUN_FORMAT`].
    pub format: String,
    /// The run's name.
    pub name: String,
    /// When the run started (its interval log's BaseTime), ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Unit of every value in `stages`: `ns`.
    pub value_unit: String,
    /// Unit of the `.hgrm` tables: `us`.
    pub hgrm_unit: String,
    /// The run's settings.
    pub settings: Map<String, Value>,
    /// One entry per stage, in the order given.
    pub stages: Vec<StageSummary>,
    /// The interval log, relative to the run directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_log: Option<String>,
    /// The plot, relative to the run directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plot: Option<String>,
}

/// Writes a run directory: the interval log as intervals arrive, everything else at
/// [`finish`](RunWriter::finish).
#[derive(Debug)]
pub struct RunWriter {
    /// The run directory.
    dir: PathBuf,
    /// Name and settings.
    info: RunInfo,
    /// The interval log's BaseTime.
    base: SystemTime,
    /// The open interval log.
    log: IntervalLogWriter<BufWriter<File>>,
}

impl RunWriter {
    /// Creates `dir` (and its parents) and starts its interval log, with BaseTime now.
    ///
    /// # Errors
    ///
    /// [`ReportError::Io`] when the directory or log cannot be created.
    pub fn create(dir: &Path, info: RunInfo) -> Result<RunWriter, ReportError> {
        RunWriter::create_at(dir, info, SystemTime::now())
    }

    /// Like [`create`](RunWriter::create) with an explicit BaseTime (wall-clock start of the
    /// run; interval start times count from it).
    ///
    /// # Errors
    ///
    /// As for [`create`](RunWriter::create).
    pub fn create_at(
        dir: &Path,
        info: RunInfo,
        base: SystemTime,
    ) -> Result<RunWriter, ReportError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ReportError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let log_path = dir.join(INTERVAL_LOG_FILE);
        let file = File::create(&log_path).map_err(io(&log_path))?;
        let comment = format!(
            "spinwire latency intervals, run {}: one histogram per stage per interval, tagged with \
             the stage name, values in ns",
            info.name.replace('\n', " ")
        );
        let log =
            IntervalLogWriter::new(BufWriter::new(file), &comment, base).map_err(io(&log_path))?;
        Ok(RunWriter {
            dir: dir.to_path_buf(),
            info,
            base,
            log,
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The interval log's BaseTime.
    pub fn base_time(&self) -> SystemTime {
        self.base
    }

    /// Appends one interval histogram of stage `stage` to the interval log; `start` counts from
    /// [`base_time`](RunWriter::base_time).
    ///
    /// # Errors
    ///
    /// [`ReportError::BadTag`] for an unusable stage name; I/O and serialization errors.
    pub fn write_interval(
        &mut self,
        stage: &str,
        hist: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> Result<(), ReportError> {
        check_stage_name(stage)?;
        self.log.write(stage, hist, start, length)
    }

    /// Writes the `.hgrm` files, the plot, `run.json` and `index.html`, closes the interval log
    /// and returns what went into `run.json`.
    ///
    /// # Errors
    ///
    /// [`ReportError::BadTag`] for an unusable or repeated stage name; I/O errors.
    pub fn finish(self, stages: &[StageData<'_>]) -> Result<RunFile, ReportError> {
        let RunWriter {
            dir,
            info,
            base,
            log,
        } = self;
        let log_path = dir.join(INTERVAL_LOG_FILE);
        log.into_inner().map_err(|source| ReportError::Io {
            path: log_path,
            source,
        })?;

        let mut summaries = Vec::with_capacity(stages.len());
        let mut tables = Vec::with_capacity(stages.len());
        for (i, s) in stages.iter().enumerate() {
            check_stage_name(s.name)?;
            if stages[..i].iter().any(|o| o.name == s.name) {
                return Err(ReportError::BadTag(format!("{} (given twice)", s.name)));
            }
            let text = format_hgrm(s.histogram, DEFAULT_TICKS_PER_HALF, HGRM_UNIT_RATIO);
            let file = format!("{}.hgrm", s.name);
            write_file(&dir.join(&file), text.as_bytes())?;
            let mut summary =
                StageSummary::from_histogram(s.name, s.description, s.histogram, s.out_of_range);
            summary.hgrm = Some(file);
            summaries.push(summary);
            tables.push(text);
        }

        let lines: Vec<(&str, &Histogram<u64>)> =
            stages.iter().map(|s| (s.name, s.histogram)).collect();
        let plot = svg::percentile_svg(&info.name, &lines);
        write_file(&dir.join(PLOT_FILE), plot.as_bytes())?;

        let run = RunFile {
            format: RUN_FORMAT.to_string(),
            name: info.name.clone(),
            created_unix_ms: base
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            value_unit: "ns".into(),
            hgrm_unit: "us".into(),
            settings: info.settings.clone(),
            stages: summaries,
            interval_log: Some(INTERVAL_LOG_FILE.into()),
            plot: Some(PLOT_FILE.into()),
        };
        let json = serde_json::to_string_pretty(&run)
            .map_err(|e| ReportError::Serialize(e.to_string()))?;
        write_file(&dir.join(RUN_FILE), json.as_bytes())?;

        let page = html::index_html(&run, &tables);
        write_file(&dir.join(INDEX_FILE), page.as_bytes())?;
        Ok(run)
    }
}

/// A stage name must be usable as a file name and an interval-log tag.
fn check_stage_name(name: &str) -> Result<(), ReportError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ReportError::BadTag(name.to_string()))
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.flush().map_err(io)
}

/// One stage of a loaded run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunStage {
    /// Its numbers (from `run.json`, or derived from the `.hgrm` table without one).
    pub summary: StageSummary,
    /// Its parsed `.hgrm` table, when the run has one.
    pub hgrm: Option<Hgrm>,
}

/// A run directory read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The directory.
    pub dir: PathBuf,
    /// The run's name (the directory name without `run.json`).
    pub name: String,
    /// The settings (empty without `run.json`).
    pub settings: Map<String, Value>,
    /// The stages, in file order.
    pub stages: Vec<RunStage>,
    /// Whether the numbers come from `run.json` (exact) rather than `.hgrm` tables (rounded to
    /// the table's rows).
    pub from_run_json: bool,
    /// The interval log's file name, if the run has one.
    pub interval_log: Option<String>,
}

impl Run {
    /// Reads the run in `dir`: `run.json` and every `.hgrm` it names (which must agree with it),
    /// or, without `run.json`, every `*.hgrm` file in the directory (values taken as µs, the
    /// unit HdrHistogram's tools print nanosecond histograms in with a scaling ratio of 1000).
    ///
    /// # Errors
    ///
    /// [`ReportError::NotARunDir`] when `dir` is not a directory or holds neither; parse and I/O
    /// errors for damaged files.
    pub fn load(dir: &Path) -> Result<Run, ReportError> {
        let not = |reason: &str| ReportError::NotARunDir {
            path: dir.to_path_buf(),
            reason: reason.to_string(),
        };
        let meta = fs::metadata(dir).map_err(|e| not(&e.to_string()))?;
        if !meta.is_dir() {
            return Err(not("not a directory"));
        }
        let run_json = dir.join(RUN_FILE);
        if run_json.is_file() {
            return Run::load_run_json(dir, &run_json);
        }
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| ReportError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "hgrm") && p.is_file())
            .collect();
        if files.is_empty() {
            return Err(not("it has no run.json and no .hgrm files"));
        }
        files.sort();
        let mut stages = Vec::new();
        for p in files {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let h = read_hgrm(&p)?;
            let mut summary = StageSummary::from_hgrm(&name, &h);
            summary.hgrm = p.file_name().map(|f| f.to_string_lossy().into_owned());
            stages.push(RunStage {
                summary,
                hgrm: Some(h),
            });
        }
        Ok(Run {
            dir: dir.to_path_buf(),
            name: dir_name(dir),
            settings: Map::new(),
            stages,
            from_run_json: false,
            interval_log: dir
                .join(INTERVAL_LOG_FILE)
                .is_file()
                .then(|| INTERVAL_LOG_FILE.to_string()),
        })
    }

    fn load_run_json(dir: &Path, path: &Path) -> Result<Run, ReportError> {
        let text = fs::read_to_string(path).map_err(|e| ReportError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let file: RunFile = serde_json::from_str(&text).map_err(|e| ReportError::Parse {
            what: path.display().to_string(),
            line: e.line(),
            msg: e.to_string(),
        })?;
        if file.format != RUN_FORMAT {
            return Err(ReportError::Parse {
                what: path.display().to_string(),
                line: 0,
                msg: format!("format {:?}, expected {RUN_FORMAT:?}", file.format),
            });
        }
        let mut stages = Vec::with_capacity(file.stages.len());
        for s in file.stages {
            let hgrm = match &s.hgrm {
                Some(f) => {
                    let p = dir.join(f);
                    let h = read_hgrm(&p)?;
                    if h.total_count != s.count {
                        return Err(ReportError::Parse {
                            what: p.display().to_string(),
                            line: 0,
                            msg: format!(
                                "total count {} but run.json says {} for stage {}",
                                h.total_count, s.count, s.name
                            ),
                        });
                    }
                    Some(h)
                }
                None => None,
            };
            stages.push(RunStage { summary: s, hgrm });
        }
        Ok(Run {
            dir: dir.to_path_buf(),
            name: if file.name.is_empty() {
                dir_name(dir)
            } else {
                file.name
            },
            settings: file.settings,
            stages,
            from_run_json: true,
            interval_log: file.interval_log,
        })
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&RunStage> {
        self.stages.iter().find(|s| s.summary.name == name)
    }

    /// Reads the run's interval log, if it has one.
    ///
    /// # Errors
    ///
    /// I/O and parse errors of the log.
    pub fn interval_log(&self) -> Result<Option<IntervalLog>, ReportError> {
        match &self.interval_log {
            Some(f) => read_interval_log(&self.dir.join(f)).map(Some),
            None => Ok(None),
        }
    }
}

fn read_hgrm(path: &Path) -> Result<Hgrm, ReportError> {
    let text = fs::read_to_string(path).map_err(|e| ReportError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse_hgrm(&text, &path.display().to_string())
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}
