//! Orders, matching, private notifications, cancel-on-disconnect and the ledger, driven by an
//! independent tungstenite client.

mod sim_util;

use std::time::Duration;

use serde_json::{json, Value};
use sim_util::*;
use spinwire_tools::sim::{LedgerEntry, SimConfig};

const T: Duration = Duration::from_secs(3);

/// Best bid and ask of BTC-PERPETUAL from a fresh book snapshot.
fn top(c: &mut Client) -> (f64, f64) {
    c.ok(
        "public/subscribe",
        json!({"channels":["book.BTC-PERPETUAL.100ms"]}),
    );
    let snap = c
        .notification("subscription", Some("book.BTC-PERPETUAL.100ms"), T)
        .unwrap();
    c.ok(
        "public/unsubscribe",
        json!({"channels":["book.BTC-PERPETUAL.100ms"]}),
    );
    let d = &snap["params"]["data"];
    (
        d["bids"][0][1].as_f64().unwrap(),
        d["asks"][0][1].as_f64().unwrap(),
    )
}

fn buy(c: &mut Client, price: f64, amount: f64, label: &str) -> Value {
    c.call(
        "private/buy",
        json!({"instrument_name":"BTC-PERPETUAL","amount":amount,"type":"limit",
               "price":price,"label":label}),
    )
}

#[test]
fn resting_limit_order_is_found_by_label_and_cancelled() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    let (bid, _) = top(&mut c);
    let r = buy(&mut c, bid - 50.0, 100.0, "rest-1");
    let o = &r["result"]["order"];
    assert_eq!(o["order_state"], "open");
    assert_eq!(o["label"], "rest-1");
    assert_eq!(o["direction"], "buy");
    assert_eq!(o["amount"], 100.0);
    assert!(o["order_id"].as_str().unwrap().starts_with("BTC-"));
    assert_eq!(r["result"]["trades"], json!([]));
    let open = c.ok(
        "private/get_open_orders_by_label",
        json!({"currency":"BTC","label":"rest-1"}),
    );
    assert_eq!(open.as_array().unwrap().len(), 1);
    let cancelled = c.ok("private/cancel", json!({"order_id": o["order_id"]}));
    assert_eq!(cancelled["order_state"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "user_request");
    assert_eq!(
        c.err_code("private/cancel", json!({"order_id": o["order_id"]})),
        11044
    );
    assert_eq!(
        c.err_code("private/cancel", json!({"order_id": "BTC-999999"})),
        10004
    );
    let state = c.ok(
        "private/get_order_state_by_label",
        json!({"currency":"BTC","label":"rest-1"}),
    );
    assert_eq!(state[0]["order_state"], "cancelled");
    let ledger = sim.ledger();
    assert_eq!(ledger.accepted_count("rest-1"), 1);
    assert_eq!(ledger.cancels_for("rest-1").len(), 1);
}

#[test]
fn crossing_order_fills_and_is_reported_in_trades_notifications_and_ledger() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    c.ok(
        "private/subscribe",
        json!({"channels":["user.trades.BTC-PERPETUAL.raw","user.orders.BTC-PERPETUAL.raw"]}),
    );
    let (_, ask) = top(&mut c);
    let r = c.ok(
        "private/buy",
        json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"type":"market","label":"mkt"}),
    );
    assert_eq!(r["order"]["order_state"], "filled");
    assert_eq!(r["order"]["filled_amount"], 10.0);
    assert_eq!(r["trades"][0]["price"], ask);
    assert_eq!(r["trades"][0]["liquidity"], "T");
    assert_eq!(r["trades"][0]["label"], "mkt");
    let n = c
        .notification("subscription", Some("user.trades.BTC-PERPETUAL.raw"), T)
        .unwrap();
    assert_eq!(
        n["params"]["data"][0]["trade_id"],
        r["trades"][0]["trade_id"]
    );
    let o = c
        .notification("subscription", Some("user.orders.BTC-PERPETUAL.raw"), T)
        .unwrap();
    assert_eq!(o["params"]["data"]["order_state"], "filled");
    let trades = c.ok(
        "private/get_user_trades_by_instrument",
        json!({"instrument_name":"BTC-PERPETUAL","count":10}),
    );
    assert_eq!(trades["trades"].as_array().unwrap().len(), 1);
    assert_eq!(trades["has_more"], false);
    let pos = c.ok(
        "private/get_position",
        json!({"instrument_name":"BTC-PERPETUAL"}),
    );
    assert_eq!(pos["size"], 10.0);
    assert_eq!(sim.ledger().filled_amount("mkt"), 10.0);
    // A reduce-only sell up to the position is accepted and brings it back to zero.
    let red = c.ok(
        "private/sell",
        json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"type":"market",
               "reduce_only":true,"label":"reduce"}),
    );
    assert_eq!(red["order"]["order_state"], "filled");
    assert_eq!(red["order"]["reduce_only"], true);
    let pos = c.ok(
        "private/get_position",
        json!({"instrument_name":"BTC-PERPETUAL"}),
    );
    assert_eq!(pos["size"], 0.0);
    assert_eq!(pos["direction"], "zero");
}

#[test]
fn order_validation_errors_use_deribit_codes_and_are_ledgered_as_rejections() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    let (bid, ask) = top(&mut c);
    let post = c.call(
        "private/buy",
        json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"price":ask,
               "post_only":true,"reject_post_only":true,"label":"po"}),
    );
    assert_eq!(post["error"]["code"], 11054);
    assert_eq!(post["error"]["message"], "post_only_reject");
    let long = "x".repeat(65);
    let r = buy(&mut c, bid, 10.0, &long);
    assert_eq!(r["error"]["data"]["param"], "label");
    let r = buy(&mut c, bid, 15.0, "amt");
    assert_eq!(r["error"]["code"], -32602);
    assert_eq!(r["error"]["data"]["param"], "amount");
    let r = buy(&mut c, bid + 0.25, 10.0, "tick");
    assert_eq!(r["error"]["code"], 10043);
    let r = c.call(
        "private/sell",
        json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"price":ask + 100.0,
               "reduce_only":true}),
    );
    assert_eq!(r["error"]["code"], 11030, "nothing to reduce");
    let ledger = sim.ledger();
    assert!(ledger.accepted_labels().is_empty());
    let rejected = ledger
        .entries
        .iter()
        .filter(|e| matches!(e, LedgerEntry::OrderRejected { .. }))
        .count();
    assert_eq!(rejected, 5);
}

#[test]
fn edit_moves_an_order_and_cancel_by_label_and_cancel_all_count_what_they_cancel() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    let (bid, _) = top(&mut c);
    let r = buy(&mut c, bid - 100.0, 20.0, "grp");
    let id = r["result"]["order"]["order_id"].clone();
    buy(&mut c, bid - 101.0, 20.0, "grp");
    buy(&mut c, bid - 102.0, 20.0, "other");
    let edited = c.ok(
        "private/edit",
        json!({"order_id": id, "amount": 30.0, "price": bid - 99.5}),
    );
    assert_eq!(edited["order"]["price"], bid - 99.5);
    assert_eq!(edited["order"]["amount"], 30.0);
    assert_eq!(
        c.ok(
            "private/cancel_by_label",
            json!({"label":"grp","currency":"BTC"})
        ),
        2
    );
    assert_eq!(c.ok("private/cancel_all", json!({})), 1);
    assert!(c
        .ok(
            "private/get_open_orders_by_label",
            json!({"currency":"BTC"})
        )
        .as_array()
        .unwrap()
        .is_empty());
    let ledger = sim.ledger();
    assert!(ledger
        .entries
        .iter()
        .any(|e| matches!(e, LedgerEntry::OrderEdited { label, .. } if label == "grp")));
}

#[test]
fn resting_order_fills_against_the_synthetic_market() {
    let sim = start(SimConfig {
        rate: 20_000,
        ..config()
    });
    let mut c = Client::connect(&sim);
    c.auth();
    c.ok(
        "private/subscribe",
        json!({"channels":["user.orders.BTC-PERPETUAL.raw"]}),
    );
    // A bid at the best ask minus one tick rests at the top of the book and is taken by the
    // next synthetic sell or by the market moving down through it.
    let (_, ask) = top(&mut c);
    let r = c.ok(
        "private/buy",
        json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"price":ask - 0.5,
               "post_only":true,"label":"maker"}),
    );
    assert_eq!(r["order"]["order_state"], "open");
    assert!(
        eventually(Duration::from_secs(10), || sim
            .ledger()
            .filled_amount("maker")
            == 10.0),
        "resting order filled"
    );
    let fills = sim.ledger().fills_for("maker").len();
    assert!(fills >= 1);
    let last_state = loop {
        let n = c
            .notification("subscription", Some("user.orders.BTC-PERPETUAL.raw"), T)
            .expect("order update");
        if n["params"]["data"]["order_state"] == "filled" {
            break n;
        }
    };
    assert_eq!(last_state["params"]["data"]["filled_amount"], 10.0);
    let trades = c.ok(
        "private/get_user_trades_by_instrument",
        json!({"instrument_name":"BTC-PERPETUAL"}),
    );
    assert_eq!(trades["trades"][0]["liquidity"], "M");
}

fn place_resting(c: &mut Client, label: &str) {
    let (bid, _) = top(c);
    let r = buy(c, bid - 200.0, 10.0, label);
    assert_eq!(r["result"]["order"]["order_state"], "open", "{r}");
}

#[test]
fn cancel_on_disconnect_fires_when_the_connection_drops() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    assert_eq!(
        c.ok(
            "private/enable_cancel_on_disconnect",
            json!({"scope":"connection"})
        ),
        "ok"
    );
    assert_eq!(
        c.ok("private/get_cancel_on_disconnect", json!({}))["enabled"],
        true
    );
    place_resting(&mut c, "cod");
    drop(c);
    assert!(eventually(T, || sim.ledger().cancels_for("cod").len() == 1));
    match &sim.ledger().cancels_for("cod")[0] {
        LedgerEntry::OrderCancelled { reason, .. } => assert_eq!(reason, "cancel_on_disconnect"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cancel_on_disconnect_does_not_fire_after_logout() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    c.ok("private/enable_cancel_on_disconnect", json!({}));
    place_resting(&mut c, "stay");
    c.send("private/logout", json!({}));
    assert!(matches!(c.wait_closed(T), Got::CloseFrame(1000)));
    assert!(eventually(T, || sim.connections().is_empty()));
    assert!(sim.ledger().cancels_for("stay").is_empty());
    let mut d = Client::connect(&sim);
    d.auth();
    let open = d.ok(
        "private/get_open_orders_by_label",
        json!({"currency":"BTC","label":"stay"}),
    );
    assert_eq!(open.as_array().unwrap().len(), 1);
}

#[test]
fn cancel_on_disconnect_fires_on_a_failed_heartbeat() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    c.ok(
        "private/enable_cancel_on_disconnect",
        json!({"scope":"account"}),
    );
    place_resting(&mut c, "hb");
    c.ok("public/set_heartbeat", json!({"interval": 0.1}));
    // Never answer the test requests.
    let end = c.wait_closed(T);
    assert!(matches!(end, Got::CloseFrame(_)), "{end:?}");
    assert!(eventually(T, || sim.ledger().cancels_for("hb").len() == 1));
}

#[test]
fn ledger_file_is_written_on_shutdown() {
    let dir = temp_dir("ledger");
    let path = dir.join("ledger.json");
    let sim = start(SimConfig {
        ledger_path: Some(path.clone()),
        ..config()
    });
    let mut c = Client::connect(&sim);
    c.auth();
    place_resting(&mut c, "file");
    drop(c);
    let ledger = sim.shutdown_checked().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let back: spinwire_tools::sim::Ledger = serde_json::from_str(&text).unwrap();
    assert_eq!(back, ledger);
    assert_eq!(back.accepted_count("file"), 1);
}
