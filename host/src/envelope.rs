//! Signed envelopes: how every message a member sends travels through the group layer.
//!
//! ```text
//! format ‖ group ‖ run ‖ view id ‖ epoch ‖ kind ‖ protocol@version ‖ sender ‖ sequence ‖ body ‖ signature
//! ```
//!
//! The signature (the sender's identity key, see [`crate::identity`]) covers every other
//! field, so an envelope is bound to its group, the group's run (see
//! [`GroupRun`]: view ids start again in a new run, the run nonce does not repeat), view,
//! epoch, protocol and position in the sender's stream. A receiver's [`EnvelopeChecker`] refuses, with a typed [`Rejection`] that
//! names the reason (and serves as a metrics label): bytes that do not decode or are too large,
//! an unknown format, another group, a sender not in the trust store, a bad signature, another
//! run, another view, a protocol message from an earlier epoch (a control message from an earlier view's
//! epoch), and a sequence number not above
//! the last one accepted from that sender in this view (a replay).

use std::collections::HashMap;

use gka_plugin_api::{epoch_of, ViewPlaces};
use serde::{Deserialize, Serialize};

use crate::group::GroupRun;
use crate::identity::{Identity, PublicKey, TrustStore};

/// The envelope format this host writes and reads (2: the header carries the group's run).
pub const ENVELOPE_FORMAT: u8 = 2;

/// The largest encoded envelope accepted: a maximal plugin payload plus headers and a
/// signature.
pub const MAX_ENVELOPE_BYTES: usize = gka_plugin_api::codec::MAX_PAYLOAD_BYTES + 4096;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A key-agreement plugin's payload.
    Protocol,
    /// The runtime's own control messages (switch proposals, votes, measurements).
    Control,
    /// Application data, encrypted under the epoch's group key.
    Data,
}

/// Everything but the signature, in the order it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The group's name.
    pub group: String,
    /// The group's run the view belongs to.
    pub run: GroupRun,
    /// The view the sender was in.
    pub view_id: u64,
    /// The key epoch the message belongs to.
    pub epoch: u64,
    /// What the body is.
    pub kind: Kind,
    /// The protocol, as `name@version`.
    pub protocol: String,
    /// The sender's member id.
    pub sender: String,
    /// The sender's sequence number in this view, starting at 1.
    pub seq: u64,
}

/// A signed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The signed header.
    pub header: Header,
    /// The body (a plugin payload, a control message, or AEAD ciphertext).
    pub body: Vec<u8>,
    /// The sender's signature over the format byte, the header and the body.
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
struct SignedPart<'a> {
    format: u8,
    header: &'a Header,
    body: &'a [u8],
}

/// The wire form, decoded.
#[derive(Deserialize)]
struct Wire {
    format: u8,
    header: Header,
    body: Vec<u8>,
    signature: Vec<u8>,
}

/// The wire form, encoded from borrowed fields (same layout as [`Wire`]): no copies of the
/// body on the send path.
#[derive(Serialize)]
struct WireRef<'a> {
    format: u8,
    header: &'a Header,
    body: &'a [u8],
    signature: &'a [u8],
}

fn signed_bytes(header: &Header, body: &[u8]) -> Vec<u8> {
    // Serializing plain strings, integers and byte slices to a Vec cannot fail.
    postcard::to_allocvec(&SignedPart { format: ENVELOPE_FORMAT, header, body })
        .expect("postcard serializes the signed part")
}

impl Envelope {
    /// Signs `body` under `header` with the sender's identity.
    pub fn seal(identity: &Identity, header: Header, body: Vec<u8>) -> Self {
        let signature = identity.sign(&signed_bytes(&header, &body));
        Self { header, body, signature }
    }

    /// The wire encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(&WireRef {
            format: ENVELOPE_FORMAT,
            header: &self.header,
            body: &self.body,
            signature: &self.signature,
        })
        .expect("postcard serializes an envelope")
    }

    /// The header of an envelope in this host's format, unchecked (no signature is verified):
    /// what the daemon reports a group's members claim. `None` for anything else.
    pub fn peek_header(bytes: &[u8]) -> Option<Header> {
        let (format, header) = postcard::take_from_bytes::<(u8, Header)>(bytes).ok()?.0;
        (format == ENVELOPE_FORMAT).then_some(header)
    }

    /// Decodes the wire encoding (size, format and shape only: [`EnvelopeChecker`] does the
    /// rest).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Rejection> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(Rejection::TooLarge { len: bytes.len(), max: MAX_ENVELOPE_BYTES });
        }
        let (wire, rest): (Wire, _) =
            postcard::take_from_bytes(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(Rejection::Malformed(format!("{} trailing bytes", rest.len())));
        }
        if wire.format != ENVELOPE_FORMAT {
            return Err(Rejection::UnknownFormat(wire.format));
        }
        Ok(Self { header: wire.header, body: wire.body, signature: wire.signature })
    }
}

/// Why a received envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Does not decode.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// A format this host does not read.
    #[error("unknown envelope format {0}")]
    UnknownFormat(u8),
    /// For another group.
    #[error("envelope for group {got:?}, this member is in {expected:?}")]
    WrongGroup {
        /// The envelope's group.
        got: String,
        /// This member's group.
        expected: String,
    },
    /// The sender is not in the trust store (or its certificate is not admitted in this view).
    #[error("sender {0:?} is not in the trust store or not admitted by the access rules")]
    UnknownSender(String),
    /// The signature does not verify.
    #[error("bad signature from {0:?}")]
    BadSignature(String),
    /// Sent in another run of the group (an earlier run's envelope, replayed).
    #[error("envelope from group run {got}, current run is {current}")]
    WrongRun {
        /// The envelope's run.
        got: GroupRun,
        /// The current run.
        current: GroupRun,
    },
    /// Sent in another view.
    #[error("envelope from view {got}, current view is {current}")]
    WrongView {
        /// The envelope's view.
        got: u64,
        /// The current view.
        current: u64,
    },
    /// A protocol or control message from an earlier epoch.
    #[error("envelope from epoch {got}, current epoch is {current}")]
    StaleEpoch {
        /// The envelope's epoch.
        got: u64,
        /// The current epoch.
        current: u64,
    },
    /// Relayed by the group layer as coming from another member than the one that signed it
    /// (a copy of someone else's envelope, injected through the relay's own connection).
    #[error("envelope signed by {signer:?} arrived from {relay:?}")]
    WrongSender {
        /// The signer named in the envelope.
        signer: String,
        /// The member the group layer says sent it.
        relay: String,
    },
    /// A sequence number not above the last one accepted from this sender in this view.
    #[error("replay from {sender:?}: sequence {seq} is not above {last}")]
    Replay {
        /// The sender.
        sender: String,
        /// The envelope's sequence number.
        seq: u64,
        /// The last accepted one.
        last: u64,
    },
}

impl Rejection {
    /// A short stable label, for logs and the `gka_rejected_messages_total{reason}` metric.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::UnknownFormat(_) => "unknown_format",
            Self::WrongGroup { .. } => "wrong_group",
            Self::UnknownSender(_) => "unknown_sender",
            Self::BadSignature(_) => "bad_signature",
            Self::WrongRun { .. } => "wrong_run",
            Self::WrongView { .. } => "wrong_view",
            Self::StaleEpoch { .. } => "stale_epoch",
            Self::WrongSender { .. } => "wrong_sender",
            Self::Replay { .. } => "replay",
        }
    }
}

/// An envelope decoded, and its signature verified, once for many checkers in one process:
/// the simulator runs a whole group in one process, where every broadcast reaches n members
/// with the same bytes. [`EnvelopeChecker::accept_verified`] runs every other check (group,
/// trust, run, view, epoch, replay) at each checker, and verifies the signature again if the
/// checker trusts another key for the sender. Real members, each in its own process, have no
/// use for it.
#[derive(Debug)]
pub struct Verified {
    envelope: Envelope,
    /// The key the signature verified under.
    signer: PublicKey,
}

impl Verified {
    /// Decodes `bytes` and verifies the signature under `trust`'s key for the sender.
    pub fn open(bytes: &[u8], trust: &TrustStore) -> Result<Self, Rejection> {
        let envelope = Envelope::from_bytes(bytes)?;
        let sender = &envelope.header.sender;
        let key = trust.get(sender).ok_or_else(|| Rejection::UnknownSender(sender.clone()))?;
        key.verify(&signed_bytes(&envelope.header, &envelope.body), &envelope.signature)
            .map_err(|_| Rejection::BadSignature(sender.clone()))?;
        Ok(Self { signer: key.clone(), envelope })
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

/// Checks received envelopes for one member (see the module docs).
#[derive(Debug)]
pub struct EnvelopeChecker {
    group: String,
    trust: TrustStore,
    run: GroupRun,
    view_id: u64,
    epoch: u64,
    /// The view's members, shared with the other members of this process that hold it.
    view_members: ViewPlaces,
    /// The last sequence number from each member of the view, by place (0: none yet).
    last_seq: Vec<u64>,
    /// The same for senders outside the view (trusted ones the group layer still relays).
    last_seq_outside: HashMap<String, u64>,
    rejected: HashMap<&'static str, u64>,
}

impl EnvelopeChecker {
    /// A checker for `group` that trusts the keys in `trust`.
    pub fn new(group: &str, trust: TrustStore) -> Self {
        Self {
            group: group.to_owned(),
            trust,
            run: GroupRun::default(),
            view_id: 0,
            epoch: 0,
            view_members: ViewPlaces::default(),
            last_seq: Vec::new(),
            last_seq_outside: HashMap::new(),
            rejected: HashMap::new(),
        }
    }

    /// Trusts exactly the keys in `trust` from now on (the members admitted in a view).
    pub fn set_trust(&mut self, trust: TrustStore) {
        self.trust = trust;
    }

    /// Stops trusting these members' keys (revoked in the middle of a view).
    pub fn distrust(&mut self, ids: &[String]) {
        for id in ids {
            self.trust.remove(id);
        }
    }

    /// True if `id` is in the trust store.
    pub fn trusts(&self, id: &str) -> bool {
        self.trust.contains(id)
    }

    /// A new view of the group's run `run`, with these members: sequence numbers start again.
    pub fn set_view(&mut self, run: GroupRun, view_id: u64, members: ViewPlaces) {
        self.run = run;
        self.view_id = view_id;
        self.last_seq.clear();
        self.last_seq.resize(members.len(), 0);
        self.view_members = members;
        // Restart every count at 0 and keep the entries. Entries of senders no longer
        // trusted go once they are as many as the trusted ones.
        if self.last_seq_outside.len() > 2 * self.trust.len() {
            let trust = &self.trust;
            self.last_seq_outside.retain(|sender, _| trust.contains(sender));
        }
        self.last_seq_outside.values_mut().for_each(|last| *last = 0);
    }

    /// The current key epoch: protocol and control envelopes from earlier epochs are stale.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// Decodes and checks one envelope; a refusal is counted by reason.
    pub fn accept(&mut self, bytes: &[u8]) -> Result<Envelope, Rejection> {
        self.accept_from(bytes, None)
    }

    /// As [`Self::accept`], for bytes the group layer delivered as sent by `relay`: the
    /// envelope's signer must be that member.
    pub fn accept_from(
        &mut self,
        bytes: &[u8],
        relay: Option<&str>,
    ) -> Result<Envelope, Rejection> {
        let result = Envelope::from_bytes(bytes).and_then(|e| {
            self.check_signature(&e, relay, None)?;
            self.check_state(&e.header)?;
            Ok(e)
        });
        self.count(result)
    }

    /// As [`Self::accept_from`], for an envelope already decoded and verified (see
    /// [`Verified`]).
    pub fn accept_verified(
        &mut self,
        verified: &Verified,
        relay: Option<&str>,
    ) -> Result<(), Rejection> {
        let e = &verified.envelope;
        let result = self
            .check_signature(e, relay, Some(&verified.signer))
            .and_then(|()| self.check_state(&e.header));
        self.count(result)
    }

    fn count<T>(&mut self, result: Result<T, Rejection>) -> Result<T, Rejection> {
        if let Err(r) = &result {
            *self.rejected.entry(r.label()).or_default() += 1;
        }
        result
    }

    /// The checks that do not depend on this member's state: the relay, the group, and the
    /// signature under this member's key for the sender (skipped if `verified_under` is that
    /// same key).
    fn check_signature(
        &self,
        e: &Envelope,
        relay: Option<&str>,
        verified_under: Option<&PublicKey>,
    ) -> Result<(), Rejection> {
        let h = &e.header;
        if let Some(r) = relay.filter(|r| *r != h.sender) {
            return Err(Rejection::WrongSender { signer: h.sender.clone(), relay: r.to_owned() });
        }
        if h.group != self.group {
            return Err(Rejection::WrongGroup {
                got: h.group.clone(),
                expected: self.group.clone(),
            });
        }
        let key =
            self.trust.get(&h.sender).ok_or_else(|| Rejection::UnknownSender(h.sender.clone()))?;
        if verified_under != Some(key) {
            key.verify(&signed_bytes(h, &e.body), &e.signature)
                .map_err(|_| Rejection::BadSignature(h.sender.clone()))?;
        }
        Ok(())
    }

    /// The checks against this member's state: run, view, epoch and replay.
    fn check_state(&mut self, h: &Header) -> Result<(), Rejection> {
        if h.run != self.run {
            return Err(Rejection::WrongRun { got: h.run, current: self.run });
        }
        if h.view_id != self.view_id {
            return Err(Rejection::WrongView { got: h.view_id, current: self.view_id });
        }
        // Protocol messages belong to the agreement of the current epoch. Control messages
        // (votes, probes, reports) are bound to the view: a member may have moved to the next
        // epoch (a switch's commit) while its peers' control messages of this view are in flight.
        let stale = match h.kind {
            Kind::Protocol => h.epoch < self.epoch,
            Kind::Control => h.epoch < epoch_of(h.view_id, 0),
            Kind::Data => false,
        };
        if stale {
            let current = if h.kind == Kind::Control { epoch_of(h.view_id, 0) } else { self.epoch };
            return Err(Rejection::StaleEpoch { got: h.epoch, current });
        }
        let last = match self.view_members.place(&h.sender) {
            Some(place) => self.last_seq.get_mut(place),
            None => self.last_seq_outside.get_mut(&h.sender),
        };
        match last {
            Some(last) if h.seq <= *last => {
                Err(Rejection::Replay { sender: h.sender.clone(), seq: h.seq, last: *last })
            }
            Some(last) => {
                *last = h.seq;
                Ok(())
            }
            None if h.seq == 0 => {
                Err(Rejection::Replay { sender: h.sender.clone(), seq: 0, last: 0 })
            }
            None => {
                self.last_seq_outside.insert(h.sender.clone(), h.seq);
                Ok(())
            }
        }
    }

    /// Refusals so far, by reason label.
    pub fn rejected(&self) -> &HashMap<&'static str, u64> {
        &self.rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Scheme;

    const RUN: GroupRun = GroupRun([7; 16]);

    fn header(sender: &str, view_id: u64, epoch: u64, seq: u64) -> Header {
        Header {
            group: "g".into(),
            run: RUN,
            view_id,
            epoch,
            kind: Kind::Protocol,
            protocol: "tgdh@0.1.0".into(),
            sender: sender.into(),
            seq,
        }
    }

    fn setup() -> (Identity, Identity, EnvelopeChecker) {
        let alice = Identity::generate("alice", Scheme::Ed25519).unwrap();
        let mallory = Identity::generate("mallory", Scheme::Ed25519).unwrap();
        let mut trust = TrustStore::default();
        trust.insert("alice", alice.public().clone());
        let mut checker = EnvelopeChecker::new("g", trust);
        checker.set_view(RUN, 7, ViewPlaces::new(&["alice".into(), "bob".into()]));
        checker.set_epoch(100);
        (alice, mallory, checker)
    }

    #[test]
    fn a_good_envelope_passes_once() {
        let (alice, _, mut checker) = setup();
        let bytes =
            Envelope::seal(&alice, header("alice", 7, 100, 1), b"payload".to_vec()).to_bytes();
        let e = checker.accept(&bytes).expect("accepted");
        assert_eq!(e.body, b"payload");
        assert_eq!(
            checker.accept(&bytes),
            Err(Rejection::Replay { sender: "alice".into(), seq: 1, last: 1 })
        );
    }

    #[test]
    fn every_bad_envelope_is_refused_with_its_reason() {
        let (alice, mallory, mut checker) = setup();
        let good = Envelope::seal(&alice, header("alice", 7, 100, 5), b"x".to_vec());
        let mut forged = good.clone();
        forged.body = b"y".to_vec();
        let mut other_group = header("alice", 7, 100, 6);
        other_group.group = "h".into();
        // The same view id and epoch in an earlier run of the group.
        let mut earlier_run = header("alice", 7, 100, 6);
        earlier_run.run = GroupRun([6; 16]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0xff; 3], "malformed"),
            (vec![0; MAX_ENVELOPE_BYTES + 1], "too_large"),
            (forged.to_bytes(), "bad_signature"),
            (
                Envelope::seal(&mallory, header("mallory", 7, 100, 1), vec![]).to_bytes(),
                "unknown_sender",
            ),
            // Mallory signs as Alice.
            (
                Envelope::seal(&mallory, header("alice", 7, 100, 9), vec![]).to_bytes(),
                "bad_signature",
            ),
            (Envelope::seal(&alice, other_group, vec![]).to_bytes(), "wrong_group"),
            (Envelope::seal(&alice, earlier_run, vec![]).to_bytes(), "wrong_run"),
            (Envelope::seal(&alice, header("alice", 6, 100, 7), vec![]).to_bytes(), "wrong_view"),
            (Envelope::seal(&alice, header("alice", 7, 99, 8), vec![]).to_bytes(), "stale_epoch"),
        ];
        for (bytes, label) in cases {
            let r = checker.accept(&bytes).expect_err(label);
            assert_eq!(r.label(), label, "{r}");
        }
        let mut bad_format = good.to_bytes();
        bad_format[0] = 9;
        assert_eq!(checker.accept(&bad_format).expect_err("format").label(), "unknown_format");
        // After all that, the good envelope still passes, and an older one is a replay.
        checker.accept(&good.to_bytes()).expect("good envelope");
        let older = Envelope::seal(&alice, header("alice", 7, 100, 4), vec![]).to_bytes();
        assert_eq!(checker.accept(&older).expect_err("replay").label(), "replay");
        assert_eq!(checker.rejected()["bad_signature"], 2);
        // Data from an older epoch is not stale: it may still decrypt with a kept past key.
        let mut data = header("alice", 7, 90, 10);
        data.kind = Kind::Data;
        checker.accept(&Envelope::seal(&alice, data, vec![]).to_bytes()).expect("old-epoch data");
    }

    #[test]
    fn an_envelope_verified_once_still_meets_every_other_check_at_each_checker() {
        let (alice, mallory, _) = setup();
        let mut trust = TrustStore::default();
        trust.insert("alice", alice.public().clone());
        let checker = || {
            let mut c = EnvelopeChecker::new("g", trust.clone());
            c.set_view(RUN, 7, ViewPlaces::new(&["alice".into()]));
            c.set_epoch(100);
            c
        };
        let good = Envelope::seal(&alice, header("alice", 7, 100, 5), b"x".to_vec());
        let verified = Verified::open(&good.to_bytes(), &trust).expect("opens");
        assert_eq!(verified.envelope(), &good);
        let (mut first, mut second) = (checker(), checker());
        first.accept_verified(&verified, Some("alice")).expect("first checker");
        second.accept_verified(&verified, Some("alice")).expect("second checker");
        // Each checker keeps its own replay window and view.
        let r = second.accept_verified(&verified, Some("alice")).expect_err("replay");
        assert_eq!(r.label(), "replay");
        let mut third = checker();
        third.set_view(RUN, 8, ViewPlaces::new(&["alice".into()]));
        assert_eq!(third.accept_verified(&verified, None).expect_err("view").label(), "wrong_view");
        let r = checker().accept_verified(&verified, Some("mallory")).expect_err("relayed");
        assert_eq!(r.label(), "wrong_sender");
        let r = EnvelopeChecker::new("g", TrustStore::default())
            .accept_verified(&verified, None)
            .expect_err("untrusted");
        assert_eq!(r.label(), "unknown_sender");
        // A checker that trusts another key for alice verifies for itself, and refuses.
        let (_, _, mut other_key) = setup();
        let r = other_key.accept_verified(&verified, None).expect_err("another key");
        assert_eq!(r.label(), "bad_signature");
        // Forgeries do not open.
        let mut forged = good.clone();
        forged.body = b"y".to_vec();
        let as_alice = Envelope::seal(&mallory, header("alice", 7, 100, 9), b"x".to_vec());
        for bad in [forged.to_bytes(), as_alice.to_bytes()] {
            let r = Verified::open(&bad, &trust).expect_err("forged");
            assert_eq!(r.label(), "bad_signature");
        }
        let own = Envelope::seal(&mallory, header("mallory", 7, 100, 1), vec![]).to_bytes();
        assert_eq!(Verified::open(&own, &trust).expect_err("unknown").label(), "unknown_sender");
    }

    #[test]
    fn a_copy_relayed_by_another_member_is_refused_without_burning_the_sequence_number() {
        let (alice, _, mut checker) = setup();
        let bytes = Envelope::seal(&alice, header("alice", 7, 100, 3), vec![]).to_bytes();
        let r = checker.accept_from(&bytes, Some("mallory")).expect_err("relayed copy");
        assert_eq!(r.label(), "wrong_sender", "{r}");
        checker.accept_from(&bytes, Some("alice")).expect("the genuine delivery still passes");
    }

    #[test]
    fn control_envelopes_are_bound_to_the_view_not_to_the_agreement_epoch() {
        let (alice, _, mut checker) = setup();
        checker.set_epoch(epoch_of(7, 2));
        let control = |epoch: u64, seq: u64| {
            let mut h = header("alice", 7, epoch, seq);
            h.kind = Kind::Control;
            Envelope::seal(&alice, h, vec![]).to_bytes()
        };
        checker.accept(&control(epoch_of(7, 1), 1)).expect("an earlier epoch of this view");
        let r = checker.accept(&control(epoch_of(6, 3), 2)).expect_err("another view's epoch");
        assert_eq!(r.label(), "stale_epoch");
    }

    #[test]
    fn a_new_view_restarts_sequence_numbers() {
        let (alice, _, mut checker) = setup();
        checker
            .accept(&Envelope::seal(&alice, header("alice", 7, 100, 3), vec![]).to_bytes())
            .unwrap();
        checker.set_view(RUN, 8, ViewPlaces::new(&["alice".into()]));
        checker
            .accept(&Envelope::seal(&alice, header("alice", 8, 100, 1), vec![]).to_bytes())
            .unwrap();
    }

    /// A trusted sender the view does not list (the group layer relays it) is held to the
    /// same rule: each sequence number once, above 0, restarting with the view.
    #[test]
    fn replays_of_a_sender_outside_the_view_are_refused_too() {
        let (alice, _, mut checker) = setup();
        for view in [8, 9] {
            checker.set_view(RUN, view, ViewPlaces::new(&["bob".into()]));
            let seal = |seq| Envelope::seal(&alice, header("alice", view, 100, seq), vec![]);
            let r = checker.accept(&seal(0).to_bytes()).expect_err("sequence number 0");
            assert_eq!(r, Rejection::Replay { sender: "alice".into(), seq: 0, last: 0 });
            checker.accept(&seal(2).to_bytes()).expect("the first");
            let r = checker.accept(&seal(2).to_bytes()).expect_err("a replay");
            assert_eq!(r, Rejection::Replay { sender: "alice".into(), seq: 2, last: 2 });
            let r = checker.accept(&seal(1).to_bytes()).expect_err("an older one");
            assert_eq!(r.label(), "replay");
            checker.accept(&seal(3).to_bytes()).expect("a newer one");
        }
    }
}
