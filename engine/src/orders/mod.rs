//! Orders: client order ids, the strategy-facing request and event types, in-flight tracking,
//! the append-only journal and reconnect reconciliation (see `DESIGN.md`, "Orders").

mod types;

pub use types::{
    ClientOrderId, Fill, LocalReason, NewOrder, OrderEvent, OrderEventKind, OrderRequest,
    ReasonText, LABEL_LEN, REASON_LEN,
};
