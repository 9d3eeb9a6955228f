//! The simulator's event queue: what happens next, in virtual time, with ties broken by the
//! order of scheduling so that a run is deterministic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use gka_host::envelope::Verified;
use gka_host::group::Delivery;

/// Something that happens at a point of virtual time. Kept small (members by place, a view's
/// delivery boxed): a thousand members' key confirmations put a million deliveries in the
/// queue.
pub(crate) enum Event {
    AtSequencer(Box<ToSequencer>),
    /// A message for member `to` from member `from` (their places, see `Sim::names`), its
    /// envelope verified once for all its recipients when the run counts costs (see
    /// [`crate::Sim::verified_once`]).
    Message {
        to: u32,
        from: u32,
        view_id: u64,
        bytes: Arc<[u8]>,
        verified: Option<Arc<Verified>>,
    },
    /// Any other delivery (a view) for member `to`.
    Delivery {
        to: u32,
        delivery: Box<Delivery>,
    },
    SequencerTick,
    MemberTick,
}

/// A member's message on its way to the sequencer.
pub(crate) struct ToSequencer {
    pub(crate) from: String,
    pub(crate) view_id: u64,
    pub(crate) to: Option<String>,
    pub(crate) bytes: Vec<u8>,
}

/// One broadcast's deliveries, as the sequencer sent them out: what they share once, and
/// for each recipient only its arrival time and place.
pub(crate) struct Broadcast {
    pub(crate) from: u32,
    pub(crate) view_id: u64,
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) verified: Option<Arc<Verified>>,
    /// (arrival, recipient), in the order the deliveries were sent.
    pub(crate) arrivals: Vec<(u64, u32)>,
}

/// What waits in a slot: one event, or a broadcast's deliveries sorted by arrival, each with
/// its rank among them (its order of scheduling is `first_order` + rank), from `next` on.
enum Slot {
    One(Event),
    Fanout { broadcast: Broadcast, sorted: Vec<(u64, u32, u32)>, first_order: u64, next: usize },
}

/// The events to come, in order of time, ties in order of scheduling. The heap holds small
/// entries (time, order, slot) and the events wait in slots. A broadcast takes one slot and
/// one heap entry at a time (its next delivery), and 16 bytes per recipient: a thousand
/// members' key confirmations put a million deliveries in the queue, which as events took
/// 72 bytes each and made the heap's walk miss the cache. The heap merges the broadcasts'
/// sorted deliveries, so the order is exactly that of scheduling each delivery on its own.
#[derive(Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    order: u64,
}

impl EventQueue {
    /// Schedules `event` at `at_us`, after everything already scheduled for that time.
    pub(crate) fn push(&mut self, at_us: u64, event: Event) {
        self.order += 1;
        let slot = self.store(Slot::One(event));
        self.heap.push(Reverse((at_us, self.order, slot)));
    }

    /// Schedules each of a broadcast's deliveries at its arrival, as [`Self::push`] would one
    /// after another in the order of `broadcast.arrivals`, and as an [`Event::Message`] each.
    pub(crate) fn push_broadcast(&mut self, broadcast: Broadcast) {
        let first_order = self.order + 1;
        self.order += broadcast.arrivals.len() as u64;
        let mut sorted: Vec<(u64, u32, u32)> = (broadcast.arrivals.iter().enumerate())
            .map(|(rank, &(at_us, to))| (at_us, rank as u32, to))
            .collect();
        sorted.sort_unstable();
        let Some(&(at_us, rank, _)) = sorted.first() else { return };
        let slot = self.store(Slot::Fanout { broadcast, sorted, first_order, next: 0 });
        self.heap.push(Reverse((at_us, first_order + u64::from(rank), slot)));
    }

    fn store(&mut self, slot: Slot) -> u32 {
        match self.free.pop() {
            Some(free) => {
                self.slots[free as usize] = Some(slot);
                free
            }
            None => {
                self.slots.push(Some(slot));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 queued events")
            }
        }
    }

    /// The next event and its time.
    pub(crate) fn pop(&mut self) -> Option<(u64, Event)> {
        let Reverse((at_us, _, index)) = self.heap.pop()?;
        let slot = self.slots[index as usize].as_mut().expect("a queued slot holds its event");
        let Slot::Fanout { broadcast, sorted, first_order, next } = slot else {
            self.free.push(index);
            let Some(Slot::One(event)) = self.slots[index as usize].take() else { unreachable!() };
            return Some((at_us, event));
        };
        let (_, _, to) = sorted[*next];
        let event = Event::Message {
            to,
            from: broadcast.from,
            view_id: broadcast.view_id,
            bytes: broadcast.bytes.clone(),
            verified: broadcast.verified.clone(),
        };
        *next += 1;
        match sorted.get(*next) {
            Some(&(at_next, rank, _)) => {
                let order = *first_order + u64::from(rank);
                self.heap.push(Reverse((at_next, order, index)));
            }
            None => {
                self.slots[index as usize] = None;
                self.free.push(index);
            }
        }
        Some((at_us, event))
    }

    /// When the next event happens.
    pub(crate) fn next_at(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at_us, ..))| *at_us)
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(tag: &str) -> Event {
        let message = ToSequencer { from: tag.into(), view_id: 0, to: None, bytes: Vec::new() };
        Event::AtSequencer(Box::new(message))
    }

    fn drain(q: &mut EventQueue) -> Vec<(u64, String)> {
        std::iter::from_fn(|| match q.pop()? {
            (at, Event::AtSequencer(m)) => Some((at, m.from)),
            _ => None,
        })
        .collect()
    }

    #[test]
    fn events_come_in_order_of_time_then_of_scheduling_and_slots_are_reused() {
        let mut q = EventQueue::default();
        for (at, tag) in [(5, "a"), (3, "b"), (5, "c"), (3, "d")] {
            q.push(at, tagged(tag));
        }
        assert_eq!(q.next_at(), Some(3));
        let order: Vec<(u64, String)> =
            [(3, "b"), (3, "d"), (5, "a"), (5, "c")].map(|(t, s)| (t, s.to_owned())).into();
        assert_eq!(drain(&mut q), order);
        assert!(q.is_empty());
        q.push(1, tagged("e"));
        assert_eq!(q.slots.len(), 4, "a free slot is reused");
        assert_eq!(drain(&mut q), [(1, "e".to_owned())]);
    }

    /// Drains (time, recipient) of messages and (time, tag) of other events.
    fn drain_all(q: &mut EventQueue) -> Vec<(u64, String)> {
        std::iter::from_fn(|| match q.pop()? {
            (at, Event::Message { to, .. }) => Some((at, format!("to {to}"))),
            (at, Event::AtSequencer(m)) => Some((at, m.from)),
            (at, _) => Some((at, "other".into())),
        })
        .collect()
    }

    /// Broadcasts interleaved with single events, ties included, come out exactly as if each
    /// delivery had been pushed on its own.
    #[test]
    fn broadcasts_come_out_as_their_deliveries_pushed_one_by_one() {
        let bytes: Arc<[u8]> = Arc::from(&b"m"[..]);
        let message =
            |to| Event::Message { to, from: 9, view_id: 1, bytes: bytes.clone(), verified: None };
        let broadcast = |arrivals: &[(u64, u32)]| Broadcast {
            from: 9,
            view_id: 1,
            bytes: bytes.clone(),
            verified: None,
            arrivals: arrivals.to_vec(),
        };
        let first = [(7, 0), (3, 1), (7, 2), (5, 3), (3, 4)];
        let second = [(3, 5), (9, 6), (7, 7)];
        let (mut one_by_one, mut merged) = (EventQueue::default(), EventQueue::default());
        for q in [&mut one_by_one, &mut merged] {
            q.push(7, tagged("before"));
        }
        for (at, to) in first {
            one_by_one.push(at, message(to));
        }
        merged.push_broadcast(broadcast(&first));
        for q in [&mut one_by_one, &mut merged] {
            q.push(3, tagged("between"));
        }
        for (at, to) in second {
            one_by_one.push(at, message(to));
        }
        merged.push_broadcast(broadcast(&second));
        merged.push_broadcast(broadcast(&[]));
        let expected = drain_all(&mut one_by_one);
        assert_eq!(expected.len(), 10);
        assert_eq!(expected[..3], [(3, "to 1".into()), (3, "to 4".into()), (3, "between".into())]);
        assert_eq!(drain_all(&mut merged), expected);
        assert!(merged.is_empty() && merged.slots.iter().all(Option::is_none));
    }
}
