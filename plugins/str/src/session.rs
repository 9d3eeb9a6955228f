//! The STR session state machine.

use std::collections::HashSet;
use std::sync::Arc;

use gka_plugin_api::shared::Registry;

use gka_plugin_api::{
    unexpected, Agreement, Bytes, Context, DecodedOnce, Dh, Element, Held, Remembered, Secret,
    SessionError, Sides, View, ViewChange,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::chain::{merge_order, sponsor_for};

/// Domain label for mapping node keys to exponents (docs/protocols.md §9.2).
const NODE_LABEL: &str = "gka str node key";

/// STR's messages.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum StrMsg {
    /// Round 1 of an additive event: a group's chain, bottom first. `valid` counts the bottom
    /// positions whose keys are unchanged since the group's last agreement. The chain is
    /// decoded once per process for all the members that receive it (see
    /// [`matches_shared_wire`]).
    Chain { slots: DecodedOnce<Vec<WireSlot>>, valid: u32 },
    /// The sponsor's update: its new blinded share (if it refreshed) and the blinded keys of
    /// the nodes from its position (or 1) up to just below the top.
    Update { br: Option<Bytes>, bks: Vec<Bytes> },
}

/// One chain position on the wire.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireSlot {
    member: String,
    br: Bytes,
    /// The node's blinded key, when known and valid (never for position 0 or the top).
    bk: Option<Bytes>,
}

/// One position of the chain: member M_i's leaf and the internal node IN_i above it. Public,
/// and shared between the members of this process that hold an equal one (see [`share_slot`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Slot {
    member: String,
    /// g^(r_i), validated when this member first computes with it (see [`Held`]).
    br: Held,
    /// g^(x_i), the blinded key of IN_i (i ≥ 1), when published; validated likewise.
    bk: Option<Held>,
}

/// The chain positions alive in this process: a simulation's thousands of members each hold
/// the whole chain, and one copy of each position serves them all.
static SLOTS: Registry<Slot> = Registry::new();

/// The live slot equal to `slot`, or `slot` itself, registered.
fn share_slot(slot: Slot) -> Arc<Slot> {
    let slot = Arc::new(slot);
    let key = Arc::clone(&slot);
    SLOTS.intern(&*key, slot, |held, new| held == new)
}

/// The chain and this member's private knowledge of it.
#[derive(Debug, Clone)]
pub(crate) struct Agreed {
    slots: Vec<Arc<Slot>>,
    /// This member's share.
    r: Secret,
    /// x_i for the positions this member knows (its own and those above it), else None.
    x: Vec<Option<Secret>>,
}

impl Agreed {
    /// Changes position i (in a copy: the slot may be shared).
    fn update_slot(&mut self, i: usize, change: impl FnOnce(&mut Slot)) {
        let mut slot = Slot::clone(&self.slots[i]);
        change(&mut slot);
        self.slots[i] = share_slot(slot);
    }

    fn position(&self, member: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.member == member)
    }

    /// The published blinded key of the node at position i (bk_0 is br_0), validated.
    fn bk(&self, dh: &Dh, i: usize) -> Result<Element, SessionError> {
        let held = if i == 0 { Some(&self.slots[0].br) } else { self.slots[i].bk.as_ref() };
        let held = held.ok_or_else(|| unexpected(format!("no blinded key at position {i}")))?;
        Ok(dh.check(held)?.clone())
    }

    /// g^(r_i), validated.
    fn br(&self, dh: &Dh, i: usize) -> Result<Element, SessionError> {
        Ok(dh.check(&self.slots[i].br)?.clone())
    }

    /// Keeps the members `stays` accepts; returns how many bottom positions kept their keys.
    fn retain(&mut self, stays: &dyn Fn(&str) -> bool) -> usize {
        let keep: Vec<bool> = self.slots.iter().map(|s| stays(&s.member)).collect();
        let first_removed = keep.iter().position(|&kept| !kept);
        let mut i = 0;
        self.slots.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut i = 0;
        self.x.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let valid = first_removed.unwrap_or(self.slots.len()).max(1).min(self.slots.len());
        self.invalidate_from(valid);
        valid
    }

    /// Forgets keys and published blinded keys from position `from` up.
    fn invalidate_from(&mut self, from: usize) {
        for i in from..self.slots.len() {
            if self.slots[i].bk.is_some() {
                self.update_slot(i, |slot| slot.bk = None);
            }
            self.x[i] = None;
        }
    }
}

/// Where a run stands.
#[derive(Debug, Default)]
enum Phase {
    #[default]
    Idle,
    /// Round 1: collecting every group's chain.
    Collect {
        /// This member's group chain (with its private keys).
        mine: Agreed,
        /// How many bottom positions of it kept their keys.
        mine_valid: usize,
        /// Whether this member's group kept an agreed state (its sponsor then refreshes).
        kept: bool,
        /// Chains received, with their `valid` counts.
        chains: Sides<(Vec<Arc<Slot>>, usize)>,
    },
    /// Waiting for the sponsor's update of the merged chain.
    WaitUpdate { chain: Agreed, sponsor: usize },
}

/// One member's run: where it stands in the agreement under way.
#[derive(Debug, Default)]
pub(crate) struct StrRun {
    phase: Phase,
}

type Cx = Context<Agreed>;

/// x_i of the node above `below` (x_(i-1)) and leaf `br`: H(br^(x_(i-1))).
fn node_exponent(dh: &Dh, br: &Element, x_below: &Secret) -> (Element, Secret) {
    let k = dh.pow(br, x_below);
    let x = dh.element_to_exponent(NODE_LABEL, &k);
    (k, x)
}

/// True if `wire` is exactly `slots`' wire form: the same members, blinded shares and
/// published blinded keys (none at position 0). Unlike comparing with [`StrRun::wire`], it
/// encodes nothing.
fn matches_wire(dh: &Dh, slots: &[Arc<Slot>], wire: &[WireSlot]) -> bool {
    slots.len() == wire.len()
        && slots.iter().zip(wire).enumerate().all(|(i, (s, w))| {
            let bk = match (s.bk.as_ref().filter(|_| i > 0), &w.bk) {
                (None, None) => true,
                (Some(mine), Some(theirs)) => dh.encodes(theirs, mine),
                _ => false,
            };
            s.member == w.member && dh.encodes(&w.br, &s.br) && bk
        })
}

/// The chains found equal to a broadcast chain, each as its shared positions (at most
/// [`CHAINS_REMEMBERED`] per broadcast).
static CHECKED: Remembered<Vec<WireSlot>, Vec<Vec<Arc<Slot>>>> = Remembered::new();

/// Distinct copies of one chain remembered per broadcast chain: the members of a group hold
/// the same shared positions, so one is the usual count.
const CHAINS_REMEMBERED: usize = 4;

/// [`matches_wire`] for a broadcast chain shared by the members of this process that
/// received it: a member whose positions are the very ones another member's check found
/// equal compares n addresses, not n positions' contents.
fn matches_shared_wire(dh: &Dh, slots: &[Arc<Slot>], wire: &Arc<Vec<WireSlot>>) -> bool {
    CHECKED.with(wire, dh.group().id(), |known| {
        let same_slots = |chain: &Vec<Arc<Slot>>| {
            chain.len() == slots.len() && chain.iter().zip(slots).all(|(a, b)| Arc::ptr_eq(a, b))
        };
        if known.iter().any(same_slots) {
            return true;
        }
        let same = matches_wire(dh, slots, wire);
        if same && known.len() < CHAINS_REMEMBERED {
            known.push(slots.to_vec());
        }
        same
    })
}

impl StrRun {
    fn singleton(&mut self, cx: &mut Cx) -> Agreed {
        let r = cx.core.dh.random_exponent(&mut cx.core.rng);
        let br = cx.core.dh.blind(&r);
        Agreed {
            slots: vec![share_slot(Slot {
                member: cx.core.me().to_owned(),
                br: br.into(),
                bk: None,
            })],
            r,
            x: vec![None],
        }
    }

    /// A chain's wire form (position 0 carries no bk: it is br_0).
    fn wire(&self, cx: &Cx, slots: &[Arc<Slot>]) -> Vec<WireSlot> {
        slots
            .iter()
            .enumerate()
            .map(|(i, s)| WireSlot {
                member: s.member.clone(),
                br: cx.core.dh.encode_held(&s.br).into(),
                bk: s.bk.as_ref().filter(|_| i > 0).map(|e| cx.core.dh.encode_held(e).into()),
            })
            .collect()
    }

    fn on_chain(
        &mut self,
        cx: &mut Cx,
        from: &str,
        shared_slots: &DecodedOnce<Vec<WireSlot>>,
        valid: u32,
    ) -> Result<(), SessionError> {
        let slots: &[WireSlot] = shared_slots;
        let Phase::Collect { mine, mine_valid, chains, .. } = &self.phase else {
            return Err(unexpected(format!("chain from {from:?} not expected")));
        };
        let view = cx.core.view()?;
        if slots.last().map(|s| s.member.as_str()) != Some(from) {
            return Err(unexpected(format!("chain from {from:?}, who is not its top")));
        }
        if slots.len() > view.members.len() {
            return Err(unexpected("chain longer than the view"));
        }
        chains.check(view, slots.iter().map(|s| s.member.as_str()))?;
        let contains_me = slots.iter().any(|s| s.member == cx.core.me());
        let valid = valid as usize;
        if valid == 0 || valid > slots.len() {
            return Err(unexpected(format!("chain from {from:?} claims {valid} valid positions")));
        }
        let decoded = if contains_me {
            // Our own group's chain: it must be exactly our copy.
            if mine.slots.is_empty()
                || !matches_shared_wire(&cx.core.dh, &mine.slots, shared_slots.shared())
                || valid != *mine_valid
            {
                return Err(unexpected("a chain with this member that is not its group's"));
            }
            // Moved, not copied: `stack` needs only this member's secrets from `mine`, and a
            // copy would double every member's memory while the other chains are awaited.
            let Phase::Collect { mine, .. } = &mut self.phase else { unreachable!() };
            std::mem::take(&mut mine.slots)
        } else {
            let mut decoded = Vec::with_capacity(slots.len());
            for (i, s) in slots.iter().enumerate() {
                let bk = match &s.bk {
                    Some(b) if i > 0 && i < valid => Some(cx.core.dh.receive(b)?),
                    _ => None,
                };
                let br = cx.core.dh.receive(&s.br)?;
                decoded.push(share_slot(Slot { member: s.member.clone(), br, bk }));
            }
            decoded
        };
        let members = slots.iter().map(|s| s.member.clone());
        let view = cx.core.view()?;
        let Phase::Collect { chains, .. } = &mut self.phase else { unreachable!() };
        let Some(chains) = chains.add(view, members, (decoded, valid)) else {
            return Ok(());
        };
        let Phase::Collect { mine, kept, .. } = std::mem::take(&mut self.phase) else {
            unreachable!()
        };
        self.stack(cx, mine, kept, chains)
    }

    /// Every group's chain is in: stack them and let the sponsor compute.
    fn stack(
        &mut self,
        cx: &mut Cx,
        mine: Agreed,
        kept: bool,
        chains: Vec<(Vec<Arc<Slot>>, usize)>,
    ) -> Result<(), SessionError> {
        let order = merge_order(
            &chains
                .iter()
                .map(|(c, _)| (c.len(), c.first().map_or("", |s| s.member.as_str())))
                .collect::<Vec<_>>(),
        );
        let bottom_valid = chains[order[0]].1;
        let me = cx.core.me().to_owned();
        // This member's private keys survive only if its chain is at the bottom.
        let my_chain_is_bottom = chains[order[0]].0.iter().any(|s| s.member == me);
        let mut chains: Vec<Option<Vec<Arc<Slot>>>> =
            chains.into_iter().map(|(chain, _)| Some(chain)).collect();
        // Sized once: grown by doubling, the chain of every member of a group of 513 would
        // hold room for 1024 positions.
        let total = chains.iter().flatten().map(Vec::len).sum();
        let mut slots = Vec::with_capacity(total);
        for &ci in &order {
            slots.extend(chains[ci].take().unwrap_or_default());
        }
        let mut x: Vec<Option<Secret>> = vec![None; slots.len()];
        if my_chain_is_bottom {
            for (i, xi) in mine.x.iter().enumerate().take(bottom_valid) {
                x[i] = xi.clone();
            }
        }
        let mut merged = Agreed { slots, r: mine.r, x };
        merged.invalidate_from(bottom_valid);
        let sponsor = sponsor_for(bottom_valid);
        // The sponsor refreshes its share if its group had agreed a key before.
        let refresh = kept && my_chain_is_bottom;
        self.proceed(cx, merged, sponsor, refresh)
    }

    /// With the chain agreed, the sponsor computes and broadcasts; the others wait.
    fn proceed(
        &mut self,
        cx: &mut Cx,
        mut chain: Agreed,
        sponsor: usize,
        refresh: bool,
    ) -> Result<(), SessionError> {
        let me = cx.core.me().to_owned();
        if chain.slots[sponsor].member != me {
            self.phase = Phase::WaitUpdate { chain, sponsor };
            return Ok(());
        }
        let dh = &cx.core.dh;
        let mut new_br = None;
        if refresh {
            chain.r = dh.random_exponent(&mut cx.core.rng);
            let br = dh.blind(&chain.r);
            new_br = Some(dh.encode(&br).into());
            chain.update_slot(sponsor, |slot| slot.br = br.into());
        }
        let top = chain.slots.len() - 1;
        if top == 0 {
            let key = dh.pow(&chain.br(dh, 0)?, &chain.r);
            let secret = dh.encode(&key);
            chain.x[0] = Some(chain.r.clone());
            return cx.commit(chain, &secret);
        }
        // x_s, then every node above it.
        let mut top_key = None;
        if sponsor == 0 {
            chain.x[0] = Some(chain.r.clone());
        } else {
            let below = chain.bk(dh, sponsor - 1)?;
            let (k, x) = node_exponent(dh, &below, &chain.r);
            chain.x[sponsor] = Some(x);
            top_key = Some(k);
        }
        let mut bks = Vec::new();
        for i in sponsor + 1..=top {
            let x_below = chain.x[i - 1].clone().expect("computed below");
            if i > 1 {
                let bk = dh.blind(&x_below);
                bks.push(dh.encode(&bk).into());
                chain.update_slot(i - 1, |slot| slot.bk = Some(bk.into()));
            }
            let (k, x) = node_exponent(dh, &chain.br(dh, i)?, &x_below);
            chain.x[i] = Some(x);
            top_key = Some(k);
        }
        let secret = dh.encode(&top_key.expect("top above sponsor"));
        cx.broadcast_final(&StrMsg::Update { br: new_br, bks }, chain, Zeroizing::new(secret))
    }

    fn on_update(
        &mut self,
        cx: &mut Cx,
        from: &str,
        br: Option<&[u8]>,
        bks: &[Bytes],
    ) -> Result<(), SessionError> {
        let Phase::WaitUpdate { chain, sponsor } = &self.phase else {
            return Err(unexpected(format!("update from {from:?} not expected")));
        };
        let sponsor = *sponsor;
        if chain.slots[sponsor].member != from {
            return Err(unexpected(format!("update from non-sponsor {from:?}")));
        }
        let top = chain.slots.len() - 1;
        let first_bk = sponsor.max(1);
        if bks.len() != top.saturating_sub(first_bk) {
            return Err(unexpected("update carries the wrong number of blinded keys"));
        }
        let dh = &cx.core.dh;
        let new_br = br.map(|b| dh.receive(b)).transpose()?;
        let decoded: Vec<Held> = bks.iter().map(|b| dh.receive(b)).collect::<Result<_, _>>()?;
        let Phase::WaitUpdate { mut chain, .. } = std::mem::take(&mut self.phase) else {
            unreachable!()
        };
        if let Some(b) = new_br {
            chain.update_slot(sponsor, |slot| slot.br = b);
            chain.x[sponsor] = None;
        }
        for (j, bk) in decoded.into_iter().enumerate() {
            chain.update_slot(first_bk + j, |slot| slot.bk = Some(bk));
        }
        for xi in chain.x.iter_mut().skip(sponsor) {
            *xi = None;
        }
        let secret = self.compute_up(cx, &mut chain, sponsor)?;
        cx.commit(chain, &secret)
    }

    /// Computes this member's keys from the lowest changed node to the top; returns the top key.
    fn compute_up(
        &self,
        cx: &Cx,
        chain: &mut Agreed,
        sponsor: usize,
    ) -> Result<Vec<u8>, SessionError> {
        let dh = &cx.core.dh;
        let me = cx.core.me();
        let pos = chain.position(me).ok_or_else(|| unexpected("not in the chain"))?;
        let top = chain.slots.len() - 1;
        let start = if pos < sponsor { sponsor } else { pos };
        let mut key = None;
        if start == pos {
            if pos == 0 {
                chain.x[0] = Some(chain.r.clone());
            } else {
                let bk = chain.bk(dh, pos - 1)?;
                let (k, x) = node_exponent(dh, &bk, &chain.r);
                chain.x[pos] = Some(x);
                key = Some(k);
            }
        }
        for i in start.max(pos + 1)..=top {
            let x_below = chain.x[i - 1].clone().ok_or_else(|| unexpected("missing key below"))?;
            let (k, x) = node_exponent(dh, &chain.br(dh, i)?, &x_below);
            chain.x[i] = Some(x);
            key = Some(k);
        }
        let key = key.ok_or_else(|| unexpected("nothing to compute"))?;
        Ok(dh.encode(&key))
    }
}

impl Agreement for StrRun {
    type Agreed = Agreed;
    type Message = StrMsg;

    /// Leave, partition or refresh within one agreed chain.
    fn on_whole_view(
        &mut self,
        cx: &mut Cx,
        mut agreed: Agreed,
        _view: &View,
    ) -> Result<(), SessionError> {
        // The view's places (shared by the members of this process), not a set built per member.
        let places = cx.core.places();
        let valid = agreed.retain(&|m| places.contains(m));
        let sponsor = sponsor_for(valid);
        self.proceed(cx, agreed, sponsor, true)
    }

    fn on_merge(
        &mut self,
        cx: &mut Cx,
        change: &ViewChange,
        kept: Option<Agreed>,
    ) -> Result<(), SessionError> {
        let (mine, kept_state, valid) = match kept {
            // Nobody of the agreed chain left: every position keeps its key.
            Some(a) if change.side_is_last_group => {
                let valid = a.slots.len();
                (a, true, valid)
            }
            Some(mut a) => {
                let side: HashSet<&str> = change.side.iter().map(String::as_str).collect();
                let valid = a.retain(&|m| side.contains(m));
                (a, true, valid)
            }
            None => (self.singleton(cx), false, 1),
        };
        if change.side_is_whole_view {
            // Alone with no agreed state: nothing to exchange.
            return self.proceed(cx, mine, sponsor_for(valid), kept_state);
        }
        let top = mine.slots.last().map(|s| s.member.clone()).unwrap_or_default();
        if top == cx.core.me() {
            let slots = DecodedOnce::new(self.wire(cx, &mine.slots));
            cx.core.broadcast(&StrMsg::Chain { slots, valid: valid as u32 })?;
        }
        self.phase =
            Phase::Collect { mine, mine_valid: valid, kept: kept_state, chains: Sides::default() };
        Ok(())
    }

    fn on_message(&mut self, cx: &mut Cx, from: &str, msg: StrMsg) -> Result<(), SessionError> {
        match msg {
            StrMsg::Chain { slots, valid } => self.on_chain(cx, from, &slots, valid),
            StrMsg::Update { br, bks } => self.on_update(cx, from, br.as_deref(), &bks),
        }
    }

    fn on_refresh(&mut self, cx: &mut Cx) -> Result<(), SessionError> {
        let agreed = cx.agreed.take().ok_or_else(|| unexpected("refresh without a key"))?;
        let top = agreed.slots.len() - 1;
        self.proceed(cx, agreed, top, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gka_plugin_api::GroupId;

    fn slot(member: &str) -> Slot {
        let dh = Dh::new(GroupId::Ffdhe2048);
        Slot { member: member.into(), br: dh.generator().into(), bk: None }
    }

    #[test]
    fn members_share_equal_slots_and_change_only_their_own_copy() {
        let chain = |members: &[&str]| Agreed {
            slots: members.iter().map(|m| share_slot(slot(m))).collect(),
            r: Secret::from_biguint(5u32.into()),
            x: vec![None; members.len()],
        };
        let (mut first, second) = (chain(&["a", "b", "c"]), chain(&["a", "b", "c"]));
        assert!(first.slots.iter().zip(&second.slots).all(|(a, b)| Arc::ptr_eq(a, b)));
        let bk = slot("b").br;
        first.update_slot(1, |s| s.bk = Some(bk));
        assert!(first.slots[1].bk.is_some());
        assert!(second.slots[1].bk.is_none(), "the other member's slot is unchanged");
        assert!(Arc::ptr_eq(&first.slots[2], &second.slots[2]));
        first.invalidate_from(1);
        assert!(Arc::ptr_eq(&first.slots[1], &second.slots[1]), "equal again, shared again");
    }

    #[test]
    fn a_shared_chain_check_finds_every_difference() {
        let dh = Dh::new(GroupId::Ffdhe2048);
        let keyed = |m: &str, k: u64| {
            let br = dh.pow_small(&dh.generator(), k).into();
            share_slot(Slot { member: m.into(), br, bk: Some(dh.generator().into()) })
        };
        let chain: Vec<Arc<Slot>> = (0..8).map(|i| keyed(&format!("m{i}"), i + 2)).collect();
        let wire_of = |slots: &[Arc<Slot>]| {
            let wire = slots.iter().enumerate().map(|(i, s)| WireSlot {
                member: s.member.clone(),
                br: dh.encode_held(&s.br).into(),
                bk: s.bk.as_ref().filter(|_| i > 0).map(|e| dh.encode_held(e).into()),
            });
            Arc::new(wire.collect::<Vec<_>>())
        };
        let wire = wire_of(&chain);
        assert!(matches_shared_wire(&dh, &chain, &wire));
        assert!(matches_shared_wire(&dh, &chain.clone(), &wire), "the remembered copy");
        // A copy with other contents at one position, or one position fewer, is refused,
        // however many checks were remembered.
        let mut other = chain.clone();
        other[5] = keyed("m5", 99);
        assert!(!matches_shared_wire(&dh, &other, &wire));
        assert!(!matches_shared_wire(&dh, &chain[..7], &wire));
        // The same contents in fresh positions match (compared in full).
        let fresh: Vec<Arc<Slot>> = chain.iter().map(|s| Arc::new(Slot::clone(s))).collect();
        assert!(matches_shared_wire(&dh, &fresh, &wire));
        assert!(!matches_shared_wire(&dh, &chain, &wire_of(&other)));
    }
}
