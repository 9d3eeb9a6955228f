//! An etcd member's background task: it reads the watch in revision order and hands the
//! deliveries over, keeps the member's lease alive while the member's runtime beats, moves to
//! another node when the one in use stops answering, and writes views as coordinator.

// The task keeps time (lease renewals, the settle window) and draws run nonces.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, LeaseKeepAliveStream, LeaseKeeper, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::EtcdTiming;
use super::layout::Keys;
use super::nodes::{within, Nodes};
use super::state::{Change, GroupState};
use crate::group::Delivery;

/// The id and members of the view last delivered, shared by the background task with the
/// sender (which checks unicasts against it).
pub(super) type LastView = Arc<Mutex<Option<(u64, Vec<String>)>>>;

/// When the member's runtime last beat, shared by the endpoint (which records the beats) and
/// the background task (which renews the lease only while they come).
#[derive(Debug, Clone)]
pub(super) struct Heartbeat {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    /// A heartbeat that has just beaten.
    pub(super) fn new() -> Self {
        Self { origin: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    /// Records a beat now.
    pub(super) fn beat(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether the last beat came within `window`.
    fn recent(&self, window: Duration) -> bool {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last) <= window
    }
}

/// The largest gRPC message the watch accepts: a batch of events.
const MAX_WATCH_RESPONSE: usize = 64 << 20;

/// How often a broken watch is opened again.
const RETRY: Duration = Duration::from_millis(250);

/// Lifetimes of its lease a member goes without any answer from etcd before it gives up.
const SILENT_LEASES: u32 = 3;

/// Keep-alives per lease lifetime. A node that leaves a keep-alive unanswered for half the
/// time between two is left for another, so a member whose node is cut off renews through
/// another node within one and a half periods (three eighths of the lease) of its last answer.
const RENEWALS_PER_LEASE: u32 = 4;

/// Opens the group's watch on the node in use, from the revision after `after`.
pub(super) async fn open_watch(
    nodes: &Nodes,
    keys: &Keys,
    after: i64,
    limit: Duration,
) -> io::Result<WatchStream> {
    let mut watch = nodes.client().watch_client().max_decoding_message_size(MAX_WATCH_RESPONSE);
    let options = WatchOptions::new().with_prefix().with_start_revision(after + 1);
    within(limit, "watching the group", watch.watch(keys.root(), Some(options))).await
}

/// Opens the lease's keep-alive stream on the node in use (which renews the lease).
pub(super) async fn open_keep_alive(
    nodes: &Nodes,
    lease: i64,
    limit: Duration,
) -> io::Result<(LeaseKeeper, LeaseKeepAliveStream)> {
    within(limit, "keeping the lease alive", nodes.client().lease_keep_alive(lease)).await
}

/// The background task of one member (see the module docs).
pub(super) struct Background {
    pub(super) nodes: Nodes,
    pub(super) me: String,
    pub(super) keys: Keys,
    pub(super) state: GroupState,
    pub(super) timing: EtcdTiming,
    pub(super) lease: i64,
    pub(super) since: i64,
    pub(super) last_revision: i64,
    pub(super) out: mpsc::Sender<io::Result<Delivery>>,
    pub(super) beat: Heartbeat,
    pub(super) view: LastView,
}

async fn next_watch(watch: &mut Option<WatchStream>) -> Option<etcd_client::WatchResponse> {
    match watch {
        Some(w) => match w.message().await {
            Ok(Some(response)) => Some(response),
            Ok(None) | Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

async fn next_ack(alive: &mut Option<LeaseKeepAliveStream>) -> Option<i64> {
    match alive {
        Some(a) => match a.message().await {
            Ok(Some(response)) => Some(response.ttl()),
            Ok(None) | Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// The lease's side of the task: its keep-alive stream, and whether the node answers it.
struct Lease {
    keeper: Option<LeaseKeeper>,
    alive: Option<LeaseKeepAliveStream>,
    /// When the last answer came.
    last_ack: Instant,
    /// When the oldest keep-alive still unanswered went out.
    unanswered: Option<Instant>,
}

impl Background {
    /// Runs until the member is out of the group, then hands over why.
    pub(super) async fn run(
        mut self,
        watch: WatchStream,
        keeper: LeaseKeeper,
        alive: LeaseKeepAliveStream,
    ) {
        let lease = Lease {
            keeper: Some(keeper),
            alive: Some(alive),
            last_ack: Instant::now(),
            unanswered: None,
        };
        let error = self.serve(Some(watch), lease).await;
        let _ = self.out.send(Err(error)).await;
    }

    /// Runs until the member is out of the group; returns why.
    async fn serve(&mut self, mut watch: Option<WatchStream>, mut lease: Lease) -> io::Error {
        let ttl = self.timing.lease_ttl();
        let period = ttl / RENEWALS_PER_LEASE;
        let answer_within = (period / 2).max(Duration::from_millis(100));
        let mut renew = tokio::time::interval(period);
        let mut retry = tokio::time::interval(RETRY);
        // When the coordinator first saw the change it is to write a view for.
        let mut changed_at: Option<Instant> = None;
        // The revision of the view this member wrote, until its watch has caught up with it.
        let mut written = 0;
        loop {
            if let Err(e) = self.flush().await {
                return e;
            }
            if let Some(why) = self.state.removed() {
                return io::Error::new(io::ErrorKind::ConnectionReset, why.to_owned());
            }
            let due = self.last_revision >= written && self.state.next_view().is_some();
            changed_at = if due { changed_at.or(Some(Instant::now())) } else { None };
            let settle_at = changed_at.map(|t| t + self.timing.settle);
            let answer_due = lease.unanswered.map(|t| t + answer_within);
            tokio::select! {
                response = next_watch(&mut watch) => match response {
                    Some(r) if r.canceled() && r.compact_revision() > 0 => {
                        return io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            format!(
                                "etcd compacted the history this member had not read (revision \
                                 {}): it was away too long",
                                r.compact_revision()
                            ),
                        );
                    }
                    Some(r) if r.canceled() => watch = None,
                    Some(r) => self.apply(&r),
                    None => watch = None,
                },
                ttl_left = next_ack(&mut lease.alive) => match ttl_left {
                    Some(t) if t > 0 => {
                        lease.last_ack = Instant::now();
                        lease.unanswered = None;
                    }
                    Some(_) => {
                        return io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "this member's lease in etcd expired: it is out of the group",
                        )
                    }
                    // The node refused the stream (it has no leader, say): try another.
                    None => {
                        self.fail_over(&mut watch, &mut lease).await;
                    }
                },
                _ = renew.tick() => {
                    // etcd removes a member whose lease lapsed; a member that hears nothing at
                    // all (cut off from every node) gives up after a few lifetimes of its
                    // lease, so that its runtime recovers or reports the failure.
                    if lease.last_ack.elapsed() > ttl * SILENT_LEASES {
                        return io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no answer from etcd for {SILENT_LEASES} lifetimes of the lease \
                                 ({ttl:?} each)"
                            ),
                        );
                    }
                    // Only a member whose runtime still beats is kept alive.
                    if self.beat.recent(ttl / 2) {
                        self.renew(&mut lease).await;
                    }
                }
                () = async { tokio::time::sleep_until(answer_due.unwrap_or_else(Instant::now)).await }, if answer_due.is_some() => {
                    // The node in use went silent (a cut link resets nothing): move the watch
                    // and the lease to another one, renewing there at once.
                    self.fail_over(&mut watch, &mut lease).await;
                    if self.beat.recent(ttl / 2) {
                        self.renew(&mut lease).await;
                    }
                }
                _ = retry.tick(), if watch.is_none() => {
                    let limit = self.timing.request_timeout.min(RETRY * 4);
                    watch = open_watch(&self.nodes, &self.keys, self.last_revision, limit).await.ok();
                }
                () = async { tokio::time::sleep_until(settle_at.unwrap_or_else(Instant::now)).await }, if settle_at.is_some() => {
                    changed_at = None;
                    if let Some(revision) = self.write_view().await {
                        written = revision;
                    }
                }
            }
        }
    }

    /// Sends a keep-alive, opening the stream first if it is closed (which renews by itself).
    async fn renew(&mut self, lease: &mut Lease) {
        let sent_at = Instant::now();
        let sent = match lease.keeper.as_mut() {
            Some(k) => k.keep_alive().await.is_ok(),
            None => {
                let limit = self.timing.lease_ttl() / RENEWALS_PER_LEASE;
                match open_keep_alive(&self.nodes, self.lease, limit).await {
                    Ok((k, a)) => {
                        (lease.keeper, lease.alive) = (Some(k), Some(a));
                        lease.last_ack = Instant::now();
                        return;
                    }
                    Err(_) => false,
                }
            }
        };
        if sent {
            lease.unanswered.get_or_insert(sent_at);
        } else {
            (lease.keeper, lease.alive) = (None, None);
            lease.unanswered.get_or_insert(sent_at);
        }
    }

    /// Moves to the next node: the watch is opened there again (by the retry timer), and the
    /// lease's stream at the next renewal.
    async fn fail_over(&mut self, watch: &mut Option<WatchStream>, lease: &mut Lease) {
        let _ = self.nodes.fail_over().await;
        *watch = None;
        (lease.keeper, lease.alive, lease.unanswered) = (None, None, None);
    }

    fn apply(&mut self, response: &etcd_client::WatchResponse) {
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let change = match event.event_type() {
                EventType::Put => Change::Put {
                    key: kv.key(),
                    value: kv.value(),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                },
                EventType::Delete => Change::Delete { key: kv.key() },
            };
            self.state.apply(change);
            self.last_revision = self.last_revision.max(kv.mod_revision());
        }
    }

    /// Hands the deliveries to the member; an error once the member has gone.
    async fn flush(&mut self) -> io::Result<()> {
        while let Some(d) = self.state.poll_delivery() {
            if let Delivery::View { view, .. } = &d {
                *self.view.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((view.view_id, view.members.clone()));
            }
            if self.out.send(Ok(d)).await.is_err() {
                return Err(io::Error::other("the endpoint was dropped"));
            }
        }
        Ok(())
    }

    /// Writes the next view, fenced; the revision it was written at, if it was.
    async fn write_view(&mut self) -> Option<i64> {
        let mut next = self.state.next_view()?;
        if next.record.nonce.is_empty() {
            let mut nonce = [0u8; 16];
            OsRng.fill_bytes(&mut nonce);
            next.record.nonce = hex::encode(nonce);
        }
        let value: Vec<u8> = next.record.encode();
        let me = self.keys.member(&self.me);
        let txn = Txn::new()
            .when([
                Compare::mod_revision(self.keys.view(), CompareOp::Equal, next.replaces),
                Compare::create_revision(me, CompareOp::Equal, self.since),
            ])
            .and_then([
                TxnOp::put(self.keys.view(), value, None),
                TxnOp::delete(
                    self.keys.messages(),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                ),
            ]);
        let response =
            within(self.timing.request_timeout, "writing the view", self.nodes.client().txn(txn))
                .await
                .ok()?;
        if !response.succeeded() {
            return None;
        }
        response.header().map(|h| h.revision())
    }
}
