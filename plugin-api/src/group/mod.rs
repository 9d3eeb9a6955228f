//! Finite-field Diffie-Hellman group math shared by every plugin.
//!
//! gka uses the RFC 7919 safe-prime groups (see [`GroupId`]): p = 2q + 1 with q prime and the
//! generator g = 2 of order q. Secret shares are uniformly random 256-bit exponents
//! (RFC 7919, section 5.2 asks for at least 225 bits for `ffdhe2048`), which keeps every
//! exponentiation about eight times cheaper than a full-length one.
//!
//! The [`Dh`] handle is what a protocol session uses: it wraps one group, counts every modular
//! exponentiation it performs (the counter feeds the cost model checks and the host's metrics),
//! validates received elements and maps elements to exponents.
//!
//! Every exponentiation with a secret exponent is constant-time Montgomery arithmetic
//! (`monty/`, on AVX-512 IFMA where the processor has it): a fixed window over a fixed number
//! of exponent bits, each table entry read by scanning the whole table. Fixed-base exponentiation of the generator (blinding, the most
//! frequent operation of every protocol) uses a precomputed table of g^(j·2^(6i)) for every
//! 6-bit window i of a 256-bit exponent, so g^x costs 43 multiplications instead of ~256
//! squarings. Received elements are public: validating them may take variable time.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use num_bigint_dig::{BigUint, ModInverse, RandBigInt};
use num_traits::{One, ToPrimitive, Zero};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::jacobi::jacobi;
pub use crate::monty::Arithmetic;
use crate::monty::{FixedBase, Monty};
use crate::rfc7919;

/// Bits in every secret exponent (RFC 7919, section 5.2 asks for at least 225 for `ffdhe2048`).
pub const EXPONENT_BITS: usize = 256;

/// One of the standard RFC 7919 groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum GroupId {
    /// RFC 7919 Appendix A.1, a 2048-bit safe prime (the default).
    #[default]
    Ffdhe2048,
    /// RFC 7919 Appendix A.2, a 3072-bit safe prime.
    Ffdhe3072,
    /// RFC 7919 Appendix A.3, a 4096-bit safe prime.
    Ffdhe4096,
    /// A 64-bit safe prime for tests that need many cheap agreements (the random-cascade
    /// property tests, the simulator's scale mode). Its elements are encoded at ffdhe2048's
    /// length (256 bytes), so messages keep ffdhe2048's sizes. **Far too small to protect
    /// anything.** It is outside
    /// [`GroupId::ALL`], so no name or serialized form selects it: only code that names the
    /// variant can (its [`GroupId::code`] reaches loaded plugins through the ABI).
    #[doc(hidden)]
    #[serde(skip)]
    TestOnly64,
}

impl GroupId {
    /// Every supported group.
    pub const ALL: [Self; 3] = [Self::Ffdhe2048, Self::Ffdhe3072, Self::Ffdhe4096];

    /// The group's RFC 7919 name, e.g. `ffdhe2048`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ffdhe2048 => "ffdhe2048",
            Self::Ffdhe3072 => "ffdhe3072",
            Self::Ffdhe4096 => "ffdhe4096",
            Self::TestOnly64 => "test-only-64",
        }
    }

    /// Parses an RFC 7919 name such as `ffdhe3072`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }

    /// A stable numeric code, used at the plugin ABI.
    pub fn code(self) -> u16 {
        match self {
            Self::Ffdhe2048 => 2048,
            Self::Ffdhe3072 => 3072,
            Self::Ffdhe4096 => 4096,
            Self::TestOnly64 => 64,
        }
    }

    /// The group with the given [`GroupId::code`].
    pub fn from_code(code: u16) -> Option<Self> {
        // The code crosses the ABI from the host, which alone picks its sessions' group, so
        // it may name the test-only group (the simulator's scale mode loads plugins).
        Self::ALL.into_iter().chain([Self::TestOnly64]).find(|g| g.code() == code)
    }

    /// The group's parameters (built once per process).
    pub fn params(self) -> &'static FfdheGroup {
        static G2048: OnceLock<FfdheGroup> = OnceLock::new();
        static G3072: OnceLock<FfdheGroup> = OnceLock::new();
        static G4096: OnceLock<FfdheGroup> = OnceLock::new();
        static TEST64: OnceLock<FfdheGroup> = OnceLock::new();
        let (cell, hex) = match self {
            Self::Ffdhe2048 => (&G2048, rfc7919::FFDHE2048_P),
            Self::Ffdhe3072 => (&G3072, rfc7919::FFDHE3072_P),
            Self::Ffdhe4096 => (&G4096, rfc7919::FFDHE4096_P),
            Self::TestOnly64 => (&TEST64, rfc7919::TEST_ONLY_64_P),
        };
        cell.get_or_init(|| FfdheGroup::from_hex(self, hex))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a received group element was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElementError {
    /// The encoding is not exactly the group's byte length.
    #[error("element encoding is {got} bytes, the group needs exactly {expected}")]
    BadLength {
        /// Bytes received.
        got: usize,
        /// Bytes the group's fixed-length encoding has.
        expected: usize,
    },
    /// The value is 0, 1, p − 1 or not below p.
    #[error("element is outside the range 1 < y < p - 1")]
    OutOfRange,
    /// The value is not in the prime-order subgroup (its Legendre symbol is −1).
    #[error("element is not in the prime-order subgroup")]
    NotInSubgroup,
}

/// A group element (an integer modulo p), zeroized when dropped because many elements that
/// protocols handle (tree node keys, pairwise secrets) are secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Element(BigUint);

impl Element {
    /// The element as an integer.
    pub fn value(&self) -> &BigUint {
        &self.0
    }
}

impl fmt::Debug for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Elements may be secret: print only a short fingerprint.
        let digest = Sha256::digest(self.0.to_bytes_be());
        write!(f, "Element(#{})", hex::encode(&digest[..4]))
    }
}

impl Drop for Element {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// base^x mod p in the test-only group, whose p fits in 64 bits: square-and-multiply on
/// 128-bit products, with x reduced modulo q (base is in the order-q subgroup). Not constant
/// time: that group protects nothing, and exists so that simulations of thousands of members
/// (STR's members each compute up to n keys per event) cost microseconds per exponentiation.
fn small_pow(base: &BigUint, x: &BigUint, (p, q): (u64, u64)) -> BigUint {
    let mul = |a: u64, b: u64| ((u128::from(a) * u128::from(b)) % u128::from(p)) as u64;
    let mut e = (x % q).to_u64().unwrap_or(0);
    let mut b = (base % p).to_u64().unwrap_or(0);
    let mut acc = 1u64;
    while e > 0 {
        if e & 1 == 1 {
            acc = mul(acc, b);
        }
        b = mul(b, b);
        e >>= 1;
    }
    BigUint::from(acc)
}

/// The integer a fixed-width big-endian encoding holds, in as few limbs as its value needs
/// (decoding the leading zero bytes too would reserve the full width: a member that holds a
/// thousand small elements would hold four times the memory).
fn from_fixed_width(bytes: &[u8]) -> BigUint {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    BigUint::from_bytes_be(&bytes[first..])
}

/// True if the big-endian `bytes` hold the value `x` (leading zero bytes allowed).
fn big_endian_equals(bytes: &[u8], x: &BigUint) -> bool {
    if x.is_zero() {
        return bytes.iter().all(|&b| b == 0);
    }
    // num-bigint-dig's digits are u64 (its default `u64_digit` feature); the comparison
    // below stops compiling if that changes.
    const WIDTH: usize = 8;
    let mut chunks = bytes.rchunks(WIDTH);
    for i in 0..x.bits().div_ceil(8 * WIDTH) {
        let Some(chunk) = chunks.next() else {
            return false;
        };
        let value = match <[u8; 8]>::try_from(chunk) {
            Ok(full) => u64::from_be_bytes(full),
            Err(_) => chunk.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)),
        };
        if value != x.get_limb(i) {
            return false;
        }
    }
    chunks.all(|chunk| chunk.iter().all(|&b| b == 0))
}

/// An element as a member holds it between receipt and use: its own (valid by construction),
/// or a peer's whose length and range were checked on receipt and whose membership of the
/// prime-order subgroup (the Legendre symbol, the costly part of validation) is checked by
/// [`Dh::check`] when the member first uses it, once. A member thus validates every element
/// it computes with and no element it only stores or relays (a TGDH member its co-path, not
/// the whole tree; an STR member the keys next to its position, not the whole chain).
/// Equality and hashing use values, checked or not: canonical encodings are equal exactly
/// when values are.
///
/// A held element may be shared between the members of a process (a simulation's members
/// share the parts of their trees that are equal): the check is then done by whichever
/// member uses it first, and holds for all, since validity depends on the value alone.
pub struct Held {
    element: Element,
    checked: AtomicBool,
}

impl Held {
    /// True once the element is known to be valid.
    pub fn is_checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }
}

impl Clone for Held {
    fn clone(&self) -> Self {
        Self { element: self.element.clone(), checked: AtomicBool::new(self.is_checked()) }
    }
}

impl From<Element> for Held {
    fn from(element: Element) -> Self {
        Self { element, checked: AtomicBool::new(true) }
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.element == other.element
    }
}

impl Eq for Held {}

impl std::hash::Hash for Held {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.element.0.hash(state);
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_checked() { "checked" } else { "unchecked" };
        write!(f, "{:?} ({state})", self.element)
    }
}

/// A secret exponent, zeroized when dropped. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(BigUint);

impl Secret {
    /// Wraps an integer as a secret exponent.
    pub fn from_biguint(value: BigUint) -> Self {
        Self(value)
    }

    /// The exponent as an integer.
    pub fn value(&self) -> &BigUint {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Bits per window of the fixed-base table of g: 64 entries in each of 43 rows.
const FIXED_BASE_WINDOW_BITS: usize = 6;

/// The parameters of one RFC 7919 group, with its fixed-base table for g.
pub struct FfdheGroup {
    id: GroupId,
    p: BigUint,
    q: BigUint,
    g: BigUint,
    p_minus_1: BigUint,
    byte_len: usize,
    table: OnceLock<FixedBase>,
    monty: OnceLock<Monty>,
    monty_q: OnceLock<Monty>,
    monty_portable: OnceLock<Monty>,
    /// p and q when p fits in 64 bits (the test-only group): see [`small_pow`].
    small: Option<(u64, u64)>,
}

impl fmt::Debug for FfdheGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FfdheGroup").field("id", &self.id).finish()
    }
}

impl FfdheGroup {
    fn from_hex(id: GroupId, hex_lines: &[&str]) -> Self {
        let hex_p: String = hex_lines.concat();
        // The constants are compile-time literals checked by the tests below.
        let p = BigUint::parse_bytes(hex_p.as_bytes(), 16).expect("RFC 7919 constant parses");
        let p_minus_1 = &p - BigUint::one();
        let q = &p_minus_1 >> 1usize;
        // The test-only group is encoded at ffdhe2048's length, so that its messages have
        // ffdhe2048's sizes (the simulator's scale mode charges the network for them).
        let byte_len = match id {
            GroupId::TestOnly64 => GroupId::Ffdhe2048.code() as usize / 8,
            _ => p.bits().div_ceil(8),
        };
        let (table, monty, monty_q) = (OnceLock::new(), OnceLock::new(), OnceLock::new());
        let monty_portable = OnceLock::new();
        let g = BigUint::from(2u32);
        let small = p.to_u64().zip(q.to_u64());
        Self { id, p, q, g, p_minus_1, byte_len, table, monty, monty_q, monty_portable, small }
    }

    /// Which group this is.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The safe prime p.
    pub fn p(&self) -> &BigUint {
        &self.p
    }

    /// The prime order q = (p − 1) / 2 of the subgroup generated by g.
    pub fn q(&self) -> &BigUint {
        &self.q
    }

    /// The generator g = 2.
    pub fn g(&self) -> &BigUint {
        &self.g
    }

    /// The length in bytes of the fixed-length big-endian encoding of an element.
    pub fn byte_len(&self) -> usize {
        self.byte_len
    }

    /// Checks 1 < y < p − 1 and that y lies in the order-q subgroup. For a safe prime the
    /// subgroup is the set of quadratic residues, so the test is the Legendre symbol (y | p) = 1,
    /// a Jacobi-symbol computation far cheaper than y^q mod p.
    pub fn validate(&self, y: &BigUint) -> Result<(), ElementError> {
        if *y <= BigUint::one() || *y >= self.p_minus_1 {
            return Err(ElementError::OutOfRange);
        }
        if jacobi(y, &self.p) != 1 {
            return Err(ElementError::NotInSubgroup);
        }
        Ok(())
    }

    /// Decodes a fixed-length big-endian element and validates it.
    pub fn decode_element(&self, bytes: &[u8]) -> Result<Element, ElementError> {
        if bytes.len() != self.byte_len {
            return Err(ElementError::BadLength { got: bytes.len(), expected: self.byte_len });
        }
        let y = from_fixed_width(bytes);
        self.validate(&y)?;
        Ok(Element(y))
    }

    /// The fixed-length big-endian encoding of an element.
    pub fn encode_element(&self, e: &Element) -> Vec<u8> {
        let raw = e.0.to_bytes_be();
        let mut out = vec![0u8; self.byte_len - raw.len()];
        out.extend_from_slice(&raw);
        out
    }

    fn table(&self) -> &FixedBase {
        self.table
            .get_or_init(|| self.monty().fixed_base(&self.g, FIXED_BASE_WINDOW_BITS, EXPONENT_BITS))
    }

    /// Constant-time Montgomery arithmetic modulo p.
    fn monty(&self) -> &Monty {
        self.monty.get_or_init(|| Monty::new(&self.p))
    }

    /// [`Self::monty`] on 64-bit limbs whatever the processor.
    fn monty_portable(&self) -> &Monty {
        self.monty_portable.get_or_init(|| Monty::portable(&self.p))
    }

    /// Which code computes exponentiations with secret exponents on this processor.
    pub fn arithmetic(&self) -> Arithmetic {
        self.monty().arithmetic()
    }

    /// Constant-time Montgomery arithmetic modulo q (for exponents).
    fn monty_q(&self) -> &Monty {
        self.monty_q.get_or_init(|| Monty::new(&self.q))
    }

    /// Builds the fixed-base table now rather than on first use (for benchmarks and hosts that
    /// want predictable latency).
    pub fn warm_up(&self) {
        let _ = self.table();
    }
}

/// The low `bits` bits of x as exactly ⌈bits/8⌉ little-endian bytes, so that reading the
/// exponent's windows touches the same positions of a buffer of the same length for every x
/// (a short x no longer meets the end of its own encoding).
fn fixed_width_le(x: &BigUint, bits: usize) -> Vec<u8> {
    let mut raw = x.to_bytes_le();
    let mut out = vec![0u8; bits.div_ceil(8)];
    let len = raw.len().min(out.len());
    out[..len].copy_from_slice(&raw[..len]);
    raw.zeroize();
    out
}

/// a·b mod n through Montgomery form, in constant time, for a, b < n.
fn constant_time_product(monty: &Monty, a: &BigUint, b: &BigUint) -> BigUint {
    let (mut am, mut bm) = (monty.enter(a), monty.enter(b));
    let mut product = vec![0u64; monty.limbs()];
    monty.mul(&mut product, &am, &bm);
    let out = monty.leave(&product);
    am.zeroize();
    bm.zeroize();
    product.zeroize();
    out
}

/// A session's handle on its group: every exponentiation goes through it and is counted.
#[derive(Debug)]
pub struct Dh {
    group: &'static FfdheGroup,
    exponentiations: Cell<u64>,
}

impl Dh {
    /// A handle on the given group with a zeroed counter.
    pub fn new(id: GroupId) -> Self {
        Self { group: id.params(), exponentiations: Cell::new(0) }
    }

    /// The group's parameters.
    pub fn group(&self) -> &'static FfdheGroup {
        self.group
    }

    /// Modular exponentiations performed so far.
    pub fn exponentiations(&self) -> u64 {
        self.exponentiations.get()
    }

    fn count(&self) {
        self.exponentiations.set(self.exponentiations.get() + 1);
    }

    /// The generator g as an element.
    pub fn generator(&self) -> Element {
        Element(self.group.g.clone())
    }

    /// A uniformly random nonzero [`EXPONENT_BITS`]-bit secret exponent.
    pub fn random_exponent<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Secret {
        loop {
            let x = rng.gen_biguint(EXPONENT_BITS);
            if !x.is_zero() {
                return Secret(x);
            }
        }
    }

    /// g^x mod p (counted), in constant time: through the fixed-base table when x fits in
    /// 256 bits (a share), else as [`Dh::pow`] does.
    pub fn blind(&self, x: &Secret) -> Element {
        if let Some(small) = self.group.small {
            self.count();
            return Element(small_pow(&self.group.g, &x.0, small));
        }
        if x.0.bits() <= EXPONENT_BITS {
            self.count();
            let mut bytes = fixed_width_le(&x.0, EXPONENT_BITS);
            let out = self.group.monty().fixed_base_pow(self.group.table(), &bytes);
            bytes.zeroize();
            Element(out)
        } else {
            self.pow(&self.generator(), x)
        }
    }

    /// base^x mod p (counted), in constant time in x: a fixed window over all 256 bits of a
    /// share, or over all the bits of q for a longer exponent (an inverse modulo q). Which of
    /// the two widths is used is the only thing the time tells, and it is public: a protocol
    /// step uses one or the other.
    pub fn pow(&self, base: &Element, x: &Secret) -> Element {
        self.pow_on(self.group.monty(), base, x)
    }

    /// [`Dh::pow`] on the portable 64-bit code whatever the processor (counted): for
    /// benchmarks and cross-checks of the arithmetic [`FfdheGroup::arithmetic`] picked.
    pub fn pow_portable(&self, base: &Element, x: &Secret) -> Element {
        self.pow_on(self.group.monty_portable(), base, x)
    }

    fn pow_on(&self, monty: &Monty, base: &Element, x: &Secret) -> Element {
        self.count();
        if let Some(small) = self.group.small {
            return Element(small_pow(&base.0, &x.0, small));
        }
        let bits = if x.0.bits() <= EXPONENT_BITS { EXPONENT_BITS } else { self.group.q.bits() };
        let mut bytes = fixed_width_le(&x.0, bits);
        let out = monty.pow(&base.0, &bytes, bits);
        bytes.zeroize();
        Element(out)
    }

    /// base^k mod p for a small public exponent k (counted: BD's "hidden cost").
    pub fn pow_small(&self, base: &Element, k: u64) -> Element {
        self.count();
        Element(base.0.modpow(&BigUint::from(k), &self.group.p))
    }

    /// a · b mod p (not counted: a multiplication, not an exponentiation), in constant time:
    /// the operands may be secret (BD's key is a product).
    pub fn mul(&self, a: &Element, b: &Element) -> Element {
        Element(constant_time_product(self.group.monty(), &a.0, &b.0))
    }

    /// a⁻¹ mod p (not counted: an extended-Euclid inversion) of a **public** element (BD's
    /// z values): it takes variable time.
    pub fn invert(&self, a: &Element) -> Element {
        // a is a validated nonzero element of a prime field, so the inverse exists.
        let inv = (&a.0).mod_inverse(&self.group.p).and_then(|i| i.to_biguint());
        Element(inv.expect("nonzero element of a prime field is invertible"))
    }

    /// x⁻¹ mod q, for factoring a share out of an element (GDH). Full length: inherent. In
    /// constant time, as x^(q − 2) mod q (Fermat; q is prime and x ≠ 0 mod q), the exponent
    /// public and the base secret.
    pub fn invert_exponent(&self, x: &Secret) -> Secret {
        let q = &self.group.q;
        let exponent = (q - 2u32).to_bytes_le();
        let base = if x.0 >= *q { &x.0 % q } else { x.0.clone() };
        let inverse = self.group.monty_q().pow(&base, &exponent, q.bits());
        Secret(inverse)
    }

    /// x · y mod q, in constant time.
    pub fn mul_exponents(&self, x: &Secret, y: &Secret) -> Secret {
        Secret(constant_time_product(self.group.monty_q(), &x.0, &y.0))
    }

    /// Maps an element to a 256-bit exponent: SHA-256 over a domain label and the element's
    /// fixed-length encoding. Used where a protocol feeds a group element back in as an exponent
    /// (TGDH and STR node keys), keeping every exponentiation short (docs/protocols.md §9.2).
    pub fn element_to_exponent(&self, label: &str, e: &Element) -> Secret {
        let mut h = Sha256::new();
        h.update(b"gka element-to-exponent v1\0");
        h.update((label.len() as u64).to_be_bytes());
        h.update(label.as_bytes());
        h.update(self.group.encode_element(e));
        let mut digest: [u8; 32] = h.finalize().into();
        let x = BigUint::from_bytes_be(&digest);
        digest.zeroize();
        // A zero digest has probability 2^-256; map it to 1 so the exponent stays nonzero.
        if x.is_zero() {
            Secret(BigUint::one())
        } else {
            Secret(x)
        }
    }

    /// Decodes a received element, checking its length and range only: [`Dh::check`]
    /// completes its validation when it is first used (see [`Held`]).
    pub fn receive(&self, bytes: &[u8]) -> Result<Held, ElementError> {
        let g = &self.group;
        if bytes.len() != g.byte_len {
            return Err(ElementError::BadLength { got: bytes.len(), expected: g.byte_len });
        }
        let y = from_fixed_width(bytes);
        if y <= BigUint::one() || y >= g.p_minus_1 {
            return Err(ElementError::OutOfRange);
        }
        Ok(Held { element: Element(y), checked: AtomicBool::new(false) })
    }

    /// True if `bytes` encode the same value as `held` (an encoding that cannot be an
    /// element encodes none): how a member checks that a peer's copy of its own tree or chain
    /// is exactly its own, without encoding it.
    ///
    /// It compares limb by limb and allocates nothing: every member of a group checks each
    /// node of a tree it is sent this way. (A held element is in range, so bytes equal to it
    /// are an element.)
    pub fn encodes(&self, bytes: &[u8], held: &Held) -> bool {
        bytes.len() == self.group.byte_len && big_endian_equals(bytes, &held.element.0)
    }

    /// The element, validated now if it was not yet (and remembered as valid).
    pub fn check<'a>(&self, held: &'a Held) -> Result<&'a Element, ElementError> {
        if !held.is_checked() {
            self.group.validate(&held.element.0)?;
            held.checked.store(true, Ordering::Relaxed);
        }
        Ok(&held.element)
    }

    /// The fixed-length big-endian encoding of a held element, checked or not (relaying an
    /// element does not need it valid).
    pub fn encode_held(&self, held: &Held) -> Vec<u8> {
        self.group.encode_element(&held.element)
    }

    /// Decodes and validates a received element (see [`FfdheGroup::validate`]).
    pub fn decode(&self, bytes: &[u8]) -> Result<Element, ElementError> {
        self.group.decode_element(bytes)
    }

    /// The fixed-length big-endian encoding of an element.
    pub fn encode(&self, e: &Element) -> Vec<u8> {
        self.group.encode_element(e)
    }
}

#[cfg(test)]
mod tests;
