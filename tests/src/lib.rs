//! # gka-tests: the workspace's integration-test support
//!
//! The plugin harness and the shared scenario suite live in
//! [`gka-conformance`](gka_conformance) (a crate a plugin author adds on its own); they are
//! re-exported here. Beside them: known-answer vectors ([`kat`]), benchmarks ([`bench`]),
//! algebraic checks ([`algebra`]), linked plugins ([`linked`]), member cores over the
//! sequencer ([`core_net`]), groups of runtimes over the daemon ([`group`]), etcd clusters of
//! a test's own ([`etcd`]), `gka` processes ([`process`]), the fuzz targets' bodies
//! ([`fuzzing`]) and the built libraries tests load ([`artifacts`]).

pub use gka_conformance::{
    scenario_tests, scenarios, star, strs, ComponentId, Harness, Measured, Protocol, MAX_WAVES,
};

pub mod algebra;
pub mod artifacts;
pub mod bench;
pub mod core_net;
pub mod etcd;
pub mod fuzzing;
pub mod group;
pub mod kat;
pub mod linked;
pub mod process;
