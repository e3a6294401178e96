//! Fixed-size decoded market-data records: `Copy`, no heap, at most 64 bytes.
//!
//! - [`MdRecord`]: what travels over the MarketData ring, either a [`BookRow`] (one row of a
//!   book snapshot or change, carrying its message's `change_id`/`prev_change_id`, timestamps
//!   and first/last/snapshot [`BookFlags`]) or a [`Trade`].
//! - [`Fixed`]: prices and amounts as exact decimal fixed-point (`i64` × 10^-8), parsed from the
//!   decimal text without going through `f64`; values that do not fit are errors, never rounded.
//!   See [`fixed`] for the range and precision.
//! - [`InstrumentTable`]: instrument names to dense [`InstrumentId`]s, filled at subscribe time
//!   and looked up on the hot path without allocating.
//!
//! The venue codecs ([`crate::venue`]) fill these records.
//!
//! ```
//! use spinwire_engine::md::{Fixed, MdRecord};
//! let p: Fixed = "60000.5".parse()?;
//! assert_eq!(p.raw(), 6_000_050_000_000);
//! assert_eq!(p.to_string(), "60000.5");
//! assert!(std::mem::size_of::<MdRecord>() <= 64);
//! # Ok::<(), spinwire_engine::md::NumError>(())
//! ```

pub mod fixed;
mod instruments;
mod record;
pub(crate) mod swar;

pub use fixed::{parse_u64_prefix, Fixed, NumError, FIXED_DECIMALS, FIXED_SCALE};
pub use instruments::{InstrumentId, InstrumentTable, TableError, MAX_INSTRUMENTS, MAX_NAME_LEN};
pub use record::{BookAction, BookFlags, BookRow, Direction, MdRecord, Side, Trade, TradeFlags};
