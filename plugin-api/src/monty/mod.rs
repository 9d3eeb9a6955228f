//! Constant-time Montgomery arithmetic over 64-bit limbs, for every exponentiation with a
//! secret exponent.
//!
//! - [`Monty::mul`] is CIOS (coarsely integrated operand scanning) on fixed-width limbs, on the
//!   stack, with the final subtraction chosen by a mask: no branch and no memory access depends
//!   on the operands' values, only on the modulus's width.
//! - [`Monty::pow`] is a fixed-window exponentiation over exactly the given number of exponent
//!   bits: the same squarings and multiplications for every exponent of that width, each table
//!   entry picked by [`select`], which reads every entry.
//! - [`select`] is also what the fixed-base table of g uses (`fixed_base.rs`).
//!
//! - On x86-64 processors with AVX-512 IFMA, [`Monty::pow`] runs on 52-bit limbs in vector
//!   registers instead ([`ifma`]), chosen once per modulus at run time; [`Monty::portable`]
//!   never does (benchmarks and tests compare the two).
//!
//! Entering and leaving Montgomery form goes through `BigUint` for the (public) modulus-sized
//! constants only; the secret exponent is read bit by bit at fixed positions.

use num_bigint_dig::BigUint;
use num_traits::One;
use zeroize::Zeroize;

mod fixed_base;
#[cfg(target_arch = "x86_64")]
mod ifma;

pub(crate) use fixed_base::FixedBase;

/// Limbs of the largest modulus (`ffdhe4096`).
pub(crate) const MAX_LIMBS: usize = 64;

/// Bits per window of [`Monty::pow`]: 32 table entries.
const WINDOW_BITS: usize = 5;

/// Montgomery arithmetic modulo an odd n with R = 2^(64·limbs).
#[derive(Debug)]
pub(crate) struct Monty {
    n: [u64; MAX_LIMBS],
    s: usize,
    /// −n⁻¹ mod 2^64.
    n0_inv: u64,
    /// R² mod n, to enter Montgomery form with one multiplication.
    r2: [u64; MAX_LIMBS],
    /// R mod n: one, in Montgomery form.
    one: [u64; MAX_LIMBS],
    /// The vector arithmetic, where the processor has it.
    #[cfg(target_arch = "x86_64")]
    ifma: Option<ifma::Ifma>,
}

/// Which code computes exponentiations with secret exponents (more may come, such as
/// `mulx`/`adx` code for processors without IFMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Arithmetic {
    /// Portable Rust on 64-bit limbs.
    Portable,
    /// AVX-512 IFMA on 52-bit limbs (x86-64 processors that have it).
    Avx512Ifma,
}

impl std::fmt::Display for Arithmetic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Portable => "portable 64-bit limbs",
            Self::Avx512Ifma => "AVX-512 IFMA, 52-bit limbs",
        })
    }
}

impl Monty {
    /// Montgomery arithmetic modulo the odd `modulus` (at most [`MAX_LIMBS`] limbs), with
    /// the fastest exponentiation this processor offers.
    pub(crate) fn new(modulus: &BigUint) -> Self {
        #[allow(unused_mut)]
        let mut monty = Self::portable(modulus);
        #[cfg(target_arch = "x86_64")]
        {
            monty.ifma = ifma::Ifma::detect(modulus, monty.s, monty.n0_inv);
        }
        monty
    }

    /// As [`Self::new`], on 64-bit limbs whatever the processor.
    pub(crate) fn portable(modulus: &BigUint) -> Self {
        let s = limbs_for(modulus);
        assert!(s <= MAX_LIMBS, "modulus wider than {MAX_LIMBS} limbs");
        let mut n = [0u64; MAX_LIMBS];
        n[..s].copy_from_slice(&to_limbs(modulus, s));
        // Newton iteration for n0⁻¹ mod 2^64: each step doubles the correct low bits.
        let n0 = n[0];
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let limbs_of = |x: BigUint| {
            let mut out = [0u64; MAX_LIMBS];
            out[..s].copy_from_slice(&to_limbs(&x, s));
            out
        };
        let one = limbs_of((BigUint::one() << (64 * s)) % modulus);
        let r2 = limbs_of((BigUint::one() << (128 * s)) % modulus);
        Self {
            n,
            s,
            n0_inv: inv.wrapping_neg(),
            r2,
            one,
            #[cfg(target_arch = "x86_64")]
            ifma: None,
        }
    }

    /// Which code computes [`Self::pow`].
    pub(crate) fn arithmetic(&self) -> Arithmetic {
        #[cfg(target_arch = "x86_64")]
        if self.ifma.is_some() {
            return Arithmetic::Avx512Ifma;
        }
        Arithmetic::Portable
    }

    /// Limbs per number.
    pub(crate) fn limbs(&self) -> usize {
        self.s
    }

    /// One, in Montgomery form.
    pub(crate) fn one(&self) -> &[u64] {
        &self.one[..self.s]
    }

    /// x·R mod n, for x < 2^(64·limbs).
    pub(crate) fn enter(&self, x: &BigUint) -> Vec<u64> {
        let mut limbs = to_limbs(x, self.s);
        let mut out = vec![0u64; self.s];
        self.mul(&mut out, &limbs, &self.r2[..self.s]);
        limbs.zeroize();
        out
    }

    /// a·R⁻¹ mod n as an integer.
    pub(crate) fn leave(&self, a: &[u64]) -> BigUint {
        let mut unit = [0u64; MAX_LIMBS];
        unit[0] = 1;
        let mut out = [0u64; MAX_LIMBS];
        self.mul(&mut out[..self.s], a, &unit[..self.s]);
        let value = from_limbs(&out[..self.s]);
        out.zeroize();
        value
    }

    /// out = a·b·R⁻¹ mod n, for a, b < 2^(64·limbs) with a·b < R·n (any a, b < n): the same
    /// instructions and memory accesses for every value.
    pub(crate) fn mul(&self, out: &mut [u64], a: &[u64], b: &[u64]) {
        match self.s {
            8 => self.mul_fixed::<8>(out, a, b),
            32 => self.mul_fixed::<32>(out, a, b),
            48 => self.mul_fixed::<48>(out, a, b),
            64 => self.mul_fixed::<64>(out, a, b),
            _ => self.mul_any(out, a, b),
        }
    }

    /// out = a²·R⁻¹ mod n, as [`Self::mul`] with a = b, in about three quarters of the time.
    pub(crate) fn square(&self, out: &mut [u64], a: &[u64]) {
        match self.s {
            8 => self.square_fixed::<8>(out, a),
            32 => self.square_fixed::<32>(out, a),
            48 => self.square_fixed::<48>(out, a),
            64 => self.square_fixed::<64>(out, a),
            _ => self.mul_any(out, a, a),
        }
    }

    /// [`Self::mul`] for S limbs known at compile time: Montgomery multiplication by product
    /// scanning (the "FIPS" method), which sums each column of a·b + m·n in a three-limb
    /// accumulator held in registers, rather than storing and reloading a partial product.
    /// (The a·b and m·n terms share one loop: splitting them, as the squaring must, costs a
    /// quarter more here.)
    fn mul_fixed<const S: usize>(&self, out: &mut [u64], a: &[u64], b: &[u64]) {
        let (a, b, n): (&[u64; S], &[u64; S], &[u64; S]) = (fixed(a), fixed(b), fixed(&self.n));
        let mut m = [0u64; S];
        let mut u = [0u64; S];
        let mut acc = Acc::default();
        for i in 0..S {
            for j in 0..i {
                acc.mac(a[j], b[i - j]);
                acc.mac(m[j], n[i - j]);
            }
            acc.mac(a[i], b[0]);
            m[i] = acc.low().wrapping_mul(self.n0_inv);
            acc.mac(m[i], n[0]);
            acc.shift();
        }
        for i in S..2 * S - 1 {
            for j in i + 1 - S..S {
                acc.mac(a[j], b[i - j]);
                acc.mac(m[j], n[i - j]);
            }
            u[i - S] = acc.low();
            acc.shift();
        }
        finish(out, acc, u, n);
    }

    /// [`Self::square`] for S limbs known at compile time: product scanning as in
    /// [`Self::mul_fixed`], each cross product a[j]·a[k] (j < k) computed once and doubled.
    fn square_fixed<const S: usize>(&self, out: &mut [u64], a: &[u64]) {
        let (a, n): (&[u64; S], &[u64; S]) = (fixed(a), fixed(&self.n));
        let mut m = [0u64; S];
        let mut u = [0u64; S];
        let mut acc = Acc::default();
        for i in 0..2 * S - 1 {
            let mut cross = Acc::default();
            for j in (i + 1).saturating_sub(S)..i.div_ceil(2) {
                cross.mac(a[j], a[i - j]);
            }
            acc.add_doubled(&cross);
            if i % 2 == 0 {
                acc.mac(a[i / 2], a[i / 2]);
            }
            // The m·n terms, in two loops with fixed bounds (one loop over a computed range
            // costs a sixth more here).
            if i < S {
                for j in 0..i {
                    acc.mac(m[j], n[i - j]);
                }
                m[i] = acc.low().wrapping_mul(self.n0_inv);
                acc.mac(m[i], n[0]);
            } else {
                for j in i + 1 - S..S {
                    acc.mac(m[j], n[i - j]);
                }
                u[i - S] = acc.low();
            }
            acc.shift();
        }
        finish(out, acc, u, n);
    }

    /// [`Self::mul`] for any width (CIOS).
    fn mul_any(&self, out: &mut [u64], a: &[u64], b: &[u64]) {
        let s = self.s;
        let n = &self.n[..s];
        let mut t = [0u64; MAX_LIMBS + 2];
        for &bi in &b[..s] {
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
        conditional_subtract(&mut out[..s], &t[..s], t[s], n);
    }

    /// b⁰, b¹, …, b^(entries − 1) for b in Montgomery form, side by side (entries ≥ 2).
    fn powers(&self, b: &[u64], entries: usize) -> Vec<u64> {
        let s = self.s;
        let mut row = vec![0u64; entries * s];
        row[..s].copy_from_slice(self.one());
        row[s..2 * s].copy_from_slice(&b[..s]);
        for j in 2..entries {
            let (done, rest) = row.split_at_mut(j * s);
            self.mul(&mut rest[..s], &done[(j - 1) * s..], b);
        }
        row
    }

    /// base^x mod n over exactly `bits` bits of x (little-endian bytes, zero beyond its
    /// length): the same operations for every x of that width. `base` < 2^(64·limbs).
    pub(crate) fn pow(&self, base: &BigUint, x: &[u8], bits: usize) -> BigUint {
        #[cfg(target_arch = "x86_64")]
        if let Some(ifma) = &self.ifma {
            return ifma.pow(&self.n[..self.s], base, x, bits);
        }
        let s = self.s;
        let mut b = self.enter(base);
        let mut table = self.powers(&b, 1 << WINDOW_BITS);
        b.zeroize();
        let windows = bits.div_ceil(WINDOW_BITS);
        let mut acc = [0u64; MAX_LIMBS];
        let mut tmp = [0u64; MAX_LIMBS];
        let mut picked = [0u64; MAX_LIMBS];
        acc[..s].copy_from_slice(self.one());
        for w in (0..windows).rev() {
            for _ in 0..WINDOW_BITS {
                self.square(&mut tmp[..s], &acc[..s]);
                acc[..s].copy_from_slice(&tmp[..s]);
            }
            let digit = window(x, w * WINDOW_BITS, WINDOW_BITS);
            select(&mut picked[..s], &table, s, digit);
            self.mul(&mut tmp[..s], &acc[..s], &picked[..s]);
            acc[..s].copy_from_slice(&tmp[..s]);
        }
        let out = self.leave(&acc[..s]);
        acc.zeroize();
        tmp.zeroize();
        picked.zeroize();
        table.zeroize();
        out
    }
}

/// out = t − n if t (with `high` above its top limb) is at least n, else t: t < 2n, and the
/// choice is a mask, not a branch.
fn conditional_subtract(out: &mut [u64], t: &[u64], high: u64, n: &[u64]) {
    let mut borrow = 0u64;
    for ((o, &x), &y) in out.iter_mut().zip(t).zip(n) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(borrow);
        *o = d2;
        borrow = u64::from(b1) | u64::from(b2);
    }
    let keep_difference = nonzero(high) | (borrow ^ 1);
    let mask = std::hint::black_box(keep_difference.wrapping_neg());
    for (o, &x) in out.iter_mut().zip(t) {
        *o = (*o & mask) | (x & !mask);
    }
}

/// A three-limb column accumulator for product scanning.
#[derive(Default)]
struct Acc(u64, u64, u64);

impl Acc {
    /// acc += x·y.
    #[inline(always)]
    fn mac(&mut self, x: u64, y: u64) {
        let p = u128::from(x) * u128::from(y);
        let (lo, c0) = self.0.overflowing_add(p as u64);
        let (hi, c1) = self.1.overflowing_add((p >> 64) as u64 + u64::from(c0));
        self.0 = lo;
        self.1 = hi;
        self.2 += u64::from(c1);
    }

    fn low(&self) -> u64 {
        self.0
    }

    /// acc += 2·c.
    #[inline(always)]
    fn add_doubled(&mut self, c: &Self) {
        let d0 = c.0 << 1;
        let d1 = (c.1 << 1) | (c.0 >> 63);
        let d2 = (c.2 << 1) | (c.1 >> 63);
        let (lo, c0) = self.0.overflowing_add(d0);
        let (mid, c1) = self.1.overflowing_add(d1);
        let (mid, c2) = mid.overflowing_add(u64::from(c0));
        self.0 = lo;
        self.1 = mid;
        self.2 = self.2.wrapping_add(d2).wrapping_add(u64::from(c1) + u64::from(c2));
    }

    /// Drops the low limb (the column is done).
    fn shift(&mut self) {
        *self = Self(self.1, self.2, 0);
    }
}

/// The last limb of a product scan, then the masked final subtraction into `out`.
#[inline(always)]
fn finish<const S: usize>(out: &mut [u64], mut acc: Acc, mut u: [u64; S], n: &[u64; S]) {
    u[S - 1] = acc.low();
    acc.shift();
    conditional_subtract(&mut out[..S], &u, acc.low(), n);
}

/// The first S limbs of `x` as an array (S is the modulus's width, so every operand has it).
fn fixed<const S: usize>(x: &[u64]) -> &[u64; S] {
    x[..S].try_into().expect("an operand of the modulus's width")
}

/// 1 if x ≠ 0, else 0, without a branch.
fn nonzero(x: u64) -> u64 {
    (x | x.wrapping_neg()) >> 63
}

/// The `width` bits of the little-endian `x` from bit `at` (zero beyond `x`): fixed positions,
/// so reading them does not depend on the value.
pub(crate) fn window(x: &[u8], at: usize, width: usize) -> usize {
    let mut digit = 0usize;
    for k in 0..width {
        let bit = at + k;
        let byte = x.get(bit / 8).copied().unwrap_or(0);
        digit |= usize::from((byte >> (bit % 8)) & 1) << k;
    }
    digit
}

/// Copies entry `index` of `table` (entries of `width` limbs, one after the other) into `out`,
/// reading every entry: the memory accesses do not depend on `index`.
pub(crate) fn select(out: &mut [u64], table: &[u64], width: usize, index: usize) {
    out.fill(0);
    for (i, entry) in table.chunks_exact(width).enumerate() {
        let differs = nonzero((i ^ index) as u64);
        let mask = std::hint::black_box(differs.wrapping_sub(1));
        for (o, e) in out.iter_mut().zip(entry) {
            *o |= e & mask;
        }
    }
}

/// Limbs for a number as wide as `x`.
pub(crate) fn limbs_for(x: &BigUint) -> usize {
    x.bits().div_ceil(64)
}

/// `x` as `limbs` little-endian limbs.
pub(crate) fn to_limbs(x: &BigUint, limbs: usize) -> Vec<u64> {
    let mut bytes = x.to_bytes_le();
    let mut out = vec![0u64; limbs];
    for (i, chunk) in bytes.chunks(8).enumerate().take(limbs) {
        let mut buf = [0u8; 8];
        buf[..chunk.len()].copy_from_slice(chunk);
        out[i] = u64::from_le_bytes(buf);
    }
    bytes.zeroize();
    out
}

fn from_limbs(limbs: &[u64]) -> BigUint {
    let mut bytes: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
    let value = BigUint::from_bytes_le(&bytes);
    bytes.zeroize();
    value
}

#[cfg(test)]
mod tests {
    use num_bigint_dig::RandBigInt;
    use rand_core::SeedableRng;

    use super::*;
    use crate::group::GroupId;

    #[test]
    fn montgomery_product_matches_plain_modular_product() {
        for id in GroupId::ALL {
            let p = id.params().p();
            let m = Monty::new(p);
            let a = (p - BigUint::from(12345u32)) >> 3usize;
            let b = p - BigUint::from(3u32);
            let mut ab = vec![0u64; m.limbs()];
            m.mul(&mut ab, &m.enter(&a), &m.enter(&b));
            assert_eq!(m.leave(&ab), (&a * &b) % p);
        }
    }

    #[test]
    fn exponentiation_matches_modpow_for_every_group_and_width() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        for (id, m) in GroupId::ALL.into_iter().chain([GroupId::TestOnly64]).flat_map(|id| {
            let p = id.params().p();
            [(id, Monty::new(p)), (id, Monty::portable(p))]
        }) {
            let p = id.params().p();
            for bits in [1usize, 5, 255, 256, p.bits() - 1] {
                for _ in 0..4 {
                    let base = rng.gen_biguint_below(p);
                    let x = rng.gen_biguint(bits as u64 as usize);
                    let got = m.pow(&base, &x.to_bytes_le(), bits);
                    assert_eq!(got, base.modpow(&x, p), "{id} {} bits {bits}", m.arithmetic());
                }
            }
            // Edge values: a zero exponent, base 0, 1 and p − 1.
            let zero = m.pow(&BigUint::from(7u32), &[], 256);
            assert_eq!(zero, BigUint::one());
            for base in [BigUint::from(0u32), BigUint::one(), p - 1u32] {
                let x = BigUint::from(0xdead_beefu32);
                assert_eq!(m.pow(&base, &x.to_bytes_le(), 256), base.modpow(&x, p));
            }
        }
    }

    #[test]
    fn squaring_and_every_width_match_the_plain_product() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        // The RFC 7919 widths and the test group's (fixed code) and an odd 5-limb modulus (the
        // general code).
        let odd = (BigUint::one() << 317usize) - 15u32;
        let moduli: Vec<BigUint> = GroupId::ALL
            .into_iter()
            .chain([GroupId::TestOnly64])
            .map(|id| id.params().p().clone())
            .chain([odd])
            .collect();
        for p in moduli {
            let m = Monty::new(&p);
            for _ in 0..20 {
                let (a, b) = (rng.gen_biguint_below(&p), rng.gen_biguint_below(&p));
                let (am, bm) = (m.enter(&a), m.enter(&b));
                let mut out = vec![0u64; m.limbs()];
                m.mul(&mut out, &am, &bm);
                assert_eq!(m.leave(&out), (&a * &b) % &p);
                m.square(&mut out, &am);
                assert_eq!(m.leave(&out), (&a * &a) % &p);
            }
            let top = &p - 1u32;
            let mut out = vec![0u64; m.limbs()];
            m.square(&mut out, &m.enter(&top));
            assert_eq!(m.leave(&out), BigUint::one(), "(p − 1)² = 1");
        }
    }

    #[test]
    fn fixed_base_exponentiation_matches_modpow_in_both_arithmetics() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(29);
        for id in GroupId::ALL.into_iter().chain([GroupId::TestOnly64]) {
            let p = id.params().p();
            let g = BigUint::from(2u32);
            for m in [Monty::new(p), Monty::portable(p)] {
                let table = m.fixed_base(&g, 6, 256);
                for x in [BigUint::from(0u32), BigUint::one(), (BigUint::one() << 256usize) - 1u32]
                    .into_iter()
                    .chain((0..4).map(|_| rng.gen_biguint(256)))
                {
                    let got = m.fixed_base_pow(&table, &x.to_bytes_le());
                    assert_eq!(got, g.modpow(&x, p), "{id} {}", m.arithmetic());
                }
            }
        }
    }

    #[test]
    fn select_picks_each_entry() {
        let table: Vec<u64> = (0..12).collect();
        let mut out = [0u64; 3];
        for i in 0..4 {
            select(&mut out, &table, 3, i);
            assert_eq!(out, [3 * i as u64, 3 * i as u64 + 1, 3 * i as u64 + 2]);
        }
    }
}
