//! The liveness deadline: an agreement that does not end in time ends without the members
//! that stalled it.
//!
//! Every agreement starts at a point of the agreed order (a view, a refresh, a switch's commit,
//! a restart after a key mismatch). From there each member notes, in the agreed order, which
//! members it hears from: a valid broadcast, that is data or a control message other than a
//! probe (probes are unicasts, and protocol payloads may be, and a unicast reaches one member
//! only, so counting it would let members decide differently). When its agreement has run past the deadline,
//! `max(floor, 10 × the protocol's predicted time)` with the predicted time from the plugin's
//! cost model and this member's measured RTT and exponentiation cost, it broadcasts
//! [`Control::Stalled`] (round 1) naming the members it has not heard from since the agreement
//! began. Once its own round-1 message has come back through the group layer and a further
//! [`CONFIRM_GAP_DIVISOR`]th of the floor has passed, it names them again (round 2), from what
//! it has heard by then.
//!
//! The decision is made from delivered messages only, so every member makes it at the same
//! delivery: a member is excluded when more than half of the other trusted members have named
//! it in round 2 and nothing from it has been delivered since the agreement began. The
//! excluded members leave the trusted view for the rest of the view (every member starts a new
//! view without exclusions: a joiner could not know them), and the rest start a fresh agreement
//! without them. A live member is not excluded for being slow:
//! it answers probes, and its own `Stalled` counts as hearing from it. Round 2 is what keeps a
//! stall of the group layer itself (a daemon stopped for seconds) from excluding anyone: the
//! round-1 messages sent during the stall arrive together when it ends, and by the time anyone
//! sends round 2 every live member has been heard.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gka_plugin_api::EventKind;

use super::control::Control;
use super::core::{fresh_view, plugin_now};
use super::events::{MemberError, MemberEvent};
use super::MemberCore;
use crate::policy::{predict_ms, Inputs};
use gka_plugin_api::ViewPlaces;

/// How many times the predicted agreement time a member waits before it names the silent.
pub const DEADLINE_FACTOR: f64 = 10.0;

/// Round 2 waits this fraction of the floor after round 1 came back.
pub const CONFIRM_GAP_DIVISOR: u32 = 3;

/// What a member knows about the running agreement's liveness.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// When the agreement began.
    since: Duration,
    /// The trusted view's places when it began, and whether each member has been heard from
    /// since.
    places: ViewPlaces,
    heard: Vec<bool>,
    /// Who named whom as silent in round 2 of this agreement.
    accusations: BTreeMap<String, BTreeSet<String>>,
    /// The rounds of `Stalled` this member has sent in this agreement.
    rounds_sent: u8,
    /// When its round-1 message came back through the group layer.
    round_one_back: Option<Duration>,
}

impl Liveness {
    /// Whether `id` has been heard from since the agreement began (a member that was not in
    /// the trusted view then has not).
    fn was_heard(&self, id: &str) -> bool {
        self.places.place(id).is_some_and(|i| self.heard[i])
    }
}

impl MemberCore {
    /// The view's next agreement (a refresh, a restart, a switch) begins now, at a point of
    /// the agreed order: its epoch follows the last one's.
    pub(super) fn next_agreement(&mut self) {
        self.keys_in_view += 1;
        self.pending = true;
        self.checker.set_epoch(self.agreeing_epoch());
        self.agreement_began();
    }

    /// An agreement begins now (at a point of the agreed order).
    pub(super) fn agreement_began(&mut self) {
        let l = &mut self.liveness;
        l.since = self.now;
        l.places = self.trusted_places.clone();
        l.heard.clear();
        l.heard.resize(l.places.len(), false);
        l.accusations.clear();
        l.rounds_sent = 0;
        l.round_one_back = None;
    }

    /// A valid envelope from `from` was delivered.
    pub(super) fn heard_from(&mut self, from: &str) {
        let l = &mut self.liveness;
        if let Some(i) = l.places.place(from) {
            l.heard[i] = true;
        }
    }

    /// How long this member lets an agreement of `n` members run before naming the silent.
    pub(super) fn agreement_deadline(&self, n: u64) -> Duration {
        let model = self.current_protocol();
        let mut inputs = Inputs { group_size: n, ..Inputs::default() };
        if let Some(rtt) = self.probes.rtt_median_ms() {
            inputs.rtt_median_ms = rtt;
        }
        if let Some(exp) = self.local.exp_ms {
            inputs.exp_ms = exp;
        }
        let predicted =
            model.map_or(0.0, |p| predict_ms(&p.cost(EventKind::Initial, n, 0), &inputs));
        let scaled =
            Duration::from_secs_f64((predicted * DEADLINE_FACTOR / 1e3).clamp(0.0, 3600.0));
        scaled.max(self.timing.stall_floor)
    }

    /// Called by `tick`: names the silent members once the running agreement is overdue, and
    /// again once round 1 came back and the gap passed.
    pub(super) fn check_deadline(&mut self) {
        let running = self.pending || self.held.is_some();
        if self.trusted_view.is_none() {
            return;
        }
        if !running {
            return;
        }
        let round = match self.liveness.rounds_sent {
            0 => {
                let waited = self.now.saturating_sub(self.liveness.since);
                // The deadline is never below the floor: no prediction needed before it.
                if waited < self.timing.stall_floor
                    || waited < self.agreement_deadline(self.trusted_places.len() as u64)
                {
                    return;
                }
                1
            }
            1 => {
                let gap = self.timing.stall_floor / CONFIRM_GAP_DIVISOR;
                match self.liveness.round_one_back {
                    Some(back) if self.now.saturating_sub(back) >= gap => 2,
                    _ => return,
                }
            }
            _ => return,
        };
        self.liveness.rounds_sent = round;
        let silent: Vec<String> = (self.trusted_places.members().iter())
            .filter(|m| *m != self.identity.id() && !self.liveness.was_heard(m))
            .cloned()
            .collect();
        let epoch = self.agreeing_epoch();
        if round == 1 {
            self.events.push_back(MemberEvent::AgreementOverdue {
                epoch,
                waited: self.now.saturating_sub(self.liveness.since),
                silent: silent.clone(),
            });
        }
        self.send_control(None, &Control::Stalled { epoch, round, silent });
    }

    /// `from` named members as silent in round `round` of the agreement of `epoch`.
    pub(super) fn on_stalled(
        &mut self,
        from: &str,
        epoch: u64,
        round: u8,
        silent: Vec<String>,
    ) -> Result<(), MemberError> {
        let Some(trusted) = self.trusted_view_in_full() else { return Ok(()) };
        let running = self.pending || self.held.is_some();
        if !running || epoch != self.agreeing_epoch() || !trusted.members.iter().any(|m| m == from)
        {
            return Ok(());
        }
        if round < 2 {
            if from == self.identity.id() && self.liveness.round_one_back.is_none() {
                self.liveness.round_one_back = Some(self.now);
            }
            return Ok(());
        }
        let named: BTreeSet<String> =
            silent.into_iter().filter(|m| m != from && trusted.members.contains(m)).collect();
        self.liveness.accusations.insert(from.to_owned(), named);
        let others = trusted.members.len().saturating_sub(1);
        let out: Vec<String> = trusted
            .members
            .iter()
            .filter(|m| !self.liveness.was_heard(m))
            .filter(|m| {
                let accusers =
                    self.liveness.accusations.values().filter(|named| named.contains(*m)).count();
                accusers * 2 > others
            })
            .cloned()
            .collect();
        if out.is_empty() {
            return Ok(());
        }
        self.exclude_stalled(out, epoch)
    }

    fn exclude_stalled(&mut self, members: Vec<String>, epoch: u64) -> Result<(), MemberError> {
        self.events.push_back(MemberEvent::Excluded { epoch, members: members.clone() });
        self.exclude(members)
    }

    /// Takes `members` out of the trusted view and starts a fresh agreement without them (for
    /// stalling, or revoked).
    pub(super) fn exclude(&mut self, members: Vec<String>) -> Result<(), MemberError> {
        let Some(mut trusted) = self.trusted_view_in_full() else { return Ok(()) };
        trusted.members.retain(|m| !members.contains(m));
        trusted.joined.retain(|m| !members.contains(m));
        trusted.left.extend(members.iter().cloned());
        // They may hold the current key.
        self.departed_since_key = true;
        self.set_trusted_view(trusted.clone());
        if !self.admitted() {
            // This member itself is out: it takes no part in the agreement without it.
            self.pending = false;
            return Ok(());
        }
        // A switch being voted on needs votes from members who are gone: it ends here.
        if let super::switch::SwitchState::Voting { proposal, .. } = &self.switch {
            let id = proposal.id;
            self.abort(id, "members left the key (stalled or revoked)".into(), "view_change");
        }
        self.switch = super::switch::SwitchState::Stable;
        // Every remaining member starts afresh from here, with the protocol it runs (the group's,
        // unless it was still waiting for an announcement: then key confirmation tells).
        self.held = None;
        self.announced = true;
        if self.is_leader() {
            let me = self.my_plugin();
            self.send_control(None, &Control::Announce(me));
        }
        let session = self.fresh_session();
        // The agreement that starts here replaces whatever was queued behind the stalled one.
        self.refreshes_queued = 0;
        self.next_agreement();
        match session {
            Some(session) => {
                self.replace_session(session);
                self.session.handle_view(plugin_now(self.now), &fresh_view(&trusted))?;
            }
            None => {
                let error = "no fresh session of the group's protocol: cannot agree without the \
                             excluded members"
                    .to_owned();
                self.error(self.identity.id().to_owned().as_str(), error);
            }
        }
        self.drain_session();
        Ok(())
    }
}
