//! Tenant-admin: the operator REST API (axum + sqlx on a PostgreSQL catalog)
//! and the workers behind it — provisioning, custom domains and ACME
//! certificates, tenant-schema migrations, tenant moves, cache purges and the
//! versioned routing feed that gateways follow.
//!
//! # Layout
//!
//! Nothing yet: the control plane is built in issue 5. This crate exists so
//! the workspace, lints and CI are in place before it lands; it deliberately
//! exposes no API that could be mistaken for a working service.
