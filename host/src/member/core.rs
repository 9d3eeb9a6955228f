//! The member core's state, its construction and what it reports about itself. Its inputs
//! are handled in `dispatch.rs`, and its sub-machines live beside it: `keyring.rs` (data keys
//! and AEAD), `adoption.rs` (the group's protocol and held payloads), `switch.rs` (the agreed
//! switch) and `telemetry.rs` (probes, reports, policy evaluation).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gka_plugin_api::rng::{session_rng, SessionRng};
use gka_plugin_api::{epoch_of, EventKind, GroupId, GroupKey, Protocol, Session, View};

use super::adoption::Held;
use super::confirm::Confirmations;
use super::control::PluginRef;
use super::events::{ControlTiming, MemberEvent, Outgoing};
use super::keyring::KeyRing;
use super::liveness::Liveness;
use super::metered::MeteredSession;
use super::peers::CertifiedPeers;
use super::switch::{Catalogue, SwitchState};
use crate::envelope::EnvelopeChecker;
use crate::group::GroupRun;
use crate::identity::Identity;
use crate::policy::live::Report;
use crate::policy::live::{EventRates, GroupReports, Probes};
use crate::policy::observed::Observed;
use crate::policy::{Inputs, Policy};
use gka_plugin_api::ViewPlaces;

/// The trusted view (only trusted members: what the plugin is given) as a member keeps it:
/// its members are [`MemberCore::trusted_places`], shared like [`CurrentView`]'s.
#[derive(Debug, Clone)]
pub(super) struct TrustedView {
    pub(super) view_id: u64,
    /// The members who joined, by place in the view: in a member's first view, every member,
    /// and a simulation's thousands of members would each keep a copy of every id.
    pub(super) joined: Vec<u32>,
    pub(super) left: Vec<String>,
}

/// The group layer's current view as a member keeps it: its members are the index shared with
/// the envelope checker (and, in a simulation, with every member holding the same view), not
/// a copy of their ids per member.
#[derive(Debug, Clone)]
pub(super) struct CurrentView {
    pub(super) view_id: u64,
    pub(super) members: ViewPlaces,
}

/// One member's sans-IO core (see the module docs).
pub struct MemberCore {
    pub(super) identity: Arc<Identity>,
    pub(super) group: String,
    /// The running protocol, `name@version`.
    pub(super) protocol: String,
    pub(super) session: MeteredSession,
    pub(super) checker: EnvelopeChecker,
    /// Peers by certificate under access rules; `None`: the checker's fixed trust store.
    pub(super) peers: Option<CertifiedPeers>,
    pub(super) catalogue: Arc<Catalogue>,
    pub(super) dh_group: GroupId,
    pub(super) policy: Option<Policy>,
    pub(super) next_policy: Option<Policy>,
    pub(super) timing: ControlTiming,
    pub(super) now: Duration,
    /// The group layer's current view.
    pub(super) view: Option<CurrentView>,
    /// The group run of the current view.
    pub(super) run: GroupRun,
    /// The view as given to the plugin: only trusted members. Set it with
    /// [`MemberCore::set_trusted_view`], which keeps `trusted_places` in step.
    pub(super) trusted_view: Option<TrustedView>,
    /// The trusted view's members and their places, for membership tests in O(1) (a group of
    /// n members tests one sender per message: a scan would cost n² per member and view) and
    /// for per-member state kept in arrays (see [`ViewPlaces`]).
    pub(super) trusted_places: ViewPlaces,
    /// Since when no agreement has run (the last view or key): the view's age for the policy.
    pub(super) quiet_since: Duration,
    pub(super) keys_in_view: u64,
    /// Mirrors the plugin: an agreement runs from a view, refresh or switch until its key.
    pub(super) pending: bool,
    /// Mirrors the plugin: refreshes handed over while an agreement ran, each agreed in turn
    /// once the running one's key is in (see `gka_plugin_api::core`).
    pub(super) refreshes_queued: u64,
    /// Members left since the newest key was installed: they hold it, so no data goes out
    /// under it until the next key.
    pub(super) departed_since_key: bool,
    /// This member's data not yet delivered back to it: (view id, sequence number, plaintext).
    pub(super) unechoed: VecDeque<(u64, u64, Vec<u8>)>,
    /// Data a view change cut, sent again once the new view has a key.
    pub(super) to_resend: Vec<Vec<u8>>,
    /// Whether this view's protocol announcement has reached this member (and it runs that
    /// protocol).
    pub(super) announced: bool,
    /// Protocol payloads (sender, protocol, body) held until the group's protocol is announced;
    /// `Some` while waiting.
    pub(super) held: Option<Held>,
    pub(super) seq: u64,
    pub(super) keys: KeyRing,
    pub(super) outgoing: VecDeque<Outgoing>,
    pub(super) events: VecDeque<MemberEvent>,
    pub(super) switch: SwitchState,
    /// A proposal this member sent that it has not yet seen delivered.
    pub(super) proposal_out: bool,
    pub(super) proposals_in_view: u64,
    pub(super) last_switch: Duration,
    pub(super) last_abort: Option<Duration>,
    pub(super) last_evaluation: Option<Duration>,
    pub(super) last_probe: Option<Duration>,
    pub(super) last_report: Option<Duration>,
    pub(super) reports: GroupReports,
    /// Whether this member reports its measurements (it can switch: a catalogue or policy).
    pub(super) reporting: bool,
    /// Key confirmation in the current view.
    pub(super) confirmations: Confirmations,
    /// The running agreement's liveness.
    pub(super) liveness: Liveness,
    /// The protocol this member started with, for a fresh session when keys disagree and the
    /// catalogue does not have it.
    pub(super) own_protocol: Option<Arc<dyn Protocol>>,
    /// Exponentiations of the sessions it ran before the current one.
    pub(super) retired_exponentiations: u64,
    pub(super) sessions_started: u64,
    pub(super) seed_source: Option<Box<dyn FnMut(u64) -> [u8; 32] + Send>>,
    /// The core's random source, seeded by the caller.
    pub(super) rng: SessionRng,
    /// Envelopes signed and checked so far (for cost accounting).
    pub(super) signed: u64,
    pub(super) verified: u64,
    pub(super) probes: Probes,
    pub(super) rates: EventRates,
    /// The current view's membership rekey: when its view came, its kind, the group size
    /// before it, and the inputs the group's reports gave then (its prediction's); taken when
    /// every member has confirmed the key.
    pub(super) rekey_started: Option<(Duration, EventKind, u64, Inputs)>,
    /// What the running protocol's rekeys took beyond their predictions.
    pub(super) observed: Observed,
    pub(super) local: Report,
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

pub(super) fn plugin_now(now: Duration) -> u64 {
    now.as_millis().try_into().unwrap_or(u64::MAX)
}

pub(super) fn fresh_view(view: &View) -> View {
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
    /// a simulation or a test fixes it. The only other randomness is an RSA identity's
    /// signature salt, which the identity draws when it signs.
    pub fn new(
        identity: impl Into<Arc<Identity>>,
        group: &str,
        protocol: &str,
        session: Box<dyn Session>,
        checker: EnvelopeChecker,
        rng_seed: [u8; 32],
    ) -> Self {
        Self {
            rng: session_rng(rng_seed),
            identity: identity.into(),
            group: group.to_owned(),
            protocol: protocol.to_owned(),
            session: MeteredSession::new(session),
            checker,
            peers: None,
            catalogue: Arc::new(Catalogue::default()),
            dh_group: GroupId::Ffdhe2048,
            policy: None,
            next_policy: None,
            timing: ControlTiming::default(),
            now: Duration::ZERO,
            view: None,
            run: GroupRun::default(),
            trusted_view: None,
            trusted_places: ViewPlaces::default(),
            quiet_since: Duration::ZERO,
            keys_in_view: 0,
            refreshes_queued: 0,
            pending: false,
            departed_since_key: false,
            unechoed: VecDeque::new(),
            to_resend: Vec::new(),
            announced: false,
            held: None,
            seq: 0,
            keys: KeyRing::default(),
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
            confirmations: Confirmations::default(),
            liveness: Liveness::default(),
            own_protocol: None,
            retired_exponentiations: 0,
            sessions_started: 0,
            seed_source: None,
            signed: 0,
            verified: 0,
            probes: Probes::default(),
            rates: EventRates::default(),
            rekey_started: None,
            observed: Observed::default(),
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

    /// The protocol this member's session came from: lets it start a fresh session when key
    /// confirmation fails even without a catalogue.
    pub fn with_protocol(mut self, protocol: Arc<dyn Protocol>) -> Self {
        self.own_protocol = Some(protocol);
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

    /// Data this member sent that the group layer has not delivered back to it yet, or that a
    /// view change cut and awaits the next key: what would be lost if this member stopped now.
    pub fn unsent(&self) -> usize {
        self.unechoed.len() + self.to_resend.len()
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
        self.keys.newest().map(|k| k.epoch)
    }

    /// The newest installed key's fingerprint.
    pub fn fingerprint(&self) -> Option<String> {
        self.keys.newest().map(GroupKey::fingerprint)
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

    pub(super) fn agreeing_epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| epoch_of(v.view_id, self.keys_in_view))
    }

    pub(super) fn leader(&self) -> Option<&str> {
        self.trusted_view.as_ref().and(self.trusted_places.members().first()).map(String::as_str)
    }

    /// Whether this member is in its own trusted view (its own rules may have revoked it).
    pub(super) fn admitted(&self) -> bool {
        self.trusted_view.is_none() || self.is_trusted(self.identity.id())
    }

    /// Whether `id` is in the trusted view.
    pub(super) fn is_trusted(&self, id: &str) -> bool {
        self.trusted_places.contains(id)
    }

    /// Replaces the trusted view.
    pub(super) fn set_trusted_view(&mut self, view: View) {
        self.trusted_places = ViewPlaces::new(&view.members);
        let View { view_id, joined, left, .. } = view;
        // A view's members are far fewer than 2^32.
        let joined =
            joined.iter().filter_map(|m| self.trusted_places.place(m)).map(|p| p as u32).collect();
        self.trusted_view = Some(TrustedView { view_id, joined, left });
    }

    /// The trusted view with its members, as the plugin is given it.
    pub(super) fn trusted_view_in_full(&self) -> Option<View> {
        let trusted = self.trusted_view.as_ref()?;
        Some(View {
            view_id: trusted.view_id,
            members: self.trusted_places.members().to_vec(),
            joined: trusted
                .joined
                .iter()
                .map(|&place| self.trusted_places.members()[place as usize].clone())
                .collect(),
            left: trusted.left.clone(),
        })
    }

    pub(super) fn is_leader(&self) -> bool {
        self.leader() == Some(self.identity.id())
    }

    pub(super) fn my_plugin(&self) -> PluginRef {
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

    pub(super) fn error(&mut self, from: &str, error: String) {
        self.events.push_back(MemberEvent::ProtocolError { from: from.to_owned(), error });
    }
}
