//! The two schemas tenant-admin owns, embedded in the binary so a
//! deployment never runs a schema other than the one it was built with:
//! the catalog (`migrations/catalog/`) and the tenant application schema
//! (`migrations/tenant/`) applied to every shard and dedicated cluster.
//!
//! Both are applied with sqlx's migrator: numbered, checksummed (an edited
//! migration that already ran is an error, never silently re-run), each in
//! its own transaction, under PostgreSQL's advisory lock so two replicas
//! cannot apply the same migration twice.

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{PgPool, SqlSafeStr};

/// Which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// tenant-admin's own catalog.
    Catalog,
    /// The application schema of every shard and dedicated cluster.
    Tenant,
}

/// One embedded migration: version, description, SQL.
type Embedded = (i64, &'static str, &'static str);

const CATALOG: &[Embedded] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/catalog/0001_initial.sql"),
    ),
    (
        2,
        "tenant moves",
        include_str!("../../migrations/catalog/0002_tenant_moves.sql"),
    ),
    (
        3,
        "custom domains and certificates",
        include_str!("../../migrations/catalog/0003_custom_domains.sql"),
    ),
];

const TENANT: &[Embedded] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/tenant/0001_initial.sql"),
    ),
    (
        2,
        "foreign keys deferrable and indexed",
        include_str!("../../migrations/tenant/0002_foreign_keys.sql"),
    ),
    (
        3,
        "tenant write fence",
        include_str!("../../migrations/tenant/0003_tenant_write_fence.sql"),
    ),
];

impl Schema {
    fn embedded(self) -> &'static [Embedded] {
        match self {
            Self::Catalog => CATALOG,
            Self::Tenant => TENANT,
        }
    }

    /// The schema's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Catalog => "catalog",
            Self::Tenant => "tenant",
        }
    }

    /// Every migration of the schema, oldest first.
    pub fn migrations(self) -> Vec<(i64, &'static str)> {
        self.embedded().iter().map(|(v, d, _)| (*v, *d)).collect()
    }

    /// The latest version.
    pub fn latest(self) -> i64 {
        self.embedded().last().map_or(0, |m| m.0)
    }
}

#[derive(Debug)]
struct Source(Schema);

impl MigrationSource<'static> for Source {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .embedded()
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect())
        })
    }
}

async fn migrator(schema: Schema) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Source(schema)).await
}

/// Versions of `schema` already applied to the database behind `pool`.
///
/// # Errors
///
/// When the database cannot be queried.
pub async fn applied(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
}

/// The migrations of `schema` not yet applied to the database behind `pool`.
///
/// # Errors
///
/// When the database cannot be queried.
pub async fn pending(
    pool: &PgPool,
    schema: Schema,
) -> Result<Vec<(i64, &'static str)>, sqlx::Error> {
    let done = applied(pool).await?;
    Ok(schema
        .migrations()
        .into_iter()
        .filter(|(v, _)| !done.contains(v))
        .collect())
}

/// Applies every pending migration of `schema`; returns the versions applied.
///
/// # Errors
///
/// When a migration fails (it is rolled back; earlier ones stay applied),
/// an applied migration was edited since, or the database is unreachable.
pub async fn apply(pool: &PgPool, schema: Schema) -> Result<Vec<i64>, sqlx::migrate::MigrateError> {
    let before = pending(pool, schema).await?;
    migrator(schema).await?.run(pool).await?;
    Ok(before.into_iter().map(|(v, _)| v).collect())
}
