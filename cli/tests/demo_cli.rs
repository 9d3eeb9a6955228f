//! `gka demo` as a process: `--json` prints one JSON document (the scenario's events and its
//! summary) on stdout while progress goes to stderr, and flags that contradict each other are
//! refused before anything runs.

use std::process::Command;

const GKA: &str = env!("CARGO_BIN_EXE_gka");

#[test]
fn json_is_one_document_with_the_summary_and_progress_goes_to_stderr() {
    let plugins = gka_tests::artifacts::plugin_dir();
    let out = Command::new(GKA)
        .args(["demo", "--json", "--no-adapt", "--members", "3", "--seconds", "0", "--plugins"])
        .arg(plugins)
        .output()
        .expect("gka demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(report["layer"], "daemon");
    let summary = &report["scenario"]["summary"];
    assert_eq!(summary["events"], 12, "{report:#}");
    assert_eq!(summary["distinct_keys"], 12, "{report:#}");
    assert_eq!(report["scenario"]["events"].as_array().map(Vec::len), Some(12));
    assert!(report["adaptive"].is_null());
    assert!(stderr.contains("join: waiting for"), "progress on stderr: {stderr}");
}

#[test]
fn contradictory_flags_are_refused() {
    for flags in [&["--no-adapt", "--adapt-only"][..], &["--bench", "--json"][..]] {
        let out = Command::new(GKA).arg("demo").args(flags).output().expect("gka runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} must be refused");
        assert!(stderr.contains("cannot be used with"), "{flags:?}: {stderr}");
    }
}
