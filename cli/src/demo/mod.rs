//! `gka demo`: an embedded daemon on a loopback port (or a group on an existing etcd cluster),
//! members of two domains with fresh keys and certificates (`domains.rs`) connected over real
//! TCP, and a scenario of membership events with encrypted traffic throughout. After every
//! event it checks that every member agreed on one key (by fingerprint) and that every member
//! decrypted the others' messages.
//!
//! Over etcd, a partition is what etcd makes of one: the members cut off from its quorum are
//! removed (the demo deletes their member keys, as their leases' expiry would), the rest go on
//! with a partition view and a new key, and the heal is the cut-off members rejoining as new
//! incarnations, in a merge view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gka_plugin_api::{GroupId, Protocol};
use serde::Serialize;
use tokio::time::Instant;

use gka_host::group::{EtcdConfig, Timing};
use gka_host::identity::cert::Role;
use gka_host::identity::{Identity, Scheme};
use gka_host::member::MemberEvent;
use gka_host::member::SwitchEvent;
use gka_host::net::wire::{ControlCmd, ServerMsg};
use gka_host::net::Connection;
use gka_host::net::{Daemon, DaemonAccess, DaemonConfig};
use gka_host::runtime::{
    spawn_member, spawn_member_etcd, Command, MemberConfig, MemberHandle, Peers, Recovery,
    RuntimeEvent, Switching,
};

mod domains;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Members at the start (at least 3).
    pub members: usize,
    /// Seconds of steady traffic at the end.
    pub seconds: u64,
    /// The group layer.
    pub layer: Layer,
}

/// The group layer the demo runs over.
#[derive(Debug, Clone, Default)]
pub enum Layer {
    /// An embedded daemon on a loopback port.
    #[default]
    Daemon,
    /// A group (with a fresh name for each run) on an existing etcd cluster.
    Etcd(EtcdConfig),
}

/// Where the demo says what it is doing while it runs (a line per step); `gka demo` prints
/// it to stderr, so that stdout stays one table or one JSON document.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// The running group layer.
enum Running {
    Daemon(Daemon),
    Etcd(EtcdConfig),
}

/// How long a member cut off from etcd waits before it rejoins: long enough for the rest to
/// agree on a key without it first.
const ETCD_REJOIN_DELAY: Duration = Duration::from_secs(3);

/// One line of the demo's output.
#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    /// What happened.
    pub event: String,
    /// The view id.
    pub view_id: u64,
    /// Members that agreed.
    pub members: usize,
    /// The protocol.
    pub protocol: String,
    /// The key's epoch.
    pub epoch: u64,
    /// The key's fingerprint (never the key).
    pub fingerprint: String,
    /// The slowest member's time from view to key.
    pub rekey_ms: f64,
    /// Encrypted messages delivered and decrypted after the event.
    pub messages_decrypted: usize,
}

struct Member {
    handle: MemberHandle,
    view: Option<(u64, Vec<String>)>,
    key: Option<(u64, String)>,
    /// The protocol that agreed the current key (`name@version`).
    protocol: String,
    latency: Duration,
    received: Vec<Vec<u8>>,
    /// Switches completed here: (from, to, reason label, commit to key).
    switches: Vec<(String, String, String, Duration)>,
}

/// The running demo.
struct Demo {
    layer: Running,
    group: String,
    protocol: Arc<dyn Protocol>,
    protocol_name: String,
    /// The two domains' access rules, which every member and the daemon apply.
    peers: Peers,
    /// Identities and their certificates (DER), until the member starts.
    identities: BTreeMap<String, (Identity, Vec<u8>)>,
    /// The identity that injects the demo's faults (an operator at the daemon), and its
    /// certificate.
    operator: (Identity, Vec<u8>),
    members: BTreeMap<String, Member>,
    /// Switching support given to every member (`None`: the protocol is fixed).
    switching: Option<Switching>,
    /// Told of each step.
    progress: Option<Progress>,
}

const WAIT: Duration = Duration::from_secs(30);

impl Demo {
    /// An embedded daemon with `timing` (ticking every `tick`), or a group on etcd, fresh
    /// Ed25519 identities for `names` with certificates of the two domains, and an operator for
    /// faults; members run `protocol` with `switching`.
    async fn start(
        group: &str,
        layer: &Layer,
        timing: Timing,
        tick: Duration,
        names: impl IntoIterator<Item = String>,
        protocol: Arc<dyn Protocol>,
        switching: Option<Switching>,
    ) -> Result<Self> {
        let mut domains = domains::Domains::new()?;
        let mut identities = BTreeMap::new();
        for name in names {
            let id = Identity::generate(&name, Scheme::Ed25519)?;
            let certificate = domains.issue(&id, &[Role::Member])?;
            identities.insert(name, (id, certificate));
        }
        let operator = Identity::generate("demo-operator", Scheme::Ed25519)?;
        let operator_certificate = domains.issue(&operator, &[Role::Operator])?;
        let rules = domains.rules().clone();
        let access = DaemonAccess { rules: Some(Arc::new(rules.clone())), ..Default::default() };
        let (layer, group) = match layer {
            Layer::Daemon => {
                let config = DaemonConfig {
                    timing,
                    tick,
                    access,
                    allow_control: true,
                    ..DaemonConfig::default()
                };
                let daemon = Daemon::start("127.0.0.1:0", config)
                    .await
                    .context("cannot start the daemon")?;
                (Running::Daemon(daemon), group.to_owned())
            }
            // A fresh group for each run: an earlier run's keys do not get in the way.
            Layer::Etcd(config) => {
                let run = Identity::generate("run", Scheme::Ed25519)?.public().raw_bytes();
                let group = format!("{group}-{}", hex::encode(&run[..4]));
                (Running::Etcd(config.clone()), group)
            }
        };
        Ok(Self {
            layer,
            group,
            protocol_name: protocol.descriptor().name,
            protocol,
            peers: Peers::Certificates { rules, file: None },
            identities,
            operator: (operator, operator_certificate),
            members: BTreeMap::new(),
            switching,
            progress: None,
        })
    }

    async fn spawn(&mut self, name: &str) -> Result<()> {
        let (identity, certificate) =
            self.identities.remove(name).with_context(|| format!("no key for {name}"))?;
        let config = MemberConfig {
            group: self.group.clone(),
            identity,
            peers: self.peers.clone(),
            protocol: self.protocol.clone(),
            dh_group: GroupId::Ffdhe2048,
            heartbeat: Duration::from_millis(200),
            switching: self.switching.clone(),
            // The demo's daemon lives as long as the demo; over etcd, members cut off rejoin.
            recovery: None,
            certificate: Some(certificate),
        };
        let handle = match &self.layer {
            Running::Daemon(daemon) => spawn_member(&daemon.addr.to_string(), config)
                .await
                .with_context(|| format!("{name} cannot connect to the daemon"))?,
            Running::Etcd(etcd) => {
                let recovery = Recovery {
                    first_delay: ETCD_REJOIN_DELAY,
                    max_delay: ETCD_REJOIN_DELAY,
                    ..Recovery::default()
                };
                let config = MemberConfig { recovery: Some(recovery), ..config };
                spawn_member_etcd(etcd, config)
                    .await
                    .with_context(|| format!("{name} cannot join the group on etcd"))?
            }
        };
        self.members.insert(
            name.to_owned(),
            Member {
                handle,
                view: None,
                key: None,
                protocol: String::new(),
                latency: Duration::ZERO,
                received: Vec::new(),
                switches: Vec::new(),
            },
        );
        Ok(())
    }

    fn leave(&mut self, name: &str) {
        if let Some(m) = self.members.remove(name) {
            let _ = m.handle.commands.send(Command::Leave);
        }
    }

    /// Reads every pending event of every member.
    fn pump(&mut self) -> Result<()> {
        for (name, m) in &mut self.members {
            while let Ok(e) = m.handle.events.try_recv() {
                match e {
                    RuntimeEvent::Member(MemberEvent::View(v)) => {
                        m.view = Some((v.view_id, v.members))
                    }
                    RuntimeEvent::Member(MemberEvent::Key {
                        epoch, fingerprint, protocol, ..
                    }) => {
                        m.key = Some((epoch, fingerprint));
                        m.protocol = protocol;
                    }
                    RuntimeEvent::Member(MemberEvent::Switch(SwitchEvent::Completed {
                        from,
                        to,
                        label,
                        commit_to_key,
                        ..
                    })) => m.switches.push((from, to, label, commit_to_key)),
                    RuntimeEvent::Member(MemberEvent::Data { plaintext, .. }) => {
                        m.received.push(plaintext)
                    }
                    RuntimeEvent::RekeyLatency { latency, .. } => m.latency = latency,
                    RuntimeEvent::Member(MemberEvent::Rejected(r)) => {
                        bail!("{name} rejected an envelope: {r}")
                    }
                    RuntimeEvent::Member(MemberEvent::ProtocolError { from, error }) => {
                        bail!("{name}: protocol error from {from}: {error}")
                    }
                    RuntimeEvent::Stopped(reason) | RuntimeEvent::Failed(reason) => {
                        bail!("{name} stopped: {reason}")
                    }
                    // Over etcd, members the demo cut off find out and rejoin.
                    RuntimeEvent::Disconnected { .. } if matches!(self.layer, Running::Etcd(_)) => {
                        m.view = None;
                        m.key = None;
                    }
                    RuntimeEvent::Disconnected { reason, .. } => {
                        bail!("{name} lost the daemon: {reason}")
                    }
                    RuntimeEvent::Rejoined { .. } => {}
                    RuntimeEvent::PolicyRejected(e) => bail!("{name} rejected its policy: {e}"),
                    RuntimeEvent::RulesRejected(e) => bail!("{name} rejected its rules: {e}"),
                    RuntimeEvent::RulesChanged | RuntimeEvent::Status(_) => {}
                    RuntimeEvent::Member(_) | RuntimeEvent::NotSent(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Waits until exactly `side` are in one view and share one key for it.
    async fn agreed(&mut self, side: &[String]) -> Result<(u64, u64, String, Duration)> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump()?;
            let mut sorted = side.to_vec();
            sorted.sort();
            let states: Vec<_> = side.iter().map(|n| &self.members[n]).collect();
            let done = states.iter().all(|m| match (&m.view, &m.key) {
                (Some((view_id, members)), Some((epoch, _))) => {
                    let mut ms = members.clone();
                    ms.sort();
                    ms == sorted && epoch >> 24 == *view_id && !m.protocol.is_empty()
                }
                _ => false,
            });
            // Keys of one view may differ in epoch for a moment (a switch's or refresh's key
            // installed at some members first); one epoch with two keys is a failure.
            let same_epoch = done
                && states
                    .iter()
                    .all(|m| m.key.as_ref().map(|k| k.0) == states[0].key.as_ref().map(|k| k.0));
            if same_epoch {
                let (view_id, _) = states[0].view.clone().expect("view");
                let (epoch, fp) = states[0].key.clone().expect("key");
                if states.iter().any(|m| m.key.as_ref().map(|k| &k.1) != Some(&fp)) {
                    bail!("members of view {view_id} hold different keys");
                }
                let latency = states.iter().map(|m| m.latency).max().unwrap_or_default();
                return Ok((view_id, epoch, fp, latency));
            }
            if Instant::now() > deadline {
                bail!("no agreement among {side:?} within {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every member of `side` sends one line; waits until every other member decrypted all.
    async fn traffic(&mut self, side: &[String], tag: &str) -> Result<usize> {
        for m in self.members.values_mut() {
            m.received.clear();
        }
        for name in side {
            let line = format!("{tag}: hello from {name}").into_bytes();
            self.members[name].handle.commands.send(Command::Send(line)).ok();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump()?;
            // Each member also gets its own message back.
            if side.iter().all(|n| self.members[n].received.len() >= side.len()) {
                return Ok(side.len() * side.len());
            }
            if Instant::now() > deadline {
                bail!("encrypted traffic among {side:?} did not arrive within {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Tells the progress reporter, if any.
    fn say(&self, what: &str) {
        if let Some(progress) = &self.progress {
            progress(what);
        }
    }

    async fn step(&mut self, event: &str, side: &[String]) -> Result<EventLine> {
        self.say(&format!("{event}: waiting for {} members to agree", side.len()));
        let (view_id, epoch, fingerprint, latency) =
            self.agreed(side).await.with_context(|| format!("after {event}"))?;
        let messages_decrypted =
            self.traffic(side, event).await.with_context(|| format!("after {event}"))?;
        Ok(EventLine {
            event: event.to_owned(),
            view_id,
            members: side.len(),
            protocol: self.protocol_name.clone(),
            epoch,
            fingerprint,
            rekey_ms: latency.as_secs_f64() * 1e3,
            messages_decrypted,
        })
    }

    /// Partitions the group into its even- and odd-ranked members; returns the two sides.
    /// Over etcd, the odd-ranked side is cut off (see the module docs).
    async fn split_in_two(&mut self) -> Result<(Vec<String>, Vec<String>)> {
        let all = self.names();
        let a: Vec<String> = all.iter().step_by(2).cloned().collect();
        let b: Vec<String> = all.iter().skip(1).step_by(2).cloned().collect();
        if let Running::Etcd(etcd) = &self.layer {
            for member in &b {
                gka_host::group::etcd::expel(etcd, &self.group, member)
                    .await
                    .with_context(|| format!("cannot cut {member} off"))?;
            }
            return Ok((a, b));
        }
        let split =
            ControlCmd::Partition { group: self.group.clone(), sets: vec![a.clone(), b.clone()] };
        self.control(split).await?;
        Ok((a, b))
    }

    /// Heals every partition of the group (over etcd, the members cut off rejoin by themselves).
    async fn heal(&mut self) -> Result<()> {
        if matches!(self.layer, Running::Etcd(_)) {
            return Ok(());
        }
        let heal = ControlCmd::Heal { group: self.group.clone() };
        self.control(heal).await
    }

    /// Whether the group layer gives each side of a partition its own views (the daemon), or
    /// only the side with the quorum (etcd).
    fn both_sides_continue(&self) -> bool {
        matches!(self.layer, Running::Daemon(_))
    }

    /// Sends a fault-injection command as the demo's operator, to the daemon.
    async fn control(&self, cmd: ControlCmd) -> Result<()> {
        let Running::Daemon(daemon) = &self.layer else {
            bail!("fault injection needs the daemon: etcd takes no such commands")
        };
        let (operator, certificate) = &self.operator;
        let addr = daemon.addr;
        expect_ok(Connection::control_presenting(addr, operator, Some(certificate), cmd).await?)
    }

    /// Every member leaves, and the daemon (if any) stops.
    fn stop(mut self) {
        for name in self.names() {
            self.leave(&name);
        }
        if let Running::Daemon(daemon) = self.layer {
            daemon.stop();
        }
    }

    /// Waits until `name` has received a view (its join is in, its rekey under way).
    async fn wait_for_view(&mut self, name: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        while self.members[name].view.is_none() {
            self.pump()?;
            if Instant::now() > deadline {
                bail!("{name} got no view within {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    fn names(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }
}

/// Runs the scenario with `protocol` and returns one line per event.
pub async fn run(protocol: Arc<dyn Protocol>, options: &DemoOptions) -> Result<Vec<EventLine>> {
    run_reporting(protocol, options, None).await
}

/// As [`run`], telling `progress` of each step.
pub async fn run_reporting(
    protocol: Arc<dyn Protocol>,
    options: &DemoOptions,
    progress: Option<Progress>,
) -> Result<Vec<EventLine>> {
    if options.members < 3 {
        bail!("the demo needs at least 3 members");
    }
    let timing = Timing { batch_ms: 30, failure_timeout_ms: 3_000 };
    let names = (1..=options.members + 8).map(|i| format!("m{i:02}"));
    let tick = Duration::from_millis(5);
    let mut demo = Demo::start("demo", &options.layer, timing, tick, names, protocol, None).await?;
    demo.progress = progress;
    let name = |i: usize| format!("m{i:02}");
    let mut lines = Vec::new();

    for i in 1..=options.members {
        demo.spawn(&name(i)).await?;
    }
    lines.push(demo.step("initial agreement", &demo.names()).await?);

    demo.spawn(&name(options.members + 1)).await?;
    lines.push(demo.step("join", &demo.names()).await?);

    demo.leave(&name(2));
    lines.push(demo.step("leave", &demo.names()).await?);

    demo.spawn(&name(options.members + 2)).await?;
    demo.spawn(&name(options.members + 3)).await?;
    lines.push(demo.step("merge of 2", &demo.names()).await?);

    let (a, b) = demo.split_in_two().await?;
    if demo.both_sides_continue() {
        let side_a = demo.step("partition, side A", &a).await?;
        let side_b = demo.step("partition, side B", &b).await?;
        if side_a.fingerprint == side_b.fingerprint {
            bail!("the two sides of the partition share a key");
        }
        lines.push(side_a);
        lines.push(side_b);
    } else {
        lines.push(demo.step("partition, side A (B cut off from etcd)", &a).await?);
    }
    demo.heal().await?;
    lines.push(demo.step("heal", &demo.names()).await?);

    // Cascades: a member joins while the group rekeys for another's join; then a member leaves
    // while the group rekeys for a join.
    let first = name(options.members + 4);
    demo.spawn(&first).await?;
    demo.wait_for_view(&first).await?;
    let second = name(options.members + 7);
    demo.spawn(&second).await?;
    lines.push(demo.step("cascade: a join during a join's rekey", &demo.names()).await?);
    let third = name(options.members + 8);
    demo.spawn(&third).await?;
    demo.wait_for_view(&third).await?;
    demo.leave(&name(1));
    lines.push(demo.step("cascade: a leave during a join's rekey", &demo.names()).await?);

    // A partition during a merge: two members join and, while the group rekeys for them, the
    // group splits in two; each side must converge, then the heal.
    let (j1, j2) = (name(options.members + 5), name(options.members + 6));
    demo.spawn(&j1).await?;
    demo.spawn(&j2).await?;
    demo.wait_for_view(&j1).await?;
    demo.wait_for_view(&j2).await?;
    let (a, b) = demo.split_in_two().await?;
    lines.push(demo.step("partition during a merge, side A", &a).await?);
    if demo.both_sides_continue() {
        lines.push(demo.step("partition during a merge, side B", &b).await?);
    }
    demo.heal().await?;
    lines.push(demo.step("heal", &demo.names()).await?);

    let until = Instant::now() + Duration::from_secs(options.seconds);
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        let names = demo.names();
        demo.traffic(&names, &format!("traffic round {round}")).await?;
    }
    demo.stop();
    Ok(lines)
}

fn expect_ok(msg: ServerMsg) -> Result<()> {
    match msg {
        ServerMsg::Ok => Ok(()),
        other => bail!("the daemon refused a control command: {other:?}"),
    }
}

mod adapt;
mod bench;

pub use adapt::{adapt, adapt_reporting, adaptive_policy, AdaptLine, AdaptOptions, DEMO_POLICY};
pub use bench::{bench, switch_bench, BenchRow, SwitchBenchRow};
