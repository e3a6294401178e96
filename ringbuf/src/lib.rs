//! Placeholder: the ring is being written.
