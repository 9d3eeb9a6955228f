//! What a member can say about itself on request: its view, who is in the key (and which
//! domain vouches for each), its key and its counters. The runtime answers
//! [`crate::runtime::Command::Status`] with it; an operator's client prints it.

use super::core::MemberCore;

/// One member of the current view, as this member sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RosterEntry {
    /// The member's id.
    pub id: String,
    /// Whether it takes part in the key (its trust store or rules admit it, and it was not
    /// excluded for stalling an agreement).
    pub in_key: bool,
    /// The domain its certificate names (with access rules; `None` with a trust directory).
    pub domain: Option<String>,
}

/// A snapshot of one member.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemberStatus {
    /// The group.
    pub group: String,
    /// This member's id.
    pub id: String,
    /// The current view's id, if it has one.
    pub view_id: Option<u64>,
    /// The current view's members, oldest first.
    pub members: Vec<RosterEntry>,
    /// The running protocol, `name@version`.
    pub protocol: String,
    /// The newest key's epoch.
    pub epoch: Option<u64>,
    /// The newest key's public fingerprint.
    pub fingerprint: Option<String>,
    /// Whether a key agreement is running.
    pub agreement_running: bool,
    /// Whether a protocol switch is being voted on or completed.
    pub switch_under_way: bool,
    /// Envelopes signed so far.
    pub signed: u64,
    /// Envelopes checked so far.
    pub verified: u64,
    /// Modular exponentiations so far, by every session.
    pub exponentiations: u64,
    /// Data sent and not yet delivered back (or awaiting the next key).
    pub unsent: usize,
}

impl MemberCore {
    /// Who is in the current view, and which of them are in the key.
    pub fn roster(&self) -> Vec<RosterEntry> {
        let Some(view) = &self.view else { return Vec::new() };
        let in_key = |m: &str| self.is_trusted(m);
        view.members
            .members()
            .iter()
            .map(|m| RosterEntry {
                id: m.clone(),
                in_key: in_key(m),
                domain: self.peers.as_ref().and_then(|p| p.domain_of(m)).map(str::to_owned),
            })
            .collect()
    }

    /// A snapshot of this member (see [`MemberStatus`]).
    pub fn status(&self) -> MemberStatus {
        let (signed, verified) = self.crypto_counts();
        MemberStatus {
            group: self.group.clone(),
            id: self.id().to_owned(),
            view_id: self.view.as_ref().map(|v| v.view_id),
            members: self.roster(),
            protocol: self.protocol.clone(),
            epoch: self.epoch(),
            fingerprint: self.fingerprint(),
            agreement_running: self.agreement_running(),
            switch_under_way: self.switch_under_way(),
            signed,
            verified,
            exponentiations: self.exponentiations_total(),
            unsent: self.unsent(),
        }
    }
}
