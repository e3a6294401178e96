//! Non-blocking TCP and rustls (being written).
