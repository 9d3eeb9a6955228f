//! `gka daemon`: the group communication daemon, in the spirit of the Spread daemon.
//!
//! Members connect over TCP and speak [`crate::net::wire`]. The daemon keeps one [`Sequencer`] per
//! group (membership with a batching window, heartbeats and failure timeouts, agreed order,
//! view synchrony, partitions), routes each delivery to its member's connection, and emulates
//! network delay per recipient or per sender-recipient pair (this kernel has no `tc netem`)
//! while keeping every member's deliveries in order. It orders signed envelopes and
//! ciphertext; it never holds a key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::bytes::Bytes;
use tokio_util::codec::Framed;

use crate::group::{Delivery, Sequencer, Timing};
use crate::net::wire::{self, ClientMsg, ControlCmd, ServerMsg};

/// Daemon settings.
#[derive(Debug, Clone, Copy)]
pub struct DaemonConfig {
    /// Batching window and failure timeout.
    pub timing: Timing,
    /// How often timeouts and batching windows are checked.
    pub tick: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self { timing: Timing::default(), tick: Duration::from_millis(10) }
    }
}

type Outbox = mpsc::UnboundedSender<(Instant, ServerMsg)>;

/// The largest emulated delay a control command may set (a minute): anything larger is a
/// mistake, and an unbounded one would overflow the delivery clock.
pub const MAX_DELAY_MS: u64 = 60_000;

#[derive(Default)]
struct Delays {
    to_member: HashMap<String, u64>,
    pair: HashMap<(String, String), u64>,
}

struct State {
    config: DaemonConfig,
    start: Instant,
    groups: HashMap<String, Sequencer>,
    conns: HashMap<(String, String), Outbox>,
    last_due: HashMap<(String, String), Instant>,
    delays: HashMap<String, Delays>,
}

impl State {
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
        for (to, delivery) in pending {
            let from = match &delivery {
                Delivery::Message { from, .. } => Some(from.clone()),
                Delivery::View(_) => None,
            };
            let key = (group.to_owned(), to.clone());
            let delay = Duration::from_millis(self.delay(group, from.as_deref(), &to));
            let last = self.last_due.get(&key).copied().unwrap_or(now);
            let due = (now + delay).max(last);
            self.last_due.insert(key.clone(), due);
            if let Some(out) = self.conns.get(&key) {
                // A closed connection is cleaned up by its own task.
                let _ = out.send((due, ServerMsg::from(delivery)));
            }
        }
    }

    fn tick(&mut self) {
        let now = self.now_ms();
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
#[derive(Debug)]
pub struct Daemon {
    /// The address it listens on.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Binds `addr` and serves in the background of the current tokio runtime.
    pub async fn start(addr: &str, config: DaemonConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, config));
        Ok(Self { addr, task })
    }

    /// Stops serving (connections close as their tasks notice).
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Serves connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, config: DaemonConfig) {
    let state = Arc::new(Mutex::new(State {
        config,
        start: Instant::now(),
        groups: HashMap::new(),
        conns: HashMap::new(),
        last_due: HashMap::new(),
        delays: HashMap::new(),
    }));
    let ticker = state.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(config.tick);
        loop {
            interval.tick().await;
            lock(&ticker).tick();
        }
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, state.clone()));
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock would be a daemon bug; keep serving with the state as is.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn connection(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (mut sink, mut frames) = Framed::new(stream, wire::codec()).split();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, ServerMsg)>();
    let writer = tokio::spawn(async move {
        while let Some((due, msg)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if sink.send(Bytes::from(wire::encode(&msg))).await.is_err() {
                break;
            }
        }
    });
    let reply = |msg: ServerMsg| {
        let _ = tx.send((Instant::now(), msg));
    };
    let mut joined: Option<(String, String)> = None;
    while let Some(frame) = frames.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
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
        let mut st = lock(&state);
        let now = st.now_ms();
        match (msg, &joined) {
            (ClientMsg::Join { group, member }, None) => {
                if !crate::identity::valid_member_id(&member) {
                    reply(ServerMsg::Error(format!("invalid member id {member:?}; closing")));
                    break;
                }
                let timing = st.config.timing;
                let seq = st.groups.entry(group.clone()).or_insert_with(|| Sequencer::new(timing));
                if let Err(e) = seq.join(&member, now) {
                    reply(ServerMsg::Error(format!("{e}; closing")));
                    break;
                }
                st.conns.insert((group.clone(), member.clone()), tx.clone());
                // The acknowledgement orders joins: a client that waits for it before the next
                // join knows the daemon saw them in that order.
                reply(ServerMsg::Ok);
                joined = Some((group, member));
            }
            (ClientMsg::Control(cmd), None) => match st.control(cmd) {
                Ok(()) => reply(ServerMsg::Ok),
                Err(e) => reply(ServerMsg::Error(e)),
            },
            (ClientMsg::Send { view_id, to, bytes }, Some((group, member))) => {
                let seq = st.groups.get_mut(group).expect("joined group exists");
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
        st.conns.remove(&(group.clone(), member.clone()));
        if let Some(seq) = st.groups.get_mut(&group) {
            let _ = seq.leave(&member, now);
            // Group names come from clients: forget a group once its last member is gone.
            if seq.is_empty() {
                st.groups.remove(&group);
                st.delays.remove(&group);
                st.last_due.retain(|(g, _), _| *g != group);
            }
        }
    }
    drop(tx);
    // Let queued replies (an error explaining the close) go out.
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}
