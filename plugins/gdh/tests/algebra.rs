//! GDH's key is g^(r_1 r_2 ⋯ r_n) (docs/protocols.md §2.1, §9.11), checked from the shares.

use gka_tests::algebra::{assert_key_from_secret, dh, initial_key};

#[test]
fn initial_key_is_the_product_of_the_shares() {
    for n in [1, 2, 3, 5] {
        let (key, shares) = initial_key(Box::new(gka_gdh::Gdh), 9, n);
        let dh = dh();
        let product =
            shares[1..].iter().fold(shares[0].clone(), |acc, r| dh.mul_exponents(&acc, r));
        assert_key_from_secret(&key, &dh.blind(&product), "gdh");
    }
}
