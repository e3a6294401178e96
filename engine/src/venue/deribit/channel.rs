//! Deribit subscription channel names.

use std::fmt;

/// Aggregation interval of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    /// `raw`: every event (needs an authorized connection).
    Raw,
    /// `100ms`: events grouped every 100 ms.
    Ms100,
    /// `agg2`: aggregated.
    Agg2,
}

impl Interval {
    /// The interval as Deribit spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Interval::Raw => "raw",
            Interval::Ms100 => "100ms",
            Interval::Agg2 => "agg2",
        }
    }

    /// Parses `raw`, `100ms` or `agg2`.
    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "raw" => Some(Interval::Raw),
            "100ms" => Some(Interval::Ms100),
            "agg2" => Some(Interval::Agg2),
            _ => None,
        }
    }
}

/// A subscription channel.
///
/// The four kinds the codec decodes are typed; any other channel is [`Channel::Other`] (its
/// notifications arrive as [`Incoming::Subscription`](super::Incoming::Subscription)).
/// Instrument names never contain a `.`, so `book.BTC-PERPETUAL.none.10.100ms` (grouped book)
/// or `user.orders.future.BTC.raw` (per kind and currency) are `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel<'a> {
    /// `book.{instrument}.{interval}`: snapshot, then changes.
    Book {
        /// Instrument name.
        instrument: &'a str,
        /// Interval.
        interval: Interval,
    },
    /// `trades.{instrument}.{interval}`: public trades.
    Trades {
        /// Instrument name.
        instrument: &'a str,
        /// Interval.
        interval: Interval,
    },
    /// `user.orders.{instrument}.{interval}`: the account's order updates.
    UserOrders {
        /// Instrument name.
        instrument: &'a str,
        /// Interval.
        interval: Interval,
    },
    /// `user.trades.{instrument}.{interval}`: the account's fills.
    UserTrades {
        /// Instrument name.
        instrument: &'a str,
        /// Interval.
        interval: Interval,
    },
    /// Any other channel, verbatim.
    Other(&'a str),
}

impl<'a> Channel<'a> {
    /// Classifies a channel name (never fails: unknown names are [`Channel::Other`]).
    pub fn parse(name: &'a str) -> Channel<'a> {
        let typed = |rest: &'a str| -> Option<(&'a str, Interval)> {
            let (inst, iv) = rest.rsplit_once('.')?;
            if inst.is_empty() || inst.contains('.') {
                return None;
            }
            Some((inst, Interval::parse(iv)?))
        };
        let parsed = if let Some(rest) = name.strip_prefix("book.") {
            typed(rest).map(|(instrument, interval)| Channel::Book {
                instrument,
                interval,
            })
        } else if let Some(rest) = name.strip_prefix("trades.") {
            typed(rest).map(|(instrument, interval)| Channel::Trades {
                instrument,
                interval,
            })
        } else if let Some(rest) = name.strip_prefix("user.orders.") {
            typed(rest).map(|(instrument, interval)| Channel::UserOrders {
                instrument,
                interval,
            })
        } else if let Some(rest) = name.strip_prefix("user.trades.") {
            typed(rest).map(|(instrument, interval)| Channel::UserTrades {
                instrument,
                interval,
            })
        } else {
            None
        };
        parsed.unwrap_or(Channel::Other(name))
    }

    /// Whether the channel is private (needs `private/subscribe`): the `user.*` channels.
    pub fn is_private(&self) -> bool {
        match self {
            Channel::UserOrders { .. } | Channel::UserTrades { .. } => true,
            Channel::Other(name) => name.starts_with("user."),
            _ => false,
        }
    }

    /// The instrument of a typed channel.
    pub fn instrument(&self) -> Option<&'a str> {
        match *self {
            Channel::Book { instrument, .. }
            | Channel::Trades { instrument, .. }
            | Channel::UserOrders { instrument, .. }
            | Channel::UserTrades { instrument, .. } => Some(instrument),
            Channel::Other(_) => None,
        }
    }

    /// The parts of the name: prefix, instrument, interval (or the whole name for `Other`).
    pub(crate) fn parts(&self) -> [&'a str; 3] {
        match *self {
            Channel::Book {
                instrument,
                interval,
            } => ["book.", instrument, interval.as_str()],
            Channel::Trades {
                instrument,
                interval,
            } => ["trades.", instrument, interval.as_str()],
            Channel::UserOrders {
                instrument,
                interval,
            } => ["user.orders.", instrument, interval.as_str()],
            Channel::UserTrades {
                instrument,
                interval,
            } => ["user.trades.", instrument, interval.as_str()],
            Channel::Other(name) => ["", name, ""],
        }
    }
}

impl fmt::Display for Channel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.parts();
        if c.is_empty() {
            write!(f, "{a}{b}")
        } else {
            write!(f, "{a}{b}.{c}")
        }
    }
}
