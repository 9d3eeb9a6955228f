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

/// The events to come, in order of time, ties in order of scheduling. The heap holds small
/// entries (time, order, slot) and the events wait in slots: with a million deliveries queued
/// (a thousand members' confirmations), sifting 24-byte entries instead of whole events keeps
/// the heap's walk in cache.
#[derive(Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slots: Vec<Option<Event>>,
    free: Vec<u32>,
    order: u64,
}

impl EventQueue {
    /// Schedules `event` at `at_us`, after everything already scheduled for that time.
    pub(crate) fn push(&mut self, at_us: u64, event: Event) {
        self.order += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 queued events")
            }
        };
        self.heap.push(Reverse((at_us, self.order, slot)));
    }

    /// The next event and its time.
    pub(crate) fn pop(&mut self) -> Option<(u64, Event)> {
        let Reverse((at_us, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        let event = self.slots[slot as usize].take().expect("a queued slot holds its event");
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
}
