//! The Deribit venue simulator (being written).
