//! Per-member computation of every event at n = 8, 32 and 128 (see `gka_tests::bench`).

fn main() {
    gka_tests::bench::report(|| Box::new(gka_gdh::Gdh));
}
