//! Random book notifications: the fast path (`decode`), the general path (`decode_general`) and
//! serde_json all read the same message, and the same message the generator meant (exact
//! prices and amounts, ids, actions, sides, flags).

use proptest::prelude::*;
use spinwire_engine::md::{BookAction, BookFlags, InstrumentTable, MdRecord, Side};
use spinwire_engine::venue::deribit::{decode, decode_general, Incoming, Interval};

const INSTRUMENTS: &[&str] = &[
    "BTC-PERPETUAL",
    "ETH-PERPETUAL",
    "BTC-27DEC24",
    "BTC_USDC-27DEC24-100000-C",
    "SOL",
];

fn table() -> InstrumentTable {
    let mut t = InstrumentTable::with_capacity(8).unwrap();
    for name in INSTRUMENTS {
        t.insert(name).unwrap();
    }
    t
}

/// A number as text and its exact value in 10^-8 units.
#[derive(Debug, Clone)]
struct Num {
    text: String,
    units: i64,
}

fn num() -> impl Strategy<Value = Num> {
    // (integer part, fraction digits, decimals written, trailing zeros, form)
    let int = prop_oneof![
        4 => 0u64..100_000,
        2 => 100_000u64..10_000_000,
        1 => 10_000_000u64..50_000_000_000,
    ];
    (int, 0u64..100_000_000, 0usize..=8, 0usize..3, 0u8..10).prop_map(
        |(int, frac, decimals, zeros, form)| {
            let frac = frac % 10u64.pow(decimals as u32);
            let units = (int * 100_000_000 + frac * 10u64.pow(8 - decimals as u32)) as i64;
            let mut text = int.to_string();
            if decimals > 0 {
                text += &format!(".{frac:0decimals$}");
            } else if form < 6 {
                // Deribit writes whole amounts as `120.0`.
                text += ".0";
            }
            if form == 9 && units > 0 && units % 100 == 0 {
                // An exponent: `12345e-2`.
                let m = units / 100;
                return Num {
                    text: format!("{m}e-6"),
                    units,
                };
            }
            if text.contains('.') {
                text += &"0".repeat(zeros);
            }
            Num { text, units }
        },
    )
}

#[derive(Debug, Clone)]
struct Row {
    action: BookAction,
    price: Num,
    amount: Num,
}

fn row() -> impl Strategy<Value = Row> {
    (
        prop_oneof![
            Just(BookAction::New),
            Just(BookAction::Change),
            Just(BookAction::Delete)
        ],
        num(),
        num(),
    )
        .prop_map(|(action, price, amount)| Row {
            action,
            price,
            amount,
        })
}

#[derive(Debug, Clone)]
struct Book {
    instrument: usize,
    interval: Interval,
    snapshot: bool,
    timestamp: u64,
    prev_change_id: u64,
    change_id: u64,
    bids: Vec<Row>,
    asks: Vec<Row>,
    sw_send_ns: Option<u64>,
    /// 0: Deribit's compact layout; 1: spaces after the colons; 2: `data` members reversed.
    layout: u8,
}

fn book() -> impl Strategy<Value = Book> {
    (
        0..INSTRUMENTS.len(),
        prop_oneof![
            Just(Interval::Raw),
            Just(Interval::Ms100),
            Just(Interval::Agg2)
        ],
        any::<bool>(),
        (0u64..2_000_000_000_000, 0u64..u64::MAX / 2, 1u64..1000),
        prop::collection::vec(row(), 0..12),
        prop::collection::vec(row(), 0..12),
        prop::option::of(prop_oneof![
            1_000_000_000_000_000_000u64..2_000_000_000_000_000_000,
            0u64..1000
        ]),
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
        .prop_map(
            |(instrument, interval, snapshot, (timestamp, prev, step), bids, asks, sw, layout)| {
                Book {
                    instrument,
                    interval,
                    snapshot,
                    timestamp,
                    prev_change_id: prev,
                    change_id: prev + step,
                    bids,
                    asks,
                    sw_send_ns: sw,
                    layout,
                }
            },
        )
}

fn action_text(a: BookAction) -> &'static str {
    match a {
        BookAction::New => "new",
        BookAction::Change => "change",
        BookAction::Delete => "delete",
    }
}

fn rows_text(rows: &[Row]) -> String {
    let r: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "[\"{}\",{},{}]",
                action_text(r.action),
                r.price.text,
                r.amount.text
            )
        })
        .collect();
    format!("[{}]", r.join(","))
}

fn text(b: &Book) -> String {
    let name = INSTRUMENTS[b.instrument];
    let mut members = vec![
        format!(
            "\"type\":\"{}\"",
            if b.snapshot { "snapshot" } else { "change" }
        ),
        format!("\"timestamp\":{}", b.timestamp),
    ];
    if !b.snapshot {
        members.push(format!("\"prev_change_id\":{}", b.prev_change_id));
    }
    members.push(format!("\"instrument_name\":\"{name}\""));
    members.push(format!("\"change_id\":{}", b.change_id));
    members.push(format!("\"bids\":{}", rows_text(&b.bids)));
    members.push(format!("\"asks\":{}", rows_text(&b.asks)));
    if let Some(sw) = b.sw_send_ns {
        members.push(format!("\"sw_send_ns\":{sw}"));
    }
    if b.layout == 2 {
        members.reverse();
    }
    let s = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{{\"channel\":\"book.{name}.{}\",\"data\":{{{}}}}}}}",
        b.interval.as_str(),
        members.join(",")
    );
    if b.layout == 1 {
        s.replace("\":", "\": ")
    } else {
        s
    }
}

/// The outcome of a decode, comparable across paths.
fn outcome(text: &str, t: &InstrumentTable, general: bool) -> String {
    let mut out = vec![MdRecord::default(); 32];
    let r = if general {
        decode_general(text, t, &mut out)
    } else {
        decode(text, t, &mut out)
    };
    match r {
        Ok(Incoming::Book(b)) => format!("{b:?} {:?}", &out[..b.rows]),
        other => format!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn fast_general_and_serde_json_read_random_books_alike(b in book()) {
        let text = text(&b);
        let t = table();
        // Fast and general paths: the same outcome, byte for byte.
        let fast = outcome(&text, &t, false);
        let general = outcome(&text, &t, true);
        prop_assert_eq!(&fast, &general, "{}", text);

        // The general path against what the generator meant.
        let mut out = vec![MdRecord::default(); 32];
        let Ok(Incoming::Book(u)) = decode(&text, &t, &mut out) else {
            return Err(TestCaseError::fail(format!("not decoded: {fast} {text}")));
        };
        // Rows in message order (layout 2 has the asks first).
        let bids = b.bids.iter().map(|r| (Side::Bid, r));
        let asks = b.asks.iter().map(|r| (Side::Ask, r));
        let want: Vec<(Side, &Row)> = if b.layout == 2 {
            asks.chain(bids).collect()
        } else {
            bids.chain(asks).collect()
        };
        prop_assert_eq!(u.rows, want.len());
        prop_assert_eq!(u.instrument, t.get(INSTRUMENTS[b.instrument].as_bytes()).unwrap());
        prop_assert_eq!(u.interval, b.interval);
        prop_assert_eq!(u.snapshot, b.snapshot);
        prop_assert_eq!(u.change_id, b.change_id);
        prop_assert_eq!(u.prev_change_id, if b.snapshot { 0 } else { b.prev_change_id });
        prop_assert_eq!(u.timestamp_ms, b.timestamp);
        prop_assert_eq!(u.sw_send_ns, b.sw_send_ns.unwrap_or(0));
        for (k, (rec, (side, row))) in out[..u.rows].iter().zip(&want).enumerate() {
            let MdRecord::Book(r) = rec else { panic!("book rows only") };
            prop_assert_eq!(r.side, *side);
            prop_assert_eq!(r.action, row.action);
            prop_assert_eq!(r.price.raw(), row.price.units, "price {}", row.price.text);
            prop_assert_eq!(r.amount.raw(), row.amount.units, "amount {}", row.amount.text);
            prop_assert_eq!(r.change_id, u.change_id);
            prop_assert_eq!(r.prev_change_id, u.prev_change_id);
            prop_assert_eq!(r.timestamp_ms, u.timestamp_ms);
            prop_assert_eq!(r.sw_send_ns, u.sw_send_ns);
            prop_assert_eq!(r.instrument, u.instrument);
            prop_assert_eq!(r.flags.contains(BookFlags::FIRST), k == 0);
            prop_assert_eq!(r.flags.contains(BookFlags::LAST), k + 1 == u.rows);
            prop_assert_eq!(r.flags.contains(BookFlags::SNAPSHOT), b.snapshot);
        }

        // serde_json reads the same message: ids exactly, numbers to f64 precision.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let d = &v["params"]["data"];
        prop_assert_eq!(d["change_id"].as_u64(), Some(u.change_id));
        prop_assert_eq!(d["timestamp"].as_u64(), Some(u.timestamp_ms));
        prop_assert_eq!(d["sw_send_ns"].as_u64().unwrap_or(0), u.sw_send_ns);
        let (first, second) = if b.layout == 2 { ("asks", "bids") } else { ("bids", "asks") };
        let serde_rows: Vec<&serde_json::Value> = d[first].as_array().unwrap().iter()
            .chain(d[second].as_array().unwrap()).collect();
        prop_assert_eq!(serde_rows.len(), u.rows);
        for (rec, s) in out[..u.rows].iter().zip(serde_rows) {
            let MdRecord::Book(r) = rec else { panic!("book rows only") };
            prop_assert_eq!(s[0].as_str(), Some(action_text(r.action)));
            for (ours, theirs) in [(r.price.to_f64(), &s[1]), (r.amount.to_f64(), &s[2])] {
                let theirs = theirs.as_f64().unwrap();
                prop_assert!((ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0), "{} vs {}", ours, theirs);
            }
        }
    }
}
