//! Operations: jobs, the audit log, the routing feed and the gateways
//! following it.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{ApiError, ApiResult, Problem};
use super::request::{Caller, JsonBody, Page, PageQuery, Path, Query, audit, text_keyed_page};
use crate::app::AppState;
use crate::fleet;

type St = State<Arc<AppState>>;

/// Longest long-poll.
pub const MAX_WAIT_SECS: u64 = 60;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(list_audit))
        .routes(routes!(routing_snapshot))
        .routes(routes!(list_gateways))
        .routes(routes!(list_migrations))
        .routes(routes!(apply_migrations))
}

// ---------------------------------------------------------------- tenant-schema migrations

/// Every target's tenant-schema version.
#[derive(Debug, Serialize, ToSchema)]
pub struct MigrationStatus {
    /// The newest tenant-schema version this build carries.
    pub latest: i64,
    /// Each shard and dedicated cluster: applied versions, pending count,
    /// or why it could not be read.
    pub targets: Vec<fleet::TargetVersion>,
}

/// Each shard's and dedicated cluster's tenant-schema version, so skew is
/// visible (unreachable databases say why).
#[utoipa::path(get, path = "/v1/migrations", tag = "operations",
    responses((status = 200, body = MigrationStatus), (status = 401, body = Problem), (status = 503, body = Problem)))]
async fn list_migrations(State(st): St) -> ApiResult<Json<MigrationStatus>> {
    let targets = fleet::target_versions(&st.db, st.key.as_ref(), fleet::DEFAULT_CONCURRENCY)
        .await
        .map_err(fleet_error)?;
    Ok(Json(MigrationStatus {
        latest: crate::migrations::Schema::Tenant.latest(),
        targets,
    }))
}

/// `POST /v1/migrations/apply`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyMigrations {
    /// Only these targets; absent: every target not offline.
    pub targets: Option<Vec<String>>,
    /// List what would be applied, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Databases migrated at once, 1 to 64 (default 4).
    pub concurrency: Option<u16>,
}

/// Applies pending tenant-schema migrations to every shard and dedicated
/// cluster (or those named) as a job: 202 with the job to follow at
/// `/v1/jobs/{id}`. A failed run is resumed by applying again: targets
/// already applied are not touched.
#[utoipa::path(post, path = "/v1/migrations/apply", tag = "operations", request_body = ApplyMigrations,
    responses((status = 202, body = Job), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn apply_migrations(
    State(st): St,
    caller: Caller,
    JsonBody(body): JsonBody<ApplyMigrations>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Job>)> {
    let concurrency = usize::from(super::validate::range(
        "concurrency",
        body.concurrency.unwrap_or(4),
        1,
        64,
    )?);
    if let Some(targets) = &body.targets {
        for (i, t) in targets.iter().enumerate() {
            super::validate::target(&format!("targets[{i}]"), t)?;
        }
    }
    let options = fleet::FleetOptions {
        targets: body.targets.clone(),
        concurrency,
        dry_run: body.dry_run,
    };
    let id = fleet::start_job(&st.db, &options)
        .await
        .map_err(fleet_error)?;
    let mut tx = st.db.begin().await?;
    audit(
        &mut tx,
        &caller,
        "migrations.apply",
        &format!("/v1/jobs/{id}"),
        None::<&()>,
        Some(&serde_json::json!({ "targets": body.targets, "dry_run": body.dry_run })),
    )
    .await?;
    tx.commit().await?;
    let runner = st.clone();
    tokio::spawn(async move {
        match fleet::run_job(&runner.db, runner.key.as_ref(), id, concurrency).await {
            Ok(outcome) => {
                tracing::info!(job = id, state = ?outcome.state, "tenant-schema migrations finished")
            }
            Err(e) => tracing::warn!(job = id, error = %e, "tenant-schema migrations did not run"),
        }
    });
    let job = fetch_job(&st.db, id)
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok((
        StatusCode::ACCEPTED,
        super::catalog::location(&format!("/v1/jobs/{id}")),
        Json(job),
    ))
}

fn fleet_error(e: fleet::FleetError) -> ApiError {
    use fleet::FleetError as E;
    match e {
        E::UnknownTargets(_) | E::NoTargets => ApiError::invalid("targets", e.to_string()),
        E::Busy(_) | E::Leased(_) => ApiError::conflict(e.to_string()),
        E::Catalog(e) => ApiError::from(e),
        other => {
            tracing::error!(error = %other, "migration job error");
            ApiError::internal()
        }
    }
}

// ---------------------------------------------------------------- jobs

/// A job's progress on one database.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct JobTarget {
    /// The shard or cluster.
    pub target: String,
    /// `pending`, `running`, `applied` or `failed`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Long-running work: provisioning, purges, migrations.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Job {
    /// Id.
    pub id: i64,
    /// `provision_tenant`, `purge_tenant`, `migrate_tenants`.
    pub kind: String,
    /// `pending`, `running`, `succeeded` or `failed` (failed jobs are retried).
    pub state: String,
    /// What it was asked.
    pub params: serde_json::Value,
    /// What it did.
    pub result: Option<serde_json::Value>,
    /// Why it last failed.
    pub error: Option<String>,
    /// Runs so far.
    pub attempts: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Per-database progress (migrations).
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub targets: Vec<JobTarget>,
}

const JOB_COLUMNS: &str =
    "id, kind, state::text AS state, params, result, error, attempts, created_at, updated_at";

/// Lists jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "operations", params(PageQuery),
    responses((status = 200, body = Page<Job>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_jobs(State(st): St, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Job>>> {
    let limit = q.limit()?;
    let before = cursor_id(&q)?;
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2"
    );
    let rows: Vec<Job> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&st.db)
        .await?;
    Ok(Json(Page::from_rows(rows, limit, |j| j.id.to_string())))
}

/// One job, with its per-database progress.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "operations",
    responses((status = 200, body = Job), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_job(State(st): St, Path(id): Path<i64>) -> ApiResult<Json<Job>> {
    fetch_job(&st.db, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))
}

/// A job and its targets.
pub(crate) async fn fetch_job(db: &sqlx::PgPool, id: i64) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
    let job: Option<Job> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await?;
    let Some(mut job) = job else { return Ok(None) };
    job.targets = sqlx::query_as(
        "SELECT target_id AS target, state::text AS state, error, updated_at FROM job_targets \
         WHERE job_id = $1 ORDER BY target_id",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok(Some(job))
}

fn cursor_id(q: &PageQuery) -> ApiResult<Option<i64>> {
    q.after()?
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_field("cursor", "cursor is not one this API gave"))
        })
        .transpose()
}

// ---------------------------------------------------------------- audit

/// One audited mutation.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct AuditEntry {
    /// Id (increasing).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The token's name and role.
    pub actor: String,
    /// `tenant.create`, `plan.update`, …
    pub action: String,
    /// The resource's path.
    pub resource: String,
    /// The resource before.
    pub before: Option<serde_json::Value>,
    /// The resource after.
    pub after: Option<serde_json::Value>,
    /// The request that made the change.
    pub request_id: Option<String>,
}

/// `GET /v1/audit` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only entries about this resource path (e.g. `/v1/tenants/t-1`).
    pub resource: Option<String>,
    /// Only entries of this action.
    pub action: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "operations", params(PageQuery, AuditFilter),
    responses((status = 200, body = Page<AuditEntry>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_audit(
    State(st): St,
    Query(q): Query<PageQuery>,
    Query(f): Query<AuditFilter>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let limit = q.limit()?;
    let rows: Vec<AuditEntry> = sqlx::query_as(
        "SELECT id, at, actor, action, resource, before, after, request_id FROM audit_log \
         WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR resource = $2) \
           AND ($3::text IS NULL OR action = $3) \
         ORDER BY id DESC LIMIT $4",
    )
    .bind(cursor_id(&q)?)
    .bind(&f.resource)
    .bind(&f.action)
    .bind(limit + 1)
    .fetch_all(&st.db)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |a| a.id.to_string())))
}

// ---------------------------------------------------------------- routing feed

/// `GET /v1/routing/snapshot` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The asking gateway's region (must exist).
    pub region: Option<String>,
    /// The asking gateway's id: with `since`, recorded as its heartbeat.
    pub gateway: Option<String>,
    /// The version the caller has applied: answers once a newer one exists.
    pub since: Option<u64>,
    /// Seconds to hold the request for a newer version (0 to 60); 304 if none came.
    pub wait: Option<u64>,
}

/// The routing snapshot (the same document as a gateway's snapshot file).
///
/// With `since` and `wait`, a long poll: answered as soon as a version
/// newer than `since` exists, or 304 when `wait` seconds pass without one.
/// `If-None-Match` with the current `ETag` also gives 304.
#[utoipa::path(get, path = "/v1/routing/snapshot", tag = "feed", params(FeedQuery),
    responses(
        (status = 200, description = "The snapshot (router::Snapshot as JSON); ETag and x-snapshot-version name its version", content_type = "application/json"),
        (status = 304, description = "No newer version within the wait"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn routing_snapshot(
    State(st): St,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> ApiResult<Response> {
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::bad_field(
            "wait",
            format!("wait must be 0 to {MAX_WAIT_SECS} seconds"),
        ));
    }
    if let Some(region) = &q.region {
        let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM regions WHERE name = $1")
            .bind(region)
            .fetch_optional(&st.db)
            .await?;
        if known.is_none() {
            return Err(ApiError::not_found(format!("region {region:?}")));
        }
    }
    if let Some(gateway) = &q.gateway
        && (gateway.is_empty() || gateway.len() > 200 || gateway.chars().any(char::is_control))
    {
        return Err(ApiError::bad_field(
            "gateway",
            "gateway must be 1 to 200 printable characters",
        ));
    }
    if let (Some(gateway), Some(since), Some(region)) = (&q.gateway, q.since, &q.region) {
        heartbeat(&st.db, gateway, region, since).await?;
    }
    let since = q.since.or_else(|| {
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.trim()
                    .trim_start_matches("W/")
                    .trim_matches('"')
                    .parse()
                    .ok()
            })
    });
    let current = match since {
        Some(since) => st.feed.wait_newer(since, Duration::from_secs(wait)).await,
        None => st.feed.version(),
    };
    if let Some(since) = since
        && current <= since
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        set_version(response.headers_mut(), current);
        return Ok(response);
    }
    let (version, bytes) = st.feed.snapshot_json().await?;
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set_version(response.headers_mut(), version);
    Ok(response)
}

fn set_version(headers: &mut HeaderMap, version: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        headers.insert(header::ETAG, v);
    }
    headers.insert("x-snapshot-version", HeaderValue::from(version));
}

async fn heartbeat(
    db: &sqlx::PgPool,
    gateway: &str,
    region: &str,
    applied: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO gateways (id, region, applied_version, last_seen_at) VALUES ($1, $2, $3, now()) \
         ON CONFLICT (id) DO UPDATE SET region = EXCLUDED.region, \
            applied_version = EXCLUDED.applied_version, last_seen_at = now()",
    )
    .bind(gateway)
    .bind(region)
    .bind(i64::try_from(applied).unwrap_or(i64::MAX))
    .execute(db)
    .await
    .map(drop)
}

/// A gateway following the feed, as it last reported.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Gateway {
    /// The gateway's id.
    pub id: String,
    /// Its region.
    pub region: String,
    /// The snapshot version it has applied.
    pub applied_version: i64,
    /// How many versions it is behind the newest.
    pub behind: i64,
    /// When it last asked the feed.
    pub last_seen_at: DateTime<Utc>,
}

/// The gateways following the feed: applied version and last contact.
#[utoipa::path(get, path = "/v1/gateways", tag = "feed", params(PageQuery),
    responses((status = 200, body = Page<Gateway>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_gateways(
    State(st): St,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Gateway>>> {
    text_keyed_page(
        &st.db,
        "SELECT id, region, applied_version, \
            greatest(0, (SELECT coalesce(max(version), 0) FROM snapshot_versions) - applied_version) AS behind, \
            last_seen_at FROM gateways WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2",
        &q,
        |g: &Gateway| g.id.clone(),
    )
    .await
}
