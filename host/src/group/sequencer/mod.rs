//! The group layer's core: a sans-IO sequencer that gives every group views and agreed-order
//! delivery with view synchrony. The daemon wraps it in tokio and TCP; the in-memory network
//! drives it directly, so both implementations share one set of rules.
//!
//! Guarantees, per group:
//! - **views**: each component of a group (the members that can reach each other) has a view:
//!   an id drawn from one counter that only grows, the members oldest first, and, for each
//!   member, who joined and who left relative to that member's previous view. Joins and leaves
//!   that arrive within one batching window form a single view (a merge, a partition);
//! - **agreed order**: the sequencer orders every message of a component once, and every
//!   recipient gets them in that order;
//! - **view synchrony**: a message carries the view its sender was in; one sent in a view that
//!   has since ended is dropped for everyone ("to none"), and a new view is queued only after
//!   every message sequenced in the old one, so every survivor sees the same messages in it;
//! - **failure detection**: a member not heard from (message or heartbeat) within the timeout
//!   is removed, as if it had left;
//! - **incarnations**: a member id that leaves and joins again (a restarted process), even
//!   within one batching window, is in a view without it before a view with it, so its peers
//!   rekey for a member that lost its state; messages of a view reach only members still in it;
//! - **partitions** (fault injection): a component can be split into given subsets, each of
//!   which continues with its own views (Extended Virtual Synchrony), and healed into one merge.
//!
//! Time is an input (`now_ms`); outputs are drained with [`Sequencer::poll_delivery`], one
//! recipient at a time, or with [`Sequencer::poll_fanout`], a broadcast at a time.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use gka_plugin_api::View;

use super::GroupRun;

/// The certificates (DER) members presented when they joined, by member id.
pub type Certificates = Vec<(String, Arc<[u8]>)>;

/// What the group layer delivers to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A new view, with the run of the group it belongs to.
    View {
        /// The view.
        view: View,
        /// The group's run (see [`GroupRun`]).
        run: GroupRun,
        /// The certificates of the members that joined (relative to the recipient's previous
        /// view) and presented one. A recipient keeps them for as long as their holders stay,
        /// so each certificate crosses the network once per recipient. The group layer can
        /// withhold a certificate but not forge one: each is signed by its domain's CA.
        certificates: Certificates,
    },
    /// A message sequenced in the member's current view.
    Message {
        /// The sender.
        from: String,
        /// The view it was sent and is delivered in.
        view_id: u64,
        /// The bytes (a signed envelope), shared by every recipient of a broadcast.
        bytes: Arc<[u8]>,
    },
}

/// Why the sequencer refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SequencerError {
    /// The member is not in the group.
    #[error("{0:?} is not a member of the group")]
    NotAMember(String),
    /// The member is already in the group.
    #[error("{0:?} is already a member of the group")]
    AlreadyMember(String),
    /// A unicast to someone outside the sender's view.
    #[error("{0:?} is not in the sender's view")]
    NotInView(String),
    /// A partition request that does not list every member of one component exactly once.
    #[error("invalid partition: {0}")]
    BadPartition(String),
}

/// Timing settings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Joins and leaves within this window form one view.
    pub batch_ms: u64,
    /// A member silent for this long is removed.
    pub failure_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self { batch_ms: 50, failure_timeout_ms: 3_000 }
    }
}

#[derive(Debug, Clone, Default)]
struct Component {
    view_id: u64,
    members: Vec<String>,
    /// The members a broadcast reaches (see [`Sequencer::recipients`]), as of the sequencer's
    /// `membership` generation it was computed at: a broadcast of a group of n would otherwise
    /// look up and copy n ids, and every member broadcasts in most events.
    recipients: Option<(u64, Arc<[String]>)>,
}

/// A broadcast as the sequencer ordered it: one message for each of its recipients, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastDelivery {
    /// The recipients, shared by every broadcast of the same view and membership.
    recipients: Arc<[String]>,
    /// How many of `recipients` [`Sequencer::poll_delivery`] already handed out.
    delivered: usize,
    /// The sender.
    pub from: String,
    /// The view it was sent and is delivered in.
    pub view_id: u64,
    /// The bytes (a signed envelope), shared by every recipient.
    pub bytes: Arc<[u8]>,
}

impl BroadcastDelivery {
    /// The members it still goes to, in delivery order.
    pub fn recipients(&self) -> &[String] {
        &self.recipients[self.delivered..]
    }

    /// The recipients' list as shared by every broadcast of the same view and membership: two
    /// broadcasts with [`Arc::ptr_eq`] lists (and the same [`Self::recipients`] length) go to
    /// the same members, so a driver can map them to its own handles once.
    pub fn shared_recipients(&self) -> &Arc<[String]> {
        &self.recipients
    }
}

/// What the sequencer hands out next (see [`Sequencer::poll_fanout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fanout {
    /// A delivery to one member (a view, or a unicast).
    One(String, Delivery),
    /// A message for several members.
    Broadcast(BroadcastDelivery),
}

#[derive(Debug, Clone)]
struct MemberState {
    joined_at: u64,
    last_heard_ms: u64,
    /// The members of the last view delivered to this member, shared by every member that
    /// got that view (so a new view computes who joined and left once per previous view, not
    /// once per member).
    last_view: Arc<[String]>,
    /// Component index.
    component: usize,
    /// The certificate it presented, if any.
    certificate: Option<Arc<[u8]>>,
}

/// Members that joined, relative to a member's previous view.
type Joined = Vec<String>;
/// Members that left, relative to a member's previous view.
type Left = Vec<String>;

/// A new incarnation waiting for the view that removes its old one.
#[derive(Debug, Clone)]
struct Parked {
    component: usize,
    certificate: Option<Arc<[u8]>>,
}

/// One group's sequencer (see the module docs).
#[derive(Debug)]
pub struct Sequencer {
    timing: Timing,
    run: GroupRun,
    next_view_id: u64,
    age: u64,
    members: BTreeMap<String, MemberState>,
    components: Vec<Component>,
    /// Components whose membership changed and awaits the batching window's end.
    dirty: BTreeMap<usize, u64>,
    /// New incarnations waiting for the view that removes their old one: member, component.
    parked: BTreeMap<String, Parked>,
    /// Members that left a component whose next view is not installed yet: a join under the
    /// same id waits for that view (it is a new incarnation, not the old one staying).
    leaving: BTreeMap<String, usize>,
    /// Bumped whenever `members` or a component's members change: a component's cached
    /// recipients are valid only for the generation they were computed at.
    membership: u64,
    out: VecDeque<Fanout>,
}

impl Sequencer {
    /// An empty group whose views carry `run` (a fresh nonce for each group the driver
    /// creates).
    pub fn new(timing: Timing, run: GroupRun) -> Self {
        Self {
            timing,
            run,
            next_view_id: 1,
            age: 0,
            members: BTreeMap::new(),
            components: Vec::new(),
            dirty: BTreeMap::new(),
            parked: BTreeMap::new(),
            leaving: BTreeMap::new(),
            membership: 0,
            out: VecDeque::new(),
        }
    }

    /// A member joins. It joins the (first) component; the view follows when the batching
    /// window ends.
    pub fn join(&mut self, member: &str, now_ms: u64) -> Result<(), SequencerError> {
        self.join_presenting(member, None, now_ms)
    }

    /// As [`Self::join`], for a member that presented `certificate` (already checked by the
    /// caller): the views that show it joining carry it.
    pub fn join_presenting(
        &mut self,
        member: &str,
        certificate: Option<Arc<[u8]>>,
        now_ms: u64,
    ) -> Result<(), SequencerError> {
        if self.members.contains_key(member) || self.parked.contains_key(member) {
            return Err(SequencerError::AlreadyMember(member.to_owned()));
        }
        if let Some(&component) = self.leaving.get(member) {
            self.parked.insert(member.to_owned(), Parked { component, certificate });
            return Ok(());
        }
        if self.components.is_empty() {
            self.components.push(Component::default());
        }
        self.age += 1;
        self.membership += 1;
        self.members.insert(
            member.to_owned(),
            MemberState {
                joined_at: self.age,
                last_heard_ms: now_ms,
                last_view: Arc::from([]),
                component: 0,
                certificate,
            },
        );
        self.touch(0, now_ms);
        Ok(())
    }

    /// A new incarnation of `member` joins: a member not in the group joins as usual; one that
    /// is (a restarted process whose old incarnation has not been found dead yet) leaves now,
    /// and its new incarnation joins once the view without the old one is installed, so every
    /// peer sees a leave and then a join, never an unchanged view of a process that lost its
    /// state.
    pub fn rejoin(&mut self, member: &str, now_ms: u64) -> Result<(), SequencerError> {
        self.rejoin_presenting(member, None, now_ms)
    }

    /// As [`Self::rejoin`], for a new incarnation that presented `certificate`.
    pub fn rejoin_presenting(
        &mut self,
        member: &str,
        certificate: Option<Arc<[u8]>>,
        now_ms: u64,
    ) -> Result<(), SequencerError> {
        if let Some(parked) = self.parked.get_mut(member) {
            parked.certificate = certificate;
            return Ok(());
        }
        match self.members.get(member) {
            None => self.join_presenting(member, certificate, now_ms),
            Some(state) => {
                let component = state.component;
                self.leave(member, now_ms)?;
                self.parked.insert(member.to_owned(), Parked { component, certificate });
                Ok(())
            }
        }
    }

    /// Installs component `c`'s view, then lets in the incarnations that waited for it.
    fn install_and_unpark(&mut self, c: usize, now_ms: u64) {
        self.install(c);
        self.leaving.retain(|_, &mut lc| lc != c);
        let waiting: Vec<String> =
            self.parked.iter().filter(|(_, p)| p.component == c).map(|(m, _)| m.clone()).collect();
        for m in waiting {
            if let Some(parked) = self.parked.remove(&m) {
                let _ = self.join_presenting(&m, parked.certificate, now_ms);
            }
        }
    }

    /// A member leaves (or is found to have failed).
    pub fn leave(&mut self, member: &str, now_ms: u64) -> Result<(), SequencerError> {
        if self.parked.remove(member).is_some() {
            return Ok(());
        }
        let state = self
            .members
            .remove(member)
            .ok_or_else(|| SequencerError::NotAMember(member.to_owned()))?;
        self.membership += 1;
        self.leaving.insert(member.to_owned(), state.component);
        self.touch(state.component, now_ms);
        Ok(())
    }

    /// Proof of life from a member.
    pub fn heartbeat(&mut self, member: &str, now_ms: u64) -> Result<(), SequencerError> {
        let state = self
            .members
            .get_mut(member)
            .ok_or_else(|| SequencerError::NotAMember(member.to_owned()))?;
        state.last_heard_ms = state.last_heard_ms.max(now_ms);
        Ok(())
    }

    /// The driver was stalled (its process stopped, say) for `stalled_ms` until `now_ms`:
    /// nobody could be heard meanwhile, so that time is not held against anyone. Each member's
    /// silence is shortened by the stall, no more, so a member that was already silent stays
    /// as close to removal as it was.
    pub fn pardon_silence(&mut self, stalled_ms: u64, now_ms: u64) {
        for state in self.members.values_mut() {
            state.last_heard_ms = state.last_heard_ms.saturating_add(stalled_ms).min(now_ms);
        }
    }

    fn touch(&mut self, component: usize, now_ms: u64) {
        self.dirty.entry(component).or_insert(now_ms);
    }

    /// A message from `from`, sent in view `view_id`, to every member of that view (`to` None,
    /// the sender included) or to one member. Sequenced now, or dropped for everyone if the
    /// sender's view has ended.
    pub fn send(
        &mut self,
        from: &str,
        view_id: u64,
        to: Option<&str>,
        bytes: Vec<u8>,
        now_ms: u64,
    ) -> Result<bool, SequencerError> {
        let state = self
            .members
            .get_mut(from)
            .ok_or_else(|| SequencerError::NotAMember(from.to_owned()))?;
        state.last_heard_ms = state.last_heard_ms.max(now_ms);
        let c = state.component;
        if self.components[c].view_id != view_id {
            return Ok(false);
        }
        // One copy of the bytes for every recipient.
        let bytes: Arc<[u8]> = bytes.into();
        let from = from.to_owned();
        match to {
            None => {
                let recipients = self.recipients(c);
                if !recipients.is_empty() {
                    self.out.push_back(Fanout::Broadcast(BroadcastDelivery {
                        recipients,
                        delivered: 0,
                        from,
                        view_id,
                        bytes,
                    }));
                }
            }
            Some(t) if self.components[c].members.iter().any(|m| m == t) => {
                if self.is_here(t, c) {
                    let delivery = Delivery::Message { from, view_id, bytes };
                    self.out.push_back(Fanout::One(t.to_owned(), delivery));
                }
            }
            Some(t) => return Err(SequencerError::NotInView(t.to_owned())),
        }
        Ok(true)
    }

    /// Whether a member of component `c`'s view is still in it (a departed member's id may
    /// already belong to a new incarnation waiting for its own first view).
    fn is_here(&self, member: &str, c: usize) -> bool {
        self.members.get(member).is_some_and(|s| s.component == c)
    }

    /// The members of component `c`'s view that are still here, in view order: computed once
    /// per membership change, not once per broadcast.
    fn recipients(&mut self, c: usize) -> Arc<[String]> {
        if let Some((generation, recipients)) = &self.components[c].recipients {
            if *generation == self.membership {
                return recipients.clone();
            }
        }
        let here: Arc<[String]> =
            self.components[c].members.iter().filter(|m| self.is_here(m, c)).cloned().collect();
        self.components[c].recipients = Some((self.membership, here.clone()));
        here
    }

    /// Splits the component holding `groups[0][0]` into the given subsets (each member of the
    /// component in exactly one), each continuing with its own views.
    pub fn partition(&mut self, groups: &[Vec<String>], now_ms: u64) -> Result<(), SequencerError> {
        let first = groups
            .first()
            .and_then(|g| g.first())
            .ok_or_else(|| SequencerError::BadPartition("no members".into()))?;
        let c = self
            .members
            .get(first)
            .ok_or_else(|| SequencerError::NotAMember(first.clone()))?
            .component;
        let listed: BTreeSet<&String> = groups.iter().flatten().collect();
        let in_component: BTreeSet<&String> =
            self.members.iter().filter(|(_, s)| s.component == c).map(|(m, _)| m).collect();
        if groups.iter().any(Vec::is_empty)
            || listed != in_component
            || listed.len() != groups.iter().map(Vec::len).sum::<usize>()
        {
            return Err(SequencerError::BadPartition(
                "the subsets must be non-empty and list every member of one component exactly \
                 once"
                    .into(),
            ));
        }
        for g in groups.iter().skip(1) {
            // Until its first view, nothing a moved member sends is sequenced: a message of the
            // ending view reaches all of its survivors or none.
            let idx = self.components.len();
            self.components.push(Component::default());
            for m in g {
                self.members.get_mut(m).expect("listed member").component = idx;
            }
            self.touch(idx, now_ms);
        }
        self.membership += 1;
        self.touch(c, now_ms);
        Ok(())
    }

    /// Merges every component into one (heals all partitions).
    pub fn heal(&mut self, now_ms: u64) {
        for s in self.members.values_mut() {
            s.component = 0;
        }
        self.membership += 1;
        for c in 0..self.components.len() {
            self.touch(c, now_ms);
        }
    }

    /// Advances time: removes silent members and installs views whose batching window ended.
    pub fn tick(&mut self, now_ms: u64) {
        let silent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, s)| {
                now_ms.saturating_sub(s.last_heard_ms) >= self.timing.failure_timeout_ms
            })
            .map(|(m, _)| m.clone())
            .collect();
        for m in silent {
            let _ = self.leave(&m, now_ms);
        }
        let due: Vec<usize> = self
            .dirty
            .iter()
            .filter(|(_, &since)| now_ms >= since + self.timing.batch_ms)
            .map(|(&c, _)| c)
            .collect();
        for c in due {
            self.dirty.remove(&c);
            self.install_and_unpark(c, now_ms);
        }
    }

    /// The earliest time at which [`Sequencer::tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let batch = self.dirty.values().map(|&since| since + self.timing.batch_ms).min();
        let failure =
            self.members.values().map(|s| s.last_heard_ms + self.timing.failure_timeout_ms).min();
        batch.into_iter().chain(failure).min()
    }

    /// Installs a new view for component `c` (whatever its members are now).
    fn install(&mut self, c: usize) {
        let mut members: Vec<(u64, String)> = self
            .members
            .iter()
            .filter(|(_, s)| s.component == c)
            .map(|(m, s)| (s.joined_at, m.clone()))
            .collect();
        members.sort();
        let members: Vec<String> = members.into_iter().map(|(_, m)| m).collect();
        self.membership += 1;
        let component = &mut self.components[c];
        if members.is_empty() {
            component.members.clear();
            return;
        }
        if members == component.members && component.view_id != 0 {
            return;
        }
        let view_id = self.next_view_id;
        self.next_view_id += 1;
        component.view_id = view_id;
        component.members = members.clone();
        let shared: Arc<[String]> = members.into();
        let now_in: HashSet<&str> = shared.iter().map(String::as_str).collect();
        // Who joined and left, per distinct previous view: members that got the same view
        // share it, so this is linear in the group's size for the usual one or two of them.
        let mut changes: Vec<(Arc<[String]>, Joined, Left)> = Vec::new();
        for m in shared.iter() {
            let state = self.members.get_mut(m).expect("member");
            let prev = std::mem::replace(&mut state.last_view, shared.clone());
            let known = changes.iter().position(|(p, ..)| Arc::ptr_eq(p, &prev));
            let i = known.unwrap_or_else(|| {
                let before: HashSet<&str> = prev.iter().map(String::as_str).collect();
                let joined =
                    shared.iter().filter(|x| !before.contains(x.as_str())).cloned().collect();
                let left = prev.iter().filter(|x| !now_in.contains(x.as_str())).cloned().collect();
                changes.push((prev.clone(), joined, left));
                changes.len() - 1
            });
            let (_, joined, left) = &changes[i];
            let view = View {
                view_id,
                members: shared.to_vec(),
                joined: joined.clone(),
                left: left.clone(),
            };
            let certificates = view
                .joined
                .iter()
                .filter_map(|j| {
                    let c = self.members.get(j).and_then(|s| s.certificate.clone());
                    c.map(|c| (j.clone(), c))
                })
                .collect();
            let delivery = Delivery::View { view, run: self.run, certificates };
            self.out.push_back(Fanout::One(m.clone(), delivery));
        }
    }

    /// The next delivery, in the order the sequencer decided: `(recipient, delivery)`.
    pub fn poll_delivery(&mut self) -> Option<(String, Delivery)> {
        match self.out.front_mut()? {
            Fanout::Broadcast(b) if b.delivered + 1 < b.recipients.len() => {
                let to = b.recipients[b.delivered].clone();
                b.delivered += 1;
                let delivery = Delivery::Message {
                    from: b.from.clone(),
                    view_id: b.view_id,
                    bytes: b.bytes.clone(),
                };
                Some((to, delivery))
            }
            _ => match self.out.pop_front()? {
                Fanout::One(to, delivery) => Some((to, delivery)),
                Fanout::Broadcast(b) => {
                    let to = b.recipients[b.delivered].clone();
                    let delivery =
                        Delivery::Message { from: b.from, view_id: b.view_id, bytes: b.bytes };
                    Some((to, delivery))
                }
            },
        }
    }

    /// The next delivery or broadcast, in the order the sequencer decided: the same deliveries
    /// as [`Self::poll_delivery`], with a broadcast handed out whole (its recipients not
    /// copied), for a driver that fans it out itself.
    pub fn poll_fanout(&mut self) -> Option<Fanout> {
        self.out.pop_front()
    }

    /// True when the group has no members left (nor incarnations waiting to join).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.parked.is_empty()
    }

    /// The group's run.
    pub fn run(&self) -> GroupRun {
        self.run
    }

    /// Each component's current view id (0 before its first view) and members.
    pub fn components(&self) -> impl Iterator<Item = (u64, &[String])> {
        self.components.iter().map(|c| (c.view_id, c.members.as_slice()))
    }

    /// The current view id of a member's component (0 before its first view).
    pub fn view_of(&self, member: &str) -> Option<u64> {
        self.members.get(member).map(|s| self.components[s.component].view_id)
    }
}

#[cfg(test)]
mod tests;
