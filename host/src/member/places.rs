//! The trusted view's members with each one's place in it, built once per trusted view and
//! shared (cheaply cloned) by the per-view state that keeps something for every member:
//! confirmation tags and who was heard from. That state is then an array of n entries, not a
//! map keyed by copies of n member ids: a group of n members would otherwise allocate and
//! compare n² ids in every agreement.

use std::collections::HashMap;
use std::sync::Arc;

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct ViewPlaces(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    members: Vec<String>,
    places: HashMap<String, usize>,
}

impl ViewPlaces {
    /// The places of `members`, in their order (ids are distinct in a view).
    pub(super) fn new(members: &[String]) -> Self {
        let places = members.iter().enumerate().map(|(i, m)| (m.clone(), i)).collect();
        Self(Arc::new(Inner { members: members.to_vec(), places }))
    }

    /// A member's place, if it is in the view.
    pub(super) fn place(&self, id: &str) -> Option<usize> {
        self.0.places.get(id).copied()
    }

    /// Whether `id` is in the view.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.0.places.contains_key(id)
    }

    /// The members, in view order.
    pub(super) fn members(&self) -> &[String] {
        &self.0.members
    }

    /// How many members.
    pub(super) fn len(&self) -> usize {
        self.0.members.len()
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
    }
}
