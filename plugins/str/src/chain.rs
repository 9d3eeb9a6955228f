//! The pure rules of STR's chain: merge order and sponsor choice (docs/protocols.md §9.6), shared
//! by the session and the cost model.

/// The order in which chains are stacked, bottom first: the largest chain at the bottom, then
/// the others by decreasing size; ties by the id of the chain's bottom member.
pub(crate) fn merge_order(chains: &[Vec<String>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..chains.len()).collect();
    order.sort_by(|&a, &b| {
        chains[b]
            .len()
            .cmp(&chains[a].len())
            .then_with(|| chains[a].first().cmp(&chains[b].first()))
    });
    order
}

/// The sponsor when the bottom `valid` positions kept their keys: the member directly below
/// the lowest changed node (the bottom member if only it is unchanged).
pub(crate) fn sponsor_for(valid: usize) -> usize {
    valid.max(1) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn largest_chain_goes_to_the_bottom_and_ties_break_by_bottom_member() {
        let chains =
            vec![names(&["c"]), names(&["x", "y", "z"]), names(&["a"]), names(&["b", "q"])];
        assert_eq!(merge_order(&chains), vec![1, 3, 2, 0]);
    }

    #[test]
    fn sponsor_is_directly_below_the_lowest_change() {
        assert_eq!(sponsor_for(1), 0);
        assert_eq!(sponsor_for(4), 3);
    }
}
