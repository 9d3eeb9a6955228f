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
//! | `gka_exponentiations_total` | counter | protocol |
//!
//! The policy and switching metrics of issue 4 (`gka_protocol_switches_total`,
//! `gka_switch_aborts_total`, `gka_policy_decisions_total`, `gka_predicted_rekey_seconds`,
//! `gka_rtt_seconds`, `gka_cpu_load`, `gka_modexp_seconds`) will join them with the switch
//! protocol.

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
        .install()?;
    describe();
    Ok(())
}

fn describe() {
    describe_gauge!("gka_active_protocol", "1 for the key-agreement protocol the group runs");
    describe_gauge!("gka_group_size", "Members in the current view");
    describe_counter!("gka_view_changes_total", "Views installed");
    describe_counter!("gka_rekeys_total", "Group keys installed, by the event that caused them");
    describe_histogram!(
        "gka_rekey_duration_seconds",
        Unit::Seconds,
        "Time from a view's delivery to its new key"
    );
    describe_counter!("gka_rejected_messages_total", "Envelopes refused, by reason");
    describe_counter!("gka_exponentiations_total", "Modular exponentiations done by the plugin");
}

/// The protocol the member runs.
pub fn active_protocol(group: &str, protocol: &str) {
    gauge!("gka_active_protocol", "group" => group.to_owned(), "protocol" => protocol.to_owned())
        .set(1.0);
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

/// An envelope was refused.
pub fn rejected(group: &str, reason: &str) {
    counter!("gka_rejected_messages_total", "group" => group.to_owned(), "reason" => reason.to_owned())
        .increment(1);
}

/// The plugin did `n` more exponentiations.
pub fn exponentiations(protocol: &str, n: u64) {
    counter!("gka_exponentiations_total", "protocol" => protocol.to_owned()).increment(n);
}
