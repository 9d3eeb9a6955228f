//! The simulator's event queue: what happens next, in virtual time, with ties broken by the
//! order of scheduling so that a run is deterministic.

use gka_host::group::Delivery;

/// Something that happens at a point of virtual time.
pub(crate) enum Event {
    AtSequencer { from: String, view_id: u64, to: Option<String>, bytes: Vec<u8> },
    AtMember { to: String, delivery: Delivery },
    SequencerTick,
    MemberTick,
}

/// An event at its time, ordered by (time, scheduling order).
pub(crate) struct Scheduled {
    pub(crate) at_us: u64,
    pub(crate) order: u64,
    pub(crate) event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.order) == (other.at_us, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_us, self.order).cmp(&(other.at_us, other.order))
    }
}
