//! The group layer's guarantees (documented on `gka_host::group::GroupEndpoint`), tested
//! through the same code against its three implementations: the in-memory network (its
//! `MemNet` core, on exact virtual time), the daemon over TCP, and etcd (a one-node and a
//! three-node cluster of our own on loopback), the last two through the `GroupEndpoint` trait,
//! in real time.
//! - views: members oldest first, simultaneous joins in one view, joined/left per member;
//! - agreed order: every member of a view gets the same messages in the same order;
//! - view synchrony: a message is delivered in its view to all survivors or to none, before
//!   the next view;
//! - failure detection: a silent member is removed within the timeout;
//! - partitions continue separately and heal into a merge (in memory and over the daemon;
//!   etcd's primary-component partitions are tested across network namespaces).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gka_host::group::{Delivery, GroupEndpoint, MemNet, Timing};
use gka_host::group::{EtcdConfig, EtcdEndpoint, EtcdTiming};
use gka_host::net::wire::{ControlCmd, ServerMsg};
use gka_host::net::Connection;
use gka_host::net::Daemon;
use gka_tests::etcd::EtcdCluster;
use gka_tests::group;

const TIMING: Timing = Timing { batch_ms: 40, failure_timeout_ms: 600 };

/// The etcd layer's settle window in these tests: one join takes a few consensus rounds.
const ETCD_SETTLE: Duration = Duration::from_millis(300);

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

/// What a test member's task is told to do.
enum Cmd {
    Send { view_id: u64, bytes: Vec<u8> },
    Heartbeat,
    Leave,
}

/// One member over a real endpoint: a task that feeds it commands and records its deliveries,
/// and a heartbeat task (stopped to make the member crash).
struct Member {
    outbox: tokio::sync::mpsc::UnboundedSender<Cmd>,
    delivered: Arc<Mutex<Vec<Delivery>>>,
    view: Arc<Mutex<u64>>,
    heartbeat: tokio::task::JoinHandle<()>,
    task: tokio::task::JoinHandle<()>,
    leaving: bool,
}

impl Member {
    /// Spawns the member's tasks on `rt` over the endpoint `connect` yields.
    fn spawn<E, F>(rt: &tokio::runtime::Runtime, connect: F) -> Self
    where
        E: GroupEndpoint,
        F: std::future::Future<Output = std::io::Result<E>> + Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Cmd>();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let view = Arc::new(Mutex::new(0u64));
        let (d, v) = (delivered.clone(), view.clone());
        let task = rt.spawn(async move {
            let mut endpoint = connect.await.expect("the member joins");
            loop {
                tokio::select! {
                    cmd = rx.recv() => {
                        let sent = match cmd {
                            Some(Cmd::Send { view_id, bytes }) => endpoint.send(view_id, None, bytes).await,
                            Some(Cmd::Heartbeat) => endpoint.heartbeat().await,
                            Some(Cmd::Leave) | None => { let _ = endpoint.leave().await; break }
                        };
                        if sent.is_err() { break }
                    }
                    delivery = endpoint.recv() => match delivery {
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
        let heartbeat = rt.spawn(async move {
            loop {
                if hb_tx.send(Cmd::Heartbeat).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { outbox: tx, delivered, view, heartbeat, task, leaving: false }
    }

    /// Leaves; the task ends once the endpoint has left.
    fn leave(mut self) {
        self.heartbeat.abort();
        let _ = self.outbox.send(Cmd::Leave);
        self.leaving = true;
    }

    /// Silent but connected: no heartbeats, nothing sent; the failure detector must act.
    fn crash(&self) {
        self.heartbeat.abort();
    }

    fn send(&self, bytes: &[u8]) {
        let view_id = *self.view.lock().unwrap();
        self.outbox.send(Cmd::Send { view_id, bytes: bytes.to_vec() }).unwrap();
    }

    fn take(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.delivered.lock().unwrap())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if !self.leaving {
            self.task.abort();
        }
    }
}

/// A group layer that runs over real endpoints, in real time: how its members join, how
/// faults are injected, and how much slack a step of the tests needs.
trait Backend {
    /// Joins `member`, one after another, so that members are ordered as they joined.
    fn join(&self, rt: &tokio::runtime::Runtime, member: &str) -> Member;
    fn partition(&self, rt: &tokio::runtime::Runtime, sets: &[&[&str]]);
    fn heal(&self, rt: &tokio::runtime::Runtime);
    /// How long the tests' `ms` of virtual time take here.
    fn real_time(&self, ms: u64) -> Duration;
}

/// A [`Backend`] with its members, each a real endpoint with a reader and a heartbeat task.
struct Real<B> {
    rt: tokio::runtime::Runtime,
    backend: B,
    members: BTreeMap<String, Member>,
}

impl<B: Backend> Real<B> {
    fn new(make: impl FnOnce(&tokio::runtime::Runtime) -> B) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let backend = {
            let _guard = rt.enter();
            make(&rt)
        };
        Self { rt, backend, members: BTreeMap::new() }
    }
}

impl<B: Backend> GroupLayer for Real<B> {
    fn join(&mut self, member: &str) {
        let m = self.backend.join(&self.rt, member);
        self.members.insert(member.into(), m);
    }
    fn leave(&mut self, member: &str) {
        self.members.remove(member).unwrap().leave();
    }
    fn crash(&mut self, member: &str) {
        self.members[member].crash();
    }
    fn send(&mut self, member: &str, bytes: &[u8]) {
        self.members[member].send(bytes);
    }
    fn partition(&mut self, sets: &[&[&str]]) {
        self.backend.partition(&self.rt, sets);
    }
    fn heal(&mut self) {
        self.backend.heal(&self.rt);
    }
    fn wait(&mut self, ms: u64) {
        std::thread::sleep(self.backend.real_time(ms));
    }
    fn take(&mut self, member: &str) -> Vec<Delivery> {
        self.members[member].take()
    }
}

/// The daemon on loopback.
struct DaemonBackend(Daemon);

impl DaemonBackend {
    fn layer() -> Real<Self> {
        Real::new(|rt| {
            // The tests' members are a to d; the test helper's daemon admits them.
            Self(rt.block_on(group::daemon(
                Duration::from_millis(TIMING.failure_timeout_ms),
                &["a", "b", "c", "d"],
            )))
        })
    }
}

impl Backend for DaemonBackend {
    fn join(&self, rt: &tokio::runtime::Runtime, member: &str) -> Member {
        // The daemon acknowledges each join, so joins made one after another are seen in
        // that order.
        let conn = rt.block_on(Connection::join(self.0.addr, "g", &group::identity(member)));
        Member::spawn(rt, async move { conn })
    }
    fn partition(&self, rt: &tokio::runtime::Runtime, sets: &[&[&str]]) {
        let sets = sets.iter().map(|s| s.iter().map(|m| m.to_string()).collect()).collect();
        let reply = rt.block_on(Connection::control(
            self.0.addr,
            &group::operator(),
            ControlCmd::Partition { group: "g".into(), sets },
        ));
        assert_eq!(reply.unwrap(), ServerMsg::Ok);
    }
    fn heal(&self, rt: &tokio::runtime::Runtime) {
        let reply = rt.block_on(Connection::control(
            self.0.addr,
            &group::operator(),
            ControlCmd::Heal { group: "g".into() },
        ));
        assert_eq!(reply.unwrap(), ServerMsg::Ok);
    }
    fn real_time(&self, ms: u64) -> Duration {
        // A shared 2-core machine: give the asynchronous side ample slack (the in-memory run
        // checks the same steps on exact virtual time).
        Duration::from_millis(3 * ms)
    }
}

/// Our own etcd cluster on loopback (one or three nodes), each member an `EtcdEndpoint` with
/// a 1 s lease and a settle window long enough for joins made one after another to form one
/// view. Partitions are not injected here: etcd's side of them is tested across network
/// namespaces (`tests/netns/partition.sh`).
struct EtcdBackend {
    config: EtcdConfig,
    _cluster: EtcdCluster,
}

impl EtcdBackend {
    fn layer(nodes: usize) -> Real<Self> {
        Real::new(|_| {
            let cluster = EtcdCluster::start(nodes);
            let mut config = EtcdConfig::new(cluster.client_urls.clone());
            config.timing =
                EtcdTiming { lease_ttl_s: 1, settle: ETCD_SETTLE, ..EtcdTiming::default() };
            Self { config, _cluster: cluster }
        })
    }
}

impl Backend for EtcdBackend {
    fn join(&self, rt: &tokio::runtime::Runtime, member: &str) -> Member {
        let joined = rt.block_on(EtcdEndpoint::join(&self.config, "g", member, None));
        Member::spawn(rt, async move { joined })
    }
    fn partition(&self, _: &tokio::runtime::Runtime, _: &[&[&str]]) {
        unreachable!("partitions of the etcd layer are tested across network namespaces")
    }
    fn heal(&self, _: &tokio::runtime::Runtime) {
        unreachable!("partitions of the etcd layer are tested across network namespaces")
    }
    fn real_time(&self, ms: u64) -> Duration {
        // Every step is a consensus round: more slack than the daemon. The failure timeout
        // here is the lease's 1 s (etcd checks leases twice a second) plus the settle window,
        // which 3 x 1,200 ms and the window cover.
        Duration::from_millis(3 * ms) + ETCD_SETTLE
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
                Some(bytes.to_vec())
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

/// Runs `tests` against the layer `make` builds, in module `module`.
macro_rules! suite {
    ($module:ident, $make:expr, [$($name:ident),*]) => {
        mod $module {
            $(#[test] fn $name() {
                let mut net = $make;
                super::$name(&mut net);
            })*
        }
    };
}

suite!(
    in_memory,
    gka_host::group::MemNet::new(super::TIMING),
    [views_and_order, view_synchrony_and_leave, failure_detection, partition_and_heal]
);
suite!(
    daemon,
    super::DaemonBackend::layer(),
    [views_and_order, view_synchrony_and_leave, failure_detection, partition_and_heal]
);
suite!(
    etcd_one_node,
    super::EtcdBackend::layer(1),
    [views_and_order, view_synchrony_and_leave, failure_detection]
);
suite!(
    etcd_three_nodes,
    super::EtcdBackend::layer(3),
    [views_and_order, view_synchrony_and_leave, failure_detection]
);
