//! Deterministic sans-IO tests of the order path of the Deribit session: order flow, fills,
//! rate limits, disconnect → unknown → reconciliation, cancel-on-disconnect, restart from a
//! journal. Simulated time; the test plays the venue.

mod orders_support;

use orders_support::*;
use serde_json::json;
use spinwire_engine::md::InstrumentId;
use spinwire_engine::orders::{
    ClientOrderId, Fill, LocalReason, OrderEventKind, OrderRateLimit, OrderRequest,
};
use spinwire_engine::session::{EventKind, SessionState};
use spinwire_engine::venue::deribit::error_code;

fn fill(amount: i64, total: i64, seq: u64, price: i64) -> Fill {
    Fill {
        price: px(price),
        amount: px(amount),
        filled_total: px(total),
        trade_seq: seq,
    }
}

#[test]
fn order_path_subscribes_user_channels_and_arms_cancel_on_disconnect_before_live() {
    let mut p = Pair::new(config());
    p.connect_to_reconcile();
    let sub = p.last("private/subscribe");
    assert_eq!(
        sub["params"]["channels"],
        json!([
            format!("user.orders.{INST}.raw"),
            format!("user.trades.{INST}.raw")
        ])
    );
    assert_eq!(
        p.s.state(),
        SessionState::Subscribing,
        "waits for the COD answer"
    );
    assert_eq!(
        p.last("private/enable_cancel_on_disconnect")["params"]["scope"],
        "connection"
    );
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn cancel_on_disconnect_is_armed_on_every_connect() {
    let mut p = Pair::new(config());
    p.live();
    for _ in 0..3 {
        p.clear();
        p.drop_connection();
        p.live();
        assert_eq!(p.count("private/enable_cancel_on_disconnect"), 1);
    }
}

#[test]
fn new_order_is_labelled_sent_when_live_and_accepted() {
    let mut p = Pair::new(config());
    p.live();
    p.clear();
    p.order(buy(7, 10, 60_000));
    let req = p.last("private/buy");
    assert_eq!(req["params"]["label"], label(BASE));
    assert_eq!(req["params"]["amount"], 10.0);
    assert_eq!(req["params"]["price"], 60_000.0);
    assert_eq!(req["params"]["instrument_name"], INST);
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 0, 60_000), "trades": []}),
    );
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Accepted, false)]);
    assert_eq!(p.order_events[0].tag, 7);
    let st = p.s.order_stats();
    assert_eq!((st.sent, st.accepted), (1, 1));
}

#[test]
fn orders_before_live_wait_in_the_queue_and_go_after_reconciliation() {
    let mut p = Pair::new(config());
    p.order(buy(1, 10, 60_000));
    p.connect_to_reconcile();
    assert_eq!(p.count("private/buy"), 0, "not before reconciliation ends");
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    assert_eq!(p.count("private/buy"), 1);
}

#[test]
fn venue_rejection_is_reported_with_its_code_and_reason() {
    let mut p = Pair::new(config());
    p.live();
    p.order(buy(1, 10, 60_000));
    let id = p.last("private/buy")["id"].as_u64().unwrap();
    p.recv(
        &json!({"jsonrpc":"2.0","id":id,"error":{"code":11054,"message":"post_only_reject",
        "data":{"reason":"post only order would be filled"}}})
        .to_string(),
    );
    let k = p.kinds(BASE);
    assert_eq!(k.len(), 1);
    match k[0].0 {
        OrderEventKind::Rejected { code, reason } => {
            assert_eq!(code, 11054);
            assert_eq!(reason.as_str(), "post only order would be filled");
        }
        other => panic!("{other:?}"),
    }
    // The tag is free again.
    p.order(buy(1, 10, 60_000));
    assert_eq!(p.count("private/buy"), 2);
}

#[test]
fn local_refusals_name_their_reason_and_send_nothing() {
    let mut p = Pair::new(config());
    p.live();
    p.clear();
    p.order(buy(1, 0, 60_000));
    p.order(buy(2, 10, 60_000));
    p.order(buy(2, 10, 60_000));
    p.order(OrderRequest::Cancel { tag: 99 });
    let mut other = buy(3, 1, 1);
    if let OrderRequest::New(o) = &mut other {
        o.instrument = InstrumentId(7);
    }
    p.order(other);
    let refused: Vec<(u64, LocalReason)> = p
        .order_events
        .iter()
        .filter_map(|e| match e.kind {
            OrderEventKind::Refused { reason } => Some((e.tag, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        vec![
            (1, LocalReason::Invalid),
            (2, LocalReason::DuplicateTag),
            (99, LocalReason::UnknownTag),
            (3, LocalReason::UnknownInstrument)
        ]
    );
    assert_eq!(p.count("private/buy"), 1);
}

#[test]
fn table_full_refuses_with_too_many_orders() {
    let mut cfg = config();
    cfg.orders.max_orders = 2;
    let mut p = Pair::new(cfg);
    p.live();
    for t in 0..3 {
        p.order(buy(t, 1, 100));
    }
    assert_eq!(
        p.order_events.last().unwrap().kind,
        OrderEventKind::Refused {
            reason: LocalReason::TooManyOrders
        }
    );
}

#[test]
fn partial_fills_then_filled_with_running_totals() {
    let mut p = Pair::new(config());
    p.live();
    p.order(buy(1, 10, 100));
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 0, 100), "trades": []}),
    );
    p.notify_trades(json!([trade_obj(BASE, 5, 3, 100, "open")]));
    p.notify_trades(json!([trade_obj(BASE, 6, 7, 100, "filled")]));
    p.notify_order(order_obj(BASE, "filled", 10, 10, 100));
    assert_eq!(
        p.kinds(BASE),
        vec![
            (OrderEventKind::Accepted, false),
            (OrderEventKind::PartiallyFilled(fill(3, 3, 5, 100)), false),
            (OrderEventKind::Filled(fill(7, 10, 6, 100)), false),
        ]
    );
    let st = p.s.order_stats();
    assert_eq!((st.fills, st.partially_filled, st.filled), (2, 1, 1));
}

#[test]
fn fills_are_delivered_once_across_response_notifications_and_queries() {
    let mut p = Pair::new(config());
    p.live();
    p.order(buy(1, 10, 100));
    // The notification comes before the response that carries the same trade.
    p.notify_trades(json!([trade_obj(BASE, 5, 4, 100, "open")]));
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 4, 100),
               "trades": [trade_obj(BASE, 5, 4, 100, "open")]}),
    );
    p.notify_trades(json!([trade_obj(BASE, 5, 4, 100, "open")]));
    let fills: Vec<_> = p
        .kinds(BASE)
        .into_iter()
        .filter(|(k, _)| matches!(k, OrderEventKind::PartiallyFilled(_)))
        .collect();
    assert_eq!(fills.len(), 1);
    assert_eq!(p.s.order_stats().duplicate_fills, 2);
    // A fill that would take the total past the amount is a double, never delivered.
    p.notify_trades(json!([trade_obj(BASE, 9, 7, 100, "open")]));
    assert_eq!(p.s.order_stats().fills, 1);
}

#[test]
fn final_state_before_its_fills_waits_for_them_and_fetches_them() {
    let mut p = Pair::new(config());
    p.live();
    p.order(buy(1, 10, 100));
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 0, 100), "trades": []}),
    );
    p.clear();
    // The order notification says filled; the trades have not arrived.
    p.notify_order(order_obj(BASE, "filled", 10, 10, 100));
    assert!(p.kinds(BASE).is_empty());
    let q = p.last("private/get_user_trades_by_instrument");
    assert_eq!(q["params"]["instrument_name"], INST);
    p.reply_to(
        &q,
        json!({"trades":[trade_obj(BASE, 11, 10, 100, "filled")], "has_more": false}),
    );
    assert_eq!(
        p.kinds(BASE),
        vec![(OrderEventKind::Filled(fill(10, 10, 11, 100)), false)]
    );
    // The late notification is not delivered again.
    p.notify_trades(json!([trade_obj(BASE, 11, 10, 100, "filled")]));
    assert_eq!(p.s.order_stats().fills, 1);
}

#[test]
fn cancel_and_edit_of_a_live_order() {
    let mut p = Pair::new(config());
    p.live();
    p.order(buy(1, 10, 100));
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 0, 100), "trades": []}),
    );
    p.order(OrderRequest::Edit {
        tag: 1,
        amount: px(20),
        price: Some(px(99)),
    });
    let e = p.last("private/edit");
    assert_eq!(e["params"]["order_id"], format!("BTC-{BASE}"));
    assert_eq!(e["params"]["amount"], 20.0);
    p.reply(
        "private/edit",
        json!({"order": order_obj(BASE, "open", 20, 0, 99), "trades": []}),
    );
    p.order(OrderRequest::Cancel { tag: 1 });
    p.reply("private/cancel", order_obj(BASE, "cancelled", 20, 0, 99));
    assert_eq!(
        p.kinds(BASE),
        vec![
            (OrderEventKind::Accepted, false),
            (
                OrderEventKind::Edited {
                    amount: px(20),
                    price: Some(px(99))
                },
                false
            ),
            (OrderEventKind::Cancelled, false),
        ]
    );
}

#[test]
fn cancel_of_an_order_in_flight_waits_until_it_is_accepted() {
    let mut p = Pair::new(config());
    p.live();
    p.order(buy(1, 10, 100));
    p.order(OrderRequest::Cancel { tag: 1 });
    assert_eq!(p.count("private/cancel"), 0);
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 0, 100), "trades": []}),
    );
    assert_eq!(p.count("private/cancel"), 1);
}

#[test]
fn cancel_refused_by_the_venue_is_reported_and_the_order_stands() {
    let mut p = Pair::new(config());
    p.live();
    p.order(buy(1, 10, 100));
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 0, 100), "trades": []}),
    );
    p.order(OrderRequest::Cancel { tag: 1 });
    p.reply_err("private/cancel", -32602, "Invalid params");
    assert!(matches!(
        p.kinds(BASE).last().unwrap().0,
        OrderEventKind::ChangeRejected {
            cancel: true,
            code: -32602,
            ..
        }
    ));
    p.order(OrderRequest::Cancel { tag: 1 });
    assert_eq!(
        p.count("private/cancel"),
        2,
        "the tag still names the order"
    );
}

#[test]
fn too_many_requests_puts_the_order_back_and_sends_it_after_the_hold() {
    let mut p = Pair::new(config());
    p.live();
    p.order(buy(1, 10, 100));
    p.reply_err(
        "private/buy",
        error_code::TOO_MANY_REQUESTS,
        "too_many_requests",
    );
    assert!(p.kinds(BASE).is_empty(), "not reported as rejected");
    assert_eq!(p.count("private/buy"), 1);
    p.advance(400 * MS);
    assert_eq!(p.count("private/buy"), 1, "held for rate_limit_retry");
    p.advance(200 * MS);
    assert_eq!(p.count("private/buy"), 2);
    assert_eq!(p.last("private/buy")["params"]["label"], label(BASE));
    assert_eq!(p.s.order_stats().venue_rate_limited, 1);
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, EventKind::RateLimited { .. })));
}

#[test]
fn client_rate_limit_queues_over_the_burst_then_refuses_when_the_queue_is_full() {
    let mut cfg = config();
    cfg.orders.rate = OrderRateLimit {
        per_second: 10,
        burst: 2,
    };
    cfg.orders.queue = 3;
    let mut p = Pair::new(cfg);
    p.live();
    p.clear();
    for t in 0..6 {
        p.order(buy(t, 1, 100));
    }
    assert_eq!(p.count("private/buy"), 2, "the burst");
    let refused: Vec<u64> = p
        .order_events
        .iter()
        .filter(|e| {
            e.kind
                == OrderEventKind::Refused {
                    reason: LocalReason::RateLimited,
                }
        })
        .map(|e| e.tag)
        .collect();
    assert_eq!(refused, vec![5], "queue of 3 holds tags 2, 3, 4");
    // 10/s: one more every 100 ms, in order, woken by the session's timeout.
    p.advance(100 * MS);
    assert_eq!(p.count("private/buy"), 3);
    p.advance(200 * MS);
    assert_eq!(p.count("private/buy"), 5);
    let labels: Vec<String> = p
        .sent
        .iter()
        .filter(|r| r["method"] == "private/buy")
        .map(|r| r["params"]["label"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..5).map(|k| label(BASE + k)).collect();
    assert_eq!(labels, want);
}

#[test]
fn queued_order_past_its_time_to_live_expires_unsent() {
    let mut p = Pair::new(config());
    let mut o = buy(1, 1, 100);
    if let OrderRequest::New(n) = &mut o {
        n.ttl_ms = 200;
    }
    p.order(o);
    p.advance(300 * MS);
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Expired, false)]);
    p.live();
    assert_eq!(p.count("private/buy"), 0);
}

// ----- disconnect and reconciliation --------------------------------------------------------

/// A live pair with order BASE (tag 1, 10 @ 100) on the wire, unanswered.
fn in_flight() -> Pair {
    let mut p = Pair::new(config());
    p.live();
    p.order(buy(1, 10, 100));
    assert_eq!(p.count("private/buy"), 1);
    p
}

#[test]
fn drop_with_an_order_in_flight_reports_unknown_then_adopts_the_venue_state() {
    let mut p = in_flight();
    p.clear();
    p.drop_connection();
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Unknown, false)]);
    p.connect_to_reconcile();
    let q = p.last("private/get_order_state_by_label");
    assert_eq!(q["params"]["label"], label(BASE));
    assert_eq!(q["params"]["currency"], "BTC");
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    assert_eq!(
        p.s.state(),
        SessionState::Subscribing,
        "not live before the answer"
    );
    p.order(buy(2, 1, 100));
    assert_eq!(
        p.count("private/buy"),
        0,
        "no new order before reconciliation ends"
    );
    p.reply_to(&q, json!([order_obj(BASE, "open", 10, 0, 100)]));
    assert_eq!(p.s.state(), SessionState::Live);
    assert_eq!(
        p.kinds(BASE),
        vec![
            (OrderEventKind::Unknown, false),
            (OrderEventKind::Accepted, true)
        ]
    );
    assert_eq!(p.count("private/buy"), 1, "the queued order goes once live");
    assert_eq!(p.count("private/buy"), 1);
    assert_eq!(p.last("private/buy")["params"]["label"], label(BASE + 1));
}

#[test]
fn order_never_received_is_resent_with_the_same_label() {
    let mut p = in_flight();
    p.drop_connection();
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply("private/get_order_state_by_label", json!([]));
    assert_eq!(p.count("private/buy"), 1);
    assert_eq!(p.last("private/buy")["params"]["label"], label(BASE));
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Resent, true)]);
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 0, 100), "trades": []}),
    );
    assert_eq!(p.kinds(BASE)[1], (OrderEventKind::Accepted, false));
    assert_eq!(p.s.order_stats().resent, 1);
}

/// An order sent, its connection dropped, and half a second later, with a 2 s resend grace,
/// the venue's first answer after the reconnect: no order with its label.
fn not_found_half_a_second_after_the_send() -> Pair {
    let mut cfg = config();
    cfg.orders.resend_grace = std::time::Duration::from_secs(2);
    let mut p = Pair::new(cfg);
    p.live();
    p.order(buy(1, 10, 100));
    p.drop_connection();
    p.advance(S / 2);
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply("private/get_order_state_by_label", json!([]));
    p
}

#[test]
fn a_not_found_answer_inside_the_resend_grace_is_asked_again_not_believed() {
    // The venue may still execute what a dead connection delivered: "not found" half a second
    // after the send is asked again at send + grace; the session stays out of Live meanwhile.
    let mut p = not_found_half_a_second_after_the_send();
    assert_eq!(p.count("private/buy"), 0, "not resent inside the grace");
    assert_ne!(p.s.state(), SessionState::Live, "still reconciling");
    assert_eq!(p.count("private/get_order_state_by_label"), 1);
    p.advance(S);
    assert_eq!(
        p.count("private/get_order_state_by_label"),
        1,
        "not before the grace ends"
    );
    p.advance(S);
    assert_eq!(
        p.count("private/get_order_state_by_label"),
        2,
        "asked again"
    );
    // Meanwhile the venue did execute it: adopted, never sent twice.
    let q = p.last("private/get_order_state_by_label");
    p.reply_to(&q, json!([order_obj(BASE, "open", 10, 0, 100)]));
    assert_eq!(p.count("private/buy"), 0);
    assert_eq!(p.s.state(), SessionState::Live);
    assert_eq!(
        p.kinds(BASE),
        vec![(OrderEventKind::Accepted, true)],
        "{:?}",
        p.kinds(BASE)
    );
    assert_eq!(p.s.order_stats().resent, 0);
}

#[test]
fn a_not_found_answer_after_the_resend_grace_resends() {
    let mut p = not_found_half_a_second_after_the_send();
    p.advance(2 * S);
    p.reply("private/get_order_state_by_label", json!([]));
    assert_eq!(p.count("private/buy"), 1, "resent once the grace is over");
    assert_eq!(p.last("private/buy")["params"]["label"], label(BASE));
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Resent, true)]);
}

#[test]
fn order_never_received_past_its_time_to_live_expires() {
    let mut p = Pair::new(config());
    p.live();
    let mut o = buy(1, 10, 100);
    if let OrderRequest::New(n) = &mut o {
        n.ttl_ms = 1_000;
    }
    p.order(o);
    p.drop_connection();
    p.advance(2 * S);
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply("private/get_order_state_by_label", json!([]));
    assert_eq!(p.count("private/buy"), 0);
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Expired, true)]);
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn order_filled_while_disconnected_gets_its_fills_once() {
    let mut p = in_flight();
    p.drop_connection();
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "filled", 10, 10, 100)]),
    );
    assert_eq!(p.s.state(), SessionState::Subscribing, "fills first");
    // A notification of one of the fills races the query.
    p.notify_trades(json!([trade_obj(BASE, 21, 4, 100, "open")]));
    p.reply(
        "private/get_user_trades_by_instrument",
        json!({"trades":[trade_obj(BASE, 21, 4, 100, "open"), trade_obj(BASE, 22, 6, 100, "filled")],
               "has_more": false}),
    );
    assert_eq!(p.s.state(), SessionState::Live);
    assert_eq!(
        p.kinds(BASE),
        vec![
            (OrderEventKind::Accepted, true),
            (OrderEventKind::PartiallyFilled(fill(4, 4, 21, 100)), true),
            (OrderEventKind::Filled(fill(6, 10, 22, 100)), true),
        ]
    );
}

#[test]
fn order_rejected_while_unknown_is_reported_rejected() {
    let mut p = in_flight();
    p.drop_connection();
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "rejected", 10, 0, 100)]),
    );
    assert!(matches!(
        p.kinds(BASE)[..],
        [(OrderEventKind::Rejected { .. }, true)]
    ));
    assert_eq!(p.count("private/buy"), 0);
}

/// A live pair with order BASE (tag 1, 10 @ 100) accepted and resting.
fn resting() -> Pair {
    let mut p = in_flight();
    p.reply(
        "private/buy",
        json!({"order": order_obj(BASE, "open", 10, 0, 100), "trades": []}),
    );
    p
}

#[test]
fn resting_order_cancelled_by_cancel_on_disconnect_is_reported_cancelled() {
    let mut p = resting();
    p.drop_connection();
    p.clear();
    assert!(
        p.kinds(BASE).is_empty(),
        "its fate was not open: no Unknown"
    );
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "cancelled", 10, 0, 100)]),
    );
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Cancelled, true)]);
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn resting_order_filled_in_the_gap_gets_its_fill_then_cancel_of_the_rest() {
    let mut p = resting();
    p.drop_connection();
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "cancelled", 10, 3, 100)]),
    );
    p.reply(
        "private/get_user_trades_by_instrument",
        json!({"trades":[trade_obj(BASE, 30, 3, 100, "open")], "has_more": false}),
    );
    assert_eq!(
        p.kinds(BASE),
        vec![
            (OrderEventKind::PartiallyFilled(fill(3, 3, 30, 100)), true),
            (OrderEventKind::Cancelled, true)
        ]
    );
}

#[test]
fn drop_during_a_cancel_resolves_to_cancelled_or_sends_the_cancel_again() {
    // Cancel executed before the drop.
    let mut p = resting();
    p.order(OrderRequest::Cancel { tag: 1 });
    p.drop_connection();
    assert_eq!(p.kinds(BASE).last().unwrap().0, OrderEventKind::Unknown);
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "cancelled", 10, 0, 100)]),
    );
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Cancelled, true)]);
    assert_eq!(p.count("private/cancel"), 0);

    // Cancel never received: sent again once live.
    let mut p = resting();
    p.order(OrderRequest::Cancel { tag: 1 });
    p.drop_connection();
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "open", 10, 0, 100)]),
    );
    assert_eq!(p.s.state(), SessionState::Live);
    assert_eq!(p.count("private/cancel"), 1);
    p.reply("private/cancel", order_obj(BASE, "cancelled", 10, 0, 100));
    assert_eq!(
        p.kinds(BASE),
        vec![
            (OrderEventKind::Accepted, true),
            (OrderEventKind::Cancelled, false)
        ],
        "the unknown is resolved (the order stands), then the cancel answers"
    );
}

#[test]
fn drop_during_an_edit_resolves_to_edited_when_the_venue_applied_it() {
    let mut p = resting();
    p.order(OrderRequest::Edit {
        tag: 1,
        amount: px(15),
        price: Some(px(101)),
    });
    p.drop_connection();
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "open", 15, 0, 101)]),
    );
    assert_eq!(
        p.kinds(BASE),
        vec![(
            OrderEventKind::Edited {
                amount: px(15),
                price: Some(px(101))
            },
            true
        )]
    );
    assert_eq!(p.count("private/edit"), 0, "not sent twice");
}

#[test]
fn drop_during_an_edit_not_applied_sends_the_edit_again() {
    let mut p = resting();
    p.order(OrderRequest::Edit {
        tag: 1,
        amount: px(15),
        price: None,
    });
    p.drop_connection();
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "open", 10, 0, 100)]),
    );
    assert_eq!(p.count("private/edit"), 1);
    assert_eq!(p.last("private/edit")["params"]["amount"], 15.0);
}

#[test]
fn token_expiry_puts_the_order_back_and_reauthenticates() {
    let mut p = in_flight();
    p.clear();
    p.reply_err("private/buy", error_code::UNAUTHORIZED, "unauthorized");
    assert!(p.kinds(BASE).is_empty());
    assert_eq!(p.count("public/auth"), 1);
    assert_eq!(p.count("private/buy"), 0, "waits for the new token");
    p.reply(
        "public/auth",
        json!({"access_token":"A2","refresh_token":"R2","expires_in":900,
               "scope":"connection mainaccount"}),
    );
    assert_eq!(p.count("private/buy"), 1);
    assert_eq!(p.last("private/buy")["params"]["label"], label(BASE));
}

#[test]
fn malformed_private_notifications_never_panic_and_change_nothing() {
    let mut p = resting();
    p.clear();
    for bad in [
        json!({"order_id": 5}),
        json!([{"label": label(BASE)}]),
        json!("text"),
        json!([trade_obj(BASE, 1, -5, 100, "open")]),
    ] {
        p.notify_order(bad.clone());
        p.notify_trades(bad);
    }
    p.recv(&json!({"jsonrpc":"2.0","id": (1u64<<52) | 5, "result": {"x": 1}}).to_string());
    assert!(p.order_events.is_empty(), "{:?}", p.order_events);
    assert_eq!(p.s.state(), SessionState::Live);
}

#[test]
fn each_event_carries_the_strategy_tag_and_the_engine_id() {
    let p = resting();
    for e in &p.order_events {
        assert_eq!((e.tag, e.id), (1, ClientOrderId(BASE)));
    }
}

#[test]
fn fills_past_the_old_amount_after_an_edit_are_delivered_before_the_edit_answer() {
    let mut p = resting();
    p.order(OrderRequest::Edit {
        tag: 1,
        amount: px(20),
        price: None,
    });
    // The order notification (new amount) and a fill of 15 come before the edit's answer.
    p.notify_order(order_obj(BASE, "open", 20, 0, 100));
    p.notify_trades(json!([trade_obj(BASE, 40, 15, 100, "open")]));
    p.reply(
        "private/edit",
        json!({"order": order_obj(BASE, "open", 20, 15, 100), "trades": []}),
    );
    let k = p.kinds(BASE);
    assert_eq!(
        k[1..],
        [
            (
                OrderEventKind::Edited {
                    amount: px(20),
                    price: Some(px(100))
                },
                false
            ),
            (
                OrderEventKind::PartiallyFilled(fill(15, 15, 40, 100)),
                false
            ),
        ],
        "one Edited for one edit"
    );
}

#[test]
fn reconciliation_queries_answered_10028_or_13009_are_retried_not_given_up() {
    let mut p = in_flight();
    p.drop_connection();
    p.clear();
    p.connect_to_reconcile();
    p.reply("private/enable_cancel_on_disconnect", json!("ok"));
    for _ in 0..4 {
        p.reply_err(
            "private/get_order_state_by_label",
            error_code::TOO_MANY_REQUESTS,
            "too_many_requests",
        );
        p.advance(600 * MS);
    }
    p.reply_err(
        "private/get_order_state_by_label",
        error_code::UNAUTHORIZED,
        "unauthorized",
    );
    p.reply(
        "public/auth",
        json!({"access_token":"A2","refresh_token":"R2","expires_in":900,
               "scope":"connection mainaccount"}),
    );
    assert_eq!(p.count("private/get_order_state_by_label"), 6);
    p.reply(
        "private/get_order_state_by_label",
        json!([order_obj(BASE, "open", 10, 0, 100)]),
    );
    assert_eq!(p.s.state(), SessionState::Live);
    assert_eq!(p.kinds(BASE), vec![(OrderEventKind::Accepted, true)]);
}

#[test]
fn reconciliation_queries_keep_within_their_own_rate_limit() {
    let mut cfg = config();
    cfg.orders.query_rate = OrderRateLimit {
        per_second: 10,
        burst: 2,
    };
    let mut p = Pair::new(cfg);
    p.live();
    for t in 0..5 {
        p.order(buy(t, 1, 100));
        let r = p.last("private/buy");
        p.reply_to(
            &r,
            json!({"order": order_obj(BASE + t, "open", 1, 0, 100), "trades": []}),
        );
    }
    p.drop_connection();
    p.clear();
    p.connect_to_reconcile();
    assert_eq!(p.count("private/get_order_state_by_label"), 2, "the burst");
    p.advance(100 * MS);
    assert_eq!(p.count("private/get_order_state_by_label"), 3);
    p.advance(200 * MS);
    assert_eq!(p.count("private/get_order_state_by_label"), 5);
}
