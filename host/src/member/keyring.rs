//! The data key ring: the group keys a member keeps for data still in flight, and the AEAD
//! (ChaCha20-Poly1305) that encrypts application data under them.
//!
//! Data is sealed under the newest key and bound, as associated data, to the group, the key's
//! epoch, the sender, the view and the sender's sequence number, so that an envelope cannot be
//! replayed into another group, epoch or position. The ring keeps the last [`KEPT_KEYS`] keys:
//! data sent just before a rekey still decrypts, older data does not.

use std::collections::VecDeque;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use gka_plugin_api::GroupKey;
use rand_core::RngCore;

use super::events::{MemberError, MemberEvent, Outgoing};
use super::MemberCore;
use crate::envelope::{Envelope, Header, Kind};

/// How many past keys a member keeps for data still in flight.
pub const KEPT_KEYS: usize = 4;

/// Data messages a member may have sent and not yet seen delivered back (each kept until then,
/// to send again if a view change cuts it).
pub const MAX_UNECHOED: usize = 4096;

const NONCE_LEN: usize = 12;

/// Why data could not be decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Undecryptable {
    /// No key for the envelope's epoch: unknown, or already dropped from the ring.
    UnknownEpoch,
    /// Shorter than a nonce.
    TooShort,
    /// The ciphertext does not authenticate under that epoch's key and the header.
    Forged,
}

impl Undecryptable {
    /// Why, in words.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::UnknownEpoch => "no key for that epoch (unknown or expired)",
            Self::TooShort => "too short",
            Self::Forged => "does not authenticate",
        }
    }
}

/// The keys a member holds, newest last.
#[derive(Default)]
pub(super) struct KeyRing {
    keys: VecDeque<GroupKey>,
}

impl KeyRing {
    /// Adds the newest key, dropping the oldest beyond [`KEPT_KEYS`].
    pub(super) fn install(&mut self, key: GroupKey) {
        self.keys.push_back(key);
        while self.keys.len() > KEPT_KEYS {
            self.keys.pop_front();
        }
    }

    /// The newest key, if any.
    pub(super) fn newest(&self) -> Option<&GroupKey> {
        self.keys.back()
    }

    /// Encrypts `plaintext` under the newest key for an envelope with `header` (whose epoch
    /// must be the newest key's), with a fresh nonce from `rng`: nonce ‖ ciphertext.
    pub(super) fn seal(
        &self,
        header: &Header,
        plaintext: &[u8],
        rng: &mut impl RngCore,
    ) -> Option<Vec<u8>> {
        let key = self.keys.back().filter(|k| k.epoch == header.epoch)?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.key.as_ref()));
        let aad = data_aad(header);
        let ct = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad });
        let mut body = nonce.to_vec();
        body.extend_from_slice(&ct.ok()?);
        Some(body)
    }

    /// Decrypts the body of a data envelope with `header`.
    pub(super) fn open(&self, header: &Header, body: &[u8]) -> Result<Vec<u8>, Undecryptable> {
        let key = self
            .keys
            .iter()
            .find(|k| k.epoch == header.epoch)
            .ok_or(Undecryptable::UnknownEpoch)?;
        if body.len() < NONCE_LEN {
            return Err(Undecryptable::TooShort);
        }
        let (nonce, ct) = body.split_at(NONCE_LEN);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.key.as_ref()));
        let aad = data_aad(header);
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| Undecryptable::Forged)
    }
}

/// What a data envelope's ciphertext is bound to.
fn data_aad(header: &Header) -> Vec<u8> {
    let mut aad = Vec::new();
    aad.extend_from_slice(header.group.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&header.epoch.to_be_bytes());
    aad.extend_from_slice(header.sender.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&header.view_id.to_be_bytes());
    aad.extend_from_slice(&header.seq.to_be_bytes());
    aad
}

impl MemberCore {
    /// Encrypts `plaintext` under the newest key and queues it for every member of the view.
    ///
    /// Refused with [`MemberError::DepartedHoldKey`] from the view in which members left until
    /// the next key is installed: the departed members hold the newest key, and nothing sent
    /// after their departure may be readable by them.
    pub fn send_data(&mut self, plaintext: &[u8]) -> Result<(), MemberError> {
        let view = self.view.as_ref().ok_or(MemberError::NoView)?;
        let key = self.keys.newest().ok_or(MemberError::NoKey)?;
        if !self.admitted() {
            return Err(MemberError::NotAdmitted);
        }
        if self.departed_since_key {
            return Err(MemberError::DepartedHoldKey);
        }
        if self.unechoed.len() + self.to_resend.len() >= MAX_UNECHOED {
            return Err(MemberError::Backlog(self.unechoed.len() + self.to_resend.len()));
        }
        if !self.to_resend.is_empty() {
            // Behind the data a view change cut, so that the group receives it in order.
            self.to_resend.push(plaintext.to_vec());
            return Ok(());
        }
        let header = Header {
            group: self.group.clone(),
            run: self.run,
            view_id: view.view_id,
            epoch: key.epoch,
            kind: Kind::Data,
            protocol: self.protocol.clone(),
            sender: self.identity.id().to_owned(),
            seq: self.seq + 1,
        };
        let body = self.keys.seal(&header, plaintext, &mut self.rng).ok_or(MemberError::NoKey)?;
        self.seq += 1;
        let view_id = header.view_id;
        self.unechoed.push_back((view_id, header.seq, plaintext.to_vec()));
        let bytes = Envelope::seal(&self.identity, header, body).to_bytes();
        self.signed += 1;
        self.outgoing.push_back(Outgoing { view_id, to: None, bytes });
        Ok(())
    }

    /// A new view: data of earlier views not delivered back was not ordered (the group layer
    /// drops what was sent in a view that ended first), so it waits for the new view's key.
    /// If members joined, it is not sent again (they would read what was sent before they
    /// joined): it is reported as not sent.
    pub(super) fn data_cut_by(&mut self, view_id: u64, joined: bool) {
        while self.unechoed.front().is_some_and(|(v, _, _)| *v < view_id) {
            let (_, _, plaintext) = self.unechoed.pop_front().expect("checked");
            self.to_resend.push(plaintext);
        }
        if joined && !self.to_resend.is_empty() {
            let count = self.to_resend.len();
            self.to_resend.clear();
            self.events.push_back(MemberEvent::NotResent { count });
        }
    }

    /// Sends again, under the newest key, the data a view change cut (and what was sent
    /// after it, queued behind it).
    pub(super) fn resend_cut_data(&mut self) {
        let pending = std::mem::take(&mut self.to_resend);
        let count = pending.len();
        let mut sent = 0;
        for (i, plaintext) in pending.iter().enumerate() {
            if self.send_data(plaintext).is_err() {
                self.to_resend.extend(pending[i..].iter().cloned());
                break;
            }
            sent += 1;
        }
        if count > 0 && sent > 0 {
            self.events.push_back(MemberEvent::Resent { count: sent });
        }
    }

    pub(super) fn decrypt(&mut self, envelope: &Envelope) {
        let h = &envelope.header;
        if h.sender == self.identity.id() {
            // Delivered back: the group layer ordered it, so it is no longer at risk.
            self.unechoed.retain(|(view, seq, _)| (*view, *seq) != (h.view_id, h.seq));
        }
        self.events.push_back(match self.keys.open(h, &envelope.body) {
            Ok(plaintext) => {
                MemberEvent::Data { from: h.sender.clone(), epoch: h.epoch, plaintext }
            }
            Err(e) => MemberEvent::Undecryptable {
                from: h.sender.clone(),
                epoch: h.epoch,
                reason: e.reason().to_owned(),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use gka_plugin_api::rng::session_rng;
    use zeroize::Zeroizing;

    use super::*;
    use crate::envelope::Kind;

    fn key(epoch: u64, byte: u8) -> GroupKey {
        GroupKey { epoch, view_id: epoch >> 24, key: Zeroizing::new([byte; 32]) }
    }

    fn header(epoch: u64, seq: u64) -> Header {
        Header {
            group: "g".into(),
            run: crate::group::GroupRun::default(),
            view_id: epoch >> 24,
            epoch,
            kind: Kind::Data,
            protocol: "tgdh@0.1.0".into(),
            sender: "a".into(),
            seq,
        }
    }

    #[test]
    fn data_opens_under_its_epoch_and_nowhere_else() {
        let mut ring = KeyRing::default();
        let mut rng = session_rng([1; 32]);
        assert!(ring.seal(&header(1 << 24, 1), b"hi", &mut rng).is_none(), "no key yet");
        ring.install(key(1 << 24, 1));
        let body = ring.seal(&header(1 << 24, 1), b"hi", &mut rng).expect("sealed");
        assert_eq!(ring.open(&header(1 << 24, 1), &body).expect("opens"), b"hi");
        // Bound to the header: another sequence number, sender or group does not open.
        assert_eq!(ring.open(&header(1 << 24, 2), &body), Err(Undecryptable::Forged));
        let other_sender = Header { sender: "b".into(), ..header(1 << 24, 1) };
        assert_eq!(ring.open(&other_sender, &body), Err(Undecryptable::Forged));
        let other_group = Header { group: "h".into(), ..header(1 << 24, 1) };
        assert_eq!(ring.open(&other_group, &body), Err(Undecryptable::Forged));
        assert_eq!(ring.open(&header(2 << 24, 1), &body), Err(Undecryptable::UnknownEpoch));
        assert_eq!(ring.open(&header(1 << 24, 1), &body[..5]), Err(Undecryptable::TooShort));
        let mut tampered = body.clone();
        *tampered.last_mut().expect("non-empty") ^= 1;
        assert_eq!(ring.open(&header(1 << 24, 1), &tampered), Err(Undecryptable::Forged));
    }

    #[test]
    fn data_seals_only_under_the_newest_key_and_old_keys_expire() {
        let mut ring = KeyRing::default();
        let mut rng = session_rng([2; 32]);
        let epochs: Vec<u64> = (1..=KEPT_KEYS as u64 + 1).map(|v| v << 24).collect();
        let mut bodies = Vec::new();
        for (i, &epoch) in epochs.iter().enumerate() {
            ring.install(key(epoch, i as u8));
            bodies.push(ring.seal(&header(epoch, 1), b"x", &mut rng).expect("newest"));
        }
        assert!(ring.seal(&header(epochs[0], 1), b"x", &mut rng).is_none(), "not the newest");
        assert_eq!(ring.newest().map(|k| k.epoch), epochs.last().copied());
        assert_eq!(ring.open(&header(epochs[0], 1), &bodies[0]), Err(Undecryptable::UnknownEpoch));
        for (epoch, body) in epochs.iter().zip(&bodies).skip(1) {
            assert!(ring.open(&header(*epoch, 1), body).is_ok(), "kept: {epoch}");
        }
    }
}
