//! The TGDH key tree: structure, the paper's insertion and deletion rules (docs/protocols.md §9.6),
//! and the flat wire form. Pure structure and public blinded keys, plus each node's private
//! exponent where this member knows it; no exponentiation happens here.

use gka_plugin_api::{Bytes, Held, Secret};
use serde::{Deserialize, Serialize};

/// A path from the root: `false` is left, `true` is right.
// `pub` (in a private module) only so that `Agreement`'s associated types can name it.
#[allow(unreachable_pub)]
pub type Path = Vec<bool>;

// `pub` (in a private module) only so that `Agreement`'s associated types can name it.
#[allow(unreachable_pub)]
/// One node of the key tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's blinded key g^x as the group knows it (delivered), if any: validated when
    /// this member first computes with it (see [`Held`]).
    pub(crate) bk: Option<Held>,
    /// The node's exponent x (a leaf's share, or H(K) of an inner node), if this member knows
    /// it and it is valid.
    /// Boxed: it is known only on this member's path, and a node is then 96 bytes, not 136.
    pub(crate) x: Option<Box<Secret>>,
    /// Private, so that every change of structure goes through the constructors and
    /// [`Node::insert`], which keep `height` and `fit` right.
    kind: Kind,
    /// Height (0 for a leaf), kept with the structure: the insertion rule asks every node's
    /// height, and recomputing it would cost a walk of the subtree each time. (`u32`, as
    /// `fit`: every member holds 2n nodes, and 128 bytes a node is a smaller allocation class
    /// than 136.)
    height: u32,
    /// How far below this node the shallowest node lies that could take an insertion without
    /// adding to this node's height (a node v with depth(v) + height(v) < height(self));
    /// `u32::MAX` if none does. Kept with the structure, so an insertion finds its spot along
    /// one path instead of a walk of the tree: merging n singletons costs n log n per member,
    /// not n².
    fit: u32,
}

/// What pruning did to a subtree.
enum Pruned {
    Same,
    /// Some leaf under it left: it lost its keys (or was replaced by a child).
    Changed,
    Removed,
}

/// A leaf (a member) or an inner node with two children.
#[derive(Debug, Clone)]
#[allow(unreachable_pub)]
pub enum Kind {
    Leaf(String),
    Inner(Box<Node>, Box<Node>),
}

impl Node {
    pub(crate) fn leaf(member: String, bk: Option<Held>, x: Option<Box<Secret>>) -> Self {
        Self { bk, x, kind: Kind::Leaf(member), height: 0, fit: u32::MAX }
    }

    fn inner(left: Self, right: Self) -> Self {
        Self::inner_with(left, right, None, None)
    }

    fn inner_with(left: Self, right: Self, bk: Option<Held>, x: Option<Box<Secret>>) -> Self {
        let (height, fit) = summary(&left, &right);
        Self { bk, x, kind: Kind::Inner(Box::new(left), Box::new(right)), height, fit }
    }

    /// Height: 0 for a leaf.
    pub(crate) fn height(&self) -> usize {
        self.height as usize
    }

    /// Recomputes the heights of the nodes on `path` above its end, after the subtree at
    /// `path` changed.
    fn update_heights(&mut self, path: &[bool]) {
        if let (Some((&first, rest)), Kind::Inner(l, r)) = (path.split_first(), &mut self.kind) {
            if first {
                r.update_heights(rest);
            } else {
                l.update_heights(rest);
            }
            (self.height, self.fit) = summary(l, r);
        }
    }

    /// Members, left to right.
    pub(crate) fn members(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut Vec<String>) {
        match &self.kind {
            Kind::Leaf(m) => out.push(m.clone()),
            Kind::Inner(l, r) => {
                l.collect(out);
                r.collect(out);
            }
        }
    }

    /// The rightmost leaf's member.
    pub(crate) fn rightmost(&self) -> &str {
        match &self.kind {
            Kind::Leaf(m) => m,
            Kind::Inner(_, r) => r.rightmost(),
        }
    }

    /// The leftmost leaf's member.
    pub(crate) fn leftmost(&self) -> &str {
        match &self.kind {
            Kind::Leaf(m) => m,
            Kind::Inner(l, _) => l.leftmost(),
        }
    }

    /// The path to a member's leaf.
    pub(crate) fn path_to(&self, member: &str) -> Option<Path> {
        match &self.kind {
            Kind::Leaf(m) => (m == member).then(Vec::new),
            Kind::Inner(l, r) => {
                if let Some(mut p) = l.path_to(member) {
                    p.insert(0, false);
                    Some(p)
                } else {
                    let mut p = r.path_to(member)?;
                    p.insert(0, true);
                    Some(p)
                }
            }
        }
    }

    /// The node at a path, if the path exists.
    pub(crate) fn at(&self, path: &[bool]) -> Option<&Self> {
        let Some((&first, rest)) = path.split_first() else {
            return Some(self);
        };
        match &self.kind {
            Kind::Leaf(_) => None,
            Kind::Inner(l, r) => (if first { r } else { l }).at(rest),
        }
    }

    /// The node at a path, mutably.
    pub(crate) fn at_mut(&mut self, path: &[bool]) -> Option<&mut Self> {
        let Some((&first, rest)) = path.split_first() else {
            return Some(self);
        };
        match &mut self.kind {
            Kind::Leaf(_) => None,
            Kind::Inner(l, r) => (if first { r } else { l }).at_mut(rest),
        }
    }

    /// Forgets the blinded keys and exponents of every node on `path` above its end (the
    /// ancestors of the node at `path`), root included.
    pub(crate) fn invalidate_ancestors(&mut self, path: &[bool]) {
        for depth in 0..path.len() {
            if let Some(n) = self.at_mut(&path[..depth]) {
                n.bk = None;
                n.x = None;
            }
        }
    }

    /// Removes the given members: a removed leaf's sibling takes its parent's place, and every
    /// ancestor of a change loses its keys (docs/protocols.md §2.2). Returns None if nobody is
    /// left.
    pub(crate) fn prune(mut self, gone: &dyn Fn(&str) -> bool) -> Option<Self> {
        match self.prune_in_place(gone) {
            Pruned::Removed => None,
            Pruned::Same | Pruned::Changed => Some(self),
        }
    }

    /// Prunes in place, so that subtrees without leavers keep their nodes (a leave costs a
    /// walk of the tree, not a rebuilt copy of it).
    fn prune_in_place(&mut self, gone: &dyn Fn(&str) -> bool) -> Pruned {
        let (left, right) = match &mut self.kind {
            Kind::Leaf(m) => return if gone(m) { Pruned::Removed } else { Pruned::Same },
            Kind::Inner(l, r) => (l.prune_in_place(gone), r.prune_in_place(gone)),
        };
        let Kind::Inner(l, r) = &mut self.kind else { unreachable!("matched above") };
        let promoted = match (left, right) {
            (Pruned::Removed, Pruned::Removed) => return Pruned::Removed,
            (Pruned::Same, Pruned::Same) => return Pruned::Same,
            (Pruned::Removed, _) => {
                std::mem::replace(&mut **r, Self::leaf(String::new(), None, None))
            }
            (_, Pruned::Removed) => {
                std::mem::replace(&mut **l, Self::leaf(String::new(), None, None))
            }
            _ => {
                (self.height, self.fit) = summary(l, r);
                self.bk = None;
                self.x = None;
                return Pruned::Changed;
            }
        };
        // The survivor takes its parent's place, with its own keys.
        *self = promoted;
        Pruned::Changed
    }

    /// Every non-root node without a blinded key: (depth, left-to-right index, path).
    pub(crate) fn missing(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut |p, n| {
            if !p.is_empty() && n.bk.is_none() {
                out.push(p.to_vec());
            }
        });
        out
    }

    /// Calls `f` with every leaf's path and member, left to right.
    pub(crate) fn walk_leaves(&self, f: &mut dyn FnMut(&[bool], &str)) {
        self.walk(&mut Vec::new(), &mut |p, n| {
            if let Kind::Leaf(m) = &n.kind {
                f(p, m);
            }
        });
    }

    fn walk(&self, path: &mut Path, f: &mut dyn FnMut(&[bool], &Self)) {
        f(path, self);
        if let Kind::Inner(l, r) = &self.kind {
            path.push(false);
            l.walk(path, f);
            path.pop();
            path.push(true);
            r.walk(path, f);
            path.pop();
        }
    }

    /// The path to the rightmost of the shallowest nodes that could take an insertion (see
    /// `fit`); call only when there is one.
    fn fit_path(&self) -> Path {
        let mut path = Vec::new();
        let mut node = self;
        while let Kind::Inner(l, r) = &node.kind {
            let target = node.fit;
            // Right first: at any depth, the right subtree's nodes are right of the left's.
            let Some((side, child, fits_here)) =
                [(true, r), (false, l)].into_iter().find_map(|(side, c)| {
                    let fits_here = 1 + c.height < node.height;
                    let depth = if fits_here { 1 } else { c.fit.saturating_add(1) };
                    (depth == target).then_some((side, c, fits_here))
                })
            else {
                break;
            };
            path.push(side);
            if fits_here {
                break;
            }
            node = child;
        }
        path
    }

    /// Inserts `other` by the paper's rule: at the shallowest, then rightmost, node where the
    /// join does not increase the height; at the root if there is none (or if `other` is at
    /// least as tall). The new inner node has the old subtree on the left and `other` on the
    /// right, and it and its ancestors lose their keys. Returns the path of the new node.
    pub(crate) fn insert(&mut self, other: Self) -> Path {
        // The shallowest fitting node v has depth(v) + height(v) < h; it takes `other` only
        // if depth(v) + h2 < h too, and no deeper node would.
        let spot = (self.fit as usize).saturating_add(other.height()) < self.height();
        let path = if spot { self.fit_path() } else { Vec::new() };
        let target = self.at_mut(&path).expect("insertion path exists");
        let old = std::mem::replace(target, Self::leaf(String::new(), None, None));
        *target = Self::inner(old, other);
        self.update_heights(&path);
        self.invalidate_ancestors(&path);
        path
    }
}

/// The height and `fit` of an inner node with these children (see [`Node::fit`]): a child
/// whose height plus one (its depth) is below the node's height fits right below it;
/// otherwise the child's own shallowest fit, one level deeper, fits here too.
fn summary(left: &Node, right: &Node) -> (u32, u32) {
    let height = 1 + left.height.max(right.height);
    let via = |c: &Node| if 1 + c.height < height { 1 } else { c.fit.saturating_add(1) };
    (height, via(left).min(via(right)))
}

/// The member who refreshes its share after leavers were pruned from an agreed tree: the
/// rightmost leaf under the deepest (then rightmost) node that lost its key, so that one path
/// covers every change of a leave; the rightmost member if no node changed (a refresh).
pub(crate) fn subtractive_refresher(tree: &Node) -> String {
    tree.missing()
        .iter()
        .max_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
        .and_then(|p| tree.at(p))
        .map_or_else(|| tree.rightmost().to_owned(), |n| n.rightmost().to_owned())
}

/// Merges group trees (docs/protocols.md §9.6): tallest first, each inserted by [`Node::insert`].
/// If the base (first) tree's group had agreed a key, the rightmost member under the first
/// insertion point refreshes its share; it is returned.
pub(crate) fn merge_trees(trees: Vec<(Node, bool)>) -> (Node, Option<String>) {
    let order = merge_order(&trees.iter().map(|(t, _)| t).collect::<Vec<_>>());
    let mut trees: Vec<Option<(Node, bool)>> = trees.into_iter().map(Some).collect();
    let (mut merged, base_kept) = trees[order[0]].take().expect("base tree");
    let mut refresher = None;
    for &i in &order[1..] {
        let (t, _) = trees[i].take().expect("each tree once");
        let mut v = merged.insert(t);
        if refresher.is_none() && base_kept {
            v.push(false);
            refresher = merged.at(&v).map(|n| n.rightmost().to_owned());
        }
    }
    (merged, refresher)
}

/// Marks the refresher's leaf and every ancestor as changed; returns the leaf's path.
pub(crate) fn invalidate_refresher(tree: &mut Node, refresher: &str) -> Option<Path> {
    let path = tree.path_to(refresher)?;
    tree.invalidate_ancestors(&path);
    tree.at_mut(&path)?.bk = None;
    Some(path)
}

/// The nodes a member publishes: on its path (leaf included, root excluded), every node whose
/// exponent it knows, whose blinded key was not delivered and that it has not sent yet, but
/// only if it is the sponsor (rightmost leaf) of at least one of them; else nothing.
pub(crate) fn publication(
    tree: &Node,
    path: &[bool],
    me: &str,
    knows: &dyn Fn(&[bool]) -> bool,
    sent: &std::collections::BTreeSet<Path>,
) -> Vec<Path> {
    let mut candidates = Vec::new();
    let mut responsible = false;
    for depth in (1..=path.len()).rev() {
        let p = &path[..depth];
        let Some(node) = tree.at(p) else { continue };
        if node.bk.is_some() || sent.contains(p) || !knows(p) {
            continue;
        }
        responsible |= node.rightmost() == me;
        candidates.push(p.to_vec());
    }
    if responsible {
        candidates
    } else {
        Vec::new()
    }
}

/// The order in which trees are merged: tallest first, ties by the leftmost member's id.
pub(crate) fn merge_order(trees: &[&Node]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..trees.len()).collect();
    order.sort_by(|&a, &b| {
        trees[b]
            .height()
            .cmp(&trees[a].height())
            .then_with(|| trees[a].leftmost().cmp(trees[b].leftmost()))
    });
    order
}

// `pub` (in a private module) only so that `Agreement`'s associated types can name it.
#[allow(unreachable_pub)]
/// One node of the flat (pre-order) wire form of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireNode {
    Leaf { member: String, bk: Option<Bytes> },
    Inner { bk: Option<Bytes> },
}

/// The tree in pre-order, with the given element encoder.
pub(crate) fn to_wire(node: &Node, encode: &dyn Fn(&Held) -> Vec<u8>) -> Vec<WireNode> {
    let mut out = Vec::new();
    node.walk(&mut Vec::new(), &mut |_, n| {
        let bk = n.bk.as_ref().map(|e| Bytes::from(encode(e)));
        out.push(match &n.kind {
            Kind::Leaf(m) => WireNode::Leaf { member: m.clone(), bk },
            Kind::Inner(..) => WireNode::Inner { bk },
        });
    });
    out
}

/// True if `wire` is exactly `node`'s pre-order form: the same shape, members and blinded
/// keys (`encodes` tells whether bytes encode a held key, as [`gka_plugin_api::Dh::encodes`]).
/// Unlike comparing with [`to_wire`], it encodes nothing.
pub(crate) fn matches_wire(
    node: &Node,
    wire: &[WireNode],
    encodes: &dyn Fn(&[u8], &Held) -> bool,
) -> bool {
    let mut wire = wire.iter();
    let mut same = true;
    node.walk(&mut Vec::new(), &mut |_, n| {
        if !same {
            return;
        }
        let (bk, kind_matches) = match (wire.next(), &n.kind) {
            (Some(WireNode::Leaf { member, bk }), Kind::Leaf(m)) => (bk, member == m),
            (Some(WireNode::Inner { bk }), Kind::Inner(..)) => (bk, true),
            _ => (&None, false),
        };
        same = kind_matches
            && match (bk, &n.bk) {
                (None, None) => true,
                (Some(b), Some(mine)) => encodes(b, mine),
                _ => false,
            };
    });
    same && wire.next().is_none()
}

/// The tallest tree accepted from a peer. The insertion rule keeps honest trees within a few
/// levels of log2(n); a peer's degenerate tree would cost linear rounds and deep recursion.
pub(crate) const MAX_TREE_HEIGHT: usize = 64;

/// Rebuilds a tree from pre-order without recursion (a hostile encoding cannot exhaust the
/// stack), decoding each blinded key with `decode`; refuses trees taller than
/// [`MAX_TREE_HEIGHT`].
pub(crate) fn from_wire<E>(
    wire: &[WireNode],
    decode: &dyn Fn(&[u8]) -> Result<Held, E>,
    malformed: &dyn Fn(&str) -> E,
) -> Result<Node, E> {
    // Each entry: a node under construction and how many children it still needs.
    let mut stack: Vec<(Node, Vec<Node>)> = Vec::new();
    let mut done: Option<Node> = None;
    for w in wire {
        if done.is_some() {
            return Err(malformed("trailing nodes after the tree"));
        }
        let mut finished = match w {
            WireNode::Leaf { member, bk } => {
                let bk = bk.as_deref().map(decode).transpose()?;
                Node::leaf(member.clone(), bk, None)
            }
            WireNode::Inner { bk } => {
                if stack.len() >= MAX_TREE_HEIGHT {
                    return Err(malformed("tree too tall"));
                }
                let bk = bk.as_deref().map(decode).transpose()?;
                stack.push((Node::leaf(String::new(), bk, None), Vec::new()));
                continue;
            }
        };
        loop {
            let Some((_, children)) = stack.last_mut() else {
                done = Some(finished);
                break;
            };
            children.push(finished);
            if children.len() < 2 {
                break;
            }
            let (parent, mut children) = stack.pop().expect("non-empty");
            let right = children.pop().expect("two children");
            let left = children.pop().expect("two children");
            finished = Node::inner_with(left, right, parent.bk, None);
        }
    }
    done.ok_or_else(|| malformed("truncated tree"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(m: &str) -> Node {
        Node::leaf(m.into(), None, None)
    }

    #[test]
    fn sequential_inserts_build_a_balanced_tree() {
        let mut t = leaf("a");
        for m in ["b", "c", "d"] {
            t.insert(leaf(m));
        }
        assert_eq!(t.height(), 2);
        assert_eq!(t.members(), ["a", "b", "c", "d"]);
        // A fifth member joins at the root of the full tree.
        let p = t.insert(leaf("e"));
        assert!(p.is_empty());
        assert_eq!(t.height(), 3);
        // A sixth goes to the shallowest rightmost spot: next to e.
        let p = t.insert(leaf("f"));
        assert_eq!(p, vec![true]);
        assert_eq!(t.height(), 3);
    }

    /// The insertion rule read literally: level by level from the root, right to left, the
    /// first node where depth + max(height, h2) < h; the root if none.
    fn spot_by_search(tree: &Node, h2: usize) -> Path {
        let h = tree.height();
        let mut level: Vec<(Path, &Node)> = vec![(Vec::new(), tree)];
        for depth in 1..=h {
            let mut next = Vec::new();
            for (p, n) in &level {
                if let Kind::Inner(l, r) = &n.kind {
                    for (side, child) in [(false, l), (true, r)] {
                        let mut cp = p.clone();
                        cp.push(side);
                        next.push((cp, &**child));
                    }
                }
            }
            for (p, n) in next.iter().rev() {
                if depth + n.height().max(h2) < h {
                    return p.clone();
                }
            }
            level = next;
        }
        Vec::new()
    }

    #[test]
    fn insertion_spots_match_a_literal_search_of_the_rule() {
        // Trees grown by merging random small trees, pruned now and then, in many shapes.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let mut name = 0;
        let mut fresh = |size: u64| {
            let mut t = leaf("x");
            for i in 0..size {
                name += 1;
                let n = leaf(&format!("m{name}"));
                if i == 0 {
                    t = n;
                } else {
                    t.insert(n);
                }
            }
            t
        };
        let mut deep = 0;
        for _ in 0..40 {
            let mut tree = fresh(1 + next(3));
            for _ in 0..60 {
                let bound = if next(4) == 0 { 9 } else { 2 };
                let other = fresh(1 + next(bound));
                let expected = spot_by_search(&tree, other.height());
                deep += usize::from(expected.len() >= 2);
                assert_eq!(tree.insert(other), expected);
                if next(10) == 0 {
                    let members = tree.members();
                    let gone = members[next(members.len() as u64) as usize].clone();
                    tree = tree.prune(&|m| m == gone).unwrap_or_else(|| leaf("y"));
                }
            }
        }
        assert!(deep > 500, "only {deep} insertions below the root's children");
    }

    #[test]
    fn a_node_fits_in_96_bytes() {
        // Every member holds 2n nodes (96 bytes is two allocation classes below 136).
        assert!(size_of::<Node>() <= 96, "{} bytes", size_of::<Node>());
    }

    #[test]
    fn pruning_promotes_the_sibling() {
        let mut t = leaf("a");
        for m in ["b", "c", "d"] {
            t.insert(leaf(m));
        }
        let t = t.prune(&|m| m == "c").expect("members left");
        assert_eq!(t.members(), ["a", "b", "d"]);
        assert_eq!(t.path_to("d"), Some(vec![true]));
        assert!(t.prune(&|_| true).is_none());
    }

    #[test]
    fn a_degenerate_tree_from_a_peer_is_refused() {
        // Left-deep: Inner × (m − 1) then Leaf × m has height m − 1.
        let tall = |m: usize| {
            let mut w: Vec<WireNode> = (0..m - 1).map(|_| WireNode::Inner { bk: None }).collect();
            w.extend((0..m).map(|i| WireNode::Leaf { member: format!("m{i}"), bk: None }));
            w
        };
        let ok: Result<Node, &str> =
            from_wire(&tall(MAX_TREE_HEIGHT + 1), &|_| Err("x"), &|_| "bad");
        assert_eq!(ok.expect("height 64 is accepted").height(), MAX_TREE_HEIGHT);
        let too_tall: Result<Node, &str> =
            from_wire(&tall(MAX_TREE_HEIGHT + 2), &|_| Err("x"), &|m| {
                if m.contains("tall") {
                    "tall"
                } else {
                    "other"
                }
            });
        assert_eq!(too_tall.err(), Some("tall"));
    }

    #[test]
    fn wire_form_round_trips_and_rejects_truncation() {
        let mut t = leaf("a");
        for m in ["b", "c", "d", "e"] {
            t.insert(leaf(m));
        }
        let wire = to_wire(&t, &|_| vec![]);
        let back: Node =
            from_wire(&wire, &|_| Err("no elements here"), &|_| "malformed").expect("round trip");
        assert_eq!(back.members(), t.members());
        assert_eq!(back.height(), t.height());
        assert!(from_wire(&wire[..wire.len() - 1], &|_| Err("x"), &|_| "malformed").is_err());
    }
}
