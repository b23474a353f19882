//! Tenant moves: `POST /v1/tenants/{id}/move` starts one (a shard, the
//! ring's choice, a registered dedicated cluster, or a new dedicated
//! database), `DELETE /v1/tenants/{id}/move` cancels one that has not
//! started copying. The work itself is [`crate::moves`].

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::catalog::location;
use super::problem::{ApiError, ApiResult, Problem};
use super::request::{Caller, JsonBody, Path, audit};
use super::tenants::{PlacementInput, Tenant, audited, fetch_tenant, lock_tenant, place};
use crate::app::AppState;
use crate::jobs;
use crate::moves::MOVE;

type St = State<Arc<AppState>>;

/// How long a request waits for its move before answering 202.
const INLINE_MOVE_WAIT: Duration = Duration::from_secs(30);

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(move_tenant, cancel_move))
}

/// `POST /v1/tenants/{id}/move`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// Where to: `{"kind": "shared"}` (the ring's choice among the region's
    /// active shards), `{"kind": "shared", "shard": ...}`, `{"kind":
    /// "dedicated", "cluster": ...}`, or `{"kind": "dedicated", "server":
    /// ..., "pools": ...}` for a new database. In the tenant's region.
    pub placement: PlacementInput,
}

/// Moves a tenant to another shard or dedicated cluster.
///
/// Its rows are copied, then its routing switched, then its rows removed
/// from where it was; its writes are held by the gateways only while the
/// rows are copied. 200 with the tenant on its new target when the move
/// finished within the request; 202 while it goes on (`job` names it; the
/// tenant shows `moving_to`, and `moving` while its writes are held).
/// Repeating the request for the same destination resumes a failed move.
#[utoipa::path(post, path = "/v1/tenants/{id}/move", tag = "tenants", request_body = MoveRequest,
    responses((status = 200, body = Tenant), (status = 202, body = Tenant), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
async fn move_tenant(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MoveRequest>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Tenant>)> {
    let mut tx = st.db.begin().await?;
    // Placement reads the shards; serialise it with other placements.
    sqlx::query("SELECT pg_advisory_xact_lock(5378)")
        .execute(&mut *tx)
        .await?;
    let before = lock_tenant(&mut tx, &id).await?;
    let from = match (before.status.as_str(), &before.target) {
        ("provisioning", _) | (_, None) => {
            return Err(ApiError::conflict(
                "the tenant is still being provisioned; move it once it is active",
            ));
        }
        ("deleted", _) => return Err(ApiError::conflict("the tenant is deleted")),
        (_, Some(target)) => target.clone(),
    };
    if let Some(to) = &before.moving_to {
        let kind: String = sqlx::query_scalar("SELECT kind::text FROM targets WHERE id = $1")
            .bind(to)
            .fetch_one(&mut *tx)
            .await?;
        if !names(&body.placement, to, &kind, &before.slug) {
            return Err(ApiError::conflict_on(
                "placement",
                format!("the tenant is already being moved to {to:?}; cancel that move first"),
            ));
        }
        // The same move again: run it now if it failed.
        let resumed = sqlx::query(
            "UPDATE jobs SET state = 'pending', attempts = 0, updated_at = now() \
             WHERE kind = $1 AND params->>'tenant' = $2 AND params->>'to' = $3 AND state = 'failed'",
        )
        .bind(MOVE)
        .bind(&id)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        if resumed.rows_affected() > 0 {
            audit(
                &mut tx,
                &caller,
                "tenant.move.resume",
                &format!("/v1/tenants/{id}"),
                Some(&before),
                Some(&before),
            )
            .await?;
        }
        tx.commit().await?;
        return finish(&st, &id, to).await;
    }
    let (to, create_database) = place(
        &st,
        &mut tx,
        &id,
        &before.slug,
        &before.region,
        &body.placement,
    )
    .await?;
    if to == from {
        return Err(ApiError::conflict_on(
            "placement",
            format!("the tenant is already on {to:?}"),
        ));
    }
    sqlx::query("UPDATE tenants SET moving_to = $2, updated_at = now() WHERE id = $1")
        .bind(&id)
        .bind(&to)
        .execute(&mut *tx)
        .await?;
    let job = jobs::create(
        &mut tx,
        MOVE,
        &json!({ "tenant": id, "from": from, "to": to, "create_database": create_database }),
    )
    .await?;
    audited(&mut tx, &caller, "tenant.move", &id, &before).await?;
    tx.commit().await?;
    tracing::info!(tenant = %id, from = %from, to = %to, job, "tenant move started");
    finish(&st, &id, &to).await
}

/// Whether `placement` asks for the move already under way to `target`
/// (of `kind`): the same shard, any shard when none is named, the same
/// cluster, or the new dedicated database of tenant `slug` (`ded-<slug>`).
fn names(placement: &PlacementInput, target: &str, kind: &str, slug: &str) -> bool {
    match placement {
        PlacementInput::Shared { shard: None } => kind == "shard",
        PlacementInput::Shared { shard } => shard.as_deref() == Some(target),
        PlacementInput::Dedicated {
            cluster, server, ..
        } => {
            cluster.as_deref() == Some(target)
                || (server.is_some() && target == format!("ded-{slug}"))
        }
    }
}

/// Runs the tenant's move job now (or waits for whoever runs it) and
/// answers with the tenant: 200 once it is on `to`, else 202.
async fn finish(
    st: &Arc<AppState>,
    id: &str,
    to: &str,
) -> ApiResult<(StatusCode, HeaderMap, Json<Tenant>)> {
    let tenant = fetch_tenant(&st.db, id)
        .await?
        .ok_or_else(ApiError::internal)?;
    if let Some(job) = tenant.job {
        jobs::run_or_wait(st.clone(), job, INLINE_MOVE_WAIT).await;
    }
    let tenant = fetch_tenant(&st.db, id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let done = tenant.target.as_deref() == Some(to) && tenant.moving_to.is_none();
    let status = if done {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let headers = match tenant.job.filter(|_| !done) {
        Some(job) => location(&format!("/v1/jobs/{job}")),
        None => HeaderMap::new(),
    };
    Ok((status, headers, Json(tenant)))
}

/// Cancels a move that has not started copying; the tenant stays where it is.
#[utoipa::path(delete, path = "/v1/tenants/{id}/move", tag = "tenants",
    responses((status = 200, body = Tenant), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn cancel_move(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Tenant>> {
    let mut tx = st.db.begin().await?;
    let before = lock_tenant(&mut tx, &id).await?;
    let Some(to) = before.moving_to.clone() else {
        return Err(ApiError::conflict("the tenant is not being moved"));
    };
    let cancelled = sqlx::query(
        "UPDATE tenants SET moving_to = NULL, updated_at = now() \
         WHERE id = $1 AND writes_held_since IS NULL",
    )
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    if cancelled.rows_affected() == 0 {
        return Err(ApiError::conflict(
            "the move is copying the tenant's rows; it finishes or gives up within seconds, retry then",
        ));
    }
    // Only this move's job: an earlier move's clean-up still has to run.
    sqlx::query(
        "UPDATE jobs SET state = 'succeeded', result = '{\"superseded\": \"move cancelled\"}', \
            lease_until = NULL, updated_at = now() \
         WHERE kind = $1 AND params->>'tenant' = $2 AND params->>'to' = $3 AND state <> 'succeeded'",
    )
    .bind(MOVE)
    .bind(&id)
    .bind(&to)
    .execute(&mut *tx)
    .await?;
    let after = audited(&mut tx, &caller, "tenant.move.cancel", &id, &before).await?;
    tx.commit().await?;
    Ok(Json(after))
}
