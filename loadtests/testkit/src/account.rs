//! The system account a server process runs as.
//!
//! The tests run as root on CI and the developer machines, and PostgreSQL refuses to start
//! as root. So when the effective uid is 0, servers run as their Debian system user and the
//! directories they write are handed to that user first; otherwise everything runs as the
//! current user and nothing changes hands.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::{User, geteuid};

use crate::error::{Result, TestkitError};

/// Who a server process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Account {
    /// The user running the tests, who is not root.
    Current,
    /// A system user switched to with `setuid`/`setgid` at spawn, because we are root.
    System {
        /// The user id passed to `Command::uid`.
        uid: u32,
        /// The group id passed to `Command::gid`.
        gid: u32,
    },
}

impl Account {
    /// The account to run a server as: `user` when the tests run as root, else the caller.
    ///
    /// `package` is the Debian package whose installation creates `user`, named in the error.
    pub(crate) fn for_server(user: &'static str, package: &'static str) -> Result<Self> {
        if !geteuid().is_root() {
            return Ok(Self::Current);
        }
        match User::from_name(user) {
            Ok(Some(found)) => Ok(Self::System {
                uid: found.uid.as_raw(),
                gid: found.gid.as_raw(),
            }),
            Ok(None) => Err(TestkitError::ServiceUserMissing { user, package }),
            Err(source) => Err(TestkitError::UserLookup { user, source }),
        }
    }

    /// Makes `command` run as this account.
    pub(crate) fn apply(self, command: &mut Command) {
        if let Self::System { uid, gid } = self {
            // std drops supplementary groups when a root process sets a uid.
            command.uid(uid).gid(gid);
        }
    }

    /// Hands `path` to this account so the server can write there.
    pub(crate) fn give(self, path: &Path) -> Result<()> {
        match self {
            Self::Current => Ok(()),
            Self::System { uid, gid } => chown(path, Some(uid), Some(gid)).map_err(|source| {
                TestkitError::io(format!("handing {} to uid {uid}", path.display()), source)
            }),
        }
    }
}
