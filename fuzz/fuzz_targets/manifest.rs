//! `nubo.toml` text through the parser and the validator: any input gets
//! an app or a list of located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let vars = |name: &str| (name == "secret").then(|| "s".to_string());
    // A capability's section goes through the same reader as the app's
    // own tables: the queue's, which builds without the runtime.
    let schema = nubo_manifest::Schema {
        grants: nubo_manifest::SAMPLE_GRANTS.to_vec(),
        sections: vec![&nubo_queue::QueueSection],
        target: nubo_manifest::Target::default(),
    };
    if let Err(e) = nubo_manifest::load_str(
        Path::new("/nonexistent/nubo.toml"),
        text,
        &vars,
        nubo_manifest::Stage::BeforeBuild,
        &schema,
    ) {
        // Every error has somewhere to point and something to say.
        for d in &e.diagnostics {
            assert!(!d.message.is_empty());
        }
    }
});
