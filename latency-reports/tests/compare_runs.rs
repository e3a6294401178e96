//! Comparing runs: an injected 2x p99 regression is flagged, a 1% change is not, the threshold
//! is configurable, and stages present in one run only are listed but never flagged.

use std::path::PathBuf;

use hdrhistogram::Histogram;
use spinwire_latency_reports::{
    compare, format_comparison, format_run_table, Metric, Run, RunInfo, RunWriter, StageData, Unit,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "spinwire-compare-{name}-{}-{:?}",
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

/// 10,000 values: 98% spread over 1..2 µs, 2% in the tail around `tail_ns`, all scaled by
/// `scale`.
fn latencies(tail_ns: u64, scale: f64) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for i in 0..10_000u64 {
        let v = if i % 50 == 0 {
            tail_ns + (i % 1_000)
        } else {
            1_000 + (i * 7_919) % 1_000
        };
        h.record((v as f64 * scale) as u64).unwrap();
    }
    h
}

fn write(dir: &std::path::Path, stages: &[(&str, Histogram<u64>)]) -> Run {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let w = RunWriter::create(dir, RunInfo::new(name)).unwrap();
    let data: Vec<StageData<'_>> = stages.iter().map(|(n, h)| StageData::new(n, h)).collect();
    w.finish(&data).unwrap();
    Run::load(dir).unwrap()
}

#[test]
fn doubled_p99_is_flagged_and_one_percent_noise_is_not() {
    let tmp = TempDir::new("flag");
    let base = write(
        &tmp.0.join("base"),
        &[
            ("frame_to_record", latencies(50_000, 1.0)),
            ("wire_to_strategy", latencies(80_000, 1.0)),
        ],
    );
    let new = write(
        &tmp.0.join("new"),
        &[
            // 1% slower everywhere: noise.
            ("frame_to_record", latencies(50_000, 1.01)),
            // Tail (p99 and above) twice as slow, median unchanged.
            ("wire_to_strategy", latencies(160_000, 1.0)),
        ],
    );
    let cmp = compare(&base, &new, 10.0);
    assert!(cmp.has_regression());
    let flagged: Vec<&str> = cmp.regressions().map(|s| s.name.as_str()).collect();
    assert_eq!(flagged, ["wire_to_strategy"]);

    let w = &cmp.stages[1];
    assert_eq!(w.regressed, [false, true, true]);
    let p99 = w.ratios[1].unwrap();
    assert!((1.9..2.1).contains(&p99), "p99 ratio {p99}");
    assert!((w.ratios[0].unwrap() - 1.0).abs() < 0.01);

    let f = &cmp.stages[0];
    assert!(!f.is_regression());
    for r in f.ratios {
        let r = r.unwrap();
        assert!((1.0..1.02).contains(&r), "noise ratio {r}");
    }

    let text = format_comparison(&cmp, Unit::Us);
    assert!(text.contains("REGRESSED (p99, p99.9)"), "{text}");
    assert!(text.contains("1 stage(s) regressed beyond 10%"), "{text}");
    let base_p99 = Metric::P99.of(&base.stage("wire_to_strategy").unwrap().summary);
    assert!(text.contains(&Unit::Us.format(base_p99)), "{text}");
}

#[test]
fn threshold_decides_what_counts_as_a_regression() {
    let tmp = TempDir::new("threshold");
    let base = write(&tmp.0.join("base"), &[("s", latencies(50_000, 1.0))]);
    let new = write(&tmp.0.join("new"), &[("s", latencies(50_000, 1.05))]);
    assert!(!compare(&base, &new, 10.0).has_regression());
    assert!(compare(&base, &new, 2.0).has_regression());
    // Faster is never a regression.
    assert!(!compare(&new, &base, 0.0).has_regression());
}

#[test]
fn stages_in_one_run_only_are_listed_not_flagged() {
    let tmp = TempDir::new("missing");
    let empty = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let base = write(
        &tmp.0.join("base"),
        &[("old", latencies(1_000, 1.0)), ("idle", empty.clone())],
    );
    let new = write(
        &tmp.0.join("new"),
        &[
            ("fresh", latencies(9_000_000, 1.0)),
            ("idle", latencies(1_000, 9.0)),
        ],
    );
    let cmp = compare(&base, &new, 10.0);
    assert!(!cmp.has_regression());
    let names: Vec<&str> = cmp.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["fresh", "idle", "old"]);
    assert_eq!(cmp.stages[1].ratios, [None, None, None]);
    let text = format_comparison(&cmp, Unit::Ns);
    assert!(text.contains("new stage"), "{text}");
    assert!(text.contains("missing in new run"), "{text}");
    assert!(text.contains("no data"), "{text}");
    assert!(text.contains("no regression beyond 10%"), "{text}");
}

#[test]
fn run_table_lists_every_stage_in_the_chosen_unit() {
    let tmp = TempDir::new("table");
    let run = write(
        &tmp.0.join("r"),
        &[("socket_to_frame", latencies(50_000, 1.0))],
    );
    let s = &run.stage("socket_to_frame").unwrap().summary;
    let us = format_run_table(&run, Unit::Us);
    assert!(us.contains("p99 µs"), "{us}");
    assert!(
        us.contains(&format!("{:.3}", s.p99 as f64 / 1000.0)),
        "{us}"
    );
    assert!(us.contains("10000"), "{us}");
    let ns = format_run_table(&run, Unit::Ns);
    assert!(
        ns.contains("p99.9 ns") && ns.contains(&s.p999.to_string()),
        "{ns}"
    );
}
