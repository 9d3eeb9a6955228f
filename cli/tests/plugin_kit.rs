//! The plugin kit as an author outside the project uses it: `gka plugins new` makes a crate
//! from the template, it builds outside the workspace (its own `[workspace]`), and
//! `gka plugins check` passes its library through the ABI. A copy with a deliberately wrong
//! cost model, and one whose sessions panic, fail the check with their reasons; a path that is
//! no library fails with a clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GKA: &str = env!("CARGO_BIN_EXE_gka");

fn gka(args: &[&str]) -> Output {
    Command::new(GKA).args(args).output().expect("gka runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Makes plugin `name` from the template in `dir`, applies `edit` to `src/run.rs`, builds it
/// (offline, with the workspace's lock file as its seed, into a target directory shared by the
/// kit's builds) and returns its library.
fn build(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let root = gka_tests::artifacts::workspace_root();
    let krate = dir.join(name);
    let made = gka(&["plugins", "new", name, "--dir", krate.to_str().unwrap()]);
    assert!(made.status.success(), "{}", text(&made));
    let run = krate.join("src/run.rs");
    let source = std::fs::read_to_string(&run).unwrap();
    std::fs::write(&run, edit(source)).unwrap();
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = root.join("target/plugin-kit");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--offline", "--lib"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&krate)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the plugin {name} made from the template does not build");
    target.join("debug").join(gka_tests::artifacts::library_file(&format!("gka-{name}-plugin")))
}

#[test]
fn a_plugin_from_the_template_passes_the_check_and_broken_ones_fail_with_reasons() {
    let dir = tempfile::tempdir().unwrap();

    let sound = build(dir.path(), "kit-sound", |s| s);
    let out = gka(&["plugins", "check", sound.to_str().unwrap()]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("22 passed, 0 failed"), "{report}");
    assert!(report.contains("PASS refresh: refresh after every delivery"), "{report}");
    let json = gka(&["plugins", "check", "--json", sound.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert_eq!((doc["protocol"].as_str(), doc["failed"].as_u64()), (Some("kit-sound"), Some(0)));

    let wrong_cost = build(dir.path(), "kit-cost", |s| {
        assert!(s.contains("        rounds: 2,"), "the template's cost model changed");
        s.replace("        rounds: 2,", "        rounds: 3,")
    });
    let out = gka(&["plugins", "check", wrong_cost.to_str().unwrap()]);
    let report = text(&out);
    assert!(!out.status.success(), "a wrong cost model passed: {report}");
    assert!(report.contains("FAIL cost model: cost model matches measurements"), "{report}");
    assert!(report.contains("measured") && report.contains("rounds: 3"), "{report}");
    assert!(report.contains("1 of 22 scenarios failed"), "{report}");

    let panics = build(dir.path(), "kit-panic", |s| {
        let at = "    fn on_message(&mut self, cx: &mut Cx, from: &str, msg: StarMsg) -> Result<(), SessionError> {\n";
        assert!(s.contains(at), "the template's on_message changed");
        s.replace(at, &format!("{at}        if from.ends_with('1') {{ panic!(\"deliberate panic in on_message\") }}\n"))
    });
    let out = gka(&["plugins", "check", panics.to_str().unwrap()]);
    let report = text(&out);
    assert!(!out.status.success(), "a panicking plugin passed: {report}");
    assert!(report.contains("deliberate panic in on_message"), "{report}");
    assert!(report.contains("FAIL agreement: join"), "{report}");

    // Loaded beside the built-in plugins (two directories), the new plugin is outside the
    // shipped policy's `allow` list: `gka policy check` says so.
    let dirs = format!(
        "{}:{}",
        gka_tests::artifacts::plugin_dir().display(),
        sound.parent().unwrap().display()
    );
    let policy = gka_tests::artifacts::workspace_root().join("policy.toml");
    let out = gka(&["policy", "check", policy.to_str().unwrap(), "--plugins", &dirs]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("the loaded plugin kit-sound is excluded") && said.contains("allow"),
        "{said}"
    );
    assert!(!said.contains("plugin tgdh is excluded"), "{said}");
    let missing = dir.path().join("no-such-dir");
    let out = gka(&["plugins", "list", "--plugins", missing.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("(--plugins) does not exist"));

    let none = gka(&["plugins", "check", dir.path().join("missing.so").to_str().unwrap()]);
    assert!(!none.status.success() && text(&none).contains("no plugin library at"));
    let not_a_plugin = dir.path().join("kit-sound/Cargo.toml");
    let out = gka(&["plugins", "check", not_a_plugin.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("cannot load"), "{}", text(&out));
}
