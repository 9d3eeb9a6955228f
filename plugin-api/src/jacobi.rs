//! The Jacobi symbol on 64-bit limbs, for the subgroup test of every received element. The
//! element is public: this is variable-time on purpose.

use num_bigint_dig::BigUint;

use crate::monty::{limbs_for, to_limbs};

/// The Jacobi symbol (a | n) for odd n > a ≥ 0, by the binary algorithm on 64-bit limbs in
/// place (no allocation per step). Used for the subgroup test of every received element, so
/// it is on the hot path of every protocol: a `BigInt`-based Jacobi with a division per step
/// costs several times more.
pub(crate) fn jacobi(a: &BigUint, n: &BigUint) -> i8 {
    let limbs = limbs_for(n).max(1);
    let mut a = to_limbs(a, limbs);
    let mut n = to_limbs(n, limbs);
    let mut t: i8 = 1;
    loop {
        if is_zero(&a) {
            return if is_one(&n) { t } else { 0 };
        }
        let tz = trailing_zeros(&a);
        if tz > 0 {
            shift_right(&mut a, tz);
            // (2 | n) = −1 exactly when n ≡ 3, 5 (mod 8); it applies tz times.
            let n8 = n[0] & 7;
            if tz % 2 == 1 && (n8 == 3 || n8 == 5) {
                t = -t;
            }
        }
        if less_than(&a, &n) {
            std::mem::swap(&mut a, &mut n);
            // Quadratic reciprocity for odd a, n.
            if a[0] & 3 == 3 && n[0] & 3 == 3 {
                t = -t;
            }
        }
        // a ≥ n, both odd: a − n is even and (a − n | n) = (a | n).
        sub_in_place(&mut a, &n);
    }
}

fn less_than(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

fn is_zero(x: &[u64]) -> bool {
    x.iter().all(|&l| l == 0)
}

fn is_one(x: &[u64]) -> bool {
    x[0] == 1 && x[1..].iter().all(|&l| l == 0)
}

fn trailing_zeros(x: &[u64]) -> u32 {
    let mut tz = 0;
    for &l in x {
        if l == 0 {
            tz += 64;
        } else {
            return tz + l.trailing_zeros();
        }
    }
    tz
}

fn shift_right(x: &mut [u64], bits: u32) {
    let words = (bits / 64) as usize;
    let bits = bits % 64;
    let len = x.len();
    for i in 0..len {
        let lo = x.get(i + words).copied().unwrap_or(0);
        let hi = x.get(i + words + 1).copied().unwrap_or(0);
        x[i] = if bits == 0 { lo } else { (lo >> bits) | (hi << (64 - bits)) };
    }
}

fn sub_in_place(a: &mut [u64], b: &[u64]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(borrow);
        *x = d2;
        borrow = u64::from(b1 || b2);
    }
}

#[cfg(test)]
mod jacobi_tests {
    use num_bigint_dig::{BigInt, RandBigInt};
    use rand_core::SeedableRng;

    use super::*;
    use crate::group::GroupId;

    #[test]
    fn matches_the_reference_jacobi_on_random_and_edge_values() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        for id in GroupId::ALL {
            let p = id.params().p();
            let mut values: Vec<BigUint> = (0..200).map(|_| rng.gen_biguint_below(p)).collect();
            values.extend([0u32, 1, 2, 3, 4].map(BigUint::from));
            values.push(p - 1u32);
            values.push(p - 2u32);
            for a in values {
                let want = num_bigint_dig::algorithms::jacobi(
                    &BigInt::from(a.clone()),
                    &BigInt::from(p.clone()),
                );
                assert_eq!(isize::from(jacobi(&a, p)), want, "a = {a}");
            }
        }
        // Small composite moduli too.
        for n in (3u32..200).step_by(2) {
            for a in 0..n {
                let want = num_bigint_dig::algorithms::jacobi(&BigInt::from(a), &BigInt::from(n));
                assert_eq!(isize::from(jacobi(&BigUint::from(a), &BigUint::from(n))), want);
            }
        }
    }
}
