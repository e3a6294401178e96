//! V2 interval logs (`.hlog`): one tagged, deflate-compressed histogram per stage per interval,
//! in the format of HdrHistogram's `HistogramLogWriter`, written with the `hdrhistogram` crate's
//! interval-log writer and `V2DeflateSerializer`, read back with its `IntervalLogIterator`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::ReportError;

/// Writes an interval log: header lines first ([`IntervalLogWriter::new`]), then one line per
/// [`write`](IntervalLogWriter::write). Timestamps are seconds since the log's BaseTime.
pub struct IntervalLogWriter<W: Write> {
    /// Where the log goes.
    out: W,
    /// Reused across histograms.
    serializer: V2DeflateSerializer,
}

impl<W: Write> std::fmt::Debug for IntervalLogWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalLogWriter").finish_non_exhaustive()
    }
}

impl<W: Write> IntervalLogWriter<W> {
    /// Starts a log on `out`: a comment, the format version, StartTime and BaseTime (both
    /// `base`, the wall-clock time interval timestamps count from) and the column legend, as
    /// Java's `HistogramLogWriter` writes them.
    ///
    /// # Errors
    ///
    /// The writer's I/O error.
    pub fn new(mut out: W, comment: &str, base: SystemTime) -> io::Result<Self> {
        {
            let mut serializer = V2DeflateSerializer::new();
            let mut builder = IntervalLogWriterBuilder::new();
            for line in comment.lines() {
                builder.add_comment(line);
            }
            builder.add_comment("[Histogram log format version 1.3]");
            builder.with_start_time(base).with_base_time(base);
            let _ = builder.begin_log_with(&mut out, &mut serializer)?;
        }
        writeln!(
            out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        Ok(IntervalLogWriter {
            out,
            serializer: V2DeflateSerializer::new(),
        })
    }

    /// Appends one interval histogram tagged `tag` (no spaces, commas or newlines), starting
    /// `start` after the BaseTime and lasting `length`. The max column is in the histogram's
    /// own unit (nanoseconds for spinwire).
    ///
    /// # Errors
    ///
    /// [`ReportError::BadTag`] for a tag with a forbidden character; I/O or serialization
    /// errors as [`ReportError::Io`] / [`ReportError::Serialize`].
    pub fn write(
        &mut self,
        tag: &str,
        hist: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> Result<(), ReportError> {
        let tag = Tag::new(tag).ok_or_else(|| ReportError::BadTag(tag.to_string()))?;
        // An empty builder writes no header lines: it only lends its histogram-line writer.
        let mut w = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(|e| ReportError::Io {
                path: "interval log".into(),
                source: e,
            })?;
        w.write_histogram(hist, start, length, Some(tag))
            .map_err(|e| ReportError::Serialize(e.to_string()))
    }

    /// Flushes and returns the underlying writer.
    ///
    /// # Errors
    ///
    /// The writer's I/O error.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One interval read back from a log: its place and a summary (the histogram itself is added to
/// its tag's total in [`IntervalLog::totals`] and not kept, so a long log reads in bounded memory).
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedInterval {
    /// The interval's tag (`None` for an untagged line).
    pub tag: Option<String>,
    /// Start, relative to the log's BaseTime (or the Unix epoch without one).
    pub start: Duration,
    /// Length of the interval.
    pub length: Duration,
    /// Values in the interval.
    pub count: u64,
    /// Median (histogram units; 0 when empty).
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
}

/// An interval log read back.
#[derive(Clone, Debug, Default)]
pub struct IntervalLog {
    /// The log's StartTime, if it has one (since the Unix epoch).
    pub start_time: Option<Duration>,
    /// The log's BaseTime, if it has one (since the Unix epoch).
    pub base_time: Option<Duration>,
    /// Every interval, in file order.
    pub intervals: Vec<LoggedInterval>,
    /// The intervals of each tag added together (untagged ones under `""`).
    pub totals: BTreeMap<String, Histogram<u64>>,
}

/// Parses an interval log (V2 or V2-deflate histograms, tagged or not), adding each tag's
/// intervals together as it goes.
///
/// # Errors
///
/// [`ReportError::Parse`] with the byte offset of a line that is neither an interval, a header
/// nor a comment, or of a histogram that does not decode.
pub fn parse_interval_log(bytes: &[u8], what: &str) -> Result<IntervalLog, ReportError> {
    let mut log = IntervalLog::default();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry {
            Ok(LogEntry::StartTime(t)) => log.start_time = Some(t),
            Ok(LogEntry::BaseTime(t)) => log.base_time = Some(t),
            Ok(LogEntry::Interval(ilh)) => {
                let tag = ilh.tag().map(|t| t.as_str().to_string());
                let encoded = ilh.encoded_histogram();
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|e| ReportError::Parse {
                        what: what.to_string(),
                        line: 0,
                        msg: format!("interval {tag:?}: histogram is not valid base64: {e}"),
                    })?;
                let histogram: Histogram<u64> =
                    deserializer
                        .deserialize(&mut &raw[..])
                        .map_err(|e| ReportError::Parse {
                            what: what.to_string(),
                            line: 0,
                            msg: format!("interval {tag:?}: histogram does not decode: {e:?}"),
                        })?;
                let empty = histogram.is_empty();
                let q = |q: f64| {
                    if empty {
                        0
                    } else {
                        histogram.value_at_quantile(q)
                    }
                };
                log.intervals.push(LoggedInterval {
                    tag: tag.clone(),
                    start: ilh.start_timestamp(),
                    length: ilh.duration(),
                    count: histogram.len(),
                    p50: q(0.5),
                    p99: q(0.99),
                    p999: q(0.999),
                    max: if empty { 0 } else { histogram.max() },
                });
                let key = tag.unwrap_or_default();
                match log.totals.get_mut(&key) {
                    Some(total) => total.add(&histogram).map_err(|e| ReportError::Parse {
                        what: what.to_string(),
                        line: 0,
                        msg: format!("interval {key:?}: cannot be added to its tag's total: {e:?}"),
                    })?,
                    None => {
                        let mut total = histogram;
                        total.auto(true);
                        log.totals.insert(key, total);
                    }
                }
            }
            Err(e) => {
                return Err(ReportError::Parse {
                    what: what.to_string(),
                    line: 0,
                    msg: format!("not an interval log: {e:?}"),
                })
            }
        }
    }
    Ok(log)
}

/// Reads and parses the interval log at `path`.
///
/// # Errors
///
/// [`ReportError::Io`] when it cannot be read; otherwise as [`parse_interval_log`].
pub fn read_interval_log(path: &Path) -> Result<IntervalLog, ReportError> {
    let bytes = std::fs::read(path).map_err(|e| ReportError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse_interval_log(&bytes, &path.display().to_string())
}
