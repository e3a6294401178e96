//! Linux specifics behind one small API (being written).
