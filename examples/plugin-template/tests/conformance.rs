//! The shared conformance suite, one `#[test]` per scenario (`cargo test`).

gka_conformance::scenario_tests!(Box::new(gka_template_plugin::Template));
