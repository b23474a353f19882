//! Tenant-admin: the operator REST API (axum + sqlx on a PostgreSQL catalog)
//! and the workers behind it — provisioning, custom domains and ACME
//! certificates, tenant-schema migrations, tenant moves, cache purges and the
//! versioned routing feed that gateways follow.
//!
//! # Layout
//!
//! - [`migrations`]: the catalog and tenant schemas, embedded, and applying them.
//! - [`fleet`]: the tenant schema across every shard and dedicated cluster,
//!   as resumable `migrate_tenants` jobs, and each target's version.
//! - [`secrets`]: secrets at rest (sealed DSN passwords), token hashes.
//! - [`cli`]: flags and exit statuses; `main.rs` is a shim over it.
//! - `db.rs`: opening pools with a bounded connect that says why it failed.
//!
//! Built so far: `tenant-admin migrate catalog|tenants`. The API,
//! provisioning and the routing feed follow (issue 5).

pub mod cli;
mod db;
pub mod fleet;
pub mod migrations;
pub mod secrets;
