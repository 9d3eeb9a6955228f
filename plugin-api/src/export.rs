//! The plugin side of the ABI: a safe [`Protocol`] turned into the root module of a loadable
//! library ([`export_protocol!`](crate::export_protocol)), and the conversions between the
//! SDK's types and the boundary types of `gka-abi`, which the host's loader uses too.
//!
//! Every entry point catches panics inside the plugin: a panic becomes an error value
//! ([`ErrorKind::Panicked`]) and never unwinds into the host (`abi_stable` would abort).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use gka_abi::abi_stable::nonexhaustive_enum::NonExhaustive;
use gka_abi::abi_stable::prefix_type::PrefixTypeTrait;
use gka_abi::abi_stable::sabi_trait;
use gka_abi::abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec};
use gka_abi::{
    FfiCost, FfiCounters, FfiDescriptor, FfiError, FfiOutput, FfiOutput_NE, FfiSession,
    FfiSessionBox, FfiSessionConfig, FfiSession_TO, FfiView, GkaPlugin, GkaPluginRef,
};

use crate::error::{ErrorKind, SessionError};
use crate::group::GroupId;
use crate::protocol::{
    CostFigures, Counters, EventKind, Output, Protocol, Session, SessionConfig, View,
};

/// A session error at the boundary: its kind code and message.
pub fn error_to_ffi(e: &SessionError) -> FfiError {
    FfiError { kind: e.kind().code(), message: e.to_string().into() }
}

/// An error a plugin returned across the boundary.
pub fn error_from_ffi(e: FfiError) -> SessionError {
    SessionError::Plugin { kind: ErrorKind::from_code(e.kind), message: e.message.into_string() }
}

/// Cost figures at the boundary.
pub fn cost_to_ffi(c: CostFigures) -> FfiCost {
    {
        FfiCost {
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

/// Cost figures from the boundary.
pub fn cost_from_ffi(c: FfiCost) -> CostFigures {
    {
        CostFigures {
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

/// A view at the boundary.
pub fn view_to_ffi(v: &View) -> FfiView {
    {
        FfiView {
            view_id: v.view_id,
            members: rstrings(&v.members),
            joined: rstrings(&v.joined),
            left: rstrings(&v.left),
        }
    }
}

/// A view from the boundary.
pub fn view_from_ffi(v: &FfiView) -> View {
    {
        View {
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
        Err(e) => RResult::RErr(error_to_ffi(&e)),
    }
}

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
        let view = view_from_ffi(view);
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
        Ok(cost_to_ffi(P::default().cost(event, n, k)))
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

/// Exports a [`Protocol`] type (which must implement `Default`) as a gka plugin library.
///
/// Put it once in a `cdylib` crate (a plugin's `cdylib/lib.rs`):
///
/// ```ignore
/// gka_plugin_api::export_protocol!(gka_bd::Bd);
/// ```
///
/// Every entry point it generates catches panics inside the plugin and returns them as errors.
/// Only one plugin may be exported per library, and a library crate that other crates link
/// statically must not export (the header is a process-wide symbol).
#[macro_export]
macro_rules! export_protocol {
    ($protocol:ty) => {
        $crate::export_protocol!(@abi_version $crate::__gka_abi::ABI_VERSION, $protocol);
    };
    (@abi_version $abi:expr, $protocol:ty) => {
        #[doc(hidden)]
        pub fn __gka_root_module() -> $crate::__gka_abi::GkaPluginRef {
            $crate::export::plugin_module::<$protocol>($abi)
        }

        $crate::__gka_abi::export_root_module!(__gka_root_module);
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Descriptor, EventKind};

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
        let view = view_to_ffi(&View {
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
