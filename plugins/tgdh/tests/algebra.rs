//! TGDH's key is the nested tree form K = g^(x_left · x_right), x = H(K) of inner nodes and the
//! share of leaves (docs/protocols.md §2.2, §2.6, §9.2, §9.11), checked from the shares for the
//! trees the insertion rule builds: ((0,1),2), ((0,1),(2,3)) and (((0,1),(2,3)),4).

use gka_plugin_api::{Dh, Element, Secret};
use gka_tests::algebra::{assert_key_from_secret, dh, initial_key};

const LABEL: &str = "gka tgdh node key";

/// A node's key from its children's exponents.
fn node(dh: &Dh, left: &Secret, right: &Secret) -> Element {
    dh.pow(&dh.blind(left), right)
}

fn x(dh: &Dh, k: &Element) -> Secret {
    dh.element_to_exponent(LABEL, k)
}

#[test]
fn initial_key_is_the_nested_tree() {
    let dh = dh();
    for n in [1, 3, 4, 5] {
        let (key, shares) = initial_key(Box::new(gka_tgdh::Tgdh), 11, n);
        let r = shares;
        let expected = match n {
            1 => node(&dh, &r[0], &r[0]),
            3 => node(&dh, &x(&dh, &node(&dh, &r[0], &r[1])), &r[2]),
            4 => node(&dh, &x(&dh, &node(&dh, &r[0], &r[1])), &x(&dh, &node(&dh, &r[2], &r[3]))),
            5 => {
                let left =
                    node(&dh, &x(&dh, &node(&dh, &r[0], &r[1])), &x(&dh, &node(&dh, &r[2], &r[3])));
                node(&dh, &x(&dh, &left), &r[4])
            }
            _ => unreachable!(),
        };
        assert_key_from_secret(&key, &expected, "tgdh");
    }
}
