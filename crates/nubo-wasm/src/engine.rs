//! One wasmtime engine per node, shared by every component of every app.
//!
//! The engine uses the pooling allocator: instance memory is reserved up front
//! and recycled, which makes a fresh instance per request cost microseconds.
//! Time limits use epoch interruption — a background thread bumps the epoch
//! every [`EPOCH_TICK`], and each store traps once its deadline in ticks has
//! passed — because it costs far less than fuel metering on the hot path.

use crate::cache::CompileCache;
use crate::capability::Capability;
use crate::component::{Component, ComponentSettings};
use crate::error::LoadError;
use crate::host::Host;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// How often the epoch advances; the granularity of `timeout_ms`.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Node-wide engine settings.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Instances that can exist at once across all components.
    pub max_total_instances: u32,
    /// Use the pooling allocator (the default). Off allocates each
    /// instance's memory on demand: slower per request, but it needs no
    /// large virtual address reservation up front.
    pub pooling: bool,
    /// Bytes of guest memory all instances may hold at once, shared fairly
    /// between apps ([`crate::NodeShare`]); `None`: three quarters of the
    /// machine's memory.
    pub memory_budget: Option<u64>,
    /// Count what every run uses ([`crate::usage`]).
    pub metering: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_total_instances: 1000,
            pooling: true,
            memory_budget: None,
            metering: true,
        }
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<Host>,
    cache: Option<CompileCache>,
    share: Arc<crate::NodeShare>,
    meter: Arc<crate::Meter>,
    metrics: Arc<crate::metrics::Metrics>,
    capabilities: Vec<Arc<dyn Capability>>,
}

impl Runtime {
    /// The node's instance slots and guest memory, as apps hold them now.
    pub fn share(&self) -> &Arc<crate::NodeShare> {
        &self.share
    }

    /// What the node's components used and have not yet had stored.
    pub fn meter(&self) -> &Arc<crate::Meter> {
        &self.meter
    }

    /// The node's counted metrics, for `/metrics`.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The node's engine, with the host interfaces of WASI and of each of
    /// `capabilities` linked.
    pub fn new(
        options: RuntimeOptions,
        capabilities: &[Arc<dyn Capability>],
    ) -> Result<Self, LoadError> {
        let engine_err = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let n = options.max_total_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            // A Rust component holds a few core instances (main module plus
            // adapter shims); leave room for that.
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .total_stacks(n)
            .max_memory_size(4 << 30)
            .max_memories_per_module(1)
            .max_unused_warm_slots(n.min(100))
            // Resetting an instance's memory with madvise makes the kernel
            // shoot down TLB entries on every core, which under load costs
            // more than the request itself (badly so in VMs, where each IPI
            // exits to the hypervisor). Reset the pages a request actually
            // touched with memset instead, found with PAGEMAP_SCAN where
            // the kernel has it (Linux 6.7+), and batch the decommits that
            // remain.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(16 << 20)
            .table_keep_resident(1 << 20)
            .decommit_batch_size(32);
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = if options.pooling {
            let mut pooled = config.clone();
            pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            match Engine::new(&pooled) {
                Ok(engine) => engine,
                Err(e) => {
                    // The pool reserves terabytes of address space up front;
                    // where a ulimit or the kernel refuses, serve anyway.
                    tracing::warn!(
                        "pooling allocator unavailable ({e}); allocating instances on demand, which is slower"
                    );
                    Engine::new(&config).map_err(engine_err)?
                }
            }
        } else {
            Engine::new(&config).map_err(engine_err)?
        };

        let mut linker: Linker<Host> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_err)?;
        wasmtime_wasi_config::add_to_linker(&mut linker, |h: &mut Host| {
            wasmtime_wasi_config::WasiConfig::from(&*h.config)
        })
        .map_err(engine_err)?;
        crate::identity::add_to_linker(&mut linker).map_err(engine_err)?;
        for c in capabilities {
            c.link(&mut linker).map_err(|e| LoadError::Link {
                capability: c.name(),
                reason: format!("{e:#}"),
            })?;
        }

        start_epoch_ticker(&engine);
        let cache = options.cache_dir.map(|dir| CompileCache::new(dir, &engine));
        let memory = options
            .memory_budget
            .unwrap_or_else(crate::default_memory_budget);
        Ok(Self {
            engine,
            linker,
            cache,
            share: crate::NodeShare::new(u64::from(n), memory),
            meter: Arc::new(crate::Meter::new(options.metering)),
            metrics: Arc::default(),
            capabilities: capabilities.to_vec(),
        })
    }

    /// The capabilities linked into this runtime.
    pub fn capabilities(&self) -> &[Arc<dyn Capability>] {
        &self.capabilities
    }

    /// What its capabilities add to a definition: the grant keys a
    /// component may list and the top-level sections.
    pub fn schema(&self) -> nubo_manifest::Schema {
        crate::schema(&self.capabilities)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (or loads from cache) and pre-instantiates an HTTP component.
    /// Fails, with a reason a user can act on, for anything that is not a
    /// `wasi:http/proxy` component Nubo can link.
    pub fn load_http(
        &self,
        path: &Path,
        settings: ComponentSettings,
    ) -> Result<Component, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_http_bytes(path, &wasm, settings)
    }

    pub fn load_http_bytes(
        &self,
        path: &Path,
        wasm: &[u8],
        settings: ComponentSettings,
    ) -> Result<Component, LoadError> {
        let c = self.load_bytes(path, wasm, settings)?;
        match &c.proxy {
            Some(_) => Ok(c),
            None => Err(LoadError::NotHttp(
                "it has no `wasi:http/incoming-handler` export".into(),
            )),
        }
    }

    /// Compiles (or loads from cache) and pre-instantiates any component
    /// Nubo can link, whatever it exports; its capabilities find their
    /// exports with [`Component::export`].
    pub fn load_bytes(
        &self,
        path: &Path,
        wasm: &[u8],
        settings: ComponentSettings,
    ) -> Result<Component, LoadError> {
        match wasm.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(LoadError::CoreModule {
                    path: path.to_path_buf(),
                });
            }
            Some([0, b'a', b's', b'm', _, _, _, _]) => {}
            _ => {
                return Err(LoadError::Invalid {
                    path: path.to_path_buf(),
                    reason: "missing the \\0asm header".into(),
                });
            }
        }
        let started = std::time::Instant::now();
        let (component, cached) = match &self.cache {
            Some(cache) => cache.load(&self.engine, wasm),
            None => wasmtime::component::Component::new(&self.engine, wasm).map(|c| (c, false)),
        }
        .map_err(|e| LoadError::Invalid {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })?;
        tracing::debug!(
            component = %settings.component,
            cached,
            "compiled in {:?}",
            started.elapsed()
        );
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports(format!("{e:#}")))?;
        let proxy = ProxyPre::new(instance_pre.clone()).ok();
        Ok(Component::new(
            instance_pre,
            proxy,
            settings,
            self.share.clone(),
            self.meter.clone(),
        ))
    }
}

fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("nubo-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        // Without the ticker, time limits cannot fire; say so loudly.
        tracing::error!("cannot start the epoch thread, time limits are off: {e}");
    }
}
