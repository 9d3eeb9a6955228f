//! Prometheus metrics: the names, labels and help texts gka exports, and the exporter.
//!
//! Metrics are made only by the host, from runtime events and plugin counters (plugins never
//! see them). One recorder serves a whole process; [`install`] starts the HTTP listener that
//! serves `/metrics`. Histograms get explicit buckets, so they are exported as histograms (not
//! summaries).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `gka_active_protocol` | gauge (1 for the active one) | group, protocol |
//! | `gka_group_size` | gauge | group |
//! | `gka_view_changes_total` | counter | group |
//! | `gka_rekeys_total` | counter | group, protocol, event |
//! | `gka_rekey_duration_seconds` | histogram | group, protocol, event |
//! | `gka_rejected_messages_total` | counter | group, reason |
//! | `gka_key_confirmations_total` | counter (`ok`, or `mismatch` naming no one: see the log) | group, result |
//! | `gka_agreements_overdue_total` | counter (agreements past their deadline) | group |
//! | `gka_members_excluded_total` | counter (members excluded for stalling) | group |
//! | `gka_daemon_refused_total` | counter (at the daemon) | reason |
//! | `gka_exponentiations_total` | counter | protocol |
//! | `gka_protocol_switches_total` | counter | group, from, to, reason |
//! | `gka_switch_aborts_total` | counter | group, reason |
//! | `gka_switch_duration_seconds` | histogram (commit to new key) | group, to |
//! | `gka_policy_decisions_total` | counter | group, chosen, reason |
//! | `gka_predicted_rekey_seconds` | gauge | group, protocol, event |
//! | `gka_rtt_seconds` | gauge (median to probed peers) | group |
//! | `gka_bandwidth_mbps` | gauge (estimate) | group |
//! | `gka_cpu_load` | gauge (0 to 1) | |
//! | `gka_modexp_seconds` | gauge (calibrated, refined by rekeys) | |
//!
//! Reason labels are short and fixed (`rule:NAME`, `cost`, `fixed`, `not_allowed`,
//! `min_gain`, ... for decisions; `rejected`, `view_change` for aborts), so label sets stay
//! small; the full reasons go to the log.

use std::net::SocketAddr;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
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
    describe_counter!("gka_protocol_switches_total", "Protocol switches completed, by reason");
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

/// The member now runs `protocol` (and no longer `previous`, if given).
pub fn active_protocol(group: &str, protocol: &str, previous: Option<&str>) {
    if let Some(p) = previous.filter(|p| *p != protocol) {
        gauge!("gka_active_protocol", "group" => group.to_owned(), "protocol" => p.to_owned())
            .set(0.0);
    }
    gauge!("gka_active_protocol", "group" => group.to_owned(), "protocol" => protocol.to_owned())
        .set(1.0);
}

/// A switch completed, `seconds` after its commit.
pub fn switched(group: &str, from: &str, to: &str, reason: &str, seconds: f64) {
    counter!(
        "gka_protocol_switches_total",
        "group" => group.to_owned(),
        "from" => from.to_owned(),
        "to" => to.to_owned(),
        "reason" => reason.to_owned()
    )
    .increment(1);
    histogram!("gka_switch_duration_seconds", "group" => group.to_owned(), "to" => to.to_owned())
        .record(seconds);
}

/// A switch was aborted.
pub fn switch_aborted(group: &str, reason: &str) {
    counter!("gka_switch_aborts_total", "group" => group.to_owned(), "reason" => reason.to_owned())
        .increment(1);
}

/// The policy was evaluated: it chose `chosen` (the current protocol when it stays).
pub fn decision(group: &str, chosen: &str, reason: &str) {
    counter!(
        "gka_policy_decisions_total",
        "group" => group.to_owned(),
        "chosen" => chosen.to_owned(),
        "reason" => reason.to_owned()
    )
    .increment(1);
}

/// A predicted rekey time.
pub fn predicted(group: &str, protocol: &str, event: &str, seconds: f64) {
    gauge!(
        "gka_predicted_rekey_seconds",
        "group" => group.to_owned(),
        "protocol" => protocol.to_owned(),
        "event" => event.to_owned()
    )
    .set(seconds);
}

/// Live measurements: median round trip and bandwidth (when measured), CPU load and the time
/// of one exponentiation.
pub fn measurements(
    group: &str,
    rtt_seconds: Option<f64>,
    bandwidth_mbps: Option<f64>,
    cpu: Option<f64>,
    modexp_seconds: f64,
) {
    if let Some(r) = rtt_seconds {
        gauge!("gka_rtt_seconds", "group" => group.to_owned()).set(r);
    }
    if let Some(b) = bandwidth_mbps {
        gauge!("gka_bandwidth_mbps", "group" => group.to_owned()).set(b);
    }
    if let Some(c) = cpu {
        gauge!("gka_cpu_load").set(c);
    }
    gauge!("gka_modexp_seconds").set(modexp_seconds);
}

/// A view was installed.
pub fn view(group: &str, size: usize) {
    counter!("gka_view_changes_total", "group" => group.to_owned()).increment(1);
    gauge!("gka_group_size", "group" => group.to_owned()).set(size as f64);
}

/// A key was installed `seconds` after the view that caused `event`.
pub fn rekey(group: &str, protocol: &str, event: &str, seconds: f64) {
    let labels = [
        ("group", group.to_owned()),
        ("protocol", protocol.to_owned()),
        ("event", event.to_owned()),
    ];
    counter!("gka_rekeys_total", &labels).increment(1);
    histogram!("gka_rekey_duration_seconds", &labels).record(seconds);
}

/// A key's confirmation completed: every member holds the same key, or not.
pub fn key_confirmation(group: &str, agreed: bool) {
    let result = if agreed { "ok" } else { "mismatch" };
    counter!("gka_key_confirmations_total", "group" => group.to_owned(), "result" => result)
        .increment(1);
}

/// An agreement ran past its deadline.
pub fn agreement_overdue(group: &str) {
    counter!("gka_agreements_overdue_total", "group" => group.to_owned()).increment(1);
}

/// `n` members were excluded for stalling an agreement.
pub fn excluded(group: &str, n: usize) {
    counter!("gka_members_excluded_total", "group" => group.to_owned()).increment(n as u64);
}

/// An envelope was refused.
pub fn rejected(group: &str, reason: &str) {
    counter!("gka_rejected_messages_total", "group" => group.to_owned(), "reason" => reason.to_owned())
        .increment(1);
}

/// The plugin did `n` more exponentiations.
pub fn exponentiations(protocol: &str, n: u64) {
    counter!("gka_exponentiations_total", "protocol" => protocol.to_owned()).increment(n);
}
