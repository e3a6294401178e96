//! Model test: any sequence of operations on one thread behaves exactly like a bounded
//! `VecDeque` with the ring's (rounded) capacity.
#![cfg(not(loom))]

use std::collections::VecDeque;

use proptest::collection::vec;
use proptest::prelude::*;
use spinwire_ringbuf::{channel, Full};

#[derive(Debug, Clone)]
enum Op {
    Push(u16),
    PushSlice(Vec<u16>),
    Pop,
    PopInto(usize),
    Peek,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u16>().prop_map(Op::Push),
        2 => vec(any::<u16>(), 0..12).prop_map(Op::PushSlice),
        3 => Just(Op::Pop),
        2 => (0usize..12).prop_map(Op::PopInto),
        1 => Just(Op::Peek),
    ]
}

fn config() -> ProptestConfig {
    if cfg!(miri) {
        ProptestConfig {
            cases: 8,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    } else {
        ProptestConfig::with_cases(512)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_operation_sequence_matches_a_bounded_vecdeque(
        requested in 0usize..10,
        ops in vec(op(), 0..300),
    ) {
        let (mut tx, mut rx) = channel::<u16>(requested);
        let capacity = requested.max(1).next_power_of_two();
        prop_assert_eq!(tx.capacity(), capacity);
        let mut model: VecDeque<u16> = VecDeque::with_capacity(capacity);

        for op in ops {
            match op {
                Op::Push(v) => {
                    let expected = if model.len() < capacity {
                        model.push_back(v);
                        Ok(())
                    } else {
                        Err(Full(v))
                    };
                    prop_assert_eq!(tx.push(v), expected);
                }
                Op::PushSlice(values) => {
                    let n = values.len().min(capacity - model.len());
                    model.extend(&values[..n]);
                    prop_assert_eq!(tx.push_slice(&values), n);
                }
                Op::Pop => prop_assert_eq!(rx.pop(), model.pop_front()),
                Op::PopInto(len) => {
                    let mut out = vec![u16::MAX; len];
                    let n = len.min(model.len());
                    let expected: Vec<u16> = model.drain(..n).collect();
                    prop_assert_eq!(rx.pop_into(&mut out), n);
                    prop_assert_eq!(&out[..n], &expected[..]);
                    prop_assert!(out[n..].iter().all(|&v| v == u16::MAX));
                }
                Op::Peek => prop_assert_eq!(rx.peek(), model.front()),
            }
            prop_assert_eq!(rx.len(), model.len());
            prop_assert_eq!(tx.len(), model.len());
            prop_assert_eq!(tx.slots(), capacity - model.len());
            prop_assert_eq!(rx.is_empty(), model.is_empty());
            prop_assert_eq!(tx.is_full(), model.len() == capacity);
        }
    }
}
