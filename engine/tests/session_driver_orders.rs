//! The driver's order rings: requests are popped into the session each turn, and order events
//! are never dropped: past a full OrderEvent ring they wait in the overflow queue, in order,
//! and its high-water mark is reported.

use std::time::Duration;

use spinwire_engine::md::{Direction, Fixed, InstrumentId};
use spinwire_engine::orders::{LocalReason, NewOrder, OrderEventKind, OrderRequest};
use spinwire_engine::reactor::PollMode;
use spinwire_engine::session::driver::{Driver, DriverConfig};
use spinwire_engine::session::{Credentials, SessionConfig};
use spinwire_engine::venue::deribit::{OrderType, TimeInForce};

fn invalid(tag: u64) -> OrderRequest {
    OrderRequest::New(NewOrder {
        tag,
        instrument: InstrumentId(0),
        direction: Direction::Sell,
        order_type: OrderType::Limit,
        price: None,
        amount: Fixed::from_int(1).unwrap(),
        time_in_force: TimeInForce::GoodTilCancelled,
        post_only: false,
        reduce_only: false,
        ttl_ms: 0,
    })
}

#[test]
fn order_events_past_a_full_ring_wait_in_the_overflow_queue_in_order() {
    let mut dc = DriverConfig::new("ws://127.0.0.1:9");
    dc.mode = PollMode::Blocking(Some(Duration::ZERO));
    dc.order_event_ring = 8;
    dc.order_overflow = 16;
    dc.order_batch = 10;
    let sc = SessionConfig {
        credentials: Some(Credentials::new("c", "s")),
        orders: spinwire_engine::orders::OrdersConfig {
            instruments: vec!["BTC-PERPETUAL".into()],
            label_base: 1,
            ..Default::default()
        },
        ..SessionConfig::default()
    };
    let (mut d, mut ends) = Driver::new(dc, sc).unwrap();
    // 100 requests the session refuses at once (limit orders without a price): 100 events.
    for t in 0..100 {
        assert!(ends.orders.push(invalid(t)).is_ok());
    }
    for _ in 0..10 {
        d.turn().unwrap();
    }
    let s = d.stats();
    assert_eq!(s.order_requests, 100, "10 per turn");
    assert_eq!(s.order_events, 8, "the ring holds 8");
    assert_eq!(s.orders.overflow_high_water, 92);
    assert_eq!(s.orders.refused, 100);
    // The strategy catches up: every event arrives, in order, none lost.
    let mut tags = Vec::new();
    for _ in 0..100 {
        while let Some(e) = ends.order_events.pop() {
            assert_eq!(
                e.kind,
                OrderEventKind::Refused {
                    reason: LocalReason::Invalid
                }
            );
            tags.push(e.tag);
        }
        d.turn().unwrap();
    }
    assert_eq!(tags, (0..100).collect::<Vec<_>>());
    assert_eq!(d.stats().order_events, 100);
}
