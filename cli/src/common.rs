//! What several subcommands share: the plugin directory flag and the plugins it loads once,
//! policy files, the tokio runtime and the metrics endpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use gka_host::loader::{plugin_dirs, Registry};
use gka_host::member::Catalogue;
use gka_host::policy::Policy;
use gka_plugin_api::Protocol;

/// The `--plugins DIR[:DIR..]` flag, declared once and flattened into every subcommand that
/// loads plugins.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PluginDirArg {
    /// Plugin directories, `:`-separated or the flag repeated (default: $GKA_PLUGIN_PATH, also
    /// `:`-separated, else this executable's directory).
    #[arg(long = "plugins", value_name = "DIR[:DIR..]", global = true, value_delimiter = ':')]
    pub(crate) dirs: Vec<PathBuf>,
}

/// The plugins found in the directories a command was given, scanned and opened once.
pub(crate) struct Plugins {
    /// The directories scanned.
    pub(crate) dirs: Vec<PathBuf>,
    /// What loaded, and what did not.
    pub(crate) registry: Registry,
}

impl PluginDirArg {
    /// Scans the plugin directories (once per command). A directory given with --plugins
    /// that does not exist is an error; what fails to load in them is kept, with why.
    pub(crate) fn load(&self) -> Result<Plugins> {
        if let Some(missing) = self.dirs.iter().find(|d| !d.is_dir()) {
            anyhow::bail!(
                "the plugin directory {} (--plugins) does not exist: give the directory that \
                 holds the plugin libraries (`target/release` after `cargo build --release \
                 --workspace`)",
                missing.display()
            );
        }
        let dirs = plugin_dirs(&self.dirs);
        let registry = Registry::scan(&dirs);
        Ok(Plugins { dirs, registry })
    }
}

impl Plugins {
    /// The protocol named `name`, or an error naming the directories, what loaded and why the
    /// rest did not.
    pub(crate) fn protocol(&self, name: &str) -> Result<Arc<dyn Protocol>> {
        let plugin = self.registry.get(name).with_context(|| {
            let known: Vec<&str> = self.loaded_names();
            let loaded = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            let mut message = format!(
                "no plugin named {name:?} in {:?} (loaded: {loaded}; the directories come from \
                 --plugins, else $GKA_PLUGIN_PATH, else the gka executable's directory)",
                self.dirs
            );
            for failure in self.registry.failures() {
                message.push_str(&format!(
                    "\n  not loaded: {}: {}",
                    failure.path.display(),
                    failure.reason
                ));
            }
            message
        })?;
        Ok(plugin.protocol.clone())
    }

    /// The names of the plugins that loaded.
    pub(crate) fn loaded_names(&self) -> Vec<&str> {
        self.registry.plugins().map(|p| p.descriptor.name.as_str()).collect()
    }

    /// The protocol names a policy may mention: the loaded plugins, or the five built-in
    /// names when none loaded.
    pub(crate) fn known_protocols(&self) -> Vec<&str> {
        let known = self.loaded_names();
        if known.is_empty() {
            gka_host::policy::KNOWN_PROTOCOLS.to_vec()
        } else {
            known
        }
    }

    /// Every loaded plugin as a switch catalogue.
    pub(crate) fn catalogue(&self) -> Arc<Catalogue> {
        Arc::new(Catalogue::from_registry(&self.registry))
    }

    /// Reads and checks a policy file (given with `--policy`); every error is named with its
    /// line and column.
    pub(crate) fn read_policy(&self, path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the policy {} (--policy; the shipped one is policy.toml at the \
                 repository root)",
                path.display()
            )
        })?;
        Policy::parse(&text, &self.known_protocols()).map_err(|errors| {
            let lines: Vec<String> =
                errors.iter().map(|e| format!("{}:{e}", path.display())).collect();
            anyhow::anyhow!(
                "{} error(s) in {}:\n{}",
                errors.len(),
                path.display(),
                lines.join("\n")
            )
        })
    }
}

/// A multi-threaded tokio runtime.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")
}

/// Serves the Prometheus metrics on `addr`, if given.
pub(crate) fn install_metrics(addr: Option<std::net::SocketAddr>) -> Result<()> {
    if let Some(addr) = addr {
        gka_host::metrics::install(addr)
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        eprintln!("metrics on http://{addr}/metrics");
    }
    Ok(())
}

/// An error that ends `gka` with a status of its own (not the usual 1).
#[derive(Debug)]
pub(crate) struct ExitStatus {
    /// The process's exit status.
    pub(crate) code: u8,
    /// What to print.
    pub(crate) message: String,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitStatus {}
