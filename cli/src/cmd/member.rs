//! `gka member`: one member over the daemon or an etcd cluster; stdin lines go out encrypted,
//! and views, key changes (fingerprints only), switches and received lines are printed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gka_host::identity::access::AccessRules;
use gka_host::identity::{Identity, TrustStore};
use gka_host::member::{ControlTiming, MemberEvent, SwitchEvent};
use gka_host::policy::Decision;
use gka_host::runtime::{
    check_own_certificate, spawn_member, spawn_member_etcd, Command as MemberCommand, MemberConfig,
    Peers, Recovery, RuntimeEvent, Switching,
};

use crate::common::{install_metrics, runtime, PluginDirArg};
use crate::etcd_args::EtcdArgs;
use crate::ratelimit::{LineLimit, WINDOW};

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
}

/// Runs one member until stdin and the group are done with, or it gives up reconnecting (then
/// the exit status is non-zero).
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
    } = args;
    let recovery = Recovery {
        give_up_after: std::time::Duration::from_secs(give_up_after),
        ..Recovery::default()
    };
    let identity =
        Identity::load(&key).with_context(|| format!("cannot load {}", key.display()))?;
    if identity.id() != id {
        bail!("the key file {} is for {:?}, not {id:?}", key.display(), identity.id());
    }
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
    let plugins = plugins.load();
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
        member(layer, config).await
    });
    // Reading stdin blocks a thread that a plain drop of the runtime would wait for, so a
    // member whose stdin stays open would never exit.
    rt.shutdown_background();
    result
}

/// Reads this member's certificate and checks that it is for this member's id and key.
fn own_certificate(path: &Path, identity: &Identity, key: &Path) -> Result<Vec<u8>> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (--cert)", path.display()))?;
    let der = gka_host::identity::cert::der_of_pem(&pem, "CERTIFICATE")
        .with_context(|| format!("{} (--cert)", path.display()))?;
    let info = gka_host::identity::cert::read_cert(&der)
        .with_context(|| format!("{} (--cert)", path.display()))?;
    info.belongs_to(identity).map_err(|e| {
        anyhow::anyhow!("{} (--cert, with the key {}): {e}", path.display(), key.display())
    })?;
    Ok(der)
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

/// `gka member`: stdin lines out (encrypted), events and received lines in.
async fn member(layer: Layer, config: MemberConfig) -> Result<()> {
    use tokio::io::AsyncBufReadExt;
    let id = config.identity.id().to_owned();
    let give_up_after = config.recovery.map_or(0, |r| r.give_up_after.as_secs());
    let mut handle = match layer {
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
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    // Refusals of what peers send are counted in full (metrics) but printed a few a second.
    let started = std::time::Instant::now();
    let mut refusals = LineLimit::default();
    let mut summary_tick = tokio::time::interval(WINDOW);
    // The policy decides every second; a decision is printed once, until its kind changes.
    let mut last_decision: Option<String> = None;
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
                Some(RuntimeEvent::Failed(reason)) => {
                    if let Some(s) = refusals.flush() {
                        println!("[{id}] refused: {s}");
                    }
                    println!("[{id}] gave up: {reason}");
                    bail!("{id} gave up: {reason} (--give-up-after {give_up_after})");
                }
                Some(e) => {
                    if let RuntimeEvent::Member(MemberEvent::Switch(SwitchEvent::Decided {
                        decision,
                        ..
                    })) = &e
                    {
                        // The label, not the reason: the reason's figures move every time.
                        let key = match decision {
                            Decision::Stay { label, .. } => label.clone(),
                            Decision::Switch { to, label, .. } => format!("{label} {to}"),
                        };
                        if last_decision.as_deref() != Some(key.as_str()) {
                            print_decision(&id, decision);
                            last_decision = Some(key);
                        }
                        continue;
                    }
                    if let Some(label) = refusal_label(&id, &e) {
                        let (summary, admit) = refusals.admit(started.elapsed(), label);
                        if let Some(s) = summary {
                            println!("[{id}] refused: {s}");
                        }
                        if !admit {
                            continue;
                        }
                    }
                    print_event(&id, &e)
                }
            },
            _ = summary_tick.tick() => {
                if let Some(s) = refusals.roll(started.elapsed()) {
                    println!("[{id}] refused: {s}");
                }
            }
        }
    }
    if let Some(s) = refusals.flush() {
        println!("[{id}] refused: {s}");
    }
    Ok(())
}
/// The kind of a refusal of something a peer sent, for the rate limit on printing them
/// (this member's own errors are always printed).
fn refusal_label(id: &str, e: &RuntimeEvent) -> Option<&'static str> {
    match e {
        RuntimeEvent::Member(MemberEvent::Rejected(r)) => Some(r.label()),
        RuntimeEvent::Member(MemberEvent::ProtocolError { from, .. }) if from != id => {
            Some("protocol_error")
        }
        RuntimeEvent::Member(MemberEvent::Undecryptable { .. }) => Some("undecryptable"),
        _ => None,
    }
}

fn print_decision(id: &str, decision: &Decision) {
    match decision {
        Decision::Stay { reason, .. } => println!("[{id}] policy: stay ({reason})"),
        Decision::Switch { to, reason, gain, .. } => {
            println!(
                "[{id}] policy: switch to {to} ({reason}; predicted gain {:.0}%)",
                gain * 100.0
            )
        }
    }
}

fn print_switch(id: &str, s: &SwitchEvent) {
    match s {
        SwitchEvent::Decided { decision, .. } => print_decision(id, decision),
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
        RuntimeEvent::Member(MemberEvent::Key { epoch, fingerprint, protocol, run }) => {
            println!("[{id}] key epoch {epoch} fingerprint {fingerprint} ({protocol}) run {run}")
        }
        RuntimeEvent::Member(MemberEvent::Switch(s)) => print_switch(id, s),
        RuntimeEvent::PolicyRejected(e) => println!("[{id}] policy edit rejected: {e}"),
        RuntimeEvent::RulesChanged => println!("[{id}] access rules reloaded"),
        RuntimeEvent::RulesRejected(e) => {
            println!("[{id}] access rules edit rejected, the previous rules stay: {e}")
        }
        RuntimeEvent::Member(MemberEvent::RevocationApplied { domain, number, from }) => {
            println!("[{id}] revocation list {number} of domain {domain} in force (sent by {from})")
        }
        RuntimeEvent::Member(MemberEvent::Data { from, epoch, plaintext }) => {
            println!("[{id}] {from} (epoch {epoch}): {}", String::from_utf8_lossy(plaintext))
        }
        RuntimeEvent::Member(MemberEvent::Rejected(r)) => {
            println!("[{id}] rejected ({}): {r}", r.label())
        }
        RuntimeEvent::Member(MemberEvent::ProtocolError { from, error }) => {
            println!("[{id}] protocol error from {from}: {error}")
        }
        RuntimeEvent::Member(MemberEvent::Resent { count }) => {
            println!("[{id}] sent again under the new key: {count} line(s) a view change cut")
        }
        RuntimeEvent::Member(MemberEvent::NotResent { count }) => {
            println!("[{id}] not sent: {count} line(s) a view change cut (members joined)")
        }
        RuntimeEvent::Member(MemberEvent::KeyConfirmed { .. }) => {}
        RuntimeEvent::Member(MemberEvent::NotInKey { members }) => {
            let list: Vec<String> = members.iter().map(|(m, why)| format!("{m} ({why})")).collect();
            println!("[{id}] not in the key: {}", list.join(", "))
        }
        RuntimeEvent::Member(MemberEvent::AgreementOverdue { epoch, waited, silent }) => println!(
            "[{id}] agreement for epoch {epoch} overdue after {:.1} s; silent: {silent:?}",
            waited.as_secs_f64()
        ),
        RuntimeEvent::Member(MemberEvent::Excluded { epoch, members }) => println!(
            "[{id}] excluded for stalling epoch {epoch}: {members:?}; agreeing without them"
        ),
        RuntimeEvent::Member(MemberEvent::KeyMismatch { epoch, diverging, restarted }) => {
            let next = if *restarted { "a fresh agreement starts" } else { "no more restarts" };
            println!("[{id}] KEY MISMATCH at epoch {epoch}: {diverging:?} hold another key; {next}")
        }
        RuntimeEvent::Member(MemberEvent::Undecryptable { from, epoch, reason }) => {
            println!("[{id}] undecryptable from {from} (epoch {epoch}): {reason}")
        }
        RuntimeEvent::RekeyLatency { epoch, latency } => {
            println!("[{id}] rekey to epoch {epoch} took {:.1} ms", latency.as_secs_f64() * 1e3)
        }
        RuntimeEvent::NotSent(reason) => println!("[{id}] not sent: {reason}"),
        RuntimeEvent::Disconnected { reason, unsent } => {
            println!("[{id}] disconnected: {reason}; {unsent} line(s) not delivered; rejoining")
        }
        RuntimeEvent::Rejoined { attempt } => {
            println!("[{id}] rejoined as a new incarnation (attempt {attempt})")
        }
        RuntimeEvent::Stopped(reason) => println!("[{id}] stopped: {reason}"),
        RuntimeEvent::Failed(reason) => println!("[{id}] gave up: {reason}"),
    }
}
