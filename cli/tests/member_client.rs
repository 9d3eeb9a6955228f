//! `gka member` as a person or a program uses it, through pipes: lines out, `/commands`,
//! timestamps and `view.n` epochs in the text form, one JSON object per line with `--json`
//! (every line parsed), Ctrl-D (end of input) and `/quit` leaving cleanly with status 0.

use std::path::Path;
use std::process::Command;

use gka_tests::group::identity;
use gka_tests::process::Proc;
use serde_json::Value;

const GKA: &str = env!("CARGO_BIN_EXE_gka");

fn member(addr: &str, dir: &Path, id: &str, json: bool) -> Proc {
    let mut cmd = Command::new(GKA);
    cmd.args(["member", "--daemon", addr, "--group", "lab", "--id", id])
        .arg("--key")
        .arg(dir.join(format!("{id}.key")))
        .arg("--trust")
        .arg(dir)
        .arg("--plugins")
        .arg(gka_tests::artifacts::plugin_dir());
    if json {
        cmd.arg("--json");
    }
    Proc::start(&mut cmd)
}

/// Every line a `--json` member printed, parsed (a line that is not one JSON object fails).
fn events(p: &Proc) -> Vec<Value> {
    p.seen
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            assert!(v.is_object() && v["time"].is_string() && v["member"] == "b", "{l}");
            v
        })
        .collect()
}

fn event_is(line: &str, kind: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v["event"] == kind)
}

/// A text line starts with HH:MM:SS.mmm and the member's id.
fn stamped(line: &str, id: &str) -> bool {
    let (time, rest) = line.split_at(line.find(' ').unwrap_or(0));
    let digits = time.chars().filter(char::is_ascii_digit).count();
    time.len() == 12 && digits == 9 && rest.starts_with(&format!(" [{id}] "))
}

#[test]
fn commands_json_lines_and_leaving() {
    let dir = tempfile::tempdir().unwrap();
    for id in ["a", "b"] {
        identity(id).write(dir.path()).unwrap();
    }
    let mut daemon = Proc::start(
        Command::new(GKA).args(["daemon", "--listen", "127.0.0.1:0", "--trust"]).arg(dir.path()),
    );
    let listening = daemon.wait_for("the daemon's address", |l| l.contains("listening on "));
    let addr = listening.rsplit(' ').next().unwrap().to_owned();

    let mut a = member(&addr, dir.path(), "a", false);
    let mut b = member(&addr, dir.path(), "b", true);
    // b's key for the view of two.
    let view = b.wait_for("b's view of two", |l| {
        event_is(l, "view") && {
            let v: Value = serde_json::from_str(l).unwrap();
            v["members"].as_array().map(Vec::len) == Some(2)
        }
    });
    let view_id = serde_json::from_str::<Value>(&view).unwrap()["view"].as_u64();
    let key = b.wait_for("b's key in the view of two", |l| {
        event_is(l, "key") && serde_json::from_str::<Value>(l).unwrap()["view"].as_u64() == view_id
    });
    let key: Value = serde_json::from_str(&key).unwrap();
    let fingerprint = key["fingerprint"].as_str().unwrap().to_owned();
    let epoch = key["epoch"].as_str().unwrap().to_owned();
    assert_eq!(epoch, format!("{}.{}", key["view"], key["n"]), "epochs read view.n");
    a.wait_for("a's key", |l| l.contains(&format!("] key {epoch} fingerprint {fingerprint}")));
    assert!(a.seen.iter().all(|l| stamped(l, "a")), "{:#?}", a.seen);

    // A line from a reaches b as a JSON message under the current epoch.
    a.say("hello from a");
    let message = b.wait_for("a's line", |l| event_is(l, "message"));
    let message: Value = serde_json::from_str(&message).unwrap();
    assert_eq!(
        (message["from"].as_str(), message["text"].as_str()),
        (Some("a"), Some("hello from a"))
    );
    assert_eq!(message["epoch"].as_str(), Some(epoch.as_str()));

    // b's commands, answered as JSON.
    for command in ["/who", "/key", "/stats", "/help", "/bogus"] {
        b.say(command);
    }
    let who = b.wait_for("/who", |l| event_is(l, "who"));
    let who: Value = serde_json::from_str(&who).unwrap();
    let mut roster: Vec<(&str, bool)> = who["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["in_key"].as_bool().unwrap()))
        .collect::<Vec<_>>();
    roster.sort_unstable();
    assert_eq!(roster, [("a", true), ("b", true)]);
    let info = b.wait_for("/key", |l| event_is(l, "key_info"));
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["fingerprint"].as_str(), Some(fingerprint.as_str()));
    assert_eq!(info["epoch"].as_str(), Some(epoch.as_str()));
    assert!(info["protocol"].as_str().unwrap().starts_with("tgdh@"), "{info}");
    let stats = b.wait_for("/stats", |l| event_is(l, "stats"));
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["received"], 1, "{stats}");
    assert!(stats["keys"].as_u64() >= Some(1) && stats["verified"].as_u64() > Some(0), "{stats}");
    let help = b.wait_for("/help", |l| event_is(l, "help"));
    assert!(["/who", "/key", "/stats", "/quit"].iter().all(|c| help.contains(c)), "{help}");
    let error = b.wait_for("/bogus", |l| event_is(l, "error"));
    assert!(error.contains("/bogus"), "{error}");

    // The same commands in text.
    a.say("/who");
    let who = a.wait_for_new("a's /who", |l| l.contains("(in the key"));
    assert!(who.contains("a (in the key)") && who.contains("b (in the key)"), "{who}");
    a.say("/key");
    let info = a.wait_for_new("a's /key", |l| l.contains("] key "));
    assert!(info.contains(&fingerprint) && !info.contains(" run "), "{info}");

    // Ctrl-D: a leaves, exits 0, and b sees it go.
    a.close_stdin();
    let status = a.wait_exit();
    assert!(status.success(), "{status:?}: {:#?}", a.seen);
    assert!(a.seen.iter().any(|l| l.contains("stopped: left the group")), "{:#?}", a.seen);
    let left = b.wait_for("a's departure", |l| {
        event_is(l, "view") && serde_json::from_str::<Value>(l).unwrap()["left"][0] == "a"
    });
    assert!(left.contains(r#""members":["b"]"#), "{left}");

    // /quit: b leaves and exits 0; everything it printed was one JSON object per line.
    b.say("/quit");
    let status = b.wait_exit();
    assert!(status.success(), "{status:?}: {:#?}", b.seen);
    let all = events(&b);
    assert_eq!(all.last().unwrap()["event"], "stopped", "{all:#?}");
}
