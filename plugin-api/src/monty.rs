//! Montgomery multiplication over 64-bit limbs (CIOS), used only by the fixed-base table: a
//! table lookup needs a multiplication modulo p, and `BigUint`'s `(a * b) % p` pays a long
//! division each time, which would eat most of the table's advantage.

use num_bigint_dig::BigUint;

/// Montgomery arithmetic modulo an odd n with R = 2^(64·limbs).
#[derive(Debug)]
pub(crate) struct Monty {
    n: Vec<u64>,
    /// −n⁻¹ mod 2^64.
    n0_inv: u64,
    modulus: BigUint,
}

impl Monty {
    /// Montgomery arithmetic modulo the odd `modulus`.
    pub(crate) fn new(modulus: &BigUint) -> Self {
        let n = to_limbs(modulus, limbs_for(modulus));
        // Newton iteration for n0⁻¹ mod 2^64: each step doubles the correct low bits.
        let n0 = n[0];
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(inv)));
        }
        Self { n, n0_inv: inv.wrapping_neg(), modulus: modulus.clone() }
    }

    fn limbs(&self) -> usize {
        self.n.len()
    }

    /// x·R mod n, for x < n.
    pub(crate) fn enter_mont(&self, x: &BigUint) -> Vec<u64> {
        let shifted = (x << (64 * self.limbs())) % &self.modulus;
        to_limbs(&shifted, self.limbs())
    }

    /// a·R⁻¹ mod n as an integer.
    pub(crate) fn leave_mont(&self, a: &[u64]) -> BigUint {
        let mut one = vec![0u64; self.limbs()];
        one[0] = 1;
        from_limbs(&self.mul(a, &one))
    }

    /// a·b·R⁻¹ mod n (coarsely integrated operand scanning).
    pub(crate) fn mul(&self, a: &[u64], b: &[u64]) -> Vec<u64> {
        let s = self.limbs();
        let n = &self.n;
        let mut t = vec![0u64; s + 2];
        for &bi in b.iter().take(s) {
            let mut carry: u64 = 0;
            for j in 0..s {
                let v = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + u128::from(carry);
                t[j] = v as u64;
                carry = (v >> 64) as u64;
            }
            let v = u128::from(t[s]) + u128::from(carry);
            t[s] = v as u64;
            t[s + 1] = (v >> 64) as u64;

            let m = t[0].wrapping_mul(self.n0_inv);
            let v = u128::from(t[0]) + u128::from(m) * u128::from(n[0]);
            let mut carry = (v >> 64) as u64;
            for j in 1..s {
                let v = u128::from(t[j]) + u128::from(m) * u128::from(n[j]) + u128::from(carry);
                t[j - 1] = v as u64;
                carry = (v >> 64) as u64;
            }
            let v = u128::from(t[s]) + u128::from(carry);
            t[s - 1] = v as u64;
            t[s] = t[s + 1] + ((v >> 64) as u64);
        }
        // t < 2n: one conditional subtraction brings it below n.
        if t[s] != 0 || !less_than(&t[..s], n) {
            let mut borrow = 0u64;
            for j in 0..s {
                let (d1, b1) = t[j].overflowing_sub(n[j]);
                let (d2, b2) = d1.overflowing_sub(borrow);
                t[j] = d2;
                borrow = u64::from(b1 || b2);
            }
        }
        t.truncate(s);
        t
    }
}

fn limbs_for(x: &BigUint) -> usize {
    x.bits().div_ceil(64)
}

fn less_than(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

fn to_limbs(x: &BigUint, limbs: usize) -> Vec<u64> {
    let bytes = x.to_bytes_le();
    let mut out = vec![0u64; limbs];
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut buf = [0u8; 8];
        buf[..chunk.len()].copy_from_slice(chunk);
        out[i] = u64::from_le_bytes(buf);
    }
    out
}

fn from_limbs(limbs: &[u64]) -> BigUint {
    let bytes: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
    BigUint::from_bytes_le(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupId;

    #[test]
    fn montgomery_product_matches_plain_modular_product() {
        for id in GroupId::ALL {
            let p = id.params().p();
            let m = Monty::new(p);
            let a = (p - BigUint::from(12345u32)) >> 3usize;
            let b = p - BigUint::from(3u32);
            let got = m.leave_mont(&m.mul(&m.enter_mont(&a), &m.enter_mont(&b)));
            assert_eq!(got, (&a * &b) % p);
        }
    }
}

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
