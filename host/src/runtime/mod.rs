//! The member runtime: a [`MemberCore`](crate::member::MemberCore) driven over the group
//! layer (the daemon over TCP, or the in-memory network). This is the only place a member
//! reads the clock or does IO; an application embeds it through [`spawn_member`] and talks to
//! it through a [`MemberHandle`].
//!
//! Besides moving bytes, the runtime:
//! - ticks the core (probes, reports, policy evaluation at quiescent points);
//! - samples the CPU load and refines the exponentiation cost from the time real rekeys take,
//!   and hands both to the core for its reports;
//! - watches the policy file: an edit that parses is handed to the core, which applies it at
//!   the next quiescent point; an invalid edit is reported and the old policy stays;
//! - with access rules ([`Peers::Certificates`]), watches the rules file and the CA
//!   certificates and revocation lists it names the same way, and gives the core the
//!   wall-clock time certificates are checked at;
//! - records the metrics (see [`crate::metrics`]);
//! - over the daemon, recovers when its connection ends: it reports what it had sent that was
//!   not delivered, rejoins as a new incarnation with a fresh core after a back-off
//!   ([`Recovery`]), and stops with [`RuntimeEvent::Failed`] only when it gives up.

// The runtime is where IO, time and OS randomness enter: it hands them to the member core.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gka_plugin_api::{GroupId, Protocol};
use tokio::sync::mpsc;

use crate::group::{EtcdConfig, EtcdEndpoint, GroupEndpoint};
use crate::identity::access::{AccessRules, RulesWatch};
use crate::identity::{Identity, TrustStore};
use crate::member::{Catalogue, ControlTiming, MemberEvent};
use crate::net::Connection;
use crate::policy::measure::Calibration;
use crate::policy::{Policy, KNOWN_PROTOCOLS};

mod driver;
mod factory;
mod policy_watch;
mod recovery;

use driver::Driver;
use factory::CoreFactory;
use policy_watch::PolicyWatch;
use recovery::Reconnect;
pub use recovery::Recovery;

/// How often the runtime ticks the core.
pub const TICK: Duration = Duration::from_millis(100);

/// How often the runtime samples the CPU, refreshes its measurements and checks the policy
/// file.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What a member needs to adopt, vote for and propose protocol switches.
#[derive(Debug, Clone)]
pub struct Switching {
    /// The protocols this member can run.
    pub catalogue: Arc<Catalogue>,
    /// Its policy (without one it never proposes, and votes by its catalogue alone).
    pub policy: Option<Policy>,
    /// The file the policy came from, watched for edits.
    pub policy_file: Option<PathBuf>,
    /// How often to probe, report and evaluate.
    pub timing: ControlTiming,
    /// Calibrated operation costs (measured at start if absent).
    pub calibration: Option<Calibration>,
}

/// How a member runs.
pub struct MemberConfig {
    /// The group's name.
    pub group: String,
    /// This member's identity.
    pub identity: Identity,
    /// How it knows its peers.
    pub peers: Peers,
    /// The key-agreement protocol it starts with (a group that runs another one makes it
    /// adopt that one, if its catalogue has it).
    pub protocol: Arc<dyn Protocol>,
    /// The Diffie-Hellman group.
    pub dh_group: GroupId,
    /// How often to prove liveness to the group layer (over etcd, more often than every half
    /// lease).
    pub heartbeat: Duration,
    /// Switching support; `None` runs `protocol` only.
    pub switching: Option<Switching>,
    /// How to recover when the daemon connection ends ([`spawn_member`] only); `None` stops.
    pub recovery: Option<Recovery>,
    /// The member's certificate (DER), presented when joining: a daemon with access rules
    /// checks it, and the views carry it to the peers.
    pub certificate: Option<Vec<u8>>,
}

/// How a member knows which peers take part in the key.
#[derive(Debug, Clone)]
pub enum Peers {
    /// A fixed set of public keys (one party's directory of `NAME.pub` files).
    Keys(TrustStore),
    /// The certificates peers present, checked under access rules (domains, revocation lists,
    /// group rules); with `file`, re-read every [`SAMPLE_EVERY`].
    Certificates {
        /// The rules.
        rules: AccessRules,
        /// The file they came from, watched for edits.
        file: Option<PathBuf>,
    },
}

impl From<TrustStore> for Peers {
    fn from(trust: TrustStore) -> Self {
        Self::Keys(trust)
    }
}

impl std::fmt::Debug for MemberConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberConfig")
            .field("group", &self.group)
            .field("id", &self.identity.id())
            .finish()
    }
}

/// What the runtime reports to the application.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    /// Something the member core reported.
    Member(MemberEvent),
    /// A key was installed this long after the view, refresh or switch commit that started
    /// its agreement.
    RekeyLatency {
        /// The key's epoch.
        epoch: u64,
        /// Time from the view's delivery to the key.
        latency: Duration,
    },
    /// Data the application asked to send could not be sent: no view or key yet, members left
    /// and still hold the current key, or too much is in flight. It is not queued: send it
    /// again later.
    NotSent(String),
    /// The policy file changed but is invalid: the old policy stays.
    PolicyRejected(String),
    /// The access rules (or a CA certificate or revocation list they name) changed and load.
    RulesChanged,
    /// The access rules changed but do not load (every problem, with line and column): the old
    /// rules stay.
    RulesRejected(String),
    /// The connection to the group layer ended. `unsent` messages this member had sent were
    /// not delivered back to it, and are lost: the application may send them again.
    Disconnected {
        /// Why.
        reason: String,
        /// Messages lost with the connection.
        unsent: usize,
    },
    /// The member joined again, as a new incarnation with a fresh core, after a disconnect.
    Rejoined {
        /// The attempt that succeeded (1 for the first).
        attempt: u32,
    },
    /// The runtime stopped: the member left, or the connection ended and it does not recover.
    Stopped(String),
    /// The runtime gave up recovering its connection, and stopped.
    Failed(String),
    /// The answer to [`Command::Status`].
    Status(Box<crate::member::MemberStatus>),
}

/// A request from the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Encrypt and send this to the group.
    Send(Vec<u8>),
    /// Leave the group and stop.
    Leave,
    /// Report the member's state: the runtime answers with [`RuntimeEvent::Status`], in
    /// order with its other events.
    Status,
}

/// The application's side of a running member.
#[derive(Debug)]
pub struct MemberHandle {
    /// Requests to the member.
    pub commands: mpsc::UnboundedSender<Command>,
    /// What happens at the member.
    pub events: mpsc::UnboundedReceiver<RuntimeEvent>,
}

/// Connects to the daemon at `daemon`, joins the group and runs the member in the background.
/// With [`MemberConfig::recovery`] set, it rejoins when the connection ends.
///
/// A member its own trust store or rules cannot vouch for (see [`TrustStore::check_own`] and
/// [`check_own_certificate`]) is refused before it connects: it would only stall the group. So
/// is a first join the daemon refuses.
pub async fn spawn_member(daemon: &str, config: MemberConfig) -> std::io::Result<MemberHandle> {
    let (addr, group) = (daemon.to_owned(), config.group.clone());
    let certificate = config.certificate.clone();
    spawn_joining(config, move |identity| {
        Box::new(move || {
            let (addr, group, identity) = (addr.clone(), group.clone(), identity.clone());
            let certificate = certificate.clone();
            Box::pin(async move {
                let certificate = certificate.as_deref();
                Connection::join_presenting(addr.as_str(), &group, &identity, certificate).await
            })
        })
    })
    .await
}

/// As [`spawn_member`], over a group kept in the etcd cluster `etcd` (see
/// [`crate::group::etcd`]): the member joins with a lease of its own, and rejoins as a new
/// incarnation when it loses it (after a partition from etcd's quorum, say).
pub async fn spawn_member_etcd(
    etcd: &EtcdConfig,
    config: MemberConfig,
) -> std::io::Result<MemberHandle> {
    if config.heartbeat >= etcd.timing.lease_ttl() / 2 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "a heartbeat every {:?} is too slow for a lease of {:?}: the lease is renewed \
                 only while the runtime beat within half a lease",
                config.heartbeat,
                etcd.timing.lease_ttl()
            ),
        ));
    }
    let (etcd, group, id) = (etcd.clone(), config.group.clone(), config.identity.id().to_owned());
    let certificate = config.certificate.clone();
    spawn_joining(config, move |_| {
        Box::new(move || {
            let (etcd, group, id) = (etcd.clone(), group.clone(), id.clone());
            let certificate = certificate.clone();
            Box::pin(
                async move { EtcdEndpoint::join(&etcd, &group, &id, certificate.as_deref()).await },
            )
        })
    })
    .await
}

/// Checks the member's own trust, joins with what `joining` makes of its identity, and runs
/// the member; with recovery set, that is also how it rejoins.
async fn spawn_joining<E: GroupEndpoint>(
    config: MemberConfig,
    joining: impl FnOnce(Arc<Identity>) -> Reconnect<E>,
) -> std::io::Result<MemberHandle> {
    check_trust(&config)?;
    let recovery = config.recovery;
    let (factory, switching) = CoreFactory::new(config);
    let mut join = joining(factory.identity.clone());
    let connection = join().await?;
    let reconnect = recovery.map(|recovery| {
        let reconnect: Reconnect<E> = Box::new(move || {
            let attempt = join();
            Box::pin(async move {
                tokio::time::timeout(recovery.attempt_timeout, attempt).await.unwrap_or_else(|_| {
                    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to the join"))
                })
            })
        });
        (recovery, reconnect)
    });
    start(connection, factory, switching, reconnect)
}

fn check_trust(config: &MemberConfig) -> std::io::Result<()> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    match &config.peers {
        Peers::Keys(trust) => trust.check_own(&config.identity).map_err(|e| invalid(e.to_string())),
        Peers::Certificates { rules, .. } => check_own_certificate(
            rules,
            &config.group,
            &config.identity,
            config.certificate.as_deref(),
        )
        .map_err(invalid),
    }
}

/// Checks that a member's own rules admit its certificate to `group` now, and that the
/// certificate is for this identity's id and key.
pub fn check_own_certificate(
    rules: &AccessRules,
    group: &str,
    identity: &Identity,
    certificate: Option<&[u8]>,
) -> Result<(), String> {
    let der = certificate.ok_or("a member with access rules presents its certificate: give it")?;
    let info = rules
        .admit(group, der, time::OffsetDateTime::now_utc())
        .map_err(|r| format!("this member's own rules refuse its certificate: {r}"))?;
    info.belongs_to(identity)
}

/// Runs the member in the background over an endpoint already joined to the group (the daemon's
/// [`Connection`], or an in-memory [`crate::group::MemEndpoint`]); it stops when the endpoint
/// closes.
pub fn spawn_member_on<E: GroupEndpoint>(
    endpoint: E,
    config: MemberConfig,
) -> std::io::Result<MemberHandle> {
    check_trust(&config)?;
    let (factory, switching) = CoreFactory::new(config);
    start(endpoint, factory, switching, None)
}

fn start<E: GroupEndpoint>(
    endpoint: E,
    factory: CoreFactory,
    switching: Option<Switching>,
    reconnect: Option<(Recovery, Reconnect<E>)>,
) -> std::io::Result<MemberHandle> {
    let core = factory.build()?;
    let rules_watch = match factory.peers() {
        Peers::Certificates { rules, file: Some(path) } => Some(RulesWatch::new(path, rules)),
        _ => None,
    };
    let watch = switching.and_then(|s| {
        let mut known = s.catalogue.names();
        if known.is_empty() {
            known = KNOWN_PROTOCOLS.iter().map(|p| p.to_string()).collect();
        }
        s.policy_file.map(|path| PolicyWatch::new(path, known))
    });
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let driver = Driver::new(core, factory, watch, event_tx).watching_rules(rules_watch);
    tokio::spawn(driver.run(endpoint, reconnect, command_rx));
    Ok(MemberHandle { commands: command_tx, events: event_rx })
}
