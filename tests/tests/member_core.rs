//! The member core over the sequencer, with every loaded plugin: signed envelopes, access
//! control by trust store, key agreement, encrypted data, a leave and a rejoin, and key
//! confirmation catching an insider's wrong element.

use std::collections::BTreeMap;

use gka_host::identity::{Identity, Scheme, TrustStore};
use gka_host::member::{MemberError, MemberEvent};
use gka_plugin_api::{Counters, Dh, GroupId, Output, Session, SessionError};
use gka_tests::core_net::Net;

fn run(protocol: &str) {
    let names = ["ann", "bob", "cat", "dan", "eve"];
    let identities: Vec<Identity> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Identity::generate(n, if i == 1 { Scheme::RsaPss } else { Scheme::Ed25519 }).unwrap()
        })
        .collect();
    let mallory = Identity::generate("mallory", Scheme::Ed25519).unwrap();
    let mut trust = TrustStore::default();
    for i in &identities {
        trust.insert(i.id(), i.public().clone());
    }
    let mut mallory_trust = trust.clone();
    mallory_trust.insert("mallory", mallory.public().clone());
    let mut net = Net::new();
    for i in identities {
        net.add(protocol, i, trust.clone());
    }
    net.settle();
    let fps = net.fingerprints(&names);
    assert!(fps[0].is_some(), "{protocol}: no key; ann saw {:?}", net.events.get("ann"));
    assert!(fps.iter().all(|f| f == &fps[0]), "{protocol}: members disagree: {fps:?}");

    // An intruder joins the group at the group layer but is in nobody's trust store.
    net.add(protocol, mallory, mallory_trust);
    net.settle();
    let fps2 = net.fingerprints(&names);
    assert!(fps2.iter().all(|f| f == &fps2[0]), "{protocol}: members disagree after intrusion");
    // The intruder sees the public protocol messages, but its own envelopes are refused and it
    // is not part of the agreement: whatever it computes is not the group's key.
    assert_ne!(
        net.members["mallory"].fingerprint(),
        fps2[0],
        "{protocol}: the intruder got the key"
    );

    // Data from ann reaches every honest member, decrypted; the intruder cannot read it.
    net.members.get_mut("ann").unwrap().send_data(b"hello group").expect("send data");
    let out: Vec<_> =
        std::iter::from_fn(|| net.members.get_mut("ann").unwrap().poll_outgoing()).collect();
    for o in out {
        net.seq.send("ann", o.view_id, None, o.bytes, net.now).unwrap();
    }
    net.settle();
    for n in &names[1..] {
        assert!(
            net.events[*n].iter().any(
                |e| matches!(e, MemberEvent::Data { plaintext, .. } if plaintext == b"hello group")
            ),
            "{protocol}: {n} did not decrypt"
        );
    }
    assert!(
        !net.events["mallory"].iter().any(|e| matches!(e, MemberEvent::Data { .. })),
        "{protocol}: the intruder decrypted"
    );
    // Mallory's own protocol messages, if any, were refused by the honest members.
    let rejected =
        net.events["ann"].iter().filter(|e| matches!(e, MemberEvent::Rejected(_))).count();
    let mallory_sent = net.events["mallory"].iter().any(|e| matches!(e, MemberEvent::View(_)));
    assert!(mallory_sent);
    let _ = rejected;

    // Forged, replayed and misaddressed envelopes are refused with their reason, and the
    // group keeps working.
    net.members.get_mut("ann").unwrap().send_data(b"once").expect("send data");
    let original = net.members.get_mut("ann").unwrap().poll_outgoing().expect("an envelope");
    let mut forged = original.bytes.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let mut garbage = original.bytes.clone();
    garbage.truncate(10);
    for bytes in [original.bytes.clone(), original.bytes.clone(), forged, garbage] {
        net.seq.send("ann", original.view_id, None, bytes, net.now).unwrap();
    }
    net.settle();
    let bob = &net.events["bob"];
    let labels: Vec<&str> = bob
        .iter()
        .filter_map(|e| if let MemberEvent::Rejected(r) = e { Some(r.label()) } else { None })
        .collect();
    for expected in ["replay", "bad_signature", "malformed"] {
        assert!(
            labels.contains(&expected),
            "{protocol}: bob did not refuse a {expected}: {labels:?}"
        );
    }
    let once = bob
        .iter()
        .filter(|e| matches!(e, MemberEvent::Data { plaintext, .. } if plaintext == b"once"))
        .count();
    assert_eq!(once, 1, "{protocol}: the replay was delivered");

    // A leave, then agreement again.
    net.seq.leave("cat", net.now).unwrap();
    net.members.remove("cat");
    net.settle();
    let rest = ["ann", "bob", "dan", "eve"];
    let fps3 = net.fingerprints(&rest);
    assert!(fps3.iter().all(|f| f == &fps3[0]), "{protocol}: disagree after leave");
    assert_ne!(fps3[0], fps2[0], "{protocol}: the key did not change on leave");
}

#[test]
fn bd() {
    run("bd");
}
#[test]
fn ckd() {
    run("ckd");
}
#[test]
fn gdh() {
    run("gdh");
}
#[test]
fn str() {
    run("str");
}
#[test]
fn tgdh() {
    run("tgdh");
}

/// A group of Ed25519 members `names` running `protocol` over the sequencer, all trusting each
/// other, agreed on a first key; the last `held_back` names are trusted but not started, and
/// their identities are returned.
fn agreed_net(
    protocol: &str,
    names: &[&str],
    held_back: usize,
) -> (Net, TrustStore, Vec<Identity>) {
    let mut identities: Vec<Identity> =
        names.iter().map(|n| Identity::generate(n, Scheme::Ed25519).unwrap()).collect();
    let mut trust = TrustStore::default();
    for i in &identities {
        trust.insert(i.id(), i.public().clone());
    }
    let later = identities.split_off(identities.len() - held_back);
    let mut net = Net::new();
    for i in identities {
        net.add(protocol, i, trust.clone());
    }
    net.settle();
    (net, trust, later)
}

/// From the delivery of a view in which a member left until the next key, no member sends data
/// under the key the departed member holds: every survivor tries to send after every delivery
/// once it saw the leave, and the epoch of every data envelope that reaches a member (the
/// envelope header's) is checked, for every protocol.
#[test]
fn no_data_goes_out_under_a_key_a_departed_member_holds() {
    for protocol in ["bd", "ckd", "gdh", "str", "tgdh"] {
        let (mut net, _, _) = agreed_net(protocol, &["ann", "bob", "cat", "dan"], 0);
        let old_epoch = net.members["ann"].epoch().expect("a first key");

        net.seq.leave("cat", net.now).unwrap();
        net.members.remove("cat");
        let mut saw_leave = std::collections::BTreeSet::new();
        let (mut refused, mut sent) = (0, 0);
        // Each survivor tries after every delivery while its sends last (data deliveries
        // would otherwise set off sends without end).
        let mut budget: BTreeMap<String, u32> = BTreeMap::new();
        let mut received = Vec::new();
        net.settle_with(|name, member| {
            while let Some(e) = member.poll_event() {
                match e {
                    MemberEvent::View(v) if v.left.iter().any(|l| l == "cat") => {
                        saw_leave.insert(name.to_owned());
                    }
                    MemberEvent::Data { from, epoch, plaintext } if plaintext == b"after" => {
                        received.push((from, name.to_owned(), epoch))
                    }
                    MemberEvent::Undecryptable { reason, .. } => panic!("{protocol}: {reason}"),
                    _ => {}
                }
            }
            let left = budget.entry(name.to_owned()).or_insert(12);
            if saw_leave.contains(name) && *left > 0 {
                *left -= 1;
                match member.send_data(b"after") {
                    Ok(()) => sent += 1,
                    Err(MemberError::DepartedHoldKey) => refused += 1,
                    Err(e) => panic!("{protocol}: {name}: {e}"),
                }
            }
        });
        for (from, to, epoch) in &received {
            assert!(
                *epoch > old_epoch,
                "{protocol}: {from} sent data to {to} under epoch {epoch}, the departed \
                 member's (old key's epoch {old_epoch})"
            );
        }
        assert!(refused > 0, "{protocol}: no send was refused between the leave and the key");
        assert!(sent > 0 && !received.is_empty(), "{protocol}: nothing sent under the new key");
    }
}

/// Data a member sent in a view that ended before the group layer ordered it (the sequencer
/// drops it) is not lost: once the new view has a key, the member sends it again under that
/// key, and every member receives it exactly once.
#[test]
fn data_cut_by_a_view_change_is_sent_again_under_the_new_key() {
    let (mut net, _, _) = agreed_net("tgdh", &["ann", "bob", "cat", "dan"], 0);
    let old_epoch = net.members["ann"].epoch().expect("a first key");
    net.events.clear();

    // ann sends; before the sequencer orders it, dan leaves and a new view forms there.
    net.members.get_mut("ann").unwrap().send_data(b"cut").expect("sent");
    let cut = net.members.get_mut("ann").unwrap().poll_outgoing().expect("an envelope");
    net.seq.leave("dan", net.now).unwrap();
    net.members.remove("dan");
    net.now += 100;
    net.seq.tick(net.now);
    let ordered = net.seq.send("ann", cut.view_id, None, cut.bytes, net.now).unwrap();
    assert!(!ordered, "the sequencer dropped the message of the ended view");
    net.settle();

    for n in ["ann", "bob", "cat"] {
        let got: Vec<u64> = net.events[n]
            .iter()
            .filter_map(|e| match e {
                MemberEvent::Data { epoch, plaintext, .. } if plaintext == b"cut" => Some(*epoch),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 1, "{n} received the cut message once: {got:?}");
        assert!(got[0] > old_epoch, "{n}: sent again under the new key, not dan's");
    }
    assert!(
        net.events["ann"].iter().any(|e| matches!(e, MemberEvent::Resent { count: 1 })),
        "ann reports the resend"
    );
}

/// Data a join view cut is not sent again (the joiner would read what was sent before it
/// joined): the sender is told instead.
#[test]
fn data_cut_by_a_join_is_reported_not_sent() {
    let names = ["ann", "bob", "cat", "zed"];
    let (mut net, trust, mut later) = agreed_net("tgdh", &names, 1);
    let zed = later.pop().expect("zed");
    net.events.clear();

    net.members.get_mut("ann").unwrap().send_data(b"before zed").expect("sent");
    let cut = net.members.get_mut("ann").unwrap().poll_outgoing().expect("an envelope");
    net.add("tgdh", zed, trust.clone());
    net.now += 100;
    net.seq.tick(net.now);
    assert!(!net.seq.send("ann", cut.view_id, None, cut.bytes, net.now).unwrap());
    net.settle();
    for n in names {
        let got = net.events.get(n).into_iter().flatten().any(
            |e| matches!(e, MemberEvent::Data { plaintext, .. } if plaintext == b"before zed"),
        );
        assert!(!got, "{n} received data sent before zed joined");
    }
    assert!(
        net.events["ann"].iter().any(|e| matches!(e, MemberEvent::NotResent { count: 1 })),
        "ann is told the message was not sent"
    );
}

/// A trusted insider's session: it follows the protocol, except that until its first key it
/// publishes every broadcast with the last group element in it squared: still a valid element
/// of the group's subgroup, so no check refuses it, but the wrong one. Its own session sees the
/// payloads it really computed (a modified member would not check its own echo).
struct Insider {
    inner: Box<dyn Session>,
    honest: bool,
    /// (what was published, what was computed), oldest first.
    published: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Insider {
    /// Squares the last element in `payload`: the last run of the group's element length that
    /// postcard prefixed with that length and that decodes as an element.
    fn tamper(mut payload: Vec<u8>) -> Vec<u8> {
        let group = GroupId::Ffdhe2048.params();
        let len = group.byte_len();
        let prefix = [(len as u8) | 0x80, (len >> 7) as u8];
        let found = (2..=payload.len().saturating_sub(len)).rev().find(|&at| {
            payload[at - 2..at] == prefix && group.decode_element(&payload[at..at + len]).is_ok()
        });
        let Some(at) = found else { return payload };
        let element = group.decode_element(&payload[at..at + len]).expect("checked above");
        let wrong = Dh::new(GroupId::Ffdhe2048).mul(&element, &element);
        payload[at..at + len].copy_from_slice(&group.encode_element(&wrong));
        payload
    }
}

impl Session for Insider {
    fn handle_view(
        &mut self,
        now_ms: u64,
        view: &gka_plugin_api::View,
    ) -> Result<(), SessionError> {
        self.inner.handle_view(now_ms, view)
    }

    fn handle_payload(
        &mut self,
        now_ms: u64,
        from: &str,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        match self.published.iter().position(|(sent, _)| sent == payload) {
            Some(i) => {
                let (_, computed) = self.published.remove(i);
                self.inner.handle_payload(now_ms, from, &computed)
            }
            None => self.inner.handle_payload(now_ms, from, payload),
        }
    }

    fn handle_refresh(&mut self, now_ms: u64) -> Result<(), SessionError> {
        self.inner.handle_refresh(now_ms)
    }

    fn poll_output(&mut self) -> Option<Output> {
        match self.inner.poll_output()? {
            Output::Broadcast(payload) if !self.honest => {
                let wrong = Self::tamper(payload.clone());
                self.published.push((wrong.clone(), payload));
                Some(Output::Broadcast(wrong))
            }
            Output::Key(key) => {
                self.honest = true;
                Some(Output::Key(key))
            }
            other => Some(other),
        }
    }

    fn counters(&self) -> Counters {
        self.inner.counters()
    }
}

/// An insider publishes a wrong element in the first agreement (a TGDH or STR blinded key, a
/// BD round value): without key confirmation the members would go on with different keys and
/// nothing would say so. With it, every honest member detects the mismatch within the round
/// (when the last tag is delivered), names members holding another key, and the group starts a
/// fresh agreement at that same point, which (the insider now honest) every member confirms.
#[test]
fn an_insiders_wrong_element_is_caught_by_key_confirmation() {
    for protocol in ["bd", "str", "tgdh"] {
        let names = ["ann", "bob", "cat", "dan"];
        let identities: Vec<Identity> =
            names.iter().map(|n| Identity::generate(n, Scheme::Ed25519).unwrap()).collect();
        let mut trust = TrustStore::default();
        for i in &identities {
            trust.insert(i.id(), i.public().clone());
        }
        let mut net = Net::new();
        for i in identities {
            // The newest member takes part in every protocol's first round.
            if i.id() == "dan" {
                net.add_with(protocol, i, trust.clone(), |inner| {
                    Box::new(Insider { inner, honest: false, published: Vec::new() })
                });
            } else {
                net.add(protocol, i, trust.clone());
            }
        }
        net.settle();
        let mut first_epochs = Vec::new();
        for name in ["ann", "bob", "cat"] {
            let events = &net.events[name];
            let mismatch = events.iter().find_map(|e| match e {
                MemberEvent::KeyMismatch { epoch, diverging, restarted } => {
                    Some((*epoch, diverging.clone(), *restarted))
                }
                _ => None,
            });
            let (epoch, diverging, restarted) = mismatch.unwrap_or_else(|| {
                panic!("{protocol}: {name} saw no mismatch: {events:?}; all: {:#?}", net.events)
            });
            assert!(!diverging.is_empty() && restarted, "{protocol}: {name}: {diverging:?}");
            assert!(!diverging.iter().any(|d| d == name), "{protocol}: {name} names itself");
            first_epochs.push(epoch);
            let confirmed_after = events
                .iter()
                .any(|e| matches!(e, MemberEvent::KeyConfirmed { epoch: later } if *later > epoch));
            assert!(confirmed_after, "{protocol}: {name}: no confirmed key after the restart");
        }
        assert!(first_epochs.iter().all(|e| *e == first_epochs[0]), "{protocol}: {first_epochs:?}");
        let fps = net.fingerprints(&names);
        assert!(fps[0].is_some() && fps.iter().all(|f| f == &fps[0]), "{protocol}: {fps:?}");
        assert!(
            net.members["ann"].epoch() > Some(first_epochs[0]),
            "{protocol}: the agreed key is the fresh agreement's"
        );
    }
}

/// A trusted member that is in the group layer's view but sends nothing (a stopped process, or a
/// connection that only heartbeats) stalls the agreement only until the deadline: the others
/// name it, exclude it at the same delivery, and agree without it on a key they all confirm.
#[test]
fn an_agreement_stalled_by_a_silent_member_ends_without_it() {
    for protocol in ["bd", "ckd", "gdh", "str", "tgdh"] {
        // dan is trusted and joins at the group layer, but its process says nothing.
        let (mut net, _, _dan) = agreed_net(protocol, &["ann", "bob", "cat", "dan"], 1);
        net.seq.join("dan", net.now).expect("join");
        let started = net.now;
        let mut excluded_at = None;
        while net.now < started + 20_000 && excluded_at.is_none() {
            net.run_ticking(net.now + 100);
            let all_excluded = ["ann", "bob", "cat"].iter().all(|n| {
                net.events[*n].iter().any(
                    |e| matches!(e, MemberEvent::Excluded { members, .. } if members == &["dan"]),
                )
            });
            if all_excluded {
                excluded_at = Some(net.now - started);
            }
        }
        let waited = excluded_at.unwrap_or_else(|| panic!("{protocol}: dan was never excluded"));
        let floor = gka_host::member::ControlTiming::default().stall_floor.as_millis() as u64;
        assert!((floor..floor + 2_000).contains(&waited), "{protocol}: excluded after {waited} ms");
        net.run_ticking(net.now + 1_000);
        let fps = net.fingerprints(&["ann", "bob", "cat"]);
        assert!(fps[0].is_some() && fps.iter().all(|f| f == &fps[0]), "{protocol}: {fps:?}");
        let epoch = net.members["ann"].epoch().expect("a key");
        for name in ["ann", "bob", "cat"] {
            let events = &net.events[name];
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, MemberEvent::KeyConfirmed { epoch: e } if *e == epoch)),
                "{protocol}: {name} did not confirm the key without dan: {events:?}"
            );
            assert!(
                events.iter().any(|e| matches!(e, MemberEvent::AgreementOverdue { silent, .. } if silent.iter().any(|m| m == "dan"))),
                "{protocol}: {name} did not name dan"
            );
        }
    }
}

/// Members that know each other by certificate (two domains' CAs, access rules, a revocation
/// list), for every protocol: a member of an untrusted domain and one presenting another's
/// certificate are in the view but never in the key, each with why; a newer revocation list
/// read by one member goes through the group, every member applies it at its delivery, and the
/// rest rekey without the revoked member, which cannot read what is sent after; a joiner whose
/// files still hold the older list gets the one in force before its first agreement.
mod by_certificate {
    use std::collections::BTreeSet;

    use gka_host::identity::access::AccessRules;
    use gka_host::identity::cert::{der_of_pem, DomainCa, Role};
    use gka_host::identity::{Identity, Scheme};
    use gka_host::member::MemberEvent;
    use gka_tests::core_net::Net;
    use time::OffsetDateTime;

    struct Domains {
        dir: tempfile::TempDir,
        red: DomainCa,
        blue: DomainCa,
        green: DomainCa,
        now: OffsetDateTime,
    }

    impl Domains {
        fn new() -> Self {
            let now = OffsetDateTime::now_utc();
            let make = |d, s| DomainCa::create(d, now, 30, [s; 16]).unwrap();
            let (red, blue, green) = (make("red", 1), make("blue", 2), make("green", 3));
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("red.crt"), red.cert_pem()).unwrap();
            std::fs::write(dir.path().join("blue.crt"), blue.cert_pem()).unwrap();
            Self { dir, red, blue, green, now }
        }

        /// The rules, with red's revocation list numbered `number` revoking `serials`.
        fn rules(&self, number: u64, serials: &[String]) -> AccessRules {
            let crl = self.red.revocation_list(serials, self.now, 7, number).unwrap();
            std::fs::write(self.dir.path().join(format!("red-{number}.crl")), crl).unwrap();
            let text = format!(
                "[domain.red]\nca = \"red.crt\"\ncrl = \"red-{number}.crl\"\n[domain.blue]\n\
                 ca = \"blue.crt\"\n[[group]]\nname = \"g\"\ndomains = [\"red\", \"blue\"]\n"
            );
            AccessRules::parse(&text, self.dir.path()).expect("valid rules")
        }

        fn issue(&self, ca: &DomainCa, who: &Identity, serial: u8) -> (Vec<u8>, String) {
            let roles: BTreeSet<Role> = [Role::Member].into();
            let issued = ca.issue(who.id(), who.public(), &roles, self.now, 10, [serial; 16]);
            let issued = issued.unwrap();
            (der_of_pem(&issued.pem, "CERTIFICATE").unwrap(), issued.info.serial)
        }
    }

    fn has(net: &Net, who: &str, pred: impl Fn(&MemberEvent) -> bool) -> bool {
        net.events.get(who).is_some_and(|events| events.iter().any(pred))
    }

    fn not_in_key(net: &Net, who: &str, member: &str, why: &str) -> bool {
        has(net, who, |e| {
            matches!(e, MemberEvent::NotInKey { members }
                if members.iter().any(|(m, w)| m == member && w.contains(why)))
        })
    }

    #[test]
    fn members_admit_refuse_and_revoke_by_certificate() {
        for protocol in ["bd", "ckd", "gdh", "str", "tgdh"] {
            let d = Domains::new();
            let ids: Vec<Identity> = ["ann", "bob", "cat", "dan", "gus", "eve"]
                .iter()
                .map(|n| Identity::generate(n, Scheme::Ed25519).unwrap())
                .collect();
            let [ann, bob, cat, dan, gus, eve] = ids.try_into().ok().unwrap();
            let (ann_cert, _) = d.issue(&d.red, &ann, 10);
            let (bob_cert, bob_serial) = d.issue(&d.red, &bob, 11);
            let (cat_cert, _) = d.issue(&d.blue, &cat, 12);
            let (dan_cert, _) = d.issue(&d.red, &dan, 13);
            let (gus_cert, _) = d.issue(&d.green, &gus, 14);
            let mut net = Net::new();
            net.add_certified(protocol, ann, &ann_cert, d.rules(1, &[]), d.now);
            net.add_certified(protocol, bob, &bob_cert, d.rules(1, &[]), d.now);
            net.add_certified(protocol, cat, &cat_cert, d.rules(1, &[]), d.now);
            net.add_certified(protocol, gus, &gus_cert, d.rules(1, &[]), d.now);
            // eve presents ann's certificate: it names ann, and eve cannot sign as ann.
            net.add_certified(protocol, eve, &ann_cert, d.rules(1, &[]), d.now);
            net.settle();
            let fps = net.fingerprints(&["ann", "bob", "cat"]);
            assert!(fps[0].is_some() && fps.iter().all(|f| f == &fps[0]), "{protocol}: {fps:?}");
            assert_eq!(net.fingerprints(&["gus", "eve"]), [None, None], "{protocol}");
            assert!(not_in_key(&net, "ann", "gus", "\"green\" is not trusted"), "{protocol}");
            assert!(not_in_key(&net, "cat", "eve", "certificate of \"ann\""), "{protocol}");
            let first = fps[0].clone();

            // ann's files get red's newer list revoking bob: it goes through the group.
            net.members
                .get_mut("ann")
                .unwrap()
                .set_access_rules(d.rules(2, std::slice::from_ref(&bob_serial)));
            net.settle();
            let fps = net.fingerprints(&["ann", "cat", "bob"]);
            assert!(fps[0].is_some() && fps[0] == fps[1], "{protocol}: {fps:?}");
            assert_ne!(fps[0], first, "{protocol}: the group rekeyed");
            assert_eq!(fps[2], first, "{protocol}: bob holds the old key only");
            for who in ["ann", "cat", "bob"] {
                assert!(
                    has(
                        &net,
                        who,
                        |e| matches!(e, MemberEvent::RevocationApplied { number: 2, from, .. } if from == "ann")
                    ),
                    "{protocol}: {who} did not apply the list"
                );
            }
            assert!(not_in_key(&net, "cat", "bob", "revoked"), "{protocol}");
            net.members.get_mut("ann").unwrap().send_data(b"after bob").expect("send");
            net.settle();
            let got = |who: &str| {
                has(
                    &net,
                    who,
                    |e| matches!(e, MemberEvent::Data { plaintext, .. } if plaintext == b"after bob"),
                )
            };
            assert!(got("cat") && !got("bob"), "{protocol}: only cat reads it");

            // dan's files still hold list 1: the members send list 2 with the view.
            net.add_certified(protocol, dan, &dan_cert, d.rules(1, &[]), d.now);
            net.settle();
            let fps = net.fingerprints(&["ann", "cat", "dan"]);
            assert!(fps[0].is_some() && fps.iter().all(|f| f == &fps[0]), "{protocol}: {fps:?}");
            assert!(not_in_key(&net, "dan", "bob", "revoked"), "{protocol}");
            assert_eq!(net.fingerprints(&["bob"]), [first], "{protocol}");
            let with_dan = fps[0].clone();

            // fay's files hold a list newer than the group's, revoking dan too: she sends it
            // with her join view, and everyone applies it there.
            let fay = Identity::generate("fay", Scheme::Ed25519).unwrap();
            let (fay_cert, _) = d.issue(&d.red, &fay, 15);
            let dan_serial = gka_host::identity::cert::read_cert(&dan_cert).unwrap().serial;
            let newer = d.rules(3, &[bob_serial.clone(), dan_serial]);
            net.add_certified(protocol, fay, &fay_cert, newer, d.now);
            net.settle();
            let fps = net.fingerprints(&["ann", "cat", "fay", "dan"]);
            assert!(
                fps[0].is_some() && fps[..3].iter().all(|f| f == &fps[0]),
                "{protocol}: {fps:?}"
            );
            assert_eq!(fps[3], with_dan, "{protocol}: dan holds the key before fay's view only");
            assert!(not_in_key(&net, "ann", "dan", "revoked"), "{protocol}");
        }
    }
}

/// Two refreshes handed to every member at once (the second while the first's agreement
/// runs): the member core queues the second as its plugin does, so each member installs two
/// new keys, at epochs 1.1 and 1.2 of the view, the same at every member, with nothing
/// refused on the way.
#[test]
fn two_refreshes_in_a_row_are_two_epochs_at_every_member() {
    for protocol in ["tgdh", "ckd"] {
        let (mut net, _, _) = agreed_net(protocol, &["a", "b", "c", "d"], 0);
        let now = std::time::Duration::from_millis(net.now);
        for m in net.members.values_mut() {
            m.refresh(now).expect("a first refresh");
            m.refresh(now).expect("a second, queued");
        }
        net.settle();
        let mut per_member = Vec::new();
        for (id, events) in &net.events {
            let keys: Vec<(u64, String)> = events
                .iter()
                .filter_map(|e| match e {
                    MemberEvent::Key { epoch, fingerprint, .. } => {
                        Some((*epoch, fingerprint.clone()))
                    }
                    _ => None,
                })
                .collect();
            let refused = events
                .iter()
                .any(|e| matches!(e, MemberEvent::Rejected(_) | MemberEvent::ProtocolError { .. }));
            assert!(!refused, "{protocol}: {id} refused something: {events:#?}");
            let epochs: Vec<String> =
                keys.iter().map(|(e, _)| gka_plugin_api::EpochLabel(*e).to_string()).collect();
            assert_eq!(epochs[epochs.len() - 2..], ["1.1", "1.2"], "{protocol}: {id}");
            per_member.push(keys[keys.len() - 2..].to_vec());
        }
        assert!(per_member.windows(2).all(|w| w[0] == w[1]), "{protocol}: {per_member:?}");
    }
}
