//! The driver marks order events consumed in the journal once the strategy has popped them
//! (one `Consumed` record per turn, its count published through `OrderEventsMarked`), and a
//! session restarted on that journal replays exactly the events that were pushed but not
//! taken.

use std::path::PathBuf;
use std::time::Duration;

use spinwire_engine::md::{Direction, Fixed, InstrumentId};
use spinwire_engine::orders::journal::{scan, FlushPolicy, Journal, JournalConfig, JournalRecord};
use spinwire_engine::orders::{NewOrder, OrderEventKind, OrderRequest, OrdersConfig};
use spinwire_engine::reactor::PollMode;
use spinwire_engine::session::driver::{Driver, DriverConfig};
use spinwire_engine::session::{Credentials, Session, SessionConfig};
use spinwire_engine::venue::deribit::{OrderType, TimeInForce};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "spinwire-orders-driver-{name}-{}",
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

fn session_config(journal: &std::path::Path) -> SessionConfig {
    let mut j = JournalConfig::new(journal);
    j.capacity = 1024;
    j.flush = FlushPolicy::Never;
    SessionConfig {
        credentials: Some(Credentials::new("c", "s")),
        orders: OrdersConfig {
            instruments: vec!["BTC-PERPETUAL".into()],
            label_base: 1,
            journal: Some(j),
            ..Default::default()
        },
        ..SessionConfig::default()
    }
}

fn buy(tag: u64) -> OrderRequest {
    OrderRequest::New(NewOrder {
        tag,
        instrument: InstrumentId(0),
        direction: Direction::Buy,
        order_type: OrderType::Limit,
        price: Fixed::from_int(100),
        amount: Fixed::from_int(1).unwrap(),
        time_in_force: TimeInForce::GoodTilCancelled,
        post_only: false,
        reduce_only: false,
        ttl_ms: 0,
    })
}

fn marks(path: &std::path::Path) -> Vec<u64> {
    let mut v = Vec::new();
    scan(path, |e| {
        if let JournalRecord::Consumed { upto_seq } = e.record {
            v.push(upto_seq);
        }
    })
    .unwrap();
    v
}

#[test]
fn only_order_events_the_strategy_popped_are_marked_consumed_and_the_rest_replay() {
    let dir = TempDir::new("consumed");
    let path = dir.0.join("orders.jrnl");
    let mut dc = DriverConfig::new("ws://127.0.0.1:9");
    dc.mode = PollMode::Blocking(Some(Duration::ZERO));
    let (mut d, mut ends) = Driver::new(dc, session_config(&path)).unwrap();
    // Three orders queued (not Live: never sent), each cancelled in place: three `Cancelled`
    // events, each right after its own record.
    for t in 1..=3 {
        assert!(ends.orders.push(buy(t)).is_ok());
        assert!(ends.orders.push(OrderRequest::Cancel { tag: t }).is_ok());
    }
    for _ in 0..3 {
        d.turn().unwrap();
    }
    assert_eq!(d.stats().order_events, 3);
    assert_eq!(ends.order_events_marked.get(), 0);
    assert!(marks(&path).is_empty(), "nothing popped, nothing marked");

    // The strategy pops two; the next turn marks them (once), the turn after adds nothing.
    for t in 1..=2 {
        let e = ends.order_events.pop().unwrap();
        assert_eq!((e.tag, e.kind), (t, OrderEventKind::Cancelled));
    }
    d.turn().unwrap();
    d.turn().unwrap();
    assert_eq!(ends.order_events_marked.get(), 2);
    let m = marks(&path);
    assert_eq!(m.len(), 1, "{m:?}");
    let r = Journal::inspect(&path).unwrap();
    assert_eq!(r.consumed_upto(), Some(m[0]));
    let replay: Vec<(u64, OrderEventKind, bool)> = r
        .replay()
        .iter()
        .map(|e| (e.event.tag, e.event.kind, e.event.resolved))
        .collect();
    assert_eq!(replay, vec![(3, OrderEventKind::Cancelled, true)]);

    // The process stops with the third event on the ring: the next session replays it, alone.
    drop(ends);
    drop(d);
    let mut s = Session::new(session_config(&path)).unwrap();
    let mut got = Vec::new();
    while let Some(e) = s.poll_order_event() {
        got.push((e.tag, e.kind, e.resolved));
    }
    assert_eq!(got, vec![(3, OrderEventKind::Cancelled, true)]);
}
