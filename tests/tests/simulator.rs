//! The discrete-event simulator with the real plugins: every protocol agrees through every
//! event on both network presets; counted costs make a sweep reproducible byte for byte
//! from its seed (and the seed matters where the network is random); the simulated costs
//! follow the network (a WAN is slower than a LAN); and the outputs are written.

use gka_host::member::Catalogue;
use gka_plugin_api::GroupId;
use gka_sim::sweep::{self, BenchEvent, Sweep};
use gka_sim::{CostMode, OpCosts, Sim, SimConfig, Topology};
use gka_tests::linked;

const COSTS: CostMode = CostMode::Counted(OpCosts { exp_ms: 0.45, sign_ms: 0.02, verify_ms: 0.04 });

fn catalogue() -> Catalogue {
    linked::catalogue()
}

fn small_sweep(seed: u64) -> Sweep {
    let mut s = Sweep::quick(vec!["bd".into(), "str".into(), "tgdh".into()], COSTS);
    s.sizes = vec![3, 6];
    s.seed = seed;
    s.events = BenchEvent::ALL[..5].to_vec();
    s
}

#[test]
fn every_protocol_agrees_through_every_event_on_both_networks() {
    let c = catalogue();
    let mut s = Sweep::quick(c.names(), COSTS);
    s.sizes = vec![5];
    s.samples = 2;
    let rows = sweep::run(&c, &s, |_| {}).expect("every run agrees");
    assert_eq!(rows.len(), 5 * 2 * BenchEvent::ALL.len(), "5 protocols × 2 networks × every event");
    for r in &rows {
        assert!(r.measured_ms > 0.0 && r.predicted_ms > 0.0, "{r:?}");
    }
    // A WAN round trip is tens of ms: every WAN event takes longer than the same on the LAN.
    for r in rows.iter().filter(|r| r.network == "wan") {
        let lan = rows
            .iter()
            .find(|l| l.network == "lan" && l.protocol == r.protocol && l.event == r.event)
            .unwrap();
        assert!(r.measured_ms > lan.measured_ms + 20.0, "{r:?} vs {lan:?}");
    }
}

#[test]
fn counted_costs_make_a_sweep_reproducible_from_its_seed() {
    let c = catalogue();
    let a = sweep::csv(&sweep::run(&c, &small_sweep(7), |_| {}).unwrap(), &COSTS, 7);
    let b = sweep::csv(&sweep::run(&c, &small_sweep(7), |_| {}).unwrap(), &COSTS, 7);
    assert_eq!(a, b, "the same seed gives the same output, byte for byte");
    let other = sweep::csv(&sweep::run(&c, &small_sweep(8), |_| {}).unwrap(), &COSTS, 7);
    let wan =
        |csv: &str| csv.lines().filter(|l| l.contains(",wan,")).collect::<Vec<_>>().join("\n");
    assert_ne!(wan(&a), wan(&other), "jitter and loss follow the seed");
}

/// Leaves and partitions at other positions than the newest: STR, whose chain is cheapest
/// to cut at the top (the newest member), pays most when the oldest leaves; random positions
/// are sampled and reported as mean and 95th percentile.
#[test]
fn leaves_and_partitions_are_measured_at_every_position() {
    let c = catalogue();
    let mut s = small_sweep(3);
    s.protocols = vec!["str".into(), "tgdh".into()];
    s.networks = vec![Topology::lan()];
    s.sizes = vec![8];
    s.samples = 4;
    s.events = vec![
        BenchEvent::Leave,
        BenchEvent::LeaveOldest,
        BenchEvent::LeaveRandom,
        BenchEvent::PartitionOldest,
        BenchEvent::PartitionRandom,
    ];
    let rows = sweep::run(&c, &s, |_| {}).unwrap();
    let row = |p: &str, e: BenchEvent| {
        rows.iter().find(|r| r.protocol == p && r.event == e).unwrap_or_else(|| panic!("{p} {e:?}"))
    };
    assert!(
        row("str", BenchEvent::LeaveOldest).measured_ms
            > 2.0 * row("str", BenchEvent::Leave).measured_ms
    );
    for p in ["str", "tgdh"] {
        for e in [BenchEvent::LeaveRandom, BenchEvent::PartitionRandom] {
            let r = row(p, e);
            assert!(r.p95_ms.unwrap() >= r.measured_ms - 1e-9, "{r:?}");
        }
        assert_eq!(row(p, BenchEvent::Leave).p95_ms, None);
    }
    let md = sweep::markdown(&rows);
    assert!(md.contains("#### leave-random on lan: ms, simulated mean / 95th percentile"), "{md}");
}

#[test]
fn outputs_are_written_as_csv_markdown_and_svg() {
    let c = catalogue();
    let mut s = small_sweep(1);
    s.events = vec![BenchEvent::Join, BenchEvent::Leave];
    let rows = sweep::run(&c, &s, |_| {}).unwrap();
    let csv = sweep::csv(&rows, &COSTS, 1);
    assert!(csv.starts_with(
        "protocol,network,event,n,k,measured_ms,predicted_ms,ratio,cost,exp_ms,sign_ms,\
             verify_ms,seed,p95_ms,seeds,min_ms,max_ms\n"
    ));
    let first = csv.lines().nth(1).unwrap();
    assert!(first.contains(",counted,0.45,0.02,0.04,1,,1,"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 3 * 2 * 2 * 2);
    let md = sweep::markdown(&rows);
    assert!(md.contains("#### join on wan") && md.contains("| tgdh |"), "{md}");
    let dir = tempfile::tempdir().unwrap();
    let plots = sweep::plots(&rows, dir.path()).unwrap();
    assert_eq!(plots.len(), 2 * 2, "one plot per event and network");
    for p in plots {
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("tgdh"), "{}", p.display());
    }
}

/// With several seeds each row is the mean of the seeds' runs, with their least and greatest:
/// on the WAN (jitter drawn from the seed) the seeds differ, and the mean lies between them.
#[test]
fn several_seeds_give_a_mean_and_a_spread() {
    let c = catalogue();
    let mut s = small_sweep(7);
    s.protocols = vec!["tgdh".into()];
    s.events = vec![BenchEvent::Join];
    s.sizes = vec![6];
    s.seeds = 3;
    let rows = sweep::run(&c, &s, |_| {}).unwrap();
    let each: Vec<f64> = (7..10)
        .map(|seed| {
            let one = Sweep { seed, seeds: 1, ..s.clone() };
            let r = sweep::run(&c, &one, |_| {}).unwrap();
            r.iter().find(|r| r.network == "wan").unwrap().measured_ms
        })
        .collect();
    let wan = rows.iter().find(|r| r.network == "wan").unwrap();
    assert_eq!(wan.seeds, 3);
    let mean = each.iter().sum::<f64>() / 3.0;
    assert!((wan.measured_ms - mean).abs() < 1e-9, "{wan:?} against {each:?}");
    let (lo, hi) = each.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    assert_eq!(wan.spread_ms, (lo, hi));
    assert!(lo < hi, "the seeds' jitter differs: {each:?}");
    let dir = tempfile::tempdir().unwrap();
    let plots = sweep::plots(&rows, dir.path()).unwrap();
    let svg = std::fs::read_to_string(&plots[1]).unwrap();
    assert!(svg.contains("mean of 3 seeds") && svg.contains("tgdh predicted"), "{svg}");
}

#[test]
fn a_lost_transmission_costs_a_resend_timeout() {
    let c = catalogue();
    let tgdh = c.get("tgdh").unwrap().protocol.clone();
    let run = |loss: f64| {
        let mut t = Topology::lan();
        t.sites[0].1.loss = loss;
        let config = SimConfig {
            topology: t,
            cost: COSTS,
            seed: 3,
            dh_group: GroupId::Ffdhe2048,
            batch_ms: 10,
            shared_cores: None,
        };
        let mut sim = Sim::new(config, tgdh.clone());
        let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
        sim.enroll(&names).unwrap();
        for n in &names {
            sim.add(n).unwrap();
        }
        sim.run();
        sim.settled().unwrap().latency_ms
    };
    let clean = run(0.0);
    let lossy = run(0.3);
    assert!(clean < 20.0, "{clean}");
    assert!(lossy >= clean + 200.0, "a resend waits at least 200 ms: {clean} vs {lossy}");
}

const TRACE: &str = r#"
name = "test"
network = "lan"
start = "tgdh"
tail_s = 30
[[step]]
at_s = 0
join = 3
[[step]]
at_s = 30
join = 1
[[step]]
at_s = 60
network = "wan"
[[step]]
at_s = 90
join = 1
[[step]]
at_s = 120
leave = 2
"#;

const RULES: &str = r#"
mode = "rules"
fallback = "stay"
[stability]
min_interval_s = 5
abort_cooldown_s = 5
min_view_age_s = 1
[[rule]]
name = "wan"
protocol = "str"
when.rtt_median_ms = { min = 50 }
[[rule]]
name = "lan"
protocol = "bd"
"#;

#[test]
fn a_trace_replays_with_each_fixed_protocol_and_the_adaptive_policy() {
    use gka_host::policy::{Policy, KNOWN_PROTOCOLS};
    use gka_sim::trace::{evaluate, markdown, ReplayConfig, Trace};
    let c = std::sync::Arc::new(catalogue());
    let trace = Trace::parse(TRACE).unwrap();
    let policy = Policy::parse(RULES, &KNOWN_PROTOCOLS).unwrap();
    let config = ReplayConfig {
        cost: COSTS,
        seed: 5,
        dh_group: GroupId::Ffdhe2048,
        dir: std::path::PathBuf::new(),
    };
    let fixed = vec!["bd".to_string(), "str".into(), "tgdh".into()];
    let e = evaluate(&c, &trace, &fixed, &policy, &config, |_| {}).expect("replays");
    assert_eq!(e.replays.len(), 4);
    for r in &e.replays[..3] {
        assert!(r.switches.is_empty(), "{}", r.mode);
        // Four membership steps, each with its rekey time; the network step has none.
        assert_eq!(r.steps.iter().filter(|s| s.rekey_ms.is_some()).count(), 4, "{}", r.mode);
    }
    let adaptive = e.adaptive();
    let path: Vec<(&str, &str, &str)> = adaptive
        .switches
        .iter()
        .map(|s| (s.from.as_str(), s.to.as_str(), s.reason.as_str()))
        .collect();
    // The probes measure the WAN's round trips through the simulated network.
    assert_eq!(path, [("tgdh", "bd", "rule:lan"), ("bd", "str", "rule:wan")]);
    assert!(adaptive.switches.iter().all(|s| s.ms > 0.0));
    let wan_join = &adaptive.steps[3];
    assert_eq!(wan_join.protocol, "str");
    assert!(wan_join.rekey_ms.unwrap() > 50.0, "{wan_join:?}");
    // The oracle takes the best fixed protocol per event.
    let best: f64 = (0..trace.step.len())
        .filter_map(|i| {
            e.replays[..3].iter().filter_map(|r| r.steps[i].rekey_ms).min_by(f64::total_cmp)
        })
        .sum();
    assert!((e.oracle_ms - best).abs() < 1e-9);
    assert!((e.regret_ms() - (adaptive.events_ms() - best)).abs() < 1e-9);
    // Counted costs: the same seed replays the same, to the byte.
    let again = evaluate(&c, &trace, &fixed, &policy, &config, |_| {}).unwrap();
    assert_eq!(markdown(&trace, &e), markdown(&trace, &again));
}

/// The shipped policy leaves CKD when its controller, the oldest member, keeps leaving (each
/// such leave costs a linear number of exponentiations where CKD's cost model, an average
/// leaver, predicts none), and stays on CKD when the leavers are drawn at random.
#[test]
fn the_shipped_policy_leaves_ckd_when_the_oldest_members_keep_leaving() {
    use gka_host::policy::{Policy, KNOWN_PROTOCOLS};
    use gka_sim::trace::{evaluate, ReplayConfig, Trace};
    let c = std::sync::Arc::new(catalogue());
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy.toml"),
    )
    .unwrap();
    let policy = Policy::parse(&shipped, &KNOWN_PROTOCOLS).unwrap();
    let config = ReplayConfig {
        cost: COSTS,
        seed: 3,
        dh_group: GroupId::Ffdhe2048,
        dir: std::path::PathBuf::new(),
    };
    let fixed = vec!["ckd".to_string(), "tgdh".into()];
    let trace = |leave: &str| {
        let mut text = "name = \"t\"\nnetwork = \"lan\"\nstart = \"ckd\"\ntail_s = 20\n\
                        [[step]]\nat_s = 0\njoin = 32\n"
            .to_owned();
        for i in 1..=6 {
            text += &format!("[[step]]\nat_s = {}\n{leave} = 1\n", i * 20);
        }
        Trace::parse(&text).unwrap()
    };
    let oldest = evaluate(&c, &trace("leave_oldest"), &fixed, &policy, &config, |_| {}).unwrap();
    let switches: Vec<(&str, &str)> =
        oldest.adaptive().switches.iter().map(|s| (s.from.as_str(), s.to.as_str())).collect();
    assert_eq!(switches, [("ckd", "tgdh")], "{:?}", oldest.adaptive().switches);
    let ckd = oldest.fixed()[0].events_ms();
    assert!(
        oldest.adaptive().events_ms() < 0.9 * ckd,
        "{} vs {ckd}",
        oldest.adaptive().events_ms()
    );
    assert!(oldest.phase_oracle_ms >= oldest.oracle_ms - 1e-9);

    let random = evaluate(&c, &trace("leave_random"), &fixed, &policy, &config, |_| {}).unwrap();
    assert!(random.adaptive().switches.is_empty(), "{:?}", random.adaptive().switches);
    assert!(random.fixed()[0].events_ms() < random.fixed()[1].events_ms(), "CKD is cheaper here");
}

#[test]
fn the_shipped_traces_topologies_and_policies_are_valid() {
    use gka_host::policy::{Policy, KNOWN_PROTOCOLS};
    use gka_sim::trace::{network, Trace};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces");
    let mut traces = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if text.contains("[[step]]") {
            let trace = Trace::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            network(&trace.network, &dir).unwrap();
            for s in &trace.step {
                if let Some(n) = &s.network {
                    network(n, &dir).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
            traces += 1;
        } else if text.contains("[[site]]") {
            Topology::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            Policy::parse(&text, &KNOWN_PROTOCOLS).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
    }
    assert!(traces >= 2, "at least two traces ship");
}

#[test]
fn an_event_starts_only_once_the_previous_events_work_is_done() {
    // STR's initial agreement leaves the bottom members computing the whole chain after the
    // last message; a join must not inherit that work, so its latency does not grow with n.
    let c = catalogue();
    let mut s = Sweep::quick(vec!["str".into()], COSTS);
    s.networks = vec![Topology::lan()];
    s.sizes = vec![8, 40];
    s.events = vec![BenchEvent::Join];
    let rows = sweep::run(&c, &s, |_| {}).unwrap();
    let (small, large) = (rows[0].measured_ms, rows[1].measured_ms);
    assert!((large - small).abs() < 1.0, "join at 8: {small} ms, at 40: {large} ms");
}

/// Scale mode (`gka bench --scale`) against full ffdhe2048 arithmetic, side by side: every
/// protocol's sweep over every event on both networks gives the same latency (within 2%; in
/// practice to the microsecond, as counted costs and ffdhe2048-sized encodings leave nothing
/// that depends on the group), and the conformance harness measures the same rounds,
/// messages, bytes and counted operations for every event.
#[test]
fn scale_mode_matches_full_arithmetic() {
    use gka_conformance::{strs, Harness};
    use gka_plugin_api::EventKind;

    let c = catalogue();
    let mut full = Sweep::quick(c.names(), COSTS);
    full.sizes = vec![4, 16];
    full.samples = 2;
    let mut scaled = full.clone();
    scaled.dh_group = GroupId::TestOnly64;
    let full_rows = sweep::run(&c, &full, |_| {}).expect("full arithmetic agrees");
    let scaled_rows = sweep::run(&c, &scaled, |_| {}).expect("scale mode agrees");
    assert_eq!(full_rows.len(), scaled_rows.len());
    for (f, s) in full_rows.iter().zip(&scaled_rows) {
        assert_eq!(
            (&f.protocol, &f.network, f.event, f.n),
            (&s.protocol, &s.network, s.event, s.n)
        );
        let gap = (s.measured_ms - f.measured_ms).abs() / f.measured_ms;
        assert!(gap <= 0.02, "{f:?} vs {s:?}");
    }

    type Make = fn() -> Box<dyn gka_plugin_api::Protocol>;
    let sizes: &[(&str, Make, &[usize])] = &[
        ("bd", || Box::new(gka_bd::Bd), &[8, 32]),
        ("ckd", || Box::new(gka_ckd::Ckd), &[8, 32]),
        ("gdh", || Box::new(gka_gdh::Gdh), &[8, 32]),
        ("str", || Box::new(gka_str::Str), &[8, 32, 128]),
        ("tgdh", || Box::new(gka_tgdh::Tgdh), &[8, 32, 128]),
    ];
    for (name, make, ns) in sizes {
        for &n in *ns {
            for event in [EventKind::Join, EventKind::Leave, EventKind::Merge, EventKind::Refresh] {
                let figures = |group: GroupId| {
                    let mut h = Harness::new(make(), 5).with_dh_group(group);
                    let base = Harness::names("m", n);
                    let comp = h.create(&strs(&base));
                    h.run(comp).expect("initial agreement");
                    match event {
                        EventKind::Join => h.join(comp, &["new0000"]),
                        EventKind::Merge => h.join(comp, &["new0000", "new0001", "new0002"]),
                        EventKind::Leave => h.leave(comp, &[&base[n / 2]]),
                        _ => h.refresh(comp),
                    }
                    h.settle(comp).expect("agreement").1.figures
                };
                let (f, s) = (figures(GroupId::Ffdhe2048), figures(GroupId::TestOnly64));
                assert_eq!(f, s, "{name} {event} at n = {n}: full {f:?}, scale mode {s:?}");
            }
        }
    }
}
