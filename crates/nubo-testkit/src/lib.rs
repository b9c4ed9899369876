//! What Nubo's tests share: the real guest components in
//! `tests/components`, built for `wasm32-wasip2` once per test binary.
//!
//! Every test that runs a component (the runtime's, each capability's, the
//! CLI's end-to-end tests) gets it from here, so there is one way to build
//! them and one place that says where they land; every test that needs
//! JetStream starts a real nats-server with [`nats::NatsCluster`], and
//! every test that needs PostgreSQL a real server with
//! [`postgres::Postgres`].
//!
//! These helpers panic when what a test needs cannot be had (a build
//! fails, nats-server is missing): a test cannot go on without it.

pub mod nats;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Builds every test component (release, `wasm32-wasip2`) once per test
/// binary; the folder the `.wasm` files are in. Cargo serialises builds of
/// the same target folder across test binaries.
///
/// # Panics
/// When the build fails: a test cannot go on without its components.
pub fn components() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = repo_root().join("tests/components");
        let status = Command::new("cargo")
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .status();
        match status {
            Ok(s) if s.success() => dir.join("target/wasm32-wasip2/release"),
            Ok(s) => panic!("building tests/components failed: {s}"),
            Err(e) => panic!("cannot run cargo to build tests/components: {e}"),
        }
    })
}

/// Test component `name`, built.
pub fn wasm(name: &str) -> PathBuf {
    components().join(format!("{name}.wasm"))
}
