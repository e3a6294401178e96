//! spinwire's Deribit codec against the simulator, in process: every request the session will
//! send is encoded by `venue::deribit::Request`, and every message the simulator sends is
//! decoded by `venue::deribit::decode` (tungstenite carries the frames; no engine transport).

mod sim_util;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sim_util::{Client, Stream, ID, SECRET};
use spinwire_engine::md::{BookFlags, Fixed, InstrumentId, InstrumentTable, MdRecord, TradeFlags};
use spinwire_engine::venue::deribit::{
    decode, AuthResult, Channel, CodScope, FromValue, HeartbeatKind, Incoming, Interval, Items,
    Order, OrderParams, OrderResponse, OrderState, OrderType, Request, Secret, TimeInForce,
    UserTradesPage, UserTradesQuery,
};
use spinwire_engine::venue::json::JsonStr;
use tungstenite::Message;

/// A client speaking through spinwire's codec.
struct Peer {
    client: Client,
    table: InstrumentTable,
    out: Vec<MdRecord>,
    next_id: u64,
    /// Texts received while waiting for a response, not yet checked.
    backlog: Vec<String>,
    /// Last change_id per book channel.
    books: HashMap<(InstrumentId, Interval), u64>,
    book_msgs: usize,
    book_rows: usize,
    snapshots: usize,
    trades: usize,
    test_requests: usize,
    order_updates: Vec<(String, OrderState)>,
    fills: usize,
}

impl Peer {
    fn new(client: Client) -> Peer {
        let mut table = InstrumentTable::with_capacity(8).unwrap();
        table.insert("BTC-PERPETUAL").unwrap();
        table.insert("ETH-PERPETUAL").unwrap();
        Peer {
            client,
            table,
            out: vec![MdRecord::default(); 4096],
            next_id: 1,
            backlog: Vec::new(),
            books: HashMap::new(),
            book_msgs: 0,
            book_rows: 0,
            snapshots: 0,
            trades: 0,
            test_requests: 0,
            order_updates: Vec::new(),
            fills: 0,
        }
    }

    fn send(&mut self, req: &Request<'_>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut buf = [0u8; 2048];
        let n = req.encode(id, &mut buf).expect("request encodes");
        let text = std::str::from_utf8(&buf[..n]).unwrap().to_owned();
        self.client.ws.send(Message::text(text)).expect("send");
        id
    }

    /// The next text message, or `None` on a read timeout.
    fn next_text(&mut self) -> Option<String> {
        loop {
            match self.client.ws.read() {
                Ok(Message::Text(t)) => return Some(t.to_string()),
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("connection failed: {e}"),
            }
        }
    }

    /// Sends `req` and returns the text of its response; other messages go to the backlog.
    fn call(&mut self, req: &Request<'_>) -> String {
        let id = self.send(req);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Some(text) = self.next_text() else {
                continue;
            };
            // Market data needs the output slice; anything that is not our response is kept
            // for `check`, except test_requests, which must be answered at once.
            match decode(&text, &self.table, &mut []) {
                Ok(Incoming::Response(r)) if r.id == Some(id) => return text,
                Ok(Incoming::Heartbeat(HeartbeatKind::TestRequest)) => {
                    self.test_requests += 1;
                    self.send(&Request::Test);
                }
                _ => self.backlog.push(text),
            }
        }
        panic!("no response to {}", req.method());
    }

    /// Decodes and checks one message from the simulator.
    fn check(&mut self, text: &str) {
        let incoming = decode(text, &self.table, &mut self.out)
            .unwrap_or_else(|e| panic!("simulator message does not decode ({e}): {text}"));
        match incoming {
            Incoming::Book(b) => {
                let key = (b.instrument, b.interval);
                if b.snapshot {
                    self.snapshots += 1;
                    assert_eq!(b.prev_change_id, 0);
                } else {
                    let last = self.books.get(&key).copied();
                    assert_eq!(
                        last,
                        Some(b.prev_change_id),
                        "a change follows a snapshot and links to the last change_id"
                    );
                }
                self.books.insert(key, b.change_id);
                assert!(
                    b.sw_send_ns > 1_600_000_000_000_000_000,
                    "sw_send_ns is decoded"
                );
                for (i, r) in self.out[..b.rows].iter().enumerate() {
                    let MdRecord::Book(r) = r else {
                        panic!("book rows only")
                    };
                    assert_eq!(
                        (r.change_id, r.prev_change_id),
                        (b.change_id, b.prev_change_id)
                    );
                    assert_eq!(r.sw_send_ns, b.sw_send_ns);
                    assert_eq!(r.instrument, b.instrument);
                    assert_eq!(r.flags.contains(BookFlags::FIRST), i == 0);
                    assert_eq!(r.flags.contains(BookFlags::LAST), i + 1 == b.rows);
                    assert_eq!(r.flags.contains(BookFlags::SNAPSHOT), b.snapshot);
                    assert!(r.price > Fixed::ZERO);
                    assert!(r.amount >= Fixed::ZERO);
                }
                self.book_msgs += 1;
                self.book_rows += b.rows;
            }
            Incoming::Trades(t) => {
                assert!(t.trades > 0);
                for r in &self.out[..t.trades] {
                    let MdRecord::Trade(tr) = r else {
                        panic!("trades only")
                    };
                    assert!(tr.price > Fixed::ZERO && tr.amount > Fixed::ZERO);
                    assert!(tr.sw_send_ns > 1_600_000_000_000_000_000);
                    assert!(
                        !tr.flags.contains(TradeFlags::ID_HASHED),
                        "simulator ids are numeric"
                    );
                    assert!((0..=3).contains(&tr.tick_direction));
                }
                self.trades += t.trades;
            }
            Incoming::Heartbeat(HeartbeatKind::TestRequest) => {
                self.test_requests += 1;
                self.send(&Request::Test);
            }
            Incoming::Heartbeat(HeartbeatKind::Heartbeat) => {}
            Incoming::UserOrders { orders, .. } => {
                for o in orders.iter() {
                    let o = o.expect("order update decodes");
                    self.order_updates
                        .push((o.label.to_owned_string(), o.order_state));
                }
            }
            Incoming::UserTrades { trades, .. } => {
                for t in trades.iter() {
                    t.expect("fill decodes");
                    self.fills += 1;
                }
            }
            // `public/test` answers and other late responses.
            Incoming::Response(r) => assert!(r.outcome.is_ok(), "{text}"),
            other => panic!("unexpected message {other:?}: {text}"),
        }
    }

    /// Checks the backlog, then reads and checks messages for `dur`.
    fn pump(&mut self, dur: Duration) {
        for text in std::mem::take(&mut self.backlog) {
            self.check(&text);
        }
        let deadline = Instant::now() + dur;
        while Instant::now() < deadline {
            if let Some(text) = self.next_text() {
                self.check(&text);
            }
        }
    }
}

fn result_of(text: &str) -> spinwire_engine::venue::json::Value<'_> {
    let table = InstrumentTable::with_capacity(1).unwrap();
    match decode(text, &table, &mut []) {
        Ok(Incoming::Response(r)) => r
            .outcome
            .unwrap_or_else(|e| panic!("error {} {}: {text}", e.code, e.message)),
        other => panic!("not a response: {other:?}"),
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn codec_speaks_the_simulators_protocol_end_to_end() {
    let sim = sim_util::start(spinwire_tools::sim::SimConfig {
        rate: 3000,
        ..sim_util::config()
    });
    let mut p = Peer::new(Client::connect(&sim));
    match p.client.ws.get_mut() {
        Stream::Plain(s) => s
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap(),
        Stream::Tls(_) => unreachable!("plain ws config"),
    }

    // Authenticate with a signature (the secret stays home), asking for a named session.
    let secret = Secret::new(SECRET);
    let text = p.call(&Request::AuthClientSignature {
        client_id: ID,
        client_secret: &secret,
        timestamp_ms: wall_ms(),
        nonce: "nonce-1",
        data: "",
        session: Some("codec"),
    });
    let auth = AuthResult::from_value(result_of(&text)).expect("auth result");
    assert!(auth.expires_in > 0);
    assert_eq!(auth.session_name(), Some("codec"));
    let refresh = auth.refresh_token.to_secret();

    // Refresh the token.
    let text = p.call(&Request::AuthRefreshToken {
        refresh_token: &refresh,
        session: None,
    });
    let again = AuthResult::from_value(result_of(&text)).expect("refreshed");
    assert_ne!(again.refresh_token.to_secret(), refresh);

    // Heartbeats every 50 ms (the test config lowers the minimum).
    let text = p.call(&Request::SetHeartbeat {
        interval: Duration::from_millis(50),
    });
    assert!(result_of(&text).str().unwrap().eq_str("ok"));
    let text = p.call(&Request::EnableCancelOnDisconnect {
        scope: CodScope::Connection,
    });
    assert!(result_of(&text).str().unwrap().eq_str("ok"));

    // Subscribe to books, trades and the private channels.
    let channels = [
        Channel::Book {
            instrument: "BTC-PERPETUAL",
            interval: Interval::Raw,
        },
        Channel::Book {
            instrument: "ETH-PERPETUAL",
            interval: Interval::Ms100,
        },
        Channel::Trades {
            instrument: "BTC-PERPETUAL",
            interval: Interval::Raw,
        },
        Channel::UserOrders {
            instrument: "BTC-PERPETUAL",
            interval: Interval::Raw,
        },
        Channel::UserTrades {
            instrument: "BTC-PERPETUAL",
            interval: Interval::Raw,
        },
    ];
    let text = p.call(&Request::Subscribe {
        channels: &channels,
    });
    let subscribed = Items::<JsonStr>::from_value(result_of(&text)).unwrap();
    let names: Vec<String> = subscribed
        .iter()
        .map(|c| c.unwrap().to_owned_string())
        .collect();
    for c in &channels {
        assert!(names.contains(&c.to_string()), "{c} in {names:?}");
    }

    p.pump(Duration::from_millis(700));
    assert!(p.snapshots >= 2, "a snapshot per book channel");
    assert!(
        p.book_msgs > 20 && p.book_rows > p.book_msgs,
        "book changes flow"
    );
    assert!(p.trades > 0, "trades flow");
    assert!(
        p.test_requests >= 3,
        "test_requests arrive and are answered"
    );

    // A resting order far below the market, then lookups by label, then cancel by label.
    let label = "sw-codec-\"1\"";
    let resting = OrderParams {
        instrument_name: "BTC-PERPETUAL",
        amount: Fixed::from_int(10).unwrap(),
        order_type: OrderType::Limit,
        price: Some("1000.5".parse().unwrap()),
        label,
        post_only: true,
        reject_post_only: false,
        reduce_only: false,
        time_in_force: TimeInForce::GoodTilCancelled,
    };
    let text = p.call(&Request::Buy(resting));
    let placed = OrderResponse::from_value(result_of(&text)).expect("order response");
    assert_eq!(placed.order.order_state, OrderState::Open);
    assert!(placed.order.label.eq_str(label));
    assert_eq!(placed.order.price, Some("1000.5".parse().unwrap()));
    assert_eq!(placed.order.amount, Fixed::from_int(10).unwrap());
    assert!(placed.trades.is_empty());
    let order_id = placed.order.order_id.to_owned_string();

    let text = p.call(&Request::GetOpenOrdersByLabel {
        currency: "BTC",
        label,
    });
    let open: Vec<_> = Items::<Order>::from_value(result_of(&text))
        .unwrap()
        .iter()
        .map(|o| o.unwrap().order_id.to_owned_string())
        .collect();
    assert_eq!(open, std::slice::from_ref(&order_id));
    let text = p.call(&Request::GetOrderStateByLabel {
        currency: "BTC",
        label,
    });
    assert_eq!(
        Items::<Order>::from_value(result_of(&text)).unwrap().len(),
        1
    );

    let text = p.call(&Request::CancelByLabel {
        label,
        currency: Some("BTC"),
    });
    assert_eq!(result_of(&text).u64(), Ok(1));

    // A market order that fills, then the fills by instrument.
    let market = OrderParams {
        order_type: OrderType::Market,
        price: None,
        post_only: false,
        label: "sw-codec-2",
        time_in_force: TimeInForce::ImmediateOrCancel,
        ..resting
    };
    let text = p.call(&Request::Buy(market));
    let filled = OrderResponse::from_value(result_of(&text)).expect("market order");
    assert_eq!(filled.order.order_state, OrderState::Filled);
    assert_eq!(
        filled.order.price, None,
        "market orders have no limit price"
    );
    assert!(filled.order.average_price.is_some());
    assert!(!filled.trades.is_empty());
    let text = p.call(&Request::GetUserTradesByInstrument(UserTradesQuery {
        instrument_name: "BTC-PERPETUAL",
        start_seq: None,
        end_seq: None,
        count: Some(10),
        sorting: None,
    }));
    let page = UserTradesPage::from_value(result_of(&text)).expect("trades page");
    assert!(page
        .trades
        .iter()
        .all(|t| t.is_ok_and(|t| t.label.is_some_and(|l| l.eq_str("sw-codec-2")))));

    // Errors come back as RpcError.
    let text = p.call(&Request::Cancel {
        order_id: "BTC-999999",
    });
    let table = InstrumentTable::with_capacity(1).unwrap();
    let Ok(Incoming::Response(r)) = decode(&text, &table, &mut []) else {
        panic!("{text}")
    };
    let e = r.outcome.unwrap_err();
    assert_eq!(e.code, 10004, "order_not_found");
    assert_eq!(e.message.raw(), "order_not_found");

    // The private channels reported the order's life.
    p.pump(Duration::from_millis(300));
    assert!(p
        .order_updates
        .iter()
        .any(|(l, s)| l == label && *s == OrderState::Cancelled));
    assert!(
        p.fills > 0,
        "user.trades delivered the market order's fills"
    );

    // Logout: no answer, the server closes.
    p.send(&Request::Logout {
        invalidate_token: true,
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut closed = false;
    while Instant::now() < deadline && !closed {
        match p.client.ws.read() {
            Ok(Message::Text(t)) => p.check(&t),
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => closed = true,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                closed = true
            }
            Err(tungstenite::Error::Io(_)) => {}
            Err(_) => closed = true,
        }
    }
    assert!(closed, "logout closes the connection");
    sim.shutdown();
}
