//! Known-answer vectors: a fixed, seeded sequence of membership events per protocol, with the
//! key every member agreed after each one.
//!
//! Format (`plugins/<p>/test_vectors/kat.json`): the protocol name, the Diffie-Hellman group,
//! the harness seed, then one entry per step: the event, the view's members (oldest first),
//! the view id, the key's epoch and the 32-byte key in hex. The vectors pin the protocol's
//! messages, its randomness use and the key derivation: any change to those changes them.
//!
//! Regenerate them after an intended change with
//! `GKA_WRITE_KATS=1 cargo test -p gka-<p> --test kat`, and say why in the commit.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::scenarios::Factory;
use crate::{strs, Harness};

/// The seed of every KAT run.
pub const KAT_SEED: u64 = 0x6b61_7431;

/// A file of vectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KatFile {
    /// The protocol's name.
    pub protocol: String,
    /// The Diffie-Hellman group.
    pub group: String,
    /// The harness seed.
    pub seed: u64,
    /// One entry per event.
    pub steps: Vec<KatStep>,
}

/// The agreed outcome of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KatStep {
    /// What happened.
    pub event: String,
    /// The view's members, oldest first.
    pub members: Vec<String>,
    /// The view id.
    pub view_id: u64,
    /// The key's epoch.
    pub epoch: u64,
    /// The agreed 32-byte key, hex.
    pub key: String,
}

/// Runs the fixed KAT sequence and records every agreed key.
pub fn run(make: Factory<'_>) -> KatFile {
    let protocol = make().descriptor().name;
    let mut h = Harness::new(make(), KAT_SEED);
    let mut steps = Vec::new();
    let mut record = |h: &mut Harness, c, event: &str| {
        let (key, _) = h.settle(c).unwrap_or_else(|e| panic!("KAT step {event}: {e}"));
        steps.push(KatStep {
            event: event.into(),
            members: h.members(c),
            view_id: key.view_id,
            epoch: key.epoch,
            key: hex::encode(*key.key),
        });
    };
    let c = h.create(&strs(&Harness::names("m", 4)));
    record(&mut h, c, "initial agreement of m0000..m0003");
    h.join(c, &["j0"]);
    record(&mut h, c, "join of j0");
    h.leave(c, &["m0001"]);
    record(&mut h, c, "leave of m0001");
    h.join(c, &["k0", "k1"]);
    record(&mut h, c, "merge of k0, k1");
    h.leave(c, &["m0000", "j0"]);
    record(&mut h, c, "partition of m0000, j0");
    h.refresh(c);
    record(&mut h, c, "refresh");
    KatFile { protocol, group: "ffdhe2048".into(), seed: KAT_SEED, steps }
}

/// Replays the vectors in `path` (or writes them when `GKA_WRITE_KATS` is set).
pub fn check(make: Factory<'_>, path: &Path) {
    let got = run(make);
    if std::env::var_os("GKA_WRITE_KATS").is_some() {
        let json = serde_json::to_string_pretty(&got).expect("serializable") + "\n";
        std::fs::write(path, json).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("read {}: {e} (generate with GKA_WRITE_KATS=1)", path.display())
    });
    let want: KatFile = serde_json::from_str(&text).expect("valid KAT JSON");
    assert_eq!(want.protocol, got.protocol);
    assert_eq!(want.steps.len(), got.steps.len(), "number of steps");
    for (w, g) in want.steps.iter().zip(&got.steps) {
        assert_eq!(w, g, "KAT step {:?} differs", w.event);
    }
}
