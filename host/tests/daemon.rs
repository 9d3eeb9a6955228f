//! The daemon over real TCP on loopback: authenticated joins and control, views, agreed order,
//! view changes on disconnect, new incarnations, partitions and heal, delay emulation, and
//! refusal of bad input.

// A test of the daemon over real TCP: it measures real time.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use gka_host::group::Timing;
use gka_host::identity::Identity;
use gka_host::net::wire::{self, ClientMsg, ControlCmd, ServerMsg, MAX_FRAME_BYTES};
use gka_host::net::Connection;
use gka_host::net::{Daemon, DaemonAccess, DaemonConfig, Limits};
use gka_plugin_api::View;

const WAIT: Duration = Duration::from_secs(10);

/// The member ids the test daemons admit.
const MEMBERS: &[&str] = &[
    "a", "b", "c", "d", "g1", "v9", "silent", "other", "fresh", "reader", "sleeper", "m", "keeper",
];

/// A fixed key per name (a test needs no fresh randomness for this).
fn identity(name: &str) -> Identity {
    let mut seed = [0u8; 32];
    for (s, b) in seed.iter_mut().zip(name.bytes().chain(std::iter::repeat(0x5a))) {
        *s = b;
    }
    Identity::ed25519_from_seed(name, seed).expect("a valid id")
}

fn operator() -> Identity {
    identity("op")
}

fn access() -> DaemonAccess {
    let mut access = DaemonAccess::default();
    for m in MEMBERS {
        access.members.insert(m, identity(m).public().clone());
    }
    access.operators.insert("op", operator().public().clone());
    access
}

async fn join(d: &Daemon, group: &str, name: &str) -> std::io::Result<Connection> {
    Connection::join(d.addr, group, &identity(name)).await
}

async fn control(d: &Daemon, cmd: ControlCmd) -> ServerMsg {
    Connection::control(d.addr, &operator(), cmd).await.expect("an answer")
}

async fn daemon() -> Daemon {
    daemon_with(Timing { batch_ms: 30, failure_timeout_ms: 60_000 }, Limits::default()).await
}

async fn daemon_with(timing: Timing, limits: Limits) -> Daemon {
    let config = DaemonConfig {
        timing,
        tick: Duration::from_millis(5),
        limits,
        access: access(),
        allow_control: true,
    };
    Daemon::start("127.0.0.1:0", config).await.expect("daemon")
}

/// The first error the daemon sends `c` (skipping views and messages), or `None` if it closes
/// the connection without one.
async fn error(c: &mut Connection) -> Option<String> {
    loop {
        match tokio::time::timeout(WAIT, c.recv()).await.expect("timely") {
            Ok(Some(ServerMsg::Error(e))) => return Some(e),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

async fn next(c: &mut Connection) -> ServerMsg {
    tokio::time::timeout(WAIT, c.recv()).await.expect("timely").expect("io").expect("open")
}

async fn view(c: &mut Connection) -> View {
    loop {
        if let ServerMsg::View { view, .. } = next(c).await {
            return view;
        }
    }
}

async fn message(c: &mut Connection) -> (String, Vec<u8>) {
    match next(c).await {
        ServerMsg::Message { from, bytes, .. } => (from, bytes),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn group(d: &Daemon, names: &[&str]) -> (Vec<Connection>, View) {
    let mut conns = Vec::new();
    for n in names {
        conns.push(join(d, "g", n).await.expect("join"));
    }
    let mut v: Option<View> = None;
    for c in &mut conns {
        let got = view(c).await;
        if let Some(prev) = &v {
            assert_eq!(got.members, prev.members);
        }
        v = Some(got);
    }
    (conns, v.expect("a view"))
}

#[tokio::test]
async fn joins_form_one_view_and_messages_arrive_in_one_order() {
    let d = daemon().await;
    let (mut conns, v) = group(&d, &["a", "b", "c"]).await;
    assert_eq!(v.members, ["a", "b", "c"]);
    for (i, c) in conns.iter_mut().enumerate() {
        for k in 0..5u8 {
            let msg = ClientMsg::Send { view_id: v.view_id, to: None, bytes: vec![i as u8, k] };
            c.send(&msg).await.unwrap();
        }
    }
    let mut orders = Vec::new();
    for c in &mut conns {
        let mut got = Vec::new();
        for _ in 0..15 {
            got.push(message(c).await.1);
        }
        orders.push(got);
    }
    assert!(orders.iter().all(|o| o == &orders[0]), "agreed order");
    // A unicast reaches only its recipient.
    conns[0]
        .send(&ClientMsg::Send { view_id: v.view_id, to: Some("c".into()), bytes: b"u".to_vec() })
        .await
        .unwrap();
    assert_eq!(message(&mut conns[2]).await, ("a".into(), b"u".to_vec()));
    d.stop();
}

#[tokio::test]
async fn a_closed_connection_leaves_and_the_others_get_a_new_view() {
    let d = daemon().await;
    let (mut conns, _) = group(&d, &["a", "b", "c"]).await;
    let c = conns.pop().unwrap();
    drop(c);
    for conn in &mut conns {
        let v = view(conn).await;
        assert_eq!(v.members, ["a", "b"]);
        assert_eq!(v.left, ["c"]);
    }
    d.stop();
}

#[tokio::test]
async fn partition_and_heal() {
    let d = daemon().await;
    let (mut conns, _) = group(&d, &["a", "b", "c", "d"]).await;
    let split = ControlCmd::Partition {
        group: "g".into(),
        sets: vec![vec!["a".into(), "b".into()], vec!["c".into(), "d".into()]],
    };
    assert_eq!(control(&d, split).await, ServerMsg::Ok);
    assert_eq!(view(&mut conns[0]).await.members, ["a", "b"]);
    assert_eq!(view(&mut conns[3]).await.members, ["c", "d"]);
    view(&mut conns[1]).await;
    view(&mut conns[2]).await;
    assert_eq!(control(&d, ControlCmd::Heal { group: "g".into() }).await, ServerMsg::Ok);
    for c in &mut conns {
        assert_eq!(view(c).await.members, ["a", "b", "c", "d"]);
    }
    let bad = ControlCmd::Partition { group: "nope".into(), sets: vec![] };
    assert!(matches!(control(&d, bad).await, ServerMsg::Error(_)));
    // Empty subsets would each make a component of their own that nothing reclaims.
    let empty = ControlCmd::Partition {
        group: "g".into(),
        sets: vec![vec!["a".into(), "b".into(), "c".into(), "d".into()], vec![], vec![]],
    };
    let refused = control(&d, empty).await;
    assert!(matches!(&refused, ServerMsg::Error(e) if e.contains("non-empty")), "{refused:?}");
    // Delays name members by valid ids: a 4 KiB "sender" is refused, not stored.
    let odd = ControlCmd::Delay { to: "a".into(), from: Some("x".repeat(4096)), ms: 10 };
    let refused = control(&d, odd).await;
    assert!(matches!(&refused, ServerMsg::Error(e) if e.contains("member ids")), "{refused:?}");
    // An absurd delay is refused, and the daemon keeps ticking (the group still heals below).
    let huge = ControlCmd::Delay { to: "a".into(), from: None, ms: u64::MAX };
    assert!(matches!(control(&d, huge).await, ServerMsg::Error(e) if e.contains("exceeds")));
    let split = ControlCmd::Partition {
        group: "g".into(),
        sets: vec![vec!["a".into(), "c".into()], vec!["b".into(), "d".into()]],
    };
    assert_eq!(control(&d, split).await, ServerMsg::Ok);
    for c in &mut conns {
        view(c).await;
    }
    assert_eq!(control(&d, ControlCmd::Heal { group: "g".into() }).await, ServerMsg::Ok);
    for c in &mut conns {
        assert_eq!(view(c).await.members, ["a", "b", "c", "d"]);
    }
    d.stop();
}

#[tokio::test]
async fn delay_is_emulated_per_recipient() {
    let d = daemon().await;
    let (mut conns, v) = group(&d, &["a", "b"]).await;
    let cmd = ControlCmd::Delay { to: "b".into(), from: None, ms: 200 };
    assert_eq!(control(&d, cmd).await, ServerMsg::Ok);
    let sent = Instant::now();
    conns[0]
        .send(&ClientMsg::Send { view_id: v.view_id, to: None, bytes: b"x".to_vec() })
        .await
        .unwrap();
    message(&mut conns[0]).await;
    let fast = sent.elapsed();
    message(&mut conns[1]).await;
    let slow = sent.elapsed();
    assert!(slow >= Duration::from_millis(200), "delayed delivery took {slow:?}");
    assert!(fast < slow);
    d.stop();
}

#[tokio::test]
async fn garbage_oversized_and_out_of_order_requests_are_refused() {
    let d = daemon().await;
    let (mut conns, first_view) = group(&d, &["a", "b"]).await;
    // Garbage in a well-sized frame: an error, then the connection closes (a leaves).
    let mut g = join(&d, "g", "g1").await.unwrap();
    g.send_raw(vec![0xff, 0xfe, 0xfd]).await.unwrap();
    loop {
        match next(&mut g).await {
            ServerMsg::Error(e) => {
                assert!(e.contains("closing"), "{e}");
                break;
            }
            ServerMsg::View { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    // An oversized frame (declared by its length prefix): the daemon refuses it before reading
    // the body and closes the connection.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        raw.write_all(&((MAX_FRAME_BYTES + 1) as u32).to_be_bytes()).await.unwrap();
        let mut sink = Vec::new();
        let read = tokio::time::timeout(WAIT, raw.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "the oversized sender was disconnected");
        let text = String::from_utf8_lossy(&sink);
        assert!(text.contains("bad frame"), "the daemon said why: {text:?}");
    }
    // An invalid member id is refused.
    let (mut bad, _) = Connection::open(d.addr).await.unwrap();
    let join_bad = ClientMsg::Join {
        group: "g".into(),
        member: "x y".into(),
        proof: vec![],
        certificate: None,
    };
    bad.send(&join_bad).await.unwrap();
    let e = error(&mut bad).await.expect("a refusal");
    assert!(e.contains("invalid member id"), "{e}");
    // A wrong wire version is named as such.
    let mut frame = wire::encode(&ClientMsg::Heartbeat);
    frame[0] = 9;
    let mut v9 = join(&d, "g", "v9").await.unwrap();
    v9.send_raw(frame).await.unwrap();
    loop {
        match next(&mut v9).await {
            ServerMsg::Error(e) => {
                assert!(e.contains("wire version 9"), "{e}");
                break;
            }
            _ => continue,
        }
    }
    // The group still works: take the newest view (the refused joiners may or may not have
    // produced views, depending on the batching window), then a message goes round.
    let mut current = first_view;
    while let Ok(Ok(Some(msg))) =
        tokio::time::timeout(Duration::from_millis(300), conns[0].recv()).await
    {
        if let ServerMsg::View { view, .. } = msg {
            current = view;
        }
    }
    assert_eq!(current.members, ["a", "b"]);
    let ok = ClientMsg::Send { view_id: current.view_id, to: None, bytes: b"ok".to_vec() };
    conns[0].send(&ok).await.unwrap();
    assert_eq!(message(&mut conns[0]).await, ("a".into(), b"ok".to_vec()));
    d.stop();
}

/// A member expelled by the failure detector whose group was then forgotten sends again: it is
/// told it is no longer a member and disconnected, and the daemon goes on serving (it used to
/// panic on this).
#[tokio::test]
async fn a_send_after_expulsion_and_a_forgotten_group_is_refused() {
    let d = daemon_with(Timing { batch_ms: 20, failure_timeout_ms: 300 }, Limits::default()).await;
    let mut silent = join(&d, "g", "silent").await.unwrap();
    let mut other = join(&d, "g", "other").await.unwrap();
    // `other` keeps itself alive until `silent` is expelled, then leaves: the group is empty.
    let deadline = Instant::now() + WAIT;
    loop {
        other.send(&ClientMsg::Heartbeat).await.unwrap();
        if let Ok(Ok(Some(ServerMsg::View { view: v, .. }))) =
            tokio::time::timeout(Duration::from_millis(50), other.recv()).await
        {
            if v.members == ["other"] {
                break;
            }
        }
        assert!(Instant::now() < deadline, "silent was not expelled");
    }
    other.send(&ClientMsg::Leave).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let send = ClientMsg::Send { view_id: 1, to: None, bytes: b"late".to_vec() };
    silent.send(&send).await.unwrap();
    let e = error(&mut silent).await.expect("an error, not a dropped connection");
    assert!(e.contains("no longer a member"), "{e}");
    // The daemon still serves.
    let (_conns, v) = group(&d, &["fresh"]).await;
    assert_eq!(v.members, ["fresh"]);
    d.stop();
}

#[tokio::test]
async fn group_names_are_bounded() {
    let d = daemon().await;
    let long = "g".repeat(Limits::default().max_group_name + 1);
    let e = join(&d, &long, "a").await.expect_err("a long name is refused");
    assert!(e.to_string().contains("group name"), "{e}");
    let e = join(&d, "", "a").await.expect_err("an empty name is refused");
    assert!(e.to_string().contains("group name"), "{e}");
    let limits = Limits { max_groups: 2, ..Limits::default() };
    let d2 = daemon_with(Timing { batch_ms: 30, failure_timeout_ms: 60_000 }, limits).await;
    let _a = join(&d2, "g1", "a").await.unwrap();
    let _b = join(&d2, "g2", "a").await.unwrap();
    let e = join(&d2, "g3", "a").await.expect_err("a third group is refused");
    assert!(e.to_string().contains("at most 2 groups"), "{e}");
    let _c = join(&d2, "g1", "c").await.expect("an existing group still takes");
    d.stop();
    d2.stop();
}

/// A joined client that never reads while the group sends is disconnected and leaves the
/// group, instead of having its deliveries buffered without end.
#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected() {
    let limits = Limits { max_queued: 8, ..Limits::default() };
    let d = daemon_with(Timing { batch_ms: 20, failure_timeout_ms: 60_000 }, limits).await;
    let (mut conns, v) = group(&d, &["reader", "sleeper"]).await;
    let mut reader = conns.remove(0);
    let mut sleeper = conns.remove(0);
    // Large broadcasts fill the sleeper's socket buffers, then its queue.
    let bytes = vec![7u8; 256 * 1024];
    let deadline = Instant::now() + WAIT;
    let mut view_id = v.view_id;
    'outer: for _ in 0..400 {
        let send = ClientMsg::Send { view_id, to: None, bytes: bytes.clone() };
        reader.send(&send).await.unwrap();
        while let Ok(Ok(Some(msg))) =
            tokio::time::timeout(Duration::from_millis(5), reader.recv()).await
        {
            if let ServerMsg::View { view: v, .. } = msg {
                view_id = v.view_id;
                if v.members == ["reader"] {
                    break 'outer;
                }
            }
        }
        assert!(Instant::now() < deadline, "the sleeper was never disconnected");
    }
    assert!(view_id > v.view_id, "the sleeper left the group");
    // Its socket is closed too: what was queued drains, then the connection ends.
    let closed =
        tokio::time::timeout(WAIT, async { while let Ok(Some(_)) = sleeper.recv().await {} }).await;
    assert!(closed.is_ok(), "the sleeper's connection was closed");
    d.stop();
}

/// A half-sent frame does not hold a connection open: it is closed once no complete frame has
/// arrived for the frame timeout.
#[tokio::test]
async fn a_half_sent_frame_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = Limits { frame_timeout: Duration::from_millis(300), ..Limits::default() };
    let d = daemon_with(Timing { batch_ms: 20, failure_timeout_ms: 60_000 }, limits).await;
    let mut raw = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    raw.write_all(&[0, 0]).await.unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(WAIT, raw.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the connection was closed");
    assert!(String::from_utf8_lossy(&sink).contains("no complete frame"), "{sink:?}");
    d.stop();
}

/// A member expelled for silence is replaced by a new connection under the same id; when the
/// stale connection finally closes, the replacement stays in the group.
#[tokio::test]
async fn a_stale_connection_does_not_evict_its_replacement() {
    let d = daemon_with(Timing { batch_ms: 20, failure_timeout_ms: 300 }, Limits::default()).await;
    let stale = join(&d, "g", "m").await.unwrap();
    let mut keeper = join(&d, "g", "keeper").await.unwrap();
    let deadline = Instant::now() + WAIT;
    // Wait until the silent `m` is expelled.
    loop {
        keeper.send(&ClientMsg::Heartbeat).await.unwrap();
        if let Ok(Ok(Some(ServerMsg::View { view: v, .. }))) =
            tokio::time::timeout(Duration::from_millis(50), keeper.recv()).await
        {
            if v.members == ["keeper"] {
                break;
            }
        }
        assert!(Instant::now() < deadline, "m was not expelled");
    }
    let mut fresh = join(&d, "g", "m").await.expect("the id is free again");
    let current = loop {
        keeper.send(&ClientMsg::Heartbeat).await.unwrap();
        fresh.send(&ClientMsg::Heartbeat).await.unwrap();
        if let Ok(Ok(Some(ServerMsg::View { view: v, .. }))) =
            tokio::time::timeout(Duration::from_millis(50), keeper.recv()).await
        {
            if v.members.len() == 2 {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "the replacement did not join");
    };
    drop(stale);
    // For three failure timeouts both stay, and the replacement's message goes round.
    let until = Instant::now() + Duration::from_millis(900);
    while Instant::now() < until {
        keeper.send(&ClientMsg::Heartbeat).await.unwrap();
        fresh.send(&ClientMsg::Heartbeat).await.unwrap();
        if let Ok(Ok(Some(ServerMsg::View { view: v, .. }))) =
            tokio::time::timeout(Duration::from_millis(50), keeper.recv()).await
        {
            panic!("a view change after the stale connection closed: {v:?}");
        }
    }
    let view_id = current.view_id;
    let hello = ClientMsg::Send { view_id, to: None, bytes: b"still here".to_vec() };
    fresh.send(&hello).await.unwrap();
    assert_eq!(message(&mut keeper).await, ("m".into(), b"still here".to_vec()));
    d.stop();
}

/// Fault injection is off unless the daemon is started with it, and even then only an
/// operator may inject faults: a member's key is not enough.
#[tokio::test]
async fn fault_injection_is_off_by_default_and_for_operators_only() {
    let config = DaemonConfig { access: access(), ..DaemonConfig::default() };
    let d = Daemon::start("127.0.0.1:0", config).await.expect("daemon");
    let _a = join(&d, "g", "a").await.unwrap();
    let delay = ControlCmd::Delay { to: "a".into(), from: None, ms: 60_000 };
    let refused = control(&d, delay.clone()).await;
    assert!(
        matches!(&refused, ServerMsg::Error(e) if e.contains("--allow-control")),
        "{refused:?}"
    );
    let split = ControlCmd::Partition { group: "g".into(), sets: vec![vec!["a".into()]] };
    assert!(matches!(control(&d, split).await, ServerMsg::Error(_)));
    d.stop();

    let d = daemon().await;
    let _a = join(&d, "g", "a").await.unwrap();
    // A member, however trusted, is not an operator.
    let refused = Connection::control(d.addr, &identity("a"), delay.clone()).await.unwrap();
    assert!(
        matches!(&refused, ServerMsg::Error(e) if e.contains("not in the daemon's access list")),
        "{refused:?}"
    );
    // Someone claiming the operator's id without its key.
    let impostor = Identity::ed25519_from_seed("op", [9; 32]).unwrap();
    let refused = Connection::control(d.addr, &impostor, delay.clone()).await.unwrap();
    assert!(
        matches!(&refused, ServerMsg::Error(e) if e.contains("does not verify")),
        "{refused:?}"
    );
    // An unsigned command on a raw connection.
    let (mut raw, _) = Connection::open(d.addr).await.unwrap();
    let unsigned = ClientMsg::Control {
        operator: "op".into(),
        cmd: delay.clone(),
        proof: vec![],
        certificate: None,
    };
    raw.send(&unsigned).await.unwrap();
    assert!(error(&mut raw).await.is_some_and(|e| e.contains("does not verify")));
    assert_eq!(control(&d, delay).await, ServerMsg::Ok, "the operator itself may");
    d.stop();
}

/// Only a client that proves it holds a listed member's key joins; an impostor under an absent
/// member's id, a stranger, and a connection that never joins get no view and no traffic.
#[tokio::test]
async fn only_proven_members_join_and_receive() {
    let limits = Limits { handshake_timeout: Duration::from_millis(300), ..Limits::default() };
    let d = daemon_with(Timing { batch_ms: 30, failure_timeout_ms: 60_000 }, limits).await;
    let (mut conns, v) = group(&d, &["a", "b"]).await;
    // The impostor signs with a key of its own under c's id.
    let impostor = Identity::ed25519_from_seed("c", [1; 32]).unwrap();
    let e = Connection::join(d.addr, "g", &impostor).await.expect_err("an impostor");
    assert!(e.to_string().contains("does not verify"), "{e}");
    let stranger = Identity::ed25519_from_seed("mallory", [2; 32]).unwrap();
    let e = Connection::join(d.addr, "g", &stranger).await.expect_err("a stranger");
    assert!(e.to_string().contains("not in the daemon's access list"), "{e}");
    // A proof made for another connection's challenge does not transfer.
    let (mut replayer, _) = Connection::open(d.addr).await.unwrap();
    let old_challenge = [0u8; 32];
    let proof = gka_host::net::auth::prove_join(&identity("c"), &old_challenge, "g");
    let join = ClientMsg::Join { group: "g".into(), member: "c".into(), proof, certificate: None };
    replayer.send(&join).await.unwrap();
    assert!(error(&mut replayer).await.is_some_and(|e| e.contains("does not verify")));
    // A connection that only listens: nothing but its challenge, then it is closed.
    let mut listener = Connection::open(d.addr).await.unwrap().0;
    let send = ClientMsg::Send { view_id: v.view_id, to: None, bytes: b"secret".to_vec() };
    conns[0].send(&send).await.unwrap();
    message(&mut conns[1]).await;
    let heard = tokio::time::timeout(WAIT, listener.recv()).await.expect("closed in time");
    assert!(
        matches!(&heard, Ok(Some(ServerMsg::Error(e))) if e.contains("no complete frame")),
        "{heard:?}"
    );
    // Nobody joined: a and b saw no view change.
    let quiet = tokio::time::timeout(Duration::from_millis(200), conns[0].recv()).await;
    assert!(!matches!(quiet, Ok(Ok(Some(ServerMsg::View { .. })))), "{quiet:?}");
    d.stop();
}

/// A member that restarts before its old connection is found dead proves its key again and
/// takes its id over: the old incarnation is closed and leaves in one view, the new one joins
/// in the next, so its peers rekey for both.
#[tokio::test]
async fn a_proven_rejoin_replaces_the_old_incarnation() {
    let d = daemon().await;
    let (mut conns, first) = group(&d, &["a", "b"]).await;
    let mut old_b = conns.pop().unwrap();
    let mut a = conns.pop().unwrap();
    let mut new_b = join(&d, "g", "b").await.expect("the owner of the key may rejoin");
    let e = error(&mut old_b).await.expect("the old incarnation is told");
    assert!(e.contains("newer connection"), "{e}");
    let leave = view(&mut a).await;
    assert_eq!(leave.members, ["a"]);
    assert_eq!(leave.left, ["b"]);
    let rejoin = view(&mut a).await;
    assert_eq!(rejoin.joined, ["b"]);
    assert!(rejoin.view_id > leave.view_id && leave.view_id > first.view_id);
    let fresh = view(&mut new_b).await;
    assert_eq!(fresh.view_id, rejoin.view_id);
    assert_eq!(fresh.joined, ["a", "b"]);
    d.stop();
}

/// Each group run has its own nonce: a group forgotten after its last member left and created
/// again carries another one, so envelopes signed in the first run never fit the second.
#[tokio::test]
async fn a_new_run_of_a_group_has_a_new_nonce() {
    let d = daemon().await;
    let mut a = join(&d, "g", "a").await.unwrap();
    let run = loop {
        if let ServerMsg::View { run, .. } = next(&mut a).await {
            break run;
        }
    };
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut a = join(&d, "g", "a").await.unwrap();
    let again = loop {
        if let ServerMsg::View { run, .. } = next(&mut a).await {
            break run;
        }
    };
    assert_ne!(run, again);
    d.stop();
}

/// A message too large to be relayed within a recipient's frame limit is refused with its
/// sender's connection, and reaches nobody.
#[tokio::test]
async fn a_message_too_large_to_relay_is_refused() {
    let d = daemon().await;
    let (mut conns, v) = group(&d, &["a", "b"]).await;
    let too_big = gka_host::envelope::MAX_ENVELOPE_BYTES + 1;
    let send = ClientMsg::Send { view_id: v.view_id, to: None, bytes: vec![1; too_big] };
    conns[0].send(&send).await.unwrap();
    let e = error(&mut conns[0]).await.expect("a refusal");
    assert!(e.contains("over the limit"), "{e}");
    let next = view(&mut conns[1]).await;
    assert_eq!(next.left, ["a"], "b got no message, only a's departure");
    d.stop();
}

/// Under access rules, members join by certificate: two trusted domains' members are admitted;
/// a third domain's member, a revoked or expired certificate, a certificate presented under
/// another id, and a member with neither certificate nor listed key are refused with their
/// reasons; an operator certificate of an operator domain may inject faults.
#[tokio::test]
async fn members_join_by_certificate_under_access_rules() {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use gka_host::identity::access::AccessRules;
    use gka_host::identity::cert::{DomainCa, Role};
    use time::OffsetDateTime;

    let now = OffsetDateTime::now_utc();
    let tmp = tempfile::tempdir().unwrap();
    let red = DomainCa::create("red", now, 365, [1; 16]).unwrap();
    let blue = DomainCa::create("blue", now, 365, [2; 16]).unwrap();
    let green = DomainCa::create("green", now, 365, [3; 16]).unwrap();
    let member: BTreeSet<Role> = [Role::Member].into();
    let operator: BTreeSet<Role> = [Role::Operator].into();
    let cert = |ca: &DomainCa, id: &str, roles: &BTreeSet<Role>, from: OffsetDateTime, serial| {
        ca.issue(id, identity(id).public(), roles, from, 30, [serial; 16]).unwrap().der
    };
    let alice = cert(&red, "a", &member, now, 10);
    let bob = cert(&blue, "b", &member, now, 11);
    let gus = cert(&green, "c", &member, now, 12);
    let revoked = cert(&red, "d", &member, now, 13);
    let expired = cert(&red, "d", &member, now - time::Duration::days(40), 14);
    let op = cert(&red, "m", &operator, now, 15);
    let serial = gka_host::identity::cert::read_cert(&revoked).unwrap().serial;
    std::fs::write(tmp.path().join("red.crt"), red.cert_pem()).unwrap();
    std::fs::write(tmp.path().join("red.crl"), red.revocation_list(&[serial], now, 7, 2).unwrap())
        .unwrap();
    std::fs::write(tmp.path().join("blue.crt"), blue.cert_pem()).unwrap();
    let text = "operators = [\"red\"]\n[domain.red]\nca = \"red.crt\"\ncrl = \"red.crl\"\n\
                [domain.blue]\nca = \"blue.crt\"\n[[group]]\nname = \"lab\"\ndomains = [\"red\", \"blue\"]\n";
    let rules = AccessRules::parse(text, tmp.path()).expect("valid rules");
    let access = DaemonAccess { rules: Some(Arc::new(rules)), ..DaemonAccess::default() };
    let config = DaemonConfig {
        timing: Timing { batch_ms: 30, failure_timeout_ms: 60_000 },
        tick: Duration::from_millis(5),
        access,
        allow_control: true,
        ..DaemonConfig::default()
    };
    let d = Daemon::start("127.0.0.1:0", config).await.expect("daemon");
    let join = |id: &str, der: Option<Vec<u8>>| {
        let addr = d.addr;
        let id = identity(id);
        async move { Connection::join_presenting(addr, "lab", &id, der.as_deref()).await }
    };
    let _a = join("a", Some(alice.clone())).await.expect("red's member");
    let _b = join("b", Some(bob)).await.expect("blue's member");
    let refused = |r: std::io::Result<Connection>| r.expect_err("refused").to_string();
    assert!(refused(join("c", Some(gus)).await).contains("\"green\" is not trusted"));
    assert!(refused(join("d", Some(revoked)).await).contains("revoked"));
    assert!(refused(join("d", Some(expired)).await).contains("expired"));
    assert!(refused(join("m", Some(alice)).await).contains("\"a\"'s, not \"m\"'s"));
    assert!(refused(join("d", None).await).contains("not in the daemon's access list"));
    let heal = ControlCmd::Heal { group: "lab".into() };
    let reply = Connection::control_presenting(d.addr, &identity("m"), Some(&op), heal.clone())
        .await
        .unwrap();
    assert_eq!(reply, ServerMsg::Ok, "a red operator");
    let reply = Connection::control_presenting(d.addr, &identity("a"), None, heal).await.unwrap();
    assert!(matches!(reply, ServerMsg::Error(_)), "a member is not an operator");
    d.stop();
}
