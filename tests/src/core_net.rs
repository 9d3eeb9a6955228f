//! Member cores over the sequencer, with no IO and virtual time: the harness of
//! `tests/tests/member_core.rs` (trust stores) and its certificate tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use gka_host::envelope::EnvelopeChecker;
use gka_host::group::{Sequencer, Timing};
use gka_host::identity::access::AccessRules;
use gka_host::identity::{Identity, TrustStore};
use gka_host::member::{MemberCore, MemberEvent};
use gka_plugin_api::{GroupId, Session, SessionConfig};

use crate::linked;

/// Member cores of group "g" over one sequencer.
pub struct Net {
    /// The group layer.
    pub seq: Sequencer,
    /// The members' cores.
    pub members: BTreeMap<String, MemberCore>,
    /// What each member reported.
    pub events: BTreeMap<String, Vec<MemberEvent>>,
    /// Virtual time, ms.
    pub now: u64,
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

impl Net {
    /// An empty group layer with a 20 ms batching window and no failure timeout to speak of.
    pub fn new() -> Self {
        Self {
            seq: Sequencer::new(
                Timing { batch_ms: 20, failure_timeout_ms: 10_000_000 },
                gka_host::group::GroupRun::default(),
            ),
            members: BTreeMap::new(),
            events: BTreeMap::new(),
            now: 0,
        }
    }

    /// A member running `protocol` that trusts the keys in `trust`; it joins now.
    pub fn add(&mut self, protocol: &str, identity: Identity, trust: TrustStore) {
        self.add_with(protocol, identity, trust, |s| s);
    }

    /// As [`Net::add`], with the member's session wrapped by `wrap`.
    pub fn add_with(
        &mut self,
        protocol: &str,
        identity: Identity,
        trust: TrustStore,
        wrap: impl FnOnce(Box<dyn Session>) -> Box<dyn Session>,
    ) {
        let id = identity.id().to_owned();
        let core = core(protocol, identity, trust, wrap);
        self.seq.join(&id, self.now).expect("join");
        self.members.insert(id, core);
    }

    /// A member that knows its peers by certificate under `rules` (checked at `wall`), and
    /// presents `certificate` (DER) when it joins.
    pub fn add_certified(
        &mut self,
        protocol: &str,
        identity: Identity,
        certificate: &[u8],
        rules: AccessRules,
        wall: time::OffsetDateTime,
    ) {
        let id = identity.id().to_owned();
        let core =
            core(protocol, identity, TrustStore::default(), |s| s).with_access_rules(rules, wall);
        self.seq.join_presenting(&id, Some(Arc::from(certificate)), self.now).expect("join");
        self.members.insert(id, core);
    }

    /// Delivers everything and lets batching windows close, until nothing moves.
    pub fn settle(&mut self) {
        self.settle_with(|_, _| {});
    }

    /// As [`Net::settle`], calling `after` with each member right after each delivery to it
    /// (what it sends then goes out with the rest).
    pub fn settle_with(&mut self, mut after: impl FnMut(&str, &mut MemberCore)) {
        // What members sent outside a delivery (an application call) goes out first.
        for (id, m) in &mut self.members {
            while let Some(o) = m.poll_outgoing() {
                self.seq.send(id, o.view_id, o.to.as_deref(), o.bytes, self.now).expect("send");
            }
        }
        for _ in 0..100_000 {
            self.seq.tick(self.now);
            let mut moved = false;
            while let Some((to, delivery)) = self.seq.poll_delivery() {
                moved = true;
                let Some(m) = self.members.get_mut(&to) else { continue };
                m.handle_delivery(std::time::Duration::from_millis(self.now), delivery)
                    .expect("delivery");
                after(&to, m);
                let mut out = Vec::new();
                while let Some(o) = m.poll_outgoing() {
                    out.push(o);
                }
                while let Some(e) = m.poll_event() {
                    self.events.entry(to.clone()).or_default().push(e);
                }
                for o in out {
                    self.seq
                        .send(&to, o.view_id, o.to.as_deref(), o.bytes, self.now)
                        .expect("send");
                }
            }
            if !moved {
                match self.seq.next_deadline() {
                    Some(d) if d > self.now && d < 1_000_000 => self.now = d,
                    _ => return,
                }
            }
        }
        panic!("no quiescence");
    }

    /// Lets virtual time pass until `until_ms` in steps of 100 ms, ticking every core (as the
    /// runtime does) and delivering what that sends.
    pub fn run_ticking(&mut self, until_ms: u64) {
        while self.now < until_ms {
            self.now += 100;
            let now = std::time::Duration::from_millis(self.now);
            for (id, m) in &mut self.members {
                m.tick(now);
                while let Some(o) = m.poll_outgoing() {
                    self.seq.send(id, o.view_id, o.to.as_deref(), o.bytes, self.now).expect("send");
                }
                while let Some(e) = m.poll_event() {
                    self.events.entry(id.clone()).or_default().push(e);
                }
            }
            self.settle();
        }
    }

    /// The fingerprints of the members' newest keys.
    pub fn fingerprints(&self, ids: &[&str]) -> Vec<Option<String>> {
        ids.iter().map(|id| self.members[*id].fingerprint()).collect()
    }
}

/// A member core of group "g" running `protocol`, with seeds fixed by its id.
fn core(
    protocol: &str,
    identity: Identity,
    trust: TrustStore,
    wrap: impl FnOnce(Box<dyn Session>) -> Box<dyn Session>,
) -> MemberCore {
    let plugin = linked::protocol(protocol);
    let descriptor = plugin.descriptor();
    let id = identity.id().to_owned();
    let session = plugin
        .new_session(SessionConfig {
            group_name: "g".into(),
            member_id: id.clone(),
            dh_group: GroupId::Ffdhe2048,
            rng_seed: crate::Harness::member_seed(7, &id, 0),
        })
        .expect("session");
    let name = format!("{}@{}", descriptor.name, descriptor.version);
    let checker = EnvelopeChecker::new("g", trust);
    let seed = crate::Harness::member_seed(8, &id, 0);
    MemberCore::new(identity, "g", &name, wrap(session), checker, seed).with_protocol(plugin)
}
