//! JetStream as Nubo's services use it: buckets and streams opened (and
//! created) while a cluster may still be forming, calls retried only when
//! their error says the cluster may yet answer ([`Transient`]), keys listed
//! and purged by subject, conditional writes that hold on old servers,
//! names made safe as subject tokens, and each app's stored bytes
//! ([`Usage`]). The cluster's control plane (`nubo-cluster`) and the
//! JetStream backends of every capability build on it.

mod transient;
mod usage;

pub use transient::Transient;
pub use usage::Usage;

use async_nats::jetstream::{self, kv, object_store};
use std::time::Duration;

/// A JetStream bucket, stream or call that failed.
#[derive(Debug, thiserror::Error)]
pub enum JsError {
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
}

impl JsError {
    /// A failure that repeating the call will not cure.
    pub fn nats(what: &str, e: impl std::fmt::Display) -> Self {
        Self::Nats {
            what: what.into(),
            why: e.to_string(),
            transient: false,
        }
    }

    /// A failed NATS call, transient if its error says so.
    pub fn call(what: &str, e: impl std::fmt::Display + Transient) -> Self {
        Self::Nats {
            what: what.into(),
            why: e.to_string(),
            transient: e.is_transient(),
        }
    }
}

/// Opens a key-value bucket, creating it if it does not exist. Nodes that
/// start together may race to create it; the loser opens the winner's.
///
/// The bucket's stream is created here rather than by
/// `create_key_value`, which first reads account fields that NATS 2.9
/// (Debian's) does not send; the stream is the one that call would make.
pub async fn open_kv(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, JsError> {
    // A slow or forming cluster times the first read out: that is no
    // answer, so the whole opening is tried again.
    retry_while_starting(|| open_kv_once(js, config.clone())).await
}

async fn open_kv_once(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, JsError> {
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
        .map_err(|e| JsError::Bucket {
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
) -> Result<jetstream::stream::Stream, JsError> {
    let name = config.name.clone();
    retry_while_starting(|| async {
        if let Ok(s) = js.get_stream(&name).await {
            return Ok(s);
        }
        match js.create_stream(config.clone()).await {
            Ok(s) => Ok(s),
            Err(e) => js.get_stream(&name).await.map_err(|_| JsError::Bucket {
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
) -> Result<bool, JsError> {
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
            Err(e) => return Err(JsError::nats("conditional write", e)),
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
pub async fn purge_keys(store: &kv::Store, prefix: &str) -> Result<u64, JsError> {
    let filter = format!("{}{prefix}>", store.prefix);
    retry(|| async {
        store
            .stream
            .purge()
            .filter(&filter)
            .await
            .map(|r| r.purged)
            .map_err(|e| JsError::call("purge keys", e))
    })
    .await
}

/// The keys of `store` under `prefix` (`""`: all), from the stream's
/// subject index. Unlike `kv::Store::keys`, no consumer is created, so it
/// keeps working while a consumer could not be placed.
pub async fn keys(store: &kv::Store, prefix: &str) -> Result<Vec<String>, JsError> {
    use futures_util::StreamExt;
    let filter = format!("{}{prefix}>", store.prefix);
    retry(|| async {
        let mut subjects = store
            .stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| JsError::call("list keys", e))?;
        let mut out = Vec::new();
        while let Some(item) = subjects.next().await {
            let (subject, _) = item.map_err(|e| JsError::call("list keys", e))?;
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
) -> Result<object_store::ObjectStore, JsError> {
    retry_while_starting(|| async {
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
                .map_err(|_| JsError::Bucket {
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
