//! Access rules: which domains a member or daemon trusts, and which domains and roles may join
//! which group.
//!
//! ```toml
//! # Domains whose `operator` certificates may inject faults at a daemon that allows it.
//! operators = ["red"]
//!
//! # The domains trusted here: each one's CA certificate and, if it publishes one, its
//! # revocation list (paths relative to this file).
//! [domain.red]
//! ca = "red/ca.crt"
//! crl = "red/crl.pem"
//!
//! [domain.blue]
//! ca = "blue/ca.crt"
//!
//! # Who may join a group: the first rule whose name matches (`*` matches any run of
//! # characters), by domain and role (default: member).
//! [[group]]
//! name = "lab"
//! domains = ["red", "blue"]
//!
//! [[group]]
//! name = "ops-*"
//! domains = ["red"]
//! roles = ["member", "operator"]
//! ```
//!
//! Every party edits only its own CA and revocation list; the rules name the other parties'
//! CA certificates. [`AccessRules::parse`] reports every problem with its line and column: bad
//! TOML, an unknown field, a domain a rule names but does not define, an unreadable or invalid
//! CA certificate or revocation list (or one its CA did not sign), a CA certificate for another
//! domain than its table's name, an unknown role.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use toml::Spanned;

use super::cert::{der_of_pem, CertError, CertInfo, Role, TrustedDomain};
use crate::located::{at, toml_error, Located};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainFile {
    ca: Spanned<String>,
    crl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    name: Spanned<String>,
    domains: Vec<Spanned<String>>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    domain: BTreeMap<Spanned<String>, DomainFile>,
    #[serde(default)]
    group: Vec<GroupFile>,
    #[serde(default)]
    operators: Vec<Spanned<String>>,
}

/// Who may join a group.
#[derive(Debug, Clone)]
pub struct GroupRule {
    /// The group name, or a pattern with `*`.
    pub pattern: String,
    /// The domains whose members may join.
    pub domains: BTreeSet<String>,
    /// The roles a certificate must hold (any one of them).
    pub roles: BTreeSet<Role>,
}

/// Parsed, checked access rules (see the module docs).
#[derive(Debug, Clone)]
pub struct AccessRules {
    domains: BTreeMap<String, TrustedDomain>,
    groups: Vec<GroupRule>,
    operators: BTreeSet<String>,
    files: Vec<PathBuf>,
}

/// Why a certificate is not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No rule names the group.
    #[error("no access rule lets anyone into group {0:?}")]
    NoRule(String),
    /// The certificate's domain is not trusted here.
    #[error("domain {0:?} is not trusted here")]
    UnknownDomain(String),
    /// The certificate does not verify (issuer, validity, revocation).
    #[error("{0}")]
    Certificate(#[from] CertError),
    /// The domain may not join this group.
    #[error("domain {domain:?} may not join group {group:?}")]
    DomainNotAllowed {
        /// The domain.
        domain: String,
        /// The group.
        group: String,
    },
    /// The certificate lacks the role the rule asks for.
    #[error("{id:?} holds none of the roles group {group:?} asks for")]
    RoleNotAllowed {
        /// The member.
        id: String,
        /// The group.
        group: String,
    },
}

impl Refusal {
    /// A short stable label (for metrics).
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoRule(_) => "no_rule",
            Self::UnknownDomain(_) => "unknown_domain",
            Self::Certificate(CertError::Revoked { .. }) => "revoked",
            Self::Certificate(CertError::Expired { .. }) => "expired",
            Self::Certificate(_) => "bad_certificate",
            Self::DomainNotAllowed { .. } => "domain_not_allowed",
            Self::RoleNotAllowed { .. } => "role_not_allowed",
        }
    }
}

/// True if `name` matches `pattern`, where `*` matches any run of characters.
pub fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    // Both ends checked before slicing, so the slice bounds fall on character boundaries.
    if !name.starts_with(first) || !name.ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

impl AccessRules {
    /// Parses `text` (the rules file), reading CA certificates and revocation lists relative to
    /// `base`. Every problem is returned, with its line and column.
    pub fn parse(text: &str, base: &Path) -> Result<Self, Vec<Located>> {
        let file: RulesFile = toml::from_str(text).map_err(|e| vec![toml_error(text, &e)])?;
        let mut errors = Vec::new();
        let mut domains = BTreeMap::new();
        let mut files = Vec::new();
        for d in file.domain.values() {
            files.push(base.join(d.ca.get_ref()));
            files.extend(d.crl.as_ref().map(|c| base.join(c.get_ref())));
        }
        let read = |value: &Spanned<String>, errors: &mut Vec<Located>| -> Option<String> {
            let path: PathBuf = base.join(value.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(at(
                        text,
                        value.span(),
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    None
                }
            }
        };
        for (name, d) in &file.domain {
            let Some(ca) = read(&d.ca, &mut errors) else { continue };
            let crl = match &d.crl {
                Some(c) => match read(c, &mut errors) {
                    Some(t) => Some((c, t)),
                    None => continue,
                },
                None => None,
            };
            let trusted = match TrustedDomain::new(&ca, None) {
                Ok(t) if t.domain != *name.get_ref() => {
                    let why = format!(
                        "this CA certificate is for domain {:?}, not {:?}",
                        t.domain,
                        name.get_ref()
                    );
                    errors.push(at(text, d.ca.span(), why));
                    continue;
                }
                Ok(t) => t,
                Err(e) => {
                    errors.push(at(text, d.ca.span(), e.to_string()));
                    continue;
                }
            };
            // Problems with the revocation list are reported where the file names it.
            let with_list = match &crl {
                Some((c, pem)) => der_of_pem(pem, "X509 CRL")
                    .and_then(|der| trusted.with_revocation_list(&der))
                    .map_err(|e| errors.push(at(text, c.span(), e.to_string()))),
                None => Ok(trusted),
            };
            if let Ok(t) = with_list {
                domains.insert(name.get_ref().clone(), t);
            }
        }
        let known = |name: &Spanned<String>, errors: &mut Vec<Located>| {
            if !file.domain.keys().any(|k| k.get_ref() == name.get_ref()) {
                errors.push(at(
                    text,
                    name.span(),
                    format!(
                        "unknown domain {:?} (define it in [domain.{}])",
                        name.get_ref(),
                        name.get_ref()
                    ),
                ));
            }
        };
        let mut groups = Vec::new();
        for g in &file.group {
            for d in &g.domains {
                known(d, &mut errors);
            }
            let mut roles = BTreeSet::new();
            for r in &g.roles {
                match Role::from_name(r.get_ref()) {
                    Some(role) => {
                        roles.insert(role);
                    }
                    None => errors.push(at(
                        text,
                        r.span(),
                        format!("unknown role {:?} (member or operator)", r.get_ref()),
                    )),
                }
            }
            if roles.is_empty() {
                roles.insert(Role::Member);
            }
            if g.name.get_ref().is_empty() {
                errors.push(at(text, g.name.span(), "a group rule needs a name or pattern".into()));
            }
            if g.domains.is_empty() {
                let why = format!(
                    "group rule {:?} lists no domains: it would shut out everyone it matches",
                    g.name.get_ref()
                );
                errors.push(at(text, g.name.span(), why));
            }
            groups.push(GroupRule {
                pattern: g.name.get_ref().clone(),
                domains: g.domains.iter().map(|d| d.get_ref().clone()).collect(),
                roles,
            });
        }
        for o in &file.operators {
            known(o, &mut errors);
        }
        if errors.is_empty() {
            let operators = file.operators.iter().map(|o| o.get_ref().clone()).collect();
            Ok(Self { domains, groups, operators, files })
        } else {
            errors.sort_by_key(|e| (e.line, e.column));
            Err(errors)
        }
    }

    /// Reads and parses a rules file (problems carry the file's name).
    pub fn load(path: &Path) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
            .map_err(|errors| errors.iter().map(|e| format!("{}:{e}", path.display())).collect())
    }

    /// The trusted domains.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// A trusted domain.
    pub fn domain(&self, name: &str) -> Option<&TrustedDomain> {
        self.domains.get(name)
    }

    /// The group rules, in order.
    pub fn groups(&self) -> &[GroupRule] {
        &self.groups
    }

    /// Checks that the holder of certificate `der` may join `group` at `now`: the first rule
    /// matching the group must allow its domain and one of its roles, and its domain's CA must
    /// vouch for it (issuer, validity, revocation).
    pub fn admit(&self, group: &str, der: &[u8], now: OffsetDateTime) -> Result<CertInfo, Refusal> {
        let rule = self
            .groups
            .iter()
            .find(|r| matches(&r.pattern, group))
            .ok_or_else(|| Refusal::NoRule(group.to_owned()))?;
        let info = self.vouched(der, now)?;
        if !rule.domains.contains(&info.domain) {
            return Err(Refusal::DomainNotAllowed { domain: info.domain, group: group.to_owned() });
        }
        if info.roles.is_disjoint(&rule.roles) {
            return Err(Refusal::RoleNotAllowed { id: info.id, group: group.to_owned() });
        }
        Ok(info)
    }

    /// What certificate `der` says, once the CA of the domain it names has vouched for it
    /// (issuer, validity, revocation).
    fn vouched(&self, der: &[u8], now: OffsetDateTime) -> Result<CertInfo, Refusal> {
        let claimed = super::cert::read_cert(der)?;
        let domain = self
            .domains
            .get(&claimed.domain)
            .ok_or_else(|| Refusal::UnknownDomain(claimed.domain.clone()))?;
        Ok(domain.verify(der, now)?)
    }

    /// Checks that the holder of certificate `der` may inject faults: an `operator` of a
    /// domain listed in `operators`, vouched for by its CA.
    pub fn admit_operator(&self, der: &[u8], now: OffsetDateTime) -> Result<CertInfo, Refusal> {
        let info = self.vouched(der, now)?;
        if !self.operators.contains(&info.domain) || !info.roles.contains(&Role::Operator) {
            return Err(Refusal::RoleNotAllowed { id: info.id, group: "(operators)".into() });
        }
        Ok(info)
    }
}

/// A revocation list that [`AccessRules::apply_revocation_list`] put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The domain whose list it is.
    pub domain: String,
    /// Its number.
    pub number: u64,
}

impl AccessRules {
    /// Puts a domain's newer revocation list (DER) in force: it must be signed by the domain's
    /// CA and numbered higher than the list in force. `Ok(None)` for a list that is not newer
    /// (one already applied, sent again).
    pub fn apply_revocation_list(&mut self, der: &[u8]) -> Result<Option<Applied>, Refusal> {
        let checked = self.checked_revocation_list(der)?;
        Ok(self.put_in_force(checked))
    }

    /// The trusted domain that revocation list `der` names, with that list, which its CA must
    /// have signed (not put in force: see [`Self::put_in_force`]).
    pub fn checked_revocation_list(&self, der: &[u8]) -> Result<TrustedDomain, Refusal> {
        let claimed = super::cert::read_crl(der)?;
        let domain = self
            .domains
            .get(&claimed.domain)
            .ok_or_else(|| Refusal::UnknownDomain(claimed.domain.clone()))?;
        Ok(domain.with_revocation_list(der)?)
    }

    /// Puts a checked list (from [`Self::checked_revocation_list`]) in force if it is newer
    /// than the one in force for its domain.
    pub fn put_in_force(&mut self, checked: TrustedDomain) -> Option<Applied> {
        let domain = self.domains.get_mut(&checked.domain)?;
        if !checked.same_ca(domain) || checked.revocation_number() <= domain.revocation_number() {
            return None;
        }
        let applied =
            Applied { domain: checked.domain.clone(), number: checked.revocation_number() };
        *domain = checked;
        Some(applied)
    }

    /// These rules, with the revocation lists of `in_force` kept for every domain whose CA is
    /// the same in both: a newer list read from disk takes effect only when the group applies
    /// it, at one point of the agreed order (see [`Self::newer_revocation_lists`]).
    pub fn keeping_revocations_of(mut self, in_force: &Self) -> Self {
        for (name, domain) in &mut self.domains {
            if let Some(old) = in_force.domains.get(name).filter(|old| old.same_ca(domain)) {
                *domain = old.clone();
            }
        }
        self
    }

    /// The revocation lists (DER) of these rules that are newer than those `in_force` has
    /// for the same CA.
    pub fn newer_revocation_lists(&self, in_force: &Self) -> Vec<Vec<u8>> {
        self.domains
            .iter()
            .filter(|(name, d)| {
                in_force.domains.get(*name).is_some_and(|old| {
                    old.same_ca(d) && d.revocation_number() > old.revocation_number()
                })
            })
            .filter_map(|(_, d)| d.revocation_list().map(<[u8]>::to_vec))
            .collect()
    }

    /// Every revocation list in force (DER).
    pub fn revocation_lists(&self) -> Vec<Vec<u8>> {
        self.domains.values().filter_map(|d| d.revocation_list().map(<[u8]>::to_vec)).collect()
    }
}

/// Watches a rules file and the CA certificates and revocation lists it names: each
/// [`RulesWatch::poll`] reads them, and hands back new rules only when something changed (an
/// invalid edit comes back as its problems, and the caller keeps what it had).
#[derive(Debug)]
pub struct RulesWatch {
    path: PathBuf,
    files: Vec<PathBuf>,
    fingerprint: [u8; 32],
}

impl RulesWatch {
    /// A watch on `path` whose current rules are `rules` (as loaded from it).
    pub fn new(path: &Path, rules: &AccessRules) -> Self {
        let files = rules.files.clone();
        let fingerprint = fingerprint(path, &files);
        Self { path: path.to_path_buf(), files, fingerprint }
    }

    /// New rules if the file or a file it names changed since the last poll; `Err` with every
    /// problem if the change does not load.
    pub fn poll(&mut self) -> Option<Result<AccessRules, Vec<String>>> {
        let now = fingerprint(&self.path, &self.files);
        if self.fingerprint == now {
            return None;
        }
        self.fingerprint = now;
        let loaded = AccessRules::load(&self.path);
        if let Ok(rules) = &loaded {
            // The rules may name other files now: watch those from here on.
            if rules.files != self.files {
                self.files = rules.files.clone();
                self.fingerprint = fingerprint(&self.path, &self.files);
            }
        }
        Some(loaded)
    }
}

/// A digest of the rules file and the files it names, as they are now.
fn fingerprint(path: &Path, files: &[PathBuf]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in std::iter::once(path).chain(files.iter().map(PathBuf::as_path)) {
        h.update(f.to_string_lossy().as_bytes());
        // A file that cannot be read counts as empty: when it comes back, it is a change.
        h.update(std::fs::read(f).unwrap_or_default());
        h.update([0]);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::cert::DomainCa;
    use crate::identity::{Identity, Scheme};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn patterns_match_as_globs() {
        assert!(matches("lab", "lab") && !matches("lab", "lab2"));
        assert!(matches("ops-*", "ops-1") && matches("ops-*", "ops-") && !matches("ops-*", "op"));
        assert!(matches("*-blue-*", "a-blue-b") && !matches("*-blue-*", "a-red-b"));
        assert!(matches("*", "") && matches("a*b*c", "aXbYc") && !matches("a*b*c", "aXc"));
        // Names come from clients: multi-byte characters near the ends never panic.
        assert!(!matches("a*xy", "aéb") && matches("é*é", "éé") && !matches("é*é", "é"));
    }

    #[test]
    fn rules_admit_by_domain_role_and_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let red = DomainCa::create("red", now(), 365, [1; 16]).unwrap();
        let blue = DomainCa::create("blue", now(), 365, [2; 16]).unwrap();
        let green = DomainCa::create("green", now(), 365, [3; 16]).unwrap();
        std::fs::write(tmp.path().join("red.crt"), red.cert_pem()).unwrap();
        std::fs::write(tmp.path().join("blue.crt"), blue.cert_pem()).unwrap();
        let text = r#"
operators = ["red"]
[domain.red]
ca = "red.crt"
[domain.blue]
ca = "blue.crt"
[[group]]
name = "lab"
domains = ["red", "blue"]
[[group]]
name = "ops-*"
domains = ["red"]
roles = ["operator"]
"#;
        let rules = AccessRules::parse(text, tmp.path()).expect("valid rules");
        let key = Identity::generate("a", Scheme::Ed25519).unwrap();
        let member: BTreeSet<Role> = [Role::Member].into();
        let issue = |ca: &DomainCa, id: &str, roles: &BTreeSet<Role>, days| {
            ca.issue(id, key.public(), roles, now(), days, [9; 16]).unwrap().der
        };
        rules.admit("lab", &issue(&red, "a", &member, 30), now()).expect("red member");
        rules.admit("lab", &issue(&blue, "b", &member, 30), now()).expect("blue member");
        let refused = |r: Result<CertInfo, Refusal>| r.expect_err("refused").label();
        assert_eq!(
            refused(rules.admit("lab", &issue(&green, "g", &member, 30), now())),
            "unknown_domain"
        );
        assert_eq!(
            refused(rules.admit("elsewhere", &issue(&red, "a", &member, 30), now())),
            "no_rule"
        );
        assert_eq!(
            refused(rules.admit("ops-1", &issue(&blue, "b", &member, 30), now())),
            "domain_not_allowed"
        );
        assert_eq!(
            refused(rules.admit("ops-1", &issue(&red, "a", &member, 30), now())),
            "role_not_allowed"
        );
        let later = now() + time::Duration::days(31);
        assert_eq!(refused(rules.admit("lab", &issue(&red, "a", &member, 30), later)), "expired");
        let op: BTreeSet<Role> = [Role::Operator].into();
        rules.admit_operator(&issue(&red, "o", &op, 30), now()).expect("a red operator");
        assert!(rules.admit_operator(&issue(&blue, "o", &op, 30), now()).is_err());
    }

    #[test]
    fn newer_revocation_lists_apply_once_and_wait_for_the_group() {
        use crate::identity::cert::der_of_pem;
        let tmp = tempfile::tempdir().unwrap();
        let red = DomainCa::create("red", now(), 365, [1; 16]).unwrap();
        let blue = DomainCa::create("blue", now(), 365, [2; 16]).unwrap();
        std::fs::write(tmp.path().join("red.crt"), red.cert_pem()).unwrap();
        let key = Identity::generate("a", Scheme::Ed25519).unwrap();
        let issued = red.issue("a", key.public(), &[Role::Member].into(), now(), 30, [7; 16]);
        let issued = issued.unwrap();
        let crl = |ca: &DomainCa, serials: &[String], number| {
            der_of_pem(&ca.revocation_list(serials, now(), 7, number).unwrap(), "X509 CRL").unwrap()
        };
        let text =
            "[domain.red]\nca = \"red.crt\"\n[[group]]\nname = \"lab\"\ndomains = [\"red\"]\n";
        let mut rules = AccessRules::parse(text, tmp.path()).unwrap();
        rules.admit("lab", &issued.der, now()).expect("not revoked yet");
        let revoking = crl(&red, std::slice::from_ref(&issued.info.serial), 2);
        let applied = rules.apply_revocation_list(&revoking).unwrap();
        assert_eq!(applied, Some(Applied { domain: "red".into(), number: 2 }));
        assert_eq!(rules.admit("lab", &issued.der, now()).unwrap_err().label(), "revoked");
        assert_eq!(rules.apply_revocation_list(&revoking).unwrap(), None, "applied once");
        assert_eq!(rules.apply_revocation_list(&crl(&red, &[], 1)).unwrap(), None, "older");
        let forged = rules.apply_revocation_list(&crl(&blue, &[], 9));
        assert_eq!(forged.unwrap_err().label(), "unknown_domain");
        // Rules read from disk with a newer list keep the list in force until the group
        // applies it; the newer one is offered for sending.
        std::fs::write(tmp.path().join("crl.pem"), red.revocation_list(&[], now(), 7, 3).unwrap())
            .unwrap();
        let on_disk = AccessRules::parse(text, tmp.path()).unwrap();
        let with_crl = text.replace("ca = \"red.crt\"", "ca = \"red.crt\"\ncrl = \"crl.pem\"");
        let newer = AccessRules::parse(&with_crl, tmp.path()).unwrap();
        assert_eq!(newer.newer_revocation_lists(&rules).len(), 1);
        assert!(on_disk.newer_revocation_lists(&rules).is_empty());
        let kept = newer.keeping_revocations_of(&rules);
        assert_eq!(kept.admit("lab", &issued.der, now()).unwrap_err().label(), "revoked");
        assert_eq!(kept.revocation_lists(), [revoking]);
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        let red = DomainCa::create("red", now(), 365, [1; 16]).unwrap();
        std::fs::write(tmp.path().join("red.crt"), red.cert_pem()).unwrap();
        std::fs::write(tmp.path().join("not-a-cert"), "hello").unwrap();
        let text = "[domain.red]\nca = \"red.crt\"\n[domain.blue]\nca = \"red.crt\"\n[domain.x]\nca = \"not-a-cert\"\n[domain.y]\nca = \"missing.crt\"\n[[group]]\nname = \"lab\"\ndomains = [\"red\", \"grey\"]\nroles = [\"king\"]\n";
        let errors = AccessRules::parse(text, tmp.path()).expect_err("broken");
        let at = |line: usize| errors.iter().find(|e| e.line == line).map(|e| e.message.clone());
        assert!(at(4).unwrap().contains("not \"blue\""), "{errors:?}");
        assert!(at(6).unwrap().contains("not a readable certificate"), "{errors:?}");
        assert!(at(8).unwrap().contains("cannot read"), "{errors:?}");
        assert!(at(11).unwrap().contains("unknown domain \"grey\""), "{errors:?}");
        assert!(at(12).unwrap().contains("unknown role"), "{errors:?}");
        assert_eq!(errors.iter().find(|e| e.line == 11).unwrap().column, 19);
        let nobody =
            AccessRules::parse("[[group]]\nname = \"g\"\ndomains = []\n", tmp.path()).unwrap_err();
        assert!(
            nobody[0].message.contains("lists no domains") && nobody[0].line == 2,
            "{nobody:?}"
        );
        let syntax = AccessRules::parse("[domain.red\n", tmp.path()).expect_err("bad TOML");
        assert_eq!(syntax[0].line, 1);
        let unknown_field =
            AccessRules::parse("[[group]]\nname = \"g\"\ndomains = []\nkind = 1\n", tmp.path())
                .expect_err("unknown field");
        assert!(unknown_field[0].message.contains("unknown field"), "{unknown_field:?}");
    }
}
