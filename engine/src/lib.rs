//! spinwire's engine: everything that runs on the pinned engine thread.
//!
//! The data path (see `DESIGN.md`): socket → TLS (rustls) → WebSocket frame decoder → venue codec →
//! session, and back the other way. This crate holds the bottom of that path:
//!
//! - [`reactor`]: the busy-poll driver around `mio::Poll` (zero timeout), or a blocking mode.
//! - [`sys`]: Linux specifics (core pinning, SCHED_FIFO, socket options) behind one small API.
//! - [`transport`]: non-blocking TCP and rustls client, never blocking the loop.
//! - [`ws`]: the WebSocket client: resumable handshake and a zero-allocation frame codec.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod reactor;
pub mod sys;
pub mod transport;
pub mod ws;
