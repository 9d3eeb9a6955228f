//! Checking a group's tree as its sponsor broadcast it against a member's own copy, once per
//! process for the parts the members share.
//!
//! Every member of the sponsor's group checks that the broadcast tree is exactly its own copy
//! ([`matches_wire`](super::matches_wire)): 2n nodes for each of n members. Where the members
//! of one process received the same decoded broadcast ([`gka_plugin_api::DecodedOnce`]) and
//! hold the same interned subtrees (see the module docs of `tree`), the first member's check
//! of a shared subtree stands for all: what was compared is the same node against the same
//! wire nodes, at the same position. Each later member compares its private path and looks
//! up the shared subtrees beside it: O(depth) instead of O(n).

use std::collections::HashMap;
use std::sync::Arc;

use gka_plugin_api::{GroupId, Held, Remembered};

use super::{Kind, Node, WireNode};

/// The subtrees found equal to a part of a broadcast tree: (a subtree's address, its
/// pre-order index in the tree) → the subtree and its number of nodes. The subtree is held,
/// so that its address is not reused while remembered (and a member that changes a held node
/// changes a copy).
type Equal = HashMap<(usize, usize), (Arc<Node>, usize)>;

static CHECKED: Remembered<Vec<WireNode>, Equal> = Remembered::new();

/// True if `wire` (a broadcast tree, shared by the members of this process that received
/// it) is exactly `node`'s pre-order form: the same shape, members and blinded keys, with
/// `encodes` from the group `group` telling whether bytes encode a held key (as
/// [`gka_plugin_api::Dh::encodes`]). It encodes nothing.
pub(crate) fn matches_shared_wire(
    node: &Node,
    wire: &Arc<Vec<WireNode>>,
    group: GroupId,
    encodes: &dyn Fn(&[u8], &Held) -> bool,
) -> bool {
    CHECKED.with(wire, group, |equal| matches(node, wire, encodes, equal))
}

/// [`matches_shared_wire`], remembering in `equal` the shared subtrees found equal.
fn matches(
    node: &Node,
    wire: &[WireNode],
    encodes: &dyn Fn(&[u8], &Held) -> bool,
    equal: &mut Equal,
) -> bool {
    let mut at = 0;
    node_matches(node, wire, &mut at, encodes, equal) && at == wire.len()
}

/// Whether the wire nodes from `*at` on start with `node`'s pre-order form; moves `*at` past
/// it.
fn node_matches(
    node: &Node,
    wire: &[WireNode],
    at: &mut usize,
    encodes: &dyn Fn(&[u8], &Held) -> bool,
    equal: &mut Equal,
) -> bool {
    let Some(w) = wire.get(*at) else { return false };
    *at += 1;
    let (bk, kind_matches) = match (w, &node.kind) {
        (WireNode::Leaf { member, bk }, Kind::Leaf(m)) => (bk, member == m),
        (WireNode::Inner { bk }, Kind::Inner(..)) => (bk, true),
        _ => return false,
    };
    let bk_matches = match (bk, &node.bk) {
        (None, None) => true,
        (Some(b), Some(mine)) => encodes(b, mine),
        _ => false,
    };
    if !kind_matches || !bk_matches {
        return false;
    }
    let Kind::Inner(l, r) = &node.kind else { return true };
    [l, r].into_iter().all(|child| {
        // A private node (this member's path) is not the same as any other member's.
        let key = (Arc::as_ptr(child) as usize, *at);
        if child.x.is_none() {
            if let Some((_, len)) = equal.get(&key) {
                *at += len;
                return true;
            }
        }
        let start = *at;
        let same = node_matches(child, wire, at, encodes, equal);
        if same && child.x.is_none() {
            equal.insert(key, (Arc::clone(child), *at - start));
        }
        same
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use gka_plugin_api::{Dh, Secret};

    use super::super::{from_wire, share, to_wire};
    use super::*;

    fn keyed(dh: &Dh, m: &str, k: u64) -> Node {
        Node::leaf(m.into(), Some(dh.pow_small(&dh.generator(), k).into()), None)
    }

    /// A member's copy of `wire`'s tree, with a private exponent on `me`'s leaf.
    fn member_copy(dh: &Dh, wire: &[WireNode], me: &str) -> Node {
        let mut t =
            from_wire(wire, &|b| dh.receive(b).map_err(|_| "bad"), &|_| "malformed").expect("tree");
        let path = t.path_to(me).expect("leaf");
        t.at_mut(&path).expect("leaf").x = Some(Box::new(Secret::from_biguint(7u32.into())));
        t.reshare();
        t
    }

    #[test]
    fn later_members_compare_only_their_paths_and_every_difference_is_still_found() {
        let dh = Dh::new(GroupId::Ffdhe2048);
        let mut t = keyed(&dh, "m0", 2);
        for i in 1..32 {
            t.insert(share(keyed(&dh, &format!("m{i}"), i + 2)));
        }
        t.reshare();
        let wire = Arc::new(to_wire(&t, &|h| dh.encode_held(h)));
        let compared = Cell::new(0);
        let encodes = |b: &[u8], h: &Held| {
            compared.set(compared.get() + 1);
            dh.encodes(b, h)
        };
        let mut equal = Equal::new();
        let first = member_copy(&dh, &wire, "m3");
        assert!(matches(&first, &wire, &encodes, &mut equal));
        let keys_in_tree = wire
            .iter()
            .filter(|w| {
                matches!(w, WireNode::Leaf { bk: Some(_), .. } | WireNode::Inner { bk: Some(_) })
            })
            .count();
        assert_eq!(keys_in_tree, 32);
        assert_eq!(compared.replace(0), keys_in_tree, "the first member compares every key");
        let second = member_copy(&dh, &wire, "m20");
        assert!(matches(&second, &wire, &encodes, &mut equal));
        let depth = second.path_to("m20").expect("leaf").len();
        assert!(compared.get() <= depth + 1, "{} compared on a path of {depth}", compared.get());

        // A member whose copy differs in a public node, or on its own path, does not match.
        let mut other = member_copy(&dh, &wire, "m7");
        let path = other.path_to("m12").expect("leaf");
        other.at_mut(&path).expect("leaf").bk = Some(dh.generator().into());
        other.reshare();
        assert!(!matches(&other, &wire, &encodes, &mut equal));
        let mut own = member_copy(&dh, &wire, "m9");
        let path = own.path_to("m9").expect("leaf");
        own.at_mut(&path).expect("leaf").bk = Some(dh.generator().into());
        assert!(!matches(&own, &wire, &encodes, &mut equal));
        assert!(matches(&first, &wire, &encodes, &mut equal), "the remembered checks still hold");

        // The shared check decides as the full one, for the same and for another wire.
        let group = dh.group().id();
        assert!(matches_shared_wire(&second, &wire, group, &|b, h| dh.encodes(b, h)));
        let mut renamed = (*wire).clone();
        let WireNode::Leaf { member, .. } = renamed.last_mut().expect("a leaf") else { panic!() };
        member.push('x');
        let renamed = Arc::new(renamed);
        assert!(!matches_shared_wire(&second, &renamed, group, &|b, h| dh.encodes(b, h)));
        let shorter = Arc::new(wire[..wire.len() - 1].to_vec());
        assert!(!matches_shared_wire(&first, &shorter, group, &|b, h| dh.encodes(b, h)));
    }
}
