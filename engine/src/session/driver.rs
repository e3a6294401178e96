//! [`Driver`]: one [`Session`] bound to a [`WsConnection`] and a [`Reactor`] on one thread.
//!
//! The driver resolves the venue's address and loads TLS roots before its loop (never on the
//! loop), then each turn: reads the clock once, executes the session's actions (connect, close,
//! ping), polls the reactor, drives the connection (feeding text to
//! [`Session::handle_text`] and answering on the same turn through the connection's outbox),
//! runs due timers, sends what the session has to send, and moves market-data records and
//! session events onto their SPSC rings. A full ring drops the item and counts it
//! ([`DriverStats`]); the loop never waits for a consumer. Records dropped that way make the
//! instrument's books stale and resynced ([`Session::resync_instrument`]).
//!
//! Orders: each turn the driver pops at most [`DriverConfig::order_batch`] requests from the
//! OrderRequest ring into [`Session::handle_order`] (before sending, so a request popped is
//! written on the same turn when the session is `Live` and within its rate limit), and moves
//! [`OrderEvent`]s onto the OrderEvent ring. Order events are never dropped: when that ring is
//! full they wait in a preallocated overflow queue ([`DriverConfig::order_overflow`]; past it,
//! the queue grows) and go first on the next turns; its high-water mark is
//! [`OrderStats::overflow_high_water`].
//!
//! Consumed marks: the driver keeps the journal number of every order event it pushed
//! ([`Session::poll_order_event_seq`]) until the strategy takes it; each turn, when the ring's
//! length ([`Producer::len`]) shows the strategy took some, it hands the number of the last
//! one taken to [`Session::order_events_consumed`] (one journal record per turn at most), then
//! publishes how many are marked ([`OrderEventsMarked`]). After a `kill -9`, the restarted
//! session replays the events pushed but not marked taken.
//!
//! Latency: with a [`Recorder`] ([`Driver::set_recorder`]) the driver records the engine-side
//! stages (socket → frame → record → ring, order popped → wire, order round trip, reconnect
//! downtime) and rotates the recorder once per turn; with [`DriverConfig::push_stamps`] it
//! stamps each market-data batch with its push time on a side ring, so the strategy can time
//! ring pushed → popped ([`PushTimes`]). A rejected TLS certificate fails the session for good
//! ([`DisconnectCause::Certificate`]) and [`Driver::run`] returns the details.
//!
//! Reconnects: the driver keeps the last connection after it ends (closed and deregistered) and
//! starts the next one in its place with [`WsConnection::reconnect`], so a reconnect reuses the
//! WebSocket buffers instead of allocating and zeroing them again; the TLS configuration (and
//! with it rustls' session-resumption store) is the same for every connection, so a venue that
//! issues TLS 1.3 tickets gets a resumed handshake.
//!
//! [`Driver::spawn`] runs it on a thread of its own and hands back the ring ends; raising the
//! stop flag makes the session log out and the thread end.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::Token;
use spinwire_ringbuf::{channel, Consumer, Producer};

use crate::connection::{
    ConnError, ConnectionConfig, Drive, Endpoint, EndpointError, Event, Phase, WsConnection,
};
use crate::latency::{Clock, ClockChoice, ClockError, Recorder, Stage};
use crate::md::MdRecord;
use crate::orders::{OrderEvent, OrderRequest, OrderStats};
use crate::reactor::{PollMode, Reactor};
use crate::transport::TransportError;
use crate::ws::Message;

use super::{
    Action, DisconnectCause, EventKind, Session, SessionConfig, SessionError, SessionEvent,
    SessionState, TransportPhase,
};

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
    /// rings of 1024 events and 65536 records, 1024 order requests and 4096 order events, an
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
    /// Loop turns.
    pub turns: u64,
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
/// trails the strategy's pops by at most one loop turn.
///
/// A strategy whose effects must happen exactly once across a crash of the process acts on
/// the `n`-th event popped only once this count reaches `n`: an event popped but not yet
/// marked is replayed after a restart (with `resolved: true`), so acting on it first would
/// act twice. (Between the mark and the action a crash still loses the action: the window is
/// the strategy's own, from reading this count to its effect.)
#[derive(Debug, Clone, Default)]
pub struct OrderEventsMarked(Arc<AtomicU64>);

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
    /// Order requests (strategy → engine).
    pub orders: Producer<OrderRequest>,
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
    pub orders: Producer<OrderRequest>,
    /// Order events (engine → strategy; never dropped).
    pub order_events: Consumer<OrderEvent>,
    /// Order events marked consumed in the journal (see [`OrderEventsMarked`]).
    pub order_events_marked: OrderEventsMarked,
    /// Raise to stop: the session logs out, the thread ends.
    pub stop: Arc<AtomicBool>,
    /// The driver thread; yields the final counters.
    pub thread: JoinHandle<Result<(DriverStats, super::SessionStats), DriverError>>,
}

/// One session, its connection and its reactor. See the [module docs](self).
pub struct Driver {
    session: Session,
    reactor: Reactor<WsConnection>,
    /// The current connection's slot.
    token: Option<Token>,
    /// The last connection, closed and deregistered, kept for its buffers: the next connect
    /// reuses them ([`WsConnection::reconnect`]) instead of allocating and zeroing ~5 MiB.
    spare: Option<WsConnection>,
    /// Its transport phase already reported to the session.
    reported_ws: bool,
    /// Where to connect (URL, TLS configuration, resolved address), prepared before the loop.
    endpoint: Endpoint,
    conn_config: ConnectionConfig,
    mode: PollMode,
    clock: Clock,
    /// Transmit buffer lent to `poll_transmit`.
    txbuf: Vec<u8>,
    events_tx: Producer<SessionEvent>,
    md_tx: Producer<MdRecord>,
    orders_rx: Consumer<OrderRequest>,
    order_events_tx: Producer<OrderEvent>,
    /// Order events waiting for room on their ring, with their journal numbers
    /// (preallocated; grows rather than drop).
    overflow: VecDeque<(OrderEvent, u64)>,
    /// Journal numbers of the order events pushed on the ring and not yet known taken, in
    /// push order. Invariant: `len() >= order_events_tx.len()` (the strategy only takes);
    /// at most twice the ring's capacity (those on the ring when the takes were counted, plus
    /// the pushes of the same turn, each into a free slot), for which it is preallocated.
    ring_seqs: VecDeque<u64>,
    /// Order events seen taken off the ring (and marked consumed in the journal) so far.
    taken: u64,
    /// `taken`, published for the strategy.
    marked: OrderEventsMarked,
    order_batch: usize,
    stats: DriverStats,
    /// Drive the connection again without waiting for readiness.
    again: bool,
    /// Per-stage latency recording, when set ([`Driver::set_recorder`]).
    recorder: Option<Recorder>,
    /// Push stamps of market-data batches ([`DriverConfig::push_stamps`]).
    stamps_tx: Option<Producer<PushStamp>>,
    /// Session events for the logger thread ([`DriverConfig::log_ring`]).
    log_tx: Option<Producer<SessionEvent>>,
    /// The connection error that made the session fail for good, returned by `run`.
    fatal_error: Option<ConnError>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("state", &self.session.state())
            .field("addr", &self.endpoint.addr)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Builds the driver: parses the URL, loads TLS roots, resolves the host (all before the
    /// loop), and creates the rings.
    ///
    /// # Errors
    /// [`DriverError`].
    pub fn new(
        config: DriverConfig,
        mut session: SessionConfig,
    ) -> Result<(Driver, DriverEnds), DriverError> {
        let endpoint = Endpoint::prepare(&config.url, config.ca_file.as_deref())?;
        let clock = Clock::new(config.clock)?;
        if session.orders.label_base == 0 {
            // Ids unique across runs: from the wall clock (and above the journal's floor,
            // which the session applies when it opens the journal).
            let unix_ms = (clock.wall_at_epoch_ns() + clock.now_ns()) / 1_000_000;
            session.orders.label_base = crate::orders::journal::mint_base(1, unix_ms);
        }
        let mut session = Session::new(session)?;
        let now = clock.now_ns();
        session.set_unix_time(now, (clock.wall_at_epoch_ns() + now) / 1_000_000);
        let reactor = Reactor::new(1, 64, config.mode).map_err(DriverError::Poll)?;
        let (events_tx, events_rx) = channel(config.event_ring);
        let (md_tx, md_rx) = channel(config.md_ring);
        let (orders_tx, orders_rx) = channel(config.order_ring);
        let (order_events_tx, order_events_rx) = channel(config.order_event_ring);
        let marked = OrderEventsMarked::default();
        // At most one stamp per record in the MarketData ring: the same capacity never fills.
        let (stamps_tx, push_times) = if config.push_stamps {
            let (tx, rx) = channel(config.md_ring);
            let times = PushTimes {
                stamps: rx,
                popped: 0,
                current: None,
                clock,
            };
            (Some(tx), Some(times))
        } else {
            (None, None)
        };
        let (log_tx, log_rx) = if config.log_ring > 0 {
            let (tx, rx) = channel(config.log_ring);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Ok((
            Driver {
                session,
                reactor,
                token: None,
                spare: None,
                reported_ws: false,
                endpoint,
                conn_config: config.connection,
                mode: config.mode,
                clock,
                txbuf: vec![0; 64 * 1024],
                events_tx,
                md_tx,
                orders_rx,
                overflow: VecDeque::with_capacity(config.order_overflow),
                ring_seqs: VecDeque::with_capacity(2 * order_events_tx.capacity()),
                taken: 0,
                marked: marked.clone(),
                order_events_tx,
                order_batch: config.order_batch.max(1),
                stats: DriverStats::default(),
                again: false,
                recorder: None,
                stamps_tx,
                log_tx,
                fatal_error: None,
            },
            DriverEnds {
                events: events_rx,
                md: md_rx,
                orders: orders_tx,
                order_events: order_events_rx,
                order_events_marked: marked,
                push_times,
                log: log_rx,
            },
        ))
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
        let now = driver.clock.now_ns();
        for c in channels {
            driver.session.subscribe(now, c)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("spinwire-session".into())
            .spawn(move || {
                driver.run(&flag)?;
                Ok((driver.stats(), driver.session.stats()))
            })
            .map_err(DriverError::Poll)?;
        Ok(DriverHandle {
            events: ends.events,
            md: ends.md,
            orders: ends.orders,
            order_events: ends.order_events,
            order_events_marked: ends.order_events_marked,
            stop,
            thread,
        })
    }

    /// Records the engine-side latency stages into `recorder` from now on:
    /// [`Stage::SocketToFrame`] (readiness seen → the text frame decoded, TLS and framing
    /// included), [`Stage::FrameToRecord`] (frame → market-data records decoded),
    /// [`Stage::RecordToRing`] (records → pushed on the MarketData ring), [`Stage::OrderToWire`]
    /// (order request popped → its bytes written), [`Stage::OrderRoundTrip`] (order, cancel or
    /// edit written → the venue's answer decoded) and [`Stage::ReconnectDowntime`] (connection
    /// lost → `Live` again). It rotates once per turn; when the driver stops the last interval is
    /// handed to the collector. Costs a clock read per stage boundary and a few ns per value.
    pub fn set_recorder(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    /// The clock the driver runs on (share it with strategy threads: it is `Copy`).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The session (to subscribe before running, or inspect).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The counters (with the session's order counters).
    pub fn stats(&self) -> DriverStats {
        let mut s = self.stats;
        let hw = s.orders.overflow_high_water;
        s.orders = self.session.order_stats();
        s.orders.overflow_high_water = hw;
        s
    }

    /// The current clock reading, ns (the clock the session runs on).
    pub fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Runs the loop: connects, then turns until the session is `Failed`, or `Disconnected`
    /// after `stop` was raised (which logs out).
    ///
    /// # Errors
    /// [`DriverError::Poll`] when epoll fails; [`DriverError::Connection`] when the session
    /// failed for good on a connection error (a rejected certificate), with its details.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), DriverError> {
        let now = self.clock.now_ns();
        if self.session.state() == SessionState::Disconnected {
            self.session.connect(now)?;
        }
        let mut stopping = false;
        loop {
            if !stopping && stop.load(Ordering::Relaxed) {
                stopping = true;
                self.session.logout(self.clock.now_ns());
            }
            self.turn()?;
            match self.session.state() {
                SessionState::Failed => break,
                SessionState::Disconnected if stopping => break,
                _ => {}
            }
        }
        self.turn_actions(self.clock.now_ns());
        self.drain_events();
        if let Some(r) = self.recorder.take() {
            r.finish(self.clock.now_ns());
        }
        match self.fatal_error.take() {
            Some(e) if self.session.state() == SessionState::Failed => {
                Err(DriverError::Connection(e))
            }
            _ => Ok(()),
        }
    }

    /// One loop turn.
    ///
    /// # Errors
    /// [`DriverError::Poll`] when epoll fails.
    pub fn turn(&mut self) -> Result<(), DriverError> {
        self.stats.turns += 1;
        let now = self.clock.now_ns();
        self.turn_actions(now);
        if let PollMode::Blocking(max) = self.mode {
            let until_timer = self
                .session
                .poll_timeout()
                .map(|t| Duration::from_nanos(t.saturating_sub(now)));
            let wait = match (max, until_timer) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.reactor.set_mode(PollMode::Blocking(if self.again {
                Some(Duration::ZERO)
            } else {
                wait
            }));
        }
        let mut ready = self.again;
        self.reactor
            .turn(|_, _, _, _| ready = true)
            .map_err(DriverError::Poll)?;
        let now = self.clock.now_ns();
        if ready {
            self.drive(now);
        }
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        self.turn_actions(now);
        let popped = self.take_orders(now);
        let written = self.transmit(now);
        if let Some(rec) = &mut self.recorder {
            if popped > 0 && written > 0 {
                // Requests popped this turn whose bytes went out this turn (a request held
                // back by the rate limit is not counted here).
                let t = self.clock.now_ns();
                for _ in 0..popped.min(written) {
                    rec.record_between(Stage::OrderToWire, now, t);
                }
            }
            self.session
                .take_order_round_trips(|rtt| rec.record(Stage::OrderRoundTrip, rtt));
            rec.maybe_rotate(now);
        }
        self.drain_events();
        Ok(())
    }

    /// Pops up to `order_batch` order requests into the session; returns how many.
    fn take_orders(&mut self, now: u64) -> usize {
        let mut n = 0;
        while n < self.order_batch {
            let Some(r) = self.orders_rx.pop() else { break };
            self.stats.order_requests += 1;
            self.session.handle_order(now, r);
            n += 1;
        }
        n
    }

    fn turn_actions(&mut self, now: u64) {
        while let Some(a) = self.session.poll_action() {
            match a {
                Action::Connect => self.open(now),
                Action::Close(cause) => self.close(cause),
                Action::Ping => {
                    if let Some(conn) = self.token.and_then(|t| self.reactor.get_mut(t)) {
                        let _ = conn.send_ping(b"sw");
                        if conn.flush().is_err() {
                            self.again = true;
                        }
                    }
                }
            }
        }
    }

    fn open(&mut self, now: u64) {
        self.close(DisconnectCause::Rotation);
        let security = self.endpoint.security();
        let request = self.endpoint.request();
        let (addr, cfg) = (self.endpoint.addr, self.conn_config);
        let conn = match self.spare.take() {
            Some(mut conn) => match conn.reconnect(addr, security, &request) {
                Ok(()) => Ok(conn),
                Err(e) => {
                    self.spare = Some(conn);
                    Err(e)
                }
            },
            None => WsConnection::connect(addr, security, &request, &cfg),
        };
        let mut conn = match conn {
            Ok(conn) => Some(conn),
            Err(e) => return self.lost(now, e),
        };
        let r = self.reactor.insert_with(|token, registry| {
            let c = conn.as_mut().ok_or(ConnError::Closed)?;
            c.register(registry, token).map_err(|e| {
                ConnError::Transport(TransportError::Io {
                    op: "register",
                    peer: addr,
                    source: e,
                })
            })?;
            conn.take().ok_or(ConnError::Closed)
        });
        if let Some(c) = conn {
            // Not inserted: keep its buffers for the next attempt.
            self.spare = Some(c);
        }
        match r {
            Ok(token) => {
                self.token = Some(token);
                self.reported_ws = false;
                self.again = true;
                if self.endpoint.tls.is_some() {
                    self.session
                        .handle_transport_phase(now, TransportPhase::Tls);
                }
            }
            Err(crate::reactor::InsertError::Init(e)) => self.lost(now, e),
            Err(_) => self
                .session
                .handle_disconnected(now, DisconnectCause::Transport),
        }
    }

    fn close(&mut self, cause: DisconnectCause) {
        let Some(token) = self.token.take() else {
            return;
        };
        if let Some(mut conn) = self.reactor.remove(token) {
            if cause == DisconnectCause::Logout {
                let _ = conn.close(1000, "logout");
                let _ = conn.flush();
            }
            conn.abort();
            let _ = conn.deregister(self.reactor.registry());
            self.spare = Some(conn);
        }
        self.again = false;
    }

    fn drive(&mut self, now: u64) {
        let Some(token) = self.token else {
            self.again = false;
            return;
        };
        let Driver {
            session,
            reactor,
            txbuf,
            md_tx,
            stats,
            recorder,
            clock,
            stamps_tx,
            reported_ws,
            ..
        } = self;
        let Some(conn) = reactor.get_mut(token) else {
            return;
        };
        let result = conn.drive(|event, outbox| {
            match event {
                Event::Open => {
                    // TLS and the upgrade can both finish in one drive (a fast server's `101`
                    // in the same read loop): the session still passes through WsHandshake.
                    if !*reported_ws {
                        *reported_ws = true;
                        session.handle_transport_phase(now, TransportPhase::WebSocket);
                    }
                    session.handle_connected(now)
                }
                Event::Message(Message::Text(text)) => {
                    let t_frame = match recorder {
                        Some(r) => {
                            let t = clock.now_ns();
                            r.record_between(Stage::SocketToFrame, now, t);
                            t
                        }
                        None => 0,
                    };
                    let mut lost: Option<(MdRecord, usize)> = None;
                    let mut sink = |records: &[MdRecord]| {
                        let t_decoded = if recorder.is_some() || stamps_tx.is_some() {
                            clock.now_ns()
                        } else {
                            0
                        };
                        if let Some(tx) = stamps_tx.as_mut() {
                            // The stamp goes in before the records (the MarketData push
                            // publishes it too), so the strategy never pops a record ahead of
                            // its stamp. It covers the whole batch; if the ring takes less, the
                            // next stamp starts where the ring stopped.
                            let stamp = PushStamp {
                                first: stats.records,
                                end: stats.records + records.len() as u64,
                                pushed_ns: t_decoded,
                            };
                            // Full only while the MarketData ring is (a stamp per batch): the
                            // strategy then just does not time these records.
                            let _ = tx.push(stamp);
                        }
                        let pushed = md_tx.push_slice(records);
                        if let Some(r) = recorder.as_mut() {
                            let t_pushed = clock.now_ns();
                            r.record_between(Stage::FrameToRecord, t_frame, t_decoded);
                            r.record_between(Stage::RecordToRing, t_decoded, t_pushed);
                        }
                        stats.records += pushed as u64;
                        if pushed < records.len() {
                            stats.records_dropped += (records.len() - pushed) as u64;
                            lost = Some((records[pushed], records.len() - pushed));
                        }
                    };
                    session.handle_text(now, text, &mut sink);
                    if let Some((first, n)) = lost {
                        // A full ring: the consumer's view of the instrument is now stale.
                        let n = n.min(u32::MAX as usize) as u32;
                        session.resync_instrument(now, first.instrument(), n);
                    }
                }
                Event::Message(_) => session.handle_activity(now),
            }
            // Answer on the same turn (test_request first).
            while let Some(n) = session.poll_transmit(now, txbuf) {
                let text = std::str::from_utf8(&txbuf[..n]).unwrap_or("");
                if outbox.send_text(text).is_err() {
                    stats.send_failed += 1;
                }
            }
        });
        if !*reported_ws && conn.phase() == Phase::Upgrading {
            *reported_ws = true;
            session.handle_transport_phase(now, TransportPhase::WebSocket);
        }
        match result {
            Ok(Drive::Again) => self.again = true,
            Ok(Drive::Wait) => self.again = false,
            Ok(Drive::Closed) => {
                let code = conn.close_frame().map_or(1005, |f| f.code);
                self.drop_conn();
                self.session
                    .handle_disconnected(now, DisconnectCause::PeerClosed { code });
            }
            Err(e) => {
                self.drop_conn();
                self.lost(now, e);
            }
        }
    }

    /// The connection failed with `e`: tells the session; keeps `e` when it is fatal.
    fn lost(&mut self, now: u64, e: ConnError) {
        let cause = cause_of(&e);
        if cause == DisconnectCause::Certificate {
            self.fatal_error = Some(e);
        }
        self.session.handle_disconnected(now, cause);
    }

    fn drop_conn(&mut self) {
        if let Some(token) = self.token.take() {
            if let Some(mut conn) = self.reactor.remove(token) {
                let _ = conn.deregister(self.reactor.registry());
                self.spare = Some(conn);
            }
        }
        self.again = false;
    }

    /// Sends what the session has to send; returns how many messages it wrote.
    fn transmit(&mut self, now: u64) -> usize {
        let Some(conn) = self.token.and_then(|t| self.reactor.get_mut(t)) else {
            return 0;
        };
        if conn.phase() != Phase::Open {
            return 0;
        }
        let mut written = 0;
        while let Some(n) = self.session.poll_transmit(now, &mut self.txbuf) {
            let text = std::str::from_utf8(&self.txbuf[..n]).unwrap_or("");
            if conn.send_text(text).is_err() {
                self.stats.send_failed += 1;
            } else {
                written += 1;
            }
        }
        // Sends outside `drive` are only queued: push them now (an error surfaces from the
        // next `drive`, which the next turn runs).
        if conn.wants_write() && conn.flush().is_err() {
            self.again = true;
        }
        written
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.session.poll_event() {
            if let (EventKind::Live { downtime_ns }, Some(r)) = (e.kind, &mut self.recorder) {
                if downtime_ns > 0 {
                    r.record(Stage::ReconnectDowntime, downtime_ns);
                }
            }
            if let Some(log) = &mut self.log_tx {
                if log.push(e).is_err() {
                    self.stats.log_events_dropped += 1;
                }
            }
            if self.events_tx.push(e).is_err() {
                self.stats.events_dropped += 1;
            }
        }
        // Order events the strategy took since the last turn: one consumed mark in the
        // journal for all of them (a restart replays only the events after it).
        let taken = self
            .ring_seqs
            .len()
            .saturating_sub(self.order_events_tx.len());
        if taken > 0 {
            let mut upto = 0;
            for _ in 0..taken {
                upto = self.ring_seqs.pop_front().unwrap_or(upto);
            }
            self.session.order_events_consumed(upto);
            self.taken += taken as u64;
            self.marked.0.store(self.taken, Ordering::Release);
        }
        // Order events: what waits in the overflow queue first, in order; never dropped.
        while let Some(&(e, seq)) = self.overflow.front() {
            if self.order_events_tx.push(e).is_err() {
                break;
            }
            self.overflow.pop_front();
            self.ring_seqs.push_back(seq);
            self.stats.order_events += 1;
        }
        while let Some((e, seq)) = self.session.poll_order_event_seq() {
            if !self.overflow.is_empty() || self.order_events_tx.push(e).is_err() {
                self.overflow.push_back((e, seq));
            } else {
                self.ring_seqs.push_back(seq);
                self.stats.order_events += 1;
            }
        }
        let hw = self.overflow.len() as u64;
        if hw > self.stats.orders.overflow_high_water {
            self.stats.orders.overflow_high_water = hw;
        }
    }
}

/// The session's view of a connection error.
fn cause_of(e: &ConnError) -> DisconnectCause {
    match e {
        ConnError::Transport(TransportError::Certificate { .. }) => DisconnectCause::Certificate,
        ConnError::Transport(_) | ConnError::Config(_) => DisconnectCause::Transport,
        ConnError::Handshake(_) | ConnError::ResponseTooLarge => DisconnectCause::Handshake,
        ConnError::Protocol(_) => DisconnectCause::Protocol,
        ConnError::ClosedWithoutCloseFrame | ConnError::Closed => DisconnectCause::Abnormal,
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
        let mut times = PushTimes {
            stamps: rx,
            popped: 0,
            current: None,
            clock: Clock::monotonic_clock(),
        };
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
