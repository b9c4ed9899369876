//! Values from the component's `config` table in `nubo.toml`, read through
//! the standard `wasi:config/store` interface.

use crate::bindings::wasi::config::store;

/// The value of `key`, or `None` if the component has no such config.
pub fn get(key: &str) -> Option<String> {
    store::get(key).ok().flatten()
}

/// Every config key and value of this component.
pub fn get_all() -> Vec<(String, String)> {
    store::get_all().unwrap_or_default()
}
