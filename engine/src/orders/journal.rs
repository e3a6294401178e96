//! The order journal: an append-only file of fixed-size, checksummed records that says what the
//! engine intended and learned about every order, so a crashed process restarts knowing which
//! orders may be out at the venue.
//!
//! # File
//! A 128-byte header (magic `SWJRNL01`, format version, record size, creation time, capacity,
//! id floor, generation, CRC-32C; see [`Header`]) and `capacity` slots of [`RECORD_SIZE`]
//! (128) bytes, each a [`JournalRecord`] with its sequence number (dense from 1), Unix-ns
//! timestamp, [`ClientOrderId`](crate::orders::ClientOrderId), strategy tag, kind-specific
//! payload and a CRC-32C over the rest (layout in [`record`]). The whole file is allocated at
//! open (`posix_fallocate`), so an append never extends it.
//!
//! # Appending (the engine thread)
//! [`Journal::append`] encodes the record on the stack and copies its 128 bytes into a shared
//! (`MAP_SHARED`) mapping of the file: the bytes are in the page cache when it returns, so they
//! survive `kill -9` of the process (not a power loss: that is what [`FlushPolicy`] is for). It
//! allocates nothing, formats nothing and makes no system call, except:
//! - [`FlushPolicy::EveryRecord`]: an `msync(MS_SYNC)` of the record's page before returning
//!   (durable before the request's bytes leave; costs a disk flush per record);
//! - [`FlushPolicy::EveryN`]: one `unpark` of the flusher thread every `n` records (a futex
//!   wake only when the flusher sleeps);
//! - page faults, which are not system calls but cost microseconds. The `spinwire-journal`
//!   thread keeps the 4 MiB of pages ahead of the appender faulted in, writable
//!   (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+; before that the appender takes one fault per
//!   4 KiB page, every 32 records). A page written back by a flush is write-protected again by
//!   the kernel, so the first append after each flush takes one fault; on filesystems that need
//!   stable pages during writeback (btrfs, or block devices with integrity checksums) that
//!   fault waits for the writeback to finish.
//!
//! `EveryN` and `Interval` flushes run on the `spinwire-journal` thread (started for every
//! policy: it also does the prefaulting), which `msync`s the records appended since its last
//! flush; the appender never waits for it. [`Journal::flush`] forces a flush from the caller's
//! thread; dropping the journal flushes. The pages faulted in ahead hold zeros and are dirty:
//! the kernel writes them back in its own time.
//!
//! When the capacity is used up, [`Journal::append`] returns [`JournalFull`] (the order path
//! refuses new orders with [`LocalReason::JournalUnavailable`](crate::orders::LocalReason)).
//! After a failed flush (`EIO`: the disk is failing) it does too: see [`Journal::failure`].
//!
//! # Opening and recovery
//! [`Journal::open`] takes an exclusive lock (`flock` on `<path>.lock`, held while the journal
//! lives: two processes never append to one journal), reads every record back ([`scan`]: CRCs,
//! sequence numbers, the torn tail), folds them into the orders that are not final
//! ([`Recovery::orders`]) and compacts: the records of those orders are rewritten, renumbered,
//! into a fresh file (`<path>.compact`: written, `fsync`ed, renamed over `<path>`, directory
//! `fsync`ed), so a journal never grows across restarts. A new journal is created the same way.
//! On any error nothing at `<path>` is changed.
//!
//! # Consumed marks and replay
//! A [`JournalRecord::Consumed`] record says the strategy has taken every order event caused
//! by the records up to its `upto_seq` (the session driver writes one per loop turn in which
//! the strategy popped events; see [`crate::orders`]). Recovery remembers the last mark and
//! hands out, as [`Recovery::replay`], the events of the records after it, of every order,
//! final or not. Compaction therefore also keeps every record of a final order that still
//! has an event to replay, and writes the mark again, renumbered, after the carried records
//! (no record when nothing carried was taken). Files this build writes set
//! [`Header::FLAG_CONSUMED`]: in them, no mark means nothing was taken. A file of an earlier
//! build (flag clear, no mark) replays nothing: it is recovered as before, and its compacted
//! file marks everything carried as taken.
//!
//! # Client order ids across restarts
//! See [`mint_base`].
//!
//! ```
//! use spinwire_engine::md::{Direction, Fixed};
//! use spinwire_engine::orders::ClientOrderId;
//! use spinwire_engine::orders::journal::{
//!     mint_base, FlushPolicy, InstrumentName, Journal, JournalConfig, JournalRecord,
//!     OrderIntent,
//! };
//! use spinwire_engine::venue::deribit::{OrderType, TimeInForce};
//!
//! let dir = std::env::temp_dir().join(format!("spinwire-journal-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("orders.jrnl");
//! let mut config = JournalConfig::new(&path);
//! config.capacity = 1024;
//! config.flush = FlushPolicy::Never;
//! let (mut journal, recovery) = Journal::open(config.clone())?;
//! let id = ClientOrderId(mint_base(recovery.next_id_floor(), 1_700_000_000_000));
//! let intent = OrderIntent {
//!     instrument: InstrumentName::new("BTC-PERPETUAL").unwrap(),
//!     direction: Direction::Buy,
//!     order_type: OrderType::Limit,
//!     price: Fixed::from_int(60_000),
//!     amount: Fixed::from_int(10).unwrap(),
//!     time_in_force: TimeInForce::GoodTilCancelled,
//!     post_only: false,
//!     reduce_only: false,
//!     ttl_deadline_unix_ms: 0,
//! };
//! journal.append(&JournalRecord::Intent { id, tag: 1, intent }).unwrap();
//! journal.append(&JournalRecord::Sent { id, tag: 1, attempt: 1 }).unwrap();
//! drop(journal);
//!
//! let (_journal, recovery) = Journal::open(config)?;
//! assert_eq!(recovery.orders().len(), 1);
//! assert_eq!(recovery.orders()[0].id, id);
//! assert!(recovery.next_id_floor() > id.0);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod record;
mod recovery;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};

pub use record::{
    FinalReason, InstrumentName, JournalEntry, JournalRecord, OrderIntent, RecordKind,
    VenueOrderId, RECORD_SIZE, VENUE_ORDER_ID_LEN,
};
pub use recovery::{
    scan, Header, PendingEdit, RecoveredOrder, RecoveredState, Recovery, ReplayEvent, ScanSummary,
    TornTail, HEADER_SIZE, MAGIC, VERSION,
};

/// When appended records are forced to disk (`msync`). Whatever the policy, an appended record
/// is in the page cache at once and survives a crash of the process; the policy bounds what a
/// power loss or kernel crash can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// `msync(MS_SYNC)` of the record's page inside [`Journal::append`]: durable before the
    /// order's bytes leave. Costs a disk flush per record on the engine thread.
    EveryRecord,
    /// The flusher thread flushes after every `n` records (woken by the appender).
    EveryN(u32),
    /// The flusher thread flushes what was appended, every interval.
    Interval(Duration),
    /// No flush until [`Journal::flush`] or drop; the kernel writes back when it likes.
    Never,
}

/// How to open a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The journal file (created if missing; `<path>.lock` and `<path>.compact` sit next to it).
    pub path: PathBuf,
    /// Record slots of the file (it takes `128 × (capacity + 1)` bytes of disk).
    pub capacity: usize,
    /// When to force records to disk.
    pub flush: FlushPolicy,
    /// The engine instance that owns this journal ([`crate::orders::ids`]), kept in its
    /// header: a journal written under one instance is refused by an engine configured with
    /// another (or none), so two processes never take each other's orders. The engine loop
    /// sets it from its own configuration.
    pub instance: Option<u8>,
}

impl JournalConfig {
    /// Default capacity: 2^20 records (a 128 MiB file): a million order events per run.
    pub const DEFAULT_CAPACITY: usize = 1 << 20;
    /// Default flush policy: every millisecond on the flusher thread. A crash of the process
    /// loses nothing; a power loss loses at most about the last millisecond; the engine thread
    /// never waits for the disk.
    pub const DEFAULT_FLUSH: FlushPolicy = FlushPolicy::Interval(Duration::from_millis(1));

    /// A journal at `path` with [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) and
    /// [`DEFAULT_FLUSH`](Self::DEFAULT_FLUSH).
    pub fn new(path: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            path: path.into(),
            capacity: Self::DEFAULT_CAPACITY,
            flush: Self::DEFAULT_FLUSH,
            instance: None,
        }
    }
}

/// Why a journal could not be opened (cold path).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed: check the path, permissions and free space.
    #[error("journal {}: {op}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Another journal (in this or another process) holds the lock: stop it first, or use
    /// another path.
    #[error("journal {} is in use by another process (lock {} is held)", path.display(), lock.display())]
    Locked {
        /// The journal.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The file is not a journal this build can read: wrong path, or written by another version.
    #[error("journal {}: {what}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A record before the last is damaged: the journal cannot be trusted. Move the file aside
    /// (after reconciling the account by hand) to start without it.
    #[error(
        "journal {}: record {record} at byte {offset}: {what} (the file is corrupt in the middle; refusing to start — move it aside to start without it)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Index of the first bad record slot (0-based).
        record: u64,
        /// Its byte offset in the file.
        offset: u64,
        /// What is wrong with it.
        what: &'static str,
    },
    /// The orders that are not final need more records than the configured capacity.
    #[error("journal {}: {live} records of open orders do not fit a capacity of {capacity}: raise the capacity", path.display())]
    CapacityTooSmall {
        /// The file.
        path: PathBuf,
        /// Records to carry over.
        live: u64,
        /// The configured capacity.
        capacity: u64,
    },
    /// The journal holds the orders of another engine instance than the one configured: run
    /// it with that instance, or give this engine its own journal.
    #[error("journal {}: written by engine instance {}, but this engine is instance {} (give each instance its own journal)", path.display(), show_instance(*journal), show_instance(*configured))]
    Instance {
        /// The file.
        path: PathBuf,
        /// The instance in its header.
        journal: Option<u8>,
        /// The instance configured.
        configured: Option<u8>,
    },
    /// The configuration is unusable.
    #[error("journal configuration: {0}")]
    BadConfig(&'static str),
}

/// An instance number for messages (`none` when unset).
fn show_instance(i: Option<u8>) -> String {
    i.map_or_else(|| "none".to_owned(), |i| i.to_string())
}

/// The journal takes no more records: its capacity is used up, or a flush failed
/// ([`Journal::failure`]). The record was not appended (except when the `msync` of
/// [`FlushPolicy::EveryRecord`] failed: the record is then in the page cache but not known to be
/// durable). Refuse new orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JournalFull;

impl std::fmt::Display for JournalFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the order journal is full or failed")
    }
}

impl std::error::Error for JournalFull {}

/// Bits of a client order id below the time base (2^20: about a million ids per millisecond).
pub const MINT_TIME_SHIFT: u32 = 20;

/// The first client order id of a run: `max(floor, unix_ms << 20, 1)`; the run mints
/// `base, base + 1, base + 2, ...`.
///
/// Ids stay unique across restarts two ways. `floor` ([`Recovery::next_id_floor`]) is above
/// every id the journal ever recorded, and the engine journals every order's intent before its
/// bytes leave. The time base covers what the journal cannot know (a journal moved aside, lost
/// to a power loss under [`FlushPolicy::Never`]): a run that started `t` ms after the previous
/// one collides only if that one minted more than `t × 2^20` ids. `unix_ms << 20` fits 64 bits
/// until the year 2527 (labels are 16 hex digits).
pub const fn mint_base(floor: u64, unix_ms: u64) -> u64 {
    let t = unix_ms << MINT_TIME_SHIFT;
    let b = if floor > t { floor } else { t };
    if b == 0 {
        1
    } else {
        b
    }
}

/// Unix time now, ns (`clock_gettime` through the vDSO: no system call on common clocks).
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// State shared with the flusher thread.
struct Shared {
    /// The mapping: header + `capacity` slots. Only the appender writes its bytes (slots
    /// `written..` are untouched by anyone else); the flusher only `msync`s ranges of it.
    map: MmapRaw,
    /// Records appended: slots `0..written` hold them (Release by the appender after the copy).
    written: AtomicU64,
    /// Records known durable: `0..flushed` were `msync`ed. Only grows.
    flushed: AtomicU64,
    /// `EveryN`: `written` when the appender last woke the flusher (Release before the unpark).
    /// The flusher flushes when this is past `flushed`, so a spurious wake flushes nothing.
    requested: AtomicU64,
    /// Set by drop: the flusher flushes once more and exits.
    shutdown: AtomicBool,
    /// `errno` of the first failed flush; 0: none.
    failure: AtomicI32,
    /// Flushes done (successful `msync` calls).
    flushes: AtomicU64,
}

impl Shared {
    /// `msync`s slots `flushed..upto` (page-aligned by memmap2) and advances `flushed`.
    fn flush_upto(&self, upto: u64) -> io::Result<()> {
        let from = self.flushed.load(Ordering::Acquire);
        if from >= upto {
            return Ok(());
        }
        let off = HEADER_SIZE + from as usize * RECORD_SIZE;
        let len = (upto - from) as usize * RECORD_SIZE;
        match self.map.flush_range(off, len) {
            Ok(()) => {
                self.flushed.fetch_max(upto, Ordering::AcqRel);
                self.flushes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                let _ =
                    self.failure
                        .compare_exchange(0, errno, Ordering::AcqRel, Ordering::Acquire);
                Err(e)
            }
        }
    }
}

/// Counters of a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    /// Records in the file (carried over by compaction + appended).
    pub records: u64,
    /// Records known flushed to disk.
    pub flushed: u64,
    /// Successful `msync` calls.
    pub flushes: u64,
    /// Record slots of the file.
    pub capacity: u64,
}

/// An open journal: appends records (engine thread), flushes them by its [`FlushPolicy`].
/// See the [module docs](self).
pub struct Journal {
    shared: Arc<Shared>,
    /// Records in the file; the next append goes to slot `next`. Invariant: `next <= capacity`.
    next: u64,
    /// Record slots mapped. Invariant: the mapping is `HEADER_SIZE + capacity × RECORD_SIZE`
    /// bytes long.
    capacity: u64,
    policy: FlushPolicy,
    /// `EveryN`: `next` at the last wake of the flusher.
    kicked: u64,
    /// `EveryN`: wake the flusher every this many records.
    every: u64,
    flusher: Option<(JoinHandle<()>, Thread)>,
    path: PathBuf,
    /// Holds the `flock` on `<path>.lock` while the journal lives.
    _lock: File,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("records", &self.next)
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .finish()
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

impl Journal {
    /// Opens (or creates) the journal at `config.path`: locks it, recovers its orders that are
    /// not final and compacts it (see the [module docs](self)). Cold: allocates, reads the whole
    /// file, `fsync`s.
    pub fn open(config: JournalConfig) -> Result<(Journal, Recovery), JournalError> {
        if config.capacity == 0 {
            return Err(JournalError::BadConfig(
                "capacity must be at least 1 record",
            ));
        }
        if let FlushPolicy::EveryN(0) = config.flush {
            return Err(JournalError::BadConfig("EveryN(n) needs n >= 1"));
        }
        if let FlushPolicy::Interval(d) = config.flush {
            if d.is_zero() {
                return Err(JournalError::BadConfig(
                    "Interval needs a non-zero interval",
                ));
            }
        }
        let capacity = config.capacity as u64;
        let file_len = capacity
            .checked_add(1)
            .and_then(|n| n.checked_mul(RECORD_SIZE as u64))
            .filter(|&n| usize::try_from(n).is_ok() && n <= i64::MAX as u64)
            .ok_or(JournalError::BadConfig("capacity too large"))?;
        let path = config.path.clone();
        let err = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| JournalError::Io {
                path: p,
                op,
                source,
            }
        };

        // 1. The lock, for the journal's whole life.
        let lock_path = with_suffix(&path, ".lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(err("open lock file", &lock_path))?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                JournalError::Locked {
                    path,
                    lock: lock_path,
                }
            } else {
                JournalError::Io {
                    path: lock_path,
                    op: "lock",
                    source: e,
                }
            });
        }

        // 2. Read what is there.
        let existed = match std::fs::symlink_metadata(&path) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(err("stat", &path)(e)),
        };
        let (mut recovery, fold, header) = if existed {
            let (recovery, fold, summary) = read(&path)?;
            if let Some(journal) = summary.header.instance {
                if config.instance != Some(journal) {
                    return Err(JournalError::Instance {
                        path,
                        journal: Some(journal),
                        configured: config.instance,
                    });
                }
            }
            (recovery, Some(fold), Some(summary.header))
        } else {
            let recovery = Recovery {
                path: path.clone(),
                orders: Vec::new(),
                next_id_floor: 1,
                records_read: 0,
                ignored_records: 0,
                final_orders: 0,
                torn_tail: None,
                compacted_records: 0,
                existed: false,
                generation: 0,
                replay: Vec::new(),
                consumed_upto: None,
                tracks_consumption: true,
            };
            (recovery, None, None)
        };

        // 3. The records to carry over, renumbered; the events to replay follow their
        // records' new numbers, and the consumed mark is written again in the new numbering.
        let mut carried: Vec<[u8; RECORD_SIZE]> = Vec::new();
        if let Some(fold) = &fold {
            let old_mark = fold.consumed_mark();
            let mut new_mark = 0u64;
            let mut next_replay = 0usize;
            let replay = &mut recovery.replay;
            scan(&path, |e| {
                if fold.keeps(e) {
                    let seq = carried.len() as u64 + 1;
                    let mut slot = [0u8; RECORD_SIZE];
                    record::encode(&e.record, seq, e.at_unix_ns, &mut slot);
                    carried.push(slot);
                    if e.seq <= old_mark {
                        new_mark = seq;
                    }
                    if let Some(r) = replay.get_mut(next_replay) {
                        if r.seq == e.seq {
                            r.seq = seq;
                            next_replay += 1;
                        }
                    }
                }
            })?;
            debug_assert_eq!(next_replay, replay.len(), "every replayed record is kept");
            if new_mark > 0 {
                let mut slot = [0u8; RECORD_SIZE];
                let mark = JournalRecord::Consumed { upto_seq: new_mark };
                record::encode(&mark, carried.len() as u64 + 1, unix_now_ns(), &mut slot);
                carried.push(slot);
            }
            recovery.consumed_upto = (new_mark > 0).then_some(new_mark);
        }
        if carried.len() as u64 > capacity {
            return Err(JournalError::CapacityTooSmall {
                path,
                live: carried.len() as u64,
                capacity,
            });
        }
        recovery.compacted_records = carried.len() as u64;

        // 4. Write the fresh file next to it, make it durable, rename it over.
        let header = Header {
            created_at_unix_ns: unix_now_ns(),
            capacity,
            id_floor: recovery.next_id_floor,
            generation: header.map_or(0, |h| h.generation + 1),
            flags: Header::FLAG_CONSUMED,
            instance: config.instance,
        };
        let tmp = with_suffix(&path, ".compact");
        let file = match write_fresh(&tmp, &header, &carried, file_len) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(err(e.0, &tmp)(e.1));
            }
        };
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err("rename the compacted file over the journal", &path)(e));
        }
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(err("fsync the directory", dir))?;
        }

        // 5. Map it for appending.
        let map = MmapOptions::new()
            .len(file_len as usize)
            .map_raw(&file)
            .map_err(err("mmap", &path))?;
        let next = carried.len() as u64;
        let shared = Arc::new(Shared {
            map,
            written: AtomicU64::new(next),
            flushed: AtomicU64::new(next),
            requested: AtomicU64::new(next),
            shutdown: AtomicBool::new(false),
            failure: AtomicI32::new(0),
            flushes: AtomicU64::new(0),
        });
        let populated = prefault(&shared, next, capacity);
        let flusher = {
            let s = Arc::clone(&shared);
            let policy = config.flush;
            let h = thread::Builder::new()
                .name("spinwire-journal".into())
                .spawn(move || flusher(&s, policy, capacity, populated))
                .map_err(err("spawn the flusher thread", &path))?;
            let t = h.thread().clone();
            Some((h, t))
        };
        let journal = Journal {
            shared,
            next,
            capacity,
            policy: config.flush,
            kicked: next,
            every: match config.flush {
                FlushPolicy::EveryN(n) => n as u64,
                _ => u64::MAX,
            },
            flusher,
            path,
            _lock: lock,
        };
        Ok((journal, recovery))
    }

    /// Reads the journal at `path` without locking or changing it: what [`Journal::open`]
    /// would recover (with [`Recovery::compacted_records`] 0). Safe while another process
    /// appends to it (its last record may then show as a torn tail).
    pub fn inspect(path: &Path) -> Result<Recovery, JournalError> {
        read(path).map(|(r, _, _)| r)
    }

    /// Appends `record`, stamped with the Unix time now (see [`unix_now_ns`]).
    ///
    /// No allocation, no formatting, no system call (except the `msync` of
    /// [`FlushPolicy::EveryRecord`] and the flusher wake of [`FlushPolicy::EveryN`]).
    #[inline]
    pub fn append(&mut self, record: &JournalRecord) -> Result<(), JournalFull> {
        self.append_at(record, unix_now_ns())
    }

    /// Appends `record` stamped `at_unix_ns`. See [`Journal::append`].
    pub fn append_at(
        &mut self,
        record: &JournalRecord,
        at_unix_ns: u64,
    ) -> Result<(), JournalFull> {
        if self.next >= self.capacity || self.shared.failure.load(Ordering::Relaxed) != 0 {
            return Err(JournalFull);
        }
        let mut slot = [0u8; RECORD_SIZE];
        record::encode(record, self.next + 1, at_unix_ns, &mut slot);
        let off = HEADER_SIZE + self.next as usize * RECORD_SIZE;
        debug_assert!(off + RECORD_SIZE <= self.shared.map.len());
        // SAFETY: `next < capacity` and the mapping is `HEADER_SIZE + capacity × RECORD_SIZE`
        // bytes (invariant of `capacity`), so the 128 bytes at `off` are inside it. Only this
        // appender writes the mapping's bytes (the flusher only msyncs, other readers use
        // read(2)), and `slot` is a separate stack array, so the ranges do not overlap. The
        // file is never truncated while mapped (we hold its lock; truncation by a foreign
        // process would raise SIGBUS, not unsoundness in Rust terms).
        unsafe {
            std::ptr::copy_nonoverlapping(
                slot.as_ptr(),
                self.shared.map.as_mut_ptr().add(off),
                RECORD_SIZE,
            );
        }
        self.next += 1;
        self.shared.written.store(self.next, Ordering::Release);
        match self.policy {
            FlushPolicy::EveryRecord => {
                if self.shared.flush_upto(self.next).is_err() {
                    return Err(JournalFull);
                }
            }
            FlushPolicy::EveryN(_) => {
                if self.next - self.kicked >= self.every {
                    self.kicked = self.next;
                    self.shared.requested.store(self.next, Ordering::Release);
                    if let Some((_, t)) = &self.flusher {
                        t.unpark();
                    }
                }
            }
            FlushPolicy::Interval(_) | FlushPolicy::Never => {}
        }
        Ok(())
    }

    /// Flushes every appended record to disk now (`msync(MS_SYNC)` on the caller's thread:
    /// blocks for the disk; not for the engine thread's loop).
    pub fn flush(&self) -> io::Result<()> {
        self.shared.flush_upto(self.next)
    }

    /// Records in the file (carried over by compaction + appended).
    pub fn len(&self) -> u64 {
        self.next
    }

    /// Whether the file holds no record.
    pub fn is_empty(&self) -> bool {
        self.next == 0
    }

    /// Record slots of the file.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Record slots left.
    pub fn remaining(&self) -> u64 {
        self.capacity - self.next
    }

    /// The flush policy.
    pub fn policy(&self) -> FlushPolicy {
        self.policy
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `errno` of the first failed flush: the journal refuses appends from then on.
    pub fn failure(&self) -> Option<i32> {
        match self.shared.failure.load(Ordering::Acquire) {
            0 => None,
            e => Some(e),
        }
    }

    /// Counters.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            records: self.next,
            flushed: self.shared.flushed.load(Ordering::Acquire),
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            capacity: self.capacity,
        }
    }
}

impl Drop for Journal {
    /// Stops the flusher and flushes everything appended.
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        if let Some((h, t)) = self.flusher.take() {
            t.unpark();
            let _ = h.join();
        }
        let _ = self.shared.flush_upto(self.next);
    }
}

/// The journal thread: flushes what was appended when the appender asked (`EveryN`) or every
/// interval (`Interval`), keeps the pages ahead of the appender faulted in, and sleeps in
/// between (at most [`PREFAULT_TICK`]); on shutdown flushes once more and returns.
fn flusher(shared: &Shared, policy: FlushPolicy, capacity: u64, mut populated: Option<u64>) {
    let mut last_flush = Instant::now();
    loop {
        let stop = shared.shutdown.load(Ordering::Acquire);
        let written = shared.written.load(Ordering::Acquire);
        let flushed = shared.flushed.load(Ordering::Acquire);
        let due = match policy {
            FlushPolicy::EveryN(_) => shared.requested.load(Ordering::Acquire) > flushed,
            FlushPolicy::Interval(d) => last_flush.elapsed() >= d,
            // EveryRecord: the appender flushes; Never: only `flush()` and drop do.
            FlushPolicy::EveryRecord | FlushPolicy::Never => false,
        };
        if written > flushed && (due || stop) {
            // A failure is recorded in `shared.failure`; the appender refuses from then on.
            let _ = shared.flush_upto(written);
            last_flush = Instant::now();
        } else if due {
            // Nothing to flush: the interval starts again (no spinning on a zero timeout).
            last_flush = Instant::now();
        }
        if stop {
            return;
        }
        // Keep the pages ahead of the appender faulted in (refill when half the window is used).
        if let Some(p) = populated {
            if p < capacity && p.saturating_sub(written) < PREFAULT_RECORDS / 2 {
                populated = prefault(shared, p, capacity);
            }
        }
        match policy {
            FlushPolicy::Interval(d) => {
                thread::park_timeout(d.saturating_sub(last_flush.elapsed()).min(PREFAULT_TICK))
            }
            _ => thread::park_timeout(PREFAULT_TICK),
        }
    }
}

/// Record slots kept faulted in ahead of the appender (4 MiB).
const PREFAULT_RECORDS: u64 = 1 << 15;
/// How often the journal thread checks whether to fault in more pages.
const PREFAULT_TICK: Duration = Duration::from_millis(5);

/// Faults in, writable, the pages of slots `from..from + PREFAULT_RECORDS` (capped at
/// `capacity`) with `madvise(MADV_POPULATE_WRITE)`, so the appender's first write to them takes
/// no page fault. Returns the slot up to which pages are populated, or `None` when the kernel
/// does not support it (before Linux 5.14; appends then take the faults themselves).
fn prefault(shared: &Shared, from: u64, capacity: u64) -> Option<u64> {
    let to = (from + PREFAULT_RECORDS).min(capacity);
    if to <= from {
        return Some(from);
    }
    let off = HEADER_SIZE + from as usize * RECORD_SIZE;
    let len = (to - from) as usize * RECORD_SIZE;
    shared
        .map
        .advise_range(memmap2::Advice::PopulateWrite, off, len)
        .ok()
        .map(|()| to)
}

/// Scans and folds the journal at `path`.
fn read(path: &Path) -> Result<(Recovery, recovery::Fold, ScanSummary), JournalError> {
    let mut fold = recovery::Fold::new();
    let summary = scan(path, |e| fold.add(e))?;
    fold.settle(&summary.header);
    let recovery = fold.finish(path, &summary.header, summary.torn_tail);
    Ok((recovery, fold, summary))
}

/// Writes a fresh journal file at `tmp`: header, `records`, zeros up to `len` (allocated), then
/// `fsync`. Returns it open for reading and writing.
fn write_fresh(
    tmp: &Path,
    header: &Header,
    records: &[[u8; RECORD_SIZE]],
    len: u64,
) -> Result<File, (&'static str, io::Error)> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| ("create", e))?;
    // SAFETY: posix_fallocate on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len as libc::off_t) };
    if rc != 0 {
        if rc == libc::EOPNOTSUPP || rc == libc::EINVAL {
            f.set_len(len).map_err(|e| ("set length", e))?;
        } else {
            return Err(("allocate disk space", io::Error::from_raw_os_error(rc)));
        }
    }
    let mut buf = Vec::with_capacity(HEADER_SIZE + records.len() * RECORD_SIZE);
    buf.extend_from_slice(&header.encode());
    for r in records {
        buf.extend_from_slice(r);
    }
    f.write_all(&buf).map_err(|e| ("write", e))?;
    f.sync_all().map_err(|e| ("fsync", e))?;
    Ok(f)
}
