//! The etcd endpoint: the IO around [`GroupState`] (see the module docs of
//! [`crate::group::etcd`]).

// This is where the etcd layer reads the clock and draws its nonces.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::layout::{Keys, MemberRecord, MessageRecord};
use super::state::{Change, GroupState};
use crate::group::{Delivery, GroupEndpoint};
use crate::identity::valid_member_id;

/// The etcd layer's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdTiming {
    /// The member lease's time to live, whole seconds (etcd's minimum is 1.5 times its
    /// election timeout): a member silent this long is removed.
    pub lease_ttl_s: i64,
    /// How long the coordinator waits after a membership change before it writes the view,
    /// so that simultaneous changes form one view.
    pub settle: Duration,
    /// How long one request to etcd may take before it is retried or fails.
    pub request_timeout: Duration,
}

impl Default for EtcdTiming {
    fn default() -> Self {
        Self {
            lease_ttl_s: 5,
            settle: Duration::from_millis(100),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Mutual TLS to etcd.
#[derive(Clone)]
pub struct EtcdTls {
    /// The CA certificates (PEM) that etcd's server certificates chain to.
    pub ca_pem: String,
    /// The client certificate and key (PEM) this member proves itself with (etcd's
    /// `--client-cert-auth`): a member's certificate from its domain's CA.
    pub client: Option<(String, zeroize::Zeroizing<String>)>,
    /// The name to check etcd's certificates for, when it is not the endpoints' host.
    pub domain: Option<String>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.client.is_some())
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// Where and how to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// The cluster's client URLs (`http://host:2379`, or `https://` with [`Self::tls`]).
    pub endpoints: Vec<String>,
    /// Mutual TLS, if etcd requires it.
    pub tls: Option<EtcdTls>,
    /// Timing.
    pub timing: EtcdTiming,
    /// The largest message, bytes (etcd's own default request limit is 1.5 MiB).
    pub max_message: usize,
}

impl EtcdConfig {
    /// The default settings for `endpoints`, without TLS.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self { endpoints, tls: None, timing: EtcdTiming::default(), max_message: 1 << 20 }
    }
}

/// The id and members of the view last delivered, shared by the background task with the
/// sender (which checks unicasts against it).
type LastView = Arc<Mutex<Option<(u64, Vec<String>)>>>;

/// The largest gRPC message the watch accepts: a batch of events.
const MAX_WATCH_RESPONSE: usize = 64 << 20;

/// Deliveries queued between the watch and the member, before the watch waits.
const QUEUE: usize = 4096;

/// How often a broken watch or keep-alive stream is opened again.
const RETRY: Duration = Duration::from_millis(250);

/// Lifetimes of its lease a member goes without any answer from etcd before it gives up.
const SILENT_LEASES: u32 = 3;

/// Attempts at one send before it fails.
const SEND_ATTEMPTS: u32 = 3;

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    request: impl Future<Output = Result<T, E>>,
) -> io::Result<T> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(other(what, e)),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: no answer from etcd within {limit:?}"),
        )),
    }
}

async fn connect(config: &EtcdConfig) -> io::Result<Client> {
    if config.endpoints.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no etcd endpoint given"));
    }
    // A connection to a node that vanished (a cut link drops packets, nothing resets the
    // connection) must be noticed well within a lease's time to live: the watch and the lease's
    // keep-alive stream may run over it, and move to another node once it is closed.
    let ttl = Duration::from_secs(config.timing.lease_ttl_s.max(1).unsigned_abs());
    let ping = (ttl / 6).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut options = ConnectOptions::new()
        .with_require_leader(true)
        .with_connect_timeout(config.timing.request_timeout.min(ttl))
        .with_keep_alive(ping, ping.max(Duration::from_millis(500)));
    if let Some(tls) = &config.tls {
        let mut t = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(tls.ca_pem.as_bytes()));
        if let Some((cert, key)) = &tls.client {
            t = t.identity(etcd_client::Identity::from_pem(cert.as_bytes(), key.as_bytes()));
        }
        if let Some(domain) = &tls.domain {
            t = t.domain_name(domain.clone());
        }
        options = options.with_tls(t);
    }
    let endpoints = config.endpoints.clone();
    within(
        config.timing.request_timeout,
        &format!("connecting to etcd at {}", endpoints.join(",")),
        Client::connect(endpoints.clone(), Some(options)),
    )
    .await
}

/// One member's endpoint on a group kept in etcd (see [`crate::group::etcd`]).
pub struct EtcdEndpoint {
    me: String,
    keys: Keys,
    client: Client,
    config: EtcdConfig,
    lease: i64,
    seq: u64,
    deliveries: mpsc::Receiver<io::Result<Delivery>>,
    beat: Arc<AtomicBool>,
    view: LastView,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for EtcdEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdEndpoint")
            .field("member", &self.me)
            .field("group", &self.keys.root())
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdEndpoint {
    fn drop(&mut self) {
        // Without a leave, the lease runs out: to its peers this member crashed.
        self.task.abort();
    }
}

impl EtcdEndpoint {
    /// Joins `group` as `member`, presenting `certificate` (DER) to its peers. An older
    /// incarnation of `member` still in the group (a restarted process) is removed first, so
    /// its peers see it leave and join again.
    pub async fn join(
        config: &EtcdConfig,
        group: &str,
        member: &str,
        certificate: Option<&[u8]>,
    ) -> io::Result<Self> {
        let keys = Keys::new(group).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if !valid_member_id(member) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{member:?} is not a valid member id"),
            ));
        }
        let limit = config.timing.request_timeout;
        let mut client = connect(config).await?;
        let ttl = config.timing.lease_ttl_s.max(1);
        let lease = within(limit, "granting a lease", client.lease_grant(ttl, None)).await?.id();
        let record = MemberRecord {
            id: member.to_owned(),
            incarnation: OsRng.next_u64(),
            certificate: certificate.map(hex::encode),
        };
        let since = put_member(&mut client, &keys, &record, lease, limit).await?;

        let mut state = GroupState::new(keys.clone(), member, since, config.max_message);
        let at = GetOptions::new().with_revision(since);
        let members = within(
            limit,
            "reading the group's members",
            client.get(keys.members(), Some(at.clone().with_prefix())),
        )
        .await?;
        let view =
            within(limit, "reading the group's view", client.get(keys.view(), Some(at))).await?;
        for kv in members.kvs().iter().chain(view.kvs()) {
            state.apply(Change::Put {
                key: kv.key(),
                value: kv.value(),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
            });
        }
        let watch = open_watch(&client, &keys, since, limit).await?;
        let (keeper, alive) =
            within(limit, "keeping the lease alive", client.lease_keep_alive(lease)).await?;

        let (tx, rx) = mpsc::channel(QUEUE);
        let beat = Arc::new(AtomicBool::new(true));
        let view = Arc::new(Mutex::new(None));
        let background = Background {
            client: client.clone(),
            me: member.to_owned(),
            keys: keys.clone(),
            state,
            timing: config.timing,
            lease,
            since,
            last_revision: since,
            out: tx,
            beat: beat.clone(),
            view: view.clone(),
        };
        let task = tokio::spawn(background.run(watch, keeper, alive));
        Ok(Self {
            me: member.to_owned(),
            keys,
            client,
            config: config.clone(),
            lease,
            seq: 0,
            deliveries: rx,
            beat,
            view,
            task,
        })
    }
}

/// Removes `member` from `group` as etcd does when its lease expires: deletes its member key,
/// so the coordinator writes a view without it and the member, seeing its key gone, rejoins as
/// a new incarnation (if its runtime recovers). An operator's tool, and how `gka demo --etcd`
/// cuts members off. Returns whether there was a key to delete.
pub async fn expel(config: &EtcdConfig, group: &str, member: &str) -> io::Result<bool> {
    let keys = Keys::new(group).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut client = connect(config).await?;
    let deleted = within(
        config.timing.request_timeout,
        "deleting the member key",
        client.delete(keys.member(member), None),
    )
    .await?;
    Ok(deleted.deleted() > 0)
}

/// Writes the member record with `lease` where no key exists; an older incarnation's key is
/// removed first (by revoking its lease). Returns the new key's `create_revision`.
async fn put_member(
    client: &mut Client,
    keys: &Keys,
    record: &MemberRecord,
    lease: i64,
    limit: Duration,
) -> io::Result<i64> {
    let key = keys.member(&record.id);
    for _ in 0..3 {
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                record.encode(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = within(limit, "writing the member record", client.txn(txn)).await?;
        if response.succeeded() {
            return response
                .header()
                .map(|h| h.revision())
                .ok_or_else(|| other("writing the member record", "no revision in the answer"));
        }
        for op in response.op_responses() {
            let TxnOpResponse::Get(get) = op else { continue };
            for kv in get.kvs() {
                if kv.lease() != 0 {
                    // A lease already gone is fine: its key went with it.
                    let _ = within(
                        limit,
                        "removing an older incarnation",
                        client.lease_revoke(kv.lease()),
                    )
                    .await;
                } else {
                    let txn = Txn::new()
                        .when([Compare::mod_revision(
                            key.clone(),
                            CompareOp::Equal,
                            kv.mod_revision(),
                        )])
                        .and_then([TxnOp::delete(key.clone(), None)]);
                    within(limit, "removing an older incarnation", client.txn(txn)).await?;
                }
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("{:?} is in the group and its record could not be replaced", record.id),
    ))
}

async fn open_watch(
    client: &Client,
    keys: &Keys,
    after: i64,
    limit: Duration,
) -> io::Result<WatchStream> {
    let mut watch = client.watch_client().max_decoding_message_size(MAX_WATCH_RESPONSE);
    let options = WatchOptions::new().with_prefix().with_start_revision(after + 1);
    within(limit, "watching the group", watch.watch(keys.root(), Some(options))).await
}

impl GroupEndpoint for EtcdEndpoint {
    async fn send(&mut self, view_id: u64, to: Option<String>, bytes: Vec<u8>) -> io::Result<()> {
        if bytes.len() > self.config.max_message {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message of {} bytes is over the etcd layer's bound of {} bytes",
                    bytes.len(),
                    self.config.max_message
                ),
            ));
        }
        if let Some(to) = &to {
            let view = self.view.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((id, members)) = &*view {
                if *id == view_id && !members.contains(to) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{to:?} is not in the sender's view"),
                    ));
                }
            }
        }
        let Ok(view_revision) = i64::try_from(view_id) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no such view"));
        };
        let key = self.keys.message(view_id, &self.me, self.seq);
        self.seq += 1;
        let value = MessageRecord { to, bytes }.encode();
        // Committed only while the view is current, and at most once: a retry after an
        // unknown outcome finds the key there, and a failed compare (the view changed, or the
        // first attempt went through) needs nothing more.
        let txn = Txn::new()
            .when([
                Compare::mod_revision(self.keys.view(), CompareOp::Equal, view_revision),
                Compare::version(key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([TxnOp::put(key, value, None)]);
        let mut last = None;
        for attempt in 0..SEND_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(RETRY).await;
            }
            match within(
                self.config.timing.request_timeout,
                "sending",
                self.client.txn(txn.clone()),
            )
            .await
            {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| other("sending", "no attempt made")))
    }

    async fn recv(&mut self) -> io::Result<Option<Delivery>> {
        self.deliveries.recv().await.transpose()
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        self.beat.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn leave(&mut self) -> io::Result<()> {
        self.task.abort();
        self.deliveries.close();
        // Revoking the lease deletes the member key: the coordinator writes a view without it.
        within(
            self.config.timing.request_timeout,
            "leaving (revoking the lease)",
            self.client.lease_revoke(self.lease),
        )
        .await
        .map(|_| ())
    }
}

/// The endpoint's background task: reads the watch in revision order, keeps the lease alive
/// while the member's heartbeats arrive, and writes views as coordinator.
struct Background {
    client: Client,
    me: String,
    keys: Keys,
    state: GroupState,
    timing: EtcdTiming,
    lease: i64,
    since: i64,
    last_revision: i64,
    out: mpsc::Sender<io::Result<Delivery>>,
    beat: Arc<AtomicBool>,
    view: LastView,
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

/// Sends one keep-alive; false when the stream is gone.
async fn keep_alive(keeper: &mut Option<LeaseKeeper>) -> bool {
    match keeper.as_mut() {
        Some(k) => k.keep_alive().await.is_ok(),
        None => false,
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

impl Background {
    async fn run(mut self, watch: WatchStream, keeper: LeaseKeeper, alive: LeaseKeepAliveStream) {
        let error = self.serve(watch, keeper, alive).await;
        let _ = self.out.send(Err(error)).await;
    }

    /// Runs until the member is out of the group; returns why.
    async fn serve(
        &mut self,
        watch: WatchStream,
        keeper: LeaseKeeper,
        alive: LeaseKeepAliveStream,
    ) -> io::Error {
        let ttl = Duration::from_secs(self.timing.lease_ttl_s.max(1).unsigned_abs());
        let (mut watch, mut keeper, mut alive) = (Some(watch), Some(keeper), Some(alive));
        let mut keepalive = tokio::time::interval(ttl / 3);
        let mut retry = tokio::time::interval(RETRY);
        let mut last_ack = Instant::now();
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
                ttl_left = next_ack(&mut alive) => match ttl_left {
                    Some(t) if t > 0 => last_ack = Instant::now(),
                    Some(_) => {
                        return io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "this member's lease in etcd expired: it is out of the group",
                        )
                    }
                    // The stream's connection closed: open both halves again on another node.
                    None => (keeper, alive) = (None, None),
                },
                _ = keepalive.tick() => {
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
                    // Only a member whose runtime still beats is kept alive.
                    if self.beat.swap(false, Ordering::Relaxed) && !keep_alive(&mut keeper).await {
                        self.beat.store(true, Ordering::Relaxed);
                        (keeper, alive) = (None, None);
                    }
                }
                _ = retry.tick(), if watch.is_none() || keeper.is_none() => {
                    let limit = self.timing.request_timeout.min(RETRY * 4);
                    if watch.is_none() {
                        watch = open_watch(&self.client, &self.keys, self.last_revision, limit).await.ok();
                    }
                    if keeper.is_none() {
                        if let Ok((k, a)) = within(limit, "keep-alive", self.client.lease_keep_alive(self.lease)).await {
                            (keeper, alive) = (Some(k), Some(a));
                            // The lapse may have eaten much of the lease: renew it at once.
                            if self.beat.swap(false, Ordering::Relaxed) && !keep_alive(&mut keeper).await {
                                self.beat.store(true, Ordering::Relaxed);
                                (keeper, alive) = (None, None);
                            }
                        }
                    }
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
        let response =
            within(self.timing.request_timeout, "writing the view", self.client.txn(txn))
                .await
                .ok()?;
        if !response.succeeded() {
            return None;
        }
        response.header().map(|h| h.revision())
    }
}
