//! The daemon over real TCP on loopback: views, agreed order, view changes on disconnect,
//! partitions and heal, delay emulation, and refusal of bad input.

// A test of the daemon over real TCP: it measures real time.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use gka_host::group::Timing;
use gka_host::net::wire::{self, ClientMsg, ControlCmd, ServerMsg, MAX_FRAME_BYTES};
use gka_host::net::Connection;
use gka_host::net::{Daemon, DaemonConfig};
use gka_plugin_api::View;

const WAIT: Duration = Duration::from_secs(10);

async fn daemon() -> Daemon {
    let config = DaemonConfig {
        timing: Timing { batch_ms: 30, failure_timeout_ms: 60_000 },
        tick: Duration::from_millis(5),
    };
    Daemon::start("127.0.0.1:0", config).await.expect("daemon")
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
