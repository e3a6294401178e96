//! End-to-end: the session `Driver` (engine thread: Session + WsConnection + Reactor) against
//! the in-process Deribit simulator, one test per fault. Each checks that the session recovers
//! (or fails clearly when the fault is fatal) and that the book records delivered chain
//! (`prev_change_id` = previous `change_id`) from each snapshot on: complete and in order apart
//! from reported gaps.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use spinwire_engine::md::{BookFlags, MdRecord};
use spinwire_engine::session::driver::{Driver, DriverConfig, DriverHandle};
use spinwire_engine::session::{
    BackoffConfig, Credentials, DisconnectCause, EventKind, FatalReason, RequestKind,
    SessionConfig, SessionEvent, SessionState,
};
use spinwire_tools::sim::{FaultKind, SimConfig, SimHandle, Simulator, Target, TlsSetup};

const ID: &str = "e2e-client";
const SECRET: &str = "e2e-secret-value";
const CHANNELS: [&str; 2] = ["book.BTC-PERPETUAL.raw", "trades.BTC-PERPETUAL.raw"];

fn sim_config() -> SimConfig {
    SimConfig {
        credentials: vec![(ID.into(), SECRET.into())],
        rate: 2000,
        instruments: vec!["BTC-PERPETUAL".into()],
        min_heartbeat: Duration::from_millis(50),
        ..SimConfig::default()
    }
}

fn session_config(secret: &str) -> SessionConfig {
    SessionConfig {
        credentials: Some(Credentials::new(ID, secret)),
        heartbeat: Some(Duration::from_millis(200)),
        ping_after: Duration::from_millis(300),
        dead_after: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(2),
        setup_timeout: Duration::from_secs(2),
        backoff: BackoffConfig {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            budget: 32,
            budget_window: Duration::from_secs(60),
            reset_after: Duration::from_secs(2),
        },
        rate_limit_retry: Duration::from_millis(100),
        ..SessionConfig::default()
    }
}

struct Run {
    sim: SimHandle,
    h: Option<DriverHandle>,
    events: Vec<SessionEvent>,
    records: Vec<MdRecord>,
}

impl Run {
    fn start(sim_cfg: SimConfig, cfg: SessionConfig) -> Run {
        Run::start_with(sim_cfg, cfg, |_| {})
    }

    fn start_with(
        sim_cfg: SimConfig,
        cfg: SessionConfig,
        driver: impl FnOnce(&mut DriverConfig),
    ) -> Run {
        let sim = Simulator::start(sim_cfg).expect("simulator starts");
        let mut dc = DriverConfig::new(sim.url());
        dc.ca_file = sim.ca_file().cloned();
        driver(&mut dc);
        let channels: Vec<String> = CHANNELS.iter().map(|s| s.to_string()).collect();
        let h = Driver::spawn(dc, cfg, &channels).expect("driver starts");
        Run {
            sim,
            h: Some(h),
            events: vec![],
            records: vec![],
        }
    }

    fn pump(&mut self) {
        let h = self.h.as_mut().unwrap();
        while let Some(e) = h.events.pop() {
            self.events.push(e);
        }
        while let Some(r) = h.md.pop() {
            self.records.push(r);
        }
    }

    /// Pumps until `pred` holds (true) or `timeout` passes (false).
    fn wait(&mut self, timeout: Duration, pred: impl Fn(&Run) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            self.pump();
            if pred(self) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn count(&self, f: impl Fn(&EventKind) -> bool) -> usize {
        self.events.iter().filter(|e| f(&e.kind)).count()
    }

    fn lives(&self) -> usize {
        self.count(|e| matches!(e, EventKind::Live { .. }))
    }

    fn books(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r, MdRecord::Book(_)))
            .count()
    }

    /// Waits for Live and some book data after it.
    fn wait_live_with_data(&mut self, lives: usize) {
        let ok = self.wait(Duration::from_secs(10), |r| r.lives() >= lives);
        assert!(ok, "not live ({lives}): {:?}", self.events);
        let n = self.books();
        let ok = self.wait(Duration::from_secs(5), |r| r.books() > n + 10);
        assert!(ok, "no book data after live: {:?}", self.events);
    }

    fn stop(mut self) -> Vec<SessionEvent> {
        let mut h = self.h.take().unwrap();
        h.request_stop();
        let r = h.thread.join().expect("driver thread");
        r.expect("driver ran");
        while let Some(e) = h.events.pop() {
            self.events.push(e);
        }
        self.sim.shutdown();
        self.events
    }

    /// Every book change delivered follows the previous message of its book.
    fn assert_books_chain(&self) {
        let mut last: Option<u64> = None;
        let mut messages = 0;
        for r in &self.records {
            let MdRecord::Book(b) = r else { continue };
            if !b.flags.contains(BookFlags::FIRST) {
                continue;
            }
            messages += 1;
            if b.flags.contains(BookFlags::SNAPSHOT) {
                last = Some(b.change_id);
                continue;
            }
            let prev = last.expect("a change delivered before any snapshot");
            assert_eq!(b.prev_change_id, prev, "book chain broken");
            last = Some(b.change_id);
        }
        assert!(messages > 0);
    }
}

fn inject(run: &Run, kind: FaultKind) {
    assert!(run.sim.inject(Target::All, kind) >= 1);
}

#[test]
fn the_session_goes_live_over_tls_and_delivers_chained_books_and_trades() {
    let dir = std::env::temp_dir().join(format!("spinwire-session-e2e-{}", std::process::id()));
    let run = Run::start(
        SimConfig {
            tls: Some(TlsSetup::SelfSigned(PathBuf::from(&dir))),
            ..sim_config()
        },
        session_config(SECRET),
    );
    let mut run = run;
    run.wait_live_with_data(1);
    let ok = run.wait(Duration::from_secs(5), |r| {
        r.records.iter().any(|x| matches!(x, MdRecord::Trade(_)))
    });
    assert!(ok, "no trades");
    run.assert_books_chain();
    assert!(run.count(|e| matches!(e, EventKind::Authenticated { .. })) >= 1);
    assert!(run.count(|e| matches!(e, EventKind::Subscribed { channels: 2 })) >= 1);
    // Reconnects (resumed TLS, fast on loopback) walk the same states as the first connection.
    for lives in 2..=4 {
        inject(&run, FaultKind::Rst);
        run.wait_live_with_data(lives);
    }
    assert_every_connection_walks_every_state(&run.events, 4);
    let events = run.stop();
    assert!(events.iter().any(|e| matches!(
        e.kind,
        EventKind::StateChanged {
            to: SessionState::Disconnected,
            ..
        }
    )));
}

/// Each connection that went Live passed through every state of the lifecycle, in order, even
/// when a fast server finished TLS and the upgrade within one loop turn.
fn assert_every_connection_walks_every_state(events: &[SessionEvent], connections: usize) {
    let states: Vec<SessionState> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::StateChanged { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    let walks: Vec<&[SessionState]> = states
        .split(|s| *s == SessionState::Connecting)
        .skip(1)
        .filter(|w| w.contains(&SessionState::Live))
        .collect();
    assert_eq!(
        walks.len(),
        connections,
        "connections that went live: {states:?}"
    );
    for w in walks {
        let upto_live = &w[..=w.iter().position(|s| *s == SessionState::Live).unwrap()];
        assert_eq!(
            upto_live,
            [
                SessionState::TlsHandshake,
                SessionState::WsHandshake,
                SessionState::Authenticating,
                SessionState::Subscribing,
                SessionState::Live
            ],
            "after Connecting, in {states:?}"
        );
    }
}

fn recovers_from(kind: FaultKind, expected: impl Fn(&EventKind) -> bool) {
    let mut run = Run::start(sim_config(), session_config(SECRET));
    run.wait_live_with_data(1);
    inject(&run, kind.clone());
    run.wait_live_with_data(2);
    assert!(
        run.count(&expected) >= 1,
        "{kind:?}: expected event missing: {:?}",
        run.events
    );
    run.assert_books_chain();
    run.stop();
}

#[test]
fn an_abrupt_close_rst_is_recovered_from() {
    recovers_from(
        FaultKind::Rst,
        |e| matches!(e, EventKind::Disconnected { cause } if *cause != DisconnectCause::DeadPeer),
    );
}

#[test]
fn an_orderly_close_without_close_frame_is_recovered_from() {
    recovers_from(FaultKind::Fin, |e| {
        matches!(e, EventKind::Disconnected { .. })
    });
}

#[test]
fn a_half_open_connection_is_detected_within_ping_plus_deadline_and_replaced() {
    let mut run = Run::start(sim_config(), session_config(SECRET));
    run.wait_live_with_data(1);
    let t0 = Instant::now();
    inject(&run, FaultKind::HalfOpen);
    let ok = run.wait(Duration::from_secs(5), |r| {
        r.count(|e| {
            matches!(
                e,
                EventKind::Disconnected {
                    cause: DisconnectCause::DeadPeer
                }
            )
        }) >= 1
    });
    assert!(ok, "half-open not detected: {:?}", run.events);
    // ping_after + dead_after = 600 ms, plus scheduling slack.
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    run.wait_live_with_data(2);
    run.assert_books_chain();
    run.stop();
}

#[test]
fn the_token_is_refreshed_before_it_expires_without_disturbing_the_session() {
    let mut run = Run::start(
        SimConfig {
            token_ttl: Duration::from_secs(1),
            ..sim_config()
        },
        session_config(SECRET),
    );
    run.wait_live_with_data(1);
    let ok = run.wait(Duration::from_secs(5), |r| {
        r.count(|e| matches!(e, EventKind::TokenRefreshed { .. })) >= 2
    });
    assert!(ok, "no token refresh: {:?}", run.events);
    assert_eq!(
        run.count(|e| matches!(e, EventKind::Disconnected { .. })),
        0,
        "{:?}",
        run.events
    );
    let n = run.books();
    assert!(run.wait(Duration::from_secs(2), |r| r.books() > n + 10));
    run.assert_books_chain();
    run.stop();
}

#[test]
fn tokens_expired_by_the_venue_are_recovered_from() {
    let mut run = Run::start(sim_config(), session_config(SECRET));
    run.wait_live_with_data(1);
    inject(&run, FaultKind::ExpireTokens);
    // Expired tokens surface at the next refresh or reconnect; force a reconnect.
    std::thread::sleep(Duration::from_millis(50));
    inject(&run, FaultKind::Rst);
    run.wait_live_with_data(2);
    run.assert_books_chain();
    run.stop();
}

#[test]
fn invalid_credentials_fail_the_session_with_a_fatal_event_and_no_retry() {
    let mut run = Run::start(sim_config(), session_config("wrong-secret"));
    let ok = run.wait(Duration::from_secs(5), |r| {
        r.count(|e| matches!(e, EventKind::Fatal { .. })) >= 1
    });
    assert!(ok, "{:?}", run.events);
    assert!(run.events.iter().any(|e| e.kind
        == EventKind::Fatal {
            reason: FatalReason::InvalidCredentials,
            code: 13004
        }));
    let h = run.h.take().unwrap();
    let r = h.thread.join().expect("thread");
    assert!(r.is_ok(), "the driver ends cleanly after a fatal error");
    assert_eq!(run.sim.stats().accepted, 1, "no retry after a fatal error");
    run.sim.shutdown();
}

#[test]
fn an_auth_rejected_on_reconnect_is_fatal() {
    let mut run = Run::start(sim_config(), session_config(SECRET));
    run.wait_live_with_data(1);
    run.sim
        .schedule(spinwire_tools::sim::faults::parse_rule("reject_auth@conn=all,times=2").unwrap());
    inject(&run, FaultKind::Rst);
    let ok = run.wait(Duration::from_secs(5), |r| {
        r.count(|e| matches!(e, EventKind::Fatal { .. })) >= 1
    });
    assert!(ok, "{:?}", run.events);
    let h = run.h.take().unwrap();
    assert!(h.thread.join().unwrap().is_ok());
    run.sim.shutdown();
}

#[test]
fn too_many_requests_is_reported_and_retried() {
    let mut run = Run::start(sim_config(), session_config(SECRET));
    run.wait_live_with_data(1);
    run.sim
        .schedule(spinwire_tools::sim::faults::parse_rule("throttle@conn=all").unwrap());
    inject(&run, FaultKind::Rst);
    run.wait_live_with_data(2);
    assert!(
        run.count(|e| matches!(
            e,
            EventKind::RateLimited {
                request: RequestKind::Auth
            }
        )) >= 1,
        "{:?}",
        run.events
    );
    run.assert_books_chain();
    run.stop();
}

#[test]
fn a_book_gap_is_reported_and_the_book_resynced() {
    let mut run = Run::start(sim_config(), session_config(SECRET));
    run.wait_live_with_data(1);
    inject(&run, FaultKind::Gap);
    let ok = run.wait(Duration::from_secs(5), |r| {
        r.count(|e| matches!(e, EventKind::Resynced { .. })) >= 1
    });
    assert!(ok, "{:?}", run.events);
    assert!(run.count(|e| matches!(e, EventKind::Gap { .. })) >= 1);
    let n = run.books();
    assert!(run.wait(Duration::from_secs(2), |r| r.books() > n + 10));
    run.assert_books_chain();
    assert_eq!(
        run.count(|e| matches!(e, EventKind::Disconnected { .. })),
        0
    );
    run.stop();
}

#[test]
fn a_malformed_frame_is_recovered_from() {
    recovers_from(FaultKind::Malformed, |e| {
        matches!(
            e,
            EventKind::Disconnected {
                cause: DisconnectCause::Protocol
            }
        )
    });
}

#[test]
fn an_oversized_frame_is_recovered_from() {
    recovers_from(FaultKind::Oversized, |e| {
        matches!(
            e,
            EventKind::Disconnected {
                cause: DisconnectCause::Protocol
            }
        )
    });
}

#[test]
fn invalid_utf8_is_recovered_from() {
    recovers_from(FaultKind::BadUtf8, |e| {
        matches!(
            e,
            EventKind::Disconnected {
                cause: DisconnectCause::Protocol
            }
        )
    });
}

#[test]
fn invalid_json_is_counted_and_the_session_stays_up() {
    let mut run = Run::start(sim_config(), session_config(SECRET));
    run.wait_live_with_data(1);
    inject(&run, FaultKind::BadJson);
    let ok = run.wait(Duration::from_secs(5), |r| {
        r.count(|e| matches!(e, EventKind::Malformed { .. })) >= 1
    });
    assert!(ok, "{:?}", run.events);
    let n = run.books();
    assert!(run.wait(Duration::from_secs(2), |r| r.books() > n + 10));
    run.assert_books_chain();
    run.stop();
}

#[test]
fn a_full_market_data_ring_drops_counts_and_resyncs_never_delivering_a_broken_chain() {
    let mut run = Run::start_with(sim_config(), session_config(SECRET), |d| d.md_ring = 16);
    run.wait(Duration::from_secs(10), |r| r.lives() >= 1);
    // A slow consumer: the ring overflows while it sleeps.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(30));
        run.pump();
    }
    assert!(
        run.count(|e| matches!(e, EventKind::RecordsDropped { .. })) >= 1,
        "{:?}",
        run.events
    );
    let ok = run.wait(Duration::from_secs(5), |r| {
        r.count(|e| matches!(e, EventKind::Resynced { .. })) >= 1
    });
    assert!(ok, "{:?}", run.events);
    // Strict: after a loss nothing of the instrument is delivered until its new snapshot.
    run.assert_books_chain();
    run.stop();
}
