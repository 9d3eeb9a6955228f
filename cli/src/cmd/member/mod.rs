//! `gka member`: one member over the daemon or an etcd cluster; stdin lines go out encrypted,
//! `/commands` ask the member about itself, and views, key changes (fingerprints only),
//! switches and received lines are printed, as text or as JSON lines (`--json`).
//!
//! Exit status: 0 when it left on request (Ctrl-D, `/quit`, SIGINT, SIGTERM); 1 when it could
//! not start (a flag, a file, or the first join); 2 for a usage error; 3 when it lost the group
//! and gave up rejoining (`--give-up-after`).

mod describe;
mod input;
mod session;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use gka_host::identity::access::AccessRules;
use gka_host::identity::{Identity, TrustStore};
use gka_host::member::ControlTiming;
use gka_host::runtime::{
    check_own_certificate, spawn_member, spawn_member_etcd, MemberConfig, Peers, Recovery,
    Switching,
};

use crate::common::{install_metrics, runtime, ExitStatus, PluginDirArg};
use crate::credentials::{load_identity, own_certificate};
use crate::etcd_args::EtcdArgs;

/// The exit status of a member that lost the group and gave up rejoining.
const EXIT_GAVE_UP: u8 = 3;

/// `gka member`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct MemberArgs {
    /// The daemon's address.
    #[arg(long, required_unless_present = "etcd", conflicts_with = "etcd")]
    daemon: Option<String>,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// The group.
    #[arg(long)]
    group: String,
    /// This member's id (must match the key file's name).
    #[arg(long)]
    id: String,
    /// The private key file (from `gka keygen`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Directory of trusted members' public keys (one party's flat access-control list).
    #[arg(long, value_name = "DIR", required_unless_present = "access", conflicts_with = "access")]
    trust: Option<PathBuf>,
    /// Access rules (see `gka access check`): peers are admitted by the certificates they
    /// present, under the domains and group rules listed there. The file, and the CA
    /// certificates and revocation lists it names, are watched: edits apply without a restart.
    /// Needs --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    access: Option<PathBuf>,
    /// Key-agreement protocol.
    #[arg(long, default_value = "tgdh")]
    protocol: String,
    #[command(flatten)]
    plugins: PluginDirArg,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// The policy to vote by and, as the oldest member, to propose switches by; the file
    /// is watched, and an edit applies at the next quiescent point. Without it the member
    /// never proposes, and accepts any switch to a plugin it has.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// When the connection to the daemon ends (it restarted, went away, or expelled this
    /// member), keep trying to rejoin for this many seconds before exiting with an error.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    give_up_after: u64,
    /// This member's certificate (from `gka ca issue`), presented when it joins: to the daemon,
    /// and through the views to its peers.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Print one JSON object per line and event (`time`, `member`, `event` and the event's
    /// fields) instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs one member until it leaves (end of input, `/quit` or a signal) or gives up
/// reconnecting (then the exit status is 3).
pub(crate) fn run(args: MemberArgs) -> Result<()> {
    let MemberArgs {
        daemon,
        etcd,
        group,
        id,
        key,
        trust,
        access,
        protocol,
        plugins,
        metrics,
        policy,
        give_up_after,
        cert,
        json,
    } = args;
    let recovery = Recovery {
        give_up_after: std::time::Duration::from_secs(give_up_after),
        ..Recovery::default()
    };
    let identity = load_identity(&key, &id)?;
    let certificate = match &cert {
        Some(path) => Some(own_certificate(path, &identity, &key)?),
        None => None,
    };
    let peers = peers(trust, access, &group, &identity, certificate.as_deref())?;
    let etcd = etcd.config(cert.as_deref().map(|c| (c, key.as_path())))?;
    let layer = match (daemon, etcd) {
        (_, Some(etcd)) => Layer::Etcd(etcd),
        (Some(daemon), None) => Layer::Daemon(daemon),
        (None, None) => bail!("give --daemon ADDR or --etcd URL[,URL..]"),
    };
    let plugins = plugins.load()?;
    let protocol = plugins.protocol(&protocol)?;
    let parsed = match &policy {
        Some(path) => Some(plugins.read_policy(path)?),
        None => None,
    };
    let switching = Switching {
        catalogue: plugins.catalogue(),
        policy: parsed,
        policy_file: policy,
        timing: ControlTiming::default(),
        calibration: None,
    };
    let rt = runtime()?;
    let result = rt.block_on(async {
        install_metrics(metrics)?;
        let config = MemberConfig {
            group,
            identity,
            peers,
            protocol,
            dh_group: gka_plugin_api::GroupId::Ffdhe2048,
            // A beat to the daemon is a frame; to etcd, a note that the runtime is alive,
            // which must come more often than every half lease.
            heartbeat: match &layer {
                Layer::Daemon(_) => std::time::Duration::from_millis(500),
                Layer::Etcd(_) => std::time::Duration::from_millis(100),
            },
            switching: Some(switching),
            recovery: Some(recovery),
            certificate,
        };
        member(layer, config, json).await
    });
    // Reading stdin blocks a thread that a plain drop of the runtime would wait for, so a
    // member whose stdin stays open would never exit.
    rt.shutdown_background();
    result
}

/// How the member knows its peers: a trust directory, or access rules that admit its own
/// certificate.
fn peers(
    trust: Option<PathBuf>,
    access: Option<PathBuf>,
    group: &str,
    identity: &Identity,
    certificate: Option<&[u8]>,
) -> Result<Peers> {
    if let Some(file) = access {
        let rules = AccessRules::load(&file).map_err(|problems| {
            anyhow::anyhow!(
                "cannot load the access rules (--access):\n  {}\ncheck them with `gka access \
                 check {}`",
                problems.join("\n  "),
                file.display()
            )
        })?;
        check_own_certificate(&rules, group, identity, certificate).map_err(|e| {
            anyhow::anyhow!("cannot start with the access rules {} (--access): {e}", file.display())
        })?;
        return Ok(Peers::Certificates { rules, file: Some(file) });
    }
    let dir = trust.context("give --trust DIR or --access FILE")?;
    let trust = TrustStore::load(&dir)
        .with_context(|| format!("cannot load the trust store {}", dir.display()))?;
    trust.check_own(identity).with_context(|| {
        format!("cannot start with the trust store {} (--trust)", dir.display())
    })?;
    Ok(trust.into())
}

/// The group layer a member runs over.
enum Layer {
    Daemon(String),
    Etcd(gka_host::group::EtcdConfig),
}

/// `gka member`: joins, then runs the session until it leaves or gives up.
async fn member(layer: Layer, config: MemberConfig, json: bool) -> Result<()> {
    let id = config.identity.id().to_owned();
    let give_up_after = config.recovery.map_or(0, |r| r.give_up_after.as_secs());
    let handle = match layer {
        Layer::Daemon(daemon) => spawn_member(&daemon, config)
            .await
            .with_context(|| format!("cannot connect to the daemon at {daemon}"))?,
        Layer::Etcd(etcd) => {
            let urls = etcd.endpoints.join(",");
            spawn_member_etcd(&etcd, config)
                .await
                .with_context(|| format!("cannot join the group on etcd at {urls}"))?
        }
    };
    match session::run(handle, session::Printer { id: id.clone(), json }).await? {
        session::Ended::Left => Ok(()),
        session::Ended::GaveUp(reason) => Err(anyhow::Error::new(ExitStatus {
            code: EXIT_GAVE_UP,
            message: format!("{id} gave up: {reason} (--give-up-after {give_up_after})"),
        })),
    }
}
