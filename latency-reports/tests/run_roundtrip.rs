//! A run written from synthetic histograms reads back with the same numbers: `run.json`, every
//! `.hgrm` table, and the V2 interval log through hdrhistogram's own interval-log reader.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use spinwire_latency_reports::{
    percentile_steps, ReportError, Run, RunInfo, RunWriter, StageData, INDEX_FILE,
    INTERVAL_LOG_FILE, PLOT_FILE, RUN_FILE,
};

/// A fresh, empty directory under the target temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "spinwire-reports-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hist() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

/// Deterministic pseudo-random latencies around `base` ns with a long tail.
fn synthetic(base: u64, n: u64, seed: u64) -> Histogram<u64> {
    let mut h = hist();
    let mut x = seed | 1;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let tail = if x % 1000 == 0 { base * 50 } else { 0 };
        h.record(base + x % base + tail).unwrap();
    }
    h
}

const STAGES: [(&str, &str); 3] = [
    ("socket_to_frame", "socket read -> frame decoded"),
    ("wire_to_strategy", "venue send -> strategy popped"),
    ("reconnect_downtime", "connection lost -> live"),
];

/// Writes a run with three interval histograms per stage (the last stage empty) and returns
/// the per-stage totals.
fn write_run(dir: &Path, bases: [u64; 2]) -> Vec<Histogram<u64>> {
    let base_time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let info = RunInfo::new("synthetic")
        .with("venue", "deribit")
        .with("seconds", 3)
        .with("clock", "tsc");
    let mut w = RunWriter::create_at(dir, info, base_time).unwrap();
    let mut totals = vec![hist(), hist(), hist()];
    for interval in 0..3u64 {
        for (i, (name, _)) in STAGES.iter().enumerate() {
            let h = if i < 2 {
                synthetic(bases[i], 5_000, interval * 10 + i as u64 + 1)
            } else {
                hist()
            };
            w.write_interval(
                name,
                &h,
                Duration::from_secs(interval),
                Duration::from_secs(1),
            )
            .unwrap();
            totals[i].add(&h).unwrap();
        }
    }
    let stages: Vec<StageData<'_>> = STAGES
        .iter()
        .zip(&totals)
        .map(|((n, d), h)| StageData::new(n, h).description(d).out_of_range(3))
        .collect();
    let written = w.finish(&stages).unwrap();
    assert_eq!(written.stages.len(), 3);
    totals
}

#[test]
fn summary_and_tables_read_back_equal_to_the_histograms() {
    let tmp = TempDir::new("roundtrip");
    let totals = write_run(&tmp.0, [800, 20_000]);
    for f in [RUN_FILE, INDEX_FILE, PLOT_FILE, INTERVAL_LOG_FILE] {
        assert!(tmp.0.join(f).is_file(), "{f} missing");
    }
    let run = Run::load(&tmp.0).unwrap();
    assert!(run.from_run_json);
    assert_eq!(run.name, "synthetic");
    assert_eq!(run.settings["venue"], "deribit");
    assert_eq!(run.settings["seconds"], 3);
    assert_eq!(run.stages.len(), 3);
    for ((name, desc), h) in STAGES.iter().zip(&totals) {
        let st = run.stage(name).unwrap();
        let s = &st.summary;
        assert_eq!(&s.description, desc);
        assert_eq!(s.count, h.len());
        assert_eq!(s.out_of_range, 3);
        if h.is_empty() {
            assert_eq!((s.p50, s.p99, s.p999, s.max), (0, 0, 0, 0));
        } else {
            assert_eq!(s.p50, h.value_at_quantile(0.5));
            assert_eq!(s.p99, h.value_at_quantile(0.99));
            assert_eq!(s.p999, h.value_at_quantile(0.999));
            assert_eq!(s.max, h.max());
            assert_eq!(s.min, h.min());
        }
        let table = st.hgrm.as_ref().unwrap();
        assert_eq!(table.total_count, h.len());
        let steps = percentile_steps(h, 5);
        assert_eq!(table.rows.len(), steps.len());
        for (row, step) in table.rows.iter().zip(&steps) {
            assert_eq!((row.value * 1000.0).round() as u64, step.value);
            assert_eq!(row.total_count, step.total_count);
        }
    }
    // The page names every stage and embeds the plot.
    let page = std::fs::read_to_string(tmp.0.join(INDEX_FILE)).unwrap();
    for (name, _) in STAGES {
        assert!(page.contains(name));
    }
    assert!(page.contains(PLOT_FILE) && page.contains("deribit"));
    let svg = std::fs::read_to_string(tmp.0.join(PLOT_FILE)).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<polyline").count(),
        2,
        "one line per non-empty stage"
    );
    assert!(svg.contains("reconnect_downtime (no data)"));
}

#[test]
fn interval_log_round_trips_through_hdrhistograms_reader() {
    let tmp = TempDir::new("hlog");
    let totals = write_run(&tmp.0, [500, 9_000]);
    let bytes = std::fs::read(tmp.0.join(INTERVAL_LOG_FILE)).unwrap();

    // hdrhistogram's own reader, straight on the bytes.
    let mut base = None;
    let mut intervals = Vec::new();
    for e in IntervalLogIterator::new(&bytes) {
        match e.unwrap() {
            LogEntry::BaseTime(t) => base = Some(t),
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(i) => {
                let raw = base64_decode(i.encoded_histogram());
                let h: Histogram<u64> = Deserializer::new().deserialize(&mut &raw[..]).unwrap();
                intervals.push((
                    i.tag().unwrap().as_str().to_string(),
                    i.start_timestamp(),
                    h,
                ));
            }
        }
    }
    assert_eq!(base, Some(Duration::from_secs(1_700_000_000)));
    assert_eq!(intervals.len(), 9);
    assert_eq!(intervals[3].0, "socket_to_frame");
    assert_eq!(intervals[3].1, Duration::from_secs(1));
    for (i, (name, _)) in STAGES.iter().enumerate() {
        let mut sum = hist();
        for (_, _, h) in intervals.iter().filter(|(t, _, _)| t == name) {
            sum.add(h).unwrap();
        }
        assert_eq!(sum, totals[i], "{name}");
    }

    // And this crate's reader agrees.
    let log = Run::load(&tmp.0).unwrap().interval_log().unwrap().unwrap();
    assert_eq!(log.intervals.len(), 9);
    let by_tag = &log.totals;
    let firsts: Vec<_> = log
        .intervals
        .iter()
        .take(3)
        .map(|i| (i.tag.clone().unwrap(), i.count))
        .collect();
    assert_eq!(
        firsts,
        [
            ("socket_to_frame".to_string(), 5_000),
            ("wire_to_strategy".to_string(), 5_000),
            ("reconnect_downtime".to_string(), 0)
        ]
    );
    assert_eq!(log.intervals[4].start, Duration::from_secs(1));
    assert_eq!(log.intervals[4].p99, intervals[4].2.value_at_quantile(0.99));
    for (i, (name, _)) in STAGES.iter().enumerate() {
        let h = &by_tag[*name];
        assert_eq!(h.len(), totals[i].len());
        for q in [0.5, 0.99, 0.999] {
            assert_eq!(h.value_at_quantile(q), totals[i].value_at_quantile(q));
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn directory_without_a_run_is_a_clear_error() {
    let tmp = TempDir::new("empty");
    std::fs::create_dir_all(&tmp.0).unwrap();
    let e = Run::load(&tmp.0).unwrap_err();
    assert!(matches!(e, ReportError::NotARunDir { .. }), "{e:?}");
    assert!(e.to_string().contains("not a run directory"), "{e}");

    let missing = tmp.0.join("nope");
    let e = Run::load(&missing).unwrap_err();
    assert!(matches!(e, ReportError::NotARunDir { .. }), "{e:?}");

    let file = tmp.0.join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let e = Run::load(&file).unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[test]
fn damaged_run_json_or_table_is_reported() {
    let tmp = TempDir::new("damaged");
    write_run(&tmp.0, [800, 20_000]);
    std::fs::write(tmp.0.join("socket_to_frame.hgrm"), "garbage\n").unwrap();
    let e = Run::load(&tmp.0).unwrap_err().to_string();
    assert!(e.contains("socket_to_frame.hgrm"), "{e}");
    std::fs::write(tmp.0.join(RUN_FILE), "{ not json").unwrap();
    let e = Run::load(&tmp.0).unwrap_err().to_string();
    assert!(e.contains("run.json"), "{e}");
}

#[test]
fn directory_of_hgrm_files_alone_loads_from_the_tables() {
    let tmp = TempDir::new("hgrm-only");
    let totals = write_run(&tmp.0, [800, 20_000]);
    for f in [RUN_FILE, INDEX_FILE, PLOT_FILE, INTERVAL_LOG_FILE] {
        std::fs::remove_file(tmp.0.join(f)).unwrap();
    }
    let run = Run::load(&tmp.0).unwrap();
    assert!(!run.from_run_json);
    assert_eq!(run.stages.len(), 3);
    let s = &run.stage("wire_to_strategy").unwrap().summary;
    assert_eq!(s.count, totals[1].len());
    assert_eq!(s.max, totals[1].max());
    // Table resolution: at or just above the exact median.
    let exact = totals[1].value_at_quantile(0.5);
    assert!(
        s.p50 >= exact && s.p50 as f64 <= exact as f64 * 1.02,
        "{} vs {exact}",
        s.p50
    );
}

#[test]
fn bad_stage_names_are_rejected_before_anything_is_written() {
    let tmp = TempDir::new("badname");
    let mut w = RunWriter::create(&tmp.0, RunInfo::new("x")).unwrap();
    let h = hist();
    for bad in ["", "a b", "a,b", "../x", ".hidden", "a/b"] {
        assert!(matches!(
            w.write_interval(bad, &h, Duration::ZERO, Duration::from_secs(1)),
            Err(ReportError::BadTag(_))
        ));
    }
    let e = w
        .finish(&[StageData::new("same", &h), StageData::new("same", &h)])
        .unwrap_err();
    assert!(matches!(e, ReportError::BadTag(_)), "{e:?}");
}
