//! The Switchyard gateway: a Pingora reverse proxy that terminates TLS for
//! the platform's domains and every tenant's custom domain, resolves the
//! tenant of each request with the [`router`] crate, applies the tenant's
//! limits and cache, and proxies to the tenant's shard or dedicated cluster
//! in the right region.
//!
//! Built so far: the configuration and `gateway --check`; plain-HTTP
//! proxying from a watched snapshot file with tenant resolution, upstream
//! headers, spoofed-header stripping, problem+json errors and one retry of
//! idempotent requests on another backend. Still to come in issue 3: TLS by
//! SNI, health checks and the circuit breaker, the admin listener and
//! metrics, the access log.
//!
//! # Layout
//!
//! - [`config`]: the TOML config file and its validation into [`config::Config`].
//! - [`snapshot_file`]: a routing snapshot file → a routing table for this gateway.
//! - [`check`]: `gateway --check`.
//! - [`state`]: the routing table in force, swapped atomically.
//! - [`snapshot_watch`]: reloading the snapshot file when it changes.
//! - [`proxy`]: the Pingora `ProxyHttp` phases, thin over the router.
//! - [`problem`]: every error response, as problem+json, in one place.
//! - [`metrics`]: Prometheus metrics, with bounded labels.
//! - [`admin`]: the admin listener (`/metrics`, `/healthz`, `/readyz`, `/debug/route`).
//! - [`request_id`]: keeping or generating `x-request-id`.
//! - [`server`]: the Pingora server and its services.
//! - [`cli`]: flags and exit statuses; `main.rs` is a shim over it.

pub mod admin;
pub mod check;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod problem;
pub mod proxy;
pub mod request_id;
pub mod server;
pub mod snapshot_file;
pub mod snapshot_watch;
pub mod state;
