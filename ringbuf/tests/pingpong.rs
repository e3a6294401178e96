//! Two rings, two threads, strict ping-pong: every value sent comes back before the next is
//! sent, so each hand-over crosses an empty ring (the latency path).

use std::thread;

#[test]
fn ping_pong_over_two_rings_delivers_every_value_back() {
    let rounds: u64 = if cfg!(miri) { 200 } else { 200_000 };
    let (mut there_tx, mut there_rx) = spinwire_ringbuf::channel::<u64>(1024);
    let (mut back_tx, mut back_rx) = spinwire_ringbuf::channel::<u64>(1024);
    let echo = thread::spawn(move || {
        for _ in 0..rounds {
            let v = loop {
                if let Some(v) = there_rx.pop() {
                    break v;
                }
                thread::yield_now();
            };
            back_tx.push(v).unwrap();
        }
    });
    for i in 0..rounds {
        there_tx.push(i).unwrap();
        let v = loop {
            if let Some(v) = back_rx.pop() {
                break v;
            }
            thread::yield_now();
        };
        assert_eq!(v, i);
    }
    echo.join().unwrap();
}
