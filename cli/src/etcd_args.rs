//! The `--etcd` flags `gka member` and `gka demo` share: where the etcd cluster is, how to
//! reach it over mutual TLS, and the layer's timing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gka_host::group::etcd::MAX_LEASE_TTL_S;
use gka_host::group::{EtcdConfig, EtcdTiming, EtcdTls};

/// The etcd flags (see `docs/deploy.md`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EtcdArgs {
    /// Run the group on this etcd cluster instead of the daemon: its client URLs,
    /// comma-separated (`http://10.0.0.1:2379,...`, or `https://` with --etcd-ca).
    #[arg(long, value_name = "URL[,URL..]", value_delimiter = ',')]
    pub(crate) etcd: Vec<String>,
    /// The CA certificates (PEM) etcd's server certificates chain to: connect over TLS. The
    /// client certificate is --etcd-cert, else the member's own --cert (with its --key).
    #[arg(long, value_name = "FILE", requires = "etcd")]
    etcd_ca: Option<PathBuf>,
    /// A client certificate (PEM) for etcd's --client-cert-auth, with --etcd-key.
    #[arg(long, value_name = "FILE", requires_all = ["etcd_ca", "etcd_key"])]
    etcd_cert: Option<PathBuf>,
    /// The private key (PKCS#8 PEM) of --etcd-cert.
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// The member lease's time to live in etcd, seconds: a member silent this long is removed
    /// (etcd's minimum is 1.5 times its election timeout).
    #[arg(long, value_name = "SECS", default_value_t = 5, requires = "etcd")]
    etcd_lease_ttl: i64,
    /// How long the coordinator waits after a membership change before it writes the view,
    /// milliseconds (simultaneous changes form one view).
    #[arg(long, value_name = "MS", default_value_t = 100, requires = "etcd")]
    etcd_settle_ms: u64,
}

fn read(path: &Path, flag: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} ({flag}): give a PEM file", path.display()))
}

impl EtcdArgs {
    /// The etcd settings, if `--etcd` was given. `member` is the member's own certificate and
    /// key files, the TLS client identity when no --etcd-cert is given.
    pub(crate) fn config(&self, member: Option<(&Path, &Path)>) -> Result<Option<EtcdConfig>> {
        if self.etcd.is_empty() {
            return Ok(None);
        }
        for url in &self.etcd {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok {
                bail!("--etcd {url:?}: give URLs with a scheme, such as http://127.0.0.1:2379");
            }
            if url.starts_with("https://") && self.etcd_ca.is_none() {
                bail!("--etcd {url:?} is https: give --etcd-ca with the CA of etcd's certificates");
            }
        }
        if !(1..=MAX_LEASE_TTL_S).contains(&self.etcd_lease_ttl) {
            bail!("--etcd-lease-ttl {}: give 1 to {MAX_LEASE_TTL_S} seconds", self.etcd_lease_ttl);
        }
        if self.etcd_settle_ms > 60_000 {
            bail!("--etcd-settle-ms {}: give at most 60000", self.etcd_settle_ms);
        }
        let tls = match &self.etcd_ca {
            None => None,
            Some(ca) => {
                let ca_pem = read(ca, "--etcd-ca")?;
                let client = match (&self.etcd_cert, &self.etcd_key, member) {
                    (Some(cert), Some(key), _) => {
                        Some((read(cert, "--etcd-cert")?, read(key, "--etcd-key")?.into()))
                    }
                    (None, None, Some((cert, key))) => {
                        Some((read(cert, "--cert")?, read(key, "--key")?.into()))
                    }
                    _ => None,
                };
                Some(EtcdTls { ca_pem, client, domain: None })
            }
        };
        let mut config = EtcdConfig::new(self.etcd.clone());
        config.tls = tls;
        config.timing = EtcdTiming {
            lease_ttl_s: self.etcd_lease_ttl,
            settle: Duration::from_millis(self.etcd_settle_ms),
            ..EtcdTiming::default()
        };
        Ok(Some(config))
    }
}
