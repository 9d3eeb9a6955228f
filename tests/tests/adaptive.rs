//! Live protocol switching over the real daemon (TCP, loopback): the group switches when its
//! policy file is edited and when conditions change (growth, added delay); after every switch
//! every member runs the same protocol with the same key; an invalid edit is reported and
//! changes nothing; and messages sent all through the switches are each delivered exactly once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gka_cli::demo::{adapt, AdaptOptions};
use gka_host::policy::{Policy, KNOWN_PROTOCOLS};
use gka_tests::group::{daemon, fast_switching, one_key, TestGroup};
use gka_tests::linked;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_follows_growth_and_delay_under_the_shipped_policy() {
    let catalogue = Arc::new(linked::catalogue());
    let start = linked::protocol("tgdh");
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

/// Sends from every member every 20 ms until all run `protocol` with one key; returns the key.
async fn until_all_run(
    group: &mut TestGroup,
    protocol: &str,
    sent: &mut Vec<String>,
) -> (u64, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        group.pump();
        for (name, m) in &group.members {
            if m.key.is_some() {
                let text = format!("{name}:{}", sent.len());
                m.send(text.as_bytes());
                sent.push(text);
            }
        }
        if let Some(key) = one_key(&group.members) {
            if group.members.values().all(|m| m.runs(protocol)) {
                return key;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "not all on {protocol}");
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
    let catalogue = Arc::new(linked::catalogue());
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("policy.toml");
    write(&policy_file, &policy_text("tgdh"));
    let names = ["ann", "bob", "cat", "dan"];
    let daemon = daemon(Duration::from_secs(3), &names).await;
    let mut group = TestGroup::over_daemon(daemon.addr, "g", &names, |_| {
        let policy = Policy::parse(&policy_text("tgdh"), &KNOWN_PROTOCOLS).unwrap();
        let switching = fast_switching(catalogue.clone(), policy, Some(policy_file.clone()));
        (linked::protocol("tgdh"), Some(switching))
    })
    .await;
    let mut sent = Vec::new();
    let k0 = until_all_run(&mut group, "tgdh", &mut sent).await;

    write(&policy_file, &policy_text("str"));
    let k1 = until_all_run(&mut group, "str", &mut sent).await;
    assert_ne!(k1.1, k0.1);
    assert_eq!(k1.0, k0.0 + 1, "the switch's key is the next epoch");

    // An invalid edit is reported by every member and changes nothing.
    write(&policy_file, "mode = \"fixed\"\nfixed = \"no-such-protocol\"\n");
    group
        .wait("every member reports the invalid edit", Duration::from_secs(20), |m| {
            m.values().all(|w| !w.policy_rejected.is_empty())
        })
        .await;
    for m in group.members.values() {
        assert!(m.policy_rejected[0].contains("no-such-protocol"), "{:?}", m.policy_rejected);
        assert!(m.policy_rejected[0].contains(":2:"), "line named: {:?}", m.policy_rejected);
    }
    assert_eq!(until_all_run(&mut group, "str", &mut sent).await, k1);

    write(&policy_file, &policy_text("gdh"));
    let k2 = until_all_run(&mut group, "gdh", &mut sent).await;
    assert_ne!(k2.1, k1.1);

    // Let the last messages arrive, then every member has every message exactly once.
    let total = sent.len();
    group
        .wait("every message arrives", Duration::from_secs(20), |m| {
            m.values().all(|w| w.received.len() >= total)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    group.pump();
    let mut expected: Vec<Vec<u8>> = sent.iter().map(|s| s.clone().into_bytes()).collect();
    expected.sort();
    for (n, m) in &group.members {
        let mut got = m.received.clone();
        got.sort();
        assert_eq!(got, expected, "{n}: messages lost or doubled");
        assert_eq!(m.switches, 2, "{n}: two switches");
    }
    group.leave_all();
    daemon.stop();
}
