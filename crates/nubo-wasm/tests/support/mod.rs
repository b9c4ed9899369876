//! Shared by this crate's bench: real guest components from
//! `tests/components`, loaded the way a node loads them.
#![allow(dead_code)]

use nubo_wasm::{Component, ComponentSettings, Runtime, RuntimeOptions};
use std::path::PathBuf;

/// Test component `name`, built.
pub fn component(name: &str) -> PathBuf {
    nubo_testkit::wasm(name)
}

/// A runtime (with or without the pooling allocator) and test component
/// `name` loaded in it with no grants. The runtime links no capability, so
/// `name` may import only WASI.
pub fn load(pooling: bool, name: &str) -> (Runtime, Component) {
    let options = RuntimeOptions {
        pooling,
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(options, &[]).expect("runtime");
    let settings = ComponentSettings {
        app: "t".into(),
        component: name.into(),
        ..Default::default()
    };
    let component = runtime
        .load_http(&component(name), settings)
        .expect("load the component");
    (runtime, component)
}
