//! The member runtime: a [`MemberCore`] driven over the group layer (the daemon over TCP, or the
//! in-memory network). This is the only place a member reads the clock or does IO; an
//! application embeds it through [`spawn_member`] and talks to it through a [`MemberHandle`].
//!
//! Besides moving bytes, the runtime:
//! - ticks the core (probes, reports, policy evaluation at quiescent points);
//! - samples the CPU load and refines the exponentiation cost from the time real rekeys take,
//!   and hands both to the core for its reports;
//! - watches the policy file: an edit that parses is handed to the core, which applies it at
//!   the next quiescent point; an invalid edit is reported and the old policy stays;
//! - records the metrics (see [`crate::metrics`]).

// The runtime is where IO, time and OS randomness enter: it hands them to the member core.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gka_plugin_api::{GroupId, Protocol, SessionConfig, ViewEvent};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::envelope::EnvelopeChecker;
use crate::group::GroupEndpoint;
use crate::identity::{Identity, TrustStore};
use crate::member::Report;
use crate::member::{Catalogue, SwitchEvent};
use crate::member::{ControlTiming, MemberCore, MemberEvent};
use crate::net::Connection;
use crate::policy::live::ExpCost;
use crate::policy::measure::{Calibration, CpuSampler};
use crate::policy::{Decision, Policy, KNOWN_PROTOCOLS};

/// How often the runtime ticks the core.
pub const TICK: Duration = Duration::from_millis(100);

/// How often the runtime samples the CPU, refreshes its measurements and checks the policy
/// file.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What a member needs to adopt, vote for and propose protocol switches.
#[derive(Debug, Clone)]
pub struct Switching {
    /// The protocols this member can run.
    pub catalogue: Arc<Catalogue>,
    /// Its policy (without one it never proposes, and votes by its catalogue alone).
    pub policy: Option<Policy>,
    /// The file the policy came from, watched for edits.
    pub policy_file: Option<PathBuf>,
    /// How often to probe, report and evaluate.
    pub timing: ControlTiming,
    /// Calibrated operation costs (measured at start if absent).
    pub calibration: Option<Calibration>,
}

/// How a member runs.
pub struct MemberConfig {
    /// The group's name.
    pub group: String,
    /// This member's identity.
    pub identity: Identity,
    /// The trusted members' keys (the access-control list).
    pub trust: TrustStore,
    /// The key-agreement protocol it starts with (a group that runs another one makes it
    /// adopt that one, if its catalogue has it).
    pub protocol: Arc<dyn Protocol>,
    /// The Diffie-Hellman group.
    pub dh_group: GroupId,
    /// How often to prove liveness to the daemon.
    pub heartbeat: Duration,
    /// Switching support; `None` runs `protocol` only.
    pub switching: Option<Switching>,
}

impl std::fmt::Debug for MemberConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberConfig")
            .field("group", &self.group)
            .field("id", &self.identity.id())
            .finish()
    }
}

/// What the runtime reports to the application.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    /// Something the member core reported.
    Member(MemberEvent),
    /// A key was installed this long after the view, refresh or switch commit that started
    /// its agreement.
    RekeyLatency {
        /// The key's epoch.
        epoch: u64,
        /// Time from the view's delivery to the key.
        latency: Duration,
    },
    /// Data the application asked to send could not be sent: no view or key yet, members left
    /// and still hold the current key, or too much is in flight. It is not queued: send it
    /// again later.
    NotSent(String),
    /// The policy file changed but is invalid: the old policy stays.
    PolicyRejected(String),
    /// The runtime stopped (the daemon closed the connection, or the member left).
    Stopped(String),
}

/// A request from the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Encrypt and send this to the group.
    Send(Vec<u8>),
    /// Leave the group and stop.
    Leave,
}

/// The application's side of a running member.
#[derive(Debug)]
pub struct MemberHandle {
    /// Requests to the member.
    pub commands: mpsc::UnboundedSender<Command>,
    /// What happens at the member.
    pub events: mpsc::UnboundedReceiver<RuntimeEvent>,
}

/// Connects to the daemon at `daemon`, joins the group and runs the member in the background.
///
/// A member its own trust store cannot vouch for (see [`TrustStore::check_own`]) is refused
/// before it connects: it would only stall the group.
pub async fn spawn_member(daemon: &str, config: MemberConfig) -> std::io::Result<MemberHandle> {
    check_trust(&config)?;
    let connection = Connection::join(daemon, &config.group, &config.identity).await?;
    spawn_member_on(connection, config)
}

fn check_trust(config: &MemberConfig) -> std::io::Result<()> {
    config
        .trust
        .check_own(&config.identity)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// Runs the member in the background over an endpoint already joined to the group (the daemon's
/// [`Connection`], or an in-memory [`crate::group::MemEndpoint`]).
pub fn spawn_member_on<E: GroupEndpoint>(
    endpoint: E,
    config: MemberConfig,
) -> std::io::Result<MemberHandle> {
    check_trust(&config)?;
    let id = config.identity.id().to_owned();
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let session = config
        .protocol
        .new_session(SessionConfig {
            group_name: config.group.clone(),
            member_id: id,
            dh_group: config.dh_group,
            rng_seed: seed,
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let descriptor = config.protocol.descriptor();
    let protocol = format!("{}@{}", descriptor.name, descriptor.version);
    let calibration = match &config.switching {
        Some(Switching { calibration: Some(c), .. }) => *c,
        Some(_) => crate::policy::measure::calibrate_with(config.dh_group, &config.identity, 4),
        // Without switching, measurements only feed metrics: the policy's defaults will do.
        None => {
            let d = crate::policy::Inputs::default();
            Calibration { exp_ms: d.exp_ms, sign_ms: d.sign_ms, verify_ms: d.verify_ms }
        }
    };
    let checker = EnvelopeChecker::new(&config.group, config.trust);
    let mut core_seed = [0u8; 32];
    OsRng.fill_bytes(&mut core_seed);
    let mut core =
        MemberCore::new(config.identity, &config.group, &protocol, session, checker, core_seed);
    let mut watch = None;
    if let Some(s) = config.switching {
        let mut known = s.catalogue.names();
        core = core.with_catalogue(s.catalogue, config.dh_group).with_timing(s.timing);
        if let Some(p) = s.policy {
            core = core.with_policy(p);
        }
        if known.is_empty() {
            known = KNOWN_PROTOCOLS.iter().map(|p| p.to_string()).collect();
        }
        watch = s.policy_file.map(|path| PolicyWatch::new(path, known));
    }
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        core,
        heartbeat: config.heartbeat,
        events: event_tx,
        start: Instant::now(),
        agreement_started: None,
        busy: Duration::ZERO,
        exps_at_start: 0,
        event_kind: ViewEvent::Initial.label(),
        seen_view: false,
        exps_seen: 0,
        calibration,
        exp_cost: ExpCost::calibrated(calibration.exp_ms),
        cpu: CpuSampler::default(),
        cpu_load: None,
        watch,
        active: None,
        delivery_started: None,
        delivery_exps: 0,
    };
    tokio::spawn(driver.run(endpoint, command_rx));
    Ok(MemberHandle { commands: command_tx, events: event_rx })
}

/// The policy file, and what it held when last read.
struct PolicyWatch {
    path: PathBuf,
    /// The protocol names the policy may mention.
    known: Vec<String>,
    last: Option<String>,
}

impl PolicyWatch {
    fn new(path: PathBuf, known: Vec<String>) -> Self {
        let last = std::fs::read_to_string(&path).ok();
        Self { path, known, last }
    }

    /// The new policy if the file changed: `Err` with every error if it does not parse.
    fn poll(&mut self) -> Option<Result<Policy, String>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                let changed = self.last.take().is_some();
                return changed.then(|| Err(format!("cannot read {}: {e}", self.path.display())));
            }
        };
        if self.last.as_deref() == Some(text.as_str()) {
            return None;
        }
        self.last = Some(text.clone());
        let known: Vec<&str> = self.known.iter().map(String::as_str).collect();
        Some(Policy::parse(&text, &known).map_err(|errors| {
            let list: Vec<String> =
                errors.iter().map(|e| format!("{}:{e}", self.path.display())).collect();
            list.join("; ")
        }))
    }
}

struct Driver {
    core: MemberCore,
    heartbeat: Duration,
    events: mpsc::UnboundedSender<RuntimeEvent>,
    start: Instant,
    /// When the running agreement started (view, or switch commit).
    agreement_started: Option<Instant>,
    /// Time spent in the core during the running agreement.
    busy: Duration,
    exps_at_start: u64,
    /// The metrics label of the event the running agreement rekeys for.
    event_kind: &'static str,
    /// Whether the member has had a view yet.
    seen_view: bool,
    exps_seen: u64,
    calibration: Calibration,
    exp_cost: ExpCost,
    cpu: CpuSampler,
    cpu_load: Option<f64>,
    watch: Option<PolicyWatch>,
    /// The protocol last exported as active.
    active: Option<String>,
    /// When the delivery being handled reached the runtime.
    delivery_started: Option<Instant>,
    /// Exponentiations before that delivery.
    delivery_exps: u64,
}

async fn flush<E: GroupEndpoint>(core: &mut MemberCore, endpoint: &mut E) -> std::io::Result<()> {
    while let Some(out) = core.poll_outgoing() {
        endpoint.send(out.view_id, out.to, out.bytes).await?;
    }
    Ok(())
}

impl Driver {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn emit(&self, event: RuntimeEvent) {
        let _ = self.events.send(event);
    }

    async fn run<E: GroupEndpoint>(
        mut self,
        mut connection: E,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        let mut tick = tokio::time::interval(TICK);
        let mut sample = tokio::time::interval(SAMPLE_EVERY);
        self.refresh_measurements();
        let reason = loop {
            tokio::select! {
                delivery = connection.recv() => {
                    let delivery = match delivery {
                        Ok(Some(d)) => d,
                        Ok(None) => break "the group layer closed the connection".to_owned(),
                        Err(e) => break format!("group layer error: {e}"),
                    };
                    if let crate::group::Delivery::View { .. } = &delivery {
                        self.agreement_started = Some(Instant::now());
                        self.busy = Duration::ZERO;
                        self.exps_at_start = self.core.exponentiations_total();
                    }
                    let started = Instant::now();
                    self.delivery_started = Some(started);
                    self.delivery_exps = self.core.exponentiations_total();
                    if let Err(e) = self.core.handle_delivery(self.now(), delivery) {
                        self.emit(RuntimeEvent::Member(MemberEvent::ProtocolError {
                            from: self.core.id().to_owned(),
                            error: e.to_string(),
                        }));
                    }
                    self.busy += started.elapsed();
                    self.after_core();
                    self.delivery_started = None;
                }
                command = commands.recv() => match command {
                    Some(Command::Send(data)) => {
                        if let Err(e) = self.core.send_data(&data) {
                            self.emit(RuntimeEvent::NotSent(e.to_string()));
                        }
                    }
                    Some(Command::Leave) | None => {
                        let _ = connection.leave().await;
                        break "left the group".to_owned();
                    }
                },
                _ = tick.tick() => {
                    self.core.tick(self.now());
                    self.after_core();
                }
                _ = sample.tick() => {
                    self.refresh_measurements();
                    self.poll_policy();
                }
                _ = heartbeat.tick() => {
                    if let Err(e) = connection.heartbeat().await {
                        break format!("connection error: {e}");
                    }
                }
            }
            if let Err(e) = flush(&mut self.core, &mut connection).await {
                break format!("connection error: {e}");
            }
        };
        self.emit(RuntimeEvent::Stopped(reason));
    }

    fn refresh_measurements(&mut self) {
        if let Some(load) = self.cpu.sample() {
            self.cpu_load = Some(load);
        }
        self.core.set_local_measurements(Report {
            cpu_load: self.cpu_load,
            exp_ms: Some(self.exp_cost.ms()),
            sign_ms: Some(self.calibration.sign_ms),
            verify_ms: Some(self.calibration.verify_ms),
            ..Report::default()
        });
        let probes = self.core.probes();
        crate::metrics::measurements(
            self.core.group(),
            probes.rtt_median_ms().map(|ms| ms / 1e3),
            probes.bandwidth_mbps(),
            self.cpu_load,
            self.exp_cost.ms() / 1e3,
        );
    }

    fn poll_policy(&mut self) {
        let Some(watch) = &mut self.watch else { return };
        match watch.poll() {
            None => {}
            Some(Ok(policy)) => self.core.set_policy(policy),
            Some(Err(e)) => self.emit(RuntimeEvent::PolicyRejected(e)),
        }
    }

    /// Turns what the core reported into metrics and events.
    fn after_core(&mut self) {
        let group = self.core.group().to_owned();
        let protocol = self.core.protocol_name().to_owned();
        if self.active.as_deref() != Some(protocol.as_str()) {
            crate::metrics::active_protocol(&group, &protocol, self.active.as_deref());
            self.active = Some(protocol.clone());
        }
        while let Some(e) = self.core.poll_event() {
            match &e {
                MemberEvent::View(v) => {
                    crate::metrics::view(&group, v.members.len());
                    self.event_kind = ViewEvent::of(v, !self.seen_view).label();
                    self.seen_view = true;
                }
                MemberEvent::Rejected(r) => crate::metrics::rejected(&group, r.label()),
                MemberEvent::Key { epoch, .. } => {
                    if let Some(t) = self.agreement_started.take() {
                        let latency = t.elapsed();
                        crate::metrics::rekey(
                            &group,
                            &protocol,
                            self.event_kind,
                            latency.as_secs_f64(),
                        );
                        let exps =
                            self.core.exponentiations_total().saturating_sub(self.exps_at_start);
                        self.exp_cost.refine(self.busy, exps);
                        self.emit(RuntimeEvent::RekeyLatency { epoch: *epoch, latency });
                    }
                }
                MemberEvent::Switch(s) => self.on_switch(&group, s),
                _ => {}
            }
            self.emit(RuntimeEvent::Member(e));
        }
        let exps = self.core.exponentiations_total();
        crate::metrics::exponentiations(&protocol, exps.saturating_sub(self.exps_seen));
        self.exps_seen = exps;
    }

    fn on_switch(&mut self, group: &str, event: &SwitchEvent) {
        match event {
            SwitchEvent::Decided { decision, predictions, .. } => {
                let chosen = match decision {
                    Decision::Switch { to, .. } => to.as_str(),
                    Decision::Stay { .. } => self.core.protocol_name(),
                };
                crate::metrics::decision(group, chosen, decision.label());
                for p in predictions {
                    for (event, ms) in &p.per_event {
                        crate::metrics::predicted(group, &p.protocol, event.name(), ms / 1e3);
                    }
                }
            }
            SwitchEvent::Committed { .. } => {
                // The new session started inside the delivery that committed: its first round
                // counts, from that delivery's start.
                let started = self.delivery_started.unwrap_or_else(Instant::now);
                self.event_kind = "switch";
                self.agreement_started = Some(started);
                self.busy = started.elapsed();
                self.exps_at_start = self.delivery_exps;
            }
            SwitchEvent::Aborted { label, .. } => crate::metrics::switch_aborted(group, label),
            SwitchEvent::Completed { from, to, label, commit_to_key, .. } => {
                crate::metrics::switched(group, from, to, label, commit_to_key.as_secs_f64());
            }
            SwitchEvent::Proposed(_)
            | SwitchEvent::Voted { .. }
            | SwitchEvent::Adopted { .. }
            | SwitchEvent::PolicyApplied => {}
        }
    }
}
