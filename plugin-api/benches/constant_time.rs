//! A dudect-style timing test (Reparaz, Balasch, Verbauwhede, "Dude, is my code constant
//! time?", 2017) of the exponentiations that take secret exponents.
//!
//! Two classes of exponent are timed in a random interleaving: the fixed exponent 1 (the
//! cheapest a variable-time exponentiation can meet: gka pads every share to 256 bits, so a
//! constant-time one does the same work), and fresh random 256-bit exponents. Welch's t statistic between the two classes' timings (after dropping the slowest
//! tenth of each, the interrupts) says whether the time depends on the exponent: |t| above
//! 4.5 is a leak. The variable-time `num-bigint-dig` modpow runs as the control, to show the
//! test finds a leak where there is one.
//!
//! `cargo bench -p gka-plugin-api --bench constant_time` (GKA_DUDECT_SAMPLES per class,
//! default 4000). A timing test on a shared machine: run it, read it, never gate CI on it.

#![allow(missing_docs)]
// A timing test reads the clock: it is not sans-IO code.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Instant;

use gka_plugin_api::group::{Dh, GroupId, Secret};
use gka_plugin_api::rand_core::RngCore;
use gka_plugin_api::rng::session_rng;
use num_bigint_dig::BigUint;

/// An exponentiation under test.
type Op<'a> = Box<dyn Fn(&Secret) + 'a>;

/// Welch's t statistic of two samples.
fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let stats = |x: &[f64]| {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var, n)
    };
    let ((ma, va, na), (mb, vb, nb)) = (stats(a), stats(b));
    (ma - mb) / (va / na + vb / nb).sqrt()
}

/// The fastest nine tenths.
fn cropped(mut x: Vec<f64>) -> Vec<f64> {
    x.sort_by(f64::total_cmp);
    x.truncate(x.len() * 9 / 10);
    x
}

/// Times `op` on class 0 (the fixed exponent) and class 1 (random exponents), interleaved at
/// random; returns |t| and the two classes' median times in µs.
fn measure(samples: usize, mut op: impl FnMut(&Secret)) -> (f64, f64, f64) {
    let mut rng = session_rng([42; 32]);
    let dh = Dh::new(GroupId::Ffdhe2048);
    let fixed = Secret::from_biguint(BigUint::from(1u32));
    let mut times = [Vec::with_capacity(samples), Vec::with_capacity(samples)];
    while times[0].len() < samples || times[1].len() < samples {
        let class = (rng.next_u32() & 1) as usize;
        if times[class].len() >= samples {
            continue;
        }
        let x = if class == 0 { fixed.clone() } else { dh.random_exponent(&mut rng) };
        let started = Instant::now();
        op(std::hint::black_box(&x));
        times[class].push(started.elapsed().as_secs_f64() * 1e6);
    }
    let [a, b] = times.map(cropped);
    let median = |x: &[f64]| x[x.len() / 2];
    (welch_t(&a, &b).abs(), median(&a), median(&b))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, with few samples.
    let quick = !std::env::args().any(|a| a == "--bench");
    let samples = std::env::var("GKA_DUDECT_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 20 } else { 4000 });
    let dh = Dh::new(GroupId::Ffdhe2048);
    dh.group().warm_up();
    let base = dh.blind(&dh.random_exponent(&mut session_rng([1; 32])));
    let p = dh.group().p().clone();
    println!("dudect-style test, ffdhe2048, {samples} samples per class (|t| > 4.5: a leak)");
    println!("secret exponentiations on {}", dh.group().arithmetic());
    println!("| operation | |t| | fixed exponent (µs) | random exponents (µs) |");
    println!("|---|---:|---:|---:|");
    let rows: [(&str, Op<'_>); 5] = [
        ("Dh::pow (constant-time)", Box::new(|x| drop(dh.pow(&base, x)))),
        ("Dh::pow_portable (constant-time)", Box::new(|x| drop(dh.pow_portable(&base, x)))),
        ("Dh::blind (constant-time table)", Box::new(|x| drop(dh.blind(x)))),
        ("Dh::invert_exponent (Fermat, constant-time)", Box::new(|x| drop(dh.invert_exponent(x)))),
        (
            "num-bigint-dig modpow (variable-time control)",
            Box::new(|x| drop(base.value().modpow(x.value(), &p))),
        ),
    ];
    for (name, op) in rows {
        let (t, fixed, random) = measure(samples, op);
        println!("| {name} | {t:.1} | {fixed:.1} | {random:.1} |");
    }
}
