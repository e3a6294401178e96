//! Run-to-run comparison: per stage, new/base ratios of p50, p99 and p99.9.

use crate::run::{Run, StageSummary};

/// A compared percentile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Median.
    P50,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
}

impl Metric {
    /// Every compared metric, in column order.
    pub const ALL: [Metric; 3] = [Metric::P50, Metric::P99, Metric::P999];

    /// Its column label: `p50`, `p99`, `p99.9`.
    pub fn label(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
        }
    }

    /// Its value in a stage summary (ns).
    pub fn of(self, s: &StageSummary) -> u64 {
        match self {
            Metric::P50 => s.p50,
            Metric::P99 => s.p99,
            Metric::P999 => s.p999,
        }
    }
}

/// One stage compared.
#[derive(Clone, Debug, PartialEq)]
pub struct StageComparison {
    /// Stage name.
    pub name: String,
    /// The base run's numbers (`None`: the stage is new).
    pub base: Option<StageSummary>,
    /// The new run's numbers (`None`: the stage is gone).
    pub new: Option<StageSummary>,
    /// new / base for each of [`Metric::ALL`]; `None` when either side has no values. A base of
    /// 0 ns is taken as 1 ns.
    pub ratios: [Option<f64>; 3],
    /// Whether each ratio is above 1 + threshold.
    pub regressed: [bool; 3],
}

impl StageComparison {
    /// Whether any metric regressed.
    pub fn is_regression(&self) -> bool {
        self.regressed.iter().any(|&r| r)
    }
}

/// A new run compared with a base run.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The base run, as its directory path.
    pub base_name: String,
    /// The new run, as its directory path.
    pub new_name: String,
    /// The threshold, in percent: a metric regressed when new > base × (1 + threshold/100).
    pub threshold_pct: f64,
    /// The new run's stages in order, then stages only the base has.
    pub stages: Vec<StageComparison>,
}

impl Comparison {
    /// Whether any stage regressed.
    pub fn has_regression(&self) -> bool {
        self.stages.iter().any(StageComparison::is_regression)
    }

    /// The stages that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &StageComparison> {
        self.stages.iter().filter(|s| s.is_regression())
    }
}

/// Compares `new` with `base`: a stage regressed when its p50, p99 or p99.9 is more than
/// `threshold_pct` percent above the base's. Stages with no values on either side, or present in
/// only one run, are listed but never flagged.
pub fn compare(base: &Run, new: &Run, threshold_pct: f64) -> Comparison {
    let limit = 1.0 + threshold_pct / 100.0;
    let mut stages = Vec::new();
    let one = |name: &str, b: Option<&StageSummary>, n: Option<&StageSummary>| {
        let mut ratios = [None; 3];
        let mut regressed = [false; 3];
        if let (Some(b), Some(n)) = (b, n) {
            if b.count > 0 && n.count > 0 {
                for (i, m) in Metric::ALL.into_iter().enumerate() {
                    let r = m.of(n) as f64 / m.of(b).max(1) as f64;
                    ratios[i] = Some(r);
                    regressed[i] = r > limit;
                }
            }
        }
        StageComparison {
            name: name.to_string(),
            base: b.cloned(),
            new: n.cloned(),
            ratios,
            regressed,
        }
    };
    for s in &new.stages {
        let name = &s.summary.name;
        let b = base.stage(name).map(|b| &b.summary);
        stages.push(one(name, b, Some(&s.summary)));
    }
    for s in &base.stages {
        if new.stage(&s.summary.name).is_none() {
            stages.push(one(&s.summary.name, Some(&s.summary), None));
        }
    }
    Comparison {
        base_name: base.dir.display().to_string(),
        new_name: new.dir.display().to_string(),
        threshold_pct,
        stages,
    }
}
