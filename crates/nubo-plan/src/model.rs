//! What a node stores for an app: the definition file with every path
//! replaced by a content digest, so that it means the same on any machine.
//!
//! Config values are kept as written (`{{ variable }}` references intact)
//! and variables are kept apart: that is what lets the planner restart
//! exactly the components that read a changed variable.

use nubo_manifest::{Limits, QuotasSpec, RoutePattern};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// One app as deployed: the unit of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDef {
    pub name: String,
    #[serde(default)]
    pub settings: AppSettings,
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    #[serde(default)]
    pub components: BTreeMap<String, ComponentDef>,
    /// In declaration order; the gateway orders them by specificity.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Each capability's section by its key (`queues`, `crons`), as the
    /// capability wrote it (see [`nubo_manifest::Section`]); stored at the
    /// top level of the JSON beside the app's own keys. Empty values are
    /// left out, so that `"queues": {}` and no `queues` are the same.
    #[serde(flatten, deserialize_with = "sections")]
    pub sections: BTreeMap<String, serde_json::Value>,
}

/// Sections without the empty values.
fn sections<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    let mut out = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    out.retain(|_, v| !nubo_manifest::is_empty_value(v));
    Ok(out)
}

/// Where the app is reached on a node that hosts many, and its quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    #[serde(default)]
    pub description: Option<String>,
    /// Host names; empty means any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix, `/` for the whole host.
    #[serde(default = "root_base")]
    pub base: String,
    /// How much stored data the app may hold.
    #[serde(default)]
    pub quotas: QuotasSpec,
}

fn root_base() -> String {
    "/".to_string()
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            description: None,
            hosts: Vec::new(),
            base: root_base(),
            quotas: QuotasSpec::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    /// For a secret read back from a node: `sha256:…` of the value (see
    /// [`AppDef::redacted`]), never the value itself.
    pub value: String,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentDef {
    /// `sha256` of the component's wasm, hex.
    pub digest: String,
    /// `wasi:config` values as written, templates unresolved.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    /// What it may reach, by grant key (`"key_value_stores": ["default"]`).
    /// Each key belongs to a capability, which checks the names (see
    /// [`nubo_manifest::GrantKey`]); an empty list is no grant.
    #[serde(flatten, deserialize_with = "non_empty")]
    pub grants: BTreeMap<String, Vec<String>>,
    /// A stopped component keeps its definition; its routes answer 503.
    #[serde(default = "yes")]
    pub started: bool,
}

fn yes() -> bool {
    true
}

/// Grants without the empty lists, so that `"queues": []` and no
/// `queues` are the same definition.
fn non_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    let mut grants = BTreeMap::<String, Vec<String>>::deserialize(d)?;
    grants.retain(|_, names| !names.is_empty());
    Ok(grants)
}

impl ComponentDef {
    /// A started component of `digest` with nothing configured or granted.
    pub fn new(digest: impl Into<String>) -> Self {
        Self {
            digest: digest.into(),
            config: BTreeMap::new(),
            allowed_outbound_hosts: Vec::new(),
            limits: Limits::default(),
            grants: BTreeMap::new(),
            started: true,
        }
    }

    /// The names granted under `key`; empty if none.
    pub fn granted(&self, key: &str) -> &[String] {
        self.grants.get(key).map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub pattern: RoutePattern,
    pub target: RouteTarget,
    /// Who may reach it (`auth`, `roles`); public when absent.
    #[serde(default, skip_serializing_if = "nubo_manifest::Access::is_public")]
    pub access: nubo_manifest::Access,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteTarget {
    Component(String),
    /// A static site: relative path → sha256 of the file's bytes.
    Static(BTreeMap<String, String>),
    /// Request bodies are published to this queue of the app.
    Queue(String),
    /// Server-Sent Events carrying these topics.
    Sse {
        topics: Vec<String>,
    },
    /// A WebSocket carrying these topics; what the browser sends is
    /// `POST`ed to `component` at `path`, if there is one.
    WebSocket {
        topics: Vec<String>,
        component: Option<String>,
        path: String,
        /// Browser origins allowed besides the request's own host.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        origins: Vec<String>,
    },
}

impl AppDef {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            settings: AppSettings::default(),
            variables: BTreeMap::new(),
            components: BTreeMap::new(),
            routes: Vec::new(),
            sections: BTreeMap::new(),
        }
    }

    /// A definition as a node stored it. Stored definitions may
    /// hold `[tasks]` inside the settings (`settings.tasks`), where nodes
    /// of an earlier release wrote it; it is read as the `tasks` section.
    pub fn from_stored(mut v: serde_json::Value) -> Result<Self, serde_json::Error> {
        if let Some(tasks) = v
            .get_mut("settings")
            .and_then(serde_json::Value::as_object_mut)
            .and_then(|s| s.remove("tasks"))
            && let Some(def) = v.as_object_mut()
        {
            def.entry("tasks").or_insert(tasks);
        }
        serde_json::from_value(v)
    }

    /// The section stored under `key` as its typed form; an absent one is
    /// `T::default()`. An error means the value is not what its capability
    /// writes, which the validator refuses before a node stores it.
    pub fn section<T: serde::de::DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<T, serde_json::Error> {
        nubo_manifest::section_value(self.sections.get(key))
    }

    /// Sets the section `key`; an empty value removes it.
    pub fn set_section(&mut self, key: &str, value: serde_json::Value) {
        if nubo_manifest::is_empty_value(&value) {
            self.sections.remove(key);
        } else {
            self.sections.insert(key.to_string(), value);
        }
    }

    /// Components whose config reads `variable`.
    pub fn readers(&self, variable: &str) -> Vec<String> {
        self.components
            .iter()
            .filter(|(_, c)| c.reads().contains(variable))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every content digest the app needs on the node: components and
    /// static files.
    pub fn digests(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> =
            self.components.values().map(|c| c.digest.clone()).collect();
        for r in &self.routes {
            if let RouteTarget::Static(files) = &r.target {
                out.extend(files.values().cloned());
            }
        }
        out
    }

    /// The definition as a node shows it to anyone: secret values replaced
    /// by a salted digest, which still lets a planner see that one changed.
    pub fn redacted(&self) -> Self {
        let mut out = self.clone();
        for (name, v) in out.variables.iter_mut() {
            if v.secret && !v.value.starts_with(REDACTED_PREFIX) {
                v.value = redact(&self.name, name, &v.value);
            }
        }
        out
    }
}

impl ComponentDef {
    /// Variables its config reads (malformed templates read nothing; the
    /// node rejects them before they are stored).
    pub fn reads(&self) -> BTreeSet<String> {
        self.config
            .values()
            .filter_map(|t| nubo_manifest::template_variables(t).ok())
            .flatten()
            .collect()
    }
}

const REDACTED_PREFIX: &str = "sha256:";

/// `sha256:` of a secret value, salted with where it lives.
pub fn redact(app: &str, variable: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"nubo-secret\0");
    h.update(app.as_bytes());
    h.update(b"\0");
    h.update(variable.as_bytes());
    h.update(b"\0");
    h.update(value.as_bytes());
    format!("{REDACTED_PREFIX}{}", hex::encode(h.finalize()))
}

/// Whether `value` is a redacted secret rather than a real one.
pub fn is_redacted(value: &str) -> bool {
    value.starts_with(REDACTED_PREFIX) && value.len() == REDACTED_PREFIX.len() + 64
}

#[cfg(test)]
mod tests {
    use super::AppDef;

    #[test]
    fn tasks_stored_in_the_settings_are_read_as_their_section() {
        let stored = serde_json::json!({
            "name": "a",
            "settings": { "base": "/", "tasks": { "max_running": 8 } },
            "queues": { "jobs": { "consumer": "web" } },
            "crons": []
        });
        let def = AppDef::from_stored(stored).unwrap();
        assert_eq!(
            def.sections["tasks"],
            serde_json::json!({ "max_running": 8 })
        );
        assert!(def.sections.contains_key("queues"));
        // An empty section is no section.
        assert!(!def.sections.contains_key("crons"));
        // The settings refuse what they do not hold.
        let sent = serde_json::json!({ "base": "/", "tasks": {} });
        assert!(serde_json::from_value::<super::AppSettings>(sent).is_err());
    }
}
