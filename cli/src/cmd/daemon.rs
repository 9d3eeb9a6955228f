//! `gka daemon`: the embedded group communication daemon.

use anyhow::{Context, Result};
use gka_host::group::Timing;
use gka_host::net::{Daemon, DaemonConfig};

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
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Let clients inject faults (partition, heal, delay) for testing. Connections are not
    /// authenticated yet: with this on, any client can split or slow a group.
    #[arg(long)]
    allow_control: bool,
}

/// Runs the daemon until the process is stopped.
pub(crate) fn run(args: DaemonArgs) -> Result<()> {
    runtime()?.block_on(async {
        install_metrics(args.metrics)?;
        let config = DaemonConfig {
            timing: Timing { batch_ms: args.batch_ms, failure_timeout_ms: args.failure_timeout_ms },
            allow_control: args.allow_control,
            ..DaemonConfig::default()
        };
        let daemon = Daemon::start(&args.listen, config)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!("gka daemon listening on {}", daemon.addr);
        std::future::pending::<()>().await;
        Ok(())
    })
}
