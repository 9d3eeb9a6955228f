//! # gka host
//!
//! The host side of gka: everything that does IO. For now this is the plugin loader
//! ([`loader`]); the group layer, the member runtime and the policy engine come next.

pub mod identity;
pub mod loader;
