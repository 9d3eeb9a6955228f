//! The bd protocol (`gka-bd`) as a loadable plugin library.

gka_plugin_api::export_protocol!(gka_bd::Bd);
