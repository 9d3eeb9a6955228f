#![no_main]
//! Fuzz target `daemon_frames`: see `gka_tests::fuzzing::daemon_frames`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| gka_tests::fuzzing::daemon_frames(data));
