//! The tgdh protocol (`gka-tgdh`) as a loadable plugin library.

gka_plugin_api::export_protocol!(gka_tgdh::Tgdh);
