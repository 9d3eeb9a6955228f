//! `gka ca`: a domain's certificate authority (see `host/src/identity/ca_dir.rs` for its files).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use gka_host::identity::ca_dir::CaDir;
use gka_host::identity::cert::{der_of_pem, read_cert, utc_date, Role};
use gka_host::identity::{Identity, PublicKey, Scheme};
use time::OffsetDateTime;

/// `gka ca` and its flags.
#[derive(Debug, clap::Args)]
pub(crate) struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Make a new domain CA: DIR/ca.crt (give it to the parties that trust this domain),
    /// DIR/ca.key (mode 0600, never overwritten without --force) and an empty revocation list
    /// DIR/crl.pem.
    Init {
        /// The domain (party) name.
        #[arg(long)]
        domain: String,
        /// The CA's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Days the CA certificate is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace an existing CA key (every certificate it issued stops verifying).
        #[arg(long)]
        force: bool,
    },
    /// Issue a member certificate: OUT/ID.crt, for the key in --public (a `gka keygen` .pub
    /// file), or for a new Ed25519 key written to OUT/ID.key.
    Issue {
        /// The CA's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The member id.
        #[arg(long)]
        id: String,
        /// Roles: member, operator (repeat the flag for both; default member).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// The member's public key (SPKI PEM); without it a new key pair is made.
        #[arg(long, value_name = "FILE")]
        public: Option<PathBuf>,
        /// Where to write ID.crt (and ID.key).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace an existing OUT/ID.key.
        #[arg(long)]
        force: bool,
    },
    /// Revoke every certificate issued to a member: DIR/crl.pem is signed anew with it.
    Revoke {
        /// The CA's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The member id.
        #[arg(long)]
        id: String,
    },
    /// Print what a certificate or revocation list file says.
    Show {
        /// A certificate (.crt) or revocation list (crl.pem).
        file: PathBuf,
    },
}

/// Runs `gka ca`.
pub(crate) fn run(args: CaArgs) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    match args.command {
        CaCommand::Init { domain, dir, days, force } => {
            let ca = CaDir::at(&dir).init(&domain, now, days, force).with_context(|| {
                format!("cannot make the CA of {domain:?} in {}", dir.display())
            })?;
            writeln!(std::io::stdout(), "domain {} CA in {}", ca.domain(), dir.display())?;
            writeln!(
                std::io::stdout(),
                "certificate: {} (give it to every party that trusts {domain})",
                CaDir::at(&dir).cert_file().display()
            )?;
            writeln!(
                std::io::stdout(),
                "revocation list: {}",
                CaDir::at(&dir).crl_file().display()
            )?;
            Ok(())
        }
        CaCommand::Issue { dir, id, roles, days, public, out, force } => {
            issue(&dir, &id, &roles, days, public.as_deref(), &out, force, now)
        }
        CaCommand::Revoke { dir, id } => {
            let serials = CaDir::at(&dir).revoke(&id, now).with_context(|| {
                format!("cannot revoke {id:?} with the CA in {}", dir.display())
            })?;
            writeln!(
                std::io::stdout(),
                "revoked {id} (serial {}); publish {}",
                serials.join(", "),
                CaDir::at(&dir).crl_file().display()
            )?;
            Ok(())
        }
        CaCommand::Show { file } => show(&file),
    }
}

#[allow(clippy::too_many_arguments)]
fn issue(
    dir: &Path,
    id: &str,
    roles: &[String],
    days: u32,
    public: Option<&Path>,
    out: &Path,
    force: bool,
    now: OffsetDateTime,
) -> Result<()> {
    let mut parsed = BTreeSet::new();
    for r in roles {
        parsed.insert(
            Role::from_name(r)
                .with_context(|| format!("unknown role {r:?} (--role member or operator)"))?,
        );
    }
    if parsed.is_empty() {
        parsed.insert(Role::Member);
    }
    // Before a new key is written: a wrong --dir must not leave a stray key behind.
    CaDir::at(dir)
        .load()
        .with_context(|| format!("cannot use the CA in {} (--dir)", dir.display()))?;
    let key = match public {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {} (--public)", path.display()))?;
            PublicKey::from_pem(&pem, path)
                .with_context(|| format!("--public {}", path.display()))?
        }
        None => {
            let identity = Identity::generate(id, Scheme::Ed25519)
                .with_context(|| format!("cannot make a key for {id:?}"))?;
            let (private, _) = identity
                .write_new(out, force)
                .with_context(|| format!("cannot write {id}'s key to {}", out.display()))?;
            writeln!(std::io::stdout(), "private key: {} (keep secret)", private.display())?;
            identity.public().clone()
        }
    };
    let issued = CaDir::at(dir)
        .issue(id, &key, &parsed, now, days)
        .with_context(|| format!("cannot issue a certificate with the CA in {}", dir.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join(format!("{id}.crt"));
    std::fs::write(&path, &issued.pem)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let roles: Vec<&str> = issued.info.roles.iter().map(|r| r.name()).collect();
    writeln!(
        std::io::stdout(),
        "certificate: {} ({id}, domain {}, roles {}, serial {}, {days} days)",
        path.display(),
        issued.info.domain,
        roles.join(","),
        issued.info.serial
    )?;
    Ok(())
}

fn show(file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if let Ok(der) = der_of_pem(&text, "CERTIFICATE") {
        let info = read_cert(&der).with_context(|| format!("{}", file.display()))?;
        let roles: Vec<&str> = info.roles.iter().map(|r| r.name()).collect();
        writeln!(
            std::io::stdout(),
            "{}: {} certificate",
            file.display(),
            if info.is_ca { "CA" } else { "member" }
        )?;
        writeln!(std::io::stdout(), "  id:       {}", info.id)?;
        writeln!(std::io::stdout(), "  domain:   {}", info.domain)?;
        if !info.is_ca {
            writeln!(std::io::stdout(), "  roles:    {}", roles.join(", "))?;
        }
        writeln!(std::io::stdout(), "  serial:   {}", info.serial)?;
        writeln!(
            std::io::stdout(),
            "  valid:    {} to {} UTC",
            utc_date(info.not_before),
            utc_date(info.not_after)
        )?;
        writeln!(std::io::stdout(), "  key:      {}", info.public.scheme())?;
        return Ok(());
    }
    if let Ok(der) = der_of_pem(&text, "X509 CRL") {
        let list = gka_host::identity::cert::read_crl(&der)
            .with_context(|| format!("{}", file.display()))?;
        writeln!(
            std::io::stdout(),
            "{}: revocation list of domain {}",
            file.display(),
            list.domain
        )?;
        writeln!(
            std::io::stdout(),
            "  number:   {}",
            list.number.map_or("none".into(), |n| n.to_string())
        )?;
        writeln!(std::io::stdout(), "  issued:   {} UTC", utc_date(list.this_update))?;
        writeln!(
            std::io::stdout(),
            "  revoked:  {}",
            if list.serials.is_empty() { "none".into() } else { list.serials.join(", ") }
        )?;
        return Ok(());
    }
    bail!("{}: neither a certificate nor a revocation list (PEM)", file.display())
}
