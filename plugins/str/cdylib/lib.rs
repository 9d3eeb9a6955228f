//! The str protocol (`gka-str`) as a loadable plugin library.

gka_plugin_api::export_protocol!(gka_str::Str);
