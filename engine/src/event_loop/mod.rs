//! The engine loop: one [`Reactor`] (one `mio::Poll`, one epoll instance) driving every session
//! of an engine thread.
//!
//! An [`EventLoop`] holds a table of sessions ([`SessionRunner`]s) and one reactor whose slots
//! hold their connections (a slot carries the index of the session that owns it, so a session
//! may own several). Each [`turn`](EventLoop::turn):
//!
//! 1. decides how long it may wait: zero in [`PollMode::BusySpin`] and [`PollMode::SpinYield`];
//!    in [`PollMode::Blocking`] and a parked [`PollMode::SpinThenPark`] until the earliest
//!    deadline of any session (capped by the mode's own limit), zero when a session has work
//!    left over. mio rounds a wait up to whole milliseconds, so the loop waits the whole
//!    milliseconds before the deadline and polls with zero timeouts for the rest: deadlines are
//!    kept to the microsecond, and nothing ever calls `sleep`;
//! 2. before a kernel wait, raises the [`Doorbell`]'s park flag and looks at its pending words
//!    once more (see [`doorbell`] for why this cannot miss a push); a strategy that pushes an
//!    order request or a control command while the engine is parked wakes it;
//! 3. polls once (one `epoll_wait` per turn, whatever the number of sessions), marking the
//!    sessions whose connections are ready;
//! 4. reads the clock once, and gives a turn, with that reading, to the sessions that have
//!    something to do — and only to them, so an idle turn costs the same with 1 session or 64:
//!    sessions whose connections were ready, whose strategies pushed (the doorbell's pending
//!    bits), whose deadline is due (checked against the earliest deadline of all sessions),
//!    that have work left from their last turn, or whose strategies have order events to take
//!    (watched every turn for the consumed marks). A busy session does bounded work (at most 8
//!    transport reads per connection, [`DriverConfig::order_batch`] order requests, 16 control
//!    commands), so a session whose socket floods cannot delay the others by more than that.
//!
//! Client order ids come from one [`IdMint`] shared by every session of the loop, optionally
//! prefixed by an instance number ([`LoopConfig::instance`]) so that engines in different
//! processes sharing an account never mint the same id.

pub mod control;
pub mod doorbell;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spinwire_ringbuf::channel;

use crate::connection::{ConnError, Endpoint};
use crate::latency::{Clock, ClockChoice, Recorder};
use crate::orders::ids::{instance_base, IdMint};
use crate::orders::journal::mint_base;
use crate::reactor::{PollMode, Reactor};
use crate::session::driver::{
    DriverConfig, DriverEnds, DriverError, DriverStats, OrderEventsMarked, PushTimes,
};
use crate::session::runner::{ConnSlot, RunnerRings, SessionRunner};
use crate::session::{Session, SessionConfig, SessionState};

use doorbell::{Doorbell, WakingSender};

/// Readiness events taken per `epoll_wait` (the rest wait for the next turn).
const EVENTS_PER_TURN: usize = 256;
/// Reactor slots per session: room for a second connection of the same session.
const SLOTS_PER_SESSION: usize = 2;
/// Bytes lent to a session to encode one outgoing message.
const TX_BUFFER: usize = 64 * 1024;
/// Longest kernel wait while a session has order events for its strategy to take.
const WATCH_WAIT: Duration = Duration::from_millis(1);
/// How often every session's latency recorder gets a chance to rotate, ns (a busy session's
/// rotates in its own turns too).
const ROTATE_CHECK_NS: u64 = 1_000_000;

/// Sets bit `i` of a session bitmask.
#[inline]
fn set_bit(words: &mut [u64], i: usize) {
    words[i / 64] |= 1 << (i % 64);
}

/// Clears bit `i` of a session bitmask.
#[inline]
fn clear_bit(words: &mut [u64], i: usize) {
    words[i / 64] &= !(1 << (i % 64));
}

/// Settings of an [`EventLoop`].
#[derive(Debug, Clone, Copy)]
pub struct LoopConfig {
    /// How the loop polls.
    pub mode: PollMode,
    /// The clock every session runs on ([`ClockChoice::Auto`]: the TSC where the kernel trusts
    /// it, calibrated for 20 ms when the loop is built).
    pub clock: ClockChoice,
    /// Most sessions the loop holds.
    pub max_sessions: usize,
    /// The engine's instance number, carried in the top byte of every client order id
    /// ([`crate::orders::ids`]); give each engine process that shares an account its own.
    /// `None`: ids from the clock alone (unique within an engine and across its restarts).
    pub instance: Option<u8>,
}

impl Default for LoopConfig {
    /// Blocking polls until the next deadline, the automatic clock, up to 64 sessions, no
    /// instance number.
    fn default() -> LoopConfig {
        LoopConfig {
            mode: PollMode::Blocking(None),
            clock: ClockChoice::Auto,
            max_sessions: 64,
            instance: None,
        }
    }
}

/// Counters of the loop itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Turns (each made exactly one `epoll_wait`).
    pub turns: u64,
    /// Turns whose `epoll_wait` had a non-zero timeout (the thread may have slept in the
    /// kernel, until readiness, a deadline or a strategy's wake-up).
    pub kernel_waits: u64,
    /// Kernel waits given up at the last moment because a strategy had just pushed.
    pub parks_cancelled: u64,
    /// Wake-ups received from strategies (waker events).
    pub wakeups: u64,
    /// Readiness events dispatched to connections.
    pub events: u64,
    /// Events for connections that had gone (reused or emptied slots).
    pub stale_events: u64,
    /// epoll instances the loop holds: always 1, whatever the number of sessions.
    pub epoll_instances: u32,
}

/// One engine thread's loop over all its sessions. See the [module docs](self).
pub struct EventLoop {
    reactor: Reactor<ConnSlot>,
    sessions: Vec<SessionRunner>,
    /// `ready[i]`: session `i`'s connection had readiness this turn (cleared as it is taken).
    ready: Vec<bool>,
    /// Sessions to visit on the next turn, one bit each (readiness, work left, a call from
    /// outside the loop, a due deadline); the next turn does not wait while any is set.
    work: Vec<u64>,
    /// Sessions visited every turn without keeping the loop from waiting: their strategies
    /// have order events to take (the consumed mark follows the take) or the overflow queue
    /// holds some.
    watch: Vec<u64>,
    /// The earliest deadline of all sessions (`u64::MAX`: none).
    earliest: u64,
    /// When to give every recorder its next chance to rotate.
    rotate_at: u64,
    /// Whether the last turn gave any session a turn.
    ran: bool,
    clock: Clock,
    mode: PollMode,
    /// Lent to sessions to encode outgoing messages.
    txbuf: Vec<u8>,
    bell: Arc<Doorbell>,
    mint: IdMint,
    instance: Option<u8>,
    max_sessions: usize,
    /// Consecutive turns with nothing to do (for [`PollMode::SpinThenPark`]).
    idle_turns: u32,
    stats: LoopStats,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("sessions", &self.sessions.len())
            .field("mode", &self.mode)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// A loop with no sessions yet: the epoll instance, its waker, the clock, the id mint.
    ///
    /// # Errors
    /// [`DriverError::Clock`], [`DriverError::Poll`].
    pub fn new(config: LoopConfig) -> Result<EventLoop, DriverError> {
        let clock = Clock::new(config.clock)?;
        let max = config.max_sessions.max(1);
        let mut reactor = Reactor::new(max * SLOTS_PER_SESSION, EVENTS_PER_TURN, config.mode)
            .map_err(DriverError::Poll)?;
        let waker = reactor.waker().map_err(DriverError::Poll)?;
        Ok(EventLoop {
            reactor,
            sessions: Vec::with_capacity(max),
            ready: Vec::with_capacity(max),
            work: vec![0; max.div_ceil(64)],
            watch: vec![0; max.div_ceil(64)],
            earliest: u64::MAX,
            rotate_at: 0,
            ran: false,
            clock,
            mode: config.mode,
            txbuf: vec![0; TX_BUFFER],
            bell: Arc::new(Doorbell::new(waker, max)),
            mint: IdMint::new(1),
            instance: config.instance,
            max_sessions: max,
            idle_turns: 0,
            stats: LoopStats {
                epoll_instances: 1,
                ..LoopStats::default()
            },
        })
    }

    /// Adds a session: parses its URL, loads its TLS roots and resolves its host (all before
    /// the loop runs), creates its rings and hands back the strategy's ends. The session's
    /// client order ids come from the loop's mint. [`DriverConfig::mode`] and
    /// [`DriverConfig::clock`] are the loop's, not the session's: they are ignored here.
    ///
    /// # Errors
    /// [`DriverError`]: bad URL, CA file or host, an unusable session configuration, or more
    /// sessions than [`LoopConfig::max_sessions`].
    pub fn add_session(
        &mut self,
        config: DriverConfig,
        mut session: SessionConfig,
    ) -> Result<(usize, DriverEnds), DriverError> {
        if self.sessions.len() >= self.max_sessions {
            return Err(DriverError::Session(crate::session::SessionError::Config(
                "the engine loop holds no more sessions (LoopConfig::max_sessions)",
            )));
        }
        let endpoint = Endpoint::prepare(&config.url, config.ca_file.as_deref())?;
        if session.orders.label_base == 0 {
            // Ids unique across runs: from the wall clock (and above the journal's floor,
            // which the session applies when it opens the journal).
            let unix_ms = (self.clock.wall_at_epoch_ns() + self.clock.now_ns()) / 1_000_000;
            let base = match self.instance {
                Some(i) => instance_base(i, 1, unix_ms),
                None => mint_base(1, unix_ms),
            };
            self.mint.raise_to(base);
        }
        session.orders.mint = Some(self.mint.clone());
        if let Some(j) = &mut session.orders.journal {
            j.instance = self.instance;
        }
        let mut session = Session::new(session)?;
        let now = self.clock.now_ns();
        session.set_unix_time(now, (self.clock.wall_at_epoch_ns() + now) / 1_000_000);
        let (events_tx, events_rx) = channel(config.event_ring);
        let (md_tx, md_rx) = channel(config.md_ring);
        let (orders_tx, orders_rx) = channel(config.order_ring);
        let (control_tx, control_rx) = channel(config.control_ring);
        let (order_events_tx, order_events_rx) = channel(config.order_event_ring);
        let marked = OrderEventsMarked::default();
        // At most one stamp per record in the MarketData ring: the same capacity never fills.
        let (stamps_tx, push_times) = if config.push_stamps {
            let (tx, rx) = channel(config.md_ring);
            (Some(tx), Some(PushTimes::new(rx, self.clock)))
        } else {
            (None, None)
        };
        let (log_tx, log_rx) = if config.log_ring > 0 {
            let (tx, rx) = channel(config.log_ring);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let index = self.sessions.len();
        let rings = RunnerRings {
            events_tx,
            md_tx,
            orders_rx,
            control_rx,
            order_events_tx,
            stamps_tx,
            log_tx,
            marked: marked.clone(),
        };
        self.sessions.push(SessionRunner::new(
            index as u32,
            &config,
            session,
            endpoint,
            rings,
        ));
        self.ready.push(false);
        set_bit(&mut self.work, index);
        Ok((
            index,
            DriverEnds {
                events: events_rx,
                md: md_rx,
                orders: WakingSender::new(orders_tx, self.bell.clone(), index),
                control: WakingSender::new(control_tx, self.bell.clone(), index),
                order_events: order_events_rx,
                order_events_marked: marked,
                push_times,
                log: log_rx,
            },
        ))
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the loop has no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Session `index` (to subscribe before running, or inspect).
    ///
    /// # Panics
    /// When `index` is not a session's (a caller's bug).
    pub fn session_mut(&mut self, index: usize) -> &mut Session {
        let r = &mut self.sessions[index];
        // Whatever the caller does may queue actions or events: the next turn looks.
        r.touched = true;
        set_bit(&mut self.work, index);
        &mut r.session
    }

    /// Records session `index`'s engine-side latency stages into `recorder` from now on (see
    /// [`Driver::set_recorder`](crate::session::driver::Driver::set_recorder)).
    pub fn set_recorder(&mut self, index: usize, recorder: Recorder) {
        self.sessions[index].recorder = Some(recorder);
    }

    /// Session `index`'s counters (with its order counters).
    pub fn driver_stats(&self, index: usize) -> DriverStats {
        self.sessions[index].driver_stats()
    }

    /// The loop's own counters.
    pub fn stats(&self) -> LoopStats {
        let mut s = self.stats;
        s.stale_events = self.reactor.stale_events();
        s
    }

    /// The doorbell strategies ring (for a control handle that must wake a parked loop).
    pub fn doorbell(&self) -> Arc<Doorbell> {
        self.bell.clone()
    }

    /// The connection error that made session `index` fail for good, if any (taken).
    pub fn take_fatal_error(&mut self, index: usize) -> Option<ConnError> {
        let r = &mut self.sessions[index];
        if r.session.state() == SessionState::Failed {
            r.fatal_error.take()
        } else {
            None
        }
    }

    /// Session `index`'s last connection error, as text (refused, TLS, handshake, I/O; or the
    /// fatal one), if any of its connections failed. Cold path: formats.
    pub fn last_error(&self, index: usize) -> Option<String> {
        self.sessions[index].last_error().map(ToString::to_string)
    }

    /// The clock every session runs on (`Copy`: share it with strategy threads).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The current clock reading, ns.
    pub fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    /// How the loop polls.
    pub fn mode(&self) -> PollMode {
        self.mode
    }

    /// Starts every session that is `Disconnected` (asks it to connect).
    ///
    /// # Errors
    /// [`DriverError::Session`] when a session cannot start.
    pub fn start(&mut self) -> Result<(), DriverError> {
        let now = self.clock.now_ns();
        for (i, r) in self.sessions.iter_mut().enumerate() {
            if r.session.state() == SessionState::Disconnected {
                r.session.connect(now)?;
                r.touched = true;
                set_bit(&mut self.work, i);
            }
        }
        Ok(())
    }

    /// Asks every session to log out and close.
    pub fn stop(&mut self) {
        let now = self.clock.now_ns();
        for (i, r) in self.sessions.iter_mut().enumerate() {
            r.session.logout(now);
            r.touched = true;
            set_bit(&mut self.work, i);
        }
    }

    /// Whether every session is done: failed for good, or (when `stopping`) stopped.
    pub fn finished(&self, stopping: bool) -> bool {
        self.sessions.iter().all(|r| r.finished(stopping))
    }

    /// Runs the loop: starts every session, then turns until every session has failed for
    /// good, or `stop` was raised and every session has logged out and closed.
    ///
    /// # Errors
    /// [`DriverError::Poll`] when epoll fails, [`DriverError::Session`] when a session cannot
    /// start.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), DriverError> {
        self.start()?;
        let mut stopping = false;
        loop {
            if !stopping && stop.load(Ordering::Relaxed) {
                stopping = true;
                self.stop();
            }
            self.turn()?;
            // A session's state changes only in its turns.
            if self.ran && self.finished(stopping) {
                break;
            }
        }
        self.finish();
        Ok(())
    }

    /// The loop is over: every session's last actions and events, and its recorder's last
    /// interval.
    pub fn finish(&mut self) {
        let now = self.clock.now_ns();
        for r in &mut self.sessions {
            r.finish(now, &mut self.reactor);
        }
    }

    /// One turn: one `epoll_wait` (see the [module docs](self) for how long it may wait), one
    /// clock read, then every session's turn.
    ///
    /// # Errors
    /// [`DriverError::Poll`] when epoll fails.
    pub fn turn(&mut self) -> Result<(), DriverError> {
        self.stats.turns += 1;
        let mut timeout = self.timeout();
        let parked = timeout != Some(Duration::ZERO);
        if parked {
            self.bell.park();
            if self.bell.any_pending() {
                self.bell.unpark();
                self.stats.parks_cancelled += 1;
                timeout = Some(Duration::ZERO);
            } else {
                self.stats.kernel_waits += 1;
            }
        }
        let before = self.reactor.wakeups();
        let (ready, work) = (&mut self.ready, &mut self.work);
        let events = self
            .reactor
            .poll(timeout, |_, slot, event, _| {
                if event.is_read_closed() || event.is_error() {
                    // The peer's FIN (or an error) may have come with the last data: read to
                    // the end, not just to a short read.
                    slot.conn.note_read_closed();
                }
                let i = slot.session as usize;
                if let Some(r) = ready.get_mut(i) {
                    *r = true;
                    set_bit(work, i);
                }
            })
            .map_err(DriverError::Poll)?;
        if parked {
            self.bell.unpark();
        }
        self.stats.wakeups += self.reactor.wakeups() - before;
        self.stats.events += events as u64;
        let now = self.clock.now_ns();
        for (w, (work, watch)) in self.work.iter_mut().zip(&self.watch).enumerate() {
            *work |= self.bell.take(w) | *watch;
        }
        if now >= self.earliest {
            for (i, r) in self.sessions.iter().enumerate() {
                if r.deadline().is_some_and(|d| d <= now) {
                    set_bit(&mut self.work, i);
                }
            }
        }
        let clock = self.clock;
        let mut ran = false;
        let mut earliest_moved = false;
        for w in 0..self.work.len() {
            let mut bits = std::mem::take(&mut self.work[w]);
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let Some(r) = self.sessions.get_mut(i) else {
                    continue;
                };
                let was = r.deadline().unwrap_or(u64::MAX);
                let ready = std::mem::take(&mut self.ready[i]);
                ran |= r.turn(now, ready, &mut self.reactor, &mut self.txbuf, clock);
                // Bits for the next turn (`work` is this turn's no more: its word was taken).
                if r.wants_turn() {
                    set_bit(&mut self.work, i);
                }
                if r.watching() {
                    set_bit(&mut self.watch, i);
                } else {
                    clear_bit(&mut self.watch, i);
                }
                let next = r.deadline().unwrap_or(u64::MAX);
                if next < self.earliest {
                    self.earliest = next;
                } else if was == self.earliest && next != was {
                    earliest_moved = true;
                }
            }
        }
        if earliest_moved {
            self.earliest = self
                .sessions
                .iter()
                .filter_map(SessionRunner::deadline)
                .min()
                .unwrap_or(u64::MAX);
        }
        if now >= self.rotate_at {
            self.rotate_at = now + ROTATE_CHECK_NS;
            for r in &mut self.sessions {
                r.rotate(now);
            }
        }
        self.ran = ran;
        if ran || events > 0 {
            self.idle_turns = 0;
        } else {
            self.idle_turns = self.idle_turns.saturating_add(1);
            if self.mode == PollMode::SpinYield {
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// How long this turn's `epoll_wait` may wait.
    fn timeout(&self) -> Option<Duration> {
        let cap = match self.mode {
            PollMode::BusySpin | PollMode::SpinYield => return Some(Duration::ZERO),
            PollMode::SpinThenPark { spins, park } => {
                if self.idle_turns < spins {
                    return Some(Duration::ZERO);
                }
                Some(park)
            }
            PollMode::Blocking(max) => max,
        };
        if self.work.iter().any(|&w| w != 0) {
            return Some(Duration::ZERO);
        }
        // Order events the strategy has yet to take are watched at least every millisecond
        // (their consumed marks, the overflow queue): a strategy's pops do not wake the
        // engine (`WakingSender::wake_engine` does, at once).
        let cap = if self.watch.iter().any(|&w| w != 0) {
            Some(cap.map_or(WATCH_WAIT, |c| c.min(WATCH_WAIT)))
        } else {
            cap
        };
        let earliest = self.earliest;
        let until = if earliest == u64::MAX {
            None
        } else {
            // Whole milliseconds only (mio rounds up): the rest is spun with zero timeouts. The
            // clock is read again: the turn's own work may have taken a while.
            let ms = earliest.saturating_sub(self.clock.now_ns()) / 1_000_000;
            Some(Duration::from_millis(ms))
        };
        match (cap, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
