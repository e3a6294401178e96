//! Single-threaded behaviour of the ring's API: capacity, counts, batches, peeking, abandonment,
//! errors and zero-sized types.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicUsize, Ordering};

use spinwire_ringbuf::{channel, try_channel, CapacityError, Consumer, Full, Producer};

#[test]
fn capacity_is_rounded_up_to_a_power_of_two() {
    for (asked, got) in [
        (1, 1),
        (2, 2),
        (3, 4),
        (5, 8),
        (8, 8),
        (1000, 1024),
        (1024, 1024),
    ] {
        let (tx, rx) = channel::<u32>(asked);
        assert_eq!(tx.capacity(), got, "asked for {asked}");
        assert_eq!(rx.capacity(), got, "asked for {asked}");
    }
}

#[test]
fn rounded_capacity_is_really_usable() {
    let (mut tx, _rx) = channel::<u32>(5);
    for i in 0..8 {
        assert_eq!(tx.push(i), Ok(()));
    }
    assert_eq!(tx.push(8), Err(Full(8)));
}

#[test]
fn zero_capacity_rounds_up_to_one_slot() {
    let (mut tx, mut rx) = channel::<u32>(0);
    assert_eq!(tx.capacity(), 1);
    assert_eq!(rx.capacity(), 1);
    assert_eq!(tx.push(7), Ok(()));
    assert_eq!(tx.push(8), Err(Full(8)));
    assert_eq!(rx.pop(), Some(7));
    assert_eq!(rx.pop(), None);
}

#[test]
fn too_large_capacity_is_an_error_not_a_crash() {
    assert_eq!(
        try_channel::<u8>(usize::MAX).unwrap_err(),
        CapacityError {
            requested: usize::MAX
        }
    );
    assert!(try_channel::<u8>((1 << (usize::BITS - 1)) + 1).is_err());
    // Fits in a usize as a count, but not as bytes.
    assert!(try_channel::<[u8; 1 << 20]>(1 << 50).is_err());
    let message = try_channel::<u8>(usize::MAX).unwrap_err().to_string();
    assert!(message.contains("too large"), "{message}");
}

#[test]
#[should_panic(expected = "is too large")]
fn channel_panics_with_a_clear_message_on_impossible_capacity() {
    let _ = channel::<u64>(usize::MAX);
}

#[test]
fn push_on_a_full_ring_gives_the_value_back() {
    let (mut tx, mut rx) = channel(2);
    tx.push(String::from("a")).unwrap();
    tx.push(String::from("b")).unwrap();
    let Full(back) = tx.push(String::from("c")).unwrap_err();
    assert_eq!(back, "c");
    assert_eq!(rx.pop().as_deref(), Some("a"));
    assert_eq!(tx.push(back), Ok(()));
    assert_eq!(rx.pop().as_deref(), Some("b"));
    assert_eq!(rx.pop().as_deref(), Some("c"));
}

#[test]
fn full_error_is_copy_displays_and_converts_to_a_boxed_error() {
    let err = Full(5u64);
    let copy = err;
    assert_eq!(err, copy);
    assert_eq!(err.into_inner(), 5);
    assert_eq!(err.to_string(), "ring is full");
    assert_eq!(format!("{err:?}"), "Full(5)");
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert_eq!(boxed.to_string(), "ring is full");
}

#[test]
fn values_come_out_in_the_order_they_went_in() {
    let (mut tx, mut rx) = channel(8);
    for i in 0..8 {
        tx.push(i).unwrap();
    }
    for i in 0..8 {
        assert_eq!(rx.pop(), Some(i));
    }
    assert_eq!(rx.pop(), None);
}

#[test]
fn indices_wrap_past_capacity_many_times() {
    let (mut tx, mut rx) = channel::<u64>(4);
    let mut next_in = 0;
    let mut next_out = 0;
    // Uneven step sizes make the indices land on every slot offset at every phase.
    for round in 0..1000u64 {
        let burst = 1 + round % 4;
        for _ in 0..burst {
            tx.push(next_in).unwrap();
            next_in += 1;
        }
        let take = 1 + (round * 7) % burst;
        for _ in 0..take {
            assert_eq!(rx.pop(), Some(next_out));
            next_out += 1;
        }
        while !rx.is_empty() {
            assert_eq!(rx.pop(), Some(next_out));
            next_out += 1;
        }
    }
    assert_eq!(next_in, next_out);
    assert!(next_in > 4 * 500, "indices went around the ring many times");
}

#[test]
fn batches_wrap_around_the_end_of_the_buffer() {
    let (mut tx, mut rx) = channel::<u32>(8);
    let mut out = [0u32; 8];
    let mut next = 0u32;
    for _ in 0..100 {
        let batch: Vec<u32> = (next..next + 5).collect();
        assert_eq!(tx.push_slice(&batch), 5);
        assert_eq!(rx.pop_into(&mut out[..5]), 5);
        assert_eq!(&out[..5], &batch[..]);
        next += 5;
    }
}

#[test]
fn push_slice_fills_what_fits_and_reports_the_count() {
    let (mut tx, mut rx) = channel::<u32>(4);
    tx.push(100).unwrap();
    assert_eq!(tx.push_slice(&[1, 2, 3, 4, 5]), 3);
    assert!(tx.is_full());
    assert_eq!(tx.push_slice(&[6]), 0);
    assert_eq!(tx.push_slice(&[]), 0);
    let mut out = [0u32; 4];
    assert_eq!(rx.pop_into(&mut out), 4);
    assert_eq!(out, [100, 1, 2, 3]);
    // After the consumer made room, the producer sees it on the next batch.
    assert_eq!(tx.push_slice(&[4, 5]), 2);
    assert_eq!(rx.pop(), Some(4));
    assert_eq!(rx.pop(), Some(5));
}

#[test]
fn pop_into_takes_what_is_there_and_leaves_the_rest_of_dst_untouched() {
    let (mut tx, mut rx) = channel::<u32>(8);
    tx.push_slice(&[1, 2, 3]);
    let mut out = [9u32; 5];
    assert_eq!(rx.pop_into(&mut out), 3);
    assert_eq!(out, [1, 2, 3, 9, 9]);
    assert_eq!(rx.pop_into(&mut out), 0);
    assert_eq!(out, [1, 2, 3, 9, 9]);
    tx.push_slice(&[4, 5, 6, 7]);
    let mut small = [0u32; 2];
    assert_eq!(rx.pop_into(&mut small), 2);
    assert_eq!(small, [4, 5]);
    assert_eq!(rx.pop_into(&mut []), 0);
    assert_eq!(rx.len(), 2);
}

#[test]
fn peek_shows_the_oldest_value_without_consuming_it() {
    let (mut tx, mut rx) = channel(4);
    assert_eq!(rx.peek(), None);
    tx.push(1).unwrap();
    tx.push(2).unwrap();
    assert_eq!(rx.peek(), Some(&1));
    assert_eq!(rx.peek(), Some(&1));
    assert_eq!(rx.len(), 2);
    assert_eq!(rx.pop(), Some(1));
    assert_eq!(rx.peek(), Some(&2));
    assert_eq!(rx.pop(), Some(2));
    assert_eq!(rx.peek(), None);
}

#[test]
fn len_slots_full_and_empty_agree_on_both_ends() {
    let (mut tx, mut rx) = channel::<u8>(4);
    let check = |tx: &Producer<u8>, rx: &Consumer<u8>, len: usize| {
        assert_eq!(tx.len(), len);
        assert_eq!(rx.len(), len);
        assert_eq!(tx.slots(), 4 - len);
        assert_eq!(tx.is_full(), len == 4);
        assert_eq!(tx.is_empty(), len == 0);
        assert_eq!(rx.is_empty(), len == 0);
    };
    check(&tx, &rx, 0);
    tx.push(1).unwrap();
    check(&tx, &rx, 1);
    tx.push_slice(&[2, 3, 4]);
    check(&tx, &rx, 4);
    rx.pop();
    check(&tx, &rx, 3);
    rx.pop_into(&mut [0; 3]);
    check(&tx, &rx, 0);
}

#[test]
fn consumer_sees_abandonment_after_the_producer_drops_and_can_still_drain() {
    let (mut tx, mut rx) = channel(4);
    tx.push(1).unwrap();
    tx.push(2).unwrap();
    assert!(!rx.is_abandoned());
    drop(tx);
    assert!(rx.is_abandoned());
    assert_eq!(rx.pop(), Some(1));
    assert_eq!(rx.pop(), Some(2));
    assert_eq!(rx.pop(), None);
    assert!(rx.is_abandoned());
}

#[test]
fn producer_sees_abandonment_after_the_consumer_drops() {
    let (mut tx, rx) = channel(4);
    assert!(!tx.is_abandoned());
    drop(rx);
    assert!(tx.is_abandoned());
    // Pushing is futile but harmless; the values are dropped with the ring.
    assert_eq!(tx.push(1), Ok(()));
}

#[test]
fn zero_sized_values_are_counted_and_bounded() {
    let (mut tx, mut rx) = channel::<()>(3);
    assert_eq!(tx.capacity(), 4);
    for _ in 0..4 {
        assert_eq!(tx.push(()), Ok(()));
    }
    assert_eq!(tx.push(()), Err(Full(())));
    assert_eq!(rx.len(), 4);
    assert_eq!(rx.peek(), Some(&()));
    assert_eq!(rx.pop(), Some(()));
    assert_eq!(tx.push_slice(&[(); 10]), 1);
    let mut out = [(); 10];
    assert_eq!(rx.pop_into(&mut out), 4);
    assert_eq!(rx.pop(), None);
    // Many laps of a zero-sized ring.
    for _ in 0..1000 {
        assert_eq!(tx.push_slice(&[(); 3]), 3);
        assert_eq!(rx.pop_into(&mut out), 3);
    }
    assert!(rx.is_empty());
}

static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
struct CountedZst;

impl Drop for CountedZst {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn zero_sized_values_with_destructors_are_dropped_exactly_once() {
    assert_eq!(std::mem::size_of::<CountedZst>(), 0);
    let (mut tx, mut rx) = channel::<CountedZst>(4);
    for _ in 0..4 {
        tx.push(CountedZst).unwrap();
    }
    let Full(back) = tx.push(CountedZst).unwrap_err();
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 0, "Full must not drop");
    drop(back);
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 1);
    let popped = rx.pop().unwrap();
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 1, "pop must not drop");
    drop(popped);
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 2);
    drop(tx);
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 2);
    drop(rx);
    assert_eq!(
        ZST_DROPS.load(Ordering::SeqCst),
        5,
        "three leftovers dropped once"
    );
}

#[test]
fn ends_can_move_to_other_threads_and_debug_print() {
    fn assert_send<S: Send>(_: &S) {}
    let (tx, rx) = channel::<Box<u8>>(2);
    assert_send(&tx);
    assert_send(&rx);
    let debug = format!("{tx:?} {rx:?}");
    assert!(
        debug.contains("Producer") && debug.contains("capacity: 2"),
        "{debug}"
    );
    assert!(debug.contains("Consumer"), "{debug}");
}
