//! `gka bench`: a sweep of protocols × events × group sizes × networks in the simulator, each
//! measured latency set beside the plugin's analytic prediction, written as CSV, a Markdown
//! table and one SVG plot per event and network.
//!
//! For each protocol, network and size n, one simulated group of n members agrees its first
//! key (`initial`), then a member joins (`join`, n → n + 1), the newest leaves (`leave`,
//! n + 1 → n), the newest quarter of the group splits off (`partition`, both sides rekey) and
//! the split heals (`merge`, the quarter merges back). Members do not leave in join order in
//! real groups, so the sweep also measures, each time from n + 1 (or n) members, the oldest
//! leaving (`leave-oldest`), a member at a random position leaving (`leave-random`, sampled
//! [`Sweep::samples`] times with positions drawn from the seed: mean and 95th percentile), the
//! oldest quarter splitting off (`partition-oldest`) and a random quarter splitting off
//! (`partition-random`, sampled likewise).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use gka_plugin_api::{EventKind, GroupId, Protocol};

use super::{CostMode, Sim, SimConfig, SimError, Topology};
use gka_host::member::Catalogue;
use gka_host::policy::{predict_ms, Inputs};

/// An event the sweep measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BenchEvent {
    /// The first key of n members.
    Initial,
    /// One member joins n.
    Join,
    /// One member leaves n + 1.
    Leave,
    /// A quarter of the group splits off; both sides rekey.
    Partition,
    /// The quarter merges back.
    Merge,
    /// The oldest of n + 1 members leaves.
    LeaveOldest,
    /// A member of n + 1 at a random position leaves (sampled).
    LeaveRandom,
    /// The oldest quarter splits off.
    PartitionOldest,
    /// A random quarter splits off (sampled).
    PartitionRandom,
}

impl BenchEvent {
    /// Every event, in the order a run performs them.
    pub const ALL: [Self; 9] = [
        Self::Initial,
        Self::Join,
        Self::Leave,
        Self::Partition,
        Self::Merge,
        Self::LeaveOldest,
        Self::LeaveRandom,
        Self::PartitionOldest,
        Self::PartitionRandom,
    ];

    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Partition => "partition",
            Self::Merge => "merge",
            Self::LeaveOldest => "leave-oldest",
            Self::LeaveRandom => "leave-random",
            Self::PartitionOldest => "partition-oldest",
            Self::PartitionRandom => "partition-random",
        }
    }

    /// Whether the event is sampled at random positions.
    pub fn sampled(self) -> bool {
        matches!(self, Self::LeaveRandom | Self::PartitionRandom)
    }

    /// The event by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    fn kind(self) -> EventKind {
        match self {
            Self::Initial => EventKind::Initial,
            Self::Join => EventKind::Join,
            Self::Leave | Self::LeaveOldest | Self::LeaveRandom => EventKind::Leave,
            Self::Partition | Self::PartitionOldest | Self::PartitionRandom => EventKind::Partition,
            Self::Merge => EventKind::Merge,
        }
    }
}

/// What a sweep runs.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Protocol names (each must be in the catalogue).
    pub protocols: Vec<String>,
    /// Events to measure (the others still run when a later one needs them).
    pub events: Vec<BenchEvent>,
    /// Group sizes.
    pub sizes: Vec<usize>,
    /// Networks.
    pub networks: Vec<Topology>,
    /// How plugin calls are timed.
    pub cost: CostMode,
    /// The seed.
    pub seed: u64,
    /// The Diffie-Hellman group.
    pub dh_group: GroupId,
    /// Members share this many cores (`None`: a CPU each).
    pub shared_cores: Option<usize>,
    /// Positions drawn for each sampled event (`leave-random`, `partition-random`).
    pub samples: usize,
    /// Runs per (protocol, network, size), with seeds `seed`, `seed + 1`, ...: each row is
    /// their mean, with their spread.
    pub seeds: usize,
}

impl Sweep {
    /// The quick sweep: every protocol and event, n = 4, 8, 16, 32, on `lan` and `wan`.
    pub fn quick(protocols: Vec<String>, cost: CostMode) -> Self {
        Self {
            protocols,
            events: BenchEvent::ALL.to_vec(),
            sizes: vec![4, 8, 16, 32],
            networks: vec![Topology::lan(), Topology::wan()],
            cost,
            seed: 1,
            dh_group: GroupId::Ffdhe2048,
            shared_cores: None,
            samples: 5,
            seeds: 1,
        }
    }

    /// How many (protocol, network, size, seed) runs the sweep makes.
    pub fn runs(&self) -> usize {
        self.protocols.len() * self.networks.len() * self.sizes.len() * self.seeds.max(1)
    }
}

/// One measured event.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The protocol.
    pub protocol: String,
    /// The network.
    pub network: String,
    /// The event.
    pub event: BenchEvent,
    /// The run's group size n (the event's exact sizes are in the module docs).
    pub n: usize,
    /// Members splitting off or merging back (partition, merge), else 0.
    pub k: usize,
    /// Simulated latency, ms: the mean over the seeds (of each seed's mean, for a sampled
    /// event).
    pub measured_ms: f64,
    /// The least and greatest of the seeds' latencies, ms (equal with one seed).
    pub spread_ms: (f64, f64),
    /// The seeds it is the mean of.
    pub seeds: usize,
    /// The 95th percentile of a sampled event's latencies, ms (the greatest over the seeds).
    pub p95_ms: Option<f64>,
    /// The cost model's prediction, ms.
    pub predicted_ms: f64,
}

impl Row {
    /// measured ÷ predicted.
    pub fn ratio(&self) -> f64 {
        if self.predicted_ms > 0.0 {
            self.measured_ms / self.predicted_ms
        } else {
            f64::NAN
        }
    }
}

/// The analytic prediction: the plugin's cost model, with the network's round latency and
/// bandwidth and the run's operation costs.
pub fn predict(
    protocol: &dyn Protocol,
    topology: &Topology,
    cost: &CostMode,
    event: BenchEvent,
    n: usize,
    k: usize,
) -> f64 {
    let (round_ms, bandwidth) = topology.round_ms_and_bandwidth(n.max(1));
    let mut inputs = Inputs {
        group_size: n as u64,
        rtt_median_ms: 2.0 * round_ms,
        rtt_worst_ms: 2.0 * round_ms,
        bandwidth_mbps: bandwidth,
        cpu_local: 0.0,
        cpu_worst: 0.0,
        ..Inputs::default()
    };
    let c = cost.costs();
    inputs.exp_ms = c.exp_ms;
    inputs.sign_ms = c.sign_ms;
    inputs.verify_ms = c.verify_ms;
    predict_ms(&protocol.cost(event.kind(), n as u64, k as u64), &inputs)
}

/// The prediction for a row of a run of size `n` (see [`Row`]): the cost models take the size
/// before the event and the members that merge or leave.
pub fn predict_row(
    protocol: &dyn Protocol,
    topology: &Topology,
    cost: &CostMode,
    event: BenchEvent,
    n: usize,
    k: usize,
) -> f64 {
    match event {
        BenchEvent::Initial | BenchEvent::Join => predict(protocol, topology, cost, event, n, 0),
        BenchEvent::Leave | BenchEvent::LeaveOldest | BenchEvent::LeaveRandom => {
            predict(protocol, topology, cost, event, n + 1, 0)
        }
        // Both sides rekey: the one left with n − k members and the k that split off.
        BenchEvent::Partition | BenchEvent::PartitionOldest | BenchEvent::PartitionRandom => {
            predict(protocol, topology, cost, event, n, k).max(predict(
                protocol,
                topology,
                cost,
                event,
                n,
                n - k,
            ))
        }
        BenchEvent::Merge => predict(protocol, topology, cost, event, n - k, k),
    }
}

fn name(i: usize) -> String {
    format!("m{i:04}")
}

/// One (protocol, network, size) run: every event in order; rows for those asked for.
fn run_one(
    protocol: &dyn Protocol,
    shared: std::sync::Arc<dyn Protocol>,
    topology: &Topology,
    sweep: &Sweep,
    n: usize,
) -> Result<Vec<Row>, SimError> {
    let config = SimConfig {
        topology: topology.clone(),
        cost: sweep.cost,
        seed: sweep.seed,
        dh_group: sweep.dh_group,
        batch_ms: 10,
        shared_cores: sweep.shared_cores,
    };
    let mut sim = Sim::new(config, shared);
    let names: Vec<String> = (0..n + 2 + sweep.samples).map(name).collect();
    sim.enroll(&names)?;
    let mut fresh = names[n + 1..].iter();
    let mut rng = crate::trace::SplitMix(sweep.seed ^ n as u64);
    let mut rows = Vec::new();
    let predicted =
        |event: BenchEvent, k: usize| predict_row(protocol, topology, &sweep.cost, event, n, k);
    let mut record = |event: BenchEvent, k: usize, samples: &[f64]| {
        if sweep.events.contains(&event) {
            let stats = crate::trace::LatencyStats::of(samples);
            rows.push(Row {
                protocol: protocol.descriptor().name,
                network: topology.name.clone(),
                event,
                n,
                k,
                measured_ms: stats.mean_ms,
                spread_ms: (stats.mean_ms, stats.mean_ms),
                seeds: 1,
                p95_ms: event.sampled().then_some(stats.p95_ms),
                predicted_ms: predicted(event, k),
            });
        }
    };
    let wants = |e: BenchEvent| sweep.events.contains(&e);
    for m in &names[..n] {
        sim.add(m)?;
    }
    sim.run();
    record(BenchEvent::Initial, 0, &[sim.settled()?.latency_ms]);
    let later = |from: BenchEvent| sweep.events.iter().any(|e| *e >= from);
    if later(BenchEvent::Join) {
        sim.add(&names[n])?;
        sim.run();
        record(BenchEvent::Join, 0, &[sim.settled()?.latency_ms]);
        sim.remove(&names[n])?;
        sim.run();
        record(BenchEvent::Leave, 0, &[sim.settled()?.latency_ms]);
    }
    let p = (n / 4).max(1);
    // Splits `go` off and heals: the split's and the merge's latency.
    let split = |sim: &mut Sim, go: Vec<String>| -> Result<(f64, f64), SimError> {
        let stay: Vec<String> = sim.members().into_iter().filter(|m| !go.contains(m)).collect();
        sim.partition(&[stay, go])?;
        sim.run();
        let split_ms = sim.settled()?.latency_ms;
        sim.heal();
        sim.run();
        let merge_ms = sim.settled()?.latency_ms;
        Ok((split_ms, merge_ms))
    };
    if n >= 2 && (wants(BenchEvent::Partition) || wants(BenchEvent::Merge)) {
        let members = sim.members();
        let (split_ms, merge_ms) = split(&mut sim, members[members.len() - p..].to_vec())?;
        record(BenchEvent::Partition, p, &[split_ms]);
        record(BenchEvent::Merge, p, &[merge_ms]);
    }
    if wants(BenchEvent::LeaveOldest) {
        sim.add(fresh.next().expect("a fresh name"))?;
        sim.run();
        sim.settled()?;
        let oldest = sim.members()[0].clone();
        sim.remove(&oldest)?;
        sim.run();
        record(BenchEvent::LeaveOldest, 0, &[sim.settled()?.latency_ms]);
    }
    if wants(BenchEvent::LeaveRandom) {
        let mut samples = Vec::new();
        for _ in 0..sweep.samples {
            sim.add(fresh.next().expect("a fresh name"))?;
            sim.run();
            sim.settled()?;
            let members = sim.members();
            let who = members[(rng.next_u64() % members.len() as u64) as usize].clone();
            sim.remove(&who)?;
            sim.run();
            samples.push(sim.settled()?.latency_ms);
        }
        record(BenchEvent::LeaveRandom, 0, &samples);
    }
    if n >= 2 && wants(BenchEvent::PartitionOldest) {
        let oldest = sim.members()[..p].to_vec();
        record(BenchEvent::PartitionOldest, p, &[split(&mut sim, oldest)?.0]);
    }
    if n >= 2 && wants(BenchEvent::PartitionRandom) {
        let mut samples = Vec::new();
        for _ in 0..sweep.samples {
            let mut members = sim.members();
            let mut go = Vec::new();
            for _ in 0..p {
                go.push(members.remove((rng.next_u64() % members.len() as u64) as usize));
            }
            samples.push(split(&mut sim, go)?.0);
        }
        record(BenchEvent::PartitionRandom, p, &samples);
    }
    Ok(rows)
}

/// Runs the sweep; `progress` hears of each finished run.
pub fn run(
    catalogue: &Catalogue,
    sweep: &Sweep,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Row>, SimError> {
    if sweep.samples == 0 && sweep.events.iter().any(|e| e.sampled()) {
        return Err(SimError::Invalid("sampled events need at least one sample".into()));
    }
    if sweep.seeds == 0 {
        return Err(SimError::Invalid("a sweep needs at least one seed".into()));
    }
    let mut rows = Vec::new();
    for p in &sweep.protocols {
        let entry = catalogue.get(p).ok_or_else(|| SimError::Session(format!("no plugin {p}")))?;
        for topology in &sweep.networks {
            for &n in &sweep.sizes {
                let mut per_seed = Vec::new();
                for i in 0..sweep.seeds as u64 {
                    let seeded = Sweep { seed: sweep.seed.wrapping_add(i), ..sweep.clone() };
                    let protocol = entry.protocol.clone();
                    let found =
                        run_one(&*entry.protocol, protocol, topology, &seeded, n).map_err(|e| {
                            let at = format!(
                                "{p} on {} at n = {n}, seed {}",
                                topology.name, seeded.seed
                            );
                            SimError::NoAgreement(format!("{at}: {e}"))
                        })?;
                    per_seed.push(found);
                    progress(&format!("{p} {} n={n} seed {}", topology.name, seeded.seed));
                }
                rows.extend(over_seeds(per_seed));
            }
        }
    }
    Ok(rows)
}

/// One row per event from the rows of each seed's run (same events, same order): the mean of
/// the seeds' latencies, their least and greatest, and the greatest 95th percentile.
fn over_seeds(per_seed: Vec<Vec<Row>>) -> Vec<Row> {
    let mut seeds = per_seed.into_iter();
    let Some(mut rows) = seeds.next() else { return Vec::new() };
    let mut sums: Vec<f64> = rows.iter().map(|r| r.measured_ms).collect();
    for other in seeds {
        for ((row, sum), o) in rows.iter_mut().zip(&mut sums).zip(other) {
            *sum += o.measured_ms;
            row.spread_ms =
                (row.spread_ms.0.min(o.measured_ms), row.spread_ms.1.max(o.measured_ms));
            row.p95_ms = row.p95_ms.zip(o.p95_ms).map(|(a, b)| a.max(b)).or(row.p95_ms);
            row.seeds += 1;
        }
    }
    for (row, sum) in rows.iter_mut().zip(sums) {
        row.measured_ms = sum / row.seeds as f64;
    }
    rows
}

/// The rows as CSV.
pub fn csv(rows: &[Row], cost: &CostMode, seed: u64) -> String {
    let c = cost.costs();
    let mut out = String::from(
        "protocol,network,event,n,k,measured_ms,predicted_ms,ratio,cost,exp_ms,sign_ms,verify_ms,seed,p95_ms,seeds,min_ms,max_ms\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.3},{:.3},{:.3},{},{},{},{},{seed},{},{},{:.3},{:.3}",
            r.protocol,
            r.network,
            r.event.name(),
            r.n,
            r.k,
            r.measured_ms,
            r.predicted_ms,
            r.ratio(),
            cost.name(),
            c.exp_ms,
            c.sign_ms,
            c.verify_ms,
            r.p95_ms.map_or_else(String::new, |p| format!("{p:.3}")),
            r.seeds,
            r.spread_ms.0,
            r.spread_ms.1
        );
    }
    out
}

/// An x axis in log2 of the group size whose ticks are the measured sizes, labelled as sizes.
struct Log2Sizes {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl plotters::coord::ranged1d::Ranged for Log2Sizes {
    type FormatOption = plotters::coord::ranged1d::NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let at = (value - self.range.start) / span;
        limit.0 + (at * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, _: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

impl plotters::coord::ranged1d::ValueFormatter<f64> for Log2Sizes {
    fn format(value: &f64) -> String {
        format!("{}", value.exp2().round() as u64)
    }
}

/// The legend, in its own area beside the chart: a solid and a dashed line for each protocol
/// (simulated, predicted).
fn legend<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    protocols: &[&str],
    palette: &[plotters::prelude::RGBColor],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    let text = ("sans-serif", 15).into_font();
    let mut y = 60;
    for (i, p) in protocols.iter().enumerate() {
        let color = palette[i % palette.len()];
        area.draw(&PathElement::new(vec![(10, y), (40, y)], color.stroke_width(2)))?;
        area.draw(&Text::new(format!("{p} simulated"), (48, y - 8), text.clone()))?;
        let dashes = (0..3).map(|d| {
            let x0 = 10 + d * 11;
            PathElement::new(vec![(x0, y + 20), (x0 + 6, y + 20)], color.stroke_width(1))
        });
        for dash in dashes {
            area.draw(&dash)?;
        }
        area.draw(&Text::new(format!("{p} predicted"), (48, y + 12), text.clone()))?;
        y += 48;
    }
    Ok(())
}

/// The rows as Markdown tables, one per network and event: sizes across, protocols down,
/// "measured (predicted)" in ms.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut groups: BTreeMap<(String, BenchEvent), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.network.clone(), r.event)).or_default().push(r);
    }
    for ((network, event), rs) in groups {
        let mut sizes: Vec<usize> = rs.iter().map(|r| r.n).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let what = if event.sampled() {
            "ms, simulated mean / 95th percentile over the sampled positions (predicted)"
        } else {
            "ms, simulated (predicted)"
        };
        let _ = writeln!(out, "\n#### {} on {network}: {what}\n", event.name());
        let header: Vec<String> = sizes.iter().map(|n| format!("n = {n}")).collect();
        let _ = writeln!(out, "| protocol | {} |", header.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(sizes.len()));
        let mut protocols: Vec<&str> = rs.iter().map(|r| r.protocol.as_str()).collect();
        protocols.dedup();
        protocols.sort_unstable();
        protocols.dedup();
        for p in protocols {
            let cells: Vec<String> = sizes
                .iter()
                .map(|n| {
                    rs.iter().find(|r| r.protocol == p && r.n == *n).map_or_else(
                        || "-".into(),
                        |r| match r.p95_ms {
                            Some(p95) => {
                                format!("{:.1} / {p95:.1} ({:.1})", r.measured_ms, r.predicted_ms)
                            }
                            None => format!("{:.1} ({:.1})", r.measured_ms, r.predicted_ms),
                        },
                    )
                })
                .collect();
            let _ = writeln!(out, "| {p} | {} |", cells.join(" | "));
        }
    }
    out
}

/// One SVG plot per network and event in `dir`: latency against group size on a log2 axis
/// whose ticks are the measured sizes, a solid line per protocol (simulated: the mean over the
/// seeds, with a bar from the least to the greatest seed when there are several) and a dashed
/// one (predicted), and the legend beside the chart, not over its data. Returns the files.
pub fn plots(rows: &[Row], dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    use plotters::prelude::*;
    std::fs::create_dir_all(dir)?;
    let mut groups: BTreeMap<(String, BenchEvent), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.network.clone(), r.event)).or_default().push(r);
    }
    let palette = [RED, BLUE, GREEN, MAGENTA, BLACK, CYAN];
    let mut written = Vec::new();
    for ((network, event), rs) in groups {
        let path = dir.join(format!("{network}-{}.svg", event.name()));
        let mut sizes: Vec<usize> = rs.iter().map(|r| r.n).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let x = |n: usize| (n.max(1) as f64).log2();
        let (lo, hi) = (x(sizes[0]), x(sizes[sizes.len() - 1]));
        let pad = ((hi - lo) * 0.05).max(0.25);
        let max_ms = rs
            .iter()
            .map(|r| r.spread_ms.1.max(r.measured_ms).max(r.predicted_ms))
            .fold(1.0, f64::max);
        let seeds = rs.iter().map(|r| r.seeds).max().unwrap_or(1);
        let mut protocols: Vec<&str> = rs.iter().map(|r| r.protocol.as_str()).collect();
        protocols.sort_unstable();
        protocols.dedup();
        let draw = || -> Result<(), Box<dyn std::error::Error>> {
            let root = SVGBackend::new(&path, (900, 500)).into_drawing_area();
            root.fill(&WHITE)?;
            let (plot_area, legend_area) = root.split_horizontally(700);
            let what = if seeds > 1 {
                format!("mean of {seeds} seeds, bars: least to greatest")
            } else {
                "one seed".to_owned()
            };
            let mut chart = ChartBuilder::on(&plot_area)
                .caption(format!("{} on {network} ({what})", event.name()), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(
                    Log2Sizes {
                        range: (lo - pad)..(hi + pad),
                        ticks: sizes.iter().map(|&n| x(n)).collect(),
                    },
                    0f64..max_ms * 1.1,
                )?;
            chart
                .configure_mesh()
                .x_desc("group size n (log2 scale)")
                .y_desc("rekey latency, ms")
                .draw()?;
            for (i, p) in protocols.iter().enumerate() {
                let color = palette[i % palette.len()];
                let mut points: Vec<&&Row> = rs.iter().filter(|r| r.protocol == *p).collect();
                points.sort_by_key(|r| r.n);
                chart.draw_series(LineSeries::new(
                    points.iter().map(|r| (x(r.n), r.measured_ms)),
                    color.stroke_width(2),
                ))?;
                chart.draw_series(
                    points.iter().map(|r| Circle::new((x(r.n), r.measured_ms), 3, color.filled())),
                )?;
                chart.draw_series(points.iter().filter(|r| r.seeds > 1).map(|r| {
                    PathElement::new(
                        vec![(x(r.n), r.spread_ms.0), (x(r.n), r.spread_ms.1)],
                        color.stroke_width(1),
                    )
                }))?;
                chart.draw_series(DashedLineSeries::new(
                    points.iter().map(|r| (x(r.n), r.predicted_ms)),
                    6,
                    4,
                    color.stroke_width(1),
                ))?;
            }
            legend(&legend_area, &protocols, &palette)?;
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| std::io::Error::other(e.to_string()))?;
        written.push(path);
    }
    Ok(written)
}
