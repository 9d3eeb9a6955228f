#![no_main]
//! Fuzz target `control`: see `gka_tests::fuzzing::control`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::control(data));
