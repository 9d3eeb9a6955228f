//! A domain CA's directory, as `gka ca` keeps it:
//!
//! | file | what |
//! |---|---|
//! | `ca.crt` | the CA certificate (PEM): give it to every party whose access rules trust this domain |
//! | `ca.key` | the CA's private key (PKCS#8 PEM, mode 0600): never leaves the directory |
//! | `crl.pem` | the domain's signed revocation list (PEM): publish it beside `ca.crt` |
//! | `issued.json` | the ledger: every certificate issued (id, serial, expiry) and whether it is revoked |
//!
//! Private keys are never overwritten without `replace`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::cert::{CertError, DomainCa, Issued, Role};
use super::{write_private, IdentityError, PublicKey};

/// How long a revocation list is valid before it must be reissued, days.
pub const CRL_VALID_DAYS: u32 = 30;

/// What can go wrong with a CA directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaDirError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// A private key file is already there.
    #[error("{0}: a private key is already there; keep it, or replace it with --force")]
    Exists(PathBuf),
    /// A certificate operation failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A key could not be written or read.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The ledger does not parse.
    #[error("{path}: not a ledger this program wrote: {detail}")]
    Ledger {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// `revoke` for a member the CA never issued a certificate to.
    #[error("no certificate was issued to {0:?} by this CA")]
    NotIssued(String),
}

/// One certificate in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The member id.
    pub id: String,
    /// The serial number, hex.
    pub serial: String,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// Whether it is on the revocation list.
    pub revoked: bool,
}

/// Every certificate a CA issued, and the number of its newest revocation list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// The newest revocation list's number.
    pub crl_number: u64,
    /// The certificates, oldest first.
    pub issued: Vec<LedgerEntry>,
}

/// A CA directory (see the module docs).
#[derive(Debug, Clone)]
pub struct CaDir {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaDirError + '_ {
    move |error| CaDirError::Io { path: path.to_path_buf(), error }
}

fn serial() -> [u8; 16] {
    let mut s = [0u8; 16];
    OsRng.fill_bytes(&mut s);
    s
}

impl CaDir {
    /// The directory at `dir` (nothing is read yet).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CA certificate's file.
    pub fn cert_file(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// The revocation list's file.
    pub fn crl_file(&self) -> PathBuf {
        self.path("crl.pem")
    }

    /// Makes a new CA for `domain` here, valid for `days` from `now`, with an empty revocation
    /// list. Refuses to replace an existing `ca.key` unless `replace`.
    pub fn init(
        &self,
        domain: &str,
        now: OffsetDateTime,
        days: u32,
        replace: bool,
    ) -> Result<DomainCa, CaDirError> {
        let key_file = self.path("ca.key");
        if !replace && key_file.exists() {
            return Err(CaDirError::Exists(key_file));
        }
        let ca = DomainCa::create(domain, now, days, serial())?;
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        write_private(&key_file, ca.key_pem().as_bytes()).map_err(io(&key_file))?;
        let cert_file = self.cert_file();
        fs::write(&cert_file, ca.cert_pem()).map_err(io(&cert_file))?;
        let ledger = Ledger { crl_number: 1, issued: Vec::new() };
        self.write_crl(&ca, &ledger, now)?;
        Ok(ca)
    }

    /// The CA and its ledger.
    pub fn load(&self) -> Result<(DomainCa, Ledger), CaDirError> {
        let read = |name: &str| {
            let path = self.path(name);
            fs::read_to_string(&path).map_err(io(&path))
        };
        let ca = DomainCa::from_pem(&read("ca.crt")?, &read("ca.key")?)?;
        let ledger_file = self.path("issued.json");
        // `init` writes the ledger; without it the next revocation list would reuse a number
        // that members already hold, and they would ignore it.
        let text = fs::read_to_string(&ledger_file).map_err(io(&ledger_file))?;
        let ledger = serde_json::from_str(&text)
            .map_err(|e| CaDirError::Ledger { path: ledger_file.clone(), detail: e.to_string() })?;
        Ok((ca, ledger))
    }

    fn write_ledger(&self, ledger: &Ledger) -> Result<(), CaDirError> {
        let path = self.path("issued.json");
        // A ledger of strings and integers always serializes.
        let text = serde_json::to_string_pretty(ledger).expect("the ledger serializes");
        fs::write(&path, text).map_err(io(&path))
    }

    fn write_crl(
        &self,
        ca: &DomainCa,
        ledger: &Ledger,
        now: OffsetDateTime,
    ) -> Result<(), CaDirError> {
        let serials: Vec<String> =
            ledger.issued.iter().filter(|e| e.revoked).map(|e| e.serial.clone()).collect();
        let crl = ca.revocation_list(&serials, now, CRL_VALID_DAYS, ledger.crl_number)?;
        let path = self.crl_file();
        fs::write(&path, crl).map_err(io(&path))?;
        self.write_ledger(ledger)
    }

    /// Issues a certificate for `id`'s key `public` with `roles`, valid for `days` from `now`,
    /// and records it in the ledger.
    pub fn issue(
        &self,
        id: &str,
        public: &PublicKey,
        roles: &BTreeSet<Role>,
        now: OffsetDateTime,
        days: u32,
    ) -> Result<Issued, CaDirError> {
        let (ca, mut ledger) = self.load()?;
        let issued = ca.issue(id, public, roles, now, days, serial())?;
        ledger.issued.push(LedgerEntry {
            id: id.to_owned(),
            serial: issued.info.serial.clone(),
            not_after: issued.info.not_after,
            revoked: false,
        });
        self.write_ledger(&ledger)?;
        Ok(issued)
    }

    /// Revokes every certificate issued to `id` and publishes a new revocation list; returns
    /// the serials revoked.
    pub fn revoke(&self, id: &str, now: OffsetDateTime) -> Result<Vec<String>, CaDirError> {
        let (ca, mut ledger) = self.load()?;
        let mut serials = Vec::new();
        for e in ledger.issued.iter_mut().filter(|e| e.id == id) {
            e.revoked = true;
            serials.push(e.serial.clone());
        }
        if serials.is_empty() {
            return Err(CaDirError::NotIssued(id.to_owned()));
        }
        ledger.crl_number += 1;
        self.write_crl(&ca, &ledger, now)?;
        Ok(serials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::cert::TrustedDomain;
    use crate::identity::{Identity, Scheme};

    #[test]
    fn init_issue_revoke_and_never_overwrite_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CaDir::at(tmp.path());
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        dir.init("red", now, 365, false).unwrap();
        let key_before = fs::read(tmp.path().join("ca.key")).unwrap();
        assert!(matches!(dir.init("red", now, 365, false), Err(CaDirError::Exists(_))));
        assert_eq!(fs::read(tmp.path().join("ca.key")).unwrap(), key_before);
        let alice = Identity::generate("alice", Scheme::Ed25519).unwrap();
        let roles: BTreeSet<Role> = [Role::Member].into();
        let a = dir.issue("alice", alice.public(), &roles, now, 30).unwrap();
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        let trusted =
            TrustedDomain::new(&read(dir.cert_file()), Some(&read(dir.crl_file()))).unwrap();
        trusted.verify(&a.der, now).expect("issued and not revoked");
        assert_eq!(dir.revoke("alice", now).unwrap(), vec![a.info.serial.clone()]);
        let trusted =
            TrustedDomain::new(&read(dir.cert_file()), Some(&read(dir.crl_file()))).unwrap();
        assert!(matches!(trusted.verify(&a.der, now), Err(CertError::Revoked { .. })));
        assert!(matches!(dir.revoke("nobody", now), Err(CaDirError::NotIssued(_))));
        let (_, ledger) = dir.load().unwrap();
        assert_eq!((ledger.crl_number, ledger.issued.len()), (2, 1), "each list is newer");
        // Without its ledger the CA cannot number its next list: an error, not list 1 again.
        fs::remove_file(tmp.path().join("issued.json")).unwrap();
        assert!(matches!(dir.revoke("alice", now), Err(CaDirError::Io { .. })));
    }
}
