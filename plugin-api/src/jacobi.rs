//! The Jacobi symbol on 64-bit limbs, for the subgroup test of every received element. The
//! element is public: this is variable-time on purpose.
//!
//! The algorithm is T. Pornin's optimised binary GCD ("Optimized Binary GCD for Modular
//! Inversion", IACR ePrint 2020/972), in its Legendre-symbol form: each outer step runs 31
//! binary-GCD steps on 64-bit approximations of the two values (their top 33 and low 31 bits),
//! collecting the steps as a 2×2 matrix of small factors, and then applies the matrix to the
//! full-width values once. The symbol's sign is tracked from the low bits, which stay exact for
//! 29 steps; the last two steps read exact low words recomputed from the factors. So a step
//! costs a few word operations instead of a pass over 32 limbs, and a 2048-bit symbol takes
//! about 130 full-width passes instead of several thousand.

use num_bigint_dig::BigUint;

use crate::monty::{limbs_for, to_limbs};

/// Binary-GCD steps per outer step: 31, so that the factors fit in 32 bits with their sign.
const STEPS: u32 = 31;
/// Steps whose low bits are read from the approximations themselves: a step needs the three
/// low bits of b exact, and each step loses one exact bit of the 31 the approximations carry.
const STEPS_ON_APPROXIMATIONS: u32 = 29;

/// The Jacobi symbol (a | n) for odd n > a ≥ 0.
pub(crate) fn jacobi(a_in: &BigUint, n_in: &BigUint) -> i8 {
    let limbs = limbs_for(n_in).max(1);
    let mut a = to_limbs(a_in, limbs);
    let mut b = to_limbs(n_in, limbs);
    // Bit 0 is set when the symbol so far is −1.
    let mut sign = 0u64;
    let mut len = limbs;
    // Each pass shortens a and b by at least 31 bits in all (the paper's bound). A hostile
    // element must never make validation spin: past the bound, the plain algorithm decides.
    let max_passes = 2 * 64 * limbs / STEPS as usize + 2;
    let mut passes = 0;
    loop {
        passes += 1;
        if passes > max_passes {
            return reference_jacobi(a_in, n_in);
        }
        while len > 1 && a[len - 1] == 0 && b[len - 1] == 0 {
            len -= 1;
        }
        if len == 1 {
            break;
        }
        if a[..len].iter().all(|&w| w == 0) {
            // gcd(a, n) = b > 1.
            return 0;
        }
        let mut steps = Steps::new(approximate(&a[..len], &b[..len]));
        for _ in 0..STEPS_ON_APPROXIMATIONS {
            let (low_a, low_b) = (steps.xa, steps.xb);
            steps.step(low_a, low_b, &mut sign, |_, _| {});
        }
        // The true values after 29 steps are (f·a + g·b) / 2^29: their low words are exact.
        let mut low_a = combine_low(a[0], b[0], steps.f0, steps.g0) >> STEPS_ON_APPROXIMATIONS;
        let mut low_b = combine_low(a[0], b[0], steps.f1, steps.g1) >> STEPS_ON_APPROXIMATIONS;
        for _ in STEPS_ON_APPROXIMATIONS..STEPS {
            let (la, lb) = (low_a, low_b);
            steps.step(la, lb, &mut sign, |swap, odd| {
                if swap {
                    std::mem::swap(&mut low_a, &mut low_b);
                }
                if odd {
                    low_a = low_a.wrapping_sub(low_b);
                }
                low_a >>= 1;
            });
        }
        let new_a = combine(&a[..len], &b[..len], steps.f0, steps.g0);
        let new_b = combine(&a[..len], &b[..len], steps.f1, steps.g1);
        a[..len].copy_from_slice(&new_a.limbs);
        b[..len].copy_from_slice(&new_b.limbs);
        // (−a | b) = (−1 | b)·(a | b), and (−1 | b) = −1 exactly when b ≡ 3 (mod 4). As in
        // the paper, b's sign needs no correction.
        if new_a.negative {
            sign ^= (b[0] >> 1) & 1;
        }
    }
    // Both values fit in a word: finish exactly.
    let (mut xa, mut xb) = (a[0], b[0]);
    while xa != 0 {
        if xa & 1 == 1 {
            if xa < xb {
                std::mem::swap(&mut xa, &mut xb);
                sign ^= (xa & xb) >> 1 & 1;
            }
            xa -= xb;
        }
        xa >>= 1;
        sign ^= two_is_nonresidue(xb);
    }
    match (xb, sign & 1) {
        (1, 0) => 1,
        (1, _) => -1,
        _ => 0,
    }
}

/// num-bigint-dig's Jacobi symbol (a division per step): the fallback past the pass bound.
fn reference_jacobi(a: &BigUint, n: &BigUint) -> i8 {
    use num_bigint_dig::BigInt;
    let symbol =
        num_bigint_dig::algorithms::jacobi(&BigInt::from(a.clone()), &BigInt::from(n.clone()));
    symbol as i8
}

/// 1 when (2 | b) = −1, that is b ≡ 3 or 5 (mod 8); else 0.
fn two_is_nonresidue(b: u64) -> u64 {
    (b.wrapping_add(2) >> 2) & 1
}

/// The running approximations and the factors that express them in the starting values:
/// 2^k·xa = f0·a + g0·b and 2^k·xb = f1·a + g1·b after k steps (the factors of b are doubled
/// rather than a halved, so they stay integers).
struct Steps {
    xa: u64,
    xb: u64,
    f0: i64,
    g0: i64,
    f1: i64,
    g1: i64,
}

impl Steps {
    fn new((xa, xb): (u64, u64)) -> Self {
        Self { xa, xb, f0: 1, g0: 0, f1: 0, g1: 1 }
    }

    /// One binary-GCD step: if a is odd, make a ≥ b (swapping, with quadratic reciprocity) and
    /// subtract b; then halve a, with (2 | b). `low_a` and `low_b` hold the values' exact low
    /// bits for the sign; `track` replays the step on whatever else follows it.
    fn step(&mut self, low_a: u64, low_b: u64, sign: &mut u64, mut track: impl FnMut(bool, bool)) {
        let odd = self.xa & 1 == 1;
        let swap = odd && self.xa < self.xb;
        let low_b = if swap {
            std::mem::swap(&mut self.xa, &mut self.xb);
            std::mem::swap(&mut self.f0, &mut self.f1);
            std::mem::swap(&mut self.g0, &mut self.g1);
            // (a | b) = (b | a) unless both are 3 (mod 4).
            *sign ^= (low_a & low_b) >> 1 & 1;
            low_a
        } else {
            low_b
        };
        if odd {
            self.xa = self.xa.wrapping_sub(self.xb);
            self.f0 -= self.f1;
            self.g0 -= self.g1;
        }
        self.xa >>= 1;
        self.f1 <<= 1;
        self.g1 <<= 1;
        *sign ^= two_is_nonresidue(low_b);
        track(swap, odd);
    }
}

/// The approximations of a and b (not both below 2^64): with n the bit length of the larger,
/// their bits n−33 .. n−1 above their low 31 bits.
fn approximate(a: &[u64], b: &[u64]) -> (u64, u64) {
    let top = a.len() - 1;
    let shift = (a[top] | b[top]).leading_zeros();
    let high = |x: &[u64]| {
        if shift == 0 {
            x[top]
        } else {
            (x[top] << shift) | (x[top - 1] >> (64 - shift))
        }
    };
    let mix = |x: &[u64]| (high(x) & !0x7FFF_FFFF) | (x[0] & 0x7FFF_FFFF);
    (mix(a), mix(b))
}

/// The low word of f·a + g·b, from the low words of a and b.
fn combine_low(a0: u64, b0: u64, f: i64, g: i64) -> u64 {
    a0.wrapping_mul(f as u64).wrapping_add(b0.wrapping_mul(g as u64))
}

/// |f·a + g·b| / 2^31 and its sign; the division is exact.
struct Combined {
    limbs: Vec<u64>,
    negative: bool,
}

fn combine(a: &[u64], b: &[u64], f: i64, g: i64) -> Combined {
    let mut wide = vec![0u64; a.len() + 1];
    let mut carry: i128 = 0;
    for ((w, &x), &y) in wide.iter_mut().zip(a).zip(b) {
        let t = i128::from(f) * i128::from(x) + i128::from(g) * i128::from(y) + carry;
        *w = t as u64;
        carry = t >> 64;
    }
    let negative = carry < 0;
    wide[a.len()] = carry as u64;
    if negative {
        // Two's complement negation over the wide value.
        let mut borrow_in = 1u64;
        for w in &mut wide {
            let (v, c) = (!*w).overflowing_add(borrow_in);
            *w = v;
            borrow_in = u64::from(c);
        }
    }
    let limbs = (0..a.len()).map(|i| (wide[i] >> STEPS) | (wide[i + 1] << (64 - STEPS))).collect();
    Combined { limbs, negative }
}

#[cfg(test)]
mod jacobi_tests {
    use num_bigint_dig::{BigInt, RandBigInt, RandPrime};
    use rand_core::SeedableRng;

    use super::*;
    use crate::group::GroupId;

    fn reference(a: &BigUint, n: &BigUint) -> i8 {
        let want =
            num_bigint_dig::algorithms::jacobi(&BigInt::from(a.clone()), &BigInt::from(n.clone()));
        want as i8
    }

    #[test]
    fn the_fallback_is_the_reference() {
        let p = GroupId::Ffdhe2048.params().p();
        for a in [BigUint::from(2u32), p - 1u32, p / 3u32] {
            assert_eq!(reference_jacobi(&a, p), reference(&a, p));
        }
    }

    /// Values where the approximations' top bits tie, or nearly: near 0, n, n/2 and n/3.
    fn awkward_values(n: &BigUint) -> Vec<BigUint> {
        let mut out = Vec::new();
        for k in 1u32..40 {
            let k = BigUint::from(k);
            out.push(k.clone());
            if &k < n {
                out.push(n - &k);
            }
            for d in [2u32, 3, 5] {
                let part = n / d;
                out.push(&part + &k);
                if k < part {
                    out.push(&part - &k);
                }
            }
        }
        out.retain(|v| v < n);
        out
    }

    #[test]
    fn matches_the_reference_jacobi_for_every_rfc_7919_prime() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        for id in GroupId::ALL {
            let p = id.params().p();
            let mut values: Vec<BigUint> = (0..300).map(|_| rng.gen_biguint_below(p)).collect();
            values.extend(awkward_values(p));
            values.push(BigUint::from(0u32));
            // A multiple of a large factor: the symbol is 0 with b still wide.
            let n = p * BigUint::from(3u32);
            assert_eq!(jacobi(p, &n), 0);
            for a in values {
                assert_eq!(jacobi(&a, p), reference(&a, p), "a = {a}");
            }
        }
    }

    #[test]
    fn matches_the_reference_jacobi_on_many_moduli_of_every_width() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        for bits in [3usize, 17, 64, 65, 127, 128, 129, 200, 256, 321, 512] {
            for _ in 0..60 {
                // Primes and odd composites (whose symbol may be 0).
                let n = if rng.gen_biguint(1) == BigUint::from(1u32) && bits > 8 {
                    rng.gen_prime(bits)
                } else {
                    rng.gen_biguint(bits) | BigUint::from(1u32)
                };
                if n <= BigUint::from(1u32) {
                    continue;
                }
                let mut values: Vec<BigUint> = (0..40).map(|_| rng.gen_biguint_below(&n)).collect();
                values.extend(awkward_values(&n));
                for a in values {
                    assert_eq!(jacobi(&a, &n), reference(&a, &n), "a = {a}, n = {n}");
                }
            }
        }
        for n in (3u32..200).step_by(2) {
            for a in 0..n {
                let (a, n) = (BigUint::from(a), BigUint::from(n));
                assert_eq!(jacobi(&a, &n), reference(&a, &n));
            }
        }
    }
}
