//! The Switchyard gateway: a Pingora reverse proxy that terminates TLS for
//! the platform's domains and every tenant's custom domain, resolves the
//! tenant of each request with the [`router`] crate, applies the tenant's
//! limits and cache, and proxies to the tenant's shard or dedicated cluster
//! in the right region.
//!
//! Built so far: the configuration, snapshot loading and `gateway --check`.
//! The Pingora data plane (listeners, TLS by SNI, proxying, health checks,
//! metrics) is being built in issue 3; until it lands, `gateway --config`
//! without `--check` says so and exits 69.
//!
//! # Layout
//!
//! - [`config`]: the TOML config file and its validation into [`config::Config`].
//! - [`snapshot_file`]: a routing snapshot file → a routing table for this gateway.
//! - [`check`]: `gateway --check`.
//! - [`cli`]: flags and exit statuses; `main.rs` is a shim over it.

pub mod check;
pub mod cli;
pub mod config;
pub mod snapshot_file;
