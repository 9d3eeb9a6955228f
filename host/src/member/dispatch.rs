//! The member core's dispatcher: deliveries from the group layer, refreshes and the passage
//! of time in; envelopes and events out. Each input is handed to the sub-machine it concerns.

use std::time::Duration;

use gka_plugin_api::{GroupKey, Output, View, ViewEvent, ViewPlaces};

use super::adoption::Held;
use super::control::Control;
use super::core::{plugin_now, CurrentView};
use super::events::{MemberError, MemberEvent, Outgoing};
use super::switch::{SwitchEvent, SwitchState};
use super::MemberCore;
use crate::envelope::{Envelope, Header, Kind, Verified};
use crate::group::{Certificates, Delivery, GroupRun};

impl MemberCore {
    /// Handles one delivery from the group layer.
    pub fn handle_delivery(
        &mut self,
        now: Duration,
        delivery: Delivery,
    ) -> Result<(), MemberError> {
        self.now = now;
        match delivery {
            Delivery::View { view, run, certificates } => self.on_view(view, run, &certificates)?,
            Delivery::Message { from, bytes, .. } => {
                self.verified += 1;
                match self.checker.accept_from(&bytes, Some(&from)) {
                    Ok(envelope) => self.on_envelope(&envelope)?,
                    Err(r) => self.events.push_back(MemberEvent::Rejected(r)),
                }
            }
        }
        Ok(())
    }

    /// As [`Self::handle_delivery`] for a message that the group layer delivered as sent by
    /// `from`, whose envelope was decoded and verified once for every recipient (the
    /// simulator's broadcasts; see [`Verified`]). It counts as a verification here, and every
    /// check that depends on this member still runs.
    pub fn handle_verified(
        &mut self,
        now: Duration,
        from: &str,
        verified: &Verified,
    ) -> Result<(), MemberError> {
        self.now = now;
        self.verified += 1;
        match self.checker.accept_verified(verified, Some(from)) {
            Ok(()) => self.on_envelope(verified.envelope()),
            Err(r) => {
                self.events.push_back(MemberEvent::Rejected(r));
                Ok(())
            }
        }
    }

    /// An accepted envelope, to the sub-machine it concerns.
    fn on_envelope(&mut self, envelope: &Envelope) -> Result<(), MemberError> {
        let from = envelope.header.sender.as_str();
        match envelope.header.kind {
            Kind::Protocol => self.on_protocol(from, &envelope.header.protocol, &envelope.body),
            Kind::Data => {
                self.heard_from(from);
                self.decrypt(envelope)
            }
            Kind::Control => match Control::from_bytes(&envelope.body) {
                Ok(control) => {
                    // Liveness counts only what every member receives: a broadcast.
                    // Probes are unicasts, and so may protocol payloads be.
                    if !matches!(control, Control::Ping { .. } | Control::Pong { .. }) {
                        self.heard_from(from);
                    }
                    self.on_control(from, control)?
                }
                Err(e) => self.error(from, e.to_string()),
            },
        }
        Ok(())
    }

    pub(super) fn on_view(
        &mut self,
        view: View,
        run: GroupRun,
        certificates: &Certificates,
    ) -> Result<(), MemberError> {
        if let Some(current) = &self.view {
            if run != self.run {
                let error = format!("view {} of another group run ({run})", view.view_id);
                self.error("group layer", error);
                return Ok(());
            }
            if view.view_id <= current.view_id {
                let error =
                    format!("view {} does not follow view {}", view.view_id, current.view_id);
                self.error("group layer", error);
                return Ok(());
            }
        }
        self.run = run;
        let members_index = ViewPlaces::new(&view.members);
        self.checker.set_view(run, view.view_id, members_index.clone());
        self.confirmations.new_view();
        // Exclusions (liveness.rs) last for the view they were decided in: a joiner could not
        // know them, so the trusted view is rebuilt from the trust store or the certificates
        // alone, and a member that is still silent is excluded again at the next deadline.
        // Access control: members not admitted take no part in key agreement, so the plugin
        // sees only the admitted ones.
        let (members, not_in_key) = self.admit_view(&view, certificates);
        let previous = self.trusted_places.clone();
        let now_in: foldhash::HashSet<&String> = members.iter().collect();
        let left = previous.members().iter().filter(|m| !now_in.contains(m)).cloned().collect();
        let joined = members.iter().filter(|m| !self.is_trusted(m)).cloned().collect();
        let trusted = View { view_id: view.view_id, joined, left, members };
        let first = self.view.is_none();
        // Views where only untrusted processes came or went change nothing for the policy.
        let event = ViewEvent::of(&trusted, first);
        if first || !trusted.joined.is_empty() || !trusted.left.is_empty() {
            self.rates.record(self.now, event);
        }
        // Only a member with a policy weighs observed rekeys; the reports are this view's last.
        let n = previous.len() as u64;
        self.rekey_started = event
            .event_kind()
            .filter(|_| self.policy.is_some() && !self.reports.is_empty())
            .map(|k| (self.now, k, n, self.reports.inputs(n, self.local.cpu_load)));
        if !trusted.left.is_empty() {
            self.departed_since_key = true;
        }
        self.data_cut_by(view.view_id, !trusted.joined.is_empty());
        self.view = Some(CurrentView { view_id: view.view_id, members: members_index });
        self.set_trusted_view(trusted.clone());
        self.quiet_since = self.now;
        self.keys_in_view = 0;
        self.pending = true;
        self.refreshes_queued = 0;
        self.agreement_began();
        self.seq = 0;
        self.proposal_out = false;
        self.proposals_in_view = 0;
        self.last_report = None;
        self.reports.clear();
        self.checker.set_epoch(self.agreeing_epoch());
        self.send_revocations(&view);
        self.events.push_back(MemberEvent::View(view));
        if !not_in_key.is_empty() {
            self.events.push_back(MemberEvent::NotInKey { members: not_in_key });
        }
        if let SwitchState::Voting { proposal, .. } = &self.switch {
            let id = proposal.id;
            self.abort(id, "the view changed before every member voted".into(), "view_change");
        }
        // Messages held for the previous view's announcement belong to that view: gone.
        self.held = None;
        // This member runs the group's protocol for sure only if the previous view's
        // announcement reached it and the new oldest member was in that view: by view
        // synchrony every member of that view then got the same announcement, and the same
        // votes since. Otherwise it waits for this view's announcement.
        let knew_leader = self.leader().is_some_and(|l| previous.contains(l));
        let in_step = std::mem::take(&mut self.announced) && knew_leader;
        if !self.admitted() {
            // Not admitted by its own rules (revoked, say): it takes no part in the key.
            self.pending = false;
            return Ok(());
        }
        if self.is_leader() {
            let me = self.my_plugin();
            self.send_control(None, &Control::Announce(me));
        } else if !in_step {
            self.held = Some(Held::default());
            return Ok(());
        }
        self.session.handle_view(plugin_now(self.now), &trusted)?;
        self.drain_session();
        Ok(())
    }

    pub(super) fn on_protocol(&mut self, from: &str, protocol: &str, body: &[u8]) {
        if !self.admitted() {
            // Its peers agree without it: their messages are not for its stale session.
            return;
        }
        if let Some(held) = &mut self.held {
            if !held.push(from, protocol, body) {
                let error = "too many protocol messages before the group's protocol was announced";
                self.error(from, error.into());
            }
            return;
        }
        if protocol != self.protocol {
            let error =
                format!("envelope for protocol {protocol}, this member runs {}", self.protocol);
            self.error(from, error);
            return;
        }
        if let Err(e) = self.session.handle_payload(plugin_now(self.now), from, body) {
            self.error(from, e.to_string());
        }
        self.drain_session();
    }

    pub(super) fn on_control(&mut self, from: &str, control: Control) -> Result<(), MemberError> {
        match control {
            Control::Announce(plugin) => self.on_announce(from, plugin)?,
            Control::Report(report) => {
                if self.is_trusted(from) {
                    self.reports.insert(from, report);
                }
            }
            Control::Propose(proposal) => self.on_propose(from, proposal),
            Control::Vote { id, verdict } => self.on_vote(from, id, verdict)?,
            Control::Ping { nonce, .. } => {
                if from != self.identity.id() {
                    self.send_control(Some(from.to_owned()), &Control::Pong { nonce });
                }
            }
            Control::Pong { nonce } => self.probes.on_pong(self.now, from, nonce),
            Control::Confirm(confirm) => self.on_confirm(from, confirm)?,
            Control::Stalled { epoch, round, silent } => {
                self.on_stalled(from, epoch, round, silent)?
            }
            Control::Revocation(list) => self.on_revocation(from, &list)?,
        }
        Ok(())
    }

    /// Starts a key refresh (call on every member at the same point of the agreed order).
    pub fn refresh(&mut self, now: Duration) -> Result<(), MemberError> {
        self.now = now;
        if self.view.is_none() {
            return Err(MemberError::NoView);
        }
        if self.switch_under_way() {
            return Err(MemberError::SwitchUnderWay);
        }
        if !self.admitted() {
            return Err(MemberError::NotAdmitted);
        }
        // As in the plugin: a refresh during an agreement is agreed after it, in turn.
        if self.pending {
            self.refreshes_queued += 1;
        } else {
            self.next_agreement();
        }
        self.session.handle_refresh(plugin_now(now))?;
        self.drain_session();
        Ok(())
    }

    /// Lets time pass: probes, reports, a pending policy change and (as the oldest member) a
    /// policy evaluation happen here when they are due.
    pub fn tick(&mut self, now: Duration) {
        self.now = now;
        let Some(trusted) = self.trusted_view_in_full() else { return };
        if !self.admitted() {
            // Its peers no longer accept anything it sends.
            return;
        }
        let quiescent = !self.pending && self.held.is_none() && !self.switch_under_way();
        if quiescent && self.next_policy.is_some() {
            self.policy = self.next_policy.take();
            self.events.push_back(MemberEvent::Switch(SwitchEvent::PolicyApplied));
        }
        let due = |last: Option<Duration>, every: Duration| {
            last.is_none_or(|l| now.saturating_sub(l) >= every)
        };
        if due(self.last_probe, self.timing.probe_every) {
            self.last_probe = Some(now);
            let peers: Vec<String> =
                trusted.members.iter().filter(|m| *m != self.identity.id()).cloned().collect();
            for (peer, ping) in self.probes.round(now, &peers) {
                let ping = Control::Ping { nonce: ping.nonce, padding: ping.padding };
                self.send_control(Some(peer), &ping);
            }
        }
        let key_in_view =
            self.reporting && self.keys.newest().is_some_and(|k| k.view_id == trusted.view_id);
        if key_in_view && due(self.last_report, self.timing.report_every) {
            self.send_report();
        }
        if quiescent && key_in_view && self.is_leader() && !self.proposal_out {
            self.evaluate(&trusted);
        }
        self.check_deadline();
    }

    pub(super) fn install(&mut self, agreed: GroupKey) {
        if !self.pending {
            let error = "the plugin output a key outside any agreement: ignored".to_owned();
            self.error(self.identity.id().to_owned().as_str(), error);
            return;
        }
        let epoch = self.agreeing_epoch();
        let view_id = self.view.as_ref().map_or(0, |v| v.view_id);
        let mut key = GroupKey { epoch, view_id, key: agreed.key };
        self.quiet_since = self.now;
        self.finish_switch(&mut key);
        self.events.push_back(MemberEvent::Key {
            epoch,
            fingerprint: key.fingerprint(),
            protocol: self.protocol.clone(),
            run: self.run,
        });
        self.confirm_key(&key);
        self.keys.install(key);
        self.pending = false;
        self.departed_since_key = false;
        // The plugin starts the next queued refresh as soon as this key is in.
        if self.refreshes_queued > 0 {
            self.refreshes_queued -= 1;
            self.next_agreement();
        }
        self.resend_cut_data();
        // The leader decides on reports sent once each member's key is in place.
        if self.reporting && self.last_report.is_none() {
            self.send_report();
        }
    }

    pub(super) fn drain_session(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Broadcast(payload) => {
                    self.seal(Kind::Protocol, None, self.agreeing_epoch(), payload)
                }
                Output::Unicast { to, payload } => {
                    self.seal(Kind::Protocol, Some(to), self.agreeing_epoch(), payload)
                }
                Output::Key(key) => self.install(key),
                // A future output kind this host cannot act on.
                _ => {}
            }
        }
    }

    pub(super) fn send_control(&mut self, to: Option<String>, control: &Control) {
        self.seal(Kind::Control, to, self.agreeing_epoch(), control.to_bytes());
    }

    pub(super) fn seal(&mut self, kind: Kind, to: Option<String>, epoch: u64, body: Vec<u8>) {
        let Some(view) = &self.view else { return };
        self.seq += 1;
        let header = Header {
            group: self.group.clone(),
            run: self.run,
            view_id: view.view_id,
            epoch,
            kind,
            protocol: self.protocol.clone(),
            sender: self.identity.id().to_owned(),
            seq: self.seq,
        };
        let view_id = view.view_id;
        let bytes = Envelope::seal(&self.identity, header, body).to_bytes();
        self.signed += 1;
        self.outgoing.push_back(Outgoing { view_id, to, bytes });
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
    use gka_plugin_api::epoch_of;

    use super::*;
    use crate::envelope::EnvelopeChecker;
    use crate::identity::{Identity, Scheme, TrustStore};
    use crate::member::test_support::Recorder;

    #[test]
    fn envelopes_of_another_protocol_and_malformed_control_envelopes_are_reported() {
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
            [7; 32],
        );
        let view = View {
            view_id: 1,
            members: vec!["me".into(), "peer".into()],
            joined: vec![],
            left: vec![],
        };
        let run = GroupRun::default();
        let certificates = Vec::new();
        core.handle_delivery(Duration::ZERO, Delivery::View { view, run, certificates }).unwrap();
        let header = |protocol: &str, kind: Kind, seq: u64| Header {
            group: "g".into(),
            run,
            view_id: 1,
            epoch: epoch_of(1, 0),
            kind,
            protocol: protocol.into(),
            sender: "peer".into(),
            seq,
        };
        let send = |core: &mut MemberCore, h: Header| {
            let bytes = Envelope::seal(&peer, h, b"x".to_vec()).to_bytes();
            core.handle_delivery(
                Duration::ZERO,
                Delivery::Message { from: "peer".into(), view_id: 1, bytes: bytes.into() },
            )
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
        assert!(errors[1].contains("control body"), "{errors:?}");
    }
}
