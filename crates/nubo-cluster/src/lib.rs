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
mod transient;
mod usage;

pub use desired::{AppRecord, Watch};
pub use members::{Heartbeat, Member};
pub use seal::{ClusterKey, Unauthenticated, WeakKey};
pub use transient::Transient;
pub use usage::Usage;

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
    #[error("JetStream bucket `{bucket}`: {why}")]
    Bucket {
        bucket: String,
        why: String,
        /// Whether the cluster may yet answer ([`Transient`]).
        transient: bool,
    },
    #[error("{what}: {why}")]
    Nats {
        what: String,
        why: String,
        /// Whether the same call may succeed if made again soon.
        transient: bool,
    },
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
        Self::Nats {
            what: what.into(),
            why: e.to_string(),
            transient: false,
        }
    }

    /// A failed NATS call, transient if its error says so.
    pub(crate) fn call(what: &str, e: impl std::fmt::Display + Transient) -> Self {
        Self::Nats {
            what: what.into(),
            why: e.to_string(),
            transient: e.is_transient(),
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

/// Opens a key-value bucket, creating it if it does not exist. Nodes that
/// start together may race to create it; the loser opens the winner's.
///
/// The bucket's stream is created here rather than by
/// `create_key_value`, which first reads account fields that NATS 2.9
/// (Debian's) does not send; the stream is the one that call would make.
pub async fn open_kv(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, ClusterError> {
    // A slow or forming cluster times the first read out: that is no
    // answer, so the whole opening is tried again.
    retry_while_starting(|| open_kv_once(js, config.clone())).await
}

async fn open_kv_once(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let bucket = config.bucket.clone();
    let stream = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: config.history.max(1),
        max_age: config.max_age,
        max_bytes: -1,
        max_message_size: if config.max_value_size > 0 {
            config.max_value_size
        } else {
            -1
        },
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: config.num_replicas.max(1),
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    open_stream(js, stream).await?;
    // The stream exists now: a bucket that cannot be read yet is the
    // cluster catching up (its stream not yet visible on this server).
    js.get_key_value(&bucket)
        .await
        .map_err(|e| ClusterError::Bucket {
            bucket,
            transient: true,
            why: e.to_string(),
        })
}

/// Opens a stream, creating it if it does not exist. A cluster that is
/// still forming ("no suitable peers for placement") is waited for, up to
/// [`RETRY_FOR`]; nodes racing to create it all end up with the winner's.
pub async fn open_stream(
    js: &jetstream::Context,
    config: jetstream::stream::Config,
) -> Result<jetstream::stream::Stream, ClusterError> {
    let name = config.name.clone();
    retry_while_starting(|| async {
        if let Ok(s) = js.get_stream(&name).await {
            return Ok(s);
        }
        match js.create_stream(config.clone()).await {
            Ok(s) => Ok(s),
            Err(e) => js
                .get_stream(&name)
                .await
                .map_err(|_| ClusterError::Bucket {
                    bucket: name.clone(),
                    transient: e.is_transient(),
                    why: e.to_string(),
                }),
        }
    })
    .await
}

/// Writes `value` under `key` if the key's last revision is still
/// `revision` (0: it was never written); `Ok(false)` if another writer
/// came first.
///
/// Why not `kv::Store::update`: before NATS 2.9.21 a clustered stream
/// checks the expected revision before the write goes through Raft, so two
/// writers racing with the same expected revision can both succeed
/// (nats-server#4320), and Debian 12 ships 2.9.10. Each conditional write
/// here also carries a message id made of the key and the revision it
/// expects: the stream's duplicate window drops the second of two such
/// writes, and says so in its ack.
pub async fn write_if(
    js: &jetstream::Context,
    store: &kv::Store,
    key: &str,
    value: bytes::Bytes,
    revision: u64,
) -> Result<bool, ClusterError> {
    use jetstream::context::PublishErrorKind;
    let message = jetstream::message::PublishMessage::build()
        .payload(value)
        .message_id(format!("{key}@{revision}"))
        .expected_last_subject_sequence(revision);
    let subject = format!("{}{key}", store.prefix);
    let started = std::time::Instant::now();
    loop {
        let result = match js.send_publish(subject.clone(), message.clone()).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(ack) => return Ok(!ack.duplicate),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => return Ok(false),
            // Nobody took the write (the stream is electing a leader after
            // a server left): safe to send again. A timeout is not: the
            // write may have landed.
            Err(e)
                if e.kind() == PublishErrorKind::StreamNotFound
                    && started.elapsed() < RETRY_FOR =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(ClusterError::nats("conditional write", e)),
        }
    }
}

/// How long a node that is starting keeps opening its buckets and streams
/// while NATS times out or is still forming, before it gives up.
pub const START_RETRY_FOR: Duration = Duration::from_secs(60);

/// Like [`retry`], for what a node opens at start: waits up to
/// [`START_RETRY_FOR`], backing off from 200 ms to 5 s, and says at info
/// level that it is waiting, so that a node started together with NATS
/// (as Kubernetes does) comes up once NATS answers.
pub async fn retry_while_starting<T, E, F, Fut>(mut call: F) -> Result<T, E>
where
    E: std::fmt::Display + Transient,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(200);
    loop {
        match call().await {
            Err(e) if e.is_transient() && started.elapsed() < START_RETRY_FOR => {
                tracing::info!("NATS is not ready yet ({e}); trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// How long calls that are safe to repeat keep trying while the cluster
/// recovers from a lost server (a new stream leader takes a few seconds).
pub const RETRY_FOR: Duration = Duration::from_secs(15);

/// Runs `call` until it succeeds, fails for a reason other than the
/// cluster being briefly without a leader, or [`RETRY_FOR`] has passed.
/// Only for reads and writes that may land twice without harm.
pub async fn retry<T, E, F, Fut>(mut call: F) -> Result<T, E>
where
    E: std::fmt::Display + Transient,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = std::time::Instant::now();
    loop {
        match call().await {
            Err(e) if e.is_transient() && started.elapsed() < RETRY_FOR => {
                tracing::debug!("retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Deletes every key of `store` under `prefix` (a whole subtree, with its
/// history), as when an app is removed; how many messages went.
pub async fn purge_keys(store: &kv::Store, prefix: &str) -> Result<u64, ClusterError> {
    let filter = format!("{}{prefix}>", store.prefix);
    retry(|| async {
        store
            .stream
            .purge()
            .filter(&filter)
            .await
            .map(|r| r.purged)
            .map_err(|e| ClusterError::call("purge keys", e))
    })
    .await
}

/// The keys of `store` under `prefix` (`""`: all), from the stream's
/// subject index. Unlike `kv::Store::keys`, no consumer is created, so it
/// keeps working while a consumer could not be placed.
pub async fn keys(store: &kv::Store, prefix: &str) -> Result<Vec<String>, ClusterError> {
    use futures_util::StreamExt;
    let filter = format!("{}{prefix}>", store.prefix);
    retry(|| async {
        let mut subjects = store
            .stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| ClusterError::call("list keys", e))?;
        let mut out = Vec::new();
        while let Some(item) = subjects.next().await {
            let (subject, _) = item.map_err(|e| ClusterError::call("list keys", e))?;
            if let Some(key) = subject.strip_prefix(&store.prefix) {
                out.push(key.to_string());
            }
        }
        Ok(out)
    })
    .await
}

/// Opens an object store, creating it if needed (waiting for a forming
/// cluster like [`open_stream`]).
pub async fn open_object_store(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<object_store::ObjectStore, ClusterError> {
    retry(|| async {
        if let Ok(s) = js.get_object_store(bucket).await {
            return Ok(s);
        }
        let config = object_store::Config {
            bucket: bucket.to_string(),
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        match js.create_object_store(config).await {
            Ok(s) => Ok(s),
            Err(e) => js
                .get_object_store(bucket)
                .await
                .map_err(|_| ClusterError::Bucket {
                    bucket: bucket.to_string(),
                    transient: e.is_transient(),
                    why: e.to_string(),
                }),
        }
    })
    .await
}

/// A name as one token of a NATS subject or key. Nubo's names (apps,
/// stores, topics: lower-case, digits, `-`) pass as they are; anything
/// else is hex after a `_`, which no Nubo name contains.
pub fn token(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if plain {
        name.to_string()
    } else {
        let mut out = String::with_capacity(1 + 2 * name.len());
        out.push('_');
        for b in name.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// The name a [`token`] stands for.
pub fn untoken(token: &str) -> Option<String> {
    let Some(hex) = token.strip_prefix('_') else {
        return Some(token.to_string());
    };
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::{token, untoken};

    #[test]
    fn tokens_never_collide_with_names() {
        assert_eq!(token("chat-room"), "chat-room");
        assert_eq!(token("a.b"), "_612e62");
        assert_eq!(token(""), "_");
        assert_ne!(token("_61"), "_61");
        for name in ["chat", "a.b", "_61", "ünï code", ""] {
            assert_eq!(untoken(&token(name)).as_deref(), Some(name));
        }
    }
}
