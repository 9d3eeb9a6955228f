//! The group layer over TCP: the embedded daemon (`gka daemon`), its client connection, and
//! the versioned frames they exchange. The daemon runs the same sans-IO
//! [`Sequencer`](crate::group::Sequencer) as the in-memory network.

mod client;
mod daemon;
pub mod wire;

pub use client::Connection;
pub use daemon::{serve, Daemon, DaemonConfig, MAX_DELAY_MS};
