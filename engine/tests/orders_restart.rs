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
