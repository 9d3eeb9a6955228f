//! Who takes part in key agreement when members identify by certificate.
//!
//! The group layer hands each member the certificates its peers presented when they joined
//! ([`crate::group::Delivery::View`]). At every view, each member checks them under its own
//! access rules: the domain's CA signed it, it names the member it is delivered for, it is
//! valid now and not revoked, and the group's rule lets its domain and roles in. The keys of
//! the admitted members are the only ones the envelope checker accepts in that view; the
//! others are reported, with the rule's reason, and take no part in the key.
//!
//! **The same decision at every member.** Certificates and revocation lists are signed by
//! their CAs, so every member checks the same signed material. A revocation list is the only
//! part that changes while a group runs, and it changes at one point of the agreed order: a
//! member that reads a newer list from disk keeps the one in force and sends the newer one
//! ([`super::Control::Revocation`]); every member applies it when it is delivered. Members may
//! start a view with different lists in force (a joiner with older or newer files, the two
//! sides of a healed partition), so in every view with joiners each member also sends the
//! lists in force that revoke someone still in the view. What a delivered list does depends on
//! the list and the view alone, never on what the member held before: if it revokes members
//! of the view (by their certificates' serials), every member takes them out of the key and
//! starts a fresh agreement at that delivery, once per list and view, whether the list was
//! news to it or not. Other rule edits (domains, group rules) take effect at a member's next
//! view.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gka_plugin_api::View;
use time::OffsetDateTime;

use super::control::Control;
use super::events::{MemberError, MemberEvent};
use super::MemberCore;
use crate::envelope::EnvelopeChecker;
use crate::group::Certificates;
use crate::identity::access::{AccessRules, Applied, Refusal};
use crate::identity::cert::{read_cert, read_crl, CertInfo, TrustedDomain};
use crate::identity::TrustStore;

/// What a member decided about a view's members.
#[derive(Debug, Default)]
pub(super) struct Admission {
    /// The admitted members' keys.
    pub(super) keys: TrustStore,
    /// The others, with why.
    pub(super) refused: Vec<(String, String)>,
}

/// A member's certificate-based view of its peers (see the module docs).
#[derive(Debug)]
pub(super) struct CertifiedPeers {
    group: String,
    /// The rules in force: their revocation lists change only at points of the agreed order.
    in_force: AccessRules,
    /// The newest rules read from disk, in force (but for their revocation lists) from the
    /// next view.
    on_disk: AccessRules,
    /// Whether `on_disk` changed since the last view.
    disk_changed: bool,
    /// The certificates of the current view's members, with the domain and serial they name
    /// (read once, when they arrive; `None` for one that does not parse).
    certificates: BTreeMap<String, Presented>,
    /// What each admitted certificate said, until the rules change.
    verified: BTreeMap<String, CertInfo>,
    /// The wall-clock time certificates are checked at.
    wall: OffsetDateTime,
    /// The lists (domain, number) that took members out of the key in this view.
    acted: BTreeSet<(String, u64)>,
}

/// A certificate a member presented.
#[derive(Debug)]
struct Presented {
    der: Arc<[u8]>,
    /// (domain, serial), as the certificate claims them.
    names: Option<(String, String)>,
}

/// What a delivered revocation list does.
#[derive(Debug)]
pub(super) struct Delivered {
    /// The list went into force here (it was newer than this member's).
    pub(super) applied: Option<Applied>,
    /// The view's members it revokes, the first time this list is delivered in the view
    /// (empty otherwise): every member takes them out of the key.
    pub(super) revokes: Vec<String>,
}

impl CertifiedPeers {
    pub(super) fn new(group: &str, rules: AccessRules, wall: OffsetDateTime) -> Self {
        Self {
            group: group.to_owned(),
            in_force: rules.clone(),
            on_disk: rules,
            disk_changed: false,
            certificates: BTreeMap::new(),
            verified: BTreeMap::new(),
            wall,
            acted: BTreeSet::new(),
        }
    }

    pub(super) fn set_wall_time(&mut self, wall: OffsetDateTime) {
        self.wall = wall;
    }

    /// New rules read from disk. Returns the revocation lists in them that are newer than
    /// those in force: the member sends them to the group.
    pub(super) fn set_rules(&mut self, rules: AccessRules) -> Vec<Vec<u8>> {
        self.on_disk = rules;
        self.disk_changed = true;
        self.newer_on_disk()
    }

    /// Revocation lists on disk newer than those in force.
    pub(super) fn newer_on_disk(&self) -> Vec<Vec<u8>> {
        self.on_disk.newer_revocation_lists(&self.in_force)
    }

    /// The domain the certificate `member` presented in this view names, if it parses.
    pub(super) fn domain_of(&self, member: &str) -> Option<&str> {
        self.certificates.get(member)?.names.as_ref().map(|(domain, _)| domain.as_str())
    }

    /// The revocation lists in force that revoke one of `members`.
    pub(super) fn lists_revoking(&self, members: &[String]) -> Vec<Vec<u8>> {
        let mut domains: Vec<&str> = members
            .iter()
            .filter_map(|m| self.certificates.get(m)?.names.as_ref())
            .filter(|(d, serial)| self.in_force.domain(d).is_some_and(|t| t.revokes(serial)))
            .map(|(d, _)| d.as_str())
            .collect();
        domains.sort_unstable();
        domains.dedup();
        domains
            .into_iter()
            .filter_map(|d| Some(self.in_force.domain(d)?.revocation_list()?.to_vec()))
            .collect()
    }

    /// The members among `members` whose certificates the checked list `list` revokes.
    fn revoked_by(&self, list: &TrustedDomain, members: &[String]) -> Vec<String> {
        members
            .iter()
            .filter(|m| {
                self.certificates
                    .get(*m)
                    .and_then(|p| p.names.as_ref())
                    .is_some_and(|(domain, serial)| *domain == list.domain && list.revokes(serial))
            })
            .cloned()
            .collect()
    }

    /// A new view: keeps the certificates of the members still in it, takes those delivered
    /// with it, puts the rules read from disk in force (keeping the revocation lists in force),
    /// and decides who is in.
    pub(super) fn on_view(&mut self, view: &View, delivered: &Certificates) -> Admission {
        self.acted.clear();
        self.certificates.retain(|m, _| view.members.contains(m));
        self.verified.retain(|m, _| view.members.contains(m));
        for (member, der) in delivered.iter().filter(|(m, _)| view.joined.contains(m)) {
            self.verified.remove(member);
            let names = read_cert(der).ok().map(|c| (c.domain, c.serial));
            self.certificates.insert(member.clone(), Presented { der: der.clone(), names });
        }
        if std::mem::take(&mut self.disk_changed) {
            self.in_force = self.on_disk.clone().keeping_revocations_of(&self.in_force);
            self.verified.clear();
        }
        self.admit(&view.members)
    }

    /// A revocation list delivered through the group in a view of `members`: put in force if
    /// it is newer, and the members it revokes (see the module docs).
    pub(super) fn deliver(&mut self, der: &[u8], members: &[String]) -> Result<Delivered, Refusal> {
        let claimed = read_crl(der)?;
        // The same list again (every member sends the lists in force to a view with joiners):
        // it did all it does at its first delivery.
        let key = (claimed.domain, claimed.number.unwrap_or(0));
        if self.acted.contains(&key) {
            return Ok(Delivered { applied: None, revokes: Vec::new() });
        }
        let checked = self.in_force.checked_revocation_list(der)?;
        self.acted.insert(key);
        let revokes = self.revoked_by(&checked, members);
        let applied = self.in_force.put_in_force(checked);
        if applied.is_some() {
            // Only what the new list revokes can have changed.
            let in_force = &self.in_force;
            self.verified.retain(|_, info| {
                in_force.domain(&info.domain).is_none_or(|d| !d.revokes(&info.serial))
            });
        }
        Ok(Delivered { applied, revokes })
    }

    /// Checks `members`' certificates under the rules in force.
    pub(super) fn admit(&mut self, members: &[String]) -> Admission {
        let mut admission = Admission::default();
        let now = self.wall.unix_timestamp();
        for member in members {
            let cached = self
                .verified
                .get(member)
                .filter(|info| info.not_before <= now && now <= info.not_after)
                .cloned();
            let checked = match cached {
                Some(info) => Ok(info),
                None => self.check(member),
            };
            match checked {
                Ok(info) => {
                    admission.keys.insert(member, info.public.clone());
                    self.verified.insert(member.clone(), info);
                }
                Err(why) => admission.refused.push((member.clone(), why)),
            }
        }
        admission
    }

    fn check(&self, member: &str) -> Result<CertInfo, String> {
        let presented =
            self.certificates.get(member).ok_or_else(|| "presented no certificate".to_owned())?;
        let info = self
            .in_force
            .admit(&self.group, &presented.der, self.wall)
            .map_err(|r| r.to_string())?;
        if info.id != member {
            return Err(format!("presented the certificate of {:?}", info.id));
        }
        Ok(info)
    }
}

impl MemberCore {
    /// Identifies peers by the certificates the group layer delivers with each view, checked
    /// under `rules` at wall-clock time `wall` (see the module docs), instead of by the
    /// checker's fixed trust store.
    pub fn with_access_rules(mut self, rules: AccessRules, wall: OffsetDateTime) -> Self {
        self.peers = Some(CertifiedPeers::new(&self.group, rules, wall));
        self.checker.set_trust(TrustStore::default());
        self
    }

    /// The wall-clock time, for certificate validity (the runtime sets it before each input).
    pub fn set_wall_time(&mut self, wall: OffsetDateTime) {
        if let Some(peers) = &mut self.peers {
            peers.set_wall_time(wall);
        }
    }

    /// Access rules read again from disk: in force from the next view, except for newer
    /// revocation lists, which this member sends to the group to apply at their delivery.
    /// Ignored by a member without access rules.
    pub fn set_access_rules(&mut self, rules: AccessRules) {
        let Some(peers) = &mut self.peers else { return };
        let newer = peers.set_rules(rules);
        if self.view.is_some() {
            for list in newer {
                self.send_control(None, &Control::Revocation(list));
            }
        }
    }

    /// Who of `view` takes part in key agreement, in view order, and who does not, with why.
    /// Sets the envelope checker's keys for the view.
    pub(super) fn admit_view(
        &mut self,
        view: &View,
        certificates: &Certificates,
    ) -> (Vec<String>, Vec<(String, String)>) {
        match &mut self.peers {
            None => by_trust_store(view, &self.checker),
            Some(peers) => {
                let admission = peers.on_view(view, certificates);
                let members =
                    view.members.iter().filter(|m| admission.keys.contains(m)).cloned().collect();
                self.checker.set_trust(admission.keys);
                (members, admission.refused)
            }
        }
    }

    /// At a view's start: every member sends the newer lists it read, and, when members
    /// joined (they may hold other lists), the lists in force that revoke someone in the view.
    pub(super) fn send_revocations(&mut self, view: &View) {
        let Some(peers) = &self.peers else { return };
        let mut lists = peers.newer_on_disk();
        if !view.joined.is_empty() {
            lists.extend(peers.lists_revoking(&view.members));
        }
        lists.sort();
        lists.dedup();
        for list in lists {
            self.send_control(None, &Control::Revocation(list));
        }
    }

    /// A revocation list delivered from `from`: put in force if it is newer; if it revokes
    /// members of the view, every member (whatever it held before) takes them out of the key
    /// and starts a fresh agreement here, as for members excluded for stalling.
    pub(super) fn on_revocation(&mut self, from: &str, list: &[u8]) -> Result<(), MemberError> {
        let (Some(view), Some(peers)) = (self.view.as_ref(), self.peers.as_mut()) else {
            return Ok(());
        };
        let delivered = match peers.deliver(list, view.members.members()) {
            Ok(delivered) => delivered,
            // A domain this member does not trust: its list says nothing about its peers
            // (members whose rules trust more domains send them too).
            Err(Refusal::UnknownDomain(_)) => return Ok(()),
            Err(refusal) => {
                self.error(from, format!("revocation list refused: {refusal}"));
                return Ok(());
            }
        };
        if let Some(Applied { domain, number }) = delivered.applied {
            let from = from.to_owned();
            self.events.push_back(MemberEvent::RevocationApplied { domain, number, from });
        }
        if delivered.revokes.is_empty() {
            return Ok(());
        }
        // Only the revoked members' keys go: the others stay as admitted at the view.
        self.checker.distrust(&delivered.revokes);
        let members = delivered
            .revokes
            .iter()
            .map(|m| (m.clone(), peers.check(m).err().unwrap_or_else(|| "revoked".to_owned())))
            .collect();
        self.events.push_back(MemberEvent::NotInKey { members });
        self.exclude(delivered.revokes)
    }
}

/// A view's members split by a fixed trust store.
fn by_trust_store(view: &View, checker: &EnvelopeChecker) -> (Vec<String>, Vec<(String, String)>) {
    let (members, others): (Vec<String>, Vec<String>) =
        view.members.iter().cloned().partition(|m| checker.trusts(m));
    let why = "not in this member's trust store";
    (members, others.into_iter().map(|m| (m, why.to_owned())).collect())
}
