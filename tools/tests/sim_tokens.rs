//! The simulator's token lifecycle, driven on the venue state directly with an injected clock
//! (every venue call takes `now`): expired and replaced tokens are refused and leave the
//! token maps, which stay bounded over many reconnects and refreshes, while session resumption
//! and the `expire` fault keep working.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spinwire_tools::sim::venue::{CloseKind, ConnId, Mailbox, TokenCounts, Venue, VenueParams};

const ID: &str = "id";
const SECRET: &str = "secret";
const TTL: Duration = Duration::from_secs(10);
const REFRESH_TTL: Duration = Duration::from_secs(20);

fn venue() -> Venue {
    Venue::new(&params())
}

fn connect(v: &mut Venue, id: ConnId) {
    v.register_conn(id, "127.0.0.1".parse().unwrap(), Mailbox::default());
}

fn credentials(session: Option<&str>) -> Value {
    let mut p = json!({"grant_type":"client_credentials","client_id":ID,"client_secret":SECRET});
    if let Some(name) = session {
        p["scope"] = format!("session:{name}").into();
    }
    p
}

fn refresh(rt: &str) -> Value {
    json!({"grant_type":"refresh_token","refresh_token":rt})
}

fn total(c: TokenCounts) -> usize {
    c.access + c.refresh
}

#[test]
fn a_long_refresh_chain_keeps_one_pair_in_the_maps() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let mut g = v.auth(1, &credentials(None), t0).unwrap();
    for i in 1..=5_000u64 {
        // Time barely moves: nothing expires, only replacement removes tokens.
        let now = t0 + Duration::from_millis(i);
        g = v.auth(1, &refresh(&g.refresh_token), now).unwrap();
        assert_eq!(
            v.token_counts(),
            TokenCounts {
                access: 1,
                refresh: 1
            },
            "after refresh {i}"
        );
    }
    assert_eq!(
        v.authorize(1, None, t0 + Duration::from_secs(5)).unwrap(),
        ID
    );
}

#[test]
fn a_refreshed_away_access_token_is_refused_with_13009() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let old = v.auth(1, &credentials(Some("alpha")), t0).unwrap();
    let new = v.auth(1, &refresh(&old.refresh_token), t0).unwrap();
    let e = v.authorize(1, Some(&old.access_token), t0).unwrap_err();
    assert_eq!(e.code, 13009);
    assert_eq!(v.authorize(1, Some(&new.access_token), t0).unwrap(), ID);
    // The connection's own authorization moved to the new token.
    assert_eq!(v.authorize(1, None, t0).unwrap(), ID);
}

#[test]
fn a_used_refresh_token_is_refused_with_13004() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let g = v.auth(1, &credentials(None), t0).unwrap();
    v.auth(1, &refresh(&g.refresh_token), t0).unwrap();
    let e = v.auth(1, &refresh(&g.refresh_token), t0).unwrap_err();
    assert_eq!(e.code, 13004);
}

#[test]
fn an_expired_access_token_is_refused_with_13009_then_forgotten() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let first = v.auth(1, &credentials(None), t0).unwrap();
    assert_eq!(first.expires_in, TTL.as_secs());
    let late = t0 + TTL;
    let e = v.authorize(1, None, late).unwrap_err();
    assert_eq!(e.code, 13009);
    assert_eq!(e.data.as_ref().unwrap()["reason"], "token_expired");
    // The connection authorizes again; the expired token leaves the map on that issue.
    let second = v.auth(1, &credentials(None), late).unwrap();
    assert_eq!(v.token_counts().access, 1);
    let e = v.authorize(1, Some(&first.access_token), late).unwrap_err();
    assert_eq!(e.code, 13009);
    assert_eq!(
        v.authorize(1, Some(&second.access_token), late).unwrap(),
        ID
    );
}

#[test]
fn an_expired_token_still_held_by_its_connection_keeps_answering_token_expired() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    connect(&mut v, 2);
    v.auth(1, &credentials(None), t0).unwrap();
    // Another connection's issue prunes while conn 1's token is expired but still in use.
    let late = t0 + TTL + Duration::from_secs(1);
    v.auth(2, &credentials(None), late).unwrap();
    let e = v.authorize(1, None, late).unwrap_err();
    assert_eq!(e.code, 13009);
    assert_eq!(e.data.as_ref().unwrap()["reason"], "token_expired");
}

#[test]
fn an_expired_refresh_token_is_refused_with_13004_then_forgotten() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let stale = v.auth(1, &credentials(Some("alpha")), t0).unwrap();
    let late = t0 + REFRESH_TTL;
    let e = v.auth(1, &refresh(&stale.refresh_token), late).unwrap_err();
    assert_eq!(e.code, 13004);
    assert_eq!(e.data.as_ref().unwrap()["reason"], "refresh token expired");
    connect(&mut v, 2);
    let other = v.auth(2, &credentials(None), t0 + REFRESH_TTL / 2).unwrap();
    // An issue after both have expired prunes the unused refresh token of conn 2 as well.
    v.auth(1, &credentials(None), late + REFRESH_TTL).unwrap();
    assert_eq!(v.token_counts().refresh, 1);
    assert_eq!(
        v.auth(2, &refresh(&other.refresh_token), late + REFRESH_TTL)
            .unwrap_err()
            .code,
        13004
    );
}

#[test]
fn a_refresh_token_stays_valid_past_its_access_token_until_used() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let g = v.auth(1, &credentials(None), t0).unwrap();
    v.unregister_conn(1, CloseKind::Dropped);
    // Other clients' issues prune in between; the unused refresh token survives them.
    connect(&mut v, 2);
    for s in 0..15 {
        v.auth(2, &credentials(None), t0 + Duration::from_secs(s))
            .unwrap();
    }
    connect(&mut v, 3);
    let after = t0 + TTL + Duration::from_secs(5);
    let resumed = v.auth(3, &refresh(&g.refresh_token), after).unwrap();
    assert!(resumed.scope.starts_with("connection"), "{}", resumed.scope);
    assert_eq!(v.authorize(3, None, after).unwrap(), ID);
}

#[test]
fn a_session_resumes_on_reconnect_while_any_of_its_tokens_is_valid() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let g = v.auth(1, &credentials(Some("alpha")), t0).unwrap();
    assert!(g.scope.starts_with("session:alpha"), "{}", g.scope);
    v.unregister_conn(1, CloseKind::Dropped);

    // Reconnect: the session's access token works on the new connection.
    connect(&mut v, 2);
    let t1 = t0 + TTL / 2;
    assert_eq!(v.authorize(2, Some(&g.access_token), t1).unwrap(), ID);
    assert_eq!(v.authorize(2, None, t1).unwrap(), ID);
    v.unregister_conn(2, CloseKind::Dropped);

    // After the access token expired (and was pruned), the refresh token resumes the session.
    connect(&mut v, 3);
    let t2 = t0 + TTL + Duration::from_secs(2);
    v.auth(3, &credentials(None), t2).unwrap(); // another issue prunes
    assert_eq!(
        v.authorize(3, Some(&g.access_token), t2).unwrap_err().code,
        13009
    );
    let r = v.auth(3, &refresh(&g.refresh_token), t2).unwrap();
    assert!(r.scope.starts_with("session:alpha"), "{}", r.scope);
    v.unregister_conn(3, CloseKind::Dropped);

    // The resumed token is session-scoped again: it outlives connection 3.
    connect(&mut v, 4);
    let t3 = t2 + TTL / 2;
    v.auth(4, &credentials(None), t3).unwrap();
    assert_eq!(v.authorize(4, Some(&r.access_token), t3).unwrap(), ID);
}

#[test]
fn a_connection_token_dies_with_its_connection() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let g = v.auth(1, &credentials(None), t0).unwrap();
    v.unregister_conn(1, CloseKind::Dropped);
    assert_eq!(v.token_counts().access, 0);
    connect(&mut v, 2);
    assert_eq!(
        v.authorize(2, Some(&g.access_token), t0).unwrap_err().code,
        13009
    );
}

#[test]
fn the_expire_fault_refuses_the_connections_token_with_13009_until_it_reauthorizes() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let g = v.auth(1, &credentials(Some("alpha")), t0).unwrap();
    v.expire_tokens(Some(1), t0);
    let e = v.authorize(1, None, t0).unwrap_err();
    assert_eq!(e.code, 13009);
    assert_eq!(e.data.as_ref().unwrap()["reason"], "token_expired");
    // Its refresh token still resumes the session, and the expired token is gone after that.
    let t1 = t0 + Duration::from_secs(2);
    let r = v.auth(1, &refresh(&g.refresh_token), t1).unwrap();
    assert!(r.scope.starts_with("session:alpha"));
    assert_eq!(v.authorize(1, None, t1).unwrap(), ID);
    assert_eq!(
        v.token_counts(),
        TokenCounts {
            access: 1,
            refresh: 1
        }
    );
}

#[test]
fn an_invalidating_logout_kills_the_connections_refresh_tokens() {
    let mut v = venue();
    let t0 = Instant::now();
    connect(&mut v, 1);
    let g = v.auth(1, &credentials(Some("alpha")), t0).unwrap();
    v.logout(1, true);
    assert_eq!(v.token_counts(), TokenCounts::default());
    assert_eq!(
        v.auth(1, &refresh(&g.refresh_token), t0).unwrap_err().code,
        13004
    );
}

/// Many reconnects (each with a fresh login and a refresh, half of them session-scoped) over
/// 1000 simulated seconds: without pruning the maps would hold 2 entries per reconnect; with
/// it they hold what is valid (refresh tokens of the last 20 s, session access tokens of the
/// last 10 s, 4 reconnects a second) at most twice over, plus a small floor.
#[test]
fn token_maps_stay_bounded_over_many_reconnects_and_refreshes() {
    let mut v = venue();
    let t0 = Instant::now();
    let step = Duration::from_millis(250);
    let reconnects = 4_000u64;
    let mut peak = 0;
    let mut last = None;
    for i in 0..reconnects {
        let now = t0 + step * i as u32;
        let id = i + 1;
        connect(&mut v, id);
        let session = (i % 2 == 0).then_some("soak");
        let g = v.auth(id, &credentials(session), now).unwrap();
        let r = v.auth(id, &refresh(&g.refresh_token), now).unwrap();
        assert_eq!(v.authorize(id, None, now).unwrap(), ID);
        v.unregister_conn(id, CloseKind::Dropped);
        peak = peak.max(total(v.token_counts()));
        last = Some(r);
    }
    let per_sec = 4;
    let valid = per_sec * REFRESH_TTL.as_secs() as usize + per_sec / 2 * TTL.as_secs() as usize;
    let bound = 2 * (valid + 2) + 64;
    assert!(peak <= bound, "peak {peak} > bound {bound}");
    assert!(
        peak < reconnects as usize / 4,
        "peak {peak}: pruning did not happen"
    );
    // The newest grant still works after all that pruning.
    let last = last.unwrap();
    let end = t0 + step * reconnects as u32;
    connect(&mut v, 0);
    assert!(v.auth(0, &refresh(&last.refresh_token), end).is_ok());
}

/// A burst of reconnects faster than the prune interval is still bounded: the size trigger
/// prunes when the maps double.
#[test]
fn token_maps_stay_bounded_in_a_reconnect_storm_faster_than_the_prune_interval() {
    let mut v = Venue::new(&VenueParams {
        token_ttl: Duration::from_millis(5),
        refresh_ttl: Duration::from_millis(5),
        ..params()
    });
    let t0 = Instant::now();
    let mut peak = 0;
    for i in 0..5_000u64 {
        // 10 000 reconnects a second; a token lives for 50 of them.
        let now = t0 + Duration::from_micros(100 * i);
        connect(&mut v, i + 1);
        v.auth(i + 1, &credentials(Some("storm")), now).unwrap();
        v.unregister_conn(i + 1, CloseKind::Dropped);
        peak = peak.max(total(v.token_counts()));
    }
    let bound = 2 * (2 * 50 + 2) + 64;
    assert!(peak <= bound, "peak {peak} > bound {bound}");
}

fn params() -> VenueParams {
    VenueParams {
        instruments: vec!["BTC-PERPETUAL".into()],
        credentials: vec![(ID.into(), SECRET.into())],
        rate: 0.0,
        depth: 5,
        seed: 7,
        token_ttl: TTL,
        refresh_ttl: REFRESH_TTL,
        log_capacity: 1 << 10,
        signature_window: Duration::from_secs(60),
    }
}
