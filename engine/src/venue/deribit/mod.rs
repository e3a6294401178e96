//! Deribit JSON-RPC v2 codec: [`decode`] for what arrives, [`Request::encode`] for what is sent.
//!
//! # Decoding
//! [`decode`] takes one WebSocket text message and classifies it ([`Incoming`]):
//! - `book.{instrument}.{raw|100ms|agg2}` → [`Incoming::Book`]: the rows go straight into the
//!   caller's `&mut [MdRecord]` as [`BookRow`](crate::md::BookRow)s (exact fixed-point prices,
//!   first/last/snapshot flags, the message's `change_id`/`prev_change_id` on every row);
//! - `trades.{instrument}.{raw|100ms|agg2}` → [`Incoming::Trades`], likewise into
//!   [`Trade`](crate::md::Trade)s;
//! - `user.orders.*` / `user.trades.*` → views decoded on iteration ([`Order`], [`UserTrade`]);
//! - `heartbeat` → [`HeartbeatKind`] (answer `test_request` with [`Request::Test`]);
//! - responses → [`Response`]: `id`, and `result` as a borrowed [`Value`](super::json::Value)
//!   to read with the view of the method ([`AuthResult`], [`OrderResponse`], [`Items`] of
//!   [`Order`], [`UserTradesPage`]) or `error` as [`RpcError`] (code, message borrowed).
//!
//! Book notifications laid out as Deribit writes them (compact, Deribit's member order, which
//! the simulator keeps) take a fast path that matches the fixed text as literals; any other
//! layout takes the general path ([`decode_general`]) with the same result.
//! Market data takes one pass over the text, with no allocation and no intermediate vectors;
//! instruments are looked up in an [`InstrumentTable`](crate::md::InstrumentTable). Unknown
//! fields are skipped. Nothing panics on any input; malformed input is a [`DecodeError`].
//! The simulator's extension field `sw_send_ns` (in `params.data`, or in each trade) lands in the
//! records (0 when absent).
//!
//! # Encoding
//! [`Request`] lists the requests a session sends; [`Request::encode`] writes one into a
//! caller-lent buffer (no allocation). `client_signature` auth signs with HMAC-SHA256 (`ring`);
//! secrets are [`Secret`]s, which never show in `Debug` output.
//!
//! # Example
//! ```
//! use spinwire_engine::md::{InstrumentTable, MdRecord};
//! use spinwire_engine::venue::deribit::{decode, Channel, Incoming, Request, HeartbeatKind};
//!
//! let mut instruments = InstrumentTable::with_capacity(16)?;
//! let btc = instruments.insert("BTC-PERPETUAL")?;
//! let mut out = [MdRecord::default(); 256];
//!
//! let msg = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw",
//!   "data":{"type":"change","timestamp":1566347390042,"prev_change_id":14202051597,
//!   "instrument_name":"BTC-PERPETUAL","change_id":14202051674,
//!   "bids":[["change",10700.0,45690.0]],"asks":[["delete",10756.5,0.0]]}}}"#;
//! match decode(msg, &instruments, &mut out)? {
//!     Incoming::Book(b) => {
//!         assert_eq!((b.instrument, b.rows, b.prev_change_id), (btc, 2, 14202051597));
//!         let MdRecord::Book(row) = out[1] else { unreachable!() };
//!         assert_eq!(row.price.to_string(), "10756.5");
//!     }
//!     other => panic!("{other:?}"),
//! }
//!
//! let hb = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#;
//! assert!(matches!(decode(hb, &instruments, &mut out)?, Incoming::Heartbeat(HeartbeatKind::TestRequest)));
//!
//! let mut buf = [0u8; 256];
//! let channels = [Channel::parse("book.BTC-PERPETUAL.raw")];
//! let n = Request::Subscribe { channels: &channels }.encode(7, &mut buf)?;
//! assert_eq!(
//!     std::str::from_utf8(&buf[..n])?,
//!     r#"{"jsonrpc":"2.0","id":7,"method":"public/subscribe","params":{"channels":["book.BTC-PERPETUAL.raw"]}}"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod channel;
mod decode;
mod encode;
mod fast;
mod secret;
mod types;

pub use channel::{Channel, Interval};
pub use decode::{
    decode, decode_general, BookUpdate, DecodeError, HeartbeatKind, Incoming, TradesUpdate,
};
pub use encode::{
    CodScope, EditParams, EncodeError, OrderParams, OrderType, Request, Sorting, UserTradesQuery,
    MAX_LABEL_CHARS,
};
pub use secret::{Secret, SecretStr};
pub use types::{
    error_code, AuthResult, FromValue, Items, Order, OrderResponse, OrderState, Response, RpcError,
    TimeInForce, UserTrade, UserTradesPage,
};
