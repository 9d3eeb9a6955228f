//! `gka plugins new NAME`: a new plugin crate from the template (`examples/plugin-template`,
//! built and checked in the test suite), renamed, with its SDK dependencies pointing at a gka
//! source tree.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The template's files: (path in the new crate, text).
const TEMPLATE: [(&str, &str); 5] = [
    ("Cargo.toml", include_str!("../../../../examples/plugin-template/Cargo.toml")),
    ("README.md", include_str!("../../../../examples/plugin-template/README.md")),
    ("src/lib.rs", include_str!("../../../../examples/plugin-template/src/lib.rs")),
    ("src/run.rs", include_str!("../../../../examples/plugin-template/src/run.rs")),
    (
        "tests/conformance.rs",
        include_str!("../../../../examples/plugin-template/tests/conformance.rs"),
    ),
];

/// The gka source tree this binary was built from (its SDK crates, if still there).
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `gka plugins new`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The protocol's name: lower-case letters, digits and '-', starting with a letter (at
    /// most 32).
    name: String,
    /// Where to make the crate (default: ./gka-NAME-plugin); it must not exist.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The gka source tree whose `plugin-api/` and `conformance/` the plugin depends on
    /// (default: the one this gka was built from).
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

/// Writes the new crate.
pub(crate) fn run(args: NewArgs) -> Result<()> {
    let name = args.name;
    let valid = name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "{name:?} cannot name a protocol: use lower-case letters, digits and '-', starting \
             with a letter, at most 32 (for example `itw` or `ring-gka`)"
        );
    }
    let sdk = sdk_root(args.sdk.as_deref())?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(format!("gka-{name}-plugin")));
    if dir.exists() {
        bail!("{} already exists: give another --dir, or remove it", dir.display());
    }
    for (path, text) in TEMPLATE {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, renamed(text, &name, &sdk))
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    println!("made {} (protocol {name:?}); next:", dir.display());
    println!("  cd {} && cargo test          # the conformance suite", dir.display());
    let lib = format!("libgka_{}_plugin.so", name.replace('-', "_"));
    println!("  gka plugins check target/debug/{lib}   # the same suite, through the ABI");
    Ok(())
}

/// The gka source tree to depend on: it must hold `plugin-api/` and `conformance/`.
fn sdk_root(given: Option<&Path>) -> Result<PathBuf> {
    let root = given.unwrap_or(Path::new(BUILT_FROM));
    let holds_sdk = root.join("plugin-api/Cargo.toml").is_file()
        && root.join("conformance/Cargo.toml").is_file();
    if !holds_sdk {
        bail!(
            "{} is not a gka source tree (no plugin-api/ and conformance/ crates): give --sdk \
             DIR, the directory of a gka checkout",
            root.display()
        );
    }
    root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))
}

/// The template's text for protocol `name`, depending on the SDK at `sdk`.
fn renamed(text: &str, name: &str, sdk: &Path) -> String {
    let camel: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |c| c.to_ascii_uppercase().to_string())
                + chars.as_str()
        })
        .collect();
    text.replace("gka-template-plugin", &format!("gka-{name}-plugin"))
        .replace("gka_template_plugin", &format!("gka_{}_plugin", name.replace('-', "_")))
        .replace("name: \"template\"", &format!("name: \"{name}\""))
        .replace("Template", &camel)
        .replace("\"../../plugin-api\"", &format!("{:?}", sdk.join("plugin-api")))
        .replace("\"../../conformance\"", &format!("{:?}", sdk.join("conformance")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_renamed_throughout() {
        let sdk = Path::new("/src/gka");
        let lib = renamed(TEMPLATE[2].1, "ring-gka", sdk);
        assert!(lib.contains("pub RingGka { name: \"ring-gka\""), "{lib}");
        assert!(!lib.contains("Template") && !lib.contains("\"template\""), "{lib}");
        let manifest = renamed(TEMPLATE[0].1, "ring-gka", sdk);
        assert!(manifest.contains("name = \"gka-ring-gka-plugin\""), "{manifest}");
        assert!(manifest.contains("path = \"/src/gka/plugin-api\""), "{manifest}");
        assert!(manifest.contains("path = \"/src/gka/conformance\""), "{manifest}");
        let tests = renamed(TEMPLATE[4].1, "ring-gka", sdk);
        assert!(tests.contains("gka_ring_gka_plugin::RingGka"), "{tests}");
    }
}
