//! The simulated network: each member's up- and downlink to the sequencer's site, with
//! latency, jitter, bandwidth and loss, and the sequencer's deliveries sent out over them.

use std::sync::Arc;

use gka_host::envelope::Verified;
use gka_host::group::Delivery;

use crate::queue::{Broadcast, Event};
use crate::topology::Link;
use crate::Sim;

/// One direction of a member's connection to the sequencer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinkState {
    /// When the link has sent everything queued on it.
    pub(crate) free_us: u64,
    /// When the last message sent on it arrives.
    pub(crate) last_arrival_us: u64,
}

/// The last broadcast whose envelope was opened, and what opening it gave (see
/// [`Sim::verified_once`]). Holding the bytes keeps their address from being reused by
/// another broadcast.
pub(crate) struct Opened {
    bytes: Arc<[u8]>,
    verified: Option<Arc<Verified>>,
}

impl Sim {
    /// When bytes sent at `start_us` over `link` arrive: the link is busy sending them for
    /// their size ÷ bandwidth after it is free, then latency and jitter, then any resends.
    /// A link is one ordered connection: nothing overtakes what was sent before it.
    pub(crate) fn transmit(
        &mut self,
        link: Link,
        bytes: usize,
        start_us: u64,
        state: &mut LinkState,
    ) -> u64 {
        let free_us = &mut state.free_us;
        let begin = start_us.max(*free_us);
        let serialise = (bytes as f64 * 8.0 / link.bandwidth_mbps).ceil() as u64;
        *free_us = begin + serialise;
        let unit = self.unit();
        let latency = ((link.latency_ms + unit * link.jitter_ms) * 1e3) as u64;
        let timeout = ((2.0 * link.latency_ms).max(200.0) * 1e3) as u64;
        let mut resent = 0;
        // Each transmission is lost with probability `loss`, independently (below 0.9 over a
        // whole path, so this ends).
        while link.loss > 0.0 && self.unit() < link.loss {
            resent += timeout;
        }
        let arrival = begin
            .saturating_add(serialise)
            .saturating_add(latency)
            .saturating_add(resent)
            .max(state.last_arrival_us);
        state.last_arrival_us = arrival;
        arrival
    }

    /// Hands the sequencer's deliveries to the network, and keeps its timer set. Consecutive
    /// deliveries of one message (the same bytes) are queued as one [`Broadcast`].
    pub(crate) fn drain_sequencer(&mut self) {
        let mut broadcast: Option<Broadcast> = None;
        while let Some((to, delivery)) = self.sequencer.poll_delivery() {
            if let Delivery::View { view: v, .. } = &delivery {
                self.view_formed_us.entry(v.view_id).or_insert(self.now_us);
                self.view_members.entry(v.view_id).or_insert_with(|| v.members.clone());
            }
            let Some(place) = self.place_of(&to) else { continue };
            let Some(member) = &self.members[place as usize] else { continue };
            let link = self.config.topology.path(self.config.topology.sequencer, member.site);
            let size = match &delivery {
                Delivery::Message { bytes, .. } => bytes.len(),
                Delivery::View { view, .. } => 64 + 16 * view.members.len(),
            };
            let mut state = member.downlink;
            let at = self.transmit(link, size, self.now_us, &mut state);
            if let Some(m) = &mut self.members[place as usize] {
                m.downlink = state;
            }
            match delivery {
                Delivery::Message { from, view_id, bytes } if self.places.contains_key(&from) => {
                    let same = broadcast.as_ref().is_some_and(|b| Arc::ptr_eq(&b.bytes, &bytes));
                    if !same {
                        self.flush(broadcast.take());
                        let from = self.places[&from];
                        let verified = self.verified_once(&bytes);
                        let arrivals = Vec::new();
                        broadcast = Some(Broadcast { from, view_id, bytes, verified, arrivals });
                    }
                    if let Some(b) = &mut broadcast {
                        b.arrivals.push((at, place));
                    }
                }
                delivery => {
                    self.flush(broadcast.take());
                    self.schedule(at, Event::Delivery { to: place, delivery: Box::new(delivery) });
                }
            }
        }
        self.flush(broadcast);
        if let Some(deadline_ms) = self.sequencer.next_deadline() {
            let at = deadline_ms.saturating_mul(1000).max(self.now_us);
            if self.tick_at_us.is_none_or(|t| at < t) && deadline_ms < u64::MAX / 8000 {
                self.tick_at_us = Some(at);
                self.schedule(at, Event::SequencerTick);
            }
        }
    }

    fn flush(&mut self, broadcast: Option<Broadcast>) {
        if let Some(b) = broadcast {
            self.queue.push_broadcast(b);
        }
    }

    /// With counted costs, a broadcast's envelope is decoded and verified once, when its first
    /// delivery leaves the sequencer, and shared by every recipient: each still counts the
    /// verification and runs every check of its own. An envelope that does not open goes to
    /// each recipient as bytes, to be refused there. With measured costs every member does
    /// the whole work, which is what is measured.
    pub(crate) fn verified_once(&mut self, bytes: &Arc<[u8]>) -> Option<Arc<Verified>> {
        if matches!(self.config.cost, crate::CostMode::Measured(_)) {
            return None;
        }
        if let Some(last) = &self.last_opened {
            if Arc::ptr_eq(&last.bytes, bytes) {
                return last.verified.clone();
            }
        }
        let verified = Verified::open(bytes, &self.trust).ok().map(Arc::new);
        self.last_opened = Some(Opened { bytes: bytes.clone(), verified: verified.clone() });
        verified
    }
}
