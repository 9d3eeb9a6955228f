//! `gka bench adaptive`: replays a trace of membership events and changing conditions in the
//! simulator, once with each fixed protocol and once with the adaptive policy (whose
//! switches, votes and probes are simulated too, and whose switch costs count), and compares
//! them with an oracle that picks the best protocol for each event.
//!
//! A trace (TOML):
//!
//! ```toml
//! name = "mixed"
//! network = "lan"        # lan, wan, or a topology file (relative to the trace)
//! start = "tgdh"         # the protocol the group starts with (default tgdh)
//! tail_s = 60            # how long to run after the last step (default 60)
//!
//! [[step]]
//! at_s = 0
//! join = 4               # members that join together (one view)
//!
//! [[step]]
//! at_s = 60
//! network = "wan"        # conditions change
//! cpu = 0.9              # every machine's CPU load (calls take 1 + load times as long)
//! leave = 2              # the newest members leave together
//!
//! [[step]]
//! at_s = 90
//! leave_random = 3       # members chosen uniformly (by the replay's seed) leave together
//!
//! [[step]]
//! at_s = 120
//! leave_oldest = 1       # the oldest member leaves
//! ```
//!
//! The leavers of one step leave together (one view): newest, then oldest, then random ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gka_plugin_api::GroupId;
use serde::Deserialize;

use super::{Control, CostMode, Sim, SimConfig, SimError, SwitchOverhead, Topology};
pub use crate::evaluation::{evaluate, markdown, Evaluation};
use gka_host::member::ControlTiming;
use gka_host::member::{Catalogue, SwitchEvent};
use gka_host::policy::Policy;

/// One step of a trace.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// When, seconds from the start.
    pub at_s: f64,
    /// Members joining together.
    #[serde(default)]
    pub join: usize,
    /// The newest members leaving together.
    #[serde(default)]
    pub leave: usize,
    /// Members chosen uniformly at random (by the replay's seed) leaving together.
    #[serde(default)]
    pub leave_random: usize,
    /// The oldest members leaving together.
    #[serde(default)]
    pub leave_oldest: usize,
    /// The network from now on.
    pub network: Option<String>,
    /// The CPU load from now on.
    pub cpu: Option<f64>,
}

/// A trace (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// Its name.
    pub name: String,
    /// The network at the start.
    pub network: String,
    /// The protocol the group starts with.
    #[serde(default = "default_start")]
    pub start: String,
    /// Seconds to run after the last step.
    #[serde(default = "default_tail")]
    pub tail_s: f64,
    /// The steps, in time order.
    pub step: Vec<Step>,
}

fn default_start() -> String {
    "tgdh".into()
}

fn default_tail() -> f64 {
    60.0
}

/// Why a trace was refused.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Not valid TOML, or not this format.
    #[error("{0}")]
    Parse(String),
    /// Valid TOML that cannot be replayed.
    #[error("{0}")]
    Invalid(String),
    /// The simulation failed.
    #[error(transparent)]
    Sim(#[from] SimError),
}

impl Step {
    /// How many members leave at this step.
    pub fn leaving(&self) -> usize {
        self.leave.saturating_add(self.leave_random).saturating_add(self.leave_oldest)
    }
}

impl Trace {
    /// Reads a trace (network names are checked by [`Trace::networks`]).
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let trace: Self = toml::from_str(text).map_err(|e| TraceError::Parse(e.to_string()))?;
        let invalid = |i: usize, why: String| TraceError::Invalid(format!("step {}: {why}", i + 1));
        if !(0.0..=MAX_TRACE_S).contains(&trace.tail_s) {
            return Err(TraceError::Invalid(format!("tail_s must be 0 to {MAX_TRACE_S}")));
        }
        let mut size = 0usize;
        let mut last = -1.0;
        let mut joins = 0usize;
        for (i, s) in trace.step.iter().enumerate() {
            if !((0.0..=MAX_TRACE_S).contains(&s.at_s) && s.at_s > last) {
                return Err(invalid(i, format!("at_s must grow, from 0 to {MAX_TRACE_S}")));
            }
            last = s.at_s;
            let leaving = s.leaving();
            if leaving > size {
                return Err(invalid(i, format!("{leaving} cannot leave a group of {size}")));
            }
            size = (size - leaving).saturating_add(s.join);
            joins = joins.saturating_add(s.join);
            if size > MAX_TRACE_MEMBERS || joins > 16 * MAX_TRACE_MEMBERS {
                return Err(invalid(i, format!("more than {MAX_TRACE_MEMBERS} members")));
            }
            // The members report their load, and the policy reads it as a fraction.
            if s.cpu.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
                return Err(invalid(i, "cpu must be in [0, 1]".into()));
            }
        }
        if trace.step.first().is_none_or(|s| s.join == 0) {
            return Err(TraceError::Invalid("the first step must add members".into()));
        }
        Ok(trace)
    }

    fn joins(&self) -> usize {
        self.step.iter().map(|s| s.join).sum()
    }

    /// Loads every network the trace names (before anything runs, so a typo fails at once).
    pub fn networks(&self, dir: &Path) -> Result<BTreeMap<String, Topology>, TraceError> {
        let mut out = BTreeMap::new();
        for name in std::iter::once(&self.network)
            .chain(self.step.iter().filter_map(|s| s.network.as_ref()))
        {
            if !out.contains_key(name) {
                out.insert(name.clone(), network(name, dir)?);
            }
        }
        Ok(out)
    }
}

/// A network by name: a preset, or a file relative to `dir`.
pub fn network(name: &str, dir: &Path) -> Result<Topology, TraceError> {
    Topology::load(name, dir).map_err(|e| TraceError::Invalid(e.to_string()))
}

/// The longest a trace may run, seconds (a day).
pub const MAX_TRACE_S: f64 = 86_400.0;

/// The most members a trace may have at once.
pub const MAX_TRACE_MEMBERS: usize = 1024;

/// How a replay chooses protocols.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Always this protocol.
    Fixed(String),
    /// Start with the trace's protocol and follow the policy.
    Adaptive(Box<Policy>),
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// When.
    pub at_s: f64,
    /// What happened.
    pub what: String,
    /// Members after it.
    pub members: usize,
    /// The protocol that agreed the step's key.
    pub protocol: String,
    /// Its membership change's rekey time (first view to every member's key), ms; none for
    /// a step that only changes conditions.
    pub rekey_ms: Option<f64>,
}

/// A completed switch.
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchRecord {
    /// When the new key was in place, seconds.
    pub at_s: f64,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// The policy's reason label.
    pub reason: String,
    /// From the first member's commit to the last member's new key, ms (a view change
    /// before the key makes this include that view's rekey too).
    pub ms: f64,
}

/// A replay's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// `fixed:NAME` or `adaptive`.
    pub mode: String,
    /// Per step.
    pub steps: Vec<StepResult>,
    /// Switches (adaptive only).
    pub switches: Vec<SwitchRecord>,
    /// What the switches cost the members in CPU and bytes (adaptive only).
    pub overhead: SwitchOverhead,
}

/// Total, mean and 95th percentile of a set of latencies, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LatencyStats {
    /// The sum.
    pub total_ms: f64,
    /// The mean.
    pub mean_ms: f64,
    /// The 95th percentile (nearest rank).
    pub p95_ms: f64,
}

impl LatencyStats {
    /// The statistics of `values`.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = ((0.95 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        let total_ms = sorted.iter().sum::<f64>() + 0.0;
        Self { total_ms, mean_ms: total_ms / sorted.len() as f64, p95_ms: sorted[rank - 1] }
    }
}

impl Replay {
    /// The membership events' rekey latencies (what users wait for: from the change to every
    /// member's key), ms, one per step with an event.
    pub fn event_latencies(&self) -> Vec<f64> {
        self.steps.iter().filter_map(|s| s.rekey_ms).collect()
    }

    /// Their total, mean and 95th percentile.
    pub fn event_stats(&self) -> LatencyStats {
        LatencyStats::of(&self.event_latencies())
    }

    /// Rekey latency of the membership events, ms in total.
    pub fn events_ms(&self) -> f64 {
        // + 0.0: an empty float sum is −0.0.
        self.steps.iter().filter_map(|s| s.rekey_ms).sum::<f64>() + 0.0
    }

    /// The switches' own agreements, commit to key, ms in total: background work, which
    /// users wait for only where an event overlaps it (and then it shows in the event's
    /// latency).
    pub fn switches_ms(&self) -> f64 {
        self.switches.iter().map(|s| s.ms).sum::<f64>() + 0.0
    }
}

/// What every replay shares.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// How plugin calls are timed.
    pub cost: CostMode,
    /// The seed (the same for every mode: the same keys and shares; jitter and loss are drawn
    /// per message, so runs that send different messages see different draws).
    pub seed: u64,
    /// The Diffie-Hellman group.
    pub dh_group: GroupId,
    /// Where network files are looked up.
    pub dir: std::path::PathBuf,
}

/// A small deterministic generator (SplitMix64) for choices a seed must reproduce.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn us(s: f64) -> u64 {
    (s * 1e6) as u64
}

/// Replays `trace` in `mode`.
pub fn replay(
    catalogue: &Arc<Catalogue>,
    trace: &Trace,
    mode: &Mode,
    config: &ReplayConfig,
) -> Result<Replay, TraceError> {
    let start = match mode {
        Mode::Fixed(p) => p.clone(),
        Mode::Adaptive(_) => trace.start.clone(),
    };
    let protocol = catalogue
        .get(&start)
        .ok_or_else(|| TraceError::Invalid(format!("no plugin {start}")))?
        .protocol
        .clone();
    let networks = trace.networks(&config.dir)?;
    let sim_config = SimConfig {
        topology: networks[&trace.network].clone(),
        cost: config.cost,
        seed: config.seed,
        dh_group: config.dh_group,
        batch_ms: 10,
        shared_cores: None,
    };
    let mut sim = Sim::new(sim_config, protocol);
    if let Mode::Adaptive(policy) = mode {
        sim = sim.with_control(Control {
            catalogue: catalogue.clone(),
            policy: (**policy).clone(),
            timing: ControlTiming {
                probe_every: Duration::from_secs(1),
                report_every: Duration::from_secs(5),
                evaluate_every: Duration::from_secs(1),
                ..ControlTiming::default()
            },
            tick: Duration::from_millis(200),
        });
    }
    let names: Vec<String> = (0..trace.joins()).map(|i| format!("m{i:04}")).collect();
    sim.enroll(&names)?;
    let mut next_name = names.iter();
    let mut rng = SplitMix(config.seed ^ 0x6c65_6176_6572_7321);
    let mut present: Vec<String> = Vec::new();
    let mut marks = Vec::new();
    for step in &trace.step {
        sim.run_until(us(step.at_s));
        let mut what = Vec::new();
        if let Some(n) = &step.network {
            sim.set_topology(networks[n].clone());
            what.push(format!("network {n}"));
        }
        if let Some(c) = step.cpu {
            sim.set_cpu_load(c);
            what.push(format!("cpu {c}"));
        }
        let mut leavers = Vec::new();
        for _ in 0..step.leave {
            leavers.extend(present.pop());
        }
        for _ in 0..step.leave_oldest.min(present.len()) {
            leavers.push(present.remove(0));
        }
        for _ in 0..step.leave_random {
            if !present.is_empty() {
                let i = (rng.next_u64() % present.len() as u64) as usize;
                leavers.push(present.remove(i));
            }
        }
        for m in &leavers {
            sim.remove(m)?;
        }
        for (n, how) in
            [(step.leave, "newest"), (step.leave_oldest, "oldest"), (step.leave_random, "random")]
        {
            if n > 0 {
                what.push(format!("{n} leave ({how})"));
            }
        }
        for _ in 0..step.join {
            let m = next_name.next().expect("names for every join").clone();
            sim.add(&m)?;
            present.push(m);
        }
        if step.join > 0 {
            what.push(format!("{} join", step.join));
        }
        marks.push((step.at_s, what.join(", "), present.len(), step.join + step.leaving() > 0));
    }
    let end = trace.step.last().map_or(0.0, |s| s.at_s) + trace.tail_s;
    sim.run_until(us(end));
    if let Err(e) = sim.settled() {
        return Err(TraceError::Sim(SimError::NoAgreement(format!("at the end: {e}"))));
    }
    let steps = marks
        .iter()
        .enumerate()
        .map(|(i, (at_s, what, members, membership))| {
            let until = marks.get(i + 1).map_or(end, |m| m.0);
            let (rekey_ms, protocol) = if *membership {
                event_rekey(&sim, us(*at_s), us(until))
            } else {
                (None, String::new())
            };
            StepResult { at_s: *at_s, what: what.clone(), members: *members, protocol, rekey_ms }
        })
        .collect();
    Ok(Replay {
        mode: match mode {
            Mode::Fixed(p) => format!("fixed:{p}"),
            Mode::Adaptive(_) => "adaptive".into(),
        },
        steps,
        switches: switches(&sim),
        overhead: sim.switch_overhead(),
    })
}

/// The rekey time of the views formed in [from, until): from the first one's formation to
/// the last member's first key in the last of them (a member of that view without a key for
/// it leaves the time unknown; earlier views of a cascade are superseded by it).
fn event_rekey(sim: &Sim, from_us: u64, until_us: u64) -> (Option<f64>, String) {
    let views: Vec<(u64, u64)> = sim
        .views_formed()
        .iter()
        .filter(|(_, t)| (from_us..until_us).contains(*t))
        .map(|(v, t)| (*v, *t))
        .collect();
    let (Some(first), Some(last)) = (views.first(), views.last()) else {
        return (None, String::new());
    };
    let mut done = first.1;
    let mut protocol = String::new();
    for (view, _) in [last] {
        let mut first_keys: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
        for k in sim.keys().iter().filter(|k| k.epoch >> 24 == *view) {
            first_keys.entry(&k.member).or_insert((k.at_us, &k.protocol));
        }
        for m in sim.view_members(*view) {
            let Some((at, p)) = first_keys.get(m.as_str()) else {
                return (None, String::new());
            };
            done = done.max(*at);
            protocol = p.split('@').next().unwrap_or_default().to_owned();
        }
    }
    (Some(done.saturating_sub(first.1) as f64 / 1e3), protocol)
}

/// Completed switches, one per new epoch: from the earliest member's commit (the end of the
/// call that committed) to the end of the call that installed the last member's new key.
fn switches(sim: &Sim) -> Vec<SwitchRecord> {
    let mut committed_at: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_epoch: BTreeMap<u64, (u64, SwitchRecord)> = BTreeMap::new();
    for (member, e, at) in sim.switch_events() {
        match e {
            SwitchEvent::Committed { .. } => {
                committed_at.insert(member, *at);
            }
            SwitchEvent::Completed { from, to, label, epoch, .. } => {
                let commit = committed_at.get(member.as_str()).copied().unwrap_or(*at);
                let (first_commit, r) = by_epoch.entry(*epoch).or_insert_with(|| {
                    let r = SwitchRecord {
                        at_s: 0.0,
                        from: from.clone(),
                        to: to.clone(),
                        reason: label.clone(),
                        ms: 0.0,
                    };
                    (commit, r)
                });
                *first_commit = (*first_commit).min(commit);
                r.at_s = r.at_s.max(*at as f64 / 1e6);
                r.ms = r.ms.max(at.saturating_sub(*first_commit) as f64 / 1e3);
            }
            _ => {}
        }
    }
    by_epoch.into_values().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_checked() {
        let ok = "name = \"t\"\nnetwork = \"lan\"\n[[step]]\nat_s = 0\njoin = 3\n[[step]]\nat_s = 5\nleave = 1\n";
        let t = Trace::parse(ok).unwrap();
        assert_eq!((t.start.as_str(), t.tail_s, t.joins()), ("tgdh", 60.0, 3));
        for (bad, why) in [
            ("name = \"t\"\nnetwork = \"lan\"\nstep = []", "first step"),
            ("name = \"t\"\nnetwork = \"lan\"\n[[step]]\nat_s = 0\nleave = 1\n", "cannot leave"),
            ("name = \"t\"\nnetwork = \"lan\"\n[[step]]\nat_s = 3\njoin = 2\n[[step]]\nat_s = 1\njoin = 1\n", "must grow"),
            ("name = \"t\"\nnetwork = \"lan\"\n[[step]]\nat_s = 0\njoin = 2\ncpu = 2\n", "cpu"),
            ("name = \"t\"\nnetwork = \"lan\"\ntail_s = -1\n[[step]]\nat_s = 0\njoin = 2\n", "tail_s"),
            ("name = \"t\"\nnetwork = \"lan\"\n[[step]]\nat_s = 0\njoin = 2000\n", "more than"),
            ("name = \"t\"\nnetwork = \"lan\"\n[[step]]\nat_s = 0\njoins = 2\n", "unknown field"),
        ] {
            let e = Trace::parse(bad).expect_err(why).to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
