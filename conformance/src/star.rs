//! `star`: a test protocol whose agreements end on unicasts (members complete at different
//! messages), for the refresh and completion contract. It is the plugin template's protocol
//! (`examples/plugin-template/src/run.rs`, compiled here from the same file), so the suite
//! checks what authors start from.

#[path = "../../examples/plugin-template/src/run.rs"]
mod run;

pub use run::{cost, StarMsg, StarRun};

gka_plugin_api::protocol! {
    /// The star test protocol (agreements that end on unicasts).
    pub Star { name: "star", run: StarRun, cost: cost }
}
