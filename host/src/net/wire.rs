//! The daemon's client protocol: length-delimited frames (a 4-byte big-endian length, at most
//! [`MAX_FRAME_BYTES`]) each holding one versioned postcard message. The daemon opens every
//! connection with a [`ServerMsg::Challenge`]; the client's first request answers it with a
//! proof of its identity (see [`crate::net::auth`]). The daemon only orders signed envelopes;
//! it never sees a key.

use std::sync::Arc;

use gka_plugin_api::View;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use crate::envelope::MAX_ENVELOPE_BYTES;
use crate::group::{Delivery, GroupRun};
use crate::net::auth::Challenge;

/// The wire format version; a frame with another is refused (2: authenticated requests; 3:
/// certificates; 4: views carry their joiners' certificates).
pub const WIRE_VERSION: u8 = 4;

/// The largest certificate a member may present (a domain CA's certificates are far smaller).
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// The certificates of one view are sent in chunks of at most this many bytes.
const CERTIFICATE_CHUNK_BYTES: usize = 1 << 20;

/// The largest frame accepted in either direction.
pub const MAX_FRAME_BYTES: usize = MAX_ENVELOPE_BYTES + 1024;

/// The frame codec both sides use.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME_BYTES).new_codec()
}

/// A member's request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// Join `group` as `member` (the first message of a member connection). A member id that
    /// is already in the group is taken over: that proof can only come from the member itself,
    /// restarted, so the old connection leaves and this one joins as a new incarnation.
    Join {
        /// The group.
        group: String,
        /// The member id.
        member: String,
        /// The member's signature over [`crate::net::auth::join_statement`].
        proof: Vec<u8>,
        /// The member's certificate (DER), for a daemon with access rules.
        certificate: Option<Vec<u8>>,
    },
    /// Sequence a message sent in view `view_id` (to everyone, or to one member).
    Send {
        /// The sender's view.
        view_id: u64,
        /// None: every member of the view.
        to: Option<String>,
        /// A signed envelope.
        bytes: Vec<u8>,
    },
    /// Proof of life.
    Heartbeat,
    /// Leave the group (closing the connection does the same).
    Leave,
    /// Fault injection by an operator (a control connection: the first message).
    Control {
        /// The operator's id.
        operator: String,
        /// The command.
        cmd: ControlCmd,
        /// The operator's signature over [`crate::net::auth::control_statement`].
        proof: Vec<u8>,
        /// The operator's certificate (DER), for a daemon with access rules.
        certificate: Option<Vec<u8>>,
    },
}

/// Fault injection commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlCmd {
    /// Split a group's component into these subsets (every member exactly once).
    Partition {
        /// The group.
        group: String,
        /// The subsets.
        sets: Vec<Vec<String>>,
    },
    /// Merge every component of a group back into one.
    Heal {
        /// The group.
        group: String,
    },
    /// Delay deliveries to `to` (from anyone, or only from `from`) by `ms` milliseconds.
    Delay {
        /// The recipient.
        to: String,
        /// Only deliveries from this sender, if given.
        from: Option<String>,
        /// The added delay.
        ms: u64,
    },
    /// Report the daemon's groups (read-only: an operator may ask without `--allow-control`).
    Status {
        /// One group in detail (its components' members), or, if `None`, every group in
        /// brief.
        group: Option<String>,
    },
}

/// A daemon's answer to [`ControlCmd::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Connections open now (members, and clients still proving who they are).
    pub connections: usize,
    /// The groups asked about, by name.
    pub groups: Vec<GroupStatus>,
}

/// One group, as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The group's name.
    pub name: String,
    /// Its run.
    pub run: GroupRun,
    /// Members in the group, over every component.
    pub members: usize,
    /// Its components (more than one while partitioned): view id and members (the members
    /// only when one group was asked about).
    pub components: Vec<ComponentStatus>,
    /// The protocol and epoch of the newest protocol message or data its members sent, as
    /// their envelopes claim them (the daemon checks no signature and holds no key).
    pub claimed: Option<(String, u64)>,
}

/// One component of a group: one view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentStatus {
    /// Its current view's id.
    pub view_id: u64,
    /// Its members, oldest first (empty in a brief status).
    pub members: Vec<String>,
    /// How many members it has.
    pub size: usize,
}

/// The daemon's messages to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The first message on every connection: what the client's first request must sign.
    Challenge(Challenge),
    /// A new view, with its group's run.
    View {
        /// The view.
        view: View,
        /// The group's run.
        run: GroupRun,
        /// Certificates of the members that joined (see [`Delivery::View`]), with those of
        /// the [`ServerMsg::Certificates`] frames just before it.
        certificates: Vec<(String, Vec<u8>)>,
    },
    /// Certificates for the view that follows (a view whose joiners' certificates do not fit
    /// one frame).
    Certificates(Vec<(String, Vec<u8>)>),
    /// A sequenced message.
    Message {
        /// The sender.
        from: String,
        /// The view it belongs to.
        view_id: u64,
        /// The signed envelope.
        bytes: Vec<u8>,
    },
    /// A request succeeded (control commands).
    Ok,
    /// A request was refused; the connection stays open unless the error is fatal.
    Error(String),
    /// The answer to [`ControlCmd::Status`].
    Status(DaemonStatus),
}

/// Encodes a delivery as whole frames: one, or for a view with many certificates, chunks of
/// [`ServerMsg::Certificates`] and then the view.
pub fn delivery_frames(d: Delivery) -> Vec<Vec<u8>> {
    match d {
        Delivery::Message { from, view_id, bytes } => {
            vec![encode_frame(&ServerMsg::Message { from, view_id, bytes: bytes.to_vec() })]
        }
        Delivery::View { view, run, certificates } => {
            let mut frames = Vec::new();
            let mut chunk = Vec::new();
            let mut size = 0;
            for (member, der) in certificates {
                let entry = der.len() + member.len();
                if size + entry > CERTIFICATE_CHUNK_BYTES && !chunk.is_empty() {
                    frames.push(encode_frame(&ServerMsg::Certificates(std::mem::take(&mut chunk))));
                    size = 0;
                }
                size += entry;
                chunk.push((member, der.to_vec()));
            }
            frames.push(encode_frame(&ServerMsg::View { view, run, certificates: chunk }));
            frames
        }
    }
}

/// The most certificate bytes a client holds for one view (a view of thousands of members
/// with typical certificates of under a kilobyte needs a few megabytes).
pub const MAX_VIEW_CERTIFICATE_BYTES: usize = 64 << 20;

/// Reassembles deliveries from the daemon's messages (the client's side of
/// [`delivery_frames`]).
#[derive(Debug, Default)]
pub struct Reassembly {
    certificates: Vec<(String, Vec<u8>)>,
    bytes: usize,
}

impl Reassembly {
    /// The delivery `msg` completes, if any; an error if the certificates of one view exceed
    /// [`MAX_VIEW_CERTIFICATE_BYTES`], or if a message comes between a view's certificates and
    /// the view.
    pub fn push(&mut self, msg: ServerMsg) -> Result<Option<Delivery>, WireError> {
        if let ServerMsg::Certificates(more) | ServerMsg::View { certificates: more, .. } = &msg {
            // Each entry costs its bytes and its bookkeeping, even an empty one.
            self.bytes += more.iter().map(|(m, c)| m.len() + c.len() + 64).sum::<usize>();
            if self.bytes > MAX_VIEW_CERTIFICATE_BYTES {
                return Err(WireError::Malformed(format!(
                    "more than {MAX_VIEW_CERTIFICATE_BYTES} bytes of certificates for one view"
                )));
            }
        }
        match msg {
            ServerMsg::Certificates(more) => {
                self.certificates.extend(more);
                Ok(None)
            }
            ServerMsg::View { view, run, certificates } => {
                let mut all = std::mem::take(&mut self.certificates);
                self.bytes = 0;
                all.extend(certificates);
                let certificates = all.into_iter().map(|(m, c)| (m, Arc::from(c))).collect();
                Ok(Some(Delivery::View { view, run, certificates }))
            }
            ServerMsg::Message { .. } if !self.certificates.is_empty() => Err(
                WireError::Malformed("a message between a view's certificates and the view".into()),
            ),
            ServerMsg::Message { from, view_id, bytes } => {
                Ok(Some(Delivery::Message { from, view_id, bytes: bytes.into() }))
            }
            ServerMsg::Challenge(_)
            | ServerMsg::Ok
            | ServerMsg::Error(_)
            | ServerMsg::Status(_) => Ok(None),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    version: u8,
    msg: T,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not a message of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Another protocol version.
    #[error("wire version {0}, this program speaks {WIRE_VERSION}")]
    Version(u8),
}

/// Encodes a message for a frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    postcard::to_allocvec(&Versioned { version: WIRE_VERSION, msg }).expect("postcard serializes")
}

/// Encodes a message as a whole frame, length prefix included (what [`codec`] would write),
/// without a second copy of the body.
pub fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = postcard::to_extend(&Versioned { version: WIRE_VERSION, msg }, vec![0u8; 4])
        .expect("postcard serializes");
    // Frames are far below 4 GiB: MAX_FRAME_BYTES bounds what is routed.
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decodes a frame.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    let (v, rest): (Versioned<T>, _) = postcard::take_from_bytes(bytes).map_err(|e| {
        // A frame from another version may not even parse as this one: check the byte first.
        match bytes.first() {
            Some(&b) if b != WIRE_VERSION => WireError::Version(b),
            _ => WireError::Malformed(e.to_string()),
        }
    })?;
    if v.version != WIRE_VERSION {
        return Err(WireError::Version(v.version));
    }
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(v.msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_with(certificates: usize, size: usize) -> Delivery {
        let members: Vec<String> = (0..certificates).map(|i| format!("m{i}")).collect();
        let view = View {
            view_id: 3,
            members: members.clone(),
            joined: members.clone(),
            left: Vec::new(),
        };
        let certificates = members.into_iter().map(|m| (m, Arc::from(vec![7u8; size]))).collect();
        Delivery::View { view, run: GroupRun([5; 16]), certificates }
    }

    fn messages(d: Delivery) -> Vec<ServerMsg> {
        delivery_frames(d).iter().map(|f| decode(&f[4..]).expect("a frame decodes")).collect()
    }

    #[test]
    fn a_view_whose_certificates_do_not_fit_one_frame_is_sent_in_chunks_and_rebuilt() {
        let view = view_with(40, 40 * 1024);
        let sent = messages(view.clone());
        assert!(sent.len() >= 2, "chunks, then the view");
        assert!(matches!(sent.last(), Some(ServerMsg::View { .. })));
        let mut r = Reassembly::default();
        let mut got = Vec::new();
        for m in sent {
            got.extend(r.push(m).unwrap());
        }
        assert_eq!(got, [view]);
    }

    #[test]
    fn a_message_inside_a_chunked_view_is_refused() {
        let mut sent = messages(view_with(40, 40 * 1024));
        let mut r = Reassembly::default();
        r.push(sent.remove(0)).unwrap();
        let message = ServerMsg::Message { from: "a".into(), view_id: 3, bytes: vec![1] };
        assert!(matches!(r.push(message), Err(WireError::Malformed(_))));
    }
}
