//! Tenant-admin: the operator REST API (axum + sqlx on a PostgreSQL catalog)
//! and the workers behind it — provisioning, tenant-schema migrations
//! across every database, cache purges and the versioned routing feed that
//! gateways follow.
//!
//! # Layout
//!
//! - [`cli`]: flags and exit statuses; `main.rs` is a shim over it.
//! - [`app`]: the `serve` process: state, router, health, metrics, shutdown.
//! - [`api`]: the `/v1` resources, their validation, auth, idempotency and audit.
//! - [`feed`]: the routing snapshot built from the catalog, versioned and long-polled.
//! - [`jobs`]: resumable provisioning and purge jobs, and their worker.
//! - [`moves`]: moving a tenant's rows to another target, then its routing.
//! - `tenant_data.rs`: one tenant's rows in a tenant database: copy, count, delete.
//! - [`fleet`]: the tenant schema across every shard and dedicated cluster,
//!   as resumable `migrate_tenants` jobs, and each target's version.
//! - [`migrations`]: the catalog and tenant schemas, embedded, and applying them.
//! - [`secrets`]: sealing passwords under `SECRETS_KEY`, hashing tokens.
//! - `db.rs`: opening pools with a bounded connect that says why it failed.

pub mod acme;
pub mod api;
pub mod app;
pub mod cli;
mod db;
pub mod domains;
pub mod feed;
pub mod fleet;
pub mod jobs;
pub mod migrations;
pub mod moves;
pub mod secrets;
mod tenant_data;
pub mod verify;

/// The Redis stream gateways read cache purges from (the gateway's `purge_bus`).
pub const PURGE_STREAM: &str = "switchyard:purges";
