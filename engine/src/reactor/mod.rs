//! The busy-poll reactor (being written).
