//! Settings and counters of the order path.

use crate::venue::deribit::CodScope;

/// Client-side token bucket for matching-engine requests (`buy`, `sell`, `edit`, `cancel`).
///
/// Defaults follow Deribit's documented matching-engine limit of the lowest account tier:
/// 5 requests per second sustained with a burst of 20 (higher tiers get more; set these to
/// your account's limits). Going over makes Deribit answer `10028 too_many_requests` and may
/// end the session, so the engine queues what does not fit instead of sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRateLimit {
    /// Sustained requests per second (the refill rate). At least 1.
    pub per_second: u32,
    /// Bucket size: requests that may go out back to back. At least 1.
    pub burst: u32,
}

impl Default for OrderRateLimit {
    fn default() -> Self {
        OrderRateLimit {
            per_second: 5,
            burst: 20,
        }
    }
}

/// Settings of the order path of a session ([`crate::session::SessionConfig::orders`]).
///
/// The order path is on when `instruments` is not empty (and the session has credentials):
/// the session then subscribes `user.orders.{instrument}.raw` and
/// `user.trades.{instrument}.raw` for each, arms cancel-on-disconnect on every connect when
/// configured, and reconciles its orders before going `Live`.
#[derive(Debug, Clone)]
pub struct OrdersConfig {
    /// Currency of the instruments (`BTC`), for `get_order_state_by_label`.
    pub currency: String,
    /// Instruments orders may be placed on (added to the instrument table).
    pub instruments: Vec<String>,
    /// Arm `private/enable_cancel_on_disconnect` with this scope on every connect.
    pub cancel_on_disconnect: Option<CodScope>,
    /// Client-side rate limit of matching-engine requests.
    pub rate: OrderRateLimit,
    /// Client-side rate limit of reconciliation queries (`get_order_state_by_label`,
    /// `get_user_trades_by_instrument`). Default: Deribit's non-matching-engine credits (500
    /// per request, a pool of 50 000 refilled at 10 000 per second): 20 per second, burst 100.
    pub query_rate: OrderRateLimit,
    /// Size of the in-flight order table: most orders not yet final at once.
    pub max_orders: usize,
    /// Most requests held back (rate limit exhausted, or the session not `Live`) before new
    /// ones are refused with [`LocalReason::RateLimited`](super::LocalReason::RateLimited).
    pub queue: usize,
    /// The order journal (`None`: no journal; orders do not survive a process crash).
    pub journal: Option<super::journal::JournalConfig>,
    /// First client order id of this run (ids are `label_base`, `label_base + 1`, ...). `0`:
    /// derived from the journal's floor when there is a journal, else from the clock by the
    /// driver ([`super::journal::mint_base`]); a sans-IO session without either starts at 1.
    pub label_base: u64,
    /// The id counter to mint from, shared with the other sessions of the same engine (the
    /// engine loop sets it: [`IdMint`](super::ids::IdMint)); `None`: a counter of the
    /// session's own, from `label_base`.
    pub mint: Option<super::ids::IdMint>,
    /// How long after an order was sent a venue's "no order with this label" is believed. A
    /// connection that died may still have delivered the order, and a busy venue may execute it
    /// later: an order not found sooner is queried again at `sent + resend_grace` (the session
    /// stays out of `Live` meanwhile) and only then resent (or expired, or reported cancelled).
    /// For an order recovered from the journal the grace counts from its first "not found".
    /// `0`: believe the first answer.
    pub resend_grace: std::time::Duration,
}

impl Default for OrdersConfig {
    /// Off (no instruments); `BTC`; no cancel-on-disconnect; Deribit's default rate limits; 1024
    /// orders; a queue of 256; no journal; a 2 s resend grace.
    fn default() -> Self {
        OrdersConfig {
            currency: "BTC".into(),
            instruments: Vec::new(),
            cancel_on_disconnect: None,
            rate: OrderRateLimit::default(),
            query_rate: OrderRateLimit {
                per_second: 20,
                burst: 100,
            },
            max_orders: 1024,
            queue: 256,
            journal: None,
            label_base: 0,
            mint: None,
            resend_grace: std::time::Duration::from_secs(2),
        }
    }
}

/// Counters of the order path (all since the session was created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderStats {
    /// Order requests written (new orders, resends, cancels, edits).
    pub sent: u64,
    /// Orders accepted by the venue.
    pub accepted: u64,
    /// Orders rejected by the venue.
    pub rejected: u64,
    /// Requests refused locally (nothing sent).
    pub refused: u64,
    /// Orders completely filled.
    pub filled: u64,
    /// Partial-fill events.
    pub partially_filled: u64,
    /// Orders cancelled.
    pub cancelled: u64,
    /// Edits accepted.
    pub edited: u64,
    /// Orders expired (never received, time-to-live passed).
    pub expired: u64,
    /// Orders sent again after reconciliation found them never received.
    pub resent: u64,
    /// Orders that became unknown on a disconnect.
    pub unknown: u64,
    /// Fills delivered (each exactly once).
    pub fills: u64,
    /// Fills seen again (response, notification and query overlap) and not delivered twice.
    pub duplicate_fills: u64,
    /// Requests answered `10028 too_many_requests` and queued again.
    pub venue_rate_limited: u64,
    /// Cancel or edit requests the venue refused.
    pub changes_rejected: u64,
    /// Reconciliation queries sent.
    pub queries: u64,
    /// Order events moved to the overflow queue because the OrderEvent ring was full, at
    /// most at once (filled in by the driver).
    pub overflow_high_water: u64,
    /// Journal appends that failed after the intent (the order went on; the journal is behind).
    pub journal_errors: u64,
    /// Order round trips not recorded because more than 64 ended in one loop turn.
    pub round_trips_dropped: u64,
}
