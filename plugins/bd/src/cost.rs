//! BD's cost model. Every event restarts the protocol in the new view, so the cost depends only
//! on the group size after the event.

use gka_plugin_api::{CostFigures, EventKind};

/// Bytes of one sealed BD message with `elem` bytes of element (format byte, varint view id and
/// epoch of up to 5 bytes each, enum tag, length prefix).
fn message_bytes(elem: u64) -> u64 {
    1 + 5 + 5 + 1 + 2 + elem
}

/// The figures for the event, with ffdhe2048 elements (256 bytes).
pub(crate) fn cost(event: EventKind, n: u64, k: u64) -> CostFigures {
    let size = match event {
        EventKind::Initial | EventKind::Refresh => n,
        EventKind::Join => n + 1,
        EventKind::Leave => n.saturating_sub(1),
        EventKind::Merge => n + k,
        EventKind::Partition => n.saturating_sub(k),
        _ => n,
    };
    let per_message = message_bytes(256);
    match size {
        0 => CostFigures::default(),
        1 => CostFigures {
            serial_exponentiations: 2,
            total_exponentiations: 2,
            ..Default::default()
        },
        2 => CostFigures {
            rounds: 1,
            broadcasts: 2,
            serial_exponentiations: 2,
            total_exponentiations: 4,
            signatures: 1,
            verifications: 1,
            bytes: 2 * per_message,
            ..Default::default()
        },
        s => CostFigures {
            rounds: 2,
            unicasts: 0,
            broadcasts: 2 * s,
            serial_exponentiations: 3,
            total_exponentiations: 3 * s,
            signatures: 2,
            verifications: 2 * (s - 1),
            bytes: 2 * s * per_message,
        },
    }
}
