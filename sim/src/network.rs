//! The simulated network: each member's up- and downlink to the sequencer's site, with
//! latency, jitter, bandwidth and loss, and the sequencer's deliveries sent out over them.

use std::sync::Arc;

use gka_host::envelope::Verified;
use gka_host::group::{BroadcastDelivery, Delivery, Fanout};

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

/// The places of a broadcast's recipients, for the broadcasts to the same shared list.
pub(crate) struct RecipientPlaces {
    /// The sequencer's shared list (held, so its address is not reused by another list).
    list: Arc<[String]>,
    /// How many of `list` had been handed out one by one before.
    offset: usize,
    /// The places of `list[offset..]`; `None` for a name never added.
    places: Arc<[Option<u32>]>,
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

    /// Hands the sequencer's deliveries to the network, and keeps its timer set. A broadcast
    /// is queued as one [`Broadcast`] with each recipient's arrival.
    pub(crate) fn drain_sequencer(&mut self) {
        while let Some(fanout) = self.sequencer.poll_fanout() {
            match fanout {
                Fanout::Broadcast(b) if self.places.contains_key(&b.from) => self.fan_out(b),
                Fanout::Broadcast(b) => {
                    // A sender the simulation does not know: each recipient gets the bytes
                    // to refuse on its own.
                    for to in b.recipients().to_vec() {
                        let delivery = Delivery::Message {
                            from: b.from.clone(),
                            view_id: b.view_id,
                            bytes: b.bytes.clone(),
                        };
                        self.send_one(&to, delivery);
                    }
                }
                Fanout::One(to, delivery) => self.send_one(&to, delivery),
            }
        }
        if let Some(deadline_ms) = self.sequencer.next_deadline() {
            let at = deadline_ms.saturating_mul(1000).max(self.now_us);
            if self.tick_at_us.is_none_or(|t| at < t) && deadline_ms < u64::MAX / 8000 {
                self.tick_at_us = Some(at);
                self.schedule(at, Event::SequencerTick);
            }
        }
    }

    /// Sends one delivery (a view, a unicast) down its recipient's link.
    fn send_one(&mut self, to: &str, delivery: Delivery) {
        if let Delivery::View { view: v, .. } = &delivery {
            self.view_formed_us.entry(v.view_id).or_insert(self.now_us);
            self.view_members.entry(v.view_id).or_insert_with(|| v.members.clone());
        }
        let Some(place) = self.place_of(to) else { return };
        let size = match &delivery {
            Delivery::Message { bytes, .. } => bytes.len(),
            Delivery::View { view, .. } => 64 + 16 * view.members.len(),
        };
        let Some(at) = self.downlink_arrival(place, size) else { return };
        match delivery {
            Delivery::Message { from, view_id, bytes } if self.places.contains_key(&from) => {
                let from = self.places[&from];
                let verified = self.verified_once(&bytes);
                let arrivals = vec![(at, place)];
                self.queue.push_broadcast(Broadcast { from, view_id, bytes, verified, arrivals });
            }
            delivery => {
                self.schedule(at, Event::Delivery { to: place, delivery: Box::new(delivery) })
            }
        }
    }

    /// Sends a broadcast down each present recipient's link.
    fn fan_out(&mut self, b: BroadcastDelivery) {
        let places = self.places_of(&b);
        let from = self.places[&b.from];
        let verified = self.verified_once(&b.bytes);
        let mut arrivals = Vec::with_capacity(places.len());
        for &place in places.iter().flatten() {
            if let Some(at) = self.downlink_arrival(place, b.bytes.len()) {
                arrivals.push((at, place));
            }
        }
        let (view_id, bytes) = (b.view_id, b.bytes);
        self.queue.push_broadcast(Broadcast { from, view_id, bytes, verified, arrivals });
    }

    /// The places of a broadcast's recipients (`None` for a name never added), looked up once
    /// for every broadcast to the same shared list.
    fn places_of(&mut self, b: &BroadcastDelivery) -> Arc<[Option<u32>]> {
        let recipients = b.recipients();
        let offset = b.shared_recipients().len() - recipients.len();
        if let Some(last) = &self.last_recipients {
            if Arc::ptr_eq(&last.list, b.shared_recipients()) && last.offset == offset {
                return last.places.clone();
            }
        }
        let places: Arc<[Option<u32>]> =
            recipients.iter().map(|r| self.places.get(r.as_str()).copied()).collect();
        let list = b.shared_recipients().clone();
        self.last_recipients = Some(RecipientPlaces { list, offset, places: places.clone() });
        places
    }

    /// When `size` bytes sent now reach the member at `place` over its downlink, if it is
    /// still present.
    fn downlink_arrival(&mut self, place: u32, size: usize) -> Option<u64> {
        let member = self.members[place as usize].as_ref()?;
        let link = self.config.topology.path(self.config.topology.sequencer, member.site);
        let mut state = member.downlink;
        let at = self.transmit(link, size, self.now_us, &mut state);
        if let Some(m) = &mut self.members[place as usize] {
            m.downlink = state;
        }
        Some(at)
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
