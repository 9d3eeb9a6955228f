//! What a member core emits and how it is tuned: its outgoing envelopes, its events, its
//! errors and its control timing.

use std::time::Duration;

use gka_plugin_api::{SessionError, View};

use super::switch::SwitchEvent;
use crate::envelope::Rejection;

/// How often the core probes, reports and (as the oldest member) evaluates its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlTiming {
    /// Between two probing rounds.
    pub probe_every: Duration,
    /// Between two reports in a view (the first goes as soon as the view's key is in place).
    pub report_every: Duration,
    /// Between two policy evaluations.
    pub evaluate_every: Duration,
    /// The least time an agreement runs before a member names the members that stalled it
    /// (see [`super::DEADLINE_FACTOR`] for the rest of the deadline).
    pub stall_floor: Duration,
}

impl Default for ControlTiming {
    fn default() -> Self {
        Self {
            probe_every: Duration::from_secs(1),
            report_every: Duration::from_secs(5),
            evaluate_every: Duration::from_secs(1),
            stall_floor: Duration::from_secs(3),
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
    /// Members of the view just delivered that take no part in key agreement, each with why:
    /// they are present in the group layer but will never hold the key.
    NotInKey {
        /// (member, reason).
        members: Vec<(String, String)>,
    },
    /// A domain's newer revocation list took effect here, at the same point of the agreed
    /// order as at every other member; members it revokes leave the key (see `NotInKey`).
    RevocationApplied {
        /// The domain.
        domain: String,
        /// The list's number.
        number: u64,
        /// The member that sent it.
        from: String,
    },
    /// A new group key (its fingerprint only).
    Key {
        /// The key's epoch.
        epoch: u64,
        /// A public fingerprint of the key.
        fingerprint: String,
        /// The protocol that agreed it (`name@version`).
        protocol: String,
        /// The group run it belongs to (epochs start again in a new run).
        run: crate::group::GroupRun,
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
    /// Data this member sent that a view change cut (the group layer drops what was sent in
    /// a view that ended before it was ordered) went out again, under the new view's key.
    Resent {
        /// How many messages.
        count: usize,
    },
    /// Every member of the view proved it holds this member's key for `epoch`.
    KeyConfirmed {
        /// The key's epoch.
        epoch: u64,
    },
    /// Members hold another key for `epoch` than this member (their confirmation tags
    /// differ): a safety failure, loud by design.
    KeyMismatch {
        /// The key's epoch.
        epoch: u64,
        /// The members whose key differs from this member's.
        diverging: Vec<String>,
        /// Whether the group started a fresh agreement (at most
        /// [`super::MAX_RESTARTS_PER_VIEW`] per view).
        restarted: bool,
    },
    /// The running agreement is overdue: this member names the members it has not heard from
    /// since the agreement began (possibly none).
    AgreementOverdue {
        /// The agreement's epoch.
        epoch: u64,
        /// How long it has run.
        waited: Duration,
        /// The members named.
        silent: Vec<String>,
    },
    /// These members stalled the agreement of `epoch` and are out of the key for the rest of
    /// this view; a fresh agreement without them has started. (Also shown as out of the key.)
    Excluded {
        /// The agreement's epoch.
        epoch: u64,
        /// The members excluded.
        members: Vec<String>,
    },
    /// Data a view change cut was not sent again, because members joined in that view (they
    /// would read what was sent before they joined): the application may send it again.
    NotResent {
        /// How many messages.
        count: usize,
    },
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
    /// Members left since the newest key: they hold it, so data waits for the next key.
    #[error(
        "members left and still hold the current key; send again once the new key is installed"
    )]
    DepartedHoldKey,
    /// Too much data sent and not yet delivered back to this member.
    #[error("{0} messages are still in flight; send again once some are delivered")]
    Backlog(usize),
    /// This member's own trust store or rules do not admit it (its certificate was revoked,
    /// say): it takes no part in the key.
    #[error("this member is not in the key: its own access rules do not admit it")]
    NotAdmitted,
    /// A protocol switch is being voted on or completed: refresh after it.
    #[error("a protocol switch is under way")]
    SwitchUnderWay,
    /// The plugin failed.
    #[error("key agreement failed: {0}")]
    Session(#[from] SessionError),
}
