//! `gka demo`'s scenario end to end over real TCP on loopback, for every protocol, over the
//! daemon and over a one-node etcd cluster of our own: initial agreement, join, leave, merge,
//! partition (over the daemon each side with its own key; over etcd the side cut off from the
//! quorum is removed and rejoins), heal, a join and a leave during a join's rekey, and a
//! partition during a merge, with encrypted traffic after every event; every member must agree
//! on every key.

use gka_cli::demo::{run, DemoOptions, Layer};
use gka_host::group::EtcdConfig;
use gka_tests::etcd::EtcdCluster;
use gka_tests::linked;

fn demo(protocol: &str) {
    scenario(protocol, Layer::Daemon, 12);
}

fn demo_over_etcd(protocol: &str) {
    let cluster = EtcdCluster::start(1);
    let mut config = EtcdConfig::new(cluster.client_urls.clone());
    config.timing.lease_ttl_s = 2;
    // Two events fewer: the sides cut off from etcd have no views of their own.
    scenario(protocol, Layer::Etcd(config), 10);
}

fn scenario(protocol: &str, layer: Layer, events: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let lines = rt
        .block_on(run(linked::protocol(protocol), &DemoOptions { members: 4, seconds: 0, layer }))
        .unwrap_or_else(|e| panic!("{protocol}: {e:#}"));
    let names: Vec<&str> = lines.iter().map(|l| l.event.as_str()).collect();
    assert_eq!(names.len(), events, "{names:?}");
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

mod over_etcd {
    use super::demo_over_etcd;

    #[test]
    fn bd() {
        demo_over_etcd("bd");
    }
    #[test]
    fn ckd() {
        demo_over_etcd("ckd");
    }
    #[test]
    fn gdh() {
        demo_over_etcd("gdh");
    }
    #[test]
    fn str() {
        demo_over_etcd("str");
    }
    #[test]
    fn tgdh() {
        demo_over_etcd("tgdh");
    }
}
