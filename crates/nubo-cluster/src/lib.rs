//! Cluster mode: what Nubo nodes share through NATS JetStream.
//!
//! Nubo adds no consensus of its own. Every piece of shared state lives in
//! a JetStream key-value bucket or object store, replicated by NATS's Raft;
//! Nubo only reads, writes and watches it:
//!
//! - `nubo_apps`: the desired state, one key per app holding its current
//!   revision ([`AppRecord`]). A change is a compare-and-swap on the key's
//!   stream revision, so two nodes applying at once cannot both win.
//! - `nubo_content`: uploaded components and files, by sha256. A node that
//!   adopts a revision fetches what it lacks from here.
//! - `nubo_nodes`: heartbeats with a time-to-live; a node that stops
//!   beating disappears from `nubo ps` on its own.
//! - `nubo_leases`: create-only keys, so that exactly one node runs a
//!   scheduled cron run.
//!
//! There is no reconciler process. Each node watches `nubo_apps` and brings
//! itself to the revision it finds there (wasmCloud v2 learned that a
//! separate reconciler drifts); capability calls stay in-process.

mod desired;
mod lease;
mod members;
mod seal;

pub use desired::{AppRecord, Watch};

/// How a node joins a cluster: the connection, and the id it goes by.
/// The node puts it in its services, where a capability opening a
/// JetStream backend finds it.
#[derive(Clone)]
pub struct ClusterJoin {
    pub cluster: std::sync::Arc<Cluster>,
    pub id: String,
}
pub use members::{Heartbeat, Member};
pub use seal::{ClusterKey, Unauthenticated, WeakKey};

use nubo_jetstream::{Transient, open_kv, open_object_store};

use async_nats::jetstream::{self, kv, object_store};
use std::time::Duration;

const APPS: &str = "nubo_apps";
const CONTENT: &str = "nubo_content";
const NODES: &str = "nubo_nodes";
const LEASES: &str = "nubo_leases";

/// How long a starting node keeps trying to reach NATS.
pub const CONNECT_FOR: Duration = Duration::from_secs(10);

/// How often a node writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A heartbeat older than this is gone from the bucket: the node is dead.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(10);
/// A node that wrote no heartbeat for this long stops the tasks it runs:
/// well before [`HEARTBEAT_TTL`], after which the others take them over,
/// so that no task runs on two nodes at once.
pub const FENCE_AFTER: Duration = Duration::from_secs(6);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS at {urls}: {why}")]
    Connect { urls: String, why: String },
    /// A JetStream bucket, stream or call failed.
    #[error(transparent)]
    JetStream(#[from] nubo_jetstream::JsError),
    /// Someone else changed the record first.
    #[error("another node changed app `{0}` at the same time; run `nubo plan` again")]
    Conflict(String),
    #[error("content {0} is in no node's uploads; upload it again")]
    MissingContent(String),
    #[error(transparent)]
    Unauthenticated(#[from] Unauthenticated),
}

impl ClusterError {
    /// A failure that repeating the call will not cure.
    pub(crate) fn nats(what: &str, e: impl std::fmt::Display) -> Self {
        Self::JetStream(nubo_jetstream::JsError::nats(what, e))
    }
}

impl Transient for ClusterError {
    fn is_transient(&self) -> bool {
        match self {
            ClusterError::JetStream(e) => e.is_transient(),
            _ => false,
        }
    }
}

pub struct ClusterOptions {
    /// Server URLs, any of the cluster's servers.
    pub urls: Vec<String>,
    /// Replicas of every bucket Nubo creates (1 to 5, at most the number
    /// of servers).
    pub replicas: usize,
    /// What every node's records are signed with.
    pub key: std::sync::Arc<ClusterKey>,
    /// How this node proves itself to NATS.
    pub auth: NatsAuth,
}

/// NATS's own authentication and TLS, as its servers are configured.
#[derive(Debug, Clone, Default)]
pub struct NatsAuth {
    /// A credentials file (user JWT and NKey seed), as `nsc` makes them.
    pub creds: Option<std::path::PathBuf>,
    /// A user name and password.
    pub user: Option<(String, String)>,
    /// Trust servers whose certificate this CA signed (and require TLS).
    pub tls_ca: Option<std::path::PathBuf>,
    /// A client certificate and key, for servers that verify clients.
    pub tls_client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl NatsAuth {
    async fn options(&self) -> Result<async_nats::ConnectOptions, String> {
        let mut o = async_nats::ConnectOptions::new();
        if let Some(path) = &self.creds {
            o = o
                .credentials_file(path)
                .await
                .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))?;
        }
        if let Some((user, pass)) = &self.user {
            o = o.user_and_password(user.clone(), pass.clone());
        }
        if let Some(ca) = &self.tls_ca {
            o = o.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.tls_client {
            o = o.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(o)
    }
}

/// A connection to the cluster and its buckets.
pub struct Cluster {
    client: async_nats::Client,
    js: jetstream::Context,
    apps: kv::Store,
    nodes: kv::Store,
    leases: kv::Store,
    content: object_store::ObjectStore,
    replicas: usize,
    key: std::sync::Arc<ClusterKey>,
}

impl Cluster {
    /// Connects and opens (creating them if needed) Nubo's buckets.
    pub async fn connect(opts: ClusterOptions) -> Result<Self, ClusterError> {
        let shown = opts.urls.join(",");
        let addrs = opts
            .urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClusterError::Connect {
                urls: shown.clone(),
                why: e.to_string(),
            })?;
        // Servers that start with the node (a fresh cluster, a rolled
        // deployment) get a few seconds to come up.
        let started = std::time::Instant::now();
        let base = opts
            .auth
            .options()
            .await
            .map_err(|why| ClusterError::Connect {
                urls: shown.clone(),
                why,
            })?;
        let client = loop {
            let attempt = base
                .clone()
                .name("nubo")
                .connection_timeout(Duration::from_secs(5))
                // After the first connection, a lost server is retried (and
                // the others tried) for ever; calls in between fail or wait.
                .connect(addrs.clone())
                .await;
            match attempt {
                Ok(c) => break c,
                Err(e) if started.elapsed() < CONNECT_FOR => {
                    tracing::info!("NATS not reachable yet ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(ClusterError::Connect {
                        urls: shown.clone(),
                        why: e.to_string(),
                    });
                }
            }
        };
        let js = jetstream::new(client.clone());
        let replicas = opts.replicas.clamp(1, 5);
        let bucket = |name: &str, history: i64, max_age: Duration| kv::Config {
            bucket: name.to_string(),
            history,
            max_age,
            num_replicas: replicas,
            ..Default::default()
        };
        let apps = open_kv(&js, bucket(APPS, 1, Duration::ZERO)).await?;
        let nodes = open_kv(&js, bucket(NODES, 1, HEARTBEAT_TTL)).await?;
        let leases = open_kv(&js, bucket(LEASES, 1, Duration::from_secs(24 * 3600))).await?;
        let content = open_object_store(&js, CONTENT, replicas).await?;
        Ok(Self {
            client,
            js,
            apps,
            nodes,
            leases,
            content,
            replicas,
            key: opts.key,
        })
    }

    /// The key this node signs and checks records with.
    pub fn key(&self) -> &std::sync::Arc<ClusterKey> {
        &self.key
    }

    /// The NATS connection, for the services' own cluster backends.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Replicas of the buckets and streams Nubo creates.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// True while the client holds a connection to some server.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}
