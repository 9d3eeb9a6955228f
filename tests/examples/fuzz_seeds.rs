//! Writes the fuzz targets' seed inputs (real encodings of each format) into
//! `DIR/<target>/seed-*`: `cargo run -p gka-tests --example fuzz_seeds -- fuzz/corpus`.
//! The fuzzer grows the corpora from them; `tests/tests/fuzz_corpora.rs` replays them all.

use std::collections::BTreeSet;
use std::path::Path;

use gka_host::envelope::{Envelope, Header, Kind};
use gka_host::group::etcd::layout::{MemberRecord, MessageRecord, ViewMember, ViewRecord};
use gka_host::group::GroupRun;
use gka_host::identity::cert::{DomainCa, Role};
use gka_host::identity::Identity;
use gka_host::member::{Control, PluginRef};
use gka_host::net::wire::{encode, ClientMsg, ControlCmd, ServerMsg};
use gka_plugin_api::View;
use gka_tests::Harness;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("the corpus directory");
    std::fs::write(d.join(format!("seed-{name}")), bytes).expect("a seed");
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: fuzz_seeds DIR");
    let dir = Path::new(&dir);
    let alice = Identity::ed25519_from_seed("alice", [1; 32]).expect("an identity");
    let members: Vec<String> = ["alice", "bob"].map(String::from).to_vec();
    let view = View { view_id: 3, members: members.clone(), joined: members, left: vec![] };

    let header = Header {
        group: "g".into(),
        run: GroupRun([7; 16]),
        view_id: 3,
        epoch: 3 << 24,
        kind: Kind::Data,
        protocol: "tgdh@0.1.0".into(),
        sender: "alice".into(),
        seq: 1,
    };
    let envelope = Envelope::seal(&alice, header, b"ciphertext".to_vec()).to_bytes();
    write(dir, "envelope", "data", &envelope);

    let client = [
        ClientMsg::Join {
            group: "g".into(),
            member: "alice".into(),
            proof: vec![1; 64],
            certificate: None,
        },
        ClientMsg::Send { view_id: 3, to: Some("bob".into()), bytes: envelope.clone() },
        ClientMsg::Heartbeat,
        ClientMsg::Control {
            operator: "op".into(),
            cmd: ControlCmd::Partition {
                group: "g".into(),
                sets: vec![vec!["alice".into()], vec!["bob".into()]],
            },
            proof: vec![2; 64],
            certificate: None,
        },
        ClientMsg::Control {
            operator: "op".into(),
            cmd: ControlCmd::Status { group: None },
            proof: vec![],
            certificate: None,
        },
    ];
    for (i, m) in client.iter().enumerate() {
        write(dir, "daemon_frames", &format!("client-{i}"), &encode(m));
    }
    let server = [
        ServerMsg::View {
            view: view.clone(),
            run: GroupRun([7; 16]),
            certificates: vec![("alice".into(), vec![3; 40])],
        },
        ServerMsg::Message { from: "alice".into(), view_id: 3, bytes: envelope.clone() },
        ServerMsg::Error("refused".into()),
    ];
    for (i, m) in server.iter().enumerate() {
        write(dir, "daemon_frames", &format!("server-{i}"), &encode(m));
    }

    let controls = [
        Control::Announce(PluginRef {
            name: "tgdh".into(),
            version: "0.1.0".into(),
            sha256: "ab".repeat(32),
        }),
        Control::Ping { nonce: 9, padding: vec![0; 16] },
        Control::Pong { nonce: 9 },
    ];
    for (i, c) in controls.iter().enumerate() {
        write(dir, "control", &format!("{i}"), &c.to_bytes());
    }

    // Real payloads of each protocol during a join, prefixed with the byte that picks it.
    for (i, protocol) in gka_tests::linked::protocols().iter().enumerate() {
        let mut h = Harness::new(Box::new(ArcProtocol(protocol.clone())), 1);
        let c = h.create(&["m0", "m1", "m2"]);
        h.settle(c).expect("an initial key");
        h.join(c, &["m3"]);
        for (j, (_, _, payload)) in h.take_in_flight(c).iter().enumerate().take(3) {
            let mut bytes = vec![i as u8];
            bytes.extend_from_slice(payload);
            write(dir, "plugin_payloads", &format!("{}-{j}", protocol.descriptor().name), &bytes);
        }
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    write(dir, "policy", "shipped", &std::fs::read(root.join("policy.toml")).expect("policy.toml"));
    for name in ["rules-policy", "contributory-policy"] {
        let text = std::fs::read(root.join(format!("traces/{name}.toml"))).expect("a policy");
        write(dir, "policy", name, &text);
    }
    for name in ["campus", "growth", "mixed", "rolling-upgrade"] {
        let text = std::fs::read(root.join(format!("traces/{name}.toml"))).expect("a trace");
        write(dir, "trace", name, &text);
    }
    write(
        dir,
        "topology",
        "intercontinental",
        &std::fs::read(root.join("traces/intercontinental.toml")).expect("a topology"),
    );
    write(
        dir,
        "access_rules",
        "two-domains",
        b"operators = [\"red\"]\n[domain.red]\nca = \"red/ca.crt\"\ncrl = \"red/crl.pem\"\n\
          [domain.blue]\nca = \"blue/ca.crt\"\n[[group]]\nname = \"lab\"\ndomains = [\"red\", \"blue\"]\n\
          roles = [\"member\"]\n",
    );

    let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a time");
    let ca = DomainCa::create("red", now, 365, [4; 16]).expect("a CA");
    let roles: BTreeSet<Role> = [Role::Member, Role::Operator].into();
    let issued =
        ca.issue("alice", alice.public(), &roles, now, 30, [5; 16]).expect("a certificate");
    write(dir, "certificate", "der", &issued.der);
    write(dir, "certificate", "pem", issued.pem.as_bytes());
    let crl =
        ca.revocation_list(std::slice::from_ref(&issued.info.serial), now, 30, 2).expect("a list");
    let der = gka_host::identity::cert::der_of_pem(&crl, "X509 CRL").expect("a CRL in PEM");
    write(dir, "revocation_list", "one-revoked", &der);

    let record = MemberRecord {
        id: "m1".into(),
        incarnation: 7,
        certificate: Some(hex::encode(&issued.der)),
    };
    write(dir, "etcd_records", "member", &record.encode());
    let viewrec = ViewRecord {
        seq: 4,
        members: vec![
            ViewMember { id: "m1".into(), since: 10 },
            ViewMember { id: "m2".into(), since: 12 },
        ],
        nonce: "07".repeat(16),
    };
    write(dir, "etcd_records", "view", &viewrec.encode());
    write(dir, "etcd_records", "message", &MessageRecord { to: None, bytes: envelope }.encode());
    println!("seeds written under {}", dir.display());
}

/// A shared protocol as the boxed one the harness takes.
struct ArcProtocol(std::sync::Arc<dyn gka_plugin_api::Protocol>);

impl gka_plugin_api::Protocol for ArcProtocol {
    fn descriptor(&self) -> gka_plugin_api::Descriptor {
        self.0.descriptor()
    }
    fn cost(&self, e: gka_plugin_api::EventKind, n: u64, k: u64) -> gka_plugin_api::CostFigures {
        self.0.cost(e, n, k)
    }
    fn new_session(
        &self,
        config: gka_plugin_api::SessionConfig,
    ) -> Result<Box<dyn gka_plugin_api::Session>, gka_plugin_api::SessionError> {
        self.0.new_session(config)
    }
}
