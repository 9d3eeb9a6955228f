//! A client's own credentials: its identity key file and the certificate it presents, each
//! checked against the other before anything is sent.

use std::path::Path;

use anyhow::{bail, Context, Result};
use gka_host::identity::Identity;

/// Loads the identity key in `key` and checks that it is `id`'s.
pub(crate) fn load_identity(key: &Path, id: &str) -> Result<Identity> {
    if !key.is_file() {
        bail!(
            "no key file {} (--key): make one with `gka keygen --id {id} --out DIR`",
            key.display()
        );
    }
    // The error names the file.
    let identity = Identity::load(key).context("cannot load the key (--key)")?;
    if identity.id() != id {
        bail!(
            "the key file {} (--key) is for {:?}, not {id:?} (--id): give the key file made \
             by `gka keygen --id {id}`",
            key.display(),
            identity.id()
        );
    }
    Ok(identity)
}

/// Reads the certificate in `path` (PEM) and checks that it is for this identity's id and key.
pub(crate) fn own_certificate(path: &Path, identity: &Identity, key: &Path) -> Result<Vec<u8>> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (--cert)", path.display()))?;
    let der = gka_host::identity::cert::der_of_pem(&pem, "CERTIFICATE")
        .with_context(|| format!("{} (--cert)", path.display()))?;
    let info = gka_host::identity::cert::read_cert(&der)
        .with_context(|| format!("{} (--cert)", path.display()))?;
    info.belongs_to(identity).map_err(|e| {
        anyhow::anyhow!("{} (--cert, with the key {}): {e}", path.display(), key.display())
    })?;
    Ok(der)
}
