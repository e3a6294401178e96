//! Per-stage HDR histograms, the recorder a hot thread writes into, and the collector that takes
//! full interval histograms off it.

use hdrhistogram::Histogram;
use spinwire_ringbuf::{Consumer, Producer};

use super::Stage;

/// Range and precision of every stage histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramConfig {
    /// Highest value tracked, in nanoseconds; larger values are recorded as this value and
    /// counted in [`OutOfRange::above`]. Must be at least 2.
    pub highest_ns: u64,
    /// Significant decimal digits kept (value precision), 0..=5.
    pub significant_digits: u8,
    /// How long an interval lasts before [`Recorder::maybe_rotate`] hands it over, in ns.
    pub interval_ns: u64,
    /// Spare histogram sets per recorder, circulated between it and the collector. With `n`
    /// spares the collector may fall `n` intervals behind before a rotation is skipped.
    pub spares: usize,
}

impl Default for HistogramConfig {
    /// 1 ns .. 60 s at 3 significant digits, 1 s intervals, 3 spares.
    fn default() -> Self {
        HistogramConfig {
            highest_ns: 60_000_000_000,
            significant_digits: 3,
            interval_ns: 1_000_000_000,
            spares: 3,
        }
    }
}

/// Why histograms could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    /// The [`HistogramConfig`] is out of range (highest below 2, more than 5 significant
    /// digits, a zero interval or no spares); fix the configuration.
    #[error("invalid histogram configuration: {0}")]
    Config(String),
}

/// Values a stage could not record as they were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutOfRange {
    /// Values above [`HistogramConfig::highest_ns`] (recorded as the highest value).
    pub above: u64,
    /// Negative intervals (`end < start` in [`StageHistograms::record_between`], e.g. a wall
    /// clock behind the venue's), recorded as 0.
    pub negative: u64,
}

impl OutOfRange {
    /// Both counts together.
    pub fn total(&self) -> u64 {
        self.above + self.negative
    }
}

/// One histogram per [`Stage`], with out-of-range counts and the interval they cover.
///
/// All memory is allocated by [`new`](StageHistograms::new); recording never allocates, never
/// panics and never fails.
#[derive(Clone, Debug)]
pub struct StageHistograms {
    /// Indexed by [`Stage::index`]. Auto-resize is off and the bounds are fixed at construction,
    /// so every value in `0..=highest` has a slot.
    hists: [Histogram<u64>; Stage::COUNT],
    /// Indexed by [`Stage::index`].
    out_of_range: [OutOfRange; Stage::COUNT],
    /// Highest value recorded as-is; what larger values are clamped to.
    highest: u64,
    /// Clock time (ns) at which this interval started.
    start_ns: u64,
    /// Clock time (ns) at which this interval ended (equal to `start_ns` while it is open).
    end_ns: u64,
    /// Rotations the recorder skipped during this interval because no spare set was free (the
    /// interval then simply went on for longer).
    skipped_rotations: u64,
}

impl StageHistograms {
    /// Empty histograms for every stage, covering 0 ..= `config.highest_ns`.
    ///
    /// # Errors
    ///
    /// [`LatencyError::Config`] when the bounds or precision are invalid.
    pub fn new(config: &HistogramConfig) -> Result<StageHistograms, LatencyError> {
        if config.highest_ns < 2 {
            return Err(LatencyError::Config(format!(
                "highest_ns must be at least 2, got {}",
                config.highest_ns
            )));
        }
        if config.significant_digits > 5 {
            return Err(LatencyError::Config(format!(
                "significant_digits must be 0..=5, got {}",
                config.significant_digits
            )));
        }
        let mut hists = Vec::with_capacity(Stage::COUNT);
        for _ in 0..Stage::COUNT {
            let h =
                Histogram::<u64>::new_with_bounds(1, config.highest_ns, config.significant_digits)
                    .map_err(|e| LatencyError::Config(format!("{e:?}")))?;
            hists.push(h);
        }
        let hists: [Histogram<u64>; Stage::COUNT] = match hists.try_into() {
            Ok(a) => a,
            Err(_) => unreachable!("exactly Stage::COUNT histograms were made"),
        };
        let highest = hists[0].high();
        Ok(StageHistograms {
            hists,
            out_of_range: [OutOfRange::default(); Stage::COUNT],
            highest,
            start_ns: 0,
            end_ns: 0,
            skipped_rotations: 0,
        })
    }

    /// Records `value_ns` for `stage`. Values above the highest trackable value are recorded as
    /// that value and counted ([`out_of_range`](StageHistograms::out_of_range)). Never
    /// allocates, never panics.
    #[inline]
    pub fn record(&mut self, stage: Stage, value_ns: u64) {
        let i = stage.index();
        let v = if value_ns > self.highest {
            self.out_of_range[i].above += 1;
            self.highest
        } else {
            value_ns
        };
        // Cannot fail: `v` is within the fixed bounds and auto-resize is off. Were it to fail
        // anyway, the value is counted rather than lost silently.
        if self.hists[i].record(v).is_err() {
            self.out_of_range[i].above += 1;
        }
    }

    /// Records `end_ns - start_ns` for `stage`; a negative interval is recorded as 0 and counted
    /// in [`OutOfRange::negative`].
    #[inline]
    pub fn record_between(&mut self, stage: Stage, start_ns: u64, end_ns: u64) {
        match end_ns.checked_sub(start_ns) {
            Some(d) => self.record(stage, d),
            None => {
                self.out_of_range[stage.index()].negative += 1;
                self.record(stage, 0);
            }
        }
    }

    /// The histogram of `stage` (values in nanoseconds).
    pub fn histogram(&self, stage: Stage) -> &Histogram<u64> {
        &self.hists[stage.index()]
    }

    /// What `stage` could not record as it was.
    pub fn out_of_range(&self, stage: Stage) -> OutOfRange {
        self.out_of_range[stage.index()]
    }

    /// The highest value recorded as-is (the configured highest, rounded up to the histogram's
    /// resolution).
    pub fn highest_ns(&self) -> u64 {
        self.highest
    }

    /// Clock time (ns) at which this interval started.
    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// Clock time (ns) at which this interval ended (as handed over by the recorder).
    pub fn end_ns(&self) -> u64 {
        self.end_ns
    }

    /// Rotations skipped during this interval for want of a spare set.
    pub fn skipped_rotations(&self) -> u64 {
        self.skipped_rotations
    }

    /// Total values recorded over all stages.
    pub fn total_count(&self) -> u64 {
        self.hists.iter().map(Histogram::len).sum()
    }

    /// Adds `other`'s counts, out-of-range counts and skipped rotations to these, and widens the
    /// interval to cover both. Both must come from the same [`HistogramConfig`]. Allocates
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`LatencyError::Config`] when `other` was made with a different range.
    pub fn add(&mut self, other: &StageHistograms) -> Result<(), LatencyError> {
        if other.highest != self.highest || other.hists[0].sigfig() != self.hists[0].sigfig() {
            return Err(LatencyError::Config(
                "cannot add histograms made with different configurations".into(),
            ));
        }
        let was_empty = self.total_count() == 0 && self.start_ns == self.end_ns;
        for i in 0..Stage::COUNT {
            self.hists[i]
                .add(&other.hists[i])
                .map_err(|e| LatencyError::Config(format!("{e:?}")))?;
            self.out_of_range[i].above += other.out_of_range[i].above;
            self.out_of_range[i].negative += other.out_of_range[i].negative;
        }
        self.skipped_rotations += other.skipped_rotations;
        self.widen(was_empty, other.start_ns, other.end_ns);
        Ok(())
    }

    /// Makes the interval cover `start_ns..end_ns` too (or be it, when these were empty).
    fn widen(&mut self, was_empty: bool, start_ns: u64, end_ns: u64) {
        if was_empty {
            self.start_ns = start_ns;
            self.end_ns = end_ns;
        } else {
            self.start_ns = self.start_ns.min(start_ns);
            self.end_ns = self.end_ns.max(end_ns);
        }
    }

    /// Clears every count and sets the interval to start (and end) at `start_ns`. Allocates
    /// nothing (it writes every slot, so it takes time in proportion to the histograms' size:
    /// keep it off the engine thread).
    pub fn reset(&mut self, start_ns: u64) {
        for h in &mut self.hists {
            h.reset();
        }
        self.out_of_range = [OutOfRange::default(); Stage::COUNT];
        self.start_ns = start_ns;
        self.end_ns = start_ns;
        self.skipped_rotations = 0;
    }
}

/// The hot-thread side of a set of stage histograms: flat `u64` counters in HdrHistogram's
/// bucket layout (same equivalence classes as a [`Histogram`] of the same range and precision),
/// with nothing else on the recording path: one index computation and one increment.
///
/// Full sets travel to the [`Collector`], which turns them into [`StageHistograms`] (real
/// HdrHistograms) off the hot thread. Read its counts with [`HotHistograms::count`], or
/// convert it with [`HotHistograms::to_histograms`] (allocates; for tests and tools).
#[derive(Clone, Debug)]
pub struct HotHistograms {
    /// `Stage::COUNT * slots` counters, stage-major. Invariant: `counts.len() == Stage::COUNT *
    /// layout.slots` (allocated once, never resized).
    counts: Box<[u64]>,
    /// Indexed by [`Stage::index`].
    out_of_range: [OutOfRange; Stage::COUNT],
    layout: Layout,
    start_ns: u64,
    end_ns: u64,
    skipped_rotations: u64,
}

/// HdrHistogram's bucket layout for values `0..=highest` at a precision, with a lowest
/// discernible value of 1 (unit magnitude 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// `log2(sub_bucket_count / 2)`.
    half_mag: u32,
    /// `sub_bucket_count - 1`.
    sub_mask: u64,
    /// Counters per stage.
    slots: usize,
    /// Highest value recorded as-is (values above are clamped to it).
    highest: u64,
}

impl Layout {
    fn new(highest: u64, significant_digits: u8) -> Layout {
        // As HdrHistogram: the smallest power of two >= 2 * 10^digits sub-buckets.
        let largest_single_unit = 2 * 10u64.pow(u32::from(significant_digits));
        let sub_count_mag = 64 - (largest_single_unit - 1).leading_zeros();
        let half_mag = sub_count_mag.max(1) - 1;
        let sub_count = 1u64 << (half_mag + 1);
        let mut smallest_untrackable = sub_count;
        let mut buckets = 1usize;
        while smallest_untrackable <= highest {
            if smallest_untrackable > u64::MAX / 2 {
                buckets += 1;
                break;
            }
            smallest_untrackable <<= 1;
            buckets += 1;
        }
        Layout {
            half_mag,
            sub_mask: sub_count - 1,
            slots: (buckets + 1) << half_mag,
            highest,
        }
    }

    /// The counter index of `v` (`v <= highest`).
    #[inline(always)]
    fn index(&self, v: u64) -> usize {
        let pow2ceiling = 64 - (v | self.sub_mask).leading_zeros();
        let bucket = pow2ceiling - (self.half_mag + 1);
        let sub = (v >> bucket) as usize;
        ((bucket as usize + 1) << self.half_mag) + sub - (1usize << self.half_mag)
    }

    /// The lowest value whose counter is `index`.
    fn value_at(&self, index: usize) -> u64 {
        let half = 1usize << self.half_mag;
        let mut bucket = (index >> self.half_mag) as i64 - 1;
        let mut sub = (index & (half - 1)) + half;
        if bucket < 0 {
            sub -= half;
            bucket = 0;
        }
        (sub as u64) << bucket
    }
}

impl HotHistograms {
    /// Zeroed counters for every stage, covering 0 ..= `config.highest_ns`.
    ///
    /// # Errors
    ///
    /// [`LatencyError::Config`] when the bounds or precision are invalid.
    pub fn new(config: &HistogramConfig) -> Result<HotHistograms, LatencyError> {
        // The reference layout: validates the configuration and gives the clamp value.
        let reference = StageHistograms::new(config)?;
        let layout = Layout::new(reference.highest, config.significant_digits);
        if layout.index(layout.highest) >= layout.slots {
            return Err(LatencyError::Config(format!(
                "highest_ns {} does not fit the histogram layout",
                config.highest_ns
            )));
        }
        Ok(HotHistograms {
            counts: vec![0; Stage::COUNT * layout.slots].into_boxed_slice(),
            out_of_range: [OutOfRange::default(); Stage::COUNT],
            layout,
            start_ns: 0,
            end_ns: 0,
            skipped_rotations: 0,
        })
    }

    /// Records `value_ns` for `stage`; values above the highest are recorded as the highest and
    /// counted in [`OutOfRange::above`]. Never allocates, never panics.
    #[inline(always)]
    pub fn record(&mut self, stage: Stage, value_ns: u64) {
        let s = stage.index();
        let v = if value_ns > self.layout.highest {
            self.out_of_range[s].above += 1;
            self.layout.highest
        } else {
            value_ns
        };
        let i = s * self.layout.slots + self.layout.index(v);
        // `get_mut`: in bounds by the layout's construction (checked in `new` for the highest
        // value, the largest index); a miss would be counted, never a panic.
        match self.counts.get_mut(i) {
            Some(c) => *c += 1,
            None => self.out_of_range[s].above += 1,
        }
    }

    /// Records `end_ns - start_ns`; a negative interval is recorded as 0 and counted in
    /// [`OutOfRange::negative`].
    #[inline(always)]
    pub fn record_between(&mut self, stage: Stage, start_ns: u64, end_ns: u64) {
        match end_ns.checked_sub(start_ns) {
            Some(d) => self.record(stage, d),
            None => {
                self.out_of_range[stage.index()].negative += 1;
                self.record(stage, 0);
            }
        }
    }

    /// Values recorded for `stage` in this interval (sums its counters: not for the hot
    /// thread).
    pub fn count(&self, stage: Stage) -> u64 {
        self.stage_counts(stage.index()).iter().sum()
    }

    /// Values recorded over all stages (sums every counter: not for the hot thread).
    pub fn total_count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn stage_counts(&self, s: usize) -> &[u64] {
        &self.counts[s * self.layout.slots..(s + 1) * self.layout.slots]
    }

    /// What `stage` could not record as it was.
    pub fn out_of_range(&self, stage: Stage) -> OutOfRange {
        self.out_of_range[stage.index()]
    }

    /// Clock time (ns) at which this interval started.
    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// Clock time (ns) at which this interval ended (equal to the start while it is open).
    pub fn end_ns(&self) -> u64 {
        self.end_ns
    }

    /// Rotations skipped during this interval for want of a spare set.
    pub fn skipped_rotations(&self) -> u64 {
        self.skipped_rotations
    }

    /// These counts as HdrHistograms (allocates: for tests and tools, not the hot thread).
    ///
    /// # Errors
    ///
    /// [`LatencyError::Config`] when `config` is not the one this set was made with.
    pub fn to_histograms(&self, config: &HistogramConfig) -> Result<StageHistograms, LatencyError> {
        let mut out = StageHistograms::new(config)?;
        self.add_to(&mut out)?;
        Ok(out)
    }

    /// Adds these counts, out-of-range counts and skipped rotations to `out` (a set of the same
    /// configuration) and widens its interval to cover this one's. Allocates nothing.
    fn add_to(&self, out: &mut StageHistograms) -> Result<(), LatencyError> {
        if out.highest != self.layout.highest {
            return Err(LatencyError::Config(
                "cannot add histograms made with different configurations".into(),
            ));
        }
        let was_empty = out.total_count() == 0 && out.start_ns == out.end_ns;
        for (s, stage_counts) in self.counts.chunks_exact(self.layout.slots).enumerate() {
            for (i, &c) in stage_counts.iter().enumerate() {
                if c != 0 {
                    // Same layout, so the value lands in the same equivalence class.
                    let _ = out.hists[s].record_n(self.layout.value_at(i), c);
                }
            }
            out.out_of_range[s].above += self.out_of_range[s].above;
            out.out_of_range[s].negative += self.out_of_range[s].negative;
        }
        out.skipped_rotations += self.skipped_rotations;
        out.widen(was_empty, self.start_ns, self.end_ns);
        Ok(())
    }

    /// Clears the counts and starts a new interval at `start_ns` (off the hot thread: it writes
    /// every counter).
    fn reset(&mut self, start_ns: u64) {
        self.counts.fill(0);
        self.out_of_range = [OutOfRange::default(); Stage::COUNT];
        self.start_ns = start_ns;
        self.end_ns = start_ns;
        self.skipped_rotations = 0;
    }
}

/// What [`Recorder::rotate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The full interval was handed to the collector; recording goes on into a cleared spare.
    HandedOver,
    /// No spare set was free (the collector is behind): recording goes on into the same
    /// interval, which will be handed over at a later rotation. Counted in
    /// [`HotHistograms::skipped_rotations`].
    Skipped,
}

/// The recording end, owned by one hot thread (the engine thread, or a strategy thread for the
/// stages it measures).
///
/// [`record`](Recorder::record) writes into the current interval's histograms;
/// [`maybe_rotate`](Recorder::maybe_rotate), called once per loop turn, swaps in a spare set every
/// [`HistogramConfig::interval_ns`] and hands the full one to the [`Collector`] over an SPSC ring,
/// so the hot thread never resets, merges, formats or writes anything. Nothing here allocates,
/// blocks or panics after [`Collector::recorder`] made it.
#[derive(Debug)]
pub struct Recorder {
    /// The interval being recorded into.
    current: Box<HotHistograms>,
    /// Full intervals, to the collector. Its capacity is at least the number of sets in
    /// circulation (current + spares), so a push after popping a spare always has room.
    full: Producer<Box<HotHistograms>>,
    /// Cleared sets, back from the collector.
    spares: Consumer<Box<HotHistograms>>,
    /// Length of an interval in clock ns.
    interval_ns: u64,
}

impl Recorder {
    /// Records `value_ns` for `stage` in the current interval; see [`HotHistograms::record`].
    #[inline(always)]
    pub fn record(&mut self, stage: Stage, value_ns: u64) {
        self.current.record(stage, value_ns);
    }

    /// Records `end_ns - start_ns` for `stage`; see [`HotHistograms::record_between`].
    #[inline(always)]
    pub fn record_between(&mut self, stage: Stage, start_ns: u64, end_ns: u64) {
        self.current.record_between(stage, start_ns, end_ns);
    }

    /// Rotates when the current interval has lasted [`HistogramConfig::interval_ns`]; one
    /// comparison otherwise. Returns what it did, `None` when it was not time yet.
    #[inline]
    pub fn maybe_rotate(&mut self, now_ns: u64) -> Option<Rotation> {
        if now_ns.saturating_sub(self.current.start_ns) >= self.interval_ns {
            Some(self.rotate(now_ns))
        } else {
            None
        }
    }

    /// Ends the current interval at `now_ns` and hands it to the collector, if a spare set is
    /// free; see [`Rotation`]. Never allocates, never blocks.
    pub fn rotate(&mut self, now_ns: u64) -> Rotation {
        // The full ring has room for every set in circulation, so it is never full here; the
        // check keeps a push failure impossible even so (only this end pushes).
        if self.full.is_full() {
            self.current.skipped_rotations += 1;
            return Rotation::Skipped;
        }
        let Some(mut next) = self.spares.pop() else {
            self.current.skipped_rotations += 1;
            return Rotation::Skipped;
        };
        next.start_ns = now_ns;
        next.end_ns = now_ns;
        std::mem::swap(&mut self.current, &mut next);
        next.end_ns = now_ns;
        match self.full.push(next) {
            Ok(()) => Rotation::HandedOver,
            Err(back) => {
                // Unreachable (see above). Keep recording into the old interval; the unused
                // spare leaves circulation.
                let mut old = back.into_inner();
                std::mem::swap(&mut self.current, &mut old);
                self.current.skipped_rotations += 1;
                Rotation::Skipped
            }
        }
    }

    /// The interval being recorded into.
    pub fn current(&self) -> &HotHistograms {
        &self.current
    }

    /// Hands the current interval over (ended at `now_ns`) and drops the recorder; call it when
    /// the thread stops so the last partial interval reaches the collector. Never blocks.
    pub fn finish(mut self, now_ns: u64) {
        self.current.end_ns = now_ns;
        // The ring holds every set in circulation, so there is room. A push that failed anyway
        // would drop the interval, which is still better than blocking a stopping thread.
        if self.current.total_count() > 0 || self.current.skipped_rotations > 0 {
            let _ = self.full.push(self.current);
        }
    }
}

/// One recorder's rings, on the collector's side.
#[derive(Debug)]
struct Source {
    /// Full intervals from the recorder.
    full: Consumer<Box<HotHistograms>>,
    /// Cleared sets back to the recorder.
    spares: Producer<Box<HotHistograms>>,
}

/// The collecting end, owned by a reporting thread: takes full intervals off every
/// [`Recorder`] it made, lets the caller log them, adds them to the run's totals and returns the
/// cleared sets to the recorders.
#[derive(Debug)]
pub struct Collector {
    /// Histogram range, precision, interval and spare count for every recorder made.
    config: HistogramConfig,
    /// One entry per recorder made, in the order made ([`SourceId`] indexes this).
    sources: Vec<Source>,
    /// Everything collected so far.
    totals: Box<StageHistograms>,
    /// The interval being handed to `poll`'s callback, converted from a recorder's set.
    scratch: Box<StageHistograms>,
}

/// Which recorder an interval came from: the order in which [`Collector::recorder`] made it,
/// from 0.
pub type SourceId = usize;

impl Collector {
    /// A collector with no recorders yet.
    ///
    /// # Errors
    ///
    /// [`LatencyError::Config`] for an invalid configuration.
    pub fn new(config: HistogramConfig) -> Result<Collector, LatencyError> {
        if config.interval_ns == 0 {
            return Err(LatencyError::Config("interval_ns must be > 0".into()));
        }
        if config.spares == 0 {
            return Err(LatencyError::Config("spares must be at least 1".into()));
        }
        let totals = Box::new(StageHistograms::new(&config)?);
        let scratch = Box::new(StageHistograms::new(&config)?);
        Ok(Collector {
            config,
            sources: Vec::new(),
            totals,
            scratch,
        })
    }

    /// The configuration every recorder gets.
    pub fn config(&self) -> &HistogramConfig {
        &self.config
    }

    /// Makes a recorder for one hot thread, its first interval starting at `start_ns`;
    /// allocates its histogram sets (current + [`HistogramConfig::spares`]) now.
    ///
    /// # Errors
    ///
    /// [`LatencyError::Config`] for an invalid configuration.
    pub fn recorder(&mut self, start_ns: u64) -> Result<Recorder, LatencyError> {
        let sets = self.config.spares + 1;
        let (full_tx, full_rx) =
            spinwire_ringbuf::try_channel(sets).map_err(|e| LatencyError::Config(e.to_string()))?;
        let (mut spare_tx, spare_rx) =
            spinwire_ringbuf::try_channel(sets).map_err(|e| LatencyError::Config(e.to_string()))?;
        for _ in 0..self.config.spares {
            let set = Box::new(HotHistograms::new(&self.config)?);
            if spare_tx.push(set).is_err() {
                unreachable!("the spare ring holds every set");
            }
        }
        let mut current = Box::new(HotHistograms::new(&self.config)?);
        current.reset(start_ns);
        self.sources.push(Source {
            full: full_rx,
            spares: spare_tx,
        });
        Ok(Recorder {
            current,
            full: full_tx,
            spares: spare_rx,
            interval_ns: self.config.interval_ns,
        })
    }

    /// Takes every full interval off every recorder: calls `on_interval` with each (for an
    /// interval log), adds it to the totals, clears it and hands it back to its recorder.
    /// Returns how many intervals it took.
    pub fn poll(&mut self, mut on_interval: impl FnMut(SourceId, &StageHistograms)) -> usize {
        let mut n = 0;
        for (id, src) in self.sources.iter_mut().enumerate() {
            while let Some(mut set) = src.full.pop() {
                self.scratch.reset(set.start_ns);
                // Same configuration by construction, so these cannot fail.
                let _ = set.add_to(&mut self.scratch);
                on_interval(id, &self.scratch);
                let _ = self.totals.add(&self.scratch);
                let end = set.end_ns;
                set.reset(end);
                // The spare ring holds every set in circulation; if the recorder is gone the
                // set is simply dropped with the ring.
                let _ = src.spares.push(set);
                n += 1;
            }
        }
        n
    }

    /// Everything collected so far (only intervals already taken by [`poll`](Collector::poll)).
    pub fn totals(&self) -> &StageHistograms {
        &self.totals
    }

    /// True when every recorder has been dropped (or finished) and everything it handed over
    /// has been polled.
    pub fn all_finished(&self) -> bool {
        self.sources
            .iter()
            .all(|s| s.full.is_abandoned() && s.full.is_empty())
    }
}
