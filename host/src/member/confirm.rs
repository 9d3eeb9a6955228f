//! Key confirmation: after every new key, each member proves to the group that it holds the
//! same key, so that a key disagreement (an insider that published a wrong blinded key or BD
//! value, or a group layer that showed members different views) is loud instead of silent.
//!
//! Each member broadcasts [`Control::Confirm`] with a tag: HKDF-SHA256 of the key
//! ([`derive_subkey`]), expanded over a purpose label and a hash of the agreement's context
//! (group, run, view, epoch, protocol and the trusted members in view order). The tag reveals nothing about the key; two
//! members' tags match exactly when they hold the same key for the same context.
//!
//! Tags travel in the agreed order, so every member sees the same tags in the same order and
//! completes the check at the same delivery: the last expected member's tag. A member whose
//! tag differs from its own is named; then every member, at that same point, starts a fresh
//! agreement of the group's protocol from scratch (a new session; no state from the diverging
//! one is kept), at most [`MAX_RESTARTS_PER_VIEW`] times per view so that an insider who keeps
//! lying cannot keep the group busy for ever (the liveness deadline takes over from there).

use std::collections::BTreeMap;

use gka_plugin_api::kdf::derive_subkey;
use std::sync::Arc;

use gka_plugin_api::{GroupKey, Protocol, Session};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::control::Control;
use super::core::{fresh_view, plugin_now};
use super::events::{MemberError, MemberEvent};
use super::MemberCore;
use crate::group::GroupRun;
use gka_plugin_api::ViewPlaces;

/// Fresh agreements a view may start because tags disagreed.
pub const MAX_RESTARTS_PER_VIEW: u32 = 2;

/// A confirmation tag.
pub type Tag = [u8; 32];

/// What a tag is bound to besides the key.
#[derive(Serialize)]
pub(super) struct TagContext<'a> {
    pub(super) group: &'a str,
    pub(super) run: GroupRun,
    pub(super) view_id: u64,
    pub(super) epoch: u64,
    pub(super) protocol: &'a str,
    pub(super) members: &'a [String],
}

/// The tag for `key` in `context`.
pub(super) fn tag(key: &GroupKey, context: &TagContext<'_>) -> Tag {
    // Strings, integers and byte arrays always serialize.
    let context = postcard::to_allocvec(context).expect("postcard serializes the context");
    let mut label = b"gka key confirmation v1\0".to_vec();
    label.extend_from_slice(&Sha256::digest(&context));
    *derive_subkey(key.key.as_ref(), &label)
}

/// The confirmation of one key.
#[derive(Debug)]
struct Round {
    epoch: u64,
    mine: Tag,
    /// The trusted members when the key came, in view order.
    expected: ViewPlaces,
    /// Whether each expected member's first tag, by place, equals `mine` (`None` until it
    /// came): a byte per member, where the tags themselves took 33.
    got: Vec<Option<bool>>,
    /// How many of `got` are in: the round is complete when all are (counted, as a scan per
    /// tag would cost n² per member).
    confirmed: usize,
}

impl Round {
    /// Keeps a sender's first tag; tags from members not expected do not count.
    fn record(&mut self, from: &str, tag: Tag) {
        if let Some(slot) = self.expected.place(from).map(|i| &mut self.got[i]) {
            if slot.is_none() {
                *slot = Some(tag == self.mine);
                self.confirmed += 1;
            }
        }
    }
}

/// A member's confirmation state in its current view.
#[derive(Debug, Default)]
pub(super) struct Confirmations {
    round: Option<Round>,
    /// Tags that arrived before this member's own key for their epoch: one per sender.
    early: BTreeMap<String, (u64, Tag)>,
    restarts: u32,
}

/// A tag as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    /// The key's epoch.
    pub epoch: u64,
    /// The tag.
    pub tag: Tag,
}

impl Confirmations {
    /// A new view: nothing carries over (envelopes are bound to their view).
    pub(super) fn new_view(&mut self) {
        *self = Self::default();
    }
}

impl MemberCore {
    /// A key was installed: send its tag, and start checking the others'.
    pub(super) fn confirm_key(&mut self, key: &GroupKey) {
        let Some(trusted) = &self.trusted_view else { return };
        let context = TagContext {
            group: &self.group,
            run: self.run,
            view_id: trusted.view_id,
            epoch: key.epoch,
            protocol: &self.protocol,
            members: self.trusted_places.members(),
        };
        let mine = tag(key, &context);
        let expected = self.trusted_places.clone();
        let got = vec![None; expected.len()];
        let mut round = Round { epoch: key.epoch, mine, expected, got, confirmed: 0 };
        let early = std::mem::take(&mut self.confirmations.early);
        for (sender, (epoch, tag)) in early {
            match epoch.cmp(&key.epoch) {
                std::cmp::Ordering::Equal => round.record(&sender, tag),
                std::cmp::Ordering::Greater => {
                    self.confirmations.early.insert(sender, (epoch, tag));
                }
                std::cmp::Ordering::Less => {}
            }
        }
        self.confirmations.round = Some(round);
        self.send_control(None, &Control::Confirm(Confirm { epoch: key.epoch, tag: mine }));
    }

    /// A member's tag arrived (in the agreed order).
    pub(super) fn on_confirm(&mut self, from: &str, confirm: Confirm) -> Result<(), MemberError> {
        if !self.is_trusted(from) {
            return Ok(());
        }
        match &mut self.confirmations.round {
            Some(round) if round.epoch == confirm.epoch => round.record(from, confirm.tag),
            Some(round) if round.epoch > confirm.epoch => return Ok(()),
            _ => {
                // This member's key for that epoch is not in place yet.
                self.confirmations.early.insert(from.to_owned(), (confirm.epoch, confirm.tag));
                return Ok(());
            }
        }
        self.check_confirmations()
    }

    fn check_confirmations(&mut self) -> Result<(), MemberError> {
        let Some(round) = &self.confirmations.round else { return Ok(()) };
        if round.confirmed < round.expected.len() {
            return Ok(());
        }
        let round = self.confirmations.round.take().expect("checked above");
        let diverging: Vec<String> = round
            .expected
            .members()
            .iter()
            .zip(&round.got)
            .filter(|(_, matched)| **matched != Some(true))
            .map(|(m, _)| m.clone())
            .collect();
        if diverging.is_empty() {
            self.events.push_back(MemberEvent::KeyConfirmed { epoch: round.epoch });
            if let Some((since, kind, n, inputs)) = self.rekey_started.take() {
                self.observe_rekey(since, kind, n, &inputs);
            }
            return Ok(());
        }
        let restart = self.confirmations.restarts < MAX_RESTARTS_PER_VIEW
            && !self.switch_under_way()
            && !self.pending;
        self.events.push_back(MemberEvent::KeyMismatch {
            epoch: round.epoch,
            diverging,
            restarted: restart,
        });
        if restart {
            self.confirmations.restarts += 1;
            self.restart_agreement()?;
        }
        Ok(())
    }

    /// A fresh agreement of the group's protocol among the trusted view, from scratch: a new
    /// session (or, when this member cannot make one, a refresh of the current session).
    fn restart_agreement(&mut self) -> Result<(), MemberError> {
        let Some(trusted) = self.trusted_view_in_full() else { return Ok(()) };
        let Some(session) = self.fresh_session() else {
            return self.refresh(self.now);
        };
        self.replace_session(session);
        self.next_agreement();
        self.session.handle_view(plugin_now(self.now), &fresh_view(&trusted))?;
        self.drain_session();
        Ok(())
    }

    /// A new session of the protocol the group runs, if this member has its plugin.
    pub(super) fn fresh_session(&mut self) -> Option<Box<dyn Session>> {
        let protocol = self.current_protocol()?;
        self.new_session_of(&protocol).ok()
    }

    /// The plugin of the protocol the group runs (`name@version`), from the catalogue or the
    /// protocol this member started with.
    pub(super) fn current_protocol(&self) -> Option<Arc<dyn Protocol>> {
        let name = self.protocol.split('@').next().unwrap_or_default();
        match self.catalogue.get(name).filter(|e| e.plugin.tag() == self.protocol) {
            Some(entry) => Some(entry.protocol.clone()),
            None => self.own_protocol.clone().filter(|p| {
                let d = p.descriptor();
                format!("{}@{}", d.name, d.version) == self.protocol
            }),
        }
    }
}
