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
