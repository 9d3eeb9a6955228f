//! Prometheus metrics: the names, labels and help texts gka exports, and the exporter.
//!
//! Metrics are made only by the host, from runtime events and plugin counters (plugins never
//! see them). One recorder serves a whole process; [`install`] starts the HTTP listener that
//! serves `/metrics`. Histograms get explicit buckets, so they are exported as histograms (not
//! summaries).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `gka_active_protocol` | gauge (1 for the active one) | group, member, protocol |
//! | `gka_group_size` | gauge | group, member |
//! | `gka_view_changes_total` | counter | group, member |
//! | `gka_rekeys_total` | counter | group, member, protocol, event |
//! | `gka_rekey_duration_seconds` | histogram | group, member, protocol, event |
//! | `gka_rejected_messages_total` | counter | group, member, reason |
//! | `gka_key_confirmations_total` | counter (`ok`, or `mismatch` naming no one: see the log) | group, member, result |
//! | `gka_agreements_overdue_total` | counter (agreements past their deadline) | group, member |
//! | `gka_members_excluded_total` | counter (members excluded for stalling) | group, member |
//! | `gka_daemon_refused_total` | counter (at the daemon) | reason |
//! | `gka_exponentiations_total` | counter | protocol |
//! | `gka_protocol_switches_total` | counter | group, member, from, to |
//! | `gka_switch_aborts_total` | counter | group, member, reason |
//! | `gka_switch_duration_seconds` | histogram (commit to new key) | group, member, to |
//! | `gka_policy_decisions_total` | counter | group, member, chosen, reason |
//! | `gka_predicted_rekey_seconds` | gauge | group, member, protocol, event |
//! | `gka_rtt_seconds` | gauge (median to probed peers) | group, member |
//! | `gka_bandwidth_mbps` | gauge (estimate) | group, member |
//! | `gka_cpu_load` | gauge (0 to 1) | |
//! | `gka_modexp_seconds` | gauge (calibrated, refined by rekeys) | |
//!
//! **Each member counts what it sees** (`member` label): a view, a key or a switch is counted
//! once by every member it reaches, as when each member runs in a process of its own (then
//! `instance` tells them apart). A group's own count is one member's: `max by (group, ...)`,
//! never `sum`. What only one member does (the oldest member's policy decisions) and what
//! each member suffers on its own (refusals) add up with `sum`.
//!
//! **Every series exists from the member's start** at 0 for its known label values
//! ([`MemberMetrics::new`]): every protocol of its catalogue for rekeys, switches and
//! exponentiations, every refusal reason, every abort reason, and the policy's decision labels.
//! A series born at its first event would make `rate` and `increase` see nothing for that
//! first event.
//!
//! Reason labels are short and fixed (`rule:NAME`, `cost`, `fixed`, `not_allowed`,
//! `min_gain`, ... for decisions; `rejected`, `view_change` for aborts), so label sets stay
//! small; the full reasons go to the log.

use std::net::SocketAddr;

use gka_plugin_api::ViewEvent;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Label, Unit,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Bucket bounds (seconds) of the rekey-duration histogram.
pub const REKEY_BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Installs the process-wide recorder and serves `/metrics` on `addr` (on the current tokio
/// runtime if there is one, else on a thread of its own).
pub fn install(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full("gka_rekey_duration_seconds".into()), &REKEY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("gka_switch_duration_seconds".into()),
            &REKEY_BUCKETS,
        )?
        .install()?;
    describe();
    Ok(())
}

fn describe() {
    describe_gauge!("gka_active_protocol", "1 for the key-agreement protocol the group runs");
    describe_gauge!("gka_group_size", "Members in the current view");
    describe_counter!(
        "gka_key_confirmations_total",
        "Key confirmations completed, by result (mismatch: members hold different keys)"
    );
    describe_counter!("gka_agreements_overdue_total", "Agreements that ran past their deadline");
    describe_counter!("gka_members_excluded_total", "Members excluded for stalling an agreement");
    describe_counter!("gka_daemon_refused_total", "Connections and requests the daemon refused");
    describe_counter!("gka_view_changes_total", "Views installed");
    describe_counter!("gka_rekeys_total", "Group keys installed, by the event that caused them");
    describe_histogram!(
        "gka_rekey_duration_seconds",
        Unit::Seconds,
        "Time from a view's delivery to its new key"
    );
    describe_counter!("gka_rejected_messages_total", "Envelopes refused, by reason");
    describe_counter!("gka_exponentiations_total", "Modular exponentiations done by the plugin");
    describe_counter!("gka_protocol_switches_total", "Protocol switches completed");
    describe_counter!("gka_switch_aborts_total", "Protocol switches aborted, by reason");
    describe_histogram!(
        "gka_switch_duration_seconds",
        Unit::Seconds,
        "Time from a switch's commit to the new protocol's key"
    );
    describe_counter!("gka_policy_decisions_total", "Policy evaluations, by outcome and reason");
    describe_gauge!(
        "gka_predicted_rekey_seconds",
        Unit::Seconds,
        "Predicted rekey time per protocol and event, from the cost models and live inputs"
    );
    describe_gauge!("gka_rtt_seconds", Unit::Seconds, "Median round trip to probed peers");
    describe_gauge!("gka_bandwidth_mbps", "Estimated bandwidth to peers, Mbit/s");
    describe_gauge!("gka_cpu_load", "This machine's CPU load, 0 to 1");
    describe_gauge!("gka_modexp_seconds", Unit::Seconds, "Time of one modular exponentiation");
}

/// The `event` label of a rekey: the view event as the member saw it, or `switch`.
pub const REKEY_EVENTS: [&str; 8] = {
    let v = ViewEvent::ALL;
    [
        v[0].label(),
        v[1].label(),
        v[2].label(),
        v[3].label(),
        v[4].label(),
        v[5].label(),
        v[6].label(),
        "switch",
    ]
};

/// Every `reason` of `gka_rejected_messages_total` (see [`crate::envelope::Rejection::label`]).
pub const REJECTION_REASONS: [&str; 11] = [
    "too_large",
    "malformed",
    "unknown_format",
    "wrong_group",
    "unknown_sender",
    "bad_signature",
    "wrong_run",
    "wrong_view",
    "stale_epoch",
    "wrong_sender",
    "replay",
];

/// Every `reason` of `gka_switch_aborts_total`.
pub const ABORT_REASONS: [&str; 2] = ["rejected", "view_change"];

/// The `reason` labels of a decision to stay.
pub const STAY_REASONS: [&str; 7] =
    ["current", "no_rule", "none_allowed", "cooldown", "min_interval", "min_gain", "payback"];

/// One member's metrics: every series it records carries its group and member id.
#[derive(Debug, Clone)]
pub struct MemberMetrics {
    group: String,
    member: String,
}

impl MemberMetrics {
    /// The metrics of `member` in `group`, with every series of a known label value in place
    /// at 0: `protocols` are those it may run, `decision_labels` the policy's switch reasons
    /// (`fixed`, `cost`, `not_allowed`, `rule:NAME`; empty for a member without a policy).
    pub fn new(
        group: &str,
        member: &str,
        protocols: &[String],
        decision_labels: &[String],
    ) -> Self {
        let m = Self { group: group.to_owned(), member: member.to_owned() };
        counter!("gka_view_changes_total", m.labels(&[])).absolute(0);
        counter!("gka_agreements_overdue_total", m.labels(&[])).absolute(0);
        counter!("gka_members_excluded_total", m.labels(&[])).absolute(0);
        for result in ["ok", "mismatch"] {
            counter!("gka_key_confirmations_total", m.labels(&[("result", result)])).absolute(0);
        }
        for reason in REJECTION_REASONS {
            counter!("gka_rejected_messages_total", m.labels(&[("reason", reason)])).absolute(0);
        }
        for reason in ABORT_REASONS {
            counter!("gka_switch_aborts_total", m.labels(&[("reason", reason)])).absolute(0);
        }
        for p in protocols {
            counter!("gka_exponentiations_total", "protocol" => p.clone()).absolute(0);
            for event in REKEY_EVENTS {
                let labels = m.labels(&[("protocol", p), ("event", event)]);
                counter!("gka_rekeys_total", labels.clone()).absolute(0);
                // Registered, not recorded: the histogram's buckets appear at 0.
                let _ = histogram!("gka_rekey_duration_seconds", labels);
            }
            let _ = histogram!("gka_switch_duration_seconds", m.labels(&[("to", p)]));
            for from in protocols.iter().filter(|f| *f != p) {
                let labels = m.labels(&[("from", from), ("to", p)]);
                counter!("gka_protocol_switches_total", labels).absolute(0);
            }
            if !decision_labels.is_empty() {
                for reason in decision_labels.iter().map(String::as_str).chain(STAY_REASONS) {
                    let labels = m.labels(&[("chosen", p), ("reason", reason)]);
                    counter!("gka_policy_decisions_total", labels).absolute(0);
                }
            }
        }
        m
    }

    fn labels(&self, more: &[(&str, &str)]) -> Vec<Label> {
        let mut labels = vec![
            Label::new("group", self.group.clone()),
            Label::new("member", self.member.clone()),
        ];
        labels.extend(more.iter().map(|(k, v)| Label::new(k.to_string(), v.to_string())));
        labels
    }

    /// The member now runs `protocol` (and no longer `previous`, if given).
    pub fn active_protocol(&self, protocol: &str, previous: Option<&str>) {
        if let Some(p) = previous.filter(|p| *p != protocol) {
            gauge!("gka_active_protocol", self.labels(&[("protocol", p)])).set(0.0);
        }
        gauge!("gka_active_protocol", self.labels(&[("protocol", protocol)])).set(1.0);
    }

    /// A switch completed, `seconds` after its commit.
    pub fn switched(&self, from: &str, to: &str, seconds: f64) {
        counter!("gka_protocol_switches_total", self.labels(&[("from", from), ("to", to)]))
            .increment(1);
        histogram!("gka_switch_duration_seconds", self.labels(&[("to", to)])).record(seconds);
    }

    /// A switch was aborted.
    pub fn switch_aborted(&self, reason: &str) {
        counter!("gka_switch_aborts_total", self.labels(&[("reason", reason)])).increment(1);
    }

    /// The policy was evaluated: it chose `chosen` (the current protocol when it stays).
    pub fn decision(&self, chosen: &str, reason: &str) {
        let labels = self.labels(&[("chosen", chosen), ("reason", reason)]);
        counter!("gka_policy_decisions_total", labels).increment(1);
    }

    /// A predicted rekey time.
    pub fn predicted(&self, protocol: &str, event: &str, seconds: f64) {
        let labels = self.labels(&[("protocol", protocol), ("event", event)]);
        gauge!("gka_predicted_rekey_seconds", labels).set(seconds);
    }

    /// Live measurements: median round trip and bandwidth (when measured), CPU load and the
    /// time of one exponentiation (the last two are the process's, without labels).
    pub fn measurements(
        &self,
        rtt_seconds: Option<f64>,
        bandwidth_mbps: Option<f64>,
        cpu: Option<f64>,
        modexp_seconds: f64,
    ) {
        if let Some(r) = rtt_seconds {
            gauge!("gka_rtt_seconds", self.labels(&[])).set(r);
        }
        if let Some(b) = bandwidth_mbps {
            gauge!("gka_bandwidth_mbps", self.labels(&[])).set(b);
        }
        if let Some(c) = cpu {
            gauge!("gka_cpu_load").set(c);
        }
        gauge!("gka_modexp_seconds").set(modexp_seconds);
    }

    /// A view was installed.
    pub fn view(&self, size: usize) {
        counter!("gka_view_changes_total", self.labels(&[])).increment(1);
        gauge!("gka_group_size", self.labels(&[])).set(size as f64);
    }

    /// A key was installed `seconds` after the view that caused `event`.
    pub fn rekey(&self, protocol: &str, event: &str, seconds: f64) {
        let labels = self.labels(&[("protocol", protocol), ("event", event)]);
        counter!("gka_rekeys_total", labels.clone()).increment(1);
        histogram!("gka_rekey_duration_seconds", labels).record(seconds);
    }

    /// A key's confirmation completed: every member holds the same key, or not.
    pub fn key_confirmation(&self, agreed: bool) {
        let result = if agreed { "ok" } else { "mismatch" };
        counter!("gka_key_confirmations_total", self.labels(&[("result", result)])).increment(1);
    }

    /// An agreement ran past its deadline.
    pub fn agreement_overdue(&self) {
        counter!("gka_agreements_overdue_total", self.labels(&[])).increment(1);
    }

    /// `n` members were excluded for stalling an agreement.
    pub fn excluded(&self, n: usize) {
        counter!("gka_members_excluded_total", self.labels(&[])).increment(n as u64);
    }

    /// An envelope was refused.
    pub fn rejected(&self, reason: &str) {
        counter!("gka_rejected_messages_total", self.labels(&[("reason", reason)])).increment(1);
    }
}

/// The plugin did `n` more exponentiations.
pub fn exponentiations(protocol: &str, n: u64) {
    counter!("gka_exponentiations_total", "protocol" => protocol.to_owned()).increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_lists_match_the_labels_in_use() {
        let events: Vec<&str> = ViewEvent::ALL.iter().map(|e| e.label()).collect();
        assert_eq!(&REKEY_EVENTS[..7], events.as_slice());
        use crate::envelope::Rejection;
        let (s, run) = (String::new(), crate::group::GroupRun::default());
        let every = [
            Rejection::TooLarge { len: 0, max: 0 },
            Rejection::Malformed(s.clone()),
            Rejection::UnknownFormat(0),
            Rejection::WrongGroup { got: s.clone(), expected: s.clone() },
            Rejection::UnknownSender(s.clone()),
            Rejection::BadSignature(s.clone()),
            Rejection::WrongRun { got: run, current: run },
            Rejection::WrongView { got: 0, current: 0 },
            Rejection::StaleEpoch { got: 0, current: 0 },
            Rejection::WrongSender { signer: s.clone(), relay: s.clone() },
            Rejection::Replay { sender: s, seq: 0, last: 0 },
        ];
        let labels: Vec<&str> = every.iter().map(Rejection::label).collect();
        assert_eq!(labels, REJECTION_REASONS);
    }
}
