//! The simulator's messages have the shapes of the examples in Deribit's public API
//! documentation: every key of the documented example is present, with the same JSON type, at
//! every level (array elements compared with the example's first element). The simulator may add
//! keys (its `sw_send_ns` extension, the envelope's `usIn`/`usOut`/`usDiff`/`testnet`), as the real
//! venue adds fields over time.

mod sim_util;

use std::time::Duration;

use serde_json::{json, Value};
use sim_util::*;
use spinwire_tools::sim::SimConfig;

/// The `public/auth` response example of docs.deribit.com (api-reference, public/auth).
const DOC_AUTH_RESPONSE: &str = r#"{
  "jsonrpc": "2.0",
  "id": 9929,
  "result": {
    "access_token": "1582628593469.1MbQ-J_4.CBP-OqOwm_FBdMYj4cRK2dMXyHPfBtXGpzLxhWg31nHu3H_Q60FpE5_vqUBEQGSiMrIGzw3nC37NMb9d1tpBNqBOM_Ql9pXOmgtV9Yj3Pq1c6BqC6dU6eTxHMFO67x8GpJxqw_QcKP5IepwGBD-gfKSHfAv9AEnLJkNu3JkMJBdLToY1lrBnuedF3dU_uARm",
    "expires_in": 31536000,
    "refresh_token": "1582628593469.1GP4rQd0.A9Wa78o5kFRIUP49mScaD1CqHgiK50HOl2VA6kCtWa8BQZU5Dr03BhcbXPNvEh3I_MVixKZXnyoBeKJwLl8LXnfo180ckAiPj3zOclcUu4zkXuF3NNP3sTPcDf1B3C1CwMKkJ1NOcf1yPmRbsrd7hbgQ-hLa40tfx6Oa-85ymm_3Z65LZcnCeLrqlj_A9jM",
    "scope": "connection mainaccount",
    "enabled_features": [],
    "token_type": "bearer"
  }
}"#;

/// The `book.{instrument_name}.{interval}` change notification example of Deribit's docs.
const DOC_BOOK_CHANGE: &str = r#"{
  "jsonrpc": "2.0",
  "method": "subscription",
  "params": {
    "channel": "book.BTC-PERPETUAL.100ms",
    "data": {
      "type": "change",
      "timestamp": 1554373911330,
      "prev_change_id": 297217,
      "instrument_name": "BTC-PERPETUAL",
      "change_id": 297218,
      "bids": [["delete", 5042.34, 0]],
      "asks": [["new", 5042.64, 40]]
    }
  }
}"#;

/// The `private/buy` response example of Deribit's docs (the order part; `trades` empty for a
/// resting limit order).
const DOC_BUY_RESPONSE: &str = r#"{
  "jsonrpc": "2.0",
  "id": 5275,
  "result": {
    "trades": [],
    "order": {
      "time_in_force": "good_til_cancelled",
      "reduce_only": false,
      "price": 1.0,
      "post_only": false,
      "order_type": "limit",
      "order_state": "open",
      "order_id": "ETH-349249",
      "max_show": 40.0,
      "last_update_timestamp": 1550657341322,
      "label": "market0000234",
      "is_liquidation": false,
      "instrument_name": "ETH-PERPETUAL",
      "filled_amount": 0.0,
      "direction": "buy",
      "creation_timestamp": 1550657341322,
      "commission": 0.0,
      "average_price": 0.0,
      "api": true,
      "amount": 40.0
    }
  }
}"#;

/// The JSON type of a value, with integers and floats both "number" (Deribit prints whole prices
/// either way).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `doc` is in `got` with the same type, recursively; returns the mismatches.
fn shape_mismatches(doc: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    if kind(doc) != kind(got) {
        out.push(format!(
            "{path}: documented {} but got {}",
            kind(doc),
            kind(got)
        ));
        return;
    }
    match (doc, got) {
        (Value::Object(d), Value::Object(g)) => {
            for (key, dv) in d {
                match g.get(key) {
                    Some(gv) => shape_mismatches(dv, gv, &format!("{path}.{key}"), out),
                    None => out.push(format!("{path}.{key}: documented but missing")),
                }
            }
        }
        (Value::Array(d), Value::Array(g)) => {
            if let (Some(d0), Some(g0)) = (d.first(), g.first()) {
                shape_mismatches(d0, g0, &format!("{path}[0]"), out);
            }
        }
        _ => {}
    }
}

fn assert_shaped_like(doc: &str, got: &Value) {
    let doc: Value = serde_json::from_str(doc).unwrap();
    let mut mismatches = Vec::new();
    shape_mismatches(&doc, got, "$", &mut mismatches);
    assert!(
        mismatches.is_empty(),
        "{mismatches:#?}\nsimulator sent: {got}"
    );
}

#[test]
fn shape_check_catches_a_missing_or_retyped_field() {
    let doc: Value = serde_json::from_str(DOC_AUTH_RESPONSE).unwrap();
    let mut got = doc.clone();
    got["result"].as_object_mut().unwrap().remove("scope");
    got["result"]["expires_in"] = json!("900");
    let mut mismatches = Vec::new();
    shape_mismatches(&doc, &got, "$", &mut mismatches);
    assert_eq!(mismatches.len(), 2, "{mismatches:?}");
}

#[test]
fn auth_response_has_the_documented_shape() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    let r = c.call(
        "public/auth",
        json!({"grant_type": "client_credentials", "client_id": ID, "client_secret": SECRET}),
    );
    assert_shaped_like(DOC_AUTH_RESPONSE, &r);
}

#[test]
fn book_change_notification_has_the_documented_shape() {
    let sim = start(SimConfig {
        rate: 5_000,
        ..config()
    });
    let mut c = Client::connect(&sim);
    c.auth();
    c.ok(
        "public/subscribe",
        json!({"channels": ["book.BTC-PERPETUAL.100ms"]}),
    );
    let channel = Some("book.BTC-PERPETUAL.100ms");
    // The first is the snapshot; look for a change with rows on both sides' shape.
    let mut checked = false;
    for _ in 0..200 {
        let n = c
            .notification("subscription", channel, Duration::from_secs(5))
            .expect("book notification");
        let data = &n["params"]["data"];
        if data["type"] == "change"
            && data["bids"].as_array().is_some_and(|b| !b.is_empty())
            && data["asks"].as_array().is_some_and(|a| !a.is_empty())
        {
            assert_shaped_like(DOC_BOOK_CHANGE, &n);
            checked = true;
            break;
        }
    }
    assert!(checked, "no change with bids and asks in 200 notifications");
}

#[test]
fn buy_response_has_the_documented_shape() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.auth();
    let r = c.call(
        "private/buy",
        json!({"instrument_name": "BTC-PERPETUAL", "amount": 40, "type": "limit",
               "price": 1000, "label": "market0000234"}),
    );
    assert_shaped_like(DOC_BUY_RESPONSE, &r);
}
