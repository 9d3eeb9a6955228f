//! Helpers for checking a protocol's key algebra from the members' shares (docs/protocols.md
//! §9.11): the shares are recomputed from the harness's seeds, the expected group secret is
//! computed in closed form, and the key derived from it must be the key the members agreed.

use gka_plugin_api::kdf::{derive_group_key, KeyContext};
use gka_plugin_api::rng::session_rng;
use gka_plugin_api::{Dh, Element, GroupId, GroupKey, Secret};

use crate::Harness;

/// The ffdhe2048 handle the harness uses.
pub fn dh() -> Dh {
    Dh::new(GroupId::Ffdhe2048)
}

/// The `draw`-th (0-based) exponent the session of `id`, the `index`-th session made by a
/// harness seeded with `seed`, draws from its RNG.
pub fn share(seed: u64, id: &str, index: u64, draw: usize) -> Secret {
    let mut rng = session_rng(Harness::member_seed(seed, id, index));
    let dh = dh();
    let mut x = dh.random_exponent(&mut rng);
    for _ in 0..draw {
        x = dh.random_exponent(&mut rng);
    }
    x
}

/// The first shares of members created in this order by a harness seeded with `seed`.
pub fn first_shares(seed: u64, ids: &[String]) -> Vec<Secret> {
    ids.iter().enumerate().map(|(i, id)| share(seed, id, i as u64, 0)).collect()
}

/// Asserts that `agreed` is the key derived from the group secret `secret` for `protocol`.
pub fn assert_key_from_secret(agreed: &GroupKey, secret: &Element, protocol: &str) {
    let bytes = dh().encode(secret);
    let ctx = KeyContext {
        group: Harness::GROUP,
        view_id: agreed.view_id,
        protocol,
        epoch: agreed.epoch,
    };
    let expected = derive_group_key(&bytes, &ctx);
    assert_eq!(*expected, *agreed.key, "the agreed key is not the closed form's");
}

/// A first key agreed by `n` fresh members (`m0`, `m1`, ...) of `protocol` in a harness seeded
/// with `seed`, and each member's first share.
pub fn initial_key(
    protocol: Box<dyn gka_plugin_api::Protocol>,
    seed: u64,
    n: usize,
) -> (GroupKey, Vec<Secret>) {
    let ids = Harness::names("m", n);
    let mut h = Harness::new(protocol, seed);
    let c = h.create(&crate::strs(&ids));
    let (key, _) = h.settle(c).expect("agreement");
    (key, first_shares(seed, &ids))
}
