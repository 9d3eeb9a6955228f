//! The member runtime over both implementations of the group layer trait (`GroupEndpoint`):
//! the in-memory network and the daemon over TCP. The same scenario runs on each: members
//! agree and exchange encrypted data; then a member goes (it crashes in memory and is removed
//! by the failure detector; it leaves over the daemon) and the survivors agree on a new key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gka_host::group::MemNet;
use gka_host::group::Timing;
use gka_host::group::{GroupEndpoint, MemGroup};
use gka_host::identity::{Identity, Scheme, TrustStore};
use gka_host::loader::Registry;
use gka_host::member::MemberEvent;
use gka_host::net::Connection;
use gka_host::net::{Daemon, DaemonConfig};
use gka_host::runtime::{spawn_member_on, Command, MemberConfig, MemberHandle, RuntimeEvent};
use gka_plugin_api::{GroupId, Protocol};
use gka_tests::artifacts::plugin_dir;

const TIMING: Timing = Timing { batch_ms: 20, failure_timeout_ms: 500 };
const NAMES: [&str; 4] = ["ann", "bob", "cat", "dan"];

fn protocol() -> Arc<dyn Protocol> {
    let registry = Registry::scan(&[plugin_dir().to_path_buf()]);
    registry.get("tgdh").expect("tgdh loaded").protocol.clone()
}

struct Member {
    handle: MemberHandle,
    key: Option<String>,
    view_members: usize,
    data: Vec<Vec<u8>>,
}

async fn settle(members: &mut BTreeMap<String, Member>, size: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for m in members.values_mut() {
            while let Ok(e) = m.handle.events.try_recv() {
                match e {
                    RuntimeEvent::Member(MemberEvent::View(v)) => {
                        m.view_members = v.members.len();
                        m.key = None;
                    }
                    RuntimeEvent::Member(MemberEvent::Key { fingerprint, .. }) => {
                        m.key = Some(fingerprint)
                    }
                    RuntimeEvent::Member(MemberEvent::Data { plaintext, .. }) => {
                        m.data.push(plaintext)
                    }
                    RuntimeEvent::Stopped(r) => panic!("a member stopped: {r}"),
                    _ => {}
                }
            }
        }
        let keys: Vec<Option<String>> = members.values().map(|m| m.key.clone()).collect();
        if members.values().all(|m| m.view_members == size)
            && keys[0].is_some()
            && keys.iter().all(|k| *k == keys[0])
        {
            return keys[0].clone().unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no agreement of {size}: {keys:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The scenario, for any endpoint type: `connect` joins a member; `silence` makes one stop
/// answering without leaving.
async fn scenario<E, C, F>(connect: C, silence: impl FnOnce(&str, &mut BTreeMap<String, Member>))
where
    E: GroupEndpoint,
    C: Fn(String) -> F,
    F: std::future::Future<Output = E>,
{
    let protocol = protocol();
    let identities: Vec<Identity> =
        NAMES.iter().map(|n| Identity::generate(n, Scheme::Ed25519).unwrap()).collect();
    let mut trust = TrustStore::default();
    for i in &identities {
        trust.insert(i.id(), i.public().clone());
    }
    let mut members = BTreeMap::new();
    for identity in identities {
        let name = identity.id().to_owned();
        let endpoint = connect(name.clone()).await;
        let config = MemberConfig {
            group: "g".into(),
            identity,
            trust: trust.clone(),
            protocol: protocol.clone(),
            dh_group: GroupId::Ffdhe2048,
            heartbeat: Duration::from_millis(50),
            switching: None,
        };
        let handle = spawn_member_on(endpoint, config).expect("member");
        members.insert(name, Member { handle, key: None, view_members: 0, data: Vec::new() });
    }
    let k1 = settle(&mut members, 4).await;
    members["ann"].handle.commands.send(Command::Send(b"over the trait".to_vec())).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !members.values().all(|m| m.data.iter().any(|d| d == b"over the trait")) {
        settle(&mut members, 4).await;
        assert!(tokio::time::Instant::now() < deadline, "data did not arrive everywhere");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    silence("dan", &mut members);
    let k2 = settle(&mut members, 3).await;
    assert_ne!(k1, k2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_memory_network() {
    let group = MemGroup::start(MemNet::new(TIMING), Duration::from_millis(1));
    let g = group.clone();
    scenario(
        move |name| {
            let g = g.clone();
            async move { g.connect(&name).expect("join") }
        },
        |name, members| {
            group.with_net(|net| net.crash(name));
            members.remove(name);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_daemon() {
    let daemon = Daemon::start(
        "127.0.0.1:0",
        DaemonConfig { timing: TIMING, tick: Duration::from_millis(5) },
    )
    .await
    .unwrap();
    let addr = daemon.addr;
    scenario(
        move |name| async move { Connection::join(addr, "g", &name).await.expect("join") },
        |name, members| {
            // Over the daemon the member leaves (a silent, still-connected member is removed by
            // the failure detector in `group_layer.rs`).
            let m = members.remove(name).unwrap();
            m.handle.commands.send(Command::Leave).unwrap();
        },
    )
    .await;
    daemon.stop();
}
