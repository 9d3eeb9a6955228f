//! The daemon over real TCP on loopback: views, agreed order, view changes on disconnect,
//! partitions and heal, delay emulation, and refusal of bad input.

// A test of the daemon over real TCP: it measures real time.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use gka_host::group::Timing;
use gka_host::net::wire::{self, ClientMsg, ControlCmd, ServerMsg, MAX_FRAME_BYTES};
use gka_host::net::Connection;
use gka_host::net::{Daemon, DaemonConfig, Limits};
use gka_plugin_api::View;

const WAIT: Duration = Duration::from_secs(10);

async fn daemon() -> Daemon {
    daemon_with(Timing { batch_ms: 30, failure_timeout_ms: 60_000 }, Limits::default()).await
}

async fn daemon_with(timing: Timing, limits: Limits) -> Daemon {
    let config =
        DaemonConfig { timing, tick: Duration::from_millis(5), limits, allow_control: true };
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
        if let ServerMsg::View(v) = next(c).await {
            return v;
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
        conns.push(Connection::join(d.addr, "g", n).await.expect("join"));
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
    assert_eq!(Connection::control(d.addr, split).await.unwrap(), ServerMsg::Ok);
    assert_eq!(view(&mut conns[0]).await.members, ["a", "b"]);
    assert_eq!(view(&mut conns[3]).await.members, ["c", "d"]);
    view(&mut conns[1]).await;
    view(&mut conns[2]).await;
    assert_eq!(
        Connection::control(d.addr, ControlCmd::Heal { group: "g".into() }).await.unwrap(),
        ServerMsg::Ok
    );
    for c in &mut conns {
        assert_eq!(view(c).await.members, ["a", "b", "c", "d"]);
    }
    let bad = ControlCmd::Partition { group: "nope".into(), sets: vec![] };
    assert!(matches!(Connection::control(d.addr, bad).await.unwrap(), ServerMsg::Error(_)));
    // Empty subsets would each make a component of their own that nothing reclaims.
    let empty = ControlCmd::Partition {
        group: "g".into(),
        sets: vec![vec!["a".into(), "b".into(), "c".into(), "d".into()], vec![], vec![]],
    };
    let refused = Connection::control(d.addr, empty).await.unwrap();
    assert!(matches!(&refused, ServerMsg::Error(e) if e.contains("non-empty")), "{refused:?}");
    // Delays name members by valid ids: a 4 KiB "sender" is refused, not stored.
    let odd = ControlCmd::Delay { to: "a".into(), from: Some("x".repeat(4096)), ms: 10 };
    let refused = Connection::control(d.addr, odd).await.unwrap();
    assert!(matches!(&refused, ServerMsg::Error(e) if e.contains("member ids")), "{refused:?}");
    // An absurd delay is refused, and the daemon keeps ticking (the group still heals below).
    let huge = ControlCmd::Delay { to: "a".into(), from: None, ms: u64::MAX };
    assert!(
        matches!(Connection::control(d.addr, huge).await.unwrap(), ServerMsg::Error(e) if e.contains("exceeds"))
    );
    let split = ControlCmd::Partition {
        group: "g".into(),
        sets: vec![vec!["a".into(), "c".into()], vec!["b".into(), "d".into()]],
    };
    assert_eq!(Connection::control(d.addr, split).await.unwrap(), ServerMsg::Ok);
    for c in &mut conns {
        view(c).await;
    }
    assert_eq!(
        Connection::control(d.addr, ControlCmd::Heal { group: "g".into() }).await.unwrap(),
        ServerMsg::Ok
    );
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
    assert_eq!(Connection::control(d.addr, cmd).await.unwrap(), ServerMsg::Ok);
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
    let mut g = Connection::join(d.addr, "g", "g1").await.unwrap();
    g.send_raw(vec![0xff, 0xfe, 0xfd]).await.unwrap();
    loop {
        match next(&mut g).await {
            ServerMsg::Error(e) => {
                assert!(e.contains("closing"), "{e}");
                break;
            }
            ServerMsg::View(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    // An oversized frame (declared by its length prefix): the daemon refuses it before reading
    // the body and closes the connection.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        let join = wire::encode(&ClientMsg::Join { group: "g".into(), member: "o1".into() });
        raw.write_all(&(join.len() as u32).to_be_bytes()).await.unwrap();
        raw.write_all(&join).await.unwrap();
        raw.write_all(&((MAX_FRAME_BYTES + 1) as u32).to_be_bytes()).await.unwrap();
        let mut sink = Vec::new();
        let read = tokio::time::timeout(WAIT, raw.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "the oversized sender was disconnected");
        let text = String::from_utf8_lossy(&sink);
        assert!(text.contains("bad frame"), "the daemon said why: {text:?}");
    }
    // A second join with the same name is refused, as is an invalid member id.
    let dup = Connection::join(d.addr, "g", "a").await.expect_err("duplicate");
    assert!(dup.to_string().contains("already"), "{dup}");
    let bad = Connection::join(d.addr, "g", "x y").await.expect_err("invalid id");
    assert!(bad.to_string().contains("invalid member id"), "{bad}");
    // A wrong wire version is named as such.
    let mut frame = wire::encode(&ClientMsg::Heartbeat);
    frame[0] = 9;
    let mut v9 = Connection::join(d.addr, "g", "v9").await.unwrap();
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
        if let ServerMsg::View(v) = msg {
            current = v;
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
    let mut silent = Connection::join(d.addr, "g", "silent").await.unwrap();
    let mut other = Connection::join(d.addr, "g", "other").await.unwrap();
    // `other` keeps itself alive until `silent` is expelled, then leaves: the group is empty.
    let deadline = Instant::now() + WAIT;
    loop {
        other.send(&ClientMsg::Heartbeat).await.unwrap();
        if let Ok(Ok(Some(ServerMsg::View(v)))) =
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
    let e = Connection::join(d.addr, &long, "a").await.expect_err("a long name is refused");
    assert!(e.to_string().contains("group name"), "{e}");
    let e = Connection::join(d.addr, "", "a").await.expect_err("an empty name is refused");
    assert!(e.to_string().contains("group name"), "{e}");
    let limits = Limits { max_groups: 2, ..Limits::default() };
    let d2 = daemon_with(Timing { batch_ms: 30, failure_timeout_ms: 60_000 }, limits).await;
    let _a = Connection::join(d2.addr, "g1", "a").await.unwrap();
    let _b = Connection::join(d2.addr, "g2", "a").await.unwrap();
    let e = Connection::join(d2.addr, "g3", "a").await.expect_err("a third group is refused");
    assert!(e.to_string().contains("at most 2 groups"), "{e}");
    let _c = Connection::join(d2.addr, "g1", "c").await.expect("an existing group still takes");
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
            if let ServerMsg::View(v) = msg {
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
    let stale = Connection::join(d.addr, "g", "m").await.unwrap();
    let mut keeper = Connection::join(d.addr, "g", "keeper").await.unwrap();
    let deadline = Instant::now() + WAIT;
    // Wait until the silent `m` is expelled.
    loop {
        keeper.send(&ClientMsg::Heartbeat).await.unwrap();
        if let Ok(Ok(Some(ServerMsg::View(v)))) =
            tokio::time::timeout(Duration::from_millis(50), keeper.recv()).await
        {
            if v.members == ["keeper"] {
                break;
            }
        }
        assert!(Instant::now() < deadline, "m was not expelled");
    }
    let mut fresh = Connection::join(d.addr, "g", "m").await.expect("the id is free again");
    let current = loop {
        keeper.send(&ClientMsg::Heartbeat).await.unwrap();
        fresh.send(&ClientMsg::Heartbeat).await.unwrap();
        if let Ok(Ok(Some(ServerMsg::View(v)))) =
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
        if let Ok(Ok(Some(ServerMsg::View(v)))) =
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

/// Fault injection is off unless the daemon is started with it: any client could otherwise
/// split or slow a group (connections are not authenticated yet).
#[tokio::test]
async fn fault_injection_is_off_by_default() {
    let d = Daemon::start("127.0.0.1:0", DaemonConfig::default()).await.expect("daemon");
    let _a = Connection::join(d.addr, "g", "a").await.unwrap();
    let delay = ControlCmd::Delay { to: "a".into(), from: None, ms: 60_000 };
    let refused = Connection::control(d.addr, delay).await.unwrap();
    assert!(
        matches!(&refused, ServerMsg::Error(e) if e.contains("--allow-control")),
        "{refused:?}"
    );
    let split = ControlCmd::Partition { group: "g".into(), sets: vec![vec!["a".into()]] };
    assert!(matches!(Connection::control(d.addr, split).await.unwrap(), ServerMsg::Error(_)));
    d.stop();
}
