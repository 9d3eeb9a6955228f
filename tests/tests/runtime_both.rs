//! The member runtime over both implementations of the group layer trait (`GroupEndpoint`):
//! the in-memory network (on tokio's paused clock, so the run is deterministic and takes no
//! real time) and the daemon over TCP. The same scenario runs on each: members agree and
//! exchange encrypted data; then a member goes (it crashes in memory and is removed by the
//! failure detector; it leaves over the daemon) and the survivors agree on a new key.

use std::time::Duration;

use gka_host::group::{MemGroup, MemNet, Timing};
use gka_host::runtime::Command;
use gka_tests::group::{daemon, TestGroup};
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
    scenario(&mut group, |name, group| {
        // Over the daemon the member leaves (a silent, still-connected member is removed by
        // the failure detector in `group_layer.rs`).
        let m = group.members.remove(name).expect("a member");
        m.handle.commands.send(Command::Leave).expect("the member runs");
    })
    .await;
    daemon.stop();
}
