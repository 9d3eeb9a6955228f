//! The agreed protocol switch, on member cores over the in-memory network (virtual time, real
//! plugins, real signatures): a switch commits at every member with one protocol and one key;
//! a member without the plugin rejects it and nothing changes; a view change or a crash
//! during the vote aborts it everywhere alike; a crash after the commit is a cascade for the
//! new protocol; data sent across a switch is delivered exactly once; a joiner adopts the
//! protocol the group switched to; and a property test drives random latencies, membership
//! events and policy edits and checks that no two members ever hold different keys or
//! protocols for one epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gka_host::envelope::EnvelopeChecker;
use gka_host::group::MemNet;
use gka_host::group::{Delivery, Timing};
use gka_host::identity::{Identity, Scheme, TrustStore};
use gka_host::member::{Catalogue, SwitchEvent};
use gka_host::member::{ControlTiming, MemberCore, MemberEvent};
use gka_host::policy::{Policy, KNOWN_PROTOCOLS};
use gka_plugin_api::{GroupId, SessionConfig};
use gka_tests::linked;
use proptest::prelude::*;

/// Every plugin, or every plugin but `missing`.
fn catalogue(missing: Option<&str>) -> Arc<Catalogue> {
    Arc::new(match missing {
        Some(name) => linked::catalogue_without(name),
        None => linked::catalogue(),
    })
}

/// A fixed policy for `protocol` that switches as soon as it may.
fn fixed(protocol: &str) -> Policy {
    let text = format!(
        "mode = \"fixed\"\nfixed = \"{protocol}\"\n[stability]\nmin_interval_s = 0\n\
         abort_cooldown_s = 1\nmin_view_age_s = 0.2\n"
    );
    Policy::parse(&text, &KNOWN_PROTOCOLS).expect("valid policy")
}

const TICK_MS: u64 = 50;

struct Net {
    net: MemNet,
    trust: TrustStore,
    identities: BTreeMap<String, Identity>,
    members: BTreeMap<String, MemberCore>,
    crashed: BTreeSet<String>,
    log: BTreeMap<String, Vec<MemberEvent>>,
    /// Every data payload sent, by its text.
    sent: BTreeSet<String>,
    data_counter: u64,
}

impl Net {
    fn new(names: &[&str]) -> Self {
        let mut trust = TrustStore::default();
        let mut identities = BTreeMap::new();
        for n in names {
            let id = Identity::generate(n, Scheme::Ed25519).unwrap();
            trust.insert(n, id.public().clone());
            identities.insert(n.to_string(), id);
        }
        Self {
            net: MemNet::new(Timing { batch_ms: 20, failure_timeout_ms: 400 }),
            trust,
            identities,
            members: BTreeMap::new(),
            crashed: BTreeSet::new(),
            log: BTreeMap::new(),
            sent: BTreeSet::new(),
            data_counter: 0,
        }
    }

    /// Starts `name` running `protocol`, able to run what `catalogue` holds, with `policy`.
    fn start(&mut self, name: &str, protocol: &str, catalogue: Arc<Catalogue>, policy: Policy) {
        let identity = self.identities.remove(name).expect("an identity");
        let entry = catalogue.get(protocol).expect("the starting protocol is in the catalogue");
        let session = entry
            .protocol
            .new_session(SessionConfig {
                group_name: "g".into(),
                member_id: name.into(),
                dh_group: GroupId::Ffdhe2048,
                rng_seed: gka_tests::Harness::member_seed(3, name, 0),
            })
            .unwrap();
        let core = MemberCore::new(
            identity,
            "g",
            &entry.plugin.tag(),
            session,
            EnvelopeChecker::new("g", self.trust.clone()),
            gka_tests::Harness::member_seed(4, name, 0),
        )
        .with_catalogue(catalogue, GroupId::Ffdhe2048)
        .with_policy(policy)
        .with_timing(ControlTiming {
            probe_every: Duration::from_millis(500),
            report_every: Duration::from_secs(2),
            evaluate_every: Duration::from_millis(200),
            ..ControlTiming::default()
        });
        self.net.join(name).unwrap();
        self.members.insert(name.to_owned(), core);
    }

    fn crash(&mut self, name: &str) {
        self.net.crash(name);
        self.crashed.insert(name.to_owned());
    }

    fn leave(&mut self, name: &str) {
        self.net.leave(name).unwrap();
        self.members.remove(name);
    }

    fn live(&self) -> Vec<String> {
        self.members.keys().filter(|m| !self.crashed.contains(*m)).cloned().collect()
    }

    fn flush(&mut self, name: &str) {
        let core = self.members.get_mut(name).expect("member");
        let mut out = Vec::new();
        while let Some(o) = core.poll_outgoing() {
            out.push(o);
        }
        while let Some(e) = core.poll_event() {
            self.log.entry(name.to_owned()).or_default().push(e);
        }
        for o in out {
            // A message of a view that has ended is dropped by the group layer.
            let _ = self.net.send_in(name, o.view_id, o.to.as_deref(), o.bytes);
        }
    }

    /// Runs `ms` of virtual time, stopping early (after a whole millisecond) when `stop` holds.
    fn run_until(&mut self, ms: u64, mut stop: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..ms {
            self.net.advance(1);
            let now = Duration::from_millis(self.net.now_ms());
            for name in self.live() {
                let deliveries: Vec<Delivery> = self.net.take_delivered(&name);
                for d in deliveries {
                    let core = self.members.get_mut(&name).expect("member");
                    core.handle_delivery(now, d).expect("delivery");
                    self.flush(&name);
                }
                if self.net.now_ms().is_multiple_of(TICK_MS) {
                    self.members.get_mut(&name).expect("member").tick(now);
                    self.flush(&name);
                }
            }
            if stop(self) {
                return true;
            }
        }
        false
    }

    fn run(&mut self, ms: u64) {
        self.run_until(ms, |_| false);
    }

    /// Sends one data message from `name`, if it has a key.
    fn send_data(&mut self, name: &str) {
        self.data_counter += 1;
        let text = format!("{name}#{}", self.data_counter);
        let core = self.members.get_mut(name).expect("member");
        if core.send_data(text.as_bytes()).is_ok() {
            self.sent.insert(text);
        }
        self.flush(name);
    }

    fn settled(&self) -> bool {
        let live = self.live();
        let first = &self.members[&live[0]];
        live.iter().all(|m| {
            let c = &self.members[m];
            !c.agreement_running()
                && !c.switch_under_way()
                && c.fingerprint().is_some()
                && c.fingerprint() == first.fingerprint()
                && c.protocol() == first.protocol()
        })
    }

    /// (protocol, fingerprint, epoch) of every live member.
    fn state(&self) -> BTreeMap<String, (String, Option<String>, Option<u64>)> {
        self.live()
            .into_iter()
            .map(|m| {
                let c = &self.members[&m];
                (m, (c.protocol().to_owned(), c.fingerprint(), c.epoch()))
            })
            .collect()
    }

    fn switch_events(&self, name: &str) -> Vec<&SwitchEvent> {
        self.log
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|e| if let MemberEvent::Switch(s) = e { Some(s) } else { None })
            .collect()
    }

    /// Every member's keys agree epoch by epoch, and no data is undecryptable for a member
    /// that held the epoch's key, decrypted twice, or unknown.
    fn check_safety(&self) {
        let mut by_epoch: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
        for (member, events) in &self.log {
            let mut held = BTreeSet::new();
            let mut received = BTreeSet::new();
            for e in events {
                match e {
                    MemberEvent::Key { epoch, fingerprint, protocol, .. } => {
                        held.insert(*epoch);
                        let entry = by_epoch.entry(*epoch).or_insert_with(|| {
                            (fingerprint.clone(), protocol.clone(), member.clone())
                        });
                        assert_eq!(
                            (&entry.0, &entry.1),
                            (fingerprint, protocol),
                            "epoch {epoch:#x}: {member} and {} disagree",
                            entry.2
                        );
                    }
                    MemberEvent::Data { plaintext, .. } => {
                        let text = String::from_utf8(plaintext.clone()).unwrap();
                        assert!(self.sent.contains(&text), "{member} got unknown data {text}");
                        assert!(received.insert(text.clone()), "{member} got {text} twice");
                    }
                    MemberEvent::Undecryptable { epoch, reason, .. } => {
                        assert!(
                            !held.contains(epoch),
                            "{member} held epoch {epoch:#x} but could not decrypt: {reason}"
                        );
                    }
                    MemberEvent::Rejected(r) => panic!("{member} rejected an envelope: {r}"),
                    _ => {}
                }
            }
        }
    }
}

fn group(names: &[&str], protocol: &str, policy: &str) -> Net {
    let mut net = Net::new(names);
    for n in names {
        net.start(n, protocol, catalogue(None), fixed(policy));
    }
    net
}

#[test]
fn a_switch_commits_everywhere_and_chains_the_keys() {
    let names = ["ann", "bob", "cat", "dan"];
    let mut net = group(&names, "tgdh", "tgdh");
    assert!(net.run_until(20_000, Net::settled), "no initial agreement");
    let before = net.state();
    for n in names {
        net.members.get_mut(n).unwrap().set_policy(fixed("str"));
    }
    let switched = |net: &Net| net.settled() && net.members["ann"].protocol().starts_with("str@");
    assert!(net.run_until(20_000, switched), "no switch: {:?}", net.state());
    let after = net.state();
    let (protocol, fingerprint, epoch) = &after["ann"];
    assert!(protocol.starts_with("str@"));
    assert_ne!(fingerprint, &before["ann"].1, "the switch gives a new key");
    assert_eq!(*epoch, before["ann"].2.map(|e| e + 1), "the switch's key is the next epoch");
    for n in names {
        assert_eq!(after[n], after["ann"], "{n} differs");
        let events = net.switch_events(n);
        let completed: Vec<_> =
            events.iter().filter(|e| matches!(e, SwitchEvent::Completed { .. })).collect();
        assert_eq!(completed.len(), 1, "{n}: {events:?}");
        let SwitchEvent::Completed { from, to, label, chained, .. } = completed[0] else {
            unreachable!()
        };
        assert_eq!((from.as_str(), to.as_str(), label.as_str()), ("tgdh", "str", "fixed"));
        assert!(chained, "{n}: the key is derived with the previous epoch's key");
        assert!(events.iter().any(|e| matches!(e, SwitchEvent::PolicyApplied)));
    }
    // The oldest member decided and proposed; everyone voted yes.
    assert!(net.switch_events("ann").iter().any(|e| matches!(e, SwitchEvent::Decided { .. })));
    assert!(!net.switch_events("bob").iter().any(|e| matches!(e, SwitchEvent::Decided { .. })));
    net.check_safety();
}

#[test]
fn a_member_without_the_plugin_rejects_and_nothing_changes() {
    let names = ["ann", "bob", "cat"];
    let mut net = Net::new(&names);
    net.start("ann", "tgdh", catalogue(None), fixed("tgdh"));
    net.start("bob", "tgdh", catalogue(None), fixed("tgdh"));
    net.start("cat", "tgdh", catalogue(Some("bd")), fixed("tgdh"));
    assert!(net.run_until(20_000, Net::settled));
    let before = net.state();
    net.members.get_mut("ann").unwrap().set_policy(fixed("bd"));
    let aborted = |net: &Net| {
        names
            .iter()
            .all(|n| net.switch_events(n).iter().any(|e| matches!(e, SwitchEvent::Aborted { .. })))
    };
    assert!(net.run_until(10_000, aborted), "no abort: {:?}", net.switch_events("ann"));
    net.run(3_000);
    assert_eq!(net.state(), before, "protocol and key unchanged");
    for n in names {
        let events = net.switch_events(n);
        let SwitchEvent::Aborted { reason, label, .. } =
            events.iter().find(|e| matches!(e, SwitchEvent::Aborted { .. })).expect("aborted")
        else {
            unreachable!()
        };
        assert_eq!(label, "rejected");
        assert!(reason.contains("cat rejected it: no plugin bd"), "{n}: {reason}");
        assert!(!events.iter().any(|e| matches!(e, SwitchEvent::Committed { .. })), "{n}");
    }
    net.check_safety();
}

/// Runs until `who` has seen a proposal, then lets `fault` act before the votes are all in.
fn fault_during_vote(fault: impl FnOnce(&mut Net)) -> Net {
    let names = ["ann", "bob", "cat", "dan"];
    let mut net = Net::new(&["ann", "bob", "cat", "dan", "eve"]);
    for n in names {
        net.start(n, "tgdh", catalogue(None), fixed("tgdh"));
    }
    // Everything reaches dan late, so dan votes late: the vote cannot complete before the
    // fault (the group layer orders a view after the messages already sent, not after those
    // still to be sent).
    net.net.set_latency(None, "dan", 300);
    assert!(net.run_until(20_000, Net::settled));
    for n in names {
        net.members.get_mut(n).unwrap().set_policy(fixed("str"));
    }
    let proposed =
        |net: &Net| net.switch_events("ann").iter().any(|e| matches!(e, SwitchEvent::Proposed(_)));
    assert!(net.run_until(10_000, proposed));
    fault(&mut net);
    net
}

#[test]
fn a_view_change_during_the_vote_aborts_everywhere() {
    let mut net = fault_during_vote(|net| net.start("eve", "tgdh", catalogue(None), fixed("str")));
    net.run(5_000);
    for n in ["ann", "bob", "cat", "dan"] {
        let events = net.switch_events(n);
        let aborts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                SwitchEvent::Aborted { id, label, .. } => Some((*id, label.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(aborts.len(), 1, "{n}: {events:?}");
        assert_eq!(aborts[0].1, "view_change", "{n}");
    }
    // Eve runs the group's protocol; after the abort's cool-down the switch is proposed again,
    // in the five-member view, and commits.
    let switched = |net: &Net| net.settled() && net.members["ann"].protocol().starts_with("str@");
    assert!(net.run_until(20_000, switched), "no switch after the abort: {:?}", net.state());
    assert_eq!(net.live().len(), 5);
    net.check_safety();
}

#[test]
fn a_crash_during_the_vote_aborts_everywhere_and_the_survivors_agree() {
    let mut net = fault_during_vote(|net| net.crash("dan"));
    let survivors = ["ann", "bob", "cat"];
    let aborted = |net: &Net| {
        survivors
            .iter()
            .all(|n| net.switch_events(n).iter().any(|e| matches!(e, SwitchEvent::Aborted { .. })))
    };
    assert!(net.run_until(10_000, aborted), "{:?}", net.switch_events("ann"));
    for n in survivors {
        let events = net.switch_events(n);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, SwitchEvent::Aborted { label, .. } if label == "view_change")),
            "{n}: {events:?}"
        );
    }
    let switched = |net: &Net| net.settled() && net.members["ann"].protocol().starts_with("str@");
    assert!(net.run_until(20_000, switched), "{:?}", net.state());
    net.check_safety();
}

#[test]
fn a_crash_after_the_commit_is_a_cascade_for_the_new_protocol() {
    let names = ["ann", "bob", "cat", "dan"];
    let mut net = group(&names, "tgdh", "tgdh");
    assert!(net.run_until(20_000, Net::settled));
    for n in names {
        net.members.get_mut(n).unwrap().set_policy(fixed("gdh"));
    }
    let committed = |net: &Net| {
        net.switch_events("ann").iter().any(|e| matches!(e, SwitchEvent::Committed { .. }))
    };
    assert!(net.run_until(10_000, committed));
    net.crash("bob");
    let switched = |net: &Net| net.settled() && net.members["ann"].protocol().starts_with("gdh@");
    assert!(net.run_until(20_000, switched), "{:?}", net.state());
    assert_eq!(net.live().len(), 3);
    for n in ["ann", "cat", "dan"] {
        let events = net.switch_events(n);
        let completed = events.iter().find_map(|e| match e {
            SwitchEvent::Completed { chained, .. } => Some(*chained),
            _ => None,
        });
        // The key may come in the commit's view (before the failure detector noticed) or in
        // the next one; every member saw the same, so they agree either way.
        assert!(completed.is_some(), "{n}: {events:?}");
    }
    net.check_safety();
}

#[test]
fn data_sent_across_a_switch_is_delivered_exactly_once_and_a_joiner_adopts_the_protocol() {
    let names = ["ann", "bob", "cat", "dan", "eve"];
    let mut net = Net::new(&names);
    for n in &names[..4] {
        net.start(n, "tgdh", catalogue(None), fixed("tgdh"));
    }
    assert!(net.run_until(20_000, Net::settled));
    for n in &names[..4] {
        net.members.get_mut(*n).unwrap().set_policy(fixed("bd"));
    }
    // Everyone sends all through the switch.
    for _ in 0..60 {
        for n in &names[..4] {
            net.send_data(n);
        }
        net.run(50);
    }
    let switched = |net: &Net| net.settled() && net.members["ann"].protocol().starts_with("bd@");
    assert!(net.run_until(20_000, switched));
    net.run(2_000);
    for n in &names[..4] {
        let got: BTreeSet<String> = net.log[*n]
            .iter()
            .filter_map(|e| match e {
                MemberEvent::Data { plaintext, .. } => {
                    Some(String::from_utf8_lossy(plaintext).into())
                }
                _ => None,
            })
            .collect();
        assert_eq!(got, net.sent, "{n} did not get every message");
    }
    // A member configured for tgdh joins the group that now runs bd: it adopts bd.
    net.start("eve", "tgdh", catalogue(None), fixed("bd"));
    let five = |net: &Net| net.live().len() == 5 && net.settled();
    assert!(net.run_until(20_000, five), "{:?}", net.state());
    assert!(net.members["eve"].protocol().starts_with("bd@"));
    assert!(net
        .switch_events("eve")
        .iter()
        .any(|e| matches!(e, SwitchEvent::Adopted { protocol } if protocol.starts_with("bd@"))));
    net.check_safety();
}

#[test]
fn a_healed_side_whose_oldest_member_dies_before_announcing_still_converges() {
    let mut net = Net::new(&["ann", "bob", "cat"]);
    net.start("ann", "tgdh", catalogue(None), fixed("tgdh"));
    net.start("bob", "tgdh", catalogue(None), fixed("str"));
    net.start("cat", "tgdh", catalogue(None), fixed("tgdh"));
    // Bob's policy wants STR but ann, the oldest, decides: tgdh.
    assert!(net.run_until(20_000, Net::settled));
    assert!(net.members["bob"].protocol().starts_with("tgdh@"));
    // Alone in its partition, bob is its own oldest member and switches to STR.
    net.net.partition(&[vec!["ann".into(), "cat".into()], vec!["bob".into()]]).unwrap();
    let bob_alone = |net: &Net| {
        let b = &net.members["bob"];
        b.protocol().starts_with("str@") && !b.agreement_running() && !b.switch_under_way()
    };
    assert!(net.run_until(20_000, bob_alone), "{:?}", net.switch_events("bob"));
    net.run(1_000);
    // The heal, and ann dies before it can announce the merged view's protocol: cat, which
    // was with ann, must not go on with tgdh while bob runs STR.
    net.net.heal();
    net.crash("ann");
    let together = |net: &Net| net.live().len() == 2 && net.settled();
    assert!(net.run_until(30_000, together), "{:?}", net.state());
    let state = net.state();
    assert_eq!(state["bob"], state["cat"]);
    net.check_safety();
}

#[derive(Debug, Clone)]
enum Action {
    /// Every member's policy now asks for this protocol.
    Policy(&'static str),
    /// A new member joins, configured for this protocol.
    Join(&'static str),
    /// The n-th live member (mod the count) leaves.
    Leave(usize),
    /// The n-th live member crashes.
    Crash(usize),
    /// Every live member sends data.
    Data,
    /// Policies ask for another protocol, and when the switch is proposed the n-th live
    /// member crashes right away.
    CrashAtProposal(usize),
    /// Policies ask for another protocol, and when the switch is proposed a new member joins
    /// right away, configured for this protocol.
    JoinAtProposal(&'static str),
}

const PROTOCOLS: [&str; 5] = ["bd", "ckd", "gdh", "str", "tgdh"];

fn action() -> impl Strategy<Value = Action> {
    let protocol = prop::sample::select(vec!["bd", "ckd", "gdh", "str", "tgdh"]);
    prop_oneof![
        3 => protocol.clone().prop_map(Action::Policy),
        1 => protocol.prop_map(Action::Join),
        1 => (0usize..8).prop_map(Action::Leave),
        1 => (0usize..8).prop_map(Action::Crash),
        2 => Just(Action::Data),
        1 => (0usize..8).prop_map(Action::CrashAtProposal),
        1 => prop::sample::select(vec!["bd", "str", "tgdh"]).prop_map(Action::JoinAtProposal),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random link latencies, membership events and policy edits at random times: at every
    /// epoch every member that installed it holds the same key and protocol, no data is lost
    /// to a key disagreement or delivered twice, and in the end the group converges.
    #[test]
    fn random_interleavings_never_split_protocol_or_key(
        latencies in prop::collection::vec(0u64..150, 16),
        steps in prop::collection::vec((0u64..800, action()), 1..8),
    ) {
        let names = ["m0", "m1", "m2", "m3", "j0", "j1", "j2", "j3", "j4", "j5", "j6"];
        let mut net = Net::new(&names);
        for (i, a) in names.iter().enumerate() {
            for (j, b) in names[..4].iter().enumerate() {
                net.net.set_latency(Some(a), b, latencies[(i * 4 + j) % latencies.len()]);
            }
        }
        for n in &names[..4] {
            net.start(n, "tgdh", catalogue(None), fixed("tgdh"));
        }
        net.run(1_000);
        let mut joiners = names[4..].iter();
        let mut policy = "tgdh";
        let proposals = |net: &Net| -> usize {
            net.log
                .keys()
                .map(|m| {
                    net.switch_events(m)
                        .iter()
                        .filter(|e| matches!(e, SwitchEvent::Proposed(_)))
                        .count()
                })
                .sum()
        };
        for (wait, action) in steps {
            net.run(wait);
            if matches!(action, Action::CrashAtProposal(_) | Action::JoinAtProposal(_)) {
                let next = PROTOCOLS.iter().position(|p| *p == policy).unwrap_or(0) + 1;
                policy = PROTOCOLS[(next + wait as usize) % PROTOCOLS.len()];
                for n in net.live() {
                    net.members.get_mut(&n).unwrap().set_policy(fixed(policy));
                }
                let seen = proposals(&net);
                net.run_until(5_000, |net| proposals(net) > seen);
            }
            let live = net.live();
            match action {
                Action::Policy(p) => {
                    policy = p;
                    for n in net.live() {
                        net.members.get_mut(&n).unwrap().set_policy(fixed(p));
                    }
                }
                Action::Join(p) => {
                    if let Some(j) = joiners.next() {
                        net.start(j, p, catalogue(None), fixed(policy));
                    }
                }
                Action::JoinAtProposal(p) => {
                    if let Some(j) = joiners.next() {
                        net.start(j, p, catalogue(None), fixed(policy));
                    }
                }
                Action::Leave(i) if live.len() > 2 => net.leave(&live[i % live.len()]),
                Action::Crash(i) | Action::CrashAtProposal(i) if live.len() > 2 => {
                    net.crash(&live[i % live.len()])
                }
                Action::Leave(_) | Action::Crash(_) | Action::CrashAtProposal(_) => {}
                Action::Data => {
                    for n in live {
                        net.send_data(&n);
                    }
                }
            }
        }
        let converged = |net: &Net| {
            net.settled() && net.members[&net.live()[0]].protocol_name() == policy
        };
        prop_assert!(net.run_until(60_000, converged), "no convergence: {:?}", net.state());
        net.check_safety();
    }
}
