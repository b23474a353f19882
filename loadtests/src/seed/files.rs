//! Writing the seed's files: each to a temporary name beside it, then
//! renamed into place, so a gateway watching the directory (or a reader of
//! the snapshot) sees the old file or the new one, never half of one. No
//! `fsync`: seed output is throwaway test data, and 20,000 syncs would turn
//! seconds into minutes.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::SeedError;

/// Who may read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Privacy {
    /// Certificates, configs, the snapshot: mode 0644.
    Public,
    /// Private keys: mode 0600.
    Secret,
}

/// The suffix of a file being written.
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` through a temporary file renamed into place.
///
/// # Errors
///
/// [`SeedError::Io`] naming the file.
pub(super) fn write(path: &Path, bytes: &[u8], privacy: Privacy) -> Result<(), SeedError> {
    let tmp = tmp_path(path);
    let mode = match privacy {
        Privacy::Public => 0o644,
        Privacy::Secret => 0o600,
    };
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| file.write_all(bytes));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(SeedError::io("write", path, source));
    }
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        SeedError::io("rename into place", path, source)
    })
}

/// `path` with [`TMP_SUFFIX`] appended to its file name.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

/// Removes `path` if it exists; whether it did.
///
/// # Errors
///
/// [`SeedError::Io`] when it exists but cannot be removed.
pub(super) fn remove(path: &Path) -> Result<bool, SeedError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SeedError::io("remove", path, source)),
    }
}
