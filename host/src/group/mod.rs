//! The group communication interface the member runtime uses, and its two implementations:
//! the daemon over TCP ([`crate::net::Connection`]) and the in-memory network
//! ([`MemGroup`], over [`MemNet`]).
//!
//! # Guarantees every implementation gives
//!
//! Per group, to every member:
//! - **views**: each view has an id that only grows and lists the members oldest first; each
//!   member's view says who joined and who left since *its* previous view; several joins (or
//!   leaves) within the batching window arrive as one view (a merge, a partition);
//! - **agreed order**: every member of a view receives the same messages in the same order; a
//!   broadcast is delivered to its sender too;
//! - **view synchrony**: a message sent in view v is delivered in v to all of v's surviving
//!   members or to none of them, and a new view is delivered only after every message of the
//!   previous one;
//! - **failure detection**: a member that crashes or stops answering is removed within the
//!   configured timeout;
//! - **partitions**: when the network splits, each side continues with its own views, and a
//!   heal arrives as a merge view.
//!
//! `tests/tests/group_layer.rs` checks these through the same test code for both
//! implementations.

use std::future::Future;
use std::io;

pub mod etcd;
mod mem_endpoint;
mod memnet;
mod sequencer;

pub use etcd::{EtcdConfig, EtcdEndpoint, EtcdTiming, EtcdTls};
pub use mem_endpoint::{MemEndpoint, MemGroup};
pub use memnet::MemNet;
pub use sequencer::{
    BroadcastDelivery, Certificates, Delivery, Fanout, Sequencer, SequencerError, Timing,
};

/// A group run's nonce. The group layer draws a fresh one whenever it creates a group (a
/// restarted daemon, or a group forgotten after its last member left and created again),
/// every view carries it, and every envelope is signed with it: view ids start again in a
/// new run, so without it an earlier run's envelopes would fit the new run's views.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct GroupRun(pub [u8; 16]);

impl std::fmt::Display for GroupRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0[..4]))
    }
}

/// One member's endpoint on the group layer (see the module docs for the guarantees).
pub trait GroupEndpoint: Send + 'static {
    /// Sends `bytes`, sent in view `view_id`, to every member of that view (`to` None, the
    /// sender included) or to one member.
    fn send(
        &mut self,
        view_id: u64,
        to: Option<String>,
        bytes: Vec<u8>,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// The next delivery; `None` once the group layer closed this endpoint.
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<Delivery>>> + Send;

    /// Proof of life, for the failure detector.
    fn heartbeat(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Leaves the group.
    fn leave(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}
