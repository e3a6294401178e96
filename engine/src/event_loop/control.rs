//! Control commands: how a strategy steers its session at run time.
//!
//! Each session has a Control ring (strategy → engine) beside its OrderRequest ring. The engine
//! pops it every turn (a bounded batch) and answers every command with an
//! [`EventKind::Control`](crate::session::EventKind::Control) on the session's SessionEvent
//! ring carrying the command's `tag` and its [`ControlOutcome`]. A command is `Copy` and holds
//! its channel name inline: nothing is allocated to send one.

use std::fmt;

/// Longest channel name a control command carries, bytes.
pub const CHANNEL_NAME_MAX: usize = 63;

/// A channel name held inline (at most [`CHANNEL_NAME_MAX`] bytes of UTF-8).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChannelName {
    len: u8,
    bytes: [u8; CHANNEL_NAME_MAX],
}

/// A channel name longer than [`CHANNEL_NAME_MAX`] bytes, or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel name of {len} bytes: a control command holds 1..={CHANNEL_NAME_MAX}")]
pub struct ChannelNameError {
    /// The name's length.
    pub len: usize,
}

impl ChannelName {
    /// Copies `name`.
    ///
    /// # Errors
    /// [`ChannelNameError`] when it is empty or longer than [`CHANNEL_NAME_MAX`] bytes.
    pub fn new(name: &str) -> Result<ChannelName, ChannelNameError> {
        let len = name.len();
        if len == 0 || len > CHANNEL_NAME_MAX {
            return Err(ChannelNameError { len });
        }
        let mut bytes = [0; CHANNEL_NAME_MAX];
        bytes[..len].copy_from_slice(name.as_bytes());
        Ok(ChannelName {
            len: len as u8,
            bytes,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ever filled from a `&str` in `new`, cut at its own length.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What a strategy asks of its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Subscribe to a channel now (and after every reconnect).
    Subscribe(ChannelName),
    /// Unsubscribe from a channel (and stop replaying it).
    Unsubscribe(ChannelName),
    /// Mark a subscribed book channel stale and take a fresh snapshot.
    Resync(ChannelName),
    /// Log out and close; the session stays stopped until [`Control::Start`].
    Stop,
    /// Connect a stopped session again.
    Start,
}

impl Control {
    /// The command's kind, as echoed in its answer.
    pub fn kind(&self) -> ControlKind {
        match self {
            Control::Subscribe(_) => ControlKind::Subscribe,
            Control::Unsubscribe(_) => ControlKind::Unsubscribe,
            Control::Resync(_) => ControlKind::Resync,
            Control::Stop => ControlKind::Stop,
            Control::Start => ControlKind::Start,
        }
    }
}

/// A control command with the strategy's tag, echoed in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRequest {
    /// Chosen by the strategy; the answer carries it back.
    pub tag: u32,
    /// What to do.
    pub command: Control,
}

/// The kind of a [`Control`] command (without its channel), for answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    /// [`Control::Subscribe`].
    Subscribe,
    /// [`Control::Unsubscribe`].
    Unsubscribe,
    /// [`Control::Resync`].
    Resync,
    /// [`Control::Stop`].
    Stop,
    /// [`Control::Start`].
    Start,
}

impl ControlKind {
    /// Lower-case name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ControlKind::Subscribe => "subscribe",
            ControlKind::Unsubscribe => "unsubscribe",
            ControlKind::Resync => "resync",
            ControlKind::Stop => "stop",
            ControlKind::Start => "start",
        }
    }
}

/// How a control command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlOutcome {
    /// Done, or under way: a subscription is sent now when the session is live (its
    /// `Subscribed` event follows) or on the next connection; a stop logs out; a start
    /// connects.
    Accepted,
    /// Subscribe: the channel is already subscribed.
    AlreadySubscribed,
    /// Unsubscribe or resync: the channel is not subscribed.
    NotSubscribed,
    /// Resync: the channel is not a book.
    NotABook,
    /// Subscribe: the session's subscription or instrument table is full.
    TableFull,
    /// Start: the session is already running; stop: it is not running.
    WrongState,
}

impl ControlOutcome {
    /// Lower-case name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ControlOutcome::Accepted => "accepted",
            ControlOutcome::AlreadySubscribed => "already_subscribed",
            ControlOutcome::NotSubscribed => "not_subscribed",
            ControlOutcome::NotABook => "not_a_book",
            ControlOutcome::TableFull => "table_full",
            ControlOutcome::WrongState => "wrong_state",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_held_inline_and_bounded() {
        let c = ChannelName::new("book.BTC-PERPETUAL.raw").unwrap();
        assert_eq!(c.as_str(), "book.BTC-PERPETUAL.raw");
        assert_eq!(ChannelName::new("").unwrap_err().len, 0);
        let long = "x".repeat(CHANNEL_NAME_MAX + 1);
        assert!(ChannelName::new(&long).is_err());
        assert!(ChannelName::new(&long[1..]).is_ok());
    }
}
