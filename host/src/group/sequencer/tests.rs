//! The sequencer's rules, one scenario each.
use super::*;

fn drain(s: &mut Sequencer) -> Vec<(String, Delivery)> {
    std::iter::from_fn(|| s.poll_delivery()).collect()
}

fn views_of(d: &[(String, Delivery)], who: &str) -> Vec<View> {
    d.iter()
        .filter(|(m, _)| m == who)
        .filter_map(
            |(_, x)| {
                if let Delivery::View { view, .. } = x {
                    Some(view.clone())
                } else {
                    None
                }
            },
        )
        .collect()
}

#[test]
fn a_second_join_is_refused() {
    let mut s = Sequencer::new(Timing::default(), GroupRun::default());
    s.join("a", 0).unwrap();
    assert_eq!(s.join("a", 1), Err(SequencerError::AlreadyMember("a".into())));
    assert_eq!(s.leave("z", 1), Err(SequencerError::NotAMember("z".into())));
    assert!(matches!(s.send("z", 1, None, vec![], 1), Err(SequencerError::NotAMember(_))));
}

#[test]
fn a_new_incarnation_joins_in_the_view_after_its_old_one_left() {
    let mut s = Sequencer::new(Timing::default(), GroupRun::default());
    for m in ["a", "b"] {
        s.join(m, 0).unwrap();
    }
    s.tick(50);
    drain(&mut s);
    s.rejoin("b", 60).unwrap();
    assert_eq!(s.join("b", 61), Err(SequencerError::AlreadyMember("b".into())));
    s.tick(110);
    let d = drain(&mut s);
    assert_eq!(views_of(&d, "a")[0].left, ["b"], "the old incarnation leaves first");
    assert!(views_of(&d, "b").is_empty(), "the new one has no view yet");
    s.tick(160);
    let d = drain(&mut s);
    let v = &views_of(&d, "a")[0];
    assert_eq!(v.members, ["a", "b"]);
    assert_eq!(v.joined, ["b"]);
    assert_eq!(views_of(&d, "b")[0].joined, ["a", "b"], "a fresh start for b");
    // A connection that closes and a new one that joins within one batching window: still
    // a leave view, then a join view (the new process has lost its state).
    s.leave("b", 170).unwrap();
    s.join("b", 171).unwrap();
    s.tick(230);
    let d = drain(&mut s);
    assert_eq!(views_of(&d, "a")[0].left, ["b"]);
    s.tick(290);
    let d = drain(&mut s);
    assert_eq!(views_of(&d, "a")[0].joined, ["b"]);
    // A waiting incarnation that goes away leaves no trace.
    s.rejoin("b", 300).unwrap();
    s.leave("b", 301).unwrap();
    s.tick(360);
    s.tick(420);
    assert_eq!(s.view_of("b"), None);
}

fn certificates_in(d: &[(String, Delivery)], who: &str) -> Vec<Vec<(String, Vec<u8>)>> {
    d.iter()
        .filter(|(m, _)| m == who)
        .filter_map(|(_, x)| match x {
            Delivery::View { certificates, .. } => {
                Some(certificates.iter().map(|(m, c)| (m.clone(), c.to_vec())).collect())
            }
            Delivery::Message { .. } => None,
        })
        .collect()
}

#[test]
fn views_carry_the_certificates_of_those_who_joined() {
    let cert = |b: u8| -> Option<Arc<[u8]>> { Some(Arc::from(vec![b])) };
    let mut s = Sequencer::new(Timing::default(), GroupRun::default());
    s.join_presenting("a", cert(1), 0).unwrap();
    s.join("b", 0).unwrap();
    s.tick(50);
    let d = drain(&mut s);
    assert_eq!(certificates_in(&d, "b"), [vec![("a".to_owned(), vec![1])]]);
    s.join_presenting("c", cert(3), 60).unwrap();
    s.tick(110);
    let d = drain(&mut s);
    assert_eq!(certificates_in(&d, "a"), [vec![("c".to_owned(), vec![3])]], "joiners only");
    assert_eq!(
        certificates_in(&d, "c"),
        [vec![("a".to_owned(), vec![1]), ("c".to_owned(), vec![3])]],
        "a newcomer gets everyone's"
    );
    // A new incarnation with a new certificate: its join view carries the new one.
    s.rejoin_presenting("a", cert(9), 120).unwrap();
    s.tick(170);
    s.tick(230);
    let d = drain(&mut s);
    let seen = certificates_in(&d, "c");
    assert_eq!(seen.last().unwrap(), &[("a".to_owned(), vec![9])]);
}

#[test]
fn simultaneous_joins_form_one_view_oldest_first() {
    let mut s = Sequencer::new(Timing::default(), GroupRun::default());
    for m in ["a", "b", "c"] {
        s.join(m, 0).unwrap();
    }
    s.tick(10);
    assert!(drain(&mut s).is_empty(), "the batching window is still open");
    s.tick(50);
    let d = drain(&mut s);
    let v = &views_of(&d, "b")[0];
    assert_eq!(v.members, ["a", "b", "c"]);
    assert_eq!(v.joined, ["a", "b", "c"]);
    assert_eq!(views_of(&d, "a")[0].view_id, v.view_id);
}

/// A sequencer whose members a, b and c are in their first view, delivered; its id.
fn abc_in_a_view() -> (Sequencer, u64) {
    let mut s = Sequencer::new(Timing::default(), GroupRun::default());
    for m in ["a", "b", "c"] {
        s.join(m, 0).unwrap();
    }
    s.tick(50);
    drain(&mut s);
    let v1 = s.view_of("a").unwrap();
    (s, v1)
}

#[test]
fn messages_are_agreed_and_a_message_of_an_ended_view_is_dropped_for_everyone() {
    let (mut s, v1) = abc_in_a_view();
    assert!(s.send("a", v1, None, b"1".to_vec(), 60).unwrap());
    assert!(s.send("b", v1, None, b"2".to_vec(), 60).unwrap());
    s.leave("c", 61).unwrap();
    s.tick(120);
    // Sent in v1 after v1 ended: nobody gets it.
    assert!(!s.send("a", v1, None, b"late".to_vec(), 130).unwrap());
    let d = drain(&mut s);
    for who in ["a", "b"] {
        let seen: Vec<&[u8]> = d
            .iter()
            .filter(|(m, _)| m == who)
            .filter_map(|(_, x)| match x {
                Delivery::Message { bytes, .. } => Some(&bytes[..]),
                _ => None,
            })
            .collect();
        assert_eq!(seen, [b"1".as_slice(), b"2"], "{who}: agreed order, no late message");
        // The new view comes after the old view's messages.
        let last = d.iter().rfind(|(m, _)| m == who).unwrap();
        assert!(matches!(&last.1, Delivery::View { view, .. } if view.left == ["c"]));
    }
}

#[test]
fn a_broadcast_is_handed_out_whole_or_per_recipient_and_follows_membership() {
    let (mut s, v1) = abc_in_a_view();
    let recipients = |f: &Fanout| match f {
        Fanout::Broadcast(b) => b.recipients().to_vec(),
        Fanout::One(..) => panic!("a broadcast was handed out per recipient"),
    };
    s.send("a", v1, None, b"1".to_vec(), 60).unwrap();
    s.send("b", v1, None, b"2".to_vec(), 60).unwrap();
    let first = s.poll_fanout().unwrap();
    let second = s.poll_fanout().unwrap();
    assert_eq!(recipients(&first), ["a", "b", "c"]);
    let (Fanout::Broadcast(x), Fanout::Broadcast(y)) = (&first, &second) else { panic!() };
    assert!(Arc::ptr_eq(x.shared_recipients(), y.shared_recipients()), "one list per view");
    assert_eq!((x.from.as_str(), &x.bytes[..]), ("a", &b"1"[..]));
    // A member that left is no longer sent the view's messages, before the next view too.
    s.leave("c", 61).unwrap();
    s.send("a", v1, None, b"3".to_vec(), 62).unwrap();
    assert_eq!(recipients(&s.poll_fanout().unwrap()), ["a", "b"]);
    // A unicast goes to its one recipient.
    s.send("a", v1, Some("b"), b"4".to_vec(), 63).unwrap();
    assert!(matches!(s.poll_fanout(), Some(Fanout::One(to, _)) if to == "b"));
    // Polling per recipient gives the same deliveries, and a broadcast partly handed out
    // that way keeps the rest.
    s.send("b", v1, None, b"5".to_vec(), 64).unwrap();
    let (to, delivery) = s.poll_delivery().unwrap();
    assert_eq!(to, "a");
    assert!(matches!(delivery, Delivery::Message { ref from, view_id, ref bytes }
        if from == "b" && view_id == v1 && &bytes[..] == b"5"));
    let rest = s.poll_fanout().unwrap();
    assert_eq!(recipients(&rest), ["b"]);
    assert!(s.poll_fanout().is_none());
    s.send("b", v1, None, b"6".to_vec(), 65).unwrap();
    let each: Vec<String> = drain(&mut s).into_iter().map(|(to, _)| to).collect();
    assert_eq!(each, ["a", "b"]);
}

#[test]
fn silent_members_are_removed_after_the_timeout() {
    let mut s =
        Sequencer::new(Timing { batch_ms: 10, failure_timeout_ms: 1_000 }, GroupRun::default());
    for m in ["a", "b"] {
        s.join(m, 0).unwrap();
    }
    s.tick(10);
    drain(&mut s);
    s.heartbeat("a", 900).unwrap();
    s.tick(1_000);
    s.tick(1_010);
    let d = drain(&mut s);
    assert_eq!(views_of(&d, "a")[0].left, ["b"]);
    assert_eq!(s.view_of("b"), None);
}

#[test]
fn partitions_continue_separately_and_heal_into_a_merge() {
    let mut s = Sequencer::new(
        Timing { batch_ms: 0, failure_timeout_ms: u64::MAX / 2 },
        GroupRun::default(),
    );
    for m in ["a", "b", "c", "d"] {
        s.join(m, 0).unwrap();
    }
    s.tick(0);
    drain(&mut s);
    s.partition(&[vec!["a".into(), "c".into()], vec!["b".into(), "d".into()]], 1).unwrap();
    s.tick(1);
    let d = drain(&mut s);
    assert_eq!(views_of(&d, "a")[0].members, ["a", "c"]);
    assert_eq!(views_of(&d, "d")[0].members, ["b", "d"]);
    assert_ne!(s.view_of("a"), s.view_of("b"));
    // Each side orders its own messages.
    let va = s.view_of("a").unwrap();
    s.send("a", va, None, b"x".to_vec(), 2).unwrap();
    let d = drain(&mut s);
    assert_eq!(d.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    assert!(s.partition(&[vec!["a".into()]], 3).is_err(), "must list the whole component");
    s.heal(4);
    s.tick(4);
    let d = drain(&mut s);
    let v = &views_of(&d, "a")[0];
    assert_eq!(v.members, ["a", "b", "c", "d"]);
    assert_eq!(v.joined, ["b", "d"]);
    assert_eq!(views_of(&d, "b")[0].joined, ["a", "c"]);
}
