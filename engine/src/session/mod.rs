//! The sans-IO Deribit session: lifecycle, authentication and token refresh, heartbeats and
//! dead-peer detection, reconnect pacing, subscriptions and book resync, and the order path
//! (orders, fills, reconciliation after reconnects and restarts).
//!
//! [`Session`] owns no socket and reads no clock (the quinn-proto style of `DESIGN.md`): the
//! driver passes `now` (ns on any monotonic clock) into every call and moves bytes itself.
//!
//! # Driving
//! - inputs: [`Session::connect`] (start), [`Session::handle_transport_phase`] (TLS/upgrade
//!   progress, for reporting), [`Session::handle_connected`] (WebSocket open),
//!   [`Session::handle_text`] (each text message; market data goes to a sink closure as
//!   [`MdRecord`]s), [`Session::handle_activity`] (pong, ping or any other frame),
//!   [`Session::handle_disconnected`], [`Session::handle_timeout`] (when
//!   [`Session::poll_timeout`] has passed), [`Session::subscribe`] / [`Session::unsubscribe`],
//!   [`Session::logout`], [`Session::handle_order`] (each order request);
//! - outputs, drained after the inputs of each loop turn: [`Session::poll_action`] (connect, close
//!   the connection, send a WebSocket ping), [`Session::poll_transmit`] (the next text message to
//!   send, encoded into a caller-lent buffer), [`Session::poll_event`] (small `Copy`
//!   [`SessionEvent`]s for the SessionEvent ring), [`Session::poll_order_event`] (for the
//!   OrderEvent ring), [`Session::poll_timeout`].
//!
//! After the driver executes [`Action::Close`], that connection no longer exists for the
//! session: do not report its end with `handle_disconnected` (it would be ignored anyway).
//!
//! # Lifecycle
//! `Disconnected → Connecting → TlsHandshake → WsHandshake → Authenticating → Subscribing →
//! Live`; `Draining` during a graceful logout; `Backoff` between a drop and the next attempt;
//! `Failed` after a fatal error (invalid credentials, a code listed in
//! [`SessionConfig::fatal_codes`]), which is never retried. Without credentials the session
//! goes from `WsHandshake` straight to `Subscribing`.
//!
//! # Time and timers
//! A fixed [`TimerTable`] indexed by [`Timer`]: connect and setup timeouts, idle ping and
//! dead-peer deadline, token refresh (at [`SessionConfig::refresh_permille`] of `expires_in`),
//! backoff, the backoff reset after staying `Live`, the 10028 retry hold, the logout drain and
//! optional connection rotation. A half-open connection is declared dead at most
//! `ping_after + dead_after` after the last byte received.
//!
//! # Books
//! Book channels are delivered only from a snapshot on: each change must carry the previous
//! message's `change_id` as its `prev_change_id`. A mismatch is a gap: the instrument's book is
//! marked stale, a [`EventKind::Gap`] is raised, its messages are dropped (never passed off as
//! current) and the channel is unsubscribed and subscribed again for a fresh snapshot
//! ([`EventKind::Resynced`] when it arrives). After a reconnect every book waits for its new
//! snapshot the same way.
//!
//! # Orders
//! With [`SessionConfig::orders`] set (its `instruments`, and credentials), the session also
//! runs the order path ([`crate::orders`]): [`Session::handle_order`] takes a strategy's
//! [`OrderRequest`], [`Session::poll_order_event`] hands out [`OrderEvent`]s
//! ([`Session::poll_order_event_seq`] with their journal numbers, which the caller hands back
//! through [`Session::order_events_consumed`] once the strategy took them, so a restart
//! replays exactly the events it had not), [`Session::order_stats`] counts. It subscribes `user.orders.{instrument}.raw` and
//! `user.trades.{instrument}.raw` for each order instrument itself. On every connection,
//! once authenticated and subscribed, the session *reconciles* before it goes `Live`:
//! cancel-on-disconnect is armed when configured, every order whose state must be learned
//! (unknown after a drop or a restart, or resting while the connection was down) is queried by
//! label, and fills of the gap are fetched; no new order is sent before this ends (the setup
//! timeout covers it). Order requests answered `10028` wait for the same retry hold as other
//! requests ([`EventKind::RateLimited`] with [`RequestKind::Order`]); `13009` makes the session
//! authenticate again on the connection and send the order after. JSON-RPC ids of order-path
//! requests have bit 52 set (the session's own ids count up from 1).
//!
//! # Allocation
//! Buffers (instrument table, md scratch, event queue, subscription slots, the order table,
//! its indexes, queues and event queue) are allocated in [`Session::new`]. The steady state
//! (market data, heartbeats, pings, order requests, answers, fills, cancels) allocates
//! nothing; cold paths (a new subscription name, a token received) do.

pub mod alerts;
mod backoff;
mod credentials;
pub mod driver;
pub(crate) mod runner;
mod timer;

use std::collections::VecDeque;
use std::time::Duration;

pub use backoff::{Backoff, BackoffConfig, Rng, SharedBudget, MAX_BUDGET};
pub use credentials::{AuthMethod, CredentialError, Credentials, ENV_CLIENT_ID, ENV_CLIENT_SECRET};
pub use timer::{Timer, TimerTable};

use crate::md::{InstrumentId, InstrumentTable, MdRecord, TableError};
use crate::orders::journal::Journal;
use crate::orders::tracker::{Handled, OrderTracker};
use crate::orders::{OrderEvent, OrderRequest, OrderStats, OrdersConfig};
use crate::venue::deribit::{
    decode, error_code, AuthResult, BookUpdate, Channel, DecodeError, FromValue, HeartbeatKind,
    Incoming, Interval, Request, Response, Secret,
};

/// Most subscriptions a session tracks.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Most requests awaiting an answer.
const MAX_IN_FLIGHT: usize = 32;
/// Most channels in one subscribe/unsubscribe request.
const MAX_BATCH: usize = 16;
/// Events kept when the driver does not drain them (later ones are counted and dropped).
const EVENT_CAPACITY: usize = 256;
/// Actions kept (at most a few are ever pending).
const ACTION_CAPACITY: usize = 16;

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Not started, or stopped after a logout.
    Disconnected,
    /// Waiting for TCP to connect.
    Connecting,
    /// TLS handshake in progress (reported by the driver).
    TlsHandshake,
    /// WebSocket upgrade in progress (reported by the driver).
    WsHandshake,
    /// `public/auth` sent, waiting for the answer.
    Authenticating,
    /// Subscriptions (re)sent, waiting for their answers.
    Subscribing,
    /// Authenticated and subscribed: data flows.
    Live,
    /// Graceful `private/logout` and close in progress.
    Draining,
    /// Waiting before the next connection attempt.
    Backoff,
    /// Fatal error: no retry (see [`EventKind::Fatal`]).
    Failed,
}

impl SessionState {
    /// Lower-case name (`live`, `backoff`, ...), for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionState::Disconnected => "disconnected",
            SessionState::Connecting => "connecting",
            SessionState::TlsHandshake => "tls_handshake",
            SessionState::WsHandshake => "ws_handshake",
            SessionState::Authenticating => "authenticating",
            SessionState::Subscribing => "subscribing",
            SessionState::Live => "live",
            SessionState::Draining => "draining",
            SessionState::Backoff => "backoff",
            SessionState::Failed => "failed",
        }
    }

    /// Whether a transport is being set up (connect, TLS, upgrade).
    const fn is_opening(self) -> bool {
        matches!(
            self,
            SessionState::Connecting | SessionState::TlsHandshake | SessionState::WsHandshake
        )
    }

    /// Whether a WebSocket is open (messages may be sent).
    const fn is_open(self) -> bool {
        matches!(
            self,
            SessionState::Authenticating
                | SessionState::Subscribing
                | SessionState::Live
                | SessionState::Draining
        )
    }
}

/// Transport progress the driver reports with [`Session::handle_transport_phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportPhase {
    /// TCP is connected; the TLS handshake runs.
    Tls,
    /// The HTTP upgrade request is out.
    WebSocket,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectCause {
    /// The server closed with a WebSocket close frame carrying this code.
    PeerClosed {
        /// The close code (1000 normal, 1001 going away, ...).
        code: u16,
    },
    /// TCP/TLS ended without a close frame (FIN or RST; close code 1006).
    Abnormal,
    /// The transport failed (TLS error, I/O error, reset).
    Transport,
    /// Nothing listens at the venue's address (TCP connection refused): a wrong URL or port,
    /// or the venue is down. Retried with backoff.
    Refused,
    /// The server's TLS certificate was rejected (unknown issuer, wrong host name, expired):
    /// a configuration problem or an interception, not something a retry fixes. Fatal.
    Certificate,
    /// The WebSocket upgrade was refused.
    Handshake,
    /// The server broke the WebSocket protocol (bad frame, invalid UTF-8, message too large).
    Protocol,
    /// No traffic, and no pong, within the dead-peer deadline.
    DeadPeer,
    /// The transport did not open within [`SessionConfig::connect_timeout`].
    ConnectTimeout,
    /// Auth and subscriptions did not complete within [`SessionConfig::setup_timeout`].
    SetupTimeout,
    /// Authentication was refused (not fatally): try again after a backoff.
    AuthRejected,
    /// A response the session could not read (auth result).
    BadResponse,
    /// Connection rotation ([`SessionConfig::rotate_after`]).
    Rotation,
    /// Graceful logout.
    Logout,
    /// A fatal error: the session stops.
    Fatal,
}

impl DisconnectCause {
    /// Lower-case name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DisconnectCause::PeerClosed { .. } => "peer_closed",
            DisconnectCause::Abnormal => "abnormal_closure",
            DisconnectCause::Transport => "transport_error",
            DisconnectCause::Refused => "connection_refused",
            DisconnectCause::Certificate => "certificate_rejected",
            DisconnectCause::Handshake => "handshake_refused",
            DisconnectCause::Protocol => "protocol_error",
            DisconnectCause::DeadPeer => "dead_peer",
            DisconnectCause::ConnectTimeout => "connect_timeout",
            DisconnectCause::SetupTimeout => "setup_timeout",
            DisconnectCause::AuthRejected => "auth_rejected",
            DisconnectCause::BadResponse => "bad_response",
            DisconnectCause::Rotation => "rotation",
            DisconnectCause::Logout => "logout",
            DisconnectCause::Fatal => "fatal",
        }
    }
}

/// What the session asks the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open a new connection (TCP, TLS, upgrade) and report with
    /// [`Session::handle_connected`] or [`Session::handle_disconnected`].
    Connect,
    /// Close the current connection (gracefully if possible, else abort) and forget it.
    Close(DisconnectCause),
    /// Send a WebSocket ping.
    Ping,
}

/// A request the session sends, as named in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `public/auth` with credentials.
    Auth,
    /// `public/auth` with the refresh token.
    Refresh,
    /// `public/set_heartbeat`.
    SetHeartbeat,
    /// `public/subscribe` / `private/subscribe`.
    Subscribe,
    /// `public/unsubscribe` / `private/unsubscribe`.
    Unsubscribe,
    /// `private/logout`.
    Logout,
    /// An order request (`buy`, `sell`, `edit`, `cancel`).
    Order,
    /// A reconciliation query (`get_order_state_by_label`, `get_user_trades_by_instrument`).
    OrderQuery,
    /// `private/enable_cancel_on_disconnect`.
    CancelOnDisconnect,
}

impl RequestKind {
    /// Lower-case name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestKind::Auth => "auth",
            RequestKind::Refresh => "refresh",
            RequestKind::SetHeartbeat => "set_heartbeat",
            RequestKind::Subscribe => "subscribe",
            RequestKind::Unsubscribe => "unsubscribe",
            RequestKind::Logout => "logout",
            RequestKind::Order => "order",
            RequestKind::OrderQuery => "order_query",
            RequestKind::CancelOnDisconnect => "cancel_on_disconnect",
        }
    }
}

/// Why the session failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalReason {
    /// `13004 invalid_credentials`.
    InvalidCredentials,
    /// An error code listed in [`SessionConfig::fatal_codes`] (a ban, a forbidden account).
    Rejected,
    /// The server's TLS certificate was rejected ([`DisconnectCause::Certificate`]): check the
    /// CA file or system roots and the host name. The driver returns the details.
    Certificate,
}

/// What happened, as carried by a [`SessionEvent`]. Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The state changed.
    StateChanged {
        /// Old state.
        from: SessionState,
        /// New state.
        to: SessionState,
    },
    /// The WebSocket is open.
    Connected {
        /// Connections opened so far (1 for the first).
        connection: u32,
    },
    /// `public/auth` succeeded.
    Authenticated {
        /// Token lifetime, s.
        expires_in_s: u64,
        /// Authenticated with the refresh token (session resumed) rather than credentials.
        resumed: bool,
    },
    /// The access token was refreshed on the live connection.
    TokenRefreshed {
        /// New token lifetime, s.
        expires_in_s: u64,
    },
    /// The refresh token was refused; the session authenticates with its credentials again.
    TokenRefreshFailed {
        /// The error code.
        code: i64,
    },
    /// A subscribe request succeeded.
    Subscribed {
        /// Channels in the request.
        channels: u32,
    },
    /// The session is live.
    Live {
        /// Time since the connection was lost (0 for the first time live), ns.
        downtime_ns: u64,
    },
    /// The connection ended.
    Disconnected {
        /// Why.
        cause: DisconnectCause,
    },
    /// A connection attempt is scheduled.
    Reconnecting {
        /// Consecutive failed attempts (1 after the first drop).
        attempt: u32,
        /// Delay before the attempt, ns.
        delay_ns: u64,
    },
    /// Inbound traffic stopped for `ping_after`: a ping was sent.
    HeartbeatMissed,
    /// A book change did not follow the previous one: the book is stale until its resync.
    Gap {
        /// Instrument.
        instrument: InstrumentId,
        /// The `change_id` the change should have named as `prev_change_id`.
        expected_prev: u64,
        /// The `prev_change_id` it named.
        got_prev: u64,
    },
    /// A fresh snapshot arrived for a stale book: it is current again.
    Resynced {
        /// Instrument.
        instrument: InstrumentId,
    },
    /// A request was answered `10028 too_many_requests`; it is sent again after
    /// [`SessionConfig::rate_limit_retry`].
    RateLimited {
        /// The request.
        request: RequestKind,
    },
    /// A request failed (not fatally, not a rate limit).
    RequestFailed {
        /// The request.
        request: RequestKind,
        /// The error code (0: it could not be encoded into the lent buffer).
        code: i64,
    },
    /// Records of an instrument were dropped on the way to the consumer (its ring was full):
    /// its books are stale until their resync ([`EventKind::Resynced`]).
    RecordsDropped {
        /// Instrument.
        instrument: InstrumentId,
        /// Records dropped.
        records: u32,
    },
    /// A message could not be decoded (counted; no records came from it).
    Malformed {
        /// Why.
        error: DecodeError,
    },
    /// A control command from the strategy was taken (see [`crate::event_loop::control`]).
    Control {
        /// The command's tag, as the strategy set it.
        tag: u32,
        /// What was asked.
        command: crate::event_loop::control::ControlKind,
        /// How it ended.
        outcome: crate::event_loop::control::ControlOutcome,
    },
    /// A fatal error: the session is `Failed` and will not reconnect.
    Fatal {
        /// Why.
        reason: FatalReason,
        /// The error code.
        code: i64,
    },
}

/// A session event: what happened and when (ns on the driver's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionEvent {
    /// When, ns.
    pub at_ns: u64,
    /// What.
    pub kind: EventKind,
}

/// Counters of the session (all since [`Session::new`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Text messages handled.
    pub messages: u64,
    /// Market-data records delivered to the sink.
    pub records: u64,
    /// Messages that could not be decoded.
    pub malformed: u64,
    /// Book gaps detected.
    pub gaps: u64,
    /// Book messages dropped while their book was stale or awaiting its snapshot.
    pub stale_dropped: u64,
    /// Connections opened.
    pub connections: u64,
    /// Disconnects (any cause).
    pub disconnects: u64,
    /// Pings sent because inbound traffic stopped.
    pub heartbeat_misses: u64,
    /// `test_request`s answered.
    pub tests_answered: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Credentials; `None` for a public-only session.
    pub credentials: Option<Credentials>,
    /// `public/set_heartbeat` interval (Deribit: at least 10 s); `None` to not ask for one.
    pub heartbeat: Option<Duration>,
    /// Inbound silence after which a WebSocket ping is sent.
    pub ping_after: Duration,
    /// After a ping, silence for this long declares the peer dead.
    pub dead_after: Duration,
    /// TCP + TLS + upgrade must complete within this.
    pub connect_timeout: Duration,
    /// Auth and subscriptions must complete within this after the WebSocket opens.
    pub setup_timeout: Duration,
    /// Token refresh at this fraction (‰) of `expires_in`.
    pub refresh_permille: u32,
    /// Reconnect policy.
    pub backoff: BackoffConfig,
    /// A connection-rate budget shared with the other sessions to the same venue, on top of
    /// this session's own ([`BackoffConfig::budget`]); `None`: this session's only.
    pub connection_budget: Option<std::sync::Arc<SharedBudget>>,
    /// Wait before re-sending a request answered 10028.
    pub rate_limit_retry: Duration,
    /// Logout must close the connection within this, or it is closed by force.
    pub drain_timeout: Duration,
    /// Replace the connection after it has been open this long (`None`: never).
    pub rotate_after: Option<Duration>,
    /// Error codes that end the session for good (13004 is always fatal for auth).
    pub fatal_codes: [i64; 4],
    /// Instruments the session can hold (the instrument table's capacity).
    pub max_instruments: usize,
    /// Most records one message may hold (the md scratch buffer's length).
    pub max_records: usize,
    /// Seed of the backoff jitter and auth nonces.
    pub seed: u64,
    /// The order path (off unless `orders.instruments` is set; needs credentials).
    pub orders: OrdersConfig,
}

impl Default for SessionConfig {
    /// Public session; 10 s heartbeat, ping after 10 s of silence, dead 5 s later; 10 s connect
    /// and setup timeouts; refresh at 80%; default backoff; 1 s rate-limit retry.
    fn default() -> Self {
        SessionConfig {
            credentials: None,
            heartbeat: Some(Duration::from_secs(10)),
            ping_after: Duration::from_secs(10),
            dead_after: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            setup_timeout: Duration::from_secs(10),
            refresh_permille: 800,
            backoff: BackoffConfig::default(),
            connection_budget: None,
            rate_limit_retry: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(2),
            rotate_after: None,
            fatal_codes: [error_code::INVALID_CREDENTIALS, 0, 0, 0],
            max_instruments: 1024,
            max_records: 4096,
            seed: 0x5EED_5EED,
            orders: OrdersConfig::default(),
        }
    }
}

/// Why a call was refused. Cold path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// [`Session::connect`] outside `Disconnected`.
    #[error("the session is already started (state {0:?})")]
    AlreadyStarted(SessionState),
    /// [`MAX_SUBSCRIPTIONS`] channels are already tracked: unsubscribe first.
    #[error("too many subscriptions (at most {MAX_SUBSCRIPTIONS})")]
    TooManySubscriptions,
    /// The channel is already subscribed.
    #[error("channel is already subscribed")]
    AlreadySubscribed,
    /// The channel is not subscribed.
    #[error("channel is not subscribed")]
    NotSubscribed,
    /// The channel is not a book channel (only books are resynced).
    #[error("channel is not a book")]
    NotABook,
    /// The instrument table is full or the name is invalid.
    #[error("instrument: {0}")]
    Instrument(#[from] TableError),
    /// The configuration cannot be used.
    #[error("bad session configuration: {0}")]
    Config(&'static str),
    /// The order journal could not be opened or read (the text says why): fix or move the
    /// file; never start trading without the orders it holds.
    #[error("order journal: {0}")]
    Journal(String),
}

/// A tracked subscription.
#[derive(Debug)]
struct Sub {
    /// The channel name as sent.
    name: String,
    /// Book channel: instrument and interval (for the `prev_change_id` chain).
    book: Option<(InstrumentId, Interval)>,
    /// The user wants this channel (false: being unsubscribed, slot freed on the answer).
    wanted: bool,
    /// A subscribe must be sent on this connection.
    send_sub: bool,
    /// An unsubscribe must be sent (before any pending subscribe).
    send_unsub: bool,
    /// The server confirmed the subscription on this connection.
    subscribed: bool,
    /// Book: a snapshot arrived and every change since chained; `last_change_id` is valid.
    synced: bool,
    /// Book: a gap was seen and no snapshot since.
    stale: bool,
    /// Book: `change_id` of the last message delivered.
    last_change_id: u64,
}

/// A request awaiting its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// `public/auth` (with the refresh token when `refresh`).
    Auth { refresh: bool },
    /// In-session token refresh.
    Refresh,
    /// `public/set_heartbeat`.
    SetHeartbeat,
    /// Subscribe of the subscription slots in the mask.
    Subscribe(u64),
    /// Unsubscribe of the subscription slots in the mask.
    Unsubscribe(u64),
}

/// The sans-IO Deribit session. See the [module docs](self).
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: SessionState,
    timers: TimerTable,
    backoff: Backoff,
    rng: Rng,
    instruments: InstrumentTable,
    /// Scratch the decoder writes records into. Length `config.max_records`.
    scratch: Vec<MdRecord>,
    /// Subscription slots (`None`: free). Length [`MAX_SUBSCRIPTIONS`].
    subs: Vec<Option<Sub>>,
    /// Requests awaiting an answer, by id.
    in_flight: [Option<(u64, Pending)>; MAX_IN_FLIGHT],
    next_id: u64,
    events: VecDeque<SessionEvent>,
    actions: VecDeque<Action>,
    stats: SessionStats,
    /// `test_request`s not yet answered.
    tests_owed: u32,
    /// A subscription slot may have a subscribe or unsubscribe to send (set wherever one is
    /// asked for; cleared when a scan finds none), so `poll_transmit` does not scan the
    /// subscription table after every message.
    subs_dirty: bool,
    /// Authentication must be sent on this connection.
    want_auth: bool,
    /// The access token must be refreshed.
    want_refresh: bool,
    /// `public/set_heartbeat` must be sent.
    want_heartbeat: bool,
    /// `private/logout` must be sent.
    want_logout: bool,
    /// Authenticated on the current connection.
    authed: bool,
    /// Requests other than `public/test` wait until then (10028).
    hold_until: u64,
    /// Last inbound traffic, ns.
    last_rx: u64,
    /// When the last idle ping went out, ns.
    ping_at: u64,
    /// When the session lost its connection (downtime start); `None` when never lost.
    down_since: Option<u64>,
    /// The refresh token of the last successful auth.
    refresh_token: Option<Secret>,
    /// When the access token expires, ns.
    token_expires_at: u64,
    /// `unix_ms - now_ns / 1e6` as set by [`Session::set_unix_time`].
    unix_offset_ms: i64,
    /// The order path.
    orders: OrderTracker,
    /// Reconciliation has run on this connection (or is running).
    reconcile_started: bool,
}

impl Session {
    /// A session in `Disconnected` with every buffer allocated.
    ///
    /// # Errors
    /// [`SessionError::Config`] for unusable settings (zero-length buffers, a zero ping
    /// interval), [`SessionError::Instrument`] for an impossible instrument capacity.
    pub fn new(config: SessionConfig) -> Result<Session, SessionError> {
        if config.max_records == 0 {
            return Err(SessionError::Config("max_records must be at least 1"));
        }
        if config.ping_after.is_zero() || config.dead_after.is_zero() {
            return Err(SessionError::Config(
                "ping_after and dead_after must be positive",
            ));
        }
        if config.refresh_permille == 0 || config.refresh_permille > 1000 {
            return Err(SessionError::Config("refresh_permille must be in 1..=1000"));
        }
        let mut instruments = InstrumentTable::with_capacity(config.max_instruments)?;
        let mut subs = Vec::with_capacity(MAX_SUBSCRIPTIONS);
        subs.resize_with(MAX_SUBSCRIPTIONS, || None);
        let ocfg = &config.orders;
        if !ocfg.instruments.is_empty() && config.credentials.is_none() {
            return Err(SessionError::Config(
                "orders need credentials (orders.instruments is set)",
            ));
        }
        let (journal, recovery) = match &ocfg.journal {
            Some(jc) if !ocfg.instruments.is_empty() => {
                let (j, r) =
                    Journal::open(jc.clone()).map_err(|e| SessionError::Journal(e.to_string()))?;
                (Some(j), Some(r))
            }
            _ => (None, None),
        };
        let orders = OrderTracker::new(ocfg, &mut instruments, journal, recovery.as_ref())
            .map_err(SessionError::Config)?;
        let mut session = Session {
            backoff: Backoff::new(config.backoff),
            rng: Rng::new(config.seed),
            scratch: vec![MdRecord::default(); config.max_records],
            instruments,
            subs,
            in_flight: [None; MAX_IN_FLIGHT],
            next_id: 1,
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            actions: VecDeque::with_capacity(ACTION_CAPACITY),
            stats: SessionStats::default(),
            state: SessionState::Disconnected,
            timers: TimerTable::default(),
            tests_owed: 0,
            subs_dirty: false,
            want_auth: false,
            want_refresh: false,
            want_heartbeat: false,
            want_logout: false,
            authed: false,
            hold_until: 0,
            last_rx: 0,
            ping_at: 0,
            down_since: None,
            refresh_token: None,
            token_expires_at: 0,
            unix_offset_ms: 0,
            orders,
            reconcile_started: false,
            config,
        };
        if session.orders.enabled() {
            let names: Vec<String> = session
                .orders
                .instrument_names()
                .map(str::to_owned)
                .collect();
            for name in names {
                for kind in ["orders", "trades"] {
                    let channel = format!("user.{kind}.{name}.raw");
                    match session.subscribe(0, &channel) {
                        Ok(()) | Err(SessionError::AlreadySubscribed) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(session)
    }

    // ----- getters -------------------------------------------------------------------------

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The instrument table (names of the ids in records and events).
    pub fn instruments(&self) -> &InstrumentTable {
        &self.instruments
    }

    /// The timer table (for inspection and tests).
    pub fn timers(&self) -> &TimerTable {
        &self.timers
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The order path's counters.
    pub fn order_stats(&self) -> OrderStats {
        self.orders.stats()
    }

    /// Hands each order round trip (an order, cancel or edit written → the venue's answer
    /// decoded, ns on the session's clock) measured since the last call to `f`. At most 64 are
    /// kept between calls (more are counted in [`OrderStats::round_trips_dropped`]): call it
    /// once per loop turn. Allocates nothing.
    pub fn take_order_round_trips(&mut self, f: impl FnMut(u64)) {
        self.orders.take_round_trips(f);
    }

    /// Whether the order path is reconciling (after a reconnect or restart, before `Live`).
    pub fn is_reconciling(&self) -> bool {
        self.orders.reconciling()
    }

    /// Whether the book of `instrument` is current (subscribed, snapshot seen, no gap since).
    pub fn is_book_current(&self, instrument: InstrumentId) -> bool {
        self.subs.iter().flatten().any(|s| {
            s.wanted && s.synced && !s.stale && matches!(s.book, Some((i, _)) if i == instrument)
        })
    }

    /// The tracked channel names (wanted ones).
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> + '_ {
        self.subs
            .iter()
            .flatten()
            .filter(|s| s.wanted)
            .map(|s| s.name.as_str())
    }

    // ----- inputs --------------------------------------------------------------------------

    /// Tells the session the Unix time (ms) at `now`, for `client_signature` timestamps.
    pub fn set_unix_time(&mut self, now: u64, unix_ms: u64) {
        self.unix_offset_ms = unix_ms as i64 - (now / 1_000_000) as i64;
        self.orders.set_unix_offset(self.unix_offset_ms);
    }

    /// A strategy's order request. New orders get a client order id, are journaled and queued;
    /// they go out from [`Session::poll_transmit`] once the session is `Live` and within the
    /// rate limit. Refusals, and everything that happens to the order after, come out of
    /// [`Session::poll_order_event`]. Allocates nothing.
    pub fn handle_order(&mut self, now: u64, request: OrderRequest) {
        self.handle_order_inner(now, request);
        self.sync_order_timer();
    }

    /// See the public method of the same name without `_inner`.
    fn handle_order_inner(&mut self, now: u64, request: OrderRequest) {
        if self.state == SessionState::Failed {
            self.orders.fail(now);
        }
        self.orders.request(now, request);
    }

    /// The next order event (never dropped: they wait here until taken). Taking it here does
    /// not mark it consumed: see [`Session::poll_order_event_seq`].
    #[inline]
    pub fn poll_order_event(&mut self) -> Option<OrderEvent> {
        self.orders.poll_event().map(|(e, _)| e)
    }

    /// The next order event with the journal sequence number of the record that caused it
    /// (for an event with no record of its own, the last record appended before it; 0
    /// without a journal). The numbers never decrease. Once the strategy has taken every
    /// event up to one numbered `n`, pass `n` to [`Session::order_events_consumed`]: after a
    /// crash, the restarted session replays (with `resolved: true`) the events of the
    /// records after the last such mark.
    #[inline]
    pub fn poll_order_event_seq(&mut self) -> Option<(OrderEvent, u64)> {
        self.orders.poll_event()
    }

    /// The strategy has taken every order event whose number
    /// ([`Session::poll_order_event_seq`]) is at most `upto_seq`: journals a `Consumed` mark
    /// when it moved past the last one (nothing without a journal). Call it at most once per
    /// loop turn. Allocates nothing.
    #[inline]
    pub fn order_events_consumed(&mut self, upto_seq: u64) {
        self.orders.consumed(upto_seq);
    }

    /// The last consumed mark journaled (or recovered from the journal); 0: none.
    pub fn order_events_consumed_mark(&self) -> u64 {
        self.orders.consumed_mark()
    }

    /// Starts the session: asks for a connection ([`Action::Connect`]).
    ///
    /// # Errors
    /// [`SessionError::AlreadyStarted`] outside `Disconnected`.
    pub fn connect(&mut self, now: u64) -> Result<(), SessionError> {
        let r = self.connect_inner(now);
        self.sync_order_timer();
        r
    }

    /// See the public method of the same name without `_inner`.
    fn connect_inner(&mut self, now: u64) -> Result<(), SessionError> {
        if self.state != SessionState::Disconnected {
            return Err(SessionError::AlreadyStarted(self.state));
        }
        match self.shared_budget_wait(now) {
            0 => self.start_attempt(now),
            wait => {
                // The venue's shared budget is used up by other sessions: wait for it.
                self.timers.set(Timer::Reconnect, now + wait);
                self.set_state(now, SessionState::Backoff);
            }
        }
        Ok(())
    }

    /// Reports transport progress (TLS handshake, upgrade), for the state's accuracy.
    pub fn handle_transport_phase(&mut self, _now: u64, phase: TransportPhase) {
        if !self.state.is_opening() {
            return;
        }
        let to = match phase {
            TransportPhase::Tls => SessionState::TlsHandshake,
            TransportPhase::WebSocket => SessionState::WsHandshake,
        };
        self.set_state(_now, to);
    }

    /// The WebSocket is open: authenticate (or subscribe, without credentials).
    pub fn handle_connected(&mut self, now: u64) {
        self.handle_connected_inner(now);
        self.sync_order_timer();
    }

    /// See the public method of the same name without `_inner`.
    fn handle_connected_inner(&mut self, now: u64) {
        if !self.state.is_opening() {
            return;
        }
        self.stats.connections += 1;
        self.timers.stop(Timer::Connect);
        self.timers
            .set(Timer::Setup, now + ns(self.config.setup_timeout));
        self.last_rx = now;
        self.timers
            .set(Timer::Idle, now + ns(self.config.ping_after));
        if let Some(r) = self.config.rotate_after {
            self.timers.set(Timer::Rotate, now + ns(r));
        }
        self.push_event(
            now,
            EventKind::Connected {
                connection: self.stats.connections.min(u32::MAX as u64) as u32,
            },
        );
        if self.config.credentials.is_some() {
            self.want_auth = true;
            self.set_state(now, SessionState::Authenticating);
        } else {
            self.want_heartbeat = self.config.heartbeat.is_some();
            self.set_state(now, SessionState::Subscribing);
            self.queue_all_subscriptions();
            self.check_live(now);
        }
    }

    /// Any frame other than a text message arrived (pong, ping, binary): the peer is alive.
    #[inline]
    pub fn handle_activity(&mut self, now: u64) {
        self.last_rx = now;
    }

    /// A text message arrived. Market-data records (book rows, trades) are passed to `sink`,
    /// one call per message, in message order; stale books are never passed.
    pub fn handle_text<F: FnMut(&[MdRecord])>(&mut self, now: u64, text: &str, sink: &mut F) {
        self.handle_text_inner(now, text, sink);
        self.sync_order_timer();
    }

    /// See the public method of the same name without `_inner`.
    fn handle_text_inner<F: FnMut(&[MdRecord])>(&mut self, now: u64, text: &str, sink: &mut F) {
        self.last_rx = now;
        self.stats.messages += 1;
        if !self.state.is_open() {
            return;
        }
        match decode(text, &self.instruments, &mut self.scratch) {
            Err(error) => {
                self.stats.malformed += 1;
                self.push_event(now, EventKind::Malformed { error });
            }
            Ok(Incoming::Book(b)) => self.on_book(now, b, sink),
            Ok(Incoming::Trades(t)) => {
                self.stats.records += t.trades as u64;
                sink(&self.scratch[..t.trades]);
            }
            Ok(Incoming::Heartbeat(HeartbeatKind::TestRequest)) => self.tests_owed += 1,
            Ok(Incoming::Response(r)) => self.on_response(now, r),
            Ok(Incoming::UserOrders { orders, .. }) => {
                self.orders.on_user_orders(now, orders);
                self.check_live(now);
            }
            Ok(Incoming::UserTrades { trades, .. }) => {
                self.orders.on_user_trades(now, trades);
                self.check_live(now);
            }
            Ok(_) => {}
        }
    }

    /// The connection ended (the peer closed it, or it failed). Ignored unless a connection
    /// was current (not after [`Action::Close`]).
    pub fn handle_disconnected(&mut self, now: u64, cause: DisconnectCause) {
        self.handle_disconnected_inner(now, cause);
        self.sync_order_timer();
    }

    /// See the public method of the same name without `_inner`.
    fn handle_disconnected_inner(&mut self, now: u64, cause: DisconnectCause) {
        match self.state {
            SessionState::Disconnected | SessionState::Backoff | SessionState::Failed => {}
            SessionState::Draining => {
                self.reset_connection(now);
                self.stats.disconnects += 1;
                // Whatever ended it (the venue's close after `private/logout`, or a plain
                // close), the connection ended because we logged out.
                let _ = cause;
                self.push_event(
                    now,
                    EventKind::Disconnected {
                        cause: DisconnectCause::Logout,
                    },
                );
                self.timers.stop_all();
                self.set_state(now, SessionState::Disconnected);
            }
            _ if cause == DisconnectCause::Certificate => {
                // Retrying cannot fix a rejected certificate: stop, loudly.
                self.stats.disconnects += 1;
                self.push_event(now, EventKind::Disconnected { cause });
                self.fail_with(now, FatalReason::Certificate, 0);
            }
            _ => self.enter_backoff(now, cause),
        }
    }

    /// Runs every timer due at `now`. Call when [`Session::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: u64) {
        self.handle_timeout_inner(now);
        self.sync_order_timer();
    }

    /// See the public method of the same name without `_inner`.
    fn handle_timeout_inner(&mut self, now: u64) {
        while let Some(t) = self.timers.expired(now) {
            self.on_timer(now, t);
        }
        self.orders.handle_timeout(now);
    }

    /// Subscribes to `channel` (sent now when live, or on the next connection; replayed after
    /// every reconnect).
    ///
    /// # Errors
    /// [`SessionError`]: too many channels, already subscribed, instrument table full.
    pub fn subscribe(&mut self, now: u64, channel: &str) -> Result<(), SessionError> {
        if self.subs.iter().flatten().any(|s| s.name == channel) {
            return Err(SessionError::AlreadySubscribed);
        }
        let slot = self
            .subs
            .iter()
            .position(Option::is_none)
            .ok_or(SessionError::TooManySubscriptions)?;
        let parsed = Channel::parse(channel);
        if let Some(name) = parsed.instrument() {
            if self.instruments.get(name.as_bytes()).is_none() {
                self.instruments.insert(name)?;
            }
        }
        let book = match parsed {
            Channel::Book {
                instrument,
                interval,
            } => self
                .instruments
                .get(instrument.as_bytes())
                .map(|id| (id, interval)),
            _ => None,
        };
        let live = matches!(self.state, SessionState::Subscribing | SessionState::Live);
        self.subs[slot] = Some(Sub {
            name: channel.to_owned(),
            book,
            wanted: true,
            send_sub: live,
            send_unsub: false,
            subscribed: false,
            synced: false,
            stale: false,
            last_change_id: 0,
        });
        self.subs_dirty |= live;
        let _ = now;
        Ok(())
    }

    /// Unsubscribes from `channel` (and stops replaying it).
    ///
    /// # Errors
    /// [`SessionError::NotSubscribed`].
    pub fn unsubscribe(&mut self, now: u64, channel: &str) -> Result<(), SessionError> {
        let _ = now;
        let open = matches!(self.state, SessionState::Subscribing | SessionState::Live);
        let slot = self
            .subs
            .iter_mut()
            .find(|s| matches!(s, Some(s) if s.wanted && s.name == channel))
            .ok_or(SessionError::NotSubscribed)?;
        let sub = slot.as_mut().expect("matched Some");
        sub.wanted = false;
        sub.send_sub = false;
        if open && sub.subscribed {
            sub.send_unsub = true;
            self.subs_dirty = true;
        } else {
            *slot = None;
        }
        Ok(())
    }

    /// The consumer lost `records` records of `instrument` (a full ring): reports it, marks the
    /// instrument's books stale and resubscribes them for a fresh snapshot, so nothing after the
    /// loss is passed off as current.
    pub fn resync_instrument(&mut self, now: u64, instrument: InstrumentId, records: u32) {
        self.push_event(
            now,
            EventKind::RecordsDropped {
                instrument,
                records,
            },
        );
        for s in self.subs.iter_mut().flatten() {
            if s.wanted && matches!(s.book, Some((i, _)) if i == instrument) && !s.stale {
                s.synced = false;
                s.stale = true;
                s.send_unsub = s.subscribed;
                s.send_sub = true;
                self.subs_dirty = true;
            }
        }
    }

    /// Resynchronises the book of a subscribed book `channel` on request (a strategy's
    /// [`Control::Resync`](crate::event_loop::control::Control::Resync)): marks it stale and
    /// resubscribes it for a fresh snapshot ([`EventKind::Resynced`] once it is in).
    ///
    /// # Errors
    /// [`SessionError::NotSubscribed`], [`SessionError::NotABook`].
    pub fn resync(&mut self, now: u64, channel: &str) -> Result<(), SessionError> {
        let _ = now;
        let sub = self
            .subs
            .iter_mut()
            .flatten()
            .find(|s| s.wanted && s.name == channel)
            .ok_or(SessionError::NotSubscribed)?;
        if sub.book.is_none() {
            return Err(SessionError::NotABook);
        }
        if !sub.stale {
            sub.synced = false;
            sub.stale = true;
            sub.send_unsub = sub.subscribed;
            sub.send_sub = true;
            self.subs_dirty = true;
        }
        Ok(())
    }

    /// Reports how a strategy's control command ended, as an [`EventKind::Control`] event.
    pub fn report_control(
        &mut self,
        now: u64,
        tag: u32,
        command: crate::event_loop::control::ControlKind,
        outcome: crate::event_loop::control::ControlOutcome,
    ) {
        self.push_event(
            now,
            EventKind::Control {
                tag,
                command,
                outcome,
            },
        );
    }

    /// Graceful stop: `private/logout` when authenticated, then close; no reconnect. The
    /// session ends in `Disconnected`.
    pub fn logout(&mut self, now: u64) {
        self.logout_inner(now);
        self.sync_order_timer();
    }

    /// See the public method of the same name without `_inner`.
    fn logout_inner(&mut self, now: u64) {
        match self.state {
            SessionState::Disconnected | SessionState::Failed | SessionState::Draining => {}
            SessionState::Backoff => {
                self.timers.stop_all();
                self.set_state(now, SessionState::Disconnected);
            }
            s if s.is_opening() => {
                self.actions
                    .push_back(Action::Close(DisconnectCause::Logout));
                self.reset_connection(now);
                self.timers.stop_all();
                self.set_state(now, SessionState::Disconnected);
            }
            _ if self.authed => {
                self.timers.stop_all();
                self.timers
                    .set(Timer::Drain, now + ns(self.config.drain_timeout));
                self.want_logout = true;
                self.set_state(now, SessionState::Draining);
            }
            _ => {
                // Nothing to log out of: the close frame goes out and the connection ends now
                // (the driver does not wait for the peer's close reply), so the session is
                // done at once rather than after the drain timeout.
                self.actions
                    .push_back(Action::Close(DisconnectCause::Logout));
                self.reset_connection(now);
                self.timers.stop_all();
                self.set_state(now, SessionState::Disconnected);
            }
        }
    }

    // ----- outputs -------------------------------------------------------------------------

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The earliest timer deadline, ns: call [`Session::handle_timeout`] once it has passed.
    pub fn poll_timeout(&self) -> Option<u64> {
        // The order tracker's wake-up is mirrored into the table as `Timer::Orders` at the end
        // of every call that can move it (`sync_order_timer`): one source of deadlines.
        debug_assert_eq!(
            self.timers.get(Timer::Orders),
            self.orders.poll_timeout(),
            "the order timer is out of step with the tracker"
        );
        self.timers.next_timeout()
    }

    /// Mirrors the order tracker's next wake-up into the timer table ([`Timer::Orders`]).
    #[inline]
    fn sync_order_timer(&mut self) {
        match self.orders.poll_timeout() {
            Some(at) => self.timers.set(Timer::Orders, at),
            None => self.timers.stop(Timer::Orders),
        }
    }

    /// Encodes the next text message to send into `buf` and returns its length; `None` when
    /// there is nothing to send. Answers to `test_request` come first. Lend at least 4 KiB: a
    /// request that does not fit is dropped with [`EventKind::RequestFailed`] (code 0).
    pub fn poll_transmit(&mut self, now: u64, buf: &mut [u8]) -> Option<usize> {
        let r = self.poll_transmit_inner(now, buf);
        self.sync_order_timer();
        r
    }

    /// See the public method of the same name without `_inner`.
    fn poll_transmit_inner(&mut self, now: u64, buf: &mut [u8]) -> Option<usize> {
        if !self.state.is_open() {
            return None;
        }
        if self.tests_owed > 0 {
            let id = self.take_id();
            if let Ok(n) = Request::Test.encode(id, buf) {
                self.tests_owed -= 1;
                self.stats.tests_answered += 1;
                return Some(n);
            }
            self.tests_owed = 0;
        }
        if now < self.hold_until {
            return None;
        }
        if self.want_logout {
            self.want_logout = false;
            let id = self.take_id();
            let r = Request::Logout {
                invalidate_token: true,
            }
            .encode(id, buf);
            return self.sent(now, r, None, RequestKind::Logout);
        }
        if self.state == SessionState::Draining {
            return None;
        }
        if self.want_auth {
            return self.transmit_auth(now, buf);
        }
        if !matches!(self.state, SessionState::Subscribing | SessionState::Live) {
            return None;
        }
        if self.want_refresh {
            if let Some(token) = &self.refresh_token {
                let id = self.next_id;
                let session = self
                    .config
                    .credentials
                    .as_ref()
                    .and_then(|c| c.session.as_deref());
                let r = Request::AuthRefreshToken {
                    refresh_token: token,
                    session,
                }
                .encode(id, buf);
                self.want_refresh = false;
                self.next_id += 1;
                return self.sent(now, r, Some((id, Pending::Refresh)), RequestKind::Refresh);
            }
            self.want_refresh = false;
        }
        if self.want_heartbeat {
            self.want_heartbeat = false;
            if let Some(interval) = self.config.heartbeat {
                let id = self.take_id();
                let r = Request::SetHeartbeat { interval }.encode(id, buf);
                return self.sent(
                    now,
                    r,
                    Some((id, Pending::SetHeartbeat)),
                    RequestKind::SetHeartbeat,
                );
            }
        }
        let live = self.state == SessionState::Live;
        if live && self.authed {
            // Orders first when live (the latency that matters); subscription changes after.
            if let Some(n) = self.orders.transmit(now, buf, &self.instruments, true) {
                return Some(n);
            }
        }
        if self.subs_dirty {
            for unsub in [true, false] {
                if let Some(n) = self.transmit_batch(now, buf, unsub) {
                    return Some(n);
                }
            }
            self.subs_dirty = false;
        }
        if !live && self.authed {
            // Reconciliation (after the subscriptions, so no notification is missed).
            return self.orders.transmit(now, buf, &self.instruments, false);
        }
        None
    }

    // ----- internals -----------------------------------------------------------------------

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Bookkeeping after encoding a request.
    fn sent(
        &mut self,
        now: u64,
        r: Result<usize, crate::venue::deribit::EncodeError>,
        pending: Option<(u64, Pending)>,
        kind: RequestKind,
    ) -> Option<usize> {
        match r {
            Ok(n) => {
                if let Some(p) = pending {
                    self.track(p);
                }
                Some(n)
            }
            Err(_) => {
                self.push_event(
                    now,
                    EventKind::RequestFailed {
                        request: kind,
                        code: 0,
                    },
                );
                None
            }
        }
    }

    fn track(&mut self, p: (u64, Pending)) {
        if let Some(slot) = self.in_flight.iter_mut().find(|s| s.is_none()) {
            *slot = Some(p);
        } else {
            // Full: the oldest entry is forgotten (its answer will be ignored). With at most a
            // handful of requests per connection this does not happen in practice.
            self.in_flight.rotate_left(1);
            self.in_flight[MAX_IN_FLIGHT - 1] = Some(p);
        }
    }

    fn untrack(&mut self, id: u64) -> Option<Pending> {
        let slot = self
            .in_flight
            .iter_mut()
            .find(|s| matches!(s, Some((i, _)) if *i == id))?;
        slot.take().map(|(_, p)| p)
    }

    fn transmit_auth(&mut self, now: u64, buf: &mut [u8]) -> Option<usize> {
        let creds = self.config.credentials.as_ref()?;
        let session = creds.session.as_deref();
        let id = self.next_id;
        let resume = self.refresh_token.is_some() && now < self.token_expires_at;
        let r = if resume {
            let token = self.refresh_token.as_ref()?;
            Request::AuthRefreshToken {
                refresh_token: token,
                session,
            }
            .encode(id, buf)
        } else {
            match creds.method {
                AuthMethod::ClientCredentials => Request::AuthClientCredentials {
                    client_id: &creds.client_id,
                    client_secret: &creds.client_secret,
                    session,
                }
                .encode(id, buf),
                AuthMethod::ClientSignature => {
                    let mut nonce = [0u8; 16];
                    hex16(self.rng.next_u64(), &mut nonce);
                    let nonce = std::str::from_utf8(&nonce).unwrap_or("0000000000000000");
                    let ts = ((now / 1_000_000) as i64 + self.unix_offset_ms).max(0) as u64;
                    Request::AuthClientSignature {
                        client_id: &creds.client_id,
                        client_secret: &creds.client_secret,
                        timestamp_ms: ts,
                        nonce,
                        data: "",
                        session,
                    }
                    .encode(id, buf)
                }
            }
        };
        self.next_id += 1;
        self.want_auth = false;
        self.sent(
            now,
            r,
            Some((id, Pending::Auth { refresh: resume })),
            RequestKind::Auth,
        )
    }

    /// One subscribe (or unsubscribe) request for up to [`MAX_BATCH`] pending channels.
    fn transmit_batch(&mut self, now: u64, buf: &mut [u8], unsub: bool) -> Option<usize> {
        let id = self.next_id;
        let mut mask = 0u64;
        let r = {
            let mut channels = [Channel::Other(""); MAX_BATCH];
            let mut k = 0;
            for (i, s) in self.subs.iter().enumerate() {
                let Some(s) = s else { continue };
                let want = if unsub {
                    s.send_unsub
                } else {
                    s.send_sub && !s.send_unsub
                };
                if want && k < MAX_BATCH {
                    channels[k] = Channel::parse(&s.name);
                    k += 1;
                    mask |= 1 << i;
                }
            }
            if k == 0 {
                return None;
            }
            if unsub {
                Request::Unsubscribe {
                    channels: &channels[..k],
                }
                .encode(id, buf)
            } else {
                Request::Subscribe {
                    channels: &channels[..k],
                }
                .encode(id, buf)
            }
        };
        self.next_id += 1;
        for (i, s) in self.subs.iter_mut().enumerate() {
            if let Some(s) = s {
                if mask & (1 << i) != 0 {
                    if unsub {
                        s.send_unsub = false;
                    } else {
                        s.send_sub = false;
                    }
                }
            }
        }
        let (pending, kind) = if unsub {
            (Pending::Unsubscribe(mask), RequestKind::Unsubscribe)
        } else {
            (Pending::Subscribe(mask), RequestKind::Subscribe)
        };
        self.sent(now, r, Some((id, pending)), kind)
    }

    fn on_book<F: FnMut(&[MdRecord])>(&mut self, now: u64, b: BookUpdate, sink: &mut F) {
        let Some(sub) = self.subs.iter_mut().flatten().find(|s| {
            s.wanted && matches!(s.book, Some((i, iv)) if i == b.instrument && iv == b.interval)
        }) else {
            self.stats.stale_dropped += 1;
            return;
        };
        if b.snapshot {
            sub.synced = true;
            sub.last_change_id = b.change_id;
            let was_stale = sub.stale;
            sub.stale = false;
            self.stats.records += b.rows as u64;
            sink(&self.scratch[..b.rows]);
            if was_stale {
                self.push_event(
                    now,
                    EventKind::Resynced {
                        instrument: b.instrument,
                    },
                );
            }
        } else if !sub.synced {
            self.stats.stale_dropped += 1;
        } else if b.prev_change_id == sub.last_change_id {
            sub.last_change_id = b.change_id;
            self.stats.records += b.rows as u64;
            sink(&self.scratch[..b.rows]);
        } else {
            let expected_prev = sub.last_change_id;
            sub.synced = false;
            sub.stale = true;
            // Resync: unsubscribe, then subscribe again for a fresh snapshot.
            sub.send_unsub = sub.subscribed;
            sub.send_sub = true;
            self.subs_dirty = true;
            self.stats.gaps += 1;
            self.stats.stale_dropped += 1;
            self.push_event(
                now,
                EventKind::Gap {
                    instrument: b.instrument,
                    expected_prev,
                    got_prev: b.prev_change_id,
                },
            );
        }
    }

    fn on_response(&mut self, now: u64, r: Response<'_>) {
        let Some(id) = r.id else { return };
        let Some(pending) = self.untrack(id) else {
            self.on_order_response(now, id, r);
            return;
        };
        match (pending, r.outcome) {
            (Pending::Auth { refresh }, Ok(v)) => match AuthResult::from_value(v) {
                Ok(a) => {
                    self.store_tokens(now, &a);
                    self.authed = true;
                    self.push_event(
                        now,
                        EventKind::Authenticated {
                            expires_in_s: a.expires_in,
                            resumed: refresh,
                        },
                    );
                    if self.state == SessionState::Authenticating {
                        self.want_heartbeat = self.config.heartbeat.is_some();
                        self.set_state(now, SessionState::Subscribing);
                        self.queue_all_subscriptions();
                        self.check_live(now);
                    }
                }
                Err(error) => {
                    self.stats.malformed += 1;
                    self.push_event(now, EventKind::Malformed { error });
                    self.fail_connection(now, DisconnectCause::BadResponse);
                }
            },
            (Pending::Auth { refresh }, Err(e)) => {
                if e.code == error_code::TOO_MANY_REQUESTS {
                    self.rate_limited(now, RequestKind::Auth);
                    self.want_auth = true;
                } else if refresh {
                    // The session could not be resumed: authenticate from scratch.
                    self.refresh_token = None;
                    self.push_event(now, EventKind::TokenRefreshFailed { code: e.code });
                    self.want_auth = true;
                } else if self.is_fatal(e.code) {
                    self.fatal(now, e.code);
                } else {
                    self.push_event(
                        now,
                        EventKind::RequestFailed {
                            request: RequestKind::Auth,
                            code: e.code,
                        },
                    );
                    self.fail_connection(now, DisconnectCause::AuthRejected);
                }
            }
            (Pending::Refresh, Ok(v)) => match AuthResult::from_value(v) {
                Ok(a) => {
                    self.store_tokens(now, &a);
                    self.push_event(
                        now,
                        EventKind::TokenRefreshed {
                            expires_in_s: a.expires_in,
                        },
                    );
                }
                Err(error) => {
                    self.stats.malformed += 1;
                    self.push_event(now, EventKind::Malformed { error });
                    self.want_refresh = true;
                }
            },
            (Pending::Refresh, Err(e)) => {
                if e.code == error_code::TOO_MANY_REQUESTS {
                    self.rate_limited(now, RequestKind::Refresh);
                    self.want_refresh = true;
                } else {
                    // Refresh token refused: re-authenticate on this connection with the
                    // credentials (the subscriptions stay).
                    self.refresh_token = None;
                    self.push_event(now, EventKind::TokenRefreshFailed { code: e.code });
                    self.reauth_in_place(now);
                }
            }
            (Pending::SetHeartbeat, Ok(_)) => {}
            (Pending::SetHeartbeat, Err(e)) => {
                if e.code == error_code::TOO_MANY_REQUESTS {
                    self.rate_limited(now, RequestKind::SetHeartbeat);
                    self.want_heartbeat = true;
                } else {
                    self.push_event(
                        now,
                        EventKind::RequestFailed {
                            request: RequestKind::SetHeartbeat,
                            code: e.code,
                        },
                    );
                }
            }
            (Pending::Subscribe(mask), Ok(_)) => {
                let mut n = 0u32;
                for (i, s) in self.subs.iter_mut().enumerate() {
                    if let Some(s) = s {
                        if mask & (1 << i) != 0 && s.wanted {
                            s.subscribed = true;
                            n += 1;
                        }
                    }
                }
                self.push_event(now, EventKind::Subscribed { channels: n });
                self.check_live(now);
            }
            (Pending::Subscribe(mask), Err(e)) => {
                let retry = e.code == error_code::TOO_MANY_REQUESTS;
                if retry {
                    self.rate_limited(now, RequestKind::Subscribe);
                } else if self.is_fatal(e.code) {
                    self.fatal(now, e.code);
                    return;
                } else {
                    self.push_event(
                        now,
                        EventKind::RequestFailed {
                            request: RequestKind::Subscribe,
                            code: e.code,
                        },
                    );
                }
                for (i, slot) in self.subs.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 {
                        if retry {
                            if let Some(s) = slot {
                                s.send_sub = s.wanted;
                                self.subs_dirty = true;
                            }
                        } else {
                            // Refused: the channel is dropped (reported above).
                            *slot = None;
                        }
                    }
                }
                self.check_live(now);
            }
            (Pending::Unsubscribe(mask), outcome) => {
                if let Err(e) = outcome {
                    if e.code == error_code::TOO_MANY_REQUESTS {
                        self.rate_limited(now, RequestKind::Unsubscribe);
                        for (i, s) in self.subs.iter_mut().enumerate() {
                            if let Some(s) = s {
                                if mask & (1 << i) != 0 {
                                    s.send_unsub = true;
                                    self.subs_dirty = true;
                                }
                            }
                        }
                        return;
                    }
                    self.push_event(
                        now,
                        EventKind::RequestFailed {
                            request: RequestKind::Unsubscribe,
                            code: e.code,
                        },
                    );
                }
                for (i, slot) in self.subs.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 {
                        match slot {
                            Some(s) if s.wanted => s.subscribed = false,
                            _ => *slot = None,
                        }
                    }
                }
            }
        }
    }

    fn on_order_response(&mut self, now: u64, id: u64, r: Response<'_>) {
        match self.orders.on_response(now, id, r.outcome) {
            Handled::NotOurs | Handled::Done => {}
            Handled::RateLimited => self.rate_limited(now, RequestKind::Order),
            Handled::Unauthorized => {
                // The token is no longer valid: authenticate again on this connection; the
                // order path waits until then.
                self.authed = false;
                self.want_auth = self.config.credentials.is_some();
                self.push_event(
                    now,
                    EventKind::RequestFailed {
                        request: RequestKind::Order,
                        code: error_code::UNAUTHORIZED,
                    },
                );
            }
            Handled::CodFailed(code) => self.push_event(
                now,
                EventKind::RequestFailed {
                    request: RequestKind::CancelOnDisconnect,
                    code,
                },
            ),
            Handled::QueryFailed(code) => self.push_event(
                now,
                EventKind::RequestFailed {
                    request: RequestKind::OrderQuery,
                    code,
                },
            ),
        }
        self.check_live(now);
    }

    fn on_timer(&mut self, now: u64, t: Timer) {
        match t {
            Timer::Connect => {
                if self.state.is_opening() {
                    self.fail_connection(now, DisconnectCause::ConnectTimeout);
                }
            }
            Timer::Setup => {
                if matches!(
                    self.state,
                    SessionState::Authenticating | SessionState::Subscribing
                ) {
                    self.fail_connection(now, DisconnectCause::SetupTimeout);
                }
            }
            Timer::Idle => {
                if !self.state.is_open() {
                    return;
                }
                let quiet_until = self.last_rx + ns(self.config.ping_after);
                if quiet_until > now {
                    self.timers.set(Timer::Idle, quiet_until);
                } else {
                    self.stats.heartbeat_misses += 1;
                    self.ping_at = now;
                    self.actions.push_back(Action::Ping);
                    self.timers
                        .set(Timer::DeadPeer, now + ns(self.config.dead_after));
                    self.push_event(now, EventKind::HeartbeatMissed);
                }
            }
            Timer::DeadPeer => {
                if !self.state.is_open() {
                    return;
                }
                if self.last_rx > self.ping_at {
                    self.timers
                        .set(Timer::Idle, self.last_rx + ns(self.config.ping_after));
                } else {
                    self.fail_connection(now, DisconnectCause::DeadPeer);
                }
            }
            Timer::TokenRefresh => {
                if self.state.is_open() && self.authed {
                    self.want_refresh = true;
                }
            }
            Timer::Reconnect => {
                if self.state == SessionState::Backoff {
                    // Another session may have used the shared budget meanwhile.
                    match self.shared_budget_wait(now) {
                        0 => self.start_attempt(now),
                        wait => self.timers.set(Timer::Reconnect, now + wait),
                    }
                }
            }
            Timer::Stable => self.backoff.reset(),
            Timer::Retry => {}
            Timer::Drain => {
                if self.state == SessionState::Draining {
                    self.actions
                        .push_back(Action::Close(DisconnectCause::Logout));
                    self.reset_connection(now);
                    self.timers.stop_all();
                    self.set_state(now, SessionState::Disconnected);
                }
            }
            // The tracker's own timeout runs after every expired timer (`handle_timeout`).
            Timer::Orders => {}
            Timer::Rotate => {
                if self.state.is_open() && self.state != SessionState::Draining {
                    self.actions
                        .push_back(Action::Close(DisconnectCause::Rotation));
                    self.lose_connection(now, DisconnectCause::Rotation);
                    // A planned replacement: reconnect now, not counted as a failure.
                    self.backoff.record_attempt(now);
                    self.timers.set(Timer::Reconnect, now);
                    self.set_state(now, SessionState::Backoff);
                }
            }
        }
    }

    fn start_attempt(&mut self, now: u64) {
        self.backoff.record_attempt(now);
        if let Some(b) = &self.config.connection_budget {
            b.record_ms(self.unix_ms(now));
        }
        self.timers.stop(Timer::Reconnect);
        self.timers
            .set(Timer::Connect, now + ns(self.config.connect_timeout));
        self.actions.push_back(Action::Connect);
        self.set_state(now, SessionState::Connecting);
    }

    /// The session drops the connection itself: tell the driver, then back off.
    fn fail_connection(&mut self, now: u64, cause: DisconnectCause) {
        self.actions.push_back(Action::Close(cause));
        self.enter_backoff(now, cause);
    }

    /// Forgets the connection's state and reports the drop.
    fn lose_connection(&mut self, now: u64, cause: DisconnectCause) {
        self.stats.disconnects += 1;
        self.reset_connection(now);
        let refresh_at = self.timers.get(Timer::TokenRefresh);
        self.timers.stop_all();
        if let Some(at) = refresh_at {
            self.timers.set(Timer::TokenRefresh, at);
        }
        if self.down_since.is_none() {
            self.down_since = Some(now);
        }
        self.push_event(now, EventKind::Disconnected { cause });
    }

    /// Unix ms at `now` (from [`Session::set_unix_time`]).
    fn unix_ms(&self, now: u64) -> u64 {
        ((now / 1_000_000) as i64 + self.unix_offset_ms).max(0) as u64
    }

    /// How long the shared connection budget makes an attempt at `now` wait, ns.
    fn shared_budget_wait(&self, now: u64) -> u64 {
        self.config.connection_budget.as_ref().map_or(0, |b| {
            let at = self.unix_ms(now);
            b.free_at_ms(at)
                .saturating_sub(at)
                .saturating_mul(1_000_000)
        })
    }

    fn enter_backoff(&mut self, now: u64, cause: DisconnectCause) {
        self.lose_connection(now, cause);
        let delay = self
            .backoff
            .next_delay(now, &mut self.rng)
            .max(self.shared_budget_wait(now));
        self.timers.set(Timer::Reconnect, now + delay);
        self.set_state(now, SessionState::Backoff);
        self.push_event(
            now,
            EventKind::Reconnecting {
                attempt: self.backoff.failures(),
                delay_ns: delay,
            },
        );
    }

    fn reset_connection(&mut self, now: u64) {
        self.orders.on_disconnect(now);
        self.reconcile_started = false;
        self.in_flight = [None; MAX_IN_FLIGHT];
        self.tests_owed = 0;
        self.want_auth = false;
        self.want_refresh = false;
        self.want_heartbeat = false;
        self.want_logout = false;
        self.authed = false;
        self.hold_until = 0;
        for slot in self.subs.iter_mut() {
            if let Some(s) = slot {
                if !s.wanted {
                    *slot = None;
                    continue;
                }
                s.subscribed = false;
                s.synced = false;
                s.send_sub = false;
                s.send_unsub = false;
            }
        }
    }

    fn queue_all_subscriptions(&mut self) {
        for s in self.subs.iter_mut().flatten() {
            s.send_sub = s.wanted;
            self.subs_dirty = true;
            s.send_unsub = false;
        }
    }

    fn reauth_in_place(&mut self, now: u64) {
        // Re-authentication with the credentials on the live connection: the state and the
        // subscriptions stay; a refusal is handled like the first auth's (fatal or reconnect).
        if self.config.credentials.is_some() {
            self.want_auth = true;
        }
        let _ = now;
    }

    fn check_live(&mut self, now: u64) {
        if self.state != SessionState::Subscribing {
            return;
        }
        let waiting_sub = self
            .in_flight
            .iter()
            .flatten()
            .any(|(_, p)| matches!(p, Pending::Subscribe(_)));
        let unsent = self.subs.iter().flatten().any(|s| s.wanted && s.send_sub);
        if waiting_sub || unsent {
            return;
        }
        // Orders: reconcile (cancel-on-disconnect armed, unknown orders resolved, gap fills
        // fetched) before going live, with the user channels already subscribed.
        if self.orders.enabled() {
            if !self.reconcile_started {
                self.reconcile_started = true;
                self.orders.begin_reconcile();
            }
            if self.orders.reconciling() {
                return;
            }
        }
        self.timers.stop(Timer::Setup);
        self.timers
            .set(Timer::Stable, now + ns(self.config.backoff.reset_after));
        let downtime_ns = self.down_since.take().map_or(0, |d| now.saturating_sub(d));
        self.set_state(now, SessionState::Live);
        self.push_event(now, EventKind::Live { downtime_ns });
    }

    fn store_tokens(&mut self, now: u64, a: &AuthResult<'_>) {
        self.refresh_token = Some(a.refresh_token.to_secret());
        let life = a.expires_in.saturating_mul(1_000_000_000);
        self.token_expires_at = now.saturating_add(life);
        let at = now.saturating_add(life / 1000 * self.config.refresh_permille as u64);
        self.timers.set(Timer::TokenRefresh, at);
    }

    fn rate_limited(&mut self, now: u64, request: RequestKind) {
        self.hold_until = now + ns(self.config.rate_limit_retry);
        self.timers.set(Timer::Retry, self.hold_until);
        self.push_event(now, EventKind::RateLimited { request });
    }

    fn is_fatal(&self, code: i64) -> bool {
        code == error_code::INVALID_CREDENTIALS
            || (code != 0 && self.config.fatal_codes.contains(&code))
    }

    fn fatal(&mut self, now: u64, code: i64) {
        let reason = if code == error_code::INVALID_CREDENTIALS {
            FatalReason::InvalidCredentials
        } else {
            FatalReason::Rejected
        };
        self.fail_with(now, reason, code);
    }

    fn fail_with(&mut self, now: u64, reason: FatalReason, code: i64) {
        self.actions
            .push_back(Action::Close(DisconnectCause::Fatal));
        self.reset_connection(now);
        self.timers.stop_all();
        self.push_event(now, EventKind::Fatal { reason, code });
        self.set_state(now, SessionState::Failed);
        self.orders.fail(now);
    }

    fn set_state(&mut self, now: u64, to: SessionState) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.push_event(now, EventKind::StateChanged { from, to });
    }

    fn push_event(&mut self, now: u64, kind: EventKind) {
        if self.events.len() >= EVENT_CAPACITY {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(SessionEvent { at_ns: now, kind });
    }
}

/// A duration in ns (saturating).
#[inline]
fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Writes `v` as 16 lower-case hex digits.
fn hex16(v: u64, out: &mut [u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xF) as usize];
    }
}
