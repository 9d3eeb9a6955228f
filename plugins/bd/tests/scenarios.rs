//! Every membership scenario, driven through the in-memory harness.

gka_conformance::scenario_tests!(Box::new(gka_bd::Bd));
