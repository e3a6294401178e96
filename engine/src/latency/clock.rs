//! The engine's clock: the CPU's time-stamp counter (TSC) calibrated against `CLOCK_MONOTONIC`, or
//! `CLOCK_MONOTONIC` itself, chosen once at startup; plus a wall-clock anchor to compare engine
//! times with a venue's send times.

use std::fmt;
use std::time::Duration;

/// Which counter a [`Clock`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClockSource {
    /// The CPU's time-stamp counter (`rdtsc`), scaled to nanoseconds by a calibration against
    /// `CLOCK_MONOTONIC`. Only chosen when the CPU says the counter is invariant (`constant_tsc`
    /// and `nonstop_tsc`), so it ticks at one rate on every core and in every power state.
    Tsc,
    /// `clock_gettime(CLOCK_MONOTONIC)` (through the vDSO: no system call, but slower than `rdtsc`).
    Monotonic,
}

impl ClockSource {
    /// A short lowercase name: `tsc` or `monotonic`.
    pub fn name(self) -> &'static str {
        match self {
            ClockSource::Tsc => "tsc",
            ClockSource::Monotonic => "monotonic",
        }
    }
}

impl fmt::Display for ClockSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`Clock::new`] should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClockChoice {
    /// The TSC when it is invariant and the kernel itself uses it as its clock source
    /// (`/sys/devices/system/clocksource/clocksource0/current_clocksource` is `tsc`), otherwise
    /// `CLOCK_MONOTONIC`. [`Clock::fallback_reason`] says why the TSC was not taken.
    #[default]
    Auto,
    /// The TSC, or an error when the CPU does not report an invariant TSC (the kernel's own
    /// clock-source choice is not checked).
    Tsc,
    /// `CLOCK_MONOTONIC`.
    Monotonic,
}

/// Why a clock could not be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// The TSC was asked for ([`ClockChoice::Tsc`]) but cannot be used here; the text says why.
    /// Use [`ClockChoice::Auto`] or [`ClockChoice::Monotonic`].
    #[error("the TSC cannot be used as the clock: {0}")]
    TscUnusable(&'static str),
}

/// How long [`Clock::new`] calibrates the TSC against `CLOCK_MONOTONIC`.
pub const DEFAULT_CALIBRATION: Duration = Duration::from_millis(20);

/// A monotonic nanosecond clock, cheap to read, shared by every thread of a run.
///
/// [`now_ns`](Clock::now_ns) returns nanoseconds since the clock was made (its *epoch*). A
/// `Clock` is `Copy`: every copy has the same calibration and epoch, so times read on the
/// engine thread and on strategy threads can be subtracted from each other. Make one at startup
/// and hand copies out; do not make one per thread.
///
/// The wall-clock anchor ([`to_wall_ns`](Clock::to_wall_ns)) maps a clock reading to
/// `CLOCK_REALTIME` nanoseconds since the Unix epoch, the clock a venue (and spinwire's
/// simulator, in `sw_send_ns`) stamps its messages with. The anchor is taken once; with the TSC,
/// a calibration error of a few parts per million makes it drift by a few microseconds per
/// second of run time, so long runs should map through a [`WallMapper`] instead, which re-anchors.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The counter and its scaling.
    kind: Kind,
    /// `CLOCK_REALTIME` in nanoseconds since the Unix epoch at this clock's epoch (clock time 0),
    /// so wall time = clock time + this.
    wall_at_epoch_ns: u64,
    /// Why the TSC was not taken under [`ClockChoice::Auto`], if it was not.
    fallback_reason: Option<&'static str>,
}

/// The counter behind a [`Clock`].
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// The time-stamp counter.
    Tsc {
        /// TSC value at the clock's epoch.
        tsc0: u64,
        /// Nanoseconds per tick as a 32.32 fixed-point number: `ns = (ticks * mult) >> 32`.
        /// Invariant: non-zero (the calibration rejects rates outside 100 MHz..20 GHz).
        mult: u64,
    },
    /// `CLOCK_MONOTONIC`.
    Monotonic {
        /// `CLOCK_MONOTONIC` in nanoseconds at the clock's epoch.
        mono0: u64,
    },
}

impl Clock {
    /// Makes a clock as `choice` says, calibrating the TSC for [`DEFAULT_CALIBRATION`].
    ///
    /// # Errors
    ///
    /// [`ClockError::TscUnusable`] only for [`ClockChoice::Tsc`] on a machine without an
    /// invariant TSC; `Auto` falls back to `CLOCK_MONOTONIC` instead.
    pub fn new(choice: ClockChoice) -> Result<Clock, ClockError> {
        Clock::with_calibration(choice, DEFAULT_CALIBRATION)
    }

    /// The best clock this machine offers ([`ClockChoice::Auto`]); never fails.
    pub fn auto() -> Clock {
        match Clock::new(ClockChoice::Auto) {
            Ok(c) => c,
            // Auto never reports an error: it falls back instead.
            Err(_) => Clock::new_monotonic(None),
        }
    }

    /// A `CLOCK_MONOTONIC` clock.
    pub fn monotonic_clock() -> Clock {
        Clock::new_monotonic(None)
    }

    /// Like [`new`](Clock::new), calibrating the TSC for `calibration` (longer is more exact;
    /// it blocks the calling thread that long, once).
    ///
    /// # Errors
    ///
    /// As for [`new`](Clock::new).
    pub fn with_calibration(
        choice: ClockChoice,
        calibration: Duration,
    ) -> Result<Clock, ClockError> {
        match choice {
            ClockChoice::Monotonic => Ok(Clock::new_monotonic(None)),
            ClockChoice::Tsc => tsc_usable(false)
                .and_then(|()| Clock::calibrate_tsc(calibration))
                .map_err(ClockError::TscUnusable),
            ClockChoice::Auto => {
                match tsc_usable(true).and_then(|()| Clock::calibrate_tsc(calibration)) {
                    Ok(c) => Ok(c),
                    Err(reason) => Ok(Clock::new_monotonic(Some(reason))),
                }
            }
        }
    }

    fn new_monotonic(fallback_reason: Option<&'static str>) -> Clock {
        let mono0 = monotonic_ns();
        let mut c = Clock {
            kind: Kind::Monotonic { mono0 },
            wall_at_epoch_ns: 0,
            fallback_reason,
        };
        c.wall_at_epoch_ns = c.sample_wall_offset();
        c
    }

    #[cfg(target_arch = "x86_64")]
    fn calibrate_tsc(calibration: Duration) -> Result<Clock, &'static str> {
        let (tsc0, mono0) = tsc_and_monotonic();
        let deadline = mono0.saturating_add(calibration.as_nanos().min(u64::MAX as u128) as u64);
        while monotonic_ns() < deadline {
            std::thread::sleep(Duration::from_micros(500));
        }
        let (tsc1, mono1) = tsc_and_monotonic();
        let ticks = tsc1.wrapping_sub(tsc0);
        let ns = mono1.saturating_sub(mono0);
        if ticks == 0 || ns == 0 || ticks > u64::MAX / 2 {
            return Err("the TSC did not advance during calibration");
        }
        // Ticks per nanosecond must be a real CPU's: 0.1 (100 MHz) .. 20 (20 GHz).
        if ticks < ns / 10 || ticks > ns.saturating_mul(20) {
            return Err("the calibrated TSC rate is implausible");
        }
        let mult = ((u128::from(ns) << 32) / u128::from(ticks)) as u64;
        if mult == 0 {
            return Err("the calibrated TSC rate is implausible");
        }
        let mut c = Clock {
            kind: Kind::Tsc { tsc0, mult },
            wall_at_epoch_ns: 0,
            fallback_reason: None,
        };
        c.wall_at_epoch_ns = c.sample_wall_offset();
        Ok(c)
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn calibrate_tsc(_calibration: Duration) -> Result<Clock, &'static str> {
        Err("the TSC clock is only implemented on x86_64")
    }

    /// Nanoseconds since this clock's epoch. Monotonic (never goes back, on any thread), never
    /// allocates, never blocks, never fails.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        match self.kind {
            #[cfg(target_arch = "x86_64")]
            Kind::Tsc { tsc0, mult } => ticks_to_ns(rdtsc().saturating_sub(tsc0), mult),
            #[cfg(not(target_arch = "x86_64"))]
            Kind::Tsc { .. } => 0,
            Kind::Monotonic { mono0 } => monotonic_ns().saturating_sub(mono0),
        }
    }

    /// The counter this clock reads.
    pub fn source(&self) -> ClockSource {
        match self.kind {
            Kind::Tsc { .. } => ClockSource::Tsc,
            Kind::Monotonic { .. } => ClockSource::Monotonic,
        }
    }

    /// Why [`ClockChoice::Auto`] did not take the TSC (`None` when it did, or when another
    /// choice was made explicitly).
    pub fn fallback_reason(&self) -> Option<&'static str> {
        self.fallback_reason
    }

    /// The TSC frequency found by calibration, in Hz (`None` for `CLOCK_MONOTONIC`).
    pub fn tsc_hz(&self) -> Option<f64> {
        match self.kind {
            Kind::Tsc { mult, .. } => Some(1e9 * (1u64 << 32) as f64 / mult as f64),
            Kind::Monotonic { .. } => None,
        }
    }

    /// `CLOCK_REALTIME` (nanoseconds since the Unix epoch) at this clock's epoch.
    pub fn wall_at_epoch_ns(&self) -> u64 {
        self.wall_at_epoch_ns
    }

    /// Maps a reading of this clock to `CLOCK_REALTIME` nanoseconds since the Unix epoch, with
    /// the anchor taken when the clock was made (see the type's docs about drift).
    #[inline]
    pub fn to_wall_ns(&self, t_ns: u64) -> u64 {
        self.wall_at_epoch_ns.wrapping_add(t_ns)
    }

    /// Reads `CLOCK_REALTIME` sandwiched between two readings of this clock, a few times, and
    /// returns the realtime-minus-clock offset of the tightest sandwich.
    fn sample_wall_offset(&self) -> u64 {
        let (t, w) = self.sample_wall();
        w.wrapping_sub(t)
    }

    /// A (clock time, wall time) pair read as close together as this machine allows.
    fn sample_wall(&self) -> (u64, u64) {
        let mut best = (u64::MAX, 0, 0);
        for _ in 0..5 {
            let a = self.now_ns();
            let w = realtime_ns();
            let b = self.now_ns();
            let width = b.saturating_sub(a);
            if width < best.0 {
                best = (width, a + width / 2, w);
            }
        }
        (best.1, best.2)
    }
}

/// Maps clock readings to wall-clock time with a drift-corrected anchor.
///
/// [`Clock::to_wall_ns`] uses one offset fixed at startup; a TSC calibrated for 20 ms can be off
/// by a few parts per million, which adds up to microseconds per second. A `WallMapper` is owned
/// by the thread that compares times with a venue's (for wire-to-strategy, the strategy thread):
/// call [`refresh`](WallMapper::refresh) now and then off the hot path (every 100 ms to a few
/// seconds; one refresh costs about a dozen clock reads, never allocates) and it re-anchors and
/// re-estimates the clock's rate against `CLOCK_REALTIME` over the whole time since it was made.
/// A wall-clock step (an NTP jump) is detected as an implausible rate and restarts the estimate.
#[derive(Clone, Copy, Debug)]
pub struct WallMapper {
    /// The clock whose readings are mapped.
    clock: Clock,
    /// The first (clock, wall) sample of the current rate estimate.
    base: (u64, u64),
    /// The latest (clock, wall) sample: mapping is linear from here.
    anchor: (u64, u64),
    /// Wall nanoseconds per clock nanosecond, as measured between `base` and `anchor`
    /// (1.0 until they are at least [`WallMapper::MIN_BASELINE_NS`] apart).
    rate: f64,
}

impl WallMapper {
    /// Shortest baseline over which the rate is estimated.
    pub const MIN_BASELINE_NS: u64 = 100_000_000;

    /// A mapper anchored now.
    pub fn new(clock: Clock) -> WallMapper {
        let s = clock.sample_wall();
        WallMapper {
            clock,
            base: s,
            anchor: s,
            rate: 1.0,
        }
    }

    /// Takes a fresh (clock, wall) sample and re-estimates the rate.
    pub fn refresh(&mut self) {
        let s = self.clock.sample_wall();
        let dt = s.0.saturating_sub(self.base.0);
        if dt >= Self::MIN_BASELINE_NS {
            let dw = s.1 as i128 - self.base.1 as i128;
            let rate = dw as f64 / dt as f64;
            if (rate - 1.0).abs() > 1e-3 {
                // The wall clock was stepped (or the clock is broken): start over from here.
                self.base = s;
                self.rate = 1.0;
            } else {
                self.rate = rate;
            }
        }
        self.anchor = s;
    }

    /// The wall-clock time (`CLOCK_REALTIME` ns since the Unix epoch) of clock reading `t_ns`.
    #[inline]
    pub fn to_wall_ns(&self, t_ns: u64) -> u64 {
        let d = t_ns as i64 - self.anchor.0 as i64;
        let scaled = (d as f64 * self.rate) as i64;
        (self.anchor.1 as i64).wrapping_add(scaled) as u64
    }

    /// The clock this mapper maps.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

/// Converts a tick count to nanoseconds with a 32.32 fixed-point multiplier.
#[inline]
fn ticks_to_ns(ticks: u64, mult: u64) -> u64 {
    ((u128::from(ticks) * u128::from(mult)) >> 32) as u64
}

/// Whether the TSC may be used: x86_64, invariant (`constant_tsc` + `nonstop_tsc` in
/// /proc/cpuinfo) and, when `check_kernel`, the kernel's own clock source.
fn tsc_usable(check_kernel: bool) -> Result<(), &'static str> {
    if !cfg!(target_arch = "x86_64") {
        return Err("the TSC clock is only implemented on x86_64");
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")
        .map_err(|_| "cannot read /proc/cpuinfo to check for an invariant TSC")?;
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .ok_or("/proc/cpuinfo has no flags line")?;
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    if !has("constant_tsc") {
        return Err("the CPU does not report constant_tsc");
    }
    if !has("nonstop_tsc") {
        return Err("the CPU does not report nonstop_tsc");
    }
    if check_kernel {
        const SRC: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
        if let Ok(s) = std::fs::read_to_string(SRC) {
            if s.trim() != "tsc" {
                return Err("the kernel does not use the TSC as its clock source");
            }
        }
    }
    Ok(())
}

/// The time-stamp counter.
#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` reads a counter and has no memory effects; every x86_64 CPU has it
    // (it is part of the x86_64 baseline), so calling it is always sound.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// A (TSC, CLOCK_MONOTONIC) pair read as close together as possible: the TSC at the midpoint of
/// the tightest of a few `rdtsc`/`clock_gettime`/`rdtsc` sandwiches.
#[cfg(target_arch = "x86_64")]
fn tsc_and_monotonic() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..7 {
        let a = rdtsc();
        let m = monotonic_ns();
        let b = rdtsc();
        let width = b.wrapping_sub(a);
        if width < best.0 {
            best = (width, a.wrapping_add(width / 2), m);
        }
    }
    (best.1, best.2)
}

/// Reads a POSIX clock in nanoseconds.
#[inline]
fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec; `clock_gettime` only writes to it. The clock ids
    // used here (CLOCK_MONOTONIC, CLOCK_REALTIME) always exist on Linux, so it cannot fail; a
    // failure would leave `ts` zero, which is still a valid (if useless) reading.
    unsafe {
        libc::clock_gettime(id, &mut ts);
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `CLOCK_MONOTONIC` in nanoseconds.
#[inline]
pub(crate) fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` in nanoseconds since the Unix epoch (what `SystemTime::now()` reads).
#[inline]
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Reads `CLOCK_MONOTONIC` directly (not through a [`Clock`]): exposed for benchmarks that
/// compare the two counters' read cost.
#[inline]
pub fn read_monotonic_ns() -> u64 {
    monotonic_ns()
}

/// Reads the raw TSC (ticks, not nanoseconds), or `None` off x86_64: exposed for benchmarks.
#[inline]
pub fn read_tsc() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(rdtsc())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_conversion_scales_ticks() {
        // 3 GHz: 1/3 ns per tick.
        let mult = ((1u128 << 32) / 3) as u64;
        assert_eq!(ticks_to_ns(3_000_000_000, mult), 999_999_999);
        assert_eq!(ticks_to_ns(0, mult), 0);
        // No overflow for a year of ticks at 5 GHz with a 1 ns/tick multiplier.
        let year = 5_000_000_000u64 * 86_400 * 365;
        assert_eq!(ticks_to_ns(year, 1 << 32), year);
    }

    #[test]
    fn monotonic_choice_reads_monotonic() {
        let c = Clock::new(ClockChoice::Monotonic).unwrap();
        assert_eq!(c.source(), ClockSource::Monotonic);
        assert!(c.tsc_hz().is_none());
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a);
    }
}
