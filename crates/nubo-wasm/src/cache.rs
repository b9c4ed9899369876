//! On-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes from tens of milliseconds to
//! seconds; a node restart or a re-apply of an unchanged component should not
//! pay it again. Artifacts are keyed by the sha256 of the wasm bytes and by
//! the engine's compatibility hash (wasmtime version, target, and every
//! setting that affects code generation), so a stale artifact is never loaded.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Self {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    fn path_for(&self, wasm: &[u8]) -> PathBuf {
        let digest = hex::encode(Sha256::digest(wasm));
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Returns the compiled component, compiling and storing it on a miss.
    /// Cache I/O failures are logged and fall back to compiling: the cache
    /// is an optimisation, never a reason to refuse a component.
    pub(crate) fn load(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let path = self.path_for(wasm);
        if path.is_file() {
            // SAFETY: files in this directory are written only by `store`
            // below, from `Component::serialize` of this same engine
            // configuration (the key includes its compatibility hash).
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => tracing::warn!("ignoring unusable cache entry {}: {e}", path.display()),
            }
        }
        // Compiling a large component (a Python or JavaScript runtime) takes
        // seconds: say so before and after, as the only progress there is.
        let short: String = path
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(12).collect())
            .unwrap_or_default();
        let started = std::time::Instant::now();
        tracing::info!(
            "compiling component {short} ({:.1} MiB), cached for next time",
            wasm.len() as f64 / f64::from(1u32 << 20)
        );
        let component = Component::new(engine, wasm)?;
        tracing::info!(
            "compiled component {short} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!("cannot write compile cache {}: {e}", path.display());
        }
        Ok((component, false))
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), String> {
        let bytes = component.serialize().map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        // Write then rename, so a crash never leaves a truncated artifact
        // under the final name.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    }
}
