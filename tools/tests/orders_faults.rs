//! The order promise against the simulator's ledger, one test per fault of issue 6: an order
//! response withheld and the connection reset with the order executed, the same with it not
//! executed, a drop during a cancel, a drop during an edit, fills while disconnected, a
//! half-open connection during a burst of orders, token expiry in the middle of a burst, and
//! cancel-on-disconnect. Each test drives the engine's session driver (strategy side: tags,
//! OrderRequest ring, OrderEvent ring) and ends by comparing the engine's final view with the
//! ledger ([`spinwire_tools::sim::check`]): 0 lost, 0 duplicated, 0 fills missed or doubled.

#[path = "sim_util/orders.rs"]
mod orders_harness;

use std::time::Duration;

use orders_harness::*;
use spinwire_engine::md::Direction;
use spinwire_engine::orders::OrderEventKind;
use spinwire_engine::venue::deribit::CodScope;
use spinwire_tools::sim::check::Outcome;
use spinwire_tools::sim::faults::parse_rule;
use spinwire_tools::sim::{FaultKind, LedgerEntry, Target};

const T: Duration = Duration::from_secs(10);

fn inject(run: &OrderRun, kind: FaultKind) {
    assert_eq!(run.sim.inject(Target::All, kind), 1, "one live connection");
    // Taken over on the connection's next loop turn (within about a millisecond).
    std::thread::sleep(Duration::from_millis(20));
}

/// Waits for the session to come back after a drop.
fn wait_reconnected(run: &mut OrderRun) {
    assert!(
        run.wait(T, |r| r.drops() >= 1 && r.lives() >= 2),
        "no reconnect: {:?}",
        run.session_events
    );
}

#[test]
fn orders_cancels_and_edits_without_faults_agree_with_the_ledger() {
    let mut run = OrderRun::start(sim_config(), session_config());
    let resting: Vec<u64> = (0..6).map(|_| run.resting_buy()).collect();
    let crossing: Vec<u64> = (0..3).map(|_| run.crossing_buy()).collect();
    for &t in &resting {
        run.wait_open(t);
    }
    run.cancel(resting[0]);
    run.cancel(resting[1]);
    run.edit(resting[2], 20.0, -190);
    assert!(run.wait(T, |r| r.order(resting[0]).view.outcome
        == Outcome::Cancelled
        && r.order(resting[1]).view.outcome == Outcome::Cancelled
        && r.order(resting[2]).view.edited.is_some()));
    for &t in &crossing {
        assert!(
            run.wait(T, |r| r.order(t).view.outcome == Outcome::Filled),
            "crossing order {t}: {:?}",
            run.order(t).events
        );
    }
    let a = run.assert_agreement("no faults");
    assert_eq!(a.orders, 9);
    assert!(a.fills >= 3, "{a}");
    run.stop();
}

#[test]
fn order_executed_but_unanswered_before_a_reset_is_resolved_not_sent_again() {
    let mut run = OrderRun::start(sim_config(), session_config());
    let before = run.resting_buy();
    run.wait_open(before);
    inject(&run, FaultKind::Withhold { executed: true });
    let withheld = run.resting_buy();
    wait_reconnected(&mut run);
    let after = run.resting_buy();
    run.assert_agreement("withhold exec=1");
    let w = run.order(withheld);
    assert_eq!(w.view.outcome, Outcome::Open, "{:?}", w.events);
    assert!(
        w.events.iter().any(|e| e.kind == OrderEventKind::Unknown),
        "the drop made it Unknown first: {:?}",
        w.events
    );
    assert!(
        w.events.iter().any(|e| e.resolved),
        "its outcome came from reconciliation: {:?}",
        w.events
    );
    assert_eq!(run.ledger().accepted_count(&w.view.label), 1);
    assert_eq!(run.order(after).view.outcome, Outcome::Open);
    run.stop();
}

#[test]
fn order_never_received_before_a_reset_is_sent_again_once() {
    let mut run = OrderRun::start(sim_config(), session_config());
    let before = run.resting_buy();
    run.wait_open(before);
    inject(&run, FaultKind::Withhold { executed: false });
    let withheld = run.resting_buy();
    wait_reconnected(&mut run);
    run.assert_agreement("withhold exec=0");
    let w = run.order(withheld);
    assert_eq!(w.view.outcome, Outcome::Open, "{:?}", w.events);
    assert!(
        w.events.iter().any(|e| e.kind == OrderEventKind::Resent),
        "{:?}",
        w.events
    );
    let ledger = run.ledger();
    assert_eq!(ledger.accepted_count(&w.view.label), 1);
    assert!(ledger
        .entries
        .iter()
        .any(|e| matches!(e, LedgerEntry::OrderDropped { label, .. } if *label == w.view.label)));
    run.stop();
}

#[test]
fn order_never_received_whose_time_to_live_passed_is_expired_not_sent() {
    let mut run = OrderRun::start(sim_config(), session_config());
    // The next connection answers everything 100 ms late: the order's 30 ms time-to-live
    // has passed by the time reconciliation finds it never received.
    run.sim
        .schedule(parse_rule("delay(d=100ms,for=2s)@conn=2").unwrap());
    inject(&run, FaultKind::Withhold { executed: false });
    let withheld = run.limit(Direction::Buy, -200, 10.0, 30);
    wait_reconnected(&mut run);
    run.assert_agreement("withhold exec=0, ttl passed");
    let w = run.order(withheld);
    assert_eq!(w.view.outcome, Outcome::Expired, "{:?}", w.events);
    assert_eq!(run.ledger().accepted_count(&w.view.label), 0);
    run.stop();
}

fn drop_during_cancel(executed: bool) {
    let mut run = OrderRun::start(sim_config(), session_config());
    let tags: Vec<u64> = (0..3).map(|_| run.resting_buy()).collect();
    for &t in &tags {
        run.wait_open(t);
    }
    inject(&run, FaultKind::WithholdCancel { executed });
    run.cancel(tags[1]);
    wait_reconnected(&mut run);
    run.assert_agreement(&format!("withhold_cancel exec={}", executed as u8));
    let o = run.order(tags[1]).view.outcome;
    if executed {
        assert_eq!(o, Outcome::Cancelled, "{:?}", run.order(tags[1]).events);
    } else if o == Outcome::Open {
        // The engine reports the cancel did not happen: a new cancel must work.
        run.cancel(tags[1]);
        assert!(run.wait(T, |r| r.order(tags[1]).view.outcome == Outcome::Cancelled));
        run.assert_agreement("cancel again after withhold_cancel exec=0");
    }
    assert_eq!(run.order(tags[0]).view.outcome, Outcome::Open);
    assert_eq!(run.order(tags[2]).view.outcome, Outcome::Open);
    run.stop();
}

#[test]
fn cancel_executed_but_unanswered_before_a_reset_is_reported_cancelled() {
    drop_during_cancel(true);
}

#[test]
fn cancel_never_received_before_a_reset_leaves_an_order_the_engine_reports_truly() {
    drop_during_cancel(false);
}

fn drop_during_edit(executed: bool) {
    let mut run = OrderRun::start(sim_config(), session_config());
    let tag = run.resting_buy();
    run.wait_open(tag);
    inject(&run, FaultKind::WithholdEdit { executed });
    run.edit(tag, 30.0, -150);
    wait_reconnected(&mut run);
    // The checker compares the last edit the engine reports with the ledger's.
    run.assert_agreement(&format!("withhold_edit exec={}", executed as u8));
    let t = run.order(tag);
    assert_eq!(t.view.outcome, Outcome::Open, "{:?}", t.events);
    if executed {
        assert_eq!(t.view.edited, Some((30.0, Some(MID - 150.0 * TICK))));
    }
    run.stop();
}

#[test]
fn edit_executed_but_unanswered_before_a_reset_is_reported_edited() {
    drop_during_edit(true);
}

#[test]
fn edit_never_received_before_a_reset_is_reported_as_the_venue_has_it() {
    drop_during_edit(false);
}

#[test]
fn fills_while_disconnected_are_delivered_once_after_reconnect() {
    let mut s = session_config();
    s.orders.cancel_on_disconnect = Some(CodScope::Connection);
    let mut run = OrderRun::start(sim_config(), s);
    let tags: Vec<u64> = (0..4).map(|_| run.resting_buy()).collect();
    for &t in &tags {
        run.wait_open(t);
    }
    inject(&run, FaultKind::FillGap);
    inject(&run, FaultKind::Rst);
    wait_reconnected(&mut run);
    let a = run.assert_agreement("fillgap");
    assert_eq!(a.fills, 4, "{a}");
    for &t in &tags {
        let o = run.order(t);
        assert_eq!(o.view.outcome, Outcome::Filled, "{:?}", o.events);
        assert_eq!(o.view.fills.len(), 1, "{:?}", o.events);
    }
    let ledger = run.ledger();
    assert!(ledger.entries.iter().all(|e| !matches!(
        e,
        LedgerEntry::Fill {
            while_disconnected: false,
            ..
        }
    )));
    run.stop();
}

#[test]
fn half_open_connection_during_a_burst_of_orders_loses_and_doubles_nothing() {
    let mut run = OrderRun::start(sim_config(), session_config());
    // The 5th order request received makes the connection half-open: it is executed, the
    // rest of the burst sits unread, nothing is answered, the socket stays open.
    run.sim
        .schedule(parse_rule("halfopen@orders=5,conn=1").unwrap());
    for k in 0..12 {
        if k % 4 == 3 {
            run.crossing_buy();
        } else {
            run.resting_buy();
        }
    }
    wait_reconnected(&mut run);
    let a = run.assert_agreement("halfopen mid-burst");
    assert_eq!(a.orders, 12);
    run.stop();
}

#[test]
fn token_expiry_in_the_middle_of_a_burst_loses_and_doubles_nothing() {
    let mut run = OrderRun::start(sim_config(), session_config());
    run.sim
        .schedule(parse_rule("expire@orders=4,conn=1").unwrap());
    let burst: Vec<u64> = (0..10).map(|_| run.resting_buy()).collect();
    run.assert_agreement("expire mid-burst");
    // The session is still usable afterwards.
    let after = run.resting_buy();
    run.wait_open(after);
    run.assert_agreement("order after expiry");
    let rejected = burst
        .iter()
        .filter(|t| run.order(**t).view.outcome == Outcome::Rejected)
        .count();
    eprintln!("token expiry: {rejected} of 10 orders rejected by the venue");
    run.stop();
}

#[test]
fn cancel_on_disconnect_cancels_resting_orders_and_the_engine_reports_it() {
    let mut s = session_config();
    s.orders.cancel_on_disconnect = Some(CodScope::Connection);
    let mut run = OrderRun::start(sim_config(), s);
    let tags: Vec<u64> = (0..3).map(|_| run.resting_buy()).collect();
    for &t in &tags {
        run.wait_open(t);
    }
    inject(&run, FaultKind::Rst);
    wait_reconnected(&mut run);
    run.assert_agreement("cancel on disconnect");
    let ledger = run.ledger();
    for &t in &tags {
        let o = run.order(t);
        assert_eq!(o.view.outcome, Outcome::Cancelled, "{:?}", o.events);
        assert!(ledger.cancels_for(&o.view.label).iter().any(|e| matches!(e,
            LedgerEntry::OrderCancelled { reason, .. } if reason == "cancel_on_disconnect")));
    }
    run.stop();
}

#[test]
fn orders_a_stalled_venue_executes_after_the_engine_gave_up_are_not_doubled() {
    let mut run = OrderRun::start(sim_config(), session_config());
    // After the 3rd order request the venue reads and answers nothing for 1.5 s (the engine
    // declares the connection dead after about 0.6 s and reconnects), then executes what it
    // had received: orders the engine may already have found "never received" and resent.
    run.sim
        .schedule(parse_rule("stall(for=1500ms)@orders=3,conn=1").unwrap());
    for _ in 0..8 {
        run.resting_buy();
    }
    wait_reconnected(&mut run);
    // Let the stalled connection wake up and execute its backlog before the comparison.
    std::thread::sleep(Duration::from_millis(1500));
    let a = run.assert_agreement("stall mid-burst");
    assert_eq!(a.orders, 8);
    run.stop();
}
