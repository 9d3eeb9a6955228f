//! # gka plugin SDK
//!
//! The one crate a gka key-agreement plugin depends on. It holds:
//!
//! - the safe, sans-IO face of a protocol: [`Protocol`] (descriptor, cost model, session
//!   factory) and [`Session`] (views, payloads and refreshes in; broadcasts, unicasts and keys
//!   out), see [`mod@protocol`];
//! - the framework a protocol's logic runs in: [`Agreement`] (what a plugin writes: one run's
//!   state and its reactions), [`Hosted`] (the [`Session`] around it) and [`Context`] (the
//!   [`SessionCore`] with views, epochs, sealing and opening payloads, key derivation and
//!   counters, plus the last agreed state); [`protocol!`] declares a plugin's factory;
//! - the shared group math: RFC 7919 groups, 256-bit exponents, counted exponentiation with a
//!   fast fixed-base table for g, element validation, element-to-exponent hashing ([`group`]),
//!   HKDF-SHA256 key derivation ([`kdf`]) and the payload codec ([`codec`]);
//! - [`export_protocol!`], which turns a `Protocol` into a loadable `cdylib` through the
//!   stable boundary of the `gka-abi` crate ([`export`]).
//!
//! ```text
//!  host (IO, clock, signatures, metrics)
//!    │  View / payload / refresh, now_ms            ▲ Broadcast / Unicast / Key
//!    ▼                                              │
//!  host loader ══════ gka-abi boundary ══════ export_protocol!(MyProtocol)
//!                                                   │
//!                      protocol! { MyProtocol } ──► Hosted<MyRun> (a Session)
//!                                                   │
//!                          MyRun: Agreement, Context (SessionCore + agreed state)
//!                                                   │
//!                                          group math (this crate)
//! ```
//!
//! Plugins never open sockets, spawn threads, read clocks or use OS randomness: time arrives as
//! `now_ms` and randomness from the seed in [`SessionConfig`].
//!
//! # Completion and refresh: the contract
//!
//! - **Completion.** An agreement completes at a member when its key is installed
//!   ([`SessionCore::install_key`]). Members need not complete at the same message: in a
//!   protocol whose last message is a broadcast (committed when it is delivered back, see
//!   [`Context::broadcast_final`]) they all do; in one whose last messages are unicasts, each
//!   completes when its own arrives, and the group layer may order other messages between
//!   them. The side rule (what a member keeps across a view change, see [`SessionCore`])
//!   assumes the previous agreement completed at the same message everywhere: a protocol whose
//!   last messages are unicasts must keep no agreed state across views (start every view
//!   afresh), or a view that cuts between two members' completions gives them different sides.
//! - **Refresh.** A refresh is handed to every member at the same point of the agreed order,
//!   and **every refresh yields exactly one new epoch, after the running agreement's**. A
//!   member that is not agreeing starts it at once; a member whose agreement is still running
//!   (it has not received its last message yet) queues it and starts it the moment its key is
//!   installed ([`SessionCore::start_queued_refresh`]). Every member thus agrees the same
//!   epochs, in the same order, whatever the protocol's last message. A new view drops the
//!   queued refreshes: its own agreement yields a fresh key.
//! - **Early messages.** While a refresh is queued here, peers that completed sooner may
//!   already send the next epoch's messages. [`SessionCore::open_or_hold`] holds those (at
//!   most [`MAX_HELD_PAYLOADS`] of them) and hands them back, in their order, once this member
//!   starts that epoch ([`SessionCore::take_held`]). [`Hosted`] does all of this; a plugin
//!   written on it only implements [`Agreement::on_refresh`].

#![forbid(unsafe_op_in_unsafe_fn)]

mod agreement;
pub mod codec;
mod core;
mod decoded_once;
mod error;
pub mod export;
pub mod group;
mod jacobi;
pub mod kdf;
mod monty;
mod places;
pub mod protocol;
mod rfc7919;
pub mod rng;
pub mod shared;

pub use crate::agreement::{unexpected, Agreement, Context, Hosted, Sides};
pub use crate::codec::Bytes;
pub use crate::core::{SessionCore, ViewChange, MAX_HELD_PAYLOADS, MAX_QUEUED_REFRESHES};
pub use crate::decoded_once::{DecodedOnce, Remembered};
pub use crate::error::{ErrorKind, PayloadError, SessionError};
pub use crate::group::{Dh, Element, ElementError, GroupId, Held, Secret};
pub use crate::places::ViewPlaces;
pub use crate::protocol::{
    epoch_of, CostFigures, Counters, Descriptor, EpochLabel, EventKind, GroupKey, MemberId, Output,
    Protocol, Session, SessionConfig, View, ViewEvent, MAX_KEYS_PER_VIEW, MAX_VIEW_ID,
};
/// The RNG traits sessions use (re-exported so plugins need no direct dependency).
pub use rand_core;

/// The ABI crate, for [`export_protocol!`]'s expansion.
#[doc(hidden)]
pub use gka_abi as __gka_abi;

/// This SDK's version. A plugin may report it; the host's compatibility check does not
/// depend on it (see `gka-abi`).
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
