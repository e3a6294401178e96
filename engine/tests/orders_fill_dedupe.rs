//! Property: whatever the interleaving of the three ways a fill arrives (order response,
//! `user.trades` notification, reconciliation query) and however often each repeats it, every
//! fill is delivered exactly once and the filled total ends at the sum of the fills.

mod orders_support;

use orders_support::*;
use proptest::prelude::*;
use serde_json::json;
use spinwire_engine::orders::OrderEventKind;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_fill_is_delivered_once_in_any_interleaving(
        sizes in proptest::collection::vec(1i64..5, 1..8),
        deliveries in proptest::collection::vec((0usize..8, 0u8..2), 0..40),
    ) {
        let amount: i64 = sizes.iter().sum::<i64>() + 1;
        let mut p = Pair::new(config());
        p.live();
        p.order(buy(1, amount, 100));
        p.reply("private/buy", json!({"order": order_obj(BASE, "open", amount, 0, 100), "trades": []}));
        let trade = |k: usize| trade_obj(BASE, 100 + k as u64, sizes[k], 100, "open");
        // Random repeats through notifications and single-trade pages of a query-like batch.
        for (k, how) in deliveries {
            let k = k % sizes.len();
            match how {
                0 => p.notify_trades(json!([trade(k)])),
                _ => p.notify_trades(json!([trade(k), trade((k + 1) % sizes.len())])),
            }
        }
        // Then every fill once more, all together.
        let all: Vec<_> = (0..sizes.len()).map(trade).collect();
        p.notify_trades(json!(all));
        let fills: Vec<(u64, i64)> = p
            .kinds(BASE)
            .into_iter()
            .filter_map(|(k, _)| match k {
                OrderEventKind::PartiallyFilled(f) | OrderEventKind::Filled(f) => {
                    Some((f.trade_seq, f.amount.raw()))
                }
                _ => None,
            })
            .collect();
        let mut seqs: Vec<u64> = fills.iter().map(|f| f.0).collect();
        seqs.sort_unstable();
        prop_assert_eq!(seqs, (0..sizes.len() as u64).map(|k| 100 + k).collect::<Vec<_>>());
        let total: i64 = fills.iter().map(|f| f.1).sum();
        prop_assert_eq!(total, px(amount - 1).raw());
        prop_assert_eq!(p.s.order_stats().fills, sizes.len() as u64);
    }
}
