//! [`Driver`]: one [`Session`] on an engine loop of its own, and the settings, rings and counters
//! every session has in an engine loop.
//!
//! The work of a turn is done by the [`EventLoop`] (one `mio::Poll` for all its sessions) and
//! the per-session [`SessionRunner`](super::runner::SessionRunner) (see their docs: draining
//! readiness, timers, control commands, order requests, the SessionEvent / MarketData /
//! OrderEvent rings, consumed marks, latency stages, connection reuse on reconnect). A
//! [`Driver`] is that loop with exactly one session: for tools and tests that run one session
//! on a thread of their own ([`Driver::spawn`]), or turn it by hand ([`Driver::turn`]). Many
//! sessions on one thread: [`crate::handoff::Engine::builder`].
//!
//! A rejected TLS certificate fails the session for good ([`DisconnectCause::Certificate`]) and
//! [`Driver::run`] returns the details.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use spinwire_ringbuf::Consumer;

use crate::connection::{ConnError, ConnectionConfig, EndpointError};
use crate::event_loop::doorbell::{ControlSender, OrderSender};
use crate::event_loop::{EventLoop, LoopConfig};
use crate::latency::{Clock, ClockChoice, ClockError, Recorder};
use crate::md::MdRecord;
use crate::orders::{OrderEvent, OrderStats};
use crate::reactor::PollMode;

#[cfg(doc)]
use super::DisconnectCause;
use super::{Session, SessionConfig, SessionError, SessionEvent};

/// Driver settings.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// `ws://` or `wss://` URL of the venue.
    pub url: String,
    /// PEM file with the CA of the server's certificate (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// How the loop polls: [`PollMode::BusySpin`] on a dedicated core, `Blocking` elsewhere
    /// (the wait is cut short at the session's next timer).
    pub mode: PollMode,
    /// Connection buffers.
    pub connection: ConnectionConfig,
    /// SessionEvent ring capacity.
    pub event_ring: usize,
    /// MarketData ring capacity.
    pub md_ring: usize,
    /// OrderRequest ring capacity.
    pub order_ring: usize,
    /// Control ring capacity (strategy → engine commands, [`crate::event_loop::control`]).
    pub control_ring: usize,
    /// OrderEvent ring capacity.
    pub order_event_ring: usize,
    /// Order events the overflow queue holds without allocating (it grows past this rather
    /// than drop one).
    pub order_overflow: usize,
    /// Most order requests popped per loop turn.
    pub order_batch: usize,
    /// The clock the session and the latency stages run on ([`ClockChoice::Auto`]: the TSC
    /// where the kernel trusts it, calibrated for 20 ms when the driver is built).
    pub clock: ClockChoice,
    /// Stamp every batch of market-data records with its push time on a side ring, so the
    /// strategy can measure ring pushed → popped ([`PushTimes`] in [`DriverEnds::push_times`]).
    /// One more ring push per message.
    pub push_stamps: bool,
    /// Capacity of a second SessionEvent ring for a logger thread
    /// ([`crate::logger::EventLogger`]); 0: none. Every event goes to both rings; a full log
    /// ring drops (and counts) the event for the log only.
    pub log_ring: usize,
}

/// When a batch of market-data records (one message's) was pushed: records
/// `first..end` of the MarketData ring's stream (counted from 0 over the driver's life) went in
/// at `pushed_ns` on the driver's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushStamp {
    /// Index of the batch's first record.
    pub first: u64,
    /// One past the index of its last record.
    pub end: u64,
    /// When it was pushed: ns on the driver's [`Clock`], read right before the push.
    pub pushed_ns: u64,
}

/// The strategy's side of the push stamps: tells, for each record popped from the MarketData
/// ring, when the engine pushed it (the `RingToStrategy` stage). Owned by the strategy thread.
#[derive(Debug)]
pub struct PushTimes {
    stamps: Consumer<PushStamp>,
    /// Records popped so far.
    popped: u64,
    current: Option<PushStamp>,
    clock: Clock,
}

impl PushTimes {
    /// The strategy's side of a stamp ring, on `clock`.
    pub(crate) fn new(stamps: Consumer<PushStamp>, clock: Clock) -> PushTimes {
        PushTimes {
            stamps,
            popped: 0,
            current: None,
            clock,
        }
    }

    /// Call once for every record popped from the MarketData ring, in order: returns when it
    /// was pushed and now, both ns on the driver's clock (`None` when its stamp is missing:
    /// the stamp ring was full). Never waits: the engine pushes a batch's stamp before its
    /// records, so the stamp of a popped record is already there.
    #[inline]
    pub fn popped(&mut self) -> Option<(u64, u64)> {
        let i = self.popped;
        self.popped += 1;
        // Take every stamp that starts at or before this record: the newest of them covers it
        // (a stamp for a batch the ring took only in part, or not at all, is overtaken by the
        // next batch's, which starts where the ring really stopped).
        while let Some(&next) = self.stamps.peek() {
            if next.first > i {
                break;
            }
            self.current = self.stamps.pop();
        }
        match self.current {
            Some(s) if s.first <= i && i < s.end => Some((s.pushed_ns, self.clock.now_ns())),
            _ => None,
        }
    }

    /// The driver's clock (`Copy`; readings are comparable with the stamps).
    pub fn clock(&self) -> Clock {
        self.clock
    }
}

impl DriverConfig {
    /// Defaults for `url`: system roots, blocking polls of at most 1 ms, default buffers,
    /// rings of 1024 events and 65536 records, 1024 order requests, 64 control commands and 4096
    /// order events, an
    /// overflow queue of 4096 order events, 64 requests per turn.
    pub fn new(url: impl Into<String>) -> DriverConfig {
        DriverConfig {
            url: url.into(),
            ca_file: None,
            mode: PollMode::Blocking(Some(Duration::from_millis(1))),
            connection: ConnectionConfig::default(),
            event_ring: 1024,
            md_ring: 65536,
            order_ring: 1024,
            control_ring: 64,
            order_event_ring: 4096,
            order_overflow: 4096,
            order_batch: 64,
            clock: ClockChoice::Auto,
            push_stamps: false,
            log_ring: 0,
        }
    }
}

/// Why a driver could not be built or its loop failed. Cold path.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The URL, the CA file or the host name cannot be used (the text says which).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The clock could not be set up.
    #[error("clock: {0}")]
    Clock(#[from] ClockError),
    /// The session configuration is unusable.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The event loop failed (epoll).
    #[error("event loop: {0}")]
    Poll(std::io::Error),
    /// The session failed for good on this connection error (a rejected TLS certificate):
    /// the text says what was rejected and why. Fix the CA file / host name; do not retry.
    #[error("{0}")]
    Connection(ConnError),
}

/// Counters of the driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Records pushed onto the MarketData ring.
    pub records: u64,
    /// Records dropped because the MarketData ring was full.
    pub records_dropped: u64,
    /// Events dropped because the SessionEvent ring was full.
    pub events_dropped: u64,
    /// Events the logger did not get because its ring was full.
    pub log_events_dropped: u64,
    /// Messages the connection would not take (send buffer full).
    pub send_failed: u64,
    /// Loop turns in which this session had something to do (readiness, a due deadline,
    /// requests or commands from its strategy, work left from the turn before).
    pub turns: u64,
    /// Control commands taken from the Control ring.
    pub control_commands: u64,
    /// Times the session went `Live` (0: it never did — see the last connection error).
    pub lives: u64,
    /// Why the session failed for good, with the venue's error code, if it did.
    pub fatal: Option<(super::FatalReason, i64)>,
    /// Order requests popped from the OrderRequest ring.
    pub order_requests: u64,
    /// Order events pushed onto the OrderEvent ring.
    pub order_events: u64,
    /// The session's order counters (with the overflow queue's high-water mark), as of the
    /// last turn.
    pub orders: OrderStats,
}

/// How many order events the driver has seen taken off the OrderEvent ring and marked
/// consumed in the journal (a `Consumed` record, in the page cache: it survives `kill -9`);
/// with no journal, how many it has seen taken. Counted from the first event popped; it
/// trails the strategy's pops by one loop turn: at once while the engine spins, within about a
/// millisecond while it waits in the kernel (the loop watches sessions with order events to
/// take at least that often), at once after
/// [`WakingSender::wake_engine`](crate::event_loop::doorbell::WakingSender::wake_engine).
///
/// A strategy whose effects must happen exactly once across a crash of the process acts on
/// the `n`-th event popped only once this count reaches `n`: an event popped but not yet
/// marked is replayed after a restart (with `resolved: true`), so acting on it first would
/// act twice. (Between the mark and the action a crash still loses the action: the window is
/// the strategy's own, from reading this count to its effect.)
#[derive(Debug, Clone, Default)]
pub struct OrderEventsMarked(pub(crate) Arc<AtomicU64>);

impl OrderEventsMarked {
    /// The count now.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The strategy's ends of a driver's rings.
#[derive(Debug)]
pub struct DriverEnds {
    /// Session events.
    pub events: Consumer<SessionEvent>,
    /// Market-data records.
    pub md: Consumer<MdRecord>,
    /// Order requests (strategy → engine); a push wakes a parked engine.
    pub orders: OrderSender,
    /// Control commands (strategy → engine); a push wakes a parked engine.
    pub control: ControlSender,
    /// Order events (engine → strategy; never dropped).
    pub order_events: Consumer<OrderEvent>,
    /// How many order events (counted from the first popped) the driver has seen taken off
    /// the OrderEvent ring and marked consumed in the journal (see [`OrderEventsMarked`]).
    pub order_events_marked: OrderEventsMarked,
    /// Push times of the market-data records, when [`DriverConfig::push_stamps`] is set.
    pub push_times: Option<PushTimes>,
    /// Session events for a logger thread, when [`DriverConfig::log_ring`] is not 0.
    pub log: Option<Consumer<SessionEvent>>,
}

/// The consumer side of a spawned driver.
#[derive(Debug)]
pub struct DriverHandle {
    /// Session events.
    pub events: Consumer<SessionEvent>,
    /// Market-data records.
    pub md: Consumer<MdRecord>,
    /// Order requests (strategy → engine).
    pub orders: OrderSender,
    /// Control commands (strategy → engine).
    pub control: ControlSender,
    /// Order events (engine → strategy; never dropped).
    pub order_events: Consumer<OrderEvent>,
    /// Order events marked consumed in the journal (see [`OrderEventsMarked`]).
    pub order_events_marked: OrderEventsMarked,
    /// Raise to stop: the session logs out, the thread ends (seen at the driver's next turn;
    /// [`DriverHandle::request_stop`] also wakes it).
    pub stop: Arc<AtomicBool>,
    /// The driver thread; yields the final counters.
    pub thread: JoinHandle<Result<(DriverStats, super::SessionStats), DriverError>>,
}

impl DriverHandle {
    /// Asks the driver to stop (the session logs out, the thread ends) and wakes it if it is
    /// waiting in the kernel; raising [`DriverHandle::stop`] alone is seen only at the
    /// driver's next wake-up. Join [`DriverHandle::thread`] for the final counters.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.control.wake_engine();
    }
}

/// One session on an engine loop of its own. See the [module docs](self).
pub struct Driver {
    inner: EventLoop,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("loop", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Builds the driver: parses the URL, loads TLS roots, resolves the host (all before the
    /// loop), and creates the rings. The loop polls as [`DriverConfig::mode`] says, on
    /// [`DriverConfig::clock`].
    ///
    /// # Errors
    /// [`DriverError`].
    pub fn new(
        config: DriverConfig,
        session: SessionConfig,
    ) -> Result<(Driver, DriverEnds), DriverError> {
        let mut inner = EventLoop::new(LoopConfig {
            mode: config.mode,
            clock: config.clock,
            max_sessions: 1,
            instance: None,
        })?;
        let (_, ends) = inner.add_session(config, session)?;
        Ok((Driver { inner }, ends))
    }

    /// Builds a driver, subscribes to `channels` and runs it on a new thread until the stop
    /// flag is raised (then logs out) or the session fails.
    ///
    /// # Errors
    /// [`DriverError`] from [`Driver::new`] or a bad channel.
    pub fn spawn(
        config: DriverConfig,
        session: SessionConfig,
        channels: &[String],
    ) -> Result<DriverHandle, DriverError> {
        let (mut driver, ends) = Driver::new(config, session)?;
        let now = driver.now();
        for c in channels {
            driver.session_mut().subscribe(now, c)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("spinwire-session".into())
            .spawn(move || {
                driver.run(&flag)?;
                Ok((driver.stats(), driver.inner.session_mut(0).stats()))
            })
            .map_err(DriverError::Poll)?;
        Ok(DriverHandle {
            events: ends.events,
            md: ends.md,
            orders: ends.orders,
            control: ends.control,
            order_events: ends.order_events,
            order_events_marked: ends.order_events_marked,
            stop,
            thread,
        })
    }

    /// Records the engine-side latency stages into `recorder` from now on:
    /// [`Stage::SocketToFrame`](crate::latency::Stage::SocketToFrame) (readiness seen → the
    /// text frame decoded, TLS and framing included), `FrameToRecord` (frame → market-data
    /// records decoded), `RecordToRing` (records → pushed on the MarketData ring),
    /// `OrderToWire` (order request popped → its bytes written), `OrderRoundTrip` (order,
    /// cancel or edit written → the venue's answer decoded) and `ReconnectDowntime`
    /// (connection lost → `Live` again). It rotates once per turn; when the loop stops the
    /// last interval is handed to the collector. Costs a clock read per stage boundary and a
    /// few ns per value.
    pub fn set_recorder(&mut self, recorder: Recorder) {
        self.inner.set_recorder(0, recorder);
    }

    /// The clock the driver runs on (share it with strategy threads: it is `Copy`).
    pub fn clock(&self) -> Clock {
        self.inner.clock()
    }

    /// The session (to subscribe before running, or inspect).
    pub fn session_mut(&mut self) -> &mut Session {
        self.inner.session_mut(0)
    }

    /// The counters (with the session's order counters).
    pub fn stats(&self) -> DriverStats {
        self.inner.driver_stats(0)
    }

    /// The loop's own counters (turns, kernel waits, wake-ups).
    pub fn loop_stats(&self) -> crate::event_loop::LoopStats {
        self.inner.stats()
    }

    /// The current clock reading, ns (the clock the session runs on).
    pub fn now(&self) -> u64 {
        self.inner.now()
    }

    /// Runs the loop: connects, then turns until the session is `Failed`, or `Disconnected`
    /// after `stop` was raised (which logs out).
    ///
    /// # Errors
    /// [`DriverError::Poll`] when epoll fails; [`DriverError::Connection`] when the session
    /// failed for good on a connection error (a rejected certificate), with its details.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), DriverError> {
        self.inner.run(stop)?;
        match self.inner.take_fatal_error(0) {
            Some(e) => Err(DriverError::Connection(e)),
            None => Ok(()),
        }
    }

    /// One loop turn.
    ///
    /// # Errors
    /// [`DriverError::Poll`] when epoll fails.
    pub fn turn(&mut self) -> Result<(), DriverError> {
        self.inner.turn()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(first: u64, end: u64, pushed_ns: u64) -> PushStamp {
        PushStamp {
            first,
            end,
            pushed_ns,
        }
    }

    #[test]
    fn push_times_follow_the_newest_stamp_that_covers_each_record() {
        let (mut tx, rx) = spinwire_ringbuf::channel(16);
        let mut times = PushTimes::new(rx, Clock::monotonic_clock());
        // A batch of 5 the full ring took none of, then 3 of a batch of 4 (records 0..3), then
        // a batch of 2 taken whole (3..5); nothing stamped after that.
        tx.push(stamp(0, 5, 100)).unwrap();
        tx.push(stamp(0, 4, 200)).unwrap();
        tx.push(stamp(3, 5, 300)).unwrap();
        let pushed: Vec<Option<u64>> = (0..6).map(|_| times.popped().map(|(p, _)| p)).collect();
        assert_eq!(
            pushed,
            [Some(200), Some(200), Some(200), Some(300), Some(300), None]
        );
    }
}
