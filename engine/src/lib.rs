//! spinwire's engine: everything that runs on the pinned engine thread.
//!
//! The data path (see `DESIGN.md`): socket → TLS (rustls) → WebSocket frame decoder → venue codec →
//! session, and back the other way. This crate holds the bottom of that path:
//!
//! - [`reactor`]: the busy-poll driver around `mio::Poll` (zero timeout), or a blocking mode.
//! - [`sys`]: Linux specifics (core pinning, SCHED_FIFO, socket options) behind one small API.
//! - [`transport`]: non-blocking TCP and rustls client, never blocking the loop.
//! - [`ws`]: the WebSocket client: resumable handshake and a zero-allocation frame codec.
//! - [`connection`]: one WebSocket client connection: transport + handshake + codec, driven by
//!   readiness events, with preallocated buffers.
//! - [`md`]: fixed-size decoded market-data records (`Copy`, no heap).
//! - [`venue`]: venue protocol codecs (Deribit JSON-RPC v2).
//! - [`latency`]: the clock and per-stage HDR latency recorders.
//! - [`orders`]: order requests and events, client order ids, the journal, reconciliation.
//! - [`logger`]: the logger thread: session events and alerts, formatted off the engine thread.
//! - [`session`]: the sans-IO Deribit session state machine (lifecycle, timers, reconnect, books).
//! - [`handoff`]: the strategy-facing API: `Engine::builder()…spawn()` runs the sessions on one
//!   engine thread and hands back each strategy's ring ends and a clean-shutdown handle.
//! - [`strategy`]: the example quoting strategy (top of book, quotes around mid, cancel/replace).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod connection;
pub mod event_loop;
pub mod handoff;
pub mod latency;
pub mod logger;
pub mod md;
pub mod orders;
pub mod reactor;
pub mod session;
pub mod strategy;
pub mod sys;
pub mod transport;
pub mod venue;
pub mod ws;
