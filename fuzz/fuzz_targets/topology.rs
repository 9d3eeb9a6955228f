#![no_main]
//! Fuzz target `topology`: see `gka_tests::fuzzing::topology`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::topology(data));
