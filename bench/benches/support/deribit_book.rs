//! The Deribit book-change messages and the serde_json baseline shared by the
//! `deribit_decode` bench and the `decode_ir` example (included with `#[path]`; not a target).

use serde::Deserialize;
use spinwire_engine::md::InstrumentTable;

/// A `book.BTC-PERPETUAL.raw` change with `rows` rows (bids first, then asks), as Deribit sends
/// it, plus `sw_send_ns`.
pub fn book_change(rows: usize) -> String {
    let bids = rows.div_ceil(2);
    let row = |i: usize, bid: bool| {
        let action = ["change", "new", "delete"][i % 3];
        let price = if bid {
            60000.0 - 0.5 * i as f64
        } else {
            60000.5 + 0.5 * i as f64
        };
        let amount = if action == "delete" {
            0
        } else {
            10 * (i as u64 * 37 % 5000 + 1)
        };
        format!("[\"{action}\",{price:.1},{amount}.0]")
    };
    let b: Vec<String> = (0..bids).map(|i| row(i, true)).collect();
    let a: Vec<String> = (0..rows - bids).map(|i| row(i, false)).collect();
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{{\"channel\":\"book.BTC-PERPETUAL.raw\",\
         \"data\":{{\"type\":\"change\",\"timestamp\":1700000000123,\"prev_change_id\":71234567890,\
         \"instrument_name\":\"BTC-PERPETUAL\",\"change_id\":71234567891,\"bids\":[{}],\"asks\":[{}],\
         \"sw_send_ns\":1700000000123456789}}}}}}",
        b.join(","),
        a.join(",")
    )
}

/// The instrument table of the benchmarks (the message's instrument among a few others).
pub fn instruments() -> InstrumentTable {
    let mut table = InstrumentTable::with_capacity(64).expect("capacity");
    for name in [
        "ETH-PERPETUAL",
        "BTC-PERPETUAL",
        "BTC-27DEC24",
        "ETH-27DEC24",
    ] {
        table.insert(name).expect("room");
    }
    table
}

// ---------------------------------------------------------------------------------------------
// The serde_json baseline: derive structs for the same message.

/// A notification.
#[allow(dead_code)]
#[derive(Deserialize)]
pub struct Notification {
    /// `method`.
    pub method: String,
    /// `params`.
    pub params: Params,
}

/// `params` of a book notification.
#[allow(dead_code)]
#[derive(Deserialize)]
pub struct Params {
    /// `channel`.
    pub channel: String,
    /// `data`.
    pub data: BookData,
}

/// `type`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `snapshot`.
    Snapshot,
    /// `change`.
    Change,
}

/// A row's action.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `new`.
    New,
    /// `change`.
    Change,
    /// `delete`.
    Delete,
}

/// `data` of a book notification.
#[allow(dead_code)]
#[derive(Deserialize)]
pub struct BookData {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// `timestamp`.
    pub timestamp: u64,
    /// `prev_change_id`.
    #[serde(default)]
    pub prev_change_id: Option<u64>,
    /// `instrument_name`.
    pub instrument_name: String,
    /// `change_id`.
    pub change_id: u64,
    /// `bids`.
    pub bids: Vec<(Action, f64, f64)>,
    /// `asks`.
    pub asks: Vec<(Action, f64, f64)>,
    /// `sw_send_ns`.
    #[serde(default)]
    pub sw_send_ns: Option<u64>,
}

/// The baseline decode.
pub fn serde_decode(text: &str) -> Notification {
    serde_json::from_str(text).expect("valid notification")
}
