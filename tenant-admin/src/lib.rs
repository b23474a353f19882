//! Tenant-admin: the operator REST API (axum + sqlx on a PostgreSQL catalog)
//! and the workers behind it — provisioning, custom domains and ACME
//! certificates, tenant-schema migrations, tenant moves, cache purges and the
//! versioned routing feed that gateways follow.
//!
//! # Layout
//!
//! - [`migrations`]: the catalog and tenant schemas, embedded, and applying them.
//! - [`cli`]: flags and exit statuses; `main.rs` is a shim over it.
//!
//! Built so far: `tenant-admin migrate catalog`. The API, provisioning,
//! migrations across every shard and the routing feed follow (issue 5).

pub mod cli;
pub mod migrations;
pub mod secrets;
