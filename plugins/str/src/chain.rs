//! The pure rules of STR's chain: merge order and sponsor choice (docs/protocols.md §9.6), shared
//! by the session and the cost model.

/// The order in which chains are stacked, bottom first: the largest chain at the bottom, then
/// the others by decreasing size; ties by the id of the chain's bottom member. Each chain is
/// given as its length and its bottom member.
pub(crate) fn merge_order(chains: &[(usize, &str)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..chains.len()).collect();
    order
        .sort_by(|&a, &b| chains[b].0.cmp(&chains[a].0).then_with(|| chains[a].1.cmp(chains[b].1)));
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

    #[test]
    fn largest_chain_goes_to_the_bottom_and_ties_break_by_bottom_member() {
        let chains = [(1, "c"), (3, "x"), (1, "a"), (2, "b")];
        assert_eq!(merge_order(&chains), vec![1, 3, 2, 0]);
    }

    #[test]
    fn sponsor_is_directly_below_the_lowest_change() {
        assert_eq!(sponsor_for(1), 0);
        assert_eq!(sponsor_for(4), 3);
    }
}
