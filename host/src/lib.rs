//! # gka host
//!
//! The host side of gka: everything around the sans-IO plugins that one member needs.
//!
//! | room | what it holds | IO? |
//! |---|---|---|
//! | [`loader`] | finds, hashes and loads plugin libraries behind the stable ABI | files |
//! | [`identity`], [`envelope`] | signing identities, the trust store, signed envelopes | no |
//! | [`group`] | the group layer's interface, its sans-IO sequencer and the in-memory network | no |
//! | [`net`] | the same group layer over TCP: the daemon and its client | yes |
//! | [`member`] | the member core: one member's state machine around a session | no |
//! | [`policy`] | the policy file, predictions, decisions, live inputs and measurements | `measure` |
//! | [`runtime`] | the async driver of a member core over a group endpoint | yes |
//! | [`metrics`] | Prometheus metrics | yes |
//!
//! The simulator and `gka bench` live in the `gka-sim` crate, and the command line and the
//! demo in `gka-cli`, so that embedding a member does not pull in plotting or the CLI.

pub mod envelope;
pub mod group;
pub mod identity;
pub mod loader;
pub mod located;
pub mod member;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod runtime;
