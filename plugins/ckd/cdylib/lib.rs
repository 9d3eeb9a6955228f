//! The ckd protocol (`gka-ckd`) as a loadable plugin library.

gka_plugin_api::export_protocol!(gka_ckd::Ckd);
