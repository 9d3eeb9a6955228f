//! # gka host
//!
//! The host side of gka: everything that does IO. So far: the plugin loader ([`loader`]),
//! member identities and the trust store ([`identity`]) and signed envelopes ([`envelope`]);
//! the group layer, the member runtime and the policy engine come next.

pub mod client;
pub mod daemon;
pub mod demo;
pub mod envelope;
pub mod group;
pub mod identity;
pub mod loader;
pub mod measure;
pub mod member;
pub mod memnet;
pub mod metrics;
pub mod policy;
pub mod runtime;
pub mod sequencer;
pub mod wire;
