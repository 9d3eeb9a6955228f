//! The policy engine: which key-agreement protocol a group should run, and when to switch.
//!
//! A policy file (`policy.toml`, documented line by line at the repository root) chooses a
//! **mode**: `fixed` (one protocol), `rules` (the first matching rule wins, optionally falling
//! back to cost), or `cost` (the lowest predicted rekey time). It filters candidates with
//! allow and deny lists and per-protocol group-size bounds, and damps switching with a minimum
//! predicted gain, a minimum time between switches and a cool-down after an aborted switch.
//!
//! The predicted rekey time of a protocol for an event combines its plugin's cost model with
//! measured inputs (see `shared/design.md`):
//!
//! ```text
//! serial exps × exp time × (1 + worst CPU load) + signatures × sign time
//!   + verifications × verify time + rounds × one-way latency + bytes ÷ bandwidth
//! ```
//!
//! and the expected cost weights the events by their recent rates (or the policy's default
//! weights when nothing has been observed). Every decision comes with its reason, so it can be
//! explained (`gka policy explain`) and counted.

use std::collections::BTreeMap;
use std::ops::Range;

use gka_plugin_api::{CostFigures, EventKind, Protocol};
use serde::Deserialize;
use toml::Spanned;

/// The five protocols gka ships; a policy may only name these or a loaded plugin.
pub const KNOWN_PROTOCOLS: [&str; 5] = ["bd", "ckd", "gdh", "str", "tgdh"];

/// How the policy chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Always the `fixed` protocol.
    Fixed,
    /// The first matching rule; then the fallback.
    Rules,
    /// The lowest expected rekey time.
    Cost,
}

/// What `rules` mode does when no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Keep the current protocol.
    #[default]
    Stay,
    /// Choose by cost.
    Cost,
}

/// An inclusive range condition; either bound may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    /// Lower bound (inclusive).
    pub min: Option<f64>,
    /// Upper bound (inclusive).
    pub max: Option<f64>,
}

impl Bound {
    fn holds(&self, x: f64) -> bool {
        self.min.is_none_or(|m| x >= m) && self.max.is_none_or(|m| x <= m)
    }
}

/// Conditions on the live inputs; all given ones must hold.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Members in the view.
    pub group_size: Option<Spanned<Bound>>,
    /// Joins per minute (recent).
    pub join_rate: Option<Spanned<Bound>>,
    /// Leaves per minute.
    pub leave_rate: Option<Spanned<Bound>>,
    /// Merges per minute.
    pub merge_rate: Option<Spanned<Bound>>,
    /// Partitions per minute.
    pub partition_rate: Option<Spanned<Bound>>,
    /// Median round-trip time among members, ms.
    pub rtt_median_ms: Option<Spanned<Bound>>,
    /// Worst round-trip time, ms.
    pub rtt_worst_ms: Option<Spanned<Bound>>,
    /// Bandwidth, Mbit/s.
    pub bandwidth_mbps: Option<Spanned<Bound>>,
    /// This member's CPU load, 0 to 1.
    pub cpu_local: Option<Spanned<Bound>>,
    /// The group's worst CPU load, 0 to 1.
    pub cpu_worst: Option<Spanned<Bound>>,
    /// Measured time of one exponentiation, ms.
    pub exp_ms: Option<Spanned<Bound>>,
    /// Measured time of one signature, ms.
    pub sign_ms: Option<Spanned<Bound>>,
    /// Measured time of one verification, ms.
    pub verify_ms: Option<Spanned<Bound>>,
}

/// One rule: when the conditions hold, run the protocol.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for reasons and metrics.
    pub name: String,
    /// The protocol to run.
    pub protocol: Spanned<String>,
    /// The conditions.
    #[serde(default)]
    pub when: Conditions,
}

/// Switching damping.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stability {
    /// Minimum predicted gain (fraction of the current protocol's expected time) before a
    /// cost-based switch.
    #[serde(default = "default_min_gain")]
    pub min_gain: Spanned<f64>,
    /// Minimum seconds between two switches.
    #[serde(default = "default_min_interval")]
    pub min_interval_s: Spanned<f64>,
    /// Seconds without switching after an aborted switch.
    #[serde(default = "default_cooldown")]
    pub abort_cooldown_s: Spanned<f64>,
    /// Seconds since the last key agreement (a view's or a switch's) ended before a switch is
    /// proposed: the group must be quiet this long.
    #[serde(default = "default_min_view_age")]
    pub min_view_age_s: Spanned<f64>,
}

fn default_min_gain() -> Spanned<f64> {
    Spanned::new(0..0, 0.2)
}
fn default_min_interval() -> Spanned<f64> {
    Spanned::new(0..0, 30.0)
}
fn default_cooldown() -> Spanned<f64> {
    Spanned::new(0..0, 60.0)
}
fn default_min_view_age() -> Spanned<f64> {
    Spanned::new(0..0, 2.0)
}

impl Default for Stability {
    fn default() -> Self {
        Self {
            min_gain: default_min_gain(),
            min_interval_s: default_min_interval(),
            abort_cooldown_s: default_cooldown(),
            min_view_age_s: default_min_view_age(),
        }
    }
}

/// Group-size bounds of one protocol.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeBounds {
    /// Smallest group it may run.
    pub min_size: Option<u64>,
    /// Largest group it may run.
    pub max_size: Option<u64>,
}

/// Default event weights when no rates have been observed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Weight of a join.
    #[serde(default = "one")]
    pub join: f64,
    /// Weight of a leave.
    #[serde(default = "one")]
    pub leave: f64,
    /// Weight of a merge.
    #[serde(default)]
    pub merge: f64,
    /// Weight of a partition.
    #[serde(default)]
    pub partition: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for Weights {
    fn default() -> Self {
        Self { join: 1.0, leave: 1.0, merge: 0.0, partition: 0.0 }
    }
}

/// A policy file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// How to choose.
    pub mode: Spanned<Mode>,
    /// The protocol of `fixed` mode.
    pub fixed: Option<Spanned<String>>,
    /// What `rules` mode does when no rule matches.
    #[serde(default)]
    pub fallback: Fallback,
    /// Only these protocols (all known ones if absent).
    pub allow: Option<Vec<Spanned<String>>>,
    /// Never these.
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    /// Switching damping.
    #[serde(default)]
    pub stability: Stability,
    /// Per-protocol group-size bounds.
    #[serde(default)]
    pub bounds: BTreeMap<Spanned<String>, SizeBounds>,
    /// Event weights for the expected cost.
    #[serde(default)]
    pub weights: Weights,
    /// Rules, in order.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

/// One problem in a policy file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    // Spans from the TOML parser fall on character boundaries; stay safe if one does not.
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn error_at(text: &str, span: Range<usize>, message: String) -> PolicyError {
    let (line, column) = position(text, span.start);
    PolicyError { line, column, message }
}

impl Policy {
    /// Parses and validates a policy; returns every problem found, with line and column.
    /// `known` lists the protocol names that exist (the loaded plugins, or [`KNOWN_PROTOCOLS`]).
    pub fn parse(text: &str, known: &[&str]) -> Result<Self, Vec<PolicyError>> {
        let policy: Self = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            vec![error_at(text, span, e.message().trim().to_owned())]
        })?;
        let mut errors = Vec::new();
        let mut check_name = |name: &Spanned<String>, what: &str| {
            if !known.contains(&name.get_ref().as_str()) {
                errors.push(error_at(
                    text,
                    name.span(),
                    format!(
                        "unknown protocol {:?} in {what} (known: {})",
                        name.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
        };
        if let Some(f) = &policy.fixed {
            check_name(f, "fixed");
        }
        for n in policy.allow.iter().flatten() {
            check_name(n, "allow");
        }
        for n in &policy.deny {
            check_name(n, "deny");
        }
        for n in policy.bounds.keys() {
            check_name(n, "bounds");
        }
        for r in &policy.rules {
            check_name(&r.protocol, &format!("rule {:?}", r.name));
        }
        if *policy.mode.get_ref() == Mode::Fixed && policy.fixed.is_none() {
            errors.push(error_at(
                text,
                policy.mode.span(),
                "mode = \"fixed\" needs `fixed = \"<protocol>\"`".into(),
            ));
        }
        for r in &policy.rules {
            for (name, bound) in r.when.named() {
                let b = bound.get_ref();
                if let (Some(lo), Some(hi)) = (b.min, b.max) {
                    if lo > hi {
                        errors.push(error_at(
                            text,
                            bound.span(),
                            format!(
                                "impossible range for {name} in rule {:?}: min {lo} > max {hi}",
                                r.name
                            ),
                        ));
                    }
                }
                if b.min.is_some_and(|v| v < 0.0) || b.max.is_some_and(|v| v < 0.0) {
                    errors.push(error_at(text, bound.span(), format!("{name} cannot be negative")));
                }
            }
        }
        for (name, b) in &policy.bounds {
            if let (Some(lo), Some(hi)) = (b.min_size, b.max_size) {
                if lo > hi {
                    errors.push(error_at(
                        text,
                        name.span(),
                        format!(
                            "impossible size bounds for {}: min_size {lo} > max_size {hi}",
                            name.get_ref()
                        ),
                    ));
                }
            }
        }
        let s = &policy.stability;
        if !(0.0..1.0).contains(s.min_gain.get_ref()) {
            errors.push(error_at(text, s.min_gain.span(), "min_gain must be in [0, 1)".into()));
        }
        for v in [&s.min_interval_s, &s.abort_cooldown_s, &s.min_view_age_s] {
            if !(0.0..=MAX_DURATION_S).contains(v.get_ref()) {
                let message = format!("a duration must be between 0 and {MAX_DURATION_S} s");
                errors.push(error_at(text, v.span(), message));
            }
        }
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }
}

impl Conditions {
    fn named(&self) -> Vec<(&'static str, &Spanned<Bound>)> {
        [
            ("group_size", &self.group_size),
            ("join_rate", &self.join_rate),
            ("leave_rate", &self.leave_rate),
            ("merge_rate", &self.merge_rate),
            ("partition_rate", &self.partition_rate),
            ("rtt_median_ms", &self.rtt_median_ms),
            ("rtt_worst_ms", &self.rtt_worst_ms),
            ("bandwidth_mbps", &self.bandwidth_mbps),
            ("cpu_local", &self.cpu_local),
            ("cpu_worst", &self.cpu_worst),
            ("exp_ms", &self.exp_ms),
            ("sign_ms", &self.sign_ms),
            ("verify_ms", &self.verify_ms),
        ]
        .into_iter()
        .filter_map(|(n, b)| b.as_ref().map(|b| (n, b)))
        .collect()
    }

    fn hold(&self, i: &Inputs) -> bool {
        self.named().into_iter().all(|(name, b)| b.get_ref().holds(i.value(name)))
    }
}

/// The longest damping duration a policy may set, seconds (a year).
pub const MAX_DURATION_S: f64 = 365.0 * 86_400.0;

/// The live inputs a decision rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// Members in the view.
    pub group_size: u64,
    /// Joins per minute.
    pub join_rate: f64,
    /// Leaves per minute.
    pub leave_rate: f64,
    /// Merges per minute.
    pub merge_rate: f64,
    /// Partitions per minute.
    pub partition_rate: f64,
    /// Median round-trip time, ms.
    pub rtt_median_ms: f64,
    /// Worst round-trip time, ms.
    pub rtt_worst_ms: f64,
    /// Bandwidth, Mbit/s.
    pub bandwidth_mbps: f64,
    /// Local CPU load.
    pub cpu_local: f64,
    /// The group's worst CPU load.
    pub cpu_worst: f64,
    /// One exponentiation, ms.
    pub exp_ms: f64,
    /// One signature, ms.
    pub sign_ms: f64,
    /// One verification, ms.
    pub verify_ms: f64,
}

impl Default for Inputs {
    fn default() -> Self {
        Self {
            group_size: 8,
            join_rate: 0.0,
            leave_rate: 0.0,
            merge_rate: 0.0,
            partition_rate: 0.0,
            rtt_median_ms: 1.0,
            rtt_worst_ms: 1.0,
            bandwidth_mbps: 1000.0,
            cpu_local: 0.0,
            cpu_worst: 0.0,
            exp_ms: 0.45,
            sign_ms: 0.02,
            verify_ms: 0.03,
        }
    }
}

impl Inputs {
    /// The input named as in the policy file.
    pub fn value(&self, name: &str) -> f64 {
        match name {
            "group_size" => self.group_size as f64,
            "join_rate" => self.join_rate,
            "leave_rate" => self.leave_rate,
            "merge_rate" => self.merge_rate,
            "partition_rate" => self.partition_rate,
            "rtt_median_ms" => self.rtt_median_ms,
            "rtt_worst_ms" => self.rtt_worst_ms,
            "bandwidth_mbps" => self.bandwidth_mbps,
            "cpu_local" => self.cpu_local,
            "cpu_worst" => self.cpu_worst,
            "exp_ms" => self.exp_ms,
            "sign_ms" => self.sign_ms,
            "verify_ms" => self.verify_ms,
            _ => f64::NAN,
        }
    }

    /// Sets an input by its policy-file name; false if there is no such input.
    pub fn set(&mut self, name: &str, v: f64) -> bool {
        match name {
            "group_size" => self.group_size = v.max(0.0) as u64,
            "join_rate" => self.join_rate = v,
            "leave_rate" => self.leave_rate = v,
            "merge_rate" => self.merge_rate = v,
            "partition_rate" => self.partition_rate = v,
            "rtt_median_ms" => self.rtt_median_ms = v,
            "rtt_worst_ms" => self.rtt_worst_ms = v,
            "bandwidth_mbps" => self.bandwidth_mbps = v,
            "cpu_local" => self.cpu_local = v,
            "cpu_worst" => self.cpu_worst = v,
            "exp_ms" => self.exp_ms = v,
            "sign_ms" => self.sign_ms = v,
            "verify_ms" => self.verify_ms = v,
            _ => return false,
        }
        true
    }
}

/// The events a decision weighs, with the sizes used for their cost (merge of 2, partition of
/// a quarter of the group).
pub const WEIGHED_EVENTS: [EventKind; 4] =
    [EventKind::Join, EventKind::Leave, EventKind::Merge, EventKind::Partition];

fn event_k(event: EventKind, n: u64) -> u64 {
    match event {
        EventKind::Merge => 2,
        EventKind::Partition => (n / 4).max(1),
        _ => 0,
    }
}

/// Predicted time of one event from a cost model and the inputs, ms.
pub fn predict_ms(c: &CostFigures, i: &Inputs) -> f64 {
    let cpu = 1.0 + i.cpu_worst.clamp(0.0, 10.0);
    let one_way_ms = i.rtt_median_ms / 2.0;
    let bytes_ms = if i.bandwidth_mbps > 0.0 {
        c.bytes as f64 * 8.0 / (i.bandwidth_mbps * 1000.0)
    } else {
        0.0
    };
    c.serial_exponentiations as f64 * i.exp_ms * cpu
        + c.signatures as f64 * i.sign_ms
        + c.verifications as f64 * i.verify_ms
        + c.rounds as f64 * one_way_ms
        + bytes_ms
}

/// A candidate's predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The protocol.
    pub protocol: String,
    /// Predicted ms per weighed event.
    pub per_event: Vec<(EventKind, f64)>,
    /// Weighted mean over the events, ms.
    pub expected_ms: f64,
}

/// Predicts every protocol's costs for the inputs.
pub fn predict(
    protocols: &BTreeMap<String, &dyn Protocol>,
    inputs: &Inputs,
    weights: &Weights,
) -> Vec<Prediction> {
    let observed = [inputs.join_rate, inputs.leave_rate, inputs.merge_rate, inputs.partition_rate];
    let w: [f64; 4] = if observed.iter().sum::<f64>() > 0.0 {
        observed
    } else {
        [weights.join, weights.leave, weights.merge, weights.partition]
    };
    let total: f64 = w.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    protocols
        .iter()
        .map(|(name, p)| {
            let n = inputs.group_size;
            let per_event: Vec<(EventKind, f64)> = WEIGHED_EVENTS
                .iter()
                .map(|&e| (e, predict_ms(&p.cost(e, n, event_k(e, n)), inputs)))
                .collect();
            let expected_ms =
                per_event.iter().zip(w).map(|((_, ms), w)| ms * w).sum::<f64>() / total;
            Prediction { protocol: name.clone(), per_event, expected_ms }
        })
        .collect()
}

/// Where the group stands when a decision is taken.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The protocol running now.
    pub current: String,
    /// Seconds since the last switch (or since the group started).
    pub since_switch_s: f64,
    /// Seconds since the last aborted switch, if any.
    pub since_abort_s: Option<f64>,
}

/// What the policy decided, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep the current protocol.
    Stay {
        /// Why.
        reason: String,
        /// A short, fixed form of the reason, for metrics labels: `current`, `no_rule`,
        /// `none_allowed`, `cooldown`, `min_interval` or `min_gain`.
        label: String,
    },
    /// Propose a switch.
    Switch {
        /// The protocol to switch to.
        to: String,
        /// Why.
        reason: String,
        /// A short form of the reason, for metrics labels: `fixed`, `rule:NAME`, `cost` or
        /// `not_allowed`.
        label: String,
        /// Predicted gain, as a fraction of the current protocol's expected time.
        gain: f64,
    },
}

impl Decision {
    fn stay(reason: String, label: &str) -> Self {
        Self::Stay { reason, label: label.to_owned() }
    }

    /// The decision's reason.
    pub fn reason(&self) -> &str {
        match self {
            Self::Stay { reason, .. } | Self::Switch { reason, .. } => reason,
        }
    }

    /// The decision's short label.
    pub fn label(&self) -> &str {
        match self {
            Self::Stay { label, .. } | Self::Switch { label, .. } => label,
        }
    }
}

impl Policy {
    /// The protocols this policy allows for a group of `size`, among `available`.
    pub fn candidates<'a>(&self, available: &[&'a str], size: u64) -> Vec<&'a str> {
        available
            .iter()
            .copied()
            .filter(|p| self.allow.as_ref().is_none_or(|a| a.iter().any(|x| x.get_ref() == p)))
            .filter(|p| !self.deny.iter().any(|x| x.get_ref() == p))
            .filter(|p| {
                self.bounds.iter().find(|(k, _)| k.get_ref() == p).is_none_or(|(_, b)| {
                    b.min_size.is_none_or(|m| size >= m) && b.max_size.is_none_or(|m| size <= m)
                })
            })
            .collect()
    }

    /// Decides, for the inputs and state, among the protocols with these cost models.
    pub fn decide(
        &self,
        protocols: &BTreeMap<String, &dyn Protocol>,
        inputs: &Inputs,
        state: &State,
    ) -> Decision {
        let names: Vec<&str> = protocols.keys().map(String::as_str).collect();
        let candidates = self.candidates(&names, inputs.group_size);
        let predictions = predict(protocols, inputs, &self.weights);
        let expected =
            |p: &str| predictions.iter().find(|x| x.protocol == p).map(|x| x.expected_ms);
        let cheapest = || {
            candidates
                .iter()
                .filter_map(|c| expected(c).map(|e| (*c, e)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
        };
        let current_allowed = candidates.contains(&state.current.as_str());
        // What the mode prefers, why (reason, label), and whether it came from cost (then the
        // gain threshold applies).
        struct Preferred {
            to: String,
            reason: String,
            label: String,
            by_cost: bool,
        }
        let prefer = |to: &str, reason: String, label: String, by_cost: bool| Preferred {
            to: to.to_owned(),
            reason,
            label,
            by_cost,
        };
        let preferred: Option<Preferred> = match self.mode.get_ref() {
            Mode::Fixed => self
                .fixed
                .as_ref()
                .filter(|f| candidates.contains(&f.get_ref().as_str()))
                .map(|f| prefer(f.get_ref(), "fixed protocol".into(), "fixed".into(), false)),
            Mode::Rules => self
                .rules
                .iter()
                .find(|r| {
                    candidates.contains(&r.protocol.get_ref().as_str()) && r.when.hold(inputs)
                })
                .map(|r| {
                    let reason = format!("rule {:?}", r.name);
                    prefer(r.protocol.get_ref(), reason, format!("rule:{}", r.name), false)
                })
                .or_else(|| match self.fallback {
                    Fallback::Cost => cheapest().map(|(p, _)| {
                        prefer(p, "no rule matched; lowest cost".into(), "cost".into(), true)
                    }),
                    Fallback::Stay => None,
                }),
            Mode::Cost => cheapest()
                .map(|(p, _)| prefer(p, "lowest predicted cost".into(), "cost".into(), true)),
        };
        let preferred = match preferred {
            Some(p) => p,
            None if current_allowed => {
                return Decision::stay("no rule matched".into(), "no_rule");
            }
            None => match cheapest() {
                Some((p, _)) => prefer(
                    p,
                    format!("{} is not allowed; lowest cost", state.current),
                    "not_allowed".into(),
                    false,
                ),
                None => {
                    return Decision::stay(
                        "no allowed protocol is available".into(),
                        "none_allowed",
                    );
                }
            },
        };
        let Preferred { to, reason, label, by_cost } = preferred;
        if to == state.current {
            return Decision::stay(format!("{reason}: already running {to}"), "current");
        }
        let gain = match (expected(&state.current), expected(&to)) {
            (Some(cur), Some(new)) if cur > 0.0 => (cur - new) / cur,
            _ => 0.0,
        };
        // The cool-down holds even off a protocol that is no longer allowed: retrying a switch
        // that some member rejects, every evaluation, would only flood the group with votes.
        if state.since_abort_s.is_some_and(|s| s < *self.stability.abort_cooldown_s.get_ref()) {
            return Decision::stay(
                format!("{reason} prefers {to}, but the cool-down after an abort is running"),
                "cooldown",
            );
        }
        if current_allowed {
            if state.since_switch_s < *self.stability.min_interval_s.get_ref() {
                return Decision::stay(
                    format!(
                        "{reason} prefers {to}, but the minimum time between switches has not \
                         passed"
                    ),
                    "min_interval",
                );
            }
            if by_cost && gain < *self.stability.min_gain.get_ref() {
                return Decision::stay(
                    format!(
                        "{reason} prefers {to}, but its gain {:.0}% is below the {:.0}% threshold",
                        gain * 100.0,
                        self.stability.min_gain.get_ref() * 100.0
                    ),
                    "min_gain",
                );
            }
        }
        Decision::Switch { to, reason, label, gain }
    }
}
