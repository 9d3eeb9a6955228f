//! Membership scenarios every plugin must pass, as plain functions over a protocol factory.
//! [`scenario_tests!`](crate::scenario_tests) turns them into one `#[test]` each.

use gka_plugin_api::{GroupKey, Protocol};

use crate::harness::{strs, ComponentId, Harness};

/// Makes a fresh protocol instance for each harness (a plugin linked in, or loaded).
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn Protocol>;

fn settle(h: &mut Harness, c: ComponentId, what: &str) -> GroupKey {
    match h.settle(c) {
        Ok((k, _)) => k,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn group(make: Factory<'_>, prefix: &str, n: usize, seed: u64) -> (Harness, ComponentId, GroupKey) {
    let mut h = Harness::new(make(), seed);
    let names = Harness::names(prefix, n);
    let c = h.create(&strs(&names));
    let k = settle(&mut h, c, &format!("initial agreement of {n}"));
    (h, c, k)
}

/// Initial agreement among `n` members.
pub fn initial(make: Factory<'_>, n: usize) {
    let (h, c, key) = group(make, "m", n, n as u64);
    assert_eq!(h.members(c).len(), n);
    assert_eq!(key.view_id, h.view_id(c));
}

/// One member joins a group of five; the joiner gets the new key, and it is new.
pub fn join(make: Factory<'_>) {
    let (mut h, c, k0) = group(make, "m", 5, 11);
    h.join(c, &["new"]);
    let k1 = settle(&mut h, c, "join");
    assert_ne!(k0.key, k1.key);
    assert_eq!(h.keys_of("new").len(), 1, "the joiner holds only the new key");
}

/// Each member of a group of six leaves in turn (so the sponsor and the controller leave too);
/// the departed member never receives a later key.
pub fn leave_every_position(make: Factory<'_>) {
    for pos in 0..6 {
        let (mut h, c, k0) = group(make, "m", 6, 20 + pos as u64);
        let leaver = h.members(c)[pos].clone();
        let before = h.keys_of(&leaver);
        h.leave(c, &[&leaver]);
        let k1 = settle(&mut h, c, &format!("leave of position {pos}"));
        assert_ne!(k0.key, k1.key);
        assert!(!h.is_member(&leaver));
        assert!(!before.iter().any(|k| k.key == k1.key), "leaver knew the new key");
        // And the group keeps working after the leave.
        h.join(c, &["late"]);
        settle(&mut h, c, &format!("join after leave of position {pos}"));
    }
}

/// m members join a group of five at once.
pub fn merge(make: Factory<'_>, m: usize) {
    let (mut h, c, k0) = group(make, "m", 5, 30 + m as u64);
    let newcomers = Harness::names("new", m);
    h.join(c, &strs(&newcomers));
    let k1 = settle(&mut h, c, &format!("merge of {m}"));
    assert_ne!(k0.key, k1.key);
    assert_eq!(h.members(c).len(), 5 + m);
}

/// p members of a group of eight leave at once (oldest, newest and middle members mixed).
pub fn partition(make: Factory<'_>, p: usize) {
    let (mut h, c, k0) = group(make, "m", 8, 40 + p as u64);
    let members = h.members(c);
    // Spread the leavers: every (8 / p)-th member, starting with the newest.
    let leavers: Vec<String> = (0..p).map(|i| members[7 - (i * 8 / p) % 8].clone()).collect();
    h.leave(c, &strs(&leavers));
    let k1 = settle(&mut h, c, &format!("partition of {p}"));
    assert_ne!(k0.key, k1.key);
    assert_eq!(h.members(c).len(), 8 - p);
}

/// A group of eight splits in two; each side rekeys, then changes again on its own (a refresh
/// on one side, a join on the other); then the two sides merge back with their own state.
pub fn heal(make: Factory<'_>) {
    let (mut h, c, k0) = group(make, "m", 8, 50);
    let members = h.members(c);
    let (a, b): (Vec<&str>, Vec<&str>) = (
        members.iter().step_by(2).map(String::as_str).collect(),
        members.iter().skip(1).step_by(2).map(String::as_str).collect(),
    );
    let sides = h.split(c, &[&a, &b]);
    let ka = settle(&mut h, sides[0], "side A after split");
    let kb = settle(&mut h, sides[1], "side B after split");
    assert_ne!(ka.key, kb.key);
    assert_ne!(ka.key, k0.key);
    h.refresh(sides[0]);
    settle(&mut h, sides[0], "side A refresh");
    h.join(sides[1], &["extra"]);
    settle(&mut h, sides[1], "side B join");
    let healed = h.merge(&sides);
    let k = settle(&mut h, healed, "heal");
    assert_eq!(h.members(healed).len(), 9);
    assert_ne!(k.key, ka.key);
}

/// A key refresh for an unchanged group.
pub fn refresh(make: Factory<'_>) {
    let (mut h, c, k0) = group(make, "m", 6, 60);
    h.refresh(c);
    let k1 = settle(&mut h, c, "refresh");
    assert_ne!(k0.key, k1.key);
    assert_eq!(k1.view_id, k0.view_id);
    assert!(k1.epoch > k0.epoch);
    h.refresh(c);
    let k2 = settle(&mut h, c, "second refresh");
    assert!(k2.epoch > k1.epoch);
}

/// A second view arrives after any number of delivered messages of the first event's
/// agreement (so at every round, and inside rounds), for several kinds of first and second
/// event.
pub fn cascade_at_every_round(make: Factory<'_>) {
    type Event = fn(&mut Harness, ComponentId, usize);
    let firsts: [(&str, Event); 4] = [
        ("merge", |h, c, i| h.join(c, &[&format!("a{i}"), &format!("b{i}")])),
        ("leave", |h, c, _| {
            let victim = h.members(c)[1].clone();
            h.leave(c, &[&victim]);
        }),
        ("partition", |h, c, _| {
            let m = h.members(c);
            let (x, y) = (m[0].clone(), m[m.len() - 1].clone());
            h.leave(c, &[&x, &y]);
        }),
        ("refresh", |h, c, _| h.refresh(c)),
    ];
    let seconds: [(&str, Event); 3] = [
        ("join", |h, c, i| h.join(c, &[&format!("c{i}")])),
        ("leave-newest", |h, c, _| {
            let m = h.members(c);
            let newest = m[m.len() - 1].clone();
            h.leave(c, &[&newest]);
        }),
        ("leave-oldest", |h, c, _| {
            let oldest = h.members(c)[0].clone();
            h.leave(c, &[&oldest]);
        }),
    ];
    for (fname, first) in firsts {
        // How many messages the first event needs when undisturbed.
        let (mut h, c, _) = group(make, "m", 6, 70);
        first(&mut h, c, 0);
        let m = h.run(c).expect("undisturbed first event");
        let messages = (m.figures.unicasts + m.figures.broadcasts) as usize;
        for (sname, second) in seconds {
            for cut in 0..=messages {
                let what = format!("{fname} cut after {cut} of {messages} messages by {sname}");
                let (mut h, c, _) = group(make, "m", 6, 70);
                first(&mut h, c, 0);
                h.run_messages(c, cut);
                second(&mut h, c, 1);
                settle(&mut h, c, &what);
            }
        }
    }
}

/// Every member of `c` holds the same key for each epoch of the current view that any of
/// them holds, and each holds all of them: `epochs` keys in all. Returns them, oldest first.
fn same_key_for_every_epoch(
    h: &Harness,
    c: ComponentId,
    epochs: usize,
    what: &str,
) -> Vec<GroupKey> {
    let view_id = h.view_id(c);
    let members = h.members(c);
    let of = |m: &String| -> Vec<GroupKey> {
        h.keys_of(m).into_iter().filter(|k| k.view_id == view_id).collect()
    };
    let first = of(&members[0]);
    assert_eq!(
        first.len(),
        epochs,
        "{what}: {} holds {} keys of this view",
        members[0],
        first.len()
    );
    for m in &members[1..] {
        let keys = of(m);
        let same = keys.len() == first.len()
            && keys.iter().zip(&first).all(|(a, b)| a.epoch == b.epoch && a.key == b.key);
        assert!(same, "{what}: {m} and {} hold different keys for the view's epochs", members[0]);
    }
    let epochs: Vec<u64> = first.iter().map(|k| k.epoch).collect();
    assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{what}: epochs grow: {epochs:?}");
    first
}

/// A membership event or refresh, applied to a component.
type Event = fn(&mut Harness, ComponentId);

/// How many messages `event` needs on an undisturbed group of six (each broadcast counts
/// once).
fn messages_of(make: Factory<'_>, event: Event) -> usize {
    let (mut h, c, _) = group(make, "m", 6, 90);
    event(&mut h, c);
    let mut n = 0;
    while h.deliver_one(c) {
        n += 1;
    }
    h.take_errors().expect("an undisturbed event");
    n
}

/// A refresh arrives after every possible number of delivered messages of a running
/// agreement (a refresh's, and a join's): every refresh yields one new epoch after the running
/// agreement's, and every member holds the same key for every epoch, whether the protocol's
/// last messages are broadcasts or unicasts (see the plugin API's completion contract).
pub fn refresh_after_every_delivery(make: Factory<'_>) {
    let firsts: [(&str, Event); 2] =
        [("refresh", |h, c| h.refresh(c)), ("join", |h, c| h.join(c, &["new"]))];
    for (name, first) in firsts {
        let messages = messages_of(make, first);
        for cut in 0..=messages {
            let what = format!("a refresh after {cut} of the {messages} messages of a {name}");
            let (mut h, c, _) = group(make, "m", 6, 90);
            first(&mut h, c);
            h.run_messages(c, cut);
            h.refresh(c);
            let last = settle(&mut h, c, &what);
            // A refresh after the initial key: the initial key and two more. A join's view
            // starts its own epochs: its key and the refresh's.
            let epochs = if name == "refresh" { 3 } else { 2 };
            let keys = same_key_for_every_epoch(&h, c, epochs, &what);
            assert_eq!(keys.last().map(|k| k.key.clone()), Some(last.key), "{what}");
        }
    }
}

/// Two refreshes in a row, handed over together: two new epochs, one after the other, with
/// the same keys at every member; then a third after some of their messages.
pub fn two_refreshes_in_a_row(make: Factory<'_>) {
    let (mut h, c, k0) = group(make, "m", 5, 95);
    h.refresh(c);
    h.refresh(c);
    let k2 = settle(&mut h, c, "two refreshes in a row");
    let keys = same_key_for_every_epoch(&h, c, 3, "two refreshes in a row");
    assert_eq!(keys[0].key, k0.key);
    assert!(keys[1].key != keys[0].key && keys[2].key != keys[1].key, "each refresh is new");
    assert_eq!(k2.epoch, keys[2].epoch);
    h.refresh(c);
    h.run_messages(c, 1);
    h.refresh(c);
    settle(&mut h, c, "two more, the second after one message");
    same_key_for_every_epoch(&h, c, 5, "two more refreshes");
}

/// Three views in a row, each cutting the agreement of the one before after `cut` messages.
pub fn three_cascades_in_a_row(make: Factory<'_>) {
    for cut in 0..6 {
        let (mut h, c, _) = group(make, "m", 5, 80 + cut as u64);
        h.join(c, &["x1", "x2"]);
        h.run_messages(c, cut);
        let victim = h.members(c)[2].clone();
        h.leave(c, &[&victim]);
        h.run_messages(c, cut);
        h.join(c, &["x3"]);
        h.run_messages(c, cut);
        let m = h.members(c);
        h.leave(c, &[&m[0]]);
        settle(&mut h, c, &format!("three cascades cut at {cut}"));
    }
}

/// Generates one `#[test]` per scenario for the protocol made by `$make` (an expression that
/// evaluates to a `Box<dyn Protocol>`).
#[macro_export]
macro_rules! scenario_tests {
    ($make:expr) => {
        fn __make() -> Box<dyn $crate::Protocol> {
            $make
        }
        #[test]
        fn initial_agreement_of_1() {
            $crate::scenarios::initial(&__make, 1)
        }
        #[test]
        fn initial_agreement_of_2() {
            $crate::scenarios::initial(&__make, 2)
        }
        #[test]
        fn initial_agreement_of_3() {
            $crate::scenarios::initial(&__make, 3)
        }
        #[test]
        fn initial_agreement_of_5() {
            $crate::scenarios::initial(&__make, 5)
        }
        #[test]
        fn initial_agreement_of_8() {
            $crate::scenarios::initial(&__make, 8)
        }
        #[test]
        fn initial_agreement_of_33() {
            $crate::scenarios::initial(&__make, 33)
        }
        #[test]
        fn join() {
            $crate::scenarios::join(&__make)
        }
        #[test]
        fn leave_of_every_position() {
            $crate::scenarios::leave_every_position(&__make)
        }
        #[test]
        fn merge_of_1() {
            $crate::scenarios::merge(&__make, 1)
        }
        #[test]
        fn merge_of_3() {
            $crate::scenarios::merge(&__make, 3)
        }
        #[test]
        fn merge_of_7() {
            $crate::scenarios::merge(&__make, 7)
        }
        #[test]
        fn partition_of_1() {
            $crate::scenarios::partition(&__make, 1)
        }
        #[test]
        fn partition_of_3() {
            $crate::scenarios::partition(&__make, 3)
        }
        #[test]
        fn partition_of_half() {
            $crate::scenarios::partition(&__make, 4)
        }
        #[test]
        fn heal_of_two_rekeyed_sides() {
            $crate::scenarios::heal(&__make)
        }
        #[test]
        fn refresh() {
            $crate::scenarios::refresh(&__make)
        }
        #[test]
        fn refresh_after_every_delivery() {
            $crate::scenarios::refresh_after_every_delivery(&__make)
        }
        #[test]
        fn two_refreshes_in_a_row() {
            $crate::scenarios::two_refreshes_in_a_row(&__make)
        }
        #[test]
        fn cascade_at_every_round() {
            $crate::scenarios::cascade_at_every_round(&__make)
        }
        #[test]
        fn three_cascades_in_a_row() {
            $crate::scenarios::three_cascades_in_a_row(&__make)
        }
        #[test]
        fn cost_model_matches_measurements() {
            $crate::scenarios::cost_model_matches(&__make)
        }
        #[test]
        fn hostile_payloads_are_refused_and_the_group_converges() {
            $crate::scenarios::hostile_payloads(&__make)
        }
    };
}

/// Reads a LEB128 (postcard varint) u64 at `at`; returns the value and the next offset.
fn read_varint(bytes: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(at)?;
        at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The payload with its sealed view id and epoch replaced (format byte, two varints, body).
fn reseal(payload: &[u8], view_id: impl Fn(u64) -> u64, epoch: impl Fn(u64) -> u64) -> Vec<u8> {
    let (v, at) = read_varint(payload, 1).expect("view id");
    let (e, at) = read_varint(payload, at).expect("epoch");
    let mut out = vec![payload[0]];
    write_varint(view_id(v), &mut out);
    write_varint(epoch(e), &mut out);
    out.extend_from_slice(&payload[at..]);
    out
}

/// Offsets of fixed-length element encodings (a varint length prefix equal to the group's
/// byte length, then that many bytes) in a payload.
fn element_offsets(payload: &[u8], len: usize) -> Vec<usize> {
    let mut prefix = Vec::new();
    write_varint(len as u64, &mut prefix);
    (0..payload.len().saturating_sub(prefix.len() + len - 1))
        .filter(|&i| payload[i..].starts_with(&prefix))
        .map(|i| i + prefix.len())
        .collect()
}

/// Hostile payloads (truncated, oversized, wrong view, wrong epoch, the elements 0, 1, p − 1
/// and p, a non-member sender) are each refused with a typed error by a member in the middle
/// of a join, and the group still converges afterwards. Elements outside the subgroup are
/// never computed with (see [`subgroup_elements_are_never_used`]).
pub fn hostile_payloads(make: Factory<'_>) {
    use gka_plugin_api::codec::MAX_PAYLOAD_BYTES;
    use gka_plugin_api::{ErrorKind, GroupId};
    use num_bigint_dig::BigUint;

    let (mut h, c, k0) = group(make, "m", 5, 90);
    h.join(c, &["new"]);
    let msgs = h.take_in_flight(c);
    assert!(!msgs.is_empty(), "a join sends messages");
    let grp = GroupId::Ffdhe2048.params();
    let len = grp.byte_len();
    // The first message carrying an element, and a member it is for.
    let (from, to, payload) = msgs
        .iter()
        .find(|(_, _, p)| !element_offsets(p, len).is_empty())
        .cloned()
        .expect("some message carries a group element");
    // A member outside the sender's side, which must validate everything: the joiner, unless
    // it sent the message.
    let members = h.members(c);
    let target = to.clone().unwrap_or_else(|| {
        if from != "new" {
            "new".to_owned()
        } else {
            members.iter().find(|m| **m != from).cloned().expect("another member")
        }
    });

    let mut expect = |what: &str, bytes: &[u8], sender: &str, kind: ErrorKind, text: &str| match h
        .inject(c, sender, &target, bytes)
    {
        Ok(()) => panic!("{what}: accepted"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: {e}");
            assert!(e.to_string().contains(text), "{what}: {e:?} should mention {text:?}");
        }
    };
    expect("truncated", &payload[..payload.len() / 2], &from, ErrorKind::Payload, "malformed");
    expect("empty", &[], &from, ErrorKind::Payload, "empty");
    let mut oversized = payload.clone();
    oversized.resize(MAX_PAYLOAD_BYTES + 1, 0);
    expect("oversized", &oversized, &from, ErrorKind::Payload, "exceeds the limit");
    let mut trailing = payload.clone();
    trailing.push(0);
    expect("trailing byte", &trailing, &from, ErrorKind::Payload, "trailing");
    let mut format = payload.clone();
    format[0] = 99;
    expect("unknown format", &format, &from, ErrorKind::Payload, "format");
    expect("wrong view", &reseal(&payload, |v| v - 1, |e| e), &from, ErrorKind::StaleView, "view");
    expect(
        "wrong epoch",
        &reseal(&payload, |v| v, |e| e + 1),
        &from,
        ErrorKind::StaleEpoch,
        "epoch",
    );
    expect("non-member", &payload, "intruder", ErrorKind::NotAMember, "intruder");

    let at = element_offsets(&payload, len)[0];
    let p = grp.p().clone();
    let bad: [(&str, BigUint, &str); 4] = [
        ("element 0", BigUint::from(0u32), "range"),
        ("element 1", BigUint::from(1u32), "range"),
        ("element p - 1", &p - 1u32, "range"),
        ("element p", p.clone(), "range"),
    ];
    for (what, value, text) in bad {
        let raw = value.to_bytes_be();
        let mut tampered = payload.clone();
        tampered[at..at + len].fill(0);
        tampered[at + len - raw.len()..at + len].copy_from_slice(&raw);
        expect(what, &tampered, &from, ErrorKind::Element, text);
    }

    // Nothing above changed any session: the real messages still lead to one new key.
    h.put_in_flight(c, msgs);
    let k1 = settle(&mut h, c, "join after hostile payloads");
    assert_ne!(k0.key, k1.key);
    subgroup_elements_are_never_used(make);
}

/// A message of a join whose every element is outside the prime-order subgroup (p − 2, whose
/// Legendre symbol is −1), delivered to a member in place of the real one, is either refused
/// on receipt or, by a protocol that checks a peer's element when it first computes with it
/// ([`gka_plugin_api::Held`]), refused at that first use: the member never computes with it.
/// If the member never uses those elements, the group agrees one key.
pub fn subgroup_elements_are_never_used(make: Factory<'_>) {
    use gka_plugin_api::{ErrorKind, GroupId};

    let (mut h, c, _) = group(make, "m", 5, 90);
    h.join(c, &["new"]);
    let msgs = h.take_in_flight(c);
    let len = GroupId::Ffdhe2048.params().byte_len();
    let i = msgs
        .iter()
        .position(|(_, _, p)| !element_offsets(p, len).is_empty())
        .expect("some message carries a group element");
    let (from, to, payload) = msgs[i].clone();
    let target = to.clone().unwrap_or_else(|| {
        let members = h.members(c);
        let other = members.iter().find(|m| **m != from && **m != "new").cloned();
        if from != "new" {
            "new".to_owned()
        } else {
            other.expect("another member")
        }
    });
    // The messages sequenced before it first, in order.
    h.put_in_flight(c, msgs[..i].to_vec());
    h.run_messages(c, i);
    let later = h.take_in_flight(c);
    let outside = (GroupId::Ffdhe2048.params().p() - 2u32).to_bytes_be();
    let mut tampered = payload.clone();
    let mut end = 0;
    for at in element_offsets(&payload, len) {
        if at >= end {
            tampered[at..at + len].copy_from_slice(&outside);
            end = at + len;
        }
    }
    let verdict = h.inject(c, &from, &target, &tampered);
    if let Err(e) = &verdict {
        assert_eq!(e.kind(), ErrorKind::Element, "outside the subgroup: {e}");
        assert!(e.to_string().contains("subgroup"), "{e:?} should mention the subgroup");
    }
    // Every other recipient gets the real message (and so does the target if it refused it).
    let mut rest: Vec<(String, Option<String>, Vec<u8>)> = match &to {
        Some(_) if verdict.is_ok() => Vec::new(),
        Some(_) => vec![msgs[i].clone()],
        None => h
            .members(c)
            .into_iter()
            .filter(|m| verdict.is_err() || *m != target)
            .map(|m| (from.clone(), Some(m), payload.clone()))
            .collect(),
    };
    rest.extend(msgs[i + 1..].iter().cloned());
    rest.extend(later);
    h.put_in_flight(c, rest);
    let outcome = h.settle(c);
    match (verdict, outcome) {
        (_, Ok(_)) => {}
        (Err(_), Err(e)) => panic!("the join after a refused element did not converge: {e}"),
        (Ok(()), Err(errors)) => assert!(
            errors.lines().any(|l| l.starts_with(&format!("{target}:")) && l.contains("subgroup")),
            "{target} accepted elements outside the subgroup and then failed without refusing \
             one at its first use: {errors}"
        ),
    }
}

/// Runs one event in the canonical configuration the cost models describe and returns the
/// measured cost: the group is `m0000..` after its initial agreement, joiners are `new0000..`,
/// "leave" removes the member at index ⌊n/2⌋, "partition" the k members from ⌊(n − k)/2⌋.
pub fn measure(
    make: Factory<'_>,
    event: gka_plugin_api::EventKind,
    n: usize,
    k: usize,
) -> crate::Measured {
    use gka_plugin_api::EventKind as E;
    let mut h = Harness::new(make(), 100 + n as u64);
    let base = Harness::names("m", n);
    let c = h.create(&strs(&base));
    let initial = h.run(c).unwrap_or_else(|e| panic!("initial agreement of {n}: {e}"));
    if event == E::Initial {
        return initial;
    }
    match event {
        E::Join => h.join(c, &["new0000"]),
        E::Merge => h.join(c, &strs(&Harness::names("new", k))),
        E::Leave => h.leave(c, &[&base[n / 2]]),
        E::Partition => {
            let start = (n - k) / 2;
            h.leave(c, &strs(&base[start..start + k]));
        }
        E::Refresh => h.refresh(c),
        other => panic!("no canonical configuration for {other}"),
    }
    let (_, m) = h.settle(c).unwrap_or_else(|e| panic!("{event} at n = {n}: {e}"));
    m
}

/// Compares the measured cost of every event, for several n, m and p, with the protocol's own
/// cost model: rounds, unicasts, broadcasts, serial and total exponentiations, serial
/// signatures and verifications must all match.
pub fn cost_model_matches(make: Factory<'_>) {
    use gka_plugin_api::EventKind as E;
    let protocol = make();
    let mut mismatches = Vec::new();
    for n in [4usize, 7, 12] {
        let cases = [
            (E::Initial, 0),
            (E::Join, 0),
            (E::Merge, 3),
            (E::Leave, 0),
            (E::Partition, 2),
            (E::Partition, n / 2),
            (E::Refresh, 0),
        ];
        for (event, k) in cases {
            let measured = measure(make, event, n, k).figures;
            let mut model = protocol.cost(event, n as u64, k as u64);
            model.bytes = measured.bytes;
            if measured != model {
                mismatches.push(format!(
                    "{event} n={n} k={k}:\n  measured {measured:?}\n  model    {model:?}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "cost model mismatches:\n{}", mismatches.join("\n"));
}
