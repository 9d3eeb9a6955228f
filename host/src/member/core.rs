//! The sans-IO core of a member: a plugin session, wrapped in signed envelopes, with the group
//! key put to use for application data, live measurements shared with the group, and the
//! agreed protocol switch. The member runtime (tokio, TCP to the daemon) and the in-memory
//! network both drive it; it reads no clock and does no IO itself: time comes in as the
//! `now` argument, a `Duration` since any fixed start.
//!
//! ```text
//!  Delivery (view / message bytes) ─► MemberCore ─► Outgoing (envelope bytes to send)
//!  send_data(plaintext), tick(now) ─►            ─► MemberEvent (views, keys, data, switches,
//!                                                                rejections)
//! ```
//!
//! - Every plugin payload leaves in an envelope signed by this member and bound to group, view,
//!   epoch, protocol and sequence number; every received envelope is checked against the trust
//!   store first (see [`crate::envelope`]), and refusals are reported and counted, never passed
//!   to the plugin.
//! - Epochs are the host's: `epoch_of(view, n)`, where a new view starts at n = 0 and each
//!   refresh or protocol switch adds one. Every member computes them alike.
//! - Application data is encrypted with ChaCha20-Poly1305 under the newest installed key and
//!   tagged with its epoch; the last [`KEPT_KEYS`] keys are kept, so data sent just before a
//!   rekey still decrypts. Data sent before the first key is refused with an error, and data
//!   under an unknown or forgotten epoch is reported as an event: nothing is dropped silently.
//! - **Which protocol runs.** In every view the oldest (trusted) member announces the protocol
//!   it runs. A member for which that member is new (a joiner, or the other side of a healed
//!   partition) holds the view's protocol messages until the announcement, then runs the
//!   group's protocol, starting a fresh session of it if it ran another one.
//! - **Measurements.** The core probes round trips to a few peers each
//!   [`ControlTiming::probe_every`] and reports its measurements to the group once its key is in
//!   place in a view, then every [`ControlTiming::report_every`].
//! - **Switching.** See [`crate::switch`]: the oldest member evaluates its policy at quiescent
//!   points and proposes; everyone votes; the agreed order decides commit or abort alike at
//!   every member.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use gka_plugin_api::kdf::{derive_switch_key, KeyContext};
use gka_plugin_api::rng::{session_rng, SessionRng};
use gka_plugin_api::{
    epoch_of, GroupId, GroupKey, Output, Session, SessionConfig, SessionError, View, ViewEvent,
};
use rand_core::RngCore;

use super::control::{Control, PluginRef, Proposal, Report, SwitchId, Verdict};
use super::switch::{verdict, Catalogue, SwitchEvent, SwitchState, VoterState};
use crate::envelope::{Envelope, EnvelopeChecker, Header, Kind, Rejection};
use crate::group::Delivery;
use crate::identity::Identity;
use crate::policy::live::{EventRates, GroupReports, Probes};
use crate::policy::{predict, Decision, Policy, State};

/// How many past keys a member keeps for data still in flight.
pub const KEPT_KEYS: usize = 4;

/// Protocol payloads a member holds while it waits for the group's protocol announcement.
pub const MAX_HELD_PAYLOADS: usize = 4096;

/// Bytes of protocol payloads a member holds while it waits for the announcement.
pub const MAX_HELD_BYTES: usize = 16 << 20;

const NONCE_LEN: usize = 12;

/// How often the core probes, reports and (as the oldest member) evaluates its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlTiming {
    /// Between two probing rounds.
    pub probe_every: Duration,
    /// Between two reports in a view (the first goes as soon as the view's key is in place).
    pub report_every: Duration,
    /// Between two policy evaluations.
    pub evaluate_every: Duration,
}

impl Default for ControlTiming {
    fn default() -> Self {
        Self {
            probe_every: Duration::from_secs(1),
            report_every: Duration::from_secs(5),
            evaluate_every: Duration::from_secs(1),
        }
    }
}

/// Bytes to hand to the group layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The view the message was sent in.
    pub view_id: u64,
    /// `None` for a broadcast, else the recipient.
    pub to: Option<String>,
    /// The encoded envelope.
    pub bytes: Vec<u8>,
}

/// Something the application (or its log) should know.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberEvent {
    /// A new view.
    View(View),
    /// A new group key (its fingerprint only).
    Key {
        /// The key's epoch.
        epoch: u64,
        /// A public fingerprint of the key.
        fingerprint: String,
        /// The protocol that agreed it (`name@version`).
        protocol: String,
    },
    /// Decrypted application data.
    Data {
        /// The sender.
        from: String,
        /// The epoch of the key it was encrypted under.
        epoch: u64,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// An envelope refused before reaching the plugin.
    Rejected(Rejection),
    /// The plugin, or this member's control logic, refused a checked message.
    ProtocolError {
        /// The sender.
        from: String,
        /// The error.
        error: String,
    },
    /// Data that could not be decrypted (unknown epoch, or it does not authenticate).
    Undecryptable {
        /// The sender.
        from: String,
        /// The epoch it claims.
        epoch: u64,
        /// Why.
        reason: String,
    },
    /// A step of a protocol switch, or of the policy behind it.
    Switch(SwitchEvent),
}

/// Why a member could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// No group key is installed yet.
    #[error("no group key yet: data can be sent once the first key agreement completes")]
    NoKey,
    /// No view yet.
    #[error("not in a view yet")]
    NoView,
    /// A protocol switch is being voted on or completed: refresh after it.
    #[error("a protocol switch is under way")]
    SwitchUnderWay,
    /// The plugin failed.
    #[error("key agreement failed: {0}")]
    Session(#[from] SessionError),
}

/// One member's sans-IO core (see the module docs).
pub struct MemberCore {
    identity: Identity,
    group: String,
    /// The running protocol, `name@version`.
    protocol: String,
    session: Box<dyn Session>,
    checker: EnvelopeChecker,
    catalogue: Arc<Catalogue>,
    dh_group: GroupId,
    policy: Option<Policy>,
    next_policy: Option<Policy>,
    timing: ControlTiming,
    now: Duration,
    view: Option<View>,
    /// The view as given to the plugin: only trusted members.
    trusted_view: Option<View>,
    /// Since when no agreement has run (the last view or key): the view's age for the policy.
    quiet_since: Duration,
    keys_in_view: u64,
    /// Mirrors the plugin: an agreement runs from a view, refresh or switch until its key.
    pending: bool,
    /// Whether this view's protocol announcement has reached this member (and it runs that
    /// protocol).
    announced: bool,
    /// Protocol payloads (sender, protocol, body) held until the group's protocol is announced;
    /// `Some` while waiting.
    held: Option<Vec<(String, String, Vec<u8>)>>,
    held_bytes: usize,
    seq: u64,
    keys: VecDeque<GroupKey>,
    outgoing: VecDeque<Outgoing>,
    events: VecDeque<MemberEvent>,
    switch: SwitchState,
    /// A proposal this member sent that it has not yet seen delivered.
    proposal_out: bool,
    proposals_in_view: u64,
    last_switch: Duration,
    last_abort: Option<Duration>,
    last_evaluation: Option<Duration>,
    last_probe: Option<Duration>,
    last_report: Option<Duration>,
    reports: GroupReports,
    /// Whether this member reports its measurements (it can switch: a catalogue or policy).
    reporting: bool,
    /// Exponentiations of the sessions it ran before the current one.
    retired_exponentiations: u64,
    sessions_started: u64,
    seed_source: Option<Box<dyn FnMut(u64) -> [u8; 32] + Send>>,
    /// The core's random source, seeded by the caller.
    rng: SessionRng,
    /// Envelopes signed and checked so far (for cost accounting).
    signed: u64,
    verified: u64,
    probes: Probes,
    rates: EventRates,
    local: Report,
}

impl std::fmt::Debug for MemberCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberCore")
            .field("id", &self.identity.id())
            .field("group", &self.group)
            .field("protocol", &self.protocol)
            .finish()
    }
}

fn plugin_now(now: Duration) -> u64 {
    now.as_millis().try_into().unwrap_or(u64::MAX)
}

fn fresh_view(view: &View) -> View {
    View {
        view_id: view.view_id,
        members: view.members.clone(),
        joined: view.members.clone(),
        left: Vec::new(),
    }
}

impl MemberCore {
    /// A member of `group` running `session` of protocol `protocol` (`name@version`), signing
    /// with `identity` and checking envelopes with `checker`. It can only ever run this
    /// protocol: give it a catalogue ([`Self::with_catalogue`]) to join groups that run
    /// another one and to vote for switches, and a policy ([`Self::with_policy`]) to propose
    /// switches when it is the oldest member.
    ///
    /// `rng_seed` seeds the core's own random source (data nonces, the seeds of sessions
    /// started for a switch or an adoption): the runtime draws it from the operating system,
    /// a simulation or a test fixes it. The core reads no randomness of its own.
    pub fn new(
        identity: Identity,
        group: &str,
        protocol: &str,
        session: Box<dyn Session>,
        checker: EnvelopeChecker,
        rng_seed: [u8; 32],
    ) -> Self {
        Self {
            rng: session_rng(rng_seed),
            identity,
            group: group.to_owned(),
            protocol: protocol.to_owned(),
            session,
            checker,
            catalogue: Arc::new(Catalogue::default()),
            dh_group: GroupId::Ffdhe2048,
            policy: None,
            next_policy: None,
            timing: ControlTiming::default(),
            now: Duration::ZERO,
            view: None,
            trusted_view: None,
            quiet_since: Duration::ZERO,
            keys_in_view: 0,
            pending: false,
            announced: false,
            held_bytes: 0,
            held: None,
            seq: 0,
            keys: VecDeque::new(),
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            switch: SwitchState::Stable,
            proposal_out: false,
            proposals_in_view: 0,
            last_switch: Duration::ZERO,
            last_abort: None,
            last_evaluation: None,
            last_probe: None,
            last_report: None,
            reports: GroupReports::default(),
            reporting: false,
            retired_exponentiations: 0,
            sessions_started: 0,
            seed_source: None,
            signed: 0,
            verified: 0,
            probes: Probes::default(),
            rates: EventRates::default(),
            local: Report::default(),
        }
    }

    /// The protocols this member can switch to or adopt, and the Diffie-Hellman group for
    /// their sessions.
    pub fn with_catalogue(mut self, catalogue: Arc<Catalogue>, dh_group: GroupId) -> Self {
        self.reporting = true;
        self.catalogue = catalogue;
        self.dh_group = dh_group;
        self
    }

    /// The policy this member votes by, and proposes by as the oldest member.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.reporting = true;
        self.policy = Some(policy);
        self
    }

    /// How often to probe, report and evaluate.
    pub fn with_timing(mut self, timing: ControlTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Replaces the policy at the next quiescent point (no agreement and no switch under way).
    pub fn set_policy(&mut self, policy: Policy) {
        self.next_policy = Some(policy);
    }

    /// Sets this member's own measurements (CPU load, operation costs); round trips and
    /// bandwidth come from the core's probes.
    pub fn set_local_measurements(&mut self, report: Report) {
        self.local = report;
    }

    /// This member's id.
    pub fn id(&self) -> &str {
        self.identity.id()
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The running protocol, as `name@version`.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The running protocol's name.
    pub fn protocol_name(&self) -> &str {
        self.protocol.split('@').next().unwrap_or_default()
    }

    /// Exponentiations by every session this member has run (a switch or an adoption starts
    /// a new session, whose own counter starts from zero).
    pub fn exponentiations_total(&self) -> u64 {
        self.retired_exponentiations + self.session.counters().exponentiations
    }

    /// Where the seeds of sessions started for a switch or an adoption come from: `source`
    /// gets a counter (0, 1, ...). By default they come from the core's seeded random
    /// source.
    pub fn with_seed_source(
        mut self,
        source: impl FnMut(u64) -> [u8; 32] + Send + 'static,
    ) -> Self {
        self.seed_source = Some(Box::new(source));
        self
    }

    /// The current plugin session's counters.
    pub fn session_counters(&self) -> gka_plugin_api::Counters {
        self.session.counters()
    }

    /// The newest installed key's epoch.
    pub fn epoch(&self) -> Option<u64> {
        self.keys.back().map(|k| k.epoch)
    }

    /// The newest installed key's fingerprint.
    pub fn fingerprint(&self) -> Option<String> {
        self.keys.back().map(GroupKey::fingerprint)
    }

    /// Whether a key agreement (after a view, refresh or switch) is running.
    pub fn agreement_running(&self) -> bool {
        self.pending
    }

    /// Whether a switch is being voted on or its first key agreed.
    pub fn switch_under_way(&self) -> bool {
        !matches!(self.switch, SwitchState::Stable)
    }

    /// Envelopes signed and envelopes checked (signature verifications attempted) so far.
    pub fn crypto_counts(&self) -> (u64, u64) {
        (self.signed, self.verified)
    }

    /// The round-trip and bandwidth probes.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    fn agreeing_epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| epoch_of(v.view_id, self.keys_in_view))
    }

    fn leader(&self) -> Option<&str> {
        self.trusted_view.as_ref().and_then(|v| v.members.first()).map(String::as_str)
    }

    fn is_leader(&self) -> bool {
        self.leader() == Some(self.identity.id())
    }

    fn my_plugin(&self) -> PluginRef {
        let (name, version) = self.protocol.split_once('@').unwrap_or((&self.protocol, ""));
        self.catalogue
            .get(name)
            .map(|e| e.plugin.clone())
            .filter(|p| p.version == version)
            .unwrap_or_else(|| PluginRef {
                name: name.to_owned(),
                version: version.to_owned(),
                sha256: String::new(),
            })
    }

    fn error(&mut self, from: &str, error: String) {
        self.events.push_back(MemberEvent::ProtocolError { from: from.to_owned(), error });
    }

    /// Handles one delivery from the group layer.
    pub fn handle_delivery(
        &mut self,
        now: Duration,
        delivery: Delivery,
    ) -> Result<(), MemberError> {
        self.now = now;
        match delivery {
            Delivery::View(view) => self.on_view(view)?,
            Delivery::Message { from, bytes, .. } => {
                self.verified += 1;
                let envelope = match self.checker.accept_from(&bytes, Some(&from)) {
                    Ok(e) => e,
                    Err(r) => {
                        self.events.push_back(MemberEvent::Rejected(r));
                        return Ok(());
                    }
                };
                let from = envelope.header.sender.clone();
                match envelope.header.kind {
                    Kind::Protocol => {
                        self.on_protocol(&from, &envelope.header.protocol, &envelope.body)
                    }
                    Kind::Data => self.decrypt(&envelope),
                    Kind::Control => match Control::from_bytes(&envelope.body) {
                        Ok(control) => self.on_control(&from, control)?,
                        Err(e) => self.error(&from, e.to_string()),
                    },
                }
            }
        }
        Ok(())
    }

    fn on_view(&mut self, view: View) -> Result<(), MemberError> {
        if let Some(current) = &self.view {
            if view.view_id <= current.view_id {
                let error =
                    format!("view {} does not follow view {}", view.view_id, current.view_id);
                self.error("group layer", error);
                return Ok(());
            }
        }
        self.checker.set_view(view.view_id);
        // Access control: members outside the trust store take no part in key agreement, so
        // the plugin sees only the trusted ones.
        let members: Vec<String> =
            view.members.iter().filter(|m| self.checker.trusts(m)).cloned().collect();
        let previous = self.trusted_view.as_ref().map(|v| v.members.clone()).unwrap_or_default();
        let trusted = View {
            view_id: view.view_id,
            joined: members.iter().filter(|m| !previous.contains(m)).cloned().collect(),
            left: previous.iter().filter(|m| !members.contains(m)).cloned().collect(),
            members,
        };
        let first = self.view.is_none();
        // Views where only untrusted processes came or went change nothing for the policy.
        if first || !trusted.joined.is_empty() || !trusted.left.is_empty() {
            self.rates.record(self.now, ViewEvent::of(&trusted, first));
        }
        self.view = Some(view.clone());
        self.trusted_view = Some(trusted.clone());
        self.quiet_since = self.now;
        self.keys_in_view = 0;
        self.pending = true;
        self.seq = 0;
        self.proposal_out = false;
        self.proposals_in_view = 0;
        self.last_report = None;
        self.reports.clear();
        self.checker.set_epoch(self.agreeing_epoch());
        self.events.push_back(MemberEvent::View(view));
        if let SwitchState::Voting { proposal, .. } = &self.switch {
            let id = proposal.id;
            self.abort(id, "the view changed before every member voted".into(), "view_change");
        }
        // Messages held for the previous view's announcement belong to that view: gone.
        self.held = None;
        self.held_bytes = 0;
        // This member runs the group's protocol for sure only if the previous view's
        // announcement reached it and the new oldest member was in that view: by view
        // synchrony every member of that view then got the same announcement, and the same
        // votes since. Otherwise it waits for this view's announcement.
        let knew_leader = self.leader().is_some_and(|l| previous.iter().any(|p| p == l));
        let in_step = std::mem::take(&mut self.announced) && knew_leader;
        if self.is_leader() {
            let me = self.my_plugin();
            self.send_control(None, &Control::Announce(me));
        } else if !in_step {
            self.held = Some(Vec::new());
            return Ok(());
        }
        self.session.handle_view(plugin_now(self.now), &trusted)?;
        self.drain_session();
        Ok(())
    }

    fn on_protocol(&mut self, from: &str, protocol: &str, body: &[u8]) {
        if let Some(held) = &mut self.held {
            if held.len() < MAX_HELD_PAYLOADS && self.held_bytes + body.len() <= MAX_HELD_BYTES {
                self.held_bytes += body.len();
                held.push((from.to_owned(), protocol.to_owned(), body.to_vec()));
            } else {
                let error = "too many protocol messages before the group's protocol was announced";
                self.error(from, error.into());
            }
            return;
        }
        if protocol != self.protocol {
            let error =
                format!("envelope for protocol {protocol}, this member runs {}", self.protocol);
            self.error(from, error);
            return;
        }
        if let Err(e) = self.session.handle_payload(plugin_now(self.now), from, body) {
            self.error(from, e.to_string());
        }
        self.drain_session();
    }

    fn on_control(&mut self, from: &str, control: Control) -> Result<(), MemberError> {
        match control {
            Control::Announce(plugin) => self.on_announce(from, plugin)?,
            Control::Report(report) => {
                if self.trusted_view.as_ref().is_some_and(|v| v.members.iter().any(|m| m == from)) {
                    self.reports.insert(from, report);
                }
            }
            Control::Propose(proposal) => self.on_propose(from, proposal),
            Control::Vote { id, verdict } => self.on_vote(from, id, verdict)?,
            Control::Ping { nonce, .. } => {
                if from != self.identity.id() {
                    self.send_control(Some(from.to_owned()), &Control::Pong { nonce });
                }
            }
            Control::Pong { nonce } => self.probes.on_pong(self.now, from, nonce),
        }
        Ok(())
    }

    fn on_announce(&mut self, from: &str, plugin: PluginRef) -> Result<(), MemberError> {
        if self.leader() != Some(from) {
            self.error(from, "a protocol announcement from a member that is not the oldest".into());
            return Ok(());
        }
        let Some(held) = self.held.take() else {
            // Not waiting: this member went on from the previous view with the oldest member,
            // so they run the same protocol.
            self.announced = plugin.tag() == self.protocol;
            if !self.announced {
                let error =
                    format!("the group runs {}, this member runs {}", plugin.tag(), self.protocol);
                self.error(from, error);
            }
            return Ok(());
        };
        self.held_bytes = 0;
        let trusted = self.trusted_view.clone().expect("an announcement comes in a view");
        // The same protocol: this member's own session goes on (from its state, if it has one).
        if plugin.tag() == self.protocol {
            self.session.handle_view(plugin_now(self.now), &trusted)?;
        } else {
            match self.prepare_session(&plugin) {
                Ok(session) => self.replace_session(session),
                Err(reason) => {
                    let error =
                        format!("cannot run the group's protocol {}: {reason}", plugin.tag());
                    self.error(from, error);
                    self.held = Some(held);
                    return Ok(());
                }
            }
            self.protocol = plugin.tag();
            // A switch this member was finishing belongs to the group it came from.
            self.switch = SwitchState::Stable;
            self.events.push_back(MemberEvent::Switch(SwitchEvent::Adopted {
                protocol: self.protocol.clone(),
            }));
            self.session.handle_view(plugin_now(self.now), &fresh_view(&trusted))?;
        }
        self.announced = true;
        self.drain_session();
        for (sender, protocol, body) in held {
            self.on_protocol(&sender, &protocol, &body);
        }
        Ok(())
    }

    /// A fresh session of `plugin`, which must be in the catalogue, the same version and the
    /// same build.
    fn replace_session(&mut self, session: Box<dyn Session>) {
        self.retired_exponentiations += self.session.counters().exponentiations;
        self.session = session;
    }

    fn next_seed(&mut self) -> [u8; 32] {
        let n = self.sessions_started;
        self.sessions_started += 1;
        match &mut self.seed_source {
            Some(source) => source(n),
            None => {
                let mut seed = [0u8; 32];
                self.rng.fill_bytes(&mut seed);
                seed
            }
        }
    }

    fn prepare_session(&mut self, plugin: &PluginRef) -> Result<Box<dyn Session>, String> {
        let catalogue = self.catalogue.clone();
        let entry = catalogue.get(&plugin.name).ok_or("no such plugin here")?;
        if entry.plugin.version != plugin.version || entry.plugin.sha256 != plugin.sha256 {
            return Err(format!(
                "this member has {} (sha256 {})",
                entry.plugin.tag(),
                entry.plugin.sha256
            ));
        }
        let seed = self.next_seed();
        entry
            .protocol
            .new_session(SessionConfig {
                group_name: self.group.clone(),
                member_id: self.identity.id().to_owned(),
                dh_group: self.dh_group,
                rng_seed: seed,
            })
            .map_err(|e| e.to_string())
    }

    fn on_propose(&mut self, from: &str, proposal: Proposal) {
        if self.leader() != Some(from) {
            self.error(from, "a switch proposal from a member that is not the oldest".into());
            return;
        }
        if from == self.identity.id() {
            self.proposal_out = false;
        }
        let id = proposal.id;
        if !matches!(self.switch, SwitchState::Stable) {
            // Still finishing the previous switch (or voting): say no, so that every member
            // aborts this one alike instead of waiting for a vote that never comes.
            let verdict = Verdict::Reject("another switch is under way here".into());
            self.send_control(None, &Control::Vote { id, verdict });
            return;
        }
        let size = self.trusted_view.as_ref().map_or(0, |v| v.members.len() as u64);
        let me = VoterState {
            agreement_running: self.pending,
            running: self.held.is_none().then_some(self.protocol.as_str()),
            group_size: size,
        };
        let mut verdict = verdict(&proposal, me, &self.catalogue, self.policy.as_ref());
        // The new session is made now, so that a commit cannot fail at this member alone.
        let mut prepared = None;
        if verdict == Verdict::Accept {
            match self.prepare_session(&proposal.to) {
                Ok(session) => prepared = Some(session),
                Err(e) => {
                    verdict = Verdict::Reject(format!("cannot start {}: {e}", proposal.to.tag()))
                }
            }
        }
        self.events.push_back(MemberEvent::Switch(SwitchEvent::Proposed(proposal.clone())));
        self.events
            .push_back(MemberEvent::Switch(SwitchEvent::Voted { id, verdict: verdict.clone() }));
        self.switch = SwitchState::Voting { proposal, accepted: BTreeSet::new(), prepared };
        self.send_control(None, &Control::Vote { id, verdict });
    }

    fn on_vote(&mut self, from: &str, id: SwitchId, verdict: Verdict) -> Result<(), MemberError> {
        let members = self.trusted_view.as_ref().map(|v| v.members.clone()).unwrap_or_default();
        let SwitchState::Voting { proposal, accepted, .. } = &mut self.switch else {
            return Ok(());
        };
        // Votes for an attempt already decided (after the first reject) are expected: ignored.
        if proposal.id != id || !members.iter().any(|m| m == from) {
            return Ok(());
        }
        match verdict {
            Verdict::Reject(reason) => {
                self.abort(id, format!("{from} rejected it: {reason}"), "rejected");
            }
            Verdict::Accept => {
                accepted.insert(from.to_owned());
                if members.iter().all(|m| accepted.contains(m)) {
                    self.commit()?;
                }
            }
        }
        Ok(())
    }

    fn abort(&mut self, id: SwitchId, reason: String, label: &str) {
        self.switch = SwitchState::Stable;
        self.last_abort = Some(self.now);
        self.events.push_back(MemberEvent::Switch(SwitchEvent::Aborted {
            id,
            reason,
            label: label.to_owned(),
        }));
    }

    fn commit(&mut self) -> Result<(), MemberError> {
        let SwitchState::Voting { proposal, prepared, .. } =
            std::mem::replace(&mut self.switch, SwitchState::Stable)
        else {
            return Ok(());
        };
        // Every member accepted, this one included, so it had a key, a view and a session
        // ready: `verdict` refuses otherwise.
        let (Some(old), Some(trusted), Some(session)) =
            (self.keys.back().cloned(), self.trusted_view.clone(), prepared)
        else {
            let error = format!("switch {} committed without a key or session here", proposal.id);
            self.error(self.identity.id().to_owned().as_str(), error);
            return Ok(());
        };
        self.replace_session(session);
        self.protocol = proposal.to.tag();
        self.keys_in_view += 1;
        self.pending = true;
        self.checker.set_epoch(self.agreeing_epoch());
        self.events.push_back(MemberEvent::Switch(SwitchEvent::Committed {
            id: proposal.id,
            to: proposal.to.name.clone(),
        }));
        self.switch =
            SwitchState::Committed { proposal, view_id: trusted.view_id, old, since: self.now };
        self.session.handle_view(plugin_now(self.now), &fresh_view(&trusted))?;
        self.drain_session();
        Ok(())
    }

    /// Starts a key refresh (call on every member at the same point of the agreed order).
    pub fn refresh(&mut self, now: Duration) -> Result<(), MemberError> {
        self.now = now;
        if self.view.is_none() {
            return Err(MemberError::NoView);
        }
        if self.switch_under_way() {
            return Err(MemberError::SwitchUnderWay);
        }
        // As in the plugin: a refresh during an agreement is already covered by it.
        if !self.pending {
            self.keys_in_view += 1;
            self.pending = true;
            self.checker.set_epoch(self.agreeing_epoch());
        }
        self.session.handle_refresh(plugin_now(now))?;
        self.drain_session();
        Ok(())
    }

    /// Lets time pass: probes, reports, a pending policy change and (as the oldest member) a
    /// policy evaluation happen here when they are due.
    pub fn tick(&mut self, now: Duration) {
        self.now = now;
        let Some(trusted) = self.trusted_view.clone() else { return };
        let quiescent = !self.pending && self.held.is_none() && !self.switch_under_way();
        if quiescent && self.next_policy.is_some() {
            self.policy = self.next_policy.take();
            self.events.push_back(MemberEvent::Switch(SwitchEvent::PolicyApplied));
        }
        let due = |last: Option<Duration>, every: Duration| {
            last.is_none_or(|l| now.saturating_sub(l) >= every)
        };
        if due(self.last_probe, self.timing.probe_every) {
            self.last_probe = Some(now);
            let peers: Vec<String> =
                trusted.members.iter().filter(|m| *m != self.identity.id()).cloned().collect();
            for (peer, ping) in self.probes.round(now, &peers) {
                self.send_control(Some(peer), &ping);
            }
        }
        let key_in_view =
            self.reporting && self.keys.back().is_some_and(|k| k.view_id == trusted.view_id);
        if key_in_view && due(self.last_report, self.timing.report_every) {
            self.send_report();
        }
        if quiescent && key_in_view && self.is_leader() && !self.proposal_out {
            self.evaluate(&trusted);
        }
    }

    fn send_report(&mut self) {
        self.last_report = Some(self.now);
        let report = Report {
            rtt_median_ms: self.probes.rtt_median_ms(),
            rtt_worst_ms: self.probes.rtt_worst_ms(),
            bandwidth_mbps: self.probes.bandwidth_mbps(),
            ..self.local.clone()
        };
        self.send_control(None, &Control::Report(report));
    }

    /// The oldest member's policy evaluation at a quiescent point.
    fn evaluate(&mut self, trusted: &View) {
        let Some(policy) = &self.policy else { return };
        let min_age = Duration::try_from_secs_f64(*policy.stability.min_view_age_s.get_ref())
            .unwrap_or(Duration::MAX);
        if self.now.saturating_sub(self.quiet_since) < min_age
            || self
                .last_evaluation
                .is_some_and(|l| self.now.saturating_sub(l) < self.timing.evaluate_every)
            || !self.reports.complete(&trusted.members)
        {
            return;
        }
        self.last_evaluation = Some(self.now);
        let mut inputs = self.reports.inputs(trusted.members.len() as u64, self.local.cpu_load);
        let per_minute = |kind| self.rates.per_minute(self.now, kind);
        inputs.join_rate = per_minute(ViewEvent::Join);
        inputs.leave_rate = per_minute(ViewEvent::Leave);
        inputs.merge_rate = per_minute(ViewEvent::Merge);
        inputs.partition_rate = per_minute(ViewEvent::Partition);
        let state = State {
            current: self.protocol_name().to_owned(),
            since_switch_s: self.now.saturating_sub(self.last_switch).as_secs_f64(),
            since_abort_s: self.last_abort.map(|a| self.now.saturating_sub(a).as_secs_f64()),
        };
        let catalogue = self.catalogue.clone();
        let models = catalogue.cost_models();
        let decision = policy.decide(&models, &inputs, &state);
        let predictions = predict(&models, &inputs, &policy.weights);
        let proposal = match &decision {
            Decision::Switch { to, reason, label, gain } => {
                catalogue.get(to).map(|entry| Proposal {
                    id: SwitchId { view_id: trusted.view_id, counter: self.proposals_in_view },
                    from: self.protocol.clone(),
                    to: entry.plugin.clone(),
                    reason: reason.clone(),
                    label: label.clone(),
                    gain: *gain,
                })
            }
            Decision::Stay { .. } => None,
        };
        self.events.push_back(MemberEvent::Switch(SwitchEvent::Decided {
            decision,
            predictions,
            inputs: inputs.clone(),
        }));
        if let Some(proposal) = proposal {
            self.proposals_in_view += 1;
            self.proposal_out = true;
            self.send_control(None, &Control::Propose(proposal));
        }
    }

    fn install(&mut self, agreed: GroupKey) {
        if !self.pending {
            let error = "the plugin output a key outside any agreement: ignored".to_owned();
            self.error(self.identity.id().to_owned().as_str(), error);
            return;
        }
        let epoch = self.agreeing_epoch();
        let view_id = self.view.as_ref().map_or(0, |v| v.view_id);
        let mut key = GroupKey { epoch, view_id, key: agreed.key };
        self.quiet_since = self.now;
        // Only a committed switch ends with this key (a vote under way goes on).
        let committed = match std::mem::replace(&mut self.switch, SwitchState::Stable) {
            SwitchState::Committed { proposal, view_id, old, since } => {
                Some((proposal, view_id, old, since))
            }
            other => {
                self.switch = other;
                None
            }
        };
        if let Some((proposal, commit_view, old, since)) = committed {
            // The next decision waits for every member's report after its own switch.
            self.reports.clear();
            self.last_report = None;
            let chained = commit_view == view_id;
            if chained {
                let ctx =
                    KeyContext { group: &self.group, view_id, protocol: &proposal.to.name, epoch };
                key.key = derive_switch_key(&key.key, &old.key, &ctx);
            }
            self.last_switch = self.now;
            let from = proposal.from.split('@').next().unwrap_or_default().to_owned();
            self.events.push_back(MemberEvent::Switch(SwitchEvent::Completed {
                from,
                to: proposal.to.name,
                label: proposal.label,
                epoch,
                commit_to_key: self.now.saturating_sub(since),
                chained,
            }));
        }
        self.events.push_back(MemberEvent::Key {
            epoch,
            fingerprint: key.fingerprint(),
            protocol: self.protocol.clone(),
        });
        self.keys.push_back(key);
        self.pending = false;
        while self.keys.len() > KEPT_KEYS {
            self.keys.pop_front();
        }
        // The leader decides on reports sent once each member's key is in place.
        if self.reporting && self.last_report.is_none() {
            self.send_report();
        }
    }

    fn drain_session(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Broadcast(payload) => {
                    self.seal(Kind::Protocol, None, self.agreeing_epoch(), payload)
                }
                Output::Unicast { to, payload } => {
                    self.seal(Kind::Protocol, Some(to), self.agreeing_epoch(), payload)
                }
                Output::Key(key) => self.install(key),
                // A future output kind this host cannot act on.
                _ => {}
            }
        }
    }

    fn send_control(&mut self, to: Option<String>, control: &Control) {
        self.seal(Kind::Control, to, self.agreeing_epoch(), control.to_bytes());
    }

    fn seal(&mut self, kind: Kind, to: Option<String>, epoch: u64, body: Vec<u8>) {
        let Some(view) = &self.view else { return };
        self.seq += 1;
        let header = Header {
            group: self.group.clone(),
            view_id: view.view_id,
            epoch,
            kind,
            protocol: self.protocol.clone(),
            sender: self.identity.id().to_owned(),
            seq: self.seq,
        };
        let view_id = view.view_id;
        let bytes = Envelope::seal(&self.identity, header, body).to_bytes();
        self.signed += 1;
        self.outgoing.push_back(Outgoing { view_id, to, bytes });
    }

    fn data_aad(header: &Header) -> Vec<u8> {
        let mut aad = Vec::new();
        aad.extend_from_slice(header.group.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&header.epoch.to_be_bytes());
        aad.extend_from_slice(header.sender.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&header.view_id.to_be_bytes());
        aad.extend_from_slice(&header.seq.to_be_bytes());
        aad
    }

    /// Encrypts `plaintext` under the newest key and queues it for every member of the view.
    pub fn send_data(&mut self, plaintext: &[u8]) -> Result<(), MemberError> {
        let view = self.view.as_ref().ok_or(MemberError::NoView)?;
        let key = self.keys.back().ok_or(MemberError::NoKey)?;
        let header = Header {
            group: self.group.clone(),
            view_id: view.view_id,
            epoch: key.epoch,
            kind: Kind::Data,
            protocol: self.protocol.clone(),
            sender: self.identity.id().to_owned(),
            seq: self.seq + 1,
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.key.as_ref()));
        let aad = Self::data_aad(&header);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| MemberError::NoKey)?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&ct);
        self.seq += 1;
        let view_id = header.view_id;
        let bytes = Envelope::seal(&self.identity, header, body).to_bytes();
        self.signed += 1;
        self.outgoing.push_back(Outgoing { view_id, to: None, bytes });
        Ok(())
    }

    fn decrypt(&mut self, envelope: &Envelope) {
        let h = &envelope.header;
        let undecryptable = |reason: &str| MemberEvent::Undecryptable {
            from: h.sender.clone(),
            epoch: h.epoch,
            reason: reason.to_owned(),
        };
        let Some(key) = self.keys.iter().find(|k| k.epoch == h.epoch) else {
            self.events.push_back(undecryptable("no key for that epoch (unknown or expired)"));
            return;
        };
        if envelope.body.len() < NONCE_LEN {
            self.events.push_back(undecryptable("too short"));
            return;
        }
        let (nonce, ct) = envelope.body.split_at(NONCE_LEN);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.key.as_ref()));
        let aad = Self::data_aad(h);
        match cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }) {
            Ok(plaintext) => self.events.push_back(MemberEvent::Data {
                from: h.sender.clone(),
                epoch: h.epoch,
                plaintext,
            }),
            Err(_) => self.events.push_back(undecryptable("does not authenticate")),
        }
    }

    /// The next envelope to hand to the group layer.
    pub fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.outgoing.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use gka_plugin_api::{Counters, Output, SessionError};

    use super::*;
    use crate::identity::{Scheme, TrustStore};

    /// A session that only records the payloads it is given.
    #[derive(Default)]
    struct Recorder(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Session for Recorder {
        fn handle_view(&mut self, _: u64, _: &View) -> Result<(), SessionError> {
            Ok(())
        }
        fn handle_payload(&mut self, _: u64, _: &str, p: &[u8]) -> Result<(), SessionError> {
            self.0.lock().unwrap().push(p.to_vec());
            Ok(())
        }
        fn handle_refresh(&mut self, _: u64) -> Result<(), SessionError> {
            Ok(())
        }
        fn poll_output(&mut self) -> Option<Output> {
            None
        }
        fn counters(&self) -> Counters {
            Counters::default()
        }
    }

    #[test]
    fn envelopes_of_another_protocol_and_malformed_control_envelopes_are_reported() {
        let me = Identity::generate("me", Scheme::Ed25519).unwrap();
        let peer = Identity::generate("peer", Scheme::Ed25519).unwrap();
        let mut trust = TrustStore::default();
        trust.insert("me", me.public().clone());
        trust.insert("peer", peer.public().clone());
        let seen = Recorder::default();
        let log = seen.0.clone();
        let mut core = MemberCore::new(
            me,
            "g",
            "tgdh@0.1.0",
            Box::new(seen),
            EnvelopeChecker::new("g", trust),
            [7; 32],
        );
        let view = View {
            view_id: 1,
            members: vec!["me".into(), "peer".into()],
            joined: vec![],
            left: vec![],
        };
        core.handle_delivery(Duration::ZERO, Delivery::View(view)).unwrap();
        let header = |protocol: &str, kind: Kind, seq: u64| Header {
            group: "g".into(),
            view_id: 1,
            epoch: epoch_of(1, 0),
            kind,
            protocol: protocol.into(),
            sender: "peer".into(),
            seq,
        };
        let send = |core: &mut MemberCore, h: Header| {
            let bytes = Envelope::seal(&peer, h, b"x".to_vec()).to_bytes();
            core.handle_delivery(
                Duration::ZERO,
                Delivery::Message { from: "peer".into(), view_id: 1, bytes },
            )
            .unwrap();
        };
        send(&mut core, header("bd@0.1.0", Kind::Protocol, 1));
        send(&mut core, header("tgdh@0.1.0", Kind::Control, 2));
        send(&mut core, header("tgdh@0.1.0", Kind::Protocol, 3));
        assert_eq!(
            log.lock().unwrap().len(),
            1,
            "only the matching protocol envelope reaches the plugin"
        );
        let errors: Vec<String> = std::iter::from_fn(|| core.poll_event())
            .filter_map(|e| {
                if let MemberEvent::ProtocolError { error, .. } = e {
                    Some(error)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("protocol bd@0.1.0"));
        assert!(errors[1].contains("control body"), "{errors:?}");
    }
}
