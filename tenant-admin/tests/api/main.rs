//! The operator API end to end: the real `tenant-admin serve` binary on a
//! real PostgreSQL catalog, tenants provisioned into real shard and
//! dedicated databases, every answer checked over HTTP and every write (or
//! the absence of one) checked in the databases themselves.
//!
//! # Layout
//!
//! - `auth.rs`: tokens, roles, and token secrets kept only as hashes.
//! - `validation.rs`: bad input and conflicts, refused without a write.
//! - `idempotency.rs`, `pagination.rs`: `Idempotency-Key` and cursors.
//! - `audit.rs`: one audit row per mutation.
//! - `provisioning.rs`: shared and dedicated placement, and resuming it.
//! - `lifecycle.rs`: plan changes, suspension, deletion and purge; row-level security.
//! - `domains.rs`: custom domains: claims, the rules a name must pass, removal.
//! - `moves.rs`: tenant moves between shards and to a dedicated database.
//! - `feed.rs`: the routing snapshot's ETag, long poll and heartbeats.
//! - `openapi.rs`: the OpenAPI document against the routes served; health and metrics.
//! - `../support/mod.rs`: the binary, the client and the seeding helpers.

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod auth;
mod domains;
mod feed;
mod idempotency;
mod lifecycle;
mod moves;
mod openapi;
mod operations;
mod pagination;
mod provisioning;
mod validation;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sqlx::PgPool;
use support::{Reply, count};

/// A tenant body.
fn tenant(slug: &str, plan: &str, region: &str) -> Value {
    json!({ "slug": slug, "plan": plan, "region": region })
}

/// A tenant body with an explicit id.
fn tenant_with_id(id: &str, slug: &str, plan: &str, region: &str) -> Value {
    json!({ "id": id, "slug": slug, "plan": plan, "region": region })
}

/// Row counts of the tables a rejected change must not touch.
async fn written(db: &PgPool) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for table in [
        "regions",
        "plans",
        "targets",
        "target_pools",
        "cluster_servers",
        "tenants",
        "jobs",
        "audit_log",
        "snapshot_versions",
        "api_tokens",
        "domains",
    ] {
        counts.insert(table, count(db, table).await);
    }
    counts
}

/// Every catalog table holding `needle` anywhere in a row, as text or as
/// bytes (a bytea column shows as hex in a row's text form).
async fn catalog_tables_holding(db: &PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let hex_needle = hex::encode(needle.as_bytes());
    let mut holding = Vec::new();
    for table in tables {
        let sql = format!(
            "SELECT count(*) FROM {table} t WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0"
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(needle)
            .bind(&hex_needle)
            .fetch_one(db)
            .await
            .unwrap();
        if n > 0 {
            holding.push(table);
        }
    }
    holding
}

/// `(id, target, status, plan)` of every tenant in a snapshot.
fn snapshot_tenants(snapshot: &Value) -> BTreeSet<(String, String, String, String)> {
    snapshot["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["target"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap_or("active").to_owned(),
                t["plan"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The tenant `id` of a snapshot, if it is routed.
fn snapshot_tenant<'s>(snapshot: &'s Value, id: &str) -> Option<&'s Value> {
    snapshot["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .find(|t| t["id"] == json!(id))
}

/// The `x-snapshot-version` of a feed response.
fn version_of(reply: &Reply) -> u64 {
    reply
        .header("x-snapshot-version")
        .and_then(|v| v.parse().ok())
        .expect("an x-snapshot-version header")
}
