//! TGDH's cost model: a structural simulation of the protocol on a canonical tree.
//!
//! TGDH's costs depend on the tree's shape and on where members join and leave, so instead of
//! a closed formula the model replays the session's rules (the same functions from `tree.rs`:
//! merge order and insertion, pruning, refresher choice, publication) on the tree's structure
//! alone, counting what each member would compute and send, with the delivery order and the
//! critical-path clocks of the test harness. No exponentiation is performed.
//!
//! The canonical configurations:
//! - the group of n is the tree its initial agreement builds (members `m0000`, `m0001`, ...);
//! - joiners are new singletons whose ids sort after the members';
//! - "leave" removes the member at index ⌊n/2⌋ of the view, "partition" the k members starting
//!   at index ⌊(n − k)/2⌋;
//! - "refresh" is done by the rightmost member.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use gka_plugin_api::{CostFigures, Dh, EventKind, GroupId, Held};

use crate::tree::{
    invalidate_refresher, merge_trees, publication, subtractive_refresher, Node, Path,
};

const ELEMENT: u64 = 256;
const HEADER: u64 = 13;

#[derive(Debug, Clone, Copy, Default)]
struct Clock {
    exps: u64,
    sigs: u64,
    verifs: u64,
}

impl Clock {
    fn join(&mut self, o: &Self) {
        self.exps = self.exps.max(o.exps);
        self.sigs = self.sigs.max(o.sigs);
        self.verifs = self.verifs.max(o.verifs);
    }
}

enum Body {
    /// A round-1 tree (its node count, for bytes).
    Tree(usize),
    Bkeys(Vec<Path>),
}

struct Msg {
    from: usize,
    body: Body,
    clock: Clock,
    wave: u64,
}

struct Member {
    name: String,
    known: BTreeSet<Path>,
    sent: BTreeSet<Path>,
    root: bool,
    clock: Clock,
}

struct Sim {
    members: Vec<Member>,
    tree: Option<Node>,
    /// Round 1: trees still expected, and what to merge when all are in.
    pending_trees: usize,
    trees: Vec<(Arc<Node>, bool)>,
    queue: VecDeque<Msg>,
    figures: CostFigures,
}

fn names(prefix: &str, n: u64) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

fn marker() -> Held {
    Dh::new(GroupId::Ffdhe2048).generator().into()
}

fn singleton(name: &str) -> Node {
    Node::leaf(name.to_owned(), Some(marker()), None)
}

/// The tree the initial agreement of `members` builds, with every non-root blinded key known.
fn agreed_tree(members: &[String]) -> Node {
    let (mut tree, _) =
        merge_trees(members.iter().map(|m| (Arc::new(singleton(m)), false)).collect());
    let paths = tree.missing();
    for p in paths {
        tree.at_mut(&p).expect("node").bk = Some(marker());
    }
    tree
}

impl Sim {
    fn new(view: &[String]) -> Self {
        Self {
            members: view
                .iter()
                .map(|m| Member {
                    name: m.clone(),
                    known: BTreeSet::new(),
                    sent: BTreeSet::new(),
                    root: false,
                    clock: Clock::default(),
                })
                .collect(),
            tree: None,
            pending_trees: 0,
            trees: Vec::new(),
            queue: VecDeque::new(),
            figures: CostFigures::default(),
        }
    }

    fn work(&mut self, i: usize, exps: u64) {
        self.members[i].clock.exps += exps;
        self.figures.total_exponentiations += exps;
    }

    fn send(&mut self, i: usize, body: Body, wave: u64) {
        self.members[i].clock.sigs += 1;
        self.figures.broadcasts += 1;
        self.figures.bytes += HEADER
            + match &body {
                Body::Tree(nodes) => *nodes as u64 * (ELEMENT + 12),
                Body::Bkeys(list) => list.iter().map(|p| p.len() as u64 + ELEMENT + 4).sum(),
            };
        let clock = self.members[i].clock;
        self.queue.push_back(Msg { from: i, body, clock, wave });
    }

    /// Starts computing on an agreed structure (after pruning or merging).
    fn start(&mut self, mut tree: Node, refresher: Option<String>) {
        if let Some(r) = &refresher {
            invalidate_refresher(&mut tree, r);
        }
        for m in &mut self.members {
            let path = tree.path_to(&m.name).expect("member in tree");
            m.known = (1..=path.len())
                .map(|d| path[..d].to_vec())
                .filter(|p| tree.at(p).is_some_and(|n| n.bk.is_some()))
                .collect();
            if refresher.as_deref() == Some(m.name.as_str()) {
                m.known.insert(path);
            }
        }
        self.tree = Some(tree);
    }

    /// The session's `advance`, on structure: climb, publish.
    fn advance(&mut self, i: usize, wave: u64) {
        let Some(tree) = self.tree.as_ref() else { return };
        let m = &self.members[i];
        let path = tree.path_to(&m.name).expect("member in tree");
        let mut known = m.known.clone();
        let mut root = m.root;
        let mut exps = 0;
        if path.is_empty() {
            if !root {
                root = true;
                exps += 2;
            }
        } else {
            for depth in (0..path.len()).rev() {
                let here = &path[..depth];
                if depth > 0 && known.contains(here) {
                    continue;
                }
                if depth == 0 && root {
                    break;
                }
                if !known.contains(&path[..=depth]) {
                    break;
                }
                let mut sib = here.to_vec();
                sib.push(!path[depth]);
                if tree.at(&sib).and_then(|n| n.bk.as_ref()).is_none() {
                    break;
                }
                exps += 1;
                if depth == 0 {
                    root = true;
                } else {
                    known.insert(here.to_vec());
                }
            }
        }
        let list = publication(tree, &path, &m.name, &|p| known.contains(p), &m.sent);
        let m = &mut self.members[i];
        m.known = known;
        m.root = root;
        m.sent.extend(list.iter().cloned());
        self.work(i, exps + list.len() as u64);
        if !list.is_empty() {
            self.send(i, Body::Bkeys(list), wave);
        }
    }

    fn advance_all(&mut self, wave: u64) {
        for i in 0..self.members.len() {
            self.advance(i, wave);
        }
    }

    fn run(mut self) -> CostFigures {
        while let Some(msg) = self.queue.pop_front() {
            self.figures.rounds = self.figures.rounds.max(msg.wave);
            if let Body::Bkeys(list) = &msg.body {
                let tree = self.tree.as_mut().expect("computing");
                for p in list {
                    tree.at_mut(p).expect("node").bk = Some(marker());
                }
            }
            let last_tree = match msg.body {
                Body::Tree(_) => {
                    self.pending_trees -= 1;
                    self.pending_trees == 0
                }
                Body::Bkeys(_) => false,
            };
            for i in 0..self.members.len() {
                if i != msg.from {
                    let m = &mut self.members[i];
                    m.clock.join(&msg.clock);
                    m.clock.verifs += 1;
                }
                if let Body::Bkeys(list) = &msg.body {
                    if i == msg.from {
                        for p in list {
                            self.members[i].sent.remove(p);
                        }
                    }
                }
                if last_tree && i == 0 {
                    // Every member merges at the same message; the structure is the same.
                    let (tree, refresher) = merge_trees(std::mem::take(&mut self.trees));
                    self.start(tree, refresher);
                }
                self.advance(i, msg.wave + 1);
            }
        }
        let mut f = self.figures;
        for m in &self.members {
            f.serial_exponentiations = f.serial_exponentiations.max(m.clock.exps);
            f.signatures = f.signatures.max(m.clock.sigs);
            f.verifications = f.verifications.max(m.clock.verifs);
        }
        f
    }
}

/// Case A: leavers pruned from the agreed tree of `base`, or a refresh.
fn subtractive(base: &[String], leavers: &[String]) -> CostFigures {
    let tree =
        agreed_tree(base).prune(&|m| leavers.iter().any(|l| l == m)).expect("somebody stays");
    let view: Vec<String> = base.iter().filter(|m| !leavers.contains(m)).cloned().collect();
    let mut sim = Sim::new(&view);
    let refresher = subtractive_refresher(&tree);
    sim.start(tree, Some(refresher));
    sim.advance_all(1);
    sim.run()
}

/// Case B: groups exchange trees, then merge. `base` is an agreed group (or empty), and
/// `fresh` are new singletons.
fn additive(base: &[String], fresh: &[String]) -> CostFigures {
    let mut view: Vec<String> = base.to_vec();
    view.extend(fresh.iter().cloned());
    let mut sim = Sim::new(&view);
    let mut groups: Vec<(Arc<Node>, bool)> = Vec::new();
    if !base.is_empty() {
        groups.push((Arc::new(agreed_tree(base)), true));
    }
    for (j, f) in fresh.iter().enumerate() {
        sim.work(base.len() + j, 1);
        groups.push((Arc::new(singleton(f)), false));
    }
    if groups.len() == 1 {
        let (tree, _) = groups.pop().expect("one group");
        sim.start(Arc::unwrap_or_clone(tree), None);
        sim.advance_all(1);
        return sim.run();
    }
    sim.pending_trees = groups.len();
    for (tree, _) in &groups {
        let sender = view.iter().position(|m| m == tree.rightmost()).expect("in view");
        let nodes = 2 * tree.members().len() - 1;
        sim.send(sender, Body::Tree(nodes), 1);
    }
    sim.trees = groups;
    sim.run()
}

/// The figures for the event in its canonical configuration (see the module docs).
pub(crate) fn cost(event: EventKind, n: u64, k: u64) -> CostFigures {
    let base = names("m", n);
    match event {
        EventKind::Initial if n == 0 => CostFigures::default(),
        EventKind::Initial => additive(&[], &base),
        EventKind::Join if n >= 1 => additive(&base, &names("new", 1)),
        EventKind::Merge if n >= 1 && k >= 1 => additive(&base, &names("new", k)),
        EventKind::Leave if n >= 2 => subtractive(&base, &base[(n / 2) as usize..][..1]),
        EventKind::Partition if k >= 1 && k < n => {
            let start = ((n - k) / 2) as usize;
            subtractive(&base, &base[start..start + k as usize])
        }
        EventKind::Refresh if n >= 1 => subtractive(&base, &[]),
        _ => CostFigures::default(),
    }
}
