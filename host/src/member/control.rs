//! Control messages: what members tell each other, besides key-agreement payloads and data,
//! through signed `Control` envelopes in the agreed order.
//!
//! - [`Control::Announce`]: the oldest member states, in every view, which protocol the group
//!   runs, so a joiner (or the other side of a healed partition) adopts it;
//! - [`Control::Report`]: a member's live measurements, which the oldest member's policy reads;
//! - [`Control::Propose`] and [`Control::Vote`]: the two-phase protocol switch;
//! - [`Control::Ping`] and [`Control::Pong`]: round-trip and bandwidth probes;
//! - [`Control::Confirm`]: key confirmation (see `confirm.rs`);
//! - [`Control::Stalled`]: members that stalled an overdue agreement (see `liveness.rs`);
//! - [`Control::Revocation`]: a domain's newer revocation list (see `peers.rs`).
//!
//! Bodies are a format byte and postcard, at most [`MAX_CONTROL_BODY`] bytes; anything else is
//! a typed [`ControlError`].

use serde::{Deserialize, Serialize};

use crate::policy::live::Report;

/// The body format this host writes and reads.
pub const CONTROL_FORMAT: u8 = 1;

/// The largest control body accepted (a bandwidth probe carries padding).
pub const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Names a switch attempt: the view it was proposed in and the proposer's counter in that view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SwitchId {
    /// The view the proposal was made in.
    pub view_id: u64,
    /// The proposer's count of proposals in that view.
    pub counter: u64,
}

impl std::fmt::Display for SwitchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.view_id, self.counter)
    }
}

/// A plugin, named precisely enough for every member to check that it runs the same code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    /// The protocol's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// SHA-256 of the plugin library, lower-case hex (empty for a protocol linked into the
    /// host, which has no library file).
    pub sha256: String,
}

impl PluginRef {
    /// `name@version`, as in envelope headers.
    pub fn tag(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// The oldest member's proposal to switch protocols.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The attempt's name.
    pub id: SwitchId,
    /// The protocol the group runs now.
    pub from: String,
    /// The protocol to switch to.
    pub to: PluginRef,
    /// Why the policy chose it.
    pub reason: String,
    /// A short, low-cardinality form of the reason (for metrics labels).
    pub label: String,
    /// Predicted gain, as a fraction of the current protocol's expected rekey time.
    pub gain: f64,
}

/// A member's answer to a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The member can and may run the proposed protocol.
    Accept,
    /// It cannot or may not, and why.
    Reject(String),
}

/// A control message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Control {
    /// The protocol the group runs in this view (sent by the oldest member).
    Announce(PluginRef),
    /// Live measurements.
    Report(Report),
    /// A proposed switch (sent by the oldest member).
    Propose(Proposal),
    /// A vote on a proposed switch.
    Vote {
        /// The attempt voted on.
        id: SwitchId,
        /// The vote.
        verdict: Verdict,
    },
    /// A round-trip probe; `padding` makes it a bandwidth probe.
    Ping {
        /// Matches the pong to the ping.
        nonce: u64,
        /// Filler bytes.
        padding: Vec<u8>,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Proof that the sender holds the key of an epoch.
    Confirm(super::confirm::Confirm),
    /// The agreement of `epoch` is overdue, and the sender has not heard from these members
    /// since it began.
    Stalled {
        /// The agreement's epoch.
        epoch: u64,
        /// 1 when the deadline passes; 2 after round 1 came back (see `liveness.rs`).
        round: u8,
        /// The members named.
        silent: Vec<String>,
    },
    /// A domain's revocation list (DER, signed by the domain's CA), applied by every member
    /// where it is delivered if it is newer than the one in force.
    Revocation(Vec<u8>),
}

/// Why a control body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Over [`MAX_CONTROL_BODY`].
    #[error("control body of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Empty, or an unknown format byte.
    #[error("unknown control body format")]
    UnknownFormat,
    /// Not a control message of this format.
    #[error("malformed control body: {0}")]
    Malformed(String),
}

impl Control {
    /// The body bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![CONTROL_FORMAT];
        out.extend(postcard::to_allocvec(self).expect("control messages always serialize"));
        out
    }

    /// Parses a body, refusing oversized, unknown-format, malformed and trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ControlError> {
        if bytes.len() > MAX_CONTROL_BODY {
            return Err(ControlError::TooLarge(bytes.len()));
        }
        match bytes.split_first() {
            Some((&CONTROL_FORMAT, rest)) => {
                let (msg, trailing) = postcard::take_from_bytes::<Self>(rest)
                    .map_err(|e| ControlError::Malformed(e.to_string()))?;
                if trailing.is_empty() {
                    Ok(msg)
                } else {
                    Err(ControlError::Malformed(format!("{} trailing bytes", trailing.len())))
                }
            }
            _ => Err(ControlError::UnknownFormat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_and_bad_bodies_are_typed_errors() {
        let id = SwitchId { view_id: 3, counter: 1 };
        let plugin = PluginRef { name: "str".into(), version: "0.1.0".into(), sha256: "ab".into() };
        let messages = [
            Control::Announce(plugin.clone()),
            Control::Report(Report { rtt_median_ms: Some(1.5), ..Report::default() }),
            Control::Propose(Proposal {
                id,
                from: "tgdh@0.1.0".into(),
                to: plugin,
                reason: "rule".into(),
                label: "rule:wan".into(),
                gain: 0.5,
            }),
            Control::Vote { id, verdict: Verdict::Reject("no plugin".into()) },
            Control::Ping { nonce: 7, padding: vec![0; 100] },
            Control::Pong { nonce: 7 },
            Control::Confirm(super::super::confirm::Confirm { epoch: 9, tag: [3; 32] }),
            Control::Stalled { epoch: 9, round: 2, silent: vec!["b".into()] },
            Control::Revocation(vec![0x30, 3, 1, 2, 3]),
        ];
        for m in messages {
            assert_eq!(Control::from_bytes(&m.to_bytes()).unwrap(), m);
        }
        let good = Control::Pong { nonce: 1 }.to_bytes();
        assert_eq!(Control::from_bytes(&[]), Err(ControlError::UnknownFormat));
        assert_eq!(Control::from_bytes(&[9, 0]), Err(ControlError::UnknownFormat));
        assert!(matches!(Control::from_bytes(&good[..1]), Err(ControlError::Malformed(_))));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(Control::from_bytes(&trailing), Err(ControlError::Malformed(_))));
        assert!(matches!(
            Control::from_bytes(&vec![CONTROL_FORMAT; MAX_CONTROL_BODY + 1]),
            Err(ControlError::TooLarge(_))
        ));
        assert!(matches!(
            Control::from_bytes(&[CONTROL_FORMAT, 200]),
            Err(ControlError::Malformed(_))
        ));
    }
}
