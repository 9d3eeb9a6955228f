//! # A gka key-agreement plugin, from the template
//!
//! `run.rs` holds the protocol's logic (an `Agreement`) and its cost model; this file declares
//! the protocol's factory and exports it as a loadable library. Rename it with
//! `gka plugins new NAME` (or by hand: the package name in `Cargo.toml`, the protocol's name
//! and type below, and the crate name in `tests/conformance.rs`), then check the built
//! library with `gka plugins check target/debug/libgka_NAME_plugin.so`.

mod run;

gka_plugin_api::protocol! {
    /// The template protocol (its version and summary come from `Cargo.toml`).
    pub Template { name: "template", run: run::StarRun, cost: run::cost }
}

gka_plugin_api::export_protocol!(Template);
