//! Real processes on loopback: one `gka daemon`, members as `gka member` processes, and a
//! recording TCP proxy between the members and the daemon (so the test sees every byte the
//! daemon relays). Lines written to one member's stdin appear, decrypted, at every other
//! member and never in plaintext on the wire; a member killed with SIGKILL during a rekey is
//! removed and the survivors agree on a new key; a new member joins and gets the next key; a
//! process without a key the daemon lists is refused at the door, and one the daemon admits
//! but the members do not trust never holds the key. Members also run as processes over an
//! etcd cluster of the test's own, over mutual TLS with their identity certificates.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gka_tests::process::{Proc, WAIT};

const GKA: &str = env!("CARGO_BIN_EXE_gka");

/// A TCP proxy that records every byte in both directions.
fn recording_proxy(upstream: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let record = Arc::new(Mutex::new(Vec::new()));
    let rec = record.clone();
    thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(&upstream) else { continue };
            for (mut from, mut to) in
                [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
            {
                let rec = rec.clone();
                thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    (addr, record)
}

fn keygen(dir: &Path, id: &str, scheme: &str) {
    let status = Command::new(GKA)
        .args(["keygen", "--id", id, "--out", dir.to_str().unwrap(), "--scheme", scheme])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn member(addr: &str, keys: &Path, trust: &Path, plugins: &Path, id: &str) -> Proc {
    Proc::start(Command::new(GKA).args([
        "member",
        "--daemon",
        addr,
        "--group",
        "lab",
        "--id",
        id,
        "--key",
        keys.join(format!("{id}.key")).to_str().unwrap(),
        "--trust",
        trust.to_str().unwrap(),
        "--protocol",
        "tgdh",
        "--plugins",
        plugins.to_str().unwrap(),
    ]))
}

/// Runs `gka` with `args`, which must succeed.
fn gka(args: &[&str]) {
    let o = Command::new(GKA).args(args).output().expect("gka runs");
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A path as a command-line argument.
fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A member of group "lab" over the group layer `layer` names (`--daemon ADDR`, `--etcd ...`)
/// that presents its certificate and checks its peers' under `access`.
fn certified(layer: &[&str], keys: &Path, access: &Path, id: &str) -> Proc {
    let plugins = gka_tests::artifacts::plugin_dir();
    let (key, cert) = (keys.join(format!("{id}.key")), keys.join(format!("{id}.crt")));
    Proc::start(Command::new(GKA).arg("member").args(layer).args([
        "--group",
        "lab",
        "--id",
        id,
        "--key",
        s(&key),
        "--cert",
        s(&cert),
        "--access",
        s(access),
        "--plugins",
        s(plugins),
    ]))
}

/// Parses "TIME [id] view N members [...]" and "TIME [id] key V.N fingerprint F" lines.
fn view_id(line: &str) -> u64 {
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// The view a key line's key was agreed in, and its fingerprint.
fn key_of(line: &str) -> (u64, String) {
    let w: Vec<&str> = line.split_whitespace().collect();
    let (view, _) = w[3].split_once('.').expect("an epoch as view.n");
    (view.parse().unwrap(), w[5].to_owned())
}

/// The members in a "[id] view N members [...] ..." line.
fn view_members(line: &str) -> usize {
    let inside = &line[line.find("members [").expect("members list")..];
    inside[..inside.find(']').expect("end of list")].matches('"').count() / 2
}

/// Waits until every member's newest view has exactly `n` members and its newest key belongs
/// to that view, and returns the common fingerprint.
fn agreed(members: &mut HashMap<String, Proc>, n: usize) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut fps = Vec::new();
        for p in members.values_mut() {
            p.seen.extend(p.lines.try_iter());
            let view = p.seen.iter().rev().find(|l| l.contains(" view ")).cloned();
            let key = p.seen.iter().rev().find(|l| l.contains("] key ")).cloned();
            if let (Some(v), Some(k)) = (view, key) {
                let (key_view, fp) = key_of(&k);
                if view_members(&v) == n && key_view == view_id(&v) {
                    fps.push(fp);
                }
            }
        }
        if fps.len() == members.len() {
            assert!(fps.iter().all(|f| *f == fps[0]), "members disagree: {fps:?}");
            return fps[0].clone();
        }
        if Instant::now() > deadline {
            let seen: Vec<_> = members.iter().map(|(id, p)| (id.clone(), p.seen.clone())).collect();
            panic!("no agreement of {n} members; saw {seen:#?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn members_as_processes_over_the_daemon() {
    let plugins = gka_tests::artifacts::plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let trust = dir.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    // The daemon admits the members and "my", whom the members do not trust (a process of
    // another party, say); "mx" it does not know at all.
    let daemon_trust = dir.path().join("daemon-trust");
    std::fs::create_dir_all(&daemon_trust).unwrap();
    let ids = ["m1", "m2", "m3", "m4", "m5", "m6"];
    for (i, id) in ids.iter().enumerate() {
        keygen(&keys, id, if i == 1 { "rsa" } else { "ed25519" });
        std::fs::copy(keys.join(format!("{id}.pub")), trust.join(format!("{id}.pub"))).unwrap();
    }
    for id in ["m1", "m2", "m3", "m4", "m5", "m6", "my"] {
        if id == "my" {
            keygen(&keys, id, "ed25519");
        }
        let name = format!("{id}.pub");
        std::fs::copy(keys.join(&name), daemon_trust.join(&name)).unwrap();
    }

    let mut daemon = Proc::start(Command::new(GKA).args([
        "daemon",
        "--listen",
        "127.0.0.1:0",
        "--batch-ms",
        "50",
        "--failure-timeout-ms",
        "2000",
        "--trust",
        daemon_trust.to_str().unwrap(),
    ]));
    let listening =
        daemon.wait_for("the daemon's address", |l| l.starts_with("gka daemon listening on "));
    let daemon_addr = listening.rsplit(' ').next().unwrap().to_owned();
    let (proxy, wire) = recording_proxy(daemon_addr);

    let mut members: HashMap<String, Proc> = HashMap::new();
    for id in &ids[..5] {
        members.insert(id.to_string(), member(&proxy, &keys, &trust, plugins, id));
    }
    let k1 = agreed(&mut members, 5);

    // A line from m1 reaches every other member, decrypted, and never crosses in plaintext.
    let secret = "the eagle lands at dawn 7f3a";
    members.get_mut("m1").unwrap().say(secret);
    for id in &ids[1..5] {
        members
            .get_mut(*id)
            .unwrap()
            .wait_for(&format!("{id} decrypts"), |l| l.contains("] m1 (") && l.ends_with(secret));
    }
    let bytes = wire.lock().unwrap().clone();
    assert!(!bytes.is_empty());
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "plaintext crossed the daemon"
    );

    // m6 joins, and m5 is killed with SIGKILL while the group rekeys for it.
    members.insert("m6".into(), member(&proxy, &keys, &trust, plugins, "m6"));
    members
        .get_mut("m1")
        .unwrap()
        .wait_for("m1 sees m6 join", |l| l.contains(" view ") && l.contains("\"m6\""));
    let mut m5 = members.remove("m5").unwrap();
    m5.child.kill().unwrap();
    m5.child.wait().unwrap();
    let k2 = agreed(&mut members, 5);
    assert_ne!(k1, k2);

    // An intruder with a key the daemon does not list is refused when it joins, and says so.
    let intruder_trust = dir.path().join("intruder-trust");
    std::fs::create_dir_all(&intruder_trust).unwrap();
    keygen(&keys, "mx", "ed25519");
    for id in ["m1", "m2", "m3", "m4", "m6", "mx", "my"] {
        std::fs::copy(keys.join(format!("{id}.pub")), intruder_trust.join(format!("{id}.pub")))
            .unwrap();
    }
    let refused = Command::new(GKA)
        .args(["member", "--daemon", &proxy, "--group", "lab", "--id", "mx"])
        .args(["--key", keys.join("mx.key").to_str().unwrap()])
        .args(["--trust", intruder_trust.to_str().unwrap(), "--protocol", "tgdh"])
        .args(["--plugins", plugins.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("gka runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "the intruder was let in: {stderr}");
    assert!(stderr.contains("not in the daemon's access list"), "{stderr}");
    // A process the daemon admits but the members do not trust enters the daemon's view; its
    // envelopes are refused as from an unknown sender and it never holds the group's key.
    let mut intruder = member(&proxy, &keys, &intruder_trust, plugins, "my");
    members.get_mut("m1").unwrap().wait_for("m1 refuses the untrusted process", |l| {
        l.contains("rejected (unknown_sender)") && l.contains("\"my\"")
    });
    // The view says so, with why.
    members.get_mut("m2").unwrap().wait_for("m2 marks it out of the key", |l| {
        l.contains("not in the key: my (not in this member's trust store)")
    });
    // The daemon's view now lists six (the intruder included); the trusted five agree anew.
    let k3 = agreed(&mut members, 6);
    intruder.seen.extend(intruder.lines.try_iter());
    assert!(
        !intruder.seen.iter().any(|l| l.contains(&k3) || l.contains(&k2)),
        "the intruder printed the group's key: {:#?}",
        intruder.seen
    );

    // The survivors and the newcomer keep talking.
    members.get_mut("m6").unwrap().say("hello from the newcomer");
    for id in ["m1", "m2", "m3", "m4"] {
        members
            .get_mut(id)
            .unwrap()
            .wait_for(&format!("{id} hears m6"), |l| l.ends_with("hello from the newcomer"));
    }
}

/// Issue 11's account, with real processes and certificates made by `gka ca`: two domains (red
/// and blue) share group "lab" under one access-rules file that the daemon and the members
/// read. A third domain's member, an expired certificate and a member of a domain the rule of
/// its group does not allow are refused at the daemon with their reasons, and counted; a
/// newcomer needs only a new certificate (nobody restarts); a revocation reaches the running
/// members through the group, and they rekey without the revoked member, which cannot read
/// what follows (and is refused if it joins again); a broken edit of the rules leaves a
/// running member, and the daemon, on their previous rules.
mod domains {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::{agreed, gka, key_of, s, Proc, GKA, WAIT};

    /// A member of group "lab" over the daemon at `addr` that checks its peers by certificate.
    fn certified(addr: &str, keys: &Path, access: &Path, id: &str) -> Proc {
        super::certified(&["--daemon", addr], keys, access, id)
    }

    /// A process that skips its own checks (a trust store of its own key alone) and presents
    /// its certificate to the daemon: it must be refused there. Returns what it printed.
    fn refused_at_the_door(addr: &str, keys: &Path, id: &str, group: &str) -> String {
        let plugins = gka_tests::artifacts::plugin_dir();
        let alone = keys.join(format!("{id}-alone"));
        std::fs::create_dir_all(&alone).unwrap();
        std::fs::copy(keys.join(format!("{id}.pub")), alone.join(format!("{id}.pub"))).unwrap();
        let (key, cert) = (keys.join(format!("{id}.key")), keys.join(format!("{id}.crt")));
        let mut child = Command::new(GKA)
            .args(["member", "--daemon", addr, "--group", group, "--id", id])
            .args(["--key", s(&key), "--cert", s(&cert), "--trust", s(&alone)])
            .args(["--plugins", s(plugins)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gka member");
        let deadline = Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{id} was not refused");
            thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{id} must exit non-zero");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn scrape(addr: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
        write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }

    /// The first key a member reports after its first line containing `marker`.
    fn key_after(p: &mut Proc, marker: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            p.seen.extend(p.lines.try_iter());
            if let Some(i) = p.seen.iter().position(|l| l.contains(marker)) {
                if let Some(k) = p.seen[i..].iter().find(|l| l.contains("] key ")) {
                    return key_of(k).1;
                }
            }
            assert!(Instant::now() < deadline, "no key after {marker:?}: {:#?}", p.seen);
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn latest_key(p: &mut Proc) -> Option<String> {
        p.seen.extend(p.lines.try_iter());
        p.seen.iter().rev().find(|l| l.contains("] key ")).map(|l| key_of(l).1)
    }

    const RULES: &str = "[domain.red]\nca = \"red/ca.crt\"\ncrl = \"red/crl.pem\"\n\
                         [domain.blue]\nca = \"blue/ca.crt\"\ncrl = \"blue/crl.pem\"\n\
                         [[group]]\nname = \"lab\"\ndomains = [\"red\", \"blue\"]\n\
                         [[group]]\nname = \"ops-*\"\ndomains = [\"red\"]\n";

    #[test]
    fn two_domains_admit_refuse_add_and_revoke_members_without_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| -> PathBuf { tmp.path().join(name) };
        let keys = dir("keys");
        for domain in ["red", "blue", "green"] {
            gka(&["ca", "init", "--domain", domain, "--dir", s(&dir(domain))]);
        }
        let issue = |domain: &str, id: &str, days: &str| {
            let ca = dir(domain);
            gka(&["ca", "issue", "--dir", s(&ca), "--id", id, "--days", days, "--out", s(&keys)]);
        };
        for (domain, id) in [("red", "alice"), ("red", "bob"), ("blue", "carol")] {
            issue(domain, id, "30");
        }
        let access = dir("access.toml");
        std::fs::write(&access, RULES).unwrap();
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut daemon =
            Proc::start(Command::new(GKA).args(["daemon", "--listen", "127.0.0.1:0"]).args([
                "--failure-timeout-ms",
                "1000",
                "--access",
                s(&access),
                "--metrics",
                &metrics,
            ]));
        let line = daemon.wait_for("the daemon's address", |l| l.contains("listening"));
        let addr = line.trim().rsplit(' ').next().unwrap().to_owned();

        let mut members = HashMap::new();
        for id in ["alice", "bob", "carol"] {
            members.insert(id.to_owned(), certified(&addr, &keys, &access, id));
        }
        let three = agreed(&mut members, 3);

        // Refused at the door, each with its reason.
        issue("green", "mallory", "30");
        issue("red", "erin", "0");
        issue("blue", "cody", "30");
        thread::sleep(Duration::from_millis(1100)); // erin's certificate expires
        let said = refused_at_the_door(&addr, &keys, "mallory", "lab");
        assert!(said.contains("domain \"green\" is not trusted here"), "{said}");
        let said = refused_at_the_door(&addr, &keys, "erin", "lab");
        assert!(said.contains("expired"), "{said}");
        let said = refused_at_the_door(&addr, &keys, "cody", "ops-1");
        assert!(said.contains("may not join group \"ops-1\""), "{said}");

        // A newcomer: a new certificate, and nobody restarts.
        issue("red", "dave", "30");
        members.insert("dave".to_owned(), certified(&addr, &keys, &access, "dave"));
        let four = agreed(&mut members, 4);
        assert_ne!(four, three);
        for (id, p) in members.iter_mut() {
            assert!(p.child.try_wait().unwrap().is_none(), "{id} is still the same process");
        }

        // A revocation: the group rekeys without bob, who cannot read what follows.
        let mut bob = members.remove("bob").unwrap();
        let reloads = |d: &mut Proc| {
            d.seen.extend(d.lines.try_iter());
            d.seen.iter().filter(|l| l.contains("access rules reloaded")).count()
        };
        let reloaded_before = reloads(&mut daemon);
        gka(&["ca", "revoke", "--dir", s(&dir("red")), "--id", "bob"]);
        for p in members.values_mut() {
            p.wait_for("bob out of the key", |l| {
                l.contains("not in the key: bob") && l.contains("revoked")
            });
            key_after(p, "not in the key: bob");
        }
        let without_bob = agreed(&mut members, 4);
        assert_ne!(without_bob, four);
        assert_ne!(latest_key(&mut bob), Some(without_bob.clone()), "bob holds the old key");
        members.get_mut("alice").unwrap().say("after the revocation");
        for id in ["carol", "dave"] {
            members
                .get_mut(id)
                .unwrap()
                .wait_for("alice's line", |l| l.contains("after the revocation"));
        }
        thread::sleep(Duration::from_millis(500));
        bob.seen.extend(bob.lines.try_iter());
        assert!(!bob.seen.iter().any(|l| l.contains("after the revocation")), "{:#?}", bob.seen);
        // The daemon reads the new list on its own (every second), apart from the members.
        let deadline = Instant::now() + WAIT;
        while reloads(&mut daemon) == reloaded_before {
            assert!(Instant::now() < deadline, "the daemon did not reload its rules");
            thread::sleep(Duration::from_millis(20));
        }
        let said = refused_at_the_door(&addr, &keys, "bob", "lab");
        assert!(said.contains("revoked"), "{said}");

        // A broken edit: alice reports it with line and column and keeps her rules (so does
        // the daemon), and frank, issued now with rules of his own party, still joins.
        std::fs::write(dir("frank-access.toml"), RULES).unwrap();
        std::fs::write(&access, "[domain.red\n").unwrap();
        let alice = members.get_mut("alice").unwrap();
        let line =
            alice.wait_for("the rejected edit", |l| l.contains("access rules edit rejected"));
        assert!(line.contains("access.toml:1:"), "{line}");
        issue("red", "frank", "30");
        members.insert(
            "frank".to_owned(),
            certified(&addr, &keys, &dir("frank-access.toml"), "frank"),
        );
        let five = agreed(&mut members, 5);
        assert_ne!(five, without_bob);

        let metrics = scrape(&metrics);
        for reason in ["unknown_domain", "expired", "domain_not_allowed", "revoked"] {
            // Every reason's series is there from the start: the count is what shows.
            let series = format!("gka_daemon_refused_total{{reason=\"{reason}\"}} ");
            let count: f64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no series for {reason}: {metrics}"));
            assert!(count >= 1.0, "{reason} counted {count}: {metrics}");
        }
    }
}

/// `gka member --etcd` as processes: an etcd node of the test's own that requires client
/// certificates from red's CA, and two red members that present their identity certificates
/// to it (`--etcd-ca` with `--cert` and `--key`), agree on a key and carry a line; a blue
/// member, whose certificate etcd does not trust, cannot join and says why.
mod over_etcd {
    use std::collections::HashMap;

    use gka_tests::etcd::{EtcdCluster, ServerTls};

    use super::{agreed, certified, gka, s, Proc};

    #[test]
    fn members_join_a_group_on_etcd_over_mutual_tls_with_their_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| tmp.path().join(name);
        let keys = dir("keys");
        for domain in ["red", "blue"] {
            gka(&["ca", "init", "--domain", domain, "--dir", s(&dir(domain))]);
        }
        for (domain, id) in [("red", "alice"), ("red", "bob"), ("blue", "carol")] {
            gka(&["ca", "issue", "--dir", s(&dir(domain)), "--id", id, "--out", s(&keys)]);
        }
        let access = dir("access.toml");
        std::fs::write(
            &access,
            "[domain.red]\nca = \"red/ca.crt\"\ncrl = \"red/crl.pem\"\n\
             [domain.blue]\nca = \"blue/ca.crt\"\ncrl = \"blue/crl.pem\"\n\
             [[group]]\nname = \"lab\"\ndomains = [\"red\", \"blue\"]\n",
        )
        .unwrap();
        let red_ca = std::fs::read_to_string(dir("red").join("ca.crt")).unwrap();
        let (tls, server_ca) = ServerTls::loopback(&red_ca);
        let cluster = EtcdCluster::start_with(1, Some(&tls));
        let etcd_ca = dir("etcd-ca.pem");
        std::fs::write(&etcd_ca, server_ca).unwrap();
        let urls = cluster.urls();
        let layer = [
            "--etcd",
            &urls,
            "--etcd-ca",
            s(&etcd_ca),
            "--etcd-lease-ttl",
            "2",
            "--give-up-after",
            "2",
        ];
        let member = |id: &str| certified(&layer, &keys, &access, id);
        let mut members: HashMap<String, Proc> =
            ["alice", "bob"].iter().map(|id| (id.to_string(), member(id))).collect();
        agreed(&mut members, 2);
        members.get_mut("alice").unwrap().say("over etcd, over TLS");
        members
            .get_mut("bob")
            .unwrap()
            .wait_for("bob hears alice", |l| l.ends_with("over etcd, over TLS"));

        let mut carol = member("carol");
        let status = carol.child.wait().expect("carol exits");
        assert!(!status.success(), "a member whose certificate etcd does not trust gives up");
    }
}
