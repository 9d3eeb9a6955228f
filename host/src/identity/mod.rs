//! Member identity keys, signatures and the trust store.
//!
//! Two schemes, told apart by the algorithm named inside each key file (PKCS#8 for private
//! keys, SPKI for public keys, both PEM):
//! - **Ed25519** (`ed25519-dalek`), the default: fast (tens of microseconds to sign or verify)
//!   and with constant-time signing;
//! - **RSA-2048 with PSS and SHA-256** (`rsa`, `sha2`), as Cliques and Secure Spread used. Its
//!   private-key operation carries an unfixed timing side-channel advisory (RUSTSEC-2023-0071),
//!   and it signs about a hundred times slower; it is here for compatibility, not as a default.
//!
//! The trust store is a directory of `<member id>.pub` files: it is both the set of keys that
//! verify envelopes and the access-control list (a member without a file there never takes
//! part in key agreement).

// Key generation and RSA-PSS salts draw from the operating system.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod access;
pub mod ca_dir;
pub mod cert;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, Verifier};
use rand_core::OsRng;
use rsa::pkcs8::LineEnding;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use sha2::Sha256;
use zeroize::Zeroizing;

/// RSA modulus size for new keys.
pub const RSA_BITS: usize = 2048;

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// Ed25519 (the default).
    #[default]
    Ed25519,
    /// RSA-2048, PSS padding, SHA-256.
    RsaPss,
}

impl Scheme {
    /// The scheme's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::RsaPss => "rsa",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ed25519" => Some(Self::Ed25519),
            "rsa" | "rsa-pss" => Some(Self::RsaPss),
            _ => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What can go wrong with keys and signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A key file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error (in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// A key file holds no key this program understands.
    #[error("{path}: not an Ed25519 or RSA key in PEM ({detail})")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What the decoders said.
        detail: String,
    },
    /// A member id cannot name a key file.
    #[error(
        "invalid member id {0:?}: use letters, digits, '-', '_' or '.', not starting with '.'"
    )]
    BadId(String),
    /// Key generation or signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The trust store does not hold this member's own key: its peers, which hold the same
    /// store, would refuse everything it sends and wait for it.
    #[error(
        "the trust store has no key for {0:?}: every member needs the same store, with every \
         member's public key ({0}.pub included)"
    )]
    NotInTrustStore(String),
    /// A private key file is already there, and replacing it was not asked for.
    #[error("{0}: a private key is already there; keep it, or replace it with --force")]
    Exists(PathBuf),
    /// The trust store holds another key for this member than its own.
    #[error(
        "the trust store's key for {0:?} is not this member's key: its peers would refuse every \
         message it signs (copy its current {0}.pub to every member's store)"
    )]
    WrongKeyInTrustStore(String),
}

/// True if `id` can be a member id (and a file name).
pub fn valid_member_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

enum PrivateKey {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    Rsa(Box<rsa::pss::BlindedSigningKey<Sha256>>),
}

/// A member's private identity: signs envelopes.
pub struct Identity {
    id: String,
    key: PrivateKey,
    public: PublicKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).field("scheme", &self.scheme()).finish()
    }
}

/// A member's public key: verifies its envelopes.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// RSA-PSS with SHA-256.
    Rsa(Box<rsa::RsaPublicKey>),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.scheme())
    }
}

impl PublicKey {
    /// The key's scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Ed25519(_) => Scheme::Ed25519,
            Self::Rsa(_) => Scheme::RsaPss,
        }
    }

    /// The key's public bytes: Ed25519's 32-byte point, or RSA's modulus then exponent.
    pub fn raw_bytes(&self) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => k.as_bytes().to_vec(),
            Self::Rsa(k) => {
                use rsa::traits::PublicKeyParts;
                let mut bytes = k.n().to_bytes_be();
                bytes.extend_from_slice(&k.e().to_bytes_be());
                bytes
            }
        }
    }

    /// Verifies `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        match self {
            Self::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| IdentityError::BadSignature)?;
                k.verify_strict(message, &sig).map_err(|_| IdentityError::BadSignature)
            }
            Self::Rsa(k) => {
                let sig = rsa::pss::Signature::try_from(signature)
                    .map_err(|_| IdentityError::BadSignature)?;
                rsa::pss::VerifyingKey::<Sha256>::new((**k).clone())
                    .verify(message, &sig)
                    .map_err(|_| IdentityError::BadSignature)
            }
        }
    }

    /// The SPKI PEM encoding.
    pub fn to_pem(&self) -> Result<String, IdentityError> {
        match self {
            Self::Ed25519(k) => k.to_public_key_pem(LineEnding::LF),
            Self::Rsa(k) => k.to_public_key_pem(LineEnding::LF),
        }
        .map_err(|e| IdentityError::Sign(e.to_string()))
    }

    /// Parses an SPKI DER public key of either scheme.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, IdentityError> {
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
            return Ok(Self::Ed25519(k));
        }
        rsa::RsaPublicKey::from_public_key_der(der).map(|k| Self::Rsa(Box::new(k))).map_err(|e| {
            IdentityError::BadKey { path: PathBuf::from("(certificate)"), detail: e.to_string() }
        })
    }

    /// Parses an SPKI PEM public key of either scheme.
    pub fn from_pem(pem: &str, path: &Path) -> Result<Self, IdentityError> {
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            return Ok(Self::Ed25519(k));
        }
        match rsa::RsaPublicKey::from_public_key_pem(pem) {
            Ok(k) => Ok(Self::Rsa(Box::new(k))),
            Err(e) => {
                Err(IdentityError::BadKey { path: path.to_path_buf(), detail: e.to_string() })
            }
        }
    }
}

impl Identity {
    /// An Ed25519 key pair for `id` derived from a 32-byte seed: for simulations and tests
    /// that must be reproducible, never for real members.
    pub fn ed25519_from_seed(id: &str, seed: [u8; 32]) -> Result<Self, IdentityError> {
        if !valid_member_id(id) {
            return Err(IdentityError::BadId(id.to_owned()));
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        Ok(Self::from_key(id, PrivateKey::Ed25519(Box::new(key))))
    }

    /// A new key pair for `id`, from the OS's randomness.
    pub fn generate(id: &str, scheme: Scheme) -> Result<Self, IdentityError> {
        if !valid_member_id(id) {
            return Err(IdentityError::BadId(id.to_owned()));
        }
        let key = match scheme {
            Scheme::Ed25519 => {
                PrivateKey::Ed25519(Box::new(ed25519_dalek::SigningKey::generate(&mut OsRng)))
            }
            Scheme::RsaPss => {
                let k = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
                    .map_err(|e| IdentityError::Sign(e.to_string()))?;
                PrivateKey::Rsa(Box::new(rsa::pss::BlindedSigningKey::new(k)))
            }
        };
        Ok(Self::from_key(id, key))
    }

    fn from_key(id: &str, key: PrivateKey) -> Self {
        let public = match &key {
            PrivateKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            PrivateKey::Rsa(k) => {
                let private: &rsa::RsaPrivateKey = (**k).as_ref();
                PublicKey::Rsa(Box::new(private.to_public_key()))
            }
        };
        Self { id: id.to_owned(), key, public }
    }

    /// The member id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key's scheme.
    pub fn scheme(&self) -> Scheme {
        self.public.scheme()
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.key {
            PrivateKey::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            PrivateKey::Rsa(k) => k.sign_with_rng(&mut OsRng, message).to_vec(),
        }
    }

    /// Writes `<dir>/<id>.key` (PKCS#8 PEM, mode 0600) and `<dir>/<id>.pub` (SPKI PEM),
    /// replacing any that are there. Returns the two paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), IdentityError> {
        self.write_new(dir, true)
    }

    /// As [`Self::write`], but refuses ([`IdentityError::Exists`]) to replace a private key
    /// file that is already there unless `replace` is set: a lost private key cannot be made
    /// again.
    pub fn write_new(
        &self,
        dir: &Path,
        replace: bool,
    ) -> Result<(PathBuf, PathBuf), IdentityError> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let private_path = dir.join(format!("{}.key", self.id));
        if !replace && private_path.exists() {
            return Err(IdentityError::Exists(private_path));
        }
        let public_path = dir.join(format!("{}.pub", self.id));
        let pem: Zeroizing<String> = match &self.key {
            PrivateKey::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
            PrivateKey::Rsa(k) => {
                let private: &rsa::RsaPrivateKey = (**k).as_ref();
                private.to_pkcs8_pem(LineEnding::LF)
            }
        }
        .map_err(|e| IdentityError::Sign(e.to_string()))?;
        write_private(&private_path, pem.as_bytes()).map_err(|e| io_error(&private_path, e))?;
        fs::write(&public_path, self.public.to_pem()?).map_err(|e| io_error(&public_path, e))?;
        Ok((private_path, public_path))
    }

    /// Reads a private key file; the member id is the file name without `.key`.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let id = member_id_of(path)?;
        let pem = read_pem(path)?;
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem) {
            return Ok(Self::from_key(&id, PrivateKey::Ed25519(Box::new(k))));
        }
        match rsa::RsaPrivateKey::from_pkcs8_pem(&pem) {
            Ok(k) => Ok(Self::from_key(
                &id,
                PrivateKey::Rsa(Box::new(rsa::pss::BlindedSigningKey::new(k))),
            )),
            Err(e) => {
                Err(IdentityError::BadKey { path: path.to_path_buf(), detail: e.to_string() })
            }
        }
    }
}

/// Reads a key file that must hold a PEM block; binary content (a DER key, say) or text
/// without one is a [`IdentityError::BadKey`] that says so, not a decoder's puzzle.
fn read_pem(path: &Path) -> Result<Zeroizing<String>, IdentityError> {
    let bytes = Zeroizing::new(
        fs::read(path).map_err(|error| IdentityError::Io { path: path.to_path_buf(), error })?,
    );
    let text = std::str::from_utf8(&bytes).ok().filter(|t| t.contains("-----BEGIN "));
    match text {
        Some(t) => Ok(Zeroizing::new(t.to_owned())),
        None => Err(IdentityError::BadKey {
            path: path.to_path_buf(),
            detail: "the file holds no PEM block (`-----BEGIN ...-----`): gka reads PKCS#8 and \
                     SPKI PEM, as `gka keygen` writes them; convert a DER key with `openssl \
                     pkey -inform DER -in FILE -out FILE.pem`"
                .into(),
        }),
    }
}

/// The member id a key file names: its file name without the extension.
fn member_id_of(path: &Path) -> Result<String, IdentityError> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| valid_member_id(s))
        .map(str::to_owned)
        .ok_or_else(|| IdentityError::BadId(path.display().to_string()))
}

fn io_error(path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io { path: path.to_path_buf(), error: source }
}

/// Writes a secret file readable by its owner only.
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::write(path, bytes)
}

/// The trusted members' public keys: the access-control list. Cloning shares the keys (a
/// simulated group of a thousand members holds one copy).
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    // Hashed (foldhash, seeded per process): every envelope looks its sender up here. The ids
    // are those of local key files or of certificates a CA signed.
    keys: Arc<foldhash::HashMap<String, PublicKey>>,
}

impl TrustStore {
    /// Reads every `<id>.pub` file in `dir`; any unreadable or invalid file is an error naming it.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let entries = fs::read_dir(dir)
            .map_err(|source| IdentityError::Io { path: dir.to_path_buf(), error: source })?;
        let mut keys = foldhash::HashMap::default();
        for entry in entries {
            let path = entry
                .map_err(|source| IdentityError::Io { path: dir.to_path_buf(), error: source })?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("pub") {
                continue;
            }
            let id = member_id_of(&path)?;
            let pem = read_pem(&path)?;
            keys.insert(id, PublicKey::from_pem(&pem, &path)?);
        }
        Ok(Self { keys: Arc::new(keys) })
    }

    /// Adds or replaces a member's key.
    pub fn insert(&mut self, id: &str, key: PublicKey) {
        Arc::make_mut(&mut self.keys).insert(id.to_owned(), key);
    }

    /// Removes a member's key.
    pub fn remove(&mut self, id: &str) {
        if self.keys.contains_key(id) {
            Arc::make_mut(&mut self.keys).remove(id);
        }
    }

    /// The key of a trusted member.
    pub fn get(&self, id: &str) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// True if the member is trusted.
    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// How many members are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted member ids, in order.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids.into_iter()
    }

    /// Checks that this store lets its peers verify `identity`: it holds a key for the
    /// member's id, and that key verifies the member's signatures. A member that fails this
    /// would only stall its group, so it should not start.
    pub fn check_own(&self, identity: &Identity) -> Result<(), IdentityError> {
        let id = identity.id();
        let key = self.get(id).ok_or_else(|| IdentityError::NotInTrustStore(id.to_owned()))?;
        let probe = b"gka trust store self-check";
        key.verify(probe, &identity.sign(probe))
            .map_err(|_| IdentityError::WrongKeyInTrustStore(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_sign_verify_and_round_trip_through_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (id, scheme) in [("alice", Scheme::Ed25519), ("bob", Scheme::RsaPss)] {
            let me = Identity::generate(id, scheme).expect("keygen");
            let sig = me.sign(b"hello");
            me.public().verify(b"hello", &sig).expect("verifies");
            assert!(me.public().verify(b"hellO", &sig).is_err());
            let (private, _) = me.write(dir.path()).expect("write");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "private key file mode");
            }
            let loaded = Identity::load(&private).expect("load");
            assert_eq!(loaded.scheme(), scheme);
            assert_eq!(loaded.id(), id);
            loaded.public().verify(b"x", &me.sign(b"x")).expect("same key");
        }
        let store = TrustStore::load(dir.path()).expect("trust store");
        assert_eq!(store.members().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(store.get("bob").map(PublicKey::scheme), Some(Scheme::RsaPss));
    }

    #[test]
    fn bad_key_files_and_ids_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("mallory.key");
        fs::write(&bad, "not a key").unwrap();
        assert!(matches!(Identity::load(&bad), Err(IdentityError::BadKey { .. })));
        assert!(matches!(
            Identity::generate("../x", Scheme::Ed25519),
            Err(IdentityError::BadId(_))
        ));
        fs::write(dir.path().join("eve.pub"), "garbage").unwrap();
        let err = TrustStore::load(dir.path()).expect_err("garbage public key");
        assert!(err.to_string().contains("eve.pub"), "{err}");
    }

    #[test]
    fn a_store_without_this_member_or_with_another_key_for_it_is_refused() {
        let me = Identity::generate("me", Scheme::Ed25519).unwrap();
        let other = Identity::generate("me", Scheme::Ed25519).unwrap();
        let mut store = TrustStore::default();
        assert!(matches!(store.check_own(&me), Err(IdentityError::NotInTrustStore(_))));
        store.insert("me", other.public().clone());
        assert!(matches!(store.check_own(&me), Err(IdentityError::WrongKeyInTrustStore(_))));
        store.insert("me", me.public().clone());
        store.check_own(&me).expect("its own key");
    }
}
