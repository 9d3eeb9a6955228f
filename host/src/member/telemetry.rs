//! Telemetry: what a member measures and shares, and what the oldest member decides from it.
//! Probes (round trips, bandwidth) are sent by the dispatcher's tick; reports carry each
//! member's measurements to the group in the agreed order; at a quiescent point the oldest
//! member evaluates its policy on the reports every member of the view saw, and proposes a
//! switch if it says so.

use std::time::Duration;

use gka_plugin_api::{EventKind, ViewEvent};

use super::control::{Control, Proposal, SwitchId};
use super::events::MemberEvent;
use super::switch::SwitchEvent;
use super::MemberCore;
use crate::policy::live::Report;
use crate::policy::{event_k, predict, predict_ms, Decision, Inputs, State};
use gka_plugin_api::View;

impl MemberCore {
    pub(super) fn send_report(&mut self) {
        self.last_report = Some(self.now);
        let report = Report {
            rtt_median_ms: self.probes.rtt_median_ms(),
            rtt_worst_ms: self.probes.rtt_worst_ms(),
            bandwidth_mbps: self.probes.bandwidth_mbps(),
            ..self.local.clone()
        };
        self.send_control(None, &Control::Report(report));
    }

    /// Every member has confirmed the key of a membership rekey of `kind` that began at
    /// `since` in a group of `n`: keeps how far it exceeded the running protocol's prediction
    /// under the `inputs` of that time (the confirmations' own delivery, about one round trip,
    /// is not the rekey's).
    pub(super) fn observe_rekey(
        &mut self,
        since: Duration,
        kind: EventKind,
        n: u64,
        inputs: &Inputs,
    ) {
        let Some(policy) = &self.policy else { return };
        let Some(protocol) = self.current_protocol() else { return };
        let predicted = predict_ms(&protocol.cost(kind, n, event_k(kind, n)), inputs);
        let observed = self.now.saturating_sub(since).as_secs_f64() * 1e3 - inputs.rtt_median_ms;
        let horizon_s = *policy.stability.horizon_s.get_ref();
        let name = self.protocol_name().to_owned();
        self.observed.record(self.now, &name, kind, observed, predicted, horizon_s);
    }

    /// The oldest member's policy evaluation at a quiescent point.
    pub(super) fn evaluate(&mut self, trusted: &View) {
        let Some(policy) = &self.policy else { return };
        let min_age = Duration::try_from_secs_f64(*policy.stability.min_view_age_s.get_ref())
            .unwrap_or(Duration::MAX);
        if self.now.saturating_sub(self.quiet_since) < min_age
            || self
                .last_evaluation
                .is_some_and(|l| self.now.saturating_sub(l) < self.timing.evaluate_every)
            || !self.reports.complete(&trusted.members)
        {
            return;
        }
        self.last_evaluation = Some(self.now);
        let mut inputs = self.reports.inputs(trusted.members.len() as u64, self.local.cpu_load);
        let per_minute = |kind| self.rates.per_minute(self.now, kind);
        inputs.join_rate = per_minute(ViewEvent::Join);
        inputs.leave_rate = per_minute(ViewEvent::Leave);
        inputs.merge_rate = per_minute(ViewEvent::Merge);
        inputs.partition_rate = per_minute(ViewEvent::Partition);
        let state = State {
            current: self.protocol_name().to_owned(),
            since_switch_s: self.now.saturating_sub(self.last_switch).as_secs_f64(),
            since_abort_s: self.last_abort.map(|a| self.now.saturating_sub(a).as_secs_f64()),
        };
        let horizon_s = *policy.stability.horizon_s.get_ref();
        inputs.excess_ms = self.observed.excess_ms(self.now, horizon_s);
        let catalogue = self.catalogue.clone();
        let models = catalogue.cost_models();
        let decision = policy.decide(&models, &inputs, &state);
        let predictions = predict(&models, &inputs, &policy.weights);
        let proposal = match &decision {
            Decision::Switch { to, reason, label, gain } => {
                catalogue.get(to).map(|entry| Proposal {
                    id: SwitchId { view_id: trusted.view_id, counter: self.proposals_in_view },
                    from: self.protocol.clone(),
                    to: entry.plugin.clone(),
                    reason: reason.clone(),
                    label: label.clone(),
                    gain: *gain,
                })
            }
            Decision::Stay { .. } => None,
        };
        self.events.push_back(MemberEvent::Switch(SwitchEvent::Decided {
            decision,
            predictions,
            inputs: inputs.clone(),
        }));
        if let Some(proposal) = proposal {
            self.proposals_in_view += 1;
            self.proposal_out = true;
            self.send_control(None, &Control::Propose(proposal));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::member::test_support::core_in_view;
    use crate::member::ControlTiming;

    fn recipients(core: &mut crate::member::MemberCore) -> Vec<Option<String>> {
        std::iter::from_fn(|| core.poll_outgoing()).map(|o| o.to).collect()
    }

    #[test]
    fn probes_go_to_every_peer_once_per_interval() {
        let every = Duration::from_secs(1);
        let mut core = core_in_view("a", &["a", "b", "c"])
            .with_timing(ControlTiming { probe_every: every, ..ControlTiming::default() });
        recipients(&mut core);
        core.tick(Duration::from_millis(10));
        let mut first = recipients(&mut core);
        first.sort();
        assert_eq!(first, [Some("b".to_owned()), Some("c".to_owned())], "one ping per peer");
        core.tick(Duration::from_millis(500));
        assert!(recipients(&mut core).is_empty(), "not due yet");
        core.tick(Duration::from_millis(1010));
        assert_eq!(recipients(&mut core).len(), 2, "due again");
    }

    #[test]
    fn nothing_is_reported_or_evaluated_without_a_key() {
        let mut core = core_in_view("a", &["a", "b"]);
        core.tick(Duration::from_secs(60));
        let events: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
        assert!(
            events.iter().all(|e| !matches!(e, crate::member::MemberEvent::Switch(_))),
            "no decision before the view's key: {events:?}"
        );
    }
}
