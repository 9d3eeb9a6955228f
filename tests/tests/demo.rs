//! `gka demo`'s scenario end to end over real TCP on loopback, for every protocol: initial
//! agreement, join, leave, merge, partition (each side with its own key), heal, a join and a leave
//! during a join's rekey, and a partition during a merge, with encrypted traffic after every event;
//! every member must agree on every key.

use gka_cli::demo::{run, DemoOptions};
use gka_tests::linked;

fn demo(protocol: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let lines = rt
        .block_on(run(linked::protocol(protocol), &DemoOptions { members: 4, seconds: 0 }))
        .unwrap_or_else(|e| panic!("{protocol}: {e:#}"));
    let events: Vec<&str> = lines.iter().map(|l| l.event.as_str()).collect();
    assert_eq!(events.len(), 12, "{events:?}");
    // Every event produced a new key.
    let mut fps: Vec<&str> = lines.iter().map(|l| l.fingerprint.as_str()).collect();
    fps.sort();
    fps.dedup();
    assert_eq!(fps.len(), lines.len(), "{protocol}: a key repeated");
    for l in &lines {
        assert_eq!(l.messages_decrypted, l.members * l.members, "{protocol}: {}", l.event);
    }
}

#[test]
fn bd() {
    demo("bd");
}
#[test]
fn ckd() {
    demo("ckd");
}
#[test]
fn gdh() {
    demo("gdh");
}
#[test]
fn str() {
    demo("str");
}
#[test]
fn tgdh() {
    demo("tgdh");
}
