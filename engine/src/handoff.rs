//! The strategy-facing API: build an engine, get the ring ends, shut it down cleanly.
//!
//! [`Engine::builder`] collects venue sessions (each a [`DriverConfig`], a [`SessionConfig`]
//! and the channels to subscribe to), the core to pin the engine thread to, ring sizes and the
//! poll mode; [`EngineBuilder::spawn`] prepares every session (URL, TLS roots, address, rings:
//! all before the loop), starts **one** engine thread that drives all of them, and returns an
//! [`Engine`]: per session the strategy's ends of its rings ([`StrategyEnds`]) and an
//! [`EngineControl`] for a clean [`shutdown`](EngineControl::shutdown) (every session logs out
//! and closes, the thread ends, the final counters come back).
//!
//! # Rings and back-pressure
//! - MarketData (engine → strategy, [`MdRecord`]): a full ring never stalls the engine. The
//!   update is dropped and counted ([`DriverStats::records_dropped`]), the strategy gets an
//!   [`EventKind::RecordsDropped`](crate::session::EventKind::RecordsDropped) on its
//!   SessionEvent ring, and the instrument's books are marked stale and resubscribed: the next
//!   book rows the strategy sees for it start with a fresh snapshot
//!   ([`EventKind::Resynced`](crate::session::EventKind::Resynced)).
//! - SessionEvent (engine → strategy): state changes, gaps, drops, alerts; a full ring drops
//!   the event and counts it ([`DriverStats::events_dropped`]).
//! - OrderEvent (engine → strategy): never dropped; when the ring is full the events wait in
//!   the engine's overflow queue (its high-water mark is in [`OrderStats`]).
//! - OrderRequest (strategy → engine): popped on the engine's next loop turn (a bounded batch
//!   per turn); a full ring hands the request back to the strategy's `push`.
//!
//! # Latency
//! [`EngineBuilder::spawn_with_latency`] gives each session's driver a recorder from a
//! [`Collector`] (engine-side stages) and stamps market-data pushes, so the strategy can time
//! ring pushed → popped ([`StrategyEnds::push_times`]) on the same clock
//! ([`StrategyEnds::clock`]).
//!
//! # Threads and cores
//! The engine thread pins itself when [`EngineBuilder::core`] names a core (a core outside the
//! thread's CPU set is a [`HandoffError::Pin`], never a silent fallback). On a machine with
//! fewer free cores than busy threads, spinning threads fight over cores: [`CorePlan::choose`]
//! looks at the CPU set and picks either dedicated cores with [`PollMode::BusySpin`] or no
//! pinning with [`PollMode::SpinThenPark`], and says why ([`CorePlan::reason`]);
//! [`IdleWait`] is the matching wait for strategy threads.
//!
//! However many sessions there are, the engine thread runs one [`EventLoop`]: one `mio::Poll`,
//! one `epoll_wait` per turn, one clock read per turn; in `Blocking` and a parked
//! `SpinThenPark` it waits in the kernel until the earliest deadline of any session, and a
//! strategy's push onto its OrderRequest or Control ring wakes it
//! ([`crate::event_loop::doorbell`]). It never sleeps.
//!
//! # Steering
//! Each strategy also gets a Control ring ([`StrategyEnds::control`]): subscribe and
//! unsubscribe channels at run time, stop and restart its session, ask for a book resync
//! ([`crate::event_loop::control`]); answers come back as
//! [`EventKind::Control`](crate::session::EventKind::Control) session events.
//!
//! # Client order ids
//! Every session of the engine mints from one counter ([`crate::orders::ids::IdMint`]); give
//! engines in different processes that share an account their own
//! [`EngineBuilder::instance`].
//!
//! # Example
//! ```no_run
//! use spinwire_engine::handoff::Engine;
//! use spinwire_engine::session::driver::DriverConfig;
//! use spinwire_engine::session::SessionConfig;
//!
//! let mut engine = Engine::builder()
//!     .session(
//!         "deribit",
//!         DriverConfig::new("wss://test.deribit.com/ws/api/v2"),
//!         SessionConfig::default(),
//!         &["book.BTC-PERPETUAL.100ms".to_string()],
//!     )
//!     .core(None)
//!     .spawn()
//!     .expect("engine starts");
//! let ends = &mut engine.strategies[0];
//! for _ in 0..1000 {
//!     while let Some(record) = ends.md.pop() {
//!         let _ = record.instrument();
//!     }
//!     std::thread::sleep(std::time::Duration::from_millis(1));
//! }
//! let stats = engine.control.shutdown().expect("clean shutdown");
//! println!("{} records", stats.sessions[0].driver.records);
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use spinwire_ringbuf::Consumer;

use crate::event_loop::doorbell::{ControlSender, Doorbell, OrderSender};
use crate::event_loop::{EventLoop, LoopConfig, LoopStats};
use crate::latency::{Clock, Collector, LatencyError};
use crate::md::MdRecord;
use crate::orders::{OrderEvent, OrderStats};
use crate::reactor::PollMode;
use crate::session::driver::{DriverConfig, DriverError, DriverStats, PushTimes};
use crate::session::{SessionConfig, SessionError, SessionEvent, SessionState, SessionStats};
use crate::sys::SysError;

/// Largest ring capacity the builder accepts (per ring).
pub const MAX_RING: usize = 1 << 24;

/// Why an engine could not be built, or its thread failed. Cold path.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// [`EngineBuilder::spawn`] was called without any session: add one with
    /// [`EngineBuilder::session`].
    #[error("no session: add one with Engine::builder().session(..)")]
    NoSessions,
    /// Two sessions have the same name; names identify sessions in the final counters.
    #[error("two sessions are named {0:?}")]
    DuplicateName(String),
    /// A ring size is 0 or above [`MAX_RING`]; pick a size in between.
    #[error("{ring} ring size {size} is out of range 1..={MAX_RING}")]
    RingSize {
        /// Which ring (`market data`, `session event`, `order request`, `order event`).
        ring: &'static str,
        /// The size asked for.
        size: usize,
    },
    /// A session's driver could not be prepared (bad URL, CA file, host, clock).
    #[error("session {name}: {source}")]
    Driver {
        /// The session.
        name: String,
        /// Why (boxed: large, and this is a cold path).
        source: Box<DriverError>,
    },
    /// A channel could not be subscribed (bad name, too many subscriptions).
    #[error("session {name}: channel {channel:?}: {source}")]
    Subscribe {
        /// The session.
        name: String,
        /// The channel.
        channel: String,
        /// Why.
        source: SessionError,
    },
    /// The engine thread could not be pinned to the core asked for, or given the real-time
    /// priority asked for ([`EngineBuilder::sched_fifo`]); the text names the setting and the
    /// reason. Pick one of the cores the process may use (see [`crate::sys::allowed_cores`]),
    /// grant `CAP_SYS_NICE`, or leave the setting out.
    #[error("engine thread: {0}")]
    Pin(SysError),
    /// The engine loop could not be built (epoll, clock).
    #[error("engine loop: {0}")]
    Loop(Box<DriverError>),
    /// Latency recorders could not be made (invalid histogram configuration).
    #[error("latency recorders: {0}")]
    Latency(#[from] LatencyError),
    /// The engine thread could not be started.
    #[error("cannot start the engine thread: {0}")]
    Spawn(std::io::Error),
    /// The engine thread panicked (a bug: please report it).
    #[error("the engine thread panicked")]
    Panicked,
}

/// One venue session to run, as given to [`EngineBuilder::session`].
#[derive(Debug)]
struct SessionSpec {
    /// Name used in [`SessionFinal::name`] and [`StrategyEnds::name`].
    name: String,
    /// Driver settings (URL, CA, buffers, ring sizes, poll mode).
    driver: DriverConfig,
    /// Session settings (credentials, timers, backoff).
    session: SessionConfig,
    /// Channels subscribed before the loop starts.
    channels: Vec<String>,
}

/// Builds an [`Engine`]; see the [module docs](self).
#[derive(Debug, Default)]
pub struct EngineBuilder {
    /// Sessions in the order given.
    sessions: Vec<SessionSpec>,
    /// Core the engine thread pins itself to.
    core: Option<usize>,
    /// Overrides every session's [`DriverConfig::mode`] when set.
    poll_mode: Option<PollMode>,
    /// Overrides every session's [`DriverConfig::md_ring`] when set.
    md_ring: Option<usize>,
    /// Overrides every session's [`DriverConfig::event_ring`] when set.
    event_ring: Option<usize>,
    /// Overrides every session's [`DriverConfig::order_ring`] when set.
    order_ring: Option<usize>,
    /// Overrides every session's [`DriverConfig::order_event_ring`] when set.
    order_event_ring: Option<usize>,
    /// The instance number in every client order id.
    instance: Option<u8>,
    /// SCHED_FIFO priority of the engine thread.
    sched_fifo: Option<i32>,
}

impl EngineBuilder {
    /// Adds a venue session; its rings go to one strategy ([`Engine::strategies`], same order).
    pub fn session(
        mut self,
        name: impl Into<String>,
        driver: DriverConfig,
        session: SessionConfig,
        channels: &[String],
    ) -> EngineBuilder {
        self.sessions.push(SessionSpec {
            name: name.into(),
            driver,
            session,
            channels: channels.to_vec(),
        });
        self
    }

    /// Pins the engine thread to this core (`None`: not pinned). Default: not pinned.
    pub fn core(mut self, core: Option<usize>) -> EngineBuilder {
        self.core = core;
        self
    }

    /// The engine's instance number, carried in the top byte of every client order id
    /// ([`crate::orders::ids`]): engines in different processes that trade the same account
    /// must each have their own. Default: none (ids from the clock; unique within the engine
    /// and across its restarts).
    pub fn instance(mut self, instance: u8) -> EngineBuilder {
        self.instance = Some(instance);
        self
    }

    /// Runs the engine thread under `SCHED_FIFO` at `priority` (1..=99): ordinary threads can
    /// no longer preempt it. Needs `CAP_SYS_NICE` (or root); refused with a
    /// [`HandoffError::Pin`] naming the setting otherwise. Only for a thread on a core of its
    /// own: a spinning FIFO thread starves everything else on its core.
    pub fn sched_fifo(mut self, priority: i32) -> EngineBuilder {
        self.sched_fifo = Some(priority);
        self
    }

    /// How the engine thread polls (overrides every session's [`DriverConfig::mode`]).
    pub fn poll_mode(mut self, mode: PollMode) -> EngineBuilder {
        self.poll_mode = Some(mode);
        self
    }

    /// MarketData ring capacity of every session (rounded up to a power of two).
    pub fn md_ring(mut self, capacity: usize) -> EngineBuilder {
        self.md_ring = Some(capacity);
        self
    }

    /// SessionEvent ring capacity of every session (rounded up to a power of two).
    pub fn event_ring(mut self, capacity: usize) -> EngineBuilder {
        self.event_ring = Some(capacity);
        self
    }

    /// OrderRequest ring capacity of every session (rounded up to a power of two).
    pub fn order_ring(mut self, capacity: usize) -> EngineBuilder {
        self.order_ring = Some(capacity);
        self
    }

    /// OrderEvent ring capacity of every session (rounded up to a power of two). Order events
    /// are never dropped: past this they wait in the engine's overflow queue.
    pub fn order_event_ring(mut self, capacity: usize) -> EngineBuilder {
        self.order_event_ring = Some(capacity);
        self
    }

    /// Prepares every session (URL, TLS roots, address, rings, subscriptions), starts the
    /// engine thread, pins it if a core was given, and returns the ring ends and the control
    /// handle. Nothing is connected before this returns; the first connect happens on the
    /// engine thread.
    ///
    /// # Errors
    /// [`HandoffError`]: no session, a duplicate name, a ring size out of range, a session that
    /// cannot be prepared, a bad channel, a core that cannot be used, or no thread.
    pub fn spawn(self) -> Result<Engine, HandoffError> {
        self.spawn_inner(None)
    }

    /// Like [`spawn`](EngineBuilder::spawn), and records latency: each session's driver gets a
    /// [`Recorder`](crate::latency::Recorder) made by `collector` (on the driver's clock) for
    /// the engine-side stages (socket → frame → record → ring, order → wire, order round trip,
    /// reconnect downtime), and stamps its market-data pushes so the strategy can time ring
    /// pushed → popped with [`StrategyEnds::push_times`]. Poll `collector` from a reporting
    /// thread; make the strategy's own recorder from it too, on [`StrategyEnds::clock`].
    ///
    /// # Errors
    /// As for [`spawn`](EngineBuilder::spawn), and [`HandoffError::Latency`].
    pub fn spawn_with_latency(self, collector: &mut Collector) -> Result<Engine, HandoffError> {
        self.spawn_inner(Some(collector))
    }

    fn spawn_inner(self, mut collector: Option<&mut Collector>) -> Result<Engine, HandoffError> {
        if self.sessions.is_empty() {
            return Err(HandoffError::NoSessions);
        }
        for (i, s) in self.sessions.iter().enumerate() {
            if self.sessions[..i].iter().any(|o| o.name == s.name) {
                return Err(HandoffError::DuplicateName(s.name.clone()));
            }
        }
        let first = &self.sessions[0].driver;
        let mode = self.poll_mode.unwrap_or(first.mode);
        let mut engine = EventLoop::new(LoopConfig {
            mode,
            clock: first.clock,
            max_sessions: self.sessions.len(),
            instance: self.instance,
        })
        .map_err(|e| HandoffError::Loop(Box::new(e)))?;
        let mut strategies = Vec::with_capacity(self.sessions.len());
        let mut names = Vec::with_capacity(self.sessions.len());
        for spec in self.sessions {
            let SessionSpec {
                name,
                mut driver,
                session,
                channels,
            } = spec;
            if let Some(n) = self.md_ring {
                driver.md_ring = n;
            }
            if let Some(n) = self.event_ring {
                driver.event_ring = n;
            }
            if let Some(n) = self.order_ring {
                driver.order_ring = n;
            }
            if let Some(n) = self.order_event_ring {
                driver.order_event_ring = n;
            }
            check_ring("market data", driver.md_ring)?;
            check_ring("session event", driver.event_ring)?;
            check_ring("order request", driver.order_ring)?;
            check_ring("control", driver.control_ring)?;
            check_ring("order event", driver.order_event_ring)?;
            if collector.is_some() {
                driver.push_stamps = true;
            }
            let (index, ends) =
                engine
                    .add_session(driver, session)
                    .map_err(|source| HandoffError::Driver {
                        name: name.clone(),
                        source: Box::new(source),
                    })?;
            if let Some(c) = collector.as_deref_mut() {
                let recorder = c.recorder(engine.now())?;
                engine.set_recorder(index, recorder);
            }
            let now = engine.now();
            for c in &channels {
                engine
                    .session_mut(index)
                    .subscribe(now, c)
                    .map_err(|source| HandoffError::Subscribe {
                        name: name.clone(),
                        channel: c.clone(),
                        source,
                    })?;
            }
            strategies.push(StrategyEnds {
                name: name.clone(),
                index,
                md: ends.md,
                session_events: ends.events,
                order_events: ends.order_events,
                orders: ends.orders,
                control: ends.control,
                push_times: ends.push_times,
                log: ends.log,
                order_events_marked: ends.order_events_marked,
                clock: engine.clock(),
            });
            names.push(name);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let bell = engine.doorbell();
        let core = self.core;
        let fifo = self.sched_fifo;
        let (pinned_tx, pinned_rx) = std::sync::mpsc::sync_channel::<Result<(), SysError>>(1);
        let tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let tid_out = tid.clone();
        let thread = std::thread::Builder::new()
            .name("spinwire-engine".into())
            .spawn(move || {
                // SAFETY: gettid takes no arguments and cannot fail.
                tid_out.store(unsafe { libc::gettid() }, Ordering::Release);
                let placed = core
                    .map_or(Ok(()), crate::sys::pin_current_thread)
                    .and_then(|()| fifo.map_or(Ok(()), crate::sys::set_sched_fifo));
                let failed = placed.is_err();
                let _ = pinned_tx.send(placed);
                if failed {
                    return Ok(EngineStats {
                        sessions: Vec::new(),
                        engine: engine.stats(),
                    });
                }
                engine
                    .run(&flag)
                    .map_err(|e| ("engine".to_string(), Box::new(e)))?;
                for (i, name) in names.iter().enumerate() {
                    if let Some(e) = engine.take_fatal_error(i) {
                        return Err((name.clone(), Box::new(DriverError::Connection(e))));
                    }
                }
                let sessions = names
                    .into_iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let driver = engine.driver_stats(i);
                        let last_error = engine.last_error(i);
                        let s = engine.session_mut(i);
                        SessionFinal {
                            name,
                            last_error,
                            driver,
                            session: s.stats(),
                            state: s.state(),
                            orders: driver.orders,
                        }
                    })
                    .collect();
                let stats = EngineStats {
                    sessions,
                    engine: engine.stats(),
                };
                // Closes the sessions' order journals (dropping one flushes it) before
                // `shutdown` can return.
                drop(engine);
                Ok(stats)
            })
            .map_err(HandoffError::Spawn)?;
        match pinned_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(HandoffError::Pin(e));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(HandoffError::Panicked);
            }
        }
        Ok(Engine {
            strategies,
            control: EngineControl {
                stop,
                bell,
                tid,
                thread: Some(thread),
                core,
                mode,
            },
        })
    }
}

fn check_ring(ring: &'static str, size: usize) -> Result<(), HandoffError> {
    if size == 0 || size > MAX_RING {
        Err(HandoffError::RingSize { ring, size })
    } else {
        Ok(())
    }
}

/// A running engine: the strategies' ring ends and the control handle.
#[derive(Debug)]
pub struct Engine {
    /// One per session, in the order the sessions were added.
    pub strategies: Vec<StrategyEnds>,
    /// Stops the engine and returns its final counters.
    pub control: EngineControl,
}

impl Engine {
    /// A builder with no sessions, no pinning and each session's own ring sizes and poll mode.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }
}

/// A strategy's ends of one session's rings. Move it to the strategy's thread.
#[derive(Debug)]
pub struct StrategyEnds {
    /// The session's name.
    pub name: String,
    /// The session's index in the engine (0-based, in the order the sessions were added).
    pub index: usize,
    /// Decoded market data (book rows, trades). A full ring drops records; see the
    /// [module docs](self).
    pub md: Consumer<MdRecord>,
    /// Session events (state changes, gaps, drops, alerts).
    pub session_events: Consumer<SessionEvent>,
    /// Order events (acks, rejects, fills, cancels, expiries; never dropped).
    pub order_events: Consumer<OrderEvent>,
    /// Order requests to the engine (taken on its next loop turn; a push wakes a parked
    /// engine). A full ring is the strategy's to handle: `push` hands the request back.
    pub orders: OrderSender,
    /// Control commands to the engine (subscribe, unsubscribe, resync, stop, start; a push
    /// wakes a parked engine); each is answered with an
    /// [`EventKind::Control`](crate::session::EventKind::Control) session event.
    pub control: ControlSender,
    /// When each popped record was pushed (with
    /// [`spawn_with_latency`](EngineBuilder::spawn_with_latency)): call
    /// [`PushTimes::popped`] once per record popped, in order.
    pub push_times: Option<PushTimes>,
    /// A copy of the session events for a logger thread, when
    /// [`DriverConfig::log_ring`] is not 0.
    pub log: Option<Consumer<SessionEvent>>,
    /// How many order events the engine has marked consumed in the journal: a strategy that
    /// reports events outside the process (prints, forwards) should do so only for events this
    /// count covers, so that after a crash the replayed events are exactly the unreported ones.
    pub order_events_marked: crate::session::driver::OrderEventsMarked,
    /// The session driver's clock (`Copy`): the timeline of its latency intervals, push times
    /// and event times.
    pub clock: Clock,
}

/// Controls the engine thread. Dropping it stops the engine too (and waits for it), so no
/// engine thread outlives its handle; call [`shutdown`](EngineControl::shutdown) to get the
/// final counters.
#[derive(Debug)]
pub struct EngineControl {
    /// Raised to stop: every session logs out and closes.
    stop: Arc<AtomicBool>,
    /// Wakes the engine out of a kernel wait to see the stop.
    bell: Arc<Doorbell>,
    /// The engine thread's OS thread id (0 until it has started).
    tid: Arc<std::sync::atomic::AtomicI32>,
    /// The engine thread (`None` once joined): the final counters, or the session whose
    /// failure ended the run and why.
    thread: Option<JoinHandle<EngineOutcome>>,
    /// The core the engine thread pinned itself to.
    core: Option<usize>,
    /// How the engine thread polls.
    mode: PollMode,
}

/// What the engine thread returns: the final counters, or the session whose failure ended the
/// run (or `engine` for the loop itself) and why.
type EngineOutcome = Result<EngineStats, (String, Box<DriverError>)>;

/// One session's final counters.
#[derive(Debug, Clone)]
pub struct SessionFinal {
    /// The session's name.
    pub name: String,
    /// The driver's counters (records pushed and dropped, events dropped, loop turns).
    pub driver: DriverStats,
    /// The session's counters (messages, connections, disconnects, gaps, ...).
    pub session: SessionStats,
    /// The state it ended in (`Disconnected` after a clean logout, `Failed` after a fatal
    /// error).
    pub state: SessionState,
    /// The session's order counters (the same as `driver.orders`).
    pub orders: OrderStats,
    /// The last connection error of the session, if any of its connections failed
    /// (`connection to 127.0.0.1:9 refused`, a TLS or handshake error): what to tell a user
    /// whose session never went `Live` ([`DriverStats::lives`] is 0).
    pub last_error: Option<String>,
}

/// What [`EngineControl::shutdown`] returns.
#[derive(Debug, Clone)]
pub struct EngineStats {
    /// One per session, in the order the sessions were added.
    pub sessions: Vec<SessionFinal>,
    /// The engine loop's own counters (turns, kernel waits, wake-ups, epoll instances).
    pub engine: LoopStats,
}

impl EngineControl {
    /// Asks the engine to stop without waiting: every session logs out and closes, then the
    /// thread ends.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.bell.wake_now();
    }

    /// Whether the engine thread has ended (after a stop, or because every session failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The engine thread's OS thread id (as in `/proc/self/task/TID`, `top -H`, `perf -t`):
    /// known once [`EngineBuilder::spawn`] has returned.
    pub fn tid(&self) -> i32 {
        self.tid.load(Ordering::Acquire)
    }

    /// The core the engine thread is pinned to, if any.
    pub fn core(&self) -> Option<usize> {
        self.core
    }

    /// How the engine thread polls.
    pub fn poll_mode(&self) -> PollMode {
        self.mode
    }

    /// Stops the engine — every session sends its logout, closes its connection and ends, and
    /// its order journal is flushed and closed — waits for the engine thread and returns the
    /// final counters. A session's logout is
    /// bounded by its [`SessionConfig::drain_timeout`].
    ///
    /// # Errors
    /// [`HandoffError::Driver`] when the event loop failed, [`HandoffError::Panicked`].
    pub fn shutdown(mut self) -> Result<EngineStats, HandoffError> {
        self.join()
    }

    fn join(&mut self) -> Result<EngineStats, HandoffError> {
        self.request_stop();
        let Some(thread) = self.thread.take() else {
            return Ok(EngineStats {
                sessions: Vec::new(),
                engine: LoopStats::default(),
            });
        };
        match thread.join() {
            Ok(Ok(stats)) => Ok(stats),
            Ok(Err((name, source))) => Err(HandoffError::Driver { name, source }),
            Err(_) => Err(HandoffError::Panicked),
        }
    }
}

impl Drop for EngineControl {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Where the engine and strategy threads go, chosen from the cores this process may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorePlan {
    /// Core for the engine thread (`None`: not pinned).
    pub engine_core: Option<usize>,
    /// Core for the (first) strategy thread (`None`: not pinned).
    pub strategy_core: Option<usize>,
    /// Poll mode for the engine thread.
    pub mode: PollMode,
    /// Whether every busy thread has a core of its own (then everything spins).
    pub dedicated: bool,
    /// Cores the process may use.
    pub cores: usize,
    /// Busy threads the plan was made for.
    pub busy_threads: usize,
    /// One line saying what was chosen and why.
    pub reason: String,
}

impl CorePlan {
    /// Plans for `busy_threads` threads that want a core each (engine + strategies + anything
    /// else busy in the process, e.g. an in-process simulator). With enough cores — the busy
    /// threads plus one left for the OS where there are more than two — the engine and the
    /// strategy get cores of their own and spin ([`PollMode::BusySpin`]); otherwise nothing is
    /// pinned and the engine spins briefly, then parks in the kernel
    /// ([`PollMode::SpinThenPark`]), and strategies should wait with [`IdleWait::shared`].
    pub fn choose(busy_threads: usize) -> CorePlan {
        let allowed = crate::sys::allowed_cores().unwrap_or_default();
        CorePlan::from_cores(&allowed, busy_threads)
    }

    /// [`choose`](CorePlan::choose) for a given CPU set (for tests and tools).
    pub fn from_cores(allowed: &[usize], busy_threads: usize) -> CorePlan {
        let cores = allowed.len();
        // Leave the first allowed core to the OS and interrupts when there is one to spare.
        let spare = usize::from(cores > 2);
        if busy_threads >= 2 && cores >= busy_threads + spare {
            let engine = allowed[spare];
            let strategy = allowed[spare + 1];
            CorePlan {
                engine_core: Some(engine),
                strategy_core: Some(strategy),
                mode: PollMode::BusySpin,
                dedicated: true,
                cores,
                busy_threads,
                reason: format!(
                    "{cores} cores for {busy_threads} busy threads: engine pinned to core \
                     {engine}, strategy to core {strategy}, both busy-spinning"
                ),
            }
        } else {
            CorePlan {
                engine_core: None,
                strategy_core: None,
                mode: PollMode::SpinThenPark {
                    spins: 2_000,
                    park: Duration::from_millis(1),
                },
                dedicated: false,
                cores,
                busy_threads,
                reason: format!(
                    "{cores} core(s) for {busy_threads} busy threads: not pinned; engine spins \
                     then parks in epoll, strategy spins then yields/sleeps (latency is higher \
                     than on dedicated cores)"
                ),
            }
        }
    }
}

/// How a strategy thread waits when its rings are empty.
#[derive(Debug, Clone)]
pub struct IdleWait {
    /// Empty polls before yielding (`u32::MAX`: spin forever).
    spins: u32,
    /// Empty polls before sleeping (after the spins and yields).
    yields: u32,
    /// Sleep once past the yields.
    sleep: Duration,
    /// Consecutive empty polls so far.
    idle: u32,
}

impl IdleWait {
    /// Spin forever (a strategy on a core of its own).
    pub fn dedicated() -> IdleWait {
        IdleWait {
            spins: u32::MAX,
            yields: 0,
            sleep: Duration::ZERO,
            idle: 0,
        }
    }

    /// Spin a little, then yield, then sleep 50 µs at a time (a shared core).
    pub fn shared() -> IdleWait {
        IdleWait {
            spins: 200,
            yields: 200,
            sleep: Duration::from_micros(50),
            idle: 0,
        }
    }

    /// The wait matching a [`CorePlan`].
    pub fn for_plan(plan: &CorePlan) -> IdleWait {
        if plan.dedicated {
            IdleWait::dedicated()
        } else {
            IdleWait::shared()
        }
    }

    /// Something was popped: the next empty poll starts spinning again.
    #[inline]
    pub fn reset(&mut self) {
        self.idle = 0;
    }

    /// Nothing was popped: spin, yield or sleep, depending on how long it has been idle.
    #[inline]
    pub fn idle(&mut self) {
        self.idle = self.idle.saturating_add(1);
        if self.spins == u32::MAX || self.idle <= self.spins {
            std::hint::spin_loop();
        } else if self.idle <= self.spins.saturating_add(self.yields) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_pins_and_spins_only_with_a_core_per_busy_thread() {
        let p = CorePlan::from_cores(&[0, 1, 2, 3], 3);
        assert!(p.dedicated);
        assert_eq!((p.engine_core, p.strategy_core), (Some(1), Some(2)));
        assert_eq!(p.mode, PollMode::BusySpin);

        let p = CorePlan::from_cores(&[0, 1], 2);
        assert!(p.dedicated);
        assert_eq!((p.engine_core, p.strategy_core), (Some(0), Some(1)));

        let p = CorePlan::from_cores(&[0, 1], 4);
        assert!(!p.dedicated);
        assert_eq!(p.engine_core, None);
        assert!(matches!(p.mode, PollMode::SpinThenPark { .. }));
        assert!(p.reason.contains("not pinned"), "{}", p.reason);

        let p = CorePlan::from_cores(&[], 2);
        assert!(!p.dedicated);
    }

    #[test]
    fn builder_refuses_no_sessions_and_bad_rings() {
        assert!(matches!(
            Engine::builder().spawn(),
            Err(HandoffError::NoSessions)
        ));
        let s = || {
            (
                DriverConfig::new("ws://127.0.0.1:9/ws"),
                SessionConfig::default(),
            )
        };
        let (d, c) = s();
        let r = Engine::builder().session("a", d, c, &[]).md_ring(0).spawn();
        assert!(matches!(r, Err(HandoffError::RingSize { size: 0, .. })));
        let (d1, c1) = s();
        let (d2, c2) = s();
        let r = Engine::builder()
            .session("a", d1, c1, &[])
            .session("a", d2, c2, &[])
            .spawn();
        assert!(matches!(r, Err(HandoffError::DuplicateName(n)) if n == "a"));
    }

    #[test]
    fn builder_names_the_session_with_a_bad_url() {
        let r = Engine::builder()
            .session(
                "venue-x",
                DriverConfig::new("http://nope"),
                SessionConfig::default(),
                &[],
            )
            .spawn();
        match r {
            Err(e @ HandoffError::Driver { .. }) => assert!(e.to_string().contains("venue-x")),
            other => panic!("expected a driver error, got {other:?}"),
        }
    }

    #[test]
    fn idle_wait_spins_then_yields_then_sleeps() {
        let mut w = IdleWait::shared();
        let t = std::time::Instant::now();
        for _ in 0..400 {
            w.idle();
        }
        // Spins and yields only: far below one sleep per call.
        assert!(w.idle == 400);
        w.idle();
        assert!(t.elapsed() >= Duration::from_micros(50));
        w.reset();
        assert_eq!(w.idle, 0);
    }
}
