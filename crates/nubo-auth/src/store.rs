//! Accounts and sessions, kept in the app's own key-value namespace under
//! a store no grant can name (`_auth`: store names granted to components
//! start with a letter). On one node that is the embedded store; on a
//! cluster it is JetStream, so a session made on one node holds on all.
//!
//! - `user:EMAIL` → the account (id, argon2id hash, roles, disabled);
//! - `session:SHA256(TOKEN)` → the email it signs in, expiring with the
//!   session. Only a digest of the token is stored: a copy of the store
//!   signs no one in.

use nubo_kv::{KvBackend, KvError, Namespace};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

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
}

#[derive(Clone)]
pub struct Accounts {
    kv: Arc<dyn KvBackend>,
    ns: Namespace,
}

impl Accounts {
    pub fn new(kv: Arc<dyn KvBackend>, app: &str) -> Self {
        Self {
            kv,
            ns: Namespace {
                app: app.to_string(),
                store: STORE.to_string(),
            },
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
            .await
    }

    /// Starts the session `token` (random, shown once: in the cookie)
    /// for `email`.
    pub async fn open_session(
        &self,
        token: &str,
        email: &str,
        ttl: Duration,
    ) -> Result<(), KvError> {
        self.kv
            .set(&self.ns, &session_key(token), email.as_bytes(), Some(ttl))
            .await
    }

    /// The email a session token signs in, while it lasts.
    pub async fn session(&self, token: &str) -> Result<Option<String>, KvError> {
        let found = self.kv.get(&self.ns, &session_key(token)).await?;
        Ok(found.and_then(|b| String::from_utf8(b).ok()))
    }

    pub async fn close_session(&self, token: &str) -> Result<(), KvError> {
        self.kv.delete(&self.ns, &session_key(token)).await
    }
}

fn session_key(token: &str) -> String {
    format!("session:{}", hex::encode(Sha256::digest(token.as_bytes())))
}
