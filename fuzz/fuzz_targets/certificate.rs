#![no_main]
//! Fuzz target `certificate`: see `gka_tests::fuzzing::certificate`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::certificate(data));
