//! `gka plugins`: list the plugins that load, inspect one's descriptor and cost model, check
//! a built library against the conformance suite (`check.rs`), or start a new plugin from the
//! template (`new.rs`).

mod check;
mod new;

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use gka_host::loader::{host_abi_version, PluginInfo, Registry};
use gka_plugin_api::EventKind;

use crate::common::PluginDirArg;

/// `gka plugins` and its flags.
#[derive(Debug, clap::Args)]
pub(crate) struct PluginsArgs {
    #[command(subcommand)]
    command: PluginsCommand,
    #[command(flatten)]
    plugins: PluginDirArg,
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
    /// Run the conformance suite (the shared scenarios, the cost model against measurements,
    /// hostile payloads) through the ABI against a built plugin library, and print a report;
    /// the exit status is 0 only if every scenario passes.
    Check(check::CheckArgs),
    /// Start a new plugin from the template: a crate of its own (outside any workspace) that
    /// builds the loadable library, with the conformance suite as its tests.
    New(new::NewArgs),
}

/// Runs `gka plugins`.
pub(crate) fn run(args: PluginsArgs) -> Result<()> {
    match args.command {
        PluginsCommand::List { json } => {
            let plugins = args.plugins.load()?;
            list(&plugins.registry, &plugins.dirs, json)
        }
        PluginsCommand::Inspect { name, max_n, all } => {
            inspect(&args.plugins.load()?.registry, &name, max_n, all)
        }
        PluginsCommand::Check(check) => check::run(check),
        PluginsCommand::New(new) => new::run(new),
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
