//! The in-memory group layer: the [`Sequencer`] on a virtual clock, with latency per link and
//! crashes, for tests and the simulator. Deterministic: the same calls give the same
//! deliveries at the same virtual times.
//!
//! Latency is added per (sender, recipient) link (views come from the sequencer, with the
//! recipient's default latency); each member's deliveries stay in the sequencer's order, so a
//! slow link delays everything behind it, as a FIFO network connection would. A crashed member
//! stops sending heartbeats and receives nothing more; the failure detector removes it after
//! the timeout.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::group::{Delivery, GroupRun, Sequencer, SequencerError, Timing};

/// The in-memory group layer (see the module docs).
#[derive(Debug)]
pub struct MemNet {
    seq: Sequencer,
    now_ms: u64,
    /// Step of the virtual clock in [`MemNet::advance`].
    pub step_ms: u64,
    heartbeat_ms: u64,
    latency: BTreeMap<(Option<String>, String), u64>,
    crashed: BTreeSet<String>,
    /// Per member: deliveries scheduled (due time) and delivered.
    queues: BTreeMap<String, VecDeque<(u64, Delivery)>>,
    delivered: BTreeMap<String, Vec<Delivery>>,
    views: BTreeMap<String, u64>,
    last_heartbeat: u64,
}

impl MemNet {
    /// An empty network with the given sequencer timing. Its group is one run (the default
    /// [`GroupRun`]): the network lives as long as the test or simulation that made it.
    pub fn new(timing: Timing) -> Self {
        Self {
            heartbeat_ms: (timing.failure_timeout_ms / 4).max(1),
            seq: Sequencer::new(timing, GroupRun::default()),
            now_ms: 0,
            step_ms: 1,
            latency: BTreeMap::new(),
            crashed: BTreeSet::new(),
            queues: BTreeMap::new(),
            delivered: BTreeMap::new(),
            views: BTreeMap::new(),
            last_heartbeat: 0,
        }
    }

    /// The virtual time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Sets the latency of deliveries to `to` (from `from`, or from anyone and for views).
    pub fn set_latency(&mut self, from: Option<&str>, to: &str, ms: u64) {
        self.latency.insert((from.map(str::to_owned), to.to_owned()), ms);
    }

    fn latency(&self, from: Option<&str>, to: &str) -> u64 {
        let pair = from.and_then(|f| self.latency.get(&(Some(f.to_owned()), to.to_owned())));
        pair.or_else(|| self.latency.get(&(None, to.to_owned()))).copied().unwrap_or(0)
    }

    /// A member joins.
    pub fn join(&mut self, member: &str) -> Result<(), SequencerError> {
        self.seq.join(member, self.now_ms)?;
        self.queues.entry(member.to_owned()).or_default();
        Ok(())
    }

    /// A member leaves cleanly.
    pub fn leave(&mut self, member: &str) -> Result<(), SequencerError> {
        self.seq.leave(member, self.now_ms)?;
        self.queues.remove(member);
        Ok(())
    }

    /// A member crashes: it goes silent, and is removed once the failure detector notices.
    pub fn crash(&mut self, member: &str) {
        self.crashed.insert(member.to_owned());
        self.queues.remove(member);
    }

    /// A message from `member` in the last view delivered to it (dropped if that view ended).
    pub fn send(
        &mut self,
        member: &str,
        to: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<bool, SequencerError> {
        let view_id = self.views.get(member).copied().unwrap_or(0);
        self.send_in(member, view_id, to, bytes)
    }

    /// A message from `member` sent in view `view_id` (dropped if that view ended).
    pub fn send_in(
        &mut self,
        member: &str,
        view_id: u64,
        to: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<bool, SequencerError> {
        if self.crashed.contains(member) {
            return Ok(false);
        }
        let sent = self.seq.send(member, view_id, to, bytes, self.now_ms)?;
        self.schedule();
        Ok(sent)
    }

    /// Splits the group (see [`Sequencer::partition`]).
    pub fn partition(&mut self, sets: &[Vec<String>]) -> Result<(), SequencerError> {
        self.seq.partition(sets, self.now_ms)
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.seq.heal(self.now_ms);
    }

    fn schedule(&mut self) {
        while let Some((to, d)) = self.seq.poll_delivery() {
            if self.crashed.contains(&to) {
                continue;
            }
            let from = match &d {
                Delivery::Message { from, .. } => Some(from.clone()),
                Delivery::View { .. } => None,
            };
            let due = self.now_ms + self.latency(from.as_deref(), &to);
            let q = self.queues.entry(to).or_default();
            let due = q.back().map_or(due, |(last, _)| due.max(*last));
            q.push_back((due, d));
        }
    }

    /// Lets `ms` of virtual time pass: live members heartbeat, the sequencer ticks, and due
    /// deliveries arrive.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        while self.now_ms < end {
            self.now_ms = (self.now_ms + self.step_ms).min(end);
            if self.now_ms >= self.last_heartbeat + self.heartbeat_ms {
                self.last_heartbeat = self.now_ms;
                let live: Vec<String> = self.queues.keys().cloned().collect();
                for m in live {
                    let _ = self.seq.heartbeat(&m, self.now_ms);
                }
            }
            self.seq.tick(self.now_ms);
            self.schedule();
            for (member, q) in &mut self.queues {
                while q.front().is_some_and(|(due, _)| *due <= self.now_ms) {
                    let (_, d) = q.pop_front().expect("front exists");
                    if let Delivery::View { view, .. } = &d {
                        self.views.insert(member.clone(), view.view_id);
                    }
                    self.delivered.entry(member.clone()).or_default().push(d);
                }
            }
        }
    }

    /// Takes what has been delivered to `member` so far.
    pub fn take_delivered(&mut self, member: &str) -> Vec<Delivery> {
        self.delivered.remove(member).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_delays_but_keeps_each_members_order() {
        let mut net = MemNet::new(Timing { batch_ms: 5, failure_timeout_ms: 10_000 });
        for m in ["a", "b"] {
            net.join(m).unwrap();
        }
        net.advance(10);
        net.set_latency(Some("a"), "b", 100);
        net.send("a", None, b"1".to_vec()).unwrap();
        net.send("b", None, b"2".to_vec()).unwrap();
        net.advance(50);
        let b: Vec<Delivery> = net.take_delivered("b");
        assert!(
            b.iter().all(|d| matches!(d, Delivery::View { .. })),
            "b waits for the slow message: {b:?}"
        );
        net.advance(60);
        let b = net.take_delivered("b");
        let bodies: Vec<&[u8]> = b
            .iter()
            .filter_map(|d| {
                if let Delivery::Message { bytes, .. } = d {
                    Some(&bytes[..])
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(bodies, [b"1".as_slice(), b"2"]);
    }
}
