//! The session allocates nothing in steady state: a Live session fed 20,000 book changes,
//! trades and heartbeat test requests — each answered through `poll_transmit`, with idle pings
//! and timers on the way — makes zero heap allocations, counted by a global allocator.

use std::time::Duration;

use spinwire_engine::md::MdRecord;
use spinwire_engine::session::{Credentials, Session, SessionConfig, SessionState};

mod alloc_support;

#[global_allocator]
static GLOBAL: alloc_support::CountingAlloc = alloc_support::CountingAlloc;

const MS: u64 = 1_000_000;

fn drain(s: &mut Session, now: u64, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while s.poll_action().is_some() {}
    while s.poll_transmit(now, buf).is_some() {
        n += 1;
    }
    while s.poll_event().is_some() {}
    n
}

#[test]
fn a_live_session_allocates_nothing_per_message() {
    let mut s = Session::new(SessionConfig {
        credentials: Some(Credentials::new("id", "secret")),
        ping_after: Duration::from_millis(50),
        dead_after: Duration::from_millis(50),
        ..SessionConfig::default()
    })
    .unwrap();
    s.subscribe(0, "book.BTC-PERPETUAL.raw").unwrap();
    s.subscribe(0, "trades.BTC-PERPETUAL.raw").unwrap();
    let mut buf = vec![0u8; 4096];
    let mut now = MS;
    s.connect(now).unwrap();
    s.handle_connected(now);
    drain(&mut s, now, &mut buf);
    let mut sink_count = 0u64;
    let mut sink = |r: &[MdRecord]| sink_count += r.len() as u64;
    s.handle_text(now, r#"{"jsonrpc":"2.0","id":1,"result":{"access_token":"a","refresh_token":"r","expires_in":900,"scope":"connection"}}"#, &mut sink);
    drain(&mut s, now, &mut buf);
    s.handle_text(now, r#"{"jsonrpc":"2.0","id":3,"result":["book.BTC-PERPETUAL.raw","trades.BTC-PERPETUAL.raw"]}"#, &mut sink);
    drain(&mut s, now, &mut buf);
    assert_eq!(s.state(), SessionState::Live);

    // Messages prepared before counting.
    let snapshot = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","data":{"type":"snapshot","timestamp":1,"instrument_name":"BTC-PERPETUAL","change_id":1,"bids":[["new",100.0,1.0]],"asks":[["new",101.0,2.0]]}}}"#;
    let changes: Vec<String> = (1..=20_000u64)
        .map(|i| format!(r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"book.BTC-PERPETUAL.raw","data":{{"type":"change","timestamp":2,"prev_change_id":{i},"instrument_name":"BTC-PERPETUAL","change_id":{},"bids":[["change",100.0,3.0]],"asks":[]}}}}}}"#, i + 1))
        .collect();
    let trade = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw","data":[{"trade_seq":1,"trade_id":"1","timestamp":1,"tick_direction":0,"price":100.0,"instrument_name":"BTC-PERPETUAL","index_price":1.0,"direction":"buy","amount":10.0}]}}"#;
    let test_request = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#;
    s.handle_text(now, snapshot, &mut sink);

    alloc_support::start_counting();
    let mut sent = 0;
    for (i, change) in changes.iter().enumerate() {
        now += 10_000;
        s.handle_text(now, change, &mut sink);
        if i % 100 == 0 {
            s.handle_text(now, trade, &mut sink);
            s.handle_text(now, test_request, &mut sink);
        }
        if i % 5000 == 0 {
            // A quiet spell: the idle ping fires.
            now += 60 * MS;
            s.handle_timeout(now);
            s.handle_activity(now);
        }
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now);
        }
        sent += drain(&mut s, now, &mut buf);
    }
    let allocations = alloc_support::stop_counting();

    assert_eq!(s.state(), SessionState::Live);
    assert_eq!(s.stats().gaps, 0);
    assert_eq!(sent, 200, "every test_request answered");
    assert!(sink_count > 20_000);
    assert!(s.stats().heartbeat_misses >= 3);
    assert_eq!(allocations, 0, "allocations in steady state");
}
