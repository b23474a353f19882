//! The last-known-good routing snapshot (`source.cache_path`): the JSON of
//! the last snapshot the feed gave and this gateway applied, so a gateway
//! restarted while tenant-admin is down serves at once.
//!
//! It is replaced atomically (a temporary file in the same directory,
//! flushed to disk, renamed over the old one, the directory flushed), so a
//! crash or a second gateway writing at the same time leaves either the old
//! or the new version, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::Config;
use crate::snapshot_file::{self, LoadedTable, SnapshotRejected};

/// Loads the copy at `path` for `config`, validated as the feed's
/// snapshots are: `None` when there is none yet.
///
/// # Errors
///
/// [`SnapshotRejected`] when the copy is unreadable, corrupt or invalid
/// for this gateway (e.g. after a config change).
pub fn load(path: &Path, config: &Config) -> Result<Option<LoadedTable>, SnapshotRejected> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        _ => snapshot_file::load(path, config).map(Some),
    }
}

/// Replaces the copy at `path` with `json`, atomically; creates the
/// directory if needed. The file is readable by the gateway's user only.
///
/// # Errors
///
/// When the directory or the file cannot be written; the old copy, if
/// any, is then untouched.
pub fn store(path: &Path, json: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    fs::create_dir_all(dir)?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(json)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config in `dir` for region eu-west and base domain app.example.test.
    fn config(dir: &Path) -> Config {
        let text = r#"
[gateway]
region = "eu-west"
http_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:1"
base_domains = ["app.example.test"]

[source]
kind = "admin"
url = "http://127.0.0.1:1"
token_file = "token"
cache_path = "cache/snapshot.json"
"#;
        Config::from_toml(text, &dir.join("gateway.toml")).unwrap()
    }

    fn snapshot(version: u64) -> String {
        serde_json::json!({
            "version": version,
            "regions": [{"name": "eu-west"}],
            "plans": [{"name": "p", "rate_per_sec": 10, "burst": 10, "max_body_bytes": 1024}],
            "targets": [{"id": "shard-a", "kind": "shard", "region": "eu-west",
                         "pools": {"eu-west": ["127.0.0.1:1"]}}],
            "tenants": [{"id": "t-acme", "slug": "acme", "plan": "p",
                         "region": "eu-west", "target": "shard-a"}],
        })
        .to_string()
    }

    #[test]
    fn a_stored_snapshot_loads_back_and_a_newer_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let path = dir.path().join("cache/snapshot.json");
        assert!(load(&path, &config).unwrap().is_none());

        store(&path, snapshot(3).as_bytes()).unwrap();
        let loaded = load(&path, &config).unwrap().unwrap();
        assert_eq!(loaded.table.version(), 3);
        assert_eq!(loaded.table.tenant_count(), 1);

        store(&path, snapshot(4).as_bytes()).unwrap();
        assert_eq!(load(&path, &config).unwrap().unwrap().table.version(), 4);
        let names: Vec<_> = fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["snapshot.json"], "no temporary file is left behind");
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn a_corrupt_or_foreign_copy_is_rejected_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let path = dir.path().join("snapshot.json");
        fs::write(&path, &snapshot(5)[..40]).unwrap();
        let rejected = load(&path, &config).err().unwrap();
        assert!(
            rejected.problems[0].contains("not valid JSON"),
            "{rejected}"
        );

        let other_region = snapshot(5).replace("eu-west", "us-east");
        store(&path, other_region.as_bytes()).unwrap();
        let rejected = load(&path, &config).err().unwrap();
        assert!(
            rejected.problems[0].contains("gateway's region \"eu-west\""),
            "{rejected}"
        );
    }

    #[test]
    fn a_failed_store_leaves_the_old_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.json");
        store(&path, b"old").unwrap();
        // A directory where the temporary file would go makes the write fail.
        let temp = dir
            .path()
            .join(format!(".snapshot.json.tmp-{}", std::process::id()));
        fs::create_dir(&temp).unwrap();
        assert!(store(&path, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }
}
