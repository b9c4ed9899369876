//! The validated app: what the runtime serves and, later, what the planner
//! diffs. Paths are absolute and variables are resolved, so nothing
//! downstream needs the file or the environment again.

use crate::{OutboundRule, RoutePattern};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    pub description: Option<String>,
    /// Host names the app answers on (lower-case, no port); empty: any host.
    pub hosts: Vec<String>,
    /// Path prefix the app is mounted under: `/` or `/shop` (no trailing `/`).
    pub base: String,
    /// Every declared variable's value, from the environment or its default.
    pub variables: BTreeMap<String, String>,
    /// Variables whose values must never be printed.
    pub secret_variables: BTreeSet<String>,
    /// Folder that held `nubo.toml`; relative paths were resolved against it.
    pub root: PathBuf,
    pub components: BTreeMap<String, ComponentSpec>,
    /// In declaration order; the gateway orders them by specificity.
    pub routes: Vec<RouteSpec>,
    /// Each capability's table, by [`crate::Section::key`], as the
    /// capability read it; absent and empty ones are left out.
    pub sections: BTreeMap<String, serde_json::Value>,
    /// `[quotas]`: how much stored data the app may hold.
    pub quotas: crate::QuotasSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentSpec {
    pub description: Option<String>,
    pub source: PathBuf,
    pub build: Option<BuildSpec>,
    /// What the component reads through `wasi:config`, variables resolved.
    pub config: BTreeMap<String, String>,
    /// The same values as written, `{{ variable }}` references kept: what a
    /// node stores, so that a variable change reaches exactly its readers.
    pub config_templates: BTreeMap<String, String>,
    /// Variables its config reads: a change to one restarts this component.
    pub reads_variables: BTreeSet<String>,
    pub allowed_outbound_hosts: Vec<OutboundRule>,
    pub limits: Limits,
    /// What it may reach, by grant key (`key_value_stores = ["default"]`):
    /// each key belongs to a capability (see [`crate::GrantKey`]).
    pub grants: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    pub command: String,
    pub workdir: PathBuf,
    /// Globs (relative to `workdir`) whose change triggers a rebuild.
    pub watch: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Linear memory a single instance may grow to.
    pub memory_mb: u64,
    /// Wall-clock time a single request may take, CPU included.
    pub timeout_ms: u64,
    /// Instances running at once; more requests wait briefly, then get 503.
    pub max_instances: u32,
    /// Guest CPU time a single run may use (time the guest's code runs,
    /// not time it waits); none by default, `timeout_ms` still applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: 128,
            timeout_ms: 30_000,
            max_instances: 256,
            cpu_ms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub pattern: RoutePattern,
    pub target: RouteTarget,
    /// Who may reach the route (`auth`, `roles` in `nubo.toml`).
    #[serde(default, skip_serializing_if = "Access::is_public")]
    pub access: Access,
}

/// Whether a route needs a signed-in identity, and which roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub auth: AuthLevel,
    /// The identity must hold one of these (none: any identity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl Access {
    pub fn is_public(&self) -> bool {
        self.auth == AuthLevel::Public && self.roles.is_empty()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthLevel {
    /// Anyone; an identity the request carries is passed on.
    #[default]
    Public,
    /// Anyone; the identity, if the request has a valid one.
    Optional,
    /// Only a request with a valid identity: else `401`.
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteTarget {
    Component(String),
    Static(PathBuf),
    /// `POST`/`PUT` bodies are published to this queue; answers 202.
    Queue(String),
    /// Server-Sent Events: the browser receives these topics' messages.
    Sse {
        topics: Vec<String>,
    },
    /// A WebSocket: the browser receives these topics' messages, and what
    /// it sends is `POST`ed to `component` at `path` (if set).
    WebSocket {
        topics: Vec<String>,
        component: Option<String>,
        path: String,
        /// Origins (`https://host[:port]`, or `*`) that may connect besides
        /// the request's own host.
        origins: Vec<String>,
    },
}
