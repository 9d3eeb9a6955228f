//! One client connection to the daemon: its challenge, its first (authenticated) request, its
//! requests while joined, the writer that drains its queue, and its cleanup.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rand_core::{OsRng, RngCore};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::{lock, DaemonConfig, Kick, Outbox, Queued, State};
use crate::envelope::MAX_ENVELOPE_BYTES;
use crate::group::{GroupRun, Sequencer};
use crate::net::auth::{Challenge, Credentials};
use crate::net::wire::{self, ClientMsg, ControlCmd, ServerMsg};

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

/// Every `reason` of `gka_daemon_refused_total`: the daemon's own, the proofs', and the
/// access rules' (see [`crate::identity::access::Refusal::label`]).
pub(super) const REFUSAL_REASONS: [&str; 16] = [
    "connections",
    "limit",
    "bad_request",
    "control_off",
    "closing",
    "too_large",
    "unknown",
    "bad_proof",
    "no_rules",
    "no_rule",
    "unknown_domain",
    "revoked",
    "expired",
    "bad_certificate",
    "domain_not_allowed",
    "role_not_allowed",
];

/// Refusals logged per second; the rest are counted and summed up in the next second's first
/// line, so a flood of bad clients cannot flood the log.
const LOGGED_REFUSALS_PER_SECOND: u64 = 10;

/// The refusal log's window: its start (seconds since the epoch of the process's clock), the
/// lines logged in it, and those held back.
static REFUSAL_WINDOW: Mutex<(u64, u64, u64)> = Mutex::new((0, 0, 0));

/// Counts a refused connection or request by reason, and logs it (a few a second).
pub(super) fn refused(reason: &'static str, peer: &str, message: &str) {
    metrics::counter!("gka_daemon_refused_total", "reason" => reason).increment(1);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut window = REFUSAL_WINDOW.lock().unwrap_or_else(|p| p.into_inner());
    if window.0 != second {
        if window.2 > 0 {
            tracing::warn!(held_back = window.2, "more refusals in the last second (counted)");
        }
        *window = (second, 0, 0);
    }
    if window.1 < LOGGED_REFUSALS_PER_SECOND {
        window.1 += 1;
        tracing::warn!(%peer, reason, "refused: {message}");
    } else {
        window.2 += 1;
    }
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
    let (proof, certificate) = match msg {
        ClientMsg::Join { proof, certificate, .. }
        | ClientMsg::Control { proof, certificate, .. } => (proof, certificate.as_deref()),
        _ => return None,
    };
    if let Some(n) = certificate.map(<[u8]>::len) {
        if n > wire::MAX_CERTIFICATE_BYTES {
            let max = wire::MAX_CERTIFICATE_BYTES;
            return Some(("limit", format!("a certificate may be {max} bytes, not {n}")));
        }
    }
    let credentials = Credentials { proof, certificate, now: time::OffsetDateTime::now_utc() };
    match msg {
        ClientMsg::Join { group, member, .. } => {
            let max = config.limits.max_group_name;
            if !crate::identity::valid_member_id(member) {
                return Some(("bad_request", format!("invalid member id {member:?}")));
            }
            if group.is_empty() || group.len() > max {
                let n = group.len();
                return Some(("limit", format!("a group name must be 1 to {max} bytes, not {n}")));
            }
            let proven = config.access.check_join(challenge, group, member, credentials);
            proven.err().map(|e| (e.label(), e.to_string()))
        }
        ClientMsg::Control { operator, cmd, .. } => {
            // A status is read-only: an operator may ask for it on any daemon.
            let injects = !matches!(cmd, ControlCmd::Status { .. });
            if injects && !config.allow_control {
                return Some((
                    "control_off",
                    "fault injection is off: start the daemon with it allowed (gka daemon \
                     --allow-control)"
                        .into(),
                ));
            }
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

pub(super) async fn connection(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    id: u64,
    stop: CancellationToken,
) {
    let limits = lock(&state).config.limits;
    let peer = stream.peer_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tracing::debug!(%peer, connection = id, "connection opened");
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
                refused(label, &peer, &reason);
                reply(ServerMsg::Error(format!("{reason}; closing")));
                break;
            }
        }
        let mut st = lock(&state);
        let now = st.now_ms();
        match (msg, &joined) {
            (ClientMsg::Join { group, member, certificate, .. }, None) => {
                if let Some((label, reason)) = refuse_join(&st, &group) {
                    refused(label, &peer, &format!("{member:?} joining {group:?}: {reason}"));
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
                if let Err(e) = seq.rejoin_presenting(&member, certificate.map(Arc::from), now) {
                    refused("bad_request", &peer, &format!("{member:?} joining {group:?}: {e}"));
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
                tracing::info!(%peer, group, member, connection = id, "joined");
                joined = Some((group, member));
            }
            (ClientMsg::Control { operator, cmd: ControlCmd::Status { group }, .. }, None) => {
                tracing::debug!(%peer, operator, ?group, "status");
                match st.status(group.as_deref()) {
                    Ok(status) => reply(ServerMsg::Status(status)),
                    Err(e) => reply(ServerMsg::Error(e)),
                }
                break;
            }
            (ClientMsg::Control { operator, cmd, .. }, None) => {
                let action = format!("{cmd:?}");
                match st.control(cmd) {
                    Ok(()) => {
                        tracing::info!(%peer, operator, "operator command: {action}");
                        reply(ServerMsg::Ok)
                    }
                    Err(e) => {
                        tracing::warn!(%peer, operator, "operator command refused: {action}: {e}");
                        reply(ServerMsg::Error(e))
                    }
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
                refused("too_large", &peer, &format!("a message of {} bytes", bytes.len()));
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
                let header = st
                    .claim_due(group, now)
                    .then(|| crate::envelope::Envelope::peek_header(&bytes))
                    .flatten();
                let Some(seq) = st.groups.get_mut(group) else {
                    // Expelled, and the group forgotten since.
                    reply(ServerMsg::Error(format!(
                        "{member:?} is no longer a member of {group:?}; closing"
                    )));
                    break;
                };
                match seq.send(member, view_id, to.as_deref(), bytes, now) {
                    Ok(true) => {
                        if let Some(header) = header {
                            st.note_claim(group, header, now);
                        }
                    }
                    Ok(false) => {}
                    Err(e) => reply(ServerMsg::Error(e.to_string())),
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
            tracing::info!(%peer, group, member, connection = id, "left");
        }
        // Group names come from clients: forget a group once its last member is gone.
        if st.groups.get(&group).is_some_and(Sequencer::is_empty) {
            st.groups.remove(&group);
            st.delays.remove(&group);
            st.claims.remove(&group);
            st.logged_views.remove(&group);
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
    use super::REFUSAL_REASONS;
    use crate::net::auth::AuthError;

    #[test]
    fn every_proof_refusal_has_its_series() {
        for e in
            [AuthError::Unknown("x".into()), AuthError::BadProof("x".into()), AuthError::NoRules]
        {
            assert!(REFUSAL_REASONS.contains(&e.label()), "{}", e.label());
        }
    }
}
