//! Scrapes `/metrics` over HTTP after the demo's scenario, the adaptive demo's switches and an
//! aborted switch, parses the Prometheus exposition format and checks the documented metrics
//! and their values. (Its own test binary: the recorder is global to a process.)

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use std::sync::Arc;
use std::time::Duration;

use gka_cli::demo::{adapt, run, AdaptOptions, DemoOptions};
use gka_host::policy::{Policy, KNOWN_PROTOCOLS};
use gka_tests::group::{daemon, fast_switching, TestGroup};
use gka_tests::linked;

/// `name{labels}` → value, for every sample line.
fn parse(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics listener");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// The values of the series named `prefix...` whose labels include each of `must_contain`.
fn values(samples: &BTreeMap<String, f64>, prefix: &str, must_contain: &[&str]) -> Vec<f64> {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && must_contain.iter().all(|c| k.contains(c)))
        .map(|(_, v)| *v)
        .collect()
}

fn sum(samples: &BTreeMap<String, f64>, prefix: &str, must_contain: &[&str]) -> f64 {
    values(samples, prefix, must_contain).iter().sum()
}

#[test]
fn metrics_after_the_demo() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let protocol = linked::protocol("tgdh");
    let catalogue = Arc::new(linked::catalogue());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (lines, adapted) = rt.block_on(async {
        gka_host::metrics::install(addr.parse().unwrap()).expect("exporter");
        let lines = run(
            protocol.clone(),
            &DemoOptions { members: 4, seconds: 0, layer: Default::default() },
        )
        .await
        .expect("demo");
        let options = AdaptOptions { small: 3, large: 7, wan_delay_ms: 100, cpu_phase: false };
        let adapted = adapt(catalogue.clone(), protocol, &options).await.expect("adaptive demo");
        aborted_switch().await;
        (lines, adapted)
    });
    let body = scrape(&addr);
    let samples = parse(&body);

    for help in [
        "gka_active_protocol",
        "gka_group_size",
        "gka_view_changes_total",
        "gka_rekeys_total",
        "gka_rekey_duration_seconds",
        "gka_exponentiations_total",
    ] {
        assert!(body.contains(&format!("# HELP {help} ")), "no HELP for {help}");
    }
    let tgdh = values(&samples, "gka_active_protocol{", &["group=\"demo\"", "protocol=\"tgdh\""]);
    assert!(!tgdh.is_empty() && tgdh.iter().all(|v| *v == 1.0), "{body}");
    assert!(sum(&samples, "gka_view_changes_total", &["group=\"demo\""]) >= lines.len() as f64);
    assert!(!values(&samples, "gka_group_size{", &["group=\"demo\""]).is_empty());
    // Every series of a known label value is there from the start, at 0 until its event.
    for reason in gka_host::metrics::REJECTION_REASONS {
        let r = format!("reason=\"{reason}\"");
        let v = values(&samples, "gka_rejected_messages_total{", &["group=\"demo\"", &r]);
        assert!(!v.is_empty() && v.iter().all(|v| *v == 0.0), "{reason}: {v:?}");
    }

    // Every member counts its rekeys, labelled by the view that led to each key as it saw it.
    // The 4 first members' first keys come from the initial view; a joiner's first key is
    // "initial" too unless a cascade gave it a second view first. 12 members ever run.
    let initial = sum(&samples, "gka_rekeys_total", &["event=\"initial\"", "group=\"demo\""]);
    assert!((4.0..=12.0).contains(&initial), "initial rekeys {initial}: {body}");
    let rekeys = sum(&samples, "gka_rekeys_total", &["group=\"demo\""]);
    assert!(rekeys >= lines.len() as f64 * 3.0, "rekeys {rekeys}");
    // A histogram, not a summary: buckets, and a count equal to the rekeys.
    assert!(body.contains("gka_rekey_duration_seconds_bucket{"), "{body}");
    assert_eq!(sum(&samples, "gka_rekey_duration_seconds_count", &["group=\"demo\""]), rekeys);
    assert!(sum(&samples, "gka_exponentiations_total", &["protocol=\"tgdh\""]) > 0.0);

    // After the adaptive demo's switches: tgdh -> bd (3 members), bd -> tgdh, tgdh -> str and
    // str -> tgdh (7 members each). Every member counts each switch it completed.
    assert_eq!(adapted.len(), 4);
    for help in [
        "gka_protocol_switches_total",
        "gka_switch_aborts_total",
        "gka_switch_duration_seconds",
        "gka_policy_decisions_total",
        "gka_predicted_rekey_seconds",
        "gka_rtt_seconds",
        "gka_cpu_load",
        "gka_modexp_seconds",
    ] {
        assert!(body.contains(&format!("# HELP {help} ")), "no HELP for {help}");
    }
    let g = "group=\"adaptive\"";
    let switches = |from: &str, to: &str| {
        let labels = [g, &format!("from=\"{from}\""), &format!("to=\"{to}\"")];
        sum(&samples, "gka_protocol_switches_total{", &labels)
    };
    // Each member counts each switch it completed (a `member` label tells them apart): the
    // group's own count is one member's.
    assert_eq!(switches("tgdh", "bd"), 3.0, "{body}");
    assert_eq!(switches("bd", "tgdh"), 7.0);
    assert_eq!(switches("tgdh", "str"), 7.0);
    assert_eq!(switches("str", "tgdh"), 7.0);
    let per_member =
        values(&samples, "gka_protocol_switches_total{", &[g, "from=\"str\"", "to=\"tgdh\""]);
    assert!(per_member.iter().all(|v| *v <= 1.0), "one switch, once per member: {per_member:?}");
    assert_eq!(switches("gdh", "ckd"), 0.0, "a switch that never happened is there at 0");
    // gdh never runs here: its rekey series are there at 0 all the same (a member with a
    // catalogue has them for every protocol it may run).
    let gdh = values(&samples, "gka_rekey_duration_seconds_count{", &[g, "protocol=\"gdh\""]);
    assert!(!gdh.is_empty() && gdh.iter().all(|v| *v == 0.0), "{gdh:?}");
    let gdh = values(&samples, "gka_rekey_duration_seconds_bucket{", &[g, "protocol=\"gdh\""]);
    assert!(!gdh.is_empty(), "the histogram's buckets are rendered before its first value");
    assert!(!values(&samples, "gka_protocol_switches_total{", &[g, "from=\"gdh\"", "to=\"ckd\""])
        .is_empty());
    assert_eq!(sum(&samples, "gka_switch_duration_seconds_count", &[g]), 24.0);
    assert!(body.contains("gka_switch_duration_seconds_bucket{"), "a histogram");
    // The active protocol is tgdh again at the members there at the end; each member marks
    // one protocol active.
    let active =
        |p: &str| values(&samples, "gka_active_protocol{", &[g, &format!("protocol=\"{p}\"")]);
    assert!(active("tgdh").contains(&1.0), "{body}");
    assert!(active("str").contains(&0.0) && active("bd").contains(&0.0), "{body}");
    let members: std::collections::BTreeSet<&str> = samples
        .keys()
        .filter(|k| k.starts_with("gka_active_protocol{") && k.contains(g))
        .filter_map(|k| k.split("member=\"").nth(1)?.split('"').next())
        .collect();
    for m in &members {
        let on = sum(&samples, "gka_active_protocol{", &[g, &format!("member=\"{m}\"")]);
        assert_eq!(on, 1.0, "{m} runs exactly one protocol");
    }
    // The oldest member's decisions: at least one per switch, by rule.
    assert!(
        sum(
            &samples,
            "gka_policy_decisions_total{",
            &[g, "chosen=\"str\"", "reason=\"rule:high-delay WAN\""]
        ) >= 1.0
    );
    assert!(
        sum(&samples, "gka_policy_decisions_total{", &[g, "reason=\"current\""]) >= 1.0,
        "stays are counted too"
    );
    for p in ["bd", "ckd", "gdh", "str", "tgdh"] {
        for e in ["join", "leave", "merge", "partition"] {
            let (pl, el) = (format!("protocol=\"{p}\""), format!("event=\"{e}\""));
            let v = values(&samples, "gka_predicted_rekey_seconds{", &[g, &pl, &el]);
            assert!(!v.is_empty(), "no prediction for {p} {e}");
            assert!(v.iter().all(|v| *v > 0.0 && *v < 10.0), "{p} {e}: {v:?}");
        }
    }
    let rtt = values(&samples, "gka_rtt_seconds{", &[g]);
    assert!(!rtt.is_empty() && rtt.iter().all(|r| (0.0..1.0).contains(r)), "rtt {rtt:?}");
    let cpu = samples["gka_cpu_load"];
    assert!((0.0..=1.0).contains(&cpu), "cpu {cpu}");
    let modexp = samples["gka_modexp_seconds"];
    assert!(modexp > 0.0 && modexp < 0.1, "modexp {modexp}");
    // The aborted switch: each of its two members counts it.
    let aborts =
        sum(&samples, "gka_switch_aborts_total{", &["group=\"abort\"", "reason=\"rejected\""]);
    assert!(aborts >= 2.0, "aborts {aborts}: {body}");
}

/// Two members, one without the bd plugin, whose policy asks for bd: every proposal is
/// rejected and aborted at both.
async fn aborted_switch() {
    let daemon = daemon(Duration::from_secs(3), &["x1", "x2"]).await;
    let policy = "mode = \"fixed\"\nfixed = \"bd\"\n[stability]\nmin_interval_s = 0\n\
                  abort_cooldown_s = 0.5\nmin_view_age_s = 0.2\n";
    let mut group = TestGroup::over_daemon(daemon.addr, "abort", &["x1", "x2"], |name| {
        let catalogue =
            if name == "x2" { linked::catalogue_without("bd") } else { linked::catalogue() };
        let policy = Policy::parse(policy, &KNOWN_PROTOCOLS).unwrap();
        (linked::protocol("tgdh"), Some(fast_switching(Arc::new(catalogue), policy, None)))
    })
    .await;
    group
        .wait("both members see an abort", Duration::from_secs(30), |m| {
            m.values().all(|w| w.aborts > 0)
        })
        .await;
    group.leave_all();
    daemon.stop();
}
