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
}

fn check(keys: &TrustStore, id: &str, statement: &[u8], proof: &[u8]) -> Result<(), AuthError> {
    let key: &PublicKey = keys.get(id).ok_or_else(|| AuthError::Unknown(id.to_owned()))?;
    key.verify(statement, proof).map_err(|_| AuthError::BadProof(id.to_owned()))
}

impl DaemonAccess {
    /// Checks a join's proof.
    pub fn check_join(
        &self,
        challenge: &Challenge,
        group: &str,
        member: &str,
        proof: &[u8],
    ) -> Result<(), AuthError> {
        check(&self.members, member, &join_statement(challenge, group, member), proof)
    }

    /// Checks a control command's proof.
    pub fn check_control(
        &self,
        challenge: &Challenge,
        operator: &str,
        cmd: &ControlCmd,
        proof: &[u8],
    ) -> Result<(), AuthError> {
        check(&self.operators, operator, &control_statement(challenge, operator, cmd), proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Scheme;

    #[test]
    fn a_proof_binds_its_challenge_group_and_id() {
        let alice = Identity::generate("alice", Scheme::Ed25519).unwrap();
        let mut access = DaemonAccess::default();
        access.members.insert("alice", alice.public().clone());
        let challenge = [1; CHALLENGE_BYTES];
        let proof = prove_join(&alice, &challenge, "g");
        access.check_join(&challenge, "g", "alice", &proof).expect("a good proof");
        let other = [2; CHALLENGE_BYTES];
        assert_eq!(
            access.check_join(&other, "g", "alice", &proof),
            Err(AuthError::BadProof("alice".into())),
            "another connection's challenge"
        );
        assert!(access.check_join(&challenge, "h", "alice", &proof).is_err(), "another group");
        assert_eq!(
            access.check_join(&challenge, "g", "bob", &proof),
            Err(AuthError::Unknown("bob".into()))
        );
        // A member's key is not an operator's.
        let heal = ControlCmd::Heal { group: "g".into() };
        let proof = prove_control(&alice, &challenge, &heal);
        assert_eq!(
            access.check_control(&challenge, "alice", &heal, &proof),
            Err(AuthError::Unknown("alice".into()))
        );
        access.operators.insert("alice", alice.public().clone());
        access.check_control(&challenge, "alice", &heal, &proof).expect("an operator");
        let other_cmd = ControlCmd::Heal { group: "h".into() };
        assert!(access.check_control(&challenge, "alice", &other_cmd, &proof).is_err());
    }
}
