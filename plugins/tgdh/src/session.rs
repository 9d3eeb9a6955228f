//! The TGDH session state machine.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use gka_plugin_api::{
    unexpected, Agreement, Bytes, Context, DecodedOnce, Element, SessionError, Sides, View,
    ViewChange, ViewPlaces,
};
use serde::{Deserialize, Serialize};

use crate::tree::{
    from_wire, invalidate_refresher, matches_shared_wire, merge_trees, publication, share,
    subtractive_refresher, to_wire, Node, Path, WireNode,
};

/// Domain label for mapping node keys to exponents (docs/protocols.md §9.2).
const NODE_LABEL: &str = "gka tgdh node key";

/// TGDH's messages.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TgdhMsg {
    /// Round 1 of an additive event: a group's tree (pre-order), sent by its rightmost member,
    /// and whether the group had agreed a key before (its sponsor then refreshes). The tree
    /// is decoded once per process for all the members that receive it (see
    /// [`matches_shared_wire`]).
    Tree { nodes: DecodedOnce<Vec<WireNode>>, kept: bool },
    /// Blinded keys of nodes on the sender's path, by path from the root.
    Bkeys(Vec<(Path, Bytes)>),
}

/// Where a run stands.
#[derive(Debug, Default)]
enum Phase {
    #[default]
    Idle,
    /// Round 1: collecting every group's tree.
    /// `mine` is this member's group's tree, with its private exponents, until that group's
    /// broadcast of it comes back; then it moves into `trees` (a copy would double every
    /// member's memory while the other trees are awaited).
    /// The trees are shared with the other members of this process that received them.
    Collect { mine: Option<Node>, trees: Sides<(Arc<Node>, bool)> },
    /// Filling in the merged tree's missing blinded keys.
    Compute(Run),
}

/// The agreed tree being completed, and this member's private progress on it.
#[derive(Debug)]
struct Run {
    tree: Node,
    /// The group secret, once this member has computed the root.
    root: Option<Element>,
    /// Nodes whose blinded keys this member broadcast and has not seen delivered yet.
    sent: BTreeSet<Path>,
    /// Each member's leaf path. The structure is fixed while keys are filled in, and every
    /// message asks for its sender's path: a search per message would cost n² per member.
    paths: LeafPaths,
    /// Non-root nodes still without a blinded key (the key is in once none is).
    missing: usize,
    /// Blinded keys set in `tree` since its copied nodes were last shared: see
    /// [`RESHARE_EVERY`].
    unshared: usize,
}

/// How many delivered blinded keys a member sets before it shares its tree's copied nodes
/// again ([`Node::reshare`]). Setting a key copies the path from the root to its node; sharing
/// after every message would copy and intern the upper levels again at each one. In between, a
/// member holds at most this many paths privately.
const RESHARE_EVERY: usize = 16;

impl Run {
    fn new(tree: Node, view: &ViewPlaces) -> Self {
        let (paths, missing) = LeafPaths::new(&tree, view);
        Self { tree, root: None, sent: BTreeSet::new(), paths, missing, unshared: 0 }
    }
}

/// The leaf path of each member of the view, by its place in the view, all in one array: a
/// member of a group of n keeps n paths, and n maps of n member ids each would dominate a large
/// simulation's memory.
#[derive(Debug)]
struct LeafPaths {
    view: ViewPlaces,
    /// (start, length) in `steps`, by place; `None` for a member without a leaf.
    spans: Vec<Option<(u32, u32)>>,
    steps: Vec<bool>,
}

impl LeafPaths {
    /// The leaf paths of `tree`'s members, and how many of its nodes lack a blinded key.
    fn new(tree: &Node, view: &ViewPlaces) -> (Self, usize) {
        let mut spans = vec![None; view.len()];
        let mut steps = Vec::new();
        let missing = tree.walk_leaves_counting_missing(&mut |path, member| {
            if let Some(place) = view.place(member) {
                // Paths are shorter than the number of leaves, which a view bounds far below
                // 2^32 (and `steps` holds one byte per step).
                spans[place] = Some((steps.len() as u32, path.len() as u32));
                steps.extend_from_slice(path);
            }
        });
        (Self { view: view.clone(), spans, steps }, missing)
    }

    /// A member's leaf path, if it has a leaf and is in the view.
    fn of(&self, member: &str) -> Option<&[bool]> {
        let (start, len) = self.spans[self.view.place(member)?]?;
        self.steps.get(start as usize..(start + len) as usize)
    }
}

/// One member's run: where it stands in the agreement under way.
#[derive(Debug, Default)]
pub(crate) struct TgdhRun {
    phase: Phase,
}

type Cx = Context<Node>;

impl TgdhRun {
    fn singleton(&mut self, cx: &mut Cx) -> Node {
        let r = cx.core.dh.random_exponent(&mut cx.core.rng);
        let bk = cx.core.dh.blind(&r);
        Node::leaf(cx.core.me().to_owned(), Some(bk.into()), Some(Box::new(r)))
    }

    fn on_tree(
        &mut self,
        cx: &mut Cx,
        from: &str,
        shared_nodes: &DecodedOnce<Vec<WireNode>>,
        kept: bool,
    ) -> Result<(), SessionError> {
        let nodes: &[WireNode] = shared_nodes;
        let Phase::Collect { mine, trees, .. } = &self.phase else {
            return Err(unexpected(format!("tree from {from:?} not expected")));
        };
        let view = cx.core.view()?;
        // Check the leaves before building anything: distinct members of the view, not yet
        // covered. This also bounds the tree's depth by the view's size.
        if nodes.len() >= 2 * view.members.len() {
            return Err(unexpected("tree larger than the view"));
        }
        let leaves: Vec<String> = nodes
            .iter()
            .filter_map(|w| match w {
                WireNode::Leaf { member, .. } => Some(member.clone()),
                WireNode::Inner { .. } => None,
            })
            .collect();
        trees.check(view, leaves.iter().map(String::as_str))?;
        if nodes.len() != 2 * leaves.len().max(1) - 1 {
            return Err(unexpected("tree shape does not match its leaves"));
        }
        let me = cx.core.me().to_owned();
        let dh = &cx.core.dh;
        let tree = if leaves.contains(&me) {
            // Our own group's tree: it must be exactly our copy, which keeps our private
            // exponents.
            let group = dh.group().id();
            let is_mine = mine.as_ref().is_some_and(|mine| {
                let encodes = |b: &[u8], held: &_| dh.encodes(b, held);
                matches_shared_wire(mine, shared_nodes.shared(), group, &encodes)
            });
            if !is_mine {
                return Err(unexpected("a tree with this member that is not its group's"));
            }
            let Phase::Collect { mine, .. } = &mut self.phase else { unreachable!() };
            mine.take().expect("checked above")
        } else {
            from_wire(nodes, &|b| dh.receive(b).map_err(SessionError::from), &|m| {
                unexpected(format!("malformed tree: {m}"))
            })?
        };
        if tree.rightmost() != from {
            return Err(unexpected(format!("tree from {from:?}, who is not its rightmost member")));
        }
        let view = cx.core.view()?;
        let Phase::Collect { trees, .. } = &mut self.phase else { unreachable!() };
        match trees.add(view, leaves, (share(tree), kept)) {
            // Every group's tree is in: merge them (docs/protocols.md §9.6) and compute.
            Some(all) => {
                let (merged, refresher) = merge_trees(all);
                self.start_compute(cx, merged, refresher)
            }
            None => Ok(()),
        }
    }

    fn start_compute(
        &mut self,
        cx: &mut Cx,
        mut tree: Node,
        refresher: Option<String>,
    ) -> Result<(), SessionError> {
        if let Some(refresher) = refresher {
            let path = invalidate_refresher(&mut tree, &refresher)
                .ok_or_else(|| unexpected("refresher not in tree"))?;
            if refresher == cx.core.me() {
                let r = cx.core.dh.random_exponent(&mut cx.core.rng);
                tree.at_mut(&path).expect("leaf exists").x = Some(Box::new(r));
            }
            tree.reshare();
        }
        self.phase = Phase::Compute(Run::new(tree, cx.core.places()));
        self.advance(cx)
    }

    /// Computes this member's path as far as the delivered blinded keys allow, publishes what
    /// it is responsible for, and installs the key once every member can compute it.
    fn advance(&mut self, cx: &mut Cx) -> Result<(), SessionError> {
        let me = cx.core.me().to_owned();
        let Phase::Compute(run) = &mut self.phase else {
            return Ok(());
        };
        let dh = &cx.core.dh;
        let path =
            run.paths.of(&me).map(<[bool]>::to_vec).ok_or_else(|| unexpected("not in the tree"))?;
        // Bottom-up along the path.
        if path.is_empty() {
            if run.root.is_none() {
                let leaf = run.tree.at(&[]).expect("root");
                let x = leaf.x.as_deref().ok_or_else(|| unexpected("own share unknown"))?;
                run.root = Some(dh.pow(&dh.blind(x), x));
            }
        } else {
            for depth in (0..path.len()).rev() {
                let here = &path[..depth];
                if depth > 0 && run.tree.at(here).and_then(|n| n.x.as_ref()).is_some() {
                    continue;
                }
                if depth == 0 && run.root.is_some() {
                    break;
                }
                let child = run.tree.at(&path[..=depth]).expect("on path");
                let Some(x_child) = child.x.clone() else {
                    break;
                };
                let mut sib_path = here.to_vec();
                sib_path.push(!path[depth]);
                let Some(sib_bk) = run.tree.at(&sib_path).and_then(|n| n.bk.as_ref()) else {
                    break;
                };
                let k = dh.pow(dh.check(sib_bk)?, &x_child);
                if depth == 0 {
                    run.root = Some(k);
                } else {
                    let x = dh.element_to_exponent(NODE_LABEL, &k);
                    run.tree.at_mut(here).expect("on path").x = Some(Box::new(x));
                }
            }
        }
        // Publish what this member is responsible for (see `tree::publication`).
        let tree = &run.tree;
        let knows = |p: &[bool]| tree.at(p).is_some_and(|n| n.x.is_some());
        let list = publication(tree, &path, &me, &knows, &run.sent);
        if !list.is_empty() {
            let mut wire = Vec::with_capacity(list.len());
            for p in list {
                let x = run.tree.at(&p).and_then(|n| n.x.clone()).expect("known");
                let bk = dh.blind(&x);
                wire.push((p.clone(), dh.encode(&bk).into()));
                run.sent.insert(p);
            }
            cx.core.broadcast(&TgdhMsg::Bkeys(wire))?;
        }
        self.try_commit(cx)
    }

    fn try_commit(&mut self, cx: &mut Cx) -> Result<(), SessionError> {
        let Phase::Compute(run) = &self.phase else {
            return Ok(());
        };
        if run.root.is_none() || run.missing > 0 {
            return Ok(());
        }
        let Phase::Compute(mut run) = std::mem::take(&mut self.phase) else { unreachable!() };
        run.tree.reshare();
        let secret = cx.core.dh.encode(run.root.as_ref().expect("root computed"));
        cx.commit(run.tree, &secret)
    }

    fn on_bkeys(
        &mut self,
        cx: &mut Cx,
        from: &str,
        list: &[(Path, Bytes)],
    ) -> Result<(), SessionError> {
        let me = cx.core.me().to_owned();
        let Phase::Compute(run) = &self.phase else {
            return Err(unexpected(format!("blinded keys from {from:?} not expected")));
        };
        // Only nodes on the sender's path, each once.
        let sender_path = run.paths.of(from).unwrap_or_default();
        if list.len() > sender_path.len() {
            return Err(unexpected(format!("{from:?} sent more blinded keys than its path has")));
        }
        let distinct: BTreeSet<&Path> = list.iter().map(|(p, _)| p).collect();
        if distinct.len() != list.len() {
            return Err(unexpected("a node listed twice"));
        }
        let dh = &cx.core.dh;
        let mut decoded = Vec::with_capacity(list.len());
        for (p, b) in list {
            let node = run.tree.at(p).ok_or_else(|| unexpected("blinded key for no node"))?;
            // The sender can know a node's key only if the node is above its leaf.
            if p.is_empty() || sender_path.is_empty() || !sender_path.starts_with(p) {
                return Err(unexpected(format!("{from:?} cannot know the key of that node")));
            }
            let bk = dh.receive(b)?;
            if node.bk.as_ref().is_some_and(|old| *old != bk) {
                return Err(unexpected("conflicting blinded key"));
            }
            decoded.push((p.clone(), bk));
        }
        let Phase::Compute(run) = &mut self.phase else { unreachable!() };
        for (p, bk) in decoded {
            if from == me {
                run.sent.remove(&p);
            }
            let node = run.tree.at_mut(&p).expect("checked");
            if node.bk.is_none() {
                run.missing -= 1;
            }
            node.bk = Some(bk);
            run.unshared += 1;
        }
        if run.unshared >= RESHARE_EVERY {
            run.tree.reshare();
            run.unshared = 0;
        }
        self.advance(cx)
    }
}

impl Agreement for TgdhRun {
    type Agreed = Node;
    type Message = TgdhMsg;

    /// Leave, partition or refresh within one agreed tree.
    fn on_whole_view(&mut self, cx: &mut Cx, tree: Node, _view: &View) -> Result<(), SessionError> {
        // The view's places (shared by the members of this process), not a set built per member.
        let places = cx.core.places();
        let tree = tree
            .prune(&|m| places.place(m).is_none())
            .ok_or_else(|| unexpected("no member left"))?;
        let refresher = subtractive_refresher(&tree);
        self.start_compute(cx, tree, Some(refresher))
    }

    fn on_merge(
        &mut self,
        cx: &mut Cx,
        change: &ViewChange,
        kept: Option<Node>,
    ) -> Result<(), SessionError> {
        let (mine, kept_state) = match kept {
            // Nobody of the agreed group left: nothing to prune (a walk of the tree saved).
            Some(tree) if change.side_is_last_group => (tree, true),
            Some(tree) => {
                let side: HashSet<&str> = change.side.iter().map(String::as_str).collect();
                let pruned = tree
                    .prune(&|m| !side.contains(m))
                    .ok_or_else(|| unexpected("own group is empty"))?;
                (pruned, true)
            }
            None => (self.singleton(cx), false),
        };
        if change.side_is_whole_view {
            // Alone with no agreed state: nothing to exchange.
            return self.start_compute(cx, mine, None);
        }
        if mine.rightmost() == cx.core.me() {
            let nodes = DecodedOnce::new(to_wire(&mine, &|e| cx.core.dh.encode_held(e)));
            cx.core.broadcast(&TgdhMsg::Tree { nodes, kept: kept_state })?;
        }
        self.phase = Phase::Collect { mine: Some(mine), trees: Sides::default() };
        Ok(())
    }

    fn on_message(&mut self, cx: &mut Cx, from: &str, msg: TgdhMsg) -> Result<(), SessionError> {
        match msg {
            TgdhMsg::Tree { nodes, kept } => self.on_tree(cx, from, &nodes, kept),
            TgdhMsg::Bkeys(list) => self.on_bkeys(cx, from, &list),
        }
    }

    fn on_refresh(&mut self, cx: &mut Cx) -> Result<(), SessionError> {
        let tree = cx.agreed.take().ok_or_else(|| unexpected("refresh without a key"))?;
        let rightmost = tree.rightmost().to_owned();
        self.start_compute(cx, tree, Some(rightmost))
    }
}
