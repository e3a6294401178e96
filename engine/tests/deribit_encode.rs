//! The Deribit request encoder: every request round-trips through serde_json with every field
//! as given; bad arguments and small buffers are errors; secrets stay out of Debug output.

use std::time::Duration;

use serde_json::{json, Value};
use spinwire_engine::md::Fixed;
use spinwire_engine::venue::deribit::{
    Channel, CodScope, EditParams, EncodeError, Interval, OrderParams, OrderType, Request, Secret,
    Sorting, TimeInForce, UserTradesQuery, MAX_LABEL_CHARS,
};

fn px(s: &str) -> Fixed {
    s.parse().unwrap()
}

/// Encodes and parses back; checks the envelope and returns `params`.
fn round_trip(req: &Request<'_>, id: u64) -> Value {
    let mut buf = [0u8; 4096];
    let n = req.encode(id, &mut buf).unwrap();
    let v: Value = serde_json::from_slice(&buf[..n])
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf[..n])));
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], id);
    assert_eq!(v["method"], req.method());
    assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
    // Every byte count smaller than the message is refused, never written past.
    for small in [0, 1, n / 2, n - 1] {
        let mut tiny = vec![0u8; small];
        assert_eq!(req.encode(id, &mut tiny), Err(EncodeError::BufferTooSmall));
    }
    v["params"].clone()
}

fn limit_buy<'a>(label: &'a str) -> OrderParams<'a> {
    OrderParams {
        instrument_name: "BTC-PERPETUAL",
        amount: px("110"),
        order_type: OrderType::Limit,
        price: Some(px("60000.5")),
        label,
        post_only: true,
        reject_post_only: true,
        reduce_only: false,
        time_in_force: TimeInForce::GoodTilCancelled,
    }
}

#[test]
fn client_credentials_auth_round_trips_with_session_scope() {
    let secret = Secret::new("s3cr\"et\\");
    let p = round_trip(
        &Request::AuthClientCredentials {
            client_id: "id-1",
            client_secret: &secret,
            session: Some("spinwire"),
        },
        u64::MAX,
    );
    assert_eq!(
        p,
        json!({"grant_type":"client_credentials","client_id":"id-1","client_secret":"s3cr\"et\\","scope":"session:spinwire"})
    );
    let p = round_trip(
        &Request::AuthClientCredentials {
            client_id: "id-1",
            client_secret: &secret,
            session: None,
        },
        0,
    );
    assert!(p.get("scope").is_none());
}

#[test]
fn client_signature_auth_signs_timestamp_nonce_and_data_with_hmac_sha256() {
    let secret = Secret::new("test-secret");
    // Expected values computed independently (Python's hmac module).
    for (data, expected) in [
        (
            "some data",
            "20934f11469d75a8c0586f295fbf443a3c9b0b77360e1ab29f527d65f215e78e",
        ),
        (
            "",
            "1808bf997d7e6e36c63a98bd34d3d2720b0fbe459039634930a86c38c20f6d5b",
        ),
    ] {
        let req = Request::AuthClientSignature {
            client_id: "test-client",
            client_secret: &secret,
            timestamp_ms: 1700000000123,
            nonce: "n0nce",
            data,
            session: Some("s"),
        };
        let p = round_trip(&req, 1);
        assert_eq!(
            p,
            json!({"grant_type":"client_signature","client_id":"test-client","timestamp":1700000000123u64,
                   "nonce":"n0nce","data":data,"signature":expected,"scope":"session:s"})
        );
        let mut buf = [0u8; 1024];
        let n = req.encode(1, &mut buf).unwrap();
        assert!(
            !String::from_utf8_lossy(&buf[..n]).contains("test-secret"),
            "the secret must not cross the wire"
        );
    }
}

#[test]
fn refresh_token_auth_round_trips() {
    let rt = Secret::new("1582628593469.1GP4rQd0");
    let p = round_trip(
        &Request::AuthRefreshToken {
            refresh_token: &rt,
            session: None,
        },
        5,
    );
    assert_eq!(
        p,
        json!({"grant_type":"refresh_token","refresh_token":"1582628593469.1GP4rQd0"})
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let secret = Secret::new("hunter2-secret");
    let rt = Secret::new("refresh-xyz");
    let reqs = [
        Request::AuthClientCredentials {
            client_id: "id",
            client_secret: &secret,
            session: None,
        },
        Request::AuthClientSignature {
            client_id: "id",
            client_secret: &secret,
            timestamp_ms: 1,
            nonce: "n",
            data: "",
            session: None,
        },
        Request::AuthRefreshToken {
            refresh_token: &rt,
            session: None,
        },
    ];
    for r in &reqs {
        let d = format!("{r:?} {r:#?}");
        assert!(!d.contains("hunter2") && !d.contains("refresh-xyz"), "{d}");
        assert!(d.contains("***"));
    }
    assert_eq!(format!("{secret:?}"), "***");
}

#[test]
fn heartbeat_test_and_logout_round_trip() {
    assert_eq!(
        round_trip(
            &Request::SetHeartbeat {
                interval: Duration::from_secs(10)
            },
            2
        ),
        json!({"interval":10})
    );
    assert_eq!(
        round_trip(
            &Request::SetHeartbeat {
                interval: Duration::from_millis(50)
            },
            2
        ),
        json!({"interval":0.05})
    );
    assert_eq!(
        Request::SetHeartbeat {
            interval: Duration::from_micros(999)
        }
        .encode(1, &mut [0u8; 256]),
        Err(EncodeError::BadInterval)
    );
    assert_eq!(round_trip(&Request::Test, 3), json!({}));
    assert_eq!(round_trip(&Request::DisableHeartbeat, 3), json!({}));
    assert_eq!(round_trip(&Request::CancelAll, 3), json!({}));
    assert_eq!(
        round_trip(
            &Request::Logout {
                invalidate_token: false
            },
            4
        ),
        json!({"invalidate_token":false})
    );
}

#[test]
fn subscriptions_pick_public_or_private_by_channel() {
    let public = [
        Channel::Book {
            instrument: "BTC-PERPETUAL",
            interval: Interval::Raw,
        },
        Channel::Trades {
            instrument: "ETH-PERPETUAL",
            interval: Interval::Ms100,
        },
        Channel::parse("deribit_price_index.btc_usd"),
    ];
    let req = Request::Subscribe { channels: &public };
    assert_eq!(req.method(), "public/subscribe");
    assert_eq!(
        round_trip(&req, 9),
        json!({"channels":["book.BTC-PERPETUAL.raw","trades.ETH-PERPETUAL.100ms","deribit_price_index.btc_usd"]})
    );
    let private = [
        Channel::Book {
            instrument: "BTC-PERPETUAL",
            interval: Interval::Agg2,
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
    let req = Request::Unsubscribe { channels: &private };
    assert_eq!(req.method(), "private/unsubscribe");
    assert_eq!(
        round_trip(&req, 9),
        json!({"channels":["book.BTC-PERPETUAL.agg2","user.orders.BTC-PERPETUAL.raw","user.trades.BTC-PERPETUAL.raw"]})
    );
    assert_eq!(
        Request::Subscribe { channels: &[] }.encode(1, &mut [0u8; 256]),
        Err(EncodeError::NoChannels)
    );
}

#[test]
fn channel_names_parse_and_print_back() {
    for name in [
        "book.BTC-PERPETUAL.raw",
        "book.BTC-27DEC24-60000-C.100ms",
        "trades.ETH-PERPETUAL.agg2",
        "user.orders.BTC-PERPETUAL.raw",
        "user.trades.ETH-PERPETUAL.100ms",
        "book.BTC-PERPETUAL.none.10.100ms",
        "user.orders.future.BTC.raw",
        "ticker.BTC-PERPETUAL.raw",
        "book..raw",
        "book.BTC-PERPETUAL.1s",
    ] {
        assert_eq!(Channel::parse(name).to_string(), name);
    }
    assert!(matches!(
        Channel::parse("book.BTC-PERPETUAL.none.10.100ms"),
        Channel::Other(_)
    ));
    assert!(matches!(Channel::parse("book..raw"), Channel::Other(_)));
    assert_eq!(
        Channel::parse("user.trades.ETH-PERPETUAL.100ms"),
        Channel::UserTrades {
            instrument: "ETH-PERPETUAL",
            interval: Interval::Ms100
        }
    );
    assert!(Channel::parse("user.portfolio.btc").is_private());
    assert!(!Channel::parse("book.BTC-PERPETUAL.raw").is_private());
}

#[test]
fn buy_and_sell_carry_every_order_field() {
    let label = "sw-7-\"quoted\"\\ünï\n";
    let p = round_trip(&Request::Buy(limit_buy(label)), 100);
    assert_eq!(
        p,
        json!({"instrument_name":"BTC-PERPETUAL","amount":110,"type":"limit","price":60000.5,
               "label":label,"post_only":true,"reject_post_only":true,"reduce_only":false,
               "time_in_force":"good_til_cancelled"})
    );
    let market = OrderParams {
        order_type: OrderType::Market,
        price: None,
        post_only: false,
        reject_post_only: false,
        reduce_only: true,
        time_in_force: TimeInForce::ImmediateOrCancel,
        amount: px("0.00000001"),
        ..limit_buy("")
    };
    let req = Request::Sell(market);
    assert_eq!(req.method(), "private/sell");
    assert_eq!(
        round_trip(&req, 101),
        json!({"instrument_name":"BTC-PERPETUAL","amount":0.00000001,"type":"market",
               "post_only":false,"reduce_only":true,"time_in_force":"immediate_or_cancel"})
    );
}

#[test]
fn prices_are_written_exactly() {
    let mut buf = [0u8; 512];
    let o = OrderParams {
        price: Some(px("0.1")),
        amount: px("92233720368.54775807"),
        ..limit_buy("")
    };
    let n = Request::Buy(o).encode(1, &mut buf).unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(text.contains("\"price\":0.1,"), "{text}");
    assert!(text.contains("\"amount\":92233720368.54775807,"), "{text}");
}

#[test]
fn invalid_order_arguments_are_refused() {
    let mut buf = [0u8; 1024];
    let long = "x".repeat(MAX_LABEL_CHARS + 1);
    assert_eq!(
        Request::Buy(limit_buy(&long)).encode(1, &mut buf),
        Err(EncodeError::LabelTooLong { chars: 65 })
    );
    let exactly = "é".repeat(MAX_LABEL_CHARS);
    assert!(Request::Buy(limit_buy(&exactly))
        .encode(1, &mut buf)
        .is_ok());
    assert_eq!(
        Request::Buy(OrderParams {
            price: None,
            ..limit_buy("")
        })
        .encode(1, &mut buf),
        Err(EncodeError::MissingPrice)
    );
    assert_eq!(
        Request::Buy(OrderParams {
            order_type: OrderType::Market,
            ..limit_buy("")
        })
        .encode(1, &mut buf),
        Err(EncodeError::PriceNotAllowed)
    );
    assert_eq!(
        Request::Sell(OrderParams {
            amount: Fixed::ZERO,
            ..limit_buy("")
        })
        .encode(1, &mut buf),
        Err(EncodeError::NonPositiveAmount)
    );
    assert_eq!(
        Request::CancelByLabel {
            label: &long,
            currency: None
        }
        .encode(1, &mut buf),
        Err(EncodeError::LabelTooLong { chars: 65 })
    );
}

#[test]
fn edit_cancel_and_lookups_round_trip() {
    let edit = EditParams {
        order_id: "BTC-12",
        amount: px("20"),
        price: Some(px("59999.5")),
        post_only: Some(false),
        reject_post_only: true,
    };
    assert_eq!(
        round_trip(&Request::Edit(edit), 1),
        json!({"order_id":"BTC-12","amount":20,"price":59999.5,"post_only":false,"reject_post_only":true})
    );
    let bare = EditParams {
        price: None,
        post_only: None,
        reject_post_only: false,
        ..edit
    };
    assert_eq!(
        round_trip(&Request::Edit(bare), 1),
        json!({"order_id":"BTC-12","amount":20})
    );
    assert_eq!(
        round_trip(&Request::Cancel { order_id: "BTC-12" }, 2),
        json!({"order_id":"BTC-12"})
    );
    assert_eq!(
        round_trip(
            &Request::CancelByLabel {
                label: "sw-1",
                currency: Some("BTC")
            },
            3
        ),
        json!({"label":"sw-1","currency":"BTC"})
    );
    assert_eq!(
        round_trip(
            &Request::CancelByLabel {
                label: "sw-1",
                currency: None
            },
            3
        ),
        json!({"label":"sw-1"})
    );
    let by_label = Request::GetOrderStateByLabel {
        currency: "ETH",
        label: "sw-2",
    };
    assert_eq!(by_label.method(), "private/get_order_state_by_label");
    assert_eq!(
        round_trip(&by_label, 4),
        json!({"currency":"ETH","label":"sw-2"})
    );
    let open = Request::GetOpenOrdersByLabel {
        currency: "BTC",
        label: "sw-3",
    };
    assert_eq!(open.method(), "private/get_open_orders_by_label");
    assert_eq!(
        round_trip(&open, 5),
        json!({"currency":"BTC","label":"sw-3"})
    );
    let q = UserTradesQuery {
        instrument_name: "BTC-PERPETUAL",
        start_seq: Some(10),
        end_seq: Some(u64::MAX),
        count: Some(1000),
        sorting: Some(Sorting::Desc),
    };
    assert_eq!(
        round_trip(&Request::GetUserTradesByInstrument(q), 6),
        json!({"instrument_name":"BTC-PERPETUAL","start_seq":10,"end_seq":u64::MAX,"count":1000,"sorting":"desc"})
    );
    let q = UserTradesQuery {
        start_seq: None,
        end_seq: None,
        count: None,
        sorting: None,
        ..q
    };
    assert_eq!(
        round_trip(&Request::GetUserTradesByInstrument(q), 6),
        json!({"instrument_name":"BTC-PERPETUAL"})
    );
    for (scope, s) in [
        (CodScope::Connection, "connection"),
        (CodScope::Account, "account"),
    ] {
        let r = Request::EnableCancelOnDisconnect { scope };
        assert_eq!(r.method(), "private/enable_cancel_on_disconnect");
        assert_eq!(round_trip(&r, 7), json!({"scope": s}));
    }
}
