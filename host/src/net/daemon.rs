//! `gka daemon`: the group communication daemon, in the spirit of the Spread daemon.
//!
//! Members connect over TCP and speak [`crate::net::wire`]. The daemon keeps one [`Sequencer`] per
//! group (membership with a batching window, heartbeats and failure timeouts, agreed order,
//! view synchrony, partitions), routes each delivery to its member's connection, and emulates
//! network delay per recipient or per sender-recipient pair (this kernel has no `tc netem`)
//! while keeping every member's deliveries in order. It orders signed envelopes and
//! ciphertext; it never holds a key.
//!
//! Every connection starts with a challenge, and its first request must prove an identity on
//! the daemon's access list ([`DaemonAccess`], see [`crate::net::auth`]): a member's key to
//! join, an operator's key to inject faults, which is off unless the daemon allows it. Until
//! then the daemon keeps nothing for the connection but its socket and challenge, for at most
//! [`Limits::handshake_timeout`].
//!
//! Everything a client controls is bounded ([`Limits`]): group names, the number of groups and
//! of connections, each connection's queue of deliveries (a client that does not read is
//! disconnected, not buffered without end) and the time a frame may take to arrive. Refusals
//! are counted (`gka_daemon_refused_total{reason}`), not logged one by one.
//!
//! Each connection is its member's *incarnation*: only the current incarnation's departure
//! removes the member, so a stale connection that closes never removes a newer one that joined
//! under the same member id. A proven join under an id already in the group replaces the old
//! incarnation (the member restarted): the old one leaves in one view and the new one joins in
//! the next, so peers rekey for both. Each group gets a fresh [`GroupRun`] nonce when it is
//! created, carried in its views.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use rand_core::{OsRng, RngCore};

use crate::envelope::MAX_ENVELOPE_BYTES;
use crate::group::{Delivery, GroupRun, Sequencer, Timing};
use crate::net::auth::{Challenge, Credentials, DaemonAccess};
use crate::net::wire::{self, ClientMsg, ControlCmd, ServerMsg};

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Batching window and failure timeout.
    pub timing: Timing,
    /// How often timeouts and batching windows are checked.
    pub tick: Duration,
    /// Bounds on what clients control.
    pub limits: Limits,
    /// Who may join, and who may inject faults.
    pub access: DaemonAccess,
    /// Whether operators may inject faults (partition, heal, delay). Off by default.
    pub allow_control: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            timing: Timing::default(),
            tick: Duration::from_millis(10),
            limits: Limits::default(),
            access: DaemonAccess::default(),
            allow_control: false,
        }
    }
}

/// Bounds on everything a client controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest group name, bytes.
    pub max_group_name: usize,
    /// Groups at once.
    pub max_groups: usize,
    /// Connections at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// Deliveries queued for one connection; a client that lets more pile up (it does not
    /// read) is disconnected and leaves its group.
    pub max_queued: usize,
    /// Bytes of deliveries queued for one connection, likewise.
    pub max_queued_bytes: usize,
    /// How long a connection may go without a complete frame before it is closed (a half-sent
    /// frame, or a silent client).
    pub frame_timeout: Duration,
    /// How long a connection has to send its first, authenticated request.
    pub handshake_timeout: Duration,
    /// The largest frame before a connection has proven who it is (a join, or a command).
    pub max_handshake_frame: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_group_name: 128,
            max_groups: 1024,
            max_connections: 4096,
            max_queued: 4096,
            max_queued_bytes: 8 << 20,
            frame_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
            max_handshake_frame: 1 << 20,
        }
    }
}

/// A connection's queue of deliveries, the bytes queued in it, the id of the connection, and
/// how to close it.
struct Outbox {
    id: u64,
    tx: mpsc::Sender<Queued>,
    queued_bytes: Arc<AtomicUsize>,
    kick: Arc<Kick>,
}

/// A frame waiting for its connection's writer: when it is due, the encoded frame (length
/// prefix included), and what it counts against the connection's byte budget.
struct Queued {
    due: Instant,
    frame: Vec<u8>,
    counted: usize,
}

/// Closes a connection from outside its task, saying why.
#[derive(Default)]
struct Kick {
    notify: Notify,
    reason: Mutex<String>,
}

impl Kick {
    fn close(&self, reason: &str) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.to_owned();
        self.notify.notify_one();
    }

    fn reason(&self) -> String {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The largest emulated delay a control command may set (a minute): anything larger is a
/// mistake, and an unbounded one would overflow the delivery clock.
pub const MAX_DELAY_MS: u64 = 60_000;

/// The most sender-recipient delays the daemon keeps.
pub const MAX_DELAYS: usize = 4096;

#[derive(Default)]
struct Delays {
    to_member: HashMap<String, u64>,
    pair: HashMap<(String, String), u64>,
}

struct State {
    config: DaemonConfig,
    start: Instant,
    /// When the ticker last ran (ms since `start`).
    last_tick_ms: u64,
    groups: HashMap<String, Sequencer>,
    conns: HashMap<(String, String), Outbox>,
    last_due: HashMap<(String, String), Instant>,
    delays: HashMap<String, Delays>,
    /// Set (under the lock) when a graceful shutdown begins: nothing more is sequenced, so
    /// every message already ordered is in the queue of every connection it is for.
    closing: bool,
}

impl State {
    fn new(config: DaemonConfig) -> Self {
        Self {
            config,
            start: Instant::now(),
            last_tick_ms: 0,
            groups: HashMap::new(),
            conns: HashMap::new(),
            last_due: HashMap::new(),
            delays: HashMap::new(),
            closing: false,
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn delay(&self, group: &str, from: Option<&str>, to: &str) -> u64 {
        let Some(d) = self.delays.get(group) else { return 0 };
        let pair =
            from.and_then(|f| d.pair.get(&(f.to_owned(), to.to_owned()))).copied().unwrap_or(0);
        pair.max(d.to_member.get(to).copied().unwrap_or(0))
    }

    /// Hands every pending delivery of `group` to its member's connection, in order.
    fn route(&mut self, group: &str) {
        let Some(seq) = self.groups.get_mut(group) else { return };
        let mut pending = Vec::new();
        while let Some(d) = seq.poll_delivery() {
            pending.push(d);
        }
        let now = Instant::now();
        let mut slow = Vec::new();
        for (to, delivery) in pending {
            let from = match &delivery {
                Delivery::Message { from, .. } => Some(from.clone()),
                Delivery::View { .. } => None,
            };
            let key = (group.to_owned(), to.clone());
            let delay = Duration::from_millis(self.delay(group, from.as_deref(), &to));
            let last = self.last_due.get(&key).copied().unwrap_or(now);
            let due = (now + delay).max(last);
            self.last_due.insert(key.clone(), due);
            let Some(out) = self.conns.get(&key) else { continue };
            // Encoded once, here: the queue holds one copy of each delivery.
            let frame = wire::encode_frame(&ServerMsg::from(delivery));
            let size = frame.len();
            let limits = &self.config.limits;
            // One slot stays free for the reply that explains the close.
            let over = out.tx.capacity() <= 1
                || out.queued_bytes.load(Ordering::Relaxed) + size > limits.max_queued_bytes;
            if over {
                slow.push(key);
                continue;
            }
            out.queued_bytes.fetch_add(size, Ordering::Relaxed);
            if out.tx.try_send(Queued { due, frame, counted: size }).is_err() {
                // Its writer is gone: the member cannot receive anything any more.
                slow.push(key);
            }
        }
        // A client that does not read leaves the group; its connection closes.
        let now_ms = self.now_ms();
        for key in slow {
            if let Some(out) = self.conns.remove(&key) {
                out.kick.close("too many deliveries queued: this client does not read");
                if let Some(seq) = self.groups.get_mut(&key.0) {
                    let _ = seq.leave(&key.1, now_ms);
                }
            }
        }
    }

    fn tick(&mut self) {
        let now = self.now_ms();
        self.tick_at(now);
    }

    fn tick_at(&mut self, now: u64) {
        // The ticker runs every few milliseconds. A gap of half a failure timeout (and of
        // several ticks) means this process was stopped: its members' heartbeats wait unread
        // in the sockets, so that much of their silence is the daemon's, not theirs.
        let gap = now.saturating_sub(self.last_tick_ms);
        let tick_ms = u64::try_from(self.config.tick.as_millis()).unwrap_or(u64::MAX);
        let threshold = (self.config.timing.failure_timeout_ms / 2).max(tick_ms.saturating_mul(4));
        if gap > threshold {
            for seq in self.groups.values_mut() {
                seq.pardon_silence(gap.saturating_sub(tick_ms), now);
            }
        }
        self.last_tick_ms = now;
        let groups: Vec<String> = self.groups.keys().cloned().collect();
        for g in groups {
            if let Some(seq) = self.groups.get_mut(&g) {
                seq.tick(now);
            }
            self.route(&g);
        }
    }

    fn control(&mut self, cmd: ControlCmd) -> Result<(), String> {
        let now = self.now_ms();
        match cmd {
            ControlCmd::Partition { group, sets } => {
                let seq =
                    self.groups.get_mut(&group).ok_or_else(|| format!("no group {group:?}"))?;
                seq.partition(&sets, now).map_err(|e| e.to_string())
            }
            ControlCmd::Heal { group } => {
                let seq =
                    self.groups.get_mut(&group).ok_or_else(|| format!("no group {group:?}"))?;
                seq.heal(now);
                Ok(())
            }
            ControlCmd::Delay { to, from, ms } => {
                if ms > MAX_DELAY_MS {
                    return Err(format!("delay {ms} ms exceeds the limit of {MAX_DELAY_MS} ms"));
                }
                let valid = crate::identity::valid_member_id;
                if !valid(&to) || from.as_deref().is_some_and(|f| !valid(f)) {
                    return Err("a delay names members by valid member ids".into());
                }
                let entries: usize = self.delays.values().map(|d| d.pair.len()).sum();
                if from.is_some() && entries >= MAX_DELAYS {
                    return Err(format!("at most {MAX_DELAYS} pair delays at once"));
                }
                // Delays apply in every group the member is in.
                for (group, member) in self.conns.keys() {
                    if *member == to {
                        let d = self.delays.entry(group.clone()).or_default();
                        match &from {
                            Some(f) => d.pair.insert((f.clone(), to.clone()), ms),
                            None => d.to_member.insert(to.clone(), ms),
                        };
                    }
                }
                Ok(())
            }
        }
    }
}

/// A running daemon.
pub struct Daemon {
    /// The address it listens on.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    open: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
}

/// Changes a running daemon's settings (see [`Daemon::handle`]).
#[derive(Clone)]
pub struct DaemonHandle {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for DaemonHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonHandle").finish_non_exhaustive()
    }
}

impl DaemonHandle {
    /// As [`Daemon::set_rules`].
    pub fn set_rules(&self, rules: Option<Arc<crate::identity::access::AccessRules>>) {
        lock(&self.state).config.access.rules = rules;
    }
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Daemon {
    /// Binds `addr` and serves in the background of the current tokio runtime.
    pub async fn start(addr: &str, config: DaemonConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let open = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(Mutex::new(State::new(config)));
        let task = tokio::spawn(serve_counted(listener, state.clone(), open.clone()));
        Ok(Self { addr, task, open, state })
    }

    /// A handle that changes this daemon's settings while it runs.
    pub fn handle(&self) -> DaemonHandle {
        DaemonHandle { state: self.state.clone() }
    }

    /// Replaces the access rules for requests from now on (a live edit of the rules, a new CA
    /// certificate or revocation list). Members already joined stay; a revoked member is
    /// refused when it next joins.
    pub fn set_rules(&self, rules: Option<Arc<crate::identity::access::AccessRules>>) {
        self.handle().set_rules(rules);
    }

    /// Stops serving: the listener, the ticker and every connection close (members see their
    /// connection end, as when the process dies).
    pub fn stop(self) {
        self.task.abort();
    }

    /// Stops serving, and waits (at most `within`) until every connection has written what
    /// was queued for it and closed: a graceful restart loses nothing the daemon had ordered.
    pub async fn shutdown(self, within: Duration) {
        lock(&self.state).closing = true;
        self.task.abort();
        let deadline = Instant::now() + within;
        while self.open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Serves connections on `listener` until the task is dropped; then every connection closes.
pub async fn serve(listener: TcpListener, config: DaemonConfig) {
    let state = Arc::new(Mutex::new(State::new(config)));
    serve_counted(listener, state, Arc::new(AtomicUsize::new(0))).await
}

/// As [`serve`], with its state, counting open connections in `open`.
async fn serve_counted(listener: TcpListener, state: Arc<Mutex<State>>, open: Arc<AtomicUsize>) {
    let (tick, max_connections) = {
        let st = lock(&state);
        (st.config.tick, st.config.limits.max_connections)
    };
    let shutdown = CancellationToken::new();
    let _on_drop = shutdown.clone().drop_guard();
    let ticker = state.clone();
    let ticker_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = interval.tick() => lock(&ticker).tick(),
                () = ticker_stop.cancelled() => break,
            }
        }
    });
    let ids = AtomicU64::new(0);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors (or a connection reset before accept): back off instead of
            // spinning on accept.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if open.load(Ordering::Relaxed) >= max_connections {
            refused("connections");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let (open, state, stop) = (open.clone(), state.clone(), shutdown.clone());
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            connection(stream, state, id, stop).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock would be a daemon bug; keep serving with the state as is.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The next frame, or `Err` if none completed within `timeout`. When the deadline passes, the
/// socket gets one more short look: after this process was stopped, the timer can fire before
/// the frames that waited in the socket are seen.
async fn next_frame<S>(frames: &mut S, timeout: Duration) -> Result<Option<S::Item>, ()>
where
    S: futures::Stream + Unpin,
{
    if let Ok(frame) = tokio::time::timeout(timeout, frames.next()).await {
        return Ok(frame);
    }
    tokio::time::timeout(Duration::from_millis(200), frames.next()).await.map_err(|_| ())
}

/// Counts a refused connection or request by reason.
fn refused(reason: &'static str) {
    metrics::counter!("gka_daemon_refused_total", "reason" => reason).increment(1);
}

/// Why a connection's first request is refused before anything is shared with other
/// connections, if it is: a reason label and a message. Run outside the daemon's lock (the
/// signature check is the expensive part, and the access list does not change), with the
/// cheap checks first.
fn refuse_unproven(
    config: &DaemonConfig,
    challenge: &Challenge,
    msg: &ClientMsg,
) -> Option<(&'static str, String)> {
    match msg {
        ClientMsg::Join { group, member, proof, certificate } => {
            let max = config.limits.max_group_name;
            if !crate::identity::valid_member_id(member) {
                return Some(("bad_request", format!("invalid member id {member:?}")));
            }
            if group.is_empty() || group.len() > max {
                let n = group.len();
                return Some(("limit", format!("a group name must be 1 to {max} bytes, not {n}")));
            }
            let credentials = Credentials {
                proof,
                certificate: certificate.as_deref(),
                now: time::OffsetDateTime::now_utc(),
            };
            let proven = config.access.check_join(challenge, group, member, credentials);
            proven.err().map(|e| (e.label(), e.to_string()))
        }
        ClientMsg::Control { operator, cmd, proof, certificate } => {
            if !config.allow_control {
                return Some((
                    "control_off",
                    "fault injection is off: start the daemon with it allowed (gka daemon \
                     --allow-control)"
                        .into(),
                ));
            }
            let credentials = Credentials {
                proof,
                certificate: certificate.as_deref(),
                now: time::OffsetDateTime::now_utc(),
            };
            let proven = config.access.check_control(challenge, operator, cmd, credentials);
            proven.err().map(|e| {
                let why = format!("{e} (operators are listed with --operators, or by --access)");
                (e.label(), why)
            })
        }
        _ => None,
    }
}

/// Why a proven join is refused by the daemon's state, if it is.
fn refuse_join(st: &State, group: &str) -> Option<(&'static str, String)> {
    if st.closing {
        return Some(("closing", "the daemon is shutting down".into()));
    }
    let limits = &st.config.limits;
    if !st.groups.contains_key(group) && st.groups.len() >= limits.max_groups {
        return Some(("limit", format!("this daemon serves at most {} groups", limits.max_groups)));
    }
    None
}

async fn connection(stream: TcpStream, state: Arc<Mutex<State>>, id: u64, stop: CancellationToken) {
    let limits = lock(&state).config.limits;
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, wire::codec());
    // Authenticate before allocating: until its first request is proven, a connection may only
    // send a small frame.
    frames.decoder_mut().set_max_frame_length(limits.max_handshake_frame);
    let mut challenge: Challenge = Default::default();
    OsRng.fill_bytes(&mut challenge);
    // One slot more than the limit for the reply that explains a close.
    let (tx, mut rx) = mpsc::channel::<Queued>(limits.max_queued.max(1) + 1);
    let kick = Arc::new(Kick::default());
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let written = queued_bytes.clone();
    let mut writer = tokio::spawn(async move {
        while let Some(Queued { due, frame, counted }) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let sent = write.write_all(&frame).await;
            drop(frame);
            written.fetch_sub(counted, Ordering::Relaxed);
            if sent.is_err() {
                break;
            }
        }
    });
    let reply = |msg: ServerMsg| {
        let frame = wire::encode_frame(&msg);
        let _ = tx.try_send(Queued { due: Instant::now(), frame, counted: 0 });
    };
    reply(ServerMsg::Challenge(challenge));
    let mut joined: Option<(String, String)> = None;
    loop {
        let frame_timeout = match joined {
            Some(_) => limits.frame_timeout,
            None => limits.handshake_timeout.min(limits.frame_timeout),
        };
        let frame = tokio::select! {
            frame = next_frame(&mut frames, frame_timeout) => frame,
            () = kick.notify.notified() => {
                reply(ServerMsg::Error(format!("{}; closing", kick.reason())));
                break;
            }
            () = stop.cancelled() => {
                reply(ServerMsg::Error("the daemon is shutting down; closing".into()));
                break;
            }
        };
        let frame = match frame {
            Err(_) => {
                reply(ServerMsg::Error(format!(
                    "no complete frame within {frame_timeout:?}; closing"
                )));
                break;
            }
            Ok(None) => break,
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => {
                reply(ServerMsg::Error(format!("bad frame: {e}; closing")));
                break;
            }
        };
        let msg: ClientMsg = match wire::decode(&frame) {
            Ok(m) => m,
            Err(e) => {
                reply(ServerMsg::Error(format!("{e}; closing")));
                break;
            }
        };
        if joined.is_none() {
            // The settings as they are now (access rules may have been reloaded), copied so that
            // the proof is checked outside the lock; the copy shares the keys and rules.
            let config = lock(&state).config.clone();
            if let Some((label, reason)) = refuse_unproven(&config, &challenge, &msg) {
                refused(label);
                reply(ServerMsg::Error(format!("{reason}; closing")));
                break;
            }
        }
        let mut st = lock(&state);
        let now = st.now_ms();
        match (msg, &joined) {
            (ClientMsg::Join { group, member, .. }, None) => {
                if let Some((label, reason)) = refuse_join(&st, &group) {
                    refused(label);
                    reply(ServerMsg::Error(format!("{reason}; closing")));
                    break;
                }
                // Deliveries already decided go to the incarnation they were decided for.
                st.route(&group);
                let timing = st.config.timing;
                let seq = st.groups.entry(group.clone()).or_insert_with(|| {
                    let mut run = GroupRun::default();
                    OsRng.fill_bytes(&mut run.0);
                    Sequencer::new(timing, run)
                });
                if let Err(e) = seq.rejoin(&member, now) {
                    refused("bad_request");
                    reply(ServerMsg::Error(format!("{e}; closing")));
                    break;
                }
                let key = (group.clone(), member.clone());
                if let Some(old) = st.conns.remove(&key) {
                    // The proven owner of the id is back: its earlier incarnation is done.
                    old.kick.close("a newer connection joined under this member id");
                }
                let outbox = Outbox {
                    id,
                    tx: tx.clone(),
                    queued_bytes: queued_bytes.clone(),
                    kick: kick.clone(),
                };
                st.conns.insert(key, outbox);
                frames.decoder_mut().set_max_frame_length(wire::MAX_FRAME_BYTES);
                // The acknowledgement orders joins: a client that waits for it before the next
                // join knows the daemon saw them in that order.
                reply(ServerMsg::Ok);
                joined = Some((group, member));
            }
            (ClientMsg::Control { operator, cmd, .. }, None) => {
                let action = format!("{cmd:?}");
                match st.control(cmd) {
                    Ok(()) => {
                        // A closed stderr must not take the connection down.
                        let _ = writeln!(
                            std::io::stderr(),
                            "gka daemon: operator {operator:?}: {action}"
                        );
                        reply(ServerMsg::Ok)
                    }
                    Err(e) => reply(ServerMsg::Error(e)),
                }
                // One command per proof: the challenge is spent.
                break;
            }
            (ClientMsg::Send { .. } | ClientMsg::Heartbeat, Some((group, member)))
                if st.conns.get(&(group.clone(), member.clone())).map(|o| o.id) != Some(id) =>
            {
                // Expelled (and maybe replaced by a newer connection under the same id).
                reply(ServerMsg::Error(format!(
                    "{member:?} is no longer a member of {group:?}; closing"
                )));
                break;
            }
            (ClientMsg::Send { bytes, .. }, Some(_)) if bytes.len() > MAX_ENVELOPE_BYTES => {
                // Relayed with its sender's id, it would not fit a recipient's frame.
                refused("too_large");
                reply(ServerMsg::Error(format!(
                    "a message of {} bytes is over the limit of {MAX_ENVELOPE_BYTES}; closing",
                    bytes.len()
                )));
                break;
            }
            (ClientMsg::Send { .. }, Some(_)) if st.closing => {
                // Not sequenced: the sender sees the connection close with it undelivered.
                break;
            }
            (ClientMsg::Send { view_id, to, bytes }, Some((group, member))) => {
                let Some(seq) = st.groups.get_mut(group) else {
                    // Expelled, and the group forgotten since.
                    reply(ServerMsg::Error(format!(
                        "{member:?} is no longer a member of {group:?}; closing"
                    )));
                    break;
                };
                if let Err(e) = seq.send(member, view_id, to.as_deref(), bytes, now) {
                    reply(ServerMsg::Error(e.to_string()));
                }
                let group = group.clone();
                st.route(&group);
            }
            (ClientMsg::Heartbeat, Some((group, member))) => {
                if let Some(seq) = st.groups.get_mut(group) {
                    let _ = seq.heartbeat(member, now);
                }
            }
            (ClientMsg::Leave, Some(_)) => break,
            (other, _) => {
                reply(ServerMsg::Error(format!("unexpected {other:?} in this state; closing")));
                break;
            }
        }
    }
    if let Some((group, member)) = joined {
        let mut st = lock(&state);
        let now = st.now_ms();
        let key = (group.clone(), member.clone());
        // Only this connection's own entry: a newer connection under the same member id (after
        // this one was expelled) stays.
        if st.conns.get(&key).is_some_and(|out| out.id == id) {
            st.conns.remove(&key);
            if let Some(seq) = st.groups.get_mut(&group) {
                let _ = seq.leave(&member, now);
            }
        }
        // Group names come from clients: forget a group once its last member is gone.
        if st.groups.get(&group).is_some_and(Sequencer::is_empty) {
            st.groups.remove(&group);
            st.delays.remove(&group);
            st.last_due.retain(|(g, _), _| *g != group);
        }
    }
    drop(tx);
    // Let queued replies (an error explaining the close) go out, then close the socket even if
    // the client does not read.
    if tokio::time::timeout(Duration::from_secs(1), &mut writer).await.is_err() {
        writer.abort();
        let _ = writer.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(failure_timeout_ms: u64) -> State {
        State::new(DaemonConfig {
            timing: Timing { batch_ms: 10, failure_timeout_ms },
            ..DaemonConfig::default()
        })
    }

    #[test]
    fn a_stalled_daemon_expels_nobody_but_a_silent_member_still_goes() {
        let mut st = state(3_000);
        let mut seq = Sequencer::new(st.config.timing, GroupRun::default());
        seq.join("a", 0).unwrap();
        seq.join("b", 0).unwrap();
        st.groups.insert("g".into(), seq);
        st.tick_at(50);
        let first = st.groups["g"].view_of("a").expect("the first view");
        // Stopped for 4 s: both members' heartbeats wait in the sockets.
        st.tick_at(4_050);
        for m in ["a", "b"] {
            assert_eq!(st.groups["g"].view_of(m), Some(first), "{m} was not expelled");
        }
        // Ticking normally again: b keeps sending heartbeats, a is really gone.
        let mut now = 4_050;
        while now < 4_050 + 3_100 {
            now += 10;
            st.groups.get_mut("g").unwrap().heartbeat("b", now).unwrap();
            st.tick_at(now);
        }
        assert_eq!(st.groups["g"].view_of("a"), None, "a silent member is still removed");
        assert!(st.groups["g"].view_of("b").is_some());
    }
}
