//! The library behind the `spinwire` command: the venue simulator and the command implementations,
//! usable in-process by tests and the demo.
#![deny(missing_docs)]

pub mod demo;
pub mod report;
pub mod sim;
pub mod tap;
