//! The end-to-end benchmark harness: one feeder serving a Deribit market-data stream over
//! loopback, and the three clients it is measured with (see [`clients`]):
//!
//! | client | transport | decode | handoff |
//! |---|---|---|---|
//! | spinwire | mio busy-poll, rustls for `wss` | own WS codec + Deribit decoder | SPSC ring of `MdRecord` |
//! | tokio-tungstenite | tokio current-thread runtime (epoll) | tungstenite + serde_json derive | `std::sync::mpsc` |
//! | floor | bare mio read loop, plain TCP | none (lines of raw bytes) | SPSC `u8` ring |
//!
//! Every client's strategy thread records wire-to-strategy latency per stream message:
//! `realtime_ns()` when the message (its last record) is popped − the `sw_send_ns` the feeder
//! stamped into it right before writing it. The I/O thread runs on core 0, the strategy on core
//! 1 (when [`RunSpec::pin`]); the feeder is not pinned.
//!
//! [`examples/e2e_hdr.rs`] prints the HDR table and ratios; `benches/e2e.rs` is the criterion
//! bench.
//!
//! [`examples/e2e_hdr.rs`]: https://github.com/spinwire/spinwire/blob/main/bench/examples/e2e_hdr.rs

pub mod clients;
pub mod feeder;
pub mod stream;

pub use clients::{run, Client, Mode, RunResult, RunSched, RunSpec, Sched};
pub use feeder::{
    answer_request, remove_tls_files, FeedConfig, FeedStats, Feeder, Pace, RpcAnswer, Wire,
};

use hdrhistogram::Histogram;

/// Why a run failed. Cold path: the text says what went wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    /// A socket, thread, certificate or runtime could not be set up (the machine, not the
    /// clients): check the text.
    #[error("setup: {0}")]
    Setup(String),
    /// The feeder failed while serving.
    #[error("feeder: {0}")]
    Feeder(String),
    /// A client failed (connect, handshake, session).
    #[error("client: {0}")]
    Client(String),
}

/// The percentiles the harness reports, ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
    /// Values recorded.
    pub count: u64,
}

impl Percentiles {
    /// Reads them from an HDR histogram (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            count: h.len(),
        }
    }
}
