//! # gka command line
//!
//! The `gka` binary (`src/main.rs`, one module per subcommand in `src/cmd/`), the demo it runs
//! ([`demo`]) and the chaos soak of `gka bench chaos` ([`chaos`]), kept apart from the host library so that embedding a member pulls in
//! neither the CLI nor the demo.

pub mod chaos;
pub mod demo;
