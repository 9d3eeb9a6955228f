//! `gka policy`: check a policy file, or explain what it decides for given inputs.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use gka_host::identity::Scheme;
use gka_host::policy::{measure, Decision, Inputs, Policy, State};
use gka_plugin_api::{GroupId, Protocol};

use crate::common::{PluginDirArg, Plugins};

/// `gka policy` and its flags.
#[derive(Debug, clap::Args)]
pub(crate) struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
    #[command(flatten)]
    plugins: PluginDirArg,
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
    Explain(ExplainArgs),
}

#[derive(Debug, clap::Args)]
struct ExplainArgs {
    /// The policy file (default: policy.toml in the working directory).
    #[arg(long)]
    policy: Option<PathBuf>,
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
}

/// Runs `gka policy`.
pub(crate) fn run(args: PolicyArgs) -> Result<()> {
    let plugins = args.plugins.load()?;
    match args.command {
        PolicyCommand::Check { file } => check(&plugins, &file),
        PolicyCommand::Explain(explain_args) => explain(&plugins, explain_args),
    }
}

fn check(plugins: &Plugins, file: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match Policy::parse(&text, &plugins.known_protocols()) {
        Ok(policy) => {
            println!("{}: ok", file.display());
            for plugin in plugins.registry.plugins() {
                let name = &plugin.descriptor.name;
                if !policy.allows(name) {
                    println!(
                        "warning: the loaded plugin {name} is excluded by allow/deny in {} \
                         and will never be chosen: add {name:?} to `allow` to let the policy \
                         choose it",
                        file.display()
                    );
                }
            }
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

/// The inputs from `--measure`, `--input` and the shorthand flags, in that order.
fn inputs(args: &ExplainArgs) -> Result<Inputs> {
    let mut values = Inputs::default();
    if args.measure {
        let c = measure::calibrate(GroupId::Ffdhe2048, Scheme::Ed25519, 20);
        values.exp_ms = c.exp_ms;
        values.sign_ms = c.sign_ms;
        values.verify_ms = c.verify_ms;
        if let Some(load) = measure::cpu_load(std::time::Duration::from_millis(200)) {
            values.cpu_local = load;
            values.cpu_worst = load;
        }
    }
    for kv in &args.inputs {
        let (k, v) =
            kv.split_once('=').with_context(|| format!("--input {kv:?}: expected NAME=VALUE"))?;
        let v: f64 = v.parse().with_context(|| format!("--input {kv:?}: not a number"))?;
        if !values.set(k, v) {
            bail!("--input {kv:?}: unknown input {k:?}");
        }
    }
    if let Some(n) = args.group_size {
        values.group_size = n;
    }
    if let Some(r) = args.rtt_ms {
        values.rtt_median_ms = r;
        values.rtt_worst_ms = values.rtt_worst_ms.max(r);
    }
    if let Some(c) = args.cpu {
        values.cpu_local = c;
        values.cpu_worst = values.cpu_worst.max(c);
    }
    Ok(values)
}

fn explain(plugins: &Plugins, args: ExplainArgs) -> Result<()> {
    if plugins.registry.plugins().next().is_none() {
        bail!("no plugin loaded: pass --plugins DIR");
    }
    let path = match &args.policy {
        Some(p) => p.clone(),
        None => {
            let here = PathBuf::from("policy.toml");
            if !here.exists() {
                bail!(
                    "no policy.toml in the working directory: give --policy FILE (the shipped \
                     one is policy.toml at the repository root)"
                );
            }
            here
        }
    };
    let parsed = plugins.read_policy(&path)?;
    let values = inputs(&args)?;
    let protocols: BTreeMap<String, &dyn Protocol> = plugins
        .registry
        .plugins()
        .map(|p| (p.descriptor.name.clone(), &*p.protocol as &dyn Protocol))
        .collect();
    let candidates = parsed.candidates(&plugins.known_protocols(), values.group_size);
    let mut out = io::stdout().lock();
    let shown = std::fs::canonicalize(&path).unwrap_or(path);
    writeln!(out, "policy: {}", shown.display())?;
    writeln!(out, "inputs:")?;
    for name in INPUT_NAMES {
        writeln!(out, "  {name:<16} {}", values.value(name))?;
    }
    writeln!(
        out,
        "{:<6} {:>9} {:>9} {:>9} {:>11} {:>12}  allowed",
        "", "join ms", "leave ms", "merge ms", "partition ms", "expected ms"
    )?;
    for p in gka_host::policy::predict(&protocols, &values, &parsed.weights) {
        let cells: Vec<String> = p.per_event.iter().map(|(_, ms)| format!("{ms:.2}")).collect();
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
    let state = State {
        current: args.current,
        since_switch_s: args.since_switch_s,
        since_abort_s: args.since_abort_s,
    };
    match parsed.decide(&protocols, &values, &state) {
        Decision::Stay { reason, .. } => {
            writeln!(out, "decision: stay on {} ({reason})", state.current)?
        }
        Decision::Switch { to, reason, gain, label } => {
            writeln!(
                out,
                "decision: switch {} -> {to} ({reason}; predicted gain {:.0}%)",
                state.current,
                gain * 100.0
            )?;
            if gain < 0.0 && label.starts_with("rule:") {
                writeln!(
                    out,
                    "note: {reason} picks a protocol the cost models predict {:.0}% slower than \
                     {}: a requirement, or a rule to revisit",
                    -gain * 100.0,
                    state.current
                )?;
            }
        }
    }
    Ok(())
}

/// The inputs `explain` shows, by their policy-file names.
const INPUT_NAMES: [&str; 13] = [
    "group_size",
    "join_rate",
    "leave_rate",
    "merge_rate",
    "partition_rate",
    "rtt_median_ms",
    "rtt_worst_ms",
    "bandwidth_mbps",
    "cpu_local",
    "cpu_worst",
    "exp_ms",
    "sign_ms",
    "verify_ms",
];
