//! The member runtime: a [`MemberCore`] driven over a TCP connection to the daemon. This is
//! the only place a member reads the clock or does IO; an application embeds it through
//! [`spawn_member`] and talks to it through a [`MemberHandle`].

use std::sync::Arc;
use std::time::Duration;

use gka_plugin_api::{GroupId, Protocol, SessionConfig};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::Connection;
use crate::envelope::EnvelopeChecker;
use crate::group::GroupEndpoint;
use crate::identity::{Identity, TrustStore};
use crate::member::{MemberCore, MemberEvent};

/// How a member runs.
pub struct MemberConfig {
    /// The group's name.
    pub group: String,
    /// This member's identity.
    pub identity: Identity,
    /// The trusted members' keys (the access-control list).
    pub trust: TrustStore,
    /// The key-agreement protocol.
    pub protocol: Arc<dyn Protocol>,
    /// The Diffie-Hellman group.
    pub dh_group: GroupId,
    /// How often to prove liveness to the daemon.
    pub heartbeat: Duration,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// Something the member core reported.
    Member(MemberEvent),
    /// A key was installed this long after the view or refresh that started its agreement.
    RekeyLatency {
        /// The key's epoch.
        epoch: u64,
        /// Time from the view's delivery to the key.
        latency: Duration,
    },
    /// Data the application asked to send could not be sent (no key yet, no view).
    NotSent(String),
    /// The runtime stopped (the daemon closed the connection, or the member left).
    Stopped(String),
}

/// A request from the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Encrypt and send this to the group.
    Send(Vec<u8>),
    /// Leave the group and stop.
    Leave,
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
pub async fn spawn_member(daemon: &str, config: MemberConfig) -> std::io::Result<MemberHandle> {
    let connection = Connection::join(daemon, &config.group, config.identity.id()).await?;
    spawn_member_on(connection, config)
}

/// Runs the member in the background over an endpoint already joined to the group (the daemon's
/// [`Connection`], or an in-memory [`crate::group::MemEndpoint`]).
pub fn spawn_member_on<E: GroupEndpoint>(
    endpoint: E,
    config: MemberConfig,
) -> std::io::Result<MemberHandle> {
    let id = config.identity.id().to_owned();
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let session = config
        .protocol
        .new_session(SessionConfig {
            group_name: config.group.clone(),
            member_id: id,
            dh_group: config.dh_group,
            rng_seed: seed,
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let descriptor = config.protocol.descriptor();
    let protocol = format!("{}@{}", descriptor.name, descriptor.version);
    let checker = EnvelopeChecker::new(&config.group, config.trust);
    let core = MemberCore::new(config.identity, &config.group, &protocol, session, checker);
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    tokio::spawn(drive(core, endpoint, config.heartbeat, command_rx, event_tx));
    Ok(MemberHandle { commands: command_tx, events: event_rx })
}

async fn flush<E: GroupEndpoint>(core: &mut MemberCore, endpoint: &mut E) -> std::io::Result<()> {
    while let Some(out) = core.poll_outgoing() {
        endpoint.send(out.view_id, out.to, out.bytes).await?;
    }
    Ok(())
}

async fn drive<E: GroupEndpoint>(
    mut core: MemberCore,
    mut connection: E,
    heartbeat: Duration,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
) {
    let start = Instant::now();
    let mut agreement_started: Option<Instant> = None;
    let group = core.group().to_owned();
    let protocol = core.protocol().split('@').next().unwrap_or_default().to_owned();
    crate::metrics::active_protocol(&group, &protocol);
    let mut event_kind = "initial";
    let mut exps_seen = 0u64;
    let mut ticker = tokio::time::interval(heartbeat);
    let reason = loop {
        tokio::select! {
            delivery = connection.recv() => {
                let delivery = match delivery {
                    Ok(Some(d)) => d,
                    Ok(None) => break "the group layer closed the connection".to_owned(),
                    Err(e) => break format!("group layer error: {e}"),
                };
                let now_ms = start.elapsed().as_millis() as u64;
                if let crate::sequencer::Delivery::View(_) = &delivery {
                    agreement_started = Some(Instant::now());
                }
                if let Err(e) = core.handle_delivery(now_ms, delivery) {
                    let _ = events.send(RuntimeEvent::Member(MemberEvent::ProtocolError {
                        from: core.id().to_owned(),
                        error: e.to_string(),
                    }));
                }
                while let Some(e) = core.poll_event() {
                    match &e {
                        MemberEvent::View(v) => {
                            crate::metrics::view(&group, v.members.len());
                            event_kind = classify(v, event_kind);
                        }
                        MemberEvent::Rejected(r) => crate::metrics::rejected(&group, r.label()),
                        _ => {}
                    }
                    if let (MemberEvent::Key { epoch, .. }, Some(t)) = (&e, agreement_started) {
                        let latency = t.elapsed();
                        crate::metrics::rekey(&group, &protocol, event_kind, latency.as_secs_f64());
                        let _ = events.send(RuntimeEvent::RekeyLatency { epoch: *epoch, latency });
                        agreement_started = None;
                    }
                    let _ = events.send(RuntimeEvent::Member(e));
                }
                let exps = core.session_counters().exponentiations;
                crate::metrics::exponentiations(&protocol, exps.saturating_sub(exps_seen));
                exps_seen = exps;
                if let Err(e) = flush(&mut core, &mut connection).await {
                    break format!("connection error: {e}");
                }
            }
            command = commands.recv() => match command {
                Some(Command::Send(data)) => {
                    if let Err(e) = core.send_data(&data) {
                        let _ = events.send(RuntimeEvent::NotSent(e.to_string()));
                    }
                    if let Err(e) = flush(&mut core, &mut connection).await {
                        break format!("connection error: {e}");
                    }
                }
                Some(Command::Leave) | None => {
                    let _ = connection.leave().await;
                    break "left the group".to_owned();
                }
            },
            _ = ticker.tick() => {
                if let Err(e) = connection.heartbeat().await {
                    break format!("connection error: {e}");
                }
            }
        }
    };
    let _ = events.send(RuntimeEvent::Stopped(reason));
}

/// The membership event a view represents for this member, as a metrics label.
fn classify(view: &gka_plugin_api::View, previous: &'static str) -> &'static str {
    let me_new =
        previous == "initial" && view.left.is_empty() && view.joined.len() == view.members.len();
    match (view.joined.len(), view.left.len()) {
        _ if me_new => "initial",
        (0, 0) => "refresh",
        (1, 0) => "join",
        (_, 0) => "merge",
        (0, 1) => "leave",
        (0, _) => "partition",
        _ => "merge",
    }
}
