//! The clock and per-stage latency recorders.
//!
//! - [`Clock`]: nanoseconds since the run's start from the CPU's time-stamp counter (calibrated
//!   once against `CLOCK_MONOTONIC`) or from `CLOCK_MONOTONIC`, chosen at startup; `Copy`, so
//!   every thread reads the same timeline. [`Clock::to_wall_ns`] and [`WallMapper`] map a
//!   reading to `CLOCK_REALTIME`, the clock a venue's send times (the simulator's `sw_send_ns`)
//!   are in, for wire-to-strategy latency. Read it once per loop turn where possible.
//! - [`Stage`]: the fixed set of measured stages.
//! - [`Recorder`]: one histogram per stage (1 ns .. 60 s, 3 significant digits by default),
//!   owned by one hot thread. It records into [`HotHistograms`]: flat counters in
//!   HdrHistogram's bucket layout, so a value costs one index computation and one increment.
//!   [`Recorder::record`] never allocates, never blocks, never panics: values above the range are
//!   recorded as the highest value and counted, negative intervals as 0 and counted
//!   ([`OutOfRange`]).
//! - [`Collector`]: owned by a reporting thread. Each interval ([`HistogramConfig::interval_ns`])
//!   the recorder swaps in a cleared spare set and hands the full one over an SPSC ring
//!   ([`Recorder::maybe_rotate`]); the collector turns it into real HdrHistograms
//!   ([`StageHistograms`]), logs it, adds it to the totals and sends it back cleared. The hot thread never resets, merges, formats or writes a file.
//!
//! # Example
//!
//! ```
//! use spinwire_engine::latency::{Clock, Collector, HistogramConfig, Stage};
//!
//! let clock = Clock::auto();
//! let mut collector = Collector::new(HistogramConfig::default()).unwrap();
//! let mut rec = collector.recorder(clock.now_ns()).unwrap();
//!
//! // Engine thread, each loop turn:
//! let t_read = clock.now_ns();
//! let t_decoded = clock.now_ns();
//! rec.record_between(Stage::SocketToFrame, t_read, t_decoded);
//! rec.maybe_rotate(t_decoded);
//!
//! // At shutdown, hand over the last partial interval:
//! rec.finish(clock.now_ns());
//!
//! // Reporting thread:
//! let mut intervals = 0;
//! collector.poll(|_source, interval| {
//!     intervals += 1;
//!     assert_eq!(interval.histogram(Stage::SocketToFrame).len(), 1);
//! });
//! assert_eq!(intervals, 1);
//! assert_eq!(collector.totals().histogram(Stage::SocketToFrame).len(), 1);
//! assert!(collector.all_finished());
//! ```

mod clock;
mod recorder;
mod stage;

pub use clock::{
    read_monotonic_ns, read_tsc, realtime_ns, Clock, ClockChoice, ClockError, ClockSource,
    WallMapper, DEFAULT_CALIBRATION,
};
pub use recorder::{
    Collector, HistogramConfig, HotHistograms, LatencyError, OutOfRange, Recorder, Rotation,
    SourceId, StageHistograms,
};
pub use stage::Stage;
