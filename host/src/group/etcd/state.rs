//! One member's sans-IO picture of its group in etcd: it applies the watch's changes in
//! revision order, turns them into deliveries, and says when this member, as coordinator, has
//! a view to write.
//!
//! Every member applies the same changes in the same order, so every member of a view
//! delivers the same messages in it (a message's send transaction compared the view key's
//! `mod_revision`, so it sits between its view and the next one in the history).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use gka_plugin_api::View;

use super::layout::{
    KeyKind, Keys, MemberRecord, MessageRecord, ViewMember, ViewRecord, MAX_VIEW_MEMBERS,
};
use crate::group::Delivery;

/// One change from the watch (or the initial range read).
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// A key was written.
    Put {
        /// The key.
        key: &'a [u8],
        /// Its value.
        value: &'a [u8],
        /// The revision the key was created at.
        create_revision: i64,
        /// The revision of this write.
        mod_revision: i64,
    },
    /// A key was deleted.
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

#[derive(Debug, Clone)]
struct Entry {
    since: i64,
    certificate: Option<Arc<[u8]>>,
}

#[derive(Debug, Clone)]
struct Delivered {
    view_id: u64,
    members: Vec<String>,
}

/// The view a coordinator should write next (see [`GroupState::next_view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextView {
    /// The record to write (its nonce is the current one, or empty for the caller to draw).
    pub record: ViewRecord,
    /// The view key's `mod_revision` it replaces (0: none yet), for the fence.
    pub replaces: i64,
}

/// One member's picture of its group (see the module docs).
#[derive(Debug)]
pub struct GroupState {
    keys: Keys,
    me: String,
    since: i64,
    members: BTreeMap<String, Entry>,
    /// The view key's latest `mod_revision` (0: no view yet), whether or not its record
    /// decodes: the coordinator's fence.
    view_revision: i64,
    /// The record at `view_revision`, if it decodes.
    view: Option<ViewRecord>,
    /// The last record that decoded (its seq and nonce carry on past one that does not).
    last_good: Option<ViewRecord>,
    delivered: Option<Delivered>,
    out: VecDeque<Delivery>,
    skipped: u64,
    /// Counts the changes to the member keys and the view key.
    membership_changes: u64,
    removed: Option<String>,
}

impl GroupState {
    /// The picture of member `me`, whose member key was created at revision `since`.
    pub fn new(keys: Keys, me: &str, since: i64) -> Self {
        Self {
            keys,
            me: me.to_owned(),
            since,
            members: BTreeMap::new(),
            view_revision: 0,
            view: None,
            last_good: None,
            delivered: None,
            out: VecDeque::new(),
            skipped: 0,
            membership_changes: 0,
            removed: None,
        }
    }

    /// Applies one change. Records that do not decode are skipped (and counted): every member
    /// skips the same ones.
    pub fn apply(&mut self, change: Change<'_>) {
        let key = match change {
            Change::Put { key, .. } | Change::Delete { key } => key,
        };
        if matches!(self.keys.kind(key), KeyKind::Member(_) | KeyKind::View) {
            self.membership_changes += 1;
        }
        match change {
            Change::Put { key, value, create_revision, mod_revision } => {
                self.on_put(self.keys.kind(key), value, create_revision, mod_revision)
            }
            Change::Delete { key } => match self.keys.kind(key) {
                KeyKind::Member(id) => {
                    if self.members.remove(&id).is_some_and(|e| e.since == self.since)
                        && id == self.me
                    {
                        self.removed = Some(
                            "this member's key in etcd was deleted (its lease expired, or it was \
                             removed)"
                                .to_owned(),
                        );
                    }
                }
                KeyKind::View => {
                    self.view_revision = 0;
                    self.view = None;
                }
                KeyKind::Message { .. } | KeyKind::Other => {}
            },
        }
    }

    fn on_put(&mut self, kind: KeyKind, value: &[u8], create_revision: i64, mod_revision: i64) {
        match kind {
            KeyKind::Member(id) => match MemberRecord::decode(value, &id) {
                Ok(record) => {
                    let certificate = record.certificate_der().map(Arc::from);
                    self.members.insert(id, Entry { since: create_revision, certificate });
                }
                Err(_) => self.skipped += 1,
            },
            KeyKind::View => {
                self.view_revision = mod_revision;
                match ViewRecord::decode(value) {
                    Ok(record) => self.on_view(mod_revision, record),
                    Err(_) => {
                        // Nothing is delivered in it, and the coordinator writes over it.
                        self.skipped += 1;
                        self.view = None;
                    }
                }
            }
            KeyKind::Message { view, sender } => match MessageRecord::decode(value) {
                Ok(record) => self.on_message(view, sender, record),
                Err(_) => self.skipped += 1,
            },
            KeyKind::Other => {}
        }
    }

    fn on_view(&mut self, mod_revision: i64, record: ViewRecord) {
        let in_it = record.members.iter().any(|m| m.id == self.me && m.since == self.since);
        let view_id = u64::try_from(mod_revision).unwrap_or_default();
        if self.removed.is_some() {
            // Out of the group: nothing more is delivered.
        } else if in_it {
            let run = record.run().expect("checked when decoded");
            let members = record.ids();
            let (joined, left) = match &self.delivered {
                None => (members.clone(), Vec::new()),
                Some(prev) => (
                    members.iter().filter(|m| !prev.members.contains(m)).cloned().collect(),
                    prev.members.iter().filter(|m| !members.contains(m)).cloned().collect(),
                ),
            };
            // A certificate goes with the incarnation the view names, never a later one's.
            let certificates = record
                .members
                .iter()
                .filter(|m| joined.contains(&m.id))
                .filter_map(|m| {
                    let entry = self.members.get(&m.id).filter(|e| e.since == m.since)?;
                    Some((m.id.clone(), entry.certificate.clone()?))
                })
                .collect();
            self.out.push_back(Delivery::View {
                view: View { view_id, members: members.clone(), joined, left },
                run,
                certificates,
            });
            self.delivered = Some(Delivered { view_id, members });
        } else if self.delivered.is_some() {
            self.removed = Some(format!("view {view_id} does not include this member"));
        }
        self.last_good = Some(record.clone());
        self.view = Some(record);
    }

    fn on_message(&mut self, view: u64, sender: String, record: MessageRecord) {
        let Some(delivered) = &self.delivered else { return };
        if delivered.view_id != view || !delivered.members.contains(&sender) {
            return;
        }
        if record.to.as_ref().is_some_and(|to| *to != self.me) {
            return;
        }
        self.out.push_back(Delivery::Message {
            from: sender,
            view_id: view,
            bytes: record.bytes.into(),
        });
    }

    /// The next delivery.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.out.pop_front()
    }

    /// Why this member is no longer in the group, once it is not.
    pub fn removed(&self) -> Option<&str> {
        self.removed.as_deref()
    }

    /// Counts the changes to member keys and the view key: [`Self::next_view`] can only change
    /// when this does, so a caller need not ask again for every message.
    pub fn membership_changes(&self) -> u64 {
        self.membership_changes
    }

    /// Records skipped because they did not decode.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The members of the view last delivered to this member, if its id is `view_id`.
    pub fn members_of(&self, view_id: u64) -> Option<&[String]> {
        self.delivered.as_ref().filter(|d| d.view_id == view_id).map(|d| d.members.as_slice())
    }

    /// Whether this member coordinates: its member key is the oldest (lowest
    /// `create_revision`) of the group's.
    pub fn is_coordinator(&self) -> bool {
        let oldest = self.members.iter().min_by_key(|(id, e)| (e.since, id.as_str()));
        oldest.is_some_and(|(id, e)| *id == self.me && e.since == self.since)
    }

    /// The view this member should write, if it coordinates and the members differ from the
    /// current view's. A member whose key was created again (a new incarnation) is left out of
    /// the next view and comes back in the one after, so its peers see it leave and join.
    pub fn next_view(&self) -> Option<NextView> {
        if !self.is_coordinator() || self.removed.is_some() {
            return None;
        }
        // A view key whose record does not decode is replaced, whatever it said.
        let current: Option<&[ViewMember]> = match (&self.view, self.view_revision) {
            (Some(v), _) => Some(&v.members),
            (None, 0) => Some(&[]),
            (None, _) => None,
        };
        let previous = current.unwrap_or(&[]);
        let mut target: Vec<ViewMember> = self
            .members
            .iter()
            .filter(|(id, e)| previous.iter().all(|m| m.id != **id || m.since == e.since))
            .map(|(id, e)| ViewMember { id: id.clone(), since: e.since })
            .collect();
        target.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
        target.truncate(MAX_VIEW_MEMBERS);
        if current == Some(target.as_slice()) {
            return None;
        }
        let record = ViewRecord {
            seq: self.last_good.as_ref().map_or(1, |v| v.seq.saturating_add(1)),
            members: target,
            nonce: self.last_good.as_ref().map(|v| v.nonce.clone()).unwrap_or_default(),
        };
        Some(NextView { record, replaces: self.view_revision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Written = (Vec<u8>, Option<Vec<u8>>, i64, i64);

    struct Log {
        keys: Keys,
        rev: i64,
        created: BTreeMap<Vec<u8>, i64>,
        /// Key, value (None: deleted), create revision, revision.
        history: Vec<Written>,
    }

    impl Log {
        fn new() -> Self {
            Self {
                keys: Keys::new("g").unwrap(),
                rev: 1,
                created: BTreeMap::new(),
                history: vec![],
            }
        }
        fn put(&mut self, key: String, value: Vec<u8>) -> i64 {
            self.rev += 1;
            let key = key.into_bytes();
            let created = *self.created.entry(key.clone()).or_insert(self.rev);
            self.history.push((key, Some(value), created, self.rev));
            self.rev
        }
        fn delete(&mut self, key: String) {
            self.rev += 1;
            let key = key.into_bytes();
            self.created.remove(&key);
            self.history.push((key, None, 0, self.rev));
        }
        fn join(&mut self, id: &str) -> i64 {
            let record = MemberRecord { id: id.into(), incarnation: 0, certificate: None };
            self.put(self.keys.member(id), record.encode())
        }
        fn replay(&self, state: &mut GroupState, from: i64) -> Vec<Delivery> {
            for (key, value, created, rev) in &self.history {
                if *rev < from {
                    continue;
                }
                let change = match value {
                    Some(value) => {
                        Change::Put { key, value, create_revision: *created, mod_revision: *rev }
                    }
                    None => Change::Delete { key },
                };
                state.apply(change);
            }
            std::iter::from_fn(|| state.poll_delivery()).collect()
        }
        /// Lets the coordinator among `states` write its view, as the endpoint would.
        fn coordinate(&mut self, state: &mut GroupState) -> Option<i64> {
            let mut next = state.next_view()?;
            if next.record.nonce.is_empty() {
                next.record.nonce = "ab".repeat(16);
            }
            Some(self.put(self.keys.view(), next.record.encode()))
        }
    }

    fn view_of(d: &Delivery) -> Option<&View> {
        match d {
            Delivery::View { view, .. } => Some(view),
            Delivery::Message { .. } => None,
        }
    }

    #[test]
    fn the_oldest_member_writes_views_and_everyone_delivers_them_in_order() {
        let mut log = Log::new();
        let a = log.join("a");
        let mut sa = GroupState::new(log.keys.clone(), "a", a);
        log.replay(&mut sa, 0);
        assert!(sa.is_coordinator());
        let v1 = log.coordinate(&mut sa).unwrap();
        let b = log.join("b");
        let c = log.join("c");
        let mut sb = GroupState::new(log.keys.clone(), "b", b);
        let mut sc = GroupState::new(log.keys.clone(), "c", c);
        let da = log.replay(&mut sa, v1);
        assert_eq!(view_of(&da[0]).unwrap().members, ["a"]);
        assert!(!sb.is_coordinator() || sb.next_view().is_none());
        // Two joins within the settle window: one merge view.
        let v2 = log.coordinate(&mut sa).unwrap();
        assert!(log.coordinate(&mut sa).is_some(), "a has not seen its own view yet");
        log.history.pop();
        log.rev -= 1;
        let msg = MessageRecord { to: None, bytes: b"hi".to_vec() };
        log.put(log.keys.message(v2 as u64, "b", 0), msg.encode());
        let to_c = MessageRecord { to: Some("c".into()), bytes: b"c only".to_vec() };
        log.put(log.keys.message(v2 as u64, "a", 0), to_c.encode());
        let stale = MessageRecord { to: None, bytes: b"old view".to_vec() };
        log.put(log.keys.message(v1 as u64, "a", 1), stale.encode());
        let da = log.replay(&mut sa, v2);
        let db = log.replay(&mut sb, b + 1);
        let dc = log.replay(&mut sc, c + 1);
        let v = view_of(&db[0]).unwrap();
        assert_eq!(
            (v.members.clone(), v.joined.clone()),
            (vec!["a".into(), "b".into(), "c".into()], v.members.clone())
        );
        assert_eq!(view_of(&da[0]).unwrap().joined, ["b", "c"]);
        assert_eq!(da.len(), 2, "a: the view and b's broadcast, not c's unicast or the stale one");
        assert_eq!(db.len(), 2);
        assert_eq!(dc.len(), 3);
        assert_eq!(da[1], db[1]);
        assert!(sa.next_view().is_none());
    }

    #[test]
    fn departures_reincarnations_and_a_new_coordinator() {
        let mut log = Log::new();
        let a = log.join("a");
        let b = log.join("b");
        let c = log.join("c");
        let mut sa = GroupState::new(log.keys.clone(), "a", a);
        let mut sb = GroupState::new(log.keys.clone(), "b", b);
        let mut sc = GroupState::new(log.keys.clone(), "c", c);
        log.replay(&mut sa, 0);
        let v = log.coordinate(&mut sa).unwrap();
        log.replay(&mut sa, v);
        log.replay(&mut sb, 0);
        log.replay(&mut sc, 0);
        // The coordinator's lease expires: b takes over and writes a view without it.
        log.delete(log.keys.member("a"));
        let from = log.rev;
        log.replay(&mut sa, from);
        assert!(sa.removed().is_some());
        log.replay(&mut sb, from);
        log.replay(&mut sc, from);
        assert!(sb.is_coordinator() && !sc.is_coordinator());
        let v = log.coordinate(&mut sb).unwrap();
        let db = log.replay(&mut sb, v);
        assert_eq!(view_of(&db[0]).unwrap().left, ["a"]);
        log.replay(&mut sc, v);
        // c restarts: its key is deleted and created again; the next view leaves it out, the
        // one after brings it back.
        log.delete(log.keys.member("c"));
        let c2 = log.join("c");
        let from = log.rev - 1;
        log.replay(&mut sb, from);
        let v1 = log.coordinate(&mut sb).unwrap();
        log.replay(&mut sb, v1);
        let v2 = log.coordinate(&mut sb).unwrap();
        let db = log.replay(&mut sb, v2);
        assert_eq!(view_of(&db[0]).unwrap().members, ["b", "c"]);
        assert_eq!(view_of(&db[0]).unwrap().joined, ["c"]);
        let mut sc2 = GroupState::new(log.keys.clone(), "c", c2);
        let dc2 = log.replay(&mut sc2, 0);
        assert_eq!(
            dc2.iter().filter_map(view_of).count(),
            1,
            "only the view with this incarnation"
        );
        // The old incarnation sees a view without it: it is out.
        log.replay(&mut sc, from);
        assert!(sc.removed().is_some());
    }

    #[test]
    fn garbage_is_skipped_alike_everywhere() {
        let mut log = Log::new();
        let a = log.join("a");
        let mut sa = GroupState::new(log.keys.clone(), "a", a);
        log.replay(&mut sa, 0);
        let v = log.coordinate(&mut sa).unwrap();
        log.put(log.keys.message(v as u64, "a", 0), vec![0xff; 4]);
        log.put(log.keys.member("z"), b"{}".to_vec());
        log.put(log.keys.view(), b"not json".to_vec());
        log.put(
            log.keys.message(v as u64, "a", 1),
            vec![0; super::super::layout::MAX_MESSAGE + 2048],
        );
        let d = log.replay(&mut sa, v);
        assert_eq!(d.len(), 1);
        assert_eq!(sa.skipped(), 4);
        // A view key that does not decode is written over by the coordinator, fenced by its
        // own revision, and delivery goes on in the new view.
        let garbage = log.rev - 1;
        let next = sa.next_view().expect("the coordinator replaces the view");
        assert_eq!(next.replaces, garbage);
        assert_eq!(next.record.seq, 2, "the seq carries on from the last view that decoded");
        let v2 = log.coordinate(&mut sa).unwrap();
        log.put(
            log.keys.message(v2 as u64, "a", 2),
            MessageRecord { to: None, bytes: vec![7] }.encode(),
        );
        let d = log.replay(&mut sa, v2);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(sa.next_view().is_none());
    }

    #[test]
    fn a_member_out_of_the_group_delivers_nothing_more_and_certificates_follow_incarnations() {
        let mut log = Log::new();
        let with_cert = |id: &str, cert: &str| MemberRecord {
            id: id.into(),
            incarnation: 0,
            certificate: Some(cert.into()),
        };
        let a = log.put(log.keys.member("a"), with_cert("a", "aa").encode());
        let b = log.put(log.keys.member("b"), with_cert("b", "bb").encode());
        let mut sa = GroupState::new(log.keys.clone(), "a", a);
        let mut sb = GroupState::new(log.keys.clone(), "b", b);
        log.replay(&mut sa, 0);
        // b restarts between the coordinator's reading and its writing: the view names b's
        // first incarnation, whose certificate must not be confused with the second's.
        let mut next = sa.next_view().expect("a first view");
        let from = log.rev + 1;
        log.delete(log.keys.member("b"));
        log.put(log.keys.member("b"), with_cert("b", "cc").encode());
        next.record.nonce = "ab".repeat(16);
        log.put(log.keys.view(), next.record.encode());
        let d = log.replay(&mut sa, from);
        let Delivery::View { certificates, .. } = &d[0] else { panic!("a view") };
        assert_eq!(certificates.len(), 1, "only a's own: b's key is another incarnation now");
        let db = log.replay(&mut sb, 0);
        assert!(sb.removed().is_some());
        assert!(db.iter().all(|d| matches!(d, Delivery::View { .. })));
        let v2 = log.coordinate(&mut sa).unwrap();
        log.replay(&mut sb, v2);
        assert!(sb.poll_delivery().is_none(), "nothing after its removal");
    }
}
