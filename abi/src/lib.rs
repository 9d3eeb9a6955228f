//! # gka ABI
//!
//! The stable binary boundary between the gka host and its key-agreement plugins, and nothing
//! else: a few `#[repr(C)]` types, the root module every plugin library exports
//! ([`GkaPlugin`]), [`ABI_VERSION`], and the macro that emits the library header
//! ([`export_root_module!`]). The plugin SDK (`gka-plugin-api`) builds the root module from a
//! safe `Protocol`; the host's loader opens it.
//!
//! This crate is versioned on its own. `abi_stable` checks, at load, the type layout of the
//! root module and this crate's version (its [`RootModule::VERSION_STRINGS`]), then the host
//! checks [`ABI_VERSION`]: a change to the SDK alone never stops an already-built plugin from
//! loading.
//!
//! The boundary is kept small on purpose (a few `#[repr(C)]` types, byte buffers for payloads)
//! so that it can be re-implemented without `abi_stable` if that crate stops being maintained.
//!
//! Evolution rules: add fields only at the end of [`GkaPlugin`] and methods only at the end of
//! [`FfiSession`]; add variants only to [`FfiOutput`] (it is non-exhaustive); never change or
//! remove anything else without bumping [`ABI_VERSION`] and this crate's minor version.

// Each #[sabi_trait] and #[derive(StableAbi)] expands to impls the compiler flags as
// non-local definitions; they are sound and expected.
#![allow(non_local_definitions, missing_docs, unreachable_pub, unused_qualifications)]

use std::path::Path;

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, sabi_trait, StableAbi};

/// The `abi_stable` crate this ABI is built on, for the SDK and the host.
pub use abi_stable;

/// The version of this ABI. A host loads only plugins built for the same number.
///
/// 2: the boundary moved from `gka-plugin-api` into this crate (`abi_stable` identifies types
/// by their crate, so plugins built for ABI 1 no longer match).
pub const ABI_VERSION: u32 = 2;

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

/// An error crossing the boundary: its error kind code and message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    pub kind: u8,
    pub message: RString,
}

/// A protocol descriptor at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiDescriptor {
    pub name: RString,
    pub version: RString,
    pub summary: RString,
    pub events: RVec<u8>,
}

/// A cost model's figures at the boundary.
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

/// A session's counters at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiCounters {
    pub exponentiations: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub keys: u64,
}

/// A session's configuration at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiSessionConfig {
    pub group_name: RString,
    pub member_id: RString,
    pub dh_group: u16,
    pub rng_seed: [u8; 32],
}

/// A membership view at the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiView {
    pub view_id: u64,
    pub members: RVec<RString>,
    pub joined: RVec<RString>,
    pub left: RVec<RString>,
}

/// A session output at the boundary; non-exhaustive, so later ABI versions may add variants.
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

/// Opens the plugin library at `path` without caching (several plugins load side by side) and
/// returns its root module, once `abi_stable` has checked its header, its own version and the
/// root module's type layout. The library stays loaded for the life of the process. The caller
/// checks [`ABI_VERSION`].
pub fn load_root_module(path: &Path) -> Result<GkaPluginRef, LibraryError> {
    let header = lib_header_from_path(path)?;
    header.init_root_module::<GkaPluginRef>()
}

/// Items [`export_root_module!`] needs; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}

/// Emits the library header `abi_stable` looks up, for a root module made by `$constructor`
/// (a `fn() -> GkaPluginRef`). The plugin SDK's `export_protocol!` calls it; a library may
/// contain only one.
#[macro_export]
macro_rules! export_root_module {
    ($constructor:path) => {
        /// The `abi_stable` library header (the mangled name `abi_stable` looks up).
        #[doc(hidden)]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __gka_erased_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader($constructor)
            }
            // SAFETY: the constructor returns the root module type named here.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::GkaPluginRef>(
                    __gka_erased_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
