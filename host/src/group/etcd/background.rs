//! An etcd member's background task: it reads the watch in revision order and hands the
//! deliveries over, and writes views as coordinator; beside it, in the same task, the lease
//! loop (`lease.rs`) keeps the member's lease alive and moves to another node when the one in
//! use stops answering.

// The task keeps time (the settle window) and draws run nonces.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, LeaseKeepAliveStream, LeaseKeeper, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use rand_core::{OsRng, RngCore};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::config::EtcdTiming;
use super::layout::Keys;
use super::lease::{Heartbeat, LeaseLoop, SILENT_LEASES};
use super::nodes::{within, Nodes};
use super::state::{Change, GroupState};
use crate::group::Delivery;

/// The id and members of the view last delivered, shared by the background task with the
/// sender (which checks unicasts against it).
pub(super) type LastView = Arc<Mutex<Option<(u64, Vec<String>)>>>;

/// The largest gRPC message the watch accepts: a batch of events.
const MAX_WATCH_RESPONSE: usize = 64 << 20;

/// How often a broken watch is opened again.
const RETRY: Duration = Duration::from_millis(250);

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

impl Background {
    /// Runs until the member is out of the group, then hands over why.
    pub(super) async fn run(
        mut self,
        watch: WatchStream,
        keeper: LeaseKeeper,
        alive: LeaseKeepAliveStream,
    ) {
        let moved = Arc::new(Notify::new());
        let lease = LeaseLoop {
            nodes: self.nodes.clone(),
            lease: self.lease,
            timing: self.timing,
            beat: self.beat.clone(),
            keeper: Some(keeper),
            alive: Some(alive),
            moved: moved.clone(),
        };
        // One task, two futures: the lease is renewed while the watch side waits (on a view
        // write, or on a member that reads its deliveries slowly).
        let error = tokio::select! {
            e = self.serve(Some(watch), &moved) => e,
            e = lease.keep() => e,
        };
        let _ = self.out.send(Err(error)).await;
    }

    /// Reads the watch and writes views until the member is out of the group; returns why.
    async fn serve(&mut self, mut watch: Option<WatchStream>, moved: &Notify) -> io::Error {
        let ttl = self.timing.lease_ttl();
        let mut retry = tokio::time::interval(RETRY);
        // When the watch went down, until a response comes through again (a watch that opens
        // and fails at every response is down too).
        let mut down_since: Option<Instant> = None;
        // When the coordinator first saw the change it is to write a view for.
        let mut changed_at: Option<Instant> = None;
        // The revision of the view this member wrote, until its watch has caught up with it.
        let mut written = 0;
        // The membership changes `view_differs` was computed at.
        let (mut checked, mut view_differs) = (None, false);
        loop {
            if let Err(e) = self.flush().await {
                return e;
            }
            if let Some(why) = self.state.removed() {
                return io::Error::new(io::ErrorKind::ConnectionReset, why.to_owned());
            }
            if down_since.is_some_and(|t| t.elapsed() > ttl * SILENT_LEASES) {
                return io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("could not watch the group for {SILENT_LEASES} lifetimes of the lease"),
                );
            }
            // Whether the members differ from the view changes only with a member or view key,
            // not with every message.
            if checked != Some(self.state.membership_changes()) {
                checked = Some(self.state.membership_changes());
                view_differs = self.state.next_view().is_some();
            }
            let due = self.last_revision >= written && view_differs;
            changed_at = if due { changed_at.or(Some(Instant::now())) } else { None };
            let settle_at = changed_at.map(|t| t + self.timing.settle);
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
                    Some(r) if r.canceled() => {
                        watch = None;
                        down_since.get_or_insert_with(Instant::now);
                    }
                    Some(r) => {
                        self.apply(&r);
                        down_since = None;
                    }
                    None => {
                        watch = None;
                        down_since.get_or_insert_with(Instant::now);
                    }
                },
                // The lease moved to another node: the watch follows.
                () = moved.notified() => {
                    watch = None;
                    down_since.get_or_insert_with(Instant::now);
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
        // Bounded well within a lease: the coordinator's watch waits meanwhile.
        let limit = self.timing.request_timeout.min(self.timing.lease_ttl() / 2);
        let response =
            within(limit, "writing the view", self.nodes.client().txn(txn)).await.ok()?;
        if !response.succeeded() {
            return None;
        }
        response.header().map(|h| h.revision())
    }
}
