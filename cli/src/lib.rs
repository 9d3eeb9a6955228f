//! # gka command line
//!
//! The `gka` binary (`src/main.rs`, one module per subcommand in `src/cmd/`) and the demo it
//! runs ([`demo`]), kept apart from the host library so that embedding a member pulls in
//! neither the CLI nor the demo.

pub mod demo;
