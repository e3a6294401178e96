//! Deterministic tests of the sans-IO `Session` with simulated time and an in-memory peer (the
//! quinn-proto style): every state transition and timer.

use std::time::Duration;

use serde_json::{json, Value};
use spinwire_engine::md::MdRecord;
use spinwire_engine::session::{
    Action, AuthMethod, BackoffConfig, Credentials, DisconnectCause, EventKind, FatalReason,
    RequestKind, Session, SessionConfig, SessionState, Timer, TransportPhase,
};

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;
const SECRET: &str = "very-secret-client-secret";
const ACCESS: &str = "ACCESS-token-0123";
const REFRESH: &str = "REFRESH-token-4567";

/// A session, a simulated clock and everything it produced.
struct Pair {
    s: Session,
    now: u64,
    /// Requests sent (parsed), in order.
    sent: Vec<Value>,
    /// Raw text sent.
    sent_text: Vec<String>,
    /// Every request ever sent (not cleared), for answering by id.
    history: Vec<Value>,
    actions: Vec<Action>,
    events: Vec<EventKind>,
    records: Vec<MdRecord>,
}

fn config() -> SessionConfig {
    SessionConfig {
        credentials: Some(Credentials::new("client-1", SECRET)),
        heartbeat: Some(Duration::from_secs(10)),
        ping_after: Duration::from_secs(10),
        dead_after: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(3),
        setup_timeout: Duration::from_secs(4),
        backoff: BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            budget: 32,
            budget_window: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
        },
        rate_limit_retry: Duration::from_millis(500),
        drain_timeout: Duration::from_secs(1),
        ..SessionConfig::default()
    }
}

impl Pair {
    fn new(cfg: SessionConfig) -> Pair {
        Pair {
            s: Session::new(cfg).unwrap(),
            now: 1_000 * S,
            sent: vec![],
            sent_text: vec![],
            history: vec![],
            actions: vec![],
            events: vec![],
            records: vec![],
        }
    }

    /// Drains actions, transmits and events, as the driver does after each input.
    fn drain(&mut self) {
        while let Some(a) = self.s.poll_action() {
            self.actions.push(a);
        }
        let mut buf = [0u8; 4096];
        while let Some(n) = self.s.poll_transmit(self.now, &mut buf) {
            let text = std::str::from_utf8(&buf[..n]).unwrap().to_owned();
            let v: Value = serde_json::from_str(&text).unwrap();
            self.history.push(v.clone());
            self.sent.push(v);
            self.sent_text.push(text);
        }
        while let Some(e) = self.s.poll_event() {
            self.events.push(e.kind);
        }
    }

    /// Moves the clock by `dt`, firing due timers on the way (each at its own deadline).
    fn advance(&mut self, dt: u64) {
        let end = self.now + dt;
        while let Some(t) = self.s.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.drain();
    }

    /// Moves the clock by `secs` seconds with inbound traffic every second (no idle ping).
    fn busy(&mut self, secs: u64) {
        for _ in 0..secs {
            self.advance(S);
            self.s.handle_activity(self.now);
        }
    }

    fn recv(&mut self, text: &str) {
        let mut sink = |r: &[MdRecord]| self.records.extend_from_slice(r);
        self.s.handle_text(self.now, text, &mut sink);
        self.drain();
    }

    fn open(&mut self) {
        self.s.handle_transport_phase(self.now, TransportPhase::Tls);
        self.s
            .handle_transport_phase(self.now, TransportPhase::WebSocket);
        self.s.handle_connected(self.now);
        self.drain();
    }

    fn start(&mut self) {
        self.s.connect(self.now).unwrap();
        self.drain();
        self.open();
    }

    /// The id of the last request of `method`.
    fn last_id(&self, method: &str) -> u64 {
        self.history
            .iter()
            .rev()
            .find(|r| r["method"] == method)
            .unwrap_or_else(|| panic!("no {method} in {:?}", self.methods()))["id"]
            .as_u64()
            .unwrap()
    }

    fn reply(&mut self, method: &str, result: Value) {
        let id = self.last_id(method);
        self.recv(&json!({"jsonrpc":"2.0","id":id,"result":result}).to_string());
    }

    fn reply_err(&mut self, method: &str, code: i64, message: &str) {
        let id = self.last_id(method);
        self.recv(
            &json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}}).to_string(),
        );
    }

    fn auth_ok(&mut self, expires_in: u64) {
        self.reply(
            "public/auth",
            json!({"access_token":ACCESS,"refresh_token":REFRESH,"expires_in":expires_in,
                   "scope":"connection mainaccount","token_type":"bearer"}),
        );
    }

    fn methods(&self) -> Vec<String> {
        self.sent
            .iter()
            .map(|r| r["method"].as_str().unwrap().to_owned())
            .collect()
    }

    fn count(&self, method: &str) -> usize {
        self.sent.iter().filter(|r| r["method"] == method).count()
    }

    /// Connect, authenticate, subscribe, reach Live.
    fn live(&mut self, channels: &[&str]) {
        for c in channels {
            self.s.subscribe(self.now, c).unwrap();
        }
        self.start();
        self.auth_ok(900);
        if !channels.is_empty() {
            self.reply("public/subscribe", json!(channels));
        }
        assert_eq!(self.s.state(), SessionState::Live, "{:?}", self.events);
    }

    fn clear(&mut self) {
        self.sent.clear();
        self.sent_text.clear();
        self.actions.clear();
        self.events.clear();
    }
}

fn book_snapshot(inst: &str, change_id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"book.{inst}.raw","data":{{"type":"snapshot","timestamp":1,"instrument_name":"{inst}","change_id":{change_id},"bids":[["new",100.0,1.0]],"asks":[["new",101.0,2.0]]}}}}}}"#
    )
}

fn book_change(inst: &str, prev: u64, change_id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"book.{inst}.raw","data":{{"type":"change","timestamp":2,"prev_change_id":{prev},"instrument_name":"{inst}","change_id":{change_id},"bids":[["change",100.0,3.0]],"asks":[]}}}}}}"#
    )
}

fn book_ids(records: &[MdRecord]) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = records
        .iter()
        .filter_map(|r| match r {
            MdRecord::Book(b) => Some((b.prev_change_id, b.change_id)),
            _ => None,
        })
        .collect();
    v.dedup();
    v
}

fn states(events: &[EventKind]) -> Vec<SessionState> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::StateChanged { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn start_asks_for_a_connection_and_walks_the_transport_states() {
    let mut p = Pair::new(config());
    p.s.connect(p.now).unwrap();
    p.drain();
    assert_eq!(p.actions, vec![Action::Connect]);
    assert_eq!(p.s.state(), SessionState::Connecting);
    assert!(p.s.connect(p.now).is_err(), "a second start is refused");
    p.open();
    assert_eq!(
        states(&p.events),
        vec![
            SessionState::Connecting,
            SessionState::TlsHandshake,
            SessionState::WsHandshake,
            SessionState::Authenticating
        ]
    );
}

#[test]
fn auth_then_heartbeat_then_subscriptions_then_live() {
    let mut p = Pair::new(config());
    p.live(&["book.BTC-PERPETUAL.raw", "trades.BTC-PERPETUAL.raw"]);
    assert_eq!(
        p.methods(),
        vec!["public/auth", "public/set_heartbeat", "public/subscribe"]
    );
    let auth = &p.sent[0]["params"];
    assert_eq!(auth["grant_type"], "client_signature");
    assert_eq!(p.sent[1]["params"]["interval"], 10.0);
    assert_eq!(
        p.sent[2]["params"]["channels"],
        json!(["book.BTC-PERPETUAL.raw", "trades.BTC-PERPETUAL.raw"])
    );
    assert!(p.sent_text.iter().all(|t| !t.contains(SECRET)));
    assert!(p.events.contains(&EventKind::Live { downtime_ns: 0 }));
    assert!(p.events.iter().any(|e| matches!(
        e,
        EventKind::Authenticated {
            expires_in_s: 900,
            resumed: false
        }
    )));
    assert_eq!(
        states(&p.events)[3..],
        [
            SessionState::Authenticating,
            SessionState::Subscribing,
            SessionState::Live
        ]
    );
}

#[test]
fn client_credentials_and_session_scope_are_options() {
    let mut cfg = config();
    let c = cfg.credentials.as_mut().unwrap();
    c.method = AuthMethod::ClientCredentials;
    c.session = Some("tap".into());
    let mut p = Pair::new(cfg);
    p.start();
    let auth = &p.sent[0]["params"];
    assert_eq!(auth["grant_type"], "client_credentials");
    assert_eq!(auth["scope"], "session:tap");
}

#[test]
fn a_public_session_skips_auth_and_goes_live_after_subscribing() {
    let mut p = Pair::new(SessionConfig {
        credentials: None,
        ..config()
    });
    p.s.subscribe(p.now, "book.ETH-PERPETUAL.100ms").unwrap();
    p.start();
    assert_eq!(
        p.methods(),
        vec!["public/set_heartbeat", "public/subscribe"]
    );
    assert_eq!(p.s.state(), SessionState::Subscribing);
    p.reply("public/subscribe", json!(["book.ETH-PERPETUAL.100ms"]));
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn a_public_session_logs_out_by_closing_at_once_without_waiting_for_the_drain_timeout() {
    let mut p = Pair::new(SessionConfig {
        credentials: None,
        ..config()
    });
    p.s.subscribe(p.now, "book.ETH-PERPETUAL.100ms").unwrap();
    p.start();
    p.reply("public/subscribe", json!(["book.ETH-PERPETUAL.100ms"]));
    assert_eq!(p.s.state(), SessionState::Live);
    p.clear();
    p.s.logout(p.now);
    p.drain();
    assert_eq!(p.actions, vec![Action::Close(DisconnectCause::Logout)]);
    assert!(p.methods().is_empty(), "no private/logout without a login");
    assert_eq!(p.s.state(), SessionState::Disconnected);
    assert_eq!(p.s.poll_timeout(), None, "no drain timer left");
}

#[test]
fn a_test_request_is_answered_on_the_same_turn_before_anything_else() {
    let mut p = Pair::new(config());
    p.live(&[]);
    p.clear();
    p.s.subscribe(p.now, "trades.BTC-PERPETUAL.raw").unwrap();
    p.recv(r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#);
    assert_eq!(p.methods(), vec!["public/test", "public/subscribe"]);
    assert_eq!(p.s.stats().tests_answered, 1);
}

#[test]
fn the_token_is_refreshed_at_80_percent_of_its_life_without_leaving_live() {
    let mut p = Pair::new(config());
    p.start();
    p.auth_ok(100);
    p.clear();
    let refresh_at = p.s.timers().get(Timer::TokenRefresh).unwrap();
    assert_eq!(refresh_at, p.now + 80 * S);
    // Keep traffic flowing so no ping interferes.
    for _ in 0..79 {
        p.advance(S);
        p.s.handle_activity(p.now);
    }
    assert_eq!(p.count("public/auth"), 0);
    p.advance(S);
    assert_eq!(p.count("public/auth"), 1);
    let req = &p.sent[0]["params"];
    assert_eq!(req["grant_type"], "refresh_token");
    assert_eq!(req["refresh_token"], REFRESH);
    p.auth_ok(100);
    assert!(p
        .events
        .contains(&EventKind::TokenRefreshed { expires_in_s: 100 }));
    assert_eq!(p.s.state(), SessionState::Live);
    assert!(!states(&p.events).contains(&SessionState::Authenticating));
    assert_eq!(p.s.timers().get(Timer::TokenRefresh), Some(p.now + 80 * S));
}

#[test]
fn a_refused_refresh_reauthenticates_with_credentials_on_the_same_connection() {
    let mut p = Pair::new(config());
    p.live(&["trades.BTC-PERPETUAL.raw"]);
    p.clear();
    p.busy(720);
    assert_eq!(p.count("public/auth"), 1);
    p.reply_err("public/auth", 13009, "unauthorized");
    assert!(p
        .events
        .contains(&EventKind::TokenRefreshFailed { code: 13009 }));
    assert!(p.actions.iter().all(|a| !matches!(a, Action::Close(_))));
    let last = p.sent.last().unwrap();
    assert_eq!(last["params"]["grant_type"], "client_signature");
    p.auth_ok(900);
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn silence_sends_a_ping_and_traffic_after_it_keeps_the_connection() {
    let mut p = Pair::new(config());
    p.live(&[]);
    p.clear();
    p.advance(10 * S);
    assert_eq!(p.actions, vec![Action::Ping]);
    assert!(p.events.contains(&EventKind::HeartbeatMissed));
    p.advance(S);
    p.s.handle_activity(p.now); // the pong
    p.advance(10 * S);
    assert!(p.actions.iter().all(|a| !matches!(a, Action::Close(_))));
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn a_half_open_connection_is_declared_dead_within_ping_after_plus_dead_after() {
    let mut p = Pair::new(config());
    p.live(&[]);
    p.clear();
    let last_rx = p.now;
    p.advance(15 * S - 1);
    assert_eq!(p.s.state(), SessionState::Live);
    p.advance(1);
    assert!(p
        .actions
        .contains(&Action::Close(DisconnectCause::DeadPeer)));
    assert!(p.events.contains(&EventKind::Disconnected {
        cause: DisconnectCause::DeadPeer
    }));
    assert!(p.now - last_rx <= 15 * S);
    // First retry is immediate.
    assert_eq!(p.s.state(), SessionState::Connecting);
}

#[test]
fn traffic_postpones_the_idle_ping() {
    let mut p = Pair::new(config());
    p.live(&[]);
    p.clear();
    for _ in 0..30 {
        p.advance(S);
        p.recv(r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}"#);
    }
    assert!(p.actions.is_empty());
}

#[test]
fn first_retry_is_immediate_then_backoff_grows_with_jitter_up_to_the_cap() {
    let mut p = Pair::new(config());
    p.live(&[]);
    p.clear();
    p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
    p.drain();
    assert_eq!(p.s.state(), SessionState::Backoff);
    p.advance(0);
    assert_eq!(p.s.state(), SessionState::Connecting);
    assert_eq!(p.actions, vec![Action::Connect]);
    let mut delays = vec![];
    for _ in 0..8 {
        p.s.handle_disconnected(p.now, DisconnectCause::Transport);
        p.drain();
        let Some(EventKind::Reconnecting { delay_ns, .. }) = p.events.last().copied() else {
            panic!("{:?}", p.events)
        };
        delays.push(delay_ns);
        p.advance(delay_ns);
        assert_eq!(p.s.state(), SessionState::Connecting);
    }
    for (i, d) in delays.iter().enumerate() {
        let window = ((100 * MS) << i).min(2 * S);
        assert!(*d <= window, "attempt {i}: {d} > {window}");
    }
    assert!(delays.iter().any(|d| *d > 0));
    assert!(p.events.iter().any(|e| matches!(
        e,
        EventKind::Reconnecting {
            attempt: 1,
            delay_ns: 0
        }
    )));
}

#[test]
fn staying_live_resets_the_backoff_so_the_next_retry_is_immediate() {
    let mut p = Pair::new(config());
    p.live(&[]);
    for _ in 0..3 {
        p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
        p.advance(3 * S);
        p.open();
        p.auth_ok(900);
    }
    assert_eq!(p.s.state(), SessionState::Live);
    p.clear();
    p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
    p.drain();
    assert!(
        matches!(p.events.last(), Some(EventKind::Reconnecting { attempt, .. }) if *attempt > 1),
        "a short Live does not reset the backoff: {:?}",
        p.events
    );
    // Now stay live past reset_after (with traffic) and drop again.
    p.advance(3 * S);
    p.open();
    p.auth_ok(900);
    for _ in 0..31 {
        p.advance(S);
        p.s.handle_activity(p.now);
    }
    p.clear();
    p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
    p.drain();
    assert!(p.events.contains(&EventKind::Reconnecting {
        attempt: 1,
        delay_ns: 0
    }));
}

#[test]
fn the_connection_budget_spaces_out_attempts() {
    let mut cfg = config();
    cfg.backoff.budget = 3;
    cfg.backoff.budget_window = Duration::from_secs(60);
    cfg.backoff.cap = Duration::from_millis(1);
    let mut p = Pair::new(cfg);
    let t0 = p.now;
    p.start();
    for _ in 0..2 {
        p.s.handle_disconnected(p.now, DisconnectCause::Transport);
        p.advance(10 * MS);
    }
    assert_eq!(p.s.state(), SessionState::Connecting);
    p.clear();
    // Three attempts in the window: the fourth waits for the first to leave it.
    p.s.handle_disconnected(p.now, DisconnectCause::Transport);
    p.drain();
    let Some(EventKind::Reconnecting { delay_ns, .. }) = p.events.last().copied() else {
        panic!()
    };
    assert_eq!(p.now + delay_ns, t0 + 60 * S);
}

#[test]
fn invalid_credentials_fail_the_session_for_good() {
    let mut p = Pair::new(config());
    p.start();
    p.reply_err("public/auth", 13004, "invalid_credentials");
    assert_eq!(p.s.state(), SessionState::Failed);
    assert!(p.actions.contains(&Action::Close(DisconnectCause::Fatal)));
    assert!(p.events.contains(&EventKind::Fatal {
        reason: FatalReason::InvalidCredentials,
        code: 13004
    }));
    assert_eq!(p.s.poll_timeout(), None);
    p.clear();
    p.advance(3600 * S);
    assert!(p.actions.is_empty());
    p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
    p.drain();
    assert!(p.events.is_empty());
}

#[test]
fn a_rejected_certificate_fails_the_session_instead_of_retrying() {
    let mut p = Pair::new(config());
    p.s.connect(p.now).unwrap();
    p.drain();
    p.clear();
    p.s.handle_disconnected(p.now, DisconnectCause::Certificate);
    p.drain();
    assert_eq!(p.s.state(), SessionState::Failed);
    assert!(p.events.contains(&EventKind::Disconnected {
        cause: DisconnectCause::Certificate
    }));
    assert!(p.events.contains(&EventKind::Fatal {
        reason: FatalReason::Certificate,
        code: 0
    }));
    assert!(!p
        .events
        .iter()
        .any(|e| matches!(e, EventKind::Reconnecting { .. })));
    assert_eq!(p.s.poll_timeout(), None);
    // A transport error of any other kind is retried.
    let mut q = Pair::new(config());
    q.s.connect(q.now).unwrap();
    q.drain();
    q.s.handle_disconnected(q.now, DisconnectCause::Transport);
    assert_eq!(q.s.state(), SessionState::Backoff);
}

#[test]
fn sessions_to_one_venue_share_its_connection_budget() {
    // Two sessions, one venue budget of 3 connections a minute: A and B connect (2), A drops
    // and reconnects at once (3), then B drops: its first retry, immediate by its own policy,
    // waits until A's first attempt leaves the window.
    let budget = spinwire_engine::session::SharedBudget::new(3, Duration::from_secs(60));
    let cfg = || SessionConfig {
        connection_budget: Some(budget.clone()),
        ..config()
    };
    let (mut a, mut b) = (Pair::new(cfg()), Pair::new(cfg()));
    a.start();
    b.now = a.now + S;
    b.start();
    a.advance(2 * S);
    a.s.handle_disconnected(a.now, DisconnectCause::Abnormal);
    a.drain();
    assert!(
        a.events.contains(&EventKind::Reconnecting {
            attempt: 1,
            delay_ns: 0
        }),
        "A's retry fits the budget: {:?}",
        a.events
    );
    a.advance(0);
    assert_eq!(a.s.state(), SessionState::Connecting);
    // B never authenticates: its setup times out at 1005 s; A's first attempt (1000 s) leaves
    // the window at 1060 s.
    b.advance(5 * S);
    let waited = b.events.iter().find_map(|e| match e {
        EventKind::Reconnecting { delay_ns, .. } => Some(*delay_ns),
        _ => None,
    });
    assert_eq!(waited, Some(55 * S), "{:?}", b.events);
    b.advance(53 * S);
    assert_eq!(b.s.state(), SessionState::Backoff);
    b.advance(S);
    assert_eq!(b.s.state(), SessionState::Connecting);
}

#[test]
fn a_configured_ban_code_is_fatal_too() {
    let mut cfg = config();
    cfg.fatal_codes[1] = 13028;
    let mut p = Pair::new(cfg);
    p.start();
    p.reply_err("public/auth", 13028, "banned");
    assert!(p.events.contains(&EventKind::Fatal {
        reason: FatalReason::Rejected,
        code: 13028
    }));
}

#[test]
fn a_non_fatal_auth_refusal_reconnects_after_a_backoff() {
    let mut p = Pair::new(config());
    p.start();
    p.reply_err("public/auth", 13009, "unauthorized");
    assert!(p
        .actions
        .contains(&Action::Close(DisconnectCause::AuthRejected)));
    assert_ne!(p.s.state(), SessionState::Failed);
}

#[test]
fn too_many_requests_is_reported_and_the_request_retried_later() {
    let mut p = Pair::new(config());
    p.start();
    p.clear();
    p.reply_err("public/auth", 10028, "too_many_requests");
    p.reply_err("public/auth", 10028, "too_many_requests");
    assert!(p.events.contains(&EventKind::RateLimited {
        request: RequestKind::Auth
    }));
    // (The second error answered an id no longer pending and was ignored.)
    assert_eq!(p.count("public/auth"), 0);
    p.advance(499 * MS);
    assert_eq!(p.count("public/auth"), 0);
    p.advance(MS);
    assert_eq!(p.count("public/auth"), 1);
    p.auth_ok(900);
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn a_rate_limited_subscribe_is_sent_again() {
    let mut p = Pair::new(config());
    p.s.subscribe(p.now, "trades.BTC-PERPETUAL.raw").unwrap();
    p.start();
    p.auth_ok(900);
    p.reply_err("public/subscribe", 10028, "too_many_requests");
    assert_eq!(p.s.state(), SessionState::Subscribing);
    p.advance(500 * MS);
    assert_eq!(p.count("public/subscribe"), 2);
    p.reply("public/subscribe", json!(["trades.BTC-PERPETUAL.raw"]));
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn subscriptions_are_replayed_and_the_session_resumed_after_a_reconnect() {
    let mut p = Pair::new(config());
    p.live(&["book.BTC-PERPETUAL.raw", "trades.ETH-PERPETUAL.raw"]);
    p.clear();
    let down = p.now;
    p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
    p.advance(0);
    p.advance(20 * MS);
    p.open();
    assert_eq!(p.sent[0]["params"]["grant_type"], "refresh_token");
    p.auth_ok(900);
    assert!(p.events.contains(&EventKind::Authenticated {
        expires_in_s: 900,
        resumed: true
    }));
    assert_eq!(
        p.sent.last().unwrap()["params"]["channels"],
        json!(["book.BTC-PERPETUAL.raw", "trades.ETH-PERPETUAL.raw"])
    );
    p.reply("public/subscribe", json!([]));
    assert!(p.events.contains(&EventKind::Live {
        downtime_ns: p.now - down
    }));
}

#[test]
fn an_expired_token_means_full_auth_on_reconnect() {
    let mut p = Pair::new(config());
    p.s.subscribe(p.now, "trades.BTC-PERPETUAL.raw").unwrap();
    p.start();
    p.auth_ok(1);
    p.reply("public/subscribe", json!([]));
    p.clear();
    p.advance(2 * S);
    p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
    p.advance(0);
    p.open();
    let auths: Vec<_> = p
        .sent
        .iter()
        .filter(|r| r["method"] == "public/auth")
        .collect();
    assert_eq!(
        auths.last().unwrap()["params"]["grant_type"],
        "client_signature"
    );
}

#[test]
fn a_refused_resume_falls_back_to_credentials() {
    let mut p = Pair::new(config());
    p.live(&[]);
    p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
    p.advance(0);
    p.open();
    p.clear();
    p.reply_err("public/auth", 13009, "unauthorized");
    assert_eq!(p.sent[0]["params"]["grant_type"], "client_signature");
    p.auth_ok(900);
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn book_changes_are_delivered_only_from_a_snapshot_on() {
    let mut p = Pair::new(config());
    p.live(&["book.BTC-PERPETUAL.raw"]);
    p.recv(&book_change("BTC-PERPETUAL", 5, 6));
    assert!(
        p.records.is_empty(),
        "a change before the snapshot is stale"
    );
    p.recv(&book_snapshot("BTC-PERPETUAL", 10));
    p.recv(&book_change("BTC-PERPETUAL", 10, 11));
    p.recv(&book_change("BTC-PERPETUAL", 11, 12));
    assert_eq!(book_ids(&p.records), vec![(0, 10), (10, 11), (11, 12)]);
    let id = p.s.instruments().get(b"BTC-PERPETUAL").unwrap();
    assert!(p.s.is_book_current(id));
}

#[test]
fn a_gap_marks_the_book_stale_reports_it_and_resyncs_by_resubscribing() {
    let mut p = Pair::new(config());
    p.live(&["book.BTC-PERPETUAL.raw", "trades.BTC-PERPETUAL.raw"]);
    let id = p.s.instruments().get(b"BTC-PERPETUAL").unwrap();
    p.recv(&book_snapshot("BTC-PERPETUAL", 10));
    p.clear();
    p.recv(&book_change("BTC-PERPETUAL", 12, 13));
    assert!(p.events.contains(&EventKind::Gap {
        instrument: id,
        expected_prev: 10,
        got_prev: 12
    }));
    assert!(!p.s.is_book_current(id));
    assert_eq!(p.methods(), vec!["public/unsubscribe", "public/subscribe"]);
    assert_eq!(
        p.sent[0]["params"]["channels"],
        json!(["book.BTC-PERPETUAL.raw"])
    );
    // Changes before the new snapshot are dropped, not passed off as current.
    p.recv(&book_change("BTC-PERPETUAL", 13, 14));
    p.reply("public/unsubscribe", json!(["book.BTC-PERPETUAL.raw"]));
    p.reply("public/subscribe", json!(["book.BTC-PERPETUAL.raw"]));
    p.recv(&book_snapshot("BTC-PERPETUAL", 20));
    p.recv(&book_change("BTC-PERPETUAL", 20, 21));
    assert_eq!(book_ids(&p.records), vec![(0, 10), (0, 20), (20, 21)]);
    assert!(p.events.contains(&EventKind::Resynced { instrument: id }));
    assert!(p.s.is_book_current(id));
    assert_eq!(p.s.stats().gaps, 1);
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn after_a_reconnect_books_wait_for_their_new_snapshot() {
    let mut p = Pair::new(config());
    p.live(&["book.BTC-PERPETUAL.raw"]);
    p.recv(&book_snapshot("BTC-PERPETUAL", 10));
    p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
    p.advance(0);
    p.open();
    p.auth_ok(900);
    p.reply("public/subscribe", json!([]));
    p.recv(&book_change("BTC-PERPETUAL", 10, 11));
    p.recv(&book_snapshot("BTC-PERPETUAL", 50));
    assert_eq!(book_ids(&p.records), vec![(0, 10), (0, 50)]);
}

#[test]
fn trades_are_delivered_in_order() {
    let mut p = Pair::new(config());
    p.live(&["trades.BTC-PERPETUAL.raw"]);
    p.recv(r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw","data":[{"trade_seq":1,"trade_id":"1","timestamp":1,"tick_direction":0,"price":100.0,"instrument_name":"BTC-PERPETUAL","index_price":1.0,"direction":"buy","amount":10.0},{"trade_seq":2,"trade_id":"2","timestamp":1,"tick_direction":0,"price":100.5,"instrument_name":"BTC-PERPETUAL","index_price":1.0,"direction":"sell","amount":20.0}]}}"#);
    let seqs: Vec<u64> = p
        .records
        .iter()
        .filter_map(|r| match r {
            MdRecord::Trade(t) => Some(t.trade_seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![1, 2]);
}

#[test]
fn malformed_messages_are_counted_and_reported_never_delivered() {
    let mut p = Pair::new(config());
    p.live(&["book.BTC-PERPETUAL.raw"]);
    p.clear();
    p.recv("{not json");
    p.recv(r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","data":{"type":"change","change_id":"x"}}}"#);
    assert_eq!(p.s.stats().malformed, 2);
    assert_eq!(
        p.events
            .iter()
            .filter(|e| matches!(e, EventKind::Malformed { .. }))
            .count(),
        2
    );
    assert!(p.records.is_empty());
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn a_transport_that_does_not_open_in_time_is_replaced() {
    let mut p = Pair::new(config());
    p.s.connect(p.now).unwrap();
    p.drain();
    p.clear();
    p.advance(3 * S);
    assert!(p
        .actions
        .contains(&Action::Close(DisconnectCause::ConnectTimeout)));
    assert_eq!(p.actions.last(), Some(&Action::Connect));
}

#[test]
fn auth_and_subscriptions_that_do_not_complete_in_time_are_retried_on_a_new_connection() {
    let mut p = Pair::new(config());
    p.start();
    p.clear();
    p.advance(4 * S);
    assert!(p
        .actions
        .contains(&Action::Close(DisconnectCause::SetupTimeout)));
    assert!(p.events.contains(&EventKind::Disconnected {
        cause: DisconnectCause::SetupTimeout
    }));
}

#[test]
fn logout_sends_private_logout_and_ends_disconnected_without_retry() {
    let mut p = Pair::new(config());
    p.live(&["trades.BTC-PERPETUAL.raw"]);
    p.clear();
    p.s.logout(p.now);
    p.drain();
    assert_eq!(p.methods(), vec!["private/logout"]);
    assert_eq!(p.s.state(), SessionState::Draining);
    p.s.handle_disconnected(p.now, DisconnectCause::PeerClosed { code: 1000 });
    p.drain();
    assert_eq!(p.s.state(), SessionState::Disconnected);
    assert_eq!(p.s.poll_timeout(), None);
    p.advance(60 * S);
    assert!(!p.actions.contains(&Action::Connect));
}

#[test]
fn a_logout_the_server_does_not_close_is_closed_after_the_drain_timeout() {
    let mut p = Pair::new(config());
    p.live(&[]);
    p.clear();
    p.s.logout(p.now);
    p.advance(S);
    assert_eq!(p.actions, vec![Action::Close(DisconnectCause::Logout)]);
    assert_eq!(p.s.state(), SessionState::Disconnected);
}

#[test]
fn logout_during_backoff_stops_the_session() {
    let mut p = Pair::new(config());
    p.live(&[]);
    p.s.handle_disconnected(p.now, DisconnectCause::Transport);
    p.s.handle_disconnected(p.now, DisconnectCause::Transport);
    p.drain();
    p.s.logout(p.now);
    assert_eq!(p.s.state(), SessionState::Disconnected);
    assert_eq!(p.s.poll_timeout(), None);
}

#[test]
fn rotation_replaces_the_connection_without_counting_a_failure() {
    let mut p = Pair::new(SessionConfig {
        rotate_after: Some(Duration::from_secs(5)),
        ..config()
    });
    p.live(&[]);
    p.clear();
    for _ in 0..5 {
        p.advance(S);
        p.s.handle_activity(p.now);
    }
    assert_eq!(
        p.actions,
        vec![Action::Close(DisconnectCause::Rotation), Action::Connect]
    );
}

#[test]
fn unsubscribe_sends_it_and_stops_replaying_the_channel() {
    let mut p = Pair::new(config());
    p.live(&["trades.BTC-PERPETUAL.raw", "trades.ETH-PERPETUAL.raw"]);
    p.clear();
    p.s.unsubscribe(p.now, "trades.ETH-PERPETUAL.raw").unwrap();
    p.drain();
    assert_eq!(p.methods(), vec!["public/unsubscribe"]);
    p.reply("public/unsubscribe", json!(["trades.ETH-PERPETUAL.raw"]));
    assert_eq!(
        p.s.subscriptions().collect::<Vec<_>>(),
        vec!["trades.BTC-PERPETUAL.raw"]
    );
    p.s.handle_disconnected(p.now, DisconnectCause::Abnormal);
    p.advance(0);
    p.open();
    p.auth_ok(900);
    assert_eq!(
        p.sent.last().unwrap()["params"]["channels"],
        json!(["trades.BTC-PERPETUAL.raw"])
    );
    assert!(p.s.unsubscribe(p.now, "nope").is_err());
    assert!(p.s.subscribe(p.now, "trades.BTC-PERPETUAL.raw").is_err());
}

#[test]
fn private_channels_use_private_subscribe() {
    let mut p = Pair::new(config());
    p.s.subscribe(p.now, "user.orders.BTC-PERPETUAL.raw")
        .unwrap();
    p.start();
    p.auth_ok(900);
    assert_eq!(p.sent.last().unwrap()["method"], "private/subscribe");
}

#[test]
fn a_refused_subscription_is_reported_and_dropped() {
    let mut p = Pair::new(config());
    p.s.subscribe(p.now, "book.NOPE.raw").unwrap();
    p.start();
    p.auth_ok(900);
    p.reply_err("public/subscribe", -32602, "Invalid params");
    assert!(p.events.contains(&EventKind::RequestFailed {
        request: RequestKind::Subscribe,
        code: -32602
    }));
    assert_eq!(p.s.state(), SessionState::Live);
    assert_eq!(p.s.subscriptions().count(), 0);
}

#[test]
fn nothing_is_sent_while_no_connection_is_open() {
    let mut p = Pair::new(config());
    p.s.subscribe(p.now, "trades.BTC-PERPETUAL.raw").unwrap();
    p.s.connect(p.now).unwrap();
    p.drain();
    assert!(p.sent.is_empty());
    let mut buf = [0u8; 256];
    assert_eq!(p.s.poll_transmit(p.now, &mut buf), None);
}

#[test]
fn a_too_small_transmit_buffer_is_reported_not_a_panic() {
    let mut p = Pair::new(config());
    p.s.connect(p.now).unwrap();
    p.s.handle_connected(p.now);
    let mut buf = [0u8; 16];
    assert_eq!(p.s.poll_transmit(p.now, &mut buf), None);
    let mut failed = false;
    while let Some(e) = p.s.poll_event() {
        failed |= matches!(
            e.kind,
            EventKind::RequestFailed {
                request: RequestKind::Auth,
                code: 0
            }
        );
    }
    assert!(failed);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let mut p = Pair::new(config());
        p.live(&[]);
        for _ in 0..5 {
            p.s.handle_disconnected(p.now, DisconnectCause::Transport);
            p.advance(3 * S);
        }
        (p.events.clone(), p.sent_text.clone())
    };
    assert_eq!(run(), run());
}

#[test]
fn records_lost_by_the_consumer_make_the_book_stale_until_a_fresh_snapshot() {
    let mut p = Pair::new(config());
    p.live(&["book.BTC-PERPETUAL.raw"]);
    let id = p.s.instruments().get(b"BTC-PERPETUAL").unwrap();
    p.recv(&book_snapshot("BTC-PERPETUAL", 10));
    p.clear();
    p.s.resync_instrument(p.now, id, 3);
    p.drain();
    assert!(p.events.contains(&EventKind::RecordsDropped {
        instrument: id,
        records: 3
    }));
    assert!(!p.s.is_book_current(id));
    assert_eq!(p.methods(), vec!["public/unsubscribe", "public/subscribe"]);
    p.recv(&book_change("BTC-PERPETUAL", 10, 11));
    assert_eq!(book_ids(&p.records), vec![(0, 10)]);
    p.recv(&book_snapshot("BTC-PERPETUAL", 30));
    assert!(p.s.is_book_current(id));
    assert!(p.events.contains(&EventKind::Resynced { instrument: id }));
}
