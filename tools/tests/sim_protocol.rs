//! The simulator's protocol surface, driven by an independent tungstenite client: envelopes,
//! errors, authentication, heartbeats, subscriptions, limits, wss.

mod sim_util;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sim_util::*;
use spinwire_tools::sim::venue::hmac_hex;
use spinwire_tools::sim::{RateLimit, SimConfig, TlsSetup};

const T: Duration = Duration::from_secs(3);

#[test]
fn every_response_carries_the_deribit_envelope() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    let r = c.call("public/get_time", json!({}));
    assert_eq!(r["jsonrpc"], "2.0");
    assert_eq!(r["id"], 1);
    assert!(r["result"].as_u64().unwrap() > 1_600_000_000_000);
    let (us_in, us_out) = (r["usIn"].as_u64().unwrap(), r["usOut"].as_u64().unwrap());
    assert!(us_out >= us_in);
    assert_eq!(r["usDiff"].as_u64().unwrap(), us_out - us_in);
    assert_eq!(r["testnet"], true);
    let e = c.call("public/no_such_method", json!({}));
    assert_eq!(e["error"]["code"], -32601);
    assert_eq!(e["error"]["message"], "Method not found");
    assert!(e["usIn"].is_u64() && e["usDiff"].is_u64());
}

#[test]
fn invalid_json_gets_a_parse_error_with_null_id() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.send_text("{\"jsonrpc\":\"2.0\",\"id\":1,");
    let Got::Json(v) = c.read(T) else {
        panic!("expected a JSON error response")
    };
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], Value::Null);
    // The connection stays usable.
    assert!(c.ok("public/test", json!({}))["version"].is_string());
}

#[test]
fn client_credentials_auth_returns_token_fields() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    let r = c.auth();
    assert!(r["access_token"].as_str().unwrap().len() > 10);
    assert!(r["refresh_token"].as_str().unwrap().len() > 10);
    assert_eq!(r["expires_in"], 900);
    assert_eq!(r["token_type"], "bearer");
    assert!(r["scope"]
        .as_str()
        .unwrap()
        .starts_with("connection mainaccount"));
}

#[test]
fn wrong_secret_gets_invalid_credentials_and_private_calls_stay_unauthorized() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    let code = c.err_code(
        "public/auth",
        json!({"grant_type":"client_credentials","client_id":ID,"client_secret":"nope"}),
    );
    assert_eq!(code, 13004);
    assert_eq!(
        c.err_code(
            "private/get_position",
            json!({"instrument_name":"BTC-PERPETUAL"})
        ),
        13009
    );
    let missing = c.call("public/auth", json!({"grant_type":"client_credentials"}));
    assert_eq!(missing["error"]["code"], -32602);
    assert_eq!(missing["error"]["data"]["param"], "client_id");
}

#[test]
fn client_signature_auth_accepts_a_valid_hmac_and_rejects_a_forged_one() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (nonce, data) = ("n0nce", "extra");
    let sig = hmac_hex(SECRET, &format!("{ts}\n{nonce}\n{data}"));
    let params = json!({"grant_type":"client_signature","client_id":ID,"timestamp":ts,
                        "nonce":nonce,"data":data,"signature":sig});
    let ok = c.ok("public/auth", params.clone());
    assert_eq!(ok["token_type"], "bearer");
    let mut forged = params;
    forged["signature"] = Value::from(hmac_hex("other-secret", &format!("{ts}\n{nonce}\n{data}")));
    assert_eq!(c.err_code("public/auth", forged), 13004);
}

#[test]
fn refresh_token_grant_issues_a_new_pair_once() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    let first = c.auth();
    let rt = first["refresh_token"].as_str().unwrap().to_string();
    let second = c.ok(
        "public/auth",
        json!({"grant_type":"refresh_token","refresh_token":rt}),
    );
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(
        c.err_code(
            "public/auth",
            json!({"grant_type":"refresh_token","refresh_token":rt})
        ),
        13004,
        "a used refresh token is spent"
    );
}

#[test]
fn session_scoped_token_survives_a_reconnect_but_connection_token_does_not() {
    let sim = start(config());
    let mut a = Client::connect(&sim);
    let sess = a.ok(
        "public/auth",
        json!({"grant_type":"client_credentials","client_id":ID,"client_secret":SECRET,
               "scope":"session:alpha trade:read_write"}),
    );
    assert!(sess["scope"].as_str().unwrap().starts_with("session:alpha"));
    let mut b = Client::connect(&sim);
    let conn_token = b.auth()["access_token"].as_str().unwrap().to_string();
    drop(a);
    drop(b);
    assert!(eventually(T, || sim.connections().is_empty()));
    let mut c = Client::connect(&sim);
    let pos = c.call(
        "private/get_position",
        json!({"instrument_name":"BTC-PERPETUAL","access_token":sess["access_token"]}),
    );
    assert!(pos.get("result").is_some(), "{pos}");
    // Authorized by the session token, the connection stays authorized.
    c.ok(
        "private/get_position",
        json!({"instrument_name":"BTC-PERPETUAL"}),
    );
    let mut d = Client::connect(&sim);
    assert_eq!(
        d.err_code(
            "private/get_position",
            json!({"instrument_name":"BTC-PERPETUAL","access_token":conn_token})
        ),
        13009
    );
}

#[test]
fn expired_token_gets_unauthorized() {
    let sim = start(SimConfig {
        token_ttl: Duration::from_millis(200),
        ..config()
    });
    let mut c = Client::connect(&sim);
    assert_eq!(c.auth()["expires_in"], 1);
    c.ok(
        "private/get_position",
        json!({"instrument_name":"BTC-PERPETUAL"}),
    );
    std::thread::sleep(Duration::from_millis(300));
    let r = c.call(
        "private/get_position",
        json!({"instrument_name":"BTC-PERPETUAL"}),
    );
    assert_eq!(r["error"]["code"], 13009);
    assert_eq!(r["error"]["data"]["reason"], "token_expired");
}

#[test]
fn heartbeat_test_requests_keep_the_connection_while_answered_and_close_it_when_not() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    assert_eq!(
        c.call("public/set_heartbeat", json!({"interval": 0.01}))["error"]["code"],
        -32602,
        "below the minimum"
    );
    assert_eq!(c.ok("public/set_heartbeat", json!({"interval": 0.1})), "ok");
    for _ in 0..3 {
        let hb = c.notification("heartbeat", None, T).expect("test_request");
        assert_eq!(hb["params"]["type"], "test_request");
        c.ok("public/test", json!({}));
    }
    let started = Instant::now();
    c.notification("heartbeat", None, T).expect("test_request");
    let end = c.wait_closed(T);
    assert!(matches!(end, Got::CloseFrame(1000)), "{end:?}");
    assert!(started.elapsed() >= Duration::from_millis(80));
}

#[test]
fn disable_heartbeat_stops_test_requests() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    c.ok("public/set_heartbeat", json!({"interval": 0.05}));
    c.ok("public/disable_heartbeat", json!({}));
    c.queue.clear();
    assert!(c
        .notification("heartbeat", None, Duration::from_millis(200))
        .is_none());
}

fn apply(book: &mut BTreeMap<(bool, String), f64>, data: &Value) {
    for (bid, key) in [(true, "bids"), (false, "asks")] {
        for row in data[key].as_array().unwrap() {
            let (action, price, amount) = (
                row[0].as_str().unwrap(),
                row[1].as_f64().unwrap(),
                row[2].as_f64().unwrap(),
            );
            let k = (bid, format!("{price}"));
            match action {
                "new" => assert!(book.insert(k, amount).is_none(), "new on existing level"),
                "change" => assert!(book.insert(k, amount).is_some(), "change of missing level"),
                "delete" => assert!(book.remove(&k).is_some(), "delete of missing level"),
                other => panic!("bad action {other}"),
            }
        }
    }
}

#[test]
fn raw_book_subscription_sends_a_snapshot_then_linked_changes() {
    let sim = start(SimConfig {
        rate: 20_000,
        ..config()
    });
    let mut c = Client::connect(&sim);
    c.auth();
    let subs = c.ok(
        "public/subscribe",
        json!({"channels":["book.BTC-PERPETUAL.raw"]}),
    );
    assert_eq!(subs, json!(["book.BTC-PERPETUAL.raw"]));
    let snap = c
        .notification("subscription", Some("book.BTC-PERPETUAL.raw"), T)
        .unwrap();
    let d = &snap["params"]["data"];
    assert_eq!(d["type"], "snapshot");
    assert_eq!(d["instrument_name"], "BTC-PERPETUAL");
    assert!(d["bids"].as_array().unwrap().len() >= 10);
    assert!(d["sw_send_ns"].as_u64().is_some());
    let mut book = BTreeMap::new();
    apply(&mut book, d);
    let mut last = d["change_id"].as_u64().unwrap();
    for _ in 0..300 {
        let n = c
            .notification("subscription", Some("book.BTC-PERPETUAL.raw"), T)
            .unwrap();
        let d = &n["params"]["data"];
        assert_eq!(d["type"], "change");
        assert_eq!(d["prev_change_id"].as_u64().unwrap(), last, "no gap");
        last = d["change_id"].as_u64().unwrap();
        assert!(d["timestamp"].is_u64() && d["sw_send_ns"].is_u64());
        apply(&mut book, d);
    }
    let best_bid = book
        .iter()
        .filter(|((b, _), _)| *b)
        .map(|((_, p), _)| p.parse::<f64>().unwrap())
        .fold(f64::MIN, f64::max);
    let best_ask = book
        .iter()
        .filter(|((b, _), _)| !*b)
        .map(|((_, p), _)| p.parse::<f64>().unwrap())
        .fold(f64::MAX, f64::min);
    assert!(best_bid < best_ask, "replayed book is uncrossed");
}

#[test]
fn aggregated_book_and_trades_channels_keep_their_change_chain() {
    let sim = start(SimConfig {
        rate: 5_000,
        ..config()
    });
    let mut c = Client::connect(&sim);
    c.ok(
        "public/subscribe",
        json!({"channels":["book.ETH-PERPETUAL.100ms","trades.ETH-PERPETUAL.100ms"]}),
    );
    let snap = c
        .notification("subscription", Some("book.ETH-PERPETUAL.100ms"), T)
        .unwrap();
    let mut book = BTreeMap::new();
    apply(&mut book, &snap["params"]["data"]);
    let mut last = snap["params"]["data"]["change_id"].as_u64().unwrap();
    let t0 = Instant::now();
    for _ in 0..4 {
        let n = c
            .notification("subscription", Some("book.ETH-PERPETUAL.100ms"), T)
            .unwrap();
        let d = &n["params"]["data"];
        assert_eq!(d["prev_change_id"].as_u64().unwrap(), last);
        last = d["change_id"].as_u64().unwrap();
        apply(&mut book, d);
    }
    assert!(t0.elapsed() >= Duration::from_millis(250), "100 ms pacing");
    let trades = c
        .notification("subscription", Some("trades.ETH-PERPETUAL.100ms"), T)
        .unwrap();
    let t = &trades["params"]["data"][0];
    assert_eq!(t["instrument_name"], "ETH-PERPETUAL");
    assert!(t["trade_id"].is_string() && t["trade_seq"].is_u64() && t["price"].is_f64());
    assert!(t["direction"] == "buy" || t["direction"] == "sell");
    assert!(t["sw_send_ns"].is_u64());
}

#[test]
fn raw_channels_need_authorization_and_bad_channels_are_invalid_params() {
    let sim = start(config());
    let mut c = Client::connect(&sim);
    assert_eq!(
        c.err_code(
            "public/subscribe",
            json!({"channels":["trades.BTC-PERPETUAL.raw"]})
        ),
        13778
    );
    assert_eq!(
        c.err_code(
            "private/subscribe",
            json!({"channels":["user.orders.BTC-PERPETUAL.raw"]})
        ),
        13009
    );
    let r = c.call(
        "public/subscribe",
        json!({"channels":["book.NOPE-PERPETUAL.100ms"]}),
    );
    assert_eq!(r["error"]["code"], -32602);
    assert!(r["error"]["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("unknown instrument"));
    c.auth();
    let unsub = c.ok(
        "public/unsubscribe",
        json!({"channels":["book.BTC-PERPETUAL.raw"]}),
    );
    assert_eq!(unsub, json!(["book.BTC-PERPETUAL.raw"]));
}

#[test]
fn request_rate_limit_answers_too_many_requests() {
    let sim = start(SimConfig {
        request_rate: RateLimit {
            per_sec: 1.0,
            burst: 3.0,
        },
        ..config()
    });
    let mut c = Client::connect(&sim);
    for _ in 0..3 {
        c.ok("public/test", json!({}));
    }
    let r = c.call("public/test", json!({}));
    assert_eq!(r["error"]["code"], 10028);
    assert_eq!(r["error"]["message"], "too_many_requests");
}

#[test]
fn per_ip_connection_limit_refuses_the_upgrade_with_429() {
    let sim = start(SimConfig {
        max_conns_per_ip: 2,
        ..config()
    });
    let _a = Client::connect(&sim);
    let _b = Client::connect(&sim);
    match Client::try_connect(&sim) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 429),
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("third connection should be refused"),
    }
}

#[test]
fn wrong_path_is_refused_with_404() {
    let sim = start(config());
    let (stream, _sock) = raw_stream(&sim);
    let url = format!("ws://localhost:{}/elsewhere", sim.local_addr().port());
    match tungstenite::client::client(url, stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            assert_eq!(r.status().as_u16(), 404)
        }
        other => panic!("expected 404, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn wss_with_a_self_signed_ca_serves_the_same_protocol() {
    let dir = temp_dir("wss");
    let sim = start(SimConfig {
        tls: Some(TlsSetup::SelfSigned(dir.clone())),
        ..config()
    });
    assert!(sim.url().starts_with("wss://"));
    for f in ["ca.pem", "server.pem", "server.key"] {
        assert!(dir.join(f).exists(), "{f} written");
    }
    let mut c = Client::connect(&sim);
    assert_eq!(c.auth()["token_type"], "bearer");
    c.ok(
        "public/subscribe",
        json!({"channels":["book.BTC-PERPETUAL.raw"]}),
    );
    let snap = c.notification("subscription", None, T).unwrap();
    assert_eq!(snap["params"]["data"]["type"], "snapshot");
    drop(c);
    sim.shutdown();

    // The same certificate, given as files.
    let files = start(SimConfig {
        tls: Some(TlsSetup::Files {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }),
        ..config()
    });
    assert!(files.ca_file().is_none());
    let mut c = Client::try_connect_to(files.local_addr(), Some(&dir.join("ca.pem"))).unwrap();
    assert_eq!(c.auth()["token_type"], "bearer");
}

#[test]
fn missing_certificate_file_is_a_clear_startup_error() {
    let err = spinwire_tools::sim::Simulator::start(SimConfig {
        tls: Some(TlsSetup::Files {
            cert: "/nonexistent/server.pem".into(),
            key: "/nonexistent/server.key".into(),
        }),
        ..config()
    })
    .err()
    .expect("start fails");
    assert!(err.to_string().contains("/nonexistent/server.pem"), "{err}");
}
