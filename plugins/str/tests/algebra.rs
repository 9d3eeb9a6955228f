//! STR's key is the nested K_n = g^(r_n · H(g^(r_(n-1) · H(… g^(r_1 r_0))))) (docs/protocols.md
//! §2.3, §2.6, §9.2, §9.11), checked from the shares.

use gka_plugin_api::Secret;
use gka_tests::algebra::{assert_key_from_secret, dh, initial_key};

const LABEL: &str = "gka str node key";

#[test]
fn initial_key_is_the_nested_chain() {
    for n in [1, 2, 3, 5] {
        let (key, shares) = initial_key(Box::new(gka_str::Str), 10, n);
        let dh = dh();
        let r = shares;
        let expected = if n == 1 {
            dh.pow(&dh.blind(&r[0]), &r[0])
        } else {
            // The chain is in id order, m0000 at the bottom.
            let mut x: Secret = r[0].clone();
            let mut k = dh.blind(&r[0]);
            for ri in &r[1..] {
                k = dh.pow(&dh.blind(ri), &x);
                x = dh.element_to_exponent(LABEL, &k);
            }
            k
        };
        assert_key_from_secret(&key, &expected, "str");
    }
}
