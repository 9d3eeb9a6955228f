//! Every input the fuzz targets keep (`fuzz/corpus/<target>/`: seeds and what the fuzzer found
//! worth keeping; `fuzz/artifacts/<target>/`: every crash input, kept after its fix) is replayed
//! through the target's body (`gka_tests::fuzzing`) on the stable toolchain: none may panic.

use std::path::PathBuf;

fn dir(kind: &str, target: &str) -> PathBuf {
    gka_tests::artifacts::workspace_root().join("fuzz").join(kind).join(target)
}

#[test]
fn every_kept_input_replays_without_a_panic() {
    let mut replayed = 0;
    for (target, run) in gka_tests::fuzzing::TARGETS {
        let corpus = dir("corpus", target);
        let entries = std::fs::read_dir(&corpus)
            .unwrap_or_else(|e| panic!("{}: {e} (every target keeps a corpus)", corpus.display()));
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        assert!(!files.is_empty(), "{} is empty", corpus.display());
        if let Ok(found) = std::fs::read_dir(dir("artifacts", target)) {
            files.extend(found.map(|e| e.unwrap().path()));
        }
        for file in files {
            let input = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(outcome.is_ok(), "{target} panicked on {}", file.display());
            replayed += 1;
        }
    }
    assert!(replayed >= gka_tests::fuzzing::TARGETS.len(), "{replayed} inputs");
}
