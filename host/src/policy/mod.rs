//! The policy engine: which key-agreement protocol a group should run, and when to switch.
//!
//! A policy file (`policy.toml`, documented line by line at the repository root) chooses a
//! **mode**: `fixed` (one protocol), `rules` (the first matching rule wins, optionally falling
//! back to cost), or `cost` (the lowest predicted rekey time). It filters candidates with
//! allow and deny lists and per-protocol group-size bounds, and damps switching with a minimum
//! predicted gain, a minimum time between switches and a cool-down after an aborted switch.
//!
//! The predicted rekey time of a protocol for an event combines its plugin's cost model with
//! measured inputs (see `docs/design.md`):
//!
//! ```text
//! serial exps × exp time × (1 + worst CPU load) + signatures × sign time
//!   + verifications × verify time + rounds × one-way latency + bytes ÷ bandwidth
//! ```
//!
//! and the expected cost weights the events by their recent rates (or the policy's default
//! weights when nothing has been observed), plus what the running protocol's rekeys have
//! been observed to take beyond their prediction ([`observed`]). Every decision comes with
//! its reason, so it can be explained (`gka policy explain`) and counted.

mod config;
mod decide;
pub mod live;
pub mod measure;
pub mod observed;
mod predict;

pub use config::{
    Bound, Conditions, Fallback, Mode, Policy, PolicyError, Rule, SizeBounds, Stability, Weights,
    KNOWN_PROTOCOLS, MAX_DURATION_S,
};
pub use decide::{Decision, State};
pub use predict::{event_k, predict, predict_ms, Inputs, Prediction, WEIGHED_EVENTS};
