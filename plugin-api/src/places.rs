//! A view's members with each one's place in it, built once per view and shared (cheaply
//! cloned) by whatever keeps something for every member: the SDK's sender test, the host's
//! confirmation tags and who was heard from. That state is then an array of n entries, not a
//! map keyed by copies of n member ids: a group of n members would otherwise allocate and
//! compare n² ids in every agreement.
//!
//! Members in one process that hold the same view (the simulator's whole group) share one
//! copy ([`crate::shared`]): a simulated group of n members would otherwise keep n copies of
//! an n-entry map, and the lookup of every delivery's sender would miss the cache in a
//! different one each time.

use std::sync::Arc;

// Every delivery looks its sender up here, in each of several layers: a fast hash matters, and
// foldhash's is seeded per process. The keys are the view's members, which the group layer
// admitted, not strings a peer picks at will.
use foldhash::HashMap;

use crate::protocol::MemberId;
use crate::shared::Registry;

/// The views' places alive in this process.
static VIEWS: Registry<Inner> = Registry::new();

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct ViewPlaces(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    members: Vec<MemberId>,
    places: HashMap<MemberId, usize>,
}

impl ViewPlaces {
    /// The places of `members`, in their order (ids are distinct in a view), shared with
    /// every holder of the same view in this process.
    pub fn new(members: &[MemberId]) -> Self {
        Self(VIEWS.share(
            members,
            |held| held.members == members,
            || Inner {
                members: members.to_vec(),
                places: members.iter().enumerate().map(|(i, m)| (m.clone(), i)).collect(),
            },
        ))
    }

    /// A member's place, if it is in the view.
    pub fn place(&self, id: &str) -> Option<usize> {
        self.0.places.get(id).copied()
    }

    /// Whether `id` is in the view.
    pub fn contains(&self, id: &str) -> bool {
        self.0.places.contains_key(id)
    }

    /// The members, in view order.
    pub fn members(&self) -> &[MemberId] {
        &self.0.members
    }

    /// Whether no id is listed twice.
    pub fn distinct(&self) -> bool {
        self.0.places.len() == self.0.members.len()
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.0.members.len()
    }

    /// Whether the view has no members (only the default, before any view).
    pub fn is_empty(&self) -> bool {
        self.0.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_follow_view_order() {
        let places = ViewPlaces::new(&["b".into(), "a".into(), "c".into()]);
        assert_eq!(places.place("b"), Some(0));
        assert_eq!(places.place("c"), Some(2));
        assert_eq!(places.place("d"), None);
        assert!(places.contains("a") && !places.contains("z"));
        assert_eq!(places.members(), ["b", "a", "c"]);
        assert_eq!(places.len(), 3);
        assert!(places.distinct());
        assert!(!ViewPlaces::new(&["a".into(), "b".into(), "a".into()]).distinct());
    }

    #[test]
    fn equal_views_share_one_copy_and_different_ones_do_not() {
        let members: Vec<String> = ["p", "q", "r"].map(String::from).to_vec();
        let first = ViewPlaces::new(&members);
        let second = ViewPlaces::new(&members);
        assert!(Arc::ptr_eq(&first.0, &second.0));
        let reordered = ViewPlaces::new(&["q".into(), "p".into(), "r".into()]);
        assert!(!Arc::ptr_eq(&first.0, &reordered.0));
        assert_eq!(reordered.place("q"), Some(0));
        assert_eq!(first.place("q"), Some(1));
    }
}
