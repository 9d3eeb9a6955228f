//! The pieces of the agreed protocol switch that are not envelope plumbing: the plugins a
//! member could switch to ([`Catalogue`]), how a member answers a proposal ([`verdict`]), the
//! switch states, and what a switch reports ([`SwitchEvent`]).
//!
//! The protocol (see `design.md`, "Switching protocols"), all decided by the agreed order:
//! 1. at a quiescent point the oldest member evaluates its policy on the reports delivered in
//!    the view and broadcasts a [`Proposal`];
//! 2. every member, the proposer included, broadcasts a vote: it rejects if an agreement is
//!    running, if it lacks the same plugin (name, version and library hash) or if its own
//!    policy forbids the protocol;
//! 3. the first reject, or a new view before the last vote, aborts the switch everywhere; the
//!    last accept commits it everywhere, at the same point of the stream;
//! 4. on commit every member starts a fresh session of the new protocol on the current view,
//!    while data keeps flowing under the old key; the new key K' becomes the next epoch's key,
//!    derived from K' and the old key together
//!    ([`gka_plugin_api::kdf::derive_switch_key`]), or from K' alone if the view changed since
//!    the commit (a joiner does not have the old key).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gka_plugin_api::kdf::{derive_switch_key, KeyContext};
use gka_plugin_api::{GroupKey, Protocol};

use super::control::{Control, PluginRef, Proposal, SwitchId, Verdict};
use super::core::{fresh_view, plugin_now};
use super::events::{MemberError, MemberEvent};
use super::MemberCore;
use crate::loader::Registry;
use crate::policy::{Decision, Policy, Prediction};

/// A protocol a member can run: the plugin and its identity.
#[derive(Clone)]
pub struct CatalogueEntry {
    /// The protocol.
    pub protocol: Arc<dyn Protocol>,
    /// Its name, version and library hash.
    pub plugin: PluginRef,
}

/// The protocols a member can run, by name.
#[derive(Clone, Default)]
pub struct Catalogue {
    entries: BTreeMap<String, CatalogueEntry>,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

impl Catalogue {
    /// Every plugin in the registry.
    pub fn from_registry(registry: &Registry) -> Self {
        let mut c = Self::default();
        for p in registry.plugins() {
            let plugin = PluginRef {
                name: p.descriptor.name.clone(),
                version: p.descriptor.version.clone(),
                sha256: p.sha256.clone(),
            };
            c.insert(p.protocol.clone(), plugin);
        }
        c
    }

    /// Protocols linked into this binary (no library file): each one's identity hash is the
    /// SHA-256 of `linked:NAME@VERSION`, so members built from the same sources agree on it.
    pub fn from_linked(protocols: impl IntoIterator<Item = Arc<dyn Protocol>>) -> Self {
        use sha2::{Digest, Sha256};
        let mut c = Self::default();
        for protocol in protocols {
            let d = protocol.descriptor();
            let identity = format!("linked:{}@{}", d.name, d.version);
            let plugin = PluginRef {
                name: d.name,
                version: d.version,
                sha256: hex::encode(Sha256::digest(identity.as_bytes())),
            };
            c.insert(protocol, plugin);
        }
        c
    }

    /// Adds a protocol.
    pub fn insert(&mut self, protocol: Arc<dyn Protocol>, plugin: PluginRef) {
        self.entries.insert(plugin.name.clone(), CatalogueEntry { protocol, plugin });
    }

    /// The protocol with this name.
    pub fn get(&self, name: &str) -> Option<&CatalogueEntry> {
        self.entries.get(name)
    }

    /// The protocols' names.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// The protocols, by name, for the policy's cost models.
    pub fn cost_models(&self) -> BTreeMap<String, &dyn Protocol> {
        self.entries.iter().map(|(n, e)| (n.clone(), &*e.protocol as &dyn Protocol)).collect()
    }
}

/// What a member knows when it answers a proposal.
#[derive(Debug, Clone, Copy)]
pub struct VoterState<'a> {
    /// A key agreement is running.
    pub agreement_running: bool,
    /// The member runs this protocol (`name@version`), or none yet.
    pub running: Option<&'a str>,
    /// The group's size.
    pub group_size: u64,
}

/// A member's answer to `proposal`.
pub fn verdict(
    proposal: &Proposal,
    me: VoterState<'_>,
    catalogue: &Catalogue,
    policy: Option<&Policy>,
) -> Verdict {
    let to = &proposal.to;
    if me.agreement_running {
        return Verdict::Reject("a key agreement is running".into());
    }
    match me.running {
        None => return Verdict::Reject("not yet running the group's protocol".into()),
        Some(r) if r != proposal.from => {
            return Verdict::Reject(format!("runs {r}, not {}", proposal.from));
        }
        Some(_) => {}
    }
    let Some(mine) = catalogue.get(&to.name) else {
        return Verdict::Reject(format!("no plugin {}", to.name));
    };
    if mine.plugin.version != to.version {
        return Verdict::Reject(format!(
            "has {} {}, not {}",
            to.name, mine.plugin.version, to.version
        ));
    }
    if mine.plugin.sha256 != to.sha256 {
        return Verdict::Reject(format!("has a different build of {}", to.tag()));
    }
    if let Some(policy) = policy {
        if policy.candidates(&[to.name.as_str()], me.group_size).is_empty() {
            return Verdict::Reject(format!("its policy does not allow {}", to.name));
        }
    }
    Verdict::Accept
}

/// Where a member stands in the switch protocol.
pub(crate) enum SwitchState {
    /// Running one protocol; no switch under way.
    Stable,
    /// A proposal is out; these members have accepted it so far. `prepared` is this
    /// member's session of the new protocol, made when it accepted.
    Voting {
        proposal: Proposal,
        accepted: BTreeSet<String>,
        prepared: Option<Box<dyn gka_plugin_api::Session>>,
    },
    /// Committed: the new protocol is agreeing its first key. `old` is the previous epoch's
    /// key, combined with the new one if the key comes in the commit's view.
    Committed { proposal: Proposal, view_id: u64, old: GroupKey, since: Duration },
}

/// What happens in a switch, reported by every member.
#[derive(Debug, Clone, PartialEq)]
pub enum SwitchEvent {
    /// The oldest member evaluated its policy (reported by that member only).
    Decided {
        /// The decision.
        decision: Decision,
        /// Every candidate's predictions.
        predictions: Vec<Prediction>,
        /// The inputs the decision rests on.
        inputs: crate::policy::Inputs,
    },
    /// A switch was proposed.
    Proposed(Proposal),
    /// This member voted.
    Voted {
        /// The attempt.
        id: SwitchId,
        /// Its vote.
        verdict: Verdict,
    },
    /// Every member accepted: the new protocol is agreeing its first key.
    Committed {
        /// The attempt.
        id: SwitchId,
        /// The new protocol.
        to: String,
    },
    /// The switch was abandoned.
    Aborted {
        /// The attempt.
        id: SwitchId,
        /// Why, in words.
        reason: String,
        /// Why, as a metrics label: `rejected` or `view_change`.
        label: String,
    },
    /// The new protocol's first key is in place.
    Completed {
        /// The old protocol's name.
        from: String,
        /// The new protocol's name.
        to: String,
        /// The policy's reason label.
        label: String,
        /// The new key's epoch.
        epoch: u64,
        /// Time from the commit to the key.
        commit_to_key: Duration,
        /// Whether the key was derived together with the previous epoch's key.
        chained: bool,
    },
    /// The member adopted the protocol the group runs (on joining, or on a heal).
    Adopted {
        /// The protocol, `name@version`.
        protocol: String,
    },
    /// A new policy is in force (applied at a quiescent point).
    PolicyApplied,
}

impl MemberCore {
    pub(super) fn on_propose(&mut self, from: &str, proposal: Proposal) {
        if self.leader() != Some(from) {
            self.error(from, "a switch proposal from a member that is not the oldest".into());
            return;
        }
        if from == self.identity.id() {
            self.proposal_out = false;
        }
        let id = proposal.id;
        if !matches!(self.switch, SwitchState::Stable) {
            // Still finishing the previous switch (or voting): say no, so that every member
            // aborts this one alike instead of waiting for a vote that never comes.
            let verdict = Verdict::Reject("another switch is under way here".into());
            self.send_control(None, &Control::Vote { id, verdict });
            return;
        }
        let size = self.trusted_view.as_ref().map_or(0, |_| self.trusted_places.len() as u64);
        let me = VoterState {
            agreement_running: self.pending,
            running: self.held.is_none().then_some(self.protocol.as_str()),
            group_size: size,
        };
        let mut verdict = verdict(&proposal, me, &self.catalogue, self.policy.as_ref());
        // The new session is made now, so that a commit cannot fail at this member alone.
        let mut prepared = None;
        if verdict == Verdict::Accept {
            match self.prepare_session(&proposal.to) {
                Ok(session) => prepared = Some(session),
                Err(e) => {
                    verdict = Verdict::Reject(format!("cannot start {}: {e}", proposal.to.tag()))
                }
            }
        }
        self.events.push_back(MemberEvent::Switch(SwitchEvent::Proposed(proposal.clone())));
        self.events
            .push_back(MemberEvent::Switch(SwitchEvent::Voted { id, verdict: verdict.clone() }));
        self.switch = SwitchState::Voting { proposal, accepted: BTreeSet::new(), prepared };
        self.send_control(None, &Control::Vote { id, verdict });
    }

    pub(super) fn on_vote(
        &mut self,
        from: &str,
        id: SwitchId,
        verdict: Verdict,
    ) -> Result<(), MemberError> {
        let members = self.trusted_view_in_full().map(|v| v.members).unwrap_or_default();
        let SwitchState::Voting { proposal, accepted, .. } = &mut self.switch else {
            return Ok(());
        };
        // Votes for an attempt already decided (after the first reject) are expected: ignored.
        if proposal.id != id || !members.iter().any(|m| m == from) {
            return Ok(());
        }
        match verdict {
            Verdict::Reject(reason) => {
                self.abort(id, format!("{from} rejected it: {reason}"), "rejected");
            }
            Verdict::Accept => {
                accepted.insert(from.to_owned());
                if members.iter().all(|m| accepted.contains(m)) {
                    self.commit()?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn abort(&mut self, id: SwitchId, reason: String, label: &str) {
        self.switch = SwitchState::Stable;
        self.last_abort = Some(self.now);
        self.events.push_back(MemberEvent::Switch(SwitchEvent::Aborted {
            id,
            reason,
            label: label.to_owned(),
        }));
    }

    pub(super) fn commit(&mut self) -> Result<(), MemberError> {
        let SwitchState::Voting { proposal, prepared, .. } =
            std::mem::replace(&mut self.switch, SwitchState::Stable)
        else {
            return Ok(());
        };
        // Every member accepted, this one included, so it had a key, a view and a session
        // ready: `verdict` refuses otherwise.
        let (Some(old), Some(trusted), Some(session)) =
            (self.keys.newest().cloned(), self.trusted_view_in_full(), prepared)
        else {
            let error = format!("switch {} committed without a key or session here", proposal.id);
            self.error(self.identity.id().to_owned().as_str(), error);
            return Ok(());
        };
        self.replace_session(session);
        self.protocol = proposal.to.tag();
        self.next_agreement();
        self.events.push_back(MemberEvent::Switch(SwitchEvent::Committed {
            id: proposal.id,
            to: proposal.to.name.clone(),
        }));
        self.switch =
            SwitchState::Committed { proposal, view_id: trusted.view_id, old, since: self.now };
        self.session.handle_view(plugin_now(self.now), &fresh_view(&trusted))?;
        self.drain_session();
        Ok(())
    }

    /// A key is installed: if it ends a committed switch, chains it to the key before the
    /// switch (when the switch's view still holds) and reports the switch complete. A vote
    /// under way goes on.
    pub(super) fn finish_switch(&mut self, key: &mut GroupKey) {
        let (epoch, view_id) = (key.epoch, key.view_id);
        let committed = match std::mem::replace(&mut self.switch, SwitchState::Stable) {
            SwitchState::Committed { proposal, view_id, old, since } => {
                Some((proposal, view_id, old, since))
            }
            other => {
                self.switch = other;
                None
            }
        };
        if let Some((proposal, commit_view, old, since)) = committed {
            // The next decision waits for every member's report after its own switch.
            self.reports.clear();
            self.last_report = None;
            let chained = commit_view == view_id;
            if chained {
                let ctx =
                    KeyContext { group: &self.group, view_id, protocol: &proposal.to.name, epoch };
                key.key = derive_switch_key(&key.key, &old.key, &ctx);
            }
            self.last_switch = self.now;
            let from = proposal.from.split('@').next().unwrap_or_default().to_owned();
            self.events.push_back(MemberEvent::Switch(SwitchEvent::Completed {
                from,
                to: proposal.to.name,
                label: proposal.label,
                epoch,
                commit_to_key: self.now.saturating_sub(since),
                chained,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_is_rejected_for_each_reason_and_accepted_otherwise() {
        let registry = Registry::default();
        let mut catalogue = Catalogue::from_registry(&registry);
        let proposal = Proposal {
            id: SwitchId { view_id: 1, counter: 0 },
            from: "tgdh@0.1.0".into(),
            to: PluginRef { name: "str".into(), version: "0.1.0".into(), sha256: "aa".into() },
            reason: "r".into(),
            label: "cost".into(),
            gain: 0.5,
        };
        let me =
            VoterState { agreement_running: false, running: Some("tgdh@0.1.0"), group_size: 4 };
        let reject = |v: Verdict| match v {
            Verdict::Reject(r) => r,
            Verdict::Accept => panic!("accepted"),
        };
        assert!(reject(verdict(&proposal, me, &catalogue, None)).contains("no plugin str"));
        struct Dummy;
        impl Protocol for Dummy {
            fn descriptor(&self) -> gka_plugin_api::Descriptor {
                panic!("verdict never calls this")
            }
            fn cost(
                &self,
                _: gka_plugin_api::EventKind,
                _: u64,
                _: u64,
            ) -> gka_plugin_api::CostFigures {
                gka_plugin_api::CostFigures::default()
            }
            fn new_session(
                &self,
                _: gka_plugin_api::SessionConfig,
            ) -> Result<Box<dyn gka_plugin_api::Session>, gka_plugin_api::SessionError>
            {
                panic!("verdict never calls this")
            }
        }
        let mut with = |version: &str, sha: &str| {
            catalogue.insert(
                Arc::new(Dummy),
                PluginRef { name: "str".into(), version: version.into(), sha256: sha.into() },
            );
            catalogue.clone()
        };
        assert!(reject(verdict(&proposal, me, &with("0.2.0", "aa"), None)).contains("0.2.0"));
        assert!(reject(verdict(&proposal, me, &with("0.1.0", "bb"), None)).contains("build"));
        let good = with("0.1.0", "aa");
        assert_eq!(verdict(&proposal, me, &good, None), Verdict::Accept);
        let busy = VoterState { agreement_running: true, ..me };
        assert!(reject(verdict(&proposal, busy, &good, None)).contains("running"));
        let other = VoterState { running: Some("bd@0.1.0"), ..me };
        assert!(reject(verdict(&proposal, other, &good, None)).contains("runs bd"));
        let none = VoterState { running: None, ..me };
        assert!(reject(verdict(&proposal, none, &good, None)).contains("not yet"));
        let deny =
            Policy::parse("mode = \"cost\"\ndeny = [\"str\"]", &crate::policy::KNOWN_PROTOCOLS)
                .unwrap();
        assert!(reject(verdict(&proposal, me, &good, Some(&deny))).contains("does not allow"));
        let small = Policy::parse(
            "mode = \"cost\"\n[bounds.str]\nmax_size = 3",
            &crate::policy::KNOWN_PROTOCOLS,
        )
        .unwrap();
        assert!(reject(verdict(&proposal, me, &good, Some(&small))).contains("does not allow"));
    }
}
