//! `gka keygen`: a member's identity key pair.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use gka_host::identity::{Identity, Scheme};

/// `gka keygen`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// The member id (letters, digits, '-', '_', '.').
    #[arg(long)]
    id: String,
    /// Directory to write the two files to.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Signature scheme: ed25519 (default) or rsa (RSA-2048 PSS SHA-256).
    #[arg(long, default_value = "ed25519")]
    scheme: String,
    /// Replace a private key that is already there (it cannot be recovered).
    #[arg(long)]
    force: bool,
}

/// Writes DIR/ID.key and DIR/ID.pub.
pub(crate) fn run(args: KeygenArgs) -> Result<()> {
    let KeygenArgs { id, out, scheme, force } = args;
    let scheme = Scheme::from_name(&scheme)
        .with_context(|| format!("unknown scheme {scheme:?} (use ed25519 or rsa)"))?;
    let identity =
        Identity::generate(&id, scheme).with_context(|| format!("cannot make a key for {id:?}"))?;
    let (private, public) = identity
        .write_new(&out, force)
        .with_context(|| format!("cannot write keys to {}", out.display()))?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{scheme} key for {id}")?;
    writeln!(stdout, "private: {} (keep secret)", private.display())?;
    writeln!(stdout, "public:  {} (copy into the members' trust stores)", public.display())?;
    Ok(())
}
