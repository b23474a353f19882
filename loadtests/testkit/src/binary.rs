//! Finding the server executables installed on this machine.
//!
//! PostgreSQL's server binaries usually live outside `PATH` (Debian puts them in
//! `/usr/lib/postgresql/<major>/bin`), so they are looked up as a *directory* that must hold
//! both `initdb` and `postgres`; every other PostgreSQL tool is then taken from the same
//! directory so client and server versions match.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Result, TestkitError};

/// The Debian package that ships PostgreSQL's server binaries.
const POSTGRES_PACKAGE: &str = "postgresql";

/// The Debian package that ships `redis-server`.
const REDIS_PACKAGE: &str = "redis-server";

/// PostgreSQL's binary directory, looked up once per test process.
#[derive(Debug, Clone)]
pub(crate) struct PgBinDir {
    /// The directory holding `initdb`, `postgres` and (usually) the client tools.
    dir: PathBuf,
}

impl PgBinDir {
    /// Finds the directory holding `initdb` and `postgres`: `pg_config --bindir` first, then
    /// the highest `/usr/lib/postgresql/*/bin`, then `PATH`.
    pub(crate) fn find() -> Result<Self> {
        /// The directory found, or the description of where the search looked.
        static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let found = FOUND.get_or_init(|| {
            let candidates = pg_bindir_candidates();
            candidates
                .iter()
                .find(|dir| {
                    is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"))
                })
                .cloned()
                .ok_or_else(|| describe(&candidates))
        });
        match found {
            Ok(dir) => Ok(Self { dir: dir.clone() }),
            Err(searched) => Err(TestkitError::BinaryNotFound {
                binary: "initdb",
                package: POSTGRES_PACKAGE,
                searched: searched.clone(),
            }),
        }
    }

    /// The path of one PostgreSQL tool: from this directory, else from `PATH`.
    pub(crate) fn tool(&self, binary: &'static str) -> Result<PathBuf> {
        let mut dirs = vec![self.dir.clone()];
        dirs.extend(path_dirs());
        locate(binary, POSTGRES_PACKAGE, &dirs)
    }
}

/// The path of `redis-server`: from `PATH`, else the usual system directories.
pub(crate) fn redis_server() -> Result<PathBuf> {
    let mut dirs = path_dirs();
    dirs.extend(["/usr/bin", "/usr/local/bin", "/usr/sbin"].map(PathBuf::from));
    locate("redis-server", REDIS_PACKAGE, &dirs)
}

/// The first executable file called `binary` in `dirs`.
fn locate(binary: &'static str, package: &'static str, dirs: &[PathBuf]) -> Result<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(binary))
        .find(|path| is_executable(path))
        .ok_or_else(|| TestkitError::BinaryNotFound {
            binary,
            package,
            searched: describe(dirs),
        })
}

/// Candidate PostgreSQL binary directories, best first.
fn pg_bindir_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !dir.is_empty() {
            candidates.push(PathBuf::from(dir));
        }
    }
    candidates.extend(debian_versioned_bindirs(Path::new("/usr/lib/postgresql")));
    candidates.extend(path_dirs());
    candidates
}

/// `<root>/<major>/bin` for every installed major version, highest version first.
fn debian_versioned_bindirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = root.read_dir() else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// The directories of `PATH`, in order.
fn path_dirs() -> Vec<PathBuf> {
    env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default()
}

/// Whether `path` is a regular file (after following links) with an execute bit set.
fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A human-readable list of the directories searched.
fn describe(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "no directories: PATH is empty".to_owned();
    }
    dirs.iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A binary of this workspace built beside `own` (a test's own binary, e.g.
/// `env!("CARGO_BIN_EXE_tenant-admin")`), as `cargo test --workspace` leaves them.
///
/// # Panics
///
/// When it has not been built, saying how to build it.
pub fn workspace_binary(own: &str, name: &str) -> PathBuf {
    let path = Path::new(own).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: these tests drive the real {name}; run `cargo build -p {name}` \
         (cargo test --workspace builds it)",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_bindirs_sort_numerically_highest_first() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "10", "notaversion"] {
            std::fs::create_dir_all(root.path().join(version).join("bin")).unwrap();
        }
        let dirs = debian_versioned_bindirs(root.path());
        let names: Vec<_> = dirs
            .iter()
            .map(|dir| dir.parent().unwrap().file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["15", "10", "9.6"]);
    }

    #[test]
    fn missing_binary_names_the_debian_package() {
        let err = locate(
            "no-such-server",
            "some-package",
            &[PathBuf::from("/nonexistent")],
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`no-such-server`"), "{message}");
        assert!(message.contains("`some-package`"), "{message}");
        assert!(message.contains("/nonexistent"), "{message}");
    }
}
