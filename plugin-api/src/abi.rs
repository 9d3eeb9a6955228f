//! The stable plugin ABI: the only module that touches `abi_stable`.
//!
//! A plugin library exports one prefix-type root module, [`GkaPlugin`], through
//! [`export_protocol!`](crate::export_protocol). The host loads it with
//! [`load_plugin`], which checks `abi_stable`'s own version and the root module's type layout,
//! then [`ABI_VERSION`], and wraps it in a [`LoadedProtocol`] that implements the same safe
//! [`Protocol`] trait as a statically linked plugin.
//!
//! The boundary is kept small on purpose (a few `#[repr(C)]` types, byte buffers for payloads)
//! so that it can be re-implemented without `abi_stable` if that crate stops being maintained.
//! Every entry point catches panics inside the plugin: a panic becomes an error value
//! ([`ErrorKind::Panicked`]) and never unwinds into the host (`abi_stable` would abort).
//!
//! Evolution rules (see `plugin-api/README.md`): add fields only at the end of [`GkaPlugin`]
//! and methods only at the end of [`FfiSession`]; add variants only to [`FfiOutput`] (it is
//! non-exhaustive); never change or remove anything else without bumping [`ABI_VERSION`].

// Each #[sabi_trait] and #[derive(StableAbi)] expands to impls the compiler flags as
// non-local definitions; they are sound and expected.
#![allow(non_local_definitions, missing_docs, unreachable_pub, unused_qualifications)]

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use abi_stable::nonexhaustive_enum::NonExhaustive;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, sabi_trait, StableAbi};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{ErrorKind, SessionError};
use crate::group::GroupId;
use crate::protocol::{
    CostFigures, Counters, Descriptor, EventKind, GroupKey, Output, Protocol, Session,
    SessionConfig, View,
};

/// The version of this ABI. A host loads only plugins built for the same number.
pub const ABI_VERSION: u32 = 1;

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = GkaPluginRef)))]
#[sabi(missing_field(panic))]
pub struct GkaPlugin {
    /// The [`ABI_VERSION`] the plugin was built against.
    pub abi_version: u32,
    /// The protocol's descriptor.
    pub descriptor: extern "C" fn() -> RResult<FfiDescriptor, FfiError>,
    /// The cost model: (event code, n, k) to figures.
    pub cost: extern "C" fn(event: u8, n: u64, k: u64) -> RResult<FfiCost, FfiError>,
    /// Makes a session.
    #[sabi(last_prefix_field)]
    pub new_session: extern "C" fn(config: FfiSessionConfig) -> RResult<FfiSessionBox, FfiError>,
}

impl RootModule for GkaPluginRef {
    declare_root_module_statics! {GkaPluginRef}
    const BASE_NAME: &'static str = "gka_plugin";
    const NAME: &'static str = "gka_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// An error crossing the boundary: its [`ErrorKind`] code and message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    pub kind: u8,
    pub message: RString,
}

/// [`Descriptor`] at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiDescriptor {
    pub name: RString,
    pub version: RString,
    pub summary: RString,
    pub events: RVec<u8>,
}

/// [`CostFigures`] at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiCost {
    pub rounds: u64,
    pub unicasts: u64,
    pub broadcasts: u64,
    pub serial_exponentiations: u64,
    pub total_exponentiations: u64,
    pub signatures: u64,
    pub verifications: u64,
    pub bytes: u64,
}

/// [`Counters`] at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiCounters {
    pub exponentiations: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub keys: u64,
}

/// [`SessionConfig`] at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiSessionConfig {
    pub group_name: RString,
    pub member_id: RString,
    pub dh_group: u16,
    pub rng_seed: [u8; 32],
}

/// [`View`] at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiView {
    pub view_id: u64,
    pub members: RVec<RString>,
    pub joined: RVec<RString>,
    pub left: RVec<RString>,
}

/// [`Output`] at the boundary; non-exhaustive, so later ABI versions may add variants.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
#[sabi(kind(WithNonExhaustive(size = [u64; 16], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum FfiOutput {
    Broadcast(RVec<u8>),
    Unicast { to: RString, payload: RVec<u8> },
    Key { epoch: u64, view_id: u64, key: [u8; 32] },
}

/// A session behind the boundary.
#[sabi_trait]
pub trait FfiSession: Send {
    fn handle_view(&mut self, now_ms: u64, view: &FfiView) -> RResult<(), FfiError>;
    fn handle_payload(
        &mut self,
        now_ms: u64,
        from: RStr<'_>,
        payload: RSlice<'_, u8>,
    ) -> RResult<(), FfiError>;
    fn handle_refresh(&mut self, now_ms: u64) -> RResult<(), FfiError>;
    fn poll_output(&mut self) -> RResult<ROption<FfiOutput_NE>, FfiError>;
    #[sabi(last_prefix_field)]
    fn counters(&self) -> FfiCounters;
}

/// An owned session trait object at the boundary.
pub type FfiSessionBox = FfiSession_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// Conversions

impl From<&SessionError> for FfiError {
    fn from(e: &SessionError) -> Self {
        Self { kind: e.kind().code(), message: e.to_string().into() }
    }
}

impl From<FfiError> for SessionError {
    fn from(e: FfiError) -> Self {
        Self::Plugin { kind: ErrorKind::from_code(e.kind), message: e.message.into_string() }
    }
}

impl From<CostFigures> for FfiCost {
    fn from(c: CostFigures) -> Self {
        Self {
            rounds: c.rounds,
            unicasts: c.unicasts,
            broadcasts: c.broadcasts,
            serial_exponentiations: c.serial_exponentiations,
            total_exponentiations: c.total_exponentiations,
            signatures: c.signatures,
            verifications: c.verifications,
            bytes: c.bytes,
        }
    }
}

impl From<FfiCost> for CostFigures {
    fn from(c: FfiCost) -> Self {
        Self {
            rounds: c.rounds,
            unicasts: c.unicasts,
            broadcasts: c.broadcasts,
            serial_exponentiations: c.serial_exponentiations,
            total_exponentiations: c.total_exponentiations,
            signatures: c.signatures,
            verifications: c.verifications,
            bytes: c.bytes,
        }
    }
}

fn rstrings(v: &[String]) -> RVec<RString> {
    v.iter().map(|s| RString::from(s.as_str())).collect()
}

fn strings(v: &RVec<RString>) -> Vec<String> {
    v.iter().map(|s| s.as_str().to_owned()).collect()
}

impl From<&View> for FfiView {
    fn from(v: &View) -> Self {
        Self {
            view_id: v.view_id,
            members: rstrings(&v.members),
            joined: rstrings(&v.joined),
            left: rstrings(&v.left),
        }
    }
}

impl From<&FfiView> for View {
    fn from(v: &FfiView) -> Self {
        Self {
            view_id: v.view_id,
            members: strings(&v.members),
            joined: strings(&v.joined),
            left: strings(&v.left),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Runs `f`, turning a panic into a [`SessionError::Panicked`].
fn guarded<T>(f: impl FnOnce() -> Result<T, SessionError>) -> Result<T, SessionError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(SessionError::Panicked(panic_message(payload.as_ref()))),
    }
}

fn to_rresult<T>(r: Result<T, SessionError>) -> RResult<T, FfiError> {
    match r {
        Ok(v) => RResult::ROk(v),
        Err(e) => RResult::RErr(FfiError::from(&e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin side: what export_protocol! expands to.

/// Wraps a plugin's [`Session`] behind [`FfiSession`], catching panics. After a panic the
/// session is poisoned: every later call fails with [`ErrorKind::Panicked`].
struct SessionAdapter {
    inner: Option<Box<dyn Session>>,
}

impl SessionAdapter {
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Session) -> Result<T, SessionError>,
    ) -> RResult<T, FfiError> {
        let Some(inner) = self.inner.as_mut() else {
            return to_rresult(Err(SessionError::Panicked("session poisoned by a panic".into())));
        };
        let result = guarded(|| f(inner.as_mut()));
        if matches!(result, Err(SessionError::Panicked(_))) {
            self.inner = None;
        }
        to_rresult(result)
    }
}

impl FfiSession for SessionAdapter {
    fn handle_view(&mut self, now_ms: u64, view: &FfiView) -> RResult<(), FfiError> {
        let view = View::from(view);
        self.call(|s| s.handle_view(now_ms, &view))
    }

    fn handle_payload(
        &mut self,
        now_ms: u64,
        from: RStr<'_>,
        payload: RSlice<'_, u8>,
    ) -> RResult<(), FfiError> {
        self.call(|s| s.handle_payload(now_ms, from.as_str(), payload.as_slice()))
    }

    fn handle_refresh(&mut self, now_ms: u64) -> RResult<(), FfiError> {
        self.call(|s| s.handle_refresh(now_ms))
    }

    fn poll_output(&mut self) -> RResult<ROption<FfiOutput_NE>, FfiError> {
        self.call(|s| {
            Ok(match s.poll_output() {
                None => ROption::RNone,
                Some(out) => ROption::RSome(NonExhaustive::new(output_to_ffi(out)?)),
            })
        })
    }

    fn counters(&self) -> FfiCounters {
        let c = match &self.inner {
            // Reading counters is a plain field read in every plugin; a panic here would be
            // a plugin bug, so catch it anyway and report zeros.
            Some(inner) => catch_unwind(AssertUnwindSafe(|| inner.counters())).unwrap_or_default(),
            None => Counters::default(),
        };
        FfiCounters {
            exponentiations: c.exponentiations,
            messages_sent: c.messages_sent,
            bytes_sent: c.bytes_sent,
            keys: c.keys,
        }
    }
}

fn output_to_ffi(out: Output) -> Result<FfiOutput, SessionError> {
    Ok(match out {
        Output::Broadcast(p) => FfiOutput::Broadcast(p.into()),
        Output::Unicast { to, payload } => {
            FfiOutput::Unicast { to: to.into(), payload: payload.into() }
        }
        Output::Key(k) => FfiOutput::Key { epoch: k.epoch, view_id: k.view_id, key: *k.key },
    })
}

#[doc(hidden)]
pub extern "C" fn ffi_descriptor<P: Protocol + Default>() -> RResult<FfiDescriptor, FfiError> {
    to_rresult(guarded(|| {
        let d = P::default().descriptor();
        Ok(FfiDescriptor {
            name: d.name.into(),
            version: d.version.into(),
            summary: d.summary.into(),
            events: d.events.iter().map(|e| e.code()).collect(),
        })
    }))
}

#[doc(hidden)]
pub extern "C" fn ffi_cost<P: Protocol + Default>(
    event: u8,
    n: u64,
    k: u64,
) -> RResult<FfiCost, FfiError> {
    to_rresult(guarded(|| {
        let event = EventKind::from_code(event)
            .ok_or_else(|| SessionError::Config(format!("unknown event code {event}")))?;
        Ok(P::default().cost(event, n, k).into())
    }))
}

#[doc(hidden)]
pub extern "C" fn ffi_new_session<P: Protocol + Default>(
    config: FfiSessionConfig,
) -> RResult<FfiSessionBox, FfiError> {
    to_rresult(guarded(|| {
        let dh_group = GroupId::from_code(config.dh_group).ok_or_else(|| {
            SessionError::Config(format!("unknown Diffie-Hellman group {}", config.dh_group))
        })?;
        let session = P::default().new_session(SessionConfig {
            group_name: config.group_name.into_string(),
            member_id: config.member_id.into_string(),
            dh_group,
            rng_seed: config.rng_seed,
        })?;
        let adapter = SessionAdapter { inner: Some(session) };
        Ok(FfiSession_TO::from_value(adapter, sabi_trait::TD_Opaque))
    }))
}

/// Builds the root module for protocol `P` (used by [`export_protocol!`](crate::export_protocol)).
#[doc(hidden)]
pub fn plugin_module<P: Protocol + Default>(abi_version: u32) -> GkaPluginRef {
    GkaPlugin {
        abi_version,
        descriptor: ffi_descriptor::<P>,
        cost: ffi_cost::<P>,
        new_session: ffi_new_session::<P>,
    }
    .leak_into_prefix()
}

/// Items the export macro needs; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}

/// Exports a [`Protocol`] type (which must implement `Default`) as a gka plugin library.
///
/// Put it once in the plugin crate's `lib.rs` and build the crate as a `cdylib`:
///
/// ```ignore
/// gka_plugin_api::export_protocol!(MyProtocol);
/// ```
///
/// Every entry point it generates catches panics inside the plugin and returns them as errors.
/// Only one plugin may be exported per library.
#[macro_export]
macro_rules! export_protocol {
    ($protocol:ty) => {
        $crate::export_protocol!(@abi_version $crate::abi::ABI_VERSION, $protocol);
    };
    (@abi_version $abi:expr, $protocol:ty) => {
        #[doc(hidden)]
        pub fn __gka_root_module() -> $crate::abi::GkaPluginRef {
            $crate::abi::plugin_module::<$protocol>($abi)
        }

        /// The `abi_stable` library header (the mangled name `abi_stable` looks up).
        #[doc(hidden)]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi::__private::LibHeader = {
            extern "C" fn __gka_erased_module() -> $crate::abi::__private::RootModuleResult {
                $crate::abi::__private::__call_root_module_loader(__gka_root_module)
            }
            // SAFETY: the constructor returns the root module type named here.
            unsafe {
                $crate::abi::__private::LibHeader::from_constructor::<$crate::abi::GkaPluginRef>(
                    __gka_erased_module,
                    $crate::abi::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

// ---------------------------------------------------------------------------------------------
// Host side

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
    let header = lib_header_from_path(path).map_err(library_error)?;
    let module = header.init_root_module::<GkaPluginRef>().map_err(library_error)?;
    let found = module.abi_version();
    if found != ABI_VERSION {
        return Err(LoadError::AbiVersion { found, expected: ABI_VERSION });
    }
    let descriptor = match (module.descriptor())() {
        RResult::ROk(d) => d,
        RResult::RErr(e) => return Err(LoadError::Descriptor(e.into())),
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

fn library_error(e: LibraryError) -> LoadError {
    LoadError::Library(e.to_string())
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
            RResult::ROk(c) => Ok(c.into()),
            RResult::RErr(e) => Err(e.into()),
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
            RResult::RErr(e) => Err(e.into()),
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
        r.into_result().map_err(SessionError::from)
    }
}

impl Session for LoadedSession {
    fn handle_view(&mut self, now_ms: u64, view: &View) -> Result<(), SessionError> {
        let r = self.inner.handle_view(now_ms, &FfiView::from(view));
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
                self.failure = Some(e.into());
                return None;
            }
        };
        let Ok(out) = out.into_enum() else {
            self.failure = Some(SessionError::Unexpected(
                "the plugin emitted an output kind this host does not know (newer ABI?)".into(),
            ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EventKind;

    /// Sessions whose every input panics.
    #[derive(Default)]
    struct Bomb;

    struct BombSession;

    impl Session for BombSession {
        fn handle_view(&mut self, _: u64, _: &View) -> Result<(), SessionError> {
            panic!("view exploded")
        }
        fn handle_payload(&mut self, _: u64, _: &str, _: &[u8]) -> Result<(), SessionError> {
            Ok(())
        }
        fn handle_refresh(&mut self, _: u64) -> Result<(), SessionError> {
            Ok(())
        }
        fn poll_output(&mut self) -> Option<Output> {
            None
        }
        fn counters(&self) -> Counters {
            Counters::default()
        }
    }

    impl Protocol for Bomb {
        fn descriptor(&self) -> Descriptor {
            Descriptor {
                name: "bomb".into(),
                version: "0".into(),
                summary: String::new(),
                events: vec![],
            }
        }
        fn cost(&self, _: EventKind, _: u64, _: u64) -> CostFigures {
            panic!("cost exploded")
        }
        fn new_session(&self, _: SessionConfig) -> Result<Box<dyn Session>, SessionError> {
            Ok(Box::new(BombSession))
        }
    }

    #[test]
    fn a_panicking_session_becomes_an_error_and_is_poisoned() {
        let config = FfiSessionConfig {
            group_name: "g".into(),
            member_id: "a".into(),
            dh_group: 2048,
            rng_seed: [0; 32],
        };
        let mut session = ffi_new_session::<Bomb>(config).into_result().expect("session");
        let view = FfiView::from(&View {
            view_id: 1,
            members: vec!["a".into()],
            joined: vec![],
            left: vec![],
        });
        let err = session.handle_view(0, &view).into_result().expect_err("panic caught");
        assert_eq!(ErrorKind::from_code(err.kind), ErrorKind::Panicked);
        assert!(err.message.as_str().contains("view exploded"));
        // Poisoned: even a harmless call now fails.
        let err = session.handle_refresh(0).into_result().expect_err("poisoned");
        assert!(err.message.as_str().contains("poisoned"));
    }

    #[test]
    fn a_panicking_cost_model_becomes_an_error() {
        let err = ffi_cost::<Bomb>(EventKind::Join.code(), 4, 0).into_result().expect_err("caught");
        assert_eq!(ErrorKind::from_code(err.kind), ErrorKind::Panicked);
        let err = ffi_cost::<Bomb>(200, 4, 0).into_result().expect_err("unknown event");
        assert_eq!(ErrorKind::from_code(err.kind), ErrorKind::Config);
    }

    #[test]
    fn an_unknown_group_is_a_config_error() {
        let config = FfiSessionConfig {
            group_name: "g".into(),
            member_id: "a".into(),
            dh_group: 1234,
            rng_seed: [0; 32],
        };
        let err = ffi_new_session::<Bomb>(config).into_result().err().expect("refused");
        assert_eq!(ErrorKind::from_code(err.kind), ErrorKind::Config);
    }
}
