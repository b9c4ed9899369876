//! `wasi:keyvalue` and `nubo:platform/kv-ttl` for one guest instance.
//!
//! Every call goes to the node's [`KvBackend`] under the app's namespace.
//! `open` is the gate: a store the component was not granted in
//! `nubo.toml` answers `access-denied`, and that is logged, so a missing
//! grant is found from either side.

use crate::{KvBackend, KvError, KvGrant, Namespace, PAGE};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/kv-host",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::Error,
        },
    });
}

use generated::nubo::platform::kv_ttl;
use generated::wasi::keyvalue::{atomics, batch, store};

/// An open store, as the guest holds it.
pub struct Bucket {
    ns: Namespace,
}

/// A compare-and-swap handle: the value the guest saw when it began.
pub struct Cas {
    ns: Namespace,
    key: String,
    seen: Option<Vec<u8>>,
}

/// Errors of the key-value interfaces; a trap for host failures that are
/// not the guest's business (a broken resource table).
pub enum Error {
    AccessDenied,
    Other(String),
    Trap(wasmtime::Error),
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        Error::Other(e.to_string())
    }
}

impl From<wasmtime::component::ResourceTableError> for Error {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Error::Trap(e.into())
    }
}

/// What the bindings borrow from the store's data for one call.
struct KvView<'a> {
    /// `None` for a component without the grant.
    grant: Option<&'a KvGrant>,
    table: &'a mut ResourceTable,
    /// What the instance's compare-and-swap handles hold.
    cas: Option<&'a mut CasHeld>,
}

/// One instance's key-value state: its grant, and the compare-and-swap
/// handles it holds.
pub(crate) struct KvInstance {
    grant: Arc<KvGrant>,
    cas: CasHeld,
}

/// A component's key-value grant, as the runtime holds it.
pub(crate) struct Granted(pub Arc<KvGrant>);

impl nubo_wasm::Grant for Granted {
    fn instantiate(&self, _run: &nubo_wasm::Run<'_>, states: &mut nubo_wasm::States) {
        states.insert(KvInstance {
            grant: self.0.clone(),
            cas: CasHeld::default(),
        });
    }
}

/// Compare-and-swap handles an instance may hold at once, and the bytes
/// of the values they copy: host memory outside the guest's limit, so a
/// guest that opens handles in a loop is refused, not the node.
pub const MAX_CAS_HANDLES: usize = 1024;
pub const MAX_CAS_BYTES: usize = 16 << 20;

/// The compare-and-swap handles one instance holds.
#[derive(Debug, Default)]
struct CasHeld {
    handles: usize,
    bytes: usize,
}

impl CasHeld {
    fn take(&mut self, seen: &Option<Vec<u8>>) -> Result<(), Error> {
        let bytes = seen.as_ref().map_or(0, Vec::len);
        if self.handles >= MAX_CAS_HANDLES || self.bytes + bytes > MAX_CAS_BYTES {
            return Err(Error::Other(format!(
                "this instance holds {} compare-and-swap handles ({} bytes), its limit is {MAX_CAS_HANDLES} handles and {MAX_CAS_BYTES} bytes: drop some first",
                self.handles, self.bytes
            )));
        }
        self.handles += 1;
        self.bytes += bytes;
        Ok(())
    }

    fn give_back(&mut self, seen: &Option<Vec<u8>>) {
        self.handles = self.handles.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(seen.as_ref().map_or(0, Vec::len));
    }
}

impl KvView<'_> {
    fn backend(&self) -> Result<Arc<dyn KvBackend>, Error> {
        self.grant
            .map(|g| g.backend.clone())
            .ok_or(Error::AccessDenied)
    }

    fn bucket(&self, b: &Resource<Bucket>) -> Result<(Arc<dyn KvBackend>, Namespace), Error> {
        let ns = self.table.get(b)?.ns.clone();
        Ok((self.backend()?, ns))
    }

    /// Counts a new compare-and-swap handle holding `seen`.
    fn hold(&mut self, seen: &Option<Vec<u8>>) -> Result<(), Error> {
        match self.cas.as_deref_mut() {
            Some(held) => held.take(seen),
            None => Err(Error::AccessDenied),
        }
    }

    fn give_back(&mut self, seen: &Option<Vec<u8>>) {
        if let Some(held) = self.cas.as_deref_mut() {
            held.give_back(seen);
        }
    }
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Calls a component made into wasi:keyvalue: what the node's usage counts of
/// this capability ([`nubo_wasm::usage`]).
pub const KV_CALLS: nubo_wasm::Metric = nubo_wasm::Metric::sum("kv_calls");

fn view(host: &mut nubo_wasm::Host) -> KvView<'_> {
    host.count(KV_CALLS, 1);
    let (state, table) = host.state_and_table::<KvInstance>();
    let (grant, cas) = match state {
        Some(KvInstance { grant, cas }) => (Some(&**grant), Some(cas)),
        None => (None, None),
    };
    KvView { grant, table, cas }
}

/// Adds the key-value interfaces to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<nubo_wasm::Host>) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, view)?;
    atomics::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)?;
    kv_ttl::add_to_linker::<_, HasKv>(linker, view)?;
    Ok(())
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Error> {
        let Some(grant) = self.grant else {
            tracing::warn!(store = %identifier, "component opened a key-value store but has no key_value_stores grant");
            return Err(Error::AccessDenied);
        };
        if !grant.stores.contains(&identifier) {
            tracing::warn!(app = %grant.app, store = %identifier, "key-value store not granted to this component (key_value_stores in nubo.toml)");
            return Err(Error::AccessDenied);
        }
        let ns = Namespace {
            app: grant.app.clone(),
            store: identifier,
        };
        Ok(self.table.push(Bucket { ns })?)
    }

    fn convert_error(&mut self, err: Error) -> wasmtime::Result<store::Error> {
        match err {
            Error::AccessDenied => Ok(store::Error::AccessDenied),
            Error::Other(e) => Ok(store::Error::Other(e)),
            Error::Trap(e) => Err(e),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(&mut self, b: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, Error> {
        let (kv, ns) = self.bucket(&b)?;
        Ok(kv.get(&ns, &key).await?)
    }

    async fn set(&mut self, b: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<(), Error> {
        let (kv, ns) = self.bucket(&b)?;
        Ok(kv.set(&ns, &key, &value, None).await?)
    }

    async fn delete(&mut self, b: Resource<Bucket>, key: String) -> Result<(), Error> {
        let (kv, ns) = self.bucket(&b)?;
        Ok(kv.delete(&ns, &key).await?)
    }

    async fn exists(&mut self, b: Resource<Bucket>, key: String) -> Result<bool, Error> {
        let (kv, ns) = self.bucket(&b)?;
        Ok(kv.exists(&ns, &key).await?)
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Result<store::KeyResponse, Error> {
        let (kv, ns) = self.bucket(&b)?;
        let (keys, cursor) = kv.list_keys(&ns, "", cursor.as_deref(), PAGE).await?;
        Ok(store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, Error> {
        let (kv, ns) = self.bucket(&b)?;
        Ok(kv.increment(&ns, &key, delta).await?)
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { ns, key, seen } = self.table.delete(cas)?;
        self.give_back(&seen);
        let kv = match self.backend() {
            Ok(kv) => kv,
            Err(_) => {
                return Ok(Err(atomics::CasError::StoreError(
                    store::Error::AccessDenied,
                )));
            }
        };
        match kv
            .compare_and_swap(&ns, &key, seen.as_deref(), &value)
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // A fresh handle with the value as it is now, to retry with.
                let now = match kv.get(&ns, &key).await {
                    Ok(v) => v,
                    Err(e) => {
                        return Ok(Err(atomics::CasError::StoreError(store::Error::Other(
                            e.to_string(),
                        ))));
                    }
                };
                if let Err(Error::Other(e)) = self.hold(&now) {
                    return Ok(Err(atomics::CasError::StoreError(store::Error::Other(e))));
                }
                let fresh = self.table.push(Cas { ns, key, seen: now })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(store::Error::Other(
                e.to_string(),
            )))),
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(&mut self, b: Resource<Bucket>, key: String) -> Result<Resource<Cas>, Error> {
        let (kv, ns) = self.bucket(&b)?;
        let seen = kv.get(&ns, &key).await?;
        self.hold(&seen)?;
        Ok(self.table.push(Cas { ns, key, seen })?)
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.table.get(&cas)?.seen.clone())
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        let Cas { seen, .. } = self.table.delete(cas)?;
        self.give_back(&seen);
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Error> {
        let (kv, ns) = self.bucket(&b)?;
        let values = kv.get_many(&ns, &keys).await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    async fn set_many(
        &mut self,
        b: Resource<Bucket>,
        pairs: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        let (kv, ns) = self.bucket(&b)?;
        Ok(kv.set_many(&ns, &pairs).await?)
    }

    async fn delete_many(&mut self, b: Resource<Bucket>, keys: Vec<String>) -> Result<(), Error> {
        let (kv, ns) = self.bucket(&b)?;
        Ok(kv.delete_many(&ns, &keys).await?)
    }
}

impl kv_ttl::Host for KvView<'_> {
    async fn set_with_ttl(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> Result<(), Error> {
        let (kv, ns) = self.bucket(&b)?;
        Ok(kv
            .set(&ns, &key, &value, Some(Duration::from_millis(ttl_ms)))
            .await?)
    }
}

#[cfg(test)]
mod cas_tests {
    use super::*;

    #[test]
    fn cas_handles_are_bounded_by_count_and_bytes() {
        let mut held = CasHeld::default();
        let big = Some(vec![0u8; MAX_CAS_BYTES / 2]);
        assert!(held.take(&big).is_ok());
        assert!(held.take(&big).is_ok());
        assert!(held.take(&Some(vec![0])).is_err(), "over the bytes");
        held.give_back(&big);
        held.give_back(&big);
        for _ in 0..MAX_CAS_HANDLES {
            assert!(held.take(&None).is_ok());
        }
        assert!(held.take(&None).is_err(), "over the count");
    }
}
