#![no_main]
//! Fuzz target `policy`: see `gka_tests::fuzzing::policy`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::policy(data));
