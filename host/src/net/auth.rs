//! How a connection proves who it is to the daemon.
//!
//! The daemon opens every connection with a fresh random [`Challenge`]. The client's first
//! request, a join or a fault-injection command, carries a signature by its identity key over
//! a [statement](join_statement) that binds the challenge to everything the request asks for
//! (the group and member id, or the operator and the command). The daemon verifies it against
//! the key its access list holds for that id before it keeps any state for the connection, so
//! a client without the key can neither join (nor, therefore, receive a group's traffic) nor
//! inject faults, and a recorded proof is worth nothing on another connection.
//!
//! This authenticates the connection's first request, not every frame after it: what a
//! member sends afterwards is a signed envelope that its peers verify themselves. A process on
//! the path between a member and the daemon could still relay or cut the connection; it
//! learns nothing from doing so (the daemon carries only signed envelopes and ciphertext).

use serde::Serialize;

use std::sync::Arc;

use time::OffsetDateTime;

use crate::identity::access::{AccessRules, Refusal};
use crate::identity::cert::CertInfo;
use crate::identity::{Identity, PublicKey, TrustStore};
use crate::net::wire::ControlCmd;

/// Bytes of a connection challenge.
pub const CHALLENGE_BYTES: usize = 32;

/// A connection's challenge: fresh random bytes from the daemon.
pub type Challenge = [u8; CHALLENGE_BYTES];

/// Who may do what at the daemon: the access list it checks proofs against.
#[derive(Debug, Clone, Default)]
pub struct DaemonAccess {
    /// Members' public keys: a member id may join a group only with a proof by its key.
    pub members: TrustStore,
    /// Operators' public keys: only they may inject faults, and only when the daemon allows it.
    pub operators: TrustStore,
    /// Access rules for clients that present a certificate: the domains trusted, and which
    /// domains and roles may join which group (see [`AccessRules`]).
    pub rules: Option<Arc<AccessRules>>,
}

#[derive(Serialize)]
enum Statement<'a> {
    Join { challenge: &'a Challenge, group: &'a str, member: &'a str },
    Control { challenge: &'a Challenge, operator: &'a str, cmd: &'a ControlCmd },
}

fn bytes(statement: &Statement<'_>) -> Vec<u8> {
    // A fixed context keeps these signatures apart from envelope signatures by the same key.
    let mut out = b"gka daemon request v1\0".to_vec();
    // Strings, integers and byte arrays always serialize.
    out.extend(postcard::to_allocvec(statement).expect("postcard serializes a statement"));
    out
}

/// What a member signs to join `group` as `member` on a connection with `challenge`.
pub fn join_statement(challenge: &Challenge, group: &str, member: &str) -> Vec<u8> {
    bytes(&Statement::Join { challenge, group, member })
}

/// What an operator signs to send `cmd` on a connection with `challenge`.
pub fn control_statement(challenge: &Challenge, operator: &str, cmd: &ControlCmd) -> Vec<u8> {
    bytes(&Statement::Control { challenge, operator, cmd })
}

/// The proof a member sends with its join.
pub fn prove_join(identity: &Identity, challenge: &Challenge, group: &str) -> Vec<u8> {
    identity.sign(&join_statement(challenge, group, identity.id()))
}

/// The proof an operator sends with a command.
pub fn prove_control(identity: &Identity, challenge: &Challenge, cmd: &ControlCmd) -> Vec<u8> {
    identity.sign(&control_statement(challenge, identity.id(), cmd))
}

/// Why a proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The id has no key in the access list.
    #[error("{0:?} is not in the daemon's access list")]
    Unknown(String),
    /// The signature does not verify under the listed key.
    #[error("the proof for {0:?} does not verify under its listed key")]
    BadProof(String),
    /// The access rules refuse the presented certificate.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The certificate names another member than the request.
    #[error("the certificate is {cert:?}'s, not {claimed:?}'s")]
    WrongId {
        /// The id in the certificate.
        cert: String,
        /// The id the request claims.
        claimed: String,
    },
    /// A certificate was presented, but this daemon has no access rules to check it by.
    #[error("this daemon takes no certificates (start it with --access)")]
    NoRules,
}

impl AuthError {
    /// A short stable label (for metrics).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown",
            Self::BadProof(_) | Self::WrongId { .. } => "bad_proof",
            Self::Refused(r) => r.label(),
            Self::NoRules => "no_rules",
        }
    }
}

/// What a client shows besides its signature: a certificate, for a daemon with access rules.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The signature over the request's statement.
    pub proof: &'a [u8],
    /// The client's certificate (DER), if it presents one.
    pub certificate: Option<&'a [u8]>,
    /// The time certificates are checked at.
    pub now: OffsetDateTime,
}

impl DaemonAccess {
    /// Checks a join: by the presented certificate against the access rules (its domain, role
    /// and validity, and the proof under its key), or else by the key listed for `member`.
    pub fn check_join(
        &self,
        challenge: &Challenge,
        group: &str,
        member: &str,
        credentials: Credentials<'_>,
    ) -> Result<(), AuthError> {
        let statement = join_statement(challenge, group, member);
        self.check(&self.members, member, &statement, credentials, |rules, der, now| {
            rules.admit(group, der, now)
        })
    }

    /// Checks a control command: by an operator certificate of a domain the rules let inject
    /// faults, or else by a key listed in `operators`.
    pub fn check_control(
        &self,
        challenge: &Challenge,
        operator: &str,
        cmd: &ControlCmd,
        credentials: Credentials<'_>,
    ) -> Result<(), AuthError> {
        let statement = control_statement(challenge, operator, cmd);
        self.check(&self.operators, operator, &statement, credentials, |rules, der, now| {
            rules.admit_operator(der, now)
        })
    }

    /// `id`'s proof over `statement`: under the key of a certificate `admit` accepts, or, with
    /// no certificate, under the key `keys` lists for `id`.
    fn check(
        &self,
        keys: &TrustStore,
        id: &str,
        statement: &[u8],
        credentials: Credentials<'_>,
        admit: impl FnOnce(&AccessRules, &[u8], OffsetDateTime) -> Result<CertInfo, Refusal>,
    ) -> Result<(), AuthError> {
        let key: PublicKey = match (credentials.certificate, &self.rules) {
            (Some(der), Some(rules)) => {
                let info = admit(rules, der, credentials.now)?;
                if info.id != id {
                    return Err(AuthError::WrongId { cert: info.id, claimed: id.to_owned() });
                }
                info.public
            }
            (Some(_), None) => return Err(AuthError::NoRules),
            (None, _) => keys.get(id).ok_or_else(|| AuthError::Unknown(id.to_owned()))?.clone(),
        };
        key.verify(statement, credentials.proof).map_err(|_| AuthError::BadProof(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Scheme;

    fn creds(proof: &[u8]) -> Credentials<'_> {
        Credentials { proof, certificate: None, now: OffsetDateTime::UNIX_EPOCH }
    }

    #[test]
    fn a_proof_binds_its_challenge_group_and_id() {
        let alice = Identity::generate("alice", Scheme::Ed25519).unwrap();
        let mut access = DaemonAccess::default();
        access.members.insert("alice", alice.public().clone());
        let challenge = [1; CHALLENGE_BYTES];
        let proof = prove_join(&alice, &challenge, "g");
        access.check_join(&challenge, "g", "alice", creds(&proof)).expect("a good proof");
        let other = [2; CHALLENGE_BYTES];
        assert_eq!(
            access.check_join(&other, "g", "alice", creds(&proof)),
            Err(AuthError::BadProof("alice".into())),
            "another connection's challenge"
        );
        assert!(
            access.check_join(&challenge, "h", "alice", creds(&proof)).is_err(),
            "another group"
        );
        assert_eq!(
            access.check_join(&challenge, "g", "bob", creds(&proof)),
            Err(AuthError::Unknown("bob".into()))
        );
        // A member's key is not an operator's.
        let heal = ControlCmd::Heal { group: "g".into() };
        let proof = prove_control(&alice, &challenge, &heal);
        assert_eq!(
            access.check_control(&challenge, "alice", &heal, creds(&proof)),
            Err(AuthError::Unknown("alice".into()))
        );
        access.operators.insert("alice", alice.public().clone());
        access.check_control(&challenge, "alice", &heal, creds(&proof)).expect("an operator");
        let other_cmd = ControlCmd::Heal { group: "h".into() };
        assert!(access.check_control(&challenge, "alice", &other_cmd, creds(&proof)).is_err());
    }
}
