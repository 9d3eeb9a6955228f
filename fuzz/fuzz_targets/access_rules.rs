#![no_main]
//! Fuzz target `access_rules`: see `gka_tests::fuzzing::access_rules`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::access_rules(data));
