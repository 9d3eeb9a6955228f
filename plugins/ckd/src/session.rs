//! The CKD session state machine.

use std::collections::{BTreeMap, BTreeSet};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use gka_plugin_api::kdf::derive_subkey;
use gka_plugin_api::rand_core::RngCore;
use gka_plugin_api::{Agreement, Bytes, Context, Secret, SessionError, View, ViewChange};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const WRAP_LABEL: &[u8] = b"gka ckd pairwise wrap v1";
const NONCE_LEN: usize = 12;

/// CKD's messages.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum CkdMsg {
    /// A member's g^B, unicast to the controller.
    Share(Bytes),
    /// The controller's g^A and the group secret wrapped for each member.
    Key { ga: Bytes, wrapped: Vec<(String, Bytes)> },
}

type WrapKey = Zeroizing<[u8; 32]>;

/// CKD state. The pairwise keys survive from one agreement to the next while the controller
/// stays; everything is dropped when this member starts afresh.
#[derive(Debug, Default)]
pub(crate) struct State {
    controller: String,
    /// Controller only: its share A and g^A.
    a: Option<(Secret, Vec<u8>)>,
    /// Controller: one wrapping key per member. Member: the one shared with the controller.
    pairwise: BTreeMap<String, WrapKey>,
    /// Controller only: members whose share it still waits for.
    awaiting: BTreeSet<String>,
    /// Member only: the share it sent and waits to use.
    my_b: Option<Secret>,
}

/// One member's CKD run: the state, taken over from the last agreement while the controller
/// stays.
#[derive(Debug, Default)]
pub(crate) struct CkdRun {
    state: State,
}

type Cx = Context<State>;

fn aad(view_id: u64, epoch: u64, member: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + member.len());
    v.extend_from_slice(&view_id.to_be_bytes());
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(member.as_bytes());
    v
}

fn wrap_key(cx: &Cx, pairwise_secret: &gka_plugin_api::Element) -> WrapKey {
    derive_subkey(&cx.core.dh.encode(pairwise_secret), WRAP_LABEL)
}

impl CkdRun {
    fn is_controller(&self, cx: &Cx) -> bool {
        self.state.controller == cx.core.me()
    }

    /// Pairwise keys survive only while the controller (the oldest member) stays and this
    /// member's side kept its agreed state.
    fn on_view(
        &mut self,
        cx: &mut Cx,
        kept: Option<State>,
        view: &View,
    ) -> Result<(), SessionError> {
        let controller = view.members[0].clone();
        self.state = match kept {
            Some(mut state) if state.controller == controller => {
                state.pairwise.retain(|m, _| view.members.contains(m));
                state.awaiting.clear();
                state.my_b = None;
                state
            }
            _ => State { controller, ..State::default() },
        };
        self.start(cx)
    }

    fn start(&mut self, cx: &mut Cx) -> Result<(), SessionError> {
        let members = cx.core.view()?.members.clone();
        if self.is_controller(cx) {
            self.state.awaiting = members
                .iter()
                .filter(|m| *m != cx.core.me() && !self.state.pairwise.contains_key(*m))
                .cloned()
                .collect();
            if self.state.awaiting.is_empty() {
                self.distribute(cx)?;
            } else {
                self.ensure_controller_share(cx);
            }
        } else if !self.state.pairwise.contains_key(&self.state.controller) {
            let b = cx.core.dh.random_exponent(&mut cx.core.rng);
            let gb = cx.core.dh.encode(&cx.core.dh.blind(&b));
            self.state.my_b = Some(b);
            let controller = self.state.controller.clone();
            cx.core.unicast(&controller, &CkdMsg::Share(gb.into()))?;
        }
        Ok(())
    }

    fn ensure_controller_share(&mut self, cx: &mut Cx) {
        if self.state.a.is_none() {
            let a = cx.core.dh.random_exponent(&mut cx.core.rng);
            let ga = cx.core.dh.encode(&cx.core.dh.blind(&a));
            self.state.a = Some((a, ga));
        }
    }

    /// Controller: draws a fresh group secret, wraps it for every member and installs it.
    fn distribute(&mut self, cx: &mut Cx) -> Result<(), SessionError> {
        let view = cx.core.view()?.clone();
        let epoch = cx.core.epoch();
        let mut secret = Zeroizing::new([0u8; 32]);
        cx.core.rng.fill_bytes(secret.as_mut());
        if view.members.len() > 1 {
            self.ensure_controller_share(cx);
            let mut wrapped = Vec::new();
            let me = cx.core.me().to_owned();
            for m in view.members.iter().filter(|m| **m != me) {
                let key = self.state.pairwise.get(m).ok_or_else(|| {
                    SessionError::Unexpected(format!("no pairwise key with {m:?}"))
                })?;
                let mut nonce = [0u8; NONCE_LEN];
                cx.core.rng.fill_bytes(&mut nonce);
                let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
                let aad = aad(view.view_id, epoch, m);
                let ct = cipher
                    .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.as_ref(), aad: &aad })
                    .map_err(|_| SessionError::Unexpected("key wrapping failed".into()))?;
                let mut entry = nonce.to_vec();
                entry.extend_from_slice(&ct);
                wrapped.push((m.clone(), entry.into()));
            }
            let ga =
                self.state.a.as_ref().map(|(_, ga)| Bytes::from(ga.clone())).unwrap_or_default();
            let state = std::mem::take(&mut self.state);
            let secret = Zeroizing::new(secret.to_vec());
            return cx.broadcast_final(&CkdMsg::Key { ga, wrapped }, state, secret);
        }
        cx.commit(std::mem::take(&mut self.state), secret.as_ref())
    }

    fn on_share(&mut self, cx: &mut Cx, from: &str, gb: &[u8]) -> Result<(), SessionError> {
        if !self.is_controller(cx) || !self.state.awaiting.contains(from) {
            return Err(SessionError::Unexpected(format!("share from {from:?} not awaited")));
        }
        let gb = cx.core.dh.decode(gb)?;
        self.ensure_controller_share(cx);
        let (a, _) = self.state.a.as_ref().expect("controller share exists");
        let shared = cx.core.dh.pow(&gb, a);
        let key = wrap_key(cx, &shared);
        self.state.pairwise.insert(from.to_owned(), key);
        self.state.awaiting.remove(from);
        if self.state.awaiting.is_empty() {
            self.distribute(cx)?;
        }
        Ok(())
    }

    fn on_key(
        &mut self,
        cx: &mut Cx,
        from: &str,
        ga: &[u8],
        wrapped: &[(String, Bytes)],
    ) -> Result<(), SessionError> {
        if from != self.state.controller || !cx.core.agreement_pending() || self.is_controller(cx) {
            return Err(SessionError::Unexpected(format!("key message from {from:?}")));
        }
        let me = cx.core.me().to_owned();
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
                let ga = cx.core.dh.decode(ga)?;
                derived = wrap_key(cx, &cx.core.dh.pow(&ga, b));
                &derived
            }
            (None, None) => return Err(SessionError::Unexpected("no pairwise key".into())),
        };
        let view_id = cx.core.view()?.view_id;
        let aad = aad(view_id, cx.core.epoch(), &me);
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
        cx.commit(std::mem::take(&mut self.state), &secret)
    }
}

impl Agreement for CkdRun {
    type Agreed = State;
    type Message = CkdMsg;

    fn on_whole_view(
        &mut self,
        cx: &mut Cx,
        agreed: State,
        view: &View,
    ) -> Result<(), SessionError> {
        self.on_view(cx, Some(agreed), view)
    }

    fn on_merge(
        &mut self,
        cx: &mut Cx,
        change: &ViewChange,
        kept: Option<State>,
    ) -> Result<(), SessionError> {
        self.on_view(cx, kept, &change.view)
    }

    fn on_message(&mut self, cx: &mut Cx, from: &str, msg: CkdMsg) -> Result<(), SessionError> {
        match msg {
            CkdMsg::Share(gb) => self.on_share(cx, from, &gb),
            CkdMsg::Key { ga, wrapped } => self.on_key(cx, from, &ga, &wrapped),
        }
    }
}
