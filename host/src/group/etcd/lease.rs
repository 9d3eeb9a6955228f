//! A member's lease, kept alive beside its watch: renewed four times per lifetime while the
//! member's runtime beats, and moved to another etcd node when the one in use leaves a
//! renewal unanswered. It runs as its own future, so that nothing the rest of the member waits
//! for (a view write, a full delivery queue) delays a renewal.

// The loop keeps time.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::config::EtcdTiming;
use super::nodes::{within, Nodes};

/// Lifetimes of its lease a member goes without any answer from etcd before it gives up.
pub(super) const SILENT_LEASES: u32 = 3;

/// Renewals per lease lifetime. A node that leaves a renewal unanswered for half the time
/// between two is left for another, so a member whose node is cut off renews through another
/// node within one and a half periods (three eighths of the lease) of its last answer.
const RENEWALS_PER_LEASE: u32 = 4;

/// When the member's runtime last beat, shared by the endpoint (which records the beats) and
/// the lease loop (which renews only while they come).
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

/// Opens the lease's keep-alive stream on the node in use (which renews the lease).
pub(super) async fn open_keep_alive(
    nodes: &Nodes,
    lease: i64,
    limit: Duration,
) -> io::Result<(LeaseKeeper, LeaseKeepAliveStream)> {
    within(limit, "keeping the lease alive", nodes.client().lease_keep_alive(lease)).await
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

/// The lease loop of one member (see the module docs).
pub(super) struct LeaseLoop {
    pub(super) nodes: Nodes,
    pub(super) lease: i64,
    pub(super) timing: EtcdTiming,
    pub(super) beat: Heartbeat,
    pub(super) keeper: Option<LeaseKeeper>,
    pub(super) alive: Option<LeaseKeepAliveStream>,
    /// Told when the loop moved to another node (the watch moves too).
    pub(super) moved: Arc<Notify>,
}

impl LeaseLoop {
    /// Keeps the lease until it is lost; returns why.
    pub(super) async fn keep(mut self) -> io::Error {
        let ttl = self.timing.lease_ttl();
        let period = ttl / RENEWALS_PER_LEASE;
        let answer_within = (period / 2).max(Duration::from_millis(100));
        let mut renew = tokio::time::interval(period);
        // A renewal that waited on a silent node must not be followed by a burst of missed
        // ticks on the same node.
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ack = Instant::now();
        // When the oldest renewal still unanswered went out.
        let mut unanswered: Option<Instant> = None;
        loop {
            let answer_due = unanswered.map(|t| t + answer_within);
            tokio::select! {
                ttl_left = next_ack(&mut self.alive) => match ttl_left {
                    Some(t) if t > 0 => {
                        last_ack = Instant::now();
                        unanswered = None;
                    }
                    Some(_) => {
                        return io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "this member's lease in etcd expired: it is out of the group",
                        )
                    }
                    // The node refused the stream (it has no leader, say): try another.
                    None => {
                        self.fail_over().await;
                        unanswered = None;
                    }
                },
                _ = renew.tick() => {
                    // etcd removes a member whose lease lapsed; a member that hears nothing at
                    // all (cut off from every node) gives up after a few lifetimes of its
                    // lease, so that its runtime recovers or reports the failure.
                    if last_ack.elapsed() > ttl * SILENT_LEASES {
                        return io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no answer from etcd for {SILENT_LEASES} lifetimes of the lease \
                                 ({ttl:?} each)"
                            ),
                        );
                    }
                    // A renewal overdue on the node in use moves the lease before the next one
                    // goes out (the timer below may not have had its turn).
                    if unanswered.is_some_and(|t| t.elapsed() >= answer_within) {
                        self.fail_over().await;
                        unanswered = None;
                    }
                    // Only a member whose runtime still beats is kept alive.
                    if self.beat.recent(ttl / 2) {
                        self.renew(&mut last_ack, &mut unanswered).await;
                    }
                }
                () = async { tokio::time::sleep_until(answer_due.unwrap_or_else(Instant::now)).await }, if answer_due.is_some() => {
                    // The node in use went silent (a cut link resets nothing): move to another
                    // one, renewing there at once.
                    self.fail_over().await;
                    unanswered = None;
                    if self.beat.recent(ttl / 2) {
                        self.renew(&mut last_ack, &mut unanswered).await;
                    }
                }
            }
        }
    }

    /// Sends a renewal, opening the stream first if it is closed (which renews by itself).
    async fn renew(&mut self, last_ack: &mut Instant, unanswered: &mut Option<Instant>) {
        let sent_at = Instant::now();
        let sent = match self.keeper.as_mut() {
            Some(k) => k.keep_alive().await.is_ok(),
            None => {
                let limit = self.timing.lease_ttl() / RENEWALS_PER_LEASE;
                match open_keep_alive(&self.nodes, self.lease, limit).await {
                    Ok((k, a)) => {
                        (self.keeper, self.alive) = (Some(k), Some(a));
                        *last_ack = Instant::now();
                        return;
                    }
                    Err(_) => false,
                }
            }
        };
        if !sent {
            (self.keeper, self.alive) = (None, None);
        }
        unanswered.get_or_insert(sent_at);
    }

    /// Moves to the next node; the watch follows.
    async fn fail_over(&mut self) {
        self.nodes.fail_over();
        (self.keeper, self.alive) = (None, None);
        self.moved.notify_one();
    }
}
