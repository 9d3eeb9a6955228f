//! # gka host
//!
//! The host side of gka: everything that does IO, time, signing and metrics around the sans-IO
//! plugins: the plugin loader ([`loader`]), identities and the trust store ([`identity`]),
//! signed envelopes ([`envelope`]), the group layer ([`group`]: [`sequencer`], [`memnet`],
//! [`daemon`]), the member core ([`member`]) with its control messages ([`control`]), live
//! measurements ([`live`], [`measure`]) and agreed protocol switch ([`switch`]), the policy
//! engine ([`policy`]), the async runtime ([`runtime`]), metrics ([`metrics`]) and the demo.

pub mod client;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod envelope;
pub mod group;
pub mod identity;
pub mod live;
pub mod loader;
pub mod measure;
pub mod member;
pub mod memnet;
pub mod metrics;
pub mod policy;
pub mod runtime;
pub mod sequencer;
pub mod sim;
pub mod switch;
pub mod wire;
