//! Builds and locates the plugin libraries tests load. `cargo test` leaves `cdylib`s only in
//! `target/<profile>/deps/`, so tests never rely on an earlier manual build: they run
//! `cargo build` themselves (a no-op when everything is fresh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The packages of the five protocol plugins' loadable libraries.
pub const PLUGIN_CRATES: [&str; 5] =
    ["gka-bd-plugin", "gka-ckd-plugin", "gka-gdh-plugin", "gka-str-plugin", "gka-tgdh-plugin"];

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(status.success(), "`cargo {}` failed", args.join(" "));
}

/// Builds the five plugins (debug profile) and returns the directory holding their libraries.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut args = vec!["build", "--lib"];
        for c in PLUGIN_CRATES {
            args.extend(["-p", c]);
        }
        cargo(&args);
        target_dir().join("debug")
    })
}

/// Builds the broken fixture libraries (`tests/fixtures`) and returns their directory.
pub fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir().join("fixtures");
        let manifest = workspace_root().join("tests/fixtures/Cargo.toml");
        cargo(&[
            "build",
            "--manifest-path",
            manifest.to_str().expect("utf-8 path"),
            "--target-dir",
            target.to_str().expect("utf-8 path"),
        ]);
        target.join("debug")
    })
}

/// The file name of a library crate's dynamic library (`libgka_bd_plugin.so` for `gka-bd-plugin`).
pub fn library_file(crate_name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}
