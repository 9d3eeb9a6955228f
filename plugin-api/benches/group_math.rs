//! Criterion benchmarks of the shared group math: one general modular exponentiation with a
//! 256-bit exponent (ffdhe2048 and ffdhe3072; constant-time, beside the variable-time
//! `num-bigint-dig` modpow it replaced) against one fixed-base g^x through the table.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use gka_plugin_api::group::{Dh, GroupId};
use gka_plugin_api::rng::session_rng;

fn exponentiation(c: &mut Criterion) {
    for id in [GroupId::Ffdhe2048, GroupId::Ffdhe3072] {
        let dh = Dh::new(id);
        dh.group().warm_up();
        eprintln!("{id}: secret exponentiations on {}", dh.group().arithmetic());
        let mut rng = session_rng([7; 32]);
        let x = dh.random_exponent(&mut rng);
        let y = dh.random_exponent(&mut rng);
        let base = dh.blind(&y);
        c.bench_function(&format!("modexp/{id}/general-256bit"), |b| {
            b.iter(|| dh.pow(std::hint::black_box(&base), std::hint::black_box(&x)))
        });
        // The portable code, whatever the processor offers (the same as general-256bit where
        // it has no AVX-512 IFMA).
        c.bench_function(&format!("modexp/{id}/portable-256bit"), |b| {
            b.iter(|| dh.pow_portable(std::hint::black_box(&base), std::hint::black_box(&x)))
        });
        // The variable-time exponentiation gka used before, side by side (reference only).
        let p = dh.group().p().clone();
        c.bench_function(&format!("modexp/{id}/variable-time-modpow-256bit"), |b| {
            b.iter(|| {
                std::hint::black_box(&base).value().modpow(std::hint::black_box(&x).value(), &p)
            })
        });
        c.bench_function(&format!("modexp/{id}/fixed-base-g-256bit"), |b| {
            b.iter(|| dh.blind(std::hint::black_box(&x)))
        });
        let encoded = dh.encode(&base);
        c.bench_function(&format!("validate/{id}/decode-range-legendre"), |b| {
            b.iter(|| dh.decode(std::hint::black_box(&encoded)))
        });
    }
}

criterion_group!(benches, exponentiation);
criterion_main!(benches);
