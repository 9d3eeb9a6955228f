//! The five protocols linked statically into the test binary, so that tests run real plugins
//! without building or opening libraries (only the loading tests open `cdylib`s).

use std::sync::Arc;

use gka_host::member::Catalogue;
use gka_plugin_api::Protocol;

/// The five protocols, by name order.
pub fn protocols() -> Vec<Arc<dyn Protocol>> {
    vec![
        Arc::new(gka_bd::Bd),
        Arc::new(gka_ckd::Ckd),
        Arc::new(gka_gdh::Gdh),
        Arc::new(gka_str::Str),
        Arc::new(gka_tgdh::Tgdh),
    ]
}

/// The protocol named `name`.
///
/// # Panics
///
/// If no protocol has that name.
pub fn protocol(name: &str) -> Arc<dyn Protocol> {
    protocols()
        .into_iter()
        .find(|p| p.descriptor().name == name)
        .unwrap_or_else(|| panic!("no linked protocol named {name:?}"))
}

/// Every protocol as a switch catalogue.
pub fn catalogue() -> Catalogue {
    Catalogue::from_linked(protocols())
}

/// Every protocol but `missing` as a switch catalogue (a member that lacks a plugin).
pub fn catalogue_without(missing: &str) -> Catalogue {
    Catalogue::from_linked(protocols().into_iter().filter(|p| p.descriptor().name != missing))
}
