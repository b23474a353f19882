//! The Switchyard gateway: a Pingora reverse proxy that terminates TLS for
//! the platform's domains and every tenant's custom domain, resolves the
//! tenant of each request with the [`router`] crate, applies the tenant's
//! limits and cache, and proxies to the tenant's shard or dedicated cluster
//! in the right region.
//!
//! Built so far: the configuration and `gateway --check`; HTTP and HTTPS
//! listeners (rustls, certificates chosen by SNI and hot-reloaded, 421 when
//! the SNI names another tenant); tenant resolution from a watched snapshot
//! file or from tenant-admin's routing feed (long-polled, with a
//! last-known-good copy kept across restarts), with the writes of a tenant
//! being moved held until the move ends; upstream headers and
//! spoofed-header stripping; problem+json errors; the HTTP challenges
//! tenant-admin publishes (ACME HTTP-01, domain ownership) and the custom
//! domains' certificates it issues, fetched after each snapshot and kept
//! on disk; a load balancer per pool
//! with one shared health check and a circuit breaker per backend, and one
//! retry of idempotent requests on another backend; per-tenant and per-IP
//! rate limits, shared across gateways through Redis; the tenant-safe
//! response cache and its purges; the admin listener, Prometheus metrics
//! and the JSON access log.
//!
//! # Layout
//!
//! - [`config`]: the TOML config file and its validation into [`config::Config`].
//! - [`snapshot_file`]: a routing snapshot (file or feed JSON) → a routing table for this gateway.
//! - [`check`]: `gateway --check`.
//! - [`state`]: the routing table in force, swapped atomically.
//! - [`snapshot_watch`]: reloading the snapshot file when it changes.
//! - [`snapshot_feed`]: following tenant-admin's routing feed.
//! - [`feed_client`]: the feed's HTTP client: URL, long poll, TLS.
//! - [`snapshot_cache`]: the feed's last-known-good snapshot, kept on disk.
//! - [`file_stamp`]: telling one version of a watched file from the next.
//! - [`cert_store`]: TLS certificates chosen by SNI: directory, feed, default.
//! - [`cert_sync`]: serving the certificates the feed's snapshots refer to.
//! - [`cert_fetch`]: fetching those certificates from tenant-admin.
//! - [`cert_cache`]: those certificates kept on disk across restarts.
//! - [`challenge`]: ACME HTTP-01 and ownership challenges, answered from the snapshot.
//! - [`tls`]: the HTTPS listener's settings and the certificate watcher.
//! - [`upstreams`]: pool load balancers, the shared health check, circuit breakers.
//! - [`proxy`]: the Pingora `ProxyHttp` phases, thin over the router.
//! - [`write_hold`]: holding writes of a moving tenant until a newer snapshot.
//! - [`problem`]: every error response, as problem+json, in one place.
//! - [`metrics`]: Prometheus metrics, with bounded labels.
//! - [`access_log`]: the JSON access log, written off the request path.
//! - [`admin`]: the admin listener (`/metrics`, `/healthz`, `/readyz`, `/debug/route`).
//! - [`request_id`]: keeping or generating `x-request-id`.
//! - [`clock`]: the monotonic clock of breakers and limits.
//! - [`cache`]: the tenant-safe response cache: keys, freshness, purges.
//! - [`cache_store`]: the cache's in-memory storage.
//! - [`limits`]: per-tenant and per-client-IP rate limits (GCRA).
//! - [`purge_bus`]: cache purges carried to every gateway through a Redis stream.
//! - [`redis_link`]: Redis connections, the gateway's id (also the feed's) and outage logging.
//! - [`shared_limits`]: tenant limits shared by the gateways on one Redis.
//! - [`headers`]: header names, and editing the upstream request's headers cheaply.
//! - [`server`]: the Pingora server and its services.
//! - [`cli`]: flags and exit statuses; `main.rs` is a shim over it.

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod cache_store;
pub mod cert_cache;
pub mod cert_fetch;
pub mod cert_store;
pub mod cert_sync;
pub mod challenge;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod feed_client;
pub mod file_stamp;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod problem;
pub mod proxy;
pub mod purge_bus;
pub mod redis_link;
pub mod request_id;
pub mod server;
pub mod shared_limits;
pub mod snapshot_cache;
pub mod snapshot_feed;
pub mod snapshot_file;
pub mod snapshot_watch;
pub mod state;
pub mod tls;
pub mod upstreams;
pub mod write_hold;
