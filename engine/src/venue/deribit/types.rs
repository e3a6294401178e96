//! Typed, borrowed views of responses and private notifications.

use std::fmt;
use std::marker::PhantomData;

use crate::md::{Direction, Fixed};
use crate::venue::json::{JsonStr, Kind, Scanner, Value};

use super::decode::{direction_of, fixed_of, DecodeError};
use super::secret::SecretStr;

/// Deribit and JSON-RPC error codes a session acts on.
pub mod error_code {
    /// `order_not_found`.
    pub const ORDER_NOT_FOUND: i64 = 10004;
    /// `too_many_requests`: retry later.
    pub const TOO_MANY_REQUESTS: i64 = 10028;
    /// `not_open_order`: the order is no longer open.
    pub const NOT_OPEN_ORDER: i64 = 11044;
    /// `post_only_reject`.
    pub const POST_ONLY_REJECT: i64 = 11054;
    /// `internal_server_error`.
    pub const INTERNAL_SERVER_ERROR: i64 = 11094;
    /// `invalid_credentials`: fatal for the session.
    pub const INVALID_CREDENTIALS: i64 = 13004;
    /// `unauthorized`: re-authenticate.
    pub const UNAUTHORIZED: i64 = 13009;
    /// JSON-RPC parse error.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON-RPC invalid request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// JSON-RPC method not found.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// JSON-RPC invalid params.
    pub const INVALID_PARAMS: i64 = -32602;
}

/// Decoding a typed view from a [`Value`].
pub trait FromValue<'a>: Sized {
    /// Decodes `v`.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field at fault.
    fn from_value(v: Value<'a>) -> Result<Self, DecodeError>;
}

impl<'a> FromValue<'a> for JsonStr<'a> {
    fn from_value(v: Value<'a>) -> Result<Self, DecodeError> {
        v.str().map_err(DecodeError::at("value"))
    }
}

/// A response to a request.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// The request id (`None` when the server answered `id: null`, e.g. a parse error).
    pub id: Option<u64>,
    /// `result`, or `error`. Decode a result with the view for the method:
    /// [`AuthResult`], [`OrderResponse`], [`Order`], [`Items`] of [`Order`] or of channel names
    /// ([`JsonStr`]), [`UserTradesPage`]; `"ok"` and counts with [`Value::str`] / [`Value::u64`].
    pub outcome: Result<Value<'a>, RpcError<'a>>,
}

/// A JSON-RPC `error` object.
#[derive(Debug, Clone, Copy)]
pub struct RpcError<'a> {
    /// The code (see [`error_code`]).
    pub code: i64,
    /// The message (`too_many_requests`, `Invalid params`, ...), as it appears in the text.
    pub message: JsonStr<'a>,
    /// The optional `data` (`{"param": .., "reason": ..}`).
    pub data: Option<Value<'a>>,
}

impl<'a> RpcError<'a> {
    /// `data.reason`, when present and a string.
    pub fn reason(&self) -> Option<JsonStr<'a>> {
        self.data?.get("reason")?.str().ok()
    }

    /// Whether the request may succeed if retried later (10028 too_many_requests, 11094
    /// internal_server_error).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.code,
            error_code::TOO_MANY_REQUESTS | error_code::INTERNAL_SERVER_ERROR
        )
    }
}

impl<'a> FromValue<'a> for RpcError<'a> {
    fn from_value(v: Value<'a>) -> Result<Self, DecodeError> {
        if v.kind() != Kind::Object {
            return Err(DecodeError::WrongType { field: "error" });
        }
        let mut code = None;
        let mut message = None;
        let mut data = None;
        for (k, v) in v.members() {
            match k.raw() {
                "code" => code = Some(v.i64().map_err(DecodeError::at("code"))?),
                "message" => message = Some(v.str().map_err(DecodeError::at("message"))?),
                "data" if !v.is_null() => data = Some(v),
                _ => {}
            }
        }
        Ok(RpcError {
            code: code.ok_or(DecodeError::MissingField { field: "code" })?,
            message: message.unwrap_or(JsonStr::EMPTY),
            data,
        })
    }
}

/// A lazily decoded list of `T`: the elements of an array, or a single object standing for a
/// list of one (as `user.orders.{instrument}.raw` sends). Each item is decoded on iteration.
pub struct Items<'a, T> {
    value: Option<Value<'a>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Items<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Items<'_, T> {}

impl<T> fmt::Debug for Items<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Items({} items)", self.len())
    }
}

impl<'a, T> Items<'a, T> {
    /// No items.
    pub fn empty() -> Items<'a, T> {
        Items {
            value: None,
            _t: PhantomData,
        }
    }

    /// An array of items or one object as a single item.
    pub(crate) fn one_or_many(v: Value<'a>, field: &'static str) -> Result<Self, DecodeError> {
        match v.kind() {
            Kind::Array | Kind::Object => Ok(Items {
                value: Some(v),
                _t: PhantomData,
            }),
            _ => Err(DecodeError::WrongType { field }),
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self.value {
            Some(v) if v.kind() == Kind::Array => v.elements().count(),
            Some(_) => 1,
            None => 0,
        }
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a, T: FromValue<'a> + 'a> Items<'a, T> {
    /// The items, each decoded as it is reached.
    pub fn iter(&self) -> impl Iterator<Item = Result<T, DecodeError>> + 'a {
        let (single, many) = match self.value {
            Some(v) if v.kind() == Kind::Array => (None, Some(v.elements())),
            Some(v) => (Some(v), None),
            None => (None, None),
        };
        single
            .into_iter()
            .chain(many.into_iter().flatten())
            .map(T::from_value)
    }
}

impl<'a, T: FromValue<'a> + 'a> FromValue<'a> for Items<'a, T> {
    fn from_value(v: Value<'a>) -> Result<Self, DecodeError> {
        if v.kind() != Kind::Array {
            return Err(DecodeError::WrongType { field: "result" });
        }
        Ok(Items {
            value: Some(v),
            _t: PhantomData,
        })
    }
}

/// Result of `public/auth`. Tokens are [`SecretStr`]: `Debug` never shows them.
#[derive(Debug, Clone, Copy)]
pub struct AuthResult<'a> {
    /// Access token (authorizes this connection; sent back only by REST clients).
    pub access_token: SecretStr<'a>,
    /// Refresh token, for `public/auth` with `grant_type: refresh_token`.
    pub refresh_token: SecretStr<'a>,
    /// Lifetime of the access token, seconds.
    pub expires_in: u64,
    /// Granted scope (`connection mainaccount`, `session:NAME ...`).
    pub scope: JsonStr<'a>,
    /// `token_type` (`bearer`), when present.
    pub token_type: Option<JsonStr<'a>>,
}

impl<'a> AuthResult<'a> {
    /// The `NAME` of a `session:NAME` scope, when granted.
    pub fn session_name(&self) -> Option<&'a str> {
        self.scope
            .raw()
            .split(' ')
            .find_map(|s| s.strip_prefix("session:"))
    }
}

impl<'a> FromValue<'a> for AuthResult<'a> {
    fn from_value(v: Value<'a>) -> Result<Self, DecodeError> {
        if v.kind() != Kind::Object {
            return Err(DecodeError::WrongType { field: "result" });
        }
        let (mut access, mut refresh, mut expires, mut scope, mut token_type) =
            (None, None, None, None, None);
        for (k, v) in v.members() {
            match k.raw() {
                "access_token" => access = Some(v.str().map_err(DecodeError::at("access_token"))?),
                "refresh_token" => {
                    refresh = Some(v.str().map_err(DecodeError::at("refresh_token"))?)
                }
                "expires_in" => expires = Some(v.u64().map_err(DecodeError::at("expires_in"))?),
                "scope" => scope = Some(v.str().map_err(DecodeError::at("scope"))?),
                "token_type" => token_type = Some(v.str().map_err(DecodeError::at("token_type"))?),
                _ => {}
            }
        }
        Ok(AuthResult {
            access_token: SecretStr::new(access.ok_or(DecodeError::MissingField {
                field: "access_token",
            })?),
            refresh_token: SecretStr::new(refresh.ok_or(DecodeError::MissingField {
                field: "refresh_token",
            })?),
            expires_in: expires.ok_or(DecodeError::MissingField {
                field: "expires_in",
            })?,
            scope: scope.ok_or(DecodeError::MissingField { field: "scope" })?,
            token_type,
        })
    }
}

/// Order state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderState {
    /// Resting (possibly partly filled).
    Open,
    /// Completely filled.
    Filled,
    /// Rejected.
    Rejected,
    /// Cancelled.
    Cancelled,
    /// A trigger order waiting for its trigger.
    Untriggered,
    /// A trigger order that has triggered.
    Triggered,
    /// Archived.
    Archive,
}

impl OrderState {
    /// Parses Deribit's spelling.
    pub fn parse(s: &str) -> Option<OrderState> {
        Some(match s {
            "open" => OrderState::Open,
            "filled" => OrderState::Filled,
            "rejected" => OrderState::Rejected,
            "cancelled" => OrderState::Cancelled,
            "untriggered" => OrderState::Untriggered,
            "triggered" => OrderState::Triggered,
            "archive" => OrderState::Archive,
            _ => return None,
        })
    }

    /// Whether the order can change no more (filled, rejected, cancelled, archived).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderState::Filled | OrderState::Rejected | OrderState::Cancelled | OrderState::Archive
        )
    }
}

/// Time in force of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimeInForce {
    /// Rests until cancelled (Deribit's default).
    #[default]
    GoodTilCancelled,
    /// Rests until the end of the trading day.
    GoodTilDay,
    /// Fills completely at once or not at all.
    FillOrKill,
    /// Takes what it can, cancels the rest.
    ImmediateOrCancel,
}

impl TimeInForce {
    /// Deribit's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeInForce::GoodTilCancelled => "good_til_cancelled",
            TimeInForce::GoodTilDay => "good_til_day",
            TimeInForce::FillOrKill => "fill_or_kill",
            TimeInForce::ImmediateOrCancel => "immediate_or_cancel",
        }
    }

    /// Parses Deribit's spelling.
    pub fn parse(s: &str) -> Option<TimeInForce> {
        Some(match s {
            "good_til_cancelled" => TimeInForce::GoodTilCancelled,
            "good_til_day" => TimeInForce::GoodTilDay,
            "fill_or_kill" => TimeInForce::FillOrKill,
            "immediate_or_cancel" => TimeInForce::ImmediateOrCancel,
            _ => return None,
        })
    }
}

/// An order object (from `user.orders.*`, `private/buy|sell|edit|cancel`,
/// `get_order_state_by_label`, `get_open_orders_by_label`, ...).
#[derive(Debug, Clone, Copy)]
pub struct Order<'a> {
    /// Venue order id.
    pub order_id: JsonStr<'a>,
    /// Order state.
    pub order_state: OrderState,
    /// The client's label (empty when none).
    pub label: JsonStr<'a>,
    /// Instrument name (empty when absent).
    pub instrument_name: JsonStr<'a>,
    /// Direction, when present.
    pub direction: Option<Direction>,
    /// Order type (`limit`, `market`, `stop_limit`, ...), when present.
    pub order_type: Option<JsonStr<'a>>,
    /// Limit price; `None` for market orders (`"market_price"`) or when absent.
    pub price: Option<Fixed>,
    /// Order amount.
    pub amount: Fixed,
    /// Filled amount.
    pub filled_amount: Fixed,
    /// Average fill price, as `f64`: a mean of fills need not lie on any decimal grid, so it is
    /// not read as exact [`Fixed`]. `None` when absent or 0 with nothing filled.
    pub average_price: Option<f64>,
    /// Time in force, when present.
    pub time_in_force: Option<TimeInForce>,
    /// Post-only flag.
    pub post_only: bool,
    /// Reduce-only flag.
    pub reduce_only: bool,
    /// Why it was cancelled, when it was.
    pub cancel_reason: Option<JsonStr<'a>>,
    /// Creation time, ms (0 when absent).
    pub creation_timestamp: u64,
    /// Last change, ms (0 when absent).
    pub last_update_timestamp: u64,
}

impl<'a> FromValue<'a> for Order<'a> {
    fn from_value(v: Value<'a>) -> Result<Self, DecodeError> {
        if v.kind() != Kind::Object {
            return Err(DecodeError::WrongType { field: "order" });
        }
        let empty = JsonStr::EMPTY;
        let mut o = Order {
            order_id: empty,
            order_state: OrderState::Open,
            label: empty,
            instrument_name: empty,
            direction: None,
            order_type: None,
            price: None,
            amount: Fixed::ZERO,
            filled_amount: Fixed::ZERO,
            average_price: None,
            time_in_force: None,
            post_only: false,
            reduce_only: false,
            cancel_reason: None,
            creation_timestamp: 0,
            last_update_timestamp: 0,
        };
        let (mut have_id, mut have_state, mut have_amount) = (false, false, false);
        for (k, v) in v.members() {
            match k.raw() {
                "order_id" => {
                    o.order_id = v.str().map_err(DecodeError::at("order_id"))?;
                    have_id = true;
                }
                "order_state" => {
                    let s = v.str().map_err(DecodeError::at("order_state"))?;
                    o.order_state = OrderState::parse(s.raw()).ok_or(DecodeError::BadValue {
                        field: "order_state",
                    })?;
                    have_state = true;
                }
                "label" if !v.is_null() => o.label = v.str().map_err(DecodeError::at("label"))?,
                "instrument_name" => {
                    o.instrument_name = v.str().map_err(DecodeError::at("instrument_name"))?
                }
                "direction" => o.direction = Some(direction_of(&mut Scanner::new(v.raw()))?),
                "order_type" => {
                    o.order_type = Some(v.str().map_err(DecodeError::at("order_type"))?)
                }
                "price" => {
                    o.price = match v.kind() {
                        Kind::Number => Some(fixed_of(v, "price")?),
                        // "market_price" for market orders.
                        Kind::String | Kind::Null => None,
                        _ => return Err(DecodeError::WrongType { field: "price" }),
                    }
                }
                "amount" => {
                    o.amount = fixed_of(v, "amount")?;
                    have_amount = true;
                }
                "filled_amount" => o.filled_amount = fixed_of(v, "filled_amount")?,
                "average_price" if !v.is_null() => {
                    o.average_price = Some(v.f64().map_err(DecodeError::at("average_price"))?)
                }
                "time_in_force" => {
                    let s = v.str().map_err(DecodeError::at("time_in_force"))?;
                    o.time_in_force =
                        Some(TimeInForce::parse(s.raw()).ok_or(DecodeError::BadValue {
                            field: "time_in_force",
                        })?);
                }
                "post_only" => o.post_only = v.bool().map_err(DecodeError::at("post_only"))?,
                "reduce_only" => {
                    o.reduce_only = v.bool().map_err(DecodeError::at("reduce_only"))?
                }
                "cancel_reason" if !v.is_null() => {
                    o.cancel_reason = Some(v.str().map_err(DecodeError::at("cancel_reason"))?)
                }
                "creation_timestamp" => {
                    o.creation_timestamp = v.u64().map_err(DecodeError::at("creation_timestamp"))?
                }
                "last_update_timestamp" => {
                    o.last_update_timestamp =
                        v.u64().map_err(DecodeError::at("last_update_timestamp"))?
                }
                _ => {}
            }
        }
        if !have_id {
            return Err(DecodeError::MissingField { field: "order_id" });
        }
        if !have_state {
            return Err(DecodeError::MissingField {
                field: "order_state",
            });
        }
        if !have_amount {
            return Err(DecodeError::MissingField { field: "amount" });
        }
        if o.average_price == Some(0.0) && o.filled_amount == Fixed::ZERO {
            o.average_price = None;
        }
        Ok(o)
    }
}

/// One of the account's fills (from `user.trades.*`, order responses,
/// `get_user_trades_by_instrument`).
#[derive(Debug, Clone, Copy)]
pub struct UserTrade<'a> {
    /// Venue trade id.
    pub trade_id: JsonStr<'a>,
    /// Per-instrument trade sequence.
    pub trade_seq: u64,
    /// The order that traded.
    pub order_id: JsonStr<'a>,
    /// That order's label, when present.
    pub label: Option<JsonStr<'a>>,
    /// Instrument name (empty when absent).
    pub instrument_name: JsonStr<'a>,
    /// Direction of the order.
    pub direction: Direction,
    /// Fill price.
    pub price: Fixed,
    /// Fill amount.
    pub amount: Fixed,
    /// Fill time, ms.
    pub timestamp_ms: u64,
    /// State of the order after this fill, when present.
    pub state: Option<OrderState>,
    /// `M` (maker) or `T` (taker), when present.
    pub liquidity: Option<JsonStr<'a>>,
}

impl<'a> FromValue<'a> for UserTrade<'a> {
    fn from_value(v: Value<'a>) -> Result<Self, DecodeError> {
        if v.kind() != Kind::Object {
            return Err(DecodeError::WrongType { field: "trade" });
        }
        let (mut trade_id, mut trade_seq, mut order_id, mut label, mut inst) =
            (None, None, None, None, None);
        let (mut direction, mut price, mut amount, mut ts, mut state, mut liquidity) =
            (None, None, None, None, None, None);
        for (k, v) in v.members() {
            match k.raw() {
                "trade_id" => {
                    trade_id = Some(match v.kind() {
                        // A numeric id: its digits, as text.
                        Kind::Number => JsonStr::plain(v.raw())
                            .ok_or(DecodeError::WrongType { field: "trade_id" })?,
                        _ => v.str().map_err(DecodeError::at("trade_id"))?,
                    })
                }
                "trade_seq" => trade_seq = Some(v.u64().map_err(DecodeError::at("trade_seq"))?),
                "order_id" => order_id = Some(v.str().map_err(DecodeError::at("order_id"))?),
                "label" if !v.is_null() => label = Some(v.str().map_err(DecodeError::at("label"))?),
                "instrument_name" => {
                    inst = Some(v.str().map_err(DecodeError::at("instrument_name"))?)
                }
                "direction" => direction = Some(direction_of(&mut Scanner::new(v.raw()))?),
                "price" => price = Some(fixed_of(v, "price")?),
                "amount" => amount = Some(fixed_of(v, "amount")?),
                "timestamp" => ts = Some(v.u64().map_err(DecodeError::at("timestamp"))?),
                "state" => {
                    let s = v.str().map_err(DecodeError::at("state"))?;
                    state = Some(
                        OrderState::parse(s.raw())
                            .ok_or(DecodeError::BadValue { field: "state" })?,
                    );
                }
                "liquidity" if !v.is_null() => {
                    liquidity = Some(v.str().map_err(DecodeError::at("liquidity"))?)
                }
                _ => {}
            }
        }
        Ok(UserTrade {
            trade_id: trade_id.ok_or(DecodeError::MissingField { field: "trade_id" })?,
            trade_seq: trade_seq.ok_or(DecodeError::MissingField { field: "trade_seq" })?,
            order_id: order_id.ok_or(DecodeError::MissingField { field: "order_id" })?,
            label,
            instrument_name: inst.unwrap_or(JsonStr::EMPTY),
            direction: direction.ok_or(DecodeError::MissingField { field: "direction" })?,
            price: price.ok_or(DecodeError::MissingField { field: "price" })?,
            amount: amount.ok_or(DecodeError::MissingField { field: "amount" })?,
            timestamp_ms: ts.ok_or(DecodeError::MissingField { field: "timestamp" })?,
            state,
            liquidity,
        })
    }
}

/// Result of `private/buy`, `private/sell`, `private/edit`: the order and its immediate fills.
#[derive(Debug, Clone, Copy)]
pub struct OrderResponse<'a> {
    /// The order after the request.
    pub order: Order<'a>,
    /// Fills made by the request.
    pub trades: Items<'a, UserTrade<'a>>,
}

impl<'a> FromValue<'a> for OrderResponse<'a> {
    fn from_value(v: Value<'a>) -> Result<Self, DecodeError> {
        if v.kind() != Kind::Object {
            return Err(DecodeError::WrongType { field: "result" });
        }
        let order = v
            .get("order")
            .ok_or(DecodeError::MissingField { field: "order" })?;
        let trades = match v.get("trades") {
            None => Items::empty(),
            Some(t) if t.is_null() => Items::empty(),
            Some(t) if t.kind() == Kind::Array => Items::from_value(t)?,
            Some(_) => return Err(DecodeError::WrongType { field: "trades" }),
        };
        Ok(OrderResponse {
            order: Order::from_value(order)?,
            trades,
        })
    }
}

/// Result of `private/get_user_trades_by_instrument`.
#[derive(Debug, Clone, Copy)]
pub struct UserTradesPage<'a> {
    /// The fills.
    pub trades: Items<'a, UserTrade<'a>>,
    /// Whether more fills match than were returned.
    pub has_more: bool,
}

impl<'a> FromValue<'a> for UserTradesPage<'a> {
    fn from_value(v: Value<'a>) -> Result<Self, DecodeError> {
        if v.kind() != Kind::Object {
            return Err(DecodeError::WrongType { field: "result" });
        }
        let trades = v
            .get("trades")
            .ok_or(DecodeError::MissingField { field: "trades" })?;
        if trades.kind() != Kind::Array {
            return Err(DecodeError::WrongType { field: "trades" });
        }
        let has_more = match v.get("has_more") {
            Some(h) => h.bool().map_err(DecodeError::at("has_more"))?,
            None => false,
        };
        Ok(UserTradesPage {
            trades: Items::from_value(trades)?,
            has_more,
        })
    }
}
