//! # gka-conformance: the conformance suite for gka key-agreement plugins
//!
//! What a plugin must pass before it runs in a gka group, in one crate that an author adds
//! with one line (its only other dependencies are the plugin SDK's own):
//!
//! ```toml
//! [dev-dependencies]
//! gka-conformance = { path = "../gka/conformance" }
//! ```
//!
//! ```ignore
//! // tests/conformance.rs: one #[test] per scenario.
//! gka_conformance::scenario_tests!(Box::new(my_plugin::MyProtocol));
//! ```
//!
//! - [`scenarios`]: the membership scenarios (initial agreement, join, leave at every
//!   position, merge, partition, heal, cascades cut after every message), the refresh and
//!   completion contract (a refresh after every number of delivered messages, two in a row),
//!   the cost model against measurements, and hostile payloads;
//! - [`report`]: the same suite as a report, failures caught with their reasons (what
//!   `gka plugins check LIB` prints for a built library, through the ABI);
//! - [`star`]: a test protocol whose agreements end on unicasts, which passes the suite;
//! - [`Harness`]: the deterministic network the scenarios run on, for scenarios of your own.
//!
//! ## The harness
//!
//! [`Harness`] drives N members of any [`Protocol`] (linked directly, or loaded from a plugin
//! library) through views and payload delivery, with no IO, no clock and no threads. Signing
//! is left to the host; the harness counts what the host would sign and verify.
//!
//! Model, following the group layer's contract (`docs/design.md`):
//! - members live in **components** (a connected group); each component has its own view id
//!   sequence drawn from one global counter, so ids only grow;
//! - a component delivers messages one at a time in one agreed order (FIFO of sending); a
//!   message sent while processing a message of wave w belongs to wave w + 1, and a round is
//!   one wave;
//! - a broadcast goes to every member of the component, **its sender included** (the sender's
//!   copy is how it learns its message was delivered in this view); a unicast goes to one member;
//! - a view change drops the component's undelivered messages (view synchrony allows "to none
//!   of them"), so a cascade can cut an agreement after any message;
//! - a refresh is handed to every member of a component at once (one point of the agreed order);
//! - each member's view lists who joined and left relative to *its own* previous view.
//!
//! Costs are measured per event: rounds, unicasts, broadcasts, bytes, total exponentiations, and
//! the serial (critical-path) exponentiations, signatures and verifications, computed with
//! Lamport-style clocks that messages carry from sender to receiver. The cost model's `bytes`
//! is not compared (it depends on the envelope the host adds).
//!
//! Big-integer arithmetic crawls unoptimised: build dependencies with `opt-level = 3` in the
//! dev profile (`[profile.dev.package."*"]`), as the plugin template does.

pub use gka_plugin_api::Protocol;

mod harness;
pub mod report;
pub mod scenarios;
pub mod star;

pub use harness::{strs, ComponentId, Harness, Measured, MAX_WAVES};
