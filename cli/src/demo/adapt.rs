//! The adaptive demo: a group under the rules policy (`traces/rules-policy.toml`, damping
//! shortened) moved through conditions by joins and the daemon's delay control, switching
//! protocols as the policy says.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use gka_plugin_api::{GroupId, Protocol};
use serde::Serialize;
use tokio::time::Instant;

use gka_host::group::Timing;
use gka_host::identity::Scheme;
use gka_host::member::Catalogue;
use gka_host::net::wire::ControlCmd;
use gka_host::runtime::Switching;

use super::*;

/// The policy `gka demo` adapts by: `traces/rules-policy.toml`, whose rules switch as soon as
/// conditions change (the shipped, cost-based `policy.toml` waits until a switch pays for
/// itself over minutes of events), with damping shortened so the demo moves on within seconds
/// (see [`adaptive_policy`]).
pub const DEMO_POLICY: &str = include_str!("../../../traces/rules-policy.toml");

/// The rules policy with the demo's short damping: 2 s between switches, 3 s of cool-down
/// after an abort, views at least 1 s old.
pub fn adaptive_policy() -> Result<gka_host::policy::Policy> {
    let mut policy =
        gka_host::policy::Policy::parse(DEMO_POLICY, &gka_host::policy::KNOWN_PROTOCOLS)
            .map_err(|e| anyhow::anyhow!("the demo's rules policy is invalid: {e:?}"))?;
    let span = |v: f64| toml::Spanned::new(0..0, v);
    policy.stability.min_interval_s = span(2.0);
    policy.stability.abort_cooldown_s = span(3.0);
    policy.stability.min_view_age_s = span(1.0);
    Ok(policy)
}

/// One phase of the adaptive demo.
#[derive(Debug, Clone, Serialize)]
pub struct AdaptLine {
    /// The conditions the group was moved to.
    pub phase: String,
    /// Members in the group.
    pub members: usize,
    /// The protocol every member runs at the end of the phase.
    pub protocol: String,
    /// The key's fingerprint (never the key), the same at every member.
    pub fingerprint: String,
    /// The switch that led there, with the policy's reason, or why there was none.
    pub switch: String,
    /// The slowest member's time from the switch's commit to the new key.
    pub switch_ms: Option<f64>,
    /// Encrypted messages delivered and decrypted after the phase.
    pub messages_decrypted: usize,
}

/// What the adaptive demo runs.
#[derive(Debug, Clone)]
pub struct AdaptOptions {
    /// Members of the small group (at most 6, the rules policy's "small LAN group").
    pub small: usize,
    /// Members of the large group.
    pub large: usize,
    /// Delay added to every delivery in the WAN phase, ms (the round trip doubles it).
    pub wan_delay_ms: u64,
    /// Whether to load the CPUs (skipped anyway if they are busy already).
    pub cpu_phase: bool,
}

impl Default for AdaptOptions {
    fn default() -> Self {
        Self { small: 4, large: 9, wan_delay_ms: 100, cpu_phase: true }
    }
}

/// Busy threads on every core until dropped.
struct CpuLoad {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

const ADAPT_WAIT: Duration = Duration::from_secs(90);

impl Demo {
    /// Waits until every member runs `protocol` with one key; returns the phase's line.
    pub(super) async fn adapted(&mut self, phase: &str, protocol: &str) -> Result<AdaptLine> {
        self.say(&format!("{phase}: waiting for every member to run {protocol}"));
        let deadline = Instant::now() + ADAPT_WAIT;
        let side = self.names();
        let switches_before: BTreeMap<String, usize> =
            self.members.iter().map(|(n, m)| (n.clone(), m.switches.len())).collect();
        loop {
            self.pump()?;
            let (view_id, epoch, fingerprint, _) = self.agreed(&side).await?;
            let running: Vec<&str> = self
                .members
                .values()
                .map(|m| m.protocol.split('@').next().unwrap_or_default())
                .collect();
            if running.iter().all(|p| *p == protocol) {
                let _ = (view_id, epoch);
                let new: Vec<&(String, String, String, Duration)> = self
                    .members
                    .iter()
                    .filter_map(|(n, m)| m.switches.get(switches_before.get(n).copied()?..))
                    .flatten()
                    .collect();
                let switch = new.last().map_or_else(
                    || format!("none: {protocol} already suits the conditions"),
                    |(from, to, label, _)| format!("{from} -> {to} ({label})"),
                );
                let switch_ms = new.iter().map(|s| s.3.as_secs_f64() * 1e3).reduce(f64::max);
                let messages_decrypted = self.traffic(&side, phase).await?;
                return Ok(AdaptLine {
                    phase: phase.to_owned(),
                    members: side.len(),
                    protocol: protocol.to_owned(),
                    fingerprint,
                    switch,
                    switch_ms,
                    messages_decrypted,
                });
            }
            if Instant::now() > deadline {
                bail!("{phase}: the group did not move to {protocol} within {ADAPT_WAIT:?} (members run {running:?})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn delay_all(&mut self, ms: u64) -> Result<()> {
        for name in self.names() {
            let delay = ControlCmd::Delay { to: name, from: None, ms };
            self.control(delay).await?;
        }
        Ok(())
    }
}

/// The adaptive demo: members that can run every protocol in `catalogue`, starting with
/// `start`, under the rules policy ([`adaptive_policy`]), moved through a small LAN group,
/// a large group, a high-delay WAN (the daemon's delay control), back to the LAN, loaded CPUs
/// and idle ones again. Each phase waits until every member runs the protocol the policy's
/// rules pick for those conditions, with one key, and exchanges encrypted traffic.
pub async fn adapt(
    catalogue: Arc<Catalogue>,
    start: Arc<dyn Protocol>,
    options: &AdaptOptions,
) -> Result<Vec<AdaptLine>> {
    adapt_reporting(catalogue, start, options, None).await
}

/// As [`adapt`], telling `progress` of each phase.
pub async fn adapt_reporting(
    catalogue: Arc<Catalogue>,
    start: Arc<dyn Protocol>,
    options: &AdaptOptions,
    progress: Option<Progress>,
) -> Result<Vec<AdaptLine>> {
    if !(2..=6).contains(&options.small) || options.large <= 6 {
        bail!("the adaptive demo needs a small group of 2 to 6 and a large one of over 6");
    }
    let calibration = gka_host::policy::measure::calibrate(GroupId::Ffdhe2048, Scheme::Ed25519, 8);
    let switching = Switching {
        catalogue,
        policy: Some(adaptive_policy()?),
        policy_file: None,
        timing: gka_host::member::ControlTiming {
            probe_every: Duration::from_millis(300),
            report_every: Duration::from_secs(1),
            evaluate_every: Duration::from_millis(500),
            ..gka_host::member::ControlTiming::default()
        },
        calibration: Some(calibration),
    };
    let timing = Timing { batch_ms: 30, failure_timeout_ms: 5_000 };
    let names = (1..=options.large).map(|i| format!("a{i:02}"));
    let tick = Duration::from_millis(5);
    let mut demo =
        Demo::start("adaptive", &Layer::Daemon, timing, tick, names, start, Some(switching))
            .await?;
    demo.progress = progress;
    let name = |i: usize| format!("a{i:02}");
    let mut lines = Vec::new();
    for i in 1..=options.small {
        demo.spawn(&name(i)).await?;
    }
    lines.push(demo.adapted(&format!("small LAN group of {}", options.small), "bd").await?);
    for i in options.small + 1..=options.large {
        demo.spawn(&name(i)).await?;
    }
    lines.push(demo.adapted(&format!("large LAN group of {}", options.large), "tgdh").await?);
    demo.delay_all(options.wan_delay_ms).await?;
    let wan = format!("WAN: {} ms added each way", options.wan_delay_ms);
    lines.push(demo.adapted(&wan, "str").await?);
    demo.delay_all(0).await?;
    lines.push(demo.adapted("back on the LAN", "tgdh").await?);
    if options.cpu_phase {
        let idle =
            gka_host::policy::measure::cpu_load(Duration::from_millis(500)).unwrap_or(1.0) < 0.5;
        if idle {
            let load = CpuLoad::start();
            lines.push(demo.adapted("loaded CPUs (busy threads on every core)", "ckd").await?);
            drop(load);
            lines.push(demo.adapted("idle CPUs again", "tgdh").await?);
        }
    }
    for name in demo.names() {
        demo.leave(&name);
    }
    demo.stop();
    Ok(lines)
}
