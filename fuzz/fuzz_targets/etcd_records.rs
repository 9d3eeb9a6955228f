#![no_main]
//! Fuzz target `etcd_records`: see `gka_tests::fuzzing::etcd_records`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::etcd_records(data));
