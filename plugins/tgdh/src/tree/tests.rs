//! Tests of the tree rules, the wire form and the sharing of public nodes.
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
    let ok: Result<Node, &str> = from_wire(&tall(MAX_TREE_HEIGHT + 1), &|_| Err("x"), &|_| "bad");
    assert_eq!(ok.expect("height 64 is accepted").height(), MAX_TREE_HEIGHT);
    let too_tall: Result<Node, &str> = from_wire(&tall(MAX_TREE_HEIGHT + 2), &|_| Err("x"), &|m| {
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

fn keyed(m: &str) -> Node {
    let dh = gka_plugin_api::Dh::new(gka_plugin_api::GroupId::Ffdhe2048);
    Node::leaf(m.into(), Some(dh.generator().into()), None)
}

fn children(node: &Node) -> (&Arc<Node>, &Arc<Node>) {
    match &node.kind {
        Kind::Inner(l, r) => (l, r),
        Kind::Leaf(_) => panic!("a leaf has no children"),
    }
}

#[test]
fn members_decoding_one_tree_share_its_public_nodes_and_copy_on_write() {
    let mut t = keyed("a");
    for m in ["b", "c", "d", "e"] {
        t.insert(share(keyed(m)));
    }
    let dh = gka_plugin_api::Dh::new(gka_plugin_api::GroupId::Ffdhe2048);
    let wire = to_wire(&t, &|h| dh.encode_held(h));
    let decode = || -> Node {
        from_wire(&wire, &|b| dh.receive(b).map_err(|_| "bad"), &|_| "malformed").expect("tree")
    };
    let (mut first, second) = (decode(), decode());
    let ((l1, r1), (l2, r2)) = (children(&first), children(&second));
    assert!(Arc::ptr_eq(l1, l2) && Arc::ptr_eq(r1, r2), "one copy of the public nodes");

    // A private exponent stays with its member: the path to it is copied, the rest shared.
    let path = first.path_to("a").expect("a's leaf");
    first.at_mut(&path).expect("leaf").x = Some(Box::new(Secret::from_biguint(7u32.into())));
    assert!(first.reshare(), "a private exponent lies below the root");
    assert!(second.at(&path).expect("leaf").x.is_none(), "the other member's copy is unchanged");
    assert!(Arc::ptr_eq(children(&first).1, children(&second).1), "the other side is shared");

    // A public change made by two members is shared again once interned.
    let mut third = decode();
    let e = first.path_to("e").expect("e's leaf");
    assert_eq!(e.first(), Some(&true), "e is on the other side from a");
    for tree in [&mut third, &mut first] {
        tree.at_mut(&e).expect("leaf").bk = None;
        tree.reshare();
    }
    assert!(Arc::ptr_eq(children(&first).1, children(&third).1));
    assert!(!Arc::ptr_eq(children(&first).1, children(&second).1));
    assert!(second.at(&e).expect("leaf").bk.is_some(), "the untouched copy keeps its key");
}

#[test]
fn pruning_copies_only_the_paths_to_the_leavers() {
    let mut t = keyed("a");
    for m in ["b", "c", "d", "e", "f", "g", "h"] {
        t.insert(share(keyed(m)));
    }
    t.at_mut(&[true]).expect("right half").bk = keyed("x").bk;
    t.reshare();
    let before = t.clone();
    let pruned = t.prune(&|m| m == "h").expect("members left");
    assert_eq!(pruned.members(), ["a", "b", "c", "d", "e", "f", "g"]);
    // h was under the right half: the left half is the very same subtree.
    assert!(Arc::ptr_eq(children(&before).0, children(&pruned).0));
    assert!(children(&pruned).1.bk.is_none(), "the leaver's ancestors lose their keys");
    assert!(children(&before).1.bk.is_some(), "the tree it was pruned from keeps them");
}

#[test]
fn members_merging_the_same_trees_share_the_merged_nodes() {
    let trees = || -> Vec<(Arc<Node>, bool)> {
        ["a", "b", "c", "d", "e", "f"].iter().map(|m| (share(keyed(m)), false)).collect()
    };
    let (first, _) = merge_trees(trees());
    let (second, _) = merge_trees(trees());
    assert_eq!(first.members(), second.members());
    let ((l1, r1), (l2, r2)) = (children(&first), children(&second));
    assert!(Arc::ptr_eq(l1, l2) && Arc::ptr_eq(r1, r2), "the merge's inner nodes are interned");
    // A member's private leaf keeps its path private, and the rest shared.
    let mut mine = trees();
    mine[0].0 = Arc::new(Node::leaf(
        "a".into(),
        keyed("a").bk,
        Some(Box::new(Secret::from_biguint(5u32.into()))),
    ));
    let (private, _) = merge_trees(mine);
    let a = private.path_to("a").expect("a's leaf");
    assert!(private.at(&a).expect("leaf").x.is_some());
    let other_side = if a[0] { children(&private).0 } else { children(&private).1 };
    let same_side = if a[0] { l1 } else { r1 };
    assert!(Arc::ptr_eq(other_side, same_side), "the side without a is shared");
}

#[test]
fn one_walk_finds_the_leaves_and_counts_the_missing_keys() {
    let mut t = keyed("a");
    for m in ["b", "c", "d", "e"] {
        t.insert(share(keyed(m)));
    }
    let mut leaves = Vec::new();
    let missing =
        t.walk_leaves_counting_missing(&mut |p, m| leaves.push((p.to_vec(), m.to_owned())));
    assert_eq!(missing, t.missing().len());
    assert_eq!(missing, 3, "the inserts left three non-root inner nodes without keys");
    let members: Vec<&str> = leaves.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(members, t.members());
    for (path, m) in &leaves {
        assert_eq!(t.path_to(m).as_ref(), Some(path));
    }
}
