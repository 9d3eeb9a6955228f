//! Fixed-base exponentiation: g^x as the product of one precomputed entry per window of x,
//! each picked by reading every entry of its row, so the work is the same for every x.

use num_bigint_dig::BigUint;
use zeroize::Zeroize;

use super::{select, window, Arithmetic, Monty};

/// g^(j · 2^(w·i)) mod n in Montgomery form, for every w-bit window i of the exponent and
/// every digit j (j = 0 is one), each window's entries side by side.
#[derive(Debug)]
pub(crate) struct FixedBase {
    window_bits: usize,
    rows: Vec<Vec<u64>>,
    /// The arithmetic whose Montgomery form the rows are in.
    arithmetic: Arithmetic,
}

impl Monty {
    /// The fixed-base table of `g` (< n) for exponents of up to `exponent_bits` bits, in
    /// windows of `window_bits` bits.
    pub(crate) fn fixed_base(
        &self,
        g: &BigUint,
        window_bits: usize,
        exponent_bits: usize,
    ) -> FixedBase {
        let windows = exponent_bits.div_ceil(window_bits);
        let arithmetic = self.arithmetic();
        #[cfg(target_arch = "x86_64")]
        if let Some(ifma) = &self.ifma {
            return FixedBase {
                window_bits,
                rows: ifma.fixed_base_rows(g, window_bits, windows),
                arithmetic,
            };
        }
        let s = self.s;
        let entries = 1usize << window_bits;
        let mut base = self.enter(g);
        let rows = (0..windows)
            .map(|_| {
                let row = self.powers(&base, entries);
                // base^(2^w): the next window's base.
                let mut next = vec![0u64; s];
                self.mul(&mut next, &row[(entries - 1) * s..], &base);
                base = next;
                row
            })
            .collect();
        FixedBase { window_bits, rows, arithmetic }
    }

    /// g^x mod n for the `table` of g (built by this `Monty`) and x (little-endian bytes)
    /// below 2^(window bits · windows), in constant time.
    pub(crate) fn fixed_base_pow(&self, table: &FixedBase, x: &[u8]) -> BigUint {
        assert_eq!(
            table.arithmetic,
            self.arithmetic(),
            "a fixed-base table from another arithmetic"
        );
        #[cfg(target_arch = "x86_64")]
        if let Some(ifma) = &self.ifma {
            return ifma.fixed_base_pow(&self.n[..self.s], &table.rows, table.window_bits, x);
        }
        let s = self.s;
        let mut acc = self.one().to_vec();
        let mut picked = vec![0u64; s];
        let mut product = vec![0u64; s];
        for (i, row) in table.rows.iter().enumerate() {
            let digit = window(x, i * table.window_bits, table.window_bits);
            select(&mut picked, row, s, digit);
            self.mul(&mut product, &acc, &picked);
            std::mem::swap(&mut acc, &mut product);
        }
        let out = self.leave(&acc);
        acc.zeroize();
        picked.zeroize();
        product.zeroize();
        out
    }
}
