//! Constant-time exponentiation on 52-bit limbs with AVX-512 IFMA (`vpmadd52luq` and
//! `vpmadd52huq`), for x86-64 processors that have it; [`super::Monty`] picks it at run time
//! and keeps the portable 64-bit code for every other processor.
//!
//! The multiplication is the almost-Montgomery multiplication of S. Gueron and V. Krasnov
//! ("Accelerating big integer arithmetic using Intel IFMA extensions", ARITH 2016), as in
//! OpenSSL's `rsaz-2k-avx512`:
//!
//! - a number is 8·V limbs of 52 bits in V 512-bit vectors, and R = 2^(52·8·V) ≥ 4n;
//! - operand scanning: for each limb bᵢ the vectors gain the low halves of a·bᵢ and m·yᵢ
//!   (yᵢ chosen so that the lowest limb becomes divisible by 2^52), shift down one limb, and
//!   gain the high halves. Limbs stay below 2^64 without carries, because each column sums
//!   at most 4·8·V products' halves;
//! - the carries are propagated once per multiplication, in two vector passes whose ripple
//!   is found with mask arithmetic, not a loop that depends on the value;
//! - inputs below 2n give an output below 2n (as R ≥ 4n), so no step needs a conditional
//!   subtraction; the last one happens once, on leaving Montgomery form.
//!
//! Every instruction and memory access is the same for every value: the table entry of a
//! window is picked by a masked move over every entry.

use std::arch::x86_64::{
    __m512i, _mm512_add_epi64, _mm512_alignr_epi64, _mm512_and_si512, _mm512_castsi512_si128,
    _mm512_cmpeq_epu64_mask, _mm512_cmpgt_epu64_mask, _mm512_loadu_si512, _mm512_madd52hi_epu64,
    _mm512_madd52lo_epu64, _mm512_mask_add_epi64, _mm512_maskz_set1_epi64, _mm512_or_si512,
    _mm512_set1_epi64, _mm512_setzero_si512, _mm512_srli_epi64, _mm512_storeu_si512,
    _mm512_zextsi128_si512, _mm_cvtsi128_si64, _mm_cvtsi64_si128,
};

use num_bigint_dig::BigUint;
use zeroize::Zeroize;

use super::{conditional_subtract, from_limbs, to_limbs, window, WINDOW_BITS};

/// Calls `f::<V>(args)` for the width `vectors` (1 to [`MAX_VECTORS`]).
macro_rules! by_width {
    ($vectors:expr, $f:ident($($arg:expr),*)) => {
        match $vectors {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            8 => $f::<8>($($arg),*),
            9 => $f::<9>($($arg),*),
            _ => $f::<MAX_VECTORS>($($arg),*),
        }
    };
}

/// Bits per limb.
const LIMB_BITS: usize = 52;
const MASK52: u64 = (1 << LIMB_BITS) - 1;
/// Limbs per vector.
const LANES: usize = 8;
/// The widest modulus handled here, in vectors (4096 bits need 10).
const MAX_VECTORS: usize = 10;

/// Montgomery arithmetic modulo an odd n on 52-bit limbs, R = 2^(52·limbs).
#[derive(Debug)]
pub(super) struct Ifma {
    /// Vectors per number (the width is fixed per modulus; every call dispatches on it).
    vectors: usize,
    n: Vec<u64>,
    /// −n⁻¹ mod 2^52.
    k0: u64,
    /// R² mod n.
    r2: Vec<u64>,
    /// R mod n: one, in Montgomery form.
    one: Vec<u64>,
}

impl Ifma {
    /// The IFMA arithmetic modulo `modulus` (odd, of `limbs64` 64-bit limbs), if this
    /// processor has AVX-512 IFMA and the modulus fits.
    pub(super) fn detect(modulus: &BigUint, limbs64: usize, n0_inv64: u64) -> Option<Self> {
        if !std::arch::is_x86_feature_detected!("avx512f")
            || !std::arch::is_x86_feature_detected!("avx512ifma")
        {
            return None;
        }
        Self::new(modulus, limbs64, n0_inv64)
    }

    /// As [`Self::detect`] without asking the processor (the caller has).
    fn new(modulus: &BigUint, limbs64: usize, n0_inv64: u64) -> Option<Self> {
        // R ≥ 4n keeps every product below 2n, and R ≥ 2^(64·limbs64) takes any base the
        // 64-bit code takes.
        let vectors = (modulus.bits() + 2).max(64 * limbs64).div_ceil(LIMB_BITS * LANES);
        if vectors > MAX_VECTORS {
            return None;
        }
        let limbs = vectors * LANES;
        let r = BigUint::from(1u32) << (LIMB_BITS * limbs);
        let one = to_limbs52(&(&r % modulus), limbs);
        let r2 = to_limbs52(&((&r * &r) % modulus), limbs);
        // −n⁻¹ mod 2^64 reduced mod 2^52 is −n⁻¹ mod 2^52.
        let k0 = n0_inv64 & MASK52;
        Some(Self { vectors, n: to_limbs52(modulus, limbs), k0, r2, one })
    }

    /// base^x mod n over exactly `bits` bits of x (little-endian bytes, zero beyond its
    /// length), as [`super::Monty::pow`]; `n64` is n in 64-bit limbs and `base` < 2^(64·n64.len()).
    pub(super) fn pow(&self, n64: &[u64], base: &BigUint, x: &[u8], bits: usize) -> BigUint {
        // SAFETY: an `Ifma` exists only where `detect` found avx512f and avx512ifma.
        unsafe { by_width!(self.vectors, pow(self, n64, base, x, bits)) }
    }

    /// The rows of a fixed-base table for `g` (< 2^(64·limbs64)): row i holds
    /// g^(j·2^(window_bits·i)) in Montgomery form for every digit j, `windows` rows.
    pub(super) fn fixed_base_rows(
        &self,
        g: &BigUint,
        window_bits: usize,
        windows: usize,
    ) -> Vec<Vec<u64>> {
        // SAFETY: as in `pow`.
        unsafe { by_width!(self.vectors, fixed_base_rows(self, g, window_bits, windows)) }
    }

    /// The product of one entry per row of `rows` (from [`Self::fixed_base_rows`]), each
    /// picked by the `window_bits`-bit digits of x: g^x for x below 2^(window_bits·rows).
    pub(super) fn fixed_base_pow(
        &self,
        n64: &[u64],
        rows: &[Vec<u64>],
        window_bits: usize,
        x: &[u8],
    ) -> BigUint {
        // SAFETY: as in `pow`.
        unsafe { by_width!(self.vectors, fixed_base_pow(self, n64, rows, window_bits, x)) }
    }
}

#[target_feature(enable = "avx512f,avx512ifma")]
fn pow<const V: usize>(ifma: &Ifma, n64: &[u64], base: &BigUint, x: &[u8], bits: usize) -> BigUint {
    let n = load::<V>(&ifma.n);
    let mut base_m = enter::<V>(ifma, base);
    let mut table = powers::<V>(ifma, &base_m, 1 << WINDOW_BITS, &n);
    let mut acc = load::<V>(&ifma.one);
    let mut picked = [_mm512_setzero_si512(); V];
    for w in (0..bits.div_ceil(WINDOW_BITS)).rev() {
        for _ in 0..WINDOW_BITS {
            acc = amm::<V>(&acc, &acc, &n, ifma.k0);
        }
        picked = select::<V>(&table, window(x, w * WINDOW_BITS, WINDOW_BITS));
        acc = amm::<V>(&acc, &picked, &n, ifma.k0);
    }
    let out = leave::<V>(ifma, n64, &mut acc);
    table.zeroize();
    wipe(&mut base_m);
    // The last entry picked names the exponent's lowest window.
    wipe(&mut picked);
    out
}

#[target_feature(enable = "avx512f,avx512ifma")]
fn fixed_base_rows<const V: usize>(
    ifma: &Ifma,
    g: &BigUint,
    window_bits: usize,
    windows: usize,
) -> Vec<Vec<u64>> {
    let entries = 1usize << window_bits;
    let n = load::<V>(&ifma.n);
    let mut base = enter::<V>(ifma, g);
    (0..windows)
        .map(|_| {
            let row = powers::<V>(ifma, &base, entries, &n);
            // base^(2^w): the next row's base.
            let last = load::<V>(&row[(entries - 1) * V * LANES..]);
            base = amm::<V>(&last, &base, &n, ifma.k0);
            row
        })
        .collect()
}

/// b⁰, b¹, …, b^(entries − 1) for b in Montgomery form, side by side (entries ≥ 2).
#[target_feature(enable = "avx512f,avx512ifma")]
fn powers<const V: usize>(
    ifma: &Ifma,
    b: &[__m512i; V],
    entries: usize,
    n: &[__m512i; V],
) -> Vec<u64> {
    let limbs = V * LANES;
    let mut row = vec![0u64; entries * limbs];
    row[..limbs].copy_from_slice(&ifma.one);
    store(&mut row[limbs..2 * limbs], b);
    let mut entry = *b;
    for j in 2..entries {
        entry = amm::<V>(&entry, b, n, ifma.k0);
        store(&mut row[j * limbs..(j + 1) * limbs], &entry);
    }
    row
}

#[target_feature(enable = "avx512f,avx512ifma")]
fn fixed_base_pow<const V: usize>(
    ifma: &Ifma,
    n64: &[u64],
    rows: &[Vec<u64>],
    window_bits: usize,
    x: &[u8],
) -> BigUint {
    let n = load::<V>(&ifma.n);
    let mut acc = load::<V>(&ifma.one);
    let mut picked = [_mm512_setzero_si512(); V];
    for (i, row) in rows.iter().enumerate() {
        picked = select::<V>(row, window(x, i * window_bits, window_bits));
        acc = amm::<V>(&acc, &picked, &n, ifma.k0);
    }
    // The last entry picked names the exponent's top window.
    wipe(&mut picked);
    leave::<V>(ifma, n64, &mut acc)
}

/// x·R mod n (below 2n) for x < 2^(64·limbs64).
#[target_feature(enable = "avx512f,avx512ifma")]
fn enter<const V: usize>(ifma: &Ifma, x: &BigUint) -> [__m512i; V] {
    let mut limbs = to_limbs52(x, V * LANES);
    let entered = amm::<V>(&load(&limbs), &load(&ifma.r2), &load(&ifma.n), ifma.k0);
    limbs.zeroize();
    entered
}

/// a·R⁻¹ mod n as an integer (a < 2n), and wipes a.
#[target_feature(enable = "avx512f,avx512ifma")]
fn leave<const V: usize>(ifma: &Ifma, n64: &[u64], a: &mut [__m512i; V]) -> BigUint {
    let mut unit = [0u64; MAX_VECTORS * LANES];
    unit[0] = 1;
    // a·R⁻¹ < n + 1: at most one subtraction of n is left.
    let mut result = [0u64; MAX_VECTORS * LANES];
    store(&mut result[..V * LANES], &amm::<V>(a, &load(&unit), &load(&ifma.n), ifma.k0));
    let mut wide = from_limbs52(&result[..V * LANES], n64.len());
    let mut reduced = vec![0u64; n64.len()];
    conditional_subtract(&mut reduced, &wide, 0, n64);
    let out = from_limbs(&reduced);
    result.zeroize();
    wide.zeroize();
    reduced.zeroize();
    wipe(a);
    out
}

/// Overwrites secret vectors with zeros (the write cannot be optimised away).
#[target_feature(enable = "avx512f")]
fn wipe<const V: usize>(a: &mut [__m512i; V]) {
    *a = [_mm512_setzero_si512(); V];
    std::hint::black_box(a);
}

/// a·b·R⁻¹ mod n, below 2n, for a·b < R·n (a, b < 2n; or, on entering Montgomery form,
/// any a < R times R² mod n), with limbs below 2^52 (and so the output's).
#[inline]
#[target_feature(enable = "avx512f,avx512ifma")]
fn amm<const V: usize>(
    a: &[__m512i; V],
    b: &[__m512i; V],
    n: &[__m512i; V],
    k0: u64,
) -> [__m512i; V] {
    let zero = _mm512_setzero_si512();
    let mut b_limbs = [0u64; MAX_VECTORS * LANES];
    store(&mut b_limbs[..V * LANES], b);
    let (a0, n0) = (lane0(a[0]), lane0(n[0]));
    let mut r = [zero; V];
    for &bi in &b_limbs[..V * LANES] {
        let vb = _mm512_set1_epi64(bi as i64);
        // The lowest limb after adding a₀·bᵢ (low half) decides yᵢ; computing it on scalars
        // keeps the vectors' latency off this step.
        let lowest = lane0(r[0]).wrapping_add(a0.wrapping_mul(bi) & MASK52);
        let y = lowest.wrapping_mul(k0) & MASK52;
        let vy = _mm512_set1_epi64(y as i64);
        // What the lowest limb, now divisible by 2^52, carries into the next.
        let carry = lowest.wrapping_add(n0.wrapping_mul(y) & MASK52) >> LIMB_BITS;
        let mut high = [zero; V];
        for v in 0..V {
            high[v] = _mm512_madd52hi_epu64(_mm512_madd52hi_epu64(zero, a[v], vb), n[v], vy);
            r[v] = _mm512_madd52lo_epu64(_mm512_madd52lo_epu64(r[v], a[v], vb), n[v], vy);
        }
        for v in 0..V - 1 {
            r[v] = _mm512_alignr_epi64::<1>(r[v + 1], r[v]);
        }
        r[V - 1] = _mm512_alignr_epi64::<1>(zero, r[V - 1]);
        high[0] =
            _mm512_add_epi64(high[0], _mm512_zextsi128_si512(_mm_cvtsi64_si128(carry as i64)));
        for v in 0..V {
            r[v] = _mm512_add_epi64(r[v], high[v]);
        }
    }
    b_limbs.zeroize();
    normalize(&mut r);
    r
}

/// Propagates the carries of limbs below 2^64 so that every limb is below 2^52 (the value
/// must fit in 8·V limbs).
#[inline]
#[target_feature(enable = "avx512f,avx512ifma")]
fn normalize<const V: usize>(r: &mut [__m512i; V]) {
    let mask = _mm512_set1_epi64(MASK52 as i64);
    let zero = _mm512_setzero_si512();
    // Pass one: each limb keeps its low 52 bits and gains the carry of the limb below, so
    // it stays below 2^52 + 2^12.
    let mut carries = [zero; V];
    for v in 0..V {
        carries[v] = _mm512_srli_epi64::<52>(r[v]);
    }
    for v in 0..V {
        let below = if v == 0 { zero } else { carries[v - 1] };
        r[v] = _mm512_add_epi64(
            _mm512_and_si512(r[v], mask),
            _mm512_alignr_epi64::<7>(carries[v], below),
        );
    }
    // Pass two: a limb above 2^52 − 1 generates a carry of one, a limb equal to it passes
    // one on. Adding the generate bits (moved up a limb) to the propagate bits, as integers
    // with a bit per limb, marks every limb that gains one.
    let (mut generate, mut propagate) = (0u128, 0u128);
    for (v, limbs) in r.iter().enumerate() {
        generate |= u128::from(_mm512_cmpgt_epu64_mask(*limbs, mask)) << (LANES * v);
        propagate |= u128::from(_mm512_cmpeq_epu64_mask(*limbs, mask)) << (LANES * v);
    }
    let gains = (generate << 1).wrapping_add(propagate) ^ propagate;
    let one = _mm512_set1_epi64(1);
    for (v, limbs) in r.iter_mut().enumerate() {
        let lanes = (gains >> (LANES * v)) as u8;
        *limbs = _mm512_and_si512(_mm512_mask_add_epi64(*limbs, lanes, *limbs, one), mask);
    }
}

/// Entry `index` of `table` (entries of 8·V limbs), by a masked move from every entry.
#[inline]
#[target_feature(enable = "avx512f,avx512ifma")]
fn select<const V: usize>(table: &[u64], index: usize) -> [__m512i; V] {
    let mut out = [_mm512_setzero_si512(); V];
    let wanted = _mm512_set1_epi64(index as i64);
    for (i, entry) in table.chunks_exact(V * LANES).enumerate() {
        let this = _mm512_cmpeq_epu64_mask(_mm512_set1_epi64(i as i64), wanted);
        // All ones for the wanted entry, else zeros, and opaque to the compiler: with a mask
        // register it would turn load and move into a masked load, which need not read the
        // entries it leaves out. An AND with a vector reads every entry in full.
        let keep = std::hint::black_box(_mm512_maskz_set1_epi64(this, -1));
        let entry = load::<V>(entry);
        for v in 0..V {
            out[v] = _mm512_or_si512(out[v], _mm512_and_si512(entry[v], keep));
        }
    }
    out
}

/// The first 8·V limbs of `limbs` as vectors.
#[inline]
#[target_feature(enable = "avx512f")]
fn load<const V: usize>(limbs: &[u64]) -> [__m512i; V] {
    let limbs = &limbs[..V * LANES];
    let mut out = [_mm512_setzero_si512(); V];
    for (v, chunk) in limbs.chunks_exact(LANES).enumerate() {
        // SAFETY: `chunk` is 8 initialised u64s; the load is unaligned.
        out[v] = unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) };
    }
    out
}

/// Stores the vectors into the first 8·V limbs of `out`.
#[inline]
#[target_feature(enable = "avx512f")]
fn store<const V: usize>(out: &mut [u64], vectors: &[__m512i; V]) {
    for (chunk, vector) in out[..V * LANES].chunks_exact_mut(LANES).zip(vectors) {
        // SAFETY: `chunk` is 8 writable u64s; the store is unaligned.
        unsafe { _mm512_storeu_si512(chunk.as_mut_ptr().cast(), *vector) };
    }
}

/// The lowest 64-bit lane of a vector.
#[inline]
#[target_feature(enable = "avx512f")]
fn lane0(v: __m512i) -> u64 {
    _mm_cvtsi128_si64(_mm512_castsi512_si128(v)) as u64
}

/// `x` as `limbs` little-endian 52-bit limbs (x < 2^(52·limbs)), at fixed bit positions.
fn to_limbs52(x: &BigUint, limbs: usize) -> Vec<u64> {
    let mut wide = to_limbs(x, (limbs * LIMB_BITS).div_ceil(64));
    let out = (0..limbs).map(|i| bits_at(&wide, i * LIMB_BITS)).collect();
    wide.zeroize();
    out
}

/// 52-bit limbs as `limbs64` 64-bit limbs (the value must fit), at fixed bit positions.
fn from_limbs52(x: &[u64], limbs64: usize) -> Vec<u64> {
    let mut out = vec![0u64; limbs64];
    for (i, &limb) in x.iter().enumerate() {
        let at = i * LIMB_BITS;
        let (word, shift) = (at / 64, at % 64);
        if word < limbs64 {
            out[word] |= limb << shift;
        }
        if shift > 64 - LIMB_BITS && word + 1 < limbs64 {
            out[word + 1] |= limb >> (64 - shift);
        }
    }
    out
}

/// The 52 bits of the little-endian 64-bit limbs `x` from bit `at` (zero beyond `x`).
fn bits_at(x: &[u64], at: usize) -> u64 {
    let (word, shift) = (at / 64, at % 64);
    let low = x.get(word).copied().unwrap_or(0) >> shift;
    let high = if shift > 64 - LIMB_BITS {
        x.get(word + 1).copied().unwrap_or(0) << (64 - shift)
    } else {
        0
    };
    (low | high) & MASK52
}

#[cfg(test)]
mod tests {
    use num_bigint_dig::RandBigInt;
    use rand_core::{RngCore, SeedableRng};

    use super::*;
    use crate::group::GroupId;
    use crate::monty::{Arithmetic, Monty};
    use num_bigint_dig::ModInverse;

    fn ifma_here() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512ifma")
    }

    /// Whether the IFMA code can run here; if not, says so (CI's log also says which).
    fn ifma_or_say_not_run() -> bool {
        let here = ifma_here();
        if !here {
            eprintln!("not run: this processor has no AVX-512 IFMA (the dispatch test covers it)");
        }
        here
    }

    /// The groups' moduli (2, 5, 8 and 10 vectors), odd ones for every other width, and an
    /// 830-bit one where R = 2^832 is exactly 4·2^830, the tightest the bound allows.
    fn moduli() -> Vec<BigUint> {
        let odd = |bits: usize| (BigUint::from(1u32) << bits) - 15u32;
        GroupId::ALL
            .into_iter()
            .chain([GroupId::TestOnly64])
            .map(|id| id.params().p().clone())
            .chain([317, 1000, 1500, 2300, 2800, 3500, 830].map(odd))
            .collect()
    }

    #[test]
    fn the_vector_arithmetic_is_chosen_exactly_where_the_processor_has_it() {
        for p in moduli() {
            let expected = if ifma_here() { Arithmetic::Avx512Ifma } else { Arithmetic::Portable };
            assert_eq!(Monty::new(&p).arithmetic(), expected);
            assert_eq!(Monty::portable(&p).arithmetic(), Arithmetic::Portable);
        }
        eprintln!("this processor: {}", Monty::new(GroupId::Ffdhe2048.params().p()).arithmetic());
    }

    #[test]
    fn products_match_the_plain_modular_product() {
        if !ifma_or_say_not_run() {
            return;
        }
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(17);
        for p in moduli() {
            let monty = Monty::new(&p);
            let ifma = monty.ifma.as_ref().expect("IFMA arithmetic here");
            let limbs = ifma.vectors * LANES;
            let r = BigUint::from(1u32) << (LIMB_BITS * limbs);
            let r_inv = r
                .mod_inverse(&p)
                .expect("R is a power of two and p is odd")
                .to_biguint()
                .expect("positive");
            let mut values: Vec<BigUint> = (0..12).map(|_| rng.gen_biguint_below(&p)).collect();
            // The extremes an almost-Montgomery product meets: 0, 1, p − 1, and values up
            // to 2p − 1 (outputs are below 2p, not reduced).
            values.extend([
                BigUint::from(0u32),
                BigUint::from(1u32),
                &p - 1u32,
                &p + 5u32,
                &p * 2u32 - 1u32,
            ]);
            for a in &values {
                for b in values.iter().take(6).chain(values.iter().skip(12)) {
                    // SAFETY: IFMA is present (checked above).
                    let got = unsafe { product_by_width(ifma, a, b) };
                    let want = (a * b * &r_inv) % &p;
                    assert!(got < &p * 2u32, "below 2p");
                    assert_eq!(got % &p, want, "{} bits", p.bits());
                }
            }
        }
    }

    #[test]
    fn exponentiation_takes_every_base_the_portable_code_takes() {
        if !ifma_or_say_not_run() {
            return;
        }
        let x = BigUint::from(0xfeed_f00d_dead_beefu64);
        for p in moduli() {
            let (fast, portable) = (Monty::new(&p), Monty::portable(&p));
            let top = (BigUint::from(1u32) << (64 * fast.limbs())) - 1u32;
            // Bases from n up to 2^(64·limbs), which the 64-bit code reduces as it goes.
            for base in [&p + 7u32, top] {
                let got = fast.pow(&base, &x.to_bytes_le(), 64);
                assert_eq!(got, base.modpow(&x, &p), "{} bits", p.bits());
                assert_eq!(got, portable.pow(&base, &x.to_bytes_le(), 64));
            }
        }
    }

    /// a·b·R⁻¹ as an integer, through [`amm`].
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn product<const V: usize>(ifma: &Ifma, a: &BigUint, b: &BigUint) -> BigUint {
        let limbs = V * LANES;
        let out = amm::<V>(
            &load(&to_limbs52(a, limbs)),
            &load(&to_limbs52(b, limbs)),
            &load(&ifma.n),
            ifma.k0,
        );
        let mut limbs52 = vec![0u64; limbs];
        store(&mut limbs52, &out);
        assert!(limbs52.iter().all(|&l| l <= MASK52), "every limb below 2^52");
        from_limbs(&from_limbs52(&limbs52, limbs * LIMB_BITS / 64 + 1))
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    fn product_by_width(ifma: &Ifma, a: &BigUint, b: &BigUint) -> BigUint {
        by_width!(ifma.vectors, product(ifma, a, b))
    }

    #[test]
    fn carries_ripple_through_runs_of_full_limbs() {
        if !ifma_or_say_not_run() {
            return;
        }
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(23);
        let full = MASK52;
        let mut cases: Vec<[u64; 16]> = vec![
            // A carry that ripples through a run of 2^52 − 1 limbs across a vector boundary.
            [full + 1, full, full, full, full, full, full, full, full, full, 7, 0, 0, 0, 0, 0],
            // Two runs, and limbs just below and above 2^52.
            [full, full + 3, full, 0, full, full - 1, full + 1, full, full, 0, 0, 0, 0, 0, 0, 0],
            [u64::MAX >> 2, full, full, full, u64::MAX >> 3, full, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ];
        for _ in 0..200 {
            let mut limbs = [0u64; 16];
            for limb in &mut limbs[..15] {
                *limb = match rng.next_u32() % 4 {
                    0 => full,
                    1 => full + 1,
                    2 => rng.next_u64() >> 2,
                    _ => rng.next_u64() & full,
                };
            }
            cases.push(limbs);
        }
        for limbs in cases {
            let value = limbs
                .iter()
                .rev()
                .fold(BigUint::from(0u32), |acc, &l| (acc << LIMB_BITS) + BigUint::from(l));
            // SAFETY: IFMA is present (checked above).
            let normalized = unsafe { normalize_limbs(&limbs) };
            assert!(normalized.iter().all(|&l| l <= MASK52));
            assert_eq!(from_limbs(&from_limbs52(&normalized, 14)), value, "{limbs:x?}");
        }
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    fn normalize_limbs(limbs: &[u64; 16]) -> Vec<u64> {
        let mut r = load::<2>(limbs);
        normalize(&mut r);
        let mut out = vec![0u64; 16];
        store(&mut out, &r);
        out
    }

    #[test]
    fn limbs52_round_trip() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        for bits in [1usize, 52, 53, 64, 104, 2048, 4096] {
            let x = rng.gen_biguint(bits);
            let limbs = (bits + 2).div_ceil(LIMB_BITS * LANES) * LANES;
            let back =
                from_limbs(&from_limbs52(&to_limbs52(&x, limbs), limbs * LIMB_BITS / 64 + 1));
            assert_eq!(back, x, "{bits} bits");
        }
    }
}
