//! The sans-IO core of a member: a plugin session, wrapped in signed envelopes, with the group
//! key put to use for application data. The member runtime (tokio, TCP to the daemon) and the
//! in-memory network both drive it; it reads no clock and does no IO itself.
//!
//! ```text
//!  Delivery (view / message bytes) ─► MemberCore ─► Outgoing (envelope bytes to send)
//!  send_data(plaintext) ────────────►            ─► MemberEvent (views, keys, data, rejections)
//! ```
//!
//! - Every plugin payload leaves in an envelope signed by this member and bound to group, view,
//!   epoch, protocol and sequence number; every received envelope is checked against the trust
//!   store first (see [`crate::envelope`]), and refusals are reported and counted, never passed
//!   to the plugin.
//! - The epoch of protocol envelopes is the epoch being agreed, `epoch_of(view, n)`, which every
//!   member computes alike (a new view starts at n = 0, each refresh adds one).
//! - Application data is encrypted with ChaCha20-Poly1305 under the newest installed key and
//!   tagged with its epoch; the last [`KEPT_KEYS`] keys are kept, so data sent just before a
//!   rekey still decrypts. Data sent before the first key is refused with an error, and data
//!   under an unknown or forgotten epoch is reported as an event: nothing is dropped silently.

use std::collections::VecDeque;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use gka_plugin_api::{epoch_of, GroupKey, Output, Session, SessionError, View};
use rand_core::{OsRng, RngCore};

use crate::envelope::{Envelope, EnvelopeChecker, Header, Kind, Rejection};
use crate::identity::Identity;
use crate::sequencer::Delivery;

/// How many past keys a member keeps for data still in flight.
pub const KEPT_KEYS: usize = 4;

const NONCE_LEN: usize = 12;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// A new view.
    View(View),
    /// A new group key (its fingerprint only).
    Key {
        /// The key's epoch.
        epoch: u64,
        /// A public fingerprint of the key.
        fingerprint: String,
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
    /// The plugin refused a checked payload.
    ProtocolError {
        /// The sender.
        from: String,
        /// The plugin's error.
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
    /// The plugin failed.
    #[error("key agreement failed: {0}")]
    Session(#[from] SessionError),
}

/// One member's sans-IO core (see the module docs).
pub struct MemberCore {
    identity: Identity,
    group: String,
    protocol: String,
    session: Box<dyn Session>,
    checker: EnvelopeChecker,
    view: Option<View>,
    /// The view as given to the plugin: only trusted members.
    trusted_view: Option<View>,
    keys_in_view: u64,
    /// Mirrors the plugin: an agreement runs from a view or refresh until its key.
    pending: bool,
    seq: u64,
    keys: VecDeque<GroupKey>,
    outgoing: VecDeque<Outgoing>,
    events: VecDeque<MemberEvent>,
}

impl std::fmt::Debug for MemberCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberCore")
            .field("id", &self.identity.id())
            .field("group", &self.group)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl MemberCore {
    /// A member of `group` running `session` of protocol `protocol` (`name@version`), signing
    /// with `identity` and checking envelopes with `checker`.
    pub fn new(
        identity: Identity,
        group: &str,
        protocol: &str,
        session: Box<dyn Session>,
        checker: EnvelopeChecker,
    ) -> Self {
        Self {
            identity,
            group: group.to_owned(),
            protocol: protocol.to_owned(),
            session,
            checker,
            view: None,
            trusted_view: None,
            keys_in_view: 0,
            pending: false,
            seq: 0,
            keys: VecDeque::new(),
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// This member's id.
    pub fn id(&self) -> &str {
        self.identity.id()
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The protocol, as `name@version`.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The plugin session's counters.
    pub fn session_counters(&self) -> gka_plugin_api::Counters {
        self.session.counters()
    }

    /// The newest installed key's epoch.
    pub fn epoch(&self) -> Option<u64> {
        self.keys.back().map(|k| k.epoch)
    }

    /// The newest installed key's fingerprint.
    pub fn fingerprint(&self) -> Option<String> {
        self.keys.back().map(GroupKey::fingerprint)
    }

    fn agreeing_epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| epoch_of(v.view_id, self.keys_in_view))
    }

    /// Handles one delivery from the group layer.
    pub fn handle_delivery(&mut self, now_ms: u64, delivery: Delivery) -> Result<(), MemberError> {
        match delivery {
            Delivery::View(view) => {
                self.checker.set_view(view.view_id);
                // Access control: members outside the trust store take no part in key
                // agreement, so the plugin sees only the trusted ones.
                let members: Vec<String> =
                    view.members.iter().filter(|m| self.checker.trusts(m)).cloned().collect();
                let previous =
                    self.trusted_view.as_ref().map(|v| v.members.clone()).unwrap_or_default();
                let trusted = View {
                    view_id: view.view_id,
                    joined: members.iter().filter(|m| !previous.contains(m)).cloned().collect(),
                    left: previous.iter().filter(|m| !members.contains(m)).cloned().collect(),
                    members,
                };
                self.view = Some(view.clone());
                self.trusted_view = Some(trusted.clone());
                self.keys_in_view = 0;
                self.pending = true;
                self.seq = 0;
                self.checker.set_epoch(self.agreeing_epoch());
                self.events.push_back(MemberEvent::View(view));
                self.session.handle_view(now_ms, &trusted)?;
                self.drain_session();
            }
            Delivery::Message { bytes, .. } => {
                let envelope = match self.checker.accept(&bytes) {
                    Ok(e) => e,
                    Err(r) => {
                        self.events.push_back(MemberEvent::Rejected(r));
                        return Ok(());
                    }
                };
                let from = envelope.header.sender.clone();
                match envelope.header.kind {
                    Kind::Protocol if envelope.header.protocol != self.protocol => {
                        self.events.push_back(MemberEvent::ProtocolError {
                            from,
                            error: format!(
                                "envelope for protocol {}, this member runs {}",
                                envelope.header.protocol, self.protocol
                            ),
                        });
                    }
                    Kind::Protocol => {
                        if let Err(e) = self.session.handle_payload(now_ms, &from, &envelope.body) {
                            self.events.push_back(MemberEvent::ProtocolError {
                                from,
                                error: e.to_string(),
                            });
                        }
                        self.drain_session();
                    }
                    Kind::Data => self.decrypt(&envelope),
                    // Reported, not silently dropped: no control messages are defined yet.
                    Kind::Control => self.events.push_back(MemberEvent::ProtocolError {
                        from,
                        error: "control envelopes are not supported by this runtime".into(),
                    }),
                }
            }
        }
        Ok(())
    }

    /// Starts a key refresh (call on every member at the same point of the agreed order).
    pub fn refresh(&mut self, now_ms: u64) -> Result<(), MemberError> {
        if self.view.is_none() {
            return Err(MemberError::NoView);
        }
        // As in the plugin: a refresh during an agreement is already covered by it.
        if !self.pending {
            self.keys_in_view += 1;
            self.pending = true;
            self.checker.set_epoch(self.agreeing_epoch());
        }
        self.session.handle_refresh(now_ms)?;
        self.drain_session();
        Ok(())
    }

    fn drain_session(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Broadcast(payload) => {
                    self.seal(Kind::Protocol, None, self.agreeing_epoch(), payload)
                }
                Output::Unicast { to, payload } => {
                    self.seal(Kind::Protocol, Some(to), self.agreeing_epoch(), payload)
                }
                Output::Key(key) => {
                    self.events.push_back(MemberEvent::Key {
                        epoch: key.epoch,
                        fingerprint: key.fingerprint(),
                    });
                    self.keys.push_back(key);
                    self.pending = false;
                    while self.keys.len() > KEPT_KEYS {
                        self.keys.pop_front();
                    }
                }
                // A future output kind this host cannot act on.
                _ => {}
            }
        }
    }

    fn seal(&mut self, kind: Kind, to: Option<String>, epoch: u64, body: Vec<u8>) {
        let Some(view) = &self.view else { return };
        self.seq += 1;
        let header = Header {
            group: self.group.clone(),
            view_id: view.view_id,
            epoch,
            kind,
            protocol: self.protocol.clone(),
            sender: self.identity.id().to_owned(),
            seq: self.seq,
        };
        let view_id = view.view_id;
        let bytes = Envelope::seal(&self.identity, header, body).to_bytes();
        self.outgoing.push_back(Outgoing { view_id, to, bytes });
    }

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

    /// Encrypts `plaintext` under the newest key and queues it for every member of the view.
    pub fn send_data(&mut self, plaintext: &[u8]) -> Result<(), MemberError> {
        let view = self.view.as_ref().ok_or(MemberError::NoView)?;
        let key = self.keys.back().ok_or(MemberError::NoKey)?;
        let header = Header {
            group: self.group.clone(),
            view_id: view.view_id,
            epoch: key.epoch,
            kind: Kind::Data,
            protocol: self.protocol.clone(),
            sender: self.identity.id().to_owned(),
            seq: self.seq + 1,
        };
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.key.as_ref()));
        let aad = Self::data_aad(&header);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| MemberError::NoKey)?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&ct);
        self.seq += 1;
        let view_id = header.view_id;
        let bytes = Envelope::seal(&self.identity, header, body).to_bytes();
        self.outgoing.push_back(Outgoing { view_id, to: None, bytes });
        Ok(())
    }

    fn decrypt(&mut self, envelope: &Envelope) {
        let h = &envelope.header;
        let undecryptable = |reason: &str| MemberEvent::Undecryptable {
            from: h.sender.clone(),
            epoch: h.epoch,
            reason: reason.to_owned(),
        };
        let Some(key) = self.keys.iter().find(|k| k.epoch == h.epoch) else {
            self.events.push_back(undecryptable("no key for that epoch (unknown or expired)"));
            return;
        };
        if envelope.body.len() < NONCE_LEN {
            self.events.push_back(undecryptable("too short"));
            return;
        }
        let (nonce, ct) = envelope.body.split_at(NONCE_LEN);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.key.as_ref()));
        let aad = Self::data_aad(h);
        match cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }) {
            Ok(plaintext) => self.events.push_back(MemberEvent::Data {
                from: h.sender.clone(),
                epoch: h.epoch,
                plaintext,
            }),
            Err(_) => self.events.push_back(undecryptable("does not authenticate")),
        }
    }

    /// The next envelope to hand to the group layer.
    pub fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.outgoing.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use gka_plugin_api::{Counters, Output, SessionError};

    use super::*;
    use crate::identity::{Scheme, TrustStore};

    /// A session that only records the payloads it is given.
    #[derive(Default)]
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Session for Recorder {
        fn handle_view(&mut self, _: u64, _: &View) -> Result<(), SessionError> {
            Ok(())
        }
        fn handle_payload(&mut self, _: u64, _: &str, p: &[u8]) -> Result<(), SessionError> {
            self.0.lock().unwrap().push(p.to_vec());
            Ok(())
        }
        fn handle_refresh(&mut self, _: u64) -> Result<(), SessionError> {
            Ok(())
        }
        fn poll_output(&mut self) -> Option<Output> {
            None
        }
        fn counters(&self) -> Counters {
            Counters::default()
        }
    }

    #[test]
    fn envelopes_of_another_protocol_and_control_envelopes_are_reported_not_passed_on() {
        let me = Identity::generate("me", Scheme::Ed25519).unwrap();
        let peer = Identity::generate("peer", Scheme::Ed25519).unwrap();
        let mut trust = TrustStore::default();
        trust.insert("me", me.public().clone());
        trust.insert("peer", peer.public().clone());
        let seen = Recorder::default();
        let log = seen.0.clone();
        let mut core = MemberCore::new(
            me,
            "g",
            "tgdh@0.1.0",
            Box::new(seen),
            EnvelopeChecker::new("g", trust),
        );
        let view = View {
            view_id: 1,
            members: vec!["me".into(), "peer".into()],
            joined: vec![],
            left: vec![],
        };
        core.handle_delivery(0, Delivery::View(view)).unwrap();
        let header = |protocol: &str, kind: Kind, seq: u64| Header {
            group: "g".into(),
            view_id: 1,
            epoch: epoch_of(1, 0),
            kind,
            protocol: protocol.into(),
            sender: "peer".into(),
            seq,
        };
        let send = |core: &mut MemberCore, h: Header| {
            let bytes = Envelope::seal(&peer, h, b"x".to_vec()).to_bytes();
            core.handle_delivery(0, Delivery::Message { from: "peer".into(), view_id: 1, bytes })
                .unwrap();
        };
        send(&mut core, header("bd@0.1.0", Kind::Protocol, 1));
        send(&mut core, header("tgdh@0.1.0", Kind::Control, 2));
        send(&mut core, header("tgdh@0.1.0", Kind::Protocol, 3));
        assert_eq!(
            log.lock().unwrap().len(),
            1,
            "only the matching protocol envelope reaches the plugin"
        );
        let errors: Vec<String> = std::iter::from_fn(|| core.poll_event())
            .filter_map(|e| {
                if let MemberEvent::ProtocolError { error, .. } = e {
                    Some(error)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("protocol bd@0.1.0"));
        assert!(errors[1].contains("control envelopes"));
    }
}
