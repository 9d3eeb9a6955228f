//! One module per subcommand: its flags (a `clap::Args` struct) and its `run`.

pub(crate) mod access;
pub(crate) mod bench;
pub(crate) mod ca;
pub(crate) mod ctl;
pub(crate) mod daemon;
pub(crate) mod demo;
pub(crate) mod keygen;
pub(crate) mod member;
pub(crate) mod plugins;
pub(crate) mod policy;
