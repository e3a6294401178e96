//! One connection: its thread loop (read, handle requests, faults, timers, private mailbox,
//! market data, write), the WebSocket upgrade, request dispatch, subscriptions and the
//! market-data encoder.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::faults::{ConnFaults, FaultKind};
use super::fmt::{push_amount, push_int, push_price, push_str};
use super::market::{Action, Dir, MdEvent, MdKind, Rng, Side};
use super::rpc::{self, code, RpcError, Timing};
use super::server::Shared;
use super::transport::Transport;
use super::venue::{self, wall_us, BookSnapshot, CloseKind, ConnId, Mailbox};
use super::ws::{self, opcode, FrameDecoder, WsMessage};

/// Faults handed to a live connection from the control API.
#[derive(Debug, Default)]
pub(crate) struct ConnCtl {
    pending: Mutex<Vec<FaultKind>>,
}

impl ConnCtl {
    /// Queues a fault to fire on the connection's next loop turn.
    pub fn push(&self, kind: FaultKind) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(kind);
    }
    fn take(&self) -> Vec<FaultKind> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Version string answered by `public/test` and `public/hello`.
const API_VERSION: &str = "1.2.26";
/// Output held back before market data stops being pulled for this connection.
const MAX_PENDING_OUT: usize = 8 << 20;
/// Market-data events copied out of the log per lock.
const MD_BATCH: usize = 4096;
/// How long a closing connection may take to flush.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
    /// Flushing what is queued, then closing; `notify`: send TLS close_notify first.
    Closing {
        deadline: Instant,
        notify: bool,
    },
    HalfOpen,
    /// Neither reading nor writing until the instant, then `Open` again (fault `stall`).
    Stalled(Instant),
    /// Reset (SO_LINGER 0): the thread ends without writing anything more.
    Aborted,
}

struct Heartbeat {
    interval: Duration,
    next: Instant,
    awaiting: bool,
}

/// 100 ms aggregation of one book channel.
struct BookAgg {
    start: u64,
    prev: u64,
    last: u64,
    /// (0 bid / 1 ask, price) -> (level existed before the window, amount now).
    rows: BTreeMap<(u8, i64), (bool, i64)>,
}

#[derive(Default)]
struct InstSubs {
    book_raw: Option<u64>,
    book_100: Option<BookAgg>,
    trades_raw: Option<u64>,
    trades_100: Option<(u64, Vec<MdEvent>)>,
}

impl InstSubs {
    fn any(&self) -> bool {
        self.book_raw.is_some()
            || self.book_100.is_some()
            || self.trades_raw.is_some()
            || self.trades_100.is_some()
    }
}

struct Names {
    inst: String,
    book_raw: String,
    book_100: String,
    trades_raw: String,
    trades_100: String,
}

/// Order requests a `withhold` fault can swallow (index into `Conn::withhold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WithholdClass {
    /// `private/buy`, `private/sell`.
    Order = 0,
    /// `private/cancel`, `cancel_by_label`, `cancel_all`, `cancel_all_by_instrument`.
    Cancel = 1,
    /// `private/edit`.
    Edit = 2,
}

impl WithholdClass {
    fn of(method: &str) -> Option<WithholdClass> {
        match method {
            "private/buy" | "private/sell" => Some(WithholdClass::Order),
            "private/cancel"
            | "private/cancel_by_label"
            | "private/cancel_all"
            | "private/cancel_all_by_instrument" => Some(WithholdClass::Cancel),
            "private/edit" => Some(WithholdClass::Edit),
            _ => None,
        }
    }
}

/// What a subscription request resolved to.
enum Chan {
    Book(u16, bool),
    Trades(u16, bool),
    UserOrders(u16),
    UserTrades(u16),
}

struct Conn {
    shared: Arc<Shared>,
    id: ConnId,
    peer: SocketAddr,
    transport: Transport,
    poll: mio::Poll,
    events: mio::Events,
    phase: Phase,
    close_kind: CloseKind,
    registered: bool,
    inbuf: Vec<u8>,
    decoder: FrameDecoder,
    out: Vec<u8>,
    out_pos: usize,
    stage: Vec<u8>,
    delayed: VecDeque<(Instant, Vec<u8>)>,
    delay: Option<(Duration, Duration, Option<Instant>)>,
    scratch: Vec<u8>,
    mailbox: Mailbox,
    ctl: Arc<ConnCtl>,
    faults: ConnFaults,
    rng: Rng,
    skip_change: bool,
    ignore_test: u32,
    /// Pending `withhold` faults by request class ([`WithholdClass`]): `Some(executed)`.
    withhold: [Option<bool>; 3],
    /// Order requests received (buy, sell, edit, cancels): the `orders=N` fault condition.
    orders_seen: u64,
    reject_auth: u32,
    throttle: u32,
    msgs_sent: u64,
    hb: Option<Heartbeat>,
    bucket: f64,
    bucket_at: Instant,
    subs: Vec<InstSubs>,
    names: Vec<Names>,
    cursor: u64,
    md_buf: Vec<MdEvent>,
    next_agg: Instant,
    opened: Instant,
}

/// Thread body of one accepted connection.
pub(crate) fn run(shared: Arc<Shared>, id: ConnId, sock: mio::net::TcpStream, peer: SocketAddr) {
    let _ = sock.set_nodelay(true);
    let transport = match Transport::new(sock, shared.tls.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sim: connection {id}: {e}");
            return;
        }
    };
    let poll = match mio::Poll::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sim: connection {id}: {e}");
            return;
        }
    };
    let now = Instant::now();
    let names = {
        let v = shared.venue();
        v.specs
            .iter()
            .map(|s| Names {
                inst: s.name.clone(),
                book_raw: format!("book.{}.raw", s.name),
                book_100: format!("book.{}.100ms", s.name),
                trades_raw: format!("trades.{}.raw", s.name),
                trades_100: format!("trades.{}.100ms", s.name),
            })
            .collect::<Vec<_>>()
    };
    let ctl = Arc::new(ConnCtl::default());
    let seed = shared.cfg.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut c = Conn {
        id,
        peer,
        transport,
        poll,
        events: mio::Events::with_capacity(8),
        phase: Phase::Handshake,
        close_kind: CloseKind::Dropped,
        registered: false,
        inbuf: Vec::with_capacity(4096),
        decoder: FrameDecoder::new(shared.cfg.max_message),
        out: Vec::with_capacity(1 << 16),
        out_pos: 0,
        stage: Vec::with_capacity(1 << 16),
        delayed: VecDeque::new(),
        delay: None,
        scratch: Vec::with_capacity(1024),
        mailbox: Mailbox::default(),
        ctl: ctl.clone(),
        faults: ConnFaults::new(seed),
        rng: Rng::new(seed ^ 0x5555),
        skip_change: false,
        ignore_test: 0,
        withhold: [None; 3],
        orders_seen: 0,
        reject_auth: 0,
        throttle: 0,
        msgs_sent: 0,
        hb: None,
        bucket: shared.cfg.request_rate.burst,
        bucket_at: now,
        subs: names.iter().map(|_| InstSubs::default()).collect(),
        names,
        cursor: 0,
        md_buf: Vec::with_capacity(MD_BATCH),
        next_agg: now + Duration::from_millis(100),
        opened: now,
        shared,
    };
    c.shared
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, ctl);
    if let Err(e) = c.main_loop() {
        if !matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ) {
            eprintln!("sim: connection {id} ({}): {e}", c.peer);
        }
    }
    c.finish();
}

impl Conn {
    fn main_loop(&mut self) -> io::Result<()> {
        let token = mio::Token(0);
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        match &mut self.transport {
            Transport::Plain(s) => self.poll.registry().register(s, token, interest)?,
            Transport::Tls { sock, .. } => self.poll.registry().register(sock, token, interest)?,
        }
        loop {
            let now = Instant::now();
            if self.shared.stopping() {
                match self.phase {
                    Phase::Open => self.close_ws(1001, "going away", CloseKind::Dropped),
                    Phase::Handshake | Phase::HalfOpen | Phase::Stalled(_) | Phase::Aborted => {
                        return Ok(())
                    }
                    Phase::Closing { .. } => {}
                }
            }
            if self.phase == Phase::HalfOpen {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            if let Phase::Stalled(until) = self.phase {
                if now < until {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                // Carry on with what was received before and during the stall.
                self.phase = Phase::Open;
                self.handle_input(now)?;
                if self.phase == Phase::Aborted {
                    return Ok(());
                }
            }
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(1)))
                .or_else(|e| {
                    if e.kind() == io::ErrorKind::Interrupted {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
            let now = now.max(Instant::now());
            if !matches!(self.phase, Phase::Closing { .. }) {
                let got = self.transport.read_available(&mut self.inbuf)?;
                self.handle_input(now)?;
                if self.phase == Phase::Aborted {
                    return Ok(());
                }
                if got.eof && !matches!(self.phase, Phase::Closing { .. }) {
                    return Ok(());
                }
            }
            if self.phase == Phase::Open {
                if self.apply_faults(now)? {
                    return Ok(());
                }
                self.timers(now);
                self.drain_mailbox();
                self.pump_market(now);
            }
            if matches!(self.phase, Phase::HalfOpen | Phase::Stalled(_)) {
                continue;
            }
            self.commit_stage(now);
            self.flush()?;
            if let Phase::Closing { deadline, notify } = self.phase {
                let drained = self.out_pos == self.out.len()
                    && self.delayed.is_empty()
                    && !self.transport.wants_write();
                if drained || now >= deadline {
                    if notify {
                        self.transport.send_close_notify();
                        let mut pos = 0;
                        let _ = self.transport.write_from(&[], &mut pos);
                    }
                    self.transport.shutdown();
                    return Ok(());
                }
            }
        }
    }

    fn finish(&mut self) {
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        if self.registered {
            self.shared
                .venue()
                .unregister_conn(self.id, self.close_kind);
        }
    }

    // ----- input ---------------------------------------------------------------------------

    fn handle_input(&mut self, now: Instant) -> io::Result<()> {
        if self.phase == Phase::Handshake {
            match ws::parse_upgrade(&self.inbuf) {
                Ok(None) => return Ok(()),
                Ok(Some(req)) => {
                    if self.transport.resumed() {
                        self.shared.tls_resumed.fetch_add(1, Ordering::Relaxed);
                    }
                    let rest = self.inbuf.split_off(req.head_len);
                    self.inbuf.clear();
                    let path = req.path.split('?').next().unwrap_or("");
                    if path != "/ws/api/v2" {
                        self.http_refuse(404, "Not Found", "no such endpoint; use /ws/api/v2");
                        return Ok(());
                    }
                    let ip = self.peer.ip();
                    let mut v = self.shared.venue();
                    if v.conns_from(ip) >= self.shared.cfg.max_conns_per_ip {
                        drop(v);
                        self.http_refuse(
                            429,
                            "Too Many Requests",
                            "too many connections from this address",
                        );
                        return Ok(());
                    }
                    v.register_conn(self.id, ip, self.mailbox.clone());
                    self.cursor = v.log.head();
                    drop(v);
                    self.registered = true;
                    self.stage
                        .extend_from_slice(&ws::switching_protocols(&req.key));
                    self.phase = Phase::Open;
                    self.opened = now;
                    self.decoder.extend(&rest);
                }
                Err(ws::HandshakeError::TooLarge) => {
                    self.http_refuse(
                        431,
                        "Request Header Fields Too Large",
                        "request head too large",
                    );
                    return Ok(());
                }
                Err(e) => {
                    self.http_refuse(400, "Bad Request", &e.to_string());
                    return Ok(());
                }
            }
        } else if !self.inbuf.is_empty() {
            self.decoder.extend(&self.inbuf);
            self.inbuf.clear();
        }
        while self.phase == Phase::Open {
            match self.decoder.next_message() {
                Ok(None) => break,
                Ok(Some(WsMessage::Text(t))) => {
                    let seen = self.orders_seen;
                    self.handle_text(&t, now)?;
                    if self.orders_seen != seen
                        && self.phase == Phase::Open
                        && self.faults.counts_orders()
                        && self.apply_faults(now)?
                    {
                        return Ok(());
                    }
                }
                Ok(Some(WsMessage::Binary(_))) => self.close_ws(
                    1003,
                    "binary messages are not supported",
                    CloseKind::Dropped,
                ),
                Ok(Some(WsMessage::Ping(p))) => ws::write_frame(&mut self.stage, opcode::PONG, &p),
                Ok(Some(WsMessage::Pong)) => {}
                Ok(Some(WsMessage::Close(code))) => {
                    let code = if code == 1005 { 1000 } else { code };
                    self.close_ws(code, "", CloseKind::Dropped);
                }
                Err(e) => self.close_ws(e.close_code(), &e.to_string(), CloseKind::Dropped),
            }
        }
        Ok(())
    }

    fn http_refuse(&mut self, status: u16, reason: &str, body: &str) {
        self.stage
            .extend_from_slice(&ws::http_error(status, reason, body));
        self.phase = Phase::Closing {
            deadline: Instant::now() + CLOSE_GRACE,
            notify: true,
        };
    }

    /// Queues a close frame and closes after flushing.
    fn close_ws(&mut self, code: u16, reason: &str, kind: CloseKind) {
        if matches!(self.phase, Phase::Closing { .. }) {
            return;
        }
        ws::write_close(&mut self.stage, code, reason);
        self.close_kind = kind;
        self.phase = Phase::Closing {
            deadline: Instant::now() + CLOSE_GRACE,
            notify: true,
        };
    }

    fn send_text(&mut self, text: &str) {
        ws::write_frame(&mut self.stage, opcode::TEXT, text.as_bytes());
        self.msgs_sent += 1;
    }

    fn respond(&mut self, id: &Value, outcome: Result<Value, RpcError>, us_in: u64) {
        let t = Timing {
            us_in,
            us_out: wall_us(),
        };
        let s = rpc::response(id, outcome, t, self.shared.cfg.testnet);
        self.send_text(&s);
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let rl = self.shared.cfg.request_rate;
        let dt = now.saturating_duration_since(self.bucket_at).as_secs_f64();
        self.bucket_at = now;
        self.bucket = (self.bucket + dt * rl.per_sec).min(rl.burst);
        if self.bucket >= 1.0 {
            self.bucket -= 1.0;
            true
        } else {
            false
        }
    }

    fn handle_text(&mut self, text: &str, now: Instant) -> io::Result<()> {
        let us_in = wall_us();
        let req: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.respond(
                    &Value::Null,
                    Err(RpcError::parse_error().with_reason(e.to_string())),
                    us_in,
                );
                return Ok(());
            }
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let Some(method) = req.get("method").and_then(Value::as_str) else {
            self.respond(
                &id,
                Err(RpcError::new(code::INVALID_REQUEST, "Invalid Request")
                    .with_reason("method is required")),
                us_in,
            );
            return Ok(());
        };
        let empty = json!({});
        let params = match req.get("params") {
            None | Some(Value::Null) => &empty,
            Some(p @ Value::Object(_)) => p,
            Some(_) => {
                self.respond(
                    &id,
                    Err(RpcError::invalid_param("params", "must be an object")),
                    us_in,
                );
                return Ok(());
            }
        };
        if self.throttle > 0 {
            self.throttle -= 1;
            self.respond(&id, Err(RpcError::too_many_requests()), us_in);
            return Ok(());
        }
        if !self.take_token(now) {
            self.respond(&id, Err(RpcError::too_many_requests()), us_in);
            return Ok(());
        }
        let method = method.to_string();
        let params = params.clone();
        self.dispatch(&method, &id, &params, now, us_in)
    }

    fn dispatch(
        &mut self,
        method: &str,
        id: &Value,
        params: &Value,
        now: Instant,
        us_in: u64,
    ) -> io::Result<()> {
        let out: Result<Value, RpcError> = match method {
            "public/auth" => {
                if self.reject_auth > 0 {
                    self.reject_auth -= 1;
                    Err(RpcError::invalid_credentials().with_reason("rejected by fault injection"))
                } else {
                    self.shared.venue().auth(self.id, params, now).map(|g| {
                        json!({
                            "access_token": g.access_token,
                            "expires_in": g.expires_in,
                            "refresh_token": g.refresh_token,
                            "scope": g.scope,
                            "token_type": "bearer",
                            "enabled_features": [],
                        })
                    })
                }
            }
            "public/get_time" => Ok(Value::from(venue::wall_ms())),
            "public/hello" => Ok(json!({"version": API_VERSION})),
            "public/test" => {
                if self.ignore_test > 0 {
                    self.ignore_test -= 1;
                    return Ok(());
                }
                if let Some(hb) = &mut self.hb {
                    hb.awaiting = false;
                }
                Ok(json!({"version": API_VERSION}))
            }
            "public/set_heartbeat" => self.set_heartbeat(params, now),
            "public/disable_heartbeat" => {
                self.hb = None;
                Ok(Value::from("ok"))
            }
            "public/subscribe" | "private/subscribe" => {
                return self.subscribe(id, params, method.starts_with("private"), now, us_in)
            }
            "public/unsubscribe" | "private/unsubscribe" => self.unsubscribe(params),
            "public/unsubscribe_all" | "private/unsubscribe_all" => {
                self.unsubscribe_all();
                Ok(Value::from("ok"))
            }
            m if m.starts_with("private/") => return self.private(m, id, params, now, us_in),
            _ => Err(RpcError::method_not_found()),
        };
        self.respond(id, out, us_in);
        Ok(())
    }

    fn set_heartbeat(&mut self, params: &Value, now: Instant) -> Result<Value, RpcError> {
        let secs = params
            .get("interval")
            .and_then(Value::as_f64)
            .ok_or_else(|| RpcError::invalid_param("interval", "required number (seconds)"))?;
        let min = self.shared.cfg.min_heartbeat;
        if !secs.is_finite() || secs < min.as_secs_f64() || secs > 3600.0 {
            return Err(RpcError::invalid_param(
                "interval",
                format!("must be between {} and 3600 seconds", min.as_secs_f64()),
            ));
        }
        let interval = Duration::from_secs_f64(secs);
        self.hb = Some(Heartbeat {
            interval,
            next: now + interval,
            awaiting: false,
        });
        Ok(Value::from("ok"))
    }

    fn private(
        &mut self,
        method: &str,
        id: &Value,
        params: &Value,
        now: Instant,
        us_in: u64,
    ) -> io::Result<()> {
        let token = params.get("access_token").and_then(Value::as_str);
        let authorized = self.shared.venue().authorize(self.id, token, now);
        let account = match authorized {
            Ok(a) => a,
            Err(e) => {
                self.respond(id, Err(e), us_in);
                return Ok(());
            }
        };
        if method == "private/logout" {
            let invalidate = params
                .get("invalidate_token")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            self.shared.venue().logout(self.id, invalidate);
            self.close_ws(1000, "logout", CloseKind::Logout);
            return Ok(());
        }
        let class = WithholdClass::of(method);
        if let Some(c) = class {
            self.orders_seen += 1;
            if let Some(executed) = self.withhold[c as usize].take() {
                if executed {
                    // Executed, answer discarded: the connection resets below.
                    let _ = self.execute(method, params, &account);
                } else {
                    let mut v = self.shared.venue();
                    match c {
                        WithholdClass::Order => v.ledger_dropped(&account, params),
                        _ => v.ledger_request_dropped(&account, method, params),
                    }
                }
                self.abort()?;
                return Ok(());
            }
        }
        let out = self.execute(method, params, &account);
        self.respond(id, out, us_in);
        Ok(())
    }

    /// Executes a private method for `account` (authorized, not `private/logout`).
    fn execute(&mut self, method: &str, params: &Value, account: &str) -> Result<Value, RpcError> {
        let mut v = self.shared.venue();
        match method {
            "private/buy" | "private/sell" => {
                let dir = if method == "private/buy" {
                    Dir::Buy
                } else {
                    Dir::Sell
                };
                let r = v
                    .parse_order(params)
                    .and_then(|p| v.place(self.id, account, dir, p));
                if let Err(e) = &r {
                    v.ledger_reject(account, params, e);
                }
                r
            }
            "private/edit" => v.edit(account, params),
            "private/cancel" => v.cancel_request(account, params),
            "private/cancel_all" => Ok(v.cancel_all(account, None)),
            "private/cancel_all_by_instrument" => {
                match venue::str_param(params, "instrument_name").and_then(|n| {
                    v.instrument(n).ok_or_else(|| {
                        RpcError::invalid_param("instrument_name", "instrument not found")
                    })
                }) {
                    Ok(i) => Ok(v.cancel_all(account, Some(i))),
                    Err(e) => Err(e),
                }
            }
            "private/cancel_by_label" => v.cancel_by_label(account, params),
            "private/get_open_orders_by_label" => v.orders_by_label(account, params, true),
            "private/get_order_state_by_label" => v.orders_by_label(account, params, false),
            "private/get_order_state" => v.order_state(account, params),
            "private/get_open_orders_by_instrument" => v.open_orders_by_instrument(account, params),
            "private/get_user_trades_by_instrument" => v.user_trades(account, params),
            "private/get_position" => v.position_json(account, params),
            "private/enable_cancel_on_disconnect" | "private/disable_cancel_on_disconnect" => {
                let scope = params
                    .get("scope")
                    .and_then(Value::as_str)
                    .unwrap_or("connection");
                if scope != "connection" && scope != "account" {
                    Err(RpcError::invalid_param(
                        "scope",
                        "must be connection or account",
                    ))
                } else {
                    let on = method == "private/enable_cancel_on_disconnect";
                    v.set_cod(self.id, account, scope, on);
                    Ok(Value::from("ok"))
                }
            }
            "private/get_cancel_on_disconnect" => {
                let scope = params
                    .get("scope")
                    .and_then(Value::as_str)
                    .unwrap_or("connection");
                Ok(json!({"scope": scope, "enabled": v.cod_enabled(self.id, account)}))
            }
            _ => Err(RpcError::method_not_found()),
        }
    }

    // ----- subscriptions -------------------------------------------------------------------

    fn parse_channel(&self, ch: &str) -> Result<Chan, RpcError> {
        let bad = |why: &str| RpcError::invalid_param("channels", format!("{ch}: {why}"));
        let inst = |name: &str| -> Result<u16, RpcError> {
            self.names
                .iter()
                .position(|n| n.inst == name)
                .map(|i| i as u16)
                .ok_or_else(|| bad("unknown instrument"))
        };
        let parts: Vec<&str> = ch.split('.').collect();
        match parts.as_slice() {
            ["book", i, iv] => Ok(Chan::Book(
                inst(i)?,
                interval(iv).ok_or_else(|| bad("interval must be raw or 100ms"))?,
            )),
            ["trades", i, iv] => Ok(Chan::Trades(
                inst(i)?,
                interval(iv).ok_or_else(|| bad("interval must be raw or 100ms"))?,
            )),
            ["user", "orders", i, "raw"] => Ok(Chan::UserOrders(inst(i)?)),
            ["user", "trades", i, "raw"] => Ok(Chan::UserTrades(inst(i)?)),
            ["user", _, _, _] => Err(bad("only the raw interval is simulated for user channels")),
            _ => Err(bad("unknown channel")),
        }
    }

    fn subscribe(
        &mut self,
        id: &Value,
        params: &Value,
        _private: bool,
        now: Instant,
        us_in: u64,
    ) -> io::Result<()> {
        let list: Result<Vec<String>, RpcError> = params
            .get("channels")
            .and_then(Value::as_array)
            .ok_or_else(|| RpcError::invalid_param("channels", "required array of strings"))
            .and_then(|a| {
                a.iter()
                    .map(|c| {
                        c.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| RpcError::invalid_param("channels", "must be strings"))
                    })
                    .collect()
            });
        let list = match list {
            Ok(l) => l,
            Err(e) => {
                self.respond(id, Err(e), us_in);
                return Ok(());
            }
        };
        let mut chans = Vec::new();
        for ch in &list {
            match self.parse_channel(ch) {
                Ok(c) => chans.push(c),
                Err(e) => {
                    self.respond(id, Err(e), us_in);
                    return Ok(());
                }
            }
        }
        let needs_auth = chans.iter().any(|c| {
            matches!(
                c,
                Chan::Book(_, true)
                    | Chan::Trades(_, true)
                    | Chan::UserOrders(_)
                    | Chan::UserTrades(_)
            )
        });
        if needs_auth {
            let token = params.get("access_token").and_then(Value::as_str);
            let authorized = self.shared.venue().authorize(self.id, token, now);
            if let Err(e) = authorized {
                let private = chans
                    .iter()
                    .any(|c| matches!(c, Chan::UserOrders(_) | Chan::UserTrades(_)));
                let e = if private {
                    e
                } else {
                    RpcError::new(
                        code::RAW_SUBSCRIPTIONS_NOT_AVAILABLE,
                        "raw_subscriptions_not_available_for_unauthorized",
                    )
                };
                self.respond(id, Err(e), us_in);
                return Ok(());
            }
        }
        // Snapshots are taken under the venue lock and sent right after the response.
        let mut snapshots = Vec::new();
        {
            let mut v = self.shared.venue();
            // Without market-data subscriptions the cursor is not advanced; start from now.
            if !self.subs.iter().any(InstSubs::any) || self.cursor < v.log.first_seq() {
                self.cursor = v.log.head();
            }
            for c in &chans {
                match *c {
                    Chan::Book(i, raw) => {
                        let snap = v.snapshot(i);
                        let s = &mut self.subs[i as usize];
                        if raw {
                            s.book_raw = Some(snap.from_seq);
                        } else {
                            s.book_100 = Some(BookAgg {
                                start: snap.from_seq,
                                prev: snap.change_id,
                                last: snap.change_id,
                                rows: BTreeMap::new(),
                            });
                        }
                        snapshots.push((i, raw, snap));
                    }
                    Chan::Trades(i, raw) => {
                        let head = v.log.head();
                        let s = &mut self.subs[i as usize];
                        if raw {
                            s.trades_raw = Some(head);
                        } else {
                            s.trades_100 = Some((head, Vec::new()));
                        }
                    }
                    Chan::UserOrders(i) => {
                        if let Some(r) = v.conn_mut(self.id) {
                            r.user_orders.insert(i);
                        }
                    }
                    Chan::UserTrades(i) => {
                        if let Some(r) = v.conn_mut(self.id) {
                            r.user_trades.insert(i);
                        }
                    }
                }
            }
            // Events between the cursor and the snapshot point are still due to the other
            // channels; each channel's start position skips what its snapshot contains.
        }
        self.respond(id, Ok(Value::from(list)), us_in);
        for (i, raw, snap) in snapshots {
            self.encode_snapshot(i, raw, &snap);
        }
        Ok(())
    }

    fn unsubscribe(&mut self, params: &Value) -> Result<Value, RpcError> {
        let list: Vec<String> = params
            .get("channels")
            .and_then(Value::as_array)
            .ok_or_else(|| RpcError::invalid_param("channels", "required array of strings"))?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        let mut removed = Vec::new();
        for ch in list {
            let Ok(c) = self.parse_channel(&ch) else {
                continue;
            };
            match c {
                Chan::Book(i, true) => self.subs[i as usize].book_raw = None,
                Chan::Book(i, false) => self.subs[i as usize].book_100 = None,
                Chan::Trades(i, true) => self.subs[i as usize].trades_raw = None,
                Chan::Trades(i, false) => self.subs[i as usize].trades_100 = None,
                Chan::UserOrders(i) => {
                    if let Some(r) = self.shared.venue().conn_mut(self.id) {
                        r.user_orders.remove(&i);
                    }
                }
                Chan::UserTrades(i) => {
                    if let Some(r) = self.shared.venue().conn_mut(self.id) {
                        r.user_trades.remove(&i);
                    }
                }
            }
            removed.push(Value::from(ch));
        }
        Ok(Value::Array(removed))
    }

    fn unsubscribe_all(&mut self) {
        for s in &mut self.subs {
            *s = InstSubs::default();
        }
        if let Some(r) = self.shared.venue().conn_mut(self.id) {
            r.user_orders.clear();
            r.user_trades.clear();
        }
    }

    // ----- faults, timers, private notifications -------------------------------------------

    /// Applies faults that are due; true when the connection is gone.
    fn apply_faults(&mut self, now: Instant) -> io::Result<bool> {
        let mut due = self.ctl.take();
        {
            let rules = self.shared.rules.lock().unwrap_or_else(|p| p.into_inner());
            if self.faults.seen < rules.len() {
                self.faults.sync(&rules, self.id, self.opened);
            }
        }
        if !self.faults.rules.is_empty() {
            due.extend(
                self.faults
                    .due(now, self.shared.start, self.msgs_sent, self.orders_seen),
            );
        }
        for kind in due {
            match kind {
                FaultKind::Rst => {
                    self.abort()?;
                    return Ok(true);
                }
                FaultKind::Fin => {
                    self.phase = Phase::Closing {
                        deadline: now + CLOSE_GRACE,
                        notify: true,
                    };
                }
                FaultKind::TlsNoCloseNotify => {
                    self.phase = Phase::Closing {
                        deadline: now + CLOSE_GRACE,
                        notify: false,
                    };
                }
                FaultKind::HalfOpen => {
                    self.phase = Phase::HalfOpen;
                    return Ok(false);
                }
                FaultKind::Stall { span } => {
                    self.phase = Phase::Stalled(now + span);
                    return Ok(false);
                }
                FaultKind::Delay {
                    delay,
                    jitter,
                    span,
                } => self.delay = Some((delay, jitter, span.map(|s| now + s))),
                FaultKind::Burst { factor, span } => {
                    self.shared.venue().set_burst(factor, now + span)
                }
                FaultKind::Gap => self.skip_change = true,
                FaultKind::IgnoreTest => self.ignore_test += 1,
                FaultKind::Withhold { executed } => {
                    self.withhold[WithholdClass::Order as usize] = Some(executed)
                }
                FaultKind::WithholdCancel { executed } => {
                    self.withhold[WithholdClass::Cancel as usize] = Some(executed)
                }
                FaultKind::WithholdEdit { executed } => {
                    self.withhold[WithholdClass::Edit as usize] = Some(executed)
                }
                FaultKind::FillGap => {
                    if let Some(r) = self.shared.venue().conn_mut(self.id) {
                        r.fill_on_close = true;
                    }
                }
                FaultKind::RejectAuth => self.reject_auth += 1,
                FaultKind::ExpireTokens => self.shared.venue().expire_tokens(Some(self.id), now),
                FaultKind::Throttle => self.throttle += 1,
                FaultKind::Malformed => {
                    // RSV1 set without a negotiated extension: a protocol error for the client.
                    self.stage.extend_from_slice(&[0xC1, 0x02, b'{', b'}']);
                    self.msgs_sent += 1;
                }
                FaultKind::Oversized => {
                    ws::write_frame_header(&mut self.stage, 0x81, 256 << 20);
                    self.stage
                        .extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":\"subscription\"");
                    self.msgs_sent += 1;
                }
                FaultKind::BadUtf8 => {
                    ws::write_frame(&mut self.stage, opcode::TEXT, &[b'{', 0xff, 0xfe, b'}']);
                    self.msgs_sent += 1;
                }
                FaultKind::BadJson => {
                    self.send_text("{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{");
                }
            }
        }
        Ok(false)
    }

    /// TCP reset: whatever is queued is flushed best-effort first, then SO_LINGER 0; the
    /// socket is closed (sending RST) when the connection thread ends.
    fn abort(&mut self) -> io::Result<()> {
        self.commit_stage(Instant::now());
        let _ = self.flush();
        self.transport.set_linger_zero()?;
        self.phase = Phase::Aborted;
        Ok(())
    }

    fn timers(&mut self, now: Instant) {
        let mut failed = false;
        if let Some(hb) = &mut self.hb {
            if now >= hb.next {
                if hb.awaiting {
                    failed = true;
                } else {
                    hb.awaiting = true;
                    hb.next = now + hb.interval;
                    self.send_text(
                        "{\"jsonrpc\":\"2.0\",\"method\":\"heartbeat\",\"params\":{\"type\":\"test_request\"}}",
                    );
                }
            }
        }
        if failed {
            self.hb = None;
            self.close_ws(1000, "heartbeat timeout", CloseKind::HeartbeatFailed);
            return;
        }
        if let Some((_, _, Some(until))) = self.delay {
            if now >= until {
                self.delay = None;
            }
        }
        if now >= self.next_agg {
            self.next_agg += Duration::from_millis(100);
            if self.next_agg < now {
                self.next_agg = now + Duration::from_millis(100);
            }
            self.flush_aggregates();
        }
    }

    fn drain_mailbox(&mut self) {
        let msgs = std::mem::take(&mut *self.mailbox.lock().unwrap_or_else(|p| p.into_inner()));
        for m in msgs {
            self.send_text(&m);
        }
    }

    // ----- market data ---------------------------------------------------------------------

    fn pump_market(&mut self, _now: Instant) {
        if !self.subs.iter().any(InstSubs::any) {
            return;
        }
        let pending = self.out.len() - self.out_pos
            + self.stage.len()
            + self.delayed.iter().map(|(_, b)| b.len()).sum::<usize>();
        if pending > MAX_PENDING_OUT {
            return;
        }
        let mut sent = 0u64;
        for _ in 0..4 {
            let mut buf = std::mem::take(&mut self.md_buf);
            let read = self
                .shared
                .venue()
                .log
                .read(self.cursor, MD_BATCH, &mut buf);
            if let Err(lag) = read {
                self.md_buf = buf;
                eprintln!(
                    "sim: connection {} fell behind the market-data log (at {}, oldest {})",
                    self.id, self.cursor, lag.first_available
                );
                self.close_ws(1008, "slow consumer", CloseKind::Dropped);
                return;
            }
            if buf.is_empty() {
                self.md_buf = buf;
                break;
            }
            self.cursor = buf.last().map_or(self.cursor, |e| e.seq + 1);
            for ev in &buf {
                sent += self.encode_event(ev);
            }
            let full = buf.len() == MD_BATCH;
            self.md_buf = buf;
            if !full || self.stage.len() > MAX_PENDING_OUT / 2 {
                break;
            }
        }
        if sent > 0 {
            self.shared.md_sent.fetch_add(sent, Ordering::Relaxed);
        }
    }

    /// Encodes one event for every channel that wants it; returns messages written.
    fn encode_event(&mut self, ev: &MdEvent) -> u64 {
        let i = ev.inst as usize;
        let mut n = 0;
        match ev.kind {
            MdKind::Book { side, action } => {
                if self.subs[i].book_raw.is_some_and(|s| ev.seq >= s) {
                    if self.skip_change {
                        self.skip_change = false;
                    } else {
                        encode_book_change(
                            &mut self.scratch,
                            &self.names[i].book_raw,
                            &self.names[i].inst,
                            ev.ts_ms,
                            ev.aux,
                            ev.id,
                            &[(side, action, ev.price, ev.amount)],
                        );
                        ws::write_frame(&mut self.stage, opcode::TEXT, &self.scratch);
                        n += 1;
                    }
                }
                if let Some(agg) = &mut self.subs[i].book_100 {
                    if ev.seq >= agg.start {
                        let key = (if side == Side::Bid { 0 } else { 1 }, ev.price);
                        let after = if action == Action::Delete {
                            0
                        } else {
                            ev.amount
                        };
                        agg.rows
                            .entry(key)
                            .and_modify(|r| r.1 = after)
                            .or_insert((action != Action::New, after));
                        agg.last = ev.id;
                    }
                }
            }
            MdKind::Trade { .. } => {
                if self.subs[i].trades_raw.is_some_and(|s| ev.seq >= s) {
                    encode_trades(
                        &mut self.scratch,
                        &self.names[i].trades_raw,
                        &self.names[i].inst,
                        std::slice::from_ref(ev),
                    );
                    ws::write_frame(&mut self.stage, opcode::TEXT, &self.scratch);
                    n += 1;
                }
                if let Some((start, pending)) = &mut self.subs[i].trades_100 {
                    if ev.seq >= *start {
                        pending.push(*ev);
                    }
                }
            }
        }
        self.msgs_sent += n;
        n
    }

    fn flush_aggregates(&mut self) {
        let mut sent = 0;
        for i in 0..self.subs.len() {
            if let Some(agg) = &mut self.subs[i].book_100 {
                if agg.last != agg.prev && !agg.rows.is_empty() {
                    let mut rows = Vec::with_capacity(agg.rows.len());
                    for (&(s, price), &(existed, after)) in agg.rows.iter() {
                        let side = if s == 0 { Side::Bid } else { Side::Ask };
                        let action = match (existed, after > 0) {
                            (false, false) => continue,
                            (false, true) => Action::New,
                            (true, true) => Action::Change,
                            (true, false) => Action::Delete,
                        };
                        rows.push((side, action, price, after));
                    }
                    // Bids best (highest) first.
                    rows.sort_by(|a, b| match (a.0, b.0) {
                        (Side::Bid, Side::Bid) => b.2.cmp(&a.2),
                        (Side::Ask, Side::Ask) => a.2.cmp(&b.2),
                        (Side::Bid, Side::Ask) => std::cmp::Ordering::Less,
                        (Side::Ask, Side::Bid) => std::cmp::Ordering::Greater,
                    });
                    let (prev, last) = (agg.prev, agg.last);
                    agg.rows.clear();
                    if !rows.is_empty() {
                        agg.prev = last;
                        if self.skip_change {
                            self.skip_change = false;
                        } else {
                            encode_book_change(
                                &mut self.scratch,
                                &self.names[i].book_100,
                                &self.names[i].inst,
                                venue::wall_ms(),
                                prev,
                                last,
                                &rows,
                            );
                            ws::write_frame(&mut self.stage, opcode::TEXT, &self.scratch);
                            sent += 1;
                        }
                    }
                } else {
                    agg.rows.clear();
                }
            }
            if let Some((_, pending)) = &mut self.subs[i].trades_100 {
                if !pending.is_empty() {
                    let evs = std::mem::take(pending);
                    encode_trades(
                        &mut self.scratch,
                        &self.names[i].trades_100,
                        &self.names[i].inst,
                        &evs,
                    );
                    ws::write_frame(&mut self.stage, opcode::TEXT, &self.scratch);
                    sent += 1;
                }
            }
        }
        self.msgs_sent += sent;
        if sent > 0 {
            self.shared.md_sent.fetch_add(sent, Ordering::Relaxed);
        }
    }

    fn encode_snapshot(&mut self, i: u16, raw: bool, snap: &BookSnapshot) {
        let (bids, asks, change_id) = (&snap.bids, &snap.asks, snap.change_id);
        let n = &self.names[i as usize];
        let s = &mut self.scratch;
        s.clear();
        s.extend_from_slice(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{\"channel\":",
        );
        push_str(s, if raw { &n.book_raw } else { &n.book_100 });
        s.extend_from_slice(b",\"data\":{\"type\":\"snapshot\",\"timestamp\":");
        push_int(s, venue::wall_ms());
        s.extend_from_slice(b",\"instrument_name\":");
        push_str(s, &n.inst);
        s.extend_from_slice(b",\"change_id\":");
        push_int(s, change_id);
        s.extend_from_slice(b",\"bids\":[");
        push_rows(s, bids.iter().map(|(p, a)| (Action::New, *p, *a)));
        s.extend_from_slice(b"],\"asks\":[");
        push_rows(s, asks.iter().map(|(p, a)| (Action::New, *p, *a)));
        s.extend_from_slice(b"],\"sw_send_ns\":");
        push_int(s, wall_ns());
        s.extend_from_slice(b"}}}");
        ws::write_frame(&mut self.stage, opcode::TEXT, &self.scratch);
        self.msgs_sent += 1;
        self.shared.md_sent.fetch_add(1, Ordering::Relaxed);
    }

    // ----- output --------------------------------------------------------------------------

    /// Moves this turn's frames towards the socket, through the delay queue when a delay
    /// fault is active.
    fn commit_stage(&mut self, now: Instant) {
        if !self.stage.is_empty() {
            match self.delay {
                Some((d, j, _)) => {
                    let jitter = if j.is_zero() {
                        Duration::ZERO
                    } else {
                        j.mul_f64(self.rng.unit())
                    };
                    let chunk = std::mem::replace(&mut self.stage, Vec::with_capacity(1 << 16));
                    self.delayed.push_back((now + d + jitter, chunk));
                }
                None if self.delayed.is_empty() => {
                    if self.out_pos == self.out.len() {
                        self.out.clear();
                        self.out_pos = 0;
                        std::mem::swap(&mut self.out, &mut self.stage);
                    } else {
                        self.out.extend_from_slice(&self.stage);
                        self.stage.clear();
                    }
                }
                None => {
                    let chunk = std::mem::replace(&mut self.stage, Vec::with_capacity(1 << 16));
                    self.delayed.push_back((now, chunk));
                }
            }
        }
        while self.delayed.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, chunk)) = self.delayed.pop_front() {
                self.out.extend_from_slice(&chunk);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.transport.write_from(&self.out, &mut self.out_pos)?;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > (1 << 20) {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }
}

fn interval(s: &str) -> Option<bool> {
    match s {
        "raw" => Some(true),
        "100ms" => Some(false),
        _ => None,
    }
}

/// Wall clock in nanoseconds since the Unix epoch.
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn push_rows(s: &mut Vec<u8>, rows: impl Iterator<Item = (Action, i64, i64)>) {
    for (k, (action, price, amount)) in rows.enumerate() {
        if k > 0 {
            s.push(b',');
        }
        s.extend_from_slice(b"[\"");
        s.extend_from_slice(action.as_str().as_bytes());
        s.extend_from_slice(b"\",");
        push_price(s, price);
        s.push(b',');
        push_amount(s, amount);
        s.push(b']');
    }
}

/// Encodes a `book.*` change notification into `s` (cleared first).
fn encode_book_change(
    s: &mut Vec<u8>,
    channel: &str,
    inst: &str,
    ts_ms: u64,
    prev: u64,
    change_id: u64,
    rows: &[(Side, Action, i64, i64)],
) {
    s.clear();
    s.extend_from_slice(
        b"{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{\"channel\":\"",
    );
    s.extend_from_slice(channel.as_bytes());
    s.extend_from_slice(b"\",\"data\":{\"type\":\"change\",\"timestamp\":");
    push_int(s, ts_ms);
    s.extend_from_slice(b",\"prev_change_id\":");
    push_int(s, prev);
    s.extend_from_slice(b",\"instrument_name\":\"");
    s.extend_from_slice(inst.as_bytes());
    s.extend_from_slice(b"\",\"change_id\":");
    push_int(s, change_id);
    s.extend_from_slice(b",\"bids\":[");
    push_rows(
        s,
        rows.iter()
            .filter(|r| r.0 == Side::Bid)
            .map(|r| (r.1, r.2, r.3)),
    );
    s.extend_from_slice(b"],\"asks\":[");
    push_rows(
        s,
        rows.iter()
            .filter(|r| r.0 == Side::Ask)
            .map(|r| (r.1, r.2, r.3)),
    );
    s.extend_from_slice(b"],\"sw_send_ns\":");
    push_int(s, wall_ns());
    s.extend_from_slice(b"}}}");
}

/// Encodes a `trades.*` notification (data: array of trades) into `s` (cleared first).
fn encode_trades(s: &mut Vec<u8>, channel: &str, inst: &str, evs: &[MdEvent]) {
    s.clear();
    s.extend_from_slice(
        b"{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{\"channel\":\"",
    );
    s.extend_from_slice(channel.as_bytes());
    s.extend_from_slice(b"\",\"data\":[");
    let ns = wall_ns();
    for (k, ev) in evs.iter().enumerate() {
        let MdKind::Trade { dir, tick_dir } = ev.kind else {
            continue;
        };
        if k > 0 {
            s.push(b',');
        }
        s.extend_from_slice(b"{\"trade_seq\":");
        push_int(s, ev.aux);
        s.extend_from_slice(b",\"trade_id\":\"");
        push_int(s, ev.id);
        s.extend_from_slice(b"\",\"timestamp\":");
        push_int(s, ev.ts_ms);
        s.extend_from_slice(b",\"tick_direction\":");
        push_int(s, tick_dir);
        s.extend_from_slice(b",\"price\":");
        push_price(s, ev.price);
        s.extend_from_slice(b",\"mark_price\":");
        push_price(s, ev.mark);
        s.extend_from_slice(b",\"instrument_name\":\"");
        s.extend_from_slice(inst.as_bytes());
        s.extend_from_slice(b"\",\"index_price\":");
        push_price(s, ev.mark);
        s.extend_from_slice(b",\"direction\":\"");
        s.extend_from_slice(dir.as_str().as_bytes());
        s.extend_from_slice(b"\",\"amount\":");
        push_amount(s, ev.amount);
        s.extend_from_slice(b",\"sw_send_ns\":");
        push_int(s, ns);
        s.push(b'}');
    }
    s.extend_from_slice(b"]}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_change_encoding_is_valid_deribit_json() {
        let mut s = Vec::new();
        encode_book_change(
            &mut s,
            "book.BTC-PERPETUAL.raw",
            "BTC-PERPETUAL",
            1_700_000_000_000,
            10,
            11,
            &[
                (Side::Bid, Action::Change, 600_005_000, 120),
                (Side::Ask, Action::Delete, 600_010_000, 0),
            ],
        );
        let v: Value = serde_json::from_slice(&s).unwrap();
        assert_eq!(v["method"], "subscription");
        let d = &v["params"]["data"];
        assert_eq!(d["type"], "change");
        assert_eq!(d["prev_change_id"], 10);
        assert_eq!(d["change_id"], 11);
        assert_eq!(d["bids"][0], json!(["change", 60000.5, 120.0]));
        assert_eq!(d["asks"][0], json!(["delete", 60001.0, 0.0]));
        assert!(d["sw_send_ns"].as_u64().unwrap() > 1_600_000_000_000_000_000);
    }

    #[test]
    fn trades_encoding_is_an_array_of_deribit_trades() {
        let ev = MdEvent {
            seq: 0,
            ts_ms: 5,
            inst: 0,
            kind: MdKind::Trade {
                dir: Dir::Sell,
                tick_dir: 2,
            },
            price: 30_000_500,
            amount: 7,
            id: 99,
            aux: 3,
            mark: 30_000_000,
        };
        let mut s = Vec::new();
        encode_trades(
            &mut s,
            "trades.ETH-PERPETUAL.raw",
            "ETH-PERPETUAL",
            &[ev, ev],
        );
        let v: Value = serde_json::from_slice(&s).unwrap();
        let t = &v["params"]["data"][1];
        assert_eq!(t["trade_id"], "99");
        assert_eq!(t["trade_seq"], 3);
        assert_eq!(t["price"], 3000.05);
        assert_eq!(t["direction"], "sell");
        assert_eq!(t["amount"], 7.0);
    }
}
