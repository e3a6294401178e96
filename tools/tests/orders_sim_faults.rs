//! The simulator faults the order proof needs, observed by an independent tungstenite client:
//! withholding the answer to a cancel or an edit (executed or not) and resetting, the
//! `orders=N` condition that lands a fault in the middle of a burst of orders (half-open,
//! token expiry), and the trade sequence numbers the ledger records for fills.

mod sim_util;

use std::io;
use std::time::Duration;

use serde_json::{json, Value};
use sim_util::*;
use spinwire_tools::sim::faults::parse_rule;
use spinwire_tools::sim::{FaultKind, LedgerEntry, SimHandle, Target};

const T: Duration = Duration::from_secs(3);

fn inject(sim: &SimHandle, kind: FaultKind) {
    assert_eq!(sim.inject(Target::All, kind), 1, "one live connection");
    // Injected faults are taken over on the connection's next loop turn.
    std::thread::sleep(Duration::from_millis(20));
}

fn resting_buy(label: &str) -> Value {
    json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"type":"limit","price":1000.0,
           "label":label})
}

fn was_reset(end: &Got) -> bool {
    matches!(end, Got::Closed(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset)
}

/// Sends `method` and reads until the connection ends, checking it is never answered.
fn send_unanswered(c: &mut Client, method: &str, params: Value) -> Got {
    let id = c.send(method, params);
    loop {
        match c.read(T) {
            Got::Json(v) => assert_ne!(v["id"], id, "the {method} response is withheld"),
            other => return other,
        }
    }
}

fn order_state(sim: &SimHandle, label: &str) -> Value {
    let mut d = Client::connect(sim);
    d.auth();
    let st = d.ok(
        "private/get_order_state_by_label",
        json!({"currency":"BTC","label":label}),
    );
    assert_eq!(st.as_array().map(Vec::len), Some(1), "{st}");
    st[0].clone()
}

#[test]
fn withheld_executed_cancel_cancels_then_resets() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    let placed = c.ok("private/buy", resting_buy("wc-exec"));
    let oid = placed["order"]["order_id"].as_str().unwrap().to_string();
    inject(&sim, FaultKind::WithholdCancel { executed: true });
    let end = send_unanswered(&mut c, "private/cancel", json!({"order_id": oid}));
    assert!(was_reset(&end), "{end:?}");
    assert_eq!(sim.ledger().cancels_for("wc-exec").len(), 1);
    assert_eq!(order_state(&sim, "wc-exec")["order_state"], "cancelled");
}

#[test]
fn withheld_unexecuted_cancel_leaves_the_order_open_and_is_recorded() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    let placed = c.ok("private/buy", resting_buy("wc-none"));
    let oid = placed["order"]["order_id"].as_str().unwrap().to_string();
    inject(&sim, FaultKind::WithholdCancel { executed: false });
    let end = send_unanswered(&mut c, "private/cancel", json!({"order_id": oid}));
    assert!(was_reset(&end), "{end:?}");
    let ledger = sim.ledger();
    assert!(ledger.cancels_for("wc-none").is_empty());
    assert!(ledger.entries.iter().any(|e| matches!(e,
        LedgerEntry::RequestDropped { method, order_id, .. }
            if method == "private/cancel" && *order_id == oid)));
    assert_eq!(order_state(&sim, "wc-none")["order_state"], "open");
}

#[test]
fn withheld_executed_edit_applies_then_resets() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    let placed = c.ok("private/buy", resting_buy("we-exec"));
    let oid = placed["order"]["order_id"].as_str().unwrap().to_string();
    inject(&sim, FaultKind::WithholdEdit { executed: true });
    let end = send_unanswered(
        &mut c,
        "private/edit",
        json!({"order_id": oid, "amount": 20.0, "price": 1001.0}),
    );
    assert!(was_reset(&end), "{end:?}");
    let st = order_state(&sim, "we-exec");
    assert_eq!(
        (st["amount"].as_f64(), st["price"].as_f64()),
        (Some(20.0), Some(1001.0))
    );
    assert!(sim.ledger().entries.iter().any(
        |e| matches!(e, LedgerEntry::OrderEdited { label, amount, .. } if label == "we-exec" && *amount == 20.0)
    ));
}

#[test]
fn withheld_unexecuted_edit_leaves_the_order_unchanged() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    let placed = c.ok("private/buy", resting_buy("we-none"));
    let oid = placed["order"]["order_id"].as_str().unwrap().to_string();
    inject(&sim, FaultKind::WithholdEdit { executed: false });
    let end = send_unanswered(
        &mut c,
        "private/edit",
        json!({"order_id": oid, "amount": 20.0, "price": 1001.0}),
    );
    assert!(was_reset(&end), "{end:?}");
    let st = order_state(&sim, "we-none");
    assert_eq!(
        (st["amount"].as_f64(), st["price"].as_f64()),
        (Some(10.0), Some(1000.0))
    );
    let ledger = sim.ledger();
    assert!(!ledger
        .entries
        .iter()
        .any(|e| matches!(e, LedgerEntry::OrderEdited { .. })));
    assert!(ledger.entries.iter().any(|e| matches!(e,
        LedgerEntry::RequestDropped { method, .. } if method == "private/edit")));
}

#[test]
fn withheld_cancel_does_not_swallow_an_order_placed_first() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    inject(&sim, FaultKind::WithholdCancel { executed: true });
    // Orders are not cancels: answered normally while the cancel fault waits.
    let placed = c.ok("private/buy", resting_buy("wc-order"));
    assert_eq!(placed["order"]["order_state"], "open");
}

#[test]
fn halfopen_after_n_orders_stops_answering_in_the_middle_of_a_burst() {
    let sim = start(config());
    sim.schedule(parse_rule("halfopen@orders=3,conn=1").unwrap());
    let mut c = Client::connect(&sim);
    c.auth();
    let ids: Vec<u64> = (0..6)
        .map(|k| c.send("private/buy", resting_buy(&format!("ho-{k}"))))
        .collect();
    let mut answered = Vec::new();
    while let Got::Json(v) = c.read(Duration::from_millis(500)) {
        if let Some(id) = v["id"].as_u64() {
            answered.push(id);
        }
    }
    // The third order is executed (the fault fires right after it), nothing after it is
    // read, and the connection stays open without answers.
    assert!(
        answered.iter().all(|id| ids[..3].contains(id)),
        "{answered:?}"
    );
    let ledger = sim.ledger();
    for k in 0..3 {
        assert_eq!(ledger.accepted_count(&format!("ho-{k}")), 1, "ho-{k}");
    }
    for k in 3..6 {
        assert_eq!(ledger.accepted_count(&format!("ho-{k}")), 0, "ho-{k}");
    }
    assert_eq!(sim.stats().live, 1, "the half-open connection stays");
}

#[test]
fn token_expiry_after_n_orders_makes_the_next_order_unauthorized() {
    let sim = start(config());
    sim.schedule(parse_rule("expire@orders=2,conn=1").unwrap());
    let mut c = Client::connect(&sim);
    let token = c.auth()["access_token"].as_str().unwrap().to_string();
    let with_token = |label: &str| {
        let mut p = resting_buy(label);
        p["access_token"] = Value::from(token.clone());
        p
    };
    c.ok("private/buy", with_token("ex-0"));
    c.ok("private/buy", with_token("ex-1"));
    assert_eq!(c.err_code("private/buy", with_token("ex-2")), 13009);
    let ledger = sim.ledger();
    assert_eq!(ledger.accepted_count("ex-1"), 1);
    assert_eq!(ledger.accepted_count("ex-2"), 0);
}

#[test]
fn ledger_fills_carry_the_trade_seq_the_client_sees() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    // A buy through the best ask fills at once against synthetic liquidity.
    let r = c.ok(
        "private/buy",
        json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"type":"limit",
               "price":70000.0,"label":"seq-1"}),
    );
    let seqs: Vec<u64> = r["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trade_seq"].as_u64().unwrap())
        .collect();
    assert!(!seqs.is_empty(), "{r}");
    let ledger_seqs: Vec<u64> = sim
        .ledger()
        .fills_for("seq-1")
        .iter()
        .map(|e| match e {
            LedgerEntry::Fill { trade_seq, .. } => *trade_seq,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(ledger_seqs, seqs);
}

#[test]
fn stall_after_n_orders_answers_nothing_then_executes_the_rest_late() {
    let sim = start(config());
    sim.schedule(parse_rule("stall(for=600ms)@orders=2,conn=1").unwrap());
    let mut c = Client::connect(&sim);
    c.auth();
    for k in 0..4 {
        c.send("private/buy", resting_buy(&format!("st-{k}")));
    }
    std::thread::sleep(Duration::from_millis(300));
    let ledger = sim.ledger();
    assert_eq!(
        ledger.accepted_count("st-1"),
        1,
        "executed before the stall"
    );
    assert_eq!(
        ledger.accepted_count("st-2"),
        0,
        "not yet: the venue is stalled"
    );
    // After the stall the rest is executed and everything is answered.
    let mut answered = 0;
    while let Got::Json(v) = c.read(Duration::from_secs(2)) {
        if v.get("id").is_some() && v.get("result").is_some() {
            answered += 1;
        }
        if answered == 4 {
            break;
        }
    }
    assert_eq!(answered, 4);
    assert_eq!(sim.ledger().accepted_count("st-3"), 1);
}

#[test]
fn stalled_venue_executes_what_a_client_sent_before_closing() {
    let sim = start(config());
    sim.schedule(parse_rule("stall(for=400ms)@orders=1,conn=1").unwrap());
    let mut c = Client::connect(&sim);
    c.auth();
    c.send("private/buy", resting_buy("late-0"));
    c.send("private/buy", resting_buy("late-1"));
    std::thread::sleep(Duration::from_millis(100));
    // The client gives up (orderly close); its second order is still in the venue's buffer.
    drop(c);
    assert!(eventually(T, || sim.ledger().accepted_count("late-1") == 1));
}
