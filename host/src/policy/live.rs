//! Live inputs for the policy, sans-IO: round-trip and bandwidth probes to peers, the recent
//! mix of membership events, the refinement of calibrated costs from real rekeys, and the
//! group-wide view of every member's [`Report`].
//!
//! Time is always passed in as a `Duration` since some fixed start; nothing here reads a clock.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use gka_plugin_api::ViewEvent;

use serde::{Deserialize, Serialize};

use crate::policy::Inputs;

/// Peers probed per probing round.
pub const PROBES_PER_ROUND: usize = 3;

/// Padding of a bandwidth probe (every [`BANDWIDTH_EVERY`]th round): small, so probes do
/// not crowd out key agreement on slow links.
pub const BANDWIDTH_PADDING: usize = 8 * 1024;

/// One round in this many is a bandwidth round.
pub const BANDWIDTH_EVERY: u64 = 8;

/// A probe unanswered this long is forgotten (its peer may have left).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Weight of a new sample in the moving averages.
const EWMA_WEIGHT: f64 = 0.3;

/// Round trips kept per peer: the estimate is their median, so it follows a change of
/// conditions within two samples and ignores a single outlier.
pub const RTT_SAMPLES: usize = 3;

/// Below this difference between a padded and a plain round trip, the link is too fast to
/// measure with these probes: the estimate is then a lower bound at this resolution.
const MIN_PADDING_DELAY_MS: f64 = 0.05;

fn ewma(old: Option<f64>, sample: f64) -> f64 {
    old.map_or(sample, |o| o + EWMA_WEIGHT * (sample - o))
}

struct Outstanding {
    peer: String,
    sent: Duration,
    padded: bool,
}

#[derive(Default)]
struct PeerRtt {
    plain: VecDeque<f64>,
    padded: VecDeque<f64>,
    /// When its newest plain sample came.
    plain_at: Duration,
}

/// Round trips count towards the estimates only from peers sampled this recently (when any
/// are): a member probes [`PROBES_PER_ROUND`] peers a round, so in a group of a hundred a
/// peer's samples are half a minute apart, and a change of network would otherwise show only
/// after minutes.
pub const RTT_RECENT: Duration = Duration::from_secs(15);

fn push_sample(samples: &mut VecDeque<f64>, ms: f64) {
    samples.push_back(ms);
    while samples.len() > RTT_SAMPLES {
        samples.pop_front();
    }
}

fn median_of(samples: &VecDeque<f64>) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    median(&v)
}

/// Round-trip and bandwidth probes (ping/pong through the group layer).
#[derive(Default)]
pub struct Probes {
    next_nonce: u64,
    rounds: u64,
    rotation: usize,
    outstanding: BTreeMap<u64, Outstanding>,
    peers: BTreeMap<String, PeerRtt>,
    /// When the newest plain sample came, from any peer.
    newest_plain: Duration,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").field("peers", &self.peers.len()).finish_non_exhaustive()
    }
}

/// One probe to a peer: a nonce its pong must echo, and padding (for a bandwidth sample) or
/// none. The member core sends it as a control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// Echoed by the pong.
    pub nonce: u64,
    /// Zero bytes that make the probe large enough to time the link's bandwidth, or none.
    pub padding: Vec<u8>,
}

/// A member's live measurements. `None` where it has nothing measured yet.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    /// Median round-trip time to the peers it probed, ms.
    pub rtt_median_ms: Option<f64>,
    /// Worst round-trip time to the peers it probed, ms.
    pub rtt_worst_ms: Option<f64>,
    /// Estimated bandwidth, Mbit/s.
    pub bandwidth_mbps: Option<f64>,
    /// CPU load of its machine, 0 to 1.
    pub cpu_load: Option<f64>,
    /// One exponentiation, ms (calibrated at start, refined from real rekeys).
    pub exp_ms: Option<f64>,
    /// One signature, ms.
    pub sign_ms: Option<f64>,
    /// One verification, ms.
    pub verify_ms: Option<f64>,
}

impl Probes {
    /// The pings of one probing round at `now` to up to [`PROBES_PER_ROUND`] of `peers`
    /// (rotating through them), as (recipient, message).
    pub fn round(&mut self, now: Duration, peers: &[String]) -> Vec<(String, Ping)> {
        self.outstanding.retain(|_, o| now.saturating_sub(o.sent) < PROBE_TIMEOUT);
        self.peers.retain(|p, _| peers.contains(p));
        if peers.is_empty() {
            return Vec::new();
        }
        self.rounds += 1;
        let padded = self.rounds.is_multiple_of(BANDWIDTH_EVERY);
        (0..PROBES_PER_ROUND.min(peers.len()))
            .map(|_| {
                self.rotation = (self.rotation + 1) % peers.len();
                let peer = peers[self.rotation].clone();
                self.next_nonce += 1;
                let nonce = self.next_nonce;
                self.outstanding
                    .insert(nonce, Outstanding { peer: peer.clone(), sent: now, padded });
                let padding = if padded { vec![0; BANDWIDTH_PADDING] } else { Vec::new() };
                (peer, Ping { nonce, padding })
            })
            .collect()
    }

    /// A pong from `from` arrived at `now`. Pongs that answer no ping of ours, or come from
    /// another member than the one pinged, are ignored.
    pub fn on_pong(&mut self, now: Duration, from: &str, nonce: u64) {
        let Some(o) = self.outstanding.get(&nonce) else { return };
        if o.peer != from {
            return;
        }
        let o = self.outstanding.remove(&nonce).expect("present");
        let ms = now.saturating_sub(o.sent).as_secs_f64() * 1e3;
        let peer = self.peers.entry(o.peer).or_default();
        if o.padded {
            push_sample(&mut peer.padded, ms);
        } else {
            // Samples older than RTT_RECENT may predate a change of network: the new one
            // speaks for the peer alone.
            if now.saturating_sub(peer.plain_at) > RTT_RECENT {
                peer.plain.clear();
            }
            push_sample(&mut peer.plain, ms);
            peer.plain_at = now;
            self.newest_plain = now;
        }
    }

    /// Each recently sampled peer's median round trip, sorted (every peer's when none was
    /// sampled recently).
    fn plain(&self) -> Vec<f64> {
        let recent = |p: &&PeerRtt| self.newest_plain.saturating_sub(p.plain_at) <= RTT_RECENT;
        let any_recent = self.peers.values().any(|p| !p.plain.is_empty() && recent(&p));
        let mut v: Vec<f64> = self
            .peers
            .values()
            .filter(|p| !any_recent || recent(p))
            .filter_map(|p| median_of(&p.plain))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median round trip over the probed peers, ms.
    pub fn rtt_median_ms(&self) -> Option<f64> {
        median(&self.plain())
    }

    /// The worst round trip over the probed peers, ms.
    pub fn rtt_worst_ms(&self) -> Option<f64> {
        self.plain().last().copied()
    }

    /// The median bandwidth estimate over the peers with both kinds of probe, Mbit/s: the
    /// padding's bits over the extra time a padded probe took.
    pub fn bandwidth_mbps(&self) -> Option<f64> {
        let mut v: Vec<f64> = self
            .peers
            .values()
            .filter_map(|p| {
                let extra =
                    (median_of(&p.padded)? - median_of(&p.plain)?).max(MIN_PADDING_DELAY_MS);
                Some(BANDWIDTH_PADDING as f64 * 8.0 / (extra * 1e3))
            })
            .collect();
        v.sort_by(f64::total_cmp);
        median(&v)
    }
}

fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The window over which event rates are measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(120);

/// Recent membership events, for the policy's rates.
#[derive(Debug, Default)]
pub struct EventRates {
    events: VecDeque<(Duration, ViewEvent)>,
}

impl EventRates {
    /// Records an event at `now`.
    pub fn record(&mut self, now: Duration, event: ViewEvent) {
        self.events.push_back((now, event));
        while self.events.front().is_some_and(|(t, _)| now.saturating_sub(*t) > RATE_WINDOW) {
            self.events.pop_front();
        }
    }

    /// Events of `kind` per minute over the window ending at `now` (a mixed view counts for
    /// both a join and a leave).
    pub fn per_minute(&self, now: Duration, kind: ViewEvent) -> f64 {
        let count = self
            .events
            .iter()
            .filter(|(t, _)| now.saturating_sub(*t) <= RATE_WINDOW)
            .filter(|(_, e)| e.counts_as(kind))
            .count();
        count as f64 / (RATE_WINDOW.as_secs_f64() / 60.0)
    }
}

/// The cost of one exponentiation, calibrated at start and refined from real rekeys.
#[derive(Debug, Clone, Copy)]
pub struct ExpCost {
    ms: f64,
}

impl ExpCost {
    /// Starts from a calibrated figure.
    pub fn calibrated(ms: f64) -> Self {
        Self { ms }
    }

    /// Folds in a rekey that spent `busy` computing and made `exponentiations`; the time per
    /// exponentiation includes the signatures and verifications around them, which are cheap
    /// next to a 2048-bit exponentiation. Rekeys with fewer than two exponentiations are too
    /// small to say anything.
    pub fn refine(&mut self, busy: Duration, exponentiations: u64) {
        if exponentiations >= 2 {
            let sample = busy.as_secs_f64() * 1e3 / exponentiations as f64;
            self.ms = ewma(Some(self.ms), sample);
        }
    }

    /// The current estimate, ms.
    pub fn ms(self) -> f64 {
        self.ms
    }
}

/// Every member's latest report in the current view (cleared on each view, so a decision rests
/// only on reports that every member of the view saw, in the same order).
#[derive(Debug, Default)]
pub struct GroupReports {
    reports: BTreeMap<String, Report>,
}

impl GroupReports {
    /// Starts a new view.
    pub fn clear(&mut self) {
        self.reports.clear();
    }

    /// Records `from`'s report.
    pub fn insert(&mut self, from: &str, report: Report) {
        self.reports.insert(from.to_owned(), report);
    }

    /// Whether nobody has reported in this view.
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    /// Whether every one of `members` has reported in this view.
    pub fn complete(&self, members: &[String]) -> bool {
        members.iter().all(|m| self.reports.contains_key(m))
    }

    /// The policy's inputs: the medians of the members' RTT medians, exponentiation,
    /// signature and verification times; the worst RTT and CPU load; the lowest bandwidth.
    /// Figures nobody measured keep their [`Inputs::default`] values.
    pub fn inputs(&self, group_size: u64, local_cpu: Option<f64>) -> Inputs {
        let mut inputs = Inputs { group_size, ..Inputs::default() };
        let collect = |f: fn(&Report) -> Option<f64>| {
            let mut v: Vec<f64> =
                self.reports.values().filter_map(f).filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        if let Some(m) = median(&collect(|r| r.rtt_median_ms)) {
            inputs.rtt_median_ms = m;
        }
        if let Some(w) = collect(|r| r.rtt_worst_ms).last() {
            inputs.rtt_worst_ms = *w;
        }
        if let Some(b) = collect(|r| r.bandwidth_mbps).first() {
            inputs.bandwidth_mbps = *b;
        }
        if let Some(c) = collect(|r| r.cpu_load).last() {
            inputs.cpu_worst = *c;
        }
        if let Some(c) = local_cpu {
            inputs.cpu_local = c;
        }
        if let Some(e) = median(&collect(|r| r.exp_ms)) {
            inputs.exp_ms = e;
        }
        if let Some(s) = median(&collect(|r| r.sign_ms)) {
            inputs.sign_ms = s;
        }
        if let Some(v) = median(&collect(|r| r.verify_ms)) {
            inputs.verify_ms = v;
        }
        inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    #[test]
    fn probes_measure_round_trips_and_bandwidth_and_ignore_strays() {
        let peers: Vec<String> = ["b", "c"].iter().map(|s| s.to_string()).collect();
        let mut probes = Probes::default();
        let mut now = ms(0);
        for _ in 0..BANDWIDTH_EVERY * 3 {
            for (peer, ping) in probes.round(now, &peers) {
                let Ping { nonce, padding } = ping;
                // 10 ms round trips to b, 40 ms to c, plus 1 ms per 8 KiB of padding.
                let base = if peer == "b" { 10 } else { 40 };
                let extra = padding.len() as u64 / 8192;
                probes.on_pong(now + ms(base + extra), &peer, nonce);
                probes.on_pong(now + ms(1), "c", nonce + 1000); // unknown nonce
            }
            now += ms(1000);
        }
        assert_eq!(probes.rtt_worst_ms(), Some(40.0));
        assert_eq!(probes.rtt_median_ms(), Some(25.0));
        // 8 KiB in 1 ms: 65.5 Mbit/s.
        let bw = probes.bandwidth_mbps().unwrap();
        assert!((bw - 65.536).abs() < 0.01, "{bw}");
        // A pong from the wrong member does not count.
        let pings = probes.round(now, &peers);
        let (peer, Ping { nonce, .. }) = &pings[0];
        let other = if peer == "b" { "c" } else { "b" };
        probes.on_pong(now + ms(500), other, *nonce);
        assert_eq!(probes.rtt_worst_ms(), Some(40.0));
        // The estimate follows a change within two samples per peer.
        for _ in 0..2 * BANDWIDTH_EVERY {
            for (peer, ping) in probes.round(now, &peers) {
                let Ping { nonce, .. } = ping;
                probes.on_pong(now + ms(if peer == "b" { 100 } else { 40 }), &peer, nonce);
            }
            now += ms(1000);
        }
        assert_eq!(probes.rtt_median_ms(), Some(70.0));
        // Peers that left are forgotten.
        probes.round(now, &["b".to_string()]);
        assert_eq!(probes.rtt_worst_ms(), Some(100.0));
    }

    /// Answers every ping of a round after `rtt_ms`.
    fn probe_round(probes: &mut Probes, at: Duration, peers: &[String], rtt_ms: u64) {
        for (peer, ping) in probes.round(at, peers) {
            probes.on_pong(at + ms(rtt_ms), &peer, ping.nonce);
        }
    }

    #[test]
    fn round_trips_follow_a_change_of_network_within_seconds_in_a_large_group() {
        let peers: Vec<String> = (0..120).map(|i| format!("m{i}")).collect();
        let mut probes = Probes::default();
        // Three minutes on a WAN: every peer sampled a few times, 100 ms each.
        for s in 0..180 {
            probe_round(&mut probes, ms(s * 1000), &peers, 100);
        }
        assert_eq!(probes.rtt_median_ms(), Some(100.0));
        // Then a LAN: after 10 s (30 peers sampled again), the median is the LAN's, although
        // 90 peers were last sampled on the WAN.
        for s in 180..190 {
            probe_round(&mut probes, ms(s * 1000), &peers, 1);
        }
        assert_eq!(probes.rtt_median_ms(), Some(1.0));
        assert_eq!(probes.rtt_worst_ms(), Some(100.0), "the WAN's last samples are recent");
        // Once the last WAN samples are older than RTT_RECENT, the worst follows too.
        for s in 190..196 {
            probe_round(&mut probes, ms(s * 1000), &peers, 1);
        }
        assert_eq!(probes.rtt_worst_ms(), Some(1.0));
    }

    #[test]
    fn event_rates_count_the_window_only() {
        let mut rates = EventRates::default();
        rates.record(ms(0), ViewEvent::Join);
        rates.record(ms(1000), ViewEvent::Mixed);
        rates.record(ms(2000), ViewEvent::Merge);
        let minutes = RATE_WINDOW.as_secs_f64() / 60.0;
        assert_eq!(rates.per_minute(ms(2000), ViewEvent::Join), 2.0 / minutes);
        assert_eq!(rates.per_minute(ms(2000), ViewEvent::Leave), 1.0 / minutes);
        assert_eq!(rates.per_minute(ms(2000), ViewEvent::Merge), 1.0 / minutes);
        // Half a second past the window the first join has left it; the mixed view has not.
        rates.record(RATE_WINDOW + ms(500), ViewEvent::Leave);
        assert_eq!(rates.per_minute(RATE_WINDOW + ms(500), ViewEvent::Join), 1.0 / minutes);
        assert_eq!(rates.per_minute(RATE_WINDOW + ms(500), ViewEvent::Leave), 2.0 / minutes);
    }

    #[test]
    fn group_inputs_take_medians_worsts_and_defaults() {
        let mut reports = GroupReports::default();
        let r = |rtt: f64, cpu: f64, bw: f64| Report {
            rtt_median_ms: Some(rtt),
            rtt_worst_ms: Some(rtt * 2.0),
            bandwidth_mbps: Some(bw),
            cpu_load: Some(cpu),
            exp_ms: Some(rtt / 10.0),
            ..Report::default()
        };
        reports.insert("a", r(10.0, 0.1, 100.0));
        reports.insert("b", r(30.0, 0.9, 10.0));
        reports.insert("c", r(20.0, 0.2, 50.0));
        let members: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert!(reports.complete(&members));
        assert!(!reports.complete(&[members.clone(), vec!["d".into()]].concat()));
        let i = reports.inputs(3, Some(0.5));
        assert_eq!(i.group_size, 3);
        assert_eq!(i.rtt_median_ms, 20.0);
        assert_eq!(i.rtt_worst_ms, 60.0);
        assert_eq!(i.bandwidth_mbps, 10.0);
        assert_eq!(i.cpu_worst, 0.9);
        assert_eq!(i.cpu_local, 0.5);
        assert_eq!(i.exp_ms, 2.0);
        assert_eq!(i.sign_ms, Inputs::default().sign_ms);
    }

    #[test]
    fn exponentiation_cost_moves_towards_measured_rekeys() {
        let mut c = ExpCost::calibrated(1.0);
        c.refine(Duration::from_millis(100), 1);
        assert_eq!(c.ms(), 1.0, "one exponentiation says nothing");
        c.refine(Duration::from_millis(40), 20);
        assert!((c.ms() - 1.3).abs() < 1e-9, "{}", c.ms());
    }
}
