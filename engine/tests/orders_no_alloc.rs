//! The steady order path allocates nothing: request → bytes written → response → fill
//! notification → cancel → cancel response, thousands of times, with and without a journal,
//! counted by a global allocator.

mod alloc_support;
mod orders_support;

use std::fmt::Write as _;

use orders_support::*;
use spinwire_engine::md::MdRecord;
use spinwire_engine::orders::journal::{FlushPolicy, JournalConfig};
use spinwire_engine::orders::{OrderEventKind, OrderRequest, LABEL_LEN};
use spinwire_engine::session::SessionConfig;

#[global_allocator]
static GLOBAL: alloc_support::CountingAlloc = alloc_support::CountingAlloc;

/// The JSON-RPC id of an encoded request (read without allocating).
fn rpc_id(msg: &[u8]) -> u64 {
    let at = msg.windows(5).position(|w| w == b"\"id\":").unwrap() + 5;
    msg[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |v, &b| v * 10 + (b - b'0') as u64)
}

fn label_of(id: u64) -> [u8; LABEL_LEN] {
    let mut l = [0u8; LABEL_LEN];
    spinwire_engine::orders::ClientOrderId(id).write_label(&mut l);
    l
}

/// Runs `rounds` order lifecycles on a live session; returns (allocations, fills seen,
/// cancels seen).
fn cycle(cfg: SessionConfig, rounds: u64) -> (u64, u64, u64) {
    let mut p = Pair::new(cfg);
    p.live();
    let mut s = p.s;
    let mut now = p.now;
    let mut buf = vec![0u8; 4096];
    let mut text = String::with_capacity(4096);
    let mut sink = |_: &[MdRecord]| {};
    let (mut fills, mut cancels) = (0u64, 0u64);
    let mut run = |s: &mut spinwire_engine::session::Session, k: u64, now: u64| {
        let id = BASE + k;
        let l = label_of(id);
        let l = std::str::from_utf8(&l).unwrap();
        s.handle_order(now, buy(k, 10, 100));
        let n = s.poll_transmit(now, &mut buf).expect("buy written");
        let rpc = rpc_id(&buf[..n]);
        text.clear();
        write!(
            text,
            r#"{{"jsonrpc":"2.0","id":{rpc},"result":{{"order":{{"order_id":"BTC-{id}","order_state":"open","label":"{l}","instrument_name":"{INST}","direction":"buy","order_type":"limit","price":100.0,"amount":10.0,"filled_amount":0.0,"time_in_force":"good_til_cancelled","post_only":false,"reduce_only":false}},"trades":[]}}}}"#
        )
        .unwrap();
        s.handle_text(now, &text, &mut sink);
        text.clear();
        write!(
            text,
            r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"user.trades.{INST}.raw","data":[{{"trade_id":"T{k}","trade_seq":{seq},"order_id":"BTC-{id}","label":"{l}","instrument_name":"{INST}","direction":"buy","price":100.0,"amount":4.0,"timestamp":3,"state":"open"}}]}}}}"#,
            seq = k + 1
        )
        .unwrap();
        s.handle_text(now, &text, &mut sink);
        s.handle_order(now, OrderRequest::Cancel { tag: k });
        let n = s.poll_transmit(now, &mut buf).expect("cancel written");
        let rpc = rpc_id(&buf[..n]);
        text.clear();
        write!(
            text,
            r#"{{"jsonrpc":"2.0","id":{rpc},"result":{{"order_id":"BTC-{id}","order_state":"cancelled","label":"{l}","instrument_name":"{INST}","amount":10.0,"filled_amount":4.0}}}}"#
        )
        .unwrap();
        s.handle_text(now, &text, &mut sink);
        while let Some(e) = s.poll_order_event() {
            match e.kind {
                OrderEventKind::PartiallyFilled(_) => fills += 1,
                OrderEventKind::Cancelled => cancels += 1,
                OrderEventKind::Accepted => {}
                other => panic!("{other:?}"),
            }
        }
        while s.poll_event().is_some() {}
    };
    // Warm-up (first uses of each queue), then counted.
    for k in 0..16 {
        now += MS;
        run(&mut s, k, now);
    }
    alloc_support::start_counting();
    for k in 16..16 + rounds {
        now += 10 * MS;
        run(&mut s, k, now);
    }
    let allocations = alloc_support::stop_counting();
    (allocations, fills, cancels)
}

#[test]
fn steady_order_path_allocates_nothing() {
    let mut cfg = config();
    cfg.orders.rate.burst = 1_000_000;
    cfg.orders.rate.per_second = 1_000_000;
    let (allocations, fills, cancels) = cycle(cfg, 5_000);
    assert_eq!(allocations, 0);
    assert_eq!((fills, cancels), (5_016, 5_016));
}

#[test]
fn steady_order_path_with_a_journal_allocates_nothing() {
    let dir = std::env::temp_dir().join(format!("spinwire-orders-noalloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = config();
    cfg.orders.rate.burst = 1_000_000;
    cfg.orders.rate.per_second = 1_000_000;
    let mut j = JournalConfig::new(dir.join("orders.jrnl"));
    j.capacity = 1 << 17;
    j.flush = FlushPolicy::Never;
    cfg.orders.journal = Some(j);
    let (allocations, fills, _) = cycle(cfg, 5_000);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(allocations, 0);
    assert_eq!(fills, 5_016);
}
