//! The whole suite as a report: every scenario run against one protocol, each failure caught
//! (scenarios fail by panicking, as tests do) and kept with its message. `gka plugins check`
//! prints it for a built plugin library.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::scenarios::{self, Factory};

/// One scenario of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// What it checks, in words.
    pub name: &'static str,
    /// What it belongs to: `agreement` (the membership scenarios), `refresh` (the refresh and
    /// completion contract), `cost model` or `hostile payloads`.
    pub part: &'static str,
    /// Runs it; it panics on failure.
    pub run: fn(Factory<'_>),
}

/// Every scenario, in the order [`scenario_tests!`](crate::scenario_tests) lists them.
pub const SUITE: [Scenario; 22] = {
    const fn s(name: &'static str, part: &'static str, run: fn(Factory<'_>)) -> Scenario {
        Scenario { name, part, run }
    }
    [
        s("initial agreement of 1", "agreement", |m| scenarios::initial(m, 1)),
        s("initial agreement of 2", "agreement", |m| scenarios::initial(m, 2)),
        s("initial agreement of 3", "agreement", |m| scenarios::initial(m, 3)),
        s("initial agreement of 5", "agreement", |m| scenarios::initial(m, 5)),
        s("initial agreement of 8", "agreement", |m| scenarios::initial(m, 8)),
        s("initial agreement of 33", "agreement", |m| scenarios::initial(m, 33)),
        s("join", "agreement", scenarios::join),
        s("leave of every position", "agreement", scenarios::leave_every_position),
        s("merge of 1", "agreement", |m| scenarios::merge(m, 1)),
        s("merge of 3", "agreement", |m| scenarios::merge(m, 3)),
        s("merge of 7", "agreement", |m| scenarios::merge(m, 7)),
        s("partition of 1", "agreement", |m| scenarios::partition(m, 1)),
        s("partition of 3", "agreement", |m| scenarios::partition(m, 3)),
        s("partition of half", "agreement", |m| scenarios::partition(m, 4)),
        s("heal of two rekeyed sides", "agreement", scenarios::heal),
        s("refresh", "refresh", scenarios::refresh),
        s("refresh after every delivery", "refresh", scenarios::refresh_after_every_delivery),
        s("two refreshes in a row", "refresh", scenarios::two_refreshes_in_a_row),
        s("cascade at every round", "agreement", scenarios::cascade_at_every_round),
        s("three cascades in a row", "agreement", scenarios::three_cascades_in_a_row),
        s("cost model matches measurements", "cost model", scenarios::cost_model_matches),
        s("hostile payloads are refused", "hostile payloads", scenarios::hostile_payloads),
    ]
};

/// How one scenario went.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario.
    pub scenario: Scenario,
    /// `None` if it passed, else why it failed.
    pub failure: Option<String>,
    /// How long it took.
    pub took: Duration,
}

/// Runs every scenario of [`SUITE`] against the protocols `make` makes, calling `each` as each
/// one ends. Panics inside a scenario are caught (and not printed): they are its failure.
pub fn run(make: Factory<'_>, each: impl FnMut(&Outcome)) -> Vec<Outcome> {
    run_scenarios(make, &SUITE, each)
}

/// As [`run`], for some scenarios only.
pub fn run_scenarios(
    make: Factory<'_>,
    scenarios: &[Scenario],
    mut each: impl FnMut(&Outcome),
) -> Vec<Outcome> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut outcomes = Vec::new();
    for &scenario in scenarios {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| (scenario.run)(make)));
        let failure = result.err().map(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "it panicked".to_owned())
        });
        let outcome = Outcome { scenario, failure, took: started.elapsed() };
        each(&outcome);
        outcomes.push(outcome);
    }
    std::panic::set_hook(quiet);
    outcomes
}

#[cfg(test)]
mod tests {
    use gka_plugin_api::{
        CostFigures, Descriptor, EventKind, Session, SessionConfig, SessionError,
    };

    use super::*;
    use crate::star::Star;
    use crate::Protocol;

    /// The star protocol with a cost model one round off.
    struct WrongCost;

    impl Protocol for WrongCost {
        fn descriptor(&self) -> Descriptor {
            Star.descriptor()
        }
        fn cost(&self, event: EventKind, n: u64, k: u64) -> CostFigures {
            CostFigures { rounds: Star.cost(event, n, k).rounds + 1, ..Star.cost(event, n, k) }
        }
        fn new_session(&self, config: SessionConfig) -> Result<Box<dyn Session>, SessionError> {
            Star.new_session(config)
        }
    }

    #[test]
    fn failures_are_caught_with_their_reasons() {
        let some: Vec<Scenario> =
            SUITE.iter().copied().filter(|s| s.name == "join" || s.part == "cost model").collect();
        let sound = run_scenarios(&|| Box::new(Star), &some, |_| {});
        assert!(sound.iter().all(|o| o.failure.is_none()), "{sound:?}");
        let wrong = run_scenarios(&|| Box::new(WrongCost), &some, |_| {});
        let cost = wrong.iter().find(|o| o.scenario.part == "cost model").unwrap();
        let why = cost.failure.as_deref().unwrap_or_default();
        assert!(why.contains("cost model mismatches") && why.contains("rounds: 3"), "{why}");
        assert!(wrong.iter().any(|o| o.failure.is_none()), "the join still passes");
    }
}
