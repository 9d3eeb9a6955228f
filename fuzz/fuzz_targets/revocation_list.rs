#![no_main]
//! Fuzz target `revocation_list`: see `gka_tests::fuzzing::revocation_list`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::revocation_list(data));
