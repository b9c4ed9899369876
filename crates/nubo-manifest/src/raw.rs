//! The file as written: serde types that keep the span of every value so
//! that validation can point at it. Nothing outside this crate sees them.

use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::BTreeMap;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    pub app: S<RawApp>,
    #[serde(default)]
    pub variables: BTreeMap<S<String>, S<RawVariable>>,
    #[serde(default)]
    pub component: BTreeMap<S<String>, S<RawComponent>>,
    #[serde(default)]
    pub http: Vec<S<RawHttp>>,
    #[serde(default, rename = "static")]
    pub statics: Vec<S<RawStatic>>,
    #[serde(default)]
    pub cron: Vec<S<RawCron>>,
    #[serde(default)]
    pub queue: BTreeMap<S<String>, S<RawQueue>>,
    #[serde(default)]
    pub websocket: Vec<S<RawSocket>>,
    #[serde(default)]
    pub sse: Vec<S<RawSocket>>,
    pub tasks: Option<S<RawTasks>>,
    pub quotas: Option<S<RawQuotas>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuotas {
    pub kv_mb: Option<S<i64>>,
    pub blob_mb: Option<S<i64>>,
    pub queue_messages: Option<S<i64>>,
    pub dead_letters: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTasks {
    pub max_running: Option<S<i64>>,
    pub max_queued: Option<S<i64>>,
    pub max_depth: Option<S<i64>>,
    pub max_attempts: Option<S<i64>>,
    pub backoff_ms: Option<S<i64>>,
    pub keep_finished_hours: Option<S<i64>>,
}

/// `[[websocket]]` and `[[sse]]` (the latter without `component`/`path`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSocket {
    pub route: S<String>,
    pub topics: Vec<S<String>>,
    pub component: Option<S<String>>,
    pub path: Option<S<String>>,
    /// Browser origins allowed to open a WebSocket besides the page's own.
    #[serde(default)]
    pub origins: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueue {
    pub consumer: S<String>,
    pub path: Option<S<String>>,
    pub concurrency: Option<S<i64>>,
    pub max_attempts: Option<S<i64>>,
    pub visibility_timeout_ms: Option<S<i64>>,
    pub backoff_ms: Option<S<i64>>,
    pub batch_size: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub name: S<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub hosts: Vec<S<String>>,
    pub base: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariable {
    pub default: Option<S<String>>,
    #[serde(default)]
    pub required: Option<S<bool>>,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawComponent {
    pub source: S<String>,
    pub build: Option<S<RawBuild>>,
    #[serde(default)]
    pub config: BTreeMap<S<String>, S<String>>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<S<String>>,
    pub limits: Option<S<RawLimits>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub key_value_stores: Vec<S<String>>,
    #[serde(default)]
    pub blob_containers: Vec<S<String>>,
    #[serde(default)]
    pub queues: Vec<S<String>>,
    #[serde(default)]
    pub topics: Vec<S<String>>,
    #[serde(default)]
    pub tasks: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuild {
    pub command: S<String>,
    pub workdir: Option<S<String>>,
    #[serde(default)]
    pub watch: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub memory_mb: Option<S<i64>>,
    pub timeout_ms: Option<S<i64>>,
    pub max_instances: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub route: S<String>,
    pub component: Option<S<String>>,
    /// Instead of a component: the request body is published to this queue.
    pub queue: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCron {
    pub schedule: S<String>,
    pub component: S<String>,
    pub path: Option<S<String>>,
    pub timezone: Option<S<String>>,
    pub missed: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatic {
    pub route: S<String>,
    pub dir: S<String>,
}
