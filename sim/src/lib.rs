//! A discrete-event simulator of a whole group on one machine: every member has its own CPU
//! and its own network position, and runs the real plugin (loaded through the loader) inside
//! the real member core, with signing and verification.
//!
//! - **Clock.** Virtual microseconds; nothing waits for real time.
//! - **Group layer.** The [`Sequencer`] (the daemon's sans-IO core) runs on one site of the
//!   [`Topology`]: a member's message travels to it over the member's path, is ordered, and
//!   travels out to each recipient over that recipient's path. Each path has latency, uniform
//!   jitter, bandwidth (a message occupies the member's up- or downlink for its size ÷
//!   bandwidth, first come first served) and loss (a lost transmission is resent after a
//!   timeout of twice the latency, at least 200 ms, as TCP would).
//! - **CPU.** Each member processes its deliveries one at a time, in arrival order, on its own
//!   timeline. How long a call takes is, per run ([`CostMode`]), either the thread CPU time it
//!   really took here (`Measured`), or its counted operations times calibrated costs
//!   (`Counted`: exponentiations from the plugin's counters, signatures and verifications
//!   from the member core): deterministic, so the same seed gives the same figures.
//! - **Measurements.** The rekey latency of an event is the time from the view's formation at
//!   the sequencer to the last member's key; every member of the view must hold the same key.
//!
//! Without [`Control`], members only agree keys: they announce the group's protocol and send
//! no probes or reports. With it ([`Sim::with_control`]), they tick on the virtual clock and
//! probe, report, vote and switch as over the daemon, and that traffic is simulated too.

pub mod churn;
mod cpu;
pub mod evaluation;
mod network;
mod queue;
pub mod sweep;
pub mod topology;
pub mod trace;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gka_plugin_api::rng::{session_rng, SessionRng};
use gka_plugin_api::{GroupId, Protocol, SessionConfig};
use rand_core::RngCore;
use sha2::{Digest, Sha256};

use gka_host::envelope::{EnvelopeChecker, Verified};
use gka_host::group::{Delivery, Sequencer, Timing};
use gka_host::identity::{Identity, TrustStore};
use gka_host::member::{Catalogue, SwitchEvent};
use gka_host::member::{ControlTiming, MemberCore};
use gka_host::policy::Policy;
pub use topology::{Link, Topology, TopologyError};

use crate::network::LinkState;
use crate::queue::{Event, EventQueue, ToSequencer};

/// What one operation costs, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpCosts {
    /// One exponentiation.
    pub exp_ms: f64,
    /// One signature.
    pub sign_ms: f64,
    /// One verification.
    pub verify_ms: f64,
}

/// How long a plugin call takes in the simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CostMode {
    /// The thread CPU time the call really took on this machine; the costs (calibrated here)
    /// serve the predictions and the members' reports.
    Measured(OpCosts),
    /// Counted operations × these costs: deterministic.
    Counted(OpCosts),
}

impl CostMode {
    /// The name used in tables: `measured` or `counted`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Measured(_) => "measured",
            Self::Counted(_) => "counted",
        }
    }

    /// The operation costs.
    pub fn costs(&self) -> OpCosts {
        match self {
            Self::Measured(c) | Self::Counted(c) => *c,
        }
    }
}

/// A simulation's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The network.
    pub topology: Topology,
    /// How plugin calls are timed.
    pub cost: CostMode,
    /// Seeds the members' keys and shares, jitter and loss.
    pub seed: u64,
    /// The Diffie-Hellman group.
    pub dh_group: GroupId,
    /// The sequencer's batching window, ms.
    pub batch_ms: u64,
    /// `None`: every member has a CPU of its own (separate machines). `Some(k)`: all members
    /// share k cores, as members running on one machine do (a call waits for a free core).
    pub shared_cores: Option<usize>,
}

/// Why a simulation step failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The plugin refused to start a session.
    #[error("cannot start a session: {0}")]
    Session(String),
    /// The group layer refused a request.
    #[error("group layer: {0}")]
    Sequencer(String),
    /// A setting that cannot be run.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// Members of a view ended with different keys, or without one.
    #[error("no agreement: {0}")]
    NoAgreement(String),
    /// A member reported an error (a refused envelope or payload).
    #[error("{member}: {error}")]
    Member {
        /// The member.
        member: String,
        /// What it reported.
        error: String,
    },
}

struct SimMember {
    core: MemberCore,
    /// Its place: the i-th member added.
    index: usize,
    site: usize,
    busy_until_us: u64,
    uplink: LinkState,
    downlink: LinkState,
    /// The last key: (view id, fingerprint, when).
    key: Option<(u64, String, u64)>,
    /// The id of its current view (the sequencer keeps each view's members).
    view: Option<u64>,
    /// Between its commit of a switch and the switch's key (or abort).
    switching: bool,
}

/// The outcome of one measured event.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// From the (first) view's formation to the last member's key, ms.
    pub latency_ms: f64,
    /// The views the event produced (two for a partition).
    pub views: usize,
    /// Members in the views.
    pub members: usize,
}

/// The simulated group (see the module docs).
pub struct Sim {
    config: SimConfig,
    protocol: Arc<dyn Protocol>,
    tag: String,
    now_us: u64,
    queue: EventQueue,
    tick_at_us: Option<u64>,
    sequencer: Sequencer,
    /// The members, by place (see `names`); `None` once a member left.
    members: Vec<Option<SimMember>>,
    placed: usize,
    /// Every member ever added, by place (the order of adding), and each one's place: events
    /// name members by place.
    names: Vec<Arc<str>>,
    places: foldhash::HashMap<String, u32>,
    identities: BTreeMap<String, Identity>,
    trust: TrustStore,
    /// The last broadcast's envelope, verified once for its recipients (see
    /// [`Sim::verified_once`]).
    last_opened: Option<network::Opened>,
    /// The places of the last broadcast's recipients (see [`Sim::places_of`]).
    last_recipients: Option<network::RecipientPlaces>,
    rng: SessionRng,
    view_formed_us: BTreeMap<u64, u64>,
    view_members: BTreeMap<u64, Vec<String>>,
    /// When each shared core is free (empty: a CPU per member).
    cores_free_us: Vec<u64>,
    errors: Vec<SimError>,
    control: Option<Control>,
    cpu_load: f64,
    key_log: Vec<KeyRecord>,
    switch_log: Vec<(String, SwitchEvent, u64)>,
    switch_overhead: SwitchOverhead,
}

/// What protocol switches cost the members, summed over them: the CPU time of the calls made
/// while a member was switching (from its commit to the switch's key), and the bytes it sent
/// meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SwitchOverhead {
    /// CPU time, ms (before any load factor).
    pub cpu_ms: f64,
    /// Bytes sent.
    pub bytes: u64,
}

/// What members need to switch protocols in a simulation.
#[derive(Debug, Clone)]
pub struct Control {
    /// The protocols every member can run.
    pub catalogue: Arc<Catalogue>,
    /// Every member's policy (the oldest member's proposes).
    pub policy: Policy,
    /// How often members probe, report and evaluate.
    pub timing: ControlTiming,
    /// How often members tick.
    pub tick: Duration,
}

/// A key a member installed.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// The member.
    pub member: String,
    /// The key's epoch.
    pub epoch: u64,
    /// The protocol that agreed it.
    pub protocol: String,
    /// When, µs.
    pub at_us: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("protocol", &self.tag)
            .field("members", &self.members().len())
            .field("now_us", &self.now_us)
            .finish_non_exhaustive()
    }
}

fn seed_for(seed: u64, what: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gka sim");
    h.update(seed.to_be_bytes());
    h.update(what.as_bytes());
    h.finalize().into()
}

impl Sim {
    /// An empty group that will run `protocol`.
    pub fn new(config: SimConfig, protocol: Arc<dyn Protocol>) -> Self {
        let d = protocol.descriptor();
        let rng = session_rng(seed_for(config.seed, "network"));
        let timing = Timing { batch_ms: config.batch_ms, failure_timeout_ms: u64::MAX / 4 };
        Self {
            tag: format!("{}@{}", d.name, d.version),
            protocol,
            now_us: 0,
            queue: EventQueue::default(),
            tick_at_us: None,
            sequencer: Sequencer::new(timing, gka_host::group::GroupRun::default()),
            members: Vec::new(),
            placed: 0,
            names: Vec::new(),
            places: Default::default(),
            identities: BTreeMap::new(),
            trust: TrustStore::default(),
            last_opened: None,
            last_recipients: None,
            rng,
            view_formed_us: BTreeMap::new(),
            view_members: BTreeMap::new(),
            cores_free_us: vec![0; config.shared_cores.unwrap_or(0)],
            errors: Vec::new(),
            control: None,
            cpu_load: 0.0,
            key_log: Vec::new(),
            switch_log: Vec::new(),
            switch_overhead: SwitchOverhead::default(),
            config,
        }
    }

    /// Creates identities for `names` (all trusted by every member). Call before adding them.
    pub fn enroll(&mut self, names: &[String]) -> Result<(), SimError> {
        for name in names {
            let id = Identity::ed25519_from_seed(name, seed_for(self.config.seed, name))
                .map_err(|e| SimError::Session(e.to_string()))?;
            self.trust.insert(name, id.public().clone());
            self.identities.insert(name.clone(), id);
        }
        Ok(())
    }

    /// The virtual time, ms.
    pub fn now_ms(&self) -> f64 {
        self.now_us as f64 / 1e3
    }

    /// The members, in name order.
    pub fn members(&self) -> Vec<String> {
        let mut names: Vec<String> = self.present().map(|(name, _)| name.to_string()).collect();
        names.sort();
        names
    }

    /// The present members with their names, by place.
    fn present(&self) -> impl Iterator<Item = (&Arc<str>, &SimMember)> {
        self.names.iter().zip(&self.members).filter_map(|(n, m)| m.as_ref().map(|m| (n, m)))
    }

    /// A present member's place.
    fn place_of(&self, name: &str) -> Option<u32> {
        self.places.get(name).copied().filter(|&p| self.members[p as usize].is_some())
    }

    fn schedule(&mut self, at_us: u64, event: Event) {
        self.queue.push(at_us, event);
    }

    /// A uniform draw in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A member joins the group (it must be enrolled), running the simulation's protocol.
    pub fn add(&mut self, name: &str) -> Result<(), SimError> {
        let identity = self
            .identities
            .remove(name)
            .ok_or_else(|| SimError::Session(format!("{name} is not enrolled")))?;
        let session = self
            .protocol
            .new_session(SessionConfig {
                group_name: "sim".into(),
                member_id: name.to_owned(),
                dh_group: self.config.dh_group,
                rng_seed: seed_for(self.config.seed, &format!("session {name}")),
            })
            .map_err(|e| SimError::Session(e.to_string()))?;
        let checker = EnvelopeChecker::new("sim", self.trust.clone());
        let (seed, member) = (self.config.seed, name.to_owned());
        let core_seed = seed_for(self.config.seed, &format!("core {name}"));
        let mut core = MemberCore::new(identity, "sim", &self.tag, session, checker, core_seed)
            .with_seed_source(move |k| seed_for(seed, &format!("session {member} {k}")));
        if let Some(c) = &self.control {
            core = core
                .with_catalogue(c.catalogue.clone(), self.config.dh_group)
                .with_policy(c.policy.clone())
                .with_timing(c.timing);
        }
        let site = self.config.topology.site_of(self.placed);
        let place = u32::try_from(self.placed)
            .map_err(|_| SimError::Invalid("more than 2^32 members added".into()))?;
        self.places.insert(name.to_owned(), place);
        self.names.push(name.into());
        self.placed += 1;
        self.members.push(Some(SimMember {
            core,
            index: self.placed - 1,
            site,
            busy_until_us: self.now_us,
            uplink: LinkState::default(),
            downlink: LinkState::default(),
            key: None,
            view: None,
            switching: false,
        }));
        self.sequencer
            .join(name, self.now_us / 1000)
            .map_err(|e| SimError::Sequencer(e.to_string()))?;
        self.drain_sequencer();
        Ok(())
    }

    /// A member leaves.
    pub fn remove(&mut self, name: &str) -> Result<(), SimError> {
        self.sequencer
            .leave(name, self.now_us / 1000)
            .map_err(|e| SimError::Sequencer(e.to_string()))?;
        if let Some(place) = self.place_of(name) {
            self.members[place as usize] = None;
        }
        self.drain_sequencer();
        Ok(())
    }

    /// The network splits into these sets of members.
    pub fn partition(&mut self, sets: &[Vec<String>]) -> Result<(), SimError> {
        self.sequencer
            .partition(sets, self.now_us / 1000)
            .map_err(|e| SimError::Sequencer(e.to_string()))?;
        self.drain_sequencer();
        Ok(())
    }

    /// Every partition heals.
    pub fn heal(&mut self) {
        self.sequencer.heal(self.now_us / 1000);
        self.drain_sequencer();
    }

    /// A message reaches member `to` (see [`Event::Message`]).
    fn receive(
        &mut self,
        to: u32,
        from: u32,
        view_id: u64,
        bytes: Arc<[u8]>,
        verified: Option<Arc<Verified>>,
    ) {
        let from = self.names[from as usize].clone();
        match verified {
            Some(verified) => {
                self.account(to, |core, now| core.handle_verified(now, &from, &verified))
            }
            None => {
                let delivery = Delivery::Message { from: from.to_string(), view_id, bytes };
                self.account(to, |core, now| core.handle_delivery(now, delivery))
            }
        }
    }

    /// Lets every member tick (probes, reports, policy) and schedules the next tick.
    fn tick_members(&mut self) {
        let Some(control) = &self.control else { return };
        let every = control.tick;
        let report = self.local_report();
        for name in self.members() {
            let Some(place) = self.place_of(&name) else { continue };
            if let Some(m) = &mut self.members[place as usize] {
                m.core.set_local_measurements(report.clone());
            }
            self.account(place, |core, now| {
                core.tick(now);
                Ok(())
            });
        }
        let at = self.now_us + every.as_micros() as u64;
        self.schedule(at, Event::MemberTick);
    }

    /// What every member reports of its machine: the run's CPU load and operation costs.
    fn local_report(&self) -> gka_host::member::Report {
        let c = self.config.cost.costs();
        gka_host::member::Report {
            cpu_load: Some(self.cpu_load),
            exp_ms: Some(c.exp_ms),
            sign_ms: Some(c.sign_ms),
            verify_ms: Some(c.verify_ms),
            ..gka_host::member::Report::default()
        }
    }

    /// Members can switch protocols: each gets the catalogue, the policy and the timing, and
    /// ticks every `control.tick` of virtual time (so it probes, reports and, as the oldest,
    /// proposes). Call before adding members.
    pub fn with_control(mut self, control: Control) -> Self {
        self.control = Some(control);
        let at = self.now_us;
        self.schedule(at, Event::MemberTick);
        self
    }

    /// The network changes (members keep their place: member i on site i mod the sites).
    pub fn set_topology(&mut self, topology: Topology) {
        self.config.topology = topology;
        let topology = &self.config.topology;
        for m in self.members.iter_mut().flatten() {
            m.site = topology.site_of(m.index);
        }
    }

    /// Every machine's CPU load changes: calls take (1 + load) times as long.
    pub fn set_cpu_load(&mut self, load: f64) {
        self.cpu_load = load.max(0.0);
    }

    /// Every key installed so far.
    pub fn keys(&self) -> &[KeyRecord] {
        &self.key_log
    }

    /// Every switch event so far: (member, event, when in µs).
    pub fn switch_events(&self) -> &[(String, SwitchEvent, u64)] {
        &self.switch_log
    }

    /// What switches have cost so far.
    pub fn switch_overhead(&self) -> SwitchOverhead {
        self.switch_overhead
    }

    /// The members of a view, as the group layer formed it (empty for an unknown view).
    pub fn view_members(&self, view_id: u64) -> &[String] {
        self.view_members.get(&view_id).map_or(&[], Vec::as_slice)
    }

    /// When each view was formed at the sequencer, µs.
    pub fn views_formed(&self) -> &BTreeMap<u64, u64> {
        &self.view_formed_us
    }

    /// The virtual time, µs.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Runs until `until_us` of virtual time (members tick meanwhile, if they have control).
    pub fn run_until(&mut self, until_us: u64) {
        while self.queue.next_at().is_some_and(|at| at <= until_us) {
            self.step();
        }
        self.now_us = self.now_us.max(until_us);
    }

    fn step(&mut self) {
        let Some((at_us, event)) = self.queue.pop() else { return };
        self.now_us = self.now_us.max(at_us);
        match event {
            Event::Message { to, from, view_id, bytes, verified } => {
                self.receive(to, from, view_id, bytes, verified)
            }
            Event::Delivery { to, delivery } => {
                self.account(to, |core, now| core.handle_delivery(now, *delivery))
            }
            Event::AtSequencer(message) => {
                let ToSequencer { from, view_id, to, bytes } = *message;
                // A member that left, or a view that ended: dropped, as the daemon would.
                let _ =
                    self.sequencer.send(&from, view_id, to.as_deref(), bytes, self.now_us / 1000);
                self.drain_sequencer();
            }
            Event::SequencerTick => {
                self.tick_at_us = None;
                self.sequencer.tick(self.now_us / 1000);
                self.drain_sequencer();
            }
            Event::MemberTick => self.tick_members(),
        }
    }

    /// Runs until nothing is left to happen (without control: members that tick never stop;
    /// use [`Self::run_until`]).
    pub fn run(&mut self) {
        while !self.queue.is_empty() {
            self.step();
        }
        // The last deliveries may have started work that ends later (a member computing its
        // key): the group is quiet only once every member's CPU is idle, and whatever happens
        // next happens after that.
        let idle = self.members.iter().flatten().map(|m| m.busy_until_us).max().unwrap_or(0);
        self.now_us = self.now_us.max(idle);
    }

    /// Checks that every member holds a key for its current view, the same within each view,
    /// and measures the event: from the earliest of these views' formation to the last key.
    pub fn settled(&mut self) -> Result<Measurement, SimError> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        let mut views: BTreeMap<u64, (String, usize)> = BTreeMap::new();
        let mut last_key_us = 0;
        let mut members: Vec<(&Arc<str>, &SimMember)> = self.present().collect();
        members.sort_by(|a, b| a.0.cmp(b.0));
        let members_count = members.len();
        for (name, m) in members {
            let view_id = m
                .view
                .as_ref()
                .ok_or_else(|| SimError::NoAgreement(format!("{name} has no view")))?;
            let Some((key_view, fingerprint, at)) = &m.key else {
                return Err(SimError::NoAgreement(format!("{name} has no key")));
            };
            if key_view != view_id {
                return Err(SimError::NoAgreement(format!(
                    "{name} has no key for view {view_id} (its last is for view {key_view})"
                )));
            }
            let entry = views.entry(*view_id).or_insert_with(|| (fingerprint.clone(), 0));
            if &entry.0 != fingerprint {
                return Err(SimError::NoAgreement(format!("two keys in view {view_id}")));
            }
            entry.1 += 1;
            last_key_us = last_key_us.max(*at);
        }
        let formed =
            views.keys().filter_map(|v| self.view_formed_us.get(v)).min().copied().unwrap_or(0);
        Ok(Measurement {
            latency_ms: last_key_us.saturating_sub(formed) as f64 / 1e3,
            views: views.len(),
            members: members_count,
        })
    }
}
