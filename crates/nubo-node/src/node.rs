//! The node: apps by name, each at a revision, and the one place that
//! changes them.
//!
//! Every change, whatever verb it came from, goes through [`Node::change`]:
//! apply the steps to the current definition, validate the result, load
//! what it needs, commit the revision, then switch the gateway. Changes are
//! serialized; the expected revision a client sends catches a change that
//! was planned against a state someone else has since replaced.

use crate::content::ContentStore;
use crate::live::{LiveApp, Loader};
use crate::logs::LogHub;
use crate::store::{RevisionInfo, Store, StoreError};
use nubo_gateway::Gateway;
use nubo_plan::{AppDef, Step};
use nubo_wasm::{Runtime, RuntimeOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct NodeOptions {
    pub state: PathBuf,
    /// Shared compile cache; default `STATE/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Largest upload accepted, in bytes.
    pub max_upload: usize,
    /// Join a cluster: shared state and services on NATS JetStream.
    pub cluster: Option<crate::cluster::ClusterJoin>,
    /// The control API's token; default: the state dir's `token` file.
    pub token: Option<String>,
    /// Bytes of guest memory shared between apps; `None`: three quarters
    /// of the machine's ([`nubo_wasm::NodeShare`]).
    pub memory_budget: Option<u64>,
    /// Bytes the embedded stores keep free on the state dir's disk:
    /// writes that add data are refused below ([`nubo_sqlite::Disk`]).
    pub disk_reserve: u64,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: nubo_gateway::TrustedProxies,
    /// Count what every app uses (`docs/usage.md`).
    pub metering: bool,
}

pub struct Node {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) content: ContentStore,
    pub(crate) logs: Arc<LogHub>,
    pub(crate) token: String,
    pub(crate) max_upload: usize,
    /// What each capability opened (its backend, its runner), by type:
    /// only the capability that put it there uses it.
    pub(crate) services: nubo_wasm::Services,
    pub(crate) cluster: Option<crate::cluster::Member>,
    /// Where its servers listen, once they do.
    pub(crate) addrs: std::sync::OnceLock<(String, String)>,
    pub(crate) started_ms: u64,
    state: PathBuf,
    /// Held while the node lives: see [`lock_state`].
    _lock: std::fs::File,
    sites: PathBuf,
    store: Mutex<Store>,
    pub(crate) apps: tokio::sync::Mutex<BTreeMap<String, LiveApp>>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot use state dir {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state dir {path} is in use by another node{}; stop it, or give this one its own --state DIR",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { path: PathBuf, pid: Option<u32> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] nubo_wasm::LoadError),
    #[error(transparent)]
    Open(#[from] nubo_wasm::OpenError),
    #[error("cannot derive the cluster's secrets key: {0}")]
    ClusterKey(#[source] std::io::Error),
}

/// Why a change was refused; nothing of it was applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Invalid(String),
    #[error("the resulting definition is invalid: {}", .0.join("; "))]
    Rejected(Vec<String>),
    /// The change clashes with another app, or there is nothing to roll
    /// back to.
    #[error("{0}")]
    Conflict(String),
    /// The change was planned against a revision that is no longer the
    /// app's (another client, or another node, changed it meanwhile).
    #[error("{0}")]
    Stale(String),
    #[error("{0}")]
    NotFound(String),
    /// The cluster could not be reached; nothing changed.
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(StoreError),
}

/// What a change did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Changed {
    pub app: String,
    pub revision: u64,
    /// False when the steps left the definition as it was (no revision made).
    pub changed: bool,
    pub steps: Vec<Step>,
    /// What a removal deleted of the app's data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged: Option<crate::purge::Purged>,
}

/// Everything the node creates from now on (databases, blobs, uploads,
/// the compile cache) is its owner's alone: files 0600, folders 0700.
/// The state holds every app's data and the control token.
fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` (and its parents) with mode 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Takes the state dir for this process. Two nodes on one state dir
/// would share its SQLite files: the second would wait on SQLite's lock
/// and then fail with "database is locked", or worse, both would run the
/// same queues and cron. The lock is the operating system's (`flock`),
/// so a killed node leaves nothing to clean up; the file also says which
/// process holds it.
fn lock_state(state: &Path) -> Result<std::fs::File, NodeError> {
    use std::io::{Read, Seek, Write};
    let path = state.join("lock");
    let io = |source| NodeError::State {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(NodeError::InUse {
                path: state.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

/// Every capability opens its service, in the order of the node's list;
/// in a cluster they find the connection among the services.
async fn open_services(
    runtime: &Runtime,
    opts: &NodeOptions,
    logs: &Arc<LogHub>,
) -> Result<nubo_wasm::Services, NodeError> {
    let mut services = nubo_wasm::Services::default();
    services.insert(logs.clone() as Arc<dyn nubo_wasm::LogSink>);
    services.insert(runtime.meter().clone());
    services.insert(runtime.metrics().clone());
    services.insert(Arc::new(nubo_wasm::Pauses::default()));
    if let Some(c) = &opts.cluster {
        services.insert(c.clone());
    }
    let env = nubo_wasm::OpenEnv {
        state: &opts.state,
        disk_reserve: opts.disk_reserve,
        cores: std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    for c in runtime.capabilities() {
        if let Some(open) = c.open(&env, &mut services) {
            open.await?;
        }
    }
    Ok(services)
}

impl Node {
    /// Opens (or creates) the state dir and brings back every app at its
    /// last applied revision. An app that cannot be loaded is logged and
    /// left out; the others serve.
    pub async fn open(opts: NodeOptions) -> Result<Arc<Self>, NodeError> {
        let state_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NodeError::State { path, source }
        };
        private_files();
        create_private_dir(&opts.state).map_err(state_err(&opts.state))?;
        let lock = lock_state(&opts.state)?;
        let token = match opts.token.clone() {
            Some(t) => t,
            None => crate::token::load_or_create(&opts.state).map_err(state_err(&opts.state))?,
        };
        let content = ContentStore::open(opts.state.join("content"))
            .map_err(state_err(&opts.state.join("content")))?;
        std::fs::create_dir_all(opts.state.join("sites"))
            .map_err(state_err(&opts.state.join("sites")))?;
        let secrets = crate::secrets::Secrets::load_or_create(&opts.state)
            .map_err(state_err(&opts.state.join(crate::secrets::KEY_FILE)))?;
        let store = Store::open(&opts.state.join("nubo.db"), secrets)?;
        let runtime = Runtime::new(
            RuntimeOptions {
                cache_dir: Some(
                    opts.cache_dir
                        .clone()
                        .unwrap_or_else(|| opts.state.join("cache")),
                ),
                memory_budget: opts.memory_budget,
                metering: opts.metering,
                ..RuntimeOptions::default()
            },
            &crate::capabilities(),
        )?;
        let logs = Arc::new(LogHub::default());
        let services = open_services(&runtime, &opts, &logs).await?;
        let meter = runtime.meter().clone();
        let metrics = runtime.metrics().clone();
        let node = Arc::new(Self {
            runtime: Arc::new(runtime),
            gateway: {
                let g = Gateway::new(Default::default());
                // Not ready until `serving`: see `restore`.
                g.set_ready(false);
                if let Some(guards) = services.get::<Arc<dyn nubo_gateway::Guards>>() {
                    g.set_guards(guards.clone());
                }
                if let Some(limits) = services.get::<Arc<dyn nubo_gateway::Limits>>() {
                    g.set_limits(limits.clone());
                }
                if let Some(gates) = services.get::<Arc<dyn nubo_gateway::Gates>>() {
                    g.set_gates(gates.clone());
                }
                if let Some(cors) = services.get::<Arc<dyn nubo_gateway::CorsPolicies>>() {
                    g.set_cors(cors.clone());
                }
                g.set_trusted_proxies(opts.trusted_proxies.clone());
                if meter.is_on() {
                    g.set_meter(meter);
                }
                g.set_metrics(&metrics);
                g
            },
            content,
            logs,
            token,
            max_upload: opts.max_upload,
            services,
            cluster: opts
                .cluster
                .map(crate::cluster::Member::new)
                .transpose()
                .map_err(NodeError::ClusterKey)?,
            addrs: std::sync::OnceLock::new(),
            started_ms: nubo_sqlite::now_ms() as u64,
            sites: opts.state.join("sites"),
            state: opts.state,
            _lock: lock,
            store: Mutex::new(store),
            apps: tokio::sync::Mutex::new(BTreeMap::new()),
        });
        Ok(node)
    }

    /// Loads every app at its last applied revision (compiling what the
    /// cache lacks) and takes up the tasks that were running. The gateway
    /// answers `503` meanwhile; an app that cannot be loaded is logged and
    /// left out, and the others serve.
    pub async fn restore(self: &Arc<Self>) -> Result<(), NodeError> {
        let stored = self.lock_store().apps()?;
        {
            let mut apps = self.apps.lock().await;
            for (revision, def) in stored {
                tracing::info!(app = %def.name, revision, "loading");
                match self.loader().prepare(revision, &def, None).await {
                    Ok(live) => {
                        let mount = live.mount.clone();
                        self.gateway.update(|m| m.with(&def.name, mount.clone()));
                        self.configure(&def.name, Some(&live));
                        tracing::info!(app = %def.name, revision, "serving");
                        apps.insert(def.name.clone(), live);
                    }
                    Err(e) => tracing::error!(app = %def.name, revision, "cannot start: {e}"),
                }
            }
        }
        for c in self.runtime.capabilities() {
            if let Some(restored) = c.restored(&self.services) {
                restored.await;
            }
        }
        Ok(())
    }

    /// Says the node serves everything it should: from now on a request no
    /// app serves is a final `404`, and `/readyz` can say ready.
    pub fn serving(&self) {
        self.gateway.set_ready(true);
    }

    /// Lets every capability store what it holds only in memory; call it
    /// once the servers have stopped.
    pub async fn close(&self) {
        for c in self.runtime.capabilities() {
            if let Some(close) = c.close(&self.services) {
                close.await;
            }
        }
    }

    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    pub(crate) fn loader(&self) -> Loader<'_> {
        Loader {
            runtime: &self.runtime,
            content: &self.content,
            sites: self.sites.as_path(),
            logs: self.logs.clone(),
            services: &self.services,
        }
    }

    /// Tells every capability of the app as it now runs (`None`: removed),
    /// so that each (re)starts its schedules and consumers against the
    /// running components and sets the app's limits.
    fn configure(&self, app: &str, live: Option<&LiveApp>) {
        let running = nubo_wasm::RunningApp {
            name: app,
            def: live.map(|l| &l.def),
            components: live
                .map(|l| {
                    l.components
                        .iter()
                        .filter_map(|(name, c)| Some((name.clone(), c.http.clone()?)))
                        .collect()
                })
                .unwrap_or_default(),
        };
        for c in self.runtime.capabilities() {
            c.configure(&self.services, &running);
        }
    }

    /// Current state of every app.
    pub async fn apps(&self) -> Vec<LiveApp> {
        self.apps.lock().await.values().cloned().collect()
    }

    pub async fn app(&self, name: &str) -> Option<LiveApp> {
        self.apps.lock().await.get(name).cloned()
    }

    pub fn history(&self, app: &str) -> Result<Vec<RevisionInfo>, StoreError> {
        self.lock_store().history(app)
    }

    pub fn stored_revision(
        &self,
        app: &str,
        revision: u64,
    ) -> Result<Option<Option<AppDef>>, StoreError> {
        self.lock_store().revision(app, revision)
    }

    pub(crate) fn lock_store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back), so a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `steps` to `app` as one revision. `expected`: the revision
    /// the steps were planned against (0: the app did not exist), or `None`
    /// to apply on top of whatever is current.
    pub async fn change(
        &self,
        app: &str,
        expected: Option<u64>,
        steps: Vec<Step>,
    ) -> Result<Changed, ChangeError> {
        self.change_with(app, expected, |_| Ok(steps)).await
    }

    /// Like [`Node::change`], with the steps computed from the current
    /// definition under the change lock (`PUT` of a whole definition,
    /// rollback).
    pub async fn change_with(
        &self,
        app: &str,
        expected: Option<u64>,
        steps: impl FnOnce(Option<&AppDef>) -> Result<Vec<Step>, ChangeError>,
    ) -> Result<Changed, ChangeError> {
        if !nubo_manifest::is_name(app) {
            return Err(ChangeError::Invalid(format!(
                "`{app}` is not an app name (lower-case letters, digits and `-`, starting with a letter, at most 63)"
            )));
        }
        let mut apps = self.apps.lock().await;
        // In a cluster, first come up to the shared revision, so that the
        // expected revision is checked against the cluster's, not ours.
        let shared = match &self.cluster {
            Some(c) => c.catch_up(self, &mut apps, app).await?,
            None => None,
        };
        let current = apps.get(app);
        let current_rev = current.map(|a| a.revision).unwrap_or(0);
        if let Some(e) = expected
            && e != current_rev
        {
            return Err(ChangeError::Stale(
                StoreError::Conflict {
                    app: app.to_string(),
                    current: current_rev,
                    expected: e,
                }
                .to_string(),
            ));
        }
        let current_def = current.map(|a| &a.def);
        let steps = steps(current_def)?;
        for s in &steps {
            if let Step::SetVariable { name, value, .. } = s
                && nubo_plan::is_redacted(value)
            {
                return Err(ChangeError::Invalid(format!(
                    "variable `{name}`: the value is a redacted secret (sha256:…), not a value; send the real value"
                )));
            }
        }
        let new = nubo_plan::apply(app, current_def.cloned(), &steps).map_err(|e| match e {
            nubo_plan::StepError::NoApp => {
                ChangeError::NotFound(format!("no app `{app}` on this node"))
            }
            other => ChangeError::Invalid(other.to_string()),
        })?;
        if new.as_ref() == current_def {
            return Ok(Changed {
                app: app.to_string(),
                revision: current_rev,
                changed: false,
                steps: Vec::new(),
                purged: None,
            });
        }
        let live = match &new {
            Some(def) => {
                let schema = self.runtime.schema();
                nubo_plan::validate(def, |d| self.content.has(d), &schema)
                    .map_err(ChangeError::Rejected)?;
                let conflicts = nubo_plan::conflicts(current_def, def, &schema);
                if !conflicts.is_empty() {
                    return Err(ChangeError::Rejected(conflicts));
                }
                let prepared = self
                    .loader()
                    .prepare(current_rev, def, current)
                    .await
                    .map_err(|e| ChangeError::Rejected(vec![e.to_string()]))?;
                Self::check_mount(&apps, app, &prepared)?;
                for c in self.runtime.capabilities() {
                    if let Some(ready) = c.prepare(&self.services, app, def, current_rev + 1) {
                        ready
                            .await
                            .map_err(|e| ChangeError::Rejected(vec![e.to_string()]))?;
                    }
                }
                Some(prepared)
            }
            None => None,
        };
        if let Some(cluster) = &self.cluster {
            let revision = self
                .lock_store()
                .last_revision(app)
                .map_err(ChangeError::Store)?
                + 1;
            cluster
                .publish(&self.content, app, revision, new.as_ref(), &steps, shared)
                .await?;
        }
        let revision = self
            .lock_store()
            .commit(app, current_rev, new.as_ref(), &steps)
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ChangeError::Stale(e.to_string()),
                other => ChangeError::Store(other),
            })?;
        self.install(&mut apps, app, live, revision);
        tracing::info!(app, revision, steps = steps.len(), "applied");
        let deletes_data = steps
            .iter()
            .any(|s| matches!(s, Step::RemoveApp { keep_data: false }));
        // Under the change lock: an app of the same name made next finds
        // nothing of this one.
        let purged = if new.is_none() && deletes_data {
            Some(self.purge(app).await)
        } else {
            None
        };
        Ok(Changed {
            app: app.to_string(),
            revision,
            changed: true,
            steps: crate::store::redact_steps(app, &steps),
            purged,
        })
    }

    /// Switches the gateway, schedules and tasks of `app` to `live` (`None`:
    /// the app is gone), committed as `revision`.
    pub(crate) fn install(
        &self,
        apps: &mut BTreeMap<String, LiveApp>,
        app: &str,
        live: Option<LiveApp>,
        revision: u64,
    ) {
        match live {
            Some(mut live) => {
                live.revision = revision;
                let mount = live.mount.clone();
                self.gateway.update(|m| m.with(app, mount.clone()));
                self.configure(app, Some(&live));
                apps.insert(app.to_string(), live);
            }
            None => {
                self.gateway.update(|m| m.without(app));
                self.configure(app, None);
                apps.remove(app);
                self.logs.forget(app);
            }
        }
        if let Some(member) = &self.cluster {
            member.changed.notify_one();
        }
    }

    /// Refuses `prepared` if another app already serves its base and hosts.
    pub(crate) fn check_mount(
        apps: &BTreeMap<String, LiveApp>,
        app: &str,
        prepared: &LiveApp,
    ) -> Result<(), ChangeError> {
        for (other, live) in apps.iter() {
            if other != app && live.mount.collides_with(&prepared.mount) {
                return Err(ChangeError::Conflict(format!(
                    "app `{other}` already serves base `{}`{}; give `{app}` another `base` or its own `hosts`",
                    prepared.mount.base,
                    if prepared.mount.hosts.is_empty() {
                        " on every host".to_string()
                    } else {
                        format!(" on {}", prepared.mount.hosts.join(", "))
                    }
                )));
            }
        }
        Ok(())
    }
}
