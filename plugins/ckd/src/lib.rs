//! # CKD: centralized key distribution over Diffie-Hellman pairwise channels, as a gka plugin
//!
//! The controller is the oldest member of the view (§9.5). It shares a pairwise secret
//! g^(A·B_i) with every member i (A its share, B_i the member's), and on every event draws a
//! fresh random 32-byte group secret, wraps it for each member with ChaCha20-Poly1305 under
//! HKDF of the pairwise secret (§9.7, instead of Cliques' encryption by exponentiation), and
//! broadcasts the wrapped copies.
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

use gka_plugin_api::{
    CostFigures, Descriptor, EventKind, Protocol, Session, SessionConfig, SessionError,
};

pub use session::CkdSession;

/// The protocol's name.
pub const NAME: &str = "ckd";

/// The CKD protocol (stateless factory).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ckd;

impl Protocol for Ckd {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Centralized key distribution: the oldest member wraps a fresh key for each \
                      member over DH pairwise channels"
                .into(),
            events: EventKind::ALL.to_vec(),
        }
    }

    fn cost(&self, event: EventKind, n: u64, k: u64) -> CostFigures {
        cost::cost(event, n, k)
    }

    fn new_session(&self, config: SessionConfig) -> Result<Box<dyn Session>, SessionError> {
        Ok(Box::new(CkdSession::new(config)?))
    }
}

gka_plugin_api::export_protocol!(Ckd);
