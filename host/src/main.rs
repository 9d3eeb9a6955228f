//! `gka`: the command-line entry point.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use gka_host::daemon::{Daemon, DaemonConfig};
use gka_host::demo::DemoOptions;
use gka_host::identity::{Identity, Scheme, TrustStore};
use gka_host::loader::{host_abi_version, plugin_dirs, PluginInfo, Registry};
use gka_host::member::{ControlTiming, MemberEvent};
use gka_host::policy::{Decision, Policy};
use gka_host::runtime::{
    spawn_member, Command as MemberCommand, MemberConfig, RuntimeEvent, Switching,
};
use gka_host::sequencer::Timing;
use gka_host::switch::{Catalogue, SwitchEvent};
use gka_plugin_api::EventKind;

/// Secure group communication with pluggable, switchable group key agreement.
#[derive(Debug, Parser)]
#[command(name = "gka", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check or explain a policy file.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
        /// Plugin directory (default: $GKA_PLUGIN_PATH, else this executable's directory).
        #[arg(long, global = true, value_name = "DIR")]
        plugins: Option<PathBuf>,
    },
    /// Run the group communication daemon.
    Daemon {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4803")]
        listen: String,
        /// Joins and leaves within this window form one view.
        #[arg(long, default_value_t = 50)]
        batch_ms: u64,
        /// A member silent for this long is removed.
        #[arg(long, default_value_t = 3000)]
        failure_timeout_ms: u64,
        /// Serve Prometheus metrics on this address (`/metrics`).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Join a group: lines read from stdin are sent encrypted; views, key changes
    /// (fingerprints only) and received lines are printed.
    Member {
        /// The daemon's address.
        #[arg(long)]
        daemon: String,
        /// The group.
        #[arg(long)]
        group: String,
        /// This member's id (must match the key file's name).
        #[arg(long)]
        id: String,
        /// The private key file (from `gka keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Directory of trusted members' public keys (the access-control list).
        #[arg(long, value_name = "DIR")]
        trust: PathBuf,
        /// Key-agreement protocol.
        #[arg(long, default_value = "tgdh")]
        protocol: String,
        /// Plugin directory (default: $GKA_PLUGIN_PATH, else this executable's directory).
        #[arg(long, value_name = "DIR")]
        plugins: Option<PathBuf>,
        /// Serve Prometheus metrics on this address (`/metrics`).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// The policy to vote by and, as the oldest member, to propose switches by; the file
        /// is watched, and an edit applies at the next quiescent point. Without it the member
        /// never proposes, and accepts any switch to a plugin it has.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// The main job: an embedded daemon, members over real TCP, and a scenario of joins, a
    /// leave, a merge, a partition and its heal and a cascade, with encrypted traffic; then the
    /// adaptive demo: a group under the shipped policy moved through a small LAN group, a large
    /// group, a WAN and loaded CPUs, switching protocols as the policy says.
    Demo {
        /// Members at the start.
        #[arg(long, default_value_t = 5)]
        members: usize,
        /// Key-agreement protocol.
        #[arg(long, default_value = "tgdh")]
        protocol: String,
        /// Seconds of steady encrypted traffic at the end.
        #[arg(long, default_value_t = 1)]
        seconds: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Plugin directory (default: $GKA_PLUGIN_PATH, else this executable's directory).
        #[arg(long, value_name = "DIR")]
        plugins: Option<PathBuf>,
        /// Instead of the scenario, measure rekey latency over the daemon for every loaded
        /// protocol and each event at n = 4, 8, 16, then the time from a switch's commit to
        /// the new key against a plain initial agreement with the new protocol (Markdown
        /// tables).
        #[arg(long)]
        bench: bool,
        /// Serve Prometheus metrics on this address (`/metrics`) while the demo runs.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Skip the adaptive demo.
        #[arg(long)]
        no_adapt: bool,
        /// Skip the event scenario: only the adaptive demo.
        #[arg(long)]
        adapt_only: bool,
    },
    /// Make a member's identity key pair: DIR/ID.key (PKCS#8 PEM, mode 0600) and DIR/ID.pub
    /// (SPKI PEM, for the other members' trust stores).
    Keygen {
        /// The member id (letters, digits, '-', '_', '.').
        #[arg(long)]
        id: String,
        /// Directory to write the two files to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Signature scheme: ed25519 (default) or rsa (RSA-2048 PSS SHA-256).
        #[arg(long, default_value = "ed25519")]
        scheme: String,
    },
    /// Simulate the protocols: a sweep of protocols × events × group sizes × networks in the
    /// discrete-event simulator (real plugins, virtual time), written as CSV, a Markdown
    /// table and SVG plots, each latency beside the cost model's prediction.
    Bench {
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
        /// Group sizes (default: 4,8,16,32,64).
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<usize>,
        /// Networks: lan, wan, loopback, or a topology TOML file (default: lan,wan).
        #[arg(long, value_delimiter = ',')]
        networks: Vec<String>,
        /// Flags every benchmark shares.
        #[command(flatten)]
        shared: BenchArgs,
    },
    /// Inspect the key-agreement plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
        /// Plugin directory (default: $GKA_PLUGIN_PATH, else the directory of this executable).
        #[arg(long, global = true, value_name = "DIR")]
        plugins: Option<PathBuf>,
    },
}

/// Flags shared by `gka bench` and its replays.
#[derive(Debug, clap::Args)]
struct BenchArgs {
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
    /// Plugin directory (default: $GKA_PLUGIN_PATH, else this executable's directory).
    #[arg(long, value_name = "DIR", global = true)]
    plugins: Option<PathBuf>,
}

impl BenchArgs {
    /// How plugin calls are timed, from `--cost` and the costs (see [`bench_cost`]).
    fn cost_mode(&self) -> Result<gka_host::sim::CostMode> {
        bench_cost(&self.cost, self.exp_ms, self.sign_ms, self.verify_ms)
    }
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Replay a trace of membership events and changing conditions with each fixed protocol
    /// and with the adaptive policy, and compare them with an oracle that picks the best
    /// protocol for each event.
    Adaptive {
        /// The trace (TOML; see host/src/sim/trace.rs, and traces/ for examples).
        #[arg(long, value_name = "FILE")]
        trace: PathBuf,
        /// The policy the adaptive run follows.
        #[arg(long, default_value = "policy.toml", value_name = "FILE")]
        policy: PathBuf,
        /// The fixed protocols to compare with (default: every loaded plugin).
        #[arg(long, value_delimiter = ',')]
        protocols: Vec<String>,
    },
    /// Check the simulator against the real daemon on loopback: initial agreement, join and
    /// leave at n = 4, 8, 16 for every protocol, simulated (loopback profile, measured CPU
    /// time) and over the daemon, with their ratio.
    Validate {
        /// Group sizes (at most 16: every member shares this machine's cores over the daemon).
        #[arg(long, value_delimiter = ',', default_values_t = [4, 8, 16])]
        sizes: Vec<usize>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Report every error in a policy file with its line and column; exits non-zero on any.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Print each candidate's predicted cost per event for the given inputs, and the decision
    /// with its reason.
    Explain {
        /// The policy file.
        #[arg(long, default_value = "policy.toml")]
        policy: PathBuf,
        /// The protocol running now.
        #[arg(long, default_value = "tgdh")]
        current: String,
        /// Seconds since the last switch.
        #[arg(long, default_value_t = 3600.0)]
        since_switch_s: f64,
        /// Seconds since the last aborted switch.
        #[arg(long)]
        since_abort_s: Option<f64>,
        /// Inputs as NAME=VALUE (group_size, rtt_median_ms, cpu_worst, ...), repeatable.
        #[arg(long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
        /// Members in the view.
        #[arg(long)]
        group_size: Option<u64>,
        /// Median round-trip time, ms.
        #[arg(long)]
        rtt_ms: Option<f64>,
        /// The group's worst CPU load, 0 to 1.
        #[arg(long)]
        cpu: Option<f64>,
        /// Measure this machine first (exponentiation, signature and verification times, CPU
        /// load); explicit inputs still override.
        #[arg(long)]
        measure: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List the plugins that load, and the libraries that do not.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one plugin's descriptor and its cost model for n = 2..=MAX_N.
    Inspect {
        /// The protocol's name (see `gka plugins list`).
        name: String,
        /// Largest group size in the cost table.
        #[arg(long, default_value_t = 128)]
        max_n: u64,
        /// Print every n from 2 to MAX_N (default: powers of two and their midpoints).
        #[arg(long)]
        all: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gka: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Output cut short by the reader (`gka ... | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn install_metrics(addr: Option<std::net::SocketAddr>) -> Result<()> {
    if let Some(addr) = addr {
        gka_host::metrics::install(addr)
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        eprintln!("metrics on http://{addr}/metrics");
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")
}

fn load_protocol(
    plugins: Option<&std::path::Path>,
    name: &str,
) -> Result<std::sync::Arc<dyn gka_plugin_api::Protocol>> {
    let dirs = plugin_dirs(plugins);
    let registry = Registry::scan(&dirs);
    let plugin = registry.get(name).with_context(|| {
        let known: Vec<&str> = registry.plugins().map(|p| p.descriptor.name.as_str()).collect();
        format!("no plugin named {name:?} in {dirs:?} (loaded: {})", known.join(", "))
    })?;
    Ok(plugin.protocol.clone())
}

/// The protocol names a policy may mention: the loaded plugins, or the five built-in names
/// when none loaded.
fn known_protocols(registry: &Registry) -> Vec<&str> {
    let known: Vec<&str> = registry.plugins().map(|p| p.descriptor.name.as_str()).collect();
    if known.is_empty() {
        gka_host::policy::KNOWN_PROTOCOLS.to_vec()
    } else {
        known
    }
}

/// Reads and checks a policy file; every error is named with its line and column.
fn read_policy(path: &std::path::Path, registry: &Registry) -> Result<Policy> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Policy::parse(&text, &known_protocols(registry)).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{}:{e}", path.display())).collect();
        anyhow::anyhow!("{} error(s) in {}:\n{}", errors.len(), path.display(), lines.join("\n"))
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Policy { command: PolicyCommand::Check { file }, plugins } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let registry = Registry::scan(&plugin_dirs(plugins.as_deref()));
            match Policy::parse(&text, &known_protocols(&registry)) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    Ok(())
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{}:{e}", file.display());
                    }
                    bail!("{} error(s) in {}", errors.len(), file.display())
                }
            }
        }
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    policy,
                    current,
                    since_switch_s,
                    since_abort_s,
                    inputs,
                    group_size,
                    rtt_ms,
                    cpu,
                    measure,
                },
            plugins,
        } => {
            let registry = Registry::scan(&plugin_dirs(plugins.as_deref()));
            if registry.plugins().next().is_none() {
                bail!("no plugin loaded: pass --plugins DIR");
            }
            let parsed = read_policy(&policy, &registry)?;
            let mut values = gka_host::policy::Inputs::default();
            if measure {
                let c = gka_host::measure::calibrate(
                    gka_plugin_api::GroupId::Ffdhe2048,
                    Scheme::Ed25519,
                    20,
                );
                values.exp_ms = c.exp_ms;
                values.sign_ms = c.sign_ms;
                values.verify_ms = c.verify_ms;
                if let Some(load) =
                    gka_host::measure::cpu_load(std::time::Duration::from_millis(200))
                {
                    values.cpu_local = load;
                    values.cpu_worst = load;
                }
            }
            for kv in &inputs {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--input {kv:?}: expected NAME=VALUE"))?;
                let v: f64 = v.parse().with_context(|| format!("--input {kv:?}: not a number"))?;
                if !values.set(k, v) {
                    bail!("--input {kv:?}: unknown input {k:?}");
                }
            }
            if let Some(n) = group_size {
                values.group_size = n;
            }
            if let Some(r) = rtt_ms {
                values.rtt_median_ms = r;
                values.rtt_worst_ms = values.rtt_worst_ms.max(r);
            }
            if let Some(c) = cpu {
                values.cpu_local = c;
                values.cpu_worst = values.cpu_worst.max(c);
            }
            let protocols: std::collections::BTreeMap<String, &dyn gka_plugin_api::Protocol> =
                registry
                    .plugins()
                    .map(|p| {
                        (p.descriptor.name.clone(), &*p.protocol as &dyn gka_plugin_api::Protocol)
                    })
                    .collect();
            let candidates = parsed.candidates(&known_protocols(&registry), values.group_size);
            let mut out = io::stdout().lock();
            writeln!(out, "inputs: {values:?}")?;
            writeln!(
                out,
                "{:<6} {:>9} {:>9} {:>9} {:>11} {:>12}  allowed",
                "", "join ms", "leave ms", "merge ms", "partition ms", "expected ms"
            )?;
            for p in gka_host::policy::predict(&protocols, &values, &parsed.weights) {
                let cells: Vec<String> =
                    p.per_event.iter().map(|(_, ms)| format!("{ms:.2}")).collect();
                writeln!(
                    out,
                    "{:<6} {:>9} {:>9} {:>9} {:>11} {:>12.2}  {}",
                    p.protocol,
                    cells[0],
                    cells[1],
                    cells[2],
                    cells[3],
                    p.expected_ms,
                    if candidates.contains(&p.protocol.as_str()) { "yes" } else { "no" }
                )?;
            }
            let state = gka_host::policy::State { current, since_switch_s, since_abort_s };
            match parsed.decide(&protocols, &values, &state) {
                Decision::Stay { reason, .. } => {
                    writeln!(out, "decision: stay on {} ({reason})", state.current)?
                }
                Decision::Switch { to, reason, gain, .. } => writeln!(
                    out,
                    "decision: switch {} -> {to} ({reason}; predicted gain {:.0}%)",
                    state.current,
                    gain * 100.0
                )?,
            }
            Ok(())
        }
        Command::Daemon { listen, batch_ms, failure_timeout_ms, metrics } => {
            runtime()?.block_on(async {
                install_metrics(metrics)?;
                let config = DaemonConfig {
                    timing: Timing { batch_ms, failure_timeout_ms },
                    ..DaemonConfig::default()
                };
                let daemon = Daemon::start(&listen, config)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                println!("gka daemon listening on {}", daemon.addr);
                std::future::pending::<()>().await;
                Ok(())
            })
        }
        Command::Member { daemon, group, id, key, trust, protocol, plugins, metrics, policy } => {
            let identity =
                Identity::load(&key).with_context(|| format!("cannot load {}", key.display()))?;
            if identity.id() != id {
                bail!("the key file {} is for {:?}, not {id:?}", key.display(), identity.id());
            }
            let trust = TrustStore::load(&trust)
                .with_context(|| format!("cannot load the trust store {}", trust.display()))?;
            let protocol = load_protocol(plugins.as_deref(), &protocol)?;
            let registry = Registry::scan(&plugin_dirs(plugins.as_deref()));
            let parsed = match &policy {
                Some(path) => Some(read_policy(path, &registry)?),
                None => None,
            };
            let switching = Switching {
                catalogue: std::sync::Arc::new(Catalogue::from_registry(&registry)),
                policy: parsed,
                policy_file: policy,
                timing: ControlTiming::default(),
                calibration: None,
            };
            runtime()?.block_on(async {
                install_metrics(metrics)?;
                member(daemon, group, identity, trust, protocol, switching).await
            })
        }
        Command::Demo { bench: true, plugins, .. } => {
            let registry = Registry::scan(&plugin_dirs(plugins.as_deref()));
            let rt = runtime()?;
            let mut out = io::stdout().lock();
            writeln!(out, "| protocol | event | n = 4 (ms) | n = 8 (ms) | n = 16 (ms) |")?;
            writeln!(out, "|---|---|---:|---:|---:|")?;
            for plugin in registry.plugins() {
                let rows =
                    rt.block_on(gka_host::demo::bench(plugin.protocol.clone(), &[4, 8, 16]))?;
                for event in ["initial", "join", "leave", "merge-2", "partition-half"] {
                    let cells: Vec<String> = rows
                        .iter()
                        .filter(|r| r.event == event)
                        .map(|r| format!("{:.1}", r.rekey_ms))
                        .collect();
                    writeln!(
                        out,
                        "| {} | {event} | {} |",
                        plugin.descriptor.name,
                        cells.join(" | ")
                    )?;
                }
            }
            let catalogue = std::sync::Arc::new(Catalogue::from_registry(&registry));
            let rows = rt.block_on(gka_host::demo::switch_bench(catalogue, &[4, 8, 16]))?;
            writeln!(out, "\n| switch | n | commit to key (ms) | plain initial agreement (ms) | ratio | join after (ms) |")?;
            writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
            for r in rows {
                writeln!(
                    out,
                    "| {} -> {} | {} | {:.1} | {:.1} | {:.2} | {:.1} |",
                    r.from,
                    r.protocol,
                    r.n,
                    r.switch_ms,
                    r.initial_ms,
                    r.switch_ms / r.initial_ms.max(1e-9),
                    r.join_ms
                )?;
            }
            Ok(())
        }
        Command::Demo {
            members,
            protocol,
            seconds,
            json,
            plugins,
            bench: false,
            metrics,
            no_adapt,
            adapt_only,
        } => {
            let protocol = load_protocol(plugins.as_deref(), &protocol)?;
            let registry = Registry::scan(&plugin_dirs(plugins.as_deref()));
            let catalogue = std::sync::Arc::new(Catalogue::from_registry(&registry));
            let rt = runtime()?;
            rt.block_on(async { install_metrics(metrics) })?;
            if !adapt_only {
                let options = DemoOptions { members, seconds };
                let lines = rt.block_on(gka_host::demo::run(protocol.clone(), &options))?;
                print_demo(&lines, json)?;
            }
            if !no_adapt {
                let options = gka_host::demo::AdaptOptions::default();
                let lines = rt.block_on(gka_host::demo::adapt(catalogue, protocol, &options))?;
                print_adapt(&lines, json)?;
            }
            Ok(())
        }
        Command::Bench {
            replay: Some(BenchCommand::Adaptive { trace, policy, protocols }),
            shared,
            ..
        } => {
            let (registry, catalogue, protocols) =
                bench_plugins(shared.plugins.as_deref(), protocols)?;
            let catalogue = std::sync::Arc::new(catalogue);
            let policy = read_policy(&policy, &registry)?;
            let text = std::fs::read_to_string(&trace)
                .with_context(|| format!("cannot read {}", trace.display()))?;
            let parsed = gka_host::sim::trace::Trace::parse(&text)
                .with_context(|| format!("invalid trace {}", trace.display()))?;
            let config = gka_host::sim::trace::ReplayConfig {
                cost: shared.cost_mode()?,
                seed: shared.seed,
                dh_group: gka_plugin_api::GroupId::Ffdhe2048,
                dir: trace.parent().map(std::path::Path::to_path_buf).unwrap_or_default(),
            };
            let bar = indicatif::ProgressBar::new(protocols.len() as u64 + 1);
            let evaluation = gka_host::sim::trace::evaluate(
                &catalogue,
                &parsed,
                &protocols,
                &policy,
                &config,
                |done| {
                    bar.set_message(done.to_owned());
                    bar.inc(1);
                },
            )?;
            bar.finish_and_clear();
            let md = gka_host::sim::trace::markdown(&parsed, &evaluation);
            let out = &shared.out;
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            std::fs::write(out.join(format!("adaptive-{}.md", parsed.name)), &md)?;
            println!("{md}");
            println!(
                "adaptive: {:.1} ms in total, {} switches, regret {:+.1} ms against the oracle",
                evaluation.adaptive().total_ms(),
                evaluation.adaptive().switches.len(),
                evaluation.regret_ms()
            );
            Ok(())
        }
        Command::Bench { replay: Some(BenchCommand::Validate { sizes }), shared, .. } => {
            if sizes.iter().any(|n| !(2..=16).contains(n)) {
                bail!("validate runs 2 to 16 members");
            }
            let calibrated = gka_host::measure::calibrate(
                gka_plugin_api::GroupId::Ffdhe2048,
                Scheme::Ed25519,
                20,
            );
            let measured = gka_host::sim::CostMode::Measured(gka_host::sim::OpCosts {
                exp_ms: calibrated.exp_ms,
                sign_ms: calibrated.sign_ms,
                verify_ms: calibrated.verify_ms,
            });
            let (registry, catalogue, _) = bench_plugins(shared.plugins.as_deref(), Vec::new())?;
            let rt = runtime()?;
            let mut out = io::stdout().lock();
            writeln!(out, "| protocol | event | n | simulated (ms) | daemon (ms) | ratio |")?;
            writeln!(out, "|---|---|---:|---:|---:|---:|")?;
            let mut ratios = Vec::new();
            for plugin in registry.plugins() {
                let name = plugin.descriptor.name.clone();
                let daemon = rt.block_on(gka_host::demo::bench(plugin.protocol.clone(), &sizes))?;
                let mut sweep = gka_host::sim::sweep::Sweep::quick(vec![name.clone()], measured);
                sweep.sizes = sizes.clone();
                sweep.seed = shared.seed;
                sweep.networks = vec![gka_host::sim::Topology::loopback()];
                // Over the daemon every member runs on this machine's cores.
                sweep.shared_cores =
                    Some(std::thread::available_parallelism().map_or(2, |n| n.get()));
                sweep.events = vec![
                    gka_host::sim::sweep::BenchEvent::Initial,
                    gka_host::sim::sweep::BenchEvent::Join,
                    gka_host::sim::sweep::BenchEvent::Leave,
                ];
                let simulated = gka_host::sim::sweep::run(&catalogue, &sweep, |_| {})?;
                for r in &simulated {
                    let Some(d) = daemon.iter().find(|d| d.n == r.n && d.event == r.event.name())
                    else {
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
        Command::Bench { replay: None, quick, protocols, events, sizes, networks, shared } => {
            let (_, catalogue, protocols) = bench_plugins(shared.plugins.as_deref(), protocols)?;
            let mut sweep = gka_host::sim::sweep::Sweep::quick(protocols, shared.cost_mode()?);
            sweep.seed = shared.seed;
            if !quick {
                sweep.sizes = vec![4, 8, 16, 32, 64];
            }
            if !sizes.is_empty() {
                if let Some(n) = sizes.iter().find(|n| !(2..=1024).contains(*n)) {
                    bail!("group size {n} is outside 2 to 1024");
                }
                sweep.sizes = sizes;
            }
            if !events.is_empty() {
                sweep.events = events
                    .iter()
                    .map(|e| {
                        gka_host::sim::sweep::BenchEvent::from_name(e).with_context(|| {
                            format!("unknown event {e:?} (initial, join, leave, partition, merge)")
                        })
                    })
                    .collect::<Result<_>>()?;
            }
            if !networks.is_empty() {
                sweep.networks = networks.iter().map(|n| topology(n)).collect::<Result<_>>()?;
            }
            run_bench(&catalogue, &sweep, &shared.out)
        }
        Command::Keygen { id, out, scheme } => {
            let scheme = Scheme::from_name(&scheme)
                .with_context(|| format!("unknown scheme {scheme:?} (use ed25519 or rsa)"))?;
            let identity = Identity::generate(&id, scheme)
                .with_context(|| format!("cannot make a key for {id:?}"))?;
            let (private, public) = identity
                .write(&out)
                .with_context(|| format!("cannot write keys to {}", out.display()))?;
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{scheme} key for {id}")?;
            writeln!(stdout, "private: {} (keep secret)", private.display())?;
            writeln!(
                stdout,
                "public:  {} (copy into the members' trust stores)",
                public.display()
            )?;
            Ok(())
        }
        Command::Plugins { command, plugins } => {
            let dirs = plugin_dirs(plugins.as_deref());
            let registry = Registry::scan(&dirs);
            match command {
                PluginsCommand::List { json } => list(&registry, &dirs, json),
                PluginsCommand::Inspect { name, max_n, all } => {
                    inspect(&registry, &name, max_n, all)
                }
            }
        }
    }
}

fn list(registry: &Registry, dirs: &[PathBuf], json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    let infos: Vec<PluginInfo> = registry.plugins().map(PluginInfo::from).collect();
    if json {
        let doc = serde_json::json!({
            "host_abi_version": host_abi_version(),
            "plugin_dirs": dirs,
            "plugins": infos,
            "failures": registry.failures(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    writeln!(out, "plugin directories: {}", shown.join(", "))?;
    writeln!(out, "{:<8} {:<9} {:>3}  {:<16} PATH", "NAME", "VERSION", "ABI", "SHA-256")?;
    for p in &infos {
        writeln!(
            out,
            "{:<8} {:<9} {:>3}  {:<16} {}",
            p.name,
            p.version,
            p.abi_version,
            &p.sha256[..16],
            p.path.display()
        )?;
    }
    for f in registry.failures() {
        writeln!(out, "not loaded: {}: {}", f.path.display(), f.reason)?;
    }
    if infos.is_empty() {
        bail!("no plugin loaded (build them with `cargo build --release --workspace`, or pass --plugins DIR)");
    }
    Ok(())
}

fn inspect(registry: &Registry, name: &str, max_n: u64, all: bool) -> Result<()> {
    let plugin = registry.get(name).with_context(|| {
        let known: Vec<&str> = registry.plugins().map(|p| p.descriptor.name.as_str()).collect();
        format!("no plugin named {name:?} (loaded: {})", known.join(", "))
    })?;
    if max_n < 2 {
        bail!("--max-n must be at least 2");
    }
    let mut out = io::stdout().lock();
    let d = &plugin.descriptor;
    writeln!(out, "name:        {}", d.name)?;
    writeln!(out, "version:     {}", d.version)?;
    writeln!(out, "abi version: {}", plugin.protocol.abi_version())?;
    writeln!(out, "summary:     {}", d.summary)?;
    writeln!(
        out,
        "events:      {}",
        d.events.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ")
    )?;
    writeln!(out, "library:     {}", plugin.path.display())?;
    writeln!(out, "sha256:      {}", plugin.sha256)?;
    writeln!(out)?;
    writeln!(out, "Cost model (n = group size before the event; merge adds k = 3, partition removes k = n/4):")?;
    writeln!(
        out,
        "{:<10} {:>5} {:>6} {:>6} {:>6} {:>10} {:>10} {:>5} {:>6} {:>9}",
        "event",
        "n",
        "rounds",
        "ucast",
        "bcast",
        "serial-exp",
        "total-exp",
        "sigs",
        "verifs",
        "bytes"
    )?;
    let sizes = if all { (2..=max_n).collect() } else { table_sizes(max_n) };
    for event in EventKind::ALL {
        for &n in &sizes {
            let k = match event {
                EventKind::Merge => 3,
                EventKind::Partition => (n / 4).max(1),
                _ => 0,
            };
            let c = plugin
                .protocol
                .try_cost(event, n, k)
                .with_context(|| format!("cost model of {name} failed for {event} at n = {n}"))?;
            writeln!(
                out,
                "{:<10} {:>5} {:>6} {:>6} {:>6} {:>10} {:>10} {:>5} {:>6} {:>9}",
                event.name(),
                n,
                c.rounds,
                c.unicasts,
                c.broadcasts,
                c.serial_exponentiations,
                c.total_exponentiations,
                c.signatures,
                c.verifications,
                c.bytes
            )?;
        }
    }
    Ok(())
}

/// 2, 3, 4, 6, 8, 12, 16, ... up to max_n (and max_n itself).
fn table_sizes(max_n: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut p = 2u64;
    while p <= max_n {
        sizes.push(p);
        let mid = p + p / 2;
        if p >= 2 && mid <= max_n && mid != p {
            sizes.push(mid);
        }
        p *= 2;
    }
    if sizes.last() != Some(&max_n) {
        sizes.push(max_n);
    }
    sizes.dedup();
    sizes
}

/// `gka member`: stdin lines out (encrypted), events and received lines in.
async fn member(
    daemon: String,
    group: String,
    identity: Identity,
    trust: TrustStore,
    protocol: std::sync::Arc<dyn gka_plugin_api::Protocol>,
    switching: Switching,
) -> Result<()> {
    use tokio::io::AsyncBufReadExt;
    let id = identity.id().to_owned();
    let mut handle = spawn_member(
        &daemon,
        MemberConfig {
            group,
            identity,
            trust,
            protocol,
            dh_group: gka_plugin_api::GroupId::Ffdhe2048,
            heartbeat: std::time::Duration::from_millis(500),
            switching: Some(switching),
        },
    )
    .await
    .with_context(|| format!("cannot connect to the daemon at {daemon}"))?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line? {
                Some(l) => { let _ = handle.commands.send(MemberCommand::Send(l.into_bytes())); }
                None => stdin_open = false,
            },
            event = handle.events.recv() => match event {
                None => break,
                Some(RuntimeEvent::Stopped(reason)) => {
                    println!("[{id}] stopped: {reason}");
                    break;
                }
                Some(e) => print_event(&id, &e),
            },
        }
    }
    Ok(())
}

fn print_switch(id: &str, s: &SwitchEvent) {
    match s {
        SwitchEvent::Decided { decision: Decision::Stay { .. }, .. } => {}
        SwitchEvent::Decided { decision: Decision::Switch { to, reason, gain, .. }, .. } => {
            println!(
                "[{id}] policy: switch to {to} ({reason}; predicted gain {:.0}%)",
                gain * 100.0
            )
        }
        SwitchEvent::Proposed(p) => {
            println!("[{id}] switch {} proposed: {} -> {} ({})", p.id, p.from, p.to.tag(), p.reason)
        }
        SwitchEvent::Voted { id: sid, verdict } => println!("[{id}] voted on {sid}: {verdict:?}"),
        SwitchEvent::Committed { id: sid, to } => println!("[{id}] switch {sid} to {to} committed"),
        SwitchEvent::Aborted { id: sid, reason, .. } => {
            println!("[{id}] switch {sid} aborted: {reason}")
        }
        SwitchEvent::Completed { from, to, epoch, commit_to_key, .. } => println!(
            "[{id}] switched {from} -> {to}: epoch {epoch}, {:.1} ms from commit to key",
            commit_to_key.as_secs_f64() * 1e3
        ),
        SwitchEvent::Adopted { protocol } => {
            println!("[{id}] runs the group's protocol {protocol}")
        }
        SwitchEvent::PolicyApplied => println!("[{id}] new policy in force"),
    }
}

fn print_event(id: &str, e: &RuntimeEvent) {
    match e {
        RuntimeEvent::Member(MemberEvent::View(v)) => {
            println!(
                "[{id}] view {} members {:?} joined {:?} left {:?}",
                v.view_id, v.members, v.joined, v.left
            )
        }
        RuntimeEvent::Member(MemberEvent::Key { epoch, fingerprint, protocol }) => {
            println!("[{id}] key epoch {epoch} fingerprint {fingerprint} ({protocol})")
        }
        RuntimeEvent::Member(MemberEvent::Switch(s)) => print_switch(id, s),
        RuntimeEvent::PolicyRejected(e) => println!("[{id}] policy edit rejected: {e}"),
        RuntimeEvent::Member(MemberEvent::Data { from, epoch, plaintext }) => {
            println!("[{id}] {from} (epoch {epoch}): {}", String::from_utf8_lossy(plaintext))
        }
        RuntimeEvent::Member(MemberEvent::Rejected(r)) => {
            println!("[{id}] rejected ({}): {r}", r.label())
        }
        RuntimeEvent::Member(MemberEvent::ProtocolError { from, error }) => {
            println!("[{id}] protocol error from {from}: {error}")
        }
        RuntimeEvent::Member(MemberEvent::Undecryptable { from, epoch, reason }) => {
            println!("[{id}] undecryptable from {from} (epoch {epoch}): {reason}")
        }
        RuntimeEvent::RekeyLatency { epoch, latency } => {
            println!("[{id}] rekey to epoch {epoch} took {:.1} ms", latency.as_secs_f64() * 1e3)
        }
        RuntimeEvent::NotSent(reason) => println!("[{id}] not sent: {reason}"),
        RuntimeEvent::Stopped(reason) => println!("[{id}] stopped: {reason}"),
    }
}

/// Prints the event scenario's lines.
fn print_demo(lines: &[gka_host::demo::EventLine], json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&lines)?)?;
    } else {
        writeln!(
            out,
            "{:<40} {:>5} {:>8} {:>7} {:>17} {:>16} {:>9} {:>5}",
            "event", "view", "protocol", "members", "epoch", "key fingerprint", "rekey ms", "msgs"
        )?;
        for l in lines {
            writeln!(
                out,
                "{:<40} {:>5} {:>8} {:>7} {:>17} {:>16} {:>9.1} {:>5}",
                l.event,
                l.view_id,
                l.protocol,
                l.members,
                l.epoch,
                l.fingerprint,
                l.rekey_ms,
                l.messages_decrypted
            )?;
        }
        let mut latencies: Vec<f64> = lines.iter().map(|l| l.rekey_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let median = latencies[latencies.len() / 2];
        let worst = latencies[latencies.len() - 1];
        let keys: std::collections::BTreeSet<&str> =
            lines.iter().map(|l| l.fingerprint.as_str()).collect();
        let decrypted: usize = lines.iter().map(|l| l.messages_decrypted).sum();
        writeln!(out, "\nsummary")?;
        writeln!(out, "  events                      {}", lines.len())?;
        writeln!(
            out,
            "  distinct keys               {} (every member agreed on each)",
            keys.len()
        )?;
        writeln!(out, "  messages decrypted          {decrypted}")?;
        writeln!(out, "  rekey latency median / max  {median:.1} ms / {worst:.1} ms")?;
    }
    Ok(())
}

/// Prints the adaptive demo's phases.
fn print_adapt(lines: &[gka_host::demo::AdaptLine], json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&lines)?)?;
        return Ok(());
    }
    writeln!(out, "\nadaptive demo (the shipped policy.toml, damping shortened for the demo)")?;
    writeln!(
        out,
        "{:<42} {:>7} {:>8} {:>16} {:<34} {:>9} {:>5}",
        "phase", "members", "protocol", "key fingerprint", "switch (reason)", "switch ms", "msgs"
    )?;
    for l in lines {
        let ms = l.switch_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"));
        writeln!(
            out,
            "{:<42} {:>7} {:>8} {:>16} {:<34} {:>9} {:>5}",
            l.phase, l.members, l.protocol, l.fingerprint, l.switch, ms, l.messages_decrypted
        )?;
    }
    Ok(())
}

/// The plugins for a benchmark, and the protocols it runs (all loaded ones by default).
fn bench_plugins(
    plugins: Option<&std::path::Path>,
    protocols: Vec<String>,
) -> Result<(Registry, Catalogue, Vec<String>)> {
    let registry = Registry::scan(&plugin_dirs(plugins));
    let catalogue = Catalogue::from_registry(&registry);
    let protocols = if protocols.is_empty() { catalogue.names() } else { protocols };
    if protocols.is_empty() {
        bail!("no plugin loaded: pass --plugins DIR");
    }
    Ok((registry, catalogue, protocols))
}

/// The cost mode from the command line; `counted` without costs calibrates them here.
fn bench_cost(
    name: &str,
    exp_ms: Option<f64>,
    sign_ms: Option<f64>,
    verify_ms: Option<f64>,
) -> Result<gka_host::sim::CostMode> {
    use gka_host::sim::{CostMode, OpCosts};
    let costs = match (exp_ms, sign_ms, verify_ms) {
        (Some(exp_ms), Some(sign_ms), Some(verify_ms)) => OpCosts { exp_ms, sign_ms, verify_ms },
        (None, None, None) => {
            let c = gka_host::measure::calibrate(
                gka_plugin_api::GroupId::Ffdhe2048,
                Scheme::Ed25519,
                20,
            );
            eprintln!(
                "calibrated here: --exp-ms {:.4} --sign-ms {:.4} --verify-ms {:.4}",
                c.exp_ms, c.sign_ms, c.verify_ms
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

/// A network preset (`lan`, `wan`, `loopback`) or a topology file.
fn topology(name: &str) -> Result<gka_host::sim::Topology> {
    Ok(gka_host::sim::Topology::load(name, std::path::Path::new(""))?)
}

/// Runs the sweep with a progress bar and writes its outputs.
fn run_bench(
    catalogue: &Catalogue,
    sweep: &gka_host::sim::sweep::Sweep,
    out: &std::path::Path,
) -> Result<()> {
    use gka_host::sim::sweep;
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
