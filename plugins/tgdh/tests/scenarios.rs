//! Every membership scenario, driven through the in-memory harness.

gka_tests::scenario_tests!(Box::new(gka_tgdh::Tgdh));
