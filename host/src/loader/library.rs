//! A plugin library opened through the stable ABI (`gka-abi`) and wrapped as the same safe
//! [`Protocol`] trait a statically linked plugin implements.
//!
//! [`load_plugin`] checks the `abi_stable` header, the root module's type layout and the ABI
//! crate's version (through [`gka_abi::load_root_module`]), then [`ABI_VERSION`], then the
//! descriptor. Every call into the plugin returns an error value instead of unwinding: the
//! plugin side catches its own panics.

use std::path::Path;

use gka_abi::abi_stable::std_types::RResult;
use gka_abi::{
    load_root_module, FfiError, FfiOutput, FfiSessionBox, FfiSessionConfig, GkaPluginRef,
    ABI_VERSION,
};
use gka_plugin_api::export::{cost_from_ffi, error_from_ffi, view_to_ffi};
use gka_plugin_api::{
    CostFigures, Counters, Descriptor, EventKind, GroupKey, Output, Protocol, Session,
    SessionConfig, SessionError, View,
};
use zeroize::{Zeroize, Zeroizing};

/// Why a library could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// `abi_stable` refused it: not a library, no root module, incompatible `abi_stable`
    /// version or type layout, or its root module constructor failed.
    #[error("{0}")]
    Library(String),
    /// The plugin was built for another [`ABI_VERSION`].
    #[error("built for gka plugin ABI {found}, this host speaks ABI {expected}")]
    AbiVersion {
        /// The plugin's ABI version.
        found: u32,
        /// This host's.
        expected: u32,
    },
    /// Its descriptor call failed (for example it panicked).
    #[error("descriptor failed: {0}")]
    Descriptor(SessionError),
    /// Its descriptor is unusable.
    #[error("invalid descriptor: {0}")]
    InvalidDescriptor(String),
}

/// Loads the plugin library at `path` without caching (several plugins load side by side),
/// checking the `abi_stable` header, the root module's layout, [`ABI_VERSION`] and the
/// descriptor. The library stays loaded for the life of the process.
pub fn load_plugin(path: &Path) -> Result<LoadedProtocol, LoadError> {
    // The dynamic loader's own error for a missing file says nothing useful.
    if !path.is_file() {
        return Err(LoadError::Library("no such file".into()));
    }
    let module =
        load_root_module(path).map_err(|e| LoadError::Library(one_line(&e.to_string(), path)))?;
    let found = module.abi_version();
    if found != ABI_VERSION {
        return Err(LoadError::AbiVersion { found, expected: ABI_VERSION });
    }
    let descriptor = match (module.descriptor())() {
        RResult::ROk(d) => d,
        RResult::RErr(e) => return Err(LoadError::Descriptor(error_from_ffi(e))),
    };
    let mut events = Vec::new();
    for code in descriptor.events.iter() {
        let event = EventKind::from_code(*code)
            .ok_or_else(|| LoadError::InvalidDescriptor(format!("unknown event code {code}")))?;
        events.push(event);
    }
    let descriptor = Descriptor {
        name: descriptor.name.into_string(),
        version: descriptor.version.into_string(),
        summary: descriptor.summary.into_string(),
        events,
    };
    if descriptor.name.is_empty()
        || !descriptor.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(LoadError::InvalidDescriptor(format!(
            "name {:?} must be non-empty ASCII letters, digits, '-' or '_'",
            descriptor.name
        )));
    }
    Ok(LoadedProtocol { module, descriptor })
}

/// `abi_stable`'s multi-line error as one line, without the library's path (the caller names
/// it) or the headings: "file too short", say.
fn one_line(text: &str, path: &Path) -> String {
    let path = path.display().to_string();
    let prefix = format!("{path}: ");
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with(':') && *l != path)
        .map(|l| l.strip_prefix(&prefix).unwrap_or(l))
        .collect();
    if parts.is_empty() {
        "not a loadable library".to_owned()
    } else {
        parts.join("; ")
    }
}

/// A protocol loaded from a plugin library, usable through the safe [`Protocol`] trait.
#[derive(Clone)]
pub struct LoadedProtocol {
    module: GkaPluginRef,
    descriptor: Descriptor,
}

impl std::fmt::Debug for LoadedProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedProtocol").field("descriptor", &self.descriptor).finish()
    }
}

impl LoadedProtocol {
    /// The ABI version the plugin declared.
    pub fn abi_version(&self) -> u32 {
        self.module.abi_version()
    }

    /// The cost model, with errors (an unknown event, a panic) reported instead of hidden.
    pub fn try_cost(&self, event: EventKind, n: u64, k: u64) -> Result<CostFigures, SessionError> {
        match (self.module.cost())(event.code(), n, k) {
            RResult::ROk(c) => Ok(cost_from_ffi(c)),
            RResult::RErr(e) => Err(error_from_ffi(e)),
        }
    }
}

impl Protocol for LoadedProtocol {
    fn descriptor(&self) -> Descriptor {
        self.descriptor.clone()
    }

    /// See [`LoadedProtocol::try_cost`]; a failing cost model reports all zeros here.
    fn cost(&self, event: EventKind, n: u64, k: u64) -> CostFigures {
        self.try_cost(event, n, k).unwrap_or_default()
    }

    fn new_session(&self, config: SessionConfig) -> Result<Box<dyn Session>, SessionError> {
        let ffi = FfiSessionConfig {
            group_name: config.group_name.into(),
            member_id: config.member_id.into(),
            dh_group: config.dh_group.code(),
            rng_seed: config.rng_seed,
        };
        match (self.module.new_session())(ffi) {
            RResult::ROk(inner) => Ok(Box::new(LoadedSession { inner, failure: None })),
            RResult::RErr(e) => Err(error_from_ffi(e)),
        }
    }
}

/// A session of a loaded plugin.
struct LoadedSession {
    inner: FfiSessionBox,
    /// A failure seen while polling (which has no error channel), reported by the next input.
    failure: Option<SessionError>,
}

impl LoadedSession {
    fn result(&mut self, r: RResult<(), FfiError>) -> Result<(), SessionError> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        r.into_result().map_err(error_from_ffi)
    }
}

impl Session for LoadedSession {
    fn handle_view(&mut self, now_ms: u64, view: &View) -> Result<(), SessionError> {
        let r = self.inner.handle_view(now_ms, &view_to_ffi(view));
        self.result(r)
    }

    fn handle_payload(
        &mut self,
        now_ms: u64,
        from: &str,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        let r = self.inner.handle_payload(now_ms, from.into(), payload.into());
        self.result(r)
    }

    fn handle_refresh(&mut self, now_ms: u64) -> Result<(), SessionError> {
        let r = self.inner.handle_refresh(now_ms);
        self.result(r)
    }

    fn poll_output(&mut self) -> Option<Output> {
        // The trait has no error channel here: a failing or panicked plugin yields no output,
        // and its next input call reports the failure.
        let out = match self.inner.poll_output().into_result() {
            Ok(out) => out.into_option()?,
            Err(e) => {
                self.failure = Some(error_from_ffi(e));
                return None;
            }
        };
        let unknown = || {
            SessionError::Unexpected(
                "the plugin emitted an output kind this host does not know (newer ABI?)".into(),
            )
        };
        let Ok(out) = out.into_enum() else {
            self.failure = Some(unknown());
            return None;
        };
        Some(match out {
            FfiOutput::Broadcast(p) => Output::Broadcast(p.into_vec()),
            FfiOutput::Unicast { to, payload } => {
                Output::Unicast { to: to.into_string(), payload: payload.into_vec() }
            }
            FfiOutput::Key { epoch, view_id, mut key } => {
                let owned = Zeroizing::new(key);
                key.zeroize();
                Output::Key(GroupKey { epoch, view_id, key: owned })
            }
            _ => {
                self.failure = Some(unknown());
                return None;
            }
        })
    }

    fn counters(&self) -> Counters {
        let c = self.inner.counters();
        Counters {
            exponentiations: c.exponentiations,
            messages_sent: c.messages_sent,
            bytes_sent: c.bytes_sent,
            keys: c.keys,
        }
    }
}
