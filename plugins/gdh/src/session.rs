//! The GDH session state machine.

use std::collections::{BTreeMap, BTreeSet};

use gka_plugin_api::{
    unexpected, Agreement, Bytes, Context, Element, Secret, SessionCore, SessionError, View,
    ViewChange,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// GDH's messages.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum GdhMsg {
    /// The upflow token, unicast along the chain: the final member order and the running value.
    Upflow { order: Vec<String>, c: Bytes },
    /// The last chain member's broadcast of C = g^(Π_(j≠last) r_j).
    Final { order: Vec<String>, c: Bytes },
    /// A member's C^(r_i⁻¹), unicast to the controller.
    FactorOut(Bytes),
    /// The controller's partial keys for every other member.
    KeyList(Vec<(String, Bytes)>),
}

/// What a member keeps from its last completed agreement.
#[derive(Debug, Clone)]
pub(crate) struct Agreed {
    /// Member list in protocol order; the last one is the controller.
    order: Vec<String>,
    /// Every member's partial key P_i (published, so every member has them all).
    partials: BTreeMap<String, Element>,
    /// This member's share.
    r: Secret,
    /// Controller only: F_i = g^(Π_(j∉{i,c}) r_j) for every other member.
    factors: BTreeMap<String, Element>,
}

impl Agreed {
    fn controller(&self) -> &str {
        self.order.last().map_or("", String::as_str)
    }

    fn retain(&mut self, members: &[String]) {
        self.order.retain(|m| members.contains(m));
        self.partials.retain(|m, _| members.contains(m));
        self.factors.retain(|m, _| members.contains(m));
    }
}

/// Where a run stands.
#[derive(Debug, Default)]
enum Phase {
    /// No run (agreed, or before the first view).
    #[default]
    Idle,
    /// A new member waiting for the upflow token.
    WaitUpflow,
    /// Waiting for the last chain member's broadcast, holding the share in use.
    WaitFinal { r: Secret },
    /// The new controller collecting factor-outs.
    Collect { order: Vec<String>, c: Element, r: Secret, factors: BTreeMap<String, Element> },
    /// Waiting for the controller's partial keys.
    WaitKeyList { order: Vec<String>, r: Secret, controller_partial: Option<Element> },
}

/// One member's run: where it stands in the agreement under way.
#[derive(Debug, Default)]
pub(crate) struct GdhRun {
    phase: Phase,
}

type Cx = Context<Agreed>;

impl GdhRun {
    /// Installs the controller's key K = P_c^(r_c).
    fn commit_controller(&mut self, cx: &mut Cx, agreed: Agreed) -> Result<(), SessionError> {
        let secret = controller_secret(&cx.core, &agreed)?;
        cx.commit(agreed, &secret)
    }

    fn check_order(&self, cx: &Cx, order: &[String]) -> Result<(), SessionError> {
        let view = cx.core.view()?;
        if order.len() != view.members.len() {
            return Err(unexpected("member order does not match the view"));
        }
        let set: BTreeSet<&String> = order.iter().collect();
        let members: BTreeSet<&String> = view.members.iter().collect();
        if set.len() != order.len() || set != members {
            return Err(unexpected("member order does not match the view"));
        }
        Ok(())
    }

    fn on_upflow(
        &mut self,
        cx: &mut Cx,
        from: &str,
        order: Vec<String>,
        c: &[u8],
    ) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::WaitUpflow) {
            return Err(unexpected(format!("upflow from {from:?} not expected")));
        }
        // Phase first, then the (possibly large) order.
        self.check_order(cx, &order)?;
        let me = cx.core.me().to_owned();
        let k = order.iter().position(|m| *m == me).ok_or_else(|| unexpected("not in order"))?;
        if k == 0 || order[k - 1] != from {
            return Err(unexpected(format!("upflow from {from:?} out of chain order")));
        }
        let c = cx.core.dh.decode(c)?;
        let r = cx.core.dh.random_exponent(&mut cx.core.rng);
        if k + 1 == order.len() {
            let bytes = cx.core.dh.encode(&c);
            cx.core.broadcast(&GdhMsg::Final { order: order.clone(), c: bytes.into() })?;
            self.phase = Phase::Collect { order, c, r, factors: BTreeMap::new() };
        } else {
            let next = order[k + 1].clone();
            let bytes = cx.core.dh.encode(&cx.core.dh.pow(&c, &r));
            cx.core.unicast(&next, &GdhMsg::Upflow { order, c: bytes.into() })?;
            self.phase = Phase::WaitFinal { r };
        }
        Ok(())
    }

    fn on_final(
        &mut self,
        cx: &mut Cx,
        from: &str,
        order: Vec<String>,
        c: &[u8],
    ) -> Result<(), SessionError> {
        if from == cx.core.me() {
            // Our own broadcast came back: collection continues.
            return match self.phase {
                Phase::Collect { .. } => Ok(()),
                _ => Err(unexpected("own final broadcast in the wrong phase")),
            };
        }
        let Phase::WaitFinal { r } = &self.phase else {
            return Err(unexpected(format!("final broadcast from {from:?} not expected")));
        };
        let r = r.clone();
        self.check_order(cx, &order)?;
        if order.last().map(String::as_str) != Some(from) {
            return Err(unexpected(format!("final broadcast from non-controller {from:?}")));
        }
        let c = cx.core.dh.decode(c)?;
        let dh = &cx.core.dh;
        let factor_out = dh.pow(&c, &dh.invert_exponent(&r));
        let bytes = dh.encode(&factor_out);
        cx.core.unicast(from, &GdhMsg::FactorOut(bytes.into()))?;
        self.phase = Phase::WaitKeyList { order, r, controller_partial: Some(c) };
        Ok(())
    }

    fn on_factor_out(&mut self, cx: &mut Cx, from: &str, f: &[u8]) -> Result<(), SessionError> {
        let Phase::Collect { order, factors, .. } = &self.phase else {
            return Err(unexpected(format!("factor-out from {from:?} not expected")));
        };
        if !order.iter().any(|m| m == from) || factors.contains_key(from) {
            return Err(unexpected(format!("factor-out from {from:?} not awaited")));
        }
        let f = cx.core.dh.decode(f)?;
        let Phase::Collect { order, c, r, factors } = &mut self.phase else { unreachable!() };
        factors.insert(from.to_owned(), f);
        if factors.len() + 1 < order.len() {
            return Ok(());
        }
        let dh = &cx.core.dh;
        let me = cx.core.me().to_owned();
        let mut partials = BTreeMap::from([(me, c.clone())]);
        let mut list = Vec::new();
        for (m, f) in factors.iter() {
            let p = dh.pow(f, r);
            list.push((m.clone(), dh.encode(&p).into()));
            partials.insert(m.clone(), p);
        }
        let next = Agreed {
            order: order.clone(),
            partials,
            r: r.clone(),
            factors: std::mem::take(factors),
        };
        // Collection is over: a factor-out from now on is refused, as in any other phase.
        self.phase = Phase::Idle;
        cx.broadcast_final_with(&GdhMsg::KeyList(list), next, controller_secret)
    }

    fn on_key_list(
        &mut self,
        cx: &mut Cx,
        from: &str,
        list: &[(String, Bytes)],
    ) -> Result<(), SessionError> {
        let Phase::WaitKeyList { order, r, controller_partial } = &self.phase else {
            return Err(unexpected(format!("key list from {from:?} not expected")));
        };
        if order.last().map(String::as_str) != Some(from) {
            return Err(unexpected(format!("key list from non-controller {from:?}")));
        }
        let expected: BTreeSet<&String> = order.iter().filter(|m| *m != from).collect();
        let got: BTreeSet<&String> = list.iter().map(|(m, _)| m).collect();
        if got != expected || list.len() != expected.len() {
            return Err(unexpected("key list does not cover the members"));
        }
        let mut partials = BTreeMap::new();
        for (m, p) in list {
            partials.insert(m.clone(), cx.core.dh.decode(p)?);
        }
        // The controller's own partial key: from its final broadcast (merge) or unchanged.
        let controller_partial = match controller_partial {
            Some(p) => p.clone(),
            None => cx
                .agreed
                .as_ref()
                .and_then(|a| a.partials.get(from).cloned())
                .ok_or_else(|| unexpected("controller's partial key unknown"))?,
        };
        partials.insert(from.to_owned(), controller_partial);
        let me = cx.core.me().to_owned();
        let key = cx.core.dh.pow(&partials[&me], r);
        let secret = cx.core.dh.encode(&key);
        let agreed =
            Agreed { order: order.clone(), partials, r: r.clone(), factors: BTreeMap::new() };
        cx.commit(agreed, &secret)
    }
}

/// The controller's group secret K = P_c^(r_c), once its key list is delivered back.
fn controller_secret(
    core: &SessionCore,
    agreed: &Agreed,
) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    let partial = agreed.partials.get(core.me()).ok_or_else(|| unexpected("no own partial key"))?;
    let key = core.dh.pow(partial, &agreed.r);
    Ok(Zeroizing::new(core.dh.encode(&key)))
}

impl Agreement for GdhRun {
    type Agreed = Agreed;
    type Message = GdhMsg;

    /// Leave, partition or refresh: the controller refreshes its share.
    fn on_whole_view(
        &mut self,
        cx: &mut Cx,
        mut agreed: Agreed,
        _view: &View,
    ) -> Result<(), SessionError> {
        let members = cx.core.view()?.members.clone();
        agreed.retain(&members);
        let me = cx.core.me().to_owned();
        if agreed.controller() != me {
            let order = agreed.order.clone();
            let r = agreed.r.clone();
            cx.agreed = Some(agreed);
            self.phase = Phase::WaitKeyList { order, r, controller_partial: None };
            return Ok(());
        }
        let dh = &cx.core.dh;
        if agreed.factors.len() + 1 != agreed.order.len() {
            // A new controller: factor its share out of every published partial key.
            let inv = dh.invert_exponent(&agreed.r);
            agreed.factors = agreed
                .partials
                .iter()
                .filter(|(m, _)| **m != me)
                .map(|(m, p)| (m.clone(), dh.pow(p, &inv)))
                .collect();
        }
        let r = dh.random_exponent(&mut cx.core.rng);
        let mut list = Vec::new();
        for (m, f) in &agreed.factors {
            let p = dh.pow(f, &r);
            list.push((m.clone(), dh.encode(&p).into()));
            agreed.partials.insert(m.clone(), p);
        }
        agreed.r = r;
        if list.is_empty() {
            return self.commit_controller(cx, agreed);
        }
        cx.broadcast_final_with(&GdhMsg::KeyList(list), agreed, controller_secret)
    }

    /// Join, merge, initial agreement or any cascade: a merge into the oldest member's side.
    fn on_merge(
        &mut self,
        cx: &mut Cx,
        change: &ViewChange,
        kept: Option<Agreed>,
    ) -> Result<(), SessionError> {
        let view = &change.view;
        let me = cx.core.me().to_owned();
        if !change.side.contains(&view.members[0]) {
            self.phase = Phase::WaitUpflow;
            return Ok(());
        }
        let dh = &cx.core.dh;
        let (order, my_partial, my_r) = match kept {
            Some(mut agreed) => {
                agreed.retain(&change.side);
                let partial = agreed.partials.get(&me).cloned();
                (agreed.order, partial, Some(agreed.r))
            }
            None => (vec![me.clone()], Some(dh.generator()), None),
        };
        if order.last() != Some(&me) {
            let r = my_r.ok_or_else(|| unexpected("base member without a share"))?;
            self.phase = Phase::WaitFinal { r };
            return Ok(());
        }
        // The base controller starts the chain with a fresh share.
        let partial = my_partial.ok_or_else(|| unexpected("controller without a partial key"))?;
        let r = dh.random_exponent(&mut cx.core.rng);
        let newcomers: Vec<String> =
            view.members.iter().filter(|m| !change.side.contains(m)).cloned().collect();
        let Some(first) = newcomers.first().cloned() else {
            // Alone in the view.
            let agreed = Agreed {
                order: vec![me.clone()],
                partials: BTreeMap::from([(me, partial)]),
                r,
                factors: BTreeMap::new(),
            };
            return self.commit_controller(cx, agreed);
        };
        let c = dh.pow(&partial, &r);
        let mut chain = order;
        chain.extend(newcomers);
        let c = dh.encode(&c);
        cx.core.unicast(&first, &GdhMsg::Upflow { order: chain, c: c.into() })?;
        self.phase = Phase::WaitFinal { r };
        Ok(())
    }

    fn on_message(&mut self, cx: &mut Cx, from: &str, msg: GdhMsg) -> Result<(), SessionError> {
        match msg {
            GdhMsg::Upflow { order, c } => self.on_upflow(cx, from, order, &c),
            GdhMsg::Final { order, c } => self.on_final(cx, from, order, &c),
            GdhMsg::FactorOut(f) => self.on_factor_out(cx, from, &f),
            GdhMsg::KeyList(list) => self.on_key_list(cx, from, &list),
        }
    }
}
