//! The group layer on etcd (v3 API): a third implementation of [`GroupEndpoint`](super::GroupEndpoint)
//! for groups that span machines, on an etcd cluster the operators already run and trust.
//!
//! # How etcd gives the guarantees
//!
//! Keys are laid out as in [`layout`]. Each member:
//! - **joins** by granting a lease and writing its member record with it, in a transaction that
//!   requires the key not to exist; the key's `create_revision` orders members oldest first;
//! - **delivers** what one prefix watch on the group reports, from the revision after its own
//!   join (never from 0, which means "now"), in revision order ([`state::GroupState`]);
//! - **sends** with a transaction that requires the view key's `mod_revision` to be the
//!   sender's view and the message key not to exist: a message is committed while its view is
//!   current, so it sits between its view and the next in the one history every member reads
//!   (view synchrony), and a retry with an unknown outcome cannot store it twice. When the
//!   compare fails the view has changed, and the message is dropped for everyone, as the daemon
//!   drops messages of ended views; the member core sends its data again under the next key.
//!   A send that finds no leader (an election) or a silent node is tried again until it goes
//!   through or the member is out of the group;
//! - **proves liveness** by keeping its lease alive, but only while its runtime's heartbeats
//!   arrive (within half a lease): a hung member's lease expires, etcd deletes its key, and it
//!   leaves the views. The member talks to one etcd node at a time and moves to the next when
//!   a renewal goes unanswered (`lease.rs`, `nodes.rs`).
//!
//! The **coordinator** is the member with the oldest key (etcd's own election rule). When the
//! member keys differ from the view, it waits a settle window (so that joins and leaves made
//! together form one merge or partition view; departures found by lease expiry arrive as
//! etcd expires the leases, which may spread over more than one window) and writes the next
//! view in a
//! transaction fenced by the view key's `mod_revision` and its own key's `create_revision`: a
//! coordinator whose lease expired, or that lost a race, writes nothing. The view id is the view
//! key's `mod_revision`, so ids only grow. The same transaction deletes the ended views'
//! messages (the history keeps them for slower watchers until etcd compacts it).
//!
//! # What differs from the daemon
//!
//! etcd is a CP system, so this layer gives **primary-component** virtual synchrony: when the
//! network splits, the side with etcd's quorum continues (the others' leases expire and it
//! installs a partition view), while members cut off from the quorum block, and rejoin after
//! the heal as new incarnations, in a merge view. The daemon and the in-memory network keep the
//! extended model, in which every side continues. Failure detection takes the lease's time to
//! live (after a crash; up to half a lease more when only the runtime hangs), plus etcd's
//! lease check (twice a second) and the settle window.

pub mod layout;
pub mod state;

mod background;
mod config;
mod endpoint;
mod lease;
mod nodes;

pub use config::{EtcdConfig, EtcdTiming, EtcdTls, MAX_LEASE_TTL_S};
pub use endpoint::{expel, EtcdEndpoint};
