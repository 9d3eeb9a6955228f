//! The etcd endpoint: how a member joins, sends, beats and leaves (see the module docs of
//! [`crate::group::etcd`]); its background task is in `background.rs`.

// Joining draws the member's incarnation number.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;

use super::background::{open_watch, Background, LastView};
use super::config::EtcdConfig;
use super::layout::{
    Keys, MemberRecord, MessageRecord, MAX_MEMBER_RECORD, MAX_MESSAGE, MAX_VIEW_MEMBERS,
};
use super::lease::{open_keep_alive, Heartbeat, SILENT_LEASES};
use super::nodes::{other, within, Nodes};
use super::state::{Change, GroupState};
use crate::group::{Delivery, GroupEndpoint};
use crate::identity::valid_member_id;
use crate::net::wire::MAX_CERTIFICATE_BYTES;

/// Deliveries queued between the watch and the member, before the watch waits.
const QUEUE: usize = 4096;

/// The wait between two attempts at a send.
const SEND_RETRY: Duration = Duration::from_millis(250);

/// One member's endpoint on a group kept in etcd (see [`crate::group::etcd`]).
pub struct EtcdEndpoint {
    me: String,
    keys: Keys,
    nodes: Nodes,
    config: EtcdConfig,
    lease: i64,
    seq: u64,
    deliveries: mpsc::Receiver<io::Result<Delivery>>,
    beat: Heartbeat,
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
    /// Joins `group` as `member`, presenting `certificate` (DER) to its peers, through one of
    /// the configured nodes (the next one when a node fails the join). An older incarnation of
    /// `member` still in the group (a restarted process) is removed first, so its peers see it
    /// leave and join again.
    pub async fn join(
        config: &EtcdConfig,
        group: &str,
        member: &str,
        certificate: Option<&[u8]>,
    ) -> io::Result<Self> {
        let keys = Keys::new(group).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        check_member_id(member)?;
        if let Some(der) = certificate.filter(|c| c.len() > MAX_CERTIFICATE_BYTES) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a certificate of {} bytes is over the bound of {MAX_CERTIFICATE_BYTES}",
                    der.len()
                ),
            ));
        }
        let nodes = Nodes::connect(config).await?;
        let mut last = None;
        for _ in 0..config.endpoints.len() {
            match Self::join_through(&nodes, config, &keys, member, certificate).await {
                Ok(endpoint) => return Ok(endpoint),
                Err(e) => {
                    last = Some(other(&format!("joining through {}", nodes.url()), e));
                    nodes.fail_over();
                }
            }
        }
        Err(last.unwrap_or_else(|| other("joining", "no etcd node")))
    }

    async fn join_through(
        nodes: &Nodes,
        config: &EtcdConfig,
        keys: &Keys,
        member: &str,
        certificate: Option<&[u8]>,
    ) -> io::Result<Self> {
        let limit = config.timing.request_timeout;
        let mut client = nodes.client();
        let ttl = config.timing.lease_ttl_s.max(1);
        let lease = within(limit, "granting a lease", client.lease_grant(ttl, None)).await?.id();
        let record = MemberRecord {
            id: member.to_owned(),
            incarnation: OsRng.next_u64(),
            certificate: certificate.map(hex::encode),
        };
        let since = put_member(&mut client, keys, &record, lease, limit).await?;

        let mut state = GroupState::new(keys.clone(), member, since);
        let at = GetOptions::new().with_revision(since);
        let members = within(
            limit,
            "reading the group's members",
            // The largest group's records, certificates included.
            client
                .kv_client()
                .max_decoding_message_size(MAX_VIEW_MEMBERS * MAX_MEMBER_RECORD)
                .get(keys.members(), Some(at.clone().with_prefix())),
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
        let watch = open_watch(nodes, keys, since, limit).await?;
        let (keeper, alive) = open_keep_alive(nodes, lease, limit).await?;

        let (tx, rx) = mpsc::channel(QUEUE);
        let beat = Heartbeat::new();
        let view = Arc::new(Mutex::new(None));
        let background = Background {
            nodes: nodes.clone(),
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
            keys: keys.clone(),
            nodes: nodes.clone(),
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

/// A member id becomes a key's last segment: only valid ids (no `/`) may.
fn check_member_id(member: &str) -> io::Result<()> {
    if valid_member_id(member) {
        return Ok(());
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{member:?} is not a valid member id")))
}

/// Removes `member` from `group` as etcd does when its lease expires: deletes its member key,
/// so the coordinator writes a view without it and the member, seeing its key gone, rejoins as
/// a new incarnation (if its runtime recovers). An operator's tool, and how `gka demo --etcd`
/// cuts members off. Returns whether there was a key to delete.
pub async fn expel(config: &EtcdConfig, group: &str, member: &str) -> io::Result<bool> {
    let keys = Keys::new(group).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    check_member_id(member)?;
    let mut client = Nodes::connect(config).await?.client();
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
                    let revoke = client.lease_revoke(kv.lease());
                    let _ = within(limit, "removing an older incarnation", revoke).await;
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

impl GroupEndpoint for EtcdEndpoint {
    async fn send(&mut self, view_id: u64, to: Option<String>, bytes: Vec<u8>) -> io::Result<()> {
        let max_message = self.config.max_message.min(MAX_MESSAGE);
        if bytes.len() > max_message {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message of {} bytes is over the etcd layer's bound of {} bytes",
                    bytes.len(),
                    max_message
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
        // A silent node is left by the lease loop within three eighths of the lease; each
        // attempt goes to the node in use then.
        let limit = self.config.timing.request_timeout.min(self.config.timing.lease_ttl() / 2);
        // An election leaves the cluster without a leader for a moment, and a node that went
        // silent is left by the lease loop within a fraction of the lease: try again until the
        // send goes through or the member is out of the group (its lease lost, which the
        // deliveries then say). A runtime waiting here is not hung: it still beats.
        let started = tokio::time::Instant::now();
        let give_up = self.config.timing.lease_ttl() * SILENT_LEASES;
        loop {
            self.beat.beat();
            match within(limit, "sending", self.nodes.client().txn(txn.clone())).await {
                Ok(_) => return Ok(()),
                Err(e) if self.task.is_finished() || started.elapsed() > give_up => return Err(e),
                Err(_) => tokio::time::sleep(SEND_RETRY).await,
            }
        }
    }

    async fn recv(&mut self) -> io::Result<Option<Delivery>> {
        self.deliveries.recv().await.transpose()
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        self.beat.beat();
        Ok(())
    }

    async fn leave(&mut self) -> io::Result<()> {
        self.task.abort();
        self.deliveries.close();
        // Revoking the lease deletes the member key: the coordinator writes a view without it.
        within(
            self.config.timing.request_timeout,
            "leaving (revoking the lease)",
            self.nodes.client().lease_revoke(self.lease),
        )
        .await
        .map(|_| ())
    }
}
