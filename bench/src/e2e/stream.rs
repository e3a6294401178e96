//! The Deribit market-data stream the feeder serves: `book.{instrument}.raw` changes and
//! `trades.{instrument}.raw` notifications, byte for byte in the simulator's format (the same
//! templates as `tools/src/sim/conn.rs`, written with the simulator's own number formatting,
//! [`spinwire_tools::sim::fmt`]), each stamped with `sw_send_ns` at encode time.
//!
//! The stream is deterministic for a seed: two instruments (BTC-PERPETUAL, ETH-PERPETUAL), about
//! 60% one-row book changes, 25% two-row changes (a level moves) and 15% one-trade messages.
//! Book changes chain (`prev_change_id` is the previous `change_id` of the instrument), so a
//! client that saw the instrument's snapshot keeps its book current.

use spinwire_tools::sim::fmt::{push_amount, push_int, push_price};
use spinwire_tools::sim::market::{InstrumentSpec, Rng};

/// The instruments of the stream.
pub const INSTRUMENTS: [&str; 2] = ["BTC-PERPETUAL", "ETH-PERPETUAL"];

/// The channels a WebSocket client subscribes to for the whole stream.
pub fn channels() -> Vec<String> {
    INSTRUMENTS
        .iter()
        .flat_map(|i| [format!("book.{i}.raw"), format!("trades.{i}.raw")])
        .collect()
}

/// What [`MdStream::next_message`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A book change with this many rows.
    BookChange(u8),
    /// A trades notification with one trade.
    Trade,
}

/// Per-instrument state of the generator.
#[derive(Debug, Clone)]
struct Inst {
    spec: InstrumentSpec,
    /// Mid price, fixed-point (10^-4).
    mid: i64,
    /// Last `change_id` sent.
    change_id: u64,
    /// Last `trade_seq` sent.
    trade_seq: u64,
    /// Channel names, precomputed.
    book_channel: String,
    trades_channel: String,
}

/// The deterministic message generator. Allocation-free once its output buffer has grown.
#[derive(Debug, Clone)]
pub struct MdStream {
    rng: Rng,
    insts: Vec<Inst>,
    next_trade_id: u64,
}

impl MdStream {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> MdStream {
        let insts = INSTRUMENTS
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let spec = InstrumentSpec::for_name(name);
                Inst {
                    mid: spec.base_price,
                    change_id: 1_000_000 * (k as u64 + 1),
                    trade_seq: 1,
                    book_channel: format!("book.{name}.raw"),
                    trades_channel: format!("trades.{name}.raw"),
                    spec,
                }
            })
            .collect();
        MdStream {
            rng: Rng::new(seed),
            insts,
            next_trade_id: 300_000_000,
        }
    }

    /// Index of the instrument named `name`.
    pub fn instrument_index(&self, name: &str) -> Option<usize> {
        self.insts.iter().position(|i| i.spec.name == name)
    }

    /// Appends the book snapshot of instrument `k` (20 levels a side around its mid, carrying
    /// its current `change_id`) to `out`, in the simulator's snapshot format.
    ///
    /// # Panics
    /// When `k` is not an instrument index (below [`INSTRUMENTS`]`.len()`).
    pub fn snapshot(&self, k: usize, out: &mut Vec<u8>, sw_send_ns: u64) {
        let inst = &self.insts[k];
        out.extend_from_slice(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{\"channel\":\"",
        );
        out.extend_from_slice(inst.book_channel.as_bytes());
        out.extend_from_slice(b"\",\"data\":{\"type\":\"snapshot\",\"timestamp\":");
        push_int(out, sw_send_ns / 1_000_000);
        out.extend_from_slice(b",\"instrument_name\":\"");
        out.extend_from_slice(inst.spec.name.as_bytes());
        out.extend_from_slice(b"\",\"change_id\":");
        push_int(out, inst.change_id);
        for (side, sign) in [(&b",\"bids\":["[..], -1i64), (&b"],\"asks\":["[..], 1)] {
            out.extend_from_slice(side);
            for level in 1..=20i64 {
                if level > 1 {
                    out.push(b',');
                }
                out.extend_from_slice(b"[\"new\",");
                push_price(out, inst.mid + sign * level * inst.spec.tick);
                out.push(b',');
                push_amount(out, inst.spec.contract * (10 + level));
                out.push(b']');
            }
        }
        out.extend_from_slice(b"],\"sw_send_ns\":");
        push_int(out, sw_send_ns);
        out.extend_from_slice(b"}}}");
    }

    /// Appends the next message of the stream to `out`, stamped with `sw_send_ns` (and an
    /// exchange timestamp of `sw_send_ns / 10^6` ms).
    pub fn next_message(&mut self, out: &mut Vec<u8>, sw_send_ns: u64) -> MessageKind {
        let k = self.rng.below(self.insts.len() as u64) as usize;
        let roll = self.rng.below(100);
        let ts_ms = sw_send_ns / 1_000_000;
        if roll < 15 {
            self.trade(k, out, ts_ms, sw_send_ns);
            return MessageKind::Trade;
        }
        let rows = if roll < 40 { 2 } else { 1 };
        let inst = &mut self.insts[k];
        let tick = inst.spec.tick;
        let bid = self.rng.below(2) == 0;
        let level = 1 + self.rng.below(10) as i64;
        let amount = inst.spec.contract * (1 + self.rng.below(50) as i64);
        if rows == 2 {
            // The mid moves by a tick: one level goes, one comes.
            inst.mid += if bid { tick } else { -tick };
        }
        let prev = inst.change_id;
        inst.change_id += 1;
        out.extend_from_slice(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{\"channel\":\"",
        );
        out.extend_from_slice(inst.book_channel.as_bytes());
        out.extend_from_slice(b"\",\"data\":{\"type\":\"change\",\"timestamp\":");
        push_int(out, ts_ms);
        out.extend_from_slice(b",\"prev_change_id\":");
        push_int(out, prev);
        out.extend_from_slice(b",\"instrument_name\":\"");
        out.extend_from_slice(inst.spec.name.as_bytes());
        out.extend_from_slice(b"\",\"change_id\":");
        push_int(out, inst.change_id);
        let row = |out: &mut Vec<u8>, action: &[u8], price: i64, amount: i64| {
            out.extend_from_slice(b"[\"");
            out.extend_from_slice(action);
            out.extend_from_slice(b"\",");
            push_price(out, price);
            out.push(b',');
            push_amount(out, amount);
            out.push(b']');
        };
        let price = if bid {
            inst.mid - level * tick
        } else {
            inst.mid + level * tick
        };
        out.extend_from_slice(b",\"bids\":[");
        if bid {
            row(out, b"change", price, amount);
            if rows == 2 {
                out.push(b',');
                row(out, b"new", inst.mid - tick, amount);
            }
        }
        out.extend_from_slice(b"],\"asks\":[");
        if !bid {
            row(out, b"change", price, amount);
            if rows == 2 {
                out.push(b',');
                row(out, b"new", inst.mid + tick, amount);
            }
        }
        out.extend_from_slice(b"],\"sw_send_ns\":");
        push_int(out, sw_send_ns);
        out.extend_from_slice(b"}}}");
        MessageKind::BookChange(rows)
    }

    fn trade(&mut self, k: usize, out: &mut Vec<u8>, ts_ms: u64, sw_send_ns: u64) {
        let buy = self.rng.below(2) == 0;
        let amount_units = 1 + self.rng.below(20) as i64;
        let tick_dir = self.rng.below(4);
        let inst = &mut self.insts[k];
        inst.trade_seq += 1;
        self.next_trade_id += 1;
        let price = if buy {
            inst.mid + inst.spec.tick
        } else {
            inst.mid - inst.spec.tick
        };
        out.extend_from_slice(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{\"channel\":\"",
        );
        out.extend_from_slice(inst.trades_channel.as_bytes());
        out.extend_from_slice(b"\",\"data\":[");
        out.extend_from_slice(b"{\"trade_seq\":");
        push_int(out, inst.trade_seq);
        out.extend_from_slice(b",\"trade_id\":\"");
        push_int(out, self.next_trade_id);
        out.extend_from_slice(b"\",\"timestamp\":");
        push_int(out, ts_ms);
        out.extend_from_slice(b",\"tick_direction\":");
        push_int(out, tick_dir);
        out.extend_from_slice(b",\"price\":");
        push_price(out, price);
        out.extend_from_slice(b",\"mark_price\":");
        push_price(out, inst.mid);
        out.extend_from_slice(b",\"instrument_name\":\"");
        out.extend_from_slice(inst.spec.name.as_bytes());
        out.extend_from_slice(b"\",\"index_price\":");
        push_price(out, inst.mid);
        out.extend_from_slice(b",\"direction\":\"");
        out.extend_from_slice(if buy { b"buy" } else { b"sell" });
        out.extend_from_slice(b"\",\"amount\":");
        push_amount(out, amount_units * inst.spec.contract);
        out.extend_from_slice(b",\"sw_send_ns\":");
        push_int(out, sw_send_ns);
        out.push(b'}');
        out.extend_from_slice(b"]}}");
    }
}

/// Finds the `sw_send_ns` of one stream message cheaply: the last run of decimal digits in
/// `line` (every message of the stream ends with `"sw_send_ns":N` followed only by closing
/// brackets). `None` when `line` has no digits there.
#[inline]
pub fn trailing_send_ns(line: &[u8]) -> Option<u64> {
    let mut end = line.len();
    while end > 0 && !line[end - 1].is_ascii_digit() {
        end -= 1;
        if line.len() - end > 8 {
            return None;
        }
    }
    let mut start = end;
    while start > 0 && line[start - 1].is_ascii_digit() {
        start -= 1;
    }
    if start == end || end - start > 20 {
        return None;
    }
    let mut v = 0u64;
    for &d in &line[start..end] {
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_json_with_the_send_time_last() {
        let mut s = MdStream::new(7);
        let mut out = Vec::new();
        let mut kinds = [0u32; 3];
        for i in 0..2_000u64 {
            out.clear();
            let ns = 1_700_000_000_000_000_000 + i;
            let kind = s.next_message(&mut out, ns);
            kinds[match kind {
                MessageKind::BookChange(1) => 0,
                MessageKind::BookChange(_) => 1,
                MessageKind::Trade => 2,
            }] += 1;
            let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(v["method"], "subscription");
            assert_eq!(trailing_send_ns(&out), Some(ns));
        }
        assert!(
            kinds.iter().all(|&n| n > 100),
            "all kinds appear: {kinds:?}"
        );
    }

    #[test]
    fn book_changes_chain_from_the_snapshot() {
        let mut s = MdStream::new(1);
        let mut out = Vec::new();
        s.snapshot(0, &mut out, 5);
        let snap: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let mut last = snap["params"]["data"]["change_id"].as_u64().unwrap();
        assert_eq!(snap["params"]["data"]["bids"].as_array().unwrap().len(), 20);
        for _ in 0..500 {
            out.clear();
            if let MessageKind::BookChange(_) = s.next_message(&mut out, 9) {
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                let d = &v["params"]["data"];
                if d["instrument_name"] == "BTC-PERPETUAL" {
                    assert_eq!(d["prev_change_id"].as_u64(), Some(last));
                    last = d["change_id"].as_u64().unwrap();
                }
            }
        }
    }

    #[test]
    fn trailing_send_ns_refuses_lines_without_a_number_at_the_end() {
        assert_eq!(trailing_send_ns(b"{\"a\":\"x\"}"), None);
        assert_eq!(trailing_send_ns(b""), None);
        assert_eq!(trailing_send_ns(b"{\"sw_send_ns\":42}]}}"), Some(42));
        assert_eq!(trailing_send_ns(b"99999999999999999999999}"), None);
    }
}
