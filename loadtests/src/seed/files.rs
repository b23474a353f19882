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

/// Writes `bytes` to `path` through a temporary file renamed into place,
/// with the mode `privacy` calls for whatever was at either name before.
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
    // A temporary file left behind (by a seed that was killed, or by
    // anyone) keeps its mode when opened, which may be wider than ours: it
    // is removed, and ours created afresh, so the mode below is the one it
    // gets (narrowed by the umask only).
    remove(&tmp)?;
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_leftover_temporary_file_does_not_lend_its_mode_to_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ca.key");
        let tmp = tmp_path(&key);
        assert_eq!(tmp, dir.path().join("ca.key.tmp"));
        for path in [&tmp, &key] {
            std::fs::write(path, "stale, and longer than the new contents").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
            assert_eq!(mode(path), 0o666);
        }

        write(&key, b"secret", Privacy::Secret).unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");
        assert!(!tmp.exists());

        write(&key, b"public", Privacy::Public).unwrap();
        assert_eq!(mode(&key) & 0o600, 0o600);
        assert_eq!(mode(&key) & 0o022, 0, "never group- or world-writable");
    }

    #[test]
    fn a_failed_write_names_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("default.key");
        let err = write(&path, b"x", Privacy::Secret).unwrap_err();
        assert!(err.to_string().contains("default.key"), "{err}");
        assert_eq!(err.exit_code(), 73);
    }
}
