//! The TGDH key tree: structure, the paper's insertion and deletion rules (docs/protocols.md §9.6),
//! and the flat wire form. Pure structure and public blinded keys, plus each node's private
//! exponent where this member knows it; no exponentiation happens here.

use gka_plugin_api::{Element, Secret};
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
    /// The node's blinded key g^x as the group knows it (delivered), if valid.
    pub(crate) bk: Option<Element>,
    /// The node's exponent x (a leaf's share, or H(K) of an inner node), if this member knows
    /// it and it is valid.
    pub(crate) x: Option<Secret>,
    /// Private, so that every change of structure goes through the constructors and
    /// [`Node::insert`], which keep `height` right.
    kind: Kind,
    /// Height (0 for a leaf), kept with the structure: the insertion rule asks every node's
    /// height, and recomputing it would cost a walk of the subtree each time.
    height: usize,
}

/// A leaf (a member) or an inner node with two children.
#[derive(Debug, Clone)]
#[allow(unreachable_pub)]
pub enum Kind {
    Leaf(String),
    Inner(Box<Node>, Box<Node>),
}

impl Node {
    pub(crate) fn leaf(member: String, bk: Option<Element>, x: Option<Secret>) -> Self {
        Self { bk, x, kind: Kind::Leaf(member), height: 0 }
    }

    fn inner(left: Self, right: Self) -> Self {
        Self::inner_with(left, right, None, None)
    }

    fn inner_with(left: Self, right: Self, bk: Option<Element>, x: Option<Secret>) -> Self {
        let height = 1 + left.height.max(right.height);
        Self { bk, x, kind: Kind::Inner(Box::new(left), Box::new(right)), height }
    }

    /// Height: 0 for a leaf.
    pub(crate) fn height(&self) -> usize {
        self.height
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
            self.height = 1 + l.height.max(r.height);
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
    pub(crate) fn prune(self, gone: &dyn Fn(&str) -> bool) -> Option<Self> {
        self.prune_inner(gone).0
    }

    fn prune_inner(self, gone: &dyn Fn(&str) -> bool) -> (Option<Self>, bool) {
        match self.kind {
            Kind::Leaf(ref m) => {
                if gone(m) {
                    (None, true)
                } else {
                    (Some(self), false)
                }
            }
            Kind::Inner(l, r) => {
                let (l, cl) = l.prune_inner(gone);
                let (r, cr) = r.prune_inner(gone);
                match (l, r) {
                    (Some(l), Some(r)) => {
                        let changed = cl || cr;
                        let (bk, x) = if changed { (None, None) } else { (self.bk, self.x) };
                        (Some(Self::inner_with(l, r, bk, x)), changed)
                    }
                    (Some(only), None) | (None, Some(only)) => (Some(only), true),
                    (None, None) => (None, true),
                }
            }
        }
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

    /// Inserts `other` by the paper's rule: at the shallowest, then rightmost, node where the
    /// join does not increase the height; at the root if there is none (or if `other` is at
    /// least as tall). The new inner node has the old subtree on the left and `other` on the
    /// right, and it and its ancestors lose their keys. Returns the path of the new node.
    pub(crate) fn insert(&mut self, other: Self) -> Path {
        let h = self.height();
        let h2 = other.height();
        let mut spot: Option<Path> = None;
        if h2 < h {
            // Level by level from the root; within a level, right to left. Only the levels
            // down to the first fit are visited.
            let mut level: Vec<(Path, &Self)> = vec![(Vec::new(), &*self)];
            'levels: for depth in 1..=h {
                let mut next = Vec::with_capacity(level.len() * 2);
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
                    if depth + n.height.max(h2) < h {
                        spot = Some(p.clone());
                        break 'levels;
                    }
                }
                level = next;
            }
        }
        let path = spot.unwrap_or_default();
        let target = self.at_mut(&path).expect("insertion path exists");
        let old = std::mem::replace(target, Self::leaf(String::new(), None, None));
        *target = Self::inner(old, other);
        self.update_heights(&path);
        self.invalidate_ancestors(&path);
        path
    }
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
    Leaf { member: String, bk: Option<Vec<u8>> },
    Inner { bk: Option<Vec<u8>> },
}

/// The tree in pre-order, with the given element encoder.
pub(crate) fn to_wire(node: &Node, encode: &dyn Fn(&Element) -> Vec<u8>) -> Vec<WireNode> {
    let mut out = Vec::new();
    node.walk(&mut Vec::new(), &mut |_, n| {
        let bk = n.bk.as_ref().map(encode);
        out.push(match &n.kind {
            Kind::Leaf(m) => WireNode::Leaf { member: m.clone(), bk },
            Kind::Inner(..) => WireNode::Inner { bk },
        });
    });
    out
}

/// The tallest tree accepted from a peer. The insertion rule keeps honest trees within a few
/// levels of log2(n); a peer's degenerate tree would cost linear rounds and deep recursion.
pub(crate) const MAX_TREE_HEIGHT: usize = 64;

/// Rebuilds a tree from pre-order without recursion (a hostile encoding cannot exhaust the
/// stack), decoding each blinded key with `decode`; refuses trees taller than
/// [`MAX_TREE_HEIGHT`].
pub(crate) fn from_wire<E>(
    wire: &[WireNode],
    decode: &dyn Fn(&[u8]) -> Result<Element, E>,
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
