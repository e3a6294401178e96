//! What the driver hands to threads beside the strategy, against the simulator: the engine-side
//! latency stages (with market data flowing, one order placed and one connection reset, every
//! engine-side stage gets values, and the last interval reaches the collector when the driver
//! stops), the push stamps that time ring → strategy, and the copy of every session event for the
//! logger thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spinwire_engine::latency::{Collector, HistogramConfig, Stage};
use spinwire_engine::md::Direction;
use spinwire_engine::orders::{NewOrder, OrderEventKind, OrderRequest};
use spinwire_engine::session::driver::{Driver, DriverConfig};
use spinwire_engine::session::EventKind;
use spinwire_engine::venue::deribit::{OrderType, TimeInForce};
use spinwire_tools::sim::{FaultKind, SimConfig, Simulator, Target};

#[path = "sim_util/orders.rs"]
mod orders_harness;

/// A simulator with market data (2000 events/s) and a driver config pointing at it.
fn sim_and_driver_config() -> (spinwire_tools::sim::SimHandle, DriverConfig) {
    let sim = Simulator::start(SimConfig {
        rate: 2000,
        ..orders_harness::sim_config()
    })
    .expect("simulator starts");
    let mut dc = DriverConfig::new(sim.url());
    dc.ca_file = sim.ca_file().cloned();
    (sim, dc)
}

#[test]
fn driver_records_every_engine_side_stage() {
    let (sim, dc) = sim_and_driver_config();
    let (mut driver, mut ends) =
        Driver::new(dc, orders_harness::session_config()).expect("driver builds");
    let mut collector = Collector::new(HistogramConfig::default()).unwrap();
    driver.set_recorder(collector.recorder(driver.now()).unwrap());
    let now = driver.now();
    driver
        .session_mut()
        .subscribe(now, "book.BTC-PERPETUAL.raw")
        .unwrap();
    let instrument = driver
        .session_mut()
        .instruments()
        .get(b"BTC-PERPETUAL")
        .expect("instrument known");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        driver.run(&flag).expect("driver runs");
    });

    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut lives, mut records, mut accepted, mut sent, mut reset) =
        (0, 0u64, false, false, false);
    while Instant::now() < deadline && !(lives >= 2 && accepted && records > 100) {
        while let Some(e) = ends.events.pop() {
            if matches!(e.kind, EventKind::Live { .. }) {
                lives += 1;
            }
        }
        while ends.md.pop().is_some() {
            records += 1;
        }
        while let Some(e) = ends.order_events.pop() {
            accepted |= matches!(e.kind, OrderEventKind::Accepted);
        }
        if lives >= 1 && !sent {
            ends.orders
                .push(OrderRequest::New(NewOrder {
                    tag: 1,
                    instrument,
                    direction: Direction::Buy,
                    order_type: OrderType::Limit,
                    price: Some(orders_harness::px(-200)),
                    amount: orders_harness::fixed(10.0),
                    time_in_force: TimeInForce::GoodTilCancelled,
                    post_only: false,
                    reduce_only: false,
                    ttl_ms: 0,
                }))
                .unwrap();
            sent = true;
        }
        if accepted && records > 100 && !reset {
            assert!(sim.inject(Target::All, FaultKind::Rst) >= 1);
            reset = true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert!(lives >= 2, "the session never came back after the reset");
    assert!(accepted, "the order was never accepted");

    collector.poll(|_, _| {});
    let totals = collector.totals();
    for stage in [
        Stage::SocketToFrame,
        Stage::FrameToRecord,
        Stage::RecordToRing,
        Stage::OrderToWire,
        Stage::OrderRoundTrip,
        Stage::ReconnectDowntime,
    ] {
        let h = totals.histogram(stage);
        assert!(!h.is_empty(), "{stage:?} has no values");
        assert!(h.max() < 10_000_000_000, "{stage:?}: max {} ns", h.max());
    }
    assert!(totals.histogram(Stage::FrameToRecord).len() <= records + 10);
    // The strategy-side stages are not the driver's to record.
    assert_eq!(totals.histogram(Stage::WireToStrategy).len(), 0);
}

#[test]
fn push_stamps_tell_the_strategy_when_each_record_was_pushed() {
    let (_sim, mut dc) = sim_and_driver_config();
    dc.push_stamps = true;
    let mut session = orders_harness::session_config();
    session.orders.instruments.clear();
    let (mut driver, mut ends) = Driver::new(dc, session).expect("driver builds");
    let now = driver.now();
    driver
        .session_mut()
        .subscribe(now, "book.BTC-PERPETUAL.raw")
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || driver.run(&flag).expect("driver runs"));
    let mut times = ends.push_times.take().expect("push stamps were asked for");
    let (mut popped, mut stamped) = (0u64, 0u64);
    let mut last_push = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while popped < 500 && Instant::now() < deadline {
        while let Some(_r) = ends.md.pop() {
            popped += 1;
            if let Some((pushed, now)) = times.popped() {
                stamped += 1;
                assert!(pushed <= now, "pushed at {pushed}, popped at {now}");
                assert!(pushed >= last_push, "push times go back");
                last_push = pushed;
            }
        }
        while ends.events.pop().is_some() {}
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert!(popped >= 500, "only {popped} records");
    assert_eq!(stamped, popped, "every record has its push time");
}

#[test]
fn every_session_event_also_reaches_the_logger_thread() {
    use spinwire_engine::logger::{EventLogger, LoggerConfig};
    let sim = Simulator::start(orders_harness::sim_config()).expect("simulator starts");
    let mut dc = DriverConfig::new(sim.url());
    dc.ca_file = sim.ca_file().cloned();
    dc.log_ring = 256;
    let mut session = orders_harness::session_config();
    session.orders.instruments.clear();
    let (mut driver, mut ends) = Driver::new(dc, session).expect("driver builds");
    let logger = EventLogger::spawn(
        LoggerConfig::new("e2e"),
        ends.log.take().expect("a log ring was asked for"),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        driver.run(&flag).expect("driver runs");
        driver.stats()
    });
    let mut seen = 0u64;
    let mut live = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !live && Instant::now() < deadline {
        while let Some(e) = ends.events.pop() {
            seen += 1;
            live |= matches!(e.kind, EventKind::Live { .. });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(live, "never live");
    stop.store(true, Ordering::Relaxed);
    let stats = thread.join().unwrap();
    while ends.events.pop().is_some() {
        seen += 1;
    }
    let logged = logger.stop();
    assert_eq!(stats.log_events_dropped, 0);
    assert_eq!(logged.events, seen, "the logger saw what the strategy saw");
    assert!(seen >= 5, "connect, auth, live, logout...: {seen}");
}
