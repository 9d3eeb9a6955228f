//! Decisions: which protocol the policy picks for the inputs and state, and why.

use std::collections::BTreeMap;

use gka_plugin_api::Protocol;

use gka_plugin_api::EventKind;

use super::{predict, predict_ms, Fallback, Inputs, Mode, Policy};

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
        /// `none_allowed`, `cooldown`, `min_interval`, `min_gain` or `payback`.
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
    /// Whether the allow and deny lists let the group run `protocol` (at some size).
    pub fn allows(&self, protocol: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.iter().any(|x| x.get_ref() == protocol))
            && !self.deny.iter().any(|x| x.get_ref() == protocol)
    }

    /// The protocols this policy allows for a group of `size`, among `available`.
    pub fn candidates<'a>(&self, available: &[&'a str], size: u64) -> Vec<&'a str> {
        available
            .iter()
            .copied()
            .filter(|p| self.allows(p))
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
            if let (true, Some(cur), Some(new)) = (by_cost, expected(&state.current), expected(&to))
            {
                if let Some(stay) = self.payback(protocols, inputs, &to, cur - new) {
                    return stay;
                }
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

    /// `Some(stay)` unless switching to `to`, which saves `gain_ms` per event, pays for itself
    /// within the horizon: the gain times the events expected (from the observed rates) must
    /// exceed the predicted time of `to`'s initial agreement at the current size, RTT and CPU.
    fn payback(
        &self,
        protocols: &BTreeMap<String, &dyn Protocol>,
        inputs: &Inputs,
        to: &str,
        gain_ms: f64,
    ) -> Option<Decision> {
        let new = protocols.get(to)?;
        let per_minute =
            inputs.join_rate + inputs.leave_rate + inputs.merge_rate + inputs.partition_rate;
        let horizon_s = *self.stability.horizon_s.get_ref();
        let events = per_minute / 60.0 * horizon_s;
        let cost_ms = predict_ms(&new.cost(EventKind::Initial, inputs.group_size, 0), inputs);
        if gain_ms * events > cost_ms {
            return None;
        }
        Some(Decision::stay(
            format!(
                "{to} would save {gain_ms:.1} ms per event, {:.1} ms over the {events:.1} events \
                 expected in {horizon_s:.0} s, less than its switch costs ({cost_ms:.1} ms)",
                gain_ms * events
            ),
            "payback",
        ))
    }
}
