//! The safe Rust face of a plugin: a [`Protocol`] factory and a sans-IO [`Session`].
//!
//! A session is a pure state machine. The host feeds it inputs (`handle_*`) and then drains
//! its outputs with [`Session::poll_output`] until it returns `None`:
//!
//! ```text
//!   view ──────────► handle_view ────┐
//!   payload ───────► handle_payload ─┼─► state ─► poll_output ─► Broadcast / Unicast / Key
//!   refresh ───────► handle_refresh ─┘
//! ```
//!
//! Rules every session follows and every host relies on:
//! - no sockets, threads, clocks or OS randomness: time comes in as `now` (milliseconds since
//!   the host started the session, never decreasing) and randomness from the seed in
//!   [`SessionConfig`];
//! - the host delivers views and payloads in the group layer's agreed order, with view
//!   synchrony, and delivers every broadcast back to its sender too (as Spread does): a
//!   session counts what it told the group only once the group has it, so that every member
//!   of a view completes an agreement at the same point of the agreed order, whatever point a
//!   view change cuts it at;
//! - an input that returns an error leaves the session as it was;
//! - outputs must be drained before the next input.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::SessionError;
use crate::group::GroupId;
use crate::kdf::GROUP_KEY_LEN;

/// A member's identity within a group (its name in the trust store).
pub type MemberId = String;

/// A membership view, as the group layer delivers it to one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The view's id; it only grows.
    pub view_id: u64,
    /// The members, oldest first (ties broken by id).
    pub members: Vec<MemberId>,
    /// Members of this view that were not in this member's previous view (for a member's first
    /// view, every member).
    pub joined: Vec<MemberId>,
    /// Members of this member's previous view that are not in this one.
    pub left: Vec<MemberId>,
}

/// The kinds of membership event a protocol handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventKind {
    /// Initial agreement of n members that share no state.
    Initial,
    /// One member joins a group of n.
    Join,
    /// One member leaves a group of n.
    Leave,
    /// m members (or another group) join a group of n at once.
    Merge,
    /// p members leave a group of n at once.
    Partition,
    /// A new key for the same membership.
    Refresh,
}

impl EventKind {
    /// Every event kind.
    pub const ALL: [Self; 6] =
        [Self::Initial, Self::Join, Self::Leave, Self::Merge, Self::Partition, Self::Refresh];

    /// Lower-case name, as used in the CLI and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Merge => "merge",
            Self::Partition => "partition",
            Self::Refresh => "refresh",
        }
    }

    /// A stable number at the ABI.
    pub fn code(self) -> u8 {
        match self {
            Self::Initial => 0,
            Self::Join => 1,
            Self::Leave => 2,
            Self::Merge => 3,
            Self::Partition => 4,
            Self::Refresh => 5,
        }
    }

    /// The kind with the given [`EventKind::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of membership change a view is, from one member's point of view: the one
/// classification the runtime, the live inputs, the metrics and the simulator share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ViewEvent {
    /// The member's first view.
    Initial,
    /// One member joined.
    Join,
    /// One member left.
    Leave,
    /// Several members joined at once (a merge, or a heal).
    Merge,
    /// Several members left at once (a partition).
    Partition,
    /// Members both joined and left.
    Mixed,
    /// Nobody joined or left (for example a view that only changed untrusted members).
    Unchanged,
}

impl ViewEvent {
    /// Every kind.
    pub const ALL: [Self; 7] = [
        Self::Initial,
        Self::Join,
        Self::Leave,
        Self::Merge,
        Self::Partition,
        Self::Mixed,
        Self::Unchanged,
    ];

    /// Classifies `view` by who joined and left; `first` says whether it is this member's
    /// first view.
    pub fn of(view: &View, first: bool) -> Self {
        match (first, view.joined.len(), view.left.len()) {
            (true, _, _) => Self::Initial,
            (_, 0, 0) => Self::Unchanged,
            (_, 1, 0) => Self::Join,
            (_, 0, 1) => Self::Leave,
            (_, _, 0) => Self::Merge,
            (_, 0, _) => Self::Partition,
            _ => Self::Mixed,
        }
    }

    /// Lower-case name, as used in metrics labels.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Merge => "merge",
            Self::Partition => "partition",
            Self::Mixed => "mixed",
            Self::Unchanged => "unchanged",
        }
    }

    /// The protocol events it counts as in event rates: a mixed view is a join and a leave.
    pub fn counts_as(self, kind: Self) -> bool {
        self == kind || (self == Self::Mixed && matches!(kind, Self::Join | Self::Leave))
    }

    /// The protocol event whose cost model describes this view's rekey, if one does (a mixed
    /// view, a first view or an unchanged one has none).
    pub fn event_kind(self) -> Option<EventKind> {
        match self {
            Self::Join => Some(EventKind::Join),
            Self::Leave => Some(EventKind::Leave),
            Self::Merge => Some(EventKind::Merge),
            Self::Partition => Some(EventKind::Partition),
            Self::Initial | Self::Mixed | Self::Unchanged => None,
        }
    }
}

/// What a protocol is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Short unique name (`gdh`, `tgdh`, ...).
    pub name: String,
    /// Semantic version of the protocol implementation and its payload format.
    pub version: String,
    /// One line saying what it is.
    pub summary: String,
    /// The events it handles.
    pub events: Vec<EventKind>,
}

/// The predicted cost of one event, as the plugin's cost model states it.
///
/// Counts are for the whole event, from the first membership input to the last member
/// installing the key. "Serial" counts follow the critical path: the longest chain of
/// operations in which each one waits for the message produced by the one before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostFigures {
    /// Communication rounds (waves of messages, each waiting for the one before).
    pub rounds: u64,
    /// Unicast messages in total.
    pub unicasts: u64,
    /// Broadcast messages in total.
    pub broadcasts: u64,
    /// Modular exponentiations on the critical path.
    pub serial_exponentiations: u64,
    /// Modular exponentiations summed over all members.
    pub total_exponentiations: u64,
    /// Signatures on the critical path (one per message sent along it).
    pub signatures: u64,
    /// Signature verifications on the critical path (one per message received along it).
    pub verifications: u64,
    /// Payload bytes sent in total (each broadcast counted once).
    pub bytes: u64,
}

/// A derived group key, handed to the host. The raw group secret never leaves the plugin.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey {
    /// The key's epoch: `view_id << 24 | n`, where n counts the keys agreed in that view before
    /// this one (see [`epoch_of`]).
    pub epoch: u64,
    /// The view the key was agreed in.
    pub view_id: u64,
    /// The 32-byte key (HKDF-SHA256 output).
    pub key: Zeroizing<[u8; GROUP_KEY_LEN]>,
}

impl GroupKey {
    /// A short public fingerprint of the key (the first 8 bytes of SHA-256 over it, in hex),
    /// safe to log and compare.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.key.as_ref());
        hex::encode(&digest[..8])
    }
}

impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupKey")
            .field("epoch", &self.epoch)
            .field("view_id", &self.view_id)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Keys a view can agree before a refresh is refused (a view change resets the count).
pub const MAX_KEYS_PER_VIEW: u64 = 1 << 24;

/// The largest view id whose epochs are representable.
pub const MAX_VIEW_ID: u64 = (1 << 40) - 1;

/// The epoch of the `n`-th key (counting from 0) agreed in view `view_id`: the view id in the
/// high 40 bits, n in the low 24, so epochs grow with view ids and with refreshes. Callers keep
/// `view_id <= MAX_VIEW_ID` and `n < MAX_KEYS_PER_VIEW` ([`SessionCore`](crate::SessionCore)
/// refuses views and refreshes beyond them).
pub fn epoch_of(view_id: u64, n: u64) -> u64 {
    (view_id << 24) | (n & (MAX_KEYS_PER_VIEW - 1))
}

/// An epoch as people read it: `view.n`, the view id and the key's number in that view (the
/// inverse of [`epoch_of`]): epoch `50331649` is `3.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochLabel(pub u64);

impl EpochLabel {
    /// The view the key was agreed in.
    pub fn view_id(self) -> u64 {
        self.0 >> 24
    }

    /// The key's number in its view (0 for the view's first key).
    pub fn n(self) -> u64 {
        self.0 & (MAX_KEYS_PER_VIEW - 1)
    }
}

impl fmt::Display for EpochLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.view_id(), self.n())
    }
}

/// Something the session wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Send this payload to every member of the current view (the sender included).
    Broadcast(Vec<u8>),
    /// Send this payload to one member of the current view.
    Unicast {
        /// The recipient.
        to: MemberId,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A new group key is ready.
    Key(GroupKey),
}

/// Work a session has done, for cost accounting and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Modular exponentiations performed.
    pub exponentiations: u64,
    /// Messages emitted (unicast and broadcast).
    pub messages_sent: u64,
    /// Payload bytes emitted.
    pub bytes_sent: u64,
    /// Keys installed.
    pub keys: u64,
}

/// How the host configures a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The group's name (bound into every key).
    pub group_name: String,
    /// This member's id.
    pub member_id: MemberId,
    /// The Diffie-Hellman group every member of the group uses.
    pub dh_group: GroupId,
    /// Seed for the session's RNG; the host draws it from the OS (or fixes it in tests).
    pub rng_seed: [u8; 32],
}

/// A key-agreement protocol: describes itself, predicts its costs, makes sessions.
pub trait Protocol: Send + Sync {
    /// Name, version and supported events.
    fn descriptor(&self) -> Descriptor;

    /// Predicted cost of `event` for a group of `n` members before the event, where `k` is the
    /// number of members joining (merge) or leaving (partition); ignored for other events.
    fn cost(&self, event: EventKind, n: u64, k: u64) -> CostFigures;

    /// A new session for one member.
    fn new_session(&self, config: SessionConfig) -> Result<Box<dyn Session>, SessionError>;
}

/// One member's sans-IO protocol state machine (see the module docs for the rules).
pub trait Session: Send {
    /// A new view. May arrive in any state; the session converges to one key for the newest view.
    fn handle_view(&mut self, now_ms: u64, view: &View) -> Result<(), SessionError>;

    /// A payload from a member of the current view (possibly this member's own broadcast).
    fn handle_payload(
        &mut self,
        now_ms: u64,
        from: &str,
        payload: &[u8],
    ) -> Result<(), SessionError>;

    /// Agree on a fresh key for the same view. Called on every member at the same point of the
    /// agreed order.
    fn handle_refresh(&mut self, now_ms: u64) -> Result<(), SessionError>;

    /// The next output, if any.
    #[must_use]
    fn poll_output(&mut self) -> Option<Output>;

    /// Work done so far.
    fn counters(&self) -> Counters;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(members: &[&str], joined: &[&str], left: &[&str]) -> View {
        let strings = |v: &[&str]| v.iter().map(|m| (*m).to_owned()).collect();
        View { view_id: 2, members: strings(members), joined: strings(joined), left: strings(left) }
    }

    #[test]
    fn every_view_has_one_event() {
        let cases = [
            (view(&["a", "b"], &["a", "b"], &[]), true, ViewEvent::Initial),
            (view(&["a", "b"], &[], &[]), false, ViewEvent::Unchanged),
            (view(&["a", "b", "c"], &["c"], &[]), false, ViewEvent::Join),
            (view(&["a"], &[], &["b"]), false, ViewEvent::Leave),
            (view(&["a", "b", "c"], &["b", "c"], &[]), false, ViewEvent::Merge),
            (view(&["a"], &[], &["b", "c"]), false, ViewEvent::Partition),
            (view(&["a", "c"], &["c"], &["b"]), false, ViewEvent::Mixed),
        ];
        for (v, first, expected) in cases {
            assert_eq!(ViewEvent::of(&v, first), expected, "{v:?}");
        }
        let labels: std::collections::HashSet<_> = ViewEvent::ALL.map(ViewEvent::label).into();
        assert_eq!(labels.len(), ViewEvent::ALL.len(), "labels are distinct");
    }

    #[test]
    fn an_epoch_label_undoes_epoch_of() {
        for (view_id, n) in [(0, 0), (3, 1), (1, MAX_KEYS_PER_VIEW - 1), (MAX_VIEW_ID, 7)] {
            let label = EpochLabel(epoch_of(view_id, n));
            assert_eq!((label.view_id(), label.n()), (view_id, n));
            assert_eq!(label.to_string(), format!("{view_id}.{n}"));
        }
        assert_eq!(EpochLabel(50_331_649).to_string(), "3.1");
    }

    #[test]
    fn a_mixed_view_counts_as_a_join_and_a_leave() {
        assert!(ViewEvent::Mixed.counts_as(ViewEvent::Join));
        assert!(ViewEvent::Mixed.counts_as(ViewEvent::Leave));
        assert!(!ViewEvent::Mixed.counts_as(ViewEvent::Merge));
        assert!(!ViewEvent::Unchanged.counts_as(ViewEvent::Join));
    }
}
