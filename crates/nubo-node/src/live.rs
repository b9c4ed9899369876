//! From a stored definition to what serves it: loaded components and the
//! app's mount in the gateway.
//!
//! A component is identified at runtime by everything that shapes its
//! instances (wasm digest, resolved config, grants, limits). Preparing a new
//! revision reuses every component whose identity did not change, so its
//! in-flight requests are untouched, and loads the rest before anything is
//! switched: the gateway swaps to the new mount only once all of it is
//! ready, and old components drain as their last requests finish.

use crate::content::ContentStore;
use nubo_gateway::{Mount, Router, StaticDir, Target};
use nubo_manifest::{Limits, OutboundRule};
use nubo_plan::{AppDef, ComponentDef, RouteTarget};
use nubo_wasm::{ComponentSettings, HttpComponent, LogSink, Runtime};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a definition could not be made ready to serve; nothing of it was
/// switched on.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("route {route} names unknown component `{component}`")]
    UnknownComponent { route: String, component: String },
    #[error("route {route} needs the {service}, which this node does not run")]
    NoService {
        route: String,
        service: &'static str,
    },
    #[error("component `{component}`: config `{key}` {source}")]
    Config {
        component: String,
        key: String,
        #[source]
        source: nubo_manifest::TemplateError,
    },
    #[error("component `{component}`: {source}")]
    Outbound {
        component: String,
        #[source]
        source: nubo_manifest::OutboundError,
    },
    #[error("component `{component}`: {source}")]
    Grant {
        component: String,
        #[source]
        source: nubo_wasm::GrantError,
    },
    #[error("component `{component}`: {source}")]
    Load {
        component: String,
        #[source]
        source: nubo_wasm::LoadError,
    },
    #[error("component `{component}`: the loader stopped: {source}")]
    Loader {
        component: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("static site for {route}: {source}")]
    Site {
        route: String,
        #[source]
        source: std::io::Error,
    },
}

/// What makes two runs of a component interchangeable.
#[derive(Clone, PartialEq, Eq)]
struct Identity {
    digest: String,
    config: BTreeMap<String, String>,
    outbound: Vec<String>,
    limits: Limits,
    grants: BTreeMap<String, Vec<String>>,
}

#[derive(Clone)]
pub struct LiveComponent {
    identity: Identity,
    /// `None` while stopped.
    pub http: Option<HttpComponent>,
}

/// An app as it runs: its revision, definition and loaded components.
#[derive(Clone)]
pub struct LiveApp {
    pub revision: u64,
    pub def: AppDef,
    pub components: BTreeMap<String, LiveComponent>,
    pub mount: Mount,
}

pub struct Loader<'a> {
    pub runtime: &'a Arc<Runtime>,
    pub content: &'a ContentStore,
    pub sites: &'a Path,
    pub logs: Arc<dyn LogSink>,
    /// What capabilities build their grants from.
    pub services: &'a nubo_wasm::Services,
}

impl Loader<'_> {
    /// The running service of type `T` that route `r` reaches.
    fn service<T: std::any::Any + Send + Sync + Clone>(
        &self,
        r: &nubo_plan::Route,
        service: &'static str,
    ) -> Result<T, PrepareError> {
        self.services
            .get::<T>()
            .cloned()
            .ok_or(PrepareError::NoService {
                route: r.pattern.to_string(),
                service,
            })
    }

    /// Everything `def` needs, reusing what `old` already runs. Fails
    /// without side effects on the gateway.
    pub async fn prepare(
        &self,
        revision: u64,
        def: &AppDef,
        old: Option<&LiveApp>,
    ) -> Result<LiveApp, PrepareError> {
        let mut components = BTreeMap::new();
        for (name, c) in &def.components {
            let identity = identity(def, name, c)?;
            let reuse = old
                .and_then(|o| o.components.get(name))
                .filter(|l| l.identity == identity && l.http.is_some() && c.started);
            let live = match reuse {
                Some(l) => l.clone(),
                None if !c.started => LiveComponent {
                    identity,
                    http: None,
                },
                None => {
                    let http = self.load(def, name, c, &identity).await?;
                    LiveComponent {
                        identity,
                        http: Some(http),
                    }
                }
            };
            components.insert(name.clone(), live);
        }
        let mut routes = Vec::new();
        for r in &def.routes {
            let target = match &r.target {
                RouteTarget::Component(name) => match components.get(name) {
                    Some(LiveComponent { http: Some(h), .. }) => Target::Component(h.clone()),
                    Some(_) => Target::Stopped(name.clone()),
                    None => {
                        return Err(PrepareError::UnknownComponent {
                            route: r.pattern.to_string(),
                            component: name.clone(),
                        });
                    }
                },
                RouteTarget::Queue(q) => Target::Queue(
                    self.service::<Arc<dyn nubo_gateway::Publishers>>(r, "queue dispatcher")?
                        .publisher(&def.name, q),
                ),
                RouteTarget::Sse { topics } => Target::Sse(
                    self.service::<Arc<dyn nubo_gateway::Feeds>>(r, "pub/sub hub")?
                        .feed(&def.name, topics, None, &[]),
                ),
                RouteTarget::WebSocket {
                    topics,
                    component,
                    path,
                    origins,
                } => {
                    let inbound = match component {
                        None => None,
                        Some(name) => match components.get(name) {
                            Some(LiveComponent { http: Some(h), .. }) => {
                                Some((h.clone(), path.clone()))
                            }
                            _ => None,
                        },
                    };
                    Target::WebSocket(
                        self.service::<Arc<dyn nubo_gateway::Feeds>>(r, "pub/sub hub")?
                            .feed(&def.name, topics, inbound, origins),
                    )
                }
                RouteTarget::Static(files) => {
                    let site = |source| PrepareError::Site {
                        route: r.pattern.to_string(),
                        source,
                    };
                    let dir = self.site(files).map_err(site)?;
                    Target::Static(StaticDir::new(&dir).map_err(site)?)
                }
            };
            routes.push(nubo_gateway::Route::new(
                r.pattern.clone(),
                target,
                r.access.clone(),
            ));
        }
        Ok(LiveApp {
            revision,
            def: def.clone(),
            components,
            mount: Mount {
                hosts: def.settings.hosts.clone(),
                base: def.settings.base.clone(),
                router: Arc::new(Router::new(def.name.clone(), routes)),
            },
        })
    }

    async fn load(
        &self,
        def: &AppDef,
        name: &str,
        c: &ComponentDef,
        identity: &Identity,
    ) -> Result<HttpComponent, PrepareError> {
        let component = || name.to_string();
        let mut outbound = Vec::new();
        for h in &c.allowed_outbound_hosts {
            let rule = OutboundRule::parse(h).map_err(|source| PrepareError::Outbound {
                component: component(),
                source,
            })?;
            outbound.push(rule);
        }
        let settings = ComponentSettings {
            app: def.name.clone(),
            component: name.to_string(),
            config: identity.config.clone(),
            allowed_outbound_hosts: outbound,
            limits: c.limits,
            logs: Some(self.logs.clone()),
            grants: nubo_wasm::grants(
                self.runtime.capabilities(),
                &nubo_wasm::GrantTo {
                    app: &def.name,
                    component: name,
                    services: self.services,
                },
                &c.grants,
            )
            .map_err(|source| PrepareError::Grant {
                component: component(),
                source,
            })?,
        };
        let runtime = self.runtime.clone();
        let path = self.content.path(&c.digest);
        // Compiling is CPU work; keep it off the threads that serve requests.
        tokio::task::spawn_blocking(move || runtime.load_http(&path, settings))
            .await
            .map_err(|source| PrepareError::Loader {
                component: component(),
                source,
            })?
            .map_err(|source| PrepareError::Load {
                component: component(),
                source,
            })
    }

    /// A folder holding a static site's files, made once per distinct site
    /// from the content store (hard links where possible).
    fn site(&self, files: &BTreeMap<String, String>) -> std::io::Result<PathBuf> {
        let mut h = Sha256::new();
        for (path, digest) in files {
            h.update(path.as_bytes());
            h.update(b"\0");
            h.update(digest.as_bytes());
            h.update(b"\n");
        }
        let dir = self.sites.join(hex::encode(h.finalize()));
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = self
            .sites
            .join(format!(".{}.tmp", std::process::id()))
            .join(dir.file_name().unwrap_or_default());
        let _ = std::fs::remove_dir_all(&tmp);
        for (path, digest) in files {
            // Paths were validated as relative without `..`.
            let to = tmp.join(path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let from = self.content.path(digest);
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)?;
            }
        }
        std::fs::create_dir_all(&tmp)?;
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => Ok(dir),
            Err(_) if dir.is_dir() => Ok(dir),
            Err(e) => Err(e),
        }
    }
}

fn identity(def: &AppDef, name: &str, c: &ComponentDef) -> Result<Identity, PrepareError> {
    let mut config = BTreeMap::new();
    for (key, template) in &c.config {
        let value = nubo_manifest::render_template(template, |v| {
            def.variables.get(v).map(|v| v.value.clone())
        })
        .map_err(|source| PrepareError::Config {
            component: name.to_string(),
            key: key.clone(),
            source,
        })?;
        config.insert(key.clone(), value);
    }
    Ok(Identity {
        digest: c.digest.clone(),
        config,
        outbound: c.allowed_outbound_hosts.clone(),
        limits: c.limits,
        grants: c.grants.clone(),
    })
}
