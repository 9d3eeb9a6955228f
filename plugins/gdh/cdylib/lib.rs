//! The gdh protocol (`gka-gdh`) as a loadable plugin library.

gka_plugin_api::export_protocol!(gka_gdh::Gdh);
