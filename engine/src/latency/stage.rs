//! The fixed set of measured stages.

use std::fmt;

/// A measured stage of the data path. Each has one histogram per recorder; the discriminant is
/// its index in [`Stage::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    /// Socket read returned → WebSocket frame decoded (TLS and framing).
    SocketToFrame = 0,
    /// WebSocket frame decoded → venue record decoded (JSON / venue codec).
    FrameToRecord = 1,
    /// Record decoded → pushed on the strategy's MarketData ring.
    RecordToRing = 2,
    /// Pushed on the ring (engine thread) → popped by the strategy (strategy thread).
    RingToStrategy = 3,
    /// Venue send time (`sw_send_ns` or the venue's timestamp, wall clock) → popped by the
    /// strategy: the whole trip, network included.
    WireToStrategy = 4,
    /// Order request popped by the engine → its bytes written to the socket.
    OrderToWire = 5,
    /// Order bytes written → the venue's response (ack or reject) decoded.
    OrderRoundTrip = 6,
    /// Connection lost → session `Live` again.
    ReconnectDowntime = 7,
}

impl Stage {
    /// Number of stages.
    pub const COUNT: usize = 8;

    /// Every stage, in index order.
    pub const ALL: [Stage; Stage::COUNT] = [
        Stage::SocketToFrame,
        Stage::FrameToRecord,
        Stage::RecordToRing,
        Stage::RingToStrategy,
        Stage::WireToStrategy,
        Stage::OrderToWire,
        Stage::OrderRoundTrip,
        Stage::ReconnectDowntime,
    ];

    /// The stage's index in [`Stage::ALL`] and in every per-stage array.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The stage at `index`, or `None` past the last.
    pub const fn from_index(index: usize) -> Option<Stage> {
        if index < Stage::COUNT {
            Some(Stage::ALL[index])
        } else {
            None
        }
    }

    /// A stable snake_case name, used for file names, interval-log tags and JSON keys
    /// (no spaces or commas).
    pub const fn name(self) -> &'static str {
        match self {
            Stage::SocketToFrame => "socket_to_frame",
            Stage::FrameToRecord => "frame_to_record",
            Stage::RecordToRing => "record_to_ring",
            Stage::RingToStrategy => "ring_to_strategy",
            Stage::WireToStrategy => "wire_to_strategy",
            Stage::OrderToWire => "order_to_wire",
            Stage::OrderRoundTrip => "order_round_trip",
            Stage::ReconnectDowntime => "reconnect_downtime",
        }
    }

    /// The stage whose [`name`](Stage::name) is `name`.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }

    /// A one-line human description of where the stage starts and ends.
    pub const fn description(self) -> &'static str {
        match self {
            Stage::SocketToFrame => "socket read -> WebSocket frame decoded",
            Stage::FrameToRecord => "frame decoded -> venue record decoded",
            Stage::RecordToRing => "record decoded -> pushed on the strategy ring",
            Stage::RingToStrategy => "ring pushed -> strategy popped",
            Stage::WireToStrategy => "venue send time -> strategy popped (wall clock)",
            Stage::OrderToWire => "order request popped -> bytes written",
            Stage::OrderRoundTrip => "order sent -> venue response decoded",
            Stage::ReconnectDowntime => "connection lost -> session live again",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_and_names_round_trip() {
        for (i, s) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(Stage::from_index(i), Some(s));
            assert_eq!(Stage::from_name(s.name()), Some(s));
            assert!(!s.name().contains([' ', ',']));
        }
        assert_eq!(Stage::from_index(Stage::COUNT), None);
        assert_eq!(Stage::from_name("nope"), None);
    }
}
