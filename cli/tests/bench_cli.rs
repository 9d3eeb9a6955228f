//! `gka bench` from the command line: a small sweep writes its CSV, Markdown and plots; an
//! adaptive replay writes its report; bad input is refused with a reason and a non-zero exit.

use std::process::Command;

const GKA: &str = env!("CARGO_BIN_EXE_gka");
const COSTS: [&str; 6] = ["--exp-ms", "0.45", "--sign-ms", "0.02", "--verify-ms", "0.04"];

fn gka(args: &[&str]) -> std::process::Output {
    let plugins = gka_tests::artifacts::plugin_dir();
    Command::new(GKA)
        .args(args)
        .args(["--plugins", plugins.to_str().unwrap()])
        .output()
        .expect("gka runs")
}

#[test]
fn a_sweep_writes_csv_markdown_and_plots() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let args = ["bench", "--protocols", "bd,tgdh", "--sizes", "3", "--events", "join,leave"];
    let o = gka(&[&args[..], &COSTS[..], &["--out", dir]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.path().join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 2 * 2, "{csv}");
    assert!(out.path().join("results.md").exists());
    assert!(out.path().join("plots/lan-join.svg").exists());
    assert!(out.path().join("plots/wan-leave.svg").exists());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("#### join on lan"), "{stdout}");
}

#[test]
fn an_adaptive_replay_writes_its_report() {
    let out = tempfile::tempdir().unwrap();
    let trace = out.path().join("t.toml");
    std::fs::write(
        &trace,
        "name = \"t\"\nnetwork = \"lan\"\ntail_s = 5\n[[step]]\nat_s = 0\njoin = 3\n\
         [[step]]\nat_s = 10\nleave = 1\n",
    )
    .unwrap();
    let policy = out.path().join("p.toml");
    std::fs::write(&policy, "mode = \"fixed\"\nfixed = \"bd\"\n[stability]\nmin_interval_s = 1\n")
        .unwrap();
    let args = [
        "bench",
        "adaptive",
        "--trace",
        trace.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--protocols",
        "bd,tgdh",
        "--out",
        out.path().to_str().unwrap(),
    ];
    let o = gka(&[&args[..], &COSTS[..]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read_to_string(out.path().join("adaptive-t.md")).unwrap();
    assert!(report.contains("| fixed:bd |") && report.contains("| adaptive |"), "{report}");
    assert!(report.contains("| tgdh | bd | fixed |"), "the switch is listed: {report}");
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    for (args, reason) in [
        (vec!["bench", "--cost", "guessed"], "unknown cost mode"),
        (vec!["bench", "--events", "explode"], "unknown event"),
        (vec!["bench", "--networks", "/no/such/topology.toml"], "neither lan, wan"),
        (vec!["bench", "--exp-ms", "1"], "give all of"),
        (vec!["bench", "adaptive", "--trace", "/no/such/trace.toml"], "cannot read"),
        (vec!["bench", "validate", "--sizes", "40"], "2 to 16"),
        (vec!["bench", "--sizes", "1"], "outside 2 to 1024"),
    ] {
        let o = gka(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}
