//! `spinwire report`, run as the built binary: percentile tables for run directories, `--compare`
//! flagging a regression with exit status 3 (and 0 without one), and a clear error with status 1
//! for a directory that is not a run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spinwire_latency_reports::hdrhistogram::Histogram;
use spinwire_latency_reports::{RunInfo, RunWriter, StageData};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("spinwire-report-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 10,000 latencies: 99% within 1..2 µs, 1% tail at `tail_ns`.
fn latencies(tail_ns: u64) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for i in 0..10_000u64 {
        let v = if i % 100 < 2 {
            tail_ns
        } else {
            1_000 + (i * 7_919) % 1_000
        };
        h.record(v).unwrap();
    }
    h
}

fn write_run(dir: &Path, wire_tail_ns: u64) {
    let frame = latencies(40_000);
    let wire = latencies(wire_tail_ns);
    let w = RunWriter::create(dir, RunInfo::new("cli").with("venue", "deribit")).unwrap();
    w.finish(&[
        StageData::new("frame_to_record", &frame),
        StageData::new("wire_to_strategy", &wire),
    ])
    .unwrap();
}

fn spinwire(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .arg("report")
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn prints_a_percentile_table_per_run() {
    let tmp = TempDir::new("tables");
    let (a, b) = (tmp.0.join("a"), tmp.0.join("b"));
    write_run(&a, 50_000);
    write_run(&b, 60_000);
    let out = spinwire(&[&a, &b]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.matches("p99.9 µs").count(), 2, "{stdout}");
    assert!(stdout.contains("wire_to_strategy") && stdout.contains("frame_to_record"));
    assert!(stdout.contains("venue=deribit"), "{stdout}");
    // p99 of `a`'s wire stage: the 50 µs tail.
    assert!(stdout.contains("50.015"), "{stdout}");
    assert!(!stdout.contains("REGRESSED"));

    let ns = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["report", "--unit", "ns"])
        .arg(&a)
        .output()
        .unwrap();
    assert!(text(&ns.stdout).contains("p99 ns"), "{}", text(&ns.stdout));
}

#[test]
fn compare_exits_3_on_a_regression_and_0_without() {
    let tmp = TempDir::new("compare");
    let (base, same, slow) = (tmp.0.join("base"), tmp.0.join("same"), tmp.0.join("slow"));
    write_run(&base, 50_000);
    write_run(&same, 50_000);
    write_run(&slow, 100_000);

    let ok = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["report", "--compare"])
        .arg(&base)
        .arg(&same)
        .output()
        .unwrap();
    let stdout = text(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout}{}", text(&ok.stderr));
    assert!(stdout.contains("no regression beyond 10%"), "{stdout}");

    let bad = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["report", "--compare"])
        .arg(&base)
        .arg(&same)
        .arg(&slow)
        .output()
        .unwrap();
    let stdout = text(&bad.stdout);
    assert_eq!(bad.status.code(), Some(3), "{stdout}{}", text(&bad.stderr));
    let flagged: Vec<&str> = stdout.lines().filter(|l| l.contains("REGRESSED")).collect();
    assert_eq!(flagged.len(), 1, "{stdout}");
    assert!(flagged[0].starts_with("wire_to_strategy"), "{stdout}");
    assert!(flagged[0].contains("x2.00"), "{stdout}");

    // A 150% threshold lets the doubled tail pass.
    let lenient = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["report", "--threshold", "150", "--compare"])
        .arg(&base)
        .arg(&slow)
        .output()
        .unwrap();
    assert_eq!(lenient.status.code(), Some(0), "{}", text(&lenient.stdout));
}

#[test]
fn a_directory_that_is_not_a_run_is_a_clear_error() {
    let tmp = TempDir::new("bad");
    let good = tmp.0.join("good");
    write_run(&good, 50_000);
    let empty = tmp.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();

    let out = spinwire(&[&good, &empty]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("spinwire report:"), "{stderr}");
    assert!(stderr.contains("is not a run directory"), "{stderr}");
    assert!(stderr.contains(&empty.display().to_string()), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed before the error");

    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["report", "--compare"])
        .arg(tmp.0.join("missing"))
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );

    // No directory at all, or a bad threshold: usage errors from the argument parser.
    let usage = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .arg("report")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let neg = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["report", "--threshold", "-5"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(neg.status.code(), Some(2), "{}", text(&neg.stderr));
}

#[test]
fn engine_recorders_feed_a_run_that_report_reads() {
    use spinwire_engine::latency::{Clock, Collector, HistogramConfig, Stage};
    use std::time::{Duration, UNIX_EPOCH};

    let tmp = TempDir::new("engine");
    let dir = tmp.0.join("run");
    let clock = Clock::auto();
    let cfg = HistogramConfig {
        interval_ns: 1_000_000,
        ..HistogramConfig::default()
    };
    let mut collector = Collector::new(cfg).unwrap();
    let start = clock.now_ns();
    let mut rec = collector.recorder(start).unwrap();
    // Interval start times count from the clock's epoch, mapped to wall time.
    let base = UNIX_EPOCH + Duration::from_nanos(clock.wall_at_epoch_ns());
    let info = RunInfo::new("engine").with("clock", clock.source().name());
    let mut run = RunWriter::create_at(&dir, info, base).unwrap();
    let write = |collector: &mut Collector, run: &mut RunWriter| {
        collector.poll(|_src, interval| {
            let start = Duration::from_nanos(interval.start_ns());
            let len = Duration::from_nanos(interval.end_ns() - interval.start_ns());
            for stage in Stage::ALL {
                run.write_interval(stage.name(), interval.histogram(stage), start, len)
                    .unwrap();
            }
        });
    };
    // Simulated engine time (100 ns per loop turn, so 2 ms in all: a few 1 ms intervals,
    // whatever the build's speed), anchored at the clock's epoch.
    let mut now = start;
    let mut rotations = 0;
    for i in 0..20_000u64 {
        rec.record(Stage::FrameToRecord, 300 + i % 700);
        rec.record_between(Stage::SocketToFrame, now, now + 1_000 + i % 50);
        now += 100;
        if rec.maybe_rotate(now).is_some() {
            rotations += 1;
            write(&mut collector, &mut run);
        }
    }
    assert_eq!(rotations, 2);
    rec.finish(now);
    write(&mut collector, &mut run);
    let totals = collector.totals();
    let stages: Vec<StageData<'_>> = Stage::ALL
        .iter()
        .map(|&s| {
            StageData::new(s.name(), totals.histogram(s))
                .description(s.description())
                .out_of_range(totals.out_of_range(s).total())
        })
        .collect();
    run.finish(&stages).unwrap();

    let out = spinwire(&[&dir]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let row = stdout
        .lines()
        .find(|l| l.starts_with("frame_to_record"))
        .unwrap();
    assert!(row.contains(" 20000 "), "{stdout}");
    let log = spinwire_latency_reports::Run::load(&dir)
        .unwrap()
        .interval_log()
        .unwrap()
        .unwrap();
    assert_eq!(log.intervals.len(), 2 * Stage::COUNT);
    let by_tag = &log.totals;
    assert_eq!(by_tag["socket_to_frame"].len(), 20_000);
    assert_eq!(
        by_tag["frame_to_record"].value_at_quantile(0.99),
        totals
            .histogram(Stage::FrameToRecord)
            .value_at_quantile(0.99)
    );
}
