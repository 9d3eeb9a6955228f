//! `gka daemon`: the embedded group communication daemon.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gka_host::group::Timing;
use gka_host::identity::access::{AccessRules, RulesWatch};
use gka_host::identity::TrustStore;
use gka_host::net::{Daemon, DaemonAccess, DaemonConfig};

use crate::common::{install_metrics, runtime};

/// `gka daemon`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct DaemonArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4803")]
    listen: String,
    /// Joins and leaves within this window form one view.
    #[arg(long, default_value_t = 50)]
    batch_ms: u64,
    /// A member silent for this long is removed.
    #[arg(long, default_value_t = 3000)]
    failure_timeout_ms: u64,
    /// Directory of members' public keys (`<id>.pub`): a member joins only by proving it holds
    /// the key listed for its id.
    #[arg(long, value_name = "DIR", required_unless_present = "access")]
    trust: Option<PathBuf>,
    /// Access rules (see `gka access check`): a member that presents a certificate joins if
    /// its domain's CA vouches for it and the rules let its domain and role into the group.
    #[arg(long, value_name = "FILE")]
    access: Option<PathBuf>,
    /// Directory of operators' public keys: only they may inject faults, and only with
    /// `--allow-control`.
    #[arg(long, value_name = "DIR")]
    operators: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Let operators (`--operators`, or operator certificates the `--access` rules accept)
    /// inject faults (partition, heal, delay), for testing.
    #[arg(long)]
    allow_control: bool,
}

fn load(dir: &Path, flag: &str) -> Result<TrustStore> {
    let store = TrustStore::load(dir)
        .with_context(|| format!("cannot load the key directory {} ({flag})", dir.display()))?;
    if store.members().next().is_none() {
        bail!(
            "the key directory {} ({flag}) holds no <id>.pub file: nobody could connect",
            dir.display()
        );
    }
    Ok(store)
}

/// Re-reads the access rules, and the CA certificates and revocation lists they name, every
/// second: a change that loads applies to requests from then on; one that does not is printed
/// with its lines and columns, and the previous rules stay.
fn spawn_rules_watch(daemon: &Daemon, path: &Path, rules: &AccessRules) {
    let mut watch = RulesWatch::new(path, rules);
    let daemon = daemon.handle();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            match watch.poll() {
                None => {}
                // A closed stdout or stderr must not stop the watch: the writes may fail.
                Some(Ok(rules)) => {
                    let domains: Vec<&str> = rules.domains().collect();
                    let note = format!("access rules reloaded ({})", domains.join(", "));
                    daemon.set_rules(Some(std::sync::Arc::new(rules)));
                    let _ = writeln!(std::io::stdout(), "gka daemon: {note}");
                }
                Some(Err(errors)) => {
                    let mut err = std::io::stderr();
                    for e in errors {
                        let _ = writeln!(err, "gka daemon: {e}");
                    }
                    let _ = writeln!(
                        err,
                        "gka daemon: the access rules did not load; the previous ones stay"
                    );
                }
            }
        }
    });
}

/// Logs to stderr with `tracing`, at the level `RUST_LOG` names (`info` if unset: joins,
/// leaves, views, refusals and operator commands; `debug` adds connections and status
/// requests).
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Runs the daemon until the process is stopped.
pub(crate) fn run(args: DaemonArgs) -> Result<()> {
    let members = match &args.trust {
        Some(dir) => load(dir, "--trust")?,
        None => TrustStore::default(),
    };
    let operators = match &args.operators {
        Some(dir) => load(dir, "--operators")?,
        None => TrustStore::default(),
    };
    let rules = match &args.access {
        Some(file) => Some(std::sync::Arc::new(AccessRules::load(file).map_err(|errors| {
            anyhow::anyhow!("the access rules are invalid (--access):\n{}", errors.join("\n"))
        })?)),
        None => None,
    };
    if args.allow_control && args.operators.is_none() && args.access.is_none() {
        bail!("--allow-control needs operators: --operators DIR, or --access rules naming them");
    }
    init_logging();
    runtime()?.block_on(async {
        install_metrics(args.metrics)?;
        let config = DaemonConfig {
            timing: Timing { batch_ms: args.batch_ms, failure_timeout_ms: args.failure_timeout_ms },
            access: DaemonAccess { members, operators, rules },
            allow_control: args.allow_control,
            ..DaemonConfig::default()
        };
        let rules = config.access.rules.clone();
        let daemon = Daemon::start(&args.listen, config)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!("gka daemon listening on {}", daemon.addr);
        if let (Some(path), Some(rules)) = (&args.access, &rules) {
            spawn_rules_watch(&daemon, path, rules);
        }
        // SIGTERM (or Ctrl-C) is a graceful stop: what was ordered is written out first.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch for SIGTERM")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        daemon.shutdown(std::time::Duration::from_secs(3)).await;
        println!("gka daemon stopped");
        Ok(())
    })
}
