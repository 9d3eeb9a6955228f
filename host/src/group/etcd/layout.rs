//! Where a group lives in etcd's key space, and the records stored there.
//!
//! ```text
//! /gka/<group>/members/<id>              MemberRecord (JSON), put with the member's lease
//! /gka/<group>/view                      ViewRecord (JSON); the view id is its mod_revision
//! /gka/<group>/msg/<view>/<sender>/<seq> MessageRecord (postcard), one key per message
//! ```
//!
//! The member and view records are JSON so that an operator can read them with `etcdctl get`;
//! messages are compact binary. Every record is bounded, and decoding never panics: a record
//! that does not decode is skipped by every member alike (they all see the same bytes), so
//! agreed order and view synchrony survive a writer that stores garbage.

use serde::{Deserialize, Serialize};

use crate::identity::valid_member_id;

/// The longest member record, bytes: a certificate of up to
/// [`MAX_CERTIFICATE_BYTES`](crate::net::wire::MAX_CERTIFICATE_BYTES) (16 KiB), hex-encoded,
/// and change.
pub const MAX_MEMBER_RECORD: usize = 40 * 1024;

/// The most members a view record may list: a record of as many members with the longest ids
/// stays within etcd's default request limit (1.5 MiB). The coordinator admits the oldest
/// members up to it; younger ones wait for a place.
pub const MAX_VIEW_MEMBERS: usize = 5_000;

/// The longest view record, bytes.
pub const MAX_VIEW_RECORD: usize = 1_400 * 1024;

/// The longest message any member stores or delivers, bytes: the same at every member, so
/// that every member skips the same messages.
pub const MAX_MESSAGE: usize = 1 << 20;

/// The key prefixes of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    root: String,
}

/// What a key under a group's prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// A member's record.
    Member(String),
    /// The view.
    View,
    /// A message sent in `view` by `sender`.
    Message {
        /// The view it was sent in.
        view: u64,
        /// Its sender.
        sender: String,
    },
    /// Anything else (ignored).
    Other,
}

impl Keys {
    /// The keys of `group`, whose name follows the member-id rules (letters, digits, `-`, `_`
    /// and `.`, at most 128 bytes): it becomes a path segment.
    pub fn new(group: &str) -> Result<Self, String> {
        if !valid_member_id(group) {
            return Err(format!(
                "the group name {group:?} cannot name etcd keys: use 1 to 128 letters, digits, \
                 '-', '_' or '.', not starting with '.'"
            ));
        }
        Ok(Self { root: format!("/gka/{group}/") })
    }

    /// Everything of the group (the watch's prefix).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The prefix of every member record.
    pub fn members(&self) -> String {
        format!("{}members/", self.root)
    }

    /// One member's record.
    pub fn member(&self, id: &str) -> String {
        format!("{}members/{id}", self.root)
    }

    /// The view.
    pub fn view(&self) -> String {
        format!("{}view", self.root)
    }

    /// The prefix of every message.
    pub fn messages(&self) -> String {
        format!("{}msg/", self.root)
    }

    /// One message's key (zero-padded so that keys sort in sending order).
    pub fn message(&self, view: u64, sender: &str, seq: u64) -> String {
        format!("{}msg/{view:020}/{sender}/{seq:020}", self.root)
    }

    /// What `key` is.
    pub fn kind(&self, key: &[u8]) -> KeyKind {
        let Some(rest) = std::str::from_utf8(key).ok().and_then(|k| k.strip_prefix(&self.root))
        else {
            return KeyKind::Other;
        };
        if rest == "view" {
            return KeyKind::View;
        }
        if let Some(id) = rest.strip_prefix("members/") {
            return if valid_member_id(id) {
                KeyKind::Member(id.to_owned())
            } else {
                KeyKind::Other
            };
        }
        if let Some(msg) = rest.strip_prefix("msg/") {
            let mut parts = msg.split('/');
            if let (Some(view), Some(sender), Some(seq), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            {
                if let (Ok(view), true, Ok(_)) =
                    (view.parse::<u64>(), valid_member_id(sender), seq.parse::<u64>())
                {
                    return KeyKind::Message { view, sender: sender.to_owned() };
                }
            }
        }
        KeyKind::Other
    }
}

/// A member's record: who it is, which incarnation, and the certificate it presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member id (the same as the key's last segment).
    pub id: String,
    /// A random number drawn at each join, for operators telling incarnations apart (the
    /// layer itself tells them apart by the key's `create_revision`).
    pub incarnation: u64,
    /// The certificate (DER, hex) it presents to its peers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

/// One member of a view: its id and the `create_revision` of the member key it joined with
/// (its incarnation; members are ordered by it, oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewMember {
    /// The member id.
    pub id: String,
    /// The `create_revision` of its member key.
    pub since: i64,
}

/// The view record the coordinator writes. It lists the members only: each member computes
/// who joined and who left from its own previous view, and a record with the changes as well
/// would not fit etcd's request limit for the largest groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRecord {
    /// Counts the views written under this group's run.
    pub seq: u64,
    /// The members, oldest first.
    pub members: Vec<ViewMember>,
    /// The group run's nonce (hex, 16 bytes), drawn when the view key is first written.
    pub nonce: String,
}

/// One message: its recipient (`None` for everyone) and its bytes (a signed envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The recipient, or everyone.
    pub to: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Why a record does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Longer than its bound.
    #[error("the record is {len} bytes, over the {max}-byte bound")]
    TooLong {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Not the expected encoding.
    #[error("the record does not decode: {0}")]
    Malformed(String),
}

fn bounded(bytes: &[u8], max: usize) -> Result<(), RecordError> {
    if bytes.len() > max {
        return Err(RecordError::TooLong { len: bytes.len(), max });
    }
    Ok(())
}

impl MemberRecord {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a member record serializes")
    }

    /// Decodes a record stored under `members/<id>`: it must name that id.
    pub fn decode(bytes: &[u8], id: &str) -> Result<Self, RecordError> {
        bounded(bytes, MAX_MEMBER_RECORD)?;
        let record: Self =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if record.id != id {
            return Err(RecordError::Malformed(format!(
                "the record under {id:?} names {:?}",
                record.id
            )));
        }
        Ok(record)
    }

    /// The certificate's DER bytes, if it has one that decodes.
    pub fn certificate_der(&self) -> Option<Vec<u8>> {
        self.certificate.as_deref().and_then(|h| hex::decode(h).ok())
    }
}

impl ViewRecord {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a view record serializes")
    }

    /// Decodes a view record: bounded, with valid and distinct member ids.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        bounded(bytes, MAX_VIEW_RECORD)?;
        let record: Self =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if record.members.len() > MAX_VIEW_MEMBERS {
            return Err(RecordError::Malformed(format!(
                "{} members, over the bound of {MAX_VIEW_MEMBERS}",
                record.members.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &record.members {
            if !valid_member_id(&m.id) || !seen.insert(m.id.as_str()) {
                return Err(RecordError::Malformed(format!(
                    "member {:?} is invalid or twice",
                    m.id
                )));
            }
        }
        record.run()?;
        Ok(record)
    }

    /// The group run the nonce names.
    pub fn run(&self) -> Result<super::super::GroupRun, RecordError> {
        let bytes = hex::decode(&self.nonce)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .ok_or_else(|| RecordError::Malformed(format!("nonce {:?}", self.nonce)))?;
        Ok(super::super::GroupRun(bytes))
    }

    /// The member ids, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.members.iter().map(|m| m.id.clone()).collect()
    }
}

impl MessageRecord {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a message record serializes")
    }

    /// Decodes a message record of at most [`MAX_MESSAGE`] bytes and change.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        bounded(bytes, MAX_MESSAGE + 1024)?;
        postcard::from_bytes(bytes).map_err(|e| RecordError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_kind_and_nothing_else() {
        let keys = Keys::new("g1").unwrap();
        assert_eq!(keys.kind(keys.member("alice").as_bytes()), KeyKind::Member("alice".into()));
        assert_eq!(keys.kind(keys.view().as_bytes()), KeyKind::View);
        assert_eq!(
            keys.kind(keys.message(42, "bob", 7).as_bytes()),
            KeyKind::Message { view: 42, sender: "bob".into() }
        );
        for other in [
            "/gka/g2/view",
            "/gka/g1/members/",
            "/gka/g1/members/a/b",
            "/gka/g1/msg/x/bob/1",
            "/gka/g1/msg/1/bob",
            "/gka/g1/msg/1/bob/1/2",
            "/gka/g1/views",
        ] {
            assert_eq!(keys.kind(other.as_bytes()), KeyKind::Other, "{other}");
        }
        assert_eq!(keys.kind(&[0xff, 0xfe]), KeyKind::Other);
        assert!(Keys::new("a/b").is_err());
        assert!(Keys::new("").is_err());
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let m =
            MemberRecord { id: "alice".into(), incarnation: 9, certificate: Some("00ff".into()) };
        assert_eq!(MemberRecord::decode(&m.encode(), "alice").unwrap(), m);
        assert!(MemberRecord::decode(&m.encode(), "bob").is_err());
        assert!(MemberRecord::decode(&vec![b' '; MAX_MEMBER_RECORD + 1], "alice").is_err());
        assert_eq!(m.certificate_der(), Some(vec![0, 255]));

        let v = ViewRecord {
            seq: 1,
            members: vec![ViewMember { id: "a".into(), since: 5 }],
            nonce: "00".repeat(16),
        };
        assert_eq!(ViewRecord::decode(&v.encode()).unwrap(), v);
        let twice =
            ViewRecord { members: vec![v.members[0].clone(), v.members[0].clone()], ..v.clone() };
        assert!(ViewRecord::decode(&twice.encode()).is_err());
        let bad_nonce = ViewRecord { nonce: "00".into(), ..v.clone() };
        assert!(ViewRecord::decode(&bad_nonce.encode()).is_err());
        assert!(ViewRecord::decode(b"{").is_err());

        let msg = MessageRecord { to: Some("b".into()), bytes: vec![1, 2, 3] };
        assert_eq!(MessageRecord::decode(&msg.encode()).unwrap(), msg);
        assert!(MessageRecord::decode(&vec![0; MAX_MESSAGE + 1025]).is_err());
        assert!(MessageRecord::decode(&[0xff; 8]).is_err());
        // The largest view fits etcd's default request limit.
        let largest = ViewRecord {
            seq: u64::MAX,
            members: (0..MAX_VIEW_MEMBERS)
                .map(|i| ViewMember { id: format!("{i:0>128}"), since: i64::MAX })
                .collect(),
            nonce: "00".repeat(16),
        };
        let len = largest.encode().len();
        assert!(len <= MAX_VIEW_RECORD, "{len}");
        const { assert!(MAX_VIEW_RECORD < 1_572_864, "within etcd's default request limit") };
        assert_eq!(ViewRecord::decode(&largest.encode()).unwrap(), largest);
    }
}
