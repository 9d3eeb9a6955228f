//! GDH's cost model. "Leave" and "partition" assume the controller (the newest member) stays;
//! when it leaves, its successor also pays n − p − 1 full-length exponentiations.

use gka_plugin_api::{CostFigures, EventKind};

const ELEMENT: u64 = 256;
/// Format byte, view id, epoch, enum tag.
const HEADER: u64 = 13;
/// A member id (about 8 bytes) with its length prefix.
const NAME: u64 = 9;

/// m members merge into a group of n (n ≥ 1).
fn merge(n: u64, m: u64) -> CostFigures {
    let size = n + m;
    let list = 1 + size * NAME;
    CostFigures {
        rounds: m + 3,
        unicasts: m + (size - 1),
        broadcasts: 2,
        serial_exponentiations: n + 2 * m + 1,
        total_exponentiations: 3 * n + 4 * m - 2,
        signatures: m + 3,
        verifications: n + 2 * m + 1,
        bytes: m * (HEADER + list + ELEMENT + 3)
            + (HEADER + list + ELEMENT + 3)
            + (size - 1) * (HEADER + ELEMENT + 3)
            + (HEADER + 1 + (size - 1) * (NAME + ELEMENT + 3)),
    }
}

/// The controller refreshes its share for a group of `size`.
fn controller_refresh(size: u64) -> CostFigures {
    if size <= 1 {
        return CostFigures {
            serial_exponentiations: 1,
            total_exponentiations: 1,
            ..Default::default()
        };
    }
    CostFigures {
        rounds: 1,
        broadcasts: 1,
        serial_exponentiations: size,
        total_exponentiations: 2 * size - 1,
        signatures: 1,
        verifications: 1,
        bytes: HEADER + 1 + (size - 1) * (NAME + ELEMENT + 3),
        ..Default::default()
    }
}

/// The figures for the event, with ffdhe2048 elements.
pub(crate) fn cost(event: EventKind, n: u64, k: u64) -> CostFigures {
    match event {
        EventKind::Initial if n <= 1 => controller_refresh(1),
        EventKind::Initial => merge(1, n - 1),
        EventKind::Join => merge(n.max(1), 1),
        EventKind::Merge => merge(n.max(1), k),
        EventKind::Leave => controller_refresh(n.saturating_sub(1)),
        EventKind::Partition => controller_refresh(n.saturating_sub(k)),
        _ => controller_refresh(n),
    }
}
