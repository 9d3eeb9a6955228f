//! The loader, end to end: the five real plugins load side by side from one directory, broken
//! libraries are each reported with a clear reason without affecting the others, and the
//! loaded plugins agree on keys across the ABI boundary.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use gka_host::loader::Registry;
use gka_host::loader::{load_plugin, LoadError};
use gka_plugin_api::{EventKind, Protocol};
use gka_tests::artifacts::{fixture_dir, library_file, plugin_dir, PLUGIN_CRATES};

const NAMES: [&str; 5] = ["bd", "ckd", "gdh", "str", "tgdh"];

fn copy_into(dir: &Path, from: &Path, crate_name: &str) {
    let file = library_file(crate_name);
    fs::copy(from.join(&file), dir.join(&file)).expect("copy library");
}

fn five_plugins_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for c in PLUGIN_CRATES {
        copy_into(dir.path(), plugin_dir(), c);
    }
    dir
}

#[test]
fn the_five_plugins_load_side_by_side() {
    let dir = five_plugins_dir();
    let registry = Registry::scan(&[dir.path().to_path_buf()]);
    assert!(registry.failures().is_empty(), "failures: {:?}", registry.failures());
    let names: Vec<&str> = registry.plugins().map(|p| p.descriptor.name.as_str()).collect();
    assert_eq!(names, NAMES);
    for p in registry.plugins() {
        assert_eq!(p.sha256.len(), 64);
        assert!(p.sha256.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(p.protocol.abi_version(), gka_host::loader::host_abi_version());
        assert!(!p.descriptor.version.is_empty());
        // The cost model answers across the boundary.
        let c = p.protocol.try_cost(EventKind::Join, 8, 0).expect("cost model");
        assert!(c.rounds >= 1, "{}: join takes at least one round", p.descriptor.name);
    }
    // Distinct libraries, distinct identities.
    let mut shas: Vec<&str> = registry.plugins().map(|p| p.sha256.as_str()).collect();
    shas.dedup();
    assert_eq!(shas.len(), 5);
}

#[test]
fn broken_libraries_are_reported_and_the_others_still_load() {
    let dir = five_plugins_dir();
    for f in ["gka-fixture-not-a-plugin", "gka-fixture-wrong-abi", "gka-fixture-panicking"] {
        copy_into(dir.path(), fixture_dir(), f);
    }
    fs::write(dir.path().join(library_file("garbage")), b"\x7fELF but not really").unwrap();
    // The same plugin twice under another file name.
    fs::copy(
        plugin_dir().join(library_file("gka-bd-plugin")),
        dir.path().join(library_file("gka-bd-plugin-copy")),
    )
    .unwrap();

    let registry = Registry::scan(&[dir.path().to_path_buf()]);
    let names: Vec<&str> = registry.plugins().map(|p| p.descriptor.name.as_str()).collect();
    assert_eq!(names, NAMES, "the real plugins still load");

    let reason = |file: &str| -> String {
        let path = dir.path().join(library_file(file));
        registry
            .failures()
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no failure recorded for {file}: {:?}", registry.failures()))
            .reason
            .clone()
    };
    assert_eq!(registry.failures().len(), 5, "{:?}", registry.failures());
    let not_a_plugin = reason("gka-fixture-not-a-plugin");
    assert!(
        not_a_plugin.contains("lib_header") || not_a_plugin.contains("symbol"),
        "{not_a_plugin}"
    );
    let wrong_abi = reason("gka-fixture-wrong-abi");
    let host_abi = format!("ABI {}", gka_host::loader::host_abi_version());
    assert!(wrong_abi.contains("ABI 999") && wrong_abi.contains(&host_abi), "{wrong_abi}");
    let panicking = reason("gka-fixture-panicking");
    assert!(
        panicking.contains("panicked") && panicking.contains("descriptor exploded"),
        "{panicking}"
    );
    let garbage = reason("garbage");
    assert!(!garbage.is_empty());
    let duplicate = reason("gka-bd-plugin-copy");
    assert!(duplicate.contains("duplicate plugin name \"bd\""), "{duplicate}");
}

#[test]
fn a_panicking_entry_point_is_an_error_value() {
    let path = fixture_dir().join(library_file("gka-fixture-panicking"));
    match load_plugin(&path) {
        Err(LoadError::Descriptor(e)) => assert_eq!(e.kind(), gka_plugin_api::ErrorKind::Panicked),
        other => panic!("expected a descriptor failure, got {other:?}"),
    }
}

#[test]
fn a_missing_plugin_directory_is_a_failure_not_an_abort() {
    let registry = Registry::scan(&[Path::new("/nonexistent/gka-plugins").to_path_buf()]);
    assert_eq!(registry.plugins().count(), 0);
    assert!(registry.failures()[0].reason.contains("cannot read plugin directory"));
}

/// The loaded plugins, shared by the scenario modules below.
fn loaded(name: &str) -> Box<dyn Protocol> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(|| Registry::scan(&[plugin_dir().to_path_buf()]));
    let plugin = registry.get(name).unwrap_or_else(|| panic!("plugin {name} not loaded"));
    Box::new((*plugin.protocol).clone())
}

/// Key agreement through the ABI boundary, for every plugin.
macro_rules! across_the_abi {
    ($($name:ident),*) => {$(
        mod $name {
            fn make() -> Box<dyn gka_plugin_api::Protocol> {
                super::loaded(stringify!($name))
            }
            #[test]
            fn initial_join_leave_merge_partition_refresh() {
                gka_tests::scenarios::initial(&make, 5);
                gka_tests::scenarios::join(&make);
                gka_tests::scenarios::merge(&make, 3);
                gka_tests::scenarios::partition(&make, 3);
                gka_tests::scenarios::refresh(&make);
            }
            #[test]
            fn known_answer_vectors_replay_through_the_abi() {
                let path = gka_tests::artifacts::workspace_root()
                    .join("plugins")
                    .join(stringify!($name))
                    .join("test_vectors/kat.json");
                gka_tests::kat::check(&make, &path);
            }
            #[test]
            fn hostile_payloads() {
                gka_tests::scenarios::hostile_payloads(&make);
            }
            #[test]
            fn heal_and_cascades() {
                gka_tests::scenarios::heal(&make);
                gka_tests::scenarios::three_cascades_in_a_row(&make);
            }
        }
    )*};
}

across_the_abi!(bd, ckd, gdh, str, tgdh);

/// A plugin built against an earlier SDK and kept as a binary (`tests/fixtures/prebuilt/`)
/// still loads into this host, whose SDK has moved on, and agrees keys: the compatibility
/// check rests on `gka-abi` alone. (The binary is Linux x86_64.)
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_plugin_built_against_a_previous_sdk_still_loads() {
    let path = gka_tests::artifacts::workspace_root()
        .join("tests/fixtures/prebuilt/libgka_fixture_previous_sdk.so");
    let protocol = load_plugin(&path).expect("the prebuilt plugin loads");
    let descriptor = protocol.descriptor();
    assert_eq!(descriptor.name, "bd-previous-sdk");
    assert_ne!(
        descriptor.version,
        gka_plugin_api::SDK_VERSION,
        "the fixture reports the SDK it was built with, which must predate this one"
    );
    let mut harness = gka_tests::Harness::new(Box::new(protocol), 5);
    let group = harness.create(&["a", "b", "c"]);
    let (key, _) = harness.settle(group).expect("an initial agreement with the old plugin");
    assert_eq!(key.view_id, 1);
}
