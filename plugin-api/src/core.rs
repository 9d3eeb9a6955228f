//! [`SessionCore`]: the bookkeeping every protocol session shares, so that plugins hold only
//! their protocol logic.
//!
//! It owns the configuration, the counted [`Dh`] handle, the seeded RNG, the current and
//! previous views, the epoch, the output queue and the counters. It seals and opens payloads
//! (format byte, view id, epoch, size limit, sender membership) and derives installed keys.
//!
//! It also decides each member's **side** on a new view: the members that share this member's
//! last agreed state. If this member's last agreement (in its previous view) completed, every
//! member of that previous view installed the same key with the same state, so the side is the
//! new view's members that were in the previous view. If it did not complete (a cascade), the
//! side is just this member: it restarts from scratch, and every other member of the previous
//! view, having processed the same messages, does the same. This rule is what makes every
//! plugin robust to views arriving in any state.

//!
//! Refreshes, completion and early payloads follow the crate's contract (see the crate docs,
//! "Completion and refresh").

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{PayloadError, SessionError};
use crate::group::Dh;
use crate::kdf::{derive_group_key, KeyContext};
use crate::places::ViewPlaces;
use crate::protocol::{
    epoch_of, Counters, GroupKey, MemberId, Output, SessionConfig, View, MAX_KEYS_PER_VIEW,
    MAX_VIEW_ID,
};
use crate::rng::{session_rng, SessionRng};
use crate::shared::Registry;

/// Every payload on the wire: the view and epoch it belongs to, then the protocol's message.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed<B> {
    view_id: u64,
    epoch: u64,
    body: B,
}

/// The most refreshes a member queues while one agreement runs (each is agreed in turn once
/// it completes); more are refused.
pub const MAX_QUEUED_REFRESHES: u64 = 64;

/// The most payloads of queued epochs a member holds until it starts them.
pub const MAX_HELD_PAYLOADS: usize = 1024;

/// What a new view means for this member (see the module docs).
#[derive(Debug, Clone)]
pub struct ViewChange {
    /// The view itself.
    pub view: View,
    /// Members of the new view that share this member's last agreed state, in view order.
    /// Always contains this member.
    pub side: Vec<MemberId>,
    /// True when the side is the whole view: a subtractive event or no change, handled from
    /// the shared state without exchanging it first.
    pub side_is_whole_view: bool,
    /// True when this member continues from its last agreed state; false when it starts afresh
    /// (first view, or its last agreement was interrupted).
    pub keeps_state: bool,
    /// True when this member keeps its state and the side holds every member of the group
    /// that agreed it: nobody of that group left, so the kept state needs no pruning.
    pub side_is_last_group: bool,
}

/// Shared session bookkeeping (see the module docs).
#[derive(Debug)]
pub struct SessionCore {
    protocol: &'static str,
    config: SessionConfig,
    /// The counted group handle.
    pub dh: Dh,
    /// The session's seeded RNG.
    pub rng: SessionRng,
    /// The current view, shared with the other members of this process that hold the same
    /// one (see [`crate::shared`]).
    view: Option<Arc<View>>,
    /// The view's members, for the sender test of every payload in O(1) (a scan would cost
    /// n² per member and view in a group of n), shared by the members of a process.
    members: ViewPlaces,
    keys_in_view: u64,
    agreement_pending: bool,
    outbox: VecDeque<Output>,
    /// This member's broadcasts not yet delivered back to it, in sending order.
    own_in_flight: VecDeque<Vec<u8>>,
    messages_sent: u64,
    bytes_sent: u64,
    keys: u64,
    /// Refreshes handed over while an agreement ran here, each to be agreed in turn.
    refreshes_queued: u64,
    /// Payloads of queued epochs, from peers that started them sooner: (sender, payload).
    held: VecDeque<(MemberId, Vec<u8>)>,
    held_bytes: usize,
}

impl SessionCore {
    /// A core for `protocol` (its descriptor name) and `config`.
    pub fn new(protocol: &'static str, config: SessionConfig) -> Result<Self, SessionError> {
        if config.member_id.is_empty() {
            return Err(SessionError::Config("member id is empty".into()));
        }
        Ok(Self {
            protocol,
            dh: Dh::new(config.dh_group),
            rng: session_rng(config.rng_seed),
            config,
            view: None,
            members: ViewPlaces::default(),
            keys_in_view: 0,
            agreement_pending: false,
            outbox: VecDeque::new(),
            own_in_flight: VecDeque::new(),
            messages_sent: 0,
            bytes_sent: 0,
            keys: 0,
            refreshes_queued: 0,
            held: VecDeque::new(),
            held_bytes: 0,
        })
    }

    /// This member's id.
    pub fn me(&self) -> &str {
        &self.config.member_id
    }

    /// The current view, or [`SessionError::NoView`].
    pub fn view(&self) -> Result<&View, SessionError> {
        self.view.as_deref().ok_or(SessionError::NoView)
    }

    /// The current view's members and their places (empty before the first view), shared
    /// with the other members of this process that hold the same view.
    pub fn places(&self) -> &ViewPlaces {
        &self.members
    }

    /// The epoch of the key being agreed (or last agreed) in the current view.
    pub fn epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| epoch_of(v.view_id, self.keys_in_view))
    }

    /// Validates a new view and computes this member's side. Call first in `handle_view`;
    /// on error nothing has changed.
    pub fn begin_view(&mut self, view: &View) -> Result<ViewChange, SessionError> {
        let places = ViewPlaces::new(&view.members);
        validate_view(view, &places, self.me())?;
        if view.view_id > MAX_VIEW_ID {
            return Err(SessionError::InvalidView(format!(
                "view id {} exceeds the largest supported, {MAX_VIEW_ID}",
                view.view_id
            )));
        }
        if let Some(old) = &self.view {
            if view.view_id <= old.view_id {
                return Err(SessionError::InvalidView(format!(
                    "view id {} does not follow {}",
                    view.view_id, old.view_id
                )));
            }
        }
        let keeps_state = self.view.is_some() && !self.agreement_pending;
        let side: Vec<MemberId> = match (&self.view, keeps_state) {
            (Some(_), true) => {
                view.members.iter().filter(|m| self.members.contains(m)).cloned().collect()
            }
            _ => vec![self.config.member_id.clone()],
        };
        let side_is_whole_view = side.len() == view.members.len();
        // The side is the new view's members among the last agreed view's.
        let side_is_last_group = keeps_state && side.len() == self.members.len();
        self.view = Some(shared_view(view));
        self.members = places;
        // Broadcasts of the old view that were not delivered never will be.
        self.own_in_flight.clear();
        self.keys_in_view = 0;
        self.agreement_pending = true;
        self.refreshes_queued = 0;
        self.held.clear();
        self.held_bytes = 0;
        Ok(ViewChange {
            view: view.clone(),
            side,
            side_is_whole_view,
            keeps_state,
            side_is_last_group,
        })
    }

    /// A refresh, handed to every member at the same point of the agreed order (see the
    /// module docs). Returns true if its agreement starts now (a new epoch in the same view);
    /// false if an agreement is running here, in which case the refresh is queued and starts
    /// when that agreement's key is installed ([`Self::start_queued_refresh`]).
    pub fn begin_refresh(&mut self) -> Result<bool, SessionError> {
        self.view()?;
        if self.keys_in_view + self.refreshes_queued + 1 >= MAX_KEYS_PER_VIEW {
            return Err(SessionError::Config(format!(
                "{MAX_KEYS_PER_VIEW} keys agreed in one view: a view change is needed first"
            )));
        }
        if self.agreement_pending {
            if self.refreshes_queued >= MAX_QUEUED_REFRESHES {
                return Err(SessionError::Config(format!(
                    "{MAX_QUEUED_REFRESHES} refreshes already wait for the running agreement"
                )));
            }
            self.refreshes_queued += 1;
            return Ok(false);
        }
        self.keys_in_view += 1;
        self.agreement_pending = true;
        Ok(true)
    }

    /// Starts the next queued refresh if no agreement runs: true if it started (its epoch is
    /// now the current one, and [`Self::take_held`] returns what peers already sent for it).
    pub fn start_queued_refresh(&mut self) -> bool {
        if self.agreement_pending || self.refreshes_queued == 0 || self.view.is_none() {
            return false;
        }
        self.refreshes_queued -= 1;
        self.keys_in_view += 1;
        self.agreement_pending = true;
        true
    }

    /// Refreshes queued behind the running agreement.
    pub fn refreshes_queued(&self) -> u64 {
        self.refreshes_queued
    }

    /// The held payloads of the current epoch, in the order they arrived (those of later
    /// queued epochs stay held).
    pub fn take_held(&mut self) -> Vec<(MemberId, Vec<u8>)> {
        let current = self.epoch();
        let (now, later): (VecDeque<_>, VecDeque<_>) =
            std::mem::take(&mut self.held).into_iter().partition(|(_, payload)| {
                codec::decode_prefix::<(u64, u64)>(payload).is_ok_and(|(_, e)| e == current)
            });
        self.held = later;
        self.held_bytes = self.held.iter().map(|(_, p)| p.len()).sum();
        now.into_iter().collect()
    }

    /// This member's broadcasts of the current view not yet delivered back to it.
    pub fn broadcasts_in_flight(&self) -> usize {
        self.own_in_flight.len()
    }

    /// True while an agreement runs in the current view.
    pub fn agreement_pending(&self) -> bool {
        self.agreement_pending
    }

    /// Decodes a payload from `from` and checks its format, size, view, epoch and that the
    /// sender is a member of the current view.
    ///
    /// A payload from this member itself must be the next of its own broadcasts still in
    /// flight: the group layer delivers every broadcast back to its sender, in agreed order,
    /// and that delivery is how a session learns its message was delivered in this view. It
    /// is consumed from the in-flight queue even if the plugin then refuses it.
    pub fn open<B: DeserializeOwned>(
        &mut self,
        from: &str,
        payload: &[u8],
    ) -> Result<B, SessionError> {
        self.check_sender_and_size(from, payload)?;
        if from == self.me() {
            if self.own_in_flight.front().map(Vec::as_slice) != Some(payload) {
                return Err(SessionError::Unexpected(
                    "a payload from this member that is not its next broadcast in flight".into(),
                ));
            }
            self.own_in_flight.pop_front();
        }
        let view = self.view()?;
        let sealed: Sealed<B> = codec::decode(payload)?;
        if sealed.view_id != view.view_id {
            return Err(SessionError::StaleView { got: sealed.view_id, current: view.view_id });
        }
        if sealed.epoch != self.epoch() {
            return Err(SessionError::StaleEpoch { got: sealed.epoch, current: self.epoch() });
        }
        Ok(sealed.body)
    }

    /// As [`Self::open`], but a payload of an epoch this member has queued (a refresh it will
    /// start once its running agreement completes) is held, not refused: `Ok(None)`. It comes
    /// back from [`Self::take_held`] when that epoch starts.
    pub fn open_or_hold<B: DeserializeOwned>(
        &mut self,
        from: &str,
        payload: &[u8],
    ) -> Result<Option<B>, SessionError> {
        if self.refreshes_queued > 0 && from != self.me() {
            if let Some(epoch) = self.queued_epoch_of(payload) {
                return self.hold(from, payload, epoch).map(|()| None);
            }
        }
        self.open(from, payload).map(Some)
    }

    /// The epoch of `payload` if it is sealed for this view and one of the queued epochs.
    fn queued_epoch_of(&self, payload: &[u8]) -> Option<u64> {
        let view = self.view.as_ref()?;
        let (view_id, epoch) = codec::decode_prefix::<(u64, u64)>(payload).ok()?;
        let first = epoch_of(view.view_id, self.keys_in_view + 1);
        let last = epoch_of(view.view_id, self.keys_in_view + self.refreshes_queued);
        (view_id == view.view_id && (first..=last).contains(&epoch)).then_some(epoch)
    }

    /// The sender is a member of the view, and the payload within the view's size budget.
    fn check_sender_and_size(&self, from: &str, payload: &[u8]) -> Result<(), SessionError> {
        self.view()?;
        if !self.members.contains(from) {
            return Err(SessionError::NotAMember(from.to_owned()));
        }
        // Bound what a hostile member can make us allocate while decoding: no honest message
        // is larger than a budget per member of the view.
        let limit = self.payload_limit();
        if payload.len() > limit {
            return Err(PayloadError::TooLarge { len: payload.len(), max: limit }.into());
        }
        Ok(())
    }

    fn hold(&mut self, from: &str, payload: &[u8], epoch: u64) -> Result<(), SessionError> {
        self.check_sender_and_size(from, payload)?;
        let budget = self.payload_limit().saturating_mul(4);
        if self.held.len() >= MAX_HELD_PAYLOADS || self.held_bytes + payload.len() > budget {
            return Err(SessionError::Unexpected(format!(
                "too many early payloads (epoch {epoch}) held while the running agreement ends"
            )));
        }
        self.held_bytes += payload.len();
        self.held.push_back((from.to_owned(), payload.to_vec()));
        Ok(())
    }

    /// The largest payload accepted in the current view: 64 KiB plus, per member, room for two
    /// group elements and two member ids (a TGDH tree has two nodes per member), capped at
    /// [`codec::MAX_PAYLOAD_BYTES`].
    pub fn payload_limit(&self) -> usize {
        let members = self.view.as_ref().map_or(1, |v| v.members.len());
        let per_member = 2 * (self.dh.group().byte_len() + 160);
        (64 * 1024 + members * per_member).min(codec::MAX_PAYLOAD_BYTES)
    }

    fn seal<B: Serialize>(&self, body: &B) -> Result<Vec<u8>, SessionError> {
        let view_id = self.view()?.view_id;
        Ok(codec::encode(&Sealed { view_id, epoch: self.epoch(), body })?)
    }

    /// Queues a broadcast to every other member of the view.
    pub fn broadcast<B: Serialize>(&mut self, body: &B) -> Result<(), SessionError> {
        let payload = self.seal(body)?;
        self.account(payload.len());
        self.own_in_flight.push_back(payload.clone());
        self.outbox.push_back(Output::Broadcast(payload));
        Ok(())
    }

    /// Queues a unicast to one member of the view.
    pub fn unicast<B: Serialize>(&mut self, to: &str, body: &B) -> Result<(), SessionError> {
        self.view()?;
        if !self.members.contains(to) {
            return Err(SessionError::Unexpected(format!("unicast to non-member {to:?}")));
        }
        let payload = self.seal(body)?;
        self.account(payload.len());
        self.outbox.push_back(Output::Unicast { to: to.to_owned(), payload });
        Ok(())
    }

    fn account(&mut self, len: usize) {
        self.messages_sent += 1;
        self.bytes_sent += len as u64;
    }

    /// Derives the group key from the raw group secret (fixed-length big-endian bytes), queues
    /// it and ends the running agreement.
    pub fn install_key(&mut self, secret: &[u8]) -> Result<(), SessionError> {
        let view_id = self.view()?.view_id;
        let epoch = self.epoch();
        let ctx =
            KeyContext { group: &self.config.group_name, view_id, protocol: self.protocol, epoch };
        let key = derive_group_key(secret, &ctx);
        self.outbox.push_back(Output::Key(GroupKey { epoch, view_id, key }));
        self.agreement_pending = false;
        self.keys += 1;
        Ok(())
    }

    /// The next queued output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop_front()
    }

    /// The session's counters.
    pub fn counters(&self) -> Counters {
        Counters {
            exponentiations: self.dh.exponentiations(),
            messages_sent: self.messages_sent,
            bytes_sent: self.bytes_sent,
            keys: self.keys,
        }
    }
}

/// `view`, shared with the members of this process that hold an equal one.
fn shared_view(view: &View) -> Arc<View> {
    static VIEWS: Registry<View> = Registry::new();
    let content = (view.view_id, &view.members, &view.joined, &view.left);
    VIEWS.share(&content, |held| held == view, || view.clone())
}

/// Checks `view` against its members' places (`places`, shared by the members of this process
/// that hold the view: each member does not hash the n ids again).
fn validate_view(view: &View, places: &ViewPlaces, me: &str) -> Result<(), SessionError> {
    if !places.contains(me) {
        return Err(SessionError::InvalidView(format!("{me:?} is not a member")));
    }
    if let Some(m) = view.members.iter().find(|m| m.is_empty()) {
        return Err(SessionError::InvalidView(format!("empty or duplicate member {m:?}")));
    }
    if !places.distinct() {
        let mut seen = HashSet::new();
        if let Some(m) = view.members.iter().find(|m| !seen.insert(m.as_str())) {
            return Err(SessionError::InvalidView(format!("empty or duplicate member {m:?}")));
        }
    }
    if let Some(j) = view.joined.iter().find(|j| !places.contains(j)) {
        return Err(SessionError::InvalidView(format!("joined member {j:?} is not in the view")));
    }
    if let Some(l) = view.left.iter().find(|l| places.contains(l)) {
        return Err(SessionError::InvalidView(format!(
            "departed member {l:?} is still in the view"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupId;

    fn core(me: &str) -> SessionCore {
        SessionCore::new(
            "test",
            SessionConfig {
                group_name: "g".into(),
                member_id: me.into(),
                dh_group: GroupId::Ffdhe2048,
                rng_seed: [1; 32],
            },
        )
        .expect("core")
    }

    fn view(id: u64, members: &[&str]) -> View {
        View {
            view_id: id,
            members: members.iter().map(|m| m.to_string()).collect(),
            joined: vec![],
            left: vec![],
        }
    }

    #[test]
    fn inconsistent_views_are_typed_errors_and_change_nothing() {
        let mut c = core("a");
        let bad = [
            view(1, &["b", "c"]),
            view(1, &["a", "a"]),
            view(1, &["a", ""]),
            View { joined: vec!["z".into()], ..view(1, &["a"]) },
            View { left: vec!["a".into()], ..view(1, &["a"]) },
            view(MAX_VIEW_ID + 1, &["a"]),
        ];
        for v in bad {
            assert!(matches!(c.begin_view(&v), Err(SessionError::InvalidView(_))), "{v:?}");
            assert!(c.view().is_err(), "a refused view is not installed");
        }
        c.begin_view(&view(5, &["a", "b"])).expect("valid view");
        assert!(matches!(c.begin_view(&view(5, &["a"])), Err(SessionError::InvalidView(_))));
        assert_eq!(c.view().expect("view").view_id, 5);
    }

    #[test]
    fn sides_follow_the_last_completed_agreement() {
        let mut c = core("a");
        let first = c.begin_view(&view(1, &["a", "b"])).expect("view");
        assert_eq!(first.side, ["a"], "a first view starts afresh");
        assert!(!first.keeps_state);
        c.install_key(&[7; 32]).expect("key");
        let second = c.begin_view(&view(2, &["a", "b", "c"])).expect("view");
        assert_eq!(second.side, ["a", "b"]);
        assert!(second.keeps_state && !second.side_is_whole_view);
        assert!(second.side_is_last_group, "nobody of the agreed group left");
        // Interrupted: the next view restarts this member alone.
        let third = c.begin_view(&view(3, &["a", "b"])).expect("view");
        assert_eq!(third.side, ["a"]);
        assert!(!third.keeps_state && !third.side_is_last_group);
        // b of the agreed group {a, b} left while d joined.
        c.install_key(&[8; 32]).expect("key");
        let fourth = c.begin_view(&view(4, &["a", "d"])).expect("view");
        assert_eq!(fourth.side, ["a"]);
        assert!(fourth.keeps_state && !fourth.side_is_last_group);
    }

    #[test]
    fn epochs_grow_with_views_and_refreshes() {
        let mut c = core("a");
        c.begin_view(&view(1, &["a"])).expect("view");
        let e0 = c.epoch();
        assert!(!c.begin_refresh().expect("a refresh during an agreement is queued"));
        assert_eq!(c.refreshes_queued(), 1);
        assert!(!c.start_queued_refresh(), "not before the running agreement's key");
        c.install_key(&[1; 32]).expect("key");
        assert!(c.start_queued_refresh(), "then it starts");
        assert_eq!(c.epoch(), e0 + 1);
        c.install_key(&[2; 32]).expect("key");
        assert!(c.begin_refresh().expect("refresh"));
        assert!(c.epoch() > e0 + 1);
        c.install_key(&[3; 32]).expect("key");
        let e1 = c.epoch();
        c.begin_view(&view(2, &["a"])).expect("view");
        assert!(c.epoch() > e1);
        assert_eq!(epoch_of(2, 0), 2 << 24);
    }
}
