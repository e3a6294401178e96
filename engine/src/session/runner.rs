//! [`SessionRunner`]: one session's side of the engine loop — its connection slot, its rings,
//! its counters — driven by [`EventLoop`](crate::event_loop::EventLoop) once per turn.
//!
//! The loop owns the one [`Reactor`] and the clock; a runner owns a [`Session`] and the
//! token of the connection it has in the reactor, never a poll of its own. Each turn the loop
//! calls [`SessionRunner::turn`] with the turn's clock reading and whether the runner's
//! connection had readiness. A runner with nothing to do (no readiness, no due deadline,
//! nothing on its incoming rings, nothing left from earlier calls) returns after a handful of
//! loads; otherwise it drives its connection (feeding text to [`Session::handle_text`] and
//! answering on the same turn through the connection's outbox), runs due timers, takes control
//! commands and order requests, executes the session's actions (connect, close, ping), sends
//! what the session has to send, and moves records and events onto the strategy's rings. A
//! full MarketData or SessionEvent ring drops the item and counts it ([`DriverStats`]); records
//! dropped that way make the instrument's books stale and resynced
//! ([`Session::resync_instrument`]).
//!
//! Orders: each turn at most [`DriverConfig::order_batch`] requests are popped into
//! [`Session::handle_order`] (before sending, so a request popped is written on the same turn
//! when the session is `Live` and within its rate limit); [`OrderEvent`]s go onto the
//! OrderEvent ring and are never dropped: when it is full they wait in a preallocated overflow
//! queue ([`DriverConfig::order_overflow`]; past it, the queue grows) and go first on the next
//! turns; its high-water mark is [`OrderStats::overflow_high_water`](crate::orders::OrderStats).
//!
//! Consumed marks: the runner keeps the journal number of every order event it pushed
//! ([`Session::poll_order_event_seq`]) until the strategy takes it; when the ring's length
//! ([`Producer::len`]) shows the strategy took some, it hands the number of the last one taken
//! to [`Session::order_events_consumed`] (one journal record per turn at most), then publishes
//! how many are marked ([`OrderEventsMarked`]).
//!
//! Latency: with a [`Recorder`] the runner records the engine-side stages (socket → frame →
//! record → ring, order popped → wire, order round trip, reconnect downtime) and rotates the
//! recorder once per turn; with [`DriverConfig::push_stamps`] it stamps each market-data batch
//! with its push time on a side ring ([`PushTimes`](super::driver::PushTimes)).
//!
//! Reconnects: the runner keeps its last connection after it ends (closed and deregistered) and
//! starts the next one in its place with [`WsConnection::reconnect`], reusing the WebSocket
//! buffers; the TLS configuration (and rustls' resumption store) is the same for every
//! connection, so a venue that issues TLS 1.3 tickets gets a resumed handshake.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use mio::Token;
use spinwire_ringbuf::{Consumer, Producer};

use crate::connection::{ConnError, ConnectionConfig, Drive, Endpoint, Event, Phase, WsConnection};
use crate::event_loop::control::{Control, ControlOutcome, ControlRequest};
use crate::latency::{Clock, Recorder, Stage};
use crate::md::MdRecord;
use crate::orders::{OrderEvent, OrderRequest};
use crate::reactor::Reactor;
use crate::transport::TransportError;
use crate::ws::Message;

use super::driver::{DriverConfig, DriverStats, OrderEventsMarked, PushStamp};
use super::{
    Action, DisconnectCause, EventKind, Session, SessionError, SessionEvent, SessionState,
    TransportPhase,
};

/// Most control commands taken per turn.
const CONTROL_BATCH: usize = 16;

/// What a slot of the engine's reactor holds: a connection and the session that owns it.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    /// Index of the owning session in the loop's table.
    pub(crate) session: u32,
    /// The connection.
    pub(crate) conn: WsConnection,
}

/// The rings a runner feeds and drains (engine ends).
pub(crate) struct RunnerRings {
    pub(crate) events_tx: Producer<SessionEvent>,
    pub(crate) md_tx: Producer<MdRecord>,
    pub(crate) orders_rx: Consumer<OrderRequest>,
    pub(crate) control_rx: Consumer<ControlRequest>,
    pub(crate) order_events_tx: Producer<OrderEvent>,
    pub(crate) stamps_tx: Option<Producer<PushStamp>>,
    pub(crate) log_tx: Option<Producer<SessionEvent>>,
    pub(crate) marked: OrderEventsMarked,
}

/// One session in the engine loop. See the [module docs](self).
pub(crate) struct SessionRunner {
    /// This runner's index in the loop's table (what its connection slots carry).
    index: u32,
    pub(crate) session: Session,
    /// The current connection's slot.
    token: Option<Token>,
    /// The last connection, closed and deregistered, kept for its buffers.
    spare: Option<WsConnection>,
    /// Its transport phase `WebSocket` already reported to the session.
    reported_ws: bool,
    /// Where to connect (URL, TLS configuration, resolved address), prepared before the loop.
    endpoint: Endpoint,
    conn_config: ConnectionConfig,
    rings: RunnerRings,
    /// Order events waiting for room on their ring, with their journal numbers
    /// (preallocated; grows rather than drop).
    overflow: VecDeque<(OrderEvent, u64)>,
    /// Journal numbers of the order events pushed on the ring and not yet known taken, in
    /// push order. Invariant: `len() >= order_events_tx.len()` (the strategy only takes);
    /// at most twice the ring's capacity, for which it is preallocated.
    ring_seqs: VecDeque<u64>,
    /// Order events seen taken off the ring so far.
    taken: u64,
    order_batch: usize,
    pub(crate) stats: DriverStats,
    /// Drive the connection again without waiting for readiness.
    again: bool,
    /// Something outside a turn called into the session (start, stop, subscribe): its
    /// actions and events wait for the next turn, which must not skip this runner.
    pub(crate) touched: bool,
    /// The OrderRequest or Control ring still held requests after this turn's batches: the
    /// next turn takes more without waiting (the strategy's bit was already taken).
    more_input: bool,
    /// The session's earliest deadline as of the end of its last busy turn.
    deadline: Option<u64>,
    /// Per-stage latency recording, when set.
    pub(crate) recorder: Option<Recorder>,
    /// The connection error that made the session fail for good.
    pub(crate) fatal_error: Option<ConnError>,
    /// The last connection error that was not fatal (what a run that never got live reports).
    last_error: Option<ConnError>,
}

impl SessionRunner {
    /// A runner for `session`, connecting to `endpoint`, feeding `rings`.
    pub(crate) fn new(
        index: u32,
        config: &DriverConfig,
        session: Session,
        endpoint: Endpoint,
        rings: RunnerRings,
    ) -> SessionRunner {
        let ring_seqs = VecDeque::with_capacity(2 * rings.order_events_tx.capacity());
        SessionRunner {
            index,
            session,
            token: None,
            spare: None,
            reported_ws: false,
            endpoint,
            conn_config: config.connection,
            rings,
            overflow: VecDeque::with_capacity(config.order_overflow),
            ring_seqs,
            taken: 0,
            order_batch: config.order_batch.max(1),
            stats: DriverStats::default(),
            again: false,
            touched: true,
            more_input: false,
            deadline: None,
            recorder: None,
            fatal_error: None,
            last_error: None,
        }
    }

    /// Whether the strategy has pushed something the engine has not popped.
    #[inline]
    pub(crate) fn has_input(&self) -> bool {
        !self.rings.orders_rx.is_empty() || !self.rings.control_rx.is_empty()
    }

    /// Whether the next turn must not wait in the kernel for this runner.
    #[inline]
    pub(crate) fn wants_turn(&self) -> bool {
        self.again || self.touched || self.more_input
    }

    /// Whether the loop must watch this runner every turn without keeping it from waiting:
    /// order events wait for the strategy to take them (the consumed mark follows), or for room
    /// on their ring.
    #[inline]
    pub(crate) fn watching(&self) -> bool {
        !self.ring_seqs.is_empty() || !self.overflow.is_empty()
    }

    /// Gives the latency recorder its chance to rotate (the loop calls this for every session
    /// now and then, so that an idle session's intervals still end).
    #[inline]
    pub(crate) fn rotate(&mut self, now: u64) {
        if let Some(r) = &mut self.recorder {
            r.maybe_rotate(now);
        }
    }

    /// The session's earliest deadline, as of its last busy turn.
    #[inline]
    pub(crate) fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    /// Counters (with the session's order counters).
    pub(crate) fn driver_stats(&self) -> DriverStats {
        let mut s = self.stats;
        let hw = s.orders.overflow_high_water;
        s.orders = self.session.order_stats();
        s.orders.overflow_high_water = hw;
        s
    }

    /// Whether this runner is done: failed for good, or stopped while the engine stops.
    #[inline]
    pub(crate) fn finished(&self, stopping: bool) -> bool {
        match self.session.state() {
            SessionState::Failed => true,
            SessionState::Disconnected => stopping,
            _ => false,
        }
    }

    /// One turn of this session. `ready`: its connection had readiness this turn. Returns
    /// whether it had anything to do (a visit that only watched order events is not busy).
    #[inline]
    pub(crate) fn turn(
        &mut self,
        now: u64,
        ready: bool,
        reactor: &mut Reactor<ConnSlot>,
        txbuf: &mut [u8],
        clock: Clock,
    ) -> bool {
        let due = self.deadline.is_some_and(|d| d <= now);
        // Work that keeps the loop from waiting (`more_input` implies `has_input`: the engine
        // is the rings' only consumer).
        let working = ready || due || self.again || self.touched || self.has_input();
        // Only watching: order events the strategy took (their consumed mark) or that wait in
        // the overflow queue for room on the ring.
        let watched =
            !self.overflow.is_empty() || self.ring_seqs.len() > self.rings.order_events_tx.len();
        if !working && !watched {
            return false;
        }
        self.stats.turns += 1;
        self.touched = false;
        if ready || self.again {
            self.drive(now, reactor, txbuf, clock);
        }
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        self.take_control(now);
        let popped = self.take_orders(now);
        self.actions(now, reactor);
        let written = self.transmit(now, reactor, txbuf);
        if let Some(rec) = &mut self.recorder {
            if popped > 0 && written > 0 {
                // Requests popped this turn whose bytes went out this turn (a request held
                // back by the rate limit is not counted here).
                let t = clock.now_ns();
                for _ in 0..popped.min(written) {
                    rec.record_between(Stage::OrderToWire, now, t);
                }
            }
            self.session
                .take_order_round_trips(|rtt| rec.record(Stage::OrderRoundTrip, rtt));
            rec.maybe_rotate(now);
        }
        self.drain_events();
        self.deadline = self.session.poll_timeout();
        self.more_input = self.has_input();
        working
    }

    /// The loop is ending: last actions and events, and the recorder's last interval.
    pub(crate) fn finish(&mut self, now: u64, reactor: &mut Reactor<ConnSlot>) {
        self.actions(now, reactor);
        self.drain_events();
        if let Some(r) = self.recorder.take() {
            r.finish(now);
        }
    }

    /// Pops up to `order_batch` order requests into the session; returns how many.
    fn take_orders(&mut self, now: u64) -> usize {
        let mut n = 0;
        while n < self.order_batch {
            let Some(r) = self.rings.orders_rx.pop() else {
                break;
            };
            self.stats.order_requests += 1;
            self.session.handle_order(now, r);
            n += 1;
        }
        n
    }

    /// Pops up to [`CONTROL_BATCH`] control commands, carries them out and answers each.
    fn take_control(&mut self, now: u64) {
        for _ in 0..CONTROL_BATCH {
            let Some(r) = self.rings.control_rx.pop() else {
                break;
            };
            self.stats.control_commands += 1;
            let s = &mut self.session;
            let outcome = match r.command {
                Control::Subscribe(c) => outcome_of(s.subscribe(now, c.as_str())),
                Control::Unsubscribe(c) => outcome_of(s.unsubscribe(now, c.as_str())),
                Control::Resync(c) => outcome_of(s.resync(now, c.as_str())),
                Control::Stop => match s.state() {
                    SessionState::Disconnected | SessionState::Failed => ControlOutcome::WrongState,
                    _ => {
                        s.logout(now);
                        ControlOutcome::Accepted
                    }
                },
                Control::Start => outcome_of(s.connect(now)),
            };
            s.report_control(now, r.tag, r.command.kind(), outcome);
        }
    }

    fn actions(&mut self, now: u64, reactor: &mut Reactor<ConnSlot>) {
        while let Some(a) = self.session.poll_action() {
            match a {
                Action::Connect => self.open(now, reactor),
                Action::Close(cause) => self.close(cause, reactor),
                Action::Ping => {
                    let failed = match self.token.and_then(|t| reactor.get_mut(t)) {
                        Some(slot) => {
                            let _ = slot.conn.send_ping(b"sw");
                            slot.conn.flush().err()
                        }
                        None => None,
                    };
                    if let Some(e) = failed {
                        self.drop_conn(reactor);
                        self.lost(now, e);
                    }
                }
            }
        }
    }

    fn open(&mut self, now: u64, reactor: &mut Reactor<ConnSlot>) {
        self.close(DisconnectCause::Rotation, reactor);
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
            Ok(mut conn) => {
                // The loop passes on every event's FIN and error flags (`note_read_closed`).
                conn.set_short_read_drains(true);
                Some(conn)
            }
            Err(e) => return self.lost(now, e),
        };
        let index = self.index;
        let r = reactor.insert_with(|token, registry| {
            let c = conn.as_mut().ok_or(ConnError::Closed)?;
            c.register(registry, token).map_err(|e| {
                ConnError::Transport(TransportError::Io {
                    op: "register",
                    peer: addr,
                    source: e,
                })
            })?;
            conn.take()
                .map(|conn| ConnSlot {
                    session: index,
                    conn,
                })
                .ok_or(ConnError::Closed)
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

    fn close(&mut self, cause: DisconnectCause, reactor: &mut Reactor<ConnSlot>) {
        let Some(token) = self.token.take() else {
            return;
        };
        if let Some(ConnSlot { mut conn, .. }) = reactor.remove(token) {
            if cause == DisconnectCause::Logout {
                let _ = conn.close(1000, "logout");
                let _ = conn.flush();
            }
            conn.abort();
            let _ = conn.deregister(reactor.registry());
            self.spare = Some(conn);
        }
        self.again = false;
    }

    fn drive(&mut self, now: u64, reactor: &mut Reactor<ConnSlot>, txbuf: &mut [u8], clock: Clock) {
        let Some(token) = self.token else {
            self.again = false;
            return;
        };
        let SessionRunner {
            session,
            rings,
            stats,
            recorder,
            reported_ws,
            ..
        } = self;
        let RunnerRings {
            md_tx, stamps_tx, ..
        } = rings;
        let Some(ConnSlot { conn, .. }) = reactor.get_mut(token) else {
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
                            // Full only while the MarketData ring is (a stamp per batch).
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
                self.drop_conn(reactor);
                self.session
                    .handle_disconnected(now, DisconnectCause::PeerClosed { code });
            }
            Err(e) => {
                self.drop_conn(reactor);
                self.lost(now, e);
            }
        }
    }

    /// The connection failed with `e`: tells the session; keeps `e` when it is fatal, and as
    /// the last connection error otherwise (cold path: a failed connection).
    fn lost(&mut self, now: u64, e: ConnError) {
        let cause = cause_of(&e);
        self.session.handle_disconnected(now, cause);
        if cause == DisconnectCause::Certificate {
            self.fatal_error = Some(e);
        } else {
            self.last_error = Some(e);
        }
    }

    /// The last connection error (refused, TLS, handshake, I/O), if any connection failed.
    pub(crate) fn last_error(&self) -> Option<&ConnError> {
        self.fatal_error.as_ref().or(self.last_error.as_ref())
    }

    fn drop_conn(&mut self, reactor: &mut Reactor<ConnSlot>) {
        if let Some(token) = self.token.take() {
            if let Some(ConnSlot { mut conn, .. }) = reactor.remove(token) {
                let _ = conn.deregister(reactor.registry());
                self.spare = Some(conn);
            }
        }
        self.again = false;
    }

    /// Sends what the session has to send; returns how many messages it wrote.
    fn transmit(&mut self, now: u64, reactor: &mut Reactor<ConnSlot>, txbuf: &mut [u8]) -> usize {
        let Some(ConnSlot { conn, .. }) = self.token.and_then(|t| reactor.get_mut(t)) else {
            return 0;
        };
        if conn.phase() != Phase::Open {
            return 0;
        }
        let mut written = 0;
        while let Some(n) = self.session.poll_transmit(now, txbuf) {
            let text = std::str::from_utf8(&txbuf[..n]).unwrap_or("");
            if conn.send_text(text).is_err() {
                self.stats.send_failed += 1;
            } else {
                written += 1;
            }
        }
        // Sends outside `drive` are only queued: push them now. A failure (the peer went away,
        // or a fatal TLS error held back behind data already delivered) ends the connection
        // here, with its real cause.
        if conn.wants_write() {
            if let Err(e) = conn.flush() {
                self.drop_conn(reactor);
                self.lost(now, e);
            }
        }
        written
    }

    fn drain_events(&mut self) {
        let rings = &mut self.rings;
        while let Some(e) = self.session.poll_event() {
            if let EventKind::Fatal { reason, code } = e.kind {
                self.stats.fatal = Some((reason, code));
            }
            if let EventKind::Live { downtime_ns } = e.kind {
                self.stats.lives += 1;
                if let (true, Some(r)) = (downtime_ns > 0, &mut self.recorder) {
                    r.record(Stage::ReconnectDowntime, downtime_ns);
                }
            }
            if let Some(log) = &mut rings.log_tx {
                if log.push(e).is_err() {
                    self.stats.log_events_dropped += 1;
                }
            }
            if rings.events_tx.push(e).is_err() {
                self.stats.events_dropped += 1;
            }
        }
        // Order events the strategy took since the last turn: one consumed mark in the
        // journal for all of them (a restart replays only the events after it).
        let taken = self
            .ring_seqs
            .len()
            .saturating_sub(rings.order_events_tx.len());
        if taken > 0 {
            let mut upto = 0;
            for _ in 0..taken {
                upto = self.ring_seqs.pop_front().unwrap_or(upto);
            }
            self.session.order_events_consumed(upto);
            self.taken += taken as u64;
            rings.marked.0.store(self.taken, Ordering::Release);
        }
        // Order events: what waits in the overflow queue first, in order; never dropped.
        while let Some(&(e, seq)) = self.overflow.front() {
            if rings.order_events_tx.push(e).is_err() {
                break;
            }
            self.overflow.pop_front();
            self.ring_seqs.push_back(seq);
            self.stats.order_events += 1;
        }
        while let Some((e, seq)) = self.session.poll_order_event_seq() {
            if !self.overflow.is_empty() || rings.order_events_tx.push(e).is_err() {
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

/// A control command's outcome from the session's answer.
fn outcome_of(r: Result<(), SessionError>) -> ControlOutcome {
    match r {
        Ok(()) => ControlOutcome::Accepted,
        Err(SessionError::AlreadySubscribed) => ControlOutcome::AlreadySubscribed,
        Err(SessionError::NotSubscribed) => ControlOutcome::NotSubscribed,
        Err(SessionError::NotABook) => ControlOutcome::NotABook,
        Err(SessionError::AlreadyStarted(_)) => ControlOutcome::WrongState,
        Err(_) => ControlOutcome::TableFull,
    }
}

/// The session's view of a connection error.
fn cause_of(e: &ConnError) -> DisconnectCause {
    match e {
        ConnError::Transport(TransportError::Certificate { .. }) => DisconnectCause::Certificate,
        ConnError::Transport(TransportError::Refused { .. }) => DisconnectCause::Refused,
        ConnError::Transport(_) | ConnError::Config(_) => DisconnectCause::Transport,
        ConnError::Handshake(_) | ConnError::ResponseTooLarge => DisconnectCause::Handshake,
        ConnError::Protocol(_) => DisconnectCause::Protocol,
        ConnError::ClosedWithoutCloseFrame | ConnError::Closed => DisconnectCause::Abnormal,
    }
}
