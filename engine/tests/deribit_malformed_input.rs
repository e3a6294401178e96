//! No input makes the Deribit decoder or the JSON scanner panic: garbage, truncations,
//! mutations, wrong types, huge numbers, deep nesting. The scanner's idea of valid JSON matches
//! serde_json's.

use proptest::prelude::*;
use spinwire_engine::md::{InstrumentTable, MdRecord};
use spinwire_engine::venue::deribit::{
    decode, decode_general, AuthResult, DecodeError, FromValue, Incoming, Items, Order,
    OrderResponse, UserTradesPage,
};
use spinwire_engine::venue::json::{JsonError, Kind, Value};

const SAMPLES: &[&str] = &[
    r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","data":{"type":"change","timestamp":1700000000000,"prev_change_id":10,"instrument_name":"BTC-PERPETUAL","change_id":11,"bids":[["change",60000.5,120.0],["new",59999.0,10.0]],"asks":[["delete",60001.0,0.0]],"sw_send_ns":1700000000000123456}}}"#,
    r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw","data":[{"trade_seq":3,"trade_id":"99","timestamp":5,"tick_direction":2,"price":3000.05,"mark_price":3000.0,"instrument_name":"BTC-PERPETUAL","index_price":3000.0,"direction":"sell","amount":7.0,"sw_send_ns":1}]}}"#,
    r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#,
    r#"{"jsonrpc":"2.0","id":1,"result":{"access_token":"a\u0041b","expires_in":900,"refresh_token":"r","scope":"session:x","token_type":"bearer"},"usIn":1,"usOut":2,"usDiff":1,"testnet":true}"#,
    r#"{"jsonrpc":"2.0","id":7,"error":{"message":"Invalid params","code":-32602,"data":{"param":"amount","reason":"must be positive"}}}"#,
    r#"{"jsonrpc":"2.0","id":42,"result":{"order":{"order_id":"BTC-12","order_state":"open","price":60000.5,"amount":110.0,"filled_amount":10.0,"average_price":60000.5,"label":"l","direction":"buy","time_in_force":"good_til_cancelled"},"trades":[{"trade_id":"1","trade_seq":1,"order_id":"BTC-12","direction":"buy","price":1.5,"amount":2,"timestamp":3}]}}"#,
    r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"user.orders.BTC-PERPETUAL.raw","data":{"order_id":"BTC-7","order_state":"filled","amount":10.0}}}"#,
];

fn table() -> InstrumentTable {
    let mut t = InstrumentTable::with_capacity(4).unwrap();
    t.insert("BTC-PERPETUAL").unwrap();
    t
}

/// Decodes and walks everything the result lends out (views decode lazily).
fn exercise(text: &str, t: &InstrumentTable) -> Result<(), DecodeError> {
    let mut out = [MdRecord::default(); 8];
    match decode(text, t, &mut out)? {
        Incoming::Response(r) => {
            if let Ok(v) = r.outcome {
                let _ = AuthResult::from_value(v);
                let _ = OrderResponse::from_value(v).map(|o| o.trades.iter().count());
                let _ = UserTradesPage::from_value(v).map(|p| p.trades.iter().count());
                let _ = Items::<Order>::from_value(v).map(|i| i.iter().count());
                walk(v);
            }
        }
        Incoming::UserOrders { orders, .. } => {
            let _ = orders.iter().count();
        }
        Incoming::UserTrades { trades, .. } => {
            let _ = trades.iter().count();
        }
        Incoming::Subscription { data, .. } => walk(data),
        _ => {}
    }
    Ok(())
}

fn walk(v: Value<'_>) {
    match v.kind() {
        Kind::Object => v.members().for_each(|(k, v)| {
            let _ = k.to_owned_string();
            walk(v)
        }),
        Kind::Array => v.elements().for_each(walk),
        Kind::String => {
            let _ = v.str().map(|s| s.to_owned_string());
        }
        Kind::Number => {
            let _ = (v.fixed(), v.u64(), v.i64(), v.f64());
        }
        _ => {}
    }
}

#[test]
fn the_samples_decode() {
    let t = table();
    for s in SAMPLES {
        exercise(s, &t).unwrap_or_else(|e| panic!("{e}: {s}"));
    }
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let t = table();
    for s in SAMPLES {
        for cut in 0..s.len() {
            let r = exercise(&s[..cut], &t);
            assert!(r.is_err(), "a truncated message decoded: {}", &s[..cut]);
        }
    }
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    let t = table();
    let mut out = [MdRecord::default(); 1];
    for junk in [
        "[".repeat(1_000_000),
        "{\"a\":".repeat(200_000),
        format!(
            "{{\"method\":\"subscription\",\"params\":{{\"channel\":\"x\",\"data\":{}}}}}",
            "[".repeat(100_000)
        ),
    ] {
        let e = decode(&junk, &t, &mut out).unwrap_err();
        assert!(
            matches!(e, DecodeError::Json(JsonError::TooDeep { .. })),
            "{e:?}"
        );
    }
}

#[test]
fn huge_numbers_anywhere_are_errors_or_skipped_never_panics() {
    let t = table();
    let huge = [
        "1e999999999999999999",
        "-99999999999999999999999999999999",
        "0.0000000000000000000000000001",
        "123456789012345678901234567890.5",
    ];
    for s in SAMPLES {
        // Replace each number in turn.
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let prev = if i > 0 { bytes[i - 1] } else { b' ' };
            if (bytes[i].is_ascii_digit() || bytes[i] == b'-') && matches!(prev, b':' | b',' | b'[')
            {
                let mut j = i + 1;
                while j < bytes.len()
                    && matches!(bytes[j], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    j += 1;
                }
                for h in huge {
                    let m = format!("{}{}{}", &s[..i], h, &s[j..]);
                    let _ = exercise(&m, &t);
                }
                i = j;
            } else {
                i += 1;
            }
        }
    }
}

/// Book messages in Deribit's layout (the fast path's): change, snapshot, empty sides.
const BOOKS: &[&str] = &[
    r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","data":{"type":"change","timestamp":1700000000000,"prev_change_id":10,"instrument_name":"BTC-PERPETUAL","change_id":11,"bids":[["change",60000.5,120.0],["new",59999.0,10.0]],"asks":[["delete",60001.0,0.0]],"sw_send_ns":1700000000000123456}}}"#,
    r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{"type":"snapshot","timestamp":1700000000000,"instrument_name":"BTC-PERPETUAL","change_id":1000000042,"bids":[["new",59999.5,100.0]],"asks":[]}}}"#,
    r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.agg2","data":{"type":"change","timestamp":1,"prev_change_id":5,"instrument_name":"BTC-PERPETUAL","change_id":6,"bids":[],"asks":[["new",1e2,0.00000001]]}}}"#,
];

/// The outcome of a decode, comparable across paths.
fn outcome(r: Result<Incoming<'_>, DecodeError>, out: &[MdRecord]) -> String {
    match r {
        Ok(Incoming::Book(b)) => format!("{b:?} {:?}", &out[..b.rows]),
        other => format!("{other:?}"),
    }
}

#[test]
fn the_fast_path_agrees_with_the_general_path_on_its_own_layout() {
    let t = table();
    for s in BOOKS {
        let (mut a, mut b) = ([MdRecord::default(); 8], [MdRecord::default(); 8]);
        let fast = outcome(decode(s, &t, &mut a), &a);
        let general = outcome(decode_general(s, &t, &mut b), &b);
        assert!(fast.starts_with("BookUpdate"), "{fast} for {s}");
        assert_eq!(fast, general);
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        (-1e15f64..1e15).prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec(("[a-z\"\\\\]{0,6}", inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// serde_json's verdict, or `None` when it refused a number for its range only (the scanner
/// checks number syntax; ranges are checked by typed reads).
fn serde_accepts(s: &str) -> Option<bool> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(_) => Some(true),
        Err(e) if e.to_string().contains("number out of range") => None,
        Err(e) if e.to_string().contains("recursion limit") => None,
        Err(_) => Some(false),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,300}") {
        let _ = exercise(&s, &table());
    }

    #[test]
    fn jsonish_text_never_panics(s in r#"[{}\[\]":,0-9.eE+\- a-z\\]{0,200}"#) {
        let _ = exercise(&s, &table());
        let _ = Value::parse(&s).map(walk);
    }

    #[test]
    fn mutated_samples_never_panic(idx in 0..SAMPLES.len(), edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(b"{}[]\":,0-9.eE+- atfnul\\x".to_vec())), 1..4)) {
        let mut b = SAMPLES[idx].as_bytes().to_vec();
        for (at, op, c) in edits {
            if b.is_empty() { break; }
            let i = at.index(b.len());
            match op {
                0 => b[i] = c,
                1 => { b.remove(i); }
                _ => b.insert(i, c),
            }
        }
        let s = String::from_utf8_lossy(&b);
        let t = table();
        let _ = exercise(&s, &t);
        if let Some(ok) = serde_accepts(&s) {
            prop_assert_eq!(Value::parse(&s).is_ok(), ok, "validity differs from serde_json: {}", s);
        }
    }

    #[test]
    fn fast_and_general_paths_agree_on_mutated_books(idx in 0..BOOKS.len(), cap in 0usize..6, edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(b"{}[]\":,0123456789.eE+- \\x".to_vec())), 1..3)) {
        let mut b = BOOKS[idx].as_bytes().to_vec();
        for (at, op, c) in edits {
            let i = at.index(b.len());
            match op {
                0 => b[i] = c,
                1 => { b.remove(i); }
                _ => b.insert(i, c),
            }
        }
        let s = String::from_utf8_lossy(&b);
        let t = table();
        let (mut x, mut y) = (vec![MdRecord::default(); cap], vec![MdRecord::default(); cap]);
        let fast = outcome(decode(&s, &t, &mut x), &x);
        let general = outcome(decode_general(&s, &t, &mut y), &y);
        prop_assert_eq!(fast, general, "{}", s);
    }

    #[test]
    fn scanner_accepts_what_serde_writes_and_reads_it_back(v in json_value()) {
        let text = serde_json::to_string(&v).unwrap();
        let ours = Value::parse(&text).unwrap();
        prop_assert!(same(&v, ours), "{}", text);
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        prop_assert!(same(&v, Value::parse(&pretty).unwrap()));
    }

    #[test]
    fn mutated_json_validity_matches_serde(v in json_value(), at in any::<prop::sample::Index>(), c in prop::sample::select(b"{}[]\":,0-9.eE+- tfnu\\".to_vec())) {
        let mut b = serde_json::to_string(&v).unwrap().into_bytes();
        let i = at.index(b.len());
        b[i] = c;
        if let Ok(s) = String::from_utf8(b) {
            if let Some(ok) = serde_accepts(&s) {
                prop_assert_eq!(Value::parse(&s).is_ok(), ok, "{}", s);
            }
        }
    }
}

/// Whether our view of a value equals serde's.
fn same(v: &serde_json::Value, ours: Value<'_>) -> bool {
    use serde_json::Value as J;
    match v {
        J::Null => ours.is_null(),
        J::Bool(b) => ours.bool() == Ok(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                ours.u64() == Ok(u)
            } else if let Some(i) = n.as_i64() {
                ours.i64() == Ok(i)
            } else {
                ours.f64() == Ok(n.as_f64().unwrap())
            }
        }
        J::String(s) => {
            let Ok(js) = ours.str() else { return false };
            let mut buf = vec![0u8; js.raw().len()];
            js.eq_str(s)
                && js.unescape_into(&mut buf) == Some(s.as_str())
                && js.to_owned_string() == *s
        }
        J::Array(a) => {
            ours.kind() == Kind::Array
                && ours.elements().count() == a.len()
                && a.iter().zip(ours.elements()).all(|(x, y)| same(x, y))
        }
        J::Object(m) => {
            ours.kind() == Kind::Object
                && ours.members().count() == m.len()
                && m.iter()
                    .all(|(k, x)| ours.get(k).is_some_and(|y| same(x, y)))
        }
    }
}
