//! The Deribit venue simulator: a JSON-RPC 2.0 exchange over `ws://` and `wss://` on
//! `/ws/api/v2`, with a synthetic market, price-time matching, a ledger, and fault injection.
//!
//! It is a test peer and a demo partner for spinwire, not part of the engine: one thread per
//! connection with non-blocking sockets, a market-data generator thread, and one mutex around
//! the venue state. Run it as `spinwire sim ...` or in-process:
//!
//! ```no_run
//! use spinwire_tools::sim::{SimConfig, Simulator};
//! let mut cfg = SimConfig::default();
//! cfg.credentials.push(("client".into(), "secret".into()));
//! let sim = Simulator::start(cfg).expect("simulator starts");
//! println!("ws://{}/ws/api/v2", sim.local_addr());
//! let ledger = sim.shutdown();
//! assert!(ledger.entries.is_empty());
//! ```
//!
//! # Protocol
//! Requests are `{"jsonrpc":"2.0","id":..,"method":..,"params":{..}}`; every response carries
//! `jsonrpc`, `id`, `result` or `error {code, message, data?}`, `usIn`, `usOut`, `usDiff` and
//! `testnet`. Methods: `public/auth` (grant types `client_credentials`, `client_signature`
//! = hex HMAC-SHA256(secret, "{timestamp}\n{nonce}\n{data}"), `refresh_token`; scope
//! `session:NAME` makes tokens survive reconnects), `public/get_time`, `public/test`,
//! `public/hello`, `public/set_heartbeat`, `public/disable_heartbeat`,
//! `public/subscribe`/`private/subscribe`, `public/unsubscribe`/`private/unsubscribe`,
//! `public/unsubscribe_all`/`private/unsubscribe_all`, `private/logout` (no answer; the
//! connection closes and cancel-on-disconnect does not fire), `private/buy`, `private/sell`,
//! `private/edit`, `private/cancel`, `private/cancel_all`, `private/cancel_all_by_instrument`,
//! `private/cancel_by_label`, `private/get_open_orders_by_label`,
//! `private/get_order_state_by_label`, `private/get_order_state`,
//! `private/get_open_orders_by_instrument`, `private/get_user_trades_by_instrument`,
//! `private/get_position`, `private/enable_cancel_on_disconnect`,
//! `private/disable_cancel_on_disconnect`, `private/get_cancel_on_disconnect`.
//!
//! Tokens: an access token is valid for [`SimConfig::token_ttl`] (`expires_in`, rounded up to
//! whole seconds), then private calls with it get 13009 `token_expired`. A refresh token is
//! good for one `grant_type=refresh_token` within [`SimConfig::refresh_ttl`]; the new pair
//! replaces the old one (the old access token gets 13009 at once) and keeps its
//! `session:NAME`. Connection-scoped access tokens die with their connection; session-scoped
//! ones work on any connection until they expire, so a client resumes its session with either.
//! `private/logout` with `invalidate_token` (default true) kills the connection's tokens.
//! Expired tokens are forgotten lazily on a later `public/auth` (at most once a second, or
//! when the token maps have doubled), so reconnect and refresh loops do not grow memory.
//!
//! Channels: `book.{instrument}.raw` and `.100ms` (a `snapshot` first, then `change`
//! notifications with `change_id`/`prev_change_id` and rows `[action, price, amount]`),
//! `trades.{instrument}.raw` and `.100ms`, `user.orders.{instrument}.raw`,
//! `user.trades.{instrument}.raw`. Raw channels need an authorized connection (13778), as on
//! Deribit. Every book and trade notification carries `sw_send_ns`, the venue's wall clock in
//! nanoseconds when the message was encoded: in `params.data` for books, in each trade object
//! for trades (an extension that clients may ignore).
//!
//! Heartbeats: after `public/set_heartbeat {interval}` (seconds, at least
//! [`SimConfig::min_heartbeat`], 10 s by default as on Deribit; fractions are accepted when the
//! minimum is lowered) the venue sends `{"method":"heartbeat","params":{"type":"test_request"}}`
//! every interval; if no `public/test` arrived by the next interval the connection is closed
//! (cancel-on-disconnect fires).
//!
//! Limits: a per-connection request rate (token bucket, [`SimConfig::request_rate`]; excess
//! requests get 10028 `too_many_requests`) and a per-IP connection limit
//! ([`SimConfig::max_conns_per_ip`]; excess upgrades get HTTP 429).
//!
//! # Market and matching
//! Each instrument has a synthetic book (BTC: tick 0.5, contract 10; ETH: tick 0.05,
//! contract 1; others: tick 0.01, contract 1) that moves at [`SimConfig::rate`] events per
//! second in total: level updates, mid moves and trades. User orders rest in the same
//! price-time book (synthetic liquidity first at a price) and are visible in the public book.
//! Resting user orders fill when synthetic trades reach them or the synthetic market moves
//! through their price. `post_only` orders that would cross are repriced one tick inside the
//! spread, or rejected with 11054 when `reject_post_only` is true (Deribit's rule).
//! `reduce_only` orders that would not reduce the position are rejected with 11030.
//!
//! # Faults
//! `--faults SPEC` and [`SimHandle::inject`] / [`SimHandle::schedule`]. Grammar:
//!
//! ```text
//! SPEC  := RULE (';' RULE)*
//! RULE  := FAULT ['(' KEY=VALUE (',' KEY=VALUE)* ')'] ['@' COND (',' COND)*]
//! COND  := after=N        fire once N messages were sent on the connection
//!        | orders=N       fire once N order requests (buy, sell, edit, cancels) were
//!                         received on the connection (checked right after each one)
//!        | at=DUR         fire at DUR after the simulator started
//!        | every=DUR      fire every DUR (first DUR after the connection opened)
//!        | p=X            fire with probability X at each check (every loop turn, >= 1/ms)
//!        | times=N        at most N times per connection (default 1; unlimited with every/p)
//!        | conn=N|all     only the N-th accepted connection (1-based), or every connection
//! DUR   := NUMBER ('us' | 'ms' | 's')
//! FAULT := rst | fin | halfopen | stall(for=DUR) | delay(d=DUR,jitter=DUR,for=DUR)
//!        | burst(x=F,for=DUR)
//!        | gap | ignore_test | withhold(exec=0|1) | withhold_cancel(exec=0|1)
//!        | withhold_edit(exec=0|1) | fillgap | reject_auth | expire
//!        | throttle | malformed | oversized | bad_utf8 | bad_json | tls_no_close_notify
//! ```
//!
//! `rst`: TCP reset. `fin`: orderly close without a WebSocket close frame. `halfopen`: stop
//! reading and writing, keep the socket. `stall`: stop reading and writing for DUR (default
//! 1 s), then carry on: requests received before (even from a client that gave up and closed
//! meanwhile) are executed late. `delay`: hold output back. `burst`: multiply the
//! market-data rate. `gap`: skip one book change. `ignore_test`: swallow the next
//! `public/test`. `withhold`: execute (exec=1) or not (exec=0) the next order, never answer it,
//! reset the connection. `withhold_cancel` / `withhold_edit`: the same for the next cancel
//! (`private/cancel`, `cancel_by_label`, `cancel_all`, `cancel_all_by_instrument`) or
//! `private/edit` (a cancel or edit not executed is recorded as
//! [`LedgerEntry::RequestDropped`]). `fillgap`: when the connection closes, fill the account's resting
//! orders (before cancel-on-disconnect). `reject_auth`: next `public/auth` gets 13004.
//! `expire`: the connection's tokens expire now. `throttle`: next request gets 10028.
//! `malformed`/`oversized`/`bad_utf8`/`bad_json`: a broken frame or message.
//! `tls_no_close_notify`: TCP close without TLS close_notify. Example:
//! `rst@after=500;gap@every=2s;delay(d=20ms,jitter=5ms,for=1s)@at=3s,conn=1`.

pub mod check;
mod conn;
pub mod faults;
pub mod fmt;
pub mod ledger;
pub mod market;
pub mod rpc;
mod server;
pub mod tls;
pub mod transport;
pub mod venue;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use faults::{FaultKind, FaultRule, Schedule, Target};
pub use ledger::{Ledger, LedgerEntry};
pub use server::{SimHandle, SimStats, Simulator};
pub use tls::TlsSetup;

/// Request-rate limit of one connection: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_sec: f64,
    /// Bucket size (requests allowed at once).
    pub burst: f64,
}

/// Everything the simulator is started with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// TLS (`wss`) or plain (`ws`) when `None`.
    pub tls: Option<TlsSetup>,
    /// Market-data events per second, all instruments together (0: a still market).
    pub rate: u64,
    /// Instruments traded.
    pub instruments: Vec<String>,
    /// Accepted `(client_id, client_secret)` pairs.
    pub credentials: Vec<(String, String)>,
    /// Fault rules in force from the start.
    pub faults: Vec<FaultRule>,
    /// Where `spinwire sim` writes the ledger on shutdown.
    pub ledger_path: Option<PathBuf>,
    /// Seed of every random choice (market, jitter, `p=` faults).
    pub seed: u64,
    /// Access-token lifetime.
    pub token_ttl: Duration,
    /// Refresh-token lifetime: an unused refresh token is refused (13004) and forgotten after
    /// it (the longer of this and `token_ttl` is used, so a client can always resume while
    /// its access token is valid).
    pub refresh_ttl: Duration,
    /// Smallest `public/set_heartbeat` interval accepted (Deribit: 10 s).
    pub min_heartbeat: Duration,
    /// Per-connection request rate limit.
    pub request_rate: RateLimit,
    /// Most simultaneous connections from one IP address (Deribit: 32).
    pub max_conns_per_ip: usize,
    /// Synthetic levels per book side.
    pub depth: usize,
    /// Largest WebSocket message accepted from a client.
    pub max_message: usize,
    /// Market-data events retained for slow readers; a connection that falls further behind
    /// is closed (1008 "slow consumer").
    pub log_capacity: usize,
    /// Allowed clock distance of a `client_signature` timestamp.
    pub signature_window: Duration,
    /// Value of the `testnet` field in responses.
    pub testnet: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            rate: 1000,
            instruments: vec!["BTC-PERPETUAL".into(), "ETH-PERPETUAL".into()],
            credentials: Vec::new(),
            faults: Vec::new(),
            ledger_path: None,
            seed: 1,
            token_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(3600),
            min_heartbeat: Duration::from_secs(10),
            request_rate: RateLimit {
                per_sec: 100.0,
                burst: 500.0,
            },
            max_conns_per_ip: 32,
            depth: 20,
            max_message: 1 << 20,
            log_capacity: 1 << 21,
            signature_window: Duration::from_secs(60),
            testnet: true,
        }
    }
}

/// Why the simulator could not start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file or socket operation failed; the message names what.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS setup failed (certificate generation or loading); fix the files or paths named.
    #[error("tls: {0}")]
    Tls(String),
    /// The configuration is inconsistent; the message says which setting.
    #[error("config: {0}")]
    Config(String),
}

impl SimError {
    fn io(what: impl std::fmt::Debug, source: std::io::Error) -> SimError {
        SimError::Io {
            what: format!("{what:?}"),
            source,
        }
    }
}
