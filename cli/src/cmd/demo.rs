//! `gka demo`: the main job (an event scenario over the embedded daemon, then the adaptive
//! demo), or with `--bench`, rekey and switch latencies over the daemon. With `--etcd`, the
//! scenario (or the rekey benchmark, beside the daemon's) runs on an existing etcd cluster.

use std::io::{self, Write};

use anyhow::Result;
use gka_cli::demo::{self, AdaptOptions, DemoOptions, Layer};

use crate::common::{install_metrics, runtime, PluginDirArg, Plugins};
use crate::etcd_args::EtcdArgs;

/// `gka demo`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
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
    #[command(flatten)]
    plugins: PluginDirArg,
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
    #[arg(long, conflicts_with = "etcd")]
    adapt_only: bool,
    /// The group layer: the embedded daemon unless --etcd is given. Over etcd the adaptive
    /// demo, which needs the daemon's delay injection, is skipped, and --bench measures each
    /// rekey over the daemon and over etcd side by side.
    #[command(flatten)]
    etcd: EtcdArgs,
}

/// Runs `gka demo`.
pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let plugins = args.plugins.load();
    let layer = match args.etcd.config(None)? {
        Some(etcd) => Layer::Etcd(etcd),
        None => Layer::Daemon,
    };
    if args.bench {
        return match layer {
            Layer::Daemon => bench(&plugins),
            Layer::Etcd(_) => bench_side_by_side(&plugins, &layer),
        };
    }
    let protocol = plugins.protocol(&args.protocol)?;
    let catalogue = plugins.catalogue();
    let rt = runtime()?;
    rt.block_on(async { install_metrics(args.metrics) })?;
    if !args.adapt_only {
        let options =
            DemoOptions { members: args.members, seconds: args.seconds, layer: layer.clone() };
        let lines = rt.block_on(demo::run(protocol.clone(), &options))?;
        print_demo(&lines, args.json, &layer)?;
    }
    if matches!(layer, Layer::Etcd(_)) && !args.no_adapt {
        eprintln!("the adaptive demo needs the daemon's delay injection: skipped over etcd");
    } else if !args.no_adapt {
        let options = AdaptOptions::default();
        let lines = rt.block_on(demo::adapt(catalogue, protocol, &options))?;
        print_adapt(&lines, args.json)?;
    }
    Ok(())
}

/// `gka demo --bench`: Markdown tables of rekey latency per protocol and event, then of
/// switches against plain initial agreements.
fn bench(plugins: &Plugins) -> Result<()> {
    let rt = runtime()?;
    let mut out = io::stdout().lock();
    writeln!(out, "| protocol | event | n = 4 (ms) | n = 8 (ms) | n = 16 (ms) |")?;
    writeln!(out, "|---|---|---:|---:|---:|")?;
    for plugin in plugins.registry.plugins() {
        let rows =
            rt.block_on(demo::bench(plugin.protocol.clone(), &[4, 8, 16], &Layer::Daemon))?;
        for event in ["initial", "join", "leave", "merge-2", "partition-half"] {
            let cells: Vec<String> = rows
                .iter()
                .filter(|r| r.event == event)
                .map(|r| format!("{:.1}", r.rekey_ms))
                .collect();
            writeln!(out, "| {} | {event} | {} |", plugin.descriptor.name, cells.join(" | "))?;
        }
    }
    let rows = rt.block_on(demo::switch_bench(plugins.catalogue(), &[4, 8, 16]))?;
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

/// `gka demo --bench --etcd URL`: one Markdown table of rekey latency per protocol and event,
/// over the daemon and over etcd side by side, measured one after the other in this run.
fn bench_side_by_side(plugins: &Plugins, etcd: &Layer) -> Result<()> {
    const SIZES: [usize; 3] = [4, 8, 16];
    let rt = runtime()?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "| protocol | event | daemon n = 4 (ms) | etcd n = 4 (ms) | daemon n = 8 (ms) | \
         etcd n = 8 (ms) | daemon n = 16 (ms) | etcd n = 16 (ms) |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|")?;
    for plugin in plugins.registry.plugins() {
        let daemon = rt.block_on(demo::bench(plugin.protocol.clone(), &SIZES, &Layer::Daemon))?;
        let over_etcd = rt.block_on(demo::bench(plugin.protocol.clone(), &SIZES, etcd))?;
        for event in ["initial", "join", "leave", "merge-2", "partition-half"] {
            let mut cells = Vec::new();
            for n in SIZES {
                for rows in [&daemon, &over_etcd] {
                    let row = rows.iter().find(|r| r.event == event && r.n == n);
                    cells
                        .push(row.map_or_else(|| "-".to_owned(), |r| format!("{:.1}", r.rekey_ms)));
                }
            }
            writeln!(out, "| {} | {event} | {} |", plugin.descriptor.name, cells.join(" | "))?;
        }
    }
    Ok(())
}

/// Prints the event scenario's lines.
fn print_demo(lines: &[demo::EventLine], json: bool, layer: &Layer) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&lines)?)?;
    } else {
        writeln!(
            out,
            "members of two domains, red and blue (odd and even members), each with its own CA; \
             {} by certificate under one set of access rules",
            match layer {
                Layer::Daemon => "the daemon and every member admit them",
                Layer::Etcd(_) => "in a group kept in etcd, every member admits them",
            }
        )?;
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
fn print_adapt(lines: &[demo::AdaptLine], json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&lines)?)?;
        return Ok(());
    }
    writeln!(out, "\nadaptive demo (traces/rules-policy.toml, damping shortened for the demo)")?;
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
