//! Reading a journal back: the header, the scan of every slot (checksums, sequence, the torn
//! tail) and the fold of the records into the orders that are not final.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::record::{self, JournalEntry, JournalRecord, OrderIntent, VenueOrderId, RECORD_SIZE};
use super::JournalError;
use crate::md::Fixed;
use crate::orders::{ClientOrderId, OrderEvent, OrderEventKind};

/// The file's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"SWJRNL01";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Size of the file header, bytes (one slot, so records stay 128-byte aligned).
pub const HEADER_SIZE: usize = RECORD_SIZE;

/// The file header.
///
/// | bytes | field |
/// |---|---|
/// | 0..8 | magic `SWJRNL01` |
/// | 8..12 | version (1) |
/// | 12..16 | record size (128) |
/// | 16..24 | created at, Unix ns |
/// | 24..32 | capacity, records |
/// | 32..40 | id floor: greater than every id of the files this one was compacted from |
/// | 40..48 | generation: 0 for a new journal, +1 at each compaction |
/// | 48..56 | flags: bit 0 [`Header::FLAG_CONSUMED`], bit 1 [`Header::FLAG_INSTANCE`] |
/// | 56 | the engine instance that writes the file, with [`Header::FLAG_INSTANCE`] |
/// | 57..124 | zero |
/// | 124..128 | CRC-32C of bytes 0..124 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// When this file was written, Unix ns.
    pub created_at_unix_ns: u64,
    /// Record slots after the header.
    pub capacity: u64,
    /// Greater than every client order id journaled by earlier files.
    pub id_floor: u64,
    /// How many compactions led to this file.
    pub generation: u64,
    /// Format flags ([`Header::FLAG_CONSUMED`], [`Header::FLAG_INSTANCE`]); 0 in files of
    /// builds before them.
    pub flags: u64,
    /// The engine instance whose client order ids the file holds
    /// ([`crate::orders::ids`]); `None`: no instance was configured.
    pub instance: Option<u8>,
}

impl Header {
    /// The file tracks what the strategy consumed ([`JournalRecord::Consumed`]): with no
    /// `Consumed` record, nothing was consumed. Without the flag (a file of an earlier build),
    /// everything before the first `Consumed` record counts as consumed.
    pub const FLAG_CONSUMED: u64 = 1;
    /// Byte 56 holds the engine instance that wrote the file.
    pub const FLAG_INSTANCE: u64 = 2;

    /// The encoded header.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(RECORD_SIZE as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.created_at_unix_ns.to_le_bytes());
        b[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        b[32..40].copy_from_slice(&self.id_floor.to_le_bytes());
        b[40..48].copy_from_slice(&self.generation.to_le_bytes());
        let flags = match self.instance {
            Some(i) => {
                b[56] = i;
                self.flags | Header::FLAG_INSTANCE
            }
            None => self.flags & !Header::FLAG_INSTANCE,
        };
        b[48..56].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32c::crc32c(&b[..124]);
        b[124..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header; the error says what is wrong.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Result<Header, String> {
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        if b[0..8] != MAGIC {
            return Err("not a spinwire journal (bad magic)".into());
        }
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!(
                "format version {version} is not supported (this build reads version {VERSION})"
            ));
        }
        let size = u32_at(12);
        if size as usize != RECORD_SIZE {
            return Err(format!(
                "record size {size} bytes, this build reads {RECORD_SIZE}"
            ));
        }
        if crc32c::crc32c(&b[..124]) != u32_at(124) {
            return Err("header checksum mismatch".into());
        }
        Ok(Header {
            created_at_unix_ns: u64_at(16),
            capacity: u64_at(24),
            id_floor: u64_at(32),
            generation: u64_at(40),
            flags: u64_at(48),
            instance: (u64_at(48) & Header::FLAG_INSTANCE != 0).then_some(b[56]),
        })
    }
}

/// A damaged last record (or trailing bytes after the last valid record) that recovery
/// tolerated: what a crash in the middle of an append leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Index of the damaged slot (0-based; the valid records are `0..record`).
    pub record: u64,
    /// Its byte offset in the file.
    pub offset: u64,
    /// What is wrong with it.
    pub what: &'static str,
}

/// What a [`scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanSummary {
    /// The file header.
    pub header: Header,
    /// Valid records read (they are records `1..=records` by sequence number).
    pub records: u64,
    /// A damaged last record that was tolerated, if any.
    pub torn_tail: Option<TornTail>,
}

/// Why a slot is not a valid record.
fn slot_problem(slot: &[u8; RECORD_SIZE], index: u64) -> Option<&'static str> {
    if !record::checksum_ok(slot) {
        return Some("checksum mismatch");
    }
    if record::seq_of(slot) != index + 1 {
        return Some("sequence number out of order");
    }
    None
}

/// Reads `into` fully unless the file ends first; returns the bytes read.
fn read_up_to(r: &mut impl Read, into: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < into.len() {
        match r.read(&mut into[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads the journal at `path` without changing it (no lock, no compaction) and calls `visit`
/// with every valid record, in order.
///
/// Every slot is checked: a slot with a bad checksum or sequence number ends the valid records;
/// if anything after it is non-zero (another record, or garbage), the journal is corrupt in the
/// middle and [`JournalError::Corrupt`] names the first bad slot. If only zeros follow, the bad
/// slot is a torn tail ([`ScanSummary::torn_tail`]). A slot of all zeros is an unwritten slot:
/// it ends the records without being reported (a last record zeroed in full cannot be told
/// apart from one never written). A valid checksum over a payload that does not decode is
/// corruption wherever it is.
pub fn scan(
    path: &Path,
    mut visit: impl FnMut(&JournalEntry),
) -> Result<ScanSummary, JournalError> {
    let io = |op: &'static str| {
        let path = path.to_path_buf();
        move |source| JournalError::Io { path, op, source }
    };
    let file = File::open(path).map_err(io("open for reading"))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut hb = [0u8; HEADER_SIZE];
    let n = read_up_to(&mut r, &mut hb).map_err(io("read header"))?;
    if n < HEADER_SIZE {
        return Err(JournalError::BadHeader {
            path: path.to_path_buf(),
            what: format!("file is {n} bytes, too short for a journal header ({HEADER_SIZE})"),
        });
    }
    let header = Header::decode(&hb).map_err(|what| JournalError::BadHeader {
        path: path.to_path_buf(),
        what,
    })?;

    let corrupt = |record: u64, what: &'static str| JournalError::Corrupt {
        path: path.to_path_buf(),
        record,
        offset: HEADER_SIZE as u64 + record * RECORD_SIZE as u64,
        what,
    };
    let mut records = 0u64;
    // The first slot that is not a valid record: (index, problem; None = all zeros).
    let mut end: Option<(u64, Option<&'static str>)> = None;
    let mut index = 0u64;
    let mut slot = [0u8; RECORD_SIZE];
    loop {
        let n = read_up_to(&mut r, &mut slot).map_err(io("read records"))?;
        if n == 0 {
            break;
        }
        let zero = slot[..n].iter().all(|&b| b == 0);
        match end {
            None if n < RECORD_SIZE => {
                if !zero {
                    end = Some((index, Some("record cut short by the end of the file")));
                }
                break;
            }
            None if zero => end = Some((index, None)),
            None => match slot_problem(&slot, index) {
                Some(what) => end = Some((index, Some(what))),
                None => {
                    let e = record::decode(&slot).map_err(|what| corrupt(index, what))?;
                    visit(&e);
                    records += 1;
                }
            },
            Some((first, problem)) => {
                if !zero {
                    return Err(corrupt(
                        first,
                        problem.unwrap_or("zeroed record followed by more records"),
                    ));
                }
            }
        }
        if n < RECORD_SIZE {
            break;
        }
        index += 1;
    }
    let torn_tail = match end {
        Some((record, Some(what))) => Some(TornTail {
            record,
            offset: HEADER_SIZE as u64 + record * RECORD_SIZE as u64,
            what,
        }),
        _ => None,
    };
    Ok(ScanSummary {
        header,
        records,
        torn_tail,
    })
}

/// The last known state of a recovered order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveredState {
    /// Intent journaled; no send recorded.
    Intended,
    /// Sent (or re-sent); no answer recorded.
    Sent,
    /// Accepted by the venue (partially filled when `filled_total > 0`).
    Accepted,
    /// Its fate was open when the connection dropped.
    Unknown,
    /// Rejected by the venue (no `Final` written yet).
    Rejected,
    /// Cancelled (no `Final` written yet).
    Cancelled,
    /// Expired (no `Final` written yet).
    Expired,
    /// Completely filled (no `Final` written yet).
    Filled,
}

impl RecoveredState {
    /// Rejected, cancelled, expired or filled: the order is done, only its `Final` record is
    /// missing (the process stopped in between).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            RecoveredState::Rejected
                | RecoveredState::Cancelled
                | RecoveredState::Expired
                | RecoveredState::Filled
        )
    }
}

/// An edit journaled ([`JournalRecord::EditIntent`]) with no [`JournalRecord::Edited`] after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingEdit {
    /// Amount asked for.
    pub amount: Fixed,
    /// Price asked for (`None`: unchanged).
    pub price: Option<Fixed>,
}

/// The fold of one order's records (an order with no `Final` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredOrder {
    /// The order's id (its label at the venue).
    pub id: ClientOrderId,
    /// The strategy's tag.
    pub tag: u64,
    /// The order as first journaled.
    pub intent: OrderIntent,
    /// When the intent was journaled, Unix ns.
    pub intent_unix_ns: u64,
    /// Last known state.
    pub state: RecoveredState,
    /// The venue's id, once accepted.
    pub venue_order_id: Option<VenueOrderId>,
    /// Amount now (the intent's, or the last `Edited`).
    pub amount: Fixed,
    /// Price now (the intent's, or the last `Edited` that named one).
    pub price: Option<Fixed>,
    /// Amount filled so far (the largest `filled_total` journaled).
    pub filled_total: Fixed,
    /// Fill records journaled.
    pub fills: u32,
    /// Largest trade sequence number of its fills (fills at or below it were delivered).
    pub last_trade_seq: Option<u64>,
    /// Largest send attempt journaled (0: never sent).
    pub attempts: u32,
    /// A cancel was journaled and no `Cancelled` followed.
    pub pending_cancel: bool,
    /// An edit was journaled and no `Edited` followed.
    pub pending_edit: Option<PendingEdit>,
    /// Sequence number of its last record.
    pub last_seq: u64,
}

impl RecoveredOrder {
    fn new(id: ClientOrderId, tag: u64, intent: OrderIntent, at: u64, seq: u64) -> Self {
        RecoveredOrder {
            id,
            tag,
            intent,
            intent_unix_ns: at,
            state: RecoveredState::Intended,
            venue_order_id: None,
            amount: intent.amount,
            price: intent.price,
            filled_total: Fixed::ZERO,
            fills: 0,
            last_trade_seq: None,
            attempts: 0,
            pending_cancel: false,
            pending_edit: None,
            last_seq: seq,
        }
    }

    /// Moves to `s` unless the order already reached a terminal state.
    fn advance(&mut self, s: RecoveredState) {
        if !self.state.is_terminal() {
            self.state = s;
        }
    }

    /// Applies one record (not `Intent`, not `Final`).
    fn apply(&mut self, e: &JournalEntry) {
        self.last_seq = e.seq;
        match e.record {
            JournalRecord::Sent { attempt, .. } => {
                self.attempts = self.attempts.max(attempt);
                if matches!(
                    self.state,
                    RecoveredState::Intended | RecoveredState::Unknown
                ) {
                    self.state = RecoveredState::Sent;
                }
            }
            JournalRecord::Resent { .. } => self.advance(RecoveredState::Sent),
            JournalRecord::Accepted { venue_order_id, .. } => {
                self.venue_order_id = Some(venue_order_id);
                self.advance(RecoveredState::Accepted);
            }
            JournalRecord::Rejected { .. } => self.advance(RecoveredState::Rejected),
            JournalRecord::Fill { fill, .. } => {
                self.fills = self.fills.saturating_add(1);
                self.filled_total = self.filled_total.max(fill.filled_total);
                self.last_trade_seq = Some(
                    self.last_trade_seq
                        .map_or(fill.trade_seq, |s| s.max(fill.trade_seq)),
                );
                if self.filled_total >= self.amount {
                    self.advance(RecoveredState::Filled);
                } else {
                    self.advance(RecoveredState::Accepted);
                }
            }
            JournalRecord::CancelIntent { .. } => self.pending_cancel = true,
            JournalRecord::EditIntent { amount, price, .. } => {
                self.pending_edit = Some(PendingEdit { amount, price })
            }
            JournalRecord::Edited { amount, price, .. } => {
                self.amount = amount;
                if price.is_some() {
                    self.price = price;
                }
                self.pending_edit = None;
                if self.filled_total >= self.amount && self.fills > 0 {
                    self.advance(RecoveredState::Filled);
                }
            }
            JournalRecord::Cancelled { .. } => {
                self.pending_cancel = false;
                self.advance(RecoveredState::Cancelled);
            }
            JournalRecord::Expired { .. } => self.advance(RecoveredState::Expired),
            JournalRecord::Unknown { .. } => self.advance(RecoveredState::Unknown),
            JournalRecord::Intent { .. }
            | JournalRecord::Final { .. }
            | JournalRecord::Consumed { .. } => {}
        }
    }
}

/// What [`Journal::open`](super::Journal::open) found in the journal it opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub(super) path: PathBuf,
    pub(super) orders: Vec<RecoveredOrder>,
    pub(super) next_id_floor: u64,
    pub(super) records_read: u64,
    pub(super) ignored_records: u64,
    pub(super) final_orders: u64,
    pub(super) torn_tail: Option<TornTail>,
    pub(super) compacted_records: u64,
    pub(super) existed: bool,
    pub(super) generation: u64,
    pub(super) replay: Vec<ReplayEvent>,
    pub(super) consumed_upto: Option<u64>,
    pub(super) tracks_consumption: bool,
}

/// An order event the strategy had not taken when the process stopped: recovery hands it out
/// again ([`Recovery::replay`]), with `resolved: true`, before any new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayEvent {
    /// Sequence number of the record that caused it (in the file as compacted by
    /// [`Journal::open`](super::Journal::open); in the file read for
    /// [`Journal::inspect`](super::Journal::inspect)).
    pub seq: u64,
    /// The event (`at_ns` 0, `resolved: true`).
    pub event: OrderEvent,
}

impl Recovery {
    /// The orders that are not final (no `Final` record), in the order of their intents.
    pub fn orders(&self) -> &[RecoveredOrder] {
        &self.orders
    }

    /// Greater than every client order id ever journaled (this file and the files it was
    /// compacted from); at least 1. Mint the next run's ids from
    /// [`mint_base`](super::mint_base)`(next_id_floor, now)`.
    pub fn next_id_floor(&self) -> u64 {
        self.next_id_floor
    }

    /// Valid records read.
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// Records read that named no open order, ignored by the fold: after the order's `Final`
    /// (a late fill, say), before its `Intent`, or a second `Intent` for the same id. Damage is
    /// never counted here (it fails the checksum).
    pub fn ignored_records(&self) -> u64 {
        self.ignored_records
    }

    /// Orders whose `Final` record was read (dropped by compaction, unless they still have
    /// events to [`replay`](Recovery::replay)).
    pub fn final_orders(&self) -> u64 {
        self.final_orders
    }

    /// A damaged last record that was tolerated, if any.
    pub fn torn_tail(&self) -> Option<TornTail> {
        self.torn_tail
    }

    /// Records carried into the compacted file (the records of the orders not final).
    pub fn compacted_records(&self) -> u64 {
        self.compacted_records
    }

    /// Whether a journal existed at the path (`false`: a new one was created).
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// Generation of the file read (compactions so far).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The events of every record after the last [`JournalRecord::Consumed`] mark that the
    /// strategy saw as an event (`Accepted`, `Rejected`, `Fill`, `Edited`, `Cancelled`,
    /// `Expired`, `Resent`, `Unknown`), of any order, final or not, in record order: the
    /// events the stopped process had produced but its strategy had not taken. Empty for a
    /// file of an earlier build with no mark (see [`Recovery::tracks_consumption`]).
    pub fn replay(&self) -> &[ReplayEvent] {
        &self.replay
    }

    /// The last consumed mark (a sequence number in the same numbering as
    /// [`ReplayEvent::seq`]); `None` when the file holds none.
    pub fn consumed_upto(&self) -> Option<u64> {
        self.consumed_upto
    }

    /// Whether the file read tracked consumption ([`Header::FLAG_CONSUMED`], or a `Consumed`
    /// record). A file of an earlier build does not: nothing of it is replayed, as before.
    pub fn tracks_consumption(&self) -> bool {
        self.tracks_consumption
    }
}

/// Folds a journal's records into its orders that are not final.
pub(super) struct Fold {
    orders: Vec<RecoveredOrder>,
    /// id → (index in `orders`, sequence number of its intent).
    index: HashMap<u64, (usize, u64)>,
    /// Ids with a `Final` record.
    finals: HashMap<u64, ()>,
    max_id: u64,
    ignored: u64,
    records: u64,
    /// Largest `upto_seq` of the `Consumed` records read.
    mark: Option<u64>,
    /// Events of the records after `mark` (old sequence numbers, ascending).
    replay: Vec<ReplayEvent>,
    /// Ids of orders with an event in `replay` (kept by compaction even when final); filled
    /// by [`Fold::settle`].
    unconsumed: HashMap<u64, ()>,
    /// The file tracks consumption (set by [`Fold::settle`]).
    tracked: bool,
}

impl Fold {
    pub(super) fn new() -> Fold {
        Fold {
            orders: Vec::new(),
            index: HashMap::new(),
            finals: HashMap::new(),
            max_id: 0,
            ignored: 0,
            records: 0,
            mark: None,
            replay: Vec::new(),
            unconsumed: HashMap::new(),
            tracked: false,
        }
    }

    pub(super) fn add(&mut self, e: &JournalEntry) {
        self.records += 1;
        if let JournalRecord::Consumed { upto_seq } = e.record {
            let mark = self.mark.map_or(upto_seq, |m| m.max(upto_seq));
            self.mark = Some(mark);
            let taken = self.replay.partition_point(|r| r.seq <= mark);
            self.replay.drain(..taken);
            return;
        }
        let id = e.record.id();
        self.max_id = self.max_id.max(id.0);
        if self.finals.contains_key(&id.0) {
            self.ignored += 1;
            return;
        }
        match (e.record, self.index.get(&id.0)) {
            (JournalRecord::Intent { tag, intent, .. }, None) => {
                self.index.insert(id.0, (self.orders.len(), e.seq));
                self.orders
                    .push(RecoveredOrder::new(id, tag, intent, e.at_unix_ns, e.seq));
            }
            (JournalRecord::Final { .. }, Some(_)) => {
                self.finals.insert(id.0, ());
            }
            (JournalRecord::Intent { .. }, Some(_)) | (_, None) => self.ignored += 1,
            (_, Some(&(i, _))) => {
                self.orders[i].apply(e);
                if let Some(kind) = event_of(&e.record, &self.orders[i]) {
                    self.replay.push(ReplayEvent {
                        seq: e.seq,
                        event: OrderEvent {
                            at_ns: 0,
                            tag: e.record.tag(),
                            id,
                            resolved: true,
                            kind,
                        },
                    });
                }
            }
        }
    }

    /// After the scan: whether the file tracks consumption (`flags` of its header), and so
    /// which events are left to replay and which orders compaction must keep for them.
    pub(super) fn settle(&mut self, header: &Header) {
        self.tracked = header.flags & Header::FLAG_CONSUMED != 0 || self.mark.is_some();
        if !self.tracked {
            // An earlier build's file: everything counts as consumed (recovered as before).
            self.replay.clear();
        }
        self.unconsumed = self.replay.iter().map(|r| (r.event.id.0, ())).collect();
    }

    /// The consumed mark in the file read: every record up to it was taken (an earlier
    /// build's file with no mark: all of them). Call after [`Fold::settle`].
    pub(super) fn consumed_mark(&self) -> u64 {
        match self.mark {
            Some(m) => m,
            None if self.tracked => 0,
            None => u64::MAX,
        }
    }

    /// Whether a record belongs to an order that stays (not final), for compaction.
    pub(super) fn keeps(&self, e: &JournalEntry) -> bool {
        if matches!(e.record, JournalRecord::Consumed { .. }) {
            // Compaction writes the mark again, renumbered.
            return false;
        }
        let id = e.record.id().0;
        if self.finals.contains_key(&id) && !self.unconsumed.contains_key(&id) {
            return false;
        }
        match (e.record, self.index.get(&id)) {
            // Exactly the records the fold applied: its intent and what followed it.
            (JournalRecord::Intent { .. }, Some(&(_, intent_seq))) => e.seq == intent_seq,
            (_, Some(&(_, intent_seq))) => e.seq > intent_seq,
            (_, None) => false,
        }
    }

    /// The recovery: the orders not final, the id floor, the counts.
    pub(super) fn finish(
        &self,
        path: &Path,
        header: &Header,
        torn_tail: Option<TornTail>,
    ) -> Recovery {
        let finals = &self.finals;
        let orders: Vec<RecoveredOrder> = self
            .orders
            .iter()
            .filter(|o| !finals.contains_key(&o.id.0))
            .copied()
            .collect();
        Recovery {
            path: path.to_path_buf(),
            next_id_floor: header.id_floor.max(self.max_id.saturating_add(1)).max(1),
            records_read: self.records,
            ignored_records: self.ignored,
            final_orders: finals.len() as u64,
            torn_tail,
            compacted_records: 0,
            existed: true,
            generation: header.generation,
            orders,
            replay: self.replay.clone(),
            consumed_upto: self.mark,
            tracks_consumption: self.tracked,
        }
    }
}

/// The event the strategy got for `record` (of order `o`, with the record applied), if any.
fn event_of(record: &JournalRecord, o: &RecoveredOrder) -> Option<OrderEventKind> {
    Some(match *record {
        JournalRecord::Accepted { .. } => OrderEventKind::Accepted,
        JournalRecord::Rejected { code, reason, .. } => OrderEventKind::Rejected { code, reason },
        JournalRecord::Fill { fill, .. } if fill.filled_total >= o.amount => {
            OrderEventKind::Filled(fill)
        }
        JournalRecord::Fill { fill, .. } => OrderEventKind::PartiallyFilled(fill),
        JournalRecord::Edited { amount, price, .. } => OrderEventKind::Edited { amount, price },
        JournalRecord::Cancelled { .. } => OrderEventKind::Cancelled,
        JournalRecord::Expired { .. } => OrderEventKind::Expired,
        JournalRecord::Resent { .. } => OrderEventKind::Resent,
        JournalRecord::Unknown { .. } => OrderEventKind::Unknown,
        JournalRecord::Intent { .. }
        | JournalRecord::Sent { .. }
        | JournalRecord::CancelIntent { .. }
        | JournalRecord::EditIntent { .. }
        | JournalRecord::Final { .. }
        | JournalRecord::Consumed { .. } => return None,
    })
}
