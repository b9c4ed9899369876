//! A node in a cluster: it shares its changes and adopts everyone else's.
//!
//! The cluster's `nubo_apps` bucket is the desired state. A change made
//! through this node's control API is validated and loaded here, then
//! published with a compare-and-swap on the app's key, and only then
//! committed locally and switched on; a lost race is a 409 like any stale
//! plan. Every node (this one included) watches the bucket and adopts any
//! revision newer than its own: it fetches the content it lacks, loads
//! the app, and switches. A node that cannot load a revision keeps serving
//! the previous one and says why in its heartbeat, which `nubo ps` shows.

use crate::content::ContentStore;
use crate::live::LiveApp;
use crate::node::{ChangeError, Node};
use crate::store::StoreError;
use nubo_cluster::{AppRecord, Cluster, Heartbeat};
use nubo_plan::{AppDef, Step};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use nubo_cluster::ClusterJoin;

pub(crate) struct Member {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) id: String,
    /// Apps whose shared revision this node could not load, and why.
    failing: Mutex<BTreeMap<String, String>>,
    /// True once the node has caught up with the shared state at start.
    synced: AtomicBool,
    /// Wakes the heartbeat early when what the node serves changed.
    pub(crate) changed: tokio::sync::Notify,
    /// Seals secret variables in the records this node shares.
    secrets: crate::secrets::Secrets,
    /// When the last heartbeat that was stored began to be written.
    last_beat: Mutex<std::time::Instant>,
}

impl Member {
    pub(crate) fn new(join: ClusterJoin) -> std::io::Result<Self> {
        let secrets = crate::secrets::Secrets::new(join.cluster.key().derive("secret variables"))?;
        Ok(Self {
            cluster: join.cluster,
            id: join.id,
            failing: Mutex::new(BTreeMap::new()),
            synced: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            secrets,
            last_beat: Mutex::new(std::time::Instant::now()),
        })
    }

    fn failing(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings `app` up to the cluster's revision; the stream revision of
    /// its record, for the compare-and-swap of the change that follows.
    pub(crate) async fn catch_up(
        &self,
        node: &Node,
        apps: &mut BTreeMap<String, LiveApp>,
        app: &str,
    ) -> Result<Option<u64>, ChangeError> {
        let Some((stream_rev, record)) = self
            .cluster
            .app(app)
            .await
            .map_err(|e| ChangeError::Unavailable(e.to_string()))?
        else {
            return Ok(None);
        };
        node.adopt(apps, &record).await.map_err(|e| {
            ChangeError::Conflict(format!(
                "this node cannot load revision {} of app `{app}` from the cluster ({e}); fix it on another node or apply a new definition there",
                record.revision
            ))
        })?;
        Ok(Some(stream_rev))
    }

    /// Makes a change the cluster's, or refuses it if another node changed
    /// the app since `expected`.
    pub(crate) async fn publish(
        &self,
        content: &ContentStore,
        app: &str,
        revision: u64,
        def: Option<&AppDef>,
        steps: &[Step],
        expected: Option<u64>,
    ) -> Result<(), ChangeError> {
        let unavailable = |e: nubo_cluster::ClusterError| ChangeError::Unavailable(e.to_string());
        for digest in def.map(AppDef::digests).unwrap_or_default() {
            let bytes = std::fs::read(content.path(&digest)).map_err(|e| {
                ChangeError::Unavailable(format!("cannot read upload {digest}: {e}"))
            })?;
            self.cluster
                .put_content(&digest, &bytes)
                .await
                .map_err(unavailable)?;
        }
        let encode = |e: serde_json::Error| ChangeError::Invalid(e.to_string());
        let record = AppRecord {
            app: app.to_string(),
            revision,
            def: def
                .map(|d| self.secrets.seal(d))
                .transpose()
                .map_err(|e| ChangeError::Invalid(e.to_string()))?
                .map(serde_json::to_value)
                .transpose()
                .map_err(encode)?,
            steps: serde_json::to_value(crate::store::redact_steps(app, steps)).map_err(encode)?,
            at: nubo_sqlite::now_ms() as u64 / 1000,
        };
        match self.cluster.publish(&record, expected).await {
            Ok(_) => Ok(()),
            Err(e @ nubo_cluster::ClusterError::Conflict(_)) => {
                Err(ChangeError::Stale(e.to_string()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Why a revision the cluster shares could not be taken up; nothing of it
/// changed on this node. The heartbeat reports it as the app's failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdoptError {
    #[error("not in a cluster")]
    NotInCluster,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the shared definition does not parse: {0}")]
    Parse(#[source] serde_json::Error),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SealError),
    #[error("cannot fetch content {digest} from the cluster: {source}")]
    Fetch {
        digest: String,
        #[source]
        source: nubo_cluster::ClusterError,
    },
    #[error(transparent)]
    Content(#[from] crate::content::ContentError),
    #[error("the definition is invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error(transparent)]
    Prepare(#[from] crate::live::PrepareError),
    #[error(transparent)]
    Mount(ChangeError),
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot read the cluster's apps: {0}")]
    Cluster(#[from] nubo_cluster::ClusterError),
}

impl Node {
    /// Loads and switches to `record` if it is newer than what this node
    /// has; `Ok(false)` if it was not. On error nothing changed.
    pub(crate) async fn adopt(
        &self,
        apps: &mut BTreeMap<String, LiveApp>,
        record: &AppRecord,
    ) -> Result<bool, AdoptError> {
        let app = record.app.as_str();
        let last = self.lock_store().last_revision(app)?;
        if record.revision <= last {
            return Ok(false);
        }
        let def: Option<AppDef> = record
            .def
            .clone()
            .map(AppDef::from_stored)
            .transpose()
            .map_err(AdoptError::Parse)?;
        let Some(member) = &self.cluster else {
            return Err(AdoptError::NotInCluster);
        };
        let def = def.map(|d| member.secrets.open(d)).transpose()?;
        let live = match &def {
            Some(def) => {
                self.fetch_content(def).await?;
                nubo_plan::validate(def, |d| self.content.has(d), &self.runtime.schema())
                    .map_err(AdoptError::Invalid)?;
                let current = apps.get(app);
                let rev = current.map(|a| a.revision).unwrap_or(0);
                let prepared = self.loader().prepare(rev, def, current).await?;
                Node::check_mount(apps, app, &prepared).map_err(AdoptError::Mount)?;
                Some(prepared)
            }
            None => None,
        };
        self.lock_store()
            .adopt(app, record.revision, record.at, def.as_ref(), &record.steps)?;
        self.install(apps, app, live, record.revision);
        tracing::info!(app, revision = record.revision, "adopted from the cluster");
        Ok(true)
    }

    /// Copies what `def` names and this node lacks from the cluster.
    async fn fetch_content(&self, def: &AppDef) -> Result<(), AdoptError> {
        let Some(member) = &self.cluster else {
            return Ok(());
        };
        for digest in def.digests() {
            if self.content.has(&digest) {
                continue;
            }
            let bytes = member
                .cluster
                .get_content(&digest)
                .await
                .map_err(|source| AdoptError::Fetch {
                    digest: digest.clone(),
                    source,
                })?;
            self.content.put(&digest, &bytes)?;
        }
        Ok(())
    }

    /// Adopts `record`, remembering a failure for the heartbeat.
    async fn adopt_logged(&self, record: &AppRecord) {
        let Some(member) = &self.cluster else { return };
        let mut apps = self.apps.lock().await;
        match self.adopt(&mut apps, record).await {
            Ok(_) => {
                member.failing().remove(&record.app);
            }
            Err(e) => {
                tracing::error!(app = %record.app, revision = record.revision, "cannot load the cluster's revision: {e}");
                member.failing().insert(
                    record.app.clone(),
                    format!("revision {}: {e}", record.revision),
                );
            }
        }
    }

    /// Call once the node's servers listen on `http` and `control`. In a
    /// cluster, joins it: shares the apps only this node has, catches up
    /// with the others, then keeps watching and beating.
    pub async fn started(
        self: &Arc<Self>,
        http: SocketAddr,
        control: SocketAddr,
    ) -> Result<(), JoinError> {
        let _ = self.addrs.set((http.to_string(), control.to_string()));
        let Some(member) = &self.cluster else {
            return Ok(());
        };
        let cluster = member.cluster.clone();
        // A state dir that ran alone before seeds the cluster with its apps.
        let local: Vec<(String, u64, AppDef)> = {
            let apps = self.apps.lock().await;
            apps.values()
                .map(|a| (a.def.name.clone(), a.revision, a.def.clone()))
                .collect()
        };
        for (name, revision, def) in local {
            if cluster.app(&name).await?.is_none() {
                match member
                    .publish(&self.content, &name, revision, Some(&def), &[], None)
                    .await
                {
                    Ok(()) => tracing::info!(app = %name, revision, "shared with the cluster"),
                    Err(e) => tracing::warn!(app = %name, "not shared with the cluster: {e}"),
                }
            }
        }
        self.resync().await?;
        member.synced.store(true, Ordering::Release);
        let hb = Heartbeat {
            id: member.id.clone(),
            http: http.to_string(),
            control: control.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_ms: self.started_ms,
            at_ms: 0,
            apps: BTreeMap::new(),
            failing: BTreeMap::new(),
        };
        self.beat(&hb).await;
        tokio::spawn(watch(Arc::downgrade(self)));
        tokio::spawn(beat(Arc::downgrade(self), hb));
        tokio::spawn(fence_watch(Arc::downgrade(self)));
        Ok(())
    }

    /// Adopts every app's shared revision that is newer than this node's.
    async fn resync(&self) -> Result<(), nubo_cluster::ClusterError> {
        let Some(member) = &self.cluster else {
            return Ok(());
        };
        for name in member.cluster.app_names().await? {
            match member.cluster.app(&name).await {
                Ok(Some((_, record))) => self.adopt_logged(&record).await,
                Ok(None) => {}
                // A forged record changes nothing here; the others go on.
                Err(nubo_cluster::ClusterError::Unauthenticated(e)) => tracing::warn!("{e}"),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn beat(&self, hb: &Heartbeat) {
        let Some(member) = &self.cluster else { return };
        let mut hb = hb.clone();
        hb.at_ms = nubo_sqlite::now_ms() as u64;
        hb.apps = self.app_revisions().await;
        hb.failing = member.failing().clone();
        // The bucket's time-to-live counts from when the server stored it,
        // which is after this.
        let sent = std::time::Instant::now();
        if let Err(e) = member.cluster.beat(&hb).await {
            tracing::warn!("heartbeat not written: {e}");
            return;
        }
        *member.last_beat.lock().unwrap_or_else(|p| p.into_inner()) = sent;
        // What the nodes whose heartbeat expired ran goes to the others;
        // a fenced node takes work again whether or not the list was read.
        let live: Option<std::collections::HashSet<String>> = member
            .cluster
            .members(nubo_sqlite::now_ms() as u64)
            .await
            .ok()
            .map(|members| members.into_iter().map(|m| m.heartbeat.id).collect());
        for c in self.runtime.capabilities() {
            if let Some(beat) = c.heartbeat(&self.services, live.as_ref()) {
                beat.await;
            }
        }
    }

    /// Leaves the list of nodes at once (a clean stop).
    pub async fn leave_cluster(&self) {
        if let Some(member) = &self.cluster
            && let Err(e) = member.cluster.leave(&member.id).await
        {
            tracing::warn!("cannot remove this node's heartbeat: {e}");
        }
    }

    /// True once the node serves what it should: alone, at once; in a
    /// cluster, once connected and caught up with the shared state.
    pub fn ready(&self) -> bool {
        self.gateway.is_ready()
            && self
                .cluster
                .as_ref()
                .is_none_or(|m| m.synced.load(Ordering::Acquire) && m.cluster.connected())
    }

    /// The nodes of the cluster, as `nubo ps` lists them; `None` alone.
    pub async fn members(&self) -> Option<Result<Vec<nubo_cluster::Member>, String>> {
        let member = self.cluster.as_ref()?;
        Some(
            member
                .cluster
                .members(nubo_sqlite::now_ms() as u64)
                .await
                .map_err(|e| e.to_string()),
        )
    }

    /// This node alone, in the shape of a cluster member.
    pub async fn alone(&self) -> nubo_cluster::Member {
        let (http, control) = self.addrs.get().cloned().unwrap_or_default();
        let now = nubo_sqlite::now_ms() as u64;
        nubo_cluster::Member {
            heartbeat: Heartbeat {
                id: "local".into(),
                http,
                control,
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_ms: self.started_ms,
                at_ms: now,
                apps: self.app_revisions().await,
                failing: BTreeMap::new(),
            },
            age_ms: 0,
            health: "ready".into(),
        }
    }

    async fn app_revisions(&self) -> BTreeMap<String, u64> {
        self.apps
            .lock()
            .await
            .iter()
            .map(|(n, a)| (n.clone(), a.revision))
            .collect()
    }

    /// This node's id in the cluster.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster.as_ref().map(|m| m.id.as_str())
    }
}

/// How often a node also compares every app with the shared state, in
/// case its watch silently stopped (a NATS server it depended on died).
const RESYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Adopts every change to the shared state, for as long as the node lives:
/// as the watch delivers it, and by a full comparison every
/// [`RESYNC_EVERY`].
async fn watch(node: std::sync::Weak<Node>) {
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.tick().await;
    loop {
        let Some(cluster) = node
            .upgrade()
            .and_then(|n| Some(n.cluster.as_ref()?.cluster.clone()))
        else {
            return;
        };
        let mut changes = match cluster.watch_apps().await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("{e}; retrying");
                None
            }
        };
        drop(cluster);
        loop {
            let change = async {
                match changes.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                change = change => {
                    let Some(node) = node.upgrade() else { return };
                    match change {
                        Some(Ok((_, record))) => node.adopt_logged(&record).await,
                        Some(Err(e)) => tracing::warn!("{e}"),
                        None => {
                            tracing::warn!("the watch of the shared state ended; watching again");
                            break;
                        }
                    }
                }
                _ = resync.tick() => {
                    let Some(node) = node.upgrade() else { return };
                    if let Err(e) = node.resync().await {
                        tracing::warn!("cannot compare with the shared state: {e}");
                    }
                    if changes.is_none() {
                        break;
                    }
                }
            }
        }
    }
}

/// Beats every [`nubo_cluster::HEARTBEAT_EVERY`], and at once after a
/// change, so that `nubo ps` soon shows the new revision.
async fn beat(node: std::sync::Weak<Node>, hb: Heartbeat) {
    loop {
        // Holds the node for at most one interval after it is dropped.
        let Some(node) = node.upgrade() else { return };
        let Some(member) = &node.cluster else { return };
        let _ =
            tokio::time::timeout(nubo_cluster::HEARTBEAT_EVERY, member.changed.notified()).await;
        node.beat(&hb).await;
    }
}

/// Stops this node's tasks once it has written no heartbeat for
/// [`nubo_cluster::FENCE_AFTER`] (NATS unreachable, or this node too
/// starved to write): the other nodes take a node's tasks over only once
/// its heartbeat has expired ([`nubo_cluster::HEARTBEAT_TTL`]), so a task
/// never runs here and there at once. Runs on its own, because a write to
/// a NATS that does not answer can take longer than that.
async fn fence_watch(node: std::sync::Weak<Node>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        let Some(member) = &node.cluster else { return };
        let silent = member
            .last_beat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if silent < nubo_cluster::FENCE_AFTER {
            continue;
        }
        let stopped: Option<usize> = node
            .runtime
            .capabilities()
            .iter()
            .filter_map(|c| c.fence(&node.services))
            .reduce(|a, b| a + b);
        if let Some(stopped) = stopped {
            tracing::warn!(
                stopped,
                "no heartbeat written for {} s: this node stops its tasks and takes no new ones until it reaches NATS again; the others run them once its heartbeat expires",
                silent.as_secs()
            );
        }
    }
}
