//! Tenants: provisioning onto a shard or a dedicated cluster, plan
//! changes, suspend and resume, soft delete, and cache purges.
//!
//! Creating a tenant commits its placement and a `provision_tenant` job in
//! one transaction, with the tenant in `provisioning` (not routed). The job
//! then makes the tenant exist in its database (creating and migrating a
//! dedicated database when asked) and, in one last catalog transaction,
//! marks it active and bumps the routing snapshot. The request runs the job
//! itself and answers 201 when it finishes; if it cannot (a database down),
//! it answers 202 and the job worker retries until it does. Repeating the
//! same POST resumes a tenant still provisioning, so nothing is ever left
//! half-routed.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use router::{PlacementRing, ShardCandidate, TargetId, TargetStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::catalog::{NewTarget, conflict_as, insert_target, location};
use super::problem::{ApiError, ApiResult, Problem};
use super::request::{Caller, JsonBody, Page, PageQuery, Path, Query, audit, publish};
use super::validate::{self, PoolsInput};
use crate::app::AppState;
use crate::jobs;
use crate::secrets::{Dsn, Purpose};

type St = State<Arc<AppState>>;

/// How long a request waits for its provisioning job before answering 202.
const INLINE_JOB_WAIT: Duration = Duration::from_secs(20);

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
        .routes(routes!(suspend_tenant))
        .routes(routes!(resume_tenant))
        .routes(routes!(purge_cache))
}

/// A tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Tenant {
    /// Immutable, opaque id, sent upstream as `x-tenant-id`.
    pub id: String,
    /// `{slug}.{base_domain}`.
    pub slug: String,
    /// Plan name.
    pub plan: String,
    /// Home region.
    pub region: String,
    /// The shard or dedicated cluster holding its data.
    pub target: Option<String>,
    /// `shard` or `dedicated`.
    pub placement: Option<String>,
    /// `provisioning`, `active`, `suspended`, `moving` (a move holds its
    /// writes for the moment: gateways serve reads and hold writes) or
    /// `deleted`.
    pub status: String,
    /// The target a move in progress takes it to.
    pub moving_to: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// The job still working on it (provisioning, move or purge), if any.
    pub job: Option<i64>,
}

/// A tenant's status as the API shows it: `moving` while a move holds
/// its writes.
macro_rules! status_sql {
    () => {
        "CASE WHEN n.writes_held_since IS NOT NULL AND n.status = 'active' \
            THEN 'moving' ELSE n.status::text END"
    };
}

const TENANT_SELECT: &str = concat!(
    "SELECT n.id, n.slug, n.plan, n.region, n.target_id AS target, \
        t.kind::text AS placement, ",
    status_sql!(),
    " AS status, n.moving_to, \
        n.created_at, n.updated_at, n.deleted_at, \
        (SELECT max(j.id) FROM jobs j \
            WHERE j.kind IN ('provision_tenant', 'move_tenant', 'purge_tenant') \
            AND j.params->>'tenant' = n.id AND j.state <> 'succeeded') AS job \
    FROM tenants n LEFT JOIN targets t ON t.id = n.target_id"
);

pub(crate) async fn fetch_tenant<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: &str,
) -> Result<Option<Tenant>, sqlx::Error> {
    let sql = format!("{TENANT_SELECT} WHERE n.id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Locks tenant `id`'s row for the rest of `tx` and reads it; 404 when
/// there is none.
pub(super) async fn lock_tenant(tx: &mut sqlx::PgConnection, id: &str) -> ApiResult<Tenant> {
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    fetch_tenant(&mut *tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant {id:?}")))
}

/// Reads tenant `id` after a change in `tx` and writes the change's audit
/// row (`action`, from `before` to now); the tenant as it is now.
pub(super) async fn audited(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    caller: &Caller,
    action: &str,
    id: &str,
    before: &Tenant,
) -> ApiResult<Tenant> {
    let after = fetch_tenant(&mut **tx, id)
        .await?
        .ok_or_else(ApiError::internal)?;
    audit(
        tx,
        caller,
        action,
        &format!("/v1/tenants/{id}"),
        Some(before),
        Some(&after),
    )
    .await?;
    Ok(after)
}

/// A tenant still provisioning under `slug`, if any.
async fn fetch_provisioning_by_slug<'e>(
    db: impl sqlx::PgExecutor<'e>,
    slug: &str,
) -> Result<Option<Tenant>, sqlx::Error> {
    let sql = format!("{TENANT_SELECT} WHERE n.slug = $1 AND n.status = 'provisioning'");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(slug)
        .fetch_optional(db)
        .await
}

/// Where a new tenant goes.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PlacementInput {
    /// On a shard: the one named, or the consistent-hash ring's choice
    /// among the region's active shards.
    Shared {
        /// An explicit shard.
        shard: Option<String>,
    },
    /// On a dedicated cluster: a registered one (`cluster`), or a new
    /// database created on a cluster server (`server` + `pools`).
    Dedicated {
        /// A registered dedicated cluster nobody uses yet.
        cluster: Option<String>,
        /// A cluster server to create the database on.
        server: Option<String>,
        /// The new cluster's app servers by region (with `server`).
        pools: Option<PoolsInput>,
    },
}

/// `POST /v1/tenants`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Immutable id (letters, digits, `.`, `_`, `:`, `-`; at most 64);
    /// generated when absent.
    pub id: Option<String>,
    /// A DNS label, unique.
    pub slug: String,
    /// Plan name.
    pub plan: String,
    /// Home region.
    pub region: String,
    /// Default: shared, placed by the ring.
    pub placement: Option<PlacementInput>,
}

/// `GET /v1/tenants` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantFilter {
    /// Only tenants in this status.
    pub status: Option<String>,
    /// Only tenants of this home region.
    pub region: Option<String>,
    /// Only tenants on this target.
    pub target: Option<String>,
}

/// Lists tenants by id.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(PageQuery, TenantFilter),
    responses((status = 200, body = Page<Tenant>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_tenants(
    State(st): St,
    Query(q): Query<PageQuery>,
    Query(f): Query<TenantFilter>,
) -> ApiResult<Json<Page<Tenant>>> {
    let limit = q.limit()?;
    if let Some(s) = &f.status
        && !matches!(
            s.as_str(),
            "provisioning" | "active" | "suspended" | "moving" | "deleted"
        )
    {
        return Err(ApiError::bad_field(
            "status",
            "status must be provisioning, active, suspended, moving or deleted",
        ));
    }
    let sql = format!(
        "{TENANT_SELECT} WHERE ($1::text IS NULL OR n.id > $1) AND ($2::text IS NULL OR {status} = $2) \
         AND ($3::text IS NULL OR n.region = $3) AND ($4::text IS NULL OR n.target_id = $4) \
         ORDER BY n.id LIMIT $5",
        status = status_sql!()
    );
    let rows: Vec<Tenant> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(q.after()?)
        .bind(&f.status)
        .bind(&f.region)
        .bind(&f.target)
        .bind(limit + 1)
        .fetch_all(&st.db)
        .await?;
    Ok(Json(Page::from_rows(rows, limit, |t| t.id.clone())))
}

/// Provisions a tenant: places it, makes it exist in its database, then routes it.
///
/// 201 when it is active; 202 when its database could not be reached yet
/// (`job` names the job that completes it). Repeating the request for a
/// tenant still provisioning resumes it.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, body = Tenant), (status = 202, body = Tenant), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn create_tenant(
    State(st): St,
    caller: Caller,
    JsonBody(body): JsonBody<NewTenant>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Tenant>)> {
    let id = match &body.id {
        Some(id) => validate::tenant_id("id", id)?,
        None => {
            let mut bytes = [0u8; 8];
            crate::secrets::random_bytes(&mut bytes);
            format!("tn_{}", hex::encode(bytes))
        }
    };
    let slug = validate::slug("slug", &body.slug)?;
    let plan = validate::plan("plan", &body.plan)?;
    let region = validate::region("region", &body.region)?;
    let placement = body
        .placement
        .clone()
        .unwrap_or(PlacementInput::Shared { shard: None });

    let mut tx = st.db.begin().await?;
    // Placement reads the shards; serialise it with other placements.
    sqlx::query("SELECT pg_advisory_xact_lock(5378)")
        .execute(&mut *tx)
        .await?;
    let existing = match &body.id {
        Some(_) => fetch_tenant(&mut *tx, &id).await?,
        // No id: the same request repeated finds its tenant by slug.
        None => fetch_provisioning_by_slug(&mut *tx, &slug).await?,
    };
    if let Some(existing) = existing {
        let same = existing.slug == slug && existing.plan == plan && existing.region == region;
        if existing.status == "provisioning" && same {
            tx.commit().await?;
            return finish(&st, existing).await;
        }
        return Err(match body.id {
            Some(_) => ApiError::conflict_on("id", format!("tenant {id:?} already exists")),
            None => ApiError::conflict_on("slug", format!("the slug {slug:?} is taken")),
        });
    }
    let exists: Option<(String,)> = sqlx::query_as("SELECT 1::text FROM plans WHERE name = $1")
        .bind(&plan)
        .fetch_optional(&mut *tx)
        .await?;
    exists.ok_or_else(|| ApiError::invalid("plan", format!("no plan {plan:?}")))?;
    let exists: Option<(String,)> = sqlx::query_as("SELECT 1::text FROM regions WHERE name = $1")
        .bind(&region)
        .fetch_optional(&mut *tx)
        .await?;
    exists.ok_or_else(|| ApiError::invalid("region", format!("no region {region:?}")))?;

    let (target, create_database) = place(&st, &mut tx, &id, &slug, &region, &placement).await?;
    let tenant = sqlx::query(
        "INSERT INTO tenants (id, slug, plan, region, target_id, status) \
         VALUES ($1, $2, $3, $4, $5, 'provisioning')",
    )
    .bind(&id)
    .bind(&slug)
    .bind(&plan)
    .bind(&region)
    .bind(&target)
    .execute(&mut *tx)
    .await
    .map_err(|e| conflict_as(e, "slug", format!("the slug {slug:?} is taken")));
    tenant?;
    let job = jobs::create(
        &mut tx,
        jobs::PROVISION,
        &serde_json::json!({ "tenant": id, "create_database": create_database }),
    )
    .await?;
    let tenant = fetch_tenant(&mut *tx, &id)
        .await?
        .ok_or_else(ApiError::internal)?;
    audit(
        &mut tx,
        &caller,
        "tenant.create",
        &format!("/v1/tenants/{id}"),
        None::<&()>,
        Some(&tenant),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(tenant = %id, target = %target, job, "tenant placed; provisioning");
    finish(&st, tenant).await
}

/// Runs the tenant's provisioning job now (or waits for the worker running
/// it) and answers with the tenant.
async fn finish(
    st: &Arc<AppState>,
    tenant: Tenant,
) -> ApiResult<(StatusCode, HeaderMap, Json<Tenant>)> {
    let path = format!("/v1/tenants/{}", tenant.id);
    if let Some(job) = tenant.job {
        jobs::run_or_wait(st.clone(), job, INLINE_JOB_WAIT).await;
    }
    let tenant = fetch_tenant(&st.db, &tenant.id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let status = if tenant.status == "provisioning" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((status, location(&path), Json(tenant)))
}

/// Chooses the tenant's target, creating a dedicated one when asked;
/// returns it and whether its database must be created.
pub(super) async fn place(
    st: &AppState,
    tx: &mut sqlx::PgConnection,
    id: &str,
    slug: &str,
    region: &str,
    placement: &PlacementInput,
) -> ApiResult<(String, bool)> {
    match placement {
        PlacementInput::Shared { shard: Some(shard) } => {
            let shard = validate::target("placement.shard", shard)?;
            let row: Option<(String, String, String)> = sqlx::query_as(
                "SELECT kind::text, region, status::text FROM targets WHERE id = $1",
            )
            .bind(&shard)
            .fetch_optional(&mut *tx)
            .await?;
            let (kind, shard_region, status) = row.ok_or_else(|| {
                ApiError::invalid("placement.shard", format!("no shard {shard:?}"))
            })?;
            if kind != "shard" {
                return Err(ApiError::invalid(
                    "placement.shard",
                    format!("{shard:?} is a dedicated cluster, not a shard"),
                ));
            }
            if shard_region != region {
                return Err(ApiError::invalid(
                    "placement.shard",
                    format!(
                        "shard {shard:?} is in {shard_region:?}, not the tenant's region {region:?}"
                    ),
                ));
            }
            if status != "active" {
                return Err(ApiError::invalid(
                    "placement.shard",
                    format!("shard {shard:?} is {status} and takes no new tenants"),
                ));
            }
            Ok((shard, false))
        }
        PlacementInput::Shared { shard: None } => {
            let shards: Vec<(String, i32, String)> = sqlx::query_as(
                "SELECT id, weight, status::text FROM targets WHERE kind = 'shard' AND region = $1",
            )
            .bind(region)
            .fetch_all(&mut *tx)
            .await?;
            let ring = PlacementRing::new(shards.into_iter().filter_map(|(id, weight, status)| {
                Some(ShardCandidate {
                    id: TargetId::new(&id).ok()?,
                    weight: u32::try_from(weight).unwrap_or(1),
                    status: match status.as_str() {
                        "active" => TargetStatus::Active,
                        "draining" => TargetStatus::Draining,
                        _ => TargetStatus::Offline,
                    },
                })
            }));
            let shard = ring.propose(id).ok_or_else(|| {
                ApiError::conflict_on(
                    "region",
                    format!("region {region:?} has no active shard to place the tenant on"),
                )
            })?;
            Ok((shard.to_string(), false))
        }
        PlacementInput::Dedicated {
            cluster: Some(cluster),
            server: None,
            pools: None,
        } => {
            let cluster = validate::target("placement.cluster", cluster)?;
            let row: Option<(String, String, i64)> = sqlx::query_as(
                "SELECT kind::text, region, (SELECT count(*) FROM tenants n \
                    WHERE (n.target_id = t.id AND n.status <> 'deleted') OR n.moving_to = t.id) \
                 FROM targets t WHERE id = $1 FOR UPDATE",
            )
            .bind(&cluster)
            .fetch_optional(&mut *tx)
            .await?;
            let (kind, cluster_region, used) = row.ok_or_else(|| {
                ApiError::invalid("placement.cluster", format!("no cluster {cluster:?}"))
            })?;
            if kind != "dedicated" {
                return Err(ApiError::invalid(
                    "placement.cluster",
                    format!("{cluster:?} is a shard, not a dedicated cluster"),
                ));
            }
            if cluster_region != region {
                return Err(ApiError::invalid(
                    "placement.cluster",
                    format!("cluster {cluster:?} is in {cluster_region:?}, not {region:?}"),
                ));
            }
            if used > 0 {
                return Err(ApiError::conflict_on(
                    "placement.cluster",
                    format!("cluster {cluster:?} already serves a tenant"),
                ));
            }
            Ok((cluster, false))
        }
        PlacementInput::Dedicated {
            cluster: None,
            server: Some(server),
            pools: Some(pools),
        } => {
            let server = validate::target("placement.server", server)?;
            let row: Option<(String, String, Option<Vec<u8>>)> = sqlx::query_as(
                "SELECT region, admin_dsn, admin_password_enc FROM cluster_servers WHERE id = $1",
            )
            .bind(&server)
            .fetch_optional(&mut *tx)
            .await?;
            let (server_region, admin_dsn, sealed) = row.ok_or_else(|| {
                ApiError::invalid("placement.server", format!("no cluster server {server:?}"))
            })?;
            if server_region != region {
                return Err(ApiError::invalid(
                    "placement.server",
                    format!("server {server:?} is in {server_region:?}, not {region:?}"),
                ));
            }
            let admin = stored_dsn(st, admin_dsn, sealed.as_deref(), Purpose::AdminPassword)?;
            // The cluster is `ded-<slug>` (a target id, at most 64) on
            // database `t_<slug>` (PostgreSQL truncates names over 63).
            if slug.len() > 60 {
                return Err(ApiError::invalid(
                    "slug",
                    "a tenant with a dedicated database has a slug of at most 60 characters",
                ));
            }
            let database = format!("t_{}", slug.replace('-', "_"));
            let dsn = admin
                .with_database(&database)
                .map_err(|e| ApiError::invalid("placement.server", e.to_string()))?;
            let target = NewTarget {
                id: format!("ded-{slug}"),
                region: region.to_owned(),
                weight: None,
                status: None,
                dsn: dsn_text(&dsn),
                pools: pools.clone(),
            };
            insert_target(tx, st, "dedicated", &target)
                .await
                .map_err(|e| {
                    if e.status() == StatusCode::CONFLICT {
                        ApiError::conflict_on(
                            "slug",
                            format!("a cluster named {:?} already exists", target.id),
                        )
                    } else {
                        e
                    }
                })?;
            Ok((target.id, true))
        }
        PlacementInput::Dedicated { .. } => Err(ApiError::invalid(
            "placement",
            "a dedicated placement names either `cluster`, or `server` and `pools`",
        )),
    }
}

/// A stored DSN with its password decrypted.
pub(crate) fn stored_dsn(
    st: &AppState,
    public: String,
    sealed: Option<&[u8]>,
    purpose: Purpose,
) -> ApiResult<Dsn> {
    Dsn::from_stored(public, sealed, st.key.as_ref(), purpose).map_err(|e| {
        tracing::error!(error = %e, "cannot use a stored password");
        ApiError::unavailable(e.to_string())
    })
}

/// The full connection string again (only ever passed straight back into
/// [`insert_target`], which splits and seals it).
fn dsn_text(dsn: &Dsn) -> String {
    match &dsn.password {
        None => dsn.public.clone(),
        Some(p) => {
            let mut url = url::Url::parse(&dsn.public).expect("a stored DSN parses");
            let _ = url.set_password(Some(p));
            url.to_string()
        }
    }
}

/// One tenant.
#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants",
    responses((status = 200, body = Tenant), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_tenant(State(st): St, Path(id): Path<String>) -> ApiResult<Json<Tenant>> {
    fetch_tenant(&st.db, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("tenant {id:?}")))
}

/// `PATCH /v1/tenants/{id}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    /// A new plan.
    pub plan: Option<String>,
}

/// Changes a tenant's plan; gateways apply the new limits with the next snapshot.
#[utoipa::path(patch, path = "/v1/tenants/{id}", tag = "tenants", request_body = TenantUpdate,
    responses((status = 200, body = Tenant), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
async fn update_tenant(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TenantUpdate>,
) -> ApiResult<Json<Tenant>> {
    let plan = body
        .plan
        .as_deref()
        .map(|p| validate::plan("plan", p))
        .transpose()?;
    transition(&st, &caller, &id, "tenant.update", |before| {
        if before.status == "deleted" {
            return Err(ApiError::conflict("the tenant is deleted"));
        }
        Ok((
            plan.clone().unwrap_or_else(|| before.plan.clone()),
            before.status.clone(),
        ))
    })
    .await
    .map(Json)
}

/// Suspends a tenant: gateways answer its requests with 403.
#[utoipa::path(post, path = "/v1/tenants/{id}/suspend", tag = "tenants",
    responses((status = 200, body = Tenant), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn suspend_tenant(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Tenant>> {
    transition(&st, &caller, &id, "tenant.suspend", |before| {
        match before.status.as_str() {
            "active" | "suspended" => Ok((before.plan.clone(), "suspended".to_owned())),
            other => Err(ApiError::conflict(format!(
                "a tenant that is {other} cannot be suspended"
            ))),
        }
    })
    .await
    .map(Json)
}

/// Resumes a suspended tenant.
#[utoipa::path(post, path = "/v1/tenants/{id}/resume", tag = "tenants",
    responses((status = 200, body = Tenant), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn resume_tenant(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Tenant>> {
    transition(&st, &caller, &id, "tenant.resume", |before| {
        match before.status.as_str() {
            "active" | "suspended" => Ok((before.plan.clone(), "active".to_owned())),
            other => Err(ApiError::conflict(format!(
                "a tenant that is {other} cannot be resumed"
            ))),
        }
    })
    .await
    .map(Json)
}

/// Changes a tenant's plan and status in one audited, published transaction.
async fn transition(
    st: &AppState,
    caller: &Caller,
    id: &str,
    action: &str,
    change: impl FnOnce(&Tenant) -> ApiResult<(String, String)>,
) -> ApiResult<Tenant> {
    let mut tx = st.db.begin().await?;
    let before = lock_tenant(&mut tx, id).await?;
    if before.status == "moving" {
        return Err(ApiError::conflict(
            "the tenant is being moved and its writes are held; retry in a few seconds",
        ));
    }
    let (plan, status) = change(&before)?;
    if plan == before.plan && status == before.status {
        return Ok(before);
    }
    sqlx::query(
        "UPDATE tenants SET plan = $2, status = $3::tenant_status, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(&plan)
    .bind(&status)
    .execute(&mut *tx)
    .await
    .map_err(|e| match ApiError::from(e) {
        e if e.status() == StatusCode::UNPROCESSABLE_ENTITY => {
            ApiError::invalid("plan", format!("no plan {plan:?}"))
        }
        e => e,
    })?;
    let after = audited(&mut tx, caller, action, id, &before).await?;
    if before.status != "provisioning" {
        publish(&mut tx, &format!("{action} {id}")).await?;
    }
    tx.commit().await?;
    Ok(after)
}

/// Deletes a tenant: at once unknown to gateways (404) and its domains
/// released; a purge job then removes its rows from its database.
#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants",
    responses((status = 200, body = Tenant), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
async fn delete_tenant(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Tenant>> {
    let mut tx = st.db.begin().await?;
    let before = lock_tenant(&mut tx, &id).await?;
    if before.status == "deleted" {
        return Ok(Json(before));
    }
    if before.target.is_none() {
        return Err(ApiError::conflict(
            "the tenant is still being placed; retry shortly",
        ));
    }
    if let Some(to) = &before.moving_to {
        return Err(ApiError::conflict(format!(
            "the tenant is being moved to {to:?}; wait for the move or cancel it \
             (DELETE /v1/tenants/{id}/move) first"
        )));
    }
    sqlx::query(
        "UPDATE tenants SET status = 'deleted', deleted_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    let domains: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM domains WHERE tenant_id = $1 AND state <> 'removed'")
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?;
    crate::domains::remove(&mut tx, &domains).await?;
    // A provisioning job still open has nothing left to do.
    sqlx::query(
        "UPDATE jobs SET state = 'succeeded', result = '{\"superseded\": \"tenant deleted\"}', updated_at = now() \
         WHERE kind = $1 AND params->>'tenant' = $2 AND state <> 'succeeded'",
    )
    .bind(jobs::PROVISION)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    let job = jobs::create(&mut tx, jobs::PURGE, &serde_json::json!({ "tenant": id })).await?;
    let after = audited(&mut tx, &caller, "tenant.delete", &id, &before).await?;
    publish(&mut tx, &format!("tenant.delete {id}")).await?;
    tx.commit().await?;
    tokio::spawn(jobs::run_or_wait(st.clone(), job, Duration::from_secs(60)));
    Ok(Json(after))
}

/// `POST /v1/tenants/{id}/cache/purge`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Paths to purge (each starting with `/`, query included if cached
    /// with one); absent: everything the tenant has cached.
    pub paths: Option<Vec<String>>,
}

/// A purge sent to the gateways.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeAccepted {
    /// The tenant.
    pub tenant: String,
    /// The paths, or absent for the whole tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// The Redis stream entry id gateways read it from.
    pub stream_id: String,
}

/// Purges a tenant's cached responses on every gateway (through the Redis
/// stream gateways follow; needs `--redis-url`).
#[utoipa::path(post, path = "/v1/tenants/{id}/cache/purge", tag = "operations", request_body = PurgeRequest,
    responses((status = 202, body = PurgeAccepted), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
async fn purge_cache(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PurgeRequest>,
) -> ApiResult<(StatusCode, Json<PurgeAccepted>)> {
    if let Some(paths) = &body.paths {
        if paths.is_empty() || paths.len() > 1000 {
            return Err(ApiError::invalid(
                "paths",
                "must list 1 to 1000 paths, or be absent to purge everything",
            ));
        }
        for (i, p) in paths.iter().enumerate() {
            if !p.starts_with('/')
                || p.len() > 8192
                || p.chars().any(|c| c.is_control() || c == ' ')
            {
                return Err(ApiError::invalid(
                    format!("paths[{i}]"),
                    "must start with '/' and hold no spaces or control characters (at most 8192 bytes)",
                ));
            }
        }
    }
    let tenant = fetch_tenant(&st.db, &id)
        .await?
        .filter(|t| t.status != "deleted")
        .ok_or_else(|| ApiError::not_found(format!("tenant {id:?}")))?;
    let Some(redis) = st.redis.clone() else {
        return Err(ApiError::unavailable(
            "cache purges travel through Redis; start tenant-admin with --redis-url (REDIS_URL)",
        ));
    };
    let mut redis = redis;
    let paths_json = body
        .paths
        .as_ref()
        .map(|p| serde_json::to_string(p).unwrap_or_default())
        .unwrap_or_default();
    let sent: redis::RedisResult<String> = redis::cmd("XADD")
        .arg(crate::PURGE_STREAM)
        .arg("MAXLEN")
        .arg("~")
        .arg(10_000)
        .arg("*")
        .arg("origin")
        .arg("tenant-admin")
        .arg("tenant")
        .arg(&tenant.id)
        .arg("paths")
        .arg(paths_json)
        .query_async(&mut redis)
        .await;
    let stream_id = sent.map_err(|e| {
        tracing::warn!(error = %e, "cannot publish a cache purge");
        ApiError::unavailable("Redis is unreachable; the purge was not sent, retry")
    })?;
    let accepted = PurgeAccepted {
        tenant: tenant.id.clone(),
        paths: body.paths.clone(),
        stream_id,
    };
    let mut tx = st.db.begin().await?;
    audit(
        &mut tx,
        &caller,
        "tenant.cache_purge",
        &format!("/v1/tenants/{id}/cache"),
        None::<&()>,
        Some(&accepted),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
