//! Secret variables are encrypted wherever a definition is stored: in the
//! node's SQLite state (`nubo.db`) and in the cluster's desired state in
//! NATS. A copy of the database or a read of the bucket then shows
//! `sealed:v1:…` in place of each secret value.
//!
//! ChaCha20-Poly1305 (ring), a fresh random nonce per value, and the app
//! and variable name as associated data, so a sealed value cannot be moved
//! to another variable. The node's own key is `STATE/secrets.key` (32
//! random bytes, 0600); a cluster's records use a key derived from the
//! cluster key, which every node holds. Values stored before sealing
//! existed (no prefix) are read as they are and sealed on the next write.

use nubo_plan::AppDef;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

const PREFIX: &str = "sealed:v1:";
pub const KEY_FILE: &str = "secrets.key";

/// A key that seals and opens secret values.
pub struct Secrets {
    key: LessSafeKey,
    rng: SystemRandom,
}

/// A secret value that could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("secret variable `{variable}` of app `{app}` cannot be decrypted with this node's key")]
    Open { app: String, variable: String },
    /// The system gave no randomness for a nonce: nothing is stored.
    #[error(
        "secret variable `{variable}` of app `{app}` cannot be encrypted: no randomness for a nonce"
    )]
    Seal { app: String, variable: String },
}

impl Secrets {
    /// From 32 bytes of key material.
    pub fn new(key: [u8; 32]) -> std::io::Result<Self> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key)
            .map_err(|_| std::io::Error::other("the secrets key was refused"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// The node's key in `state`, made (0600) on first use.
    pub fn load_or_create(state: &Path) -> std::io::Result<Self> {
        let path = state.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a 32-byte key", path.display()),
                    )
                })?;
                Self::new(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| std::io::Error::other("no randomness for a key"))?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                use std::io::Write;
                let mut f = opts.open(&path)?;
                f.write_all(&key)?;
                f.sync_all()?;
                Self::new(key)
            }
            Err(e) => Err(e),
        }
    }

    fn aad(app: &str, variable: &str) -> Vec<u8> {
        format!("nubo secret\0{app}\0{variable}").into_bytes()
    }

    fn seal_value(&self, app: &str, variable: &str, value: &str) -> Result<String, SealError> {
        let err = || SealError::Seal {
            app: app.to_string(),
            variable: variable.to_string(),
        };
        // Without randomness a nonce could repeat: refuse the write.
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| err())?;
        let mut data = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(app, variable)),
                &mut data,
            )
            .map_err(|_| err())?;
        Ok(format!(
            "{PREFIX}{}{}",
            hex::encode(nonce),
            hex::encode(data)
        ))
    }

    fn open_value(&self, app: &str, variable: &str, value: &str) -> Result<String, SealError> {
        let err = || SealError::Open {
            app: app.to_string(),
            variable: variable.to_string(),
        };
        let Some(hexed) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_string());
        };
        let bytes = hex::decode(hexed).map_err(|_| err())?;
        if bytes.len() < NONCE_LEN {
            return Err(err());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| err())?;
        let mut data = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(app, variable)), &mut data)
            .map_err(|_| err())?;
        String::from_utf8(plain.to_vec()).map_err(|_| err())
    }

    /// `def` with every secret value sealed, for storing.
    pub fn seal(&self, def: &AppDef) -> Result<AppDef, SealError> {
        let mut out = def.clone();
        for (name, v) in out.variables.iter_mut().filter(|(_, v)| v.secret) {
            if !v.value.starts_with(PREFIX) {
                v.value = self.seal_value(&def.name, name, &v.value)?;
            }
        }
        Ok(out)
    }

    /// `def` as stored, with every secret value opened.
    pub fn open(&self, mut def: AppDef) -> Result<AppDef, SealError> {
        let app = def.name.clone();
        for (name, v) in def.variables.iter_mut().filter(|(_, v)| v.secret) {
            v.value = self.open_value(&app, name, &v.value)?;
        }
        Ok(def)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> AppDef {
        let mut d = AppDef::new("shop");
        d.variables.insert(
            "token".into(),
            nubo_plan::Variable {
                value: "hunter2".into(),
                secret: true,
            },
        );
        d.variables.insert(
            "greeting".into(),
            nubo_plan::Variable {
                value: "hello".into(),
                secret: false,
            },
        );
        d
    }

    #[test]
    fn secret_values_are_sealed_and_open_again() {
        let s = Secrets::new([7; 32]).unwrap();
        let sealed = s.seal(&def()).unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains("hello"), "plain variables stay readable");
        assert_eq!(s.open(sealed.clone()).unwrap(), def());
        // Another key cannot open it; a value moved to another name neither.
        assert!(Secrets::new([8; 32]).unwrap().open(sealed.clone()).is_err());
        let mut moved = sealed;
        let v = moved.variables.remove("token").unwrap();
        moved.variables.insert("other".into(), v);
        assert!(s.open(moved).is_err());
        // What was stored before sealing existed reads as it was.
        assert_eq!(s.open(def()).unwrap(), def());
    }
}
