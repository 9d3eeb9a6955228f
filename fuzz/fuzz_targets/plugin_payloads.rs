#![no_main]
//! Fuzz target `plugin_payloads`: see `gka_tests::fuzzing::plugin_payloads`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::plugin_payloads(data));
