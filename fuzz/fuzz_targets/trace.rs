#![no_main]
//! Fuzz target `trace`: see `gka_tests::fuzzing::trace`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::trace(data));
