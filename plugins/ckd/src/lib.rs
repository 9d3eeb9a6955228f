//! # CKD: centralized key distribution over Diffie-Hellman pairwise channels, as a gka plugin
//!
//! The controller is the oldest member of the view (docs/protocols.md §9.5). It shares a pairwise
//! secret g^(A·B_i) with every member i (A its share, B_i the member's), and on every event draws a
//! fresh random 32-byte group secret, wraps it for each member with ChaCha20-Poly1305 under HKDF of
//! the pairwise secret (docs/protocols.md §9.7, instead of Cliques' encryption by exponentiation),
//! and broadcasts the wrapped copies.
//!
//! - A member that has no pairwise secret with the current controller (a joiner, or everyone
//!   after the controller changed) unicasts g^B to the controller; the controller answers all of
//!   them in one broadcast that also carries g^A. Join and merge: two rounds, m unicasts and one
//!   broadcast. Cliques needed three rounds here because its controller announced g^A first.
//! - Leave, partition and refresh with the controller staying: one broadcast, no exponentiation.
//!   If the controller leaves, the oldest survivor takes over and collects fresh shares from
//!   everyone (two rounds).
//! - A cascade (a view during a run) restarts from the newest view; members whose last run was
//!   interrupted start afresh (see `SessionCore`).

#![forbid(unsafe_code)]

mod cost;
mod session;

gka_plugin_api::protocol! {
    /// The CKD protocol (stateless factory).
    pub Ckd { name: "ckd", run: session::CkdRun, cost: cost::cost }
}
