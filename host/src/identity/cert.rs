//! Certificate identities for coalitions of autonomous domains.
//!
//! Each party (domain) runs its own certificate authority: an Ed25519 key and a self-signed
//! X.509 CA certificate naming the domain. A member's identity is an X.509 certificate issued
//! by its domain's CA for the member's own identity key (Ed25519 or RSA-PSS), naming its
//! member id (common name), its domain (organization) and its roles (the organizational unit,
//! comma-separated: `member`, `operator`). A domain revokes its members with a revocation list (an X.509
//! CRL) signed by its CA.
//!
//! Certificates and lists are made with `rcgen` and read and verified with `x509-parser`; no
//! ASN.1 is written here. Time is an input: the caller says what "now" is.

use std::collections::BTreeSet;
use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::{valid_member_id, PublicKey};

/// What a certificate lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Take part in groups its domain may join.
    Member,
    /// Inject faults at a daemon that allows it.
    Operator,
}

impl Role {
    /// The role's name, as in certificates, access rules and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Operator => "operator",
        }
    }

    /// Parses a name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "member" => Some(Self::Member),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a certificate or revocation list was not made, read or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Not a certificate (or list) this program can read.
    #[error("not a readable certificate: {0}")]
    Malformed(String),
    /// A domain name, member id or role that cannot be used.
    #[error("invalid {what}: {value:?}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Not issued by this domain's CA (another issuer, or a signature that does not verify).
    #[error("not issued by the CA of domain {domain:?}: {detail}")]
    WrongIssuer {
        /// The domain whose CA was tried.
        domain: String,
        /// What failed.
        detail: String,
    },
    /// Outside its validity period.
    #[error("certificate of {id:?} is {state} (valid from {not_before} to {not_after} UTC)")]
    Expired {
        /// The member.
        id: String,
        /// "expired" or "not yet valid".
        state: &'static str,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// On its domain's revocation list.
    #[error("certificate of {id:?} (serial {serial}) is revoked by domain {domain:?}")]
    Revoked {
        /// The member.
        id: String,
        /// The certificate's serial number, hex.
        serial: String,
        /// The domain.
        domain: String,
    },
    /// Making or signing failed.
    #[error("cannot make the certificate: {0}")]
    Make(String),
}

fn make(e: impl fmt::Display) -> CertError {
    CertError::Make(e.to_string())
}

fn malformed(e: impl fmt::Display) -> CertError {
    CertError::Malformed(e.to_string())
}

/// True if `domain` can name a domain (the rules of member ids).
pub fn valid_domain(domain: &str) -> bool {
    valid_member_id(domain)
}

/// A domain's certificate authority: its CA certificate and signing key.
pub struct DomainCa {
    domain: String,
    cert_der: Vec<u8>,
    key: KeyPair,
}

impl fmt::Debug for DomainCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainCa").field("domain", &self.domain).finish_non_exhaustive()
    }
}

/// A member certificate as issued: its DER bytes and what it says.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The certificate, PEM.
    pub pem: String,
    /// What it says.
    pub info: CertInfo,
}

/// What a certificate says about its holder.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The member id.
    pub id: String,
    /// The domain that issued it.
    pub domain: String,
    /// The holder's roles.
    pub roles: BTreeSet<Role>,
    /// The serial number, lower-case hex.
    pub serial: String,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// The holder's identity key.
    pub public: PublicKey,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
}

impl CertInfo {
    /// Checks that the certificate is `identity`'s: its id, and a key that verifies what the
    /// identity signs.
    pub fn belongs_to(&self, identity: &super::Identity) -> Result<(), String> {
        if self.id != identity.id() {
            return Err(format!("the certificate is {:?}'s, not {:?}'s", self.id, identity.id()));
        }
        let probe = b"gka certificate self-check";
        self.public.verify(probe, &identity.sign(probe)).map_err(|_| {
            format!("the certificate of {:?} is for another key than this member's", self.id)
        })
    }
}

fn params(
    names: &[(DnType, &str)],
    now: OffsetDateTime,
    days: u32,
    serial: [u8; 16],
) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(make)?;
    for (kind, value) in names {
        p.distinguished_name.push(kind.clone(), *value);
    }
    p.not_before = now;
    p.not_after = now
        .checked_add(time::Duration::days(i64::from(days)))
        .ok_or_else(|| CertError::Invalid { what: "validity in days", value: days.to_string() })?;
    // A positive serial: the top bit clear.
    let mut serial = serial;
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

impl DomainCa {
    /// A new CA for `domain`, valid for `days` from `now`, with a fresh Ed25519 key.
    pub fn create(
        domain: &str,
        now: OffsetDateTime,
        days: u32,
        serial: [u8; 16],
    ) -> Result<Self, CertError> {
        if !valid_domain(domain) {
            return Err(CertError::Invalid { what: "domain name", value: domain.to_owned() });
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(make)?;
        let cn = format!("{domain} CA");
        let mut p = params(
            &[(DnType::CommonName, cn.as_str()), (DnType::OrganizationName, domain)],
            now,
            days,
            serial,
        )?;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).map_err(make)?;
        Ok(Self { domain: domain.to_owned(), cert_der: cert.der().to_vec(), key })
    }

    /// A CA from its certificate and its key (both PEM, as [`Self::cert_pem`] and
    /// [`Self::key_pem`] wrote them).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(malformed)?;
        let cert_der = der_of_pem(cert_pem, "CERTIFICATE")?;
        let info = read_cert(&cert_der)?;
        if !info.is_ca {
            return Err(CertError::Malformed("not a CA certificate".into()));
        }
        Ok(Self { domain: info.domain, cert_der, key })
    }

    /// The domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The CA certificate, PEM (give it to every party whose access rules trust this domain).
    pub fn cert_pem(&self) -> String {
        pem_of("CERTIFICATE", &self.cert_der)
    }

    /// The CA's private key, PKCS#8 PEM (keep it secret).
    pub fn key_pem(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(self.key.serialize_pem())
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, CertError> {
        let der = rustls_der(&self.cert_der);
        Issuer::from_ca_cert_der(&der, &self.key).map_err(make)
    }

    /// Issues a certificate for member `id`'s identity key `public`, with `roles`, valid for
    /// `days` from `now`.
    pub fn issue(
        &self,
        id: &str,
        public: &PublicKey,
        roles: &BTreeSet<Role>,
        now: OffsetDateTime,
        days: u32,
        serial: [u8; 16],
    ) -> Result<Issued, CertError> {
        if !valid_member_id(id) {
            return Err(CertError::Invalid { what: "member id", value: id.to_owned() });
        }
        if roles.is_empty() {
            return Err(CertError::Invalid { what: "role list", value: String::new() });
        }
        let roles: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        let roles = roles.join(",");
        let names = [
            (DnType::CommonName, id),
            (DnType::OrganizationName, self.domain()),
            (DnType::OrganizationalUnitName, roles.as_str()),
        ];
        let mut p = params(&names, now, days, serial)?;
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let spki_pem = public.to_pem().map_err(make)?;
        let spki = rcgen::SubjectPublicKeyInfo::from_pem(&spki_pem).map_err(make)?;
        let cert = p.signed_by(&spki, &self.issuer()?).map_err(make)?;
        let der = cert.der().to_vec();
        let info = read_cert(&der)?;
        Ok(Issued { pem: pem_of("CERTIFICATE", &der), der, info })
    }

    /// A revocation list naming the certificates with `serials` (hex), from `now` until
    /// `next_update_days` later, numbered `number` (higher is newer). PEM.
    pub fn revocation_list(
        &self,
        serials: &[String],
        now: OffsetDateTime,
        next_update_days: u32,
        number: u64,
    ) -> Result<String, CertError> {
        let mut revoked = Vec::new();
        for s in serials {
            let bytes = hex::decode(s)
                .map_err(|_| CertError::Invalid { what: "serial number", value: s.clone() })?;
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let p = CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(i64::from(next_update_days.max(1))),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = p.signed_by(&self.issuer()?).map_err(make)?;
        crl.pem().map_err(make)
    }
}

fn rustls_der(der: &[u8]) -> rustls_pki_types::CertificateDer<'static> {
    rustls_pki_types::CertificateDer::from(der.to_vec())
}

fn pem_of(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

/// The DER bytes of the first PEM block labelled `tag` in `text`.
pub fn der_of_pem(text: &str, tag: &str) -> Result<Vec<u8>, CertError> {
    let blocks = pem::parse_many(text).map_err(malformed)?;
    blocks
        .into_iter()
        .find(|b| b.tag() == tag)
        .map(|b| b.into_contents())
        .ok_or_else(|| CertError::Malformed(format!("no {tag} block")))
}

fn first<'a>(mut values: impl Iterator<Item = &'a str>) -> Option<String> {
    values.next().map(str::to_owned)
}

/// Reads what a certificate (DER) says, without checking who issued it.
pub fn read_cert(der: &[u8]) -> Result<CertInfo, CertError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(CertError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    let subject = cert.subject();
    let id = first(subject.iter_common_name().filter_map(|a| a.as_str().ok()))
        .ok_or_else(|| CertError::Malformed("no common name".into()))?;
    let domain = first(subject.iter_organization().filter_map(|a| a.as_str().ok()))
        .ok_or_else(|| CertError::Malformed("no organization (domain)".into()))?;
    let roles = subject
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .flat_map(|ou| ou.split(','))
        .filter_map(Role::from_name)
        .collect();
    let is_ca = cert.is_ca();
    let public = PublicKey::from_spki_der(cert.public_key().raw).map_err(malformed)?;
    let validity = cert.validity();
    Ok(CertInfo {
        id,
        domain,
        roles,
        serial: hex::encode(cert.raw_serial()),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        public,
        is_ca,
    })
}

/// What a revocation list says (read, not verified: see [`TrustedDomain::new`] for that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// The issuing domain (the issuer's organization).
    pub domain: String,
    /// The list's number, if it has one (higher is newer).
    pub number: Option<u64>,
    /// When it was issued (Unix seconds).
    pub this_update: i64,
    /// The revoked serial numbers, hex.
    pub serials: Vec<String>,
}

/// Parses a revocation list (DER), refusing trailing bytes.
fn parse_crl(der: &[u8]) -> Result<CertificateRevocationList<'_>, CertError> {
    let (rest, crl) = CertificateRevocationList::from_der(der).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(CertError::Malformed(format!(
            "{} bytes after the revocation list",
            rest.len()
        )));
    }
    Ok(crl)
}

fn crl_number(crl: &CertificateRevocationList<'_>) -> Option<u64> {
    crl.crl_number().and_then(|n| u64::try_from(n.clone()).ok())
}

fn revoked_serials<'a>(
    crl: &'a CertificateRevocationList<'_>,
) -> impl Iterator<Item = String> + 'a {
    crl.iter_revoked_certificates().map(|r| hex::encode(r.raw_serial()))
}

/// Reads a revocation list (DER).
pub fn read_crl(der: &[u8]) -> Result<CrlInfo, CertError> {
    let crl = parse_crl(der)?;
    let domain = first(crl.issuer().iter_organization().filter_map(|a| a.as_str().ok()))
        .ok_or_else(|| CertError::Malformed("no issuing organization (domain)".into()))?;
    Ok(CrlInfo {
        domain,
        number: crl_number(&crl),
        this_update: crl.last_update().timestamp(),
        serials: revoked_serials(&crl).collect(),
    })
}

/// A domain as a verifier sees it: its CA certificate and, if it has published one, its
/// revocation list.
#[derive(Debug, Clone)]
pub struct TrustedDomain {
    /// The domain's name (from its CA certificate).
    pub domain: String,
    ca_der: Vec<u8>,
    /// The CA certificate's validity (Unix seconds): an expired CA vouches for nobody.
    ca_valid: (i64, i64),
    revoked: BTreeSet<String>,
    /// The revocation list in force (DER) and its number (0 for a list without one).
    crl: Option<(u64, Vec<u8>)>,
}

impl TrustedDomain {
    /// A domain from its CA certificate (PEM) and its revocation list (PEM), which must be
    /// signed by that CA.
    pub fn new(ca_pem: &str, crl_pem: Option<&str>) -> Result<Self, CertError> {
        let ca_der = der_of_pem(ca_pem, "CERTIFICATE")?;
        let info = read_cert(&ca_der)?;
        if !info.is_ca {
            return Err(CertError::Malformed("not a CA certificate".into()));
        }
        let domain = Self {
            domain: info.domain,
            ca_der,
            ca_valid: (info.not_before, info.not_after),
            revoked: BTreeSet::new(),
            crl: None,
        };
        match crl_pem {
            Some(crl_pem) => domain.with_revocation_list(&der_of_pem(crl_pem, "X509 CRL")?),
            None => Ok(domain),
        }
    }

    /// This domain with `crl_der` as its revocation list, which must be signed by its CA and
    /// numbered (lists are ordered by their numbers).
    pub fn with_revocation_list(&self, crl_der: &[u8]) -> Result<Self, CertError> {
        let (_, ca) = X509Certificate::from_der(&self.ca_der).map_err(malformed)?;
        let crl = parse_crl(crl_der)?;
        crl.verify_signature(ca.public_key()).map_err(|e| CertError::WrongIssuer {
            domain: self.domain.clone(),
            detail: format!("revocation list: {e}"),
        })?;
        let number = crl_number(&crl).ok_or_else(|| {
            CertError::Malformed("a revocation list without a number (below 2^64)".into())
        })?;
        Ok(Self {
            revoked: revoked_serials(&crl).collect(),
            crl: Some((number, crl_der.to_vec())),
            ..self.clone()
        })
    }

    /// The number of the revocation list in force (0 without one; higher is newer).
    pub fn revocation_number(&self) -> u64 {
        self.crl.as_ref().map_or(0, |(n, _)| *n)
    }

    /// The revocation list in force (DER), if any.
    pub fn revocation_list(&self) -> Option<&[u8]> {
        self.crl.as_ref().map(|(_, der)| der.as_slice())
    }

    /// True if the revocation list in force revokes the certificate with `serial` (hex).
    pub fn revokes(&self, serial: &str) -> bool {
        self.revoked.contains(serial)
    }

    /// True if both have the same CA certificate.
    pub fn same_ca(&self, other: &Self) -> bool {
        self.ca_der == other.ca_der
    }

    /// Checks a member certificate (DER): issued by this domain's CA, for this domain, valid
    /// at `now`, and not revoked. Returns what it says.
    pub fn verify(&self, der: &[u8], now: OffsetDateTime) -> Result<CertInfo, CertError> {
        let info = read_cert(der)?;
        let wrong = |detail: String| CertError::WrongIssuer { domain: self.domain.clone(), detail };
        let (_, ca) = X509Certificate::from_der(&self.ca_der).map_err(malformed)?;
        let (_, cert) = X509Certificate::from_der(der).map_err(malformed)?;
        if cert.issuer() != ca.subject() {
            return Err(wrong(format!("issued by {}", cert.issuer())));
        }
        cert.verify_signature(Some(ca.public_key())).map_err(|e| wrong(e.to_string()))?;
        if info.domain != self.domain {
            return Err(wrong(format!("it names domain {:?}", info.domain)));
        }
        if info.is_ca {
            return Err(CertError::Invalid { what: "member certificate", value: info.id });
        }
        let t = now.unix_timestamp();
        let (ca_from, ca_until) = self.ca_valid;
        outside_validity(&format!("{} CA", self.domain), t, ca_from, ca_until)?;
        outside_validity(&info.id, t, info.not_before, info.not_after)?;
        if self.revoked.contains(&info.serial) {
            return Err(CertError::Revoked {
                id: info.id,
                serial: info.serial,
                domain: self.domain.clone(),
            });
        }
        Ok(info)
    }
}

/// `Err(Expired)` if `t` is outside [`not_before`, `not_after`] (Unix seconds).
fn outside_validity(id: &str, t: i64, not_before: i64, not_after: i64) -> Result<(), CertError> {
    if (not_before..=not_after).contains(&t) {
        return Ok(());
    }
    Err(CertError::Expired {
        state: if t > not_after { "expired" } else { "not yet valid" },
        not_before: utc_date(not_before),
        not_after: utc_date(not_after),
        id: id.to_owned(),
    })
}

/// A Unix time as a UTC date and time (the number itself if it is out of the calendar).
pub fn utc_date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix).map_or_else(|_| unix.to_string(), |d| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, Scheme};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn member() -> BTreeSet<Role> {
        [Role::Member].into()
    }

    #[test]
    fn a_domain_issues_verifies_and_revokes_its_members() {
        let red = DomainCa::create("red", now(), 3650, [1; 16]).unwrap();
        let blue = DomainCa::create("blue", now(), 3650, [2; 16]).unwrap();
        let alice = Identity::generate("alice", Scheme::Ed25519).unwrap();
        let bob = Identity::generate("bob", Scheme::RsaPss).unwrap();
        let a = red.issue("alice", alice.public(), &member(), now(), 30, [3; 16]).unwrap();
        let roles: BTreeSet<Role> = [Role::Member, Role::Operator].into();
        let b = red.issue("bob", bob.public(), &roles, now(), 30, [4; 16]).unwrap();
        let trusted = TrustedDomain::new(&red.cert_pem(), None).unwrap();
        let info = trusted.verify(&a.der, now()).unwrap();
        assert_eq!((info.id.as_str(), info.domain.as_str()), ("alice", "red"));
        assert_eq!(info.roles, member());
        // The certificate carries the member's own key: it verifies the member's signatures.
        info.public.verify(b"m", &alice.sign(b"m")).unwrap();
        let info = trusted.verify(&b.der, now()).unwrap();
        assert_eq!(info.roles, roles);
        info.public.verify(b"m", &bob.sign(b"m")).unwrap();

        // Another domain's CA does not vouch for red's members.
        let other = TrustedDomain::new(&blue.cert_pem(), None).unwrap();
        assert!(matches!(other.verify(&a.der, now()), Err(CertError::WrongIssuer { .. })));
        // Expired, and not yet valid.
        let later = now() + time::Duration::days(31);
        assert!(matches!(
            trusted.verify(&a.der, later),
            Err(CertError::Expired { state: "expired", .. })
        ));
        let earlier = now() - time::Duration::days(1);
        assert!(matches!(
            trusted.verify(&a.der, earlier),
            Err(CertError::Expired { state: "not yet valid", .. })
        ));
        // Revoked by a list the CA signed.
        let crl = red.revocation_list(std::slice::from_ref(&a.info.serial), now(), 7, 1).unwrap();
        let with_crl = TrustedDomain::new(&red.cert_pem(), Some(&crl)).unwrap();
        assert!(matches!(with_crl.verify(&a.der, now()), Err(CertError::Revoked { .. })));
        with_crl.verify(&b.der, now()).expect("bob is not revoked");
        // A list signed by another domain's CA is refused.
        let forged =
            blue.revocation_list(std::slice::from_ref(&b.info.serial), now(), 7, 1).unwrap();
        assert!(matches!(
            TrustedDomain::new(&red.cert_pem(), Some(&forged)),
            Err(CertError::WrongIssuer { .. })
        ));
    }

    #[test]
    fn a_ca_survives_a_round_trip_through_its_files_and_refuses_bad_input() {
        let red = DomainCa::create("red", now(), 365, [1; 16]).unwrap();
        let again = DomainCa::from_pem(&red.cert_pem(), &red.key_pem()).unwrap();
        assert_eq!(again.domain(), "red");
        let alice = Identity::generate("alice", Scheme::Ed25519).unwrap();
        let a = again.issue("alice", alice.public(), &member(), now(), 1, [5; 16]).unwrap();
        TrustedDomain::new(&red.cert_pem(), None).unwrap().verify(&a.der, now()).unwrap();
        assert!(DomainCa::create("bad name", now(), 1, [0; 16]).is_err());
        assert!(matches!(
            DomainCa::create("red", now(), u32::MAX, [0; 16]),
            Err(CertError::Invalid { .. })
        ));
        assert!(red.issue("x y", alice.public(), &member(), now(), 1, [6; 16]).is_err());
        assert!(red.issue("alice", alice.public(), &BTreeSet::new(), now(), 1, [6; 16]).is_err());
        assert!(matches!(read_cert(b"garbage"), Err(CertError::Malformed(_))));
        // A member certificate is not a CA.
        assert!(TrustedDomain::new(&a.pem, None).is_err());
        // An expired CA vouches for nobody, even for a member certificate still valid.
        let old = DomainCa::create("old", now() - time::Duration::days(400), 365, [7; 16]).unwrap();
        let m = old.issue("alice", alice.public(), &member(), now(), 30, [8; 16]).unwrap();
        let e = TrustedDomain::new(&old.cert_pem(), None).unwrap().verify(&m.der, now());
        assert!(e.unwrap_err().to_string().contains("\"old CA\" is expired"));
        // A revocation list with bytes after it is refused.
        let crl = der_of_pem(&red.revocation_list(&[], now(), 7, 2).unwrap(), "X509 CRL").unwrap();
        let trusted = TrustedDomain::new(&red.cert_pem(), None).unwrap();
        trusted.with_revocation_list(&crl).expect("the list itself");
        let trailing = [crl.as_slice(), &[0]].concat();
        assert!(matches!(trusted.with_revocation_list(&trailing), Err(CertError::Malformed(_))));
    }
}
