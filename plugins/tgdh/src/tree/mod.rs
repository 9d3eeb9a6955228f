//! The TGDH key tree: structure, the paper's insertion and deletion rules (docs/protocols.md §9.6),
//! and the flat wire form. Pure structure and public blinded keys, plus each node's private
//! exponent where this member knows it; no exponentiation happens here.
//!
//! Subtrees are shared, copied on write: a node without a private exponent is interned in a
//! process-wide registry, so that the members of one process (thousands in a simulation) hold
//! one copy of the nodes they agree on, and each holds privately only the nodes on its own
//! path. A change copies the path to the changed node; [`Node::reshare`] interns the copies.

use std::sync::Arc;

use gka_plugin_api::shared::Registry;
use gka_plugin_api::{Bytes, Held, Secret};
use serde::{Deserialize, Serialize};

/// The public nodes alive in this process (see the module docs).
static PUBLIC_NODES: Registry<Node> = Registry::new();

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
    /// Some leaf under it left: it lost its keys (or was replaced by a child); the new subtree.
    Changed(Node),
    Removed,
}

/// A leaf (a member) or an inner node with two children.
#[derive(Debug, Clone)]
#[allow(unreachable_pub)]
pub enum Kind {
    Leaf(String),
    Inner(Arc<Node>, Arc<Node>),
}

/// What identifies a public node's content: its blinded key and its member, or its (already
/// interned) children by address.
#[derive(Hash)]
enum Content<'a> {
    Leaf(&'a str, Option<&'a Held>),
    Inner(usize, usize, Option<&'a Held>),
}

/// A node (a child, or a group's tree awaiting the merge), interned if it is public (see the
/// module docs).
pub(crate) fn share(node: Node) -> Arc<Node> {
    intern(Arc::new(node))
}

/// The live public node equal to `node`, or `node` itself (registered if it is public).
fn intern(node: Arc<Node>) -> Arc<Node> {
    if node.x.is_some() {
        return node;
    }
    let content = match &node.kind {
        Kind::Leaf(m) => Content::Leaf(m, node.bk.as_ref()),
        Kind::Inner(l, r) => {
            Content::Inner(Arc::as_ptr(l) as usize, Arc::as_ptr(r) as usize, node.bk.as_ref())
        }
    };
    PUBLIC_NODES.intern(&content, Arc::clone(&node), |held, new| {
        held.x.is_none()
            && held.bk == new.bk
            && match (&held.kind, &new.kind) {
                (Kind::Leaf(a), Kind::Leaf(b)) => a == b,
                (Kind::Inner(a, b), Kind::Inner(c, d)) => Arc::ptr_eq(a, c) && Arc::ptr_eq(b, d),
                _ => false,
            }
    })
}

impl Node {
    pub(crate) fn leaf(member: String, bk: Option<Held>, x: Option<Box<Secret>>) -> Self {
        Self { bk, x, kind: Kind::Leaf(member), height: 0, fit: u32::MAX }
    }

    /// A new inner node without keys over two subtrees.
    fn joined(left: Arc<Self>, right: Arc<Self>) -> Self {
        let (height, fit) = summary(&left, &right);
        Self { bk: None, x: None, kind: Kind::Inner(left, right), height, fit }
    }

    fn inner_with(left: Self, right: Self, bk: Option<Held>, x: Option<Box<Secret>>) -> Self {
        Self { bk, x, ..Self::joined(share(left), share(right)) }
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
                Arc::make_mut(r).update_heights(rest);
            } else {
                Arc::make_mut(l).update_heights(rest);
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
            // Copied if shared: the other members' trees are not this member's to change.
            Kind::Inner(l, r) => Arc::make_mut(if first { r } else { l }).at_mut(rest),
        }
    }

    /// Forgets the blinded keys and exponents of every node on `path` above its end (the
    /// ancestors of the node at `path`), root included.
    pub(crate) fn invalidate_ancestors(&mut self, path: &[bool]) {
        let mut node = self;
        for (depth, &right) in path.iter().enumerate() {
            node.bk = None;
            node.x = None;
            if depth + 1 == path.len() {
                break;
            }
            let Kind::Inner(l, r) = &mut node.kind else { return };
            node = Arc::make_mut(if right { r } else { l });
        }
    }

    /// Removes the given members: a removed leaf's sibling takes its parent's place, and every
    /// ancestor of a change loses its keys (docs/protocols.md §2.2). Returns None if nobody is
    /// left.
    pub(crate) fn prune(self, gone: &dyn Fn(&str) -> bool) -> Option<Self> {
        match self.pruned(gone) {
            Pruned::Removed => None,
            Pruned::Same => Some(self),
            Pruned::Changed(node) => Some(node),
        }
    }

    /// This subtree without the leavers. Subtrees without leavers are kept as they are,
    /// shared: a leave copies the paths to its leavers, not the tree.
    fn pruned(&self, gone: &dyn Fn(&str) -> bool) -> Pruned {
        let (l, r) = match &self.kind {
            Kind::Leaf(m) => return if gone(m) { Pruned::Removed } else { Pruned::Same },
            Kind::Inner(l, r) => (l, r),
        };
        match (l.pruned(gone), r.pruned(gone)) {
            (Pruned::Removed, Pruned::Removed) => Pruned::Removed,
            (Pruned::Same, Pruned::Same) => Pruned::Same,
            // The survivor takes its parent's place, with its own keys.
            (Pruned::Removed, Pruned::Same) => Pruned::Changed(Self::clone(r)),
            (Pruned::Same, Pruned::Removed) => Pruned::Changed(Self::clone(l)),
            (Pruned::Removed, Pruned::Changed(survivor))
            | (Pruned::Changed(survivor), Pruned::Removed) => Pruned::Changed(survivor),
            (left, right) => {
                let side = |pruned: Pruned, old: &Arc<Self>| match pruned {
                    Pruned::Changed(node) => share(node),
                    Pruned::Same | Pruned::Removed => Arc::clone(old),
                };
                let (left, right) = (side(left, l), side(right, r));
                let (height, fit) = summary(&left, &right);
                Pruned::Changed(Self {
                    bk: None,
                    x: None,
                    kind: Kind::Inner(left, right),
                    height,
                    fit,
                })
            }
        }
    }

    /// Interns the nodes copied since the last call (see the module docs): the copies are
    /// the nodes this member alone holds, and interning shares every public one with the
    /// members that hold an equal node. A shared or interned child is not entered. Returns
    /// whether a private exponent lies in the part entered: the nodes above one (this
    /// member's path) are never equal to another member's, and are not interned.
    pub(crate) fn reshare(&mut self) -> bool {
        let mut private = self.x.is_some();
        if let Kind::Inner(l, r) = &mut self.kind {
            for child in [l, r] {
                if let Some(copy) = Arc::get_mut(child) {
                    if copy.reshare() {
                        private = true;
                    } else {
                        *child = intern(Arc::clone(child));
                    }
                }
            }
        }
        private
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

    /// Calls `f` with every leaf's path and member, left to right, and returns how many
    /// [`Self::missing`] nodes there are: one walk of the tree where a computation starts,
    /// instead of two.
    pub(crate) fn walk_leaves_counting_missing(&self, f: &mut dyn FnMut(&[bool], &str)) -> usize {
        let mut missing = 0;
        self.walk(&mut Vec::new(), &mut |p, n| {
            if !p.is_empty() && n.bk.is_none() {
                missing += 1;
            }
            if let Kind::Leaf(m) = &n.kind {
                f(p, m);
            }
        });
        missing
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
    ///
    /// The nodes it copies stay private until [`Self::reshare`]: a merge inserts many trees
    /// one after another and interns what it built once, at the end, instead of interning
    /// each insertion's path only to copy it again at the next.
    pub(crate) fn insert(&mut self, other: impl Into<Arc<Self>>) -> Path {
        let other = other.into();
        // The shallowest fitting node v has depth(v) + height(v) < h; it takes `other` only
        // if depth(v) + h2 < h too, and no deeper node would.
        let spot = (self.fit as usize).saturating_add(other.height()) < self.height();
        let path = if spot { self.fit_path() } else { Vec::new() };
        let target = self.at_mut(&path).expect("insertion path exists");
        let old = std::mem::replace(target, Self::leaf(String::new(), None, None));
        // Not interned here: an interned node is never copied again but shared, and
        // `reshare` could not reach the copies below it.
        *target = Self::joined(Arc::new(old), other);
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
pub(crate) fn merge_trees(trees: Vec<(Arc<Node>, bool)>) -> (Node, Option<String>) {
    let order = merge_order(&trees.iter().map(|(t, _)| &**t).collect::<Vec<_>>());
    let mut trees: Vec<Option<(Arc<Node>, bool)>> = trees.into_iter().map(Some).collect();
    let (base, base_kept) = trees[order[0]].take().expect("base tree");
    let mut merged = Arc::unwrap_or_clone(base);
    let mut refresher = None;
    for &i in &order[1..] {
        let (t, _) = trees[i].take().expect("each tree once");
        let mut v = merged.insert(t);
        if refresher.is_none() && base_kept {
            v.push(false);
            refresher = merged.at(&v).map(|n| n.rightmost().to_owned());
        }
    }
    merged.reshare();
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

mod shared_match;
pub(crate) use shared_match::matches_shared_wire;

#[cfg(test)]
mod tests;
