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
//! [`Driver::spawn`] runs it on a thread of its own and hands back the ring ends; raising the
//! stop flag makes the session log out and the thread end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::Token;
use spinwire_ringbuf::{channel, Consumer, Producer};

use crate::connection::{
    ConnError, ConnectionConfig, Drive, Endpoint, EndpointError, Event, Phase, WsConnection,
};
use crate::latency::{Clock, ClockChoice, ClockError};
use crate::md::MdRecord;
use crate::reactor::{PollMode, Reactor};
use crate::transport::TransportError;
use crate::ws::Message;

use super::{
    Action, DisconnectCause, Session, SessionConfig, SessionError, SessionEvent, SessionState,
    TransportPhase,
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
}

impl DriverConfig {
    /// Defaults for `url`: system roots, blocking polls of at most 1 ms, default buffers,
    /// rings of 1024 events and 65536 records.
    pub fn new(url: impl Into<String>) -> DriverConfig {
        DriverConfig {
            url: url.into(),
            ca_file: None,
            mode: PollMode::Blocking(Some(Duration::from_millis(1))),
            connection: ConnectionConfig::default(),
            event_ring: 1024,
            md_ring: 65536,
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
    /// Messages the connection would not take (send buffer full).
    pub send_failed: u64,
    /// Loop turns.
    pub turns: u64,
}

/// The consumer side of a spawned driver.
#[derive(Debug)]
pub struct DriverHandle {
    /// Session events.
    pub events: Consumer<SessionEvent>,
    /// Market-data records.
    pub md: Consumer<MdRecord>,
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
    stats: DriverStats,
    /// Drive the connection again without waiting for readiness.
    again: bool,
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
        session: SessionConfig,
    ) -> Result<(Driver, Consumer<SessionEvent>, Consumer<MdRecord>), DriverError> {
        let endpoint = Endpoint::prepare(&config.url, config.ca_file.as_deref())?;
        let clock = Clock::new(ClockChoice::Monotonic)?;
        let mut session = Session::new(session)?;
        let now = clock.now_ns();
        session.set_unix_time(now, (clock.wall_at_epoch_ns() + now) / 1_000_000);
        let reactor = Reactor::new(1, 64, config.mode).map_err(DriverError::Poll)?;
        let (events_tx, events_rx) = channel(config.event_ring);
        let (md_tx, md_rx) = channel(config.md_ring);
        Ok((
            Driver {
                session,
                reactor,
                token: None,
                reported_ws: false,
                endpoint,
                conn_config: config.connection,
                mode: config.mode,
                clock,
                txbuf: vec![0; 64 * 1024],
                events_tx,
                md_tx,
                stats: DriverStats::default(),
                again: false,
            },
            events_rx,
            md_rx,
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
        let (mut driver, events, md) = Driver::new(config, session)?;
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
                Ok((driver.stats, driver.session.stats()))
            })
            .map_err(DriverError::Poll)?;
        Ok(DriverHandle {
            events,
            md,
            stop,
            thread,
        })
    }

    /// The session (to subscribe before running, or inspect).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The counters.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// The current clock reading, ns (the clock the session runs on).
    pub fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Runs the loop: connects, then turns until the session is `Failed`, or `Disconnected`
    /// after `stop` was raised (which logs out).
    ///
    /// # Errors
    /// [`DriverError::Poll`] when epoll fails.
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
        Ok(())
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
        self.transmit(now);
        self.drain_events();
        Ok(())
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
        let r = self.reactor.insert_with(|token, registry| {
            let mut conn = WsConnection::connect(addr, security, &request, &cfg)?;
            conn.register(registry, token).map_err(|e| {
                ConnError::Transport(TransportError::Io {
                    op: "register",
                    peer: addr,
                    source: e,
                })
            })?;
            Ok::<_, ConnError>(conn)
        });
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
            Err(crate::reactor::InsertError::Init(e)) => {
                self.session.handle_disconnected(now, cause_of(&e));
            }
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
            ..
        } = self;
        let Some(conn) = reactor.get_mut(token) else {
            return;
        };
        let result = conn.drive(|event, outbox| {
            match event {
                Event::Open => session.handle_connected(now),
                Event::Message(Message::Text(text)) => {
                    let mut lost: Option<(MdRecord, usize)> = None;
                    let mut sink = |records: &[MdRecord]| {
                        let pushed = md_tx.push_slice(records);
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
        if !self.reported_ws && conn.phase() == Phase::Upgrading {
            self.reported_ws = true;
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
                self.session.handle_disconnected(now, cause_of(&e));
            }
        }
    }

    fn drop_conn(&mut self) {
        if let Some(token) = self.token.take() {
            if let Some(mut conn) = self.reactor.remove(token) {
                let _ = conn.deregister(self.reactor.registry());
            }
        }
        self.again = false;
    }

    fn transmit(&mut self, now: u64) {
        let Some(conn) = self.token.and_then(|t| self.reactor.get_mut(t)) else {
            return;
        };
        if conn.phase() != Phase::Open {
            return;
        }
        while let Some(n) = self.session.poll_transmit(now, &mut self.txbuf) {
            let text = std::str::from_utf8(&self.txbuf[..n]).unwrap_or("");
            if conn.send_text(text).is_err() {
                self.stats.send_failed += 1;
            }
        }
        // Sends outside `drive` are only queued: push them now (an error surfaces from the
        // next `drive`, which the next turn runs).
        if conn.wants_write() && conn.flush().is_err() {
            self.again = true;
        }
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.session.poll_event() {
            if self.events_tx.push(e).is_err() {
                self.stats.events_dropped += 1;
            }
        }
    }
}

/// The session's view of a connection error.
fn cause_of(e: &ConnError) -> DisconnectCause {
    match e {
        ConnError::Transport(_) | ConnError::Config(_) => DisconnectCause::Transport,
        ConnError::Handshake(_) | ConnError::ResponseTooLarge => DisconnectCause::Handshake,
        ConnError::Protocol(_) => DisconnectCause::Protocol,
        ConnError::ClosedWithoutCloseFrame | ConnError::Closed => DisconnectCause::Abnormal,
    }
}
