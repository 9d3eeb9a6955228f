//! The group layer over TCP: the embedded daemon (`gka daemon`), its client connection, and
//! the versioned frames they exchange. The daemon runs the same sans-IO
//! [`Sequencer`](crate::group::Sequencer) as the in-memory network.

// The daemon and its client do IO: they read the clock to schedule deliveries.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod auth;
mod client;
mod daemon;
pub mod wire;

pub use auth::DaemonAccess;
pub use client::Connection;
pub use daemon::{serve, Daemon, DaemonConfig, DaemonHandle, Limits, MAX_DELAYS, MAX_DELAY_MS};
