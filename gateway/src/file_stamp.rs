//! What identifies one version of a file on disk, for the watchers that
//! poll the snapshot file and the certificate directory. Modification
//! time, size and inode together catch in-place writes and the atomic
//! rename a careful writer does.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified_ns: i128,
    len: u64,
    inode: u64,
}

impl Stamp {
    /// Whether this version was written within `margin` of now. File times
    /// have the kernel's coarse clock tick, so a second change that soon
    /// can carry the same stamp: a watcher must not trust a stamp that
    /// young to mean "nothing changed since".
    pub fn is_recent(&self, margin: std::time::Duration) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        now - self.modified_ns < margin.as_nanos() as i128
    }

    /// The stamp of `path` now, or `None` when it cannot be read.
    pub fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            len: m.len(),
            inode: m.ino(),
        })
    }
}
