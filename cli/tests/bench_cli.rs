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

/// Writes trace `t` (a LAN, 5 s of tail, then `steps`) and a policy fixed on BD (1 s between
/// switches) into `dir`, and returns their paths.
fn trace_and_policy(
    dir: &std::path::Path,
    steps: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let trace = dir.join("t.toml");
    std::fs::write(&trace, format!("name = \"t\"\nnetwork = \"lan\"\ntail_s = 5\n{steps}"))
        .unwrap();
    let policy = dir.join("p.toml");
    std::fs::write(&policy, "mode = \"fixed\"\nfixed = \"bd\"\n[stability]\nmin_interval_s = 1\n")
        .unwrap();
    (trace, policy)
}

#[test]
fn an_adaptive_replay_writes_its_report() {
    let out = tempfile::tempdir().unwrap();
    let (trace, policy) = trace_and_policy(
        out.path(),
        "[[step]]\nat_s = 0\njoin = 3\n[[step]]\nat_s = 10\nleave = 1\n",
    );
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

/// `gka bench adaptive --json`: one object with the trace, the seed, each fixed protocol's
/// membership-event latency (total, mean, p95), the adaptive run's with its switch overhead
/// apart, the oracle and the best fixed protocol, consistent with each other.
#[test]
fn an_adaptive_replay_prints_one_json_object() {
    let out = tempfile::tempdir().unwrap();
    let (trace, policy) = trace_and_policy(
        out.path(),
        "[[step]]\nat_s = 0\njoin = 4\n[[step]]\nat_s = 10\nleave_oldest = 1\n\
         [[step]]\nat_s = 20\njoin = 1\n[[step]]\nat_s = 30\nleave_random = 1\n",
    );
    let (t, p) = (trace.to_str().unwrap(), policy.to_str().unwrap());
    let args =
        ["bench", "adaptive", "--json", "--trace", t, "--policy", p, "--protocols", "bd,tgdh"];
    let o =
        gka(&[&args[..], &COSTS[..], &["--seed", "9", "--out", out.path().to_str().unwrap()]]
            .concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["trace"], "t");
    assert_eq!(v["seed"], 9);
    let num = |x: &serde_json::Value| x.as_f64().unwrap_or_else(|| panic!("a number: {x}"));
    let mut best = ("", f64::INFINITY);
    for name in ["bd", "tgdh"] {
        let f = &v["fixed"][name];
        let (total, mean, p95) = (num(&f["total_ms"]), num(&f["mean_ms"]), num(&f["p95_ms"]));
        assert!(total > 0.0 && mean > 0.0 && p95 >= mean * 0.5, "{name}: {f}");
        // Four membership events.
        assert!((total / mean - 4.0).abs() < 1e-6, "{name}: {f}");
        if total < best.1 {
            best = (name, total);
        }
    }
    assert_eq!(v["best_fixed"], best.0);
    let oracle = num(&v["oracle_ms"]);
    assert!(oracle > 0.0 && oracle <= best.1 + 1e-9, "{v}");
    let phase_oracle = num(&v["phase_oracle_ms"]);
    assert!(oracle - 1e-9 <= phase_oracle && phase_oracle <= best.1 + 1e-9, "{v}");
    let a = &v["adaptive"];
    assert!(num(&a["total_ms"]) >= oracle - 1e-9, "{v}");
    assert_eq!(a["switches"], 1, "tgdh -> bd: {v}");
    assert!(num(&a["switch_cpu_ms"]) > 0.0 && a["switch_bytes"].as_u64().unwrap() > 0, "{v}");
}

/// `gka policy check` warns about loaded plugins the policy excludes; `gka policy explain`
/// names the policy file, lists its inputs one per line, and flags a rule that picks a
/// protocol predicted to be slower.
#[test]
fn policy_check_and_explain_say_what_they_use() {
    let out = tempfile::tempdir().unwrap();
    let policy = out.path().join("p.toml");
    std::fs::write(
        &policy,
        "mode = \"rules\"\nallow = [\"bd\", \"gdh\"]\n[[rule]]\nname = \"always gdh\"\nprotocol = \"gdh\"\n",
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    let o = gka(&["policy", "check", p]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && stdout.contains("warning: the loaded plugin ckd"), "{stdout}");
    let o = gka(&["policy", "explain", "--policy", p, "--current", "bd", "--group-size", "30"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("policy: ") && stdout.contains("\n  group_size       30\n"),
        "{stdout}"
    );
    assert!(stdout.contains("decision: switch bd -> gdh"), "{stdout}");
    assert!(stdout.contains("slower than bd"), "{stdout}");
}

/// `gka bench trace` writes a valid trace from the churn model; the same seed writes the same.
#[test]
fn a_churn_trace_is_drawn_by_its_seed() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let draw = |seed: &str| {
        let o = gka(&["bench", "trace", "--seed", seed, "--minutes", "10", "--out", dir]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(out.path().join(format!("drawn-{seed}.toml"))).unwrap()
    };
    let text = draw("3");
    let trace = gka_sim::trace::Trace::parse(&text).expect("a valid trace");
    assert!(trace.step.len() > 20, "{text}");
    assert_eq!(draw("3"), text);
    let o = gka(&["bench", "trace", "--max-members", "1", "--out", dir]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("max_members"));
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
