//! Uploaded bytes, named by their sha256: components' wasm and static
//! files. Writes go to a temporary file and are renamed into place, so a
//! crash never leaves a half-written blob under a real name, and uploading
//! the same bytes twice is a no-op.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct ContentStore {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("the body's sha256 is {actual}, not {expected} as the URL says")]
    DigestMismatch { expected: String, actual: String },
    #[error("cannot store content: {0}")]
    Io(#[from] std::io::Error),
}

impl ContentStore {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    pub fn has(&self, digest: &str) -> bool {
        nubo_plan::is_digest(digest) && self.path(digest).is_file()
    }

    /// Stores `bytes` under `digest` after checking it; `Ok(false)` if it
    /// was already there.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<bool, ContentError> {
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        if self.has(digest) {
            return Ok(false);
        }
        let tmp = self
            .dir
            .join(format!(".{digest}.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.path(digest))?;
        sync_dir(&self.dir);
        Ok(true)
    }
}

/// Makes a rename durable; best effort where directories cannot be opened.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
