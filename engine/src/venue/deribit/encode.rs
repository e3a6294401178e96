//! The encoder for the requests a Deribit session sends.

use std::time::Duration;

use ring::hmac;

use crate::md::fixed::write_u64;
use crate::md::Fixed;

use super::channel::Channel;
use super::secret::Secret;
use super::types::TimeInForce;

/// Longest order label Deribit accepts, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// Why a request could not be encoded. Nothing useful is in the buffer after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The buffer is too small for the request: lend a larger one.
    #[error("request does not fit in the buffer")]
    BufferTooSmall,
    /// The label is longer than [`MAX_LABEL_CHARS`] characters.
    #[error("label is {chars} characters, more than {MAX_LABEL_CHARS}")]
    LabelTooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// A limit order without a price.
    #[error("limit order without a price")]
    MissingPrice,
    /// A market order with a price.
    #[error("market order with a price")]
    PriceNotAllowed,
    /// An amount that is zero or negative.
    #[error("amount must be positive")]
    NonPositiveAmount,
    /// A subscribe/unsubscribe without channels.
    #[error("no channels given")]
    NoChannels,
    /// A heartbeat interval below 1 ms (Deribit itself wants at least 10 s).
    #[error("heartbeat interval must be at least 1 ms")]
    BadInterval,
}

/// Order type of `private/buy` / `private/sell`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderType {
    /// Limit order: needs a price.
    Limit,
    /// Market order: no price.
    Market,
}

impl OrderType {
    /// Deribit's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderType::Limit => "limit",
            OrderType::Market => "market",
        }
    }
}

/// Scope of cancel-on-disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodScope {
    /// Orders of this connection.
    Connection,
    /// Orders of the whole account.
    Account,
}

impl CodScope {
    /// Deribit's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            CodScope::Connection => "connection",
            CodScope::Account => "account",
        }
    }
}

/// Sorting of a trade query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sorting {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
    /// The venue's default.
    Default,
}

impl Sorting {
    /// Deribit's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Sorting::Asc => "asc",
            Sorting::Desc => "desc",
            Sorting::Default => "default",
        }
    }
}

/// Parameters of `private/buy` and `private/sell`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderParams<'r> {
    /// Instrument name.
    pub instrument_name: &'r str,
    /// Amount (positive).
    pub amount: Fixed,
    /// Limit or market.
    pub order_type: OrderType,
    /// Limit price (required for limit orders, refused for market orders).
    pub price: Option<Fixed>,
    /// Client order id (at most [`MAX_LABEL_CHARS`] characters; empty: none sent).
    pub label: &'r str,
    /// Post-only.
    pub post_only: bool,
    /// With `post_only`: reject instead of repricing an order that would take liquidity.
    pub reject_post_only: bool,
    /// Reduce-only.
    pub reduce_only: bool,
    /// Time in force.
    pub time_in_force: TimeInForce,
}

/// Parameters of `private/edit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditParams<'r> {
    /// Venue order id.
    pub order_id: &'r str,
    /// New amount (positive).
    pub amount: Fixed,
    /// New price (`None`: unchanged).
    pub price: Option<Fixed>,
    /// New post-only flag (`None`: unchanged).
    pub post_only: Option<bool>,
    /// Reject instead of repricing when post-only would take liquidity.
    pub reject_post_only: bool,
}

/// Parameters of `private/get_user_trades_by_instrument`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserTradesQuery<'r> {
    /// Instrument name.
    pub instrument_name: &'r str,
    /// First trade sequence number wanted.
    pub start_seq: Option<u64>,
    /// Last trade sequence number wanted.
    pub end_seq: Option<u64>,
    /// How many trades at most.
    pub count: Option<u32>,
    /// Order of the result.
    pub sorting: Option<Sorting>,
}

/// A request a Deribit session sends. Encode it with [`Request::encode`].
///
/// `Debug` never shows secrets ([`Secret`] prints `***`).
#[derive(Debug, Clone, Copy)]
pub enum Request<'r> {
    /// `public/auth` with `grant_type: client_credentials` (the secret crosses the wire).
    AuthClientCredentials {
        /// Client id.
        client_id: &'r str,
        /// Client secret.
        client_secret: &'r Secret,
        /// Ask for scope `session:NAME` (a session that survives reconnects).
        session: Option<&'r str>,
    },
    /// `public/auth` with `grant_type: client_signature`: `signature` = hex
    /// HMAC-SHA256(secret, "{timestamp}\n{nonce}\n{data}"); the secret never crosses the wire.
    AuthClientSignature {
        /// Client id.
        client_id: &'r str,
        /// Client secret (signs; is not sent).
        client_secret: &'r Secret,
        /// Now, ms since the Unix epoch (the venue checks it against its clock).
        timestamp_ms: u64,
        /// A fresh random nonce (the caller's job; never reuse one).
        nonce: &'r str,
        /// Optional data (usually empty).
        data: &'r str,
        /// Ask for scope `session:NAME`.
        session: Option<&'r str>,
    },
    /// `public/auth` with `grant_type: refresh_token`.
    AuthRefreshToken {
        /// The refresh token of the last auth.
        refresh_token: &'r Secret,
        /// Ask for scope `session:NAME`.
        session: Option<&'r str>,
    },
    /// `public/set_heartbeat {interval}` (seconds, written with ms precision).
    SetHeartbeat {
        /// Interval (Deribit: at least 10 s).
        interval: Duration,
    },
    /// `public/disable_heartbeat`.
    DisableHeartbeat,
    /// `public/test`: the answer to a `test_request`.
    Test,
    /// `public/subscribe`, or `private/subscribe` when a channel is private.
    Subscribe {
        /// Channels.
        channels: &'r [Channel<'r>],
    },
    /// `public/unsubscribe`, or `private/unsubscribe` when a channel is private.
    Unsubscribe {
        /// Channels.
        channels: &'r [Channel<'r>],
    },
    /// `private/logout` (the server answers nothing and closes; cancel-on-disconnect does not
    /// fire).
    Logout {
        /// Invalidate the connection's tokens (Deribit's default: true).
        invalidate_token: bool,
    },
    /// `private/buy`.
    Buy(OrderParams<'r>),
    /// `private/sell`.
    Sell(OrderParams<'r>),
    /// `private/edit`.
    Edit(EditParams<'r>),
    /// `private/cancel {order_id}`.
    Cancel {
        /// Venue order id.
        order_id: &'r str,
    },
    /// `private/cancel_all`.
    CancelAll,
    /// `private/cancel_by_label {label, currency?}`.
    CancelByLabel {
        /// Label.
        label: &'r str,
        /// Currency (`BTC`), to narrow the search.
        currency: Option<&'r str>,
    },
    /// `private/get_order_state_by_label {currency, label}`.
    GetOrderStateByLabel {
        /// Currency (`BTC`).
        currency: &'r str,
        /// Label.
        label: &'r str,
    },
    /// `private/get_open_orders_by_label {currency, label}`.
    GetOpenOrdersByLabel {
        /// Currency (`BTC`).
        currency: &'r str,
        /// Label.
        label: &'r str,
    },
    /// `private/get_user_trades_by_instrument`.
    GetUserTradesByInstrument(UserTradesQuery<'r>),
    /// `private/enable_cancel_on_disconnect {scope}`.
    EnableCancelOnDisconnect {
        /// Scope.
        scope: CodScope,
    },
}

impl Request<'_> {
    /// The JSON-RPC method.
    pub fn method(&self) -> &'static str {
        match self {
            Request::AuthClientCredentials { .. }
            | Request::AuthClientSignature { .. }
            | Request::AuthRefreshToken { .. } => "public/auth",
            Request::SetHeartbeat { .. } => "public/set_heartbeat",
            Request::DisableHeartbeat => "public/disable_heartbeat",
            Request::Test => "public/test",
            Request::Subscribe { channels } => {
                if channels.iter().any(Channel::is_private) {
                    "private/subscribe"
                } else {
                    "public/subscribe"
                }
            }
            Request::Unsubscribe { channels } => {
                if channels.iter().any(Channel::is_private) {
                    "private/unsubscribe"
                } else {
                    "public/unsubscribe"
                }
            }
            Request::Logout { .. } => "private/logout",
            Request::Buy(_) => "private/buy",
            Request::Sell(_) => "private/sell",
            Request::Edit(_) => "private/edit",
            Request::Cancel { .. } => "private/cancel",
            Request::CancelAll => "private/cancel_all",
            Request::CancelByLabel { .. } => "private/cancel_by_label",
            Request::GetOrderStateByLabel { .. } => "private/get_order_state_by_label",
            Request::GetOpenOrdersByLabel { .. } => "private/get_open_orders_by_label",
            Request::GetUserTradesByInstrument(_) => "private/get_user_trades_by_instrument",
            Request::EnableCancelOnDisconnect { .. } => "private/enable_cancel_on_disconnect",
        }
    }

    /// Writes `{"jsonrpc":"2.0","id":ID,"method":..,"params":{..}}` into `buf` and returns its
    /// length. No allocation; numbers are formatted by hand, strings JSON-escaped.
    ///
    /// # Errors
    /// [`EncodeError`]: the buffer is too small, or an argument is invalid.
    pub fn encode(&self, id: u64, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut w = Writer { buf, pos: 0 };
        w.raw(b"{\"jsonrpc\":\"2.0\",\"id\":")?;
        w.u64(id)?;
        w.raw(b",\"method\":\"")?;
        w.raw(self.method().as_bytes())?;
        w.raw(b"\",\"params\":{")?;
        let mut p = Params { w, first: true };
        self.params(&mut p)?;
        p.w.raw(b"}}")?;
        Ok(p.w.pos)
    }

    fn params(&self, p: &mut Params<'_>) -> Result<(), EncodeError> {
        match *self {
            Request::AuthClientCredentials {
                client_id,
                client_secret,
                session,
            } => {
                p.str("grant_type", "client_credentials")?;
                p.str("client_id", client_id)?;
                p.str("client_secret", client_secret.expose())?;
                p.session(session)?;
            }
            Request::AuthClientSignature {
                client_id,
                client_secret,
                timestamp_ms,
                nonce,
                data,
                session,
            } => {
                p.str("grant_type", "client_signature")?;
                p.str("client_id", client_id)?;
                p.u64("timestamp", timestamp_ms)?;
                p.str("nonce", nonce)?;
                p.str("data", data)?;
                p.key("signature")?;
                p.w.raw(b"\"")?;
                let tag = signature(client_secret, timestamp_ms, nonce, data);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut hex = [0u8; 64];
                for (i, b) in tag.as_ref().iter().enumerate() {
                    hex[2 * i] = HEX[(b >> 4) as usize];
                    hex[2 * i + 1] = HEX[(b & 0xf) as usize];
                }
                let n = 2 * tag.as_ref().len();
                p.w.raw(&hex[..n.min(hex.len())])?;
                p.w.raw(b"\"")?;
                p.session(session)?;
            }
            Request::AuthRefreshToken {
                refresh_token,
                session,
            } => {
                p.str("grant_type", "refresh_token")?;
                p.str("refresh_token", refresh_token.expose())?;
                p.session(session)?;
            }
            Request::SetHeartbeat { interval } => {
                let ms = interval.as_millis();
                if ms == 0 {
                    return Err(EncodeError::BadInterval);
                }
                let secs = i64::try_from(ms)
                    .ok()
                    .and_then(|ms| Fixed::from_parts(ms, 3))
                    .ok_or(EncodeError::BadInterval)?;
                p.fixed("interval", secs)?;
            }
            Request::DisableHeartbeat | Request::Test | Request::CancelAll => {}
            Request::Subscribe { channels } | Request::Unsubscribe { channels } => {
                if channels.is_empty() {
                    return Err(EncodeError::NoChannels);
                }
                p.key("channels")?;
                p.w.raw(b"[")?;
                for (i, c) in channels.iter().enumerate() {
                    if i > 0 {
                        p.w.raw(b",")?;
                    }
                    let [a, b, c] = c.parts();
                    p.w.raw(b"\"")?;
                    p.w.escaped(a)?;
                    p.w.escaped(b)?;
                    if !c.is_empty() {
                        p.w.raw(b".")?;
                        p.w.escaped(c)?;
                    }
                    p.w.raw(b"\"")?;
                }
                p.w.raw(b"]")?;
            }
            Request::Logout { invalidate_token } => p.bool("invalidate_token", invalidate_token)?,
            Request::Buy(ref o) | Request::Sell(ref o) => {
                if o.amount <= Fixed::ZERO {
                    return Err(EncodeError::NonPositiveAmount);
                }
                p.str("instrument_name", o.instrument_name)?;
                p.fixed("amount", o.amount)?;
                p.str("type", o.order_type.as_str())?;
                match (o.order_type, o.price) {
                    (OrderType::Limit, Some(price)) => p.fixed("price", price)?,
                    (OrderType::Limit, None) => return Err(EncodeError::MissingPrice),
                    (OrderType::Market, Some(_)) => return Err(EncodeError::PriceNotAllowed),
                    (OrderType::Market, None) => {}
                }
                if !o.label.is_empty() {
                    p.label(o.label)?;
                }
                p.bool("post_only", o.post_only)?;
                if o.reject_post_only {
                    p.bool("reject_post_only", true)?;
                }
                p.bool("reduce_only", o.reduce_only)?;
                p.str("time_in_force", o.time_in_force.as_str())?;
            }
            Request::Edit(ref e) => {
                if e.amount <= Fixed::ZERO {
                    return Err(EncodeError::NonPositiveAmount);
                }
                p.str("order_id", e.order_id)?;
                p.fixed("amount", e.amount)?;
                if let Some(price) = e.price {
                    p.fixed("price", price)?;
                }
                if let Some(po) = e.post_only {
                    p.bool("post_only", po)?;
                }
                if e.reject_post_only {
                    p.bool("reject_post_only", true)?;
                }
            }
            Request::Cancel { order_id } => p.str("order_id", order_id)?,
            Request::CancelByLabel { label, currency } => {
                p.label(label)?;
                if let Some(c) = currency {
                    p.str("currency", c)?;
                }
            }
            Request::GetOrderStateByLabel { currency, label }
            | Request::GetOpenOrdersByLabel { currency, label } => {
                p.str("currency", currency)?;
                p.label(label)?;
            }
            Request::GetUserTradesByInstrument(ref q) => {
                p.str("instrument_name", q.instrument_name)?;
                if let Some(s) = q.start_seq {
                    p.u64("start_seq", s)?;
                }
                if let Some(s) = q.end_seq {
                    p.u64("end_seq", s)?;
                }
                if let Some(c) = q.count {
                    p.u64("count", c as u64)?;
                }
                if let Some(s) = q.sorting {
                    p.str("sorting", s.as_str())?;
                }
            }
            Request::EnableCancelOnDisconnect { scope } => p.str("scope", scope.as_str())?,
        }
        Ok(())
    }
}

/// HMAC-SHA256(secret, "{timestamp}\n{nonce}\n{data}"), fed piecewise (no allocation).
fn signature(secret: &Secret, timestamp_ms: u64, nonce: &str, data: &str) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    let mut digits = [0u8; 20];
    let n = write_u64(timestamp_ms, &mut digits);
    ctx.update(&digits[..n]);
    ctx.update(b"\n");
    ctx.update(nonce.as_bytes());
    ctx.update(b"\n");
    ctx.update(data.as_bytes());
    ctx.sign()
}

/// A cursor over the caller's buffer.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    #[inline]
    fn raw(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let end = self.pos + b.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferTooSmall)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    #[inline]
    fn u64(&mut self, v: u64) -> Result<(), EncodeError> {
        let mut t = [0u8; 20];
        let n = write_u64(v, &mut t);
        self.raw(&t[..n])
    }

    /// Writes `s` JSON-escaped (no quotes): runs of plain bytes are copied at once.
    fn escaped(&mut self, s: &str) -> Result<(), EncodeError> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let b = s.as_bytes();
        let mut run = 0;
        for (i, &c) in b.iter().enumerate() {
            let esc: Option<&[u8]> = match c {
                b'"' => Some(b"\\\""),
                b'\\' => Some(b"\\\\"),
                b'\n' => Some(b"\\n"),
                b'\r' => Some(b"\\r"),
                b'\t' => Some(b"\\t"),
                0..=0x1f => None,
                _ => continue,
            };
            self.raw(&b[run..i])?;
            match esc {
                Some(e) => self.raw(e)?,
                None => self.raw(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(c >> 4) as usize],
                    HEX[(c & 0xf) as usize],
                ])?,
            }
            run = i + 1;
        }
        self.raw(&b[run..])
    }
}

/// The members of `params`.
struct Params<'b> {
    w: Writer<'b>,
    first: bool,
}

impl Params<'_> {
    #[inline]
    fn key(&mut self, k: &str) -> Result<(), EncodeError> {
        if !self.first {
            self.w.raw(b",")?;
        }
        self.first = false;
        self.w.raw(b"\"")?;
        self.w.raw(k.as_bytes())?;
        self.w.raw(b"\":")
    }

    fn str(&mut self, k: &str, v: &str) -> Result<(), EncodeError> {
        self.key(k)?;
        self.w.raw(b"\"")?;
        self.w.escaped(v)?;
        self.w.raw(b"\"")
    }

    fn u64(&mut self, k: &str, v: u64) -> Result<(), EncodeError> {
        self.key(k)?;
        self.w.u64(v)
    }

    fn fixed(&mut self, k: &str, v: Fixed) -> Result<(), EncodeError> {
        self.key(k)?;
        let mut t = [0u8; 28];
        let n = v.write_to(&mut t).ok_or(EncodeError::BufferTooSmall)?;
        self.w.raw(&t[..n])
    }

    fn bool(&mut self, k: &str, v: bool) -> Result<(), EncodeError> {
        self.key(k)?;
        self.w.raw(if v { b"true" } else { b"false" })
    }

    fn label(&mut self, label: &str) -> Result<(), EncodeError> {
        let chars = label.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(EncodeError::LabelTooLong { chars });
        }
        self.str("label", label)
    }

    fn session(&mut self, session: Option<&str>) -> Result<(), EncodeError> {
        if let Some(name) = session {
            self.key("scope")?;
            self.w.raw(b"\"session:")?;
            self.w.escaped(name)?;
            self.w.raw(b"\"")?;
        }
        Ok(())
    }
}
