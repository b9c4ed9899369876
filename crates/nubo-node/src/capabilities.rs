//! The capabilities a node offers its components: one line each. A new
//! capability is a crate that implements [`nubo_wasm::Capability`], and
//! registers here.

use nubo_wasm::Capability;
use std::sync::Arc;

/// Every capability, in the order their interfaces are linked and their
/// services opened.
pub fn capabilities() -> Vec<Arc<dyn Capability>> {
    vec![
        Arc::new(nubo_kv::KeyValue),
        Arc::new(nubo_blob::Blobs),
        Arc::new(nubo_queue::Queues),
        Arc::new(nubo_pubsub::PubSub),
        Arc::new(nubo_tasks::DurableTasks),
        Arc::new(nubo_cron::Cron),
        Arc::new(nubo_sql::Sql),
        Arc::new(nubo_auth::Auth),
        Arc::new(nubo_ratelimit::RateLimits),
        Arc::new(nubo_cors::CrossOrigin),
        Arc::new(nubo_usage::Metering),
        Arc::new(nubo_usage::Caps),
    ]
}

/// What [`capabilities`] add to `nubo.toml` and to a definition: the
/// grant keys of a component and the top-level sections.
pub fn schema() -> nubo_manifest::Schema {
    nubo_wasm::schema(&capabilities())
}
