//! The deterministic in-memory network (see the crate docs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use gka_plugin_api::{
    CostFigures, GroupId, GroupKey, Output, Protocol, Session, SessionConfig, SessionError, View,
};
use sha2::{Digest, Sha256};

/// Waves after which [`Harness::run`] declares a livelock.
pub const MAX_WAVES: usize = 10_000;

/// Critical-path clock of one member (or carried by one message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Clock {
    exps: u64,
    sigs: u64,
    verifs: u64,
}

impl Clock {
    fn join(&mut self, other: &Self) {
        self.exps = self.exps.max(other.exps);
        self.sigs = self.sigs.max(other.sigs);
        self.verifs = self.verifs.max(other.verifs);
    }
}

/// A message in flight.
#[derive(Debug, Clone)]
struct Msg {
    from: String,
    to: Option<String>,
    payload: Vec<u8>,
    clock: Clock,
    wave: u64,
}

struct Member {
    session: Box<dyn Session>,
    prev_view: Option<Vec<String>>,
    keys: Vec<GroupKey>,
    clock: Clock,
    /// Time spent inside this member's session calls during the current event.
    cpu: Duration,
}

/// A connected set of members with its own views and message queue.
#[derive(Debug, Clone, Default)]
struct Component {
    view_id: u64,
    members: Vec<String>,
    queue: VecDeque<Msg>,
}

/// What one event cost, as measured: the same figures a cost model predicts (with the same
/// meaning, see [`CostFigures`]), plus the time spent computing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measured {
    /// Rounds, messages, exponentiations, signatures, verifications and bytes.
    pub figures: CostFigures,
    /// Time spent in session calls, summed over members (wall time on this machine).
    pub total_cpu: Duration,
    /// Time spent in the session calls of the busiest member.
    pub busiest_member_cpu: Duration,
}

/// Identifies a component of the harness.
pub type ComponentId = usize;

/// The deterministic in-memory network (see the crate docs).
pub struct Harness {
    protocol: Box<dyn Protocol>,
    group: String,
    dh_group: GroupId,
    seed: u64,
    next_view_id: u64,
    age: u64,
    joined_at: HashMap<String, u64>,
    members: BTreeMap<String, Member>,
    components: Vec<Option<Component>>,
    seen_keys: HashMap<[u8; 32], u64>,
    measured: Measured,
    errors: Vec<String>,
    sessions_made: u64,
}

impl Harness {
    /// A harness for `protocol` whose member RNGs derive from `seed`, on `ffdhe2048`.
    pub fn new(protocol: Box<dyn Protocol>, seed: u64) -> Self {
        Self {
            protocol,
            group: Self::GROUP.into(),
            dh_group: GroupId::Ffdhe2048,
            seed,
            next_view_id: 1,
            age: 0,
            joined_at: HashMap::new(),
            members: BTreeMap::new(),
            components: Vec::new(),
            seen_keys: HashMap::new(),
            measured: Measured::default(),
            errors: Vec::new(),
            sessions_made: 0,
        }
    }

    /// Uses another Diffie-Hellman group for sessions made from now on.
    pub fn with_dh_group(mut self, id: GroupId) -> Self {
        self.dh_group = id;
        self
    }

    fn comp(&self, c: ComponentId) -> &Component {
        self.components[c].as_ref().expect("live component")
    }

    fn comp_mut(&mut self, c: ComponentId) -> &mut Component {
        self.components[c].as_mut().expect("live component")
    }

    /// The members of a component, oldest first.
    pub fn members(&self, c: ComponentId) -> Vec<String> {
        self.comp(c).members.clone()
    }

    /// The component's current view id.
    pub fn view_id(&self, c: ComponentId) -> u64 {
        self.comp(c).view_id
    }

    /// The RNG seed of the `index`-th session a harness seeded with `seed` makes, for member
    /// `id`: SHA-256(seed ‖ id ‖ index). Tests use it to recompute members' shares.
    pub fn member_seed(seed: u64, id: &str, index: u64) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(id.as_bytes());
        h.update(index.to_le_bytes());
        h.finalize().into()
    }

    /// The group name every harness session uses.
    pub const GROUP: &'static str = "test-group";

    fn new_member(&mut self, id: &str) {
        assert!(!self.members.contains_key(id), "member {id} exists");
        let rng_seed = Self::member_seed(self.seed, id, self.sessions_made);
        self.sessions_made += 1;
        let config = SessionConfig {
            group_name: self.group.clone(),
            member_id: id.to_owned(),
            dh_group: self.dh_group,
            rng_seed,
        };
        let session = self.protocol.new_session(config).expect("new session");
        self.age += 1;
        self.joined_at.insert(id.to_owned(), self.age);
        self.members.insert(
            id.to_owned(),
            Member {
                session,
                prev_view: None,
                keys: Vec::new(),
                clock: Clock::default(),
                cpu: Duration::ZERO,
            },
        );
    }

    fn order(&self, mut ids: Vec<String>) -> Vec<String> {
        ids.sort_by(|a, b| (self.joined_at[a], a).cmp(&(self.joined_at[b], b)));
        ids
    }

    fn start_event(&mut self) {
        self.measured = Measured::default();
        for m in self.members.values_mut() {
            m.clock = Clock::default();
            m.cpu = Duration::ZERO;
        }
    }

    /// Installs a new view with `members` in component `c` (messages in flight are dropped).
    fn install_view(&mut self, c: ComponentId, members: Vec<String>) {
        let members = self.order(members);
        let view_id = self.next_view_id;
        self.next_view_id += 1;
        {
            let comp = self.comp_mut(c);
            comp.view_id = view_id;
            comp.members = members.clone();
            comp.queue.clear();
        }
        self.start_event();
        for id in &members {
            let m = self.members.get_mut(id).expect("member");
            let prev = m.prev_view.clone().unwrap_or_default();
            let view = View {
                view_id,
                members: members.clone(),
                joined: members.iter().filter(|x| !prev.contains(x)).cloned().collect(),
                left: prev.iter().filter(|x| !members.contains(x)).cloned().collect(),
            };
            m.prev_view = Some(members.clone());
            let before = m.session.counters().exponentiations;
            let started = Instant::now();
            let result = m.session.handle_view(0, &view);
            m.cpu += started.elapsed();
            if let Err(e) = result {
                self.errors.push(format!("{id}: handle_view({view_id}): {e}"));
            }
            self.after_input(c, id, before, 1);
        }
    }

    /// Drains a member's outputs after an input of wave `wave - 1`, charging its clock.
    fn after_input(&mut self, c: ComponentId, id: &str, exps_before: u64, wave: u64) {
        let members = self.comp(c).members.clone();
        let m = self.members.get_mut(id).expect("member");
        let exps = m.session.counters().exponentiations - exps_before;
        m.clock.exps += exps;
        self.measured.figures.total_exponentiations += exps;
        let mut sent = Vec::new();
        while let Some(out) = m.session.poll_output() {
            match out {
                Output::Broadcast(payload) => {
                    m.clock.sigs += 1;
                    self.measured.figures.broadcasts += 1;
                    self.measured.figures.bytes += payload.len() as u64;
                    sent.push(Msg { from: id.to_owned(), to: None, payload, clock: m.clock, wave });
                }
                Output::Unicast { to, payload } => {
                    m.clock.sigs += 1;
                    self.measured.figures.unicasts += 1;
                    self.measured.figures.bytes += payload.len() as u64;
                    if !members.contains(&to) {
                        self.errors.push(format!("{id}: unicast to non-member {to}"));
                    }
                    sent.push(Msg {
                        from: id.to_owned(),
                        to: Some(to),
                        payload,
                        clock: m.clock,
                        wave,
                    });
                }
                Output::Key(key) => {
                    if let Some(&epoch) = self.seen_keys.get(&*key.key) {
                        if epoch != key.epoch {
                            self.errors.push(format!(
                                "{id}: key of epoch {} repeats the key of epoch {epoch}",
                                key.epoch
                            ));
                        }
                    }
                    self.seen_keys.insert(*key.key, key.epoch);
                    m.keys.push(key);
                }
                other => self.errors.push(format!("{id}: unknown output {other:?}")),
            }
        }
        self.comp_mut(c).queue.extend(sent);
    }

    /// Starts a component of brand-new members (initial agreement).
    pub fn create(&mut self, ids: &[&str]) -> ComponentId {
        for id in ids {
            self.new_member(id);
        }
        self.components.push(Some(Component::default()));
        let c = self.components.len() - 1;
        self.install_view(c, ids.iter().map(|s| s.to_string()).collect());
        c
    }

    /// New members join component `c` in one view (a join for one, a merge for several).
    pub fn join(&mut self, c: ComponentId, ids: &[&str]) {
        for id in ids {
            self.new_member(id);
        }
        let mut members = self.comp(c).members.clone();
        members.extend(ids.iter().map(|s| s.to_string()));
        self.install_view(c, members);
    }

    /// Members leave component `c` in one view; their sessions are discarded.
    pub fn leave(&mut self, c: ComponentId, ids: &[&str]) {
        let members: Vec<String> =
            self.comp(c).members.iter().filter(|m| !ids.contains(&m.as_str())).cloned().collect();
        for id in ids {
            self.members.remove(*id);
        }
        self.install_view(c, members);
    }

    /// Splits component `c` into the given groups (every member in exactly one), each of which
    /// continues with its own views. Returns the new components, in the same order.
    pub fn split(&mut self, c: ComponentId, groups: &[&[&str]]) -> Vec<ComponentId> {
        let all = self.comp(c).members.clone();
        let listed: Vec<&str> = groups.iter().flat_map(|g| g.iter().copied()).collect();
        assert_eq!(listed.len(), all.len(), "split must list every member once");
        self.components[c] = None;
        let mut out = Vec::new();
        for g in groups {
            self.components.push(Some(Component::default()));
            let id = self.components.len() - 1;
            self.install_view(id, g.iter().map(|s| s.to_string()).collect());
            out.push(id);
        }
        out
    }

    /// Heals: merges components into one view. Returns the merged component.
    pub fn merge(&mut self, comps: &[ComponentId]) -> ComponentId {
        let mut members = Vec::new();
        for &c in comps {
            members.extend(self.comp(c).members.clone());
            self.components[c] = None;
        }
        self.components.push(Some(Component::default()));
        let id = self.components.len() - 1;
        self.install_view(id, members);
        id
    }

    /// Asks every member of `c` for a key refresh, at the same point of the agreed order.
    pub fn refresh(&mut self, c: ComponentId) {
        self.start_event();
        for id in self.comp(c).members.clone() {
            let m = self.members.get_mut(&id).expect("member");
            let before = m.session.counters().exponentiations;
            let started = Instant::now();
            let refreshed = m.session.handle_refresh(0);
            m.cpu += started.elapsed();
            if let Err(e) = refreshed {
                self.errors.push(format!("{id}: handle_refresh: {e}"));
            }
            self.after_input(c, &id, before, 1);
        }
    }

    /// Delivers the next message in agreed order to all its recipients. Returns false when
    /// nothing was in flight.
    pub fn deliver_one(&mut self, c: ComponentId) -> bool {
        let Some(msg) = self.comp_mut(c).queue.pop_front() else {
            return false;
        };
        self.measured.figures.rounds = self.measured.figures.rounds.max(msg.wave);
        let members = self.comp(c).members.clone();
        let targets: Vec<String> = match &msg.to {
            Some(to) => vec![to.clone()],
            None => members.clone(),
        };
        for t in targets {
            let Some(m) = self.members.get_mut(&t) else {
                continue;
            };
            if !members.contains(&t) {
                continue;
            }
            if t != msg.from {
                // The host verifies every envelope but its own.
                m.clock.join(&msg.clock);
                m.clock.verifs += 1;
            }
            let before = m.session.counters().exponentiations;
            let started = Instant::now();
            let handled = m.session.handle_payload(0, &msg.from, &msg.payload);
            m.cpu += started.elapsed();
            if let Err(e) = handled {
                self.errors.push(format!("{t}: payload from {}: {e}", msg.from));
            }
            self.after_input(c, &t, before, msg.wave + 1);
        }
        true
    }

    /// Delivers one wave (every message in flight now). Returns false when nothing was.
    pub fn step(&mut self, c: ComponentId) -> bool {
        let in_flight = self.comp(c).queue.len();
        for _ in 0..in_flight {
            self.deliver_one(c);
        }
        in_flight > 0
    }

    /// Delivers at most `waves` waves.
    pub fn run_waves(&mut self, c: ComponentId, waves: usize) {
        for _ in 0..waves {
            if !self.step(c) {
                break;
            }
        }
    }

    /// Delivers at most `messages` messages.
    pub fn run_messages(&mut self, c: ComponentId, messages: usize) {
        for _ in 0..messages {
            if !self.deliver_one(c) {
                break;
            }
        }
    }

    /// Delivers messages until nothing is in flight; fails on livelock or on any session error.
    pub fn run(&mut self, c: ComponentId) -> Result<Measured, String> {
        let mut waves = 0;
        while self.step(c) {
            waves += 1;
            if waves > MAX_WAVES {
                return Err(format!("livelock: still busy after {MAX_WAVES} waves"));
            }
        }
        self.take_errors()?;
        let mut m = self.measured;
        for id in &self.comp(c).members {
            let member = &self.members[id];
            m.total_cpu += member.cpu;
            m.busiest_member_cpu = m.busiest_member_cpu.max(member.cpu);
            let clock = member.clock;
            m.figures.serial_exponentiations = m.figures.serial_exponentiations.max(clock.exps);
            m.figures.signatures = m.figures.signatures.max(clock.sigs);
            m.figures.verifications = m.figures.verifications.max(clock.verifs);
        }
        Ok(m)
    }

    /// Errors sessions returned since the last call, as one message.
    pub fn take_errors(&mut self) -> Result<(), String> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(std::mem::take(&mut self.errors).join("\n"))
        }
    }

    /// Checks that every member of `c` holds the same newest key, agreed in the current view,
    /// and returns it.
    pub fn agreed_key(&self, c: ComponentId) -> Result<GroupKey, String> {
        let comp = self.comp(c);
        let mut agreed: Option<&GroupKey> = None;
        for id in &comp.members {
            let key = self.members[id].keys.last().ok_or_else(|| format!("{id} has no key"))?;
            if key.view_id != comp.view_id {
                return Err(format!(
                    "{id}'s newest key is from view {}, current view is {}",
                    key.view_id, comp.view_id
                ));
            }
            match agreed {
                None => agreed = Some(key),
                Some(k) if k.key == key.key && k.epoch == key.epoch => {}
                Some(k) => {
                    return Err(format!(
                        "{id} has key {} (epoch {}), {} has key {} (epoch {})",
                        key.fingerprint(),
                        key.epoch,
                        comp.members[0],
                        k.fingerprint(),
                        k.epoch
                    ))
                }
            }
        }
        agreed.cloned().ok_or_else(|| "empty component".into())
    }

    /// Runs `c` to quiescence and checks agreement; returns the key and the measured cost.
    pub fn settle(&mut self, c: ComponentId) -> Result<(GroupKey, Measured), String> {
        let m = self.run(c)?;
        Ok((self.agreed_key(c)?, m))
    }

    /// Every key member `id` has installed, oldest first.
    pub fn keys_of(&self, id: &str) -> Vec<GroupKey> {
        self.members.get(id).map(|m| m.keys.clone()).unwrap_or_default()
    }

    /// True if `id` is a live member of some component.
    pub fn is_member(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    /// Delivers a payload outside the protocol (a hostile or replayed message) to `to`, as if
    /// from `from`, and returns the session's verdict. Outputs it produces are queued normally.
    pub fn inject(
        &mut self,
        c: ComponentId,
        from: &str,
        to: &str,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        let m = self.members.get_mut(to).expect("member");
        let before = m.session.counters().exponentiations;
        let result = m.session.handle_payload(0, from, payload);
        self.after_input(c, to, before, 1);
        result
    }

    /// Takes the messages in flight in `c` without delivering them (to inspect or tamper).
    pub fn take_in_flight(&mut self, c: ComponentId) -> Vec<(String, Option<String>, Vec<u8>)> {
        self.comp_mut(c).queue.drain(..).map(|m| (m.from, m.to, m.payload)).collect()
    }

    /// Puts messages back in flight (as taken by [`Harness::take_in_flight`]).
    pub fn put_in_flight(&mut self, c: ComponentId, msgs: Vec<(String, Option<String>, Vec<u8>)>) {
        let q = &mut self.comp_mut(c).queue;
        for (from, to, payload) in msgs {
            q.push_back(Msg { from, to, payload, clock: Clock::default(), wave: 1 });
        }
    }

    /// Member names `prefix0 .. prefix(n-1)`, zero-padded so they sort in creation order.
    pub fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:04}")).collect()
    }
}

/// Borrows a `Vec<String>` as `Vec<&str>`.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
