//! The template's protocol, a star: replace it with yours (keep the shape: an [`Agreement`] on
//! the state of one run, and a cost model).
//!
//! The oldest member of the view (the hub) draws a fresh 32-byte secret for every agreement.
//! Every other member unicasts g^b to it; once it holds them all, the hub installs the secret
//! and unicasts it to each member, wrapped (XOR) under HKDF of their pairwise g^(ab) (a fresh
//! one-time pad per agreement), in view order. So the hub completes first and each member at
//! its own unicast, with other messages ordered in between: the agreement ends on unicasts,
//! which the SDK's refresh and completion contract covers (see `gka_plugin_api`'s crate docs).
//! Nothing is kept from one agreement to the next. The wrapped secret has no integrity of its
//! own: the host's signed envelopes carry it, and key confirmation catches a wrong key.

use gka_plugin_api::kdf::derive_subkey;
use gka_plugin_api::rand_core::RngCore;
use gka_plugin_api::{
    unexpected, Agreement, Context, CostFigures, EventKind, Secret, SessionError, View, ViewChange,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const WRAP_LABEL: &[u8] = b"gka star test wrap v1";

/// The star protocol's messages.
#[derive(Debug, Serialize, Deserialize)]
pub enum StarMsg {
    /// A member's g^b, to the hub.
    Share(Vec<u8>),
    /// The hub's g^a and the secret XOR the member's pairwise wrapping key.
    Key {
        /// g^a.
        ga: Vec<u8>,
        /// The wrapped secret.
        wrapped: [u8; 32],
    },
}

/// One run of the star protocol.
#[derive(Debug, Default)]
pub struct StarRun {
    /// The hub's exponent and g^a.
    hub: Option<(Secret, Vec<u8>)>,
    /// Hub: the shares received, by member.
    shares: Vec<(String, Vec<u8>)>,
    /// Member: its exponent, until the key arrives.
    mine: Option<Secret>,
}

type Cx = Context<()>;

impl StarRun {
    fn start(&mut self, cx: &mut Cx) -> Result<(), SessionError> {
        let view = cx.core.view()?.clone();
        let me = cx.core.me().to_owned();
        if view.members[0] == me {
            if view.members.len() == 1 {
                let mut secret = Zeroizing::new([0u8; 32]);
                cx.core.rng.fill_bytes(secret.as_mut());
                return cx.commit((), secret.as_ref());
            }
            let a = cx.core.dh.random_exponent(&mut cx.core.rng);
            let ga = cx.core.dh.encode(&cx.core.dh.blind(&a));
            self.hub = Some((a, ga));
        } else {
            let b = cx.core.dh.random_exponent(&mut cx.core.rng);
            let gb = cx.core.dh.encode(&cx.core.dh.blind(&b));
            self.mine = Some(b);
            cx.core.unicast(&view.members[0], &StarMsg::Share(gb))?;
        }
        Ok(())
    }

    fn on_share(&mut self, cx: &mut Cx, from: &str, gb: Vec<u8>) -> Result<(), SessionError> {
        let view = cx.core.view()?.clone();
        let Some((a, ga)) = &self.hub else { return Err(unexpected("a share at a member")) };
        if from == view.members[0] || self.shares.iter().any(|(m, _)| m == from) {
            return Err(unexpected(format!("share from {from:?} not awaited")));
        }
        let pairwise = cx.core.dh.pow(&cx.core.dh.decode(&gb)?, a);
        let wrap = derive_subkey(&cx.core.dh.encode(&pairwise), WRAP_LABEL);
        self.shares.push((from.to_owned(), wrap.to_vec()));
        if self.shares.len() + 1 < view.members.len() {
            return Ok(());
        }
        let ga = ga.clone();
        let mut secret = Zeroizing::new([0u8; 32]);
        cx.core.rng.fill_bytes(secret.as_mut());
        for m in &view.members[1..] {
            let wrap = &self.shares.iter().find(|(s, _)| s == m).expect("every share is in").1;
            let mut wrapped = [0u8; 32];
            for (i, w) in wrapped.iter_mut().enumerate() {
                *w = secret[i] ^ wrap[i];
            }
            cx.core.unicast(m, &StarMsg::Key { ga: ga.clone(), wrapped })?;
        }
        cx.commit((), secret.as_ref())
    }

    fn on_key(
        &mut self,
        cx: &mut Cx,
        from: &str,
        ga: Vec<u8>,
        wrapped: [u8; 32],
    ) -> Result<(), SessionError> {
        if from != cx.core.view()?.members[0] {
            return Err(unexpected(format!("a key from {from:?}, not the hub")));
        }
        let b = self.mine.take().ok_or_else(|| unexpected("a key not awaited"))?;
        let pairwise = cx.core.dh.pow(&cx.core.dh.decode(&ga)?, &b);
        let wrap = derive_subkey(&cx.core.dh.encode(&pairwise), WRAP_LABEL);
        let mut secret = Zeroizing::new([0u8; 32]);
        for (i, s) in secret.iter_mut().enumerate() {
            *s = wrapped[i] ^ wrap[i];
        }
        cx.commit((), secret.as_ref())
    }
}

impl Agreement for StarRun {
    type Agreed = ();
    type Message = StarMsg;

    fn on_whole_view(&mut self, cx: &mut Cx, _: (), _: &View) -> Result<(), SessionError> {
        self.start(cx)
    }

    fn on_merge(&mut self, cx: &mut Cx, _: &ViewChange, _: Option<()>) -> Result<(), SessionError> {
        self.start(cx)
    }

    fn on_message(&mut self, cx: &mut Cx, from: &str, msg: StarMsg) -> Result<(), SessionError> {
        match msg {
            StarMsg::Share(gb) => self.on_share(cx, from, gb),
            StarMsg::Key { ga, wrapped } => self.on_key(cx, from, ga, wrapped),
        }
    }
}

/// The members after `event` on `n` members (`k` joining or leaving).
fn size_after(event: EventKind, n: u64, k: u64) -> u64 {
    match event {
        EventKind::Join => n + 1,
        EventKind::Merge => n + k,
        EventKind::Leave => n.saturating_sub(1),
        EventKind::Partition => n.saturating_sub(k),
        _ => n,
    }
}

/// The star protocol's costs: two rounds of N - 1 unicasts each among the N members after the
/// event; a member blinds once and unwraps once, the hub blinds once and combines each share.
pub fn cost(event: EventKind, n: u64, k: u64) -> CostFigures {
    let others = size_after(event, n, k).saturating_sub(1);
    if others == 0 {
        return CostFigures::default();
    }
    CostFigures {
        rounds: 2,
        unicasts: 2 * others,
        broadcasts: 0,
        serial_exponentiations: others + 2,
        total_exponentiations: 3 * others + 1,
        signatures: others + 1,
        verifications: others + 1,
        bytes: 0,
    }
}
