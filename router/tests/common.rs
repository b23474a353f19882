//! Shared fixtures for the router's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use router::{BuildOptions, Hostname, RoutingTable, Snapshot};

/// The repository's sample snapshot, as shipped under `deploy/`.
pub fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/snapshots/sample.toml")
}

pub fn broken_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/snapshots/examples/broken.toml")
}

pub fn sample() -> Snapshot {
    Snapshot::from_path(&sample_path()).expect("sample snapshot parses")
}

pub fn options() -> BuildOptions {
    BuildOptions {
        base_domains: vec![Hostname::parse("app.example.test").unwrap()],
    }
}

pub fn sample_table() -> RoutingTable {
    RoutingTable::build(&sample(), &options()).expect("sample snapshot is valid")
}
