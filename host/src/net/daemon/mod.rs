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
//! are counted (`gka_daemon_refused_total{reason}`, every reason in place at 0 from the start)
//! and logged, ten a second at most.
//!
//! Each connection is its member's *incarnation*: only the current incarnation's departure
//! removes the member, so a stale connection that closes never removes a newer one that joined
//! under the same member id. A proven join under an id already in the group replaces the old
//! incarnation (the member restarted): the old one leaves in one view and the new one joins in
//! the next, so peers rekey for both. Each group gets a fresh [`GroupRun`] nonce when it is
//! created, carried in its views.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::group::{Delivery, Sequencer, Timing};
use crate::net::auth::DaemonAccess;
use crate::net::wire::{self, ControlCmd};

mod connection;

use connection::{connection, refused};

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

/// How often, at most, the daemon reads the header of a group's envelope for its status.
const CLAIM_EVERY_MS: u64 = 100;

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
    /// Per group, the protocol and epoch a recent protocol message or data claimed, and when
    /// (ms since `start`).
    claims: HashMap<String, (String, u64, u64)>,
    /// Per group, the newest view id logged (each view is logged once, not per member).
    logged_views: HashMap<String, u64>,
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
            claims: HashMap::new(),
            logged_views: HashMap::new(),
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
        let mut slow: BTreeSet<(String, String)> = BTreeSet::new();
        for (to, delivery) in pending {
            let from = match &delivery {
                Delivery::Message { from, .. } => Some(from.clone()),
                Delivery::View { view, .. } => {
                    let logged = self.logged_views.entry(group.to_owned()).or_default();
                    if view.view_id > *logged {
                        *logged = view.view_id;
                        tracing::info!(
                            group,
                            view = view.view_id,
                            size = view.members.len(),
                            joined = ?view.joined,
                            left = ?view.left,
                            "view"
                        );
                    }
                    None
                }
            };
            let key = (group.to_owned(), to.clone());
            let delay = Duration::from_millis(self.delay(group, from.as_deref(), &to));
            let last = self.last_due.get(&key).copied().unwrap_or(now);
            let due = (now + delay).max(last);
            self.last_due.insert(key.clone(), due);
            // Nothing more for a connection found slow: it is closed below, and a view must
            // never arrive with some of its frames missing.
            if slow.contains(&key) {
                continue;
            }
            let Some(out) = self.conns.get(&key) else { continue };
            // Encoded once, here: the queue holds one copy of each delivery.
            let frames = wire::delivery_frames(delivery);
            let size: usize = frames.iter().map(Vec::len).sum();
            // All of a delivery's frames or none; one slot stays free for the reply that
            // explains the close.
            let over = out.tx.capacity() <= frames.len()
                || out.queued_bytes.load(Ordering::Relaxed) + size
                    > self.config.limits.max_queued_bytes;
            if over {
                slow.insert(key);
                continue;
            }
            out.queued_bytes.fetch_add(size, Ordering::Relaxed);
            for frame in frames {
                let counted = frame.len();
                if out.tx.try_send(Queued { due, frame, counted }).is_err() {
                    // Its writer is gone: the member cannot receive anything any more.
                    slow.insert(key);
                    break;
                }
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
                tracing::warn!(group = key.0, member = key.1, "disconnected: it does not read");
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

    /// Whether the next envelope sequenced in `group` should be looked at for its claim: at
    /// most every [`CLAIM_EVERY_MS`], so that relaying a message decodes nothing most of the
    /// time (this runs under the daemon's lock).
    fn claim_due(&self, group: &str, now_ms: u64) -> bool {
        self.claims.get(group).is_none_or(|c| now_ms.saturating_sub(c.2) >= CLAIM_EVERY_MS)
    }

    /// Notes the protocol and epoch an envelope sequenced in `group` claims (see
    /// [`wire::GroupStatus::claimed`]).
    fn note_claim(&mut self, group: &str, header: crate::envelope::Header, now_ms: u64) {
        if header.kind != crate::envelope::Kind::Control {
            let claim = (header.protocol, header.epoch, now_ms);
            match self.claims.get_mut(group) {
                Some(c) => *c = claim,
                None => {
                    self.claims.insert(group.to_owned(), claim);
                }
            }
        }
    }

    /// The answer to a status command: one group in detail, or every group in brief (member
    /// counts and view ids, so the answer stays within a frame).
    fn status(&self, group: Option<&str>) -> Result<wire::DaemonStatus, String> {
        let detail = group.is_some();
        let mut names: Vec<&String> = match group {
            Some(g) => {
                let (name, _) =
                    self.groups.get_key_value(g).ok_or_else(|| format!("no group {g:?}"))?;
                vec![name]
            }
            None => self.groups.keys().collect(),
        };
        names.sort_unstable();
        let groups = names
            .into_iter()
            .map(|name| {
                let seq = &self.groups[name];
                let components: Vec<wire::ComponentStatus> = seq
                    .components()
                    .map(|(view_id, members)| wire::ComponentStatus {
                        view_id,
                        members: if detail { members.to_vec() } else { Vec::new() },
                        size: members.len(),
                    })
                    .collect();
                wire::GroupStatus {
                    name: name.clone(),
                    run: seq.run(),
                    members: components.iter().map(|c| c.size).sum(),
                    components,
                    claimed: self.claims.get(name).map(|(p, epoch, _)| (p.clone(), *epoch)),
                }
            })
            .collect();
        Ok(wire::DaemonStatus { connections: self.conns.len(), groups })
    }

    fn control(&mut self, cmd: ControlCmd) -> Result<(), String> {
        let now = self.now_ms();
        match cmd {
            ControlCmd::Status { .. } => Ok(()),
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
    /// Replaces the access rules for requests from now on (a live edit of the rules, a new CA
    /// certificate or revocation list). Members already joined stay; a revoked member is
    /// refused when it next joins.
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
        for reason in connection::REFUSAL_REASONS {
            metrics::counter!("gka_daemon_refused_total", "reason" => reason).absolute(0);
        }
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
            refused("connections", "?", "too many connections open");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupRun;

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
