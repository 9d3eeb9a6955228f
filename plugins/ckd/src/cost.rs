//! CKD's cost model (controller = oldest member; "leave" and "partition" assume the controller
//! stays, as it does unless the oldest member is among the leavers).

use gka_plugin_api::{CostFigures, EventKind};

const ELEMENT: u64 = 256;
/// Format byte, view id, epoch, enum tag, length prefixes.
const HEADER: u64 = 14;
/// Per wrapped entry: member id (about 8 bytes), nonce, 32-byte secret, 16-byte tag.
const WRAPPED_ENTRY: u64 = 1 + 8 + 1 + 12 + 32 + 16;

fn key_message(receivers: u64) -> u64 {
    HEADER + ELEMENT + 2 + receivers * WRAPPED_ENTRY
}

/// m members (with no pairwise key yet) send shares, then the controller distributes to the
/// `size - 1` others. `fresh_a`: the controller also draws its share.
fn collect_and_distribute(size: u64, m: u64, fresh_a: bool) -> CostFigures {
    let a = u64::from(fresh_a);
    CostFigures {
        rounds: 2,
        unicasts: m,
        broadcasts: 1,
        serial_exponentiations: m + 2,
        total_exponentiations: 3 * m + a,
        signatures: 2,
        verifications: m + 1,
        bytes: m * (HEADER + ELEMENT) + key_message(size - 1),
    }
}

fn distribute_only(size: u64) -> CostFigures {
    if size <= 1 {
        return CostFigures::default();
    }
    CostFigures {
        rounds: 1,
        broadcasts: 1,
        signatures: 1,
        verifications: 1,
        bytes: key_message(size - 1),
        ..CostFigures::default()
    }
}

/// The figures for the event, with ffdhe2048 elements.
pub(crate) fn cost(event: EventKind, n: u64, k: u64) -> CostFigures {
    match event {
        EventKind::Initial if n <= 1 => CostFigures::default(),
        EventKind::Initial => collect_and_distribute(n, n - 1, true),
        EventKind::Join => collect_and_distribute(n + 1, 1, n <= 1),
        EventKind::Merge => collect_and_distribute(n + k, k, n <= 1),
        EventKind::Leave => distribute_only(n.saturating_sub(1)),
        EventKind::Partition => distribute_only(n.saturating_sub(k)),
        _ => distribute_only(n),
    }
}
