//! `gka ctl` against a live group over a `gka daemon` process: an operator reads the group's
//! status, partitions it and heals it, and the members (processes, `--json`) rekey each time;
//! a member's key is refused as an operator's, and a daemon without `--allow-control` refuses
//! fault injection but still answers a status. The daemon logs each command it carries out.

use std::path::Path;
use std::process::{Command, Output};

use gka_tests::group::identity;
use gka_tests::process::Proc;
use serde_json::Value;

const GKA: &str = env!("CARGO_BIN_EXE_gka");

fn member(addr: &str, trust: &Path, id: &str) -> Proc {
    Proc::start(
        Command::new(GKA)
            .args(["member", "--daemon", addr, "--group", "lab", "--id", id, "--json"])
            .arg("--key")
            .arg(trust.join(format!("{id}.key")))
            .arg("--trust")
            .arg(trust)
            .arg("--plugins")
            .arg(gka_tests::artifacts::plugin_dir()),
    )
}

fn daemon(trust: &Path, operators: &Path, allow_control: bool, log: &Path) -> (Proc, String) {
    let mut cmd = Command::new(GKA);
    cmd.args(["daemon", "--listen", "127.0.0.1:0", "--trust"])
        .arg(trust)
        .arg("--operators")
        .arg(operators)
        .env("RUST_LOG", "info");
    if allow_control {
        cmd.arg("--allow-control");
    }
    let mut d = Proc::start_with_stderr(&mut cmd, std::fs::File::create(log).unwrap());
    let line = d.wait_for("the daemon's address", |l| l.contains("listening on "));
    let addr = line.rsplit(' ').next().unwrap().to_owned();
    (d, addr)
}

/// `gka ctl --daemon ADDR --id ID --key KEY ARGS..`.
fn ctl(addr: &str, key: &Path, id: &str, args: &[&str]) -> Output {
    Command::new(GKA)
        .args(["ctl", "--daemon", addr, "--id", id, "--key"])
        .arg(key)
        .args(args)
        .output()
        .expect("gka ctl runs")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "gka ctl failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until member `p`'s newest view has exactly `members` and a key of that view; returns
/// the key's fingerprint.
fn keyed_view(p: &mut Proc, members: &[&str]) -> String {
    let mut wanted: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    wanted.sort_unstable();
    let view = p.wait_for_new(&format!("a view of {members:?}"), |l| {
        let v: Value = serde_json::from_str(l).unwrap();
        let mut got: Vec<String> = match v["members"].as_array() {
            Some(m) if v["event"] == "view" => {
                m.iter().map(|m| m.as_str().unwrap().to_owned()).collect()
            }
            _ => return false,
        };
        got.sort_unstable();
        got == wanted
    });
    let view_id = serde_json::from_str::<Value>(&view).unwrap()["view"].clone();
    let key = p.wait_for_new("its key", |l| {
        let v: Value = serde_json::from_str(l).unwrap();
        v["event"] == "key" && v["view"] == view_id
    });
    serde_json::from_str::<Value>(&key).unwrap()["fingerprint"].as_str().unwrap().to_owned()
}

/// `gka ctl status --group lab --json`, parsed.
fn lab_status(addr: &str, key: &Path) -> Value {
    let out = ok(&ctl(addr, key, "op", &["status", "--group", "lab", "--json"]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn an_operator_partitions_and_heals_a_live_group() {
    let dir = tempfile::tempdir().unwrap();
    let (trust, operators) = (dir.path().join("trust"), dir.path().join("operators"));
    for (d, ids) in [(&trust, &["a", "b", "c"][..]), (&operators, &["op"][..])] {
        std::fs::create_dir_all(d).unwrap();
        for id in ids {
            identity(id).write(d).unwrap();
        }
    }
    let op_key = operators.join("op.key");
    let log = dir.path().join("daemon.log");
    let (_daemon, addr) = daemon(&trust, &operators, true, &log);
    let mut members: Vec<Proc> =
        ["a", "b", "c"].iter().map(|id| member(&addr, &trust, id)).collect();
    let fps: Vec<String> = members.iter_mut().map(|p| keyed_view(p, &["a", "b", "c"])).collect();
    assert!(fps.iter().all(|f| *f == fps[0]), "{fps:?}");

    // The status: one group of three in one view, running TGDH.
    let status = lab_status(&addr, &op_key);
    let group = &status["groups"][0];
    assert_eq!(
        (group["name"].as_str(), group["members"].as_u64()),
        (Some("lab"), Some(3)),
        "{status}"
    );
    assert_eq!(group["components"].as_array().unwrap().len(), 1, "{status}");
    assert!(group["protocol"].as_str().unwrap().starts_with("tgdh@"), "{status}");
    assert!(group["epoch"].as_str().unwrap().contains('.'), "{status}");
    let text = ok(&ctl(&addr, &op_key, "op", &["status"]));
    assert!(text.contains("group lab") && text.contains("3 member(s)"), "{text}");

    // A partition: a and b agree a key of their own, c one alone.
    ok(&ctl(&addr, &op_key, "op", &["partition", "--group", "lab", "a,b", "c"]));
    let ab = [keyed_view(&mut members[0], &["a", "b"]), keyed_view(&mut members[1], &["a", "b"])];
    let c = keyed_view(&mut members[2], &["c"]);
    assert_eq!(ab[0], ab[1]);
    assert!(ab[0] != c && ab[0] != fps[0], "new keys on each side");
    let status = lab_status(&addr, &op_key);
    assert_eq!(status["groups"][0]["components"].as_array().unwrap().len(), 2, "{status}");

    // The heal: one key among the three again.
    ok(&ctl(&addr, &op_key, "op", &["heal", "--group", "lab"]));
    let healed: Vec<String> = members.iter_mut().map(|p| keyed_view(p, &["a", "b", "c"])).collect();
    assert!(healed.iter().all(|f| *f == healed[0]) && healed[0] != ab[0], "{healed:?}");

    // A member's key is not an operator's.
    let refused =
        ctl(&addr, &trust.join("a.key"), "a", &["partition", "--group", "lab", "a", "b,c"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a member partitioned the group");
    assert!(stderr.contains("refused") && stderr.contains("--operators"), "{stderr}");
    let refused = ctl(&addr, &trust.join("a.key"), "a", &["status"]);
    assert!(!refused.status.success(), "a member read the status");
    // Nothing changed: no view came after the refused partition.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for p in &mut members {
        p.catch_up();
        let last_view = p.seen.iter().rev().find(|l| l.contains(r#""event":"view""#)).unwrap();
        let v: Value = serde_json::from_str(last_view).unwrap();
        assert_eq!(v["members"].as_array().unwrap().len(), 3, "{last_view}");
    }

    // The daemon logged the operator's commands and the refusal.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("operator command") && logged.contains("Partition"), "{logged}");
    assert!(logged.contains("refused") && logged.contains("joined"), "{logged}");

    // Without --allow-control: the status is answered, fault injection refused.
    let (_plain, plain) = daemon(&trust, &operators, false, &dir.path().join("plain.log"));
    let text = ok(&ctl(&plain, &op_key, "op", &["status"]));
    assert!(text.contains("0 group(s)"), "{text}");
    let refused = ctl(&plain, &op_key, "op", &["heal", "--group", "lab"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--allow-control"), "{stderr}");
}

/// With access rules, an operator is a certificate with the `operator` role from a domain the
/// rules let control: such a certificate reads the status; a member certificate of the same
/// domain, and an operator of a domain not listed, are refused and say why.
#[test]
fn only_the_operator_role_of_a_listed_domain_controls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name);
    let keys = dir("keys");
    let gka = |args: &[&str]| {
        let o = Command::new(GKA).args(args).output().expect("gka runs");
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    for domain in ["red", "blue"] {
        gka(&["ca", "init", "--domain", domain, "--dir", &s(&dir(domain))]);
    }
    let issue = |domain: &str, id: &str, role: &str| {
        gka(&[
            "ca",
            "issue",
            "--dir",
            &s(&dir(domain)),
            "--id",
            id,
            "--role",
            role,
            "--out",
            &s(&keys),
        ]);
    };
    issue("red", "ops", "operator");
    issue("red", "mem", "member");
    issue("blue", "bops", "operator");
    let access = dir("access.toml");
    std::fs::write(
        &access,
        "operators = [\"red\"]\n[domain.red]\nca = \"red/ca.crt\"\ncrl = \"red/crl.pem\"\n\
         [domain.blue]\nca = \"blue/ca.crt\"\ncrl = \"blue/crl.pem\"\n\
         [[group]]\nname = \"lab\"\ndomains = [\"red\", \"blue\"]\n",
    )
    .unwrap();
    let mut d = Proc::start(
        Command::new(GKA)
            .args(["daemon", "--listen", "127.0.0.1:0", "--allow-control", "--access"])
            .arg(&access),
    );
    let line = d.wait_for("the daemon's address", |l| l.contains("listening on "));
    let addr = line.rsplit(' ').next().unwrap().to_owned();
    let ctl = |id: &str| {
        Command::new(GKA)
            .args(["ctl", "--daemon", &addr, "--id", id])
            .arg("--key")
            .arg(keys.join(format!("{id}.key")))
            .arg("--cert")
            .arg(keys.join(format!("{id}.crt")))
            .arg("status")
            .output()
            .expect("gka ctl runs")
    };
    let ops = ctl("ops");
    assert!(ops.status.success(), "{}", String::from_utf8_lossy(&ops.stderr));
    for refused in ["mem", "bops"] {
        let o = ctl(refused);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{refused} controlled the daemon");
        assert!(stderr.contains("refused") && stderr.contains("operators"), "{refused}: {stderr}");
    }
}
