//! The member runtime over the three implementations of the group layer trait
//! (`GroupEndpoint`): the in-memory network (on tokio's paused clock, so the run is
//! deterministic and takes no real time), the daemon over TCP, and etcd (one-node and
//! three-node clusters of our own on loopback). The same scenario runs on each: members agree
//! and exchange encrypted data; then a member goes (it crashes in memory and is removed by the
//! failure detector; it leaves over the daemon and etcd) and the survivors agree on a new key.
//! Over the daemon, members also recover from its restart, and give up (saying so) when it is
//! gone; over etcd, the group outlives one of three etcd nodes, and a member whose key was
//! removed rejoins as a new incarnation.

use std::time::Duration;

use gka_host::group::{EtcdConfig, EtcdTiming, MemGroup, MemNet, Timing};
use gka_host::runtime::{Command, Recovery};
use gka_tests::etcd::EtcdCluster;
use gka_tests::group::{daemon, daemon_on, TestGroup};
use gka_tests::linked;

const TIMING: Timing = Timing { batch_ms: 20, failure_timeout_ms: 500 };
const NAMES: [&str; 4] = ["ann", "bob", "cat", "dan"];

/// The scenario once the members are up; `silence` makes one member go.
async fn scenario(group: &mut TestGroup, silence: impl FnOnce(&str, &mut TestGroup)) {
    let (_, k1) = group.agreed(4).await;
    group.members["ann"].send(b"over the trait");
    group
        .wait("the data arrives everywhere", Duration::from_secs(20), |m| {
            m.values().all(|w| w.received.iter().any(|d| d == b"over the trait"))
        })
        .await;
    silence("dan", group);
    let (_, k2) = group.agreed(3).await;
    assert_ne!(k1, k2);
}

#[tokio::test(start_paused = true)]
async fn over_the_in_memory_network() {
    let net = MemGroup::start(MemNet::new(TIMING), Duration::from_millis(1));
    let mut group = TestGroup::over_memnet(&net, "g", &NAMES, |_| (linked::protocol("tgdh"), None));
    scenario(&mut group, |name, group| {
        net.with_net(|n| n.crash(name));
        group.members.remove(name);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_daemon() {
    let daemon = daemon(Duration::from_millis(TIMING.failure_timeout_ms), &NAMES).await;
    let mut group =
        TestGroup::over_daemon(daemon.addr, "g", &NAMES, |_| (linked::protocol("tgdh"), None))
            .await;
    // Over the daemon the member leaves (a silent, still-connected member is removed by the
    // failure detector in `group_layer.rs`).
    scenario(&mut group, leave).await;
    daemon.stop();
}

/// Members over the daemon outlive it: when it stops, each reports the lost connection and
/// rejoins the restarted daemon (on the same address) as a new incarnation, and the group
/// agrees on a fresh key and carries data again. When no daemon comes back, each gives up
/// after its deadline and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_rejoin_a_restarted_daemon_and_give_up_on_a_vanished_one() {
    let names = &NAMES[..3];
    let timeout = Duration::from_millis(TIMING.failure_timeout_ms);
    let first = daemon(timeout, names).await;
    let addr = first.addr;
    let recovery = Recovery {
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        attempt_timeout: Duration::from_secs(1),
        give_up_after: Duration::from_secs(3),
    };
    let setup = |_: &str| (linked::protocol("tgdh"), None);
    let mut group =
        TestGroup::over_daemon_recovering(addr, "g", names, setup, Some(recovery)).await;
    let (_, k1) = group.agreed(3).await;
    first.stop();
    group
        .wait("every member saw its connection end", Duration::from_secs(10), |m| {
            m.values().all(|w| w.disconnects == 1)
        })
        .await;
    // The old listener closes as its task is dropped; the port may take a moment to be free.
    let mut second = None;
    for _ in 0..100 {
        match daemon_on(&addr.to_string(), timeout, names).await {
            Ok(d) => {
                second = Some(d);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let second = second.expect("the address is free again");
    let (_, k2) = group.agreed(3).await;
    assert_ne!(k1, k2, "a new run, a new key");
    assert!(group.members.values().all(|w| w.rejoins == 1 && w.failed.is_none()));
    group.members["ann"].send(b"after the restart");
    group
        .wait("the data arrives everywhere", Duration::from_secs(20), |m| {
            m.values().all(|w| w.received.iter().any(|d| d == b"after the restart"))
        })
        .await;
    second.stop();
    group
        .wait("every member gave up", Duration::from_secs(20), |m| {
            m.values().all(|w| w.failed.is_some())
        })
        .await;
    let why = group.members["bob"].failed.clone().expect("checked");
    assert!(why.contains("could not rejoin"), "{why}");
}

/// Settings for members over `cluster`: a 1 s lease, a 100 ms settle window.
fn etcd_config(cluster: &EtcdCluster) -> EtcdConfig {
    let mut config = EtcdConfig::new(cluster.client_urls.clone());
    config.timing =
        EtcdTiming { lease_ttl_s: 1, settle: Duration::from_millis(100), ..EtcdTiming::default() };
    config
}

/// `name` leaves the group.
fn leave(name: &str, group: &mut TestGroup) {
    let m = group.members.remove(name).expect("a member");
    m.handle.commands.send(Command::Leave).expect("the member runs");
}

/// The scenario over an etcd cluster of `nodes` nodes; the member leaves.
async fn over_etcd(nodes: usize) {
    let cluster = EtcdCluster::start(nodes);
    let setup = |_: &str| (linked::protocol("tgdh"), None);
    let mut group = TestGroup::over_etcd(&etcd_config(&cluster), "g", &NAMES, setup, None).await;
    scenario(&mut group, leave).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_one_node_etcd() {
    over_etcd(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_three_node_etcd() {
    over_etcd(3).await;
}

/// A three-node cluster loses a node (its process is killed): members, which know every
/// node, go on through the other two, agree on a key when a member leaves, and carry data.
/// Then an operator deletes a member's key: that member finds itself out of the group and
/// rejoins as a new incarnation, and the group agrees on a key that includes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_outlives_an_etcd_node_and_a_removed_member_rejoins() {
    let mut cluster = EtcdCluster::start(3);
    let config = etcd_config(&cluster);
    let recovery = Recovery {
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        attempt_timeout: Duration::from_secs(5),
        give_up_after: Duration::from_secs(20),
    };
    let setup = |_: &str| (linked::protocol("tgdh"), None);
    let mut group = TestGroup::over_etcd(&config, "g", &NAMES, setup, Some(recovery)).await;
    let (_, k1) = group.agreed(4).await;
    cluster.kill(0);
    leave("dan", &mut group);
    let (_, k2) = group.agreed(3).await;
    assert_ne!(k1, k2);
    group.members["ann"].send(b"two nodes left");
    group
        .wait("the data arrives everywhere", Duration::from_secs(20), |m| {
            m.values().all(|w| w.received.iter().any(|d| d == b"two nodes left"))
        })
        .await;

    let mut client = etcd_client::Client::connect(&cluster.client_urls[1..], None)
        .await
        .expect("a client of the surviving nodes");
    client.delete("/gka/g/members/bob", None).await.expect("the key is deleted");
    group.wait("bob rejoined", Duration::from_secs(20), |m| m["bob"].rejoins == 1).await;
    let (_, k3) = group.agreed(3).await;
    assert_ne!(k2, k3);
    assert!(group.members.values().all(|w| w.failed.is_none()));
}
