//! The shared scenario suite against `star`, the test protocol whose agreements end on
//! unicasts (members complete at different messages): the refresh and completion contract
//! holds for it as for the five protocols that end on a broadcast.

gka_conformance::scenario_tests!(Box::new(gka_conformance::star::Star));
