//! `gka ctl`: an operator's commands to a running daemon, each signed over its connection's
//! challenge with the operator's key (and certificate, for a daemon with access rules): the
//! groups' status, and partition, heal and delay (which the daemon carries out only with
//! `--allow-control`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use gka_host::net::wire::{ControlCmd, DaemonStatus, ServerMsg};
use gka_host::net::Connection;
use gka_plugin_api::EpochLabel;

use crate::common::runtime;
use crate::credentials::{load_identity, own_certificate};

/// How long `gka ctl` waits for the daemon's answer.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `gka ctl`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct CtlArgs {
    /// The daemon's address.
    #[arg(long, default_value = "127.0.0.1:4803")]
    daemon: String,
    /// The operator's id (listed in the daemon's `--operators`, or named by an operator
    /// certificate its `--access` rules accept).
    #[arg(long)]
    id: String,
    /// The operator's private key file (from `gka keygen`, or `gka ca issue --role operator`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The operator's certificate (with the `operator` role), for a daemon with access rules.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CtlCommand {
    /// The daemon's groups: each group's members, components (views) and the protocol and
    /// epoch its members' messages claim; with --group, that group's members by name.
    Status {
        /// One group in detail.
        #[arg(long)]
        group: Option<String>,
        /// Print the answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Split a group into components: each SET is a comma-separated list of members, and
    /// together they name every member of one component exactly once.
    Partition {
        /// The group.
        #[arg(long)]
        group: String,
        /// The components, e.g. `a,b c,d`.
        #[arg(value_name = "SET", required = true, num_args = 2..)]
        sets: Vec<String>,
    },
    /// Merge every component of a group back into one.
    Heal {
        /// The group.
        #[arg(long)]
        group: String,
    },
    /// Delay deliveries to a member (from everyone, or from one sender), in every group it is
    /// in; `--ms 0` removes the delay.
    Delay {
        /// The recipient.
        #[arg(long)]
        to: String,
        /// Only deliveries from this sender.
        #[arg(long)]
        from: Option<String>,
        /// The added delay, milliseconds (at most 60000).
        #[arg(long)]
        ms: u64,
    },
}

/// Sends one command and prints the daemon's answer; a refusal is an error.
pub(crate) fn run(args: CtlArgs) -> Result<()> {
    let identity = load_identity(&args.key, &args.id)?;
    let certificate = match &args.cert {
        Some(path) => Some(own_certificate(path, &identity, &args.key)?),
        None => None,
    };
    let (cmd, json) = match args.command {
        CtlCommand::Status { group, json } => (ControlCmd::Status { group }, json),
        CtlCommand::Partition { group, sets } => {
            let sets: Vec<Vec<String>> = sets
                .iter()
                .map(|s| s.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect())
                .collect();
            if sets.iter().any(Vec::is_empty) {
                bail!("every SET of `gka ctl partition` names at least one member: a,b c,d");
            }
            (ControlCmd::Partition { group, sets }, false)
        }
        CtlCommand::Heal { group } => (ControlCmd::Heal { group }, false),
        CtlCommand::Delay { to, from, ms } => (ControlCmd::Delay { to, from, ms }, false),
    };
    let daemon = args.daemon;
    let answer = runtime()?.block_on(async {
        let request = Connection::control_presenting(
            daemon.as_str(),
            &identity,
            certificate.as_deref(),
            cmd.clone(),
        );
        tokio::time::timeout(ANSWER_TIMEOUT, request)
            .await
            .map_err(|_| anyhow::anyhow!("no answer from the daemon at {daemon} within 10 s"))?
            .with_context(|| format!("cannot reach the daemon at {daemon} (--daemon)"))
    })?;
    match answer {
        ServerMsg::Ok => {
            println!("done: {cmd:?}");
            Ok(())
        }
        ServerMsg::Status(status) if json => {
            println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
            Ok(())
        }
        ServerMsg::Status(status) => {
            print_status(&status);
            Ok(())
        }
        ServerMsg::Error(e) => bail!("the daemon at {daemon} refused: {e}"),
        other => bail!("the daemon at {daemon} answered {other:?}, not a result"),
    }
}

fn status_json(status: &DaemonStatus) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = status
        .groups
        .iter()
        .map(|g| {
            let components: Vec<serde_json::Value> = g
                .components
                .iter()
                .map(|c| serde_json::json!({ "view": c.view_id, "size": c.size, "members": c.members }))
                .collect();
            serde_json::json!({
                "name": g.name,
                "run": g.run.to_string(),
                "members": g.members,
                "components": components,
                "protocol": g.claimed.as_ref().map(|(p, _)| p),
                "epoch": g.claimed.as_ref().map(|(_, e)| EpochLabel(*e).to_string()),
            })
        })
        .collect();
    serde_json::json!({ "connections": status.connections, "groups": groups })
}

fn print_status(status: &DaemonStatus) {
    println!("{} member connection(s), {} group(s)", status.connections, status.groups.len());
    for g in &status.groups {
        let claimed = g.claimed.as_ref().map_or("no protocol message yet".to_owned(), |(p, e)| {
            format!("{p}, epoch {} (as its members' envelopes claim)", EpochLabel(*e))
        });
        println!("group {} (run {}): {} member(s); {claimed}", g.name, g.run, g.members);
        for c in &g.components {
            let members = if c.members.is_empty() {
                String::new()
            } else {
                format!(": {}", c.members.join(", "))
            };
            println!("  view {}: {} member(s){members}", c.view_id, c.size);
        }
    }
}
