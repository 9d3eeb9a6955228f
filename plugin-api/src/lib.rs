//! # gka plugin API
//!
//! The one crate a gka key-agreement plugin depends on. It holds:
//!
//! - the safe, sans-IO face of a protocol: [`Protocol`] (descriptor, cost model, session
//!   factory) and [`Session`] (views, payloads and refreshes in; broadcasts, unicasts and keys
//!   out), see [`protocol`];
//! - [`SessionCore`], the bookkeeping every session shares (views, epochs, sealing and opening
//!   payloads, key derivation, counters);
//! - the shared group math: RFC 7919 groups, 256-bit exponents, counted exponentiation with a
//!   fast fixed-base table for g, element validation, element-to-exponent hashing ([`group`]),
//!   HKDF-SHA256 key derivation ([`kdf`]) and the payload codec ([`codec`]);
//! - the stable ABI ([`abi`]) and the [`export_protocol!`] macro that turns a `Protocol` into a
//!   loadable `cdylib`.
//!
//! ```text
//!  host (IO, clock, signatures, metrics)
//!    │  View / payload / refresh, now_ms            ▲ Broadcast / Unicast / Key
//!    ▼                                              │
//!  LoadedProtocol ══ abi_stable boundary (abi.rs) ══ export_protocol!(MyProtocol)
//!                                                   │
//!                                  MyProtocol: Protocol ──► Box<dyn Session>
//!                                                   │
//!                                   SessionCore + group math (this crate)
//! ```
//!
//! Plugins never open sockets, spawn threads, read clocks or use OS randomness: time arrives as
//! `now_ms` and randomness from the seed in [`SessionConfig`].

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod abi;
mod agreement;
pub mod codec;
mod core;
mod error;
pub mod group;
pub mod kdf;
mod monty;
pub mod protocol;
mod rfc7919;
pub mod rng;

pub use crate::agreement::{unexpected, Agreement, Context, Hosted};
pub use crate::core::{SessionCore, ViewChange};
pub use crate::error::{ErrorKind, PayloadError, SessionError};
pub use crate::group::{Dh, Element, ElementError, GroupId, Secret};
pub use crate::protocol::{
    epoch_of, CostFigures, Counters, Descriptor, EventKind, GroupKey, MemberId, Output, Protocol,
    Session, SessionConfig, View, MAX_KEYS_PER_VIEW, MAX_VIEW_ID,
};
/// The RNG traits sessions use (re-exported so plugins need no direct dependency).
pub use rand_core;
