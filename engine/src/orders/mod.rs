//! Orders: client order ids, the strategy-facing request and event types, the in-flight table,
//! client-side rate limiting, the append-only journal and reconnect reconciliation (see
//! `DESIGN.md`, "Orders").
//!
//! # What the order path does
//! The session ([`crate::session::Session`]) holds the order path; strategies reach it through
//! [`crate::session::Session::handle_order`] (the driver pops the OrderRequest ring into it)
//! and [`crate::session::Session::poll_order_event`] (the driver pushes onto the OrderEvent
//! ring, with an overflow queue that never drops).
//!
//! - **New orders**: refused at once with a [`LocalReason`] when invalid, a duplicate tag, the
//!   table full, the queue full (`RateLimited`) or the journal unable to take the intent.
//!   Otherwise the engine mints a [`ClientOrderId`] (sent as the Deribit label), journals the
//!   intent *before* any byte is encoded, and queues the order. It goes out when the session
//!   is `Live` and the client-side token bucket ([`OrderRateLimit`], Deribit's matching-engine
//!   limits by default) has a token; the `Sent` record follows the encoding. A `10028` answer
//!   puts it back at the head of the queue, sent again after the session's retry hold.
//! - **Cancel / edit** name the order by its tag. An order not yet sent is cancelled or edited
//!   in place; one whose state is not known (request on the wire, or `Unknown` after a drop)
//!   keeps the change until its state is known, then sends it.
//! - **Venue answers and notifications** (`buy`/`sell`/`edit`/`cancel` responses,
//!   `user.orders.{instrument}.raw`, `user.trades.{instrument}.raw`) drive `Accepted`,
//!   `Rejected`, `PartiallyFilled` / `Filled`, `Cancelled`, `Edited`. Fills are delivered
//!   exactly once whichever way they arrive (response trades, notifications, queries): each
//!   order remembers the trade sequence numbers it delivered, and a fill that would take the
//!   filled total past the amount is a double. A final state reported before all its fills
//!   arrived waits for them (and fetches them) before the final event.
//! - **Disconnect**: every order whose fate is open (new order, cancel or edit on the wire with
//!   no answer) gets an `Unknown` event and journal record; every other order the venue knows
//!   is queried again too (cancel-on-disconnect and fills during the gap).
//! - **Reconciliation** runs on every connection after authentication and the user-channel
//!   subscriptions, before `Live` (no new order leaves before it ends): cancel-on-disconnect
//!   is armed when configured, each order to check is looked up with
//!   `get_order_state_by_label`; found → its state is adopted and missing fills are fetched
//!   with `get_user_trades_by_instrument`; not found → never received: sent again with the same
//!   label when its time-to-live allows (`Resent`, ahead of anything queued), else `Expired`.
//!   Events of reconciled outcomes carry `resolved: true`.
//! - **Restart**: with a journal, [`journal::Recovery::orders`] become `Unknown` orders and the
//!   same reconciliation runs after the first authentication; new ids start above the
//!   journal's floor.
//! - **Events the strategy never took** (issue 6: a fill journaled and pushed on the ring, the
//!   process killed before the strategy popped it): every event carries the sequence number of
//!   the journal record that caused it ([`crate::session::Session::poll_order_event_seq`];
//!   an event with no record of its own carries the last record appended before it). The
//!   driver keeps those numbers for the events on the OrderEvent ring and, each turn the
//!   strategy took some (the producer's `len()` fell), journals one
//!   [`journal::JournalRecord::Consumed`] mark with the number of the last one taken
//!   ([`crate::session::Session::order_events_consumed`]) and publishes the count
//!   ([`crate::session::driver::OrderEventsMarked`]). On restart, every record after the last
//!   mark that the strategy saw as an event (`Accepted`, `Rejected`, `Fill`, `Edited`,
//!   `Cancelled`, `Expired`, `Resent`, `Unknown`) of any order, final or not, is replayed
//!   ([`journal::Recovery::replay`]) as an event with `resolved: true`, in record order,
//!   before any other event; then the open orders are reconciled as above (an open order
//!   whose end was journaled but not marked final reports that end only through the replay).
//!   A record is always appended just before its event is queued, so "everything up to the
//!   mark was taken" is exact: nothing taken is replayed, nothing not taken is lost. Events
//!   with no record (a refusal, `ChangeRejected`, the `Accepted` that ends a reconciliation
//!   with nothing new) are not replayed: what they report is reconciled again or was local.
//!   A journal of an earlier build (no [`journal::Header::FLAG_CONSUMED`], no mark) replays
//!   nothing, as before; in a file of this build, no mark means nothing was taken.
//!
//! Everything is preallocated in [`crate::session::Session::new`] (table, indexes, queues,
//! request table, event queue); the steady order path allocates nothing.

mod config;
pub mod ids;
mod index;
pub mod journal;
mod rate;
pub(crate) mod tracker;
mod types;

pub use config::{OrderRateLimit, OrderStats, OrdersConfig};
pub use types::{
    ClientOrderId, Fill, LocalReason, NewOrder, OrderEvent, OrderEventKind, OrderRequest,
    ReasonText, LABEL_LEN, REASON_LEN,
};
