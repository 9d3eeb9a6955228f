//! The per-protocol event benchmark: the computation each member does for each event, at
//! several group sizes, measured with the in-memory harness (one thread, so the times are CPU
//! times on this machine). Network time is not included; that is the simulator's job.
//!
//! Run with `cargo bench -p gka-<protocol>` (each plugin has a `benches/events.rs`). Each
//! criterion sample runs whole episodes (initial agreement, join, leave, merge, partition,
//! refresh) and reports only the benchmarked event's busiest-member time, so forming the group
//! is never counted.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode};

use crate::scenarios::Factory;
use crate::{strs, Harness, Measured};

/// Group sizes of the benchmark.
pub const SIZES: [usize; 3] = [8, 32, 128];

/// Episodes per size; the median is reported.
pub const EPISODES: usize = 3;

/// One row: an event at a size.
#[derive(Debug, Clone)]
pub struct Row {
    /// The event.
    pub event: &'static str,
    /// Group size before the event.
    pub n: usize,
    /// Median busiest-member time.
    pub busiest: Duration,
    /// Median time summed over members, divided by the group size after the event.
    pub mean_per_member: Duration,
    /// Exponentiations on the critical path (deterministic).
    pub serial_exponentiations: u64,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One episode at size n: initial agreement, join, leave (of the joiner), merge of 3,
/// partition of 3, refresh. Returns (event, measured, size after the event).
fn episode(make: Factory<'_>, n: usize, seed: u64) -> Vec<(&'static str, Measured, usize)> {
    let mut h = Harness::new(make(), seed);
    let ids = Harness::names("m", n);
    let mut out = Vec::new();
    let c = h.create(&strs(&ids));
    let mut settle = |h: &mut Harness, name: &'static str| {
        let (_, m) = h.settle(c).unwrap_or_else(|e| panic!("{name} at n = {n}: {e}"));
        out.push((name, m, h.members(c).len()));
    };
    settle(&mut h, "initial");
    h.join(c, &["j"]);
    settle(&mut h, "join");
    h.leave(c, &["j"]);
    settle(&mut h, "leave");
    h.join(c, &["k0", "k1", "k2"]);
    settle(&mut h, "merge-3");
    h.leave(c, &["k0", "k1", "k2"]);
    settle(&mut h, "partition-3");
    h.refresh(c);
    settle(&mut h, "refresh");
    out
}

/// The events of an episode, in order.
pub const EVENTS: [&str; 6] = ["initial", "join", "leave", "merge-3", "partition-3", "refresh"];

/// Registers one criterion benchmark per event and size: the busiest member's computation.
pub fn criterion_benches(c: &mut Criterion, make: Factory<'_>) {
    let name = make().descriptor().name;
    let mut group = c.benchmark_group(format!("{name}/per-member"));
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(500));
    for n in SIZES {
        for (j, event) in EVENTS.iter().enumerate() {
            group.bench_with_input(BenchmarkId::new(*event, n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    (0..iters).map(|i| episode(make, n, i)[j].1.busiest_member_cpu).sum()
                })
            });
        }
    }
    group.finish();
}

/// Runs the benchmark and returns its rows.
pub fn run(make: Factory<'_>) -> Vec<Row> {
    let mut rows = Vec::new();
    for n in SIZES {
        let episodes: Vec<_> = (0..EPISODES).map(|i| episode(make, n, i as u64)).collect();
        for (j, (event, m, _)) in episodes[0].iter().enumerate() {
            let busiest = median(episodes.iter().map(|e| e[j].1.busiest_member_cpu).collect());
            let mean =
                median(episodes.iter().map(|e| e[j].1.total_cpu / e[j].2.max(1) as u32).collect());
            rows.push(Row {
                event,
                n,
                busiest,
                mean_per_member: mean,
                serial_exponentiations: m.figures.serial_exponentiations,
            });
        }
    }
    rows
}

/// Runs the benchmark for `make` and prints a Markdown table.
pub fn report(make: Factory<'_>) {
    let name = make().descriptor().name;
    println!("\n### {name}: per-member computation (median of {EPISODES} runs)\n");
    println!("| event | n | busiest member (ms) | mean per member (ms) | serial exps |");
    println!("|---|---:|---:|---:|---:|");
    for r in run(make) {
        println!(
            "| {} | {} | {:.2} | {:.2} | {} |",
            r.event,
            r.n,
            r.busiest.as_secs_f64() * 1e3,
            r.mean_per_member.as_secs_f64() * 1e3,
            r.serial_exponentiations
        );
    }
}

/// The whole `benches/events.rs` of a plugin: criterion benchmarks of the busiest member's
/// computation for every event at n = 8, 32 and 128, or with `GKA_BENCH_TABLE=1` a Markdown
/// table of the same.
#[macro_export]
macro_rules! plugin_benches {
    ($protocol:expr) => {
        fn events(c: &mut criterion::Criterion) {
            if std::env::var_os("GKA_BENCH_TABLE").is_some() {
                $crate::bench::report(&|| Box::new($protocol));
                return;
            }
            $crate::bench::criterion_benches(c, &|| Box::new($protocol));
        }

        criterion::criterion_group!(benches, events);
        criterion::criterion_main!(benches);
    };
}
