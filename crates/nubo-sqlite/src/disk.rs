//! The free space the node keeps on the disk of its state dir.
//!
//! On a disk filled to the last byte even a delete fails: SQLite needs
//! room in its log to record it. So the embedded stores refuse writes
//! that add data while the disk has less free than a reserve
//! (`nubo node --disk-reserve-mb`), and deletes, which are never
//! refused, always find room to free space. A write that grows past the
//! reserve between two checks, or a disk another program fills, still
//! ends in `SQLITE_FULL` or `ENOSPC`, reported the same way.
//!
//! Free space is read with `statvfs` at most every [`RECHECK`] while
//! there is plenty, and at every write once it is within twice the
//! reserve, so that the reserve holds to within what the node writes in
//! that time and room freed by a delete is seen at once.

use crate::DbError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// How old a reading of the free space may be while there is plenty.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// The disk under one path and the room to keep free on it.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    keep_free: AtomicU64,
    /// The last reading, and when (milliseconds since `epoch`).
    free: AtomicU64,
    read_at: AtomicU64,
    epoch: Instant,
    /// Whether the disk was last logged as short.
    short: AtomicBool,
}

impl Disk {
    /// The disk that holds `path`; it keeps nothing free until told.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            keep_free: AtomicU64::new(0),
            free: AtomicU64::new(0),
            read_at: AtomicU64::new(0),
            epoch: Instant::now(),
            short: AtomicBool::new(false),
        }
    }

    /// Writes that add data are refused while less than `bytes` is free.
    pub fn keep_free(&self, bytes: u64) {
        self.keep_free.store(bytes, Ordering::Relaxed);
    }

    /// `Ok` if a write that adds data may go ahead; [`DbError::DiskFull`]
    /// while the disk has less free than the reserve.
    pub fn room(&self) -> Result<(), DbError> {
        let keep = self.keep_free.load(Ordering::Relaxed);
        if keep == 0 {
            return Ok(());
        }
        let free = self.free(keep);
        self.log_change(free, keep);
        if free < keep {
            Err(DbError::DiskFull)
        } else {
            Ok(())
        }
    }

    /// Logs when the disk comes within the reserve, and when it has a
    /// quarter of the reserve more again: a disk that hovers at the
    /// reserve logs once.
    fn log_change(&self, free: u64, keep: u64) {
        let was_short = self.short.load(Ordering::Relaxed);
        let (free_mb, keep_mb) = (free >> 20, keep >> 20);
        if !was_short && free < keep {
            self.short.store(true, Ordering::Relaxed);
            tracing::warn!(path = %self.path.display(), free_mb, keep_mb,
                "the disk is within the space the node keeps free (--disk-reserve-mb): writes that add data are refused; deletes go on");
        } else if was_short && free >= keep.saturating_add(keep / 4) {
            self.short.store(false, Ordering::Relaxed);
            tracing::info!(path = %self.path.display(), free_mb, "the disk has room again");
        }
    }

    /// Free bytes, read again if the reading is old or the disk is close
    /// to the reserve. A disk that cannot be read counts as having room:
    /// the write itself then reports what is wrong.
    fn free(&self, keep: u64) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.free.load(Ordering::Relaxed);
        let fresh =
            now.saturating_sub(self.read_at.load(Ordering::Relaxed)) < RECHECK.as_millis() as u64;
        if fresh && last > keep.saturating_mul(2) {
            return last;
        }
        let free = match rustix::fs::statvfs(&self.path) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            Err(e) => {
                tracing::debug!(path = %self.path.display(), "cannot read the free space: {e}");
                u64::MAX
            }
        };
        self.free.store(free, Ordering::Relaxed);
        self.read_at.store(now, Ordering::Relaxed);
        free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_within_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path());
        assert_eq!(disk.room(), Ok(()), "nothing kept free by default");
        let s = rustix::fs::statvfs(dir.path()).unwrap();
        let free = s.f_bavail * s.f_frsize;
        disk.keep_free(free / 4);
        assert_eq!(disk.room(), Ok(()));
        disk.keep_free(free.saturating_mul(4));
        assert_eq!(disk.room(), Err(DbError::DiskFull));
        disk.keep_free(0);
        assert_eq!(disk.room(), Ok(()));
    }
}
