//! What a capability is told over a node's life, beside linking and
//! granting: it opens its service, is (re)configured for each app, hears
//! of the node's start and heartbeats, deletes a removed app's data and
//! reports gauges. The node calls each hook on every capability in its
//! list and knows none of them by name.

use crate::HttpComponent;
use nubo_plan::AppDef;
use std::collections::BTreeMap;
use std::path::Path;

/// A future a capability hands back from a trait method.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a capability deleted of a removed app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// What it counts, plural (`keys`, `messages`); the key in the
    /// control API's `purged` answer.
    pub what: &'static str,
    pub count: u64,
}

/// Why a capability could not delete a removed app's data.
#[derive(Debug, thiserror::Error)]
#[error("cannot delete the removed app's {what}")]
pub struct PurgeError {
    pub what: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl PurgeError {
    pub fn new(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            what,
            source: Box::new(source),
        }
    }
}

/// Why a capability refused a new revision of an app; nothing of it was
/// committed.
#[derive(Debug, thiserror::Error)]
#[error("{capability}: {source}")]
pub struct PrepareError {
    pub capability: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl PrepareError {
    pub fn new(
        capability: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            capability,
            source: source.into(),
        }
    }
}

/// Where a capability opens its service.
pub struct OpenEnv<'a> {
    /// The node's state dir: an embedded backend keeps its files here.
    pub state: &'a Path,
    /// Bytes the embedded stores keep free on the state dir's disk.
    pub disk_reserve: u64,
    /// The machine's cores.
    pub cores: usize,
}

/// Why a capability could not open its service; the node does not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the {capability} service: {source}")]
pub struct OpenError {
    pub capability: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl OpenError {
    pub fn new(
        capability: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            capability,
            source: source.into(),
        }
    }
}

/// An app as a capability configures itself for it.
pub struct RunningApp<'a> {
    pub name: &'a str,
    /// Its definition; `None` once it is removed.
    pub def: Option<&'a AppDef>,
    /// Its running components (a stopped one is absent).
    pub components: BTreeMap<String, HttpComponent>,
}

impl RunningApp<'_> {
    /// Running component `name`.
    pub fn component(&self, name: &str) -> Option<HttpComponent> {
        self.components.get(name).cloned()
    }

    /// The app's section stored as `key`, read with `read`; `None` if
    /// the app has none, is removed, or its stored section is unreadable
    /// (logged: the app then runs without it).
    pub fn section<T, E: std::fmt::Display>(
        &self,
        key: &str,
        read: impl FnOnce(&BTreeMap<String, serde_json::Value>) -> Result<Option<T>, E>,
    ) -> Option<T> {
        let def = self.def?;
        def.sections.get(key)?;
        read(&def.sections).unwrap_or_else(|e| {
            tracing::error!(app = self.name, section = key, error = %e, "stored section unreadable: the app runs without it");
            None
        })
    }
}

/// What a capability keeps per app (its guard, its limits), replaced as
/// each app's revision changes and read on every request.
pub struct PerApp<T>(std::sync::RwLock<std::collections::HashMap<String, std::sync::Arc<T>>>);

impl<T> Default for PerApp<T> {
    fn default() -> Self {
        Self(Default::default())
    }
}

impl<T> PerApp<T> {
    pub fn get(&self, app: &str) -> Option<std::sync::Arc<T>> {
        let apps = self.0.read().unwrap_or_else(|p| p.into_inner());
        apps.get(app).cloned()
    }

    /// Every app's value.
    pub fn all(&self) -> Vec<(String, std::sync::Arc<T>)> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sets app `app`'s value, or with `None` forgets it.
    pub fn set(&self, app: &str, value: Option<T>) {
        let mut apps = self.0.write().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(v) => {
                apps.insert(app.to_string(), std::sync::Arc::new(v));
            }
            None => {
                apps.remove(app);
            }
        }
    }
}
