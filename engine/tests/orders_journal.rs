//! The order journal: records round-trip, survive a crash of the process (leaked journal,
//! `kill -9`), a torn last record is tolerated and a damaged middle record refused, compaction
//! keeps exactly the open orders, the capacity is enforced, each flush policy flushes (seen from
//! a second open of the file: page-cache dirty counts through `cachestat(2)`), and `append`
//! allocates nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spinwire_engine::md::{Direction, Fixed};
use spinwire_engine::orders::journal::{
    mint_base, scan, FinalReason, FlushPolicy, InstrumentName, Journal, JournalConfig,
    JournalEntry, JournalError, JournalFull, JournalRecord, OrderIntent, RecoveredState,
    VenueOrderId, HEADER_SIZE, RECORD_SIZE,
};
use spinwire_engine::orders::{ClientOrderId, Fill, ReasonText};
use spinwire_engine::venue::deribit::{OrderType, TimeInForce};

mod alloc_support;

#[global_allocator]
static GLOBAL: alloc_support::CountingAlloc = alloc_support::CountingAlloc;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "spinwire-journal-{}-{name}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn journal(&self) -> PathBuf {
        self.0.join("orders.jrnl")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(path: &Path, capacity: usize, flush: FlushPolicy) -> JournalConfig {
    let mut c = JournalConfig::new(path);
    c.capacity = capacity;
    c.flush = flush;
    c
}

fn fx(v: i64) -> Fixed {
    Fixed::from_int(v).unwrap()
}

fn intent(name: &str, amount: i64) -> OrderIntent {
    OrderIntent {
        instrument: InstrumentName::new(name).unwrap(),
        direction: Direction::Sell,
        order_type: OrderType::Limit,
        price: Some(Fixed::from_parts(600_005, 1).unwrap()),
        amount: fx(amount),
        time_in_force: TimeInForce::ImmediateOrCancel,
        post_only: true,
        reduce_only: false,
        ttl_deadline_unix_ms: 1_700_000_123_456,
    }
}

/// One record of every kind, for order `id`.
fn every_kind(id: u64) -> Vec<JournalRecord> {
    let id = ClientOrderId(id);
    let tag = 42;
    vec![
        JournalRecord::Intent {
            id,
            tag,
            intent: intent("BTC_USDC-27DEC24-100000-C-AND-SOME-PADDING-TO-48", 10),
        },
        JournalRecord::Sent {
            id,
            tag,
            attempt: 3,
        },
        JournalRecord::Accepted {
            id,
            tag,
            venue_order_id: VenueOrderId::new("ETH-584849853-0123456789abcdefgh").unwrap(),
        },
        JournalRecord::Rejected {
            id,
            tag,
            code: -10_028,
            reason: ReasonText::new("too_many_requests — κόσμε"),
        },
        JournalRecord::Fill {
            id,
            tag,
            fill: Fill {
                price: Fixed::from_raw(-5),
                amount: fx(2),
                filled_total: fx(3),
                trade_seq: u64::MAX,
            },
        },
        JournalRecord::CancelIntent { id, tag },
        JournalRecord::EditIntent {
            id,
            tag,
            amount: fx(7),
            price: None,
        },
        JournalRecord::Edited {
            id,
            tag,
            amount: fx(7),
            price: Some(Fixed::MIN),
        },
        JournalRecord::Cancelled { id, tag },
        JournalRecord::Expired { id, tag },
        JournalRecord::Resent { id, tag },
        JournalRecord::Unknown { id, tag },
        JournalRecord::Final {
            id,
            tag,
            reason: FinalReason::Refused,
        },
        JournalRecord::Consumed {
            upto_seq: u64::MAX - 1,
        },
    ]
}

fn read_all(path: &Path) -> Vec<JournalEntry> {
    let mut v = Vec::new();
    scan(path, |e| v.push(*e)).unwrap();
    v
}

#[test]
fn every_record_kind_round_trips_through_the_file() {
    let dir = TempDir::new("roundtrip");
    let path = dir.journal();
    let (mut j, r) = Journal::open(config(&path, 64, FlushPolicy::Never)).unwrap();
    assert!(!r.existed());
    let records = every_kind(9);
    for (i, rec) in records.iter().enumerate() {
        j.append_at(rec, 1_000 + i as u64).unwrap();
    }
    // Read back while the journal is alive (page cache), then after drop.
    let check = || {
        let got = read_all(&path);
        assert_eq!(got.len(), records.len());
        for (i, (e, rec)) in got.iter().zip(&records).enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
            assert_eq!(e.at_unix_ns, 1_000 + i as u64);
            assert_eq!(&e.record, rec);
        }
    };
    check();
    drop(j);
    check();
}

#[test]
fn appended_records_survive_a_leaked_journal_without_any_flush() {
    let dir = TempDir::new("leak");
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(&path, 1000, FlushPolicy::Never)).unwrap();
    for i in 1..=100u64 {
        let id = ClientOrderId(i);
        j.append(&JournalRecord::Intent {
            id,
            tag: i,
            intent: intent("BTC-PERPETUAL", 5),
        })
        .unwrap();
        j.append(&JournalRecord::Sent {
            id,
            tag: i,
            attempt: 1,
        })
        .unwrap();
        if i % 2 == 0 {
            j.append(&JournalRecord::Final {
                id,
                tag: i,
                reason: FinalReason::Cancelled,
            })
            .unwrap();
        }
    }
    assert_eq!(j.stats().flushed, 0, "nothing was flushed");
    // The crash: no flush, no drop.
    std::mem::forget(j);
    let r = Journal::inspect(&path).unwrap();
    assert_eq!(r.records_read(), 250);
    assert_eq!(r.torn_tail(), None);
    let ids: Vec<u64> = r.orders().iter().map(|o| o.id.0).collect();
    assert_eq!(ids, (1..=100).filter(|i| i % 2 == 1).collect::<Vec<_>>());
    assert!(r
        .orders()
        .iter()
        .all(|o| o.state == RecoveredState::Sent && o.attempts == 1));
    assert_eq!(r.final_orders(), 50);
    assert_eq!(r.next_id_floor(), 101);
}

/// Writes `n` Intent+Sent pairs (2n records) and returns the path.
fn journal_with_pairs(dir: &TempDir, n: u64) -> PathBuf {
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    for i in 1..=n {
        let id = ClientOrderId(i);
        j.append(&JournalRecord::Intent {
            id,
            tag: i,
            intent: intent("ETH-PERPETUAL", 1),
        })
        .unwrap();
        j.append(&JournalRecord::Sent {
            id,
            tag: i,
            attempt: 1,
        })
        .unwrap();
    }
    path
}

#[test]
fn a_last_record_cut_short_is_tolerated_and_reported() {
    let dir = TempDir::new("cut");
    let path = journal_with_pairs(&dir, 10);
    // Cut the file in the middle of record 19 (the 20th and last: Sent of order 10).
    let cut = HEADER_SIZE + 19 * RECORD_SIZE + 50;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    let (j, r) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    let torn = r.torn_tail().expect("torn tail reported");
    assert_eq!(torn.record, 19);
    assert_eq!(torn.offset, (HEADER_SIZE + 19 * RECORD_SIZE) as u64);
    assert_eq!(r.records_read(), 19);
    assert_eq!(r.orders().len(), 10);
    assert_eq!(r.orders()[9].state, RecoveredState::Intended);
    assert_eq!(r.orders()[8].state, RecoveredState::Sent);
    assert_eq!(j.len(), 19);
}

#[test]
fn a_torn_or_zeroed_last_record_is_tolerated() {
    // Half-written (the first 64 bytes zero, the rest there): checksum mismatch, reported.
    let dir = TempDir::new("torn");
    let path = journal_with_pairs(&dir, 10);
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start((HEADER_SIZE + 19 * RECORD_SIZE) as u64))
        .unwrap();
    f.write_all(&[0u8; 64]).unwrap();
    drop(f);
    let (_j, r) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    let torn = r.torn_tail().expect("torn tail reported");
    assert_eq!((torn.record, torn.what), (19, "checksum mismatch"));
    assert_eq!(r.records_read(), 19);

    // Zeroed in full: indistinguishable from never written, so the records end before it.
    let dir = TempDir::new("zeroed");
    let path = journal_with_pairs(&dir, 10);
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start((HEADER_SIZE + 19 * RECORD_SIZE) as u64))
        .unwrap();
    f.write_all(&[0u8; RECORD_SIZE]).unwrap();
    drop(f);
    let (_j, r) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    assert_eq!(r.torn_tail(), None);
    assert_eq!(r.records_read(), 19);
    assert_eq!(r.orders()[9].state, RecoveredState::Intended);
}

#[test]
fn a_flipped_byte_in_a_middle_record_is_refused_and_nothing_is_changed() {
    let dir = TempDir::new("flip");
    let path = journal_with_pairs(&dir, 15);
    let mut bytes = fs::read(&path).unwrap();
    bytes[2304 + 40] ^= 0x01; // record 17 (0-based): byte 2304
    fs::write(&path, &bytes).unwrap();
    let err = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap_err();
    match &err {
        JournalError::Corrupt {
            record,
            offset,
            what,
            ..
        } => assert_eq!((*record, *offset, *what), (17, 2304, "checksum mismatch")),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "journal {}: record 17 at byte 2304: checksum mismatch (the file is corrupt in the \
             middle; refusing to start — move it aside to start without it)",
            path.display()
        )
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "the file is untouched");
    assert!(!dir.0.join("orders.jrnl.compact").exists());
    // inspect refuses it the same way.
    assert!(matches!(
        Journal::inspect(&path),
        Err(JournalError::Corrupt { record: 17, .. })
    ));

    // A zeroed record followed by valid ones is refused too.
    let mut bytes2 = fs::read(&path).unwrap();
    bytes2[2304 + 40] ^= 0x01;
    bytes2[HEADER_SIZE + 3 * RECORD_SIZE..HEADER_SIZE + 4 * RECORD_SIZE].fill(0);
    fs::write(&path, &bytes2).unwrap();
    match Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap_err() {
        JournalError::Corrupt { record, what, .. } => {
            assert_eq!(record, 3);
            assert!(what.contains("zeroed"), "{what}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn bad_headers_are_refused_with_a_clear_error_and_left_alone() {
    let dir = TempDir::new("header");
    let path = journal_with_pairs(&dir, 2);
    let good = fs::read(&path).unwrap();
    for (at, val, expect) in [
        (0usize, b'X', "bad magic"),
        (8, 9, "format version 9 is not supported"),
        (12, 64, "record size 64 bytes"),
        (20, 1, "header checksum mismatch"),
    ] {
        let mut b = good.clone();
        b[at] = val;
        fs::write(&path, &b).unwrap();
        let e = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap_err();
        assert!(matches!(e, JournalError::BadHeader { .. }), "{e:?}");
        assert!(e.to_string().contains(expect), "{e} lacks {expect}");
        assert_eq!(fs::read(&path).unwrap(), b);
    }
    fs::write(&path, b"short").unwrap();
    let e = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap_err();
    assert!(e.to_string().contains("too short"), "{e}");
}

#[test]
fn a_second_open_while_the_first_is_alive_is_refused() {
    let dir = TempDir::new("lock");
    let path = dir.journal();
    let (j, _) = Journal::open(config(&path, 8, FlushPolicy::Never)).unwrap();
    let e = Journal::open(config(&path, 8, FlushPolicy::Never)).unwrap_err();
    assert!(matches!(e, JournalError::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("in use"), "{e}");
    drop(j);
    Journal::open(config(&path, 8, FlushPolicy::Never)).unwrap();
}

#[test]
fn compaction_keeps_exactly_the_open_orders_and_the_id_floor() {
    let dir = TempDir::new("compact");
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    let t = |tag: u64| tag * 10;
    let mut a = |r: JournalRecord| j.append(&r).unwrap();
    for i in 1..=6u64 {
        a(JournalRecord::Intent {
            id: ClientOrderId(i),
            tag: t(i),
            intent: intent("BTC-PERPETUAL", 10),
        });
    }
    let id = ClientOrderId;
    // 1: accepted, partially filled, cancel pending.
    a(JournalRecord::Sent {
        id: id(1),
        tag: 10,
        attempt: 1,
    });
    a(JournalRecord::Accepted {
        id: id(1),
        tag: 10,
        venue_order_id: VenueOrderId::new("BTC-1").unwrap(),
    });
    a(JournalRecord::Fill {
        id: id(1),
        tag: 10,
        fill: Fill {
            price: fx(1),
            amount: fx(4),
            filled_total: fx(4),
            trade_seq: 77,
        },
    });
    a(JournalRecord::CancelIntent { id: id(1), tag: 10 });
    // 2: filled and final.
    a(JournalRecord::Fill {
        id: id(2),
        tag: 20,
        fill: Fill {
            price: fx(1),
            amount: fx(10),
            filled_total: fx(10),
            trade_seq: 78,
        },
    });
    a(JournalRecord::Final {
        id: id(2),
        tag: 20,
        reason: FinalReason::Filled,
    });
    // 3: unknown after a drop, edit pending.
    a(JournalRecord::Sent {
        id: id(3),
        tag: 30,
        attempt: 1,
    });
    a(JournalRecord::EditIntent {
        id: id(3),
        tag: 30,
        amount: fx(5),
        price: None,
    });
    a(JournalRecord::Unknown { id: id(3), tag: 30 });
    // 4: rejected and final.
    a(JournalRecord::Rejected {
        id: id(4),
        tag: 40,
        code: 10_009,
        reason: ReasonText::new("no"),
    });
    a(JournalRecord::Final {
        id: id(4),
        tag: 40,
        reason: FinalReason::Rejected,
    });
    // 5: edited, then a late record after a Final of another order (ignored: no such order).
    a(JournalRecord::Edited {
        id: id(5),
        tag: 50,
        amount: fx(3),
        price: Some(fx(2)),
    });
    a(JournalRecord::Cancelled {
        id: id(99),
        tag: 990,
    });
    // 6: cancelled but its Final not yet written (terminal, kept).
    a(JournalRecord::Cancelled { id: id(6), tag: 60 });
    // The strategy took every event: nothing to replay, final orders need not be kept.
    a(JournalRecord::Consumed { upto_seq: 20 });
    drop(j);

    let (j, r) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    assert_eq!(r.records_read(), 21);
    assert_eq!(r.ignored_records(), 1);
    assert!(r.replay().is_empty());
    assert_eq!(r.final_orders(), 2);
    assert_eq!(r.next_id_floor(), 100);
    let ids: Vec<u64> = r.orders().iter().map(|o| o.id.0).collect();
    assert_eq!(ids, [1, 3, 5, 6]);
    let o = &r.orders()[0];
    assert_eq!(o.tag, 10);
    assert_eq!(o.state, RecoveredState::Accepted);
    assert_eq!(o.venue_order_id.unwrap().as_str(), "BTC-1");
    assert_eq!(
        (o.filled_total, o.fills, o.last_trade_seq),
        (fx(4), 1, Some(77))
    );
    assert!(o.pending_cancel);
    let o = &r.orders()[1];
    assert_eq!(o.state, RecoveredState::Unknown);
    assert_eq!(o.pending_edit.unwrap().amount, fx(5));
    let o = &r.orders()[2];
    assert_eq!((o.amount, o.price), (fx(3), Some(fx(2))));
    assert_eq!(o.state, RecoveredState::Intended);
    let o = &r.orders()[3];
    assert_eq!(o.state, RecoveredState::Cancelled);
    assert!(o.state.is_terminal());
    // The compacted file holds exactly the open orders' records, renumbered from 1, then the
    // consumed mark in the new numbering.
    let kept = 5 + 4 + 2 + 2;
    assert_eq!(r.compacted_records(), kept + 1);
    assert_eq!(j.len(), kept + 1);
    assert_eq!(r.consumed_upto(), Some(kept));
    let entries = read_all(&path);
    assert_eq!(entries.len() as u64, kept + 1);
    assert!(entries
        .iter()
        .enumerate()
        .all(|(i, e)| e.seq == i as u64 + 1));
    assert!(entries[..kept as usize]
        .iter()
        .all(|e| [1, 3, 5, 6].contains(&e.record.id().0)));
    assert_eq!(
        entries[kept as usize].record,
        JournalRecord::Consumed { upto_seq: kept }
    );
    drop(j);

    // Reopening gives the same orders; finishing them all leaves an empty journal that still
    // remembers the id floor.
    let (mut j, r2) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    // The same orders (only `last_seq` differs: compaction renumbers).
    let strip = |o: &[spinwire_engine::orders::journal::RecoveredOrder]| {
        o.iter()
            .map(|o| spinwire_engine::orders::journal::RecoveredOrder { last_seq: 0, ..*o })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(r2.orders()), strip(r.orders()));
    assert_eq!(r2.orders()[3].last_seq, kept);
    assert_eq!(r2.generation(), 1, "created (0), compacted once (1)");
    for o in r2.orders() {
        j.append(&JournalRecord::Final {
            id: o.id,
            tag: o.tag,
            reason: FinalReason::Cancelled,
        })
        .unwrap();
    }
    drop(j);
    let (j, r3) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    assert!(r3.orders().is_empty());
    assert_eq!(j.len(), 0);
    drop(j);
    let (_j, r4) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    assert_eq!(r4.next_id_floor(), 100);
    assert_eq!(fs::metadata(&path).unwrap().len(), 257 * RECORD_SIZE as u64);
}

#[test]
fn compaction_keeps_final_orders_with_events_after_the_consumed_mark_and_renumbers_it() {
    use spinwire_engine::orders::OrderEventKind;
    let dir = TempDir::new("consumed");
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    let id = ClientOrderId;
    let mut a = |r: JournalRecord| j.append(&r).unwrap();
    let fill = |amount, total, seq| Fill {
        price: fx(100),
        amount: fx(amount),
        filled_total: fx(total),
        trade_seq: seq,
    };
    // 1: filled and final, all taken. 2: accepted, part filled (taken), then the rest filled
    // and final (not taken). 3: open, accepted (not taken).
    for i in 1..=3u64 {
        a(JournalRecord::Intent {
            id: id(i),
            tag: i,
            intent: intent("BTC-PERPETUAL", 10),
        });
    }
    let v = VenueOrderId::new("BTC-1").unwrap();
    a(JournalRecord::Accepted {
        id: id(1),
        tag: 1,
        venue_order_id: v,
    }); // 4
    a(JournalRecord::Fill {
        id: id(1),
        tag: 1,
        fill: fill(10, 10, 1),
    }); // 5
    a(JournalRecord::Final {
        id: id(1),
        tag: 1,
        reason: FinalReason::Filled,
    }); // 6
    a(JournalRecord::Accepted {
        id: id(2),
        tag: 2,
        venue_order_id: v,
    }); // 7
    a(JournalRecord::Fill {
        id: id(2),
        tag: 2,
        fill: fill(4, 4, 2),
    }); // 8
    a(JournalRecord::Consumed { upto_seq: 8 }); // 9
    a(JournalRecord::Fill {
        id: id(2),
        tag: 2,
        fill: fill(6, 10, 3),
    }); // 10
    a(JournalRecord::Final {
        id: id(2),
        tag: 2,
        reason: FinalReason::Filled,
    }); // 11
    a(JournalRecord::Accepted {
        id: id(3),
        tag: 3,
        venue_order_id: v,
    }); // 12
    drop(j);

    let r = Journal::inspect(&path).unwrap();
    assert_eq!(r.consumed_upto(), Some(8));
    let seqs: Vec<(u64, u64, OrderEventKind)> = r
        .replay()
        .iter()
        .map(|e| (e.seq, e.event.id.0, e.event.kind))
        .collect();
    assert_eq!(
        seqs,
        vec![
            (10, 2, OrderEventKind::Filled(fill(6, 10, 3))),
            (12, 3, OrderEventKind::Accepted)
        ]
    );
    assert!(r.replay().iter().all(|e| e.event.resolved));

    // Compaction: order 1 goes, order 2 stays (final, but its fill was not taken), the mark
    // follows the renumbering (order 2's intent, order 3's intent, 7 and 8 → 1..=4).
    let (j, r) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    let ids: Vec<u64> = r.orders().iter().map(|o| o.id.0).collect();
    assert_eq!(ids, [3], "only order 3 is open");
    assert_eq!(r.consumed_upto(), Some(4));
    let seqs: Vec<(u64, u64)> = r.replay().iter().map(|e| (e.seq, e.event.id.0)).collect();
    assert_eq!(seqs, vec![(5, 2), (7, 3)]);
    let entries = read_all(&path);
    assert_eq!(entries.len(), 8);
    assert_eq!(
        entries[4].record,
        JournalRecord::Fill {
            id: id(2),
            tag: 2,
            fill: fill(6, 10, 3)
        }
    );
    assert_eq!(entries[7].record, JournalRecord::Consumed { upto_seq: 4 });
    drop(j);
    // Opened again, nothing taken in between: the same replay.
    let (mut j, r2) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    assert_eq!(r2.replay(), r.replay());
    // Everything taken: the final order is dropped, nothing is replayed.
    let last = j.len();
    j.append(&JournalRecord::Consumed { upto_seq: last })
        .unwrap();
    drop(j);
    let (_j, r3) = Journal::open(config(&path, 256, FlushPolicy::Never)).unwrap();
    assert!(r3.replay().is_empty());
    assert_eq!(r3.orders().len(), 1);
    assert_eq!(r3.final_orders(), 1);
}

#[test]
fn a_full_journal_refuses_appends_and_a_small_capacity_is_refused_at_open() {
    let dir = TempDir::new("full");
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(&path, 4, FlushPolicy::Never)).unwrap();
    let rec = |i| JournalRecord::Intent {
        id: ClientOrderId(i),
        tag: i,
        intent: intent("BTC-PERPETUAL", 1),
    };
    for i in 1..=4 {
        j.append(&rec(i)).unwrap();
    }
    assert_eq!(j.remaining(), 0);
    assert_eq!(j.append(&rec(5)), Err(JournalFull));
    assert_eq!(j.append(&rec(6)), Err(JournalFull));
    drop(j);
    assert_eq!(read_all(&path).len(), 4);
    let e = Journal::open(config(&path, 3, FlushPolicy::Never)).unwrap_err();
    assert!(
        matches!(
            e,
            JournalError::CapacityTooSmall {
                live: 4,
                capacity: 3,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(read_all(&path).len(), 4, "the journal is untouched");
    let (mut j, r) = Journal::open(config(&path, 5, FlushPolicy::Never)).unwrap();
    assert_eq!(r.orders().len(), 4);
    j.append(&rec(5)).unwrap();
    assert_eq!(j.append(&rec(6)), Err(JournalFull));
}

#[test]
fn bad_configurations_are_refused() {
    let dir = TempDir::new("config");
    let path = dir.journal();
    for c in [
        config(&path, 0, FlushPolicy::Never),
        config(&path, 8, FlushPolicy::EveryN(0)),
        config(&path, 8, FlushPolicy::Interval(Duration::ZERO)),
        config(&path, usize::MAX, FlushPolicy::Never),
    ] {
        assert!(matches!(Journal::open(c), Err(JournalError::BadConfig(_))));
    }
    assert!(!path.exists());
}

#[test]
fn mint_base_is_above_the_floor_and_the_time_base() {
    assert_eq!(mint_base(0, 0), 1);
    assert_eq!(mint_base(5, 0), 5);
    assert_eq!(mint_base(5, 1), 1 << 20);
    assert_eq!(mint_base(u64::MAX, 1_700_000_000_000), u64::MAX);
    let t = 1_700_000_000_000u64;
    assert_eq!(mint_base(3, t), t << 20);
    // A later run that starts 1 ms later never reuses ids if fewer than 2^20 were minted.
    assert!(mint_base(0, t + 1) >= mint_base(0, t) + (1 << 20));
}

// ---- flush policies, seen from a second open of the file -------------------------------------

/// Pages holding the header and the first `records` records that are dirty or under writeback
/// in the page cache, through `cachestat(2)` on a second descriptor (`None` on kernels before
/// 6.5). (The pages after them are dirty anyway: the journal faults them in ahead, writable.)
fn unflushed_pages(path: &Path, records: u64) -> Option<u64> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    let f = File::open(path).unwrap();
    let range = Range {
        off: 0,
        len: HEADER_SIZE as u64 + records * RECORD_SIZE as u64,
    };
    let mut st = Stat::default();
    // SAFETY: cachestat reads `range` and writes `st`, both live and of the kernel's layout.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            f.as_raw_fd(),
            &range as *const Range,
            &mut st as *mut Stat,
            0u32,
        )
    };
    (rc == 0).then_some(st.nr_dirty + st.nr_writeback)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sent(i: u64) -> JournalRecord {
    JournalRecord::Sent {
        id: ClientOrderId(i),
        tag: i,
        attempt: 1,
    }
}

#[test]
fn every_record_policy_is_durable_when_append_returns() {
    let dir = TempDir::new("every-record");
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(&path, 100, FlushPolicy::EveryRecord)).unwrap();
    for i in 1..=40 {
        j.append(&sent(i)).unwrap();
        assert_eq!(j.stats().flushed, i);
        if let Some(d) = unflushed_pages(&path, j.len()) {
            assert_eq!(d, 0, "after append {i}");
        }
    }
    assert_eq!(Journal::inspect(&path).unwrap().records_read(), 40);
}

#[test]
fn every_n_policy_flushes_after_n_records() {
    let dir = TempDir::new("every-n");
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(&path, 100, FlushPolicy::EveryN(4))).unwrap();
    for i in 1..=3 {
        j.append(&sent(i)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(j.stats().flushed, 0, "3 < 4 records: not flushed yet");
    if let Some(d) = unflushed_pages(&path, j.len()) {
        assert!(d > 0, "the appended page is dirty");
    }
    j.append(&sent(4)).unwrap();
    wait_until("the flush of 4 records", || j.stats().flushed == 4);
    if let Some(d) = unflushed_pages(&path, j.len()) {
        assert_eq!(d, 0);
    }
    for i in 5..=8 {
        j.append(&sent(i)).unwrap();
    }
    wait_until("the flush of 8 records", || j.stats().flushed == 8);
    assert_eq!(Journal::inspect(&path).unwrap().records_read(), 8);
}

#[test]
fn interval_policy_flushes_within_the_interval() {
    let dir = TempDir::new("interval");
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(
        &path,
        100,
        FlushPolicy::Interval(Duration::from_millis(20)),
    ))
    .unwrap();
    for round in 1..=3u64 {
        for i in 1..=5 {
            j.append(&sent(round * 10 + i)).unwrap();
        }
        wait_until("the interval flush", || j.stats().flushed == round * 5);
        if let Some(d) = unflushed_pages(&path, j.len()) {
            assert_eq!(d, 0, "round {round}");
        }
    }
    assert_eq!(Journal::inspect(&path).unwrap().records_read(), 15);
}

#[test]
fn never_policy_flushes_on_request_and_on_drop() {
    let dir = TempDir::new("never");
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(&path, 100, FlushPolicy::Never)).unwrap();
    for i in 1..=3 {
        j.append(&sent(i)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(j.stats().flushed, 0);
    if let Some(d) = unflushed_pages(&path, j.len()) {
        assert!(d > 0, "not flushed yet");
    }
    j.flush().unwrap();
    assert_eq!(j.stats().flushed, 3);
    if let Some(d) = unflushed_pages(&path, j.len()) {
        assert_eq!(d, 0);
    }
    j.append(&sent(4)).unwrap();
    if let Some(d) = unflushed_pages(&path, j.len()) {
        assert!(d > 0);
    }
    drop(j);
    if let Some(d) = unflushed_pages(&path, 4) {
        assert_eq!(d, 0, "drop flushed");
    }
    assert_eq!(Journal::inspect(&path).unwrap().records_read(), 4);
}

#[test]
fn cachestat_sees_the_journal_pages() {
    // The flush tests above lean on cachestat; say so if this kernel lacks it (they then check
    // the journal's own flush counters only).
    let dir = TempDir::new("cachestat");
    let path = dir.journal();
    let (mut j, _) = Journal::open(config(&path, 100, FlushPolicy::Never)).unwrap();
    j.append(&sent(1)).unwrap();
    match unflushed_pages(&path, j.len()) {
        Some(d) => assert!(d > 0),
        None => eprintln!("cachestat(2) unavailable: flush tests check counters only"),
    }
    j.flush().unwrap();
    if let Some(d) = unflushed_pages(&path, j.len()) {
        assert_eq!(d, 0);
    }
}

// ---- allocations ------------------------------------------------------------------------------

#[test]
fn append_allocates_nothing_after_open() {
    for policy in [
        FlushPolicy::Never,
        FlushPolicy::EveryN(64),
        FlushPolicy::Interval(Duration::from_millis(1)),
        FlushPolicy::EveryRecord,
    ] {
        let dir = TempDir::new("alloc");
        let path = dir.journal();
        let n = if policy == FlushPolicy::EveryRecord {
            200
        } else {
            20_000
        };
        let (mut j, _) = Journal::open(config(&path, n + 10, policy)).unwrap();
        let records = every_kind(5);
        let ((), allocs) = alloc_support::count_allocations(|| {
            for i in 0..n {
                j.append(&records[i % records.len()]).unwrap();
            }
        });
        assert_eq!(allocs, 0, "{policy:?}");
        assert_eq!(j.len(), n as u64);
    }
}

// ---- kill -9 ----------------------------------------------------------------------------------

const CHILD_ENV: &str = "SPINWIRE_JOURNAL_KILL_CHILD";

/// The child's records, in order: per order `i`: Intent, Sent, and Final when `i % 3 == 0`.
fn child_records() -> impl Iterator<Item = JournalRecord> {
    (1u64..).flat_map(|i| {
        let id = ClientOrderId(i);
        let mut v = vec![
            JournalRecord::Intent {
                id,
                tag: i,
                intent: intent("BTC-PERPETUAL", i as i64 % 50 + 1),
            },
            sent(i),
        ];
        if i % 3 == 0 {
            v.push(JournalRecord::Final {
                id,
                tag: i,
                reason: FinalReason::Filled,
            });
        }
        v
    })
}

/// The child: appends forever (FlushPolicy::Never), acknowledging each record's sequence number
/// on stdout after its append returned.
fn child_main(path: &Path) -> ! {
    let (mut j, _) = Journal::open(config(path, 1 << 16, FlushPolicy::Never)).unwrap();
    let mut out = std::io::stdout().lock();
    for (seq, r) in (1u64..).zip(child_records()) {
        if j.append(&r).is_err() {
            break;
        }
        write!(out, "\nack {seq}\n").unwrap();
        out.flush().unwrap();
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn kill_9_of_an_appending_process_loses_no_acknowledged_record() {
    if let Ok(p) = std::env::var(CHILD_ENV) {
        child_main(Path::new(&p));
    }
    let dir = TempDir::new("kill9");
    let path = dir.journal();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_9_of_an_appending_process_loses_no_acknowledged_record",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acked = 0u64;
    let mut killed = false;
    let mut line = Vec::new();
    let started = Instant::now();
    loop {
        line.clear();
        if out.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        // Only complete lines count: a line cut by the kill is not an acknowledgement.
        if let Some(rest) = line.strip_prefix(b"ack ") {
            if let Some(num) = rest.strip_suffix(b"\n") {
                acked = std::str::from_utf8(num).unwrap().parse().unwrap();
            }
        }
        if !killed && acked >= 3000 {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "child too slow"
        );
    }
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(killed, "the child stopped by itself: {status:?}");
    assert!(acked >= 3000);

    // Every acknowledged record is there, intact and in order.
    let entries = read_all(&path);
    assert!(
        entries.len() as u64 >= acked,
        "{} records < {acked} acknowledged",
        entries.len()
    );
    for ((e, want), seq) in entries.iter().zip(child_records()).zip(1u64..) {
        assert_eq!(e.seq, seq);
        assert_eq!(e.record, want);
    }
    // Recovery keeps exactly the orders without a Final among the records there.
    let n = entries.len();
    let (_j, r) = Journal::open(config(&path, 1 << 16, FlushPolicy::Never)).unwrap();
    assert_eq!(r.records_read(), n as u64);
    let mut open: Vec<u64> = Vec::new();
    for rec in child_records().take(n) {
        match rec {
            JournalRecord::Intent { id, .. } => open.push(id.0),
            JournalRecord::Final { id, .. } => open.retain(|&x| x != id.0),
            _ => {}
        }
    }
    let got: Vec<u64> = r.orders().iter().map(|o| o.id.0).collect();
    assert_eq!(got, open);
    assert!(r.next_id_floor() > *open.last().unwrap());
}

#[test]
fn a_journal_can_move_to_the_engine_thread() {
    fn send<T: Send>(_: &T) {}
    let dir = TempDir::new("send");
    let (j, _) = Journal::open(config(&dir.journal(), 8, FlushPolicy::Never)).unwrap();
    send(&j);
    let h = std::thread::spawn(move || {
        let mut j = j;
        j.append(&sent(1)).unwrap();
        j.len()
    });
    assert_eq!(h.join().unwrap(), 1);
    assert_eq!(Journal::inspect(&dir.journal()).unwrap().records_read(), 1);
}

#[test]
fn a_journal_keeps_its_engine_instance_and_refuses_another() {
    let dir = TempDir::new("instance");
    // A journal of an engine with no instance: adopted by instance 3 (its header now says 3).
    let path = journal_with_pairs(&dir, 2);
    let with = |instance: Option<u8>| {
        let mut c = config(&path, 256, FlushPolicy::Never);
        c.instance = instance;
        c
    };
    let (j, r) = Journal::open(with(Some(3))).expect("an unmarked journal is adopted");
    assert_eq!(r.orders().len(), 2);
    drop(j);
    let before = fs::read(&path).unwrap();
    for other in [Some(4), None] {
        let e = Journal::open(with(other)).unwrap_err();
        assert!(matches!(e, JournalError::Instance { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("written by engine instance 3")
                && text.contains(&path.display().to_string()),
            "{text}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "a refused journal is left alone"
        );
    }
    let (_j, r) = Journal::open(with(Some(3))).expect("its own instance opens it");
    assert_eq!(r.orders().len(), 2, "nothing lost");
}
