//! The venue state shared by all connections: accounts and tokens, the books with their
//! resting user orders, matching, the synthetic market generator, the market-data log, the
//! ledger and the private-notification mailboxes.
//!
//! Everything here runs under one mutex held by the caller; nothing here does I/O.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fmt::{price_f64, PRICE_SCALE};
use super::ledger::{Ledger, LedgerEntry};
use super::market::{Action, Book, Dir, InstrumentSpec, Level, MdEvent, MdKind, MdLog, Rng, Side};
use super::rpc::{code, notification, RpcError};

/// Identifies one accepted connection (1-based, in accept order).
pub type ConnId = u64;

/// Private notifications waiting to be sent on one connection (JSON texts).
pub type Mailbox = Arc<Mutex<Vec<String>>>;

/// Largest label Deribit accepts.
pub const MAX_LABEL: usize = 64;

/// How a connection ended, which decides whether cancel-on-disconnect fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// `private/logout`: cancel-on-disconnect does not fire.
    Logout,
    /// The client missed a heartbeat deadline.
    HeartbeatFailed,
    /// Any other close (client close, network error, fault, shutdown).
    Dropped,
}

/// Order type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderType {
    /// Limit order.
    Limit,
    /// Market order.
    Market,
}

/// Time in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tif {
    /// Rests until cancelled.
    GoodTilCancelled,
    /// Takes what it can, cancels the rest.
    ImmediateOrCancel,
    /// Fills completely at once or not at all.
    FillOrKill,
}

impl Tif {
    fn as_str(self) -> &'static str {
        match self {
            Tif::GoodTilCancelled => "good_til_cancelled",
            Tif::ImmediateOrCancel => "immediate_or_cancel",
            Tif::FillOrKill => "fill_or_kill",
        }
    }
}

/// Order lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// Resting (possibly partly filled).
    Open,
    /// Completely filled.
    Filled,
    /// Cancelled (by request, cancel-on-disconnect, or unfilled IOC/market remainder).
    Cancelled,
}

impl OrderState {
    fn as_str(self) -> &'static str {
        match self {
            OrderState::Open => "open",
            OrderState::Filled => "filled",
            OrderState::Cancelled => "cancelled",
        }
    }
}

/// A user order.
#[derive(Debug, Clone)]
pub struct Order {
    /// Venue order id as sent to clients (`BTC-12`).
    pub order_id: String,
    /// Owning account (client_id).
    pub account: String,
    /// Connection that placed it.
    pub conn: ConnId,
    /// Instrument index.
    pub inst: u16,
    /// Direction.
    pub dir: Dir,
    /// Type.
    pub otype: OrderType,
    /// Limit price (fixed-point); `None` for market orders.
    pub price: Option<i64>,
    /// Total amount.
    pub amount: i64,
    /// Filled amount (`<= amount`).
    pub filled: i64,
    /// Sum of price × amount over fills, for the average price.
    pub notional: i128,
    /// State.
    pub state: OrderState,
    /// Client label ("" when none).
    pub label: String,
    /// Post-only flag.
    pub post_only: bool,
    /// Reduce-only flag.
    pub reduce_only: bool,
    /// Time in force.
    pub tif: Tif,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
    /// Why it was cancelled.
    pub cancel_reason: Option<&'static str>,
}

impl Order {
    fn remaining(&self) -> i64 {
        self.amount - self.filled
    }
}

/// Parsed parameters of `private/buy` and `private/sell`.
#[derive(Debug, Clone)]
pub struct OrderParams {
    /// Instrument index.
    pub inst: u16,
    /// Amount (validated against the contract size).
    pub amount: i64,
    /// Type.
    pub otype: OrderType,
    /// Limit price, fixed-point (validated against the tick).
    pub price: Option<i64>,
    /// Label.
    pub label: String,
    /// Post-only.
    pub post_only: bool,
    /// Reject instead of repricing a crossing post-only order.
    pub reject_post_only: bool,
    /// Reduce-only.
    pub reduce_only: bool,
    /// Time in force.
    pub tif: Tif,
}

struct Account {
    secret: String,
    positions: HashMap<u16, i64>,
    trades: Vec<(u16, Value)>,
}

/// An access token. Lives in [`Venue::tokens`] until it expires and is pruned, is replaced by
/// a refresh, dies with its connection (connection scope) or is invalidated by a logout.
struct Token {
    /// Account it authorizes.
    client_id: String,
    /// Refused from this instant on (the `expire` fault moves it to "now").
    expires: Instant,
    /// `Some(NAME)` for scope `session:NAME`: usable on any connection, survives its
    /// connection. `None` for connection scope: only on `conn`, dies with it.
    session: Option<String>,
    /// Connection it was issued on.
    conn: ConnId,
}

/// A refresh token's grant. Lives in [`Venue::refresh`] until it is used (once), expires
/// and is pruned, or is invalidated by a logout on the connection that got it.
struct RefreshGrant {
    /// Account the next access token will authorize.
    client_id: String,
    /// Session name carried over to the next access token (the session resumes).
    session: Option<String>,
    /// Scope asked for originally, carried over.
    scope: String,
    /// Refused from this instant on; never before the access token issued with it expires.
    expires: Instant,
    /// Connection it was issued on.
    conn: ConnId,
    /// The access token issued with it, which a refresh replaces (removes).
    access: String,
}

/// How many tokens the venue holds (see [`Venue::token_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCounts {
    /// Access tokens in the map (valid ones, plus expired ones not yet pruned or still
    /// held by a live connection).
    pub access: usize,
    /// Refresh tokens in the map (unused ones not yet pruned).
    pub refresh: usize,
}

/// Expired tokens are pruned at most this often by time (on a token issue)...
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);
/// ...or sooner when the maps together reach twice their size after the last prune (at least
/// this many), which keeps pruning amortized O(1) per issue during reconnect storms.
const PRUNE_MIN_LEN: usize = 64;

/// Registration of a live connection.
pub struct ConnReg {
    /// Account the connection is authorized for.
    pub account: Option<String>,
    /// Access token the connection authorized with.
    pub token: Option<String>,
    /// Where private notifications for it go.
    pub mailbox: Mailbox,
    /// Instruments subscribed on `user.orders.{inst}.raw`.
    pub user_orders: HashSet<u16>,
    /// Instruments subscribed on `user.trades.{inst}.raw`.
    pub user_trades: HashSet<u16>,
    /// Cancel-on-disconnect enabled with connection scope.
    pub cod: bool,
    /// Fill the account's resting orders when this connection closes (fault `fillgap`).
    pub fill_on_close: bool,
    /// Peer address.
    pub ip: IpAddr,
}

/// A book at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookSnapshot {
    /// Bid rows `(price, amount)`, best (highest) first.
    pub bids: Vec<(i64, i64)>,
    /// Ask rows `(price, amount)`, best (lowest) first.
    pub asks: Vec<(i64, i64)>,
    /// change_id of the book at the snapshot.
    pub change_id: u64,
    /// Log sequence from which market-data events are newer than the snapshot.
    pub from_seq: u64,
}

/// A successful `public/auth`.
#[derive(Debug, Clone)]
pub struct AuthGrant {
    /// New access token.
    pub access_token: String,
    /// New refresh token.
    pub refresh_token: String,
    /// Lifetime in whole seconds (rounded up).
    pub expires_in: u64,
    /// Granted scope.
    pub scope: String,
}

/// Parameters of the venue.
#[derive(Debug, Clone)]
pub struct VenueParams {
    /// Instruments.
    pub instruments: Vec<String>,
    /// `(client_id, client_secret)` pairs.
    pub credentials: Vec<(String, String)>,
    /// Market-data events per second, all instruments together.
    pub rate: f64,
    /// Synthetic levels per side.
    pub depth: usize,
    /// RNG seed.
    pub seed: u64,
    /// Access-token lifetime.
    pub token_ttl: Duration,
    /// Refresh-token lifetime (never shorter than `token_ttl`: the longer one is used).
    pub refresh_ttl: Duration,
    /// Market-data events retained for readers.
    pub log_capacity: usize,
    /// Allowed distance between a client_signature timestamp and the venue clock.
    pub signature_window: Duration,
}

/// The shared venue.
pub struct Venue {
    /// Instrument specifications, by index.
    pub specs: Vec<InstrumentSpec>,
    /// Books, by instrument index.
    pub books: Vec<Book>,
    /// Market-data log all connections read.
    pub log: MdLog,
    /// The ledger.
    pub ledger: Ledger,
    rng: Rng,
    accounts: HashMap<String, Account>,
    /// Access tokens by value. Bounded: expired entries leave at the next prune (see
    /// [`Venue::prune_tokens`]) unless a live connection still holds them.
    tokens: HashMap<String, Token>,
    /// Refresh grants by refresh-token value. Bounded the same way.
    refresh: HashMap<String, RefreshGrant>,
    /// Earliest instant of the next time-triggered prune; `None` before the first issue.
    prune_after: Option<Instant>,
    /// Combined size of `tokens` and `refresh` that triggers a prune regardless of time.
    prune_len: usize,
    orders: HashMap<u64, Order>,
    order_ids: HashMap<String, u64>,
    next_order: u64,
    next_trade: u64,
    conns: HashMap<ConnId, ConnReg>,
    cod_accounts: HashSet<String>,
    token_ttl: Duration,
    refresh_ttl: Duration,
    signature_window: Duration,
    depth: usize,
    rate: f64,
    budget: f64,
    last_gen: Option<Instant>,
    burst: Option<(Instant, f64)>,
}

/// Milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    wall_us() / 1000
}

/// Microseconds since the Unix epoch.
pub fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Venue {
    /// A venue with fresh books and the given accounts.
    pub fn new(p: &VenueParams) -> Venue {
        let mut rng = Rng::new(p.seed);
        let specs: Vec<InstrumentSpec> = p
            .instruments
            .iter()
            .map(|n| InstrumentSpec::for_name(n))
            .collect();
        let books = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let first = 1_000_000_000 * (i as u64 + 1) + rng.below(1_000_000);
                Book::new(s, p.depth, first, || {
                    s.contract * (1 + rng.below(50) as i64)
                })
            })
            .collect();
        let accounts = p
            .credentials
            .iter()
            .map(|(id, secret)| {
                (
                    id.clone(),
                    Account {
                        secret: secret.clone(),
                        positions: HashMap::new(),
                        trades: Vec::new(),
                    },
                )
            })
            .collect();
        Venue {
            specs,
            books,
            log: MdLog::new(p.log_capacity),
            ledger: Ledger::default(),
            rng,
            accounts,
            tokens: HashMap::new(),
            refresh: HashMap::new(),
            prune_after: None,
            prune_len: PRUNE_MIN_LEN,
            orders: HashMap::new(),
            order_ids: HashMap::new(),
            next_order: 1,
            next_trade: 100_000_000,
            conns: HashMap::new(),
            cod_accounts: HashSet::new(),
            token_ttl: p.token_ttl,
            refresh_ttl: p.refresh_ttl.max(p.token_ttl),
            signature_window: p.signature_window,
            depth: p.depth.max(1),
            rate: p.rate,
            budget: 0.0,
            last_gen: None,
            burst: None,
        }
    }

    /// Instrument index for a name.
    pub fn instrument(&self, name: &str) -> Option<u16> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as u16)
    }

    // ----- connections ---------------------------------------------------------------------

    /// Registers a new connection.
    pub fn register_conn(&mut self, id: ConnId, ip: IpAddr, mailbox: Mailbox) {
        self.conns.insert(
            id,
            ConnReg {
                account: None,
                token: None,
                mailbox,
                user_orders: HashSet::new(),
                user_trades: HashSet::new(),
                cod: false,
                fill_on_close: false,
                ip,
            },
        );
    }

    /// Number of live connections from an address.
    pub fn conns_from(&self, ip: IpAddr) -> usize {
        self.conns.values().filter(|c| c.ip == ip).count()
    }

    /// Mutable access to a connection's registration.
    pub fn conn_mut(&mut self, id: ConnId) -> Option<&mut ConnReg> {
        self.conns.get_mut(&id)
    }

    /// Removes a connection: connection-scoped tokens die, `fillgap` fills, then
    /// cancel-on-disconnect fires unless the close was a logout.
    pub fn unregister_conn(&mut self, id: ConnId, how: CloseKind) {
        let Some(reg) = self.conns.remove(&id) else {
            return;
        };
        self.tokens
            .retain(|_, t| t.session.is_some() || t.conn != id);
        let Some(account) = reg.account else {
            return;
        };
        let now_ms = wall_ms();
        if reg.fill_on_close {
            let resting: Vec<u64> = self.open_orders_where(|o| o.account == account);
            for oid in resting {
                self.fill_resting_whole(oid, now_ms);
            }
        }
        let cod = reg.cod || self.cod_accounts.contains(&account);
        if cod && how != CloseKind::Logout {
            let mine: Vec<u64> = self.open_orders_where(|o| o.conn == id);
            for oid in mine {
                self.cancel(oid, "cancel_on_disconnect", now_ms);
            }
        }
    }

    fn account_connected(&self, account: &str) -> bool {
        self.conns
            .values()
            .any(|c| c.account.as_deref() == Some(account))
    }

    // ----- authentication ------------------------------------------------------------------

    /// `public/auth`. On success the connection is authorized for the account.
    pub fn auth(
        &mut self,
        conn: ConnId,
        params: &Value,
        now: Instant,
    ) -> Result<AuthGrant, RpcError> {
        let grant_type = str_param(params, "grant_type")?;
        let requested_scope = params.get("scope").and_then(Value::as_str).unwrap_or("");
        let session = requested_scope
            .split_whitespace()
            .find_map(|s| s.strip_prefix("session:"))
            .map(str::to_string);
        let (client_id, session, scope_extra) = match grant_type {
            "client_credentials" => {
                let id = str_param(params, "client_id")?;
                let secret = str_param(params, "client_secret")?;
                match self.accounts.get(id) {
                    Some(a) if a.secret == secret => {}
                    _ => return Err(RpcError::invalid_credentials()),
                }
                (id.to_string(), session, requested_scope.to_string())
            }
            "client_signature" => {
                let id = str_param(params, "client_id")?;
                let ts = params
                    .get("timestamp")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| RpcError::invalid_param("timestamp", "required integer (ms)"))?;
                let sig = str_param(params, "signature")?;
                let nonce = str_param(params, "nonce")?;
                let data = params.get("data").and_then(Value::as_str).unwrap_or("");
                let account = self
                    .accounts
                    .get(id)
                    .ok_or_else(RpcError::invalid_credentials)?;
                let skew = (wall_ms() as i64 - ts as i64).unsigned_abs();
                if skew > self.signature_window.as_millis() as u64 {
                    return Err(RpcError::invalid_credentials()
                        .with_reason("timestamp outside the allowed window"));
                }
                let expected = hmac_hex(&account.secret, &format!("{ts}\n{nonce}\n{data}"));
                if !constant_time_eq(expected.as_bytes(), sig.to_ascii_lowercase().as_bytes()) {
                    return Err(RpcError::invalid_credentials().with_reason("invalid signature"));
                }
                (id.to_string(), session, requested_scope.to_string())
            }
            "refresh_token" => {
                let rt = str_param(params, "refresh_token")?;
                let grant = self.refresh.remove(rt).ok_or_else(|| {
                    RpcError::invalid_credentials().with_reason("unknown refresh token")
                })?;
                if grant.expires <= now {
                    return Err(
                        RpcError::invalid_credentials().with_reason("refresh token expired")
                    );
                }
                // The new pair replaces the one issued with this refresh token.
                self.tokens.remove(&grant.access);
                (grant.client_id, grant.session, grant.scope)
            }
            other => {
                return Err(RpcError::invalid_param(
                    "grant_type",
                    format!("unsupported grant_type {other}"),
                ))
            }
        };
        let access_token = self.new_token(now);
        let refresh_token = self.new_token(now);
        let mut scope = match &session {
            Some(name) => format!("session:{name}"),
            None => "connection".to_string(),
        };
        scope.push_str(" mainaccount");
        let extra: Vec<&str> = scope_extra
            .split_whitespace()
            .filter(|s| !s.starts_with("session:") && *s != "connection" && *s != "mainaccount")
            .collect();
        if extra.is_empty() {
            scope.push_str(" account:read_write trade:read_write wallet:read_write");
        } else {
            for s in extra {
                scope.push(' ');
                scope.push_str(s);
            }
        }
        self.tokens.insert(
            access_token.clone(),
            Token {
                client_id: client_id.clone(),
                expires: now + self.token_ttl,
                session: session.clone(),
                conn,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            RefreshGrant {
                client_id: client_id.clone(),
                session,
                scope: scope_extra,
                expires: now + self.refresh_ttl,
                conn,
                access: access_token.clone(),
            },
        );
        if let Some(reg) = self.conns.get_mut(&conn) {
            reg.account = Some(client_id);
            reg.token = Some(access_token.clone());
        }
        // After the connection moved to the new token, so its old one can go too.
        self.maybe_prune_tokens(now);
        let ttl = self.token_ttl;
        Ok(AuthGrant {
            access_token,
            refresh_token,
            expires_in: ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0),
            scope,
        })
    }

    /// Prunes expired tokens when [`PRUNE_INTERVAL`] has passed since the last prune or the
    /// maps have doubled since (see [`PRUNE_MIN_LEN`]). Called on every issue, so no
    /// background thread is needed and the maps stay bounded by what is valid (plus what
    /// live connections hold) times two.
    fn maybe_prune_tokens(&mut self, now: Instant) {
        let due = self.prune_after.is_none_or(|at| now >= at);
        if due || self.tokens.len() + self.refresh.len() >= self.prune_len {
            self.prune_tokens(now);
        }
    }

    /// Removes expired access tokens (except those a live connection is authorized with, so
    /// that connection keeps hearing `token_expired`) and expired refresh tokens.
    fn prune_tokens(&mut self, now: Instant) {
        let held: HashSet<&str> = self
            .conns
            .values()
            .filter_map(|c| c.token.as_deref())
            .collect();
        self.tokens
            .retain(|k, t| t.expires > now || held.contains(k.as_str()));
        self.refresh.retain(|_, g| g.expires > now);
        self.prune_after = Some(now + PRUNE_INTERVAL);
        self.prune_len = (2 * (self.tokens.len() + self.refresh.len())).max(PRUNE_MIN_LEN);
    }

    /// How many access and refresh tokens the venue holds now (expired ones included until
    /// they are pruned).
    pub fn token_counts(&self) -> TokenCounts {
        TokenCounts {
            access: self.tokens.len(),
            refresh: self.refresh.len(),
        }
    }

    fn new_token(&mut self, _now: Instant) -> String {
        format!(
            "{}.{:016x}{:016x}",
            wall_ms(),
            self.rng.next_u64(),
            self.rng.next_u64()
        )
    }

    /// The account a private request acts for: its `access_token` parameter when present
    /// (session tokens work on any connection, connection tokens only on their own), else the
    /// connection's own authorization. Expired or unknown tokens give 13009.
    pub fn authorize(
        &mut self,
        conn: ConnId,
        access_token: Option<&str>,
        now: Instant,
    ) -> Result<String, RpcError> {
        let token = match access_token {
            Some(t) => t.to_string(),
            None => self
                .conns
                .get(&conn)
                .and_then(|c| c.token.clone())
                .ok_or_else(RpcError::unauthorized)?,
        };
        let t = self
            .tokens
            .get(&token)
            .ok_or_else(|| RpcError::unauthorized().with_reason("invalid_token"))?;
        if t.expires <= now {
            return Err(RpcError::unauthorized().with_reason("token_expired"));
        }
        if t.session.is_none() && t.conn != conn {
            return Err(RpcError::unauthorized().with_reason("token bound to another connection"));
        }
        let client_id = t.client_id.clone();
        if access_token.is_some() {
            if let Some(reg) = self.conns.get_mut(&conn) {
                reg.account = Some(client_id.clone());
                reg.token = Some(token);
            }
        }
        Ok(client_id)
    }

    /// `private/logout`: with `invalidate` the connection's tokens (and their session) die,
    /// refresh tokens issued on the connection included.
    pub fn logout(&mut self, conn: ConnId, invalidate: bool) {
        if !invalidate {
            return;
        }
        let Some(reg) = self.conns.get_mut(&conn) else {
            return;
        };
        reg.token = None;
        let account = reg.account.take();
        if let Some(account) = account {
            self.tokens
                .retain(|_, t| !(t.conn == conn && t.client_id == account));
            self.refresh
                .retain(|_, g| !(g.conn == conn && g.client_id == account));
        }
    }

    /// Expires tokens now: those of one connection, or all (fault `expire`).
    pub fn expire_tokens(&mut self, conn: Option<ConnId>, now: Instant) {
        let token = conn.and_then(|c| self.conns.get(&c).and_then(|r| r.token.clone()));
        for (k, t) in self.tokens.iter_mut() {
            if conn.is_none() || Some(k) == token.as_ref() || Some(t.conn) == conn {
                t.expires = now;
            }
        }
    }

    /// Cancel-on-disconnect on or off, with `connection` or `account` scope.
    pub fn set_cod(&mut self, conn: ConnId, account: &str, scope: &str, on: bool) {
        if scope == "account" {
            if on {
                self.cod_accounts.insert(account.to_string());
            } else {
                self.cod_accounts.remove(account);
            }
        } else if let Some(reg) = self.conns.get_mut(&conn) {
            reg.cod = on;
        }
    }

    /// Whether cancel-on-disconnect is on for a connection (either scope).
    pub fn cod_enabled(&self, conn: ConnId, account: &str) -> bool {
        self.cod_accounts.contains(account) || self.conns.get(&conn).is_some_and(|c| c.cod)
    }

    // ----- market data ---------------------------------------------------------------------

    /// Multiplies the market-data rate by `factor` until `until` (fault `burst`).
    pub fn set_burst(&mut self, factor: f64, until: Instant) {
        self.burst = Some((until, factor));
    }

    /// Generates the market events due by `now` at the configured rate; returns how many.
    pub fn advance(&mut self, now: Instant) -> u64 {
        let Some(last) = self.last_gen.replace(now) else {
            return 0;
        };
        if self.specs.is_empty() || self.rate <= 0.0 {
            return 0;
        }
        let mut rate = self.rate;
        if let Some((until, factor)) = self.burst {
            if now < until {
                rate *= factor;
            } else {
                self.burst = None;
            }
        }
        self.budget += rate * now.saturating_duration_since(last).as_secs_f64();
        // Do not try to catch up after a stall longer than ~20 ms.
        let cap = (rate * 0.02).max(64.0);
        if self.budget > cap {
            self.budget = cap;
        }
        let ts = wall_ms();
        let start = self.log.head();
        while self.budget >= 1.0 {
            let before = self.log.head();
            self.step(ts);
            let n = (self.log.head() - before).max(1);
            self.budget -= n as f64;
        }
        self.log.head() - start
    }

    /// One random market move on a random instrument.
    fn step(&mut self, ts: u64) {
        let i = self.rng.below(self.specs.len() as u64) as usize;
        let (tick, contract, base) = {
            let s = &self.specs[i];
            (s.tick, s.contract, s.base_price)
        };
        let r = self.rng.unit();
        if r < 0.04 {
            let dir = if self.rng.below(2) == 0 {
                Dir::Buy
            } else {
                Dir::Sell
            };
            if let Some(best) = self.books[i].best(dir.opposite_side()) {
                let amount = contract * (1 + self.rng.below(5) as i64);
                self.take_liquidity(i, dir, Some(best), amount, None, ts);
            }
        } else if r < 0.06 {
            let mid = self.books[i].mid;
            let up = if mid <= base / 2 {
                true
            } else if mid >= base * 2 {
                false
            } else {
                self.rng.below(2) == 0
            };
            let new_mid = if up { mid + tick } else { mid - tick };
            if up {
                self.clear_through(i, Dir::Buy, new_mid, ts);
            } else {
                self.clear_through(i, Dir::Sell, new_mid, ts);
            }
            self.books[i].mid = new_mid;
        } else {
            let side = if self.rng.below(2) == 0 {
                Side::Bid
            } else {
                Side::Ask
            };
            let k = 1 + self.rng.below(self.depth as u64) as i64;
            let mid = self.books[i].mid;
            let price = match side {
                Side::Bid => mid - k * tick,
                Side::Ask => mid + k * tick,
            };
            let before = self.books[i].total(side, price);
            let synth = self.books[i].side(side).get(&price).map_or(0, |l| l.synth);
            let amount = contract * (1 + self.rng.below(50) as i64);
            if synth > 0 {
                let thin = self.books[i].side(side).len() <= self.depth / 2;
                let new = if !thin && self.rng.chance(0.3) {
                    0
                } else if amount == synth {
                    synth + contract
                } else {
                    amount
                };
                if let Some(l) = self.books[i].side_mut(side).get_mut(&price) {
                    l.synth = new;
                }
            } else {
                let aggressor = match side {
                    Side::Bid => Dir::Buy,
                    Side::Ask => Dir::Sell,
                };
                self.clear_through(i, aggressor, price, ts);
                let before_after_clear = self.books[i].total(side, price);
                self.books[i].side_mut(side).entry(price).or_default().synth = amount;
                self.publish_level(i, side, price, before_after_clear, ts);
                self.trim(i, side, ts);
                return;
            }
            self.publish_level(i, side, price, before, ts);
        }
    }

    /// Removes the farthest synthetic level of a side when the side grew past twice the depth.
    fn trim(&mut self, i: usize, side: Side, ts: u64) {
        if self.books[i].side(side).len() <= 2 * self.depth {
            return;
        }
        let far = match side {
            Side::Bid => self.books[i].bids.iter().find(|(_, l)| l.users.is_empty()),
            Side::Ask => self.books[i]
                .asks
                .iter()
                .rev()
                .find(|(_, l)| l.users.is_empty()),
        }
        .map(|(p, l)| (*p, l.total()));
        if let Some((price, before)) = far {
            if let Some(l) = self.books[i].side_mut(side).get_mut(&price) {
                l.synth = 0;
            }
            self.publish_level(i, side, price, before, ts);
        }
    }

    /// Publishes the change of one level (`before` = its published amount before the change)
    /// as a book event; removes the level when empty.
    fn publish_level(&mut self, i: usize, side: Side, price: i64, before: i64, ts: u64) {
        let book = &mut self.books[i];
        let after = book.total(side, price);
        if after == 0 {
            let levels = book.side_mut(side);
            if levels.get(&price).is_some_and(|l| l.users.is_empty()) {
                levels.remove(&price);
            }
        }
        let action = match (before > 0, after > 0) {
            (false, true) => Action::New,
            (true, true) if before != after => Action::Change,
            (true, false) => Action::Delete,
            _ => return,
        };
        let prev = book.change_id;
        book.change_id += 1;
        let ev = MdEvent {
            seq: 0,
            ts_ms: ts,
            inst: i as u16,
            kind: MdKind::Book { side, action },
            price,
            amount: after,
            id: book.change_id,
            aux: prev,
            mark: book.mid,
        };
        self.log.push(ev);
    }

    /// Prints a public trade; returns its `(trade_id, trade_seq)`.
    fn print_trade(&mut self, i: usize, dir: Dir, price: i64, amount: i64, ts: u64) -> (u64, u64) {
        self.next_trade += 1;
        let book = &mut self.books[i];
        book.trade_seq += 1;
        let tick_dir = if book.last_trade == 0 || price > book.last_trade {
            0
        } else if price < book.last_trade {
            2
        } else if book.last_tick_dir >= 2 {
            3
        } else {
            1
        };
        book.last_trade = price;
        book.last_tick_dir = tick_dir;
        let ev = MdEvent {
            seq: 0,
            ts_ms: ts,
            inst: i as u16,
            kind: MdKind::Trade { dir, tick_dir },
            price,
            amount,
            id: self.next_trade,
            aux: book.trade_seq,
            mark: book.mid,
        };
        self.log.push(ev);
        (self.next_trade, book.trade_seq)
    }

    /// An aggressor of `dir` takes up to `amount` from the opposite side at prices no worse
    /// than `limit`: synthetic liquidity first at each price, then resting user orders FIFO.
    /// Returns the taker's trade objects when the taker is a user order.
    fn take_liquidity(
        &mut self,
        i: usize,
        dir: Dir,
        limit: Option<i64>,
        amount: i64,
        taker: Option<u64>,
        ts: u64,
    ) -> Vec<Value> {
        let side = dir.opposite_side();
        let mut left = amount;
        let mut trades = Vec::new();
        while left > 0 {
            let Some(price) = self.books[i].best(side) else {
                break;
            };
            if let Some(l) = limit {
                if (dir == Dir::Buy && price > l) || (dir == Dir::Sell && price < l) {
                    break;
                }
            }
            let before = self.books[i].total(side, price);
            let synth_q = {
                let level = level_mut(&mut self.books[i], side, price);
                let q = left.min(level.synth);
                level.synth -= q;
                q
            };
            if synth_q > 0 {
                left -= synth_q;
                let (tid, seq) = self.print_trade(i, dir, price, synth_q, ts);
                if let Some(t) = taker {
                    trades.push(self.record_fill(t, price, synth_q, "T", tid, seq, ts));
                }
            }
            while left > 0 {
                let Some(&maker) = level_mut(&mut self.books[i], side, price).users.front() else {
                    break;
                };
                let rem = self.orders.get(&maker).map_or(0, Order::remaining);
                let q = left.min(rem);
                {
                    let level = level_mut(&mut self.books[i], side, price);
                    level.user_total -= q;
                    if q == rem {
                        level.users.pop_front();
                    }
                }
                left -= q;
                if q == 0 {
                    continue;
                }
                let (tid, seq) = self.print_trade(i, dir, price, q, ts);
                self.record_fill(maker, price, q, "M", tid, seq, ts);
                if let Some(t) = taker {
                    trades.push(self.record_fill(t, price, q, "T", tid, seq, ts));
                }
            }
            self.publish_level(i, side, price, before, ts);
        }
        trades
    }

    /// A synthetic aggressor of `dir` trades through every opposite level crossing `limit`:
    /// synthetic liquidity there is withdrawn and resting user orders are filled at their price.
    fn clear_through(&mut self, i: usize, dir: Dir, limit: i64, ts: u64) {
        let side = dir.opposite_side();
        loop {
            let Some(price) = self.books[i].best(side) else {
                return;
            };
            let crosses = match dir {
                Dir::Buy => price <= limit,
                Dir::Sell => price >= limit,
            };
            if !crosses {
                return;
            }
            let before = self.books[i].total(side, price);
            loop {
                let level = level_mut(&mut self.books[i], side, price);
                let Some(maker) = level.users.pop_front() else {
                    level.synth = 0;
                    break;
                };
                let rem = self.orders.get(&maker).map_or(0, Order::remaining);
                level.user_total -= rem;
                if rem > 0 {
                    let (tid, seq) = self.print_trade(i, dir, price, rem, ts);
                    self.record_fill(maker, price, rem, "M", tid, seq, ts);
                }
            }
            self.publish_level(i, side, price, before, ts);
        }
    }

    /// A snapshot of one book and the log position it corresponds to.
    pub fn snapshot(&self, i: u16) -> BookSnapshot {
        let b = &self.books[i as usize];
        BookSnapshot {
            bids: b.rows(Side::Bid),
            asks: b.rows(Side::Ask),
            change_id: b.change_id,
            from_seq: self.log.head(),
        }
    }

    // ----- orders ----------------------------------------------------------------------------

    /// Validates `private/buy`/`private/sell` parameters.
    pub fn parse_order(&self, params: &Value) -> Result<OrderParams, RpcError> {
        let name = str_param(params, "instrument_name")?;
        let inst = self
            .instrument(name)
            .ok_or_else(|| RpcError::invalid_param("instrument_name", "instrument not found"))?;
        let spec = &self.specs[inst as usize];
        let amount = self.parse_amount(inst, params.get("amount"))?;
        let otype = match params
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("limit")
        {
            "limit" => OrderType::Limit,
            "market" => OrderType::Market,
            other => {
                return Err(RpcError::invalid_param(
                    "type",
                    format!("unsupported order type {other}"),
                ))
            }
        };
        let price = match otype {
            OrderType::Market => None,
            OrderType::Limit => {
                let p = params
                    .get("price")
                    .ok_or_else(|| RpcError::invalid_param("price", "required for limit orders"))?;
                Some(parse_price(spec, p)?)
            }
        };
        let label = params
            .get("label")
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| RpcError::invalid_param("label", "must be a string"))
            })
            .transpose()?
            .unwrap_or_default();
        if label.chars().count() > MAX_LABEL {
            return Err(RpcError::invalid_param(
                "label",
                "must be at most 64 characters",
            ));
        }
        let tif = match params
            .get("time_in_force")
            .and_then(Value::as_str)
            .unwrap_or("good_til_cancelled")
        {
            "good_til_cancelled" => Tif::GoodTilCancelled,
            "immediate_or_cancel" => Tif::ImmediateOrCancel,
            "fill_or_kill" => Tif::FillOrKill,
            other => {
                return Err(RpcError::invalid_param(
                    "time_in_force",
                    format!("unsupported time_in_force {other}"),
                ))
            }
        };
        Ok(OrderParams {
            inst,
            amount,
            otype,
            price,
            label,
            post_only: bool_param(params, "post_only")?,
            reject_post_only: bool_param(params, "reject_post_only")?,
            reduce_only: bool_param(params, "reduce_only")?,
            tif,
        })
    }

    fn parse_amount(&self, inst: u16, v: Option<&Value>) -> Result<i64, RpcError> {
        let contract = self.specs[inst as usize].contract;
        let a = v
            .and_then(Value::as_f64)
            .ok_or_else(|| RpcError::invalid_param("amount", "required number"))?;
        if a <= 0.0 || !a.is_finite() {
            return Err(RpcError::invalid_param("amount", "must be positive"));
        }
        let whole = a.round();
        if (a - whole).abs() > 1e-9 || whole as i64 % contract != 0 {
            return Err(RpcError::invalid_param(
                "amount",
                format!("must be a multiple of contract size {contract}"),
            ));
        }
        Ok(whole as i64)
    }

    /// Records a rejected order request in the ledger.
    pub fn ledger_reject(&mut self, account: &str, params: &Value, e: &RpcError) {
        self.ledger.entries.push(LedgerEntry::OrderRejected {
            ts_us: wall_us(),
            account: account.to_string(),
            label: label_of(params),
            instrument: params
                .get("instrument_name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            code: e.code,
            message: e.message.to_string(),
        });
    }

    /// Records an order request a fault swallowed.
    pub fn ledger_dropped(&mut self, account: &str, params: &Value) {
        self.ledger.entries.push(LedgerEntry::OrderDropped {
            ts_us: wall_us(),
            account: account.to_string(),
            label: label_of(params),
            instrument: params
                .get("instrument_name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }

    /// Records a cancel or edit request a fault swallowed.
    pub fn ledger_request_dropped(&mut self, account: &str, method: &str, params: &Value) {
        let text = |k: &str| {
            params
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        self.ledger.entries.push(LedgerEntry::RequestDropped {
            ts_us: wall_us(),
            account: account.to_string(),
            method: method.to_string(),
            order_id: text("order_id"),
            label: text("label"),
        });
    }

    /// Places an order (`private/buy`/`private/sell`); returns `{order, trades}`.
    pub fn place(
        &mut self,
        conn: ConnId,
        account: &str,
        dir: Dir,
        p: OrderParams,
    ) -> Result<Value, RpcError> {
        let ts = wall_ms();
        let i = p.inst as usize;
        let tick = self.specs[i].tick;
        if p.reduce_only {
            let pos = self.position(account, p.inst);
            let reduces = match dir {
                Dir::Buy => pos < 0 && p.amount <= -pos,
                Dir::Sell => pos > 0 && p.amount <= pos,
            };
            if !reduces {
                return Err(RpcError::new(code::OTHER_REJECT, "other_reject")
                    .with_reason("reduce_only order would increase the position"));
            }
        }
        let mut price = p.price;
        if let (Some(limit), true, OrderType::Limit) = (price, p.post_only, p.otype) {
            if let Some(best) = self.books[i].best(dir.opposite_side()) {
                let crosses = match dir {
                    Dir::Buy => limit >= best,
                    Dir::Sell => limit <= best,
                };
                if crosses {
                    if p.reject_post_only {
                        return Err(RpcError::new(code::POST_ONLY_REJECT, "post_only_reject"));
                    }
                    price = Some(match dir {
                        Dir::Buy => best - tick,
                        Dir::Sell => best + tick,
                    });
                }
            }
        }
        let oid = self.next_order;
        self.next_order += 1;
        let order_id = format!("{}-{}", self.specs[i].currency, oid);
        let order = Order {
            order_id: order_id.clone(),
            account: account.to_string(),
            conn,
            inst: p.inst,
            dir,
            otype: p.otype,
            price,
            amount: p.amount,
            filled: 0,
            notional: 0,
            state: OrderState::Open,
            label: p.label.clone(),
            post_only: p.post_only,
            reduce_only: p.reduce_only,
            tif: p.tif,
            created_ms: ts,
            updated_ms: ts,
            cancel_reason: None,
        };
        self.ledger.entries.push(LedgerEntry::OrderAccepted {
            ts_us: wall_us(),
            account: account.to_string(),
            conn,
            order_id: order_id.clone(),
            label: p.label.clone(),
            instrument: self.specs[i].name.clone(),
            direction: dir,
            order_type: match p.otype {
                OrderType::Limit => "limit".into(),
                OrderType::Market => "market".into(),
            },
            price: price.map(price_f64),
            amount: p.amount as f64,
            post_only: p.post_only,
            reduce_only: p.reduce_only,
        });
        self.orders.insert(oid, order);
        self.order_ids.insert(order_id, oid);
        // A fill-or-kill order that cannot fill completely executes nothing and is cancelled.
        let trades = if p.tif == Tif::FillOrKill && self.available(i, dir, price) < p.amount {
            Vec::new()
        } else {
            self.take_liquidity(i, dir, price, p.amount, Some(oid), ts)
        };
        self.settle_new(oid, ts);
        Ok(json!({"order": self.order_json(oid), "trades": trades}))
    }

    /// After matching: rest the remainder of a GTC limit, cancel other remainders, notify.
    fn settle_new(&mut self, oid: u64, ts: u64) {
        let Some(o) = self.orders.get(&oid) else {
            return;
        };
        if o.state != OrderState::Open {
            self.notify_order(oid);
            return;
        }
        match (o.otype, o.tif) {
            (OrderType::Limit, Tif::GoodTilCancelled) => {
                self.rest(oid, ts);
                self.notify_order(oid);
            }
            (OrderType::Market, _) => self.close_unfilled(oid, "market_order_unfilled", ts),
            (_, Tif::ImmediateOrCancel) => self.close_unfilled(oid, "immediate_or_cancel", ts),
            (_, Tif::FillOrKill) => self.close_unfilled(oid, "fill_or_kill", ts),
        }
    }

    fn close_unfilled(&mut self, oid: u64, reason: &'static str, ts: u64) {
        if let Some(o) = self.orders.get_mut(&oid) {
            o.state = OrderState::Cancelled;
            o.cancel_reason = Some(reason);
            o.updated_ms = ts;
            let entry = LedgerEntry::OrderCancelled {
                ts_us: wall_us(),
                order_id: o.order_id.clone(),
                label: o.label.clone(),
                reason: reason.to_string(),
                remaining: o.remaining() as f64,
            };
            self.ledger.entries.push(entry);
        }
        self.notify_order(oid);
    }

    /// Liquidity available to an aggressor of `dir` at prices no worse than `limit`.
    fn available(&self, i: usize, dir: Dir, limit: Option<i64>) -> i64 {
        let book = &self.books[i];
        let levels = book.side(dir.opposite_side());
        let ok = |p: i64| match (dir, limit) {
            (_, None) => true,
            (Dir::Buy, Some(l)) => p <= l,
            (Dir::Sell, Some(l)) => p >= l,
        };
        levels
            .iter()
            .filter(|(p, _)| ok(**p))
            .map(|(_, l)| l.total())
            .sum()
    }

    fn rest(&mut self, oid: u64, ts: u64) {
        let Some(o) = self.orders.get(&oid) else {
            return;
        };
        let (i, side, price, rem) = (
            o.inst as usize,
            o.dir.own_side(),
            o.price.expect("resting orders are limit orders"),
            o.remaining(),
        );
        let before = self.books[i].total(side, price);
        let level = self.books[i].side_mut(side).entry(price).or_default();
        level.users.push_back(oid);
        level.user_total += rem;
        self.publish_level(i, side, price, before, ts);
    }

    fn unrest(&mut self, oid: u64, ts: u64) {
        let Some(o) = self.orders.get(&oid) else {
            return;
        };
        let (i, side, rem) = (o.inst as usize, o.dir.own_side(), o.remaining());
        let Some(price) = o.price else {
            return;
        };
        let before = self.books[i].total(side, price);
        if let Some(level) = self.books[i].side_mut(side).get_mut(&price) {
            if let Some(pos) = level.users.iter().position(|x| *x == oid) {
                level.users.remove(pos);
                level.user_total -= rem;
            }
        }
        self.publish_level(i, side, price, before, ts);
    }

    /// Applies one fill to a user order: amounts, state, position, ledger, notifications.
    /// Returns the Deribit user-trade object.
    #[allow(clippy::too_many_arguments)]
    fn record_fill(
        &mut self,
        oid: u64,
        price: i64,
        q: i64,
        liquidity: &str,
        trade_id: u64,
        trade_seq: u64,
        ts: u64,
    ) -> Value {
        let Some(o) = self.orders.get_mut(&oid) else {
            return Value::Null;
        };
        o.filled += q;
        o.notional += price as i128 * q as i128;
        o.updated_ms = ts;
        if o.filled >= o.amount {
            o.state = OrderState::Filled;
        }
        let o = o.clone();
        let spec = &self.specs[o.inst as usize];
        let mark = self.books[o.inst as usize].mid;
        let trade = json!({
            "trade_id": trade_id.to_string(),
            "trade_seq": trade_seq,
            "timestamp": ts,
            "tick_direction": self.books[o.inst as usize].last_tick_dir,
            "state": o.state.as_str(),
            "reduce_only": o.reduce_only,
            "price": price_f64(price),
            "post_only": o.post_only,
            "order_type": if o.otype == OrderType::Limit { "limit" } else { "market" },
            "order_id": o.order_id,
            "matching_id": Value::Null,
            "mark_price": price_f64(mark),
            "liquidity": liquidity,
            "label": o.label,
            "instrument_name": spec.name,
            "index_price": price_f64(mark),
            "fee_currency": spec.currency,
            "fee": 0.0,
            "direction": o.dir.as_str(),
            "amount": q as f64,
            "api": true,
        });
        let disconnected = !self.account_connected(&o.account);
        self.ledger.entries.push(LedgerEntry::Fill {
            ts_us: wall_us(),
            account: o.account.clone(),
            trade_id: trade_id.to_string(),
            trade_seq,
            order_id: o.order_id.clone(),
            label: o.label.clone(),
            instrument: spec.name.clone(),
            direction: o.dir,
            price: price_f64(price),
            amount: q as f64,
            liquidity: liquidity.to_string(),
            while_disconnected: disconnected,
        });
        if let Some(acc) = self.accounts.get_mut(&o.account) {
            let signed = if o.dir == Dir::Buy { q } else { -q };
            *acc.positions.entry(o.inst).or_default() += signed;
            acc.trades.push((o.inst, trade.clone()));
        }
        self.notify(
            &o.account,
            o.inst,
            false,
            &Value::Array(vec![trade.clone()]),
        );
        if liquidity == "M" {
            self.notify_order(oid);
        }
        trade
    }

    /// Fills a resting order completely at its own price (fault `fillgap`).
    fn fill_resting_whole(&mut self, oid: u64, ts: u64) {
        let Some(o) = self.orders.get(&oid) else {
            return;
        };
        let (i, dir, price) = (
            o.inst as usize,
            o.dir,
            o.price.expect("resting orders have a price"),
        );
        let aggressor = match dir {
            Dir::Buy => Dir::Sell,
            Dir::Sell => Dir::Buy,
        };
        let side = dir.own_side();
        let before = self.books[i].total(side, price);
        let rem = o.remaining();
        if let Some(level) = self.books[i].side_mut(side).get_mut(&price) {
            if let Some(pos) = level.users.iter().position(|x| *x == oid) {
                level.users.remove(pos);
                level.user_total -= rem;
            }
        }
        let (tid, seq) = self.print_trade(i, aggressor, price, rem, ts);
        self.record_fill(oid, price, rem, "M", tid, seq, ts);
        self.publish_level(i, side, price, before, ts);
    }

    /// Cancels an open order; returns false when it was not open.
    pub fn cancel(&mut self, oid: u64, reason: &'static str, ts: u64) -> bool {
        if self.orders.get(&oid).map(|o| o.state) != Some(OrderState::Open) {
            return false;
        }
        self.unrest(oid, ts);
        self.close_unfilled(oid, reason, ts);
        true
    }

    fn open_orders_where(&self, f: impl Fn(&Order) -> bool) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .orders
            .iter()
            .filter(|(_, o)| o.state == OrderState::Open && f(o))
            .map(|(k, _)| *k)
            .collect();
        v.sort_unstable();
        v
    }

    fn own_order(&self, account: &str, params: &Value) -> Result<u64, RpcError> {
        let id = str_param(params, "order_id")?;
        let oid = *self
            .order_ids
            .get(id)
            .ok_or_else(RpcError::order_not_found)?;
        if self.orders[&oid].account != account {
            return Err(RpcError::order_not_found());
        }
        Ok(oid)
    }

    /// `private/cancel {order_id}`: the cancelled order.
    pub fn cancel_request(&mut self, account: &str, params: &Value) -> Result<Value, RpcError> {
        let oid = self.own_order(account, params)?;
        if !self.cancel(oid, "user_request", wall_ms()) {
            return Err(RpcError::new(code::NOT_OPEN_ORDER, "not_open_order"));
        }
        Ok(self.order_json(oid))
    }

    /// `private/cancel_all` (optionally one instrument): number cancelled.
    pub fn cancel_all(&mut self, account: &str, inst: Option<u16>) -> Value {
        let ids =
            self.open_orders_where(|o| o.account == account && inst.is_none_or(|i| o.inst == i));
        let ts = wall_ms();
        let n = ids
            .iter()
            .filter(|oid| self.cancel(**oid, "user_request", ts))
            .count();
        Value::from(n)
    }

    /// `private/cancel_by_label {label, currency?}`: number cancelled.
    pub fn cancel_by_label(&mut self, account: &str, params: &Value) -> Result<Value, RpcError> {
        let label = str_param(params, "label")?.to_string();
        let currency = params
            .get("currency")
            .and_then(Value::as_str)
            .map(str::to_string);
        let ids = self.open_orders_where(|o| {
            o.account == account
                && o.label == label
                && currency
                    .as_deref()
                    .is_none_or(|c| self.specs[o.inst as usize].currency == c)
        });
        let ts = wall_ms();
        let n = ids
            .iter()
            .filter(|oid| self.cancel(**oid, "user_request", ts))
            .count();
        Ok(Value::from(n))
    }

    /// `private/edit {order_id, amount, price, post_only?, reject_post_only?}`.
    pub fn edit(&mut self, account: &str, params: &Value) -> Result<Value, RpcError> {
        let oid = self.own_order(account, params)?;
        let o = self.orders[&oid].clone();
        if o.state != OrderState::Open {
            return Err(RpcError::new(code::NOT_OPEN_ORDER, "not_open_order"));
        }
        let i = o.inst as usize;
        let amount = self.parse_amount(o.inst, params.get("amount"))?;
        if amount <= o.filled {
            return Err(RpcError::invalid_param(
                "amount",
                "must be larger than the filled amount",
            ));
        }
        let price = match params.get("price") {
            Some(p) => parse_price(&self.specs[i], p)?,
            None => o.price.expect("open orders are limit orders"),
        };
        let post_only = match params.get("post_only") {
            Some(_) => bool_param(params, "post_only")?,
            None => o.post_only,
        };
        let reject_post_only = bool_param(params, "reject_post_only")?;
        let mut price = price;
        if post_only {
            if let Some(best) = self.books[i].best(o.dir.opposite_side()) {
                let crosses = match o.dir {
                    Dir::Buy => price >= best,
                    Dir::Sell => price <= best,
                };
                if crosses {
                    if reject_post_only {
                        return Err(RpcError::new(code::POST_ONLY_REJECT, "post_only_reject"));
                    }
                    let tick = self.specs[i].tick;
                    price = match o.dir {
                        Dir::Buy => best - tick,
                        Dir::Sell => best + tick,
                    };
                }
            }
        }
        let ts = wall_ms();
        self.unrest(oid, ts);
        if let Some(ord) = self.orders.get_mut(&oid) {
            ord.amount = amount;
            ord.price = Some(price);
            ord.post_only = post_only;
            ord.updated_ms = ts;
        }
        self.ledger.entries.push(LedgerEntry::OrderEdited {
            ts_us: wall_us(),
            order_id: o.order_id.clone(),
            label: o.label.clone(),
            price: price_f64(price),
            amount: amount as f64,
        });
        let trades = self.take_liquidity(i, o.dir, Some(price), amount - o.filled, Some(oid), ts);
        self.settle_new(oid, ts);
        Ok(json!({"order": self.order_json(oid), "trades": trades}))
    }

    /// Orders of an account with a label in a currency; `open_only` keeps open ones.
    pub fn orders_by_label(
        &self,
        account: &str,
        params: &Value,
        open_only: bool,
    ) -> Result<Value, RpcError> {
        let currency = str_param(params, "currency")?;
        let label = params.get("label").and_then(Value::as_str);
        let mut ids: Vec<u64> = self
            .orders
            .iter()
            .filter(|(_, o)| {
                o.account == account
                    && self.specs[o.inst as usize].currency == currency
                    && label.is_none_or(|l| o.label == l)
                    && (!open_only || o.state == OrderState::Open)
            })
            .map(|(k, _)| *k)
            .collect();
        ids.sort_unstable();
        Ok(Value::Array(
            ids.into_iter().map(|k| self.order_json(k)).collect(),
        ))
    }

    /// `private/get_order_state {order_id}`.
    pub fn order_state(&self, account: &str, params: &Value) -> Result<Value, RpcError> {
        let oid = self.own_order(account, params)?;
        Ok(self.order_json(oid))
    }

    /// `private/get_open_orders_by_instrument {instrument_name}`.
    pub fn open_orders_by_instrument(
        &self,
        account: &str,
        params: &Value,
    ) -> Result<Value, RpcError> {
        let inst = self.inst_param(params)?;
        let ids = self.open_orders_where(|o| o.account == account && o.inst == inst);
        Ok(Value::Array(
            ids.into_iter().map(|k| self.order_json(k)).collect(),
        ))
    }

    /// `private/get_user_trades_by_instrument {instrument_name, count?, sorting?}`.
    pub fn user_trades(&self, account: &str, params: &Value) -> Result<Value, RpcError> {
        let inst = self.inst_param(params)?;
        let count = params.get("count").and_then(Value::as_u64).unwrap_or(10) as usize;
        if count == 0 || count > 1000 {
            return Err(RpcError::invalid_param("count", "must be in 1..=1000"));
        }
        let all: Vec<&Value> = self
            .accounts
            .get(account)
            .map(|a| {
                a.trades
                    .iter()
                    .filter(|(i, _)| *i == inst)
                    .map(|(_, t)| t)
                    .collect()
            })
            .unwrap_or_default();
        let desc = params.get("sorting").and_then(Value::as_str) == Some("desc");
        let has_more = all.len() > count;
        let mut picked: Vec<Value> = if desc {
            all.iter().rev().take(count).map(|t| (*t).clone()).collect()
        } else {
            all[all.len().saturating_sub(count)..]
                .iter()
                .map(|t| (*t).clone())
                .collect()
        };
        if !desc {
            picked.sort_by_key(|t| t["trade_seq"].as_u64());
        }
        Ok(json!({"trades": picked, "has_more": has_more}))
    }

    /// `private/get_position {instrument_name}`.
    pub fn position_json(&self, account: &str, params: &Value) -> Result<Value, RpcError> {
        let inst = self.inst_param(params)?;
        let size = self.position(account, inst);
        let spec = &self.specs[inst as usize];
        Ok(json!({
            "instrument_name": spec.name,
            "size": size as f64,
            "direction": if size > 0 { "buy" } else if size < 0 { "sell" } else { "zero" },
            "kind": "future",
            "mark_price": price_f64(self.books[inst as usize].mid),
        }))
    }

    fn position(&self, account: &str, inst: u16) -> i64 {
        self.accounts
            .get(account)
            .and_then(|a| a.positions.get(&inst).copied())
            .unwrap_or(0)
    }

    fn inst_param(&self, params: &Value) -> Result<u16, RpcError> {
        let name = str_param(params, "instrument_name")?;
        self.instrument(name)
            .ok_or_else(|| RpcError::invalid_param("instrument_name", "instrument not found"))
    }

    /// The Deribit order object.
    pub fn order_json(&self, oid: u64) -> Value {
        let o = &self.orders[&oid];
        let spec = &self.specs[o.inst as usize];
        let avg = if o.filled > 0 {
            (o.notional / o.filled as i128) as i64
        } else {
            0
        };
        let price = match o.price {
            Some(p) => Value::from(price_f64(p)),
            None => Value::from("market_price"),
        };
        let mut v = json!({
            "order_id": o.order_id,
            "order_state": o.state.as_str(),
            "order_type": if o.otype == OrderType::Limit { "limit" } else { "market" },
            "instrument_name": spec.name,
            "direction": o.dir.as_str(),
            "price": price,
            "amount": o.amount as f64,
            "filled_amount": o.filled as f64,
            "average_price": price_f64(avg),
            "label": o.label,
            "post_only": o.post_only,
            "reduce_only": o.reduce_only,
            "time_in_force": o.tif.as_str(),
            "creation_timestamp": o.created_ms,
            "last_update_timestamp": o.updated_ms,
            "max_show": o.amount as f64,
            "api": true,
            "web": false,
            "is_liquidation": false,
            "replaced": false,
            "commission": 0.0,
            "risk_reducing": false,
            "mmp": false,
        });
        if let Some(r) = o.cancel_reason {
            v["cancel_reason"] = Value::from(r);
        }
        v
    }

    // ----- private notifications -------------------------------------------------------------

    fn notify_order(&self, oid: u64) {
        let o = &self.orders[&oid];
        self.notify(&o.account, o.inst, true, &self.order_json(oid));
    }

    fn notify(&self, account: &str, inst: u16, orders: bool, data: &Value) {
        let name = &self.specs[inst as usize].name;
        let channel = if orders {
            format!("user.orders.{name}.raw")
        } else {
            format!("user.trades.{name}.raw")
        };
        let mut text = None;
        for reg in self.conns.values() {
            if reg.account.as_deref() != Some(account) {
                continue;
            }
            let subscribed = if orders {
                reg.user_orders.contains(&inst)
            } else {
                reg.user_trades.contains(&inst)
            };
            if subscribed {
                let t = text.get_or_insert_with(|| notification(&channel, data));
                if let Ok(mut m) = reg.mailbox.lock() {
                    m.push(t.clone());
                }
            }
        }
    }
}

fn level_mut(book: &mut Book, side: Side, price: i64) -> &mut Level {
    book.side_mut(side).entry(price).or_default()
}

fn parse_price(spec: &InstrumentSpec, v: &Value) -> Result<i64, RpcError> {
    let p = v
        .as_f64()
        .ok_or_else(|| RpcError::invalid_param("price", "must be a number"))?;
    if p <= 0.0 || !p.is_finite() {
        return Err(RpcError::invalid_param("price", "must be positive"));
    }
    let scaled = p * PRICE_SCALE as f64;
    let fixed = scaled.round() as i64;
    if (scaled - fixed as f64).abs() > 1e-6 * scaled.max(1.0) || fixed % spec.tick != 0 {
        return Err(RpcError::new(code::PRICE_WRONG_TICK, "price_wrong_tick")
            .with_reason(format!("tick size is {}", price_f64(spec.tick))));
    }
    Ok(fixed)
}

fn label_of(params: &Value) -> String {
    params
        .get("label")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// A required string parameter.
pub fn str_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_param(name, "required string"))
}

/// An optional boolean parameter (false when absent).
pub fn bool_param(params: &Value, name: &str) -> Result<bool, RpcError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(RpcError::invalid_param(name, "must be a boolean")),
    }
}

/// Hex HMAC-SHA256 of `msg` keyed by `secret` (the `client_signature` scheme).
pub fn hmac_hex(secret: &str, msg: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, msg.as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venue(rate: f64) -> Venue {
        Venue::new(&VenueParams {
            instruments: vec!["BTC-PERPETUAL".into(), "ETH-PERPETUAL".into()],
            credentials: vec![("id".into(), "secret".into())],
            rate,
            depth: 10,
            seed: 42,
            token_ttl: Duration::from_secs(60),
            refresh_ttl: Duration::from_secs(120),
            log_capacity: 1 << 16,
            signature_window: Duration::from_secs(60),
        })
    }

    /// Replays book events onto a snapshot and checks it equals the venue's book.
    #[test]
    fn book_events_replayed_on_a_snapshot_reproduce_the_book() {
        let mut v = venue(100_000.0);
        let snap = v.snapshot(0);
        let (bids, asks, change_id, from) = (snap.bids, snap.asks, snap.change_id, snap.from_seq);
        let mut mine: HashMap<(bool, i64), i64> = bids
            .iter()
            .map(|(p, a)| ((true, *p), *a))
            .chain(asks.iter().map(|(p, a)| ((false, *p), *a)))
            .collect();
        let t0 = Instant::now();
        v.advance(t0);
        v.advance(t0 + Duration::from_millis(50));
        assert!(v.log.head() - from > 1000);
        let mut evs = Vec::new();
        v.log.read(from, usize::MAX, &mut evs).unwrap();
        let mut last = change_id;
        for e in evs.iter().filter(|e| e.inst == 0) {
            if let MdKind::Book { side, action } = e.kind {
                assert_eq!(e.aux, last, "prev_change_id links to the previous change");
                last = e.id;
                let key = (side == Side::Bid, e.price);
                match action {
                    Action::New => assert!(mine.insert(key, e.amount).is_none()),
                    Action::Change => assert!(mine.insert(key, e.amount).is_some()),
                    Action::Delete => assert!(mine.remove(&key).is_some()),
                }
            }
        }
        let snap = v.snapshot(0);
        let (bids, asks) = (snap.bids, snap.asks);
        let now: HashMap<(bool, i64), i64> = bids
            .iter()
            .map(|(p, a)| ((true, *p), *a))
            .chain(asks.iter().map(|(p, a)| ((false, *p), *a)))
            .collect();
        assert_eq!(mine, now);
        assert!(bids[0].0 < asks[0].0, "book stays uncrossed");
    }

    fn authed(v: &mut Venue) -> ConnId {
        v.register_conn(1, "127.0.0.1".parse().unwrap(), Mailbox::default());
        v.auth(
            1,
            &json!({"grant_type":"client_credentials","client_id":"id","client_secret":"secret"}),
            Instant::now(),
        )
        .unwrap();
        1
    }

    #[test]
    fn crossing_limit_order_takes_liquidity_then_rests_the_rest() {
        let mut v = venue(0.0);
        authed(&mut v);
        let best_ask = v.books[0].best(Side::Ask).unwrap();
        let avail = v.books[0].total(Side::Ask, best_ask);
        let p = v
            .parse_order(
                &json!({"instrument_name":"BTC-PERPETUAL","amount": (avail + 100) as f64,
                "type":"limit","price": price_f64(best_ask),"label":"x"}),
            )
            .unwrap();
        let r = v.place(1, "id", Dir::Buy, p).unwrap();
        assert_eq!(r["order"]["filled_amount"], avail as f64);
        assert_eq!(r["order"]["order_state"], "open");
        assert_eq!(v.books[0].total(Side::Bid, best_ask), 100);
        assert_eq!(v.ledger.filled_amount("x"), avail as f64);
    }

    #[test]
    fn post_only_crossing_order_is_rejected_or_repriced() {
        let mut v = venue(0.0);
        authed(&mut v);
        let best_ask = v.books[0].best(Side::Ask).unwrap();
        let req = |reject: bool| {
            json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"price":price_f64(best_ask),
                   "post_only":true,"reject_post_only":reject})
        };
        let p = v.parse_order(&req(true)).unwrap();
        assert_eq!(v.place(1, "id", Dir::Buy, p).unwrap_err().code, 11054);
        let p = v.parse_order(&req(false)).unwrap();
        let r = v.place(1, "id", Dir::Buy, p).unwrap();
        assert_eq!(r["order"]["price"], price_f64(best_ask - 5_000));
        assert_eq!(r["order"]["filled_amount"], 0.0);
    }

    #[test]
    fn signature_auth_accepts_the_right_hmac_only() {
        let mut v = venue(0.0);
        v.register_conn(1, "127.0.0.1".parse().unwrap(), Mailbox::default());
        let ts = wall_ms();
        let sig = hmac_hex("secret", &format!("{ts}\nabc\n"));
        let ok = json!({"grant_type":"client_signature","client_id":"id","timestamp":ts,
                        "nonce":"abc","data":"","signature":sig});
        assert!(v.auth(1, &ok, Instant::now()).is_ok());
        let mut bad = ok.clone();
        bad["nonce"] = "abd".into();
        assert_eq!(v.auth(1, &bad, Instant::now()).unwrap_err().code, 13004);
    }
}
