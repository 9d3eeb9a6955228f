//! The CKD session state machine.

use std::collections::{BTreeMap, BTreeSet};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use gka_plugin_api::kdf::derive_subkey;
use gka_plugin_api::rand_core::RngCore;
use gka_plugin_api::{
    Agreement, Secret, SessionConfig, SessionCore, SessionError, View, ViewChange,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::NAME;

const WRAP_LABEL: &[u8] = b"gka ckd pairwise wrap v1";
const NONCE_LEN: usize = 12;

// `pub` (in a private module) only so that `Agreement`'s associated types can name it.
#[allow(unreachable_pub)]
/// CKD's messages.
#[derive(Debug, Serialize, Deserialize)]
pub enum CkdMsg {
    /// A member's g^B, unicast to the controller.
    Share(Vec<u8>),
    /// The controller's g^A and the group secret wrapped for each member.
    Key { ga: Vec<u8>, wrapped: Vec<(String, Vec<u8>)> },
}

type WrapKey = Zeroizing<[u8; 32]>;

// `pub` (in a private module) only so that `Agreement`'s associated types can name it.
#[allow(unreachable_pub)]
/// CKD state. The pairwise keys survive from one agreement to the next while the controller
/// stays; everything is dropped when this member starts afresh.
#[derive(Debug, Default)]
pub struct State {
    controller: String,
    /// Controller only: its share A and g^A.
    a: Option<(Secret, Vec<u8>)>,
    /// Controller: one wrapping key per member. Member: the one shared with the controller.
    pairwise: BTreeMap<String, WrapKey>,
    /// Controller only: members whose share it still waits for.
    awaiting: BTreeSet<String>,
    /// Member only: the share it sent and waits to use.
    my_b: Option<Secret>,
    /// Controller only: the group secret it broadcast, installed when the broadcast comes back.
    sent_secret: Option<Zeroizing<[u8; 32]>>,
}

/// One member's CKD session.
#[derive(Debug)]
pub struct CkdSession {
    core: SessionCore,
    state: State,
}

fn aad(view_id: u64, epoch: u64, member: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + member.len());
    v.extend_from_slice(&view_id.to_be_bytes());
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(member.as_bytes());
    v
}

impl CkdSession {
    /// A session for one member.
    pub fn new(config: SessionConfig) -> Result<Self, SessionError> {
        Ok(Self { core: SessionCore::new(NAME, config)?, state: State::default() })
    }

    fn is_controller(&self) -> bool {
        self.state.controller == self.core.me()
    }

    fn wrap_key(&self, pairwise_secret: &gka_plugin_api::Element) -> WrapKey {
        derive_subkey(&self.core.dh.encode(pairwise_secret), WRAP_LABEL)
    }

    /// Pairwise keys survive only while the controller (the oldest member) stays and this
    /// member's side kept its agreed state.
    fn on_view(&mut self, kept: Option<State>, view: &View) -> Result<(), SessionError> {
        let controller = view.members[0].clone();
        self.state = match kept {
            Some(mut state) if state.controller == controller => {
                state.pairwise.retain(|m, _| view.members.contains(m));
                state.awaiting.clear();
                state.my_b = None;
                state.sent_secret = None;
                state
            }
            _ => State { controller, ..State::default() },
        };
        self.start()
    }

    fn start(&mut self) -> Result<(), SessionError> {
        let members = self.core.view()?.members.clone();
        if self.is_controller() {
            self.state.awaiting = members
                .iter()
                .filter(|m| *m != self.core.me() && !self.state.pairwise.contains_key(*m))
                .cloned()
                .collect();
            if self.state.awaiting.is_empty() {
                self.distribute()?;
            } else {
                self.ensure_controller_share();
            }
        } else if !self.state.pairwise.contains_key(&self.state.controller) {
            let b = self.core.dh.random_exponent(&mut self.core.rng);
            let gb = self.core.dh.encode(&self.core.dh.blind(&b));
            self.state.my_b = Some(b);
            let controller = self.state.controller.clone();
            self.core.unicast(&controller, &CkdMsg::Share(gb))?;
        }
        Ok(())
    }

    fn ensure_controller_share(&mut self) {
        if self.state.a.is_none() {
            let a = self.core.dh.random_exponent(&mut self.core.rng);
            let ga = self.core.dh.encode(&self.core.dh.blind(&a));
            self.state.a = Some((a, ga));
        }
    }

    /// Controller: draws a fresh group secret, wraps it for every member and installs it.
    fn distribute(&mut self) -> Result<(), SessionError> {
        let view = self.core.view()?.clone();
        let epoch = self.core.epoch();
        let mut secret = Zeroizing::new([0u8; 32]);
        self.core.rng.fill_bytes(secret.as_mut());
        if view.members.len() > 1 {
            self.ensure_controller_share();
            let mut wrapped = Vec::new();
            let me = self.core.me().to_owned();
            for m in view.members.iter().filter(|m| **m != me) {
                let key = self.state.pairwise.get(m).ok_or_else(|| {
                    SessionError::Unexpected(format!("no pairwise key with {m:?}"))
                })?;
                let mut nonce = [0u8; NONCE_LEN];
                self.core.rng.fill_bytes(&mut nonce);
                let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
                let aad = aad(view.view_id, epoch, m);
                let ct = cipher
                    .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.as_ref(), aad: &aad })
                    .map_err(|_| SessionError::Unexpected("key wrapping failed".into()))?;
                let mut entry = nonce.to_vec();
                entry.extend_from_slice(&ct);
                wrapped.push((m.clone(), entry));
            }
            let ga = self.state.a.as_ref().map(|(_, ga)| ga.clone()).unwrap_or_default();
            self.core.broadcast(&CkdMsg::Key { ga, wrapped })?;
            // Installed when the group delivers the broadcast back, as at every member.
            self.state.sent_secret = Some(secret);
            return Ok(());
        }
        self.core.install_key(secret.as_ref())
    }

    fn on_share(&mut self, from: &str, gb: &[u8]) -> Result<(), SessionError> {
        if !self.is_controller() || !self.state.awaiting.contains(from) {
            return Err(SessionError::Unexpected(format!("share from {from:?} not awaited")));
        }
        let gb = self.core.dh.decode(gb)?;
        self.ensure_controller_share();
        let (a, _) = self.state.a.as_ref().expect("controller share exists");
        let shared = self.core.dh.pow(&gb, a);
        let key = self.wrap_key(&shared);
        self.state.pairwise.insert(from.to_owned(), key);
        self.state.awaiting.remove(from);
        if self.state.awaiting.is_empty() {
            self.distribute()?;
        }
        Ok(())
    }

    fn on_key(
        &mut self,
        from: &str,
        ga: &[u8],
        wrapped: &[(String, Vec<u8>)],
    ) -> Result<(), SessionError> {
        if from != self.state.controller || !self.core.agreement_pending() {
            return Err(SessionError::Unexpected(format!("key message from {from:?}")));
        }
        if self.is_controller() {
            let secret = self.state.sent_secret.take().ok_or_else(|| {
                SessionError::Unexpected("own key message without a secret".into())
            })?;
            return self.core.install_key(secret.as_ref());
        }
        let me = self.core.me().to_owned();
        let entry = wrapped
            .iter()
            .find(|(m, _)| *m == me)
            .map(|(_, e)| e)
            .ok_or_else(|| SessionError::Unexpected("no wrapped key for this member".into()))?;
        if entry.len() < NONCE_LEN {
            return Err(SessionError::Unexpected("wrapped key too short".into()));
        }
        // Use the stored pairwise key, or derive it from the share sent in this run.
        let derived;
        let key = match (self.state.pairwise.get(from), &self.state.my_b) {
            (Some(k), _) => k,
            (None, Some(b)) => {
                let ga = self.core.dh.decode(ga)?;
                derived = self.wrap_key(&self.core.dh.pow(&ga, b));
                &derived
            }
            (None, None) => return Err(SessionError::Unexpected("no pairwise key".into())),
        };
        let view_id = self.core.view()?.view_id;
        let aad = aad(view_id, self.core.epoch(), &me);
        let (nonce, ct) = entry.split_at(NONCE_LEN);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
        let secret = Zeroizing::new(
            cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }).map_err(
                |_| SessionError::Unexpected("wrapped key does not authenticate".into()),
            )?,
        );
        if secret.len() != 32 {
            return Err(SessionError::Unexpected("wrapped secret is not 32 bytes".into()));
        }
        if !self.state.pairwise.contains_key(from) {
            let key = key.clone();
            self.state.pairwise.insert(from.to_owned(), key);
            self.state.my_b = None;
        }
        self.core.install_key(&secret)
    }
}

impl Agreement for CkdSession {
    type Agreed = State;
    type Message = CkdMsg;

    fn core(&self) -> &SessionCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut SessionCore {
        &mut self.core
    }

    fn take_agreed(&mut self) -> Option<State> {
        Some(std::mem::take(&mut self.state))
    }

    fn reset_run(&mut self) {}

    fn on_whole_view(&mut self, agreed: State, view: &View) -> Result<(), SessionError> {
        self.on_view(Some(agreed), view)
    }

    fn on_merge(&mut self, change: &ViewChange, kept: Option<State>) -> Result<(), SessionError> {
        self.on_view(kept, &change.view)
    }

    fn on_message(&mut self, from: &str, msg: CkdMsg) -> Result<(), SessionError> {
        match msg {
            CkdMsg::Share(gb) => self.on_share(from, &gb),
            CkdMsg::Key { ga, wrapped } => self.on_key(from, &ga, &wrapped),
        }
    }

    fn on_refresh(&mut self) -> Result<(), SessionError> {
        if self.is_controller() {
            self.distribute()?;
        }
        Ok(())
    }
}
