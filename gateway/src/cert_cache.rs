//! The feed's certificates kept on disk (`source.cert_cache_dir`, by
//! default `<cache_path>.certs/`), next to the last-known-good snapshot, so
//! a gateway restarted while tenant-admin is down still serves every
//! custom domain's certificate.
//!
//! Layout: one file per certificate, `<id>.json`, holding the entry as
//! tenant-admin served it (`{"id", "hostname", "not_after", "chain_pem",
//! "key_pem"}`). The directory is mode 0700 and the files 0600; each file
//! is written atomically (a temporary `.<id>.json.tmp-<pid>` flushed to
//! disk, renamed in, the directory flushed). A file is loaded only for a
//! reference with its id and hostname, and checked as a fetched one is; a
//! file that fails the checks is deleted and fetched again.
//!
//! Files that neither the snapshot in force nor the one before it refer to
//! are deleted: the one before, because the snapshot copy on disk can
//! still be that version for a moment after a new one is applied. Their
//! certificates are never served again either way; only what the cached
//! snapshot refers to is loaded at start.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pingora::tls::sign::CertifiedKey;
use router::CertRef;

use crate::cert_fetch::FetchedCertificate;
use crate::snapshot_cache;

/// Left-over temporary files (a crash mid-write) older than this are
/// deleted when the directory is pruned.
const STALE_TEMP: Duration = Duration::from_secs(300);

/// The file of certificate `id` in `dir`.
pub fn path_of(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Creates `dir` (mode 0700) if needed, and makes it 0700 if it is not.
///
/// # Errors
///
/// When it cannot be created or its mode set.
pub fn prepare(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Keeps `cert` in `dir` as `<id>.json` (mode 0600), atomically.
///
/// # Errors
///
/// When the directory or the file cannot be written; a previous copy, if
/// any, is then untouched.
pub fn store(dir: &Path, cert: &FetchedCertificate) -> io::Result<()> {
    prepare(dir)?;
    let json = serde_json::to_vec(cert).map_err(io::Error::other)?;
    snapshot_cache::store(&path_of(dir, cert.id), &json)
}

/// Loads the kept certificate of `reference` from `dir`: `None` when there
/// is no file for its id.
///
/// # Errors
///
/// Why the file cannot be used (unreadable, corrupt, for another hostname,
/// a key that does not match), never quoting its content.
pub fn load(dir: &Path, reference: &CertRef) -> Result<Option<Arc<CertifiedKey>>, String> {
    let path = path_of(dir, reference.id);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {}", path.display(), e.kind())),
    };
    // serde's message could quote the file (key included): its position only.
    let cert: FetchedCertificate = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{} is corrupt (line {} column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    cert.load_for(reference)
        .map(Some)
        .map_err(|reason| format!("{}: {reason}", path.display()))
}

/// Deletes the kept file of certificate `id`, refused by [`load`]: a
/// fetched copy replaces it. Best effort.
pub fn discard(dir: &Path, id: u64) {
    let _ = fs::remove_file(path_of(dir, id));
}

/// How many of `references` have a file in `dir` (not checked further).
pub fn count_kept(dir: &Path, references: &[CertRef]) -> usize {
    references
        .iter()
        .filter(|r| path_of(dir, r.id).is_file())
        .count()
}

/// Deletes the certificate files in `dir` whose id is not in `keep`, and
/// temporary files left by a crash; returns how many certificates were
/// deleted. Other files are left alone.
///
/// # Errors
///
/// When the directory cannot be listed (a missing one is not an error).
pub fn prune(dir: &Path, keep: &HashSet<u64>) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut deleted = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_suffix(".json")
            .and_then(|stem| stem.parse::<u64>().ok())
        {
            if !keep.contains(&id) && fs::remove_file(entry.path()).is_ok() {
                deleted += 1;
            }
        } else if name.starts_with('.') && name.contains(".json.tmp-") {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use router::Hostname;

    /// A certificate for `host` issued by `ca`, as tenant-admin serves it.
    fn fetched(ca: &testkit::TestCa, dir: &Path, id: u64, host: &str) -> FetchedCertificate {
        ca.issue(dir, host, &[host]);
        FetchedCertificate {
            id,
            hostname: host.to_owned(),
            not_after: 1_790_000_000,
            chain_pem: fs::read_to_string(dir.join(format!("{host}.crt"))).unwrap(),
            key_pem: fs::read_to_string(dir.join(format!("{host}.key"))).unwrap(),
        }
    }

    fn reference(host: &str, id: u64) -> CertRef {
        CertRef {
            hostname: Hostname::parse(host).unwrap(),
            id,
            not_after: 1_790_000_000,
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_kept_certificate_loads_back_for_its_reference_only() {
        let ca = testkit::TestCa::new();
        let issued = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("snapshot.json.certs");
        let cert = fetched(&ca, issued.path(), 7, "erp.customer.test");
        store(&dir, &cert).unwrap();

        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path_of(&dir, 7)), 0o600);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["7.json"], "no temporary file is left behind");

        let key = load(&dir, &reference("erp.customer.test", 7)).unwrap();
        assert!(key.is_some());
        assert!(
            load(&dir, &reference("erp.customer.test", 8))
                .unwrap()
                .is_none()
        );
        let e = load(&dir, &reference("shop.other.test", 7)).unwrap_err();
        assert!(e.contains("for the hostname \"erp.customer.test\""), "{e}");
    }

    #[test]
    fn a_corrupt_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "-----BEGIN PRIVATE KEY-----\nMIIEv";
        fs::write(path_of(dir.path(), 3), format!("{{\"id\": \"{secret}")).unwrap();
        let e = load(dir.path(), &reference("a.test", 3)).unwrap_err();
        assert!(e.contains("3.json is corrupt"), "{e}");
        assert!(!e.contains("MIIEv") && !e.contains("PRIVATE"), "{e}");
    }

    #[test]
    fn an_existing_directory_is_made_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("certs");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn pruning_deletes_unreferenced_certificates_and_keeps_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1.json", "2.json", "3.json", "notes.txt", ".4.json.tmp-1"] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        let keep = HashSet::from([2, 3]);
        assert_eq!(prune(dir.path(), &keep).unwrap(), 1);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        // A fresh temporary file may be another process's write in flight.
        assert_eq!(names, [".4.json.tmp-1", "2.json", "3.json", "notes.txt"]);
        assert_eq!(
            count_kept(
                dir.path(),
                &[reference("a.test", 2), reference("b.test", 9)]
            ),
            1
        );
        assert_eq!(prune(&dir.path().join("missing"), &keep).unwrap(), 0);
    }
}
