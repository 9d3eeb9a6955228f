//! The policy file: its format, parsing and validation with line and column.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::Inputs;

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
    /// How long the observed event rates are expected to last, seconds: a cost-based switch
    /// must pay for itself within it (the predicted gain per event, times the events expected
    /// in this time, must exceed the predicted cost of the switch's own agreement).
    #[serde(default = "default_horizon")]
    pub horizon_s: Spanned<f64>,
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
fn default_horizon() -> Spanned<f64> {
    Spanned::new(0..0, 300.0)
}

impl Default for Stability {
    fn default() -> Self {
        Self {
            min_gain: default_min_gain(),
            min_interval_s: default_min_interval(),
            abort_cooldown_s: default_cooldown(),
            min_view_age_s: default_min_view_age(),
            horizon_s: default_horizon(),
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
pub type PolicyError = crate::located::Located;

use crate::located::at as error_at;

impl Policy {
    /// Parses and validates a policy; returns every problem found, with line and column.
    /// `known` lists the protocol names that exist (the loaded plugins, or [`KNOWN_PROTOCOLS`]).
    pub fn parse(text: &str, known: &[&str]) -> Result<Self, Vec<PolicyError>> {
        let policy: Self =
            toml::from_str(text).map_err(|e| vec![crate::located::toml_error(text, &e)])?;
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
        for r in &policy.rules {
            for (name, bound) in r.when.named() {
                let is_load = name == "cpu_local" || name == "cpu_worst";
                if is_load && bound.get_ref().min.is_some_and(|v| v > 1.0) {
                    let message = format!(
                        "{name} is a load from 0 to 1: rule {:?} asks for more than 1 and can \
                         never hold",
                        r.name
                    );
                    errors.push(error_at(text, bound.span(), message));
                }
            }
        }
        for (name, b) in &policy.bounds {
            if b.max_size == Some(0) {
                let message = format!("max_size = 0 forbids {} for every group", name.get_ref());
                errors.push(error_at(text, name.span(), message));
            }
        }
        let permitted: Vec<&str> = known.iter().copied().filter(|p| policy.allows(p)).collect();
        if permitted.is_empty() {
            let span = policy.deny.first().map_or(0..0, Spanned::span);
            errors.push(error_at(text, span, "allow and deny leave no protocol to run".into()));
        }
        if let Some(f) = &policy.fixed {
            if known.contains(&f.get_ref().as_str()) && !permitted.contains(&f.get_ref().as_str()) {
                let message =
                    format!("the fixed protocol {:?} is not allowed (allow/deny)", f.get_ref());
                errors.push(error_at(text, f.span(), message));
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
        for v in [&s.min_interval_s, &s.abort_cooldown_s, &s.min_view_age_s, &s.horizon_s] {
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

    pub(super) fn hold(&self, i: &Inputs) -> bool {
        self.named().into_iter().all(|(name, b)| b.get_ref().holds(i.value(name)))
    }
}

/// The longest damping duration a policy may set, seconds (a year).
pub const MAX_DURATION_S: f64 = 365.0 * 86_400.0;
