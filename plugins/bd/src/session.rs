//! The BD session state machine.

use gka_plugin_api::{
    unexpected, Agreement, Bytes, Context, Element, Secret, SessionError, View, ViewChange,
};
use serde::{Deserialize, Serialize};

/// BD's messages (each sealed with view id and epoch by the session core).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BdMsg {
    /// Round 1: z_i = g^(r_i), fixed-length big-endian.
    Z(Bytes),
    /// Round 2: X_i = (z_(i+1) / z_(i-1))^(r_i).
    X(Bytes),
}

/// One run of the protocol in one view (every event restarts it).
#[derive(Debug)]
struct Run {
    ring: Vec<String>,
    me: usize,
    r: Secret,
    z: Vec<Option<Element>>,
    x: Vec<Option<Element>>,
    sent_x: bool,
    done: bool,
}

impl Run {
    fn n(&self) -> usize {
        self.ring.len()
    }

    fn left(&self) -> usize {
        (self.me + self.n() - 1) % self.n()
    }

    fn right(&self) -> usize {
        (self.me + 1) % self.n()
    }

    fn index_of(&self, member: &str) -> Result<usize, SessionError> {
        self.ring
            .iter()
            .position(|m| m == member)
            .ok_or_else(|| SessionError::NotAMember(member.to_owned()))
    }
}

/// One member's BD run (every event restarts it; BD keeps nothing between agreements).
#[derive(Debug, Default)]
pub(crate) struct BdRun {
    run: Option<Run>,
}

type Cx = Context<()>;

impl BdRun {
    fn start(&mut self, cx: &mut Cx, view: &View) -> Result<(), SessionError> {
        let core = &mut cx.core;
        let me = view.members.iter().position(|m| m == core.me()).unwrap_or(0);
        let r = core.dh.random_exponent(&mut core.rng);
        let z_me = core.dh.blind(&r);
        let n = view.members.len();
        let mut z = vec![None; n];
        let z_bytes = core.dh.encode(&z_me);
        if n == 1 {
            // Alone: nothing to send, nothing to wait for.
            z[me] = Some(z_me);
        }
        self.run = Some(Run {
            ring: view.members.clone(),
            me,
            r,
            z,
            x: vec![None; n],
            sent_x: false,
            done: false,
        });
        if n > 1 {
            core.broadcast(&BdMsg::Z(z_bytes.into()))?;
        }
        self.advance(cx)
    }

    /// Sends X and computes the key as soon as the inputs are there.
    fn advance(&mut self, cx: &mut Cx) -> Result<(), SessionError> {
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        if run.done {
            return Ok(());
        }
        let dh = &cx.core.dh;
        let n = run.n();
        if n <= 2 {
            // Complete once every z, this member's included, has been delivered.
            if run.z.iter().any(Option::is_none) {
                return Ok(());
            }
            let z_other = run.z[run.left()].as_ref().expect("all z present");
            // n = 1: K = z^r; n = 2: K = z_other^(2r).
            let exponent = Secret::from_biguint(run.r.value() * (n as u32));
            let key = dh.pow(z_other, &exponent);
            run.done = true;
            let secret = dh.encode(&key);
            return cx.commit((), &secret);
        }
        if !run.sent_x {
            let (Some(zl), Some(zr)) = (run.z[run.left()].as_ref(), run.z[run.right()].as_ref())
            else {
                return Ok(());
            };
            let ratio = dh.mul(zr, &dh.invert(zl));
            let x_me = dh.pow(&ratio, &run.r);
            let bytes = dh.encode(&x_me);
            // x[me] is filled when the group delivers this X back.
            run.sent_x = true;
            cx.core.broadcast(&BdMsg::X(bytes.into()))?;
            return self.advance(cx);
        }
        // Complete once every X, this member's included, has been delivered.
        if run.x.iter().any(Option::is_none) {
            return Ok(());
        }
        let Some(zl) = run.z[run.left()].as_ref() else {
            return Ok(());
        };
        let exponent = Secret::from_biguint(run.r.value() * (n as u32));
        let mut key = dh.pow(zl, &exponent);
        // Π_(k=0..n-2) X_(i+k)^(n-1-k) as the product of the prefix products.
        let mut prefix: Option<Element> = None;
        for k in 0..n - 1 {
            let xk = run.x[(run.me + k) % n].as_ref().expect("all X present");
            let next = match prefix {
                None => xk.clone(),
                Some(p) => dh.mul(&p, xk),
            };
            key = dh.mul(&key, &next);
            prefix = Some(next);
        }
        run.done = true;
        let secret = dh.encode(&key);
        cx.commit((), &secret)
    }
}

impl Agreement for BdRun {
    type Agreed = ();
    type Message = BdMsg;

    fn on_whole_view(&mut self, cx: &mut Cx, _agreed: (), view: &View) -> Result<(), SessionError> {
        self.start(cx, view)
    }

    fn on_merge(
        &mut self,
        cx: &mut Cx,
        change: &ViewChange,
        _: Option<()>,
    ) -> Result<(), SessionError> {
        self.start(cx, &change.view)
    }

    fn on_message(&mut self, cx: &mut Cx, from: &str, msg: BdMsg) -> Result<(), SessionError> {
        let run =
            self.run.as_mut().ok_or_else(|| unexpected(format!("{from:?} sent outside a run")))?;
        let i = run.index_of(from)?;
        match msg {
            BdMsg::Z(bytes) => {
                if run.z[i].is_some() {
                    return Err(SessionError::Unexpected(format!("second z from {from:?}")));
                }
                let z = cx.core.dh.decode(&bytes)?;
                // Equal z values would make a neighbour's X the identity, which every member
                // refuses: blame the sender of the copy instead of the honest neighbour.
                if run.z.iter().flatten().any(|other| *other == z) {
                    return Err(SessionError::Unexpected(format!(
                        "z from {from:?} repeats another"
                    )));
                }
                run.z[i] = Some(z);
            }
            BdMsg::X(bytes) => {
                if run.n() <= 2 || run.x[i].is_some() {
                    return Err(SessionError::Unexpected(format!("unexpected X from {from:?}")));
                }
                run.x[i] = Some(cx.core.dh.decode(&bytes)?);
            }
        }
        self.advance(cx)
    }
}
