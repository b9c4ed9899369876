//! Key-value stores through the standard `wasi:keyvalue` interfaces
//! (0.2.0-draft2), plus Nubo's time-to-live.
//!
//! ```ignore
//! let kv = nubo_sdk::kv::Store::open("default")?;
//! kv.set("greeting", b"hello")?;
//! let n = kv.increment("visits", 1)?;
//! ```
//!
//! A component reaches only the stores its `key_value_stores` in
//! `nubo.toml` grants; stores are per app, so two apps never see each
//! other's keys.

use crate::bindings::nubo::platform::kv_ttl;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// Why a key-value call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NoSuchStore,
    /// The store is not in this component's `key_value_stores`.
    AccessDenied,
    /// Anything else, e.g. a key or value over Nubo's limits.
    Other(String),
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NoSuchStore => Error::NoSuchStore,
            store::Error::AccessDenied => Error::AccessDenied,
            store::Error::Other(s) => Error::Other(s),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoSuchStore => f.write_str("no such key-value store"),
            Error::AccessDenied => {
                f.write_str("access denied: grant the store in nubo.toml (key_value_stores)")
            }
            Error::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {}

/// An open store.
pub struct Store(store::Bucket);

/// A key and its value.
pub type Pair = (String, Vec<u8>);

impl Store {
    /// Opens a store the component is granted.
    pub fn open(name: &str) -> Result<Store, Error> {
        store::open(name).map(Store).map_err(Error::from)
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.0.get(key)?)
    }

    /// The value as UTF-8 text (lossy).
    pub fn get_string(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        Ok(self.0.set(key, value.as_ref())?)
    }

    /// Sets a key that expires after `ttl`.
    pub fn set_with_ttl(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: std::time::Duration,
    ) -> Result<(), Error> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Ok(kv_ttl::set_with_ttl(&self.0, key, value.as_ref(), ms)?)
    }

    pub fn delete(&self, key: &str) -> Result<(), Error> {
        Ok(self.0.delete(key)?)
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.0.exists(key)?)
    }

    /// One page of keys in order, and the cursor for the next page.
    pub fn list_keys(&self, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), Error> {
        let r = self.0.list_keys(cursor)?;
        Ok((r.keys, r.cursor))
    }

    /// Every key, page by page.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let (keys, next) = self.list_keys(cursor.as_deref())?;
            out.extend(keys);
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Adds `delta` to a decimal integer value (absent counts as 0) and
    /// returns the result, atomically.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        Ok(atomics::increment(&self.0, key, delta)?)
    }

    /// Sets `key` to `new` only if its value is still `expected` (`None`:
    /// absent). `Ok(false)` if someone changed it first.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: impl AsRef<[u8]>,
    ) -> Result<bool, Error> {
        let cas = atomics::Cas::new(&self.0, key)?;
        if cas.current()?.as_deref() != expected {
            return Ok(false);
        }
        match atomics::swap(cas, new.as_ref()) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(e)) => Err(e.into()),
        }
    }

    /// Reads `key`, applies `f`, and writes the result back, retrying if
    /// another instance changed the key in between.
    pub fn update(
        &self,
        key: &str,
        mut f: impl FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let mut cas = atomics::Cas::new(&self.0, key)?;
        loop {
            let next = f(cas.current()?.as_deref());
            match atomics::swap(cas, &next) {
                Ok(()) => return Ok(next),
                Err(atomics::CasError::CasFailed(fresh)) => cas = fresh,
                Err(atomics::CasError::StoreError(e)) => return Err(e.into()),
            }
        }
    }

    /// Each key's pair, or `None` where it is absent, in the order asked.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Pair>>, Error> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        Ok(batch::get_many(&self.0, &keys)?)
    }

    pub fn set_many(&self, pairs: &[(&str, &[u8])]) -> Result<(), Error> {
        let pairs: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        Ok(batch::set_many(&self.0, &pairs)?)
    }

    pub fn delete_many(&self, keys: &[&str]) -> Result<(), Error> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        Ok(batch::delete_many(&self.0, &keys)?)
    }
}
