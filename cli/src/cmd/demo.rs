//! `gka demo`: the main job (an event scenario over the embedded daemon, then the adaptive
//! demo), or with `--bench`, rekey and switch latencies over the daemon. With `--etcd`, the
//! scenario (or the rekey benchmark, beside the daemon's) runs on an existing etcd cluster.

use std::io::{self, Write};

use anyhow::Result;
use gka_cli::demo::{self, AdaptOptions, DemoOptions, Layer};
use serde::Serialize;

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
    /// Print one JSON document (the scenario's events and summary, the adaptive demo's
    /// phases) instead of tables; progress goes to stderr either way.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    plugins: PluginDirArg,
    /// Instead of the scenario, measure rekey latency over the daemon for every loaded
    /// protocol and each event at n = 4, 8, 16, then the time from a switch's commit to
    /// the new key against a plain initial agreement with the new protocol (Markdown
    /// tables).
    #[arg(long, conflicts_with_all = ["json", "no_adapt", "adapt_only"])]
    bench: bool,
    /// Serve Prometheus metrics on this address (`/metrics`) while the demo runs (the port
    /// `deploy/prometheus.yml` scrapes is 9470).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Keep serving `/metrics` this many seconds after the demo ends, so that Prometheus
    /// scrapes its last values.
    #[arg(long, value_name = "SECONDS", requires = "metrics")]
    linger: Option<u64>,
    /// Skip the adaptive demo.
    #[arg(long, conflicts_with = "adapt_only")]
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
    let plugins = args.plugins.load()?;
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
    let result = run_parts(&args, &rt, layer, protocol, catalogue);
    if let (Some(seconds), Some(addr)) = (args.linger, args.metrics) {
        eprintln!("metrics stay up on http://{addr}/metrics for {seconds} s (--linger)");
        // Created inside the runtime: a timer needs one.
        rt.block_on(async { tokio::time::sleep(std::time::Duration::from_secs(seconds)).await });
    }
    result
}

/// The scenario and the adaptive demo, as the flags ask.
fn run_parts(
    args: &DemoArgs,
    rt: &tokio::runtime::Runtime,
    layer: Layer,
    protocol: std::sync::Arc<dyn gka_plugin_api::Protocol>,
    catalogue: std::sync::Arc<gka_host::member::Catalogue>,
) -> Result<()> {
    let progress: demo::Progress = std::sync::Arc::new(|line: &str| eprintln!("  ... {line}"));
    let mut report = Report {
        layer: match layer {
            Layer::Daemon => "daemon",
            Layer::Etcd(_) => "etcd",
        },
        scenario: None,
        adaptive: None,
        adaptive_skipped: None,
    };
    if !args.adapt_only {
        let options =
            DemoOptions { members: args.members, seconds: args.seconds, layer: layer.clone() };
        eprintln!(
            "scenario: {} members, {} over the {}",
            args.members, args.protocol, report.layer
        );
        let events =
            rt.block_on(demo::run_reporting(protocol.clone(), &options, Some(progress.clone())))?;
        let summary = Summary::of(&events);
        if !args.json {
            print_demo(&events, &summary, &layer)?;
        }
        report.scenario = Some(Scenario { events, summary });
    }
    if matches!(layer, Layer::Etcd(_)) && !args.no_adapt {
        let why = "the adaptive demo needs the daemon's delay injection: skipped over etcd";
        eprintln!("{why}");
        report.adaptive_skipped = Some(why);
    } else if !args.no_adapt {
        let options = AdaptOptions::default();
        eprintln!("adaptive demo: {} then {} members, every plugin", options.small, options.large);
        let phases =
            rt.block_on(demo::adapt_reporting(catalogue, protocol, &options, Some(progress)))?;
        if !args.json {
            print_adapt(&phases)?;
        }
        report.adaptive = Some(phases);
    }
    if args.json {
        writeln!(io::stdout().lock(), "{}", serde_json::to_string_pretty(&report)?)?;
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

/// `gka demo --json`'s one document.
#[derive(Serialize)]
struct Report {
    /// `daemon` or `etcd`.
    layer: &'static str,
    /// The event scenario, unless `--adapt-only`.
    scenario: Option<Scenario>,
    /// The adaptive demo's phases, unless skipped.
    adaptive: Option<Vec<demo::AdaptLine>>,
    /// Why the adaptive demo was skipped, when it was for a reason other than `--no-adapt`.
    adaptive_skipped: Option<&'static str>,
}

/// The event scenario's lines and what they add up to.
#[derive(Serialize)]
struct Scenario {
    events: Vec<demo::EventLine>,
    summary: Summary,
}

/// What the scenario's events add up to (every member agreed on each key, or the demo
/// would have failed).
#[derive(Serialize)]
struct Summary {
    events: usize,
    distinct_keys: usize,
    messages_decrypted: usize,
    rekey_median_ms: f64,
    rekey_max_ms: f64,
}

impl Summary {
    fn of(lines: &[demo::EventLine]) -> Self {
        let mut latencies: Vec<f64> = lines.iter().map(|l| l.rekey_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let keys: std::collections::BTreeSet<&str> =
            lines.iter().map(|l| l.fingerprint.as_str()).collect();
        Self {
            events: lines.len(),
            distinct_keys: keys.len(),
            messages_decrypted: lines.iter().map(|l| l.messages_decrypted).sum(),
            rekey_median_ms: latencies.get(latencies.len() / 2).copied().unwrap_or_default(),
            rekey_max_ms: latencies.last().copied().unwrap_or_default(),
        }
    }
}

/// Prints the event scenario's lines.
fn print_demo(lines: &[demo::EventLine], summary: &Summary, layer: &Layer) -> Result<()> {
    let mut out = io::stdout().lock();
    {
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
        let Summary { events, distinct_keys, messages_decrypted, .. } = summary;
        let (median, worst) = (summary.rekey_median_ms, summary.rekey_max_ms);
        writeln!(out, "\nsummary")?;
        writeln!(out, "  events                      {events}")?;
        writeln!(
            out,
            "  distinct keys               {distinct_keys} (every member agreed on each)"
        )?;
        writeln!(out, "  messages decrypted          {messages_decrypted}")?;
        writeln!(out, "  rekey latency median / max  {median:.1} ms / {worst:.1} ms")?;
        writeln!(
            out,
            "PASS scenario: {events} events, a new key agreed by every member after each, \
             every message decrypted by every member"
        )?;
    }
    Ok(())
}

/// Prints the adaptive demo's phases.
fn print_adapt(lines: &[demo::AdaptLine]) -> Result<()> {
    let mut out = io::stdout().lock();
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
    writeln!(
        out,
        "PASS adaptive: {} phases, each ending with every member on the protocol the policy \
         picks, one key, and every message decrypted",
        lines.len()
    )?;
    Ok(())
}
