//! `gka bench`: sweeps in the simulator, trace replays against fixed protocols, the simulator
//! checked against the daemon, and the chaos soak of real processes.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use gka_host::identity::Scheme;
use gka_host::member::Catalogue;
use gka_host::policy::measure;
use gka_plugin_api::GroupId;
use gka_sim::sweep::{self, BenchEvent, Sweep};
use gka_sim::{evaluation, trace, CostMode, OpCosts, Topology};

use crate::common::{runtime, PluginDirArg, Plugins};

mod floor;

/// The largest group `gka bench` simulates with full ffdhe2048 arithmetic.
const MAX_FULL_SIZE: usize = 1024;
/// The largest group it simulates in scale mode (`--scale`).
const MAX_SCALE_SIZE: usize = 8192;

/// `gka bench` and its flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// `adaptive`: replay a trace instead of the sweep.
    #[command(subcommand)]
    replay: Option<BenchCommand>,
    /// The small sweep: every protocol and event, n = 4, 8, 16, 32, on lan and wan.
    #[arg(long)]
    quick: bool,
    /// Protocols (default: every loaded plugin).
    #[arg(long, value_delimiter = ',')]
    protocols: Vec<String>,
    /// Events: initial, join, leave, partition, merge (default: all).
    #[arg(long, value_delimiter = ',')]
    events: Vec<String>,
    /// Runs per point, with seeds --seed, --seed + 1, ...: each point is their mean, and the
    /// plots show their spread (1 to 20).
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Group sizes (default: 4,8,16,32,64).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Networks: lan, wan, loopback, or a topology TOML file (default: lan,wan).
    #[arg(long, value_delimiter = ',')]
    networks: Vec<String>,
    /// Scale mode, for groups of thousands (sizes up to 8192): the protocols compute in a
    /// 64-bit test group whose elements are encoded at ffdhe2048's length, and every
    /// operation is charged at the ffdhe2048 costs (`--cost counted` only). Rounds, messages,
    /// bytes and counted operations are those of ffdhe2048; see docs/performance.md.
    #[arg(long)]
    scale: bool,
    /// Flags every benchmark shares.
    #[command(flatten)]
    shared: SharedArgs,
}

/// Flags shared by `gka bench` and its replays.
#[derive(Debug, clap::Args)]
struct SharedArgs {
    /// How plugin calls are timed: counted (operations × costs, deterministic) or measured
    /// (thread CPU time).
    #[arg(long, default_value = "counted", global = true)]
    cost: String,
    /// Costs for `counted`, ms (default: calibrated here first, and printed).
    #[arg(long, global = true)]
    exp_ms: Option<f64>,
    /// One signature, ms (with --exp-ms).
    #[arg(long, global = true)]
    sign_ms: Option<f64>,
    /// One verification, ms (with --exp-ms).
    #[arg(long, global = true)]
    verify_ms: Option<f64>,
    /// Seed of the members' keys, jitter and loss.
    #[arg(long, default_value_t = 1, global = true)]
    seed: u64,
    /// Output directory: results.csv, results.md, plots/*.svg (a replay writes
    /// adaptive-NAME.md).
    #[arg(long, default_value = "bench-out", value_name = "DIR", global = true)]
    out: PathBuf,
    #[command(flatten)]
    plugins: PluginDirArg,
}

impl SharedArgs {
    /// How plugin calls are timed, from `--cost` and the costs (see [`bench_cost`]).
    fn cost_mode(&self) -> Result<CostMode> {
        bench_cost(&self.cost, self.exp_ms, self.sign_ms, self.verify_ms)
    }
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Replay a trace of membership events and changing conditions with each fixed protocol
    /// and with the adaptive policy, and compare them with an oracle that picks the best
    /// protocol for each event.
    Adaptive {
        /// The trace (TOML; see sim/src/trace.rs, and traces/ for examples).
        #[arg(long, value_name = "FILE")]
        trace: PathBuf,
        /// The policy the adaptive run follows.
        #[arg(long, default_value = "policy.toml", value_name = "FILE")]
        policy: PathBuf,
        /// The fixed protocols to compare with (default: every loaded plugin).
        #[arg(long, value_delimiter = ',')]
        protocols: Vec<String>,
        /// Print one JSON object (trace, seed, fixed, adaptive, oracle_ms, phase_oracle_ms,
        /// best_fixed) instead of the tables.
        #[arg(long)]
        json: bool,
    },
    /// Write a trace drawn from a churn model (Poisson arrivals and merges, exponential
    /// lifetimes, random and oldest leavers, phases of network and CPU conditions) for
    /// `gka bench adaptive`, to OUT/NAME.toml (`--seed` seeds it).
    Trace {
        /// The trace's name (default: drawn-SEED).
        #[arg(long)]
        name: Option<String>,
        /// Length, minutes.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Members at the start.
        #[arg(long, default_value_t = 16)]
        start_members: usize,
        /// The most members at once (at most 1024).
        #[arg(long, default_value_t = 128)]
        max_members: usize,
        /// Arrivals per minute.
        #[arg(long, default_value_t = 4.0)]
        arrivals_per_min: f64,
        /// Mean lifetime of a member, minutes.
        #[arg(long, default_value_t = 8.0)]
        lifetime_min: f64,
        /// Chance that an arrival is a merge of --merge-size members.
        #[arg(long, default_value_t = 0.1)]
        merge_probability: f64,
        /// Members in a merge.
        #[arg(long, default_value_t = 8)]
        merge_size: usize,
        /// Chance that a departure is the oldest member's.
        #[arg(long, default_value_t = 0.2)]
        oldest_probability: f64,
        /// Networks the phases draw from.
        #[arg(long, value_delimiter = ',', default_values_t = ["lan".to_string(), "wan".to_string()])]
        networks: Vec<String>,
        /// CPU loads the phases draw from.
        #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.0, 0.9])]
        cpu_loads: Vec<f64>,
    },
    /// Each protocol's simulated events beside their floor: the plugin's cost model priced at
    /// the best primitive costs measured here in the same run (OpenSSL's `openssl speed
    /// ffdh2048 ed25519` or gka's own, whichever is cheaper), plus rounds × latency. Runs in
    /// scale mode at gka's own costs; writes floor.md to --out.
    Floor {
        /// Protocols (default: every loaded plugin).
        #[arg(long, value_delimiter = ',')]
        protocols: Vec<String>,
        /// Group sizes (2 to 8192).
        #[arg(long, value_delimiter = ',', default_values_t = [8, 32, 128, 1024])]
        sizes: Vec<usize>,
        /// Events (default: join, leave-random, merge, partition-random).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Networks: lan, wan, loopback, or a topology TOML file.
        #[arg(long, value_delimiter = ',', default_values_t = ["lan".to_string(), "wan".to_string()])]
        networks: Vec<String>,
        /// Seconds `openssl speed` spends on each primitive (1 to 30).
        #[arg(long, default_value_t = 3)]
        openssl_seconds: u32,
    },
    /// Check the simulator against the real daemon on loopback: initial agreement, join and
    /// leave at n = 4, 8, 16 for every protocol, simulated (loopback profile, measured CPU
    /// time) and over the daemon, with their ratio.
    Validate {
        /// Group sizes (at most 16: every member shares this machine's cores over the daemon).
        #[arg(long, value_delimiter = ',', default_values_t = [4, 8, 16])]
        sizes: Vec<usize>,
    },
    /// A soak of real processes on loopback: a daemon and member processes sending a line
    /// every 100 ms each, while victims are killed mid-rekey (SIGKILL) and restarted, and the
    /// daemon is stopped for 4 s and restarted. Reports divergent epochs, lost lines,
    /// duplicates and data under a departed member's epoch, and fails unless all are 0.
    Chaos {
        /// Member processes (4 to 32).
        #[arg(long, default_value_t = 8)]
        members: usize,
        /// How many of them are never killed (default: half).
        #[arg(long)]
        stable: Option<usize>,
        /// Seconds of lines and faults (then 8 s to settle).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

/// Runs `gka bench`.
pub(crate) fn run(args: BenchArgs) -> Result<()> {
    let plugins = args.shared.plugins.load()?;
    match args.replay {
        Some(BenchCommand::Adaptive { trace, policy, protocols, json }) => {
            adaptive(&plugins, &args.shared, &trace, &policy, protocols, json)
        }
        Some(BenchCommand::Trace {
            name,
            minutes,
            start_members,
            max_members,
            arrivals_per_min,
            lifetime_min,
            merge_probability,
            merge_size,
            oldest_probability,
            networks,
            cpu_loads,
        }) => {
            let model = gka_sim::churn::ChurnModel {
                seed: args.shared.seed,
                minutes,
                start_members,
                max_members,
                arrivals_per_min,
                mean_lifetime_min: lifetime_min,
                merge_probability,
                merge_size,
                oldest_probability,
                networks,
                cpu_loads,
                ..gka_sim::churn::ChurnModel::default()
            };
            let name = name.unwrap_or_else(|| format!("drawn-{}", args.shared.seed));
            let text = model.generate(&name)?;
            let dir = &args.shared.out;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {} (--out)", dir.display()))?;
            let out = dir.join(format!("{name}.toml"));
            std::fs::write(&out, &text)
                .with_context(|| format!("cannot write {} (--out)", out.display()))?;
            let steps = text.matches("[[step]]").count();
            println!("wrote {} ({steps} steps, seed {})", out.display(), args.shared.seed);
            Ok(())
        }
        Some(BenchCommand::Validate { sizes }) => validate(&plugins, &args.shared, &sizes),
        Some(BenchCommand::Floor { protocols, sizes, events, networks, openssl_seconds }) => {
            if !(1..=30).contains(&openssl_seconds) {
                bail!("--openssl-seconds must be 1 to 30, not {openssl_seconds}");
            }
            if let Some(n) = sizes.iter().find(|n| !(2..=MAX_SCALE_SIZE).contains(*n)) {
                bail!("group size {n} is outside 2 to {MAX_SCALE_SIZE}");
            }
            let catalogue = plugins.catalogue();
            let gka = args.shared.cost_mode()?.costs();
            let protocols = bench_protocols(&catalogue, protocols)?;
            let mut sweep = Sweep::quick(protocols, CostMode::Counted(gka));
            sweep.seed = args.shared.seed;
            sweep.seeds = 1;
            sweep.sizes = sizes;
            sweep.events = if events.is_empty() {
                floor::FLOOR_EVENTS.to_vec()
            } else {
                parse_events(&events)?
            };
            sweep.networks = networks.iter().map(|n| topology(n)).collect::<Result<_>>()?;
            floor::floor(&catalogue, sweep, openssl_seconds, &args.shared.out)
        }
        Some(BenchCommand::Chaos { members, stable, seconds }) => {
            chaos(&args.shared, members, stable.unwrap_or(members / 2), seconds)
        }
        None => {
            let catalogue = plugins.catalogue();
            let protocols = bench_protocols(&catalogue, args.protocols)?;
            let mut sweep = Sweep::quick(protocols, args.shared.cost_mode()?);
            sweep.seed = args.shared.seed;
            if !args.quick {
                sweep.sizes = vec![4, 8, 16, 32, 64];
            }
            let max_size = if args.scale {
                if !matches!(sweep.cost, CostMode::Counted(_)) {
                    bail!("--scale charges counted costs: use it with --cost counted");
                }
                sweep.dh_group = GroupId::TestOnly64;
                MAX_SCALE_SIZE
            } else {
                MAX_FULL_SIZE
            };
            if !args.sizes.is_empty() {
                if let Some(n) = args.sizes.iter().find(|n| !(2..=max_size).contains(*n)) {
                    let hint = if args.scale { "" } else { " (--scale runs up to 8192)" };
                    bail!("group size {n} is outside 2 to {max_size}{hint}");
                }
                sweep.sizes = args.sizes;
            }
            if !(1..=20).contains(&args.seeds) {
                bail!("--seeds must be 1 to 20, not {}", args.seeds);
            }
            sweep.seeds = args.seeds;
            if !args.events.is_empty() {
                sweep.events = parse_events(&args.events)?;
            }
            if !args.networks.is_empty() {
                sweep.networks =
                    args.networks.iter().map(|n| topology(n)).collect::<Result<_>>()?;
            }
            run_sweep(&catalogue, &sweep, &args.shared.out)
        }
    }
}

/// `gka bench adaptive`: a trace replayed with each fixed protocol and with the policy.
fn adaptive(
    plugins: &Plugins,
    shared: &SharedArgs,
    trace_file: &Path,
    policy: &Path,
    protocols: Vec<String>,
    json: bool,
) -> Result<()> {
    let catalogue = plugins.catalogue();
    let protocols = bench_protocols(&catalogue, protocols)?;
    let policy = plugins.read_policy(policy)?;
    let text = std::fs::read_to_string(trace_file)
        .with_context(|| format!("cannot read the trace {} (--trace)", trace_file.display()))?;
    let parsed = trace::Trace::parse(&text)
        .with_context(|| format!("invalid trace {}", trace_file.display()))?;
    let config = trace::ReplayConfig {
        cost: shared.cost_mode()?,
        seed: shared.seed,
        dh_group: GroupId::Ffdhe2048,
        dir: trace_file.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(protocols.len() as u64 + 1)
    };
    let evaluation = trace::evaluate(&catalogue, &parsed, &protocols, &policy, &config, |done| {
        bar.set_message(done.to_owned());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    if json {
        println!("{}", evaluation.json(&parsed, shared.seed));
        return Ok(());
    }
    let md = trace::markdown(&parsed, &evaluation);
    let out = &shared.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join(format!("adaptive-{}.md", parsed.name)), &md)?;
    let plot = out.join("plots").join(format!("adaptive-{}.svg", parsed.name));
    std::fs::create_dir_all(out.join("plots"))?;
    evaluation::plot(&parsed, &evaluation, &plot)
        .with_context(|| format!("cannot write {}", plot.display()))?;
    println!("{md}");
    let (best, best_ms) = evaluation.best_fixed();
    println!(
        "adaptive: membership events waited {:.1} ms in all ({:+.1}% against the oracle's {:.1} \
         ms, {:+.1}% against the phase oracle's {:.1} ms, {:+.1}% against the best fixed \
         protocol, {best}, {best_ms:.1} ms); {} switches in the background ({:.1} ms of CPU, {} \
         bytes)",
        evaluation.adaptive().events_ms(),
        (evaluation.adaptive().events_ms() / evaluation.oracle_ms.max(1e-9) - 1.0) * 100.0,
        evaluation.oracle_ms,
        (evaluation.adaptive().events_ms() / evaluation.phase_oracle_ms.max(1e-9) - 1.0) * 100.0,
        evaluation.phase_oracle_ms,
        (evaluation.adaptive().events_ms() / best_ms.max(1e-9) - 1.0) * 100.0,
        evaluation.adaptive().switches.len(),
        evaluation.adaptive().overhead.cpu_ms,
        evaluation.adaptive().overhead.bytes,
    );
    Ok(())
}

/// `gka bench validate`: the simulator against the daemon on loopback, side by side.
fn validate(plugins: &Plugins, shared: &SharedArgs, sizes: &[usize]) -> Result<()> {
    if sizes.iter().any(|n| !(2..=16).contains(n)) {
        bail!("validate runs 2 to 16 members");
    }
    let calibrated = measure::calibrate(GroupId::Ffdhe2048, Scheme::Ed25519, 20);
    let measured = CostMode::Measured(OpCosts {
        exp_ms: calibrated.exp_ms,
        sign_ms: calibrated.sign_ms,
        verify_ms: calibrated.verify_ms,
    });
    let catalogue = plugins.catalogue();
    bench_protocols(&catalogue, Vec::new())?;
    let rt = runtime()?;
    let mut out = io::stdout().lock();
    writeln!(out, "| protocol | event | n | simulated (ms) | daemon (ms) | ratio |")?;
    writeln!(out, "|---|---|---:|---:|---:|---:|")?;
    let mut ratios = Vec::new();
    for plugin in plugins.registry.plugins() {
        let name = plugin.descriptor.name.clone();
        let daemon = rt.block_on(gka_cli::demo::bench(
            plugin.protocol.clone(),
            sizes,
            &gka_cli::demo::Layer::Daemon,
        ))?;
        let mut sweep = Sweep::quick(vec![name.clone()], measured);
        sweep.sizes = sizes.to_vec();
        sweep.seed = shared.seed;
        sweep.networks = vec![Topology::loopback()];
        // Over the daemon every member runs on this machine's cores.
        sweep.shared_cores = Some(std::thread::available_parallelism().map_or(2, |n| n.get()));
        sweep.events = vec![BenchEvent::Initial, BenchEvent::Join, BenchEvent::Leave];
        let simulated = sweep::run(&catalogue, &sweep, |_| {})?;
        for r in &simulated {
            let Some(d) = daemon.iter().find(|d| d.n == r.n && d.event == r.event.name()) else {
                continue;
            };
            let ratio = r.measured_ms / d.rekey_ms.max(1e-9);
            ratios.push(ratio);
            writeln!(
                out,
                "| {name} | {} | {} | {:.1} | {:.1} | {ratio:.2} |",
                r.event.name(),
                r.n,
                r.measured_ms,
                d.rekey_ms
            )?;
        }
    }
    ratios.sort_by(f64::total_cmp);
    if let (Some(lo), Some(hi)) = (ratios.first(), ratios.last()) {
        writeln!(
            out,
            "\nsimulated ÷ daemon: median {:.2}, range {lo:.2} to {hi:.2}",
            ratios[ratios.len() / 2]
        )?;
    }
    Ok(())
}

/// The protocols a benchmark runs: those asked for, or every loaded plugin.
fn bench_protocols(catalogue: &Catalogue, protocols: Vec<String>) -> Result<Vec<String>> {
    let protocols = if protocols.is_empty() { catalogue.names() } else { protocols };
    if protocols.is_empty() {
        bail!("no plugin loaded: pass --plugins DIR");
    }
    Ok(protocols)
}

/// The cost mode from the command line; `counted` without costs calibrates them here.
fn bench_cost(
    name: &str,
    exp_ms: Option<f64>,
    sign_ms: Option<f64>,
    verify_ms: Option<f64>,
) -> Result<CostMode> {
    let costs = match (exp_ms, sign_ms, verify_ms) {
        (Some(exp_ms), Some(sign_ms), Some(verify_ms)) => OpCosts { exp_ms, sign_ms, verify_ms },
        (None, None, None) => {
            let c = measure::calibrate(GroupId::Ffdhe2048, Scheme::Ed25519, 20);
            eprintln!(
                "calibrated here: --exp-ms {:.4} --sign-ms {:.4} --verify-ms {:.4} (secret \
                 exponentiations on {})",
                c.exp_ms,
                c.sign_ms,
                c.verify_ms,
                GroupId::Ffdhe2048.params().arithmetic()
            );
            OpCosts { exp_ms: c.exp_ms, sign_ms: c.sign_ms, verify_ms: c.verify_ms }
        }
        _ => bail!("give all of --exp-ms, --sign-ms and --verify-ms, or none"),
    };
    for (what, v) in [("exp", costs.exp_ms), ("sign", costs.sign_ms), ("verify", costs.verify_ms)] {
        if !(v.is_finite() && (0.0..=1000.0).contains(&v)) {
            bail!("--{what}-ms must be a number from 0 to 1000, not {v}");
        }
    }
    match name {
        "measured" => Ok(CostMode::Measured(costs)),
        "counted" => Ok(CostMode::Counted(costs)),
        other => bail!("unknown cost mode {other:?} (counted or measured)"),
    }
}

/// Event names as given to `--events`.
fn parse_events(names: &[String]) -> Result<Vec<BenchEvent>> {
    names
        .iter()
        .map(|e| {
            BenchEvent::from_name(e).with_context(|| {
                let names: Vec<&str> = BenchEvent::ALL.iter().map(|e| e.name()).collect();
                format!("unknown event {e:?} ({})", names.join(", "))
            })
        })
        .collect()
}

/// A network preset (`lan`, `wan`, `loopback`) or a topology file.
fn topology(name: &str) -> Result<Topology> {
    Ok(Topology::load(name, Path::new(""))?)
}

/// Runs the sweep with a progress bar and writes its outputs.
fn run_sweep(catalogue: &Catalogue, sweep: &Sweep, out: &Path) -> Result<()> {
    let bar = indicatif::ProgressBar::new(sweep.runs() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    let started = std::time::Instant::now();
    let rows = sweep::run(catalogue, sweep, |done| {
        bar.set_message(done.to_owned());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let csv = sweep::csv(&rows, &sweep.cost, sweep.seed);
    std::fs::write(out.join("results.csv"), csv)?;
    let md = sweep::markdown(&rows);
    std::fs::write(out.join("results.md"), &md)?;
    let plots = sweep::plots(&rows, &out.join("plots"))?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{md}")?;
    writeln!(
        stdout,
        "{} runs, {} events in {:.1} s: {}/results.csv, {}/results.md, {} plots in {}/plots",
        sweep.runs(),
        rows.len(),
        started.elapsed().as_secs_f64(),
        out.display(),
        out.display(),
        plots.len(),
        out.display()
    )?;
    Ok(())
}

/// `gka bench chaos`: runs the soak, prints its report (and writes it to `--out`), and fails
/// unless every count that must be zero is.
fn chaos(shared: &SharedArgs, members: usize, stable: usize, seconds: u64) -> Result<()> {
    // The daemon's 4 s stop starts at a third of the run and must end inside it.
    if !(12..=3600).contains(&seconds) {
        bail!("--seconds must be 12 to 3600, not {seconds}");
    }
    let config = gka_cli::chaos::ChaosConfig {
        members,
        stable,
        duration: std::time::Duration::from_secs(seconds),
        seed: shared.seed,
        gka: std::env::current_exe().context("cannot find this program to run its members")?,
        plugins: shared.plugins.dirs.clone(),
    };
    println!("chaos soak: {members} members ({stable} never killed), {seconds} s");
    let report = gka_cli::chaos::run(&config, |event| println!("  {event}"))?;
    let text = report.markdown();
    println!("\n{text}");
    std::fs::create_dir_all(&shared.out)
        .with_context(|| format!("cannot create {} (--out)", shared.out.display()))?;
    let path = shared.out.join("chaos.md");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    if !report.findings.clean() {
        bail!("the soak found problems (see {})", path.display());
    }
    Ok(())
}
