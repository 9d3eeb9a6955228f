//! The group communication interface the member runtime uses, and its two implementations:
//! the daemon over TCP ([`crate::client::Connection`]) and the in-memory network
//! ([`MemGroup`], over [`crate::memnet::MemNet`]).
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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::client::Connection;
use crate::memnet::MemNet;
use crate::sequencer::{Delivery, SequencerError};
use crate::wire::{ClientMsg, ServerMsg};

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

impl GroupEndpoint for Connection {
    async fn send(&mut self, view_id: u64, to: Option<String>, bytes: Vec<u8>) -> io::Result<()> {
        Self::send(self, &ClientMsg::Send { view_id, to, bytes }).await
    }

    async fn recv(&mut self) -> io::Result<Option<Delivery>> {
        loop {
            match Self::recv(self).await? {
                None => return Ok(None),
                Some(ServerMsg::Error(e)) => {
                    return Err(io::Error::other(format!("the daemon refused: {e}")))
                }
                Some(ServerMsg::Ok) => continue,
                Some(other) => return Ok(Option::from(other)),
            }
        }
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        Self::send(self, &ClientMsg::Heartbeat).await
    }

    async fn leave(&mut self) -> io::Result<()> {
        Self::send(self, &ClientMsg::Leave).await
    }
}

/// The in-memory group layer for async code: a [`MemNet`] whose virtual clock follows tokio's
/// clock (so `tokio::time::pause` makes it fully deterministic), with one channel per member.
#[derive(Clone)]
pub struct MemGroup {
    inner: Arc<Mutex<Shared>>,
}

struct Shared {
    net: MemNet,
    endpoints: Vec<(String, mpsc::UnboundedSender<Delivery>)>,
}

impl std::fmt::Debug for MemGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemGroup").finish_non_exhaustive()
    }
}

fn sequencer_error(e: SequencerError) -> io::Error {
    io::Error::other(e.to_string())
}

impl MemGroup {
    /// Wraps `net` and starts advancing its clock by `step` of tokio time.
    pub fn start(net: MemNet, step: Duration) -> Self {
        let group = Self { inner: Arc::new(Mutex::new(Shared { net, endpoints: Vec::new() })) };
        let weak = Arc::downgrade(&group.inner);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(step);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let mut shared = inner.lock().unwrap_or_else(|p| p.into_inner());
                shared.net.advance(step.as_millis().max(1) as u64);
                let Shared { net, endpoints } = &mut *shared;
                endpoints.retain(|(member, tx)| {
                    net.take_delivered(member).into_iter().all(|d| tx.send(d).is_ok())
                });
            }
        });
        group
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins `member` and returns its endpoint.
    pub fn connect(&self, member: &str) -> io::Result<MemEndpoint> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut shared = self.lock();
        shared.net.join(member).map_err(sequencer_error)?;
        shared.endpoints.push((member.to_owned(), tx));
        Ok(MemEndpoint { member: member.to_owned(), group: self.clone(), rx })
    }

    /// Runs `f` on the network (fault injection: partitions, heals, latency, crashes).
    pub fn with_net<T>(&self, f: impl FnOnce(&mut MemNet) -> T) -> T {
        f(&mut self.lock().net)
    }
}

/// One member's endpoint on a [`MemGroup`].
#[derive(Debug)]
pub struct MemEndpoint {
    member: String,
    group: MemGroup,
    rx: mpsc::UnboundedReceiver<Delivery>,
}

impl GroupEndpoint for MemEndpoint {
    async fn send(&mut self, view_id: u64, to: Option<String>, bytes: Vec<u8>) -> io::Result<()> {
        let mut shared = self.group.lock();
        shared
            .net
            .send_in(&self.member, view_id, to.as_deref(), bytes)
            .map(|_| ())
            .map_err(sequencer_error)
    }

    async fn recv(&mut self) -> io::Result<Option<Delivery>> {
        Ok(self.rx.recv().await)
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        // MemNet heartbeats for every member that has not crashed.
        Ok(())
    }

    async fn leave(&mut self) -> io::Result<()> {
        let mut shared = self.group.lock();
        shared.net.leave(&self.member).map_err(sequencer_error)?;
        shared.endpoints.retain(|(m, _)| *m != self.member);
        Ok(())
    }
}
