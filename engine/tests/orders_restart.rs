//! Restart from the journal: the orders a stopped process left open become `Unknown` orders,
//! reconciled after the first authentication before any new order goes out; fills delivered
//! before the stop are not delivered again; new ids start above every journaled one.

mod orders_support;

use std::path::PathBuf;

use orders_support::*;
use serde_json::json;
use spinwire_engine::orders::journal::{FlushPolicy, JournalConfig};
use spinwire_engine::orders::{ClientOrderId, Fill, OrderEventKind, OrderRequest};
use spinwire_engine::session::{Session, SessionConfig, SessionError, SessionState};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "spinwire-orders-restart-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn journaled(dir: &TempDir) -> SessionConfig {
    let mut cfg = config();
    let mut j = JournalConfig::new(dir.0.join("orders.jrnl"));
    j.capacity = 4096;
    j.flush = FlushPolicy::Never;
    cfg.orders.journal = Some(j);
    cfg
}

#[test]
fn restart_reconciles_journaled_orders_before_any_new_order() {
    let dir = TempDir::new("reconcile");
    {
        let mut p = Pair::new(journaled(&dir));
        p.live();
        // BASE: sent, never answered. BASE+1: accepted, 3 of 10 filled. BASE+2: cancelled.
        p.order(buy(1, 10, 100));
        p.order(buy(2, 10, 100));
        let second = p
            .history
            .iter()
            .filter(|r| r["method"] == "private/buy")
            .nth(1)
            .unwrap()
            .clone();
        p.reply_to(
            &second,
            json!({"order": order_obj(BASE + 1, "open", 10, 3, 100),
                   "trades": [trade_obj(BASE + 1, 5, 3, 100, "open")]}),
        );
        p.order(buy(3, 10, 100));
        p.reply(
            "private/buy",
            json!({"order": order_obj(BASE + 2, "open", 10, 0, 100), "trades": []}),
        );
        p.order(OrderRequest::Cancel { tag: 3 });
        p.reply(
            "private/cancel",
            order_obj(BASE + 2, "cancelled", 10, 0, 100),
        );
        assert_eq!(
            p.kinds(BASE + 2).last().unwrap().0,
            OrderEventKind::Cancelled
        );
        // The process stops here.
    }
    let mut p = Pair::new(journaled(&dir));
    p.drain();
    let unknown: Vec<(u64, ClientOrderId)> = p
        .order_events
        .iter()
        .filter(|e| e.kind == OrderEventKind::Unknown)
        .map(|e| (e.tag, e.id))
        .collect();
    assert_eq!(
        unknown,
        vec![(1, ClientOrderId(BASE)), (2, ClientOrderId(BASE + 1))],
        "open orders come back unknown; the cancelled one does not"
    );
    // A new order waits for the reconciliation.
    p.order(buy(9, 1, 100));
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    assert_eq!(p.count("private/buy"), 0);
    let queries: Vec<_> = p
        .sent
        .iter()
        .filter(|r| r["method"] == "private/get_order_state_by_label")
        .cloned()
        .collect();
    assert_eq!(queries.len(), 2);
    assert_eq!(queries[0]["params"]["label"], label(BASE));
    p.reply_to(&queries[0], json!([]));
    p.reply_to(
        &queries[1],
        json!([order_obj(BASE + 1, "filled", 10, 10, 100)]),
    );
    p.reply(
        "private/get_user_trades_by_instrument",
        json!({"trades":[trade_obj(BASE + 1, 5, 3, 100, "open"), trade_obj(BASE + 1, 6, 7, 100, "filled")],
               "has_more": false}),
    );
    assert_eq!(p.s.state(), SessionState::Live);
    // Never received: resent with its label, ahead of the new order.
    let buys: Vec<String> = p
        .sent
        .iter()
        .filter(|r| r["method"] == "private/buy")
        .map(|r| r["params"]["label"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(buys.len(), 2);
    assert_eq!(buys[0], label(BASE));
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Resent, true)]);
    // The fill delivered before the stop is not delivered again.
    assert_eq!(
        p.kinds(BASE + 1),
        vec![(
            OrderEventKind::Filled(Fill {
                price: px(100),
                amount: px(7),
                filled_total: px(10),
                trade_seq: 6
            }),
            true
        )]
    );
    // The new order's id is above every journaled one.
    let new_id = ClientOrderId::parse_label(buys[1].as_bytes()).unwrap();
    assert!(new_id.0 > BASE + 2, "{new_id:?}");
}

#[test]
fn restart_refuses_a_journal_it_cannot_read() {
    let dir = TempDir::new("corrupt");
    std::fs::write(dir.0.join("orders.jrnl"), b"not a journal at all").unwrap();
    match Session::new(journaled(&dir)) {
        Err(SessionError::Journal(text)) => assert!(!text.is_empty()),
        other => panic!("{other:?}"),
    }
}

/// Run 1: order 1 is accepted and its event taken (`take_first`); order 2 fills completely
/// (accepted, filled, final) but the strategy never takes those events. The process stops
/// there.
fn fill_journaled_but_not_consumed(dir: &TempDir) {
    run_one(dir, true);
}

fn run_one(dir: &TempDir, take_first: bool) {
    let mut p = Pair::new(journaled(dir));
    p.consume = take_first;
    p.live();
    p.order(buy(1, 10, 100));
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 0, 100), "trades": []}),
    );
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Accepted, false)]);
    p.consume = false;
    p.order(buy(2, 10, 100));
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE + 1, "filled", 10, 10, 100),
               "trades": [trade_obj(BASE + 1, 7, 10, 100, "filled")]}),
    );
    assert_eq!(
        p.kinds(BASE + 1),
        vec![
            (OrderEventKind::Accepted, false),
            (OrderEventKind::Filled(filled_10()), false)
        ],
        "pushed, but not taken by the strategy"
    );
}

fn filled_10() -> Fill {
    Fill {
        price: px(100),
        amount: px(10),
        filled_total: px(10),
        trade_seq: 7,
    }
}

#[test]
fn restart_replays_a_journaled_fill_the_strategy_never_took_exactly_once() {
    let dir = TempDir::new("replay");
    fill_journaled_but_not_consumed(&dir);
    let mut p = Pair::new(journaled(&dir));
    p.drain();
    // The final order's events come back first, resolved, once each.
    assert_eq!(
        p.kinds(BASE + 1),
        vec![
            (OrderEventKind::Accepted, true),
            (OrderEventKind::Filled(filled_10()), true)
        ]
    );
    assert_eq!(p.order_events[0].id, ClientOrderId(BASE + 1));
    assert_eq!(p.order_events[1].id, ClientOrderId(BASE + 1));
    // The consumed acceptance of order 1 is not replayed: it is open, so reconciled as before.
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Unknown, false)]);
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    let queries: Vec<_> = p
        .sent
        .iter()
        .filter(|r| r["method"] == "private/get_order_state_by_label")
        .map(|r| r["params"]["label"].clone())
        .collect();
    assert_eq!(
        queries,
        vec![json!(label(BASE))],
        "the final order is not queried"
    );
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "open", 10, 0, 100)]),
    );
    assert_eq!(p.s.state(), SessionState::Live);
    assert!(
        p.kinds(BASE + 1).is_empty(),
        "delivered once: {:?}",
        p.order_events
    );
    drop(p);
    // Taken in run 2: a third run replays nothing of it.
    let mut p = Pair::new(journaled(&dir));
    p.drain();
    assert!(p.kinds(BASE + 1).is_empty(), "{:?}", p.order_events);
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Unknown, false)]);
}

#[test]
fn events_replayed_but_again_not_taken_are_replayed_after_the_next_restart_too() {
    let dir = TempDir::new("replay-twice");
    fill_journaled_but_not_consumed(&dir);
    // Run 2 dies before its strategy takes anything (compaction kept the final order).
    let mut p = Pair::new(journaled(&dir));
    p.consume = false;
    p.drain();
    assert_eq!(p.kinds(BASE + 1).len(), 2);
    drop(p);
    let mut p = Pair::new(journaled(&dir));
    p.drain();
    assert_eq!(
        p.kinds(BASE + 1),
        vec![
            (OrderEventKind::Accepted, true),
            (OrderEventKind::Filled(filled_10()), true)
        ]
    );
    drop(p);
    let mut p = Pair::new(journaled(&dir));
    p.drain();
    assert!(p.kinds(BASE + 1).is_empty(), "{:?}", p.order_events);
}

#[test]
fn a_journal_without_consumed_marks_from_an_earlier_build_replays_nothing() {
    use spinwire_engine::orders::journal::{scan, Header, Journal, JournalRecord, HEADER_SIZE};
    let dir = TempDir::new("legacy");
    run_one(&dir, false);
    let path = dir.0.join("orders.jrnl");
    let mut marks = 0;
    scan(&path, |e| {
        marks += usize::from(matches!(e.record, JournalRecord::Consumed { .. }));
    })
    .unwrap();
    assert_eq!(marks, 0, "nothing was taken");
    // This build's file: no mark means nothing was taken, so both orders' events replay.
    let r = Journal::inspect(&path).unwrap();
    assert!(r.tracks_consumption());
    assert_eq!(r.replay().len(), 3, "{:?}", r.replay());
    // An earlier build's file (no flags in its header): recovered as before, no replay.
    let mut bytes = std::fs::read(&path).unwrap();
    let mut hb = [0u8; HEADER_SIZE];
    hb.copy_from_slice(&bytes[..HEADER_SIZE]);
    let mut h = Header::decode(&hb).unwrap();
    assert_eq!(h.flags, Header::FLAG_CONSUMED);
    h.flags = 0;
    bytes[..HEADER_SIZE].copy_from_slice(&h.encode());
    std::fs::write(&path, &bytes).unwrap();
    let r = Journal::inspect(&path).unwrap();
    assert!(!r.tracks_consumption());
    assert!(r.replay().is_empty());
    let mut p = Pair::new(journaled(&dir));
    p.consume = false;
    p.drain();
    assert!(p.kinds(BASE + 1).is_empty(), "{:?}", p.order_events);
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Unknown, false)]);
    drop(p);
    // Compaction wrote the mark for it: still nothing replayed on the next start.
    let mut p = Pair::new(journaled(&dir));
    p.drain();
    assert!(p.kinds(BASE + 1).is_empty(), "{:?}", p.order_events);
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Unknown, false)]);
}
