//! STR's cost model, computed from the chain rules the session follows.
//!
//! Position-dependent events use a stated configuration: "leave" removes the member in the
//! middle of the chain (position ⌊n/2⌋), "partition" removes p consecutive members starting at
//! position ⌊(n − p)/2⌋; joiners are new members whose ids sort after the group's. A leave
//! near the top is cheaper, one near the bottom dearer.

use gka_plugin_api::{CostFigures, EventKind};

use crate::chain::sponsor_for;

const ELEMENT: u64 = 256;
const HEADER: u64 = 13;
const SLOT: u64 = 9 + 3 + ELEMENT + 1;

/// Exponentiations of the sponsor at position `s` of a chain whose top is `top`.
fn sponsor_work(s: u64, top: u64, refresh: bool) -> u64 {
    let r = u64::from(refresh);
    if top == 0 {
        return r + 1;
    }
    // K_s (if s ≥ 1), then for each node above: its blinded key below (not for position 0)
    // and its key.
    r + u64::from(s >= 1) + (s + 1..=top).map(|i| u64::from(i > 1) + 1).sum::<u64>()
}

/// Exponentiations of the member at position j ≠ s.
fn member_work(j: u64, s: u64, top: u64) -> u64 {
    if j < s {
        top - s + 1
    } else {
        top - j + 1
    }
}

struct Run {
    size: u64,
    /// Members of the bottom (largest) group in an exchange.
    bottom: u64,
    sponsor: u64,
    refresh: bool,
    /// Groups exchanging chains in round 1 (0: one agreed chain, no exchange).
    groups: u64,
    /// Members starting afresh, who blind a new share at the view.
    fresh: u64,
}

fn figures(run: Run) -> CostFigures {
    let Run { size, bottom, sponsor, refresh, groups, fresh } = run;
    if size == 0 {
        return CostFigures::default();
    }
    let top = size - 1;
    let ws = sponsor_work(sponsor, top, refresh);
    if size == 1 {
        return CostFigures {
            serial_exponentiations: fresh + ws,
            total_exponentiations: fresh + ws,
            ..Default::default()
        };
    }
    let others: Vec<u64> =
        (0..size).filter(|&j| j != sponsor).map(|j| member_work(j, sponsor, top)).collect();
    let c1 = u64::from(fresh > 0);
    let exchange = groups > 0;
    let update_bytes = HEADER + 2 + ELEMENT + top.saturating_sub(sponsor.max(1)) * (ELEMENT + 3);
    CostFigures {
        rounds: if exchange { 2 } else { 1 },
        unicasts: 0,
        broadcasts: groups + 1,
        serial_exponentiations: c1 + ws + others.iter().copied().max().unwrap_or(0),
        total_exponentiations: fresh + ws + others.iter().sum::<u64>(),
        signatures: if exchange { 2 } else { 1 },
        // The sponsor hears the other groups' chains; a member of the bottom group other than
        // the sponsor also hears its own group's, then the update.
        verifications: if exchange { groups + u64::from(bottom > 1) } else { 1 },
        bytes: if exchange { HEADER * groups + size * SLOT } else { 0 } + update_bytes,
    }
}

/// The figures for the event, with ffdhe2048 elements.
pub(crate) fn cost(event: EventKind, n: u64, k: u64) -> CostFigures {
    // The p members from position d leave: positions below d keep their keys.
    let leave_from = |n: u64, p: u64, d: u64| {
        figures(Run {
            size: n - p,
            bottom: n - p,
            sponsor: sponsor_for(d as usize) as u64,
            refresh: true,
            groups: 0,
            fresh: 0,
        })
    };
    match event {
        EventKind::Initial if n <= 1 => {
            figures(Run { size: 1, bottom: 1, sponsor: 0, refresh: false, groups: 0, fresh: 1 })
        }
        EventKind::Initial => {
            figures(Run { size: n, bottom: 1, sponsor: 0, refresh: false, groups: n, fresh: n })
        }
        EventKind::Join => figures(Run {
            size: n + 1,
            bottom: n,
            sponsor: n.max(1) - 1,
            refresh: true,
            groups: 2,
            fresh: 1,
        }),
        EventKind::Merge => figures(Run {
            size: n + k,
            bottom: n,
            sponsor: n.max(1) - 1,
            refresh: true,
            groups: k + 1,
            fresh: k,
        }),
        EventKind::Leave if n >= 1 => leave_from(n, 1, n / 2),
        EventKind::Partition if k < n => leave_from(n, k, (n - k) / 2),
        EventKind::Refresh => figures(Run {
            size: n,
            bottom: n,
            sponsor: n.max(1) - 1,
            refresh: true,
            groups: 0,
            fresh: 0,
        }),
        _ => CostFigures::default(),
    }
}
