//! What the platform is made of: regions, plans, shards, dedicated
//! clusters, the PostgreSQL servers dedicated databases are created on,
//! and the API tokens.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{ApiError, ApiResult, Problem};
use super::request::{
    Caller, JsonBody, Page, PageQuery, Path, Query, Role, audit, publish, text_keyed_page,
};
use super::validate::{self, PoolsInput};
use crate::app::AppState;
use crate::secrets::Purpose;

type St = State<Arc<AppState>>;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_regions, create_region))
        .routes(routes!(get_region, delete_region))
        .routes(routes!(list_plans, create_plan))
        .routes(routes!(get_plan, update_plan))
        .routes(routes!(list_shards, create_shard))
        .routes(routes!(get_shard, update_shard))
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, update_cluster))
        .routes(routes!(list_servers, create_server))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

// ---------------------------------------------------------------- regions

/// A deployment region.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Region {
    /// `eu-west`, `us-east`, …
    pub name: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/regions`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRegion {
    /// A DNS label of at most 32 characters.
    pub name: String,
}

/// Lists regions by name.
#[utoipa::path(get, path = "/v1/regions", tag = "catalog", params(PageQuery),
    responses((status = 200, body = Page<Region>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_regions(State(st): St, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Region>>> {
    text_keyed_page(
        &st.db,
        "SELECT name, created_at FROM regions WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2",
        &q,
        |r: &Region| r.name.clone(),
    )
    .await
}

/// Adds a region.
#[utoipa::path(post, path = "/v1/regions", tag = "catalog", request_body = NewRegion,
    responses((status = 201, body = Region), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn create_region(
    State(st): St,
    caller: Caller,
    JsonBody(body): JsonBody<NewRegion>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Region>)> {
    let name = validate::region("name", &body.name)?;
    let mut tx = st.db.begin().await?;
    let region: Region =
        sqlx::query_as("INSERT INTO regions (name) VALUES ($1) RETURNING name, created_at")
            .bind(&name)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| conflict_as(e, "name", format!("region {name:?} already exists")))?;
    let path = format!("/v1/regions/{name}");
    audit(
        &mut tx,
        &caller,
        "region.create",
        &path,
        None::<&()>,
        Some(&region),
    )
    .await?;
    publish(&mut tx, &format!("region {name} added")).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, location(&path), Json(region)))
}

/// One region.
#[utoipa::path(get, path = "/v1/regions/{name}", tag = "catalog",
    responses((status = 200, body = Region), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_region(State(st): St, Path(name): Path<String>) -> ApiResult<Json<Region>> {
    sqlx::query_as("SELECT name, created_at FROM regions WHERE name = $1")
        .bind(&name)
        .fetch_optional(&st.db)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("region {name:?}")))
}

/// Removes a region nothing uses.
#[utoipa::path(delete, path = "/v1/regions/{name}", tag = "catalog",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_region(
    State(st): St,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = st.db.begin().await?;
    let before: Option<Region> =
        sqlx::query_as("DELETE FROM regions WHERE name = $1 RETURNING name, created_at")
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| match ApiError::from(e) {
                e if e.status() == StatusCode::CONFLICT => ApiError::conflict(format!(
                    "region {name:?} is still used by targets, pools, tenants or cluster servers"
                )),
                e => e,
            })?;
    let before = before.ok_or_else(|| ApiError::not_found(format!("region {name:?}")))?;
    let path = format!("/v1/regions/{name}");
    audit(
        &mut tx,
        &caller,
        "region.delete",
        &path,
        Some(&before),
        None::<&()>,
    )
    .await?;
    publish(&mut tx, &format!("region {name} removed")).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- plans

/// A plan: the limits its tenants get.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Plan {
    /// Name, referenced by tenants.
    pub name: String,
    /// Sustained requests per second for the whole tenant.
    pub rate_per_sec: i32,
    /// Requests allowed in a burst.
    pub burst: i32,
    /// Per client IP; absent: no per-IP limit.
    pub ip_rate_per_sec: Option<i32>,
    /// Whether responses are cached.
    pub cache: bool,
    /// Freshness when the origin says nothing; 0: not cached then.
    pub cache_ttl_secs: i32,
    /// Largest response cached.
    pub cache_max_object_bytes: i64,
    /// Largest request body accepted.
    pub max_body_bytes: i64,
    /// Custom domains a tenant may add.
    pub max_domains: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

const PLAN_COLUMNS: &str = "name, rate_per_sec, burst, ip_rate_per_sec, cache, cache_ttl_secs, \
    cache_max_object_bytes, max_body_bytes, max_domains, created_at, updated_at";

/// `POST /v1/plans`, and (every field optional but `name`) `PATCH /v1/plans/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    /// Name: lowercase letters, digits, `-`, `_`, `.`; set on create only.
    #[serde(default)]
    pub name: Option<String>,
    /// 1 to 1,000,000.
    pub rate_per_sec: Option<i32>,
    /// 1 to 1,000,000.
    pub burst: Option<i32>,
    /// 1 to 1,000,000, or null for no per-IP limit.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<i32>)]
    pub ip_rate_per_sec: Option<Option<i32>>,
    /// Default false.
    pub cache: Option<bool>,
    /// 0 to 31,536,000 (default 0).
    pub cache_ttl_secs: Option<i32>,
    /// 1 to 1 GiB (default 1 MiB).
    pub cache_max_object_bytes: Option<i64>,
    /// 1 to 10 GiB.
    pub max_body_bytes: Option<i64>,
    /// 0 to 10,000 (default 5).
    pub max_domains: Option<i32>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<i32>>, D::Error> {
        Option::<i32>::deserialize(d).map(Some)
    }
}

impl PlanInput {
    fn check(&self) -> ApiResult<()> {
        if let Some(v) = self.rate_per_sec {
            validate::range("rate_per_sec", v, 1, 1_000_000)?;
        }
        if let Some(v) = self.burst {
            validate::range("burst", v, 1, 1_000_000)?;
        }
        if let Some(Some(v)) = self.ip_rate_per_sec {
            validate::range("ip_rate_per_sec", v, 1, 1_000_000)?;
        }
        if let Some(v) = self.cache_ttl_secs {
            validate::range("cache_ttl_secs", v, 0, 31_536_000)?;
        }
        if let Some(v) = self.cache_max_object_bytes {
            validate::range("cache_max_object_bytes", v, 1, 1 << 30)?;
        }
        if let Some(v) = self.max_body_bytes {
            validate::range("max_body_bytes", v, 1, 10 << 30)?;
        }
        if let Some(v) = self.max_domains {
            validate::range("max_domains", v, 0, 10_000)?;
        }
        Ok(())
    }
}

/// Lists plans by name.
#[utoipa::path(get, path = "/v1/plans", tag = "catalog", params(PageQuery),
    responses((status = 200, body = Page<Plan>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_plans(State(st): St, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Plan>>> {
    let sql = format!(
        "SELECT {PLAN_COLUMNS} FROM plans WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2"
    );
    text_keyed_page(&st.db, sqlx::AssertSqlSafe(sql), &q, |p: &Plan| {
        p.name.clone()
    })
    .await
}

/// Adds a plan.
#[utoipa::path(post, path = "/v1/plans", tag = "catalog", request_body = PlanInput,
    responses((status = 201, body = Plan), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn create_plan(
    State(st): St,
    caller: Caller,
    JsonBody(body): JsonBody<PlanInput>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Plan>)> {
    let name = validate::plan(
        "name",
        body.name
            .as_deref()
            .ok_or_else(|| ApiError::invalid("name", "is required"))?,
    )?;
    body.check()?;
    let rate = body
        .rate_per_sec
        .ok_or_else(|| ApiError::invalid("rate_per_sec", "is required"))?;
    let burst = body
        .burst
        .ok_or_else(|| ApiError::invalid("burst", "is required"))?;
    let max_body = body
        .max_body_bytes
        .ok_or_else(|| ApiError::invalid("max_body_bytes", "is required"))?;
    let mut tx = st.db.begin().await?;
    let sql = format!(
        "INSERT INTO plans (name, rate_per_sec, burst, ip_rate_per_sec, cache, cache_ttl_secs, \
            cache_max_object_bytes, max_body_bytes, max_domains) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {PLAN_COLUMNS}"
    );
    let plan: Plan = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&name)
        .bind(rate)
        .bind(burst)
        .bind(body.ip_rate_per_sec.flatten())
        .bind(body.cache.unwrap_or(false))
        .bind(body.cache_ttl_secs.unwrap_or(0))
        .bind(body.cache_max_object_bytes.unwrap_or(1 << 20))
        .bind(max_body)
        .bind(body.max_domains.unwrap_or(5))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, "name", format!("plan {name:?} already exists")))?;
    let path = format!("/v1/plans/{name}");
    audit(
        &mut tx,
        &caller,
        "plan.create",
        &path,
        None::<&()>,
        Some(&plan),
    )
    .await?;
    publish(&mut tx, &format!("plan {name} added")).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, location(&path), Json(plan)))
}

/// One plan.
#[utoipa::path(get, path = "/v1/plans/{name}", tag = "catalog",
    responses((status = 200, body = Plan), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_plan(State(st): St, Path(name): Path<String>) -> ApiResult<Json<Plan>> {
    fetch_plan(&st.db, &name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("plan {name:?}")))
}

async fn fetch_plan<'e>(
    db: impl sqlx::PgExecutor<'e>,
    name: &str,
) -> Result<Option<Plan>, sqlx::Error> {
    let sql = format!("SELECT {PLAN_COLUMNS} FROM plans WHERE name = $1 FOR UPDATE");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(db)
        .await
}

/// Changes a plan's limits; every tenant on it gets them with the next snapshot.
#[utoipa::path(patch, path = "/v1/plans/{name}", tag = "catalog", request_body = PlanInput,
    responses((status = 200, body = Plan), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_plan(
    State(st): St,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PlanInput>,
) -> ApiResult<Json<Plan>> {
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::invalid("name", "a plan cannot be renamed"));
    }
    body.check()?;
    let mut tx = st.db.begin().await?;
    let before = fetch_plan(&mut *tx, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("plan {name:?}")))?;
    let sql = format!(
        "UPDATE plans SET rate_per_sec = coalesce($2, rate_per_sec), burst = coalesce($3, burst), \
            ip_rate_per_sec = CASE WHEN $4 THEN $5 ELSE ip_rate_per_sec END, \
            cache = coalesce($6, cache), cache_ttl_secs = coalesce($7, cache_ttl_secs), \
            cache_max_object_bytes = coalesce($8, cache_max_object_bytes), \
            max_body_bytes = coalesce($9, max_body_bytes), max_domains = coalesce($10, max_domains), \
            updated_at = now() \
         WHERE name = $1 RETURNING {PLAN_COLUMNS}"
    );
    let after: Plan = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&name)
        .bind(body.rate_per_sec)
        .bind(body.burst)
        .bind(body.ip_rate_per_sec.is_some())
        .bind(body.ip_rate_per_sec.flatten())
        .bind(body.cache)
        .bind(body.cache_ttl_secs)
        .bind(body.cache_max_object_bytes)
        .bind(body.max_body_bytes)
        .bind(body.max_domains)
        .fetch_one(&mut *tx)
        .await?;
    let path = format!("/v1/plans/{name}");
    audit(
        &mut tx,
        &caller,
        "plan.update",
        &path,
        Some(&before),
        Some(&after),
    )
    .await?;
    publish(&mut tx, &format!("plan {name} changed")).await?;
    tx.commit().await?;
    Ok(Json(after))
}

// ---------------------------------------------------------------- shards and clusters

/// A shard or dedicated cluster. The DSN is shown without its password.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Target {
    /// Id, sent upstream as `x-tenant-target`.
    pub id: String,
    /// `shard` or `dedicated`.
    pub kind: String,
    /// The database's region: its tenants' home region.
    pub region: String,
    /// Placement weight (shards).
    pub weight: i32,
    /// `active`, `draining` or `offline`.
    pub status: String,
    /// The connection string without its password.
    pub dsn: String,
    /// Whether a password is stored (encrypted).
    pub has_password: bool,
    /// App servers by region.
    pub pools: PoolsInput,
    /// Tenants placed here (not counting deleted ones).
    pub tenants: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/shards` and `POST /v1/clusters`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    /// Lowercase letters, digits, `-`, `_`, `.`.
    pub id: String,
    /// The database's region.
    pub region: String,
    /// Shards: placement weight 1 to 1000 (default 100).
    pub weight: Option<i32>,
    /// `active` (default), `draining` or `offline`.
    pub status: Option<String>,
    /// `postgres://user[:password]@host:port/db`; the password is stored encrypted.
    pub dsn: String,
    /// App servers by region; the home region is required.
    pub pools: PoolsInput,
}

/// `PATCH /v1/shards/{id}` and `PATCH /v1/clusters/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetUpdate {
    /// Shards: placement weight 1 to 1000.
    pub weight: Option<i32>,
    /// `active`, `draining` (no new tenants) or `offline`.
    pub status: Option<String>,
    /// A new connection string.
    pub dsn: Option<String>,
    /// Replaces every pool.
    pub pools: Option<PoolsInput>,
}

fn status_check(field: &str, s: &str) -> ApiResult<()> {
    if matches!(s, "active" | "draining" | "offline") {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be active, draining or offline",
        ))
    }
}

/// Reads targets of `kind` (all when `id` is None, after `after`).
pub(crate) async fn fetch_targets<'e>(
    db: impl sqlx::PgExecutor<'e>,
    kind: &str,
    id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Target>, sqlx::Error> {
    type Row = (
        String,
        String,
        String,
        i32,
        String,
        String,
        bool,
        i64,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<serde_json::Value>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.id, t.kind::text, t.region, t.weight, t.status::text, t.dsn, \
                t.dsn_password_enc IS NOT NULL, \
                (SELECT count(*) FROM tenants n WHERE n.target_id = t.id AND n.status <> 'deleted'), \
                t.created_at, t.updated_at, \
                (SELECT jsonb_object_agg(region, backends) FROM ( \
                    SELECT region, jsonb_agg(CASE WHEN weight = 1 THEN to_jsonb(address) \
                        ELSE jsonb_build_object('addr', address, 'weight', weight) END ORDER BY address) AS backends \
                    FROM target_pools p WHERE p.target_id = t.id GROUP BY region) g) \
         FROM targets t \
         WHERE t.kind::text = $1 AND ($2::text IS NULL OR t.id = $2) AND ($3::text IS NULL OR t.id > $3) \
         ORDER BY t.id LIMIT $4",
    )
    .bind(kind)
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                kind,
                region,
                weight,
                status,
                dsn,
                has_password,
                tenants,
                created_at,
                updated_at,
                pools,
            )| Target {
                id,
                kind,
                region,
                weight,
                status,
                dsn,
                has_password,
                pools: pools
                    .and_then(|p| serde_json::from_value(p).ok())
                    .unwrap_or_default(),
                tenants,
                created_at,
                updated_at,
            },
        )
        .collect())
}

async fn list_targets(st: &AppState, kind: &str, q: &PageQuery) -> ApiResult<Json<Page<Target>>> {
    let limit = q.limit()?;
    let after = q.after()?;
    let rows = fetch_targets(&st.db, kind, None, after.as_deref(), limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |t| t.id.clone())))
}

async fn get_target(st: &AppState, kind: &str, id: &str) -> ApiResult<Json<Target>> {
    fetch_targets(&st.db, kind, Some(id), None, 1)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{} {id:?}", noun(kind))))
}

fn noun(kind: &str) -> &'static str {
    if kind == "shard" { "shard" } else { "cluster" }
}

fn collection(kind: &str) -> &'static str {
    if kind == "shard" {
        "shards"
    } else {
        "clusters"
    }
}

/// Inserts a target and its pools in `tx` (used by provisioning too).
pub(crate) async fn insert_target(
    tx: &mut sqlx::PgConnection,
    st: &AppState,
    kind: &str,
    body: &NewTarget,
) -> ApiResult<()> {
    let id = validate::target("id", &body.id)?;
    let region = validate::region("region", &body.region)?;
    let weight = validate::range("weight", body.weight.unwrap_or(100), 1, 1000)?;
    let status = body.status.as_deref().unwrap_or("active");
    status_check("status", status)?;
    let pools = validate::pools("pools", &body.pools, &region)?;
    let (dsn, sealed) = validate::dsn("dsn", &body.dsn, st.key.as_ref(), Purpose::DsnPassword)?;
    sqlx::query(
        "INSERT INTO targets (id, kind, region, weight, status, dsn, dsn_password_enc) \
         VALUES ($1, $2::target_kind, $3, $4, $5::target_status, $6, $7)",
    )
    .bind(&id)
    .bind(kind)
    .bind(&region)
    .bind(weight)
    .bind(status)
    .bind(&dsn)
    .bind(sealed)
    .execute(&mut *tx)
    .await
    .map_err(|e| conflict_as(e, "id", format!("a shard or cluster {id:?} already exists")))?;
    insert_pools(tx, &id, &pools).await
}

async fn insert_pools(
    tx: &mut sqlx::PgConnection,
    id: &str,
    pools: &[(String, String, i32)],
) -> ApiResult<()> {
    for (region, address, weight) in pools {
        sqlx::query(
            "INSERT INTO target_pools (target_id, region, address, weight) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (target_id, region, address) DO UPDATE SET weight = EXCLUDED.weight",
        )
        .bind(id)
        .bind(region)
        .bind(address)
        .bind(weight)
        .execute(&mut *tx)
        .await
        .map_err(|e| match ApiError::from(e) {
            e if e.status() == StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid(
                format!("pools.{region}"),
                format!("unknown region {region:?}"),
            ),
            e => e,
        })?;
    }
    Ok(())
}

async fn create_target(
    st: &AppState,
    caller: &Caller,
    kind: &str,
    body: &NewTarget,
) -> ApiResult<(StatusCode, HeaderMap, Json<Target>)> {
    let mut tx = st.db.begin().await?;
    insert_target(&mut tx, st, kind, body).await?;
    let target = fetch_targets(&mut *tx, kind, Some(&body.id), None, 1)
        .await?
        .pop()
        .ok_or_else(ApiError::internal)?;
    let path = format!("/v1/{}/{}", collection(kind), target.id);
    audit(
        &mut tx,
        caller,
        &format!("{}.create", noun(kind)),
        &path,
        None::<&()>,
        Some(&target),
    )
    .await?;
    publish(&mut tx, &format!("{} {} added", noun(kind), target.id)).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, location(&path), Json(target)))
}

async fn update_target(
    st: &AppState,
    caller: &Caller,
    kind: &str,
    id: &str,
    body: &TargetUpdate,
) -> ApiResult<Json<Target>> {
    let mut tx = st.db.begin().await?;
    sqlx::query("SELECT 1 FROM targets WHERE id = $1 AND kind::text = $2 FOR UPDATE")
        .bind(id)
        .bind(kind)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{} {id:?}", noun(kind))))
        .map(|_: sqlx::postgres::PgRow| ())?;
    let before = fetch_targets(&mut *tx, kind, Some(id), None, 1)
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("{} {id:?}", noun(kind))))?;
    if let Some(w) = body.weight {
        validate::range("weight", w, 1, 1000)?;
    }
    if let Some(s) = &body.status {
        status_check("status", s)?;
    }
    let dsn = body
        .dsn
        .as_deref()
        .map(|d| validate::dsn("dsn", d, st.key.as_ref(), Purpose::DsnPassword))
        .transpose()?;
    let pools = body
        .pools
        .as_ref()
        .map(|p| validate::pools("pools", p, &before.region))
        .transpose()?;
    sqlx::query(
        "UPDATE targets SET weight = coalesce($2, weight), status = coalesce($3::target_status, status), \
            dsn = coalesce($4, dsn), dsn_password_enc = CASE WHEN $4 IS NULL THEN dsn_password_enc ELSE $5 END, \
            updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(body.weight)
    .bind(body.status.as_deref())
    .bind(dsn.as_ref().map(|d| d.0.clone()))
    .bind(dsn.and_then(|d| d.1))
    .execute(&mut *tx)
    .await?;
    if let Some(pools) = pools {
        sqlx::query("DELETE FROM target_pools WHERE target_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_pools(&mut tx, id, &pools).await?;
    }
    let after = fetch_targets(&mut *tx, kind, Some(id), None, 1)
        .await?
        .pop()
        .ok_or_else(ApiError::internal)?;
    let path = format!("/v1/{}/{id}", collection(kind));
    audit(
        &mut tx,
        caller,
        &format!("{}.update", noun(kind)),
        &path,
        Some(&before),
        Some(&after),
    )
    .await?;
    publish(&mut tx, &format!("{} {id} changed", noun(kind))).await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Lists shards by id.
#[utoipa::path(get, path = "/v1/shards", tag = "catalog", params(PageQuery),
    responses((status = 200, body = Page<Target>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_shards(State(st): St, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Target>>> {
    list_targets(&st, "shard", &q).await
}

/// Registers a shard: a shared database and its app-server pools.
#[utoipa::path(post, path = "/v1/shards", tag = "catalog", request_body = NewTarget,
    responses((status = 201, body = Target), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn create_shard(
    State(st): St,
    caller: Caller,
    JsonBody(body): JsonBody<NewTarget>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Target>)> {
    create_target(&st, &caller, "shard", &body).await
}

/// One shard.
#[utoipa::path(get, path = "/v1/shards/{id}", tag = "catalog",
    responses((status = 200, body = Target), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_shard(State(st): St, Path(id): Path<String>) -> ApiResult<Json<Target>> {
    get_target(&st, "shard", &id).await
}

/// Changes a shard's weight, status (`draining`: no new tenants), DSN or pools.
#[utoipa::path(patch, path = "/v1/shards/{id}", tag = "catalog", request_body = TargetUpdate,
    responses((status = 200, body = Target), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_shard(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TargetUpdate>,
) -> ApiResult<Json<Target>> {
    update_target(&st, &caller, "shard", &id, &body).await
}

/// Lists dedicated clusters by id.
#[utoipa::path(get, path = "/v1/clusters", tag = "catalog", params(PageQuery),
    responses((status = 200, body = Page<Target>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_clusters(State(st): St, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Target>>> {
    list_targets(&st, "dedicated", &q).await
}

/// Registers an existing dedicated cluster (database and pools) for one enterprise tenant.
#[utoipa::path(post, path = "/v1/clusters", tag = "catalog", request_body = NewTarget,
    responses((status = 201, body = Target), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn create_cluster(
    State(st): St,
    caller: Caller,
    JsonBody(body): JsonBody<NewTarget>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Target>)> {
    create_target(&st, &caller, "dedicated", &body).await
}

/// One dedicated cluster.
#[utoipa::path(get, path = "/v1/clusters/{id}", tag = "catalog",
    responses((status = 200, body = Target), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_cluster(State(st): St, Path(id): Path<String>) -> ApiResult<Json<Target>> {
    get_target(&st, "dedicated", &id).await
}

/// Changes a dedicated cluster's status, DSN or pools.
#[utoipa::path(patch, path = "/v1/clusters/{id}", tag = "catalog", request_body = TargetUpdate,
    responses((status = 200, body = Target), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_cluster(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TargetUpdate>,
) -> ApiResult<Json<Target>> {
    update_target(&st, &caller, "dedicated", &id, &body).await
}

// ---------------------------------------------------------------- cluster servers

/// A PostgreSQL server dedicated databases are created on.
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct ClusterServer {
    /// Id, named by `placement.server` when creating a tenant.
    pub id: String,
    /// Region.
    pub region: String,
    /// Administrative connection string, without its password.
    pub admin_dsn: String,
    /// Added.
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/cluster-servers`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClusterServer {
    /// Lowercase token.
    pub id: String,
    /// Region.
    pub region: String,
    /// A role that may CREATE DATABASE: `postgres://admin[:password]@host:port/postgres`.
    pub admin_dsn: String,
}

/// Lists cluster servers.
#[utoipa::path(get, path = "/v1/cluster-servers", tag = "catalog", params(PageQuery),
    responses((status = 200, body = Page<ClusterServer>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_servers(
    State(st): St,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<ClusterServer>>> {
    text_keyed_page(
        &st.db,
        "SELECT id, region, admin_dsn, created_at FROM cluster_servers \
         WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2",
        &q,
        |s: &ClusterServer| s.id.clone(),
    )
    .await
}

/// Registers a server that dedicated databases can be created on.
#[utoipa::path(post, path = "/v1/cluster-servers", tag = "catalog", request_body = NewClusterServer,
    responses((status = 201, body = ClusterServer), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_server(
    State(st): St,
    caller: Caller,
    JsonBody(body): JsonBody<NewClusterServer>,
) -> ApiResult<(StatusCode, HeaderMap, Json<ClusterServer>)> {
    let id = validate::target("id", &body.id)?;
    let region = validate::region("region", &body.region)?;
    let (dsn, sealed) = validate::dsn(
        "admin_dsn",
        &body.admin_dsn,
        st.key.as_ref(),
        Purpose::AdminPassword,
    )?;
    let mut tx = st.db.begin().await?;
    let server: ClusterServer = sqlx::query_as(
        "INSERT INTO cluster_servers (id, region, admin_dsn, admin_password_enc) VALUES ($1, $2, $3, $4) \
         RETURNING id, region, admin_dsn, created_at",
    )
    .bind(&id)
    .bind(&region)
    .bind(&dsn)
    .bind(sealed)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| conflict_as(e, "id", format!("cluster server {id:?} already exists")))?;
    let path = format!("/v1/cluster-servers/{id}");
    audit(
        &mut tx,
        &caller,
        "cluster_server.create",
        &path,
        None::<&()>,
        Some(&server),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, location(&path), Json(server)))
}

// ---------------------------------------------------------------- tokens

/// An API token (never its secret, which is shown once at creation).
#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Token {
    /// Id.
    pub id: i64,
    /// Who or what uses it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last used (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `POST /v1/tokens`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 100 characters.
    pub name: String,
    /// `operator`, `viewer` or `gateway`.
    pub role: Role,
}

/// A new token with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token's record.
    #[serde(flatten)]
    pub token: Token,
    /// The bearer secret; only its hash is stored.
    pub secret: String,
}

/// Lists tokens.
#[utoipa::path(get, path = "/v1/tokens", tag = "catalog", params(PageQuery),
    responses((status = 200, body = Page<Token>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_tokens(State(st): St, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Token>>> {
    let limit = q.limit()?;
    let after: Option<i64> = q
        .after()?
        .map(|c| {
            c.parse()
                .map_err(|_| ApiError::bad_field("cursor", "cursor is not one this API gave"))
        })
        .transpose()?;
    let rows: Vec<Token> = sqlx::query_as(
        "SELECT id, name, role, created_at, last_used_at, revoked_at FROM api_tokens \
         WHERE $1::bigint IS NULL OR id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&st.db)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |t| t.id.to_string())))
}

/// Creates a token. Its secret is in this response only; the response is
/// never stored, so an `Idempotency-Key` retry creates another token.
#[utoipa::path(post, path = "/v1/tokens", tag = "catalog", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_token(
    State(st): St,
    caller: Caller,
    JsonBody(body): JsonBody<NewToken>,
) -> ApiResult<(StatusCode, HeaderMap, Json<CreatedToken>)> {
    let name = body.name.trim();
    if !(1..=100).contains(&name.chars().count()) || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 100 characters, without control characters",
        ));
    }
    let secret = crate::secrets::new_token();
    let mut tx = st.db.begin().await?;
    let token: Token = sqlx::query_as(
        "INSERT INTO api_tokens (name, role, token_hash) VALUES ($1, $2, $3) \
         RETURNING id, name, role, created_at, last_used_at, revoked_at",
    )
    .bind(name)
    .bind(body.role)
    .bind(crate::secrets::token_hash(&secret))
    .fetch_one(&mut *tx)
    .await?;
    let path = format!("/v1/tokens/{}", token.id);
    audit(
        &mut tx,
        &caller,
        "token.create",
        &path,
        None::<&()>,
        Some(&token),
    )
    .await?;
    tx.commit().await?;
    let mut headers = location(&path);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((
        StatusCode::CREATED,
        headers,
        Json(CreatedToken { token, secret }),
    ))
}

/// Revokes a token at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "catalog",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_token(State(st): St, caller: Caller, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let mut tx = st.db.begin().await?;
    let token: Option<Token> = sqlx::query_as(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 \
         RETURNING id, name, role, created_at, last_used_at, revoked_at",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let token = token.ok_or_else(|| ApiError::not_found(format!("token {id}")))?;
    audit(
        &mut tx,
        &caller,
        "token.revoke",
        &format!("/v1/tokens/{id}"),
        None::<&()>,
        Some(&token),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- helpers

/// A `Location` header.
pub(crate) fn location(path: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(path) {
        headers.insert(header::LOCATION, v);
    }
    headers
}

/// A unique violation as a 409 naming `field`; other errors as usual.
pub(crate) fn conflict_as(e: sqlx::Error, field: &str, detail: String) -> ApiError {
    match ApiError::from(e) {
        e if e.status() == StatusCode::CONFLICT => ApiError::conflict_on(field, detail),
        e => e,
    }
}
