//! Shared test support for the zero-allocation WebSocket tests (`engine_no_alloc.rs` over TCP,
//! `tls_no_alloc.rs` over TLS): the engine-thread loop that drives one connection through the
//! reactor while numbered frames arrive, checks each frame's number without allocating, echoes
//! some back, and counts the allocations made after a warm-up.
//!
//! Use in a test file: `mod alloc_support;` (with its counting `#[global_allocator]`) and
//! `mod ws_drive_support;`.

use std::time::{Duration, Instant};

use spinwire_engine::connection::{Drive, Event, WsConnection};
use spinwire_engine::reactor::Reactor;
use spinwire_engine::ws::Message;

use crate::alloc_support;

/// Drives the connection in `token` until it closes. Frame `n` must carry `"change_id":n` at
/// its end; frames with `n % echo_every == echo_every - 1` are echoed. Counting starts after
/// `warmup` frames and stops at `total`. Returns the frames received and the allocations
/// counted (up to the close if fewer than `total` came).
pub fn drive_counting(
    reactor: &mut Reactor<WsConnection>,
    token: mio::Token,
    warmup: u64,
    total: u64,
    echo_every: u64,
) -> (u64, u64) {
    let mut received = 0u64;
    let mut allocations: Option<u64> = None;
    let mut closed = false;
    let mut again = true;
    let started = Instant::now();
    while !closed {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stalled after {received} frames"
        );
        let mut ready = again;
        reactor.turn(|_, _, _, _| ready = true).unwrap();
        if !ready {
            continue;
        }
        let conn = reactor.get_mut(token).unwrap();
        let result = conn.drive(|event, outbox| {
            if let Event::Message(Message::Text(text)) = event {
                // The change id is the sequence number (checked without allocating).
                let digits = text
                    .rsplit_once(r#""change_id":"#)
                    .map(|(_, tail)| tail.trim_end_matches('}'))
                    .unwrap_or("");
                assert_eq!(digits.parse::<u64>().ok(), Some(received));
                if received % echo_every == echo_every - 1 {
                    outbox.send_text(text).expect("echo queued");
                }
                received += 1;
                if received == warmup {
                    alloc_support::start_counting();
                }
                if received == total {
                    allocations = Some(alloc_support::stop_counting());
                }
            }
        });
        match result.expect("connection failed") {
            Drive::Again => again = true,
            Drive::Wait => again = false,
            Drive::Closed => closed = true,
        }
    }
    (
        received,
        allocations.unwrap_or_else(alloc_support::stop_counting),
    )
}
