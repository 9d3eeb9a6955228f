//! Live protocol switching over the real daemon (TCP, loopback): the group switches when its
//! policy file is edited and when conditions change (growth, added delay); after every switch
//! every member runs the same protocol with the same key; an invalid edit is reported and
//! changes nothing; and messages sent all through the switches are each delivered exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gka_cli::demo::{adapt, AdaptOptions};
use gka_host::group::Timing;
use gka_host::identity::{Identity, Scheme, TrustStore};
use gka_host::loader::Registry;
use gka_host::member::{Catalogue, SwitchEvent};
use gka_host::member::{ControlTiming, MemberEvent};
use gka_host::net::{Daemon, DaemonConfig};
use gka_host::policy::measure::Calibration;
use gka_host::policy::{Policy, KNOWN_PROTOCOLS};
use gka_host::runtime::{
    spawn_member, Command, MemberConfig, MemberHandle, RuntimeEvent, Switching,
};
use gka_plugin_api::GroupId;
use gka_tests::artifacts::plugin_dir;
use tokio::time::Instant;

fn registry() -> Registry {
    Registry::scan(&[plugin_dir().to_path_buf()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_follows_growth_and_delay_under_the_shipped_policy() {
    let registry = registry();
    let catalogue = Arc::new(Catalogue::from_registry(&registry));
    let start = registry.get("tgdh").unwrap().protocol.clone();
    // CPU load is left out: this machine's load is not under the test's control.
    let options = AdaptOptions { small: 3, large: 8, wan_delay_ms: 100, cpu_phase: false };
    let lines = adapt(catalogue, start, &options).await.expect("adaptive demo");
    let path: Vec<&str> = lines.iter().map(|l| l.protocol.as_str()).collect();
    assert_eq!(path, ["bd", "tgdh", "str", "tgdh"]);
    let reasons: Vec<&str> = lines.iter().map(|l| l.switch.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "tgdh -> bd (rule:small LAN group)",
            "bd -> tgdh (rule:LAN)",
            "tgdh -> str (rule:high-delay WAN)",
            "str -> tgdh (rule:LAN)"
        ]
    );
    for l in &lines {
        assert!(l.switch_ms.is_some(), "{l:?}");
        assert_eq!(l.messages_decrypted, l.members * l.members, "{l:?}");
    }
    let mut keys: Vec<&str> = lines.iter().map(|l| l.fingerprint.as_str()).collect();
    keys.dedup();
    assert_eq!(keys.len(), lines.len(), "every switch gives a new key");
}

fn policy_text(protocol: &str) -> String {
    format!(
        "mode = \"fixed\"\nfixed = \"{protocol}\"\n[stability]\nmin_interval_s = 0.5\n\
         abort_cooldown_s = 1\nmin_view_age_s = 0.3\n"
    )
}

struct Member {
    handle: MemberHandle,
    protocol: String,
    key: Option<(u64, String)>,
    received: Vec<String>,
    policy_rejected: Vec<String>,
    completed: usize,
}

impl Member {
    fn pump(&mut self, name: &str) {
        while let Ok(e) = self.handle.events.try_recv() {
            match e {
                RuntimeEvent::Member(MemberEvent::Key { epoch, fingerprint, protocol }) => {
                    self.key = Some((epoch, fingerprint));
                    self.protocol = protocol;
                }
                RuntimeEvent::Member(MemberEvent::Data { plaintext, .. }) => {
                    self.received.push(String::from_utf8(plaintext).unwrap())
                }
                RuntimeEvent::Member(MemberEvent::Switch(SwitchEvent::Completed { .. })) => {
                    self.completed += 1
                }
                RuntimeEvent::Member(MemberEvent::Undecryptable { reason, .. }) => {
                    panic!("{name}: undecryptable: {reason}")
                }
                RuntimeEvent::Member(MemberEvent::Rejected(r)) => panic!("{name}: rejected {r}"),
                RuntimeEvent::PolicyRejected(e) => self.policy_rejected.push(e),
                RuntimeEvent::Stopped(r) => panic!("{name} stopped: {r}"),
                _ => {}
            }
        }
    }
}

/// Sends from every member every 20 ms until all run `protocol` with one key.
async fn until_all_run(
    members: &mut BTreeMap<String, Member>,
    protocol: &str,
    sent: &mut Vec<String>,
) -> (u64, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (name, m) in members.iter_mut() {
            m.pump(name);
            if m.key.is_some() {
                let text = format!("{name}:{}", sent.len());
                m.handle.commands.send(Command::Send(text.clone().into_bytes())).unwrap();
                sent.push(text);
            }
        }
        let keys: Vec<&Option<(u64, String)>> = members.values().map(|m| &m.key).collect();
        if members.values().all(|m| m.protocol.split('@').next() == Some(protocol))
            && keys.iter().all(|k| k.is_some() && *k == keys[0])
        {
            return keys[0].clone().unwrap();
        }
        assert!(Instant::now() < deadline, "not all on {protocol}: {keys:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write(path: &Path, text: &str) {
    // Write then rename, as editors do, so a member never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_policy_file_switches_the_live_group_and_no_message_is_lost_or_doubled() {
    let registry = registry();
    let catalogue = Arc::new(Catalogue::from_registry(&registry));
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("policy.toml");
    write(&policy_file, &policy_text("tgdh"));
    let daemon = Daemon::start(
        "127.0.0.1:0",
        DaemonConfig {
            timing: Timing { batch_ms: 20, failure_timeout_ms: 3_000 },
            tick: Duration::from_millis(5),
        },
    )
    .await
    .unwrap();
    let names = ["ann", "bob", "cat", "dan"];
    let identities: Vec<Identity> =
        names.iter().map(|n| Identity::generate(n, Scheme::Ed25519).unwrap()).collect();
    let mut trust = TrustStore::default();
    for i in &identities {
        trust.insert(i.id(), i.public().clone());
    }
    let mut members = BTreeMap::new();
    for identity in identities {
        let name = identity.id().to_owned();
        let switching = Switching {
            catalogue: catalogue.clone(),
            policy: Some(Policy::parse(&policy_text("tgdh"), &KNOWN_PROTOCOLS).unwrap()),
            policy_file: Some(policy_file.clone()),
            timing: ControlTiming {
                probe_every: Duration::from_millis(200),
                report_every: Duration::from_millis(500),
                evaluate_every: Duration::from_millis(200),
            },
            calibration: Some(Calibration { exp_ms: 0.5, sign_ms: 0.02, verify_ms: 0.05 }),
        };
        let config = MemberConfig {
            group: "g".into(),
            identity,
            trust: trust.clone(),
            protocol: registry.get("tgdh").unwrap().protocol.clone(),
            dh_group: GroupId::Ffdhe2048,
            heartbeat: Duration::from_millis(200),
            switching: Some(switching),
        };
        let handle = spawn_member(&daemon.addr.to_string(), config).await.unwrap();
        let member = Member {
            handle,
            protocol: String::new(),
            key: None,
            received: Vec::new(),
            policy_rejected: Vec::new(),
            completed: 0,
        };
        members.insert(name, member);
    }
    let mut sent = Vec::new();
    let k0 = until_all_run(&mut members, "tgdh", &mut sent).await;

    write(&policy_file, &policy_text("str"));
    let k1 = until_all_run(&mut members, "str", &mut sent).await;
    assert_ne!(k1.1, k0.1);
    assert_eq!(k1.0, k0.0 + 1, "the switch's key is the next epoch");

    // An invalid edit is reported by every member and changes nothing.
    write(&policy_file, "mode = \"fixed\"\nfixed = \"no-such-protocol\"\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !members.values().all(|m| !m.policy_rejected.is_empty()) {
        for (n, m) in members.iter_mut() {
            m.pump(n);
        }
        assert!(Instant::now() < deadline, "the invalid edit was not reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for m in members.values() {
        assert!(m.policy_rejected[0].contains("no-such-protocol"), "{:?}", m.policy_rejected);
        assert!(m.policy_rejected[0].contains(":2:"), "line named: {:?}", m.policy_rejected);
    }
    assert_eq!(until_all_run(&mut members, "str", &mut sent).await, k1);

    write(&policy_file, &policy_text("gdh"));
    let k2 = until_all_run(&mut members, "gdh", &mut sent).await;
    assert_ne!(k2.1, k1.1);

    // Let the last messages arrive, then every member has every message exactly once.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for (n, m) in members.iter_mut() {
            m.pump(n);
        }
        if members.values().all(|m| m.received.len() >= sent.len()) {
            break;
        }
        assert!(Instant::now() < deadline, "messages missing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut expected = sent.clone();
    expected.sort();
    for (n, m) in members.iter_mut() {
        m.pump(n);
        let mut got = m.received.clone();
        got.sort();
        assert_eq!(got, expected, "{n}: messages lost or doubled");
        assert_eq!(m.completed, 2, "{n}: two switches");
    }
    for m in members.values() {
        m.handle.commands.send(Command::Leave).unwrap();
    }
    daemon.stop();
}
