//! Criterion: the busiest member's computation for every event at n = 8, 32 and 128 (see
//! `gka_tests::bench`). `GKA_BENCH_TABLE=1` prints a Markdown table of the same instead.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};

fn events(c: &mut Criterion) {
    if std::env::var_os("GKA_BENCH_TABLE").is_some() {
        gka_tests::bench::report(|| Box::new(gka_bd::Bd));
        return;
    }
    gka_tests::bench::criterion_benches(c, || Box::new(gka_bd::Bd));
}

criterion_group!(benches, events);
criterion_main!(benches);
