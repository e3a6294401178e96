//! Every implemented fault, injected through the control API or scheduled by a spec, observed
//! by an independent tungstenite client.

mod sim_util;

use std::io;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sim_util::*;
use spinwire_tools::sim::faults::parse_spec;
use spinwire_tools::sim::{FaultKind, LedgerEntry, SimConfig, SimHandle, Target, TlsSetup};
use tungstenite::error::{CapacityError, ProtocolError};

const T: Duration = Duration::from_secs(3);

fn inject(sim: &SimHandle, kind: FaultKind) {
    assert_eq!(sim.inject(Target::All, kind), 1, "one live connection");
}

fn io_kind(g: &Got) -> Option<io::ErrorKind> {
    match g {
        Got::Closed(tungstenite::Error::Io(e)) => Some(e.kind()),
        _ => None,
    }
}

#[test]
fn rst_resets_the_connection() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.ok("public/test", json!({}));
    inject(&sim, FaultKind::Rst);
    let end = c.wait_closed(T);
    assert_eq!(
        io_kind(&end),
        Some(io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
}

#[test]
fn fin_closes_without_a_close_frame() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.ok("public/test", json!({}));
    inject(&sim, FaultKind::Fin);
    let end = c.wait_closed(T);
    assert!(
        matches!(
            end,
            Got::Closed(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            ))
        ),
        "{end:?}"
    );
}

#[test]
fn halfopen_stops_answering_but_keeps_the_socket() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.ok("public/test", json!({}));
    inject(&sim, FaultKind::HalfOpen);
    std::thread::sleep(Duration::from_millis(20));
    let id = c.send("public/test", json!({}));
    assert!(c.response(id, Duration::from_millis(300)).is_none());
    assert!(matches!(c.read(Duration::from_millis(100)), Got::Timeout));
    assert_eq!(sim.connections().len(), 1, "still open on the venue side");
}

#[test]
fn delay_holds_responses_back() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    inject(
        &sim,
        FaultKind::Delay {
            delay: Duration::from_millis(150),
            jitter: Duration::from_millis(20),
            span: Some(Duration::from_millis(500)),
        },
    );
    std::thread::sleep(Duration::from_millis(20));
    let t0 = Instant::now();
    c.ok("public/test", json!({}));
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t0.elapsed()
    );
    std::thread::sleep(Duration::from_millis(600));
    let t1 = Instant::now();
    c.ok("public/test", json!({}));
    assert!(t1.elapsed() < Duration::from_millis(100), "delay ended");
}

#[test]
fn burst_multiplies_the_market_data_rate() {
    let sim = start(SimConfig {
        rate: 2_000,
        ..config()
    });
    let _c = Client::connect(&sim);
    let measure = |ms: u64| {
        let a = sim.stats().md_generated;
        std::thread::sleep(Duration::from_millis(ms));
        sim.stats().md_generated - a
    };
    let normal = measure(200);
    inject(
        &sim,
        FaultKind::Burst {
            factor: 10.0,
            span: Duration::from_millis(400),
        },
    );
    std::thread::sleep(Duration::from_millis(20));
    let burst = measure(200);
    assert!(burst > normal * 4, "burst {burst} vs normal {normal}");
}

#[test]
fn gap_skips_exactly_one_book_change() {
    let sim = start(SimConfig {
        rate: 5_000,
        ..config()
    });
    let mut c = Client::connect(&sim);
    c.auth();
    c.ok(
        "public/subscribe",
        json!({"channels":["book.BTC-PERPETUAL.raw"]}),
    );
    let snap = c.notification("subscription", None, T).unwrap();
    let mut last = snap["params"]["data"]["change_id"].as_u64().unwrap();
    let mut gaps = 0;
    for k in 0..400 {
        if k == 50 {
            inject(&sim, FaultKind::Gap);
        }
        let n = c.notification("subscription", None, T).unwrap();
        let d = &n["params"]["data"];
        let prev = d["prev_change_id"].as_u64().unwrap();
        if prev != last {
            assert_eq!(prev, last + 1, "exactly one change_id missing");
            gaps += 1;
        }
        last = d["change_id"].as_u64().unwrap();
    }
    assert_eq!(gaps, 1);
}

#[test]
fn ignore_test_swallows_public_test_and_the_heartbeat_then_fails() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.ok("public/set_heartbeat", json!({"interval": 0.1}));
    c.notification("heartbeat", None, T).expect("test_request");
    c.ok("public/test", json!({}));
    inject(&sim, FaultKind::IgnoreTest);
    c.notification("heartbeat", None, T).expect("test_request");
    let id = c.send("public/test", json!({}));
    let end = loop {
        match c.read(T) {
            Got::Json(v) => assert_ne!(v["id"], id, "public/test must not be answered"),
            other => break other,
        }
    };
    assert!(matches!(end, Got::CloseFrame(1000)), "{end:?}");
}

fn buy_params(label: &str) -> Value {
    json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"type":"limit","price":1000.0,
           "label":label})
}

#[test]
fn withhold_executed_order_then_reset_leaves_the_order_at_the_venue() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    inject(&sim, FaultKind::Withhold { executed: true });
    std::thread::sleep(Duration::from_millis(20));
    let id = c.send("private/buy", buy_params("wh-exec"));
    let end = loop {
        match c.read(T) {
            Got::Json(v) => assert_ne!(v["id"], id, "the order response is withheld"),
            other => break other,
        }
    };
    assert_eq!(
        io_kind(&end),
        Some(io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    assert_eq!(sim.ledger().accepted_count("wh-exec"), 1);
    let mut d = Client::connect(&sim);
    d.auth();
    let st = d.ok(
        "private/get_order_state_by_label",
        json!({"currency":"BTC","label":"wh-exec"}),
    );
    assert_eq!(st.as_array().unwrap().len(), 1);
    assert_eq!(st[0]["order_state"], "open");
}

#[test]
fn withhold_unexecuted_order_then_reset_leaves_nothing_at_the_venue() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    inject(&sim, FaultKind::Withhold { executed: false });
    std::thread::sleep(Duration::from_millis(20));
    c.send("private/buy", buy_params("wh-none"));
    let end = c.wait_closed(T);
    assert_eq!(
        io_kind(&end),
        Some(io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.accepted_count("wh-none"), 0);
    assert!(ledger
        .entries
        .iter()
        .any(|e| matches!(e, LedgerEntry::OrderDropped { label, .. } if label == "wh-none")));
    let mut d = Client::connect(&sim);
    d.auth();
    let st = d.ok(
        "private/get_order_state_by_label",
        json!({"currency":"BTC","label":"wh-none"}),
    );
    assert!(st.as_array().unwrap().is_empty());
}

#[test]
fn fillgap_fills_resting_orders_while_the_client_is_away() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    c.ok("private/enable_cancel_on_disconnect", json!({}));
    c.ok("private/buy", buy_params("gap-fill"));
    inject(&sim, FaultKind::FillGap);
    std::thread::sleep(Duration::from_millis(20));
    inject(&sim, FaultKind::Rst);
    c.wait_closed(T);
    assert!(eventually(T, || sim.ledger().filled_amount("gap-fill") == 10.0));
    match sim.ledger().fills_for("gap-fill")[0] {
        LedgerEntry::Fill {
            while_disconnected, ..
        } => assert!(*while_disconnected),
        other => panic!("{other:?}"),
    }
    let mut d = Client::connect(&sim);
    d.auth();
    let trades = d.ok(
        "private/get_user_trades_by_instrument",
        json!({"instrument_name":"BTC-PERPETUAL"}),
    );
    assert_eq!(trades["trades"][0]["label"], "gap-fill");
}

#[test]
fn reject_auth_refuses_one_login_with_invalid_credentials() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    inject(&sim, FaultKind::RejectAuth);
    std::thread::sleep(Duration::from_millis(20));
    let params = json!({"grant_type":"client_credentials","client_id":ID,"client_secret":SECRET});
    assert_eq!(c.err_code("public/auth", params.clone()), 13004);
    c.ok("public/auth", params);
}

#[test]
fn expire_makes_private_calls_unauthorized_until_reauth() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    inject(&sim, FaultKind::ExpireTokens);
    std::thread::sleep(Duration::from_millis(20));
    let p = json!({"instrument_name":"BTC-PERPETUAL"});
    assert_eq!(c.err_code("private/get_position", p.clone()), 13009);
    c.auth();
    c.ok("private/get_position", p);
}

#[test]
fn throttle_answers_the_next_request_with_10028() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    inject(&sim, FaultKind::Throttle);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(c.err_code("public/test", json!({})), 10028);
    c.ok("public/test", json!({}));
}

#[test]
fn malformed_frame_is_a_protocol_error_for_the_client() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    inject(&sim, FaultKind::Malformed);
    let end = c.wait_closed(T);
    assert!(
        matches!(
            end,
            Got::Closed(tungstenite::Error::Protocol(
                ProtocolError::NonZeroReservedBits
            ))
        ),
        "{end:?}"
    );
}

#[test]
fn oversized_frame_exceeds_the_client_limit() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    inject(&sim, FaultKind::Oversized);
    let end = c.wait_closed(T);
    assert!(
        matches!(
            end,
            Got::Closed(tungstenite::Error::Capacity(
                CapacityError::MessageTooLong { .. }
            ))
        ),
        "{end:?}"
    );
}

#[test]
fn bad_utf8_text_is_refused_by_the_client() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    inject(&sim, FaultKind::BadUtf8);
    let end = c.wait_closed(T);
    assert!(
        matches!(end, Got::Closed(tungstenite::Error::Utf8(_))),
        "{end:?}"
    );
}

#[test]
fn bad_json_arrives_as_text_that_does_not_parse() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    inject(&sim, FaultKind::BadJson);
    match c.read(T) {
        Got::NotJson(t) => assert!(t.starts_with("{\"jsonrpc\"")),
        other => panic!("{other:?}"),
    }
    c.ok("public/test", json!({}));
}

#[test]
fn tls_close_without_close_notify_is_an_unexpected_eof_but_fin_is_clean() {
    let dir = temp_dir("tls-faults");
    let sim = start(SimConfig {
        tls: Some(TlsSetup::SelfSigned(dir)),
        ..config()
    });
    let mut c = Client::connect(&sim);
    c.ok("public/test", json!({}));
    inject(&sim, FaultKind::TlsNoCloseNotify);
    let end = c.wait_closed(T);
    assert_eq!(io_kind(&end), Some(io::ErrorKind::UnexpectedEof), "{end:?}");

    let mut d = Client::connect(&sim);
    d.ok("public/test", json!({}));
    inject(&sim, FaultKind::Fin);
    let end = d.wait_closed(T);
    assert!(
        matches!(
            end,
            Got::Closed(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            ))
        ),
        "close_notify then FIN: {end:?}"
    );
}

#[test]
fn spec_schedules_a_reset_after_n_messages_on_one_connection_only() {
    let sim = start(SimConfig {
        faults: parse_spec("rst@after=5,conn=2").unwrap(),
        ..config()
    });
    let mut first = Client::connect(&sim);
    let mut second = Client::connect(&sim);
    for _ in 0..4 {
        second.ok("public/test", json!({}));
        first.ok("public/test", json!({}));
    }
    second.send("public/test", json!({}));
    let end = second.wait_closed(T);
    assert_eq!(
        io_kind(&end),
        Some(io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    for _ in 0..4 {
        first.ok("public/test", json!({}));
    }
}

#[test]
fn scheduled_rules_added_at_run_time_reach_live_connections() {
    let sim = start(SimConfig {
        rate: 5_000,
        ..config()
    });
    let mut c = Client::connect(&sim);
    c.auth();
    c.ok(
        "public/subscribe",
        json!({"channels":["book.ETH-PERPETUAL.raw"]}),
    );
    let snap = c.notification("subscription", None, T).unwrap();
    let mut last = snap["params"]["data"]["change_id"].as_u64().unwrap();
    sim.schedule(parse_spec("gap@every=50ms").unwrap().remove(0));
    let mut gaps = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(400) {
        let n = c.notification("subscription", None, T).unwrap();
        let d = &n["params"]["data"];
        if d["prev_change_id"].as_u64().unwrap() != last {
            gaps += 1;
        }
        last = d["change_id"].as_u64().unwrap();
    }
    assert!((3..=9).contains(&gaps), "gaps {gaps}");
}
