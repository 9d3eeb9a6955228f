//! The group layer's guarantees (documented on `gka_host::group::GroupEndpoint`), tested
//! through the same code against both implementations: the in-memory network (its `MemNet`
//! core, on exact virtual time) and the daemon over TCP (through the `GroupEndpoint` trait, in
//! real time).
//! - views: members oldest first, simultaneous joins in one view, joined/left per member;
//! - agreed order: every member of a view gets the same messages in the same order;
//! - view synchrony: a message is delivered in its view to all survivors or to none, before
//!   the next view;
//! - failure detection: a silent member is removed within the timeout;
//! - partitions continue separately and heal into a merge.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gka_host::group::GroupEndpoint;
use gka_host::group::MemNet;
use gka_host::group::{Delivery, Timing};
use gka_host::net::wire::{ClientMsg, ControlCmd, ServerMsg};
use gka_host::net::Connection;
use gka_host::net::Daemon;
use gka_tests::group;

const TIMING: Timing = Timing { batch_ms: 40, failure_timeout_ms: 600 };

/// What the tests need from a group layer.
trait GroupLayer {
    fn join(&mut self, member: &str);
    fn leave(&mut self, member: &str);
    /// The member stops answering (no leave, no heartbeats) but stays connected.
    fn crash(&mut self, member: &str);
    fn send(&mut self, member: &str, bytes: &[u8]);
    fn partition(&mut self, sets: &[&[&str]]);
    fn heal(&mut self);
    /// Lets `ms` pass.
    fn wait(&mut self, ms: u64);
    /// Deliveries to `member` since the last call.
    fn take(&mut self, member: &str) -> Vec<Delivery>;
}

impl GroupLayer for MemNet {
    fn join(&mut self, member: &str) {
        Self::join(self, member).unwrap();
    }
    fn leave(&mut self, member: &str) {
        Self::leave(self, member).unwrap();
    }
    fn crash(&mut self, member: &str) {
        Self::crash(self, member);
    }
    fn send(&mut self, member: &str, bytes: &[u8]) {
        Self::send(self, member, None, bytes.to_vec()).unwrap();
    }
    fn partition(&mut self, sets: &[&[&str]]) {
        let sets: Vec<Vec<String>> =
            sets.iter().map(|s| s.iter().map(|m| m.to_string()).collect()).collect();
        Self::partition(self, &sets).unwrap();
    }
    fn heal(&mut self) {
        Self::heal(self);
    }
    fn wait(&mut self, ms: u64) {
        self.advance(ms);
    }
    fn take(&mut self, member: &str) -> Vec<Delivery> {
        self.take_delivered(member)
    }
}

/// The daemon on loopback, each member a real connection with a reader and a heartbeat task.
struct DaemonLayer {
    rt: tokio::runtime::Runtime,
    daemon: Daemon,
    members: BTreeMap<String, Member>,
}

struct Member {
    outbox: tokio::sync::mpsc::UnboundedSender<ClientMsg>,
    delivered: Arc<Mutex<Vec<Delivery>>>,
    view: Arc<Mutex<u64>>,
    heartbeat: tokio::task::JoinHandle<()>,
    task: tokio::task::JoinHandle<()>,
}

impl DaemonLayer {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        // The tests' members are a to d; the test helper's daemon admits them.
        let daemon = rt.block_on(group::daemon(
            Duration::from_millis(TIMING.failure_timeout_ms),
            &["a", "b", "c", "d"],
        ));
        Self { rt, daemon, members: BTreeMap::new() }
    }
}

impl GroupLayer for DaemonLayer {
    fn join(&mut self, member: &str) {
        let addr = self.daemon.addr;
        let mut conn =
            self.rt.block_on(Connection::join(addr, "g", &group::identity(member))).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ClientMsg>();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let view = Arc::new(Mutex::new(0u64));
        let (d, v) = (delivered.clone(), view.clone());
        let task = self.rt.spawn(async move {
            loop {
                tokio::select! {
                    msg = rx.recv() => {
                        // Member traffic goes through the runtime's trait.
                        let sent = match msg {
                            Some(ClientMsg::Send { view_id, to, bytes }) => GroupEndpoint::send(&mut conn, view_id, to, bytes).await,
                            Some(ClientMsg::Heartbeat) => GroupEndpoint::heartbeat(&mut conn).await,
                            Some(ClientMsg::Leave) | None => { let _ = GroupEndpoint::leave(&mut conn).await; break }
                            Some(other) => conn.send(&other).await,
                        };
                        if sent.is_err() { break }
                    }
                    delivery = GroupEndpoint::recv(&mut conn) => match delivery {
                        Ok(Some(Delivery::View { view, run, certificates })) => {
                            *v.lock().unwrap() = view.view_id;
                            d.lock().unwrap().push(Delivery::View { view, run, certificates });
                        }
                        Ok(Some(m)) => d.lock().unwrap().push(m),
                        _ => break,
                    },
                }
            }
        });
        let hb_tx = tx.clone();
        let heartbeat = self.rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if hb_tx.send(ClientMsg::Heartbeat).is_err() {
                    break;
                }
            }
        });
        self.members.insert(member.into(), Member { outbox: tx, delivered, view, heartbeat, task });
    }
    fn leave(&mut self, member: &str) {
        let m = self.members.remove(member).unwrap();
        m.heartbeat.abort();
        let _ = m.outbox.send(ClientMsg::Leave);
    }
    fn crash(&mut self, member: &str) {
        // Silent but connected: no heartbeats, nothing sent; the failure detector must act.
        let m = &self.members[member];
        m.heartbeat.abort();
    }
    fn send(&mut self, member: &str, bytes: &[u8]) {
        let m = &self.members[member];
        let view_id = *m.view.lock().unwrap();
        m.outbox.send(ClientMsg::Send { view_id, to: None, bytes: bytes.to_vec() }).unwrap();
    }
    fn partition(&mut self, sets: &[&[&str]]) {
        let sets = sets.iter().map(|s| s.iter().map(|m| m.to_string()).collect()).collect();
        let reply = self.rt.block_on(Connection::control(
            self.daemon.addr,
            &group::operator(),
            ControlCmd::Partition { group: "g".into(), sets },
        ));
        assert_eq!(reply.unwrap(), ServerMsg::Ok);
    }
    fn heal(&mut self) {
        let reply = self.rt.block_on(Connection::control(
            self.daemon.addr,
            &group::operator(),
            ControlCmd::Heal { group: "g".into() },
        ));
        assert_eq!(reply.unwrap(), ServerMsg::Ok);
    }
    fn wait(&mut self, ms: u64) {
        // Real time on a shared 2-core machine: give the asynchronous side ample slack (the
        // in-memory run checks the same steps on exact virtual time).
        std::thread::sleep(Duration::from_millis(3 * ms));
    }
    fn take(&mut self, member: &str) -> Vec<Delivery> {
        std::mem::take(&mut *self.members[member].delivered.lock().unwrap())
    }
}

impl Drop for DaemonLayer {
    fn drop(&mut self) {
        for m in self.members.values() {
            m.heartbeat.abort();
            m.task.abort();
        }
    }
}

fn views(d: &[Delivery]) -> Vec<gka_plugin_api::View> {
    d.iter()
        .filter_map(|x| if let Delivery::View { view, .. } = x { Some(view.clone()) } else { None })
        .collect()
}

fn bodies(d: &[Delivery]) -> Vec<Vec<u8>> {
    d.iter()
        .filter_map(|x| {
            if let Delivery::Message { bytes, .. } = x {
                Some(bytes.clone())
            } else {
                None
            }
        })
        .collect()
}

fn views_and_order(net: &mut dyn GroupLayer) {
    for m in ["a", "b", "c"] {
        net.join(m);
    }
    net.wait(150);
    let mut first = Vec::new();
    for m in ["a", "b", "c"] {
        let v = views(&net.take(m));
        assert_eq!(v.len(), 1, "{m}: simultaneous joins form one view: {v:?}");
        assert_eq!(v[0].members, ["a", "b", "c"]);
        first.push(v[0].view_id);
    }
    assert!(first.iter().all(|v| *v == first[0]));
    for round in 0..4u8 {
        for (i, m) in ["a", "b", "c"].iter().enumerate() {
            net.send(m, &[i as u8, round]);
        }
    }
    net.wait(150);
    let orders: Vec<Vec<Vec<u8>>> = ["a", "b", "c"].iter().map(|m| bodies(&net.take(m))).collect();
    assert_eq!(orders[0].len(), 12);
    assert!(orders.iter().all(|o| o == &orders[0]), "agreed order");
}

fn view_synchrony_and_leave(net: &mut dyn GroupLayer) {
    for m in ["a", "b", "c"] {
        net.join(m);
    }
    net.wait(150);
    for m in ["a", "b", "c"] {
        net.take(m);
    }
    net.send("a", b"before");
    net.leave("c");
    net.wait(200);
    for m in ["a", "b"] {
        let d = net.take(m);
        // The message of the old view comes before the new view, at both survivors.
        let pos_msg =
            d.iter().position(|x| matches!(x, Delivery::Message { .. })).expect("message");
        let pos_view = d.iter().position(|x| matches!(x, Delivery::View { .. })).expect("view");
        assert!(pos_msg < pos_view, "{m}: {d:?}");
        let v = views(&d);
        assert_eq!(v[0].members, ["a", "b"]);
        assert_eq!(v[0].left, ["c"]);
    }
}

fn failure_detection(net: &mut dyn GroupLayer) {
    for m in ["a", "b", "c"] {
        net.join(m);
    }
    net.wait(150);
    for m in ["a", "b", "c"] {
        net.take(m);
    }
    net.crash("b");
    // Timeout 600 ms plus the batching window, with margin.
    net.wait(1_200);
    for m in ["a", "c"] {
        let v = views(&net.take(m));
        assert_eq!(v.last().expect("a view without b").members, ["a", "c"], "{m}");
    }
}

fn partition_and_heal(net: &mut dyn GroupLayer) {
    for m in ["a", "b", "c", "d"] {
        net.join(m);
    }
    net.wait(150);
    for m in ["a", "b", "c", "d"] {
        net.take(m);
    }
    net.partition(&[&["a", "c"], &["b", "d"]]);
    net.wait(150);
    let va = views(&net.take("a"));
    let vb = views(&net.take("b"));
    assert_eq!(va[0].members, ["a", "c"]);
    assert_eq!(vb[0].members, ["b", "d"]);
    assert_ne!(va[0].view_id, vb[0].view_id);
    net.take("c");
    net.take("d");
    net.send("a", b"side a");
    net.wait(100);
    assert_eq!(bodies(&net.take("c")), [b"side a".to_vec()]);
    assert!(bodies(&net.take("b")).is_empty(), "the other side hears nothing");
    net.heal();
    net.wait(150);
    let v = views(&net.take("a"));
    assert_eq!(v.last().unwrap().members, ["a", "b", "c", "d"]);
    assert_eq!(v.last().unwrap().joined, ["b", "d"]);
}

macro_rules! both {
    ($($name:ident),*) => {
        mod in_memory {
            $(#[test] fn $name() {
                let mut net = gka_host::group::MemNet::new(super::TIMING);
                super::$name(&mut net);
            })*
        }
        mod daemon {
            $(#[test] fn $name() {
                let mut net = super::DaemonLayer::new();
                super::$name(&mut net);
            })*
        }
    };
}

both!(views_and_order, view_synchrony_and_leave, failure_detection, partition_and_heal);
