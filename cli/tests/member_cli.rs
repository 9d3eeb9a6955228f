//! `gka member` refuses to start when its trust store cannot vouch for it (no key for its id,
//! or another key than its own): such a member would only stall its group. It says why, names
//! the flag, and exits non-zero before connecting anywhere.

use std::path::Path;
use std::process::Command;

const GKA: &str = env!("CARGO_BIN_EXE_gka");

fn keygen(dir: &Path, id: &str) {
    let o = Command::new(GKA)
        .args(["keygen", "--id", id, "--out", dir.to_str().unwrap()])
        .output()
        .expect("gka runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn member(keys: &Path, trust: &Path) -> std::process::Output {
    Command::new(GKA)
        .args(["member", "--daemon", "127.0.0.1:9", "--group", "g", "--id", "a"])
        .args(["--key", keys.join("a.key").to_str().unwrap()])
        .args(["--trust", trust.to_str().unwrap()])
        .output()
        .expect("gka runs")
}

#[test]
fn a_member_its_trust_store_cannot_vouch_for_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, other, trust) =
        (dir.path().join("keys"), dir.path().join("other"), dir.path().join("trust"));
    for d in [&keys, &other, &trust] {
        std::fs::create_dir_all(d).unwrap();
    }
    keygen(&keys, "a");
    keygen(&other, "a");

    let empty = member(&keys, &trust);
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert!(!empty.status.success());
    assert!(stderr.contains("--trust") && stderr.contains("no key for \"a\""), "{stderr}");

    std::fs::copy(other.join("a.pub"), trust.join("a.pub")).unwrap();
    let wrong = member(&keys, &trust);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(stderr.contains("is not this member's key"), "{stderr}");
}
