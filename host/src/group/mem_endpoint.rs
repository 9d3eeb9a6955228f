//! The in-memory group layer behind the async [`GroupEndpoint`] interface, for the member
//! runtime in tests.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Delivery, GroupEndpoint, MemNet, SequencerError};

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
