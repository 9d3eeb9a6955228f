//! Finds and loads key-agreement plugins.
//!
//! A plugin directory is scanned for dynamic libraries (`*.so` on Linux). Each one is hashed
//! (its SHA-256 is its identity), loaded without caching through
//! [`load_plugin`] (which checks the `abi_stable` header, the root
//! module's type layout and the gka ABI version) and registered under its descriptor's name.
//! A library that fails is recorded with its path and reason and the others still load.
//!
//! The directory comes from, in order: an explicit path (`--plugins DIR`), the
//! `GKA_PLUGIN_PATH` environment variable (a `:`-separated list of directories), or the
//! directory holding the running executable.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gka_abi::ABI_VERSION;
use gka_plugin_api::{Descriptor, Protocol};
use serde::Serialize;
use sha2::{Digest, Sha256};

mod library;

pub use library::{load_plugin, LoadError, LoadedProtocol};

/// The environment variable naming plugin directories.
pub const PLUGIN_PATH_ENV: &str = "GKA_PLUGIN_PATH";

/// A plugin that loaded.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// The protocol, usable through the safe trait.
    pub protocol: Arc<LoadedProtocol>,
    /// Its descriptor.
    pub descriptor: Descriptor,
    /// The library file.
    pub path: PathBuf,
    /// SHA-256 of the library file, lower-case hex.
    pub sha256: String,
}

/// A library that did not load, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFailure {
    /// The library file.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: String,
}

/// Every plugin found, by name, and every failure.
#[derive(Debug, Default)]
pub struct Registry {
    plugins: BTreeMap<String, Plugin>,
    failures: Vec<LoadFailure>,
}

/// The plugin directories to scan: `explicit` if any, else `GKA_PLUGIN_PATH`, else the
/// executable's directory.
pub fn plugin_dirs(explicit: &[PathBuf]) -> Vec<PathBuf> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    if let Some(paths) = std::env::var_os(PLUGIN_PATH_ENV) {
        let dirs: Vec<PathBuf> =
            std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()).collect();
        if !dirs.is_empty() {
            return dirs;
        }
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .into_iter()
        .collect()
}

fn is_library(path: &Path) -> bool {
    path.is_file()
        && path.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
}

/// SHA-256 of a file, lower-case hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let bytes = fs::read(path)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl Registry {
    /// Scans every directory (a missing or unreadable directory is a failure, not an abort).
    pub fn scan(dirs: &[PathBuf]) -> Self {
        let mut registry = Self::default();
        for dir in dirs {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    registry.fail(dir, format!("cannot read plugin directory: {e}"));
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_library(p))
                .collect();
            files.sort();
            for file in files {
                registry.load(&file);
            }
        }
        registry
    }

    /// Loads one library file into the registry.
    pub fn load(&mut self, path: &Path) {
        let sha256 = match file_sha256(path) {
            Ok(h) => h,
            Err(e) => return self.fail(path, format!("cannot read: {e}")),
        };
        let protocol = match load_plugin(path) {
            Ok(p) => p,
            Err(e) => return self.fail(path, e.to_string()),
        };
        let descriptor = protocol.descriptor();
        if let Some(existing) = self.plugins.get(&descriptor.name) {
            let reason = format!(
                "duplicate plugin name {:?} (already loaded from {})",
                descriptor.name,
                existing.path.display()
            );
            return self.fail(path, reason);
        }
        self.plugins.insert(
            descriptor.name.clone(),
            Plugin { protocol: Arc::new(protocol), descriptor, path: path.to_path_buf(), sha256 },
        );
    }

    fn fail(&mut self, path: &Path, reason: String) {
        self.failures.push(LoadFailure { path: path.to_path_buf(), reason });
    }

    /// The plugins that loaded, by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }

    /// The plugin with this name.
    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.plugins.get(name)
    }

    /// The libraries that failed, with reasons.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }
}

/// One row of `gka plugins list --json`.
#[derive(Debug, Serialize)]
pub struct PluginInfo {
    /// Protocol name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// ABI version it was built for.
    pub abi_version: u32,
    /// Library path.
    pub path: PathBuf,
    /// SHA-256 of the library (64 hex digits).
    pub sha256: String,
    /// Events it supports.
    pub events: Vec<String>,
    /// One-line summary.
    pub summary: String,
}

impl From<&Plugin> for PluginInfo {
    fn from(p: &Plugin) -> Self {
        Self {
            name: p.descriptor.name.clone(),
            version: p.descriptor.version.clone(),
            abi_version: p.protocol.abi_version(),
            path: p.path.clone(),
            sha256: p.sha256.clone(),
            events: p.descriptor.events.iter().map(|e| e.name().to_owned()).collect(),
            summary: p.descriptor.summary.clone(),
        }
    }
}

/// The ABI version this host speaks.
pub fn host_abi_version() -> u32 {
    ABI_VERSION
}
