//! BD's key is g^(r_1 r_2 + r_2 r_3 + … + r_n r_1) (docs/protocols.md §2.4, §9.11), checked from
//! the shares.

use gka_plugin_api::Secret;
use gka_tests::algebra::{assert_key_from_secret, dh, initial_key, share};
use gka_tests::{strs, Harness};
use num_bigint_dig::BigUint;

fn ring_exponent(r: &[Secret]) -> Secret {
    let q = dh().group().q().clone();
    let n = r.len();
    let sum =
        (0..n).fold(BigUint::from(0u32), |acc, i| acc + r[i].value() * r[(i + 1) % n].value());
    Secret::from_biguint(sum % q)
}

#[test]
fn initial_key_is_the_ring_sum() {
    for n in [1, 2, 3, 5] {
        let (key, shares) = initial_key(Box::new(gka_bd::Bd), 7, n);
        let expected = dh().blind(&ring_exponent(&shares));
        assert_key_from_secret(&key, &expected, "bd");
    }
}

#[test]
fn after_a_join_every_member_contributes_a_fresh_share() {
    let ids = Harness::names("m", 4);
    let mut h = Harness::new(Box::new(gka_bd::Bd), 8);
    let c = h.create(&strs(&ids));
    h.settle(c).expect("initial");
    h.join(c, &["new"]);
    let (key, _) = h.settle(c).expect("join");
    // The old members draw their second share, the joiner (the fifth session) its first.
    let mut shares: Vec<Secret> =
        ids.iter().enumerate().map(|(i, id)| share(8, id, i as u64, 1)).collect();
    shares.push(share(8, "new", 4, 0));
    assert_key_from_secret(&key, &dh().blind(&ring_exponent(&shares)), "bd");
}
