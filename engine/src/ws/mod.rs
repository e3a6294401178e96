//! The WebSocket client (being written).
