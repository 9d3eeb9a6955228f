//! Criterion: the busiest member's computation for every event at n = 8, 32 and 128 (see
//! `gka_tests::bench`). `GKA_BENCH_TABLE=1` prints a Markdown table of the same instead.

#![allow(missing_docs)]

gka_tests::plugin_benches!(gka_gdh::Gdh);
