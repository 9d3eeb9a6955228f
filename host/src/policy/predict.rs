//! Predicted rekey times: a plugin's cost model combined with the live inputs.

use std::collections::BTreeMap;

use gka_plugin_api::{CostFigures, EventKind, Protocol};

use super::Weights;

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
    /// What a protocol's rekeys of a kind of event have been observed to take beyond their
    /// prediction, ms, added to it (see [`super::observed`]).
    pub excess_ms: Vec<(String, EventKind, f64)>,
}

impl Inputs {
    /// The observed excess for `protocol`'s `event`, ms (0 if none).
    pub fn excess(&self, protocol: &str, event: EventKind) -> f64 {
        self.excess_ms
            .iter()
            .find(|(p, e, _)| p == protocol && *e == event)
            .map_or(0.0, |(_, _, ms)| *ms)
    }
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
            excess_ms: Vec::new(),
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

/// The size of the event a prediction assumes: 2 joining for a merge, a quarter of the group
/// leaving for a partition.
pub fn event_k(event: EventKind, n: u64) -> u64 {
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
                .map(|&e| {
                    let ms = predict_ms(&p.cost(e, n, event_k(e, n)), inputs);
                    (e, ms + inputs.excess(name, e))
                })
                .collect();
            let expected_ms =
                per_event.iter().zip(w).map(|((_, ms), w)| ms * w).sum::<f64>() / total;
            Prediction { protocol: name.clone(), per_event, expected_ms }
        })
        .collect()
}
