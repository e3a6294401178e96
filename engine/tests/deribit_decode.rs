//! The Deribit decoder against messages shaped as Deribit's documentation and feed show them,
//! and as the spinwire simulator (tools/src/sim) emits them.

use spinwire_engine::md::{
    BookAction, BookFlags, Direction, Fixed, InstrumentId, InstrumentTable, MdRecord, NumError,
    Side, TradeFlags,
};
use spinwire_engine::venue::deribit::{
    decode, error_code, AuthResult, DecodeError, FromValue, HeartbeatKind, Incoming, Interval,
    Items, Order, OrderResponse, OrderState, TimeInForce, UserTradesPage,
};
use spinwire_engine::venue::json::{JsonError, JsonStr};

fn table() -> InstrumentTable {
    let mut t = InstrumentTable::with_capacity(8).unwrap();
    t.insert("BTC-PERPETUAL").unwrap();
    t.insert("ETH-PERPETUAL").unwrap();
    t
}

fn px(s: &str) -> Fixed {
    s.parse().unwrap()
}

fn book_rows(out: &[MdRecord]) -> Vec<spinwire_engine::md::BookRow> {
    out.iter()
        .map(|r| match r {
            MdRecord::Book(b) => *b,
            other => panic!("not a book row: {other:?}"),
        })
        .collect()
}

/// A change notification as Deribit's feed sends it (fields in Deribit's order, `.0` amounts).
const DERIBIT_BOOK_CHANGE: &str = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{"type":"change","timestamp":1566347390042,"prev_change_id":14202051597,"instrument_name":"BTC-PERPETUAL","change_id":14202051674,"bids":[["change",10700.0,45690.0],["change",10734.5,34620.0],["delete",10746.5,0.0]],"asks":[["change",10756.5,156690.0],["new",10780.0,3580.0]]}}}"#;

#[test]
fn deribit_book_change_decodes_into_rows_with_the_message_header() {
    let mut out = [MdRecord::default(); 16];
    let Incoming::Book(b) = decode(DERIBIT_BOOK_CHANGE, &table(), &mut out).unwrap() else {
        panic!("not a book update");
    };
    assert_eq!(b.instrument, InstrumentId(0));
    assert_eq!(b.interval, Interval::Ms100);
    assert!(!b.snapshot);
    assert_eq!(b.change_id, 14202051674);
    assert_eq!(b.prev_change_id, 14202051597);
    assert_eq!(b.timestamp_ms, 1566347390042);
    assert_eq!(b.sw_send_ns, 0, "absent sw_send_ns reads as 0");
    assert_eq!(b.rows, 5);
    let rows = book_rows(&out[..5]);
    let expect = [
        (Side::Bid, BookAction::Change, "10700", "45690"),
        (Side::Bid, BookAction::Change, "10734.5", "34620"),
        (Side::Bid, BookAction::Delete, "10746.5", "0"),
        (Side::Ask, BookAction::Change, "10756.5", "156690"),
        (Side::Ask, BookAction::New, "10780", "3580"),
    ];
    for (i, (r, (side, action, price, amount))) in rows.iter().zip(expect).enumerate() {
        assert_eq!((r.side, r.action), (side, action), "row {i}");
        assert_eq!(r.price, px(price), "row {i}");
        assert_eq!(r.amount, px(amount), "row {i}");
        assert_eq!(r.change_id, 14202051674);
        assert_eq!(r.prev_change_id, 14202051597);
        assert_eq!(r.timestamp_ms, 1566347390042);
        assert_eq!(r.instrument, InstrumentId(0));
        assert!(!r.flags.contains(BookFlags::SNAPSHOT));
        assert_eq!(r.flags.contains(BookFlags::FIRST), i == 0);
        assert_eq!(r.flags.contains(BookFlags::LAST), i == 4);
    }
}

/// What tools/src/sim/conn.rs `encode_book_change` writes: `sw_send_ns` after the rows.
const SIM_BOOK_CHANGE: &str = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.ETH-PERPETUAL.raw","data":{"type":"change","timestamp":1700000000000,"prev_change_id":10,"instrument_name":"ETH-PERPETUAL","change_id":11,"bids":[["change",3000.05,120.0]],"asks":[["delete",3000.1,0.0]],"sw_send_ns":1700000000000123456}}}"#;

#[test]
fn simulator_book_change_carries_sw_send_ns_into_every_row() {
    let mut out = [MdRecord::default(); 4];
    let Incoming::Book(b) = decode(SIM_BOOK_CHANGE, &table(), &mut out).unwrap() else {
        panic!()
    };
    assert_eq!(
        (b.instrument, b.interval, b.rows),
        (InstrumentId(1), Interval::Raw, 2)
    );
    assert_eq!(b.sw_send_ns, 1700000000000123456);
    for r in book_rows(&out[..2]) {
        assert_eq!(r.sw_send_ns, 1700000000000123456);
        assert_eq!((r.change_id, r.prev_change_id), (11, 10));
    }
    let rows = book_rows(&out[..2]);
    assert_eq!(rows[0].price, Fixed::from_raw(300_005_000_000));
    assert_eq!(rows[1].action, BookAction::Delete);
}

#[test]
fn snapshot_rows_are_flagged_and_have_no_prev_change_id() {
    // What the simulator's encode_snapshot writes.
    let msg = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","data":{"type":"snapshot","timestamp":1700000000000,"instrument_name":"BTC-PERPETUAL","change_id":1000000042,"bids":[["new",59999.5,100.0],["new",59999.0,20.0]],"asks":[["new",60000.5,30.0]],"sw_send_ns":7}}}"#;
    let mut out = [MdRecord::default(); 4];
    let Incoming::Book(b) = decode(msg, &table(), &mut out).unwrap() else {
        panic!()
    };
    assert!(b.snapshot);
    assert_eq!((b.change_id, b.prev_change_id, b.rows), (1000000042, 0, 3));
    let rows = book_rows(&out[..3]);
    assert!(rows.iter().all(|r| r.flags.contains(BookFlags::SNAPSHOT)));
    assert!(rows[0].flags.contains(BookFlags::FIRST) && rows[2].flags.contains(BookFlags::LAST));
    assert_eq!(rows[2].side, Side::Ask);
}

#[test]
fn a_change_without_rows_still_reports_its_change_ids() {
    let msg = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","data":{"type":"change","timestamp":1,"prev_change_id":5,"change_id":6,"bids":[],"asks":[]}}}"#;
    let mut out = [MdRecord::default(); 1];
    let Incoming::Book(b) = decode(msg, &table(), &mut out).unwrap() else {
        panic!()
    };
    assert_eq!((b.rows, b.prev_change_id, b.change_id), (0, 5, 6));
}

#[test]
fn member_order_and_unknown_fields_do_not_matter() {
    // data before channel, params before method, new fields everywhere, a 4th row element.
    let msg = r#" {"params":{"extra":{"a":[1,{"b":null}]},"data":{"bids":[["new",1.5,2,"future"]],"asks":[],"change_id":9,"novel":true,"timestamp":3,"prev_change_id":8,"type":"change"},"channel":"book.BTC-PERPETUAL.agg2"},"usIn":1,"method":"subscription","jsonrpc":"2.0","testnet":false} "#;
    let mut out = [MdRecord::default(); 2];
    let Incoming::Book(b) = decode(msg, &table(), &mut out).unwrap() else {
        panic!()
    };
    assert_eq!((b.interval, b.rows, b.change_id), (Interval::Agg2, 1, 9));
    let r = book_rows(&out[..1])[0];
    assert_eq!((r.price, r.amount), (px("1.5"), px("2")));
}

/// Public trades as the simulator's encode_trades writes them: string trade ids, sw_send_ns in
/// each trade.
const SIM_TRADES: &str = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.ETH-PERPETUAL.raw","data":[{"trade_seq":3,"trade_id":"99","timestamp":5,"tick_direction":2,"price":3000.05,"mark_price":3000.0,"instrument_name":"ETH-PERPETUAL","index_price":3000.0,"direction":"sell","amount":7.0,"sw_send_ns":1700000000000000001},{"trade_seq":4,"trade_id":"100","timestamp":6,"tick_direction":0,"price":3000.1,"mark_price":3000.0,"instrument_name":"ETH-PERPETUAL","index_price":3000.0,"direction":"buy","amount":1.0,"sw_send_ns":1700000000000000001}]}}"#;

#[test]
fn simulator_trades_decode_into_trade_records() {
    let mut out = [MdRecord::default(); 4];
    let Incoming::Trades(t) = decode(SIM_TRADES, &table(), &mut out).unwrap() else {
        panic!()
    };
    assert_eq!(
        (t.instrument, t.interval, t.trades),
        (InstrumentId(1), Interval::Raw, 2)
    );
    let MdRecord::Trade(a) = out[0] else { panic!() };
    let MdRecord::Trade(b) = out[1] else { panic!() };
    assert_eq!((a.trade_seq, a.trade_id, a.timestamp_ms), (3, 99, 5));
    assert_eq!((a.price, a.amount), (px("3000.05"), px("7")));
    assert_eq!((a.direction, a.tick_direction), (Direction::Sell, 2));
    assert_eq!(a.sw_send_ns, 1700000000000000001);
    assert!(a.flags.contains(TradeFlags::FIRST) && !a.flags.contains(TradeFlags::LAST));
    assert!(b.flags.contains(TradeFlags::LAST) && !b.flags.contains(TradeFlags::FIRST));
    assert!(!a.flags.contains(TradeFlags::ID_HASHED));
    assert_eq!((b.trade_id, b.direction), (100, Direction::Buy));
}

#[test]
fn deribit_trade_fields_decode_and_odd_ids_are_hashed() {
    // Shaped as Deribit's trades.{instrument}.{interval} docs: integer prices, iv, liquidation.
    let msg = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.100ms","data":[{"trade_seq":30289432,"trade_id":"48079254","timestamp":1590484156350,"tick_direction":0,"price":8954,"mark_price":8952.86,"instrument_name":"BTC-PERPETUAL","index_price":8956.73,"direction":"sell","amount":20,"liquidation":"M","block_trade_id":null},{"trade_seq":30289433,"trade_id":"ETH-1234","timestamp":1590484156350,"price":8954,"direction":"buy","amount":20,"block_trade_id":"154"}]}}"#;
    let mut out = [MdRecord::default(); 4];
    let Incoming::Trades(t) = decode(msg, &table(), &mut out).unwrap() else {
        panic!()
    };
    assert_eq!(t.trades, 2);
    let MdRecord::Trade(a) = out[0] else { panic!() };
    let MdRecord::Trade(b) = out[1] else { panic!() };
    assert_eq!(
        (a.trade_id, a.price, a.amount),
        (48079254, px("8954"), px("20"))
    );
    assert!(a.flags.contains(TradeFlags::LIQUIDATION));
    assert!(!a.flags.contains(TradeFlags::BLOCK_TRADE));
    assert!(b.flags.contains(TradeFlags::ID_HASHED) && b.flags.contains(TradeFlags::BLOCK_TRADE));
    assert_eq!(b.tick_direction, -1, "absent tick_direction");
    // The hash is stable.
    let mut again = [MdRecord::default(); 4];
    decode(msg, &table(), &mut again).unwrap();
    assert_eq!(out[1], again[1]);
}

#[test]
fn heartbeats_are_classified() {
    let mut out = [MdRecord::default(); 1];
    let t = table();
    let tr = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#;
    let hb = r#"{"params":{"type":"heartbeat"},"method":"heartbeat","jsonrpc":"2.0"}"#;
    assert!(matches!(
        decode(tr, &t, &mut out),
        Ok(Incoming::Heartbeat(HeartbeatKind::TestRequest))
    ));
    assert!(matches!(
        decode(hb, &t, &mut out),
        Ok(Incoming::Heartbeat(HeartbeatKind::Heartbeat))
    ));
    let odd = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"nap"}}"#;
    assert_eq!(
        decode(odd, &t, &mut out).unwrap_err(),
        DecodeError::BadValue { field: "type" }
    );
}

#[test]
fn auth_response_from_the_docs_gives_tokens_that_debug_hides() {
    let msg = r#"{"jsonrpc":"2.0","id":9929,"result":{"access_token":"1582628593469.1MbQ-J_4.CBP-OqOwm_FBdMYj4cRK2dMXyHPfBtXGpzLxhWg31nHu3H_Q60FpE5_vqUBEQGSiMrIGzw3nC37NMb9d1tpBNqBOM_Ql9pXOmgtV9Yj3Pq1c6BqC6dU6eTxHMFO67x8GpJxqw_QcKP5IepwGBD-gfKSHfAv9AEnLJkNu3JkMJBdLToY1lrBnuedF3dU_uARm","expires_in":31536000,"refresh_token":"1582628593469.1GP4rQd0.A9Wa78o5kFRIUP49mScaD1CqHgiK50HOl2VA6kCtWa8BQZU5Dr03BhcbXPNvEh3I_MVixKZXnyoBeKJwLl8LXnfo180ckAiPj3zOclcUu4zkXuF3NNP3sTPcDf1B3C1CwMKkJ1NOcf1yPmRbsrd7hbgQ-hLa40tfx6Oa-85ymm_3Z65LZcnCeLrqlj_A9jM","scope":"connection mainaccount","enabled_features":[],"token_type":"bearer"},"usIn":1582628593469000,"usOut":1582628593470000,"usDiff":1000,"testnet":true}"#;
    let mut out = [MdRecord::default(); 1];
    let incoming = decode(msg, &table(), &mut out).unwrap();
    let Incoming::Response(r) = incoming else {
        panic!()
    };
    assert_eq!(r.id, Some(9929));
    let auth = AuthResult::from_value(r.outcome.unwrap()).unwrap();
    assert!(auth
        .access_token
        .expose()
        .raw()
        .starts_with("1582628593469.1MbQ"));
    assert!(auth.refresh_token.expose().raw().ends_with("_A9jM"));
    assert_eq!(auth.expires_in, 31536000);
    assert!(auth.scope.eq_str("connection mainaccount"));
    assert_eq!(auth.session_name(), None);
    assert_eq!(auth.token_type.map(|t| t.raw()), Some("bearer"));
    assert_eq!(
        auth.refresh_token.to_secret().expose(),
        auth.refresh_token.expose().raw()
    );
    for dbg in [
        format!("{auth:?}"),
        format!("{incoming:?}"),
        format!("{:?}", auth.refresh_token.to_secret()),
    ] {
        assert!(
            !dbg.contains("1582628593469."),
            "token leaked into Debug: {dbg}"
        );
    }
}

#[test]
fn session_scope_is_recognised() {
    let msg = r#"{"jsonrpc":"2.0","id":1,"result":{"access_token":"a","expires_in":900,"refresh_token":"r","scope":"session:spinwire mainaccount","token_type":"bearer","enabled_features":[]}}"#;
    let mut out = [MdRecord::default(); 1];
    let Incoming::Response(r) = decode(msg, &table(), &mut out).unwrap() else {
        panic!()
    };
    let auth = AuthResult::from_value(r.outcome.unwrap()).unwrap();
    assert_eq!(auth.session_name(), Some("spinwire"));
}

#[test]
fn error_responses_give_code_message_and_reason() {
    // The simulator's envelope (tools/src/sim/rpc.rs).
    let msg = r#"{"jsonrpc":"2.0","id":7,"error":{"message":"Invalid params","code":-32602,"data":{"param":"amount","reason":"must be positive"}},"usIn":10,"usOut":15,"usDiff":5,"testnet":true}"#;
    let mut out = [MdRecord::default(); 1];
    let Incoming::Response(r) = decode(msg, &table(), &mut out).unwrap() else {
        panic!()
    };
    assert_eq!(r.id, Some(7));
    let e = r.outcome.unwrap_err();
    assert_eq!(e.code, error_code::INVALID_PARAMS);
    assert_eq!(e.message.raw(), "Invalid params");
    assert_eq!(e.reason().map(|s| s.raw()), Some("must be positive"));
    assert!(!e.is_retryable());

    let throttled =
        r#"{"jsonrpc":"2.0","id":8,"error":{"message":"too_many_requests","code":10028}}"#;
    let Incoming::Response(r) = decode(throttled, &table(), &mut out).unwrap() else {
        panic!()
    };
    assert!(r.outcome.unwrap_err().is_retryable());

    let parse_error =
        r#"{"jsonrpc":"2.0","id":null,"error":{"message":"Parse error","code":-32700}}"#;
    let Incoming::Response(r) = decode(parse_error, &table(), &mut out).unwrap() else {
        panic!()
    };
    assert_eq!(r.id, None);
}

#[test]
fn order_responses_give_order_fields_and_trades() {
    // Fields as the simulator's order_json / fill json write them.
    let msg = r#"{"jsonrpc":"2.0","id":42,"result":{"order":{"order_id":"BTC-12","order_state":"open","order_type":"limit","instrument_name":"BTC-PERPETUAL","direction":"buy","price":60000.5,"amount":110.0,"filled_amount":10.0,"average_price":60000.5,"label":"sw-1-\"q\"","post_only":false,"reduce_only":false,"time_in_force":"good_til_cancelled","creation_timestamp":1700000000000,"last_update_timestamp":1700000000001,"max_show":110.0,"api":true,"web":false,"is_liquidation":false,"replaced":false,"commission":0.0,"risk_reducing":false,"mmp":false},"trades":[{"trade_id":"100000001","trade_seq":1,"timestamp":1700000000001,"tick_direction":1,"state":"open","reduce_only":false,"price":60000.5,"post_only":false,"order_type":"limit","order_id":"BTC-12","matching_id":null,"mark_price":60000.0,"liquidity":"T","label":"sw-1-\"q\"","instrument_name":"BTC-PERPETUAL","index_price":60000.0,"fee_currency":"BTC","fee":0.0,"direction":"buy","amount":10.0,"api":true}]},"usIn":1,"usOut":2,"usDiff":1,"testnet":true}"#;
    let mut out = [MdRecord::default(); 1];
    let Incoming::Response(r) = decode(msg, &table(), &mut out).unwrap() else {
        panic!()
    };
    let resp = OrderResponse::from_value(r.outcome.unwrap()).unwrap();
    let o = resp.order;
    assert_eq!(o.order_id.raw(), "BTC-12");
    assert_eq!(o.order_state, OrderState::Open);
    assert!(o.label.eq_str("sw-1-\"q\""));
    assert_eq!(o.direction, Some(Direction::Buy));
    assert_eq!(o.price, Some(px("60000.5")));
    assert_eq!((o.amount, o.filled_amount), (px("110"), px("10")));
    assert_eq!(o.average_price, Some(60000.5));
    assert_eq!(o.time_in_force, Some(TimeInForce::GoodTilCancelled));
    assert_eq!(
        (o.creation_timestamp, o.last_update_timestamp),
        (1700000000000, 1700000000001)
    );
    assert!(!o.post_only && !o.reduce_only);
    assert_eq!(resp.trades.len(), 1);
    let t = resp.trades.iter().next().unwrap().unwrap();
    assert_eq!((t.trade_id.raw(), t.trade_seq), ("100000001", 1));
    assert_eq!(
        (t.price, t.amount, t.direction),
        (px("60000.5"), px("10"), Direction::Buy)
    );
    assert_eq!(t.state, Some(OrderState::Open));
    assert_eq!(t.liquidity.map(|l| l.raw()), Some("T"));
    assert!(t.label.unwrap().eq_str("sw-1-\"q\""));
}

#[test]
fn market_orders_have_no_price_and_an_unfilled_average_is_none() {
    let v = r#"{"order_id":"ETH-3","order_state":"cancelled","price":"market_price","amount":5,"filled_amount":0,"average_price":0.0,"cancel_reason":"user_request","label":""}"#;
    let o = Order::from_value(spinwire_engine::venue::json::Value::parse(v).unwrap()).unwrap();
    assert_eq!(o.price, None);
    assert_eq!(o.average_price, None);
    assert_eq!(o.cancel_reason.map(|c| c.raw()), Some("user_request"));
    assert!(o.order_state.is_final());
}

#[test]
fn order_lists_and_user_trade_pages_iterate() {
    let mut out = [MdRecord::default(); 1];
    let list = r#"{"jsonrpc":"2.0","id":3,"result":[{"order_id":"BTC-1","order_state":"filled","amount":10.0,"label":"x"},{"order_id":"BTC-2","order_state":"open","amount":20.0,"label":"x"}]}"#;
    let Incoming::Response(r) = decode(list, &table(), &mut out).unwrap() else {
        panic!()
    };
    let orders = Items::<Order>::from_value(r.outcome.unwrap()).unwrap();
    let ids: Vec<_> = orders.iter().map(|o| o.unwrap().order_id.raw()).collect();
    assert_eq!(ids, ["BTC-1", "BTC-2"]);

    let page = r#"{"jsonrpc":"2.0","id":4,"result":{"trades":[{"trade_id":"5","trade_seq":9,"order_id":"BTC-1","direction":"sell","price":1.5,"amount":2,"timestamp":77,"state":"filled"}],"has_more":true}}"#;
    let Incoming::Response(r) = decode(page, &table(), &mut out).unwrap() else {
        panic!()
    };
    let p = UserTradesPage::from_value(r.outcome.unwrap()).unwrap();
    assert!(p.has_more);
    let t = p.trades.iter().next().unwrap().unwrap();
    assert_eq!(
        (t.trade_seq, t.timestamp_ms, t.direction),
        (9, 77, Direction::Sell)
    );

    let subscribed = r#"{"jsonrpc":"2.0","id":5,"result":["book.BTC-PERPETUAL.raw","trades.BTC-PERPETUAL.raw"]}"#;
    let Incoming::Response(r) = decode(subscribed, &table(), &mut out).unwrap() else {
        panic!()
    };
    let names = Items::<JsonStr>::from_value(r.outcome.unwrap()).unwrap();
    assert_eq!(names.len(), 2);
    assert_eq!(
        names.iter().next().unwrap().unwrap().raw(),
        "book.BTC-PERPETUAL.raw"
    );
}

#[test]
fn user_channels_give_order_and_trade_views() {
    let mut out = [MdRecord::default(); 1];
    let orders = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"user.orders.BTC-PERPETUAL.raw","data":{"order_id":"BTC-7","order_state":"filled","amount":10.0,"filled_amount":10.0,"average_price":60000.0,"label":"a","direction":"sell","price":60000.0}}}"#;
    let Incoming::UserOrders { instrument, orders } = decode(orders, &table(), &mut out).unwrap()
    else {
        panic!()
    };
    assert_eq!(instrument, "BTC-PERPETUAL");
    assert_eq!(orders.len(), 1);
    let o = orders.iter().next().unwrap().unwrap();
    assert_eq!(
        (o.order_state, o.direction),
        (OrderState::Filled, Some(Direction::Sell))
    );

    // From Deribit's user.trades.{instrument}.{interval} docs (two fills).
    let trades = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"user.trades.BTC-PERPETUAL.raw","data":[{"trade_seq":30289432,"trade_id":"48079254","timestamp":1590484156350,"tick_direction":0,"state":"filled","reduce_only":false,"price":8954,"post_only":false,"order_type":"market","order_id":"4008965646","matching_id":null,"mark_price":8952.86,"liquidity":"T","instrument_name":"BTC-PERPETUAL","index_price":8956.73,"fee_currency":"BTC","fee":0.00000168,"direction":"sell","amount":20},{"trade_seq":30289433,"trade_id":"48079255","timestamp":1590484156350,"tick_direction":1,"state":"filled","reduce_only":false,"price":8954,"post_only":false,"order_type":"market","order_id":"4008965646","matching_id":null,"mark_price":8952.86,"liquidity":"T","instrument_name":"BTC-PERPETUAL","index_price":8956.73,"fee_currency":"BTC","fee":0.00000168,"direction":"sell","amount":20}]}}"#;
    let Incoming::UserTrades { trades, .. } = decode(trades, &table(), &mut out).unwrap() else {
        panic!()
    };
    let all: Vec<_> = trades.iter().map(Result::unwrap).collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].trade_id.raw(), "48079255");
    assert_eq!(all[1].order_id.raw(), "4008965646");
    assert_eq!(all[0].price, px("8954"));
}

#[test]
fn other_channels_and_methods_pass_through() {
    let mut out = [MdRecord::default(); 1];
    let ticker = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"deribit_price_index.btc_usd","data":{"timestamp":1535098298227,"price":6521.17,"index_name":"btc_usd"}}}"#;
    let Incoming::Subscription { channel, data } = decode(ticker, &table(), &mut out).unwrap()
    else {
        panic!()
    };
    assert_eq!(channel.raw(), "deribit_price_index.btc_usd");
    assert_eq!(data.get("price").unwrap().fixed(), Ok(px("6521.17")));
    // A grouped book is not a book.{instrument}.{interval} channel.
    let grouped = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.none.10.100ms","data":{"bids":[[1.0,2.0]],"asks":[]}}}"#;
    assert!(matches!(
        decode(grouped, &table(), &mut out),
        Ok(Incoming::Subscription { .. })
    ));
    let other = r#"{"jsonrpc":"2.0","method":"announcement","params":{"x":1}}"#;
    let Incoming::Notification { method, params } = decode(other, &table(), &mut out).unwrap()
    else {
        panic!()
    };
    assert_eq!(method.raw(), "announcement");
    assert!(params.is_some());
}

#[test]
fn market_data_for_an_unknown_instrument_is_an_error() {
    let mut out = [MdRecord::default(); 8];
    let msg = DERIBIT_BOOK_CHANGE.replace("book.BTC-PERPETUAL", "book.SOL-PERPETUAL");
    assert_eq!(
        decode(&msg, &table(), &mut out).unwrap_err(),
        DecodeError::UnknownInstrument
    );
}

#[test]
fn too_small_an_output_slice_is_a_clear_error() {
    let mut out = [MdRecord::default(); 4];
    assert_eq!(
        decode(DERIBIT_BOOK_CHANGE, &table(), &mut out).unwrap_err(),
        DecodeError::OutputFull { capacity: 4 }
    );
    let mut none: [MdRecord; 0] = [];
    assert_eq!(
        decode(SIM_TRADES, &table(), &mut none).unwrap_err(),
        DecodeError::OutputFull { capacity: 0 }
    );
}

#[test]
fn malformed_book_messages_name_the_field_at_fault() {
    let t = table();
    let mut out = [MdRecord::default(); 8];
    let cases: &[(&str, &str, DecodeError)] = &[
        (
            r#""change",10700.0"#,
            r#""modify",10700.0"#,
            DecodeError::BadValue { field: "action" },
        ),
        (
            "10700.0,45690.0",
            "\"10700.0\",45690.0",
            DecodeError::WrongType { field: "price" },
        ),
        (
            "10700.0,45690.0",
            "1e12,45690.0",
            DecodeError::Number {
                field: "price",
                error: NumError::Overflow,
            },
        ),
        (
            "10700.0,45690.0",
            "10700.000000001,45690.0",
            DecodeError::Number {
                field: "price",
                error: NumError::Inexact,
            },
        ),
        (
            ",45690.0]",
            "]",
            DecodeError::MissingField { field: "amount" },
        ),
        (
            "\"prev_change_id\":14202051597,",
            "",
            DecodeError::MissingField {
                field: "prev_change_id",
            },
        ),
        (
            "\"change_id\":14202051674,",
            "",
            DecodeError::MissingField { field: "change_id" },
        ),
        (
            "\"type\":\"change\",",
            "",
            DecodeError::MissingField { field: "type" },
        ),
        (
            "\"type\":\"change\"",
            "\"type\":\"delta\"",
            DecodeError::BadValue { field: "type" },
        ),
        (
            "\"change_id\":14202051674",
            "\"change_id\":-1",
            DecodeError::Number {
                field: "change_id",
                error: NumError::NotAnInteger,
            },
        ),
        (
            "\"change_id\":14202051674",
            "\"change_id\":1.5",
            DecodeError::Number {
                field: "change_id",
                error: NumError::NotAnInteger,
            },
        ),
        (
            "\"change_id\":14202051674",
            "\"change_id\":\"1\"",
            DecodeError::WrongType { field: "change_id" },
        ),
        (
            "\"timestamp\":1566347390042",
            "\"timestamp\":99999999999999999999",
            DecodeError::Number {
                field: "timestamp",
                error: NumError::Overflow,
            },
        ),
        (
            "\"bids\":[",
            "\"bids\":{\"x\":1},\"b\":[",
            DecodeError::WrongType { field: "bids" },
        ),
        (
            "[\"change\",10700.0,45690.0]",
            "[]",
            DecodeError::BadValue { field: "bids" },
        ),
        (
            "[\"change\",10700.0,45690.0]",
            "7",
            DecodeError::WrongType { field: "bids" },
        ),
        (
            "\"channel\":\"book.BTC-PERPETUAL.100ms\",",
            "",
            DecodeError::MissingField { field: "channel" },
        ),
    ];
    for (from, to, want) in cases {
        assert!(DERIBIT_BOOK_CHANGE.contains(from), "{from}");
        let msg = DERIBIT_BOOK_CHANGE.replacen(from, to, 1);
        assert_eq!(decode(&msg, &t, &mut out).unwrap_err(), *want, "{msg}");
    }
}

#[test]
fn invalid_json_is_a_json_error() {
    let t = table();
    let mut out = [MdRecord::default(); 8];
    let cut = &DERIBIT_BOOK_CHANGE[..DERIBIT_BOOK_CHANGE.len() - 1];
    assert_eq!(
        decode(cut, &t, &mut out).unwrap_err(),
        DecodeError::Json(JsonError::Truncated)
    );
    for bad in [
        format!("{DERIBIT_BOOK_CHANGE}x"),
        format!("{DERIBIT_BOOK_CHANGE}{{}}"),
        DERIBIT_BOOK_CHANGE.replacen("3580.0]", "3580.0,]", 1),
        DERIBIT_BOOK_CHANGE.replacen("\"jsonrpc\"", "jsonrpc", 1),
        DERIBIT_BOOK_CHANGE.replacen(":14202051674", ":014202051674", 1),
        r#"{"a":"\x"}"#.to_string(),
        r#"{"a":"tab	inside"}"#.to_string(),
        r#"{"a":tru}"#.to_string(),
        "".to_string(),
    ] {
        assert!(
            matches!(decode(&bad, &t, &mut out), Err(DecodeError::Json(_))),
            "{bad}"
        );
    }
    assert_eq!(
        decode("[1,2]", &t, &mut out).unwrap_err(),
        DecodeError::NotJsonRpc
    );
    assert_eq!(
        decode("{}", &t, &mut out).unwrap_err(),
        DecodeError::NotJsonRpc
    );
    assert_eq!(
        decode(r#"{"jsonrpc":"2.0","id":1}"#, &t, &mut out).unwrap_err(),
        DecodeError::MissingField { field: "result" }
    );
    assert_eq!(
        decode(r#"{"id":"abc","result":1}"#, &t, &mut out).unwrap_err(),
        DecodeError::WrongType { field: "id" }
    );
}
