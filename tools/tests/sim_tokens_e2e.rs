//! The simulator's token maps over real connections: a client that reconnects and refreshes
//! in a loop (the soak/demo pattern) does not grow them, and refreshed-away or expired tokens
//! are refused on the wire with 13009.

mod sim_util;

use std::time::Duration;

use serde_json::json;
use sim_util::*;
use spinwire_tools::sim::SimConfig;

const T: Duration = Duration::from_secs(3);

/// `public/auth` with client credentials and scope `session:NAME`; the result.
fn session_login(c: &mut Client, name: &str) -> serde_json::Value {
    c.ok(
        "public/auth",
        json!({"grant_type":"client_credentials","client_id":ID,"client_secret":SECRET,
               "scope":format!("session:{name}")}),
    )
}

/// `public/auth` with a refresh token; the result.
fn refresh(c: &mut Client, refresh_token: &serde_json::Value) -> serde_json::Value {
    c.ok(
        "public/auth",
        json!({"grant_type":"refresh_token","refresh_token":refresh_token}),
    )
}

fn held(sim: &spinwire_tools::sim::SimHandle) -> usize {
    let s = sim.stats();
    s.access_tokens + s.refresh_tokens
}

#[test]
fn reconnecting_and_refreshing_clients_do_not_grow_the_token_maps() {
    let ttl = Duration::from_millis(10);
    let sim = start(SimConfig {
        token_ttl: ttl,
        refresh_ttl: ttl,
        ..config()
    });
    let rounds = 400;
    let mut peak = 0;
    for _ in 0..rounds {
        let mut c = Client::connect(&sim);
        let g = session_login(&mut c, "soak");
        let r = refresh(&mut c, &g["refresh_token"]);
        assert!(r["scope"].as_str().unwrap().starts_with("session:soak"));
        drop(c);
        peak = peak.max(held(&sim));
        // Stay under the per-IP connection limit: let the simulator see the close.
        assert!(eventually(T, || sim.connections().len() < 8));
    }
    // Without pruning: two entries (session access + refresh token) per round.
    assert!(
        peak < rounds / 2,
        "peak {peak} entries after {rounds} rounds: expired tokens are not pruned"
    );
    // Once everything else has expired, a client refreshing in a loop is soon (at the next
    // time-triggered prune, within a second) the only thing left.
    let mut c = Client::connect(&sim);
    let mut rt = c.auth()["refresh_token"].clone();
    let drained = eventually(T, || {
        let r = c.call(
            "public/auth",
            json!({"grant_type":"refresh_token","refresh_token":rt}),
        );
        // A scheduling hiccup longer than the 10 ms lifetime: log in again.
        rt = match r.get("result") {
            Some(g) => g["refresh_token"].clone(),
            None => c.auth()["refresh_token"].clone(),
        };
        let s = sim.stats();
        (s.access_tokens, s.refresh_tokens) == (1, 1)
    });
    assert!(drained, "{:?}", sim.stats());
}

#[test]
fn a_refreshed_away_token_is_refused_on_the_wire_with_13009() {
    let sim = start(config());
    let mut a = Client::connect(&sim);
    let old = session_login(&mut a, "beta");
    let new = refresh(&mut a, &old["refresh_token"]);
    let mut b = Client::connect(&sim);
    let p = |t: &serde_json::Value| json!({"instrument_name":"BTC-PERPETUAL","access_token":t});
    assert_eq!(
        b.err_code("private/get_position", p(&old["access_token"])),
        13009
    );
    b.ok("private/get_position", p(&new["access_token"]));
    // The first connection's own authorization moved to the new token.
    a.ok(
        "private/get_position",
        json!({"instrument_name":"BTC-PERPETUAL"}),
    );
}
