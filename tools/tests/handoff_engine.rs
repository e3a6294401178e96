//! The strategy handoff API (`spinwire_engine::handoff`) against the in-process simulator:
//! back-pressure on a full MarketData ring, several sessions on one engine thread, clean
//! shutdown, and pinning errors.

use std::time::{Duration, Instant};

use spinwire_engine::handoff::{Engine, HandoffError};
use spinwire_engine::md::{BookFlags, Direction, Fixed, InstrumentId, MdRecord};
use spinwire_engine::orders::{NewOrder, OrderEvent, OrderEventKind, OrderRequest, OrdersConfig};
use spinwire_engine::reactor::PollMode;
use spinwire_engine::session::driver::DriverConfig;
use spinwire_engine::session::{
    BackoffConfig, Credentials, EventKind, SessionConfig, SessionEvent, SessionState,
};
use spinwire_engine::venue::deribit::{OrderType, TimeInForce};
use spinwire_tools::sim::{SimConfig, SimHandle, Simulator};

const ID: &str = "handoff-client";
const SECRET: &str = "handoff-secret-value";

fn sim(rate: u64) -> SimHandle {
    Simulator::start(SimConfig {
        credentials: vec![(ID.into(), SECRET.into())],
        rate,
        instruments: vec!["BTC-PERPETUAL".into(), "ETH-PERPETUAL".into()],
        min_heartbeat: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .expect("simulator starts")
}

fn session() -> SessionConfig {
    SessionConfig {
        credentials: Some(Credentials::new(ID, SECRET)),
        connect_timeout: Duration::from_secs(2),
        setup_timeout: Duration::from_secs(2),
        backoff: BackoffConfig {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            budget: 32,
            budget_window: Duration::from_secs(60),
            reset_after: Duration::from_secs(2),
        },
        ..SessionConfig::default()
    }
}

fn channels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn market_data_on_a_full_ring_is_dropped_counted_and_resynced_from_a_snapshot() {
    const RING: usize = 64;
    let sim = sim(4000);
    let mut engine = Engine::builder()
        .session(
            "deribit",
            DriverConfig::new(sim.url()),
            session(),
            &channels(&["book.BTC-PERPETUAL.raw", "book.ETH-PERPETUAL.raw"]),
        )
        .md_ring(RING)
        .poll_mode(PollMode::Blocking(Some(Duration::from_millis(1))))
        .spawn()
        .expect("engine starts");
    let ends = &mut engine.strategies[0];
    assert_eq!(ends.md.capacity(), RING);

    // A strategy that never pops market data (it still reads its session events).
    let mut events: Vec<SessionEvent> = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    let mut dropped_for = std::collections::HashSet::new();
    while Instant::now() < end && dropped_for.len() < 2 {
        while let Some(e) = ends.session_events.pop() {
            if let EventKind::RecordsDropped {
                instrument,
                records,
            } = e.kind
            {
                assert!(records > 0);
                dropped_for.insert(instrument);
            }
            events.push(e);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        dropped_for.len(),
        2,
        "both books should lose records on a full ring: {events:?}"
    );
    assert_eq!(ends.md.len(), RING, "the ring stays full while nobody pops");

    // Now the strategy keeps up: after the RING records queued before the drop, each
    // instrument's book starts again from a snapshot.
    let mut records: Vec<MdRecord> = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    let mut resynced = std::collections::HashSet::new();
    let book_after = |records: &[MdRecord], inst| {
        records
            .get(RING..)
            .unwrap_or(&[])
            .iter()
            .find_map(|r| match r {
                MdRecord::Book(b) if b.instrument == inst => Some(*b),
                _ => None,
            })
    };
    while Instant::now() < end
        && (resynced.len() < 2
            || dropped_for
                .iter()
                .any(|i| book_after(&records, *i).is_none()))
    {
        while let Some(r) = ends.md.pop() {
            records.push(r);
        }
        while let Some(e) = ends.session_events.pop() {
            if let EventKind::Resynced { instrument } = e.kind {
                resynced.insert(instrument);
            }
            events.push(e);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(resynced.len(), 2, "both books resync: {events:?}");
    let stats = engine.control.shutdown().expect("clean shutdown");
    let s = &stats.sessions[0];
    assert!(s.driver.records_dropped > 0);
    assert!(s.driver.records >= RING as u64);
    assert_eq!(s.state, SessionState::Disconnected);

    for inst in &dropped_for {
        let first_after = book_after(&records, *inst).expect("book rows after the drop");
        assert!(
            first_after.flags.contains(BookFlags::SNAPSHOT)
                && first_after.flags.contains(BookFlags::FIRST),
            "first row after a drop is not a snapshot start: {first_after:?}"
        );
    }
    sim.shutdown();
}

#[test]
fn several_sessions_share_one_engine_thread_and_all_log_out_on_shutdown() {
    let sim = sim(2000);
    let mut engine = Engine::builder()
        .session(
            "btc",
            DriverConfig::new(sim.url()),
            session(),
            &channels(&["book.BTC-PERPETUAL.raw"]),
        )
        .session(
            "eth",
            DriverConfig::new(sim.url()),
            session(),
            &channels(&["book.ETH-PERPETUAL.raw", "trades.ETH-PERPETUAL.raw"]),
        )
        .poll_mode(PollMode::SpinThenPark {
            spins: 100,
            park: Duration::from_millis(1),
        })
        .spawn()
        .expect("engine starts");
    assert_eq!(engine.strategies.len(), 2);
    assert_eq!(engine.strategies[0].name, "btc");
    let mut counts = [0u64; 2];
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && counts.iter().any(|&c| c < 50) {
        for (i, ends) in engine.strategies.iter_mut().enumerate() {
            while ends.md.pop().is_some() {
                counts[i] += 1;
            }
            while ends.session_events.pop().is_some() {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        counts.iter().all(|&c| c >= 50),
        "records per session: {counts:?}"
    );
    assert_eq!(sim.stats().live, 2, "one connection per session");

    let stats = engine.control.shutdown().expect("clean shutdown");
    let names: Vec<&str> = stats.sessions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["btc", "eth"]);
    for s in &stats.sessions {
        assert_eq!(s.state, SessionState::Disconnected, "{}", s.name);
        assert!(s.driver.records > 0, "{}", s.name);
        assert_eq!(s.session.connections, 1, "{}", s.name);
    }
    // Both connections were closed by the engine, not left to time out.
    let end = Instant::now() + Duration::from_secs(3);
    while sim.stats().live > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sim.stats().live, 0);
    sim.shutdown();
}

#[test]
fn a_core_outside_the_cpu_set_is_refused_with_the_available_cores() {
    let r = Engine::builder()
        .session(
            "x",
            DriverConfig::new("ws://127.0.0.1:9/ws/api/v2"),
            SessionConfig::default(),
            &[],
        )
        .core(Some(100_000))
        .spawn();
    match r {
        Err(e @ HandoffError::Pin(_)) => assert!(e.to_string().contains("100000"), "{e}"),
        other => panic!("expected a pin error, got {other:?}"),
    }
}

#[test]
fn the_engine_thread_pins_itself_to_the_core_given() {
    let cores = spinwire_engine::sys::allowed_cores().expect("affinity");
    let core = *cores.last().unwrap();
    let sim = sim(500);
    let engine = Engine::builder()
        .session(
            "pinned",
            DriverConfig::new(sim.url()),
            session(),
            &channels(&["book.BTC-PERPETUAL.raw"]),
        )
        .core(Some(core))
        .spawn()
        .expect("engine starts pinned");
    assert_eq!(engine.control.core(), Some(core));
    let stats = engine.control.shutdown().expect("clean shutdown");
    assert_eq!(stats.sessions.len(), 1);
    sim.shutdown();
}

#[test]
fn a_strategys_order_goes_out_on_its_ring_and_its_events_come_back() {
    let sim = sim(500);
    let mut cfg = session();
    cfg.orders = OrdersConfig {
        currency: "BTC".into(),
        instruments: vec!["BTC-PERPETUAL".into()],
        ..OrdersConfig::default()
    };
    let mut engine = Engine::builder()
        .session(
            "orders",
            DriverConfig::new(sim.url()),
            cfg,
            &channels(&["book.BTC-PERPETUAL.raw"]),
        )
        .order_ring(16)
        .spawn()
        .expect("engine starts");
    let ends = &mut engine.strategies[0];
    assert_eq!(ends.orders.capacity(), 16);
    // Wait for live, then rest a bid far below the market and cancel it.
    let end = Instant::now() + Duration::from_secs(10);
    let mut live = false;
    while !live && Instant::now() < end {
        while let Some(e) = ends.session_events.pop() {
            live |= matches!(e.kind, EventKind::Live { .. });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(live, "session not live");
    let order = NewOrder {
        tag: 7,
        instrument: InstrumentId(0),
        direction: Direction::Buy,
        order_type: OrderType::Limit,
        price: Some(Fixed::from_int(1_000).unwrap()),
        amount: Fixed::from_int(10).unwrap(),
        time_in_force: TimeInForce::GoodTilCancelled,
        post_only: true,
        reduce_only: false,
        ttl_ms: 0,
    };
    assert!(ends.orders.push(OrderRequest::New(order)).is_ok());
    let mut events: Vec<OrderEvent> = Vec::new();
    let wait_for = |events: &mut Vec<OrderEvent>,
                    ends: &mut spinwire_engine::handoff::StrategyEnds,
                    pred: &dyn Fn(&OrderEventKind) -> bool| {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            while let Some(e) = ends.order_events.pop() {
                events.push(e);
            }
            while ends.session_events.pop().is_some() {}
            while ends.md.pop().is_some() {}
            if events.iter().any(|e| e.tag == 7 && pred(&e.kind)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    };
    assert!(
        wait_for(&mut events, ends, &|k| matches!(
            k,
            OrderEventKind::Accepted
        )),
        "no accept: {events:?}"
    );
    assert!(ends.orders.push(OrderRequest::Cancel { tag: 7 }).is_ok());
    assert!(
        wait_for(&mut events, ends, &|k| matches!(
            k,
            OrderEventKind::Cancelled
        )),
        "no cancel: {events:?}"
    );
    let stats = engine.control.shutdown().expect("clean shutdown");
    let s = &stats.sessions[0];
    assert_eq!(s.orders.sent, 2, "the order and its cancel: {:?}", s.orders);
    assert_eq!(
        (s.orders.accepted, s.orders.cancelled),
        (1, 1),
        "{:?}",
        s.orders
    );
    assert!(s.driver.order_requests >= 2);
    sim.shutdown();
}

#[test]
fn with_latency_the_engine_records_its_stages_and_stamps_pushes_for_the_strategy() {
    use spinwire_engine::latency::{Collector, HistogramConfig, Stage};
    let sim = sim(2000);
    let mut collector = Collector::new(HistogramConfig::default()).unwrap();
    let mut engine = Engine::builder()
        .session(
            "timed",
            DriverConfig::new(sim.url()),
            session(),
            &channels(&["book.BTC-PERPETUAL.raw"]),
        )
        .spawn_with_latency(&mut collector)
        .expect("engine starts");
    let ends = &mut engine.strategies[0];
    let mut push_times = ends.push_times.take().expect("push stamps are on");
    let mut timed = 0;
    let end = Instant::now() + Duration::from_secs(10);
    while timed < 100 && Instant::now() < end {
        while ends.md.pop().is_some() {
            if let Some((pushed, popped)) = push_times.popped() {
                assert!(popped >= pushed, "popped before pushed on one clock");
                assert!(pushed <= ends.clock.now_ns());
                timed += 1;
            }
        }
        while ends.session_events.pop().is_some() {}
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(timed >= 100, "only {timed} records had push times");
    engine.control.shutdown().expect("clean shutdown");
    collector.poll(|_, _| {});
    assert!(
        collector.all_finished(),
        "the engine's last interval was handed over"
    );
    for stage in [
        Stage::SocketToFrame,
        Stage::FrameToRecord,
        Stage::RecordToRing,
    ] {
        assert!(
            !collector.totals().histogram(stage).is_empty(),
            "{stage} has no values"
        );
    }
    sim.shutdown();
}
