#![no_main]
//! Fuzz target `envelope`: see `gka_tests::fuzzing::envelope`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::envelope(data));
