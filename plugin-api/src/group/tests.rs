//! Tests of the group arithmetic, validation and encoding.
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;

#[test]
fn generator_has_order_q_in_every_group() {
    for id in GroupId::ALL {
        let g = id.params();
        assert_eq!(g.p().bits(), usize::from(id.code()));
        assert!(g.g().modpow(g.q(), g.p()).is_one(), "{id}: g^q != 1");
        assert_eq!(g.byte_len() * 8, usize::from(id.code()));
    }
}

#[test]
fn the_test_only_group_is_a_safe_prime_group_that_nothing_external_selects() {
    let id = GroupId::TestOnly64;
    let g = id.params();
    assert_eq!(g.p().bits(), 64);
    assert_eq!(g.byte_len(), GroupId::Ffdhe2048.params().byte_len());
    assert!(num_bigint_dig::prime::probably_prime(g.p(), 40));
    assert!(num_bigint_dig::prime::probably_prime(g.q(), 40));
    assert!(g.g().modpow(g.q(), g.p()).is_one());
    assert!(!GroupId::ALL.contains(&id));
    assert_eq!(GroupId::from_name(id.name()), None);
    assert_eq!(GroupId::from_code(id.code()), Some(id));
    // Variant index 3 is the test-only group: no serialized form reaches it.
    assert_eq!(postcard::from_bytes::<GroupId>(&[2]).ok(), Some(GroupId::Ffdhe4096));
    assert!(postcard::from_bytes::<GroupId>(&[3]).is_err(), "deserialized the test group");
    let dh = Dh::new(id);
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (x, y) = (dh.random_exponent(&mut rng), dh.random_exponent(&mut rng));
    let shared = dh.pow(&dh.blind(&x), &y);
    assert_eq!(shared, dh.pow(&dh.blind(&y), &x));
    assert_eq!(dh.decode(&dh.encode(&shared)).as_ref(), Ok(&shared));
}

#[test]
fn fixed_base_matches_general_exponentiation() {
    let dh = Dh::new(GroupId::Ffdhe2048);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for _ in 0..8 {
        let x = dh.random_exponent(&mut rng);
        let fixed = dh.blind(&x);
        let general = dh.group().g().modpow(x.value(), dh.group().p());
        assert_eq!(fixed.value(), &general);
    }
    // Exponents with zero bytes, a single byte and the top byte only.
    for x in [1u64, 255, 256, 1 << 40] {
        let x = Secret(BigUint::from(x));
        assert_eq!(dh.blind(&x).value(), &dh.group().g().modpow(x.value(), dh.group().p()));
    }
    assert_eq!(dh.exponentiations(), 12);
}

#[test]
fn the_chosen_arithmetic_agrees_with_the_portable_one() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    for id in GroupId::ALL {
        let dh = Dh::new(id);
        for _ in 0..4 {
            let base = dh.blind(&dh.random_exponent(&mut rng));
            let x = dh.random_exponent(&mut rng);
            assert_eq!(dh.pow(&base, &x), dh.pow_portable(&base, &x), "{id}");
        }
        // A long exponent (an inverse modulo q) takes the full width of q.
        let long = Secret(dh.group().q() - 2u32);
        let base = dh.generator();
        assert_eq!(dh.pow(&base, &long), dh.pow_portable(&base, &long), "{id}");
    }
}

#[test]
fn validation_rejects_degenerate_and_non_subgroup_elements() {
    for id in GroupId::ALL {
        let grp = id.params();
        let p = grp.p().clone();
        let one = BigUint::one();
        assert_eq!(grp.validate(&BigUint::zero()), Err(ElementError::OutOfRange));
        assert_eq!(grp.validate(&one), Err(ElementError::OutOfRange));
        assert_eq!(grp.validate(&(&p - &one)), Err(ElementError::OutOfRange));
        assert_eq!(grp.validate(&p), Err(ElementError::OutOfRange));
        assert_eq!(grp.validate(&(&p + &one)), Err(ElementError::OutOfRange));
        // g = 2 generates the subgroup; for these primes p ≡ 7 (mod 8), so −1 is a
        // non-residue and p − 2 = −2 is outside the subgroup.
        assert_eq!(grp.validate(&BigUint::from(2u32)), Ok(()));
        assert_eq!(grp.validate(&(&p - BigUint::from(2u32))), Err(ElementError::NotInSubgroup));
        // Cross-check the Legendre test against the definition y^q = 1 on a few values.
        for y in 3u32..40 {
            let y = BigUint::from(y);
            let in_subgroup = y.modpow(grp.q(), &p).is_one();
            assert_eq!(grp.validate(&y).is_ok(), in_subgroup, "y = {y}");
        }
    }
}

#[test]
fn decoding_requires_the_fixed_length() {
    let grp = GroupId::Ffdhe2048.params();
    let mut two = vec![0u8; grp.byte_len()];
    two[grp.byte_len() - 1] = 2;
    assert!(grp.decode_element(&two).is_ok());
    assert_eq!(
        grp.decode_element(&two[1..]),
        Err(ElementError::BadLength { got: 255, expected: 256 })
    );
}

#[test]
fn the_test_only_group_computes_what_the_definition_gives() {
    let dh = Dh::new(GroupId::TestOnly64);
    let (p, q) = (dh.group().p().clone(), dh.group().q().clone());
    let mut rng = ChaCha20Rng::seed_from_u64(64);
    for _ in 0..20 {
        let (x, y) = (dh.random_exponent(&mut rng), dh.random_exponent(&mut rng));
        let gx = dh.blind(&x);
        assert_eq!(gx.value(), &dh.group().g().modpow(x.value(), &p));
        assert_eq!(dh.pow(&gx, &y).value(), &gx.value().modpow(y.value(), &p));
        assert_eq!(dh.pow(&gx, &y), dh.pow(&dh.blind(&y), &x));
        assert!(dh.group().validate(gx.value()).is_ok());
    }
    // A long exponent, and one that is a multiple of q.
    let g = dh.generator();
    assert_eq!(dh.pow(&g, &Secret(&q - 2u32)).value(), &g.value().modpow(&(&q - 2u32), &p));
    assert!(dh.pow(&g, &Secret(q.clone())).value().is_one());
    assert_eq!(dh.exponentiations(), 102);
}

#[test]
fn a_held_element_is_range_checked_on_receipt_and_validated_once_on_first_use() {
    for id in GroupId::ALL {
        let dh = Dh::new(id);
        let len = dh.group().byte_len();
        let p = dh.group().p().clone();
        let encode = |y: &BigUint| {
            let raw = y.to_bytes_be();
            let mut out = vec![0u8; len - raw.len()];
            out.extend_from_slice(&raw);
            out
        };
        assert_eq!(dh.receive(&[2]).err(), Some(ElementError::BadLength { got: 1, expected: len }));
        for y in [BigUint::zero(), BigUint::one(), &p - 1u32, p.clone()] {
            assert_eq!(dh.receive(&encode(&y)).err(), Some(ElementError::OutOfRange), "{id}");
        }
        // Outside the subgroup: received, but refused at its first use, every time.
        let outside = dh.receive(&encode(&(&p - 2u32))).expect("in range");
        assert!(!outside.is_checked());
        assert_eq!(dh.check(&outside).err(), Some(ElementError::NotInSubgroup));
        assert_eq!(dh.check(&outside).err(), Some(ElementError::NotInSubgroup));
        assert!(!outside.is_checked());
        // A valid element: checked once, then remembered; equal to the element it encodes.
        let element = dh.blind(&Secret(BigUint::from(12345u32)));
        let held = dh.receive(&dh.encode(&element)).expect("in range");
        assert_eq!(held, Held::from(element.clone()));
        assert_eq!(dh.check(&held), Ok(&element));
        assert!(held.is_checked());
        assert_eq!(dh.encode_held(&held), dh.encode(&element));
        assert!(Held::from(element).is_checked());
    }
}

#[test]
fn encodes_tells_exactly_which_bytes_encode_a_held_element() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for id in GroupId::ALL {
        let dh = Dh::new(id);
        for _ in 0..8 {
            let held = Held::from(dh.blind(&dh.random_exponent(&mut rng)));
            let bytes = dh.encode_held(&held);
            assert!(dh.encodes(&bytes, &held), "{id}");
            assert!(!dh.encodes(&bytes[1..], &held), "{id}: one byte short");
            let mut longer = vec![0];
            longer.extend_from_slice(&bytes);
            assert!(!dh.encodes(&longer, &held), "{id}: one byte long");
            for at in [0, bytes.len() / 2, bytes.len() - 1] {
                let mut flipped = bytes.clone();
                flipped[at] ^= 0x10;
                assert!(!dh.encodes(&flipped, &held), "{id}: byte {at} changed");
            }
        }
        // A small element: every leading byte is zero.
        let two = Held::from(Element(BigUint::from(2u32)));
        let mut bytes = vec![0u8; dh.group().byte_len()];
        *bytes.last_mut().expect("not empty") = 2;
        assert!(dh.encodes(&bytes, &two));
        bytes[0] = 1;
        assert!(!dh.encodes(&bytes, &two));
    }
    assert!(big_endian_equals(&[0, 0], &BigUint::zero()));
    assert!(!big_endian_equals(&[0, 1], &BigUint::zero()));
    assert!(!big_endian_equals(&[1, 0], &BigUint::from(1u32)));
    assert!(big_endian_equals(&[1; 9], &BigUint::from_bytes_be(&[1; 9])));
}

#[test]
fn inverse_exponent_factors_a_share_out() {
    let dh = Dh::new(GroupId::Ffdhe2048);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (a, b) = (dh.random_exponent(&mut rng), dh.random_exponent(&mut rng));
    let gab = dh.pow(&dh.blind(&a), &b);
    let back = dh.pow(&gab, &dh.invert_exponent(&b));
    assert_eq!(back, dh.blind(&a));
}

#[test]
fn constant_time_products_and_inverses_match_the_plain_ones() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for id in GroupId::ALL {
        let dh = Dh::new(id);
        let (p, q) = (dh.group().p(), dh.group().q());
        for _ in 0..3 {
            let (x, y) = (dh.random_exponent(&mut rng), dh.random_exponent(&mut rng));
            let inverse = x.value().mod_inverse(q).and_then(|i| i.to_biguint()).unwrap();
            assert_eq!(dh.invert_exponent(&x).value(), &inverse, "{id}");
            // An inverse is itself full length: inverting it again gives x back.
            assert_eq!(dh.invert_exponent(&dh.invert_exponent(&x)).value(), x.value());
            assert_eq!(dh.mul_exponents(&x, &y).value(), &((x.value() * y.value()) % q));
            let (a, b) = (dh.blind(&x), dh.blind(&y));
            assert_eq!(dh.mul(&a, &b).value(), &((a.value() * b.value()) % p), "{id}");
        }
    }
}
