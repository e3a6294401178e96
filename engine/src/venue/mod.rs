//! Venue protocol codecs.
//!
//! - [`json`]: the zero-allocation JSON scanner the codecs are built on.
//! - [`deribit`]: Deribit JSON-RPC v2 (decoder for what arrives, encoder for what is sent).

pub mod deribit;
pub mod json;
