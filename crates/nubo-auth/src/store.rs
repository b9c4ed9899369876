//! Accounts and sessions, kept in the app's own key-value namespace under
//! a store no grant can name (`_auth`: store names granted to components
//! start with a letter). On one node that is the embedded store; on a
//! cluster it is JetStream, so a session made on one node holds on all.
//!
//! - `user:EMAIL` → the account (id, argon2id hash, roles, disabled);
//! - `session:SHA256(TOKEN)` → the email it signs in and the account's
//!   session generation when it began, expiring with the session.
//!   Revoking every session of an account raises its generation, so the
//!   older sessions no longer hold on any node.
//! - `key:SHA256(KEY)` → an API key's name and roles, and `keyname:NAME`
//!   → its digest, for listing and revoking by name.
//!
//! Only digests of tokens and keys are stored: a copy of the store signs
//! no one in.
//!
//! What a session or API key resolves to is kept in the node's memory for
//! [`RECENT`], so that a busy session costs no store reads per request. A
//! change made through this node (sign-out, a new password, roles, a
//! disabled or deleted account, a revoked key) forgets it at once; other
//! nodes of a cluster see it within [`RECENT`].

use nubo_gateway::Identity;
use nubo_kv::{KvBackend, KvError, Namespace};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a session's or key's account is kept in memory.
pub const RECENT: Duration = Duration::from_secs(1);
/// Entries kept at most; past it, the old ones are dropped.
const KEEP: usize = 10_000;

/// A record a credential resolves to, with the identity it gives.
pub struct Resolved<T> {
    pub record: T,
    pub identity: Arc<Identity>,
}

/// Recently read values by token, for [`RECENT`].
struct Recent<V>(Mutex<HashMap<String, (Arc<V>, Instant)>>);

impl<V> Recent<V> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn get(&self, token: &str) -> Option<Arc<V>> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(token)
            .filter(|(_, at)| at.elapsed() < RECENT)
            .map(|(v, _)| v.clone())
    }

    fn put(&self, token: &str, v: Arc<V>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= KEEP {
            m.retain(|_, (_, at)| at.elapsed() < RECENT);
            if m.len() >= KEEP {
                m.clear();
            }
        }
        m.insert(token.to_string(), (v, Instant::now()));
    }

    /// Keeps only the entries `keep` says to.
    fn retain(&self, keep: impl Fn(&str, &V) -> bool) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|t, (v, _)| keep(t, v));
    }
}

pub const STORE: &str = "_auth";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub hash: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    pub created_ms: u64,
    /// Sessions begun at a lower generation have been revoked.
    #[serde(default)]
    pub generation: u64,
}

/// What a session record holds.
#[derive(Serialize, Deserialize)]
struct Session {
    email: String,
    generation: u64,
}

/// An API key, as stored (without the key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub created_ms: u64,
}

/// How many records one page of a listing reads.
const PAGE: usize = 500;

#[derive(Clone)]
pub struct Accounts {
    kv: Arc<dyn KvBackend>,
    ns: Namespace,
    sessions: Arc<Recent<Resolved<User>>>,
    keys: Arc<Recent<Resolved<ApiKey>>>,
}

impl Accounts {
    pub fn new(kv: Arc<dyn KvBackend>, app: &str) -> Self {
        Self {
            kv,
            ns: Namespace {
                app: app.to_string(),
                store: STORE.to_string(),
            },
            sessions: Arc::new(Recent::new()),
            keys: Arc::new(Recent::new()),
        }
    }

    pub async fn user(&self, email: &str) -> Result<Option<User>, KvError> {
        let found = self.kv.get(&self.ns, &format!("user:{email}")).await?;
        Ok(found.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Stores a new account; `false` if the email has one already.
    pub async fn create(&self, user: &User) -> Result<bool, KvError> {
        let bytes = serde_json::to_vec(user).unwrap_or_default();
        self.kv
            .compare_and_swap(&self.ns, &format!("user:{}", user.email), None, &bytes)
            .await
    }

    pub async fn save(&self, user: &User) -> Result<(), KvError> {
        let bytes = serde_json::to_vec(user).unwrap_or_default();
        self.kv
            .set(&self.ns, &format!("user:{}", user.email), &bytes, None)
            .await?;
        self.sessions.retain(|_, u| u.record.email != user.email);
        Ok(())
    }

    /// Every account, in email order.
    pub async fn users(&self) -> Result<Vec<User>, KvError> {
        let mut out = Vec::new();
        for value in self.values("user:").await? {
            if let Ok(u) = serde_json::from_slice::<User>(&value) {
                out.push(u);
            }
        }
        Ok(out)
    }

    pub async fn delete_user(&self, email: &str) -> Result<(), KvError> {
        self.kv.delete(&self.ns, &format!("user:{email}")).await?;
        self.sessions.retain(|_, u| u.record.email != email);
        Ok(())
    }

    /// The values of every key starting with `prefix`, in key order.
    async fn values(&self, prefix: &str) -> Result<Vec<Vec<u8>>, KvError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let (keys, next) = self
                .kv
                .list_keys(&self.ns, prefix, cursor.as_deref(), PAGE)
                .await?;
            out.extend(
                self.kv
                    .get_many(&self.ns, &keys)
                    .await?
                    .into_iter()
                    .flatten(),
            );
            match next {
                Some(n) => cursor = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// Starts the session `token` (random, shown once: in the cookie)
    /// for `user`.
    pub async fn open_session(
        &self,
        token: &str,
        user: &User,
        ttl: Duration,
    ) -> Result<(), KvError> {
        let record = Session {
            email: user.email.clone(),
            generation: user.generation,
        };
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        self.kv
            .set(&self.ns, &session_key(token), &bytes, Some(ttl))
            .await
    }

    /// The account a session token signs in, while the session lasts and
    /// was not revoked.
    pub async fn session(&self, token: &str) -> Result<Option<Arc<Resolved<User>>>, KvError> {
        if let Some(u) = self.sessions.get(token) {
            return Ok(Some(u));
        }
        let found = self.kv.get(&self.ns, &session_key(token)).await?;
        let Some(s) = found.and_then(|b| serde_json::from_slice::<Session>(&b).ok()) else {
            return Ok(None);
        };
        let user = self.user(&s.email).await?;
        let Some(user) = user.filter(|u| u.generation == s.generation) else {
            return Ok(None);
        };
        let identity = Identity::new(
            user.id.clone(),
            Some(user.email.clone()),
            user.roles.clone(),
            "session",
        );
        let resolved = Arc::new(Resolved {
            record: user,
            identity: Arc::new(identity),
        });
        self.sessions.put(token, resolved.clone());
        Ok(Some(resolved))
    }

    pub async fn close_session(&self, token: &str) -> Result<(), KvError> {
        self.kv.delete(&self.ns, &session_key(token)).await?;
        self.sessions.retain(|t, _| t != token);
        Ok(())
    }

    /// Stores API key `key` (random, shown once) as `record`; `false` if
    /// a key of that name exists.
    pub async fn create_key(&self, key: &str, record: &ApiKey) -> Result<bool, KvError> {
        let digest = digest(key);
        let named = format!("keyname:{}", record.name);
        if !self
            .kv
            .compare_and_swap(&self.ns, &named, None, digest.as_bytes())
            .await?
        {
            return Ok(false);
        }
        let bytes = serde_json::to_vec(record).unwrap_or_default();
        self.kv
            .set(&self.ns, &format!("key:{digest}"), &bytes, None)
            .await?;
        Ok(true)
    }

    /// The API key `key` is, if it is one.
    pub async fn key(&self, key: &str) -> Result<Option<Arc<Resolved<ApiKey>>>, KvError> {
        if let Some(k) = self.keys.get(key) {
            return Ok(Some(k));
        }
        let found = self
            .kv
            .get(&self.ns, &format!("key:{}", digest(key)))
            .await?;
        let Some(record) = found.and_then(|b| serde_json::from_slice::<ApiKey>(&b).ok()) else {
            return Ok(None);
        };
        let identity = Identity::new(
            format!("key:{}", record.name),
            None,
            record.roles.clone(),
            "api-key",
        );
        let resolved = Arc::new(Resolved {
            record,
            identity: Arc::new(identity),
        });
        self.keys.put(key, resolved.clone());
        Ok(Some(resolved))
    }

    /// Every API key, in name order.
    pub async fn keys(&self) -> Result<Vec<ApiKey>, KvError> {
        let mut out = Vec::new();
        for digest in self.values("keyname:").await? {
            let digest = String::from_utf8_lossy(&digest).into_owned();
            let found = self.kv.get(&self.ns, &format!("key:{digest}")).await?;
            if let Some(k) = found.and_then(|b| serde_json::from_slice(&b).ok()) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// Revokes the key named `name`; `false` if there is none.
    pub async fn revoke_key(&self, name: &str) -> Result<bool, KvError> {
        let named = format!("keyname:{name}");
        let Some(digest) = self.kv.get(&self.ns, &named).await? else {
            return Ok(false);
        };
        let digest = String::from_utf8_lossy(&digest).into_owned();
        self.kv.delete(&self.ns, &format!("key:{digest}")).await?;
        self.kv.delete(&self.ns, &named).await?;
        self.keys.retain(|_, k| k.record.name != name);
        Ok(true)
    }
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn session_key(token: &str) -> String {
    format!("session:{}", digest(token))
}
