//! What every request goes through: a request id, the caller's token and
//! role, `Idempotency-Key` replay on POST, JSON bodies with errors that
//! name the field, cursor pagination, and the audit row of a mutation.

use std::sync::Arc;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, Transaction};
use utoipa::{IntoParams, ToSchema};

use super::problem::{ApiError, ApiResult};
use crate::app::AppState;
use crate::secrets;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, if any.
pub fn current_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Middleware: takes a valid `x-request-id` or makes one, runs the request
/// with it in scope, and returns it on the response.
pub async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_request_id(id))
        .map_or_else(new_request_id, str::to_owned);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    let status = response.status();
    tracing::info!(
        request_id = %id,
        method = %method,
        path = %path,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    secrets::random_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[sqlx(type_name = "token_role", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and changes everything.
    Operator,
    /// Reads everything, changes nothing.
    Viewer,
    /// Reads the routing feed only.
    Gateway,
}

/// Who is calling: the token behind the request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id.
    pub token_id: i64,
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

impl Caller {
    /// How the caller appears in the audit log.
    pub fn actor(&self) -> String {
        let role = match self.role {
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Gateway => "gateway",
        };
        format!("{} ({role})", self.name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))
    }
}

/// Middleware on `/v1`: authenticates the bearer token and checks its role
/// may make this request (`viewer` reads, `operator` reads and writes,
/// `gateway` reads the routing feed and its certificates only, which no
/// other role may read).
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path == "/v1/openapi.json" {
        return next.run(request).await;
    }
    let caller = match caller(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    // Certificate private keys go to gateways only.
    let keys = path == "/v1/routing/certificates";
    let allowed = match caller.role {
        Role::Operator => !keys,
        Role::Viewer => reads && !keys,
        Role::Gateway => reads && (keys || path == "/v1/routing/snapshot"),
    };
    if !allowed {
        let what = if reads {
            "read this resource"
        } else {
            "make changes"
        };
        return ApiError::forbidden(format!(
            "the token {:?} has the {:?} role, which may not {what}",
            caller.name, caller.role
        ))
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
    let row: Option<(i64, String, Role)> = sqlx::query_as(
        "WITH t AS (SELECT id, name, role, last_used_at FROM api_tokens \
                    WHERE token_hash = $1 AND revoked_at IS NULL), \
              touched AS (UPDATE api_tokens SET last_used_at = now() \
                    WHERE id IN (SELECT id FROM t WHERE last_used_at IS NULL \
                                 OR last_used_at < now() - interval '60 seconds')) \
         SELECT id, name, role FROM t",
    )
    .bind(secrets::token_hash(token))
    .fetch_optional(&state.db)
    .await?;
    let (token_id, name, role) =
        row.ok_or_else(|| ApiError::unauthorized("the token is unknown or revoked"))?;
    Ok(Caller {
        token_id,
        name,
        role,
    })
}

/// An `Idempotency-Key` row not finished this long after it was taken is
/// treated as abandoned (its request died with its process).
const ABANDONED_AFTER_SECS: i32 = 60;

/// Middleware on POST: a request repeated with the same `Idempotency-Key`
/// (per token) and the same method, path and body gets the first response
/// again, with `Idempotent-Replayed: true`; the same key with another
/// request is a 422; a key whose first request is still running is a 409.
pub async fn idempotency(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match replay_or_run(&state, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn replay_or_run(
    state: &AppState,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let Some(key) = request.headers().get("idempotency-key") else {
        return Ok(next.run(request).await);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::bad_field(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
            .into_response()
        })?;
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return Ok(next.run(request).await);
    };
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY_BYTES).into_response())?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update(b" ");
    hasher.update(parts.uri.path_and_query().map_or("", |p| p.as_str()));
    hasher.update(b"\n");
    hasher.update(&bytes);
    let hash = hasher.finalize().to_vec();

    let db = |e: sqlx::Error| ApiError::from(e).into_response();
    // Take the key, unless it is held by a live request.
    let taken: Option<(Vec<u8>, i16, serde_json::Value)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (token_id, key, request_hash, status, response) \
         VALUES ($1, $2, $3, 0, 'null') \
         ON CONFLICT (token_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, created_at = now() \
            WHERE idempotency_keys.status = 0 \
              AND idempotency_keys.created_at < now() - make_interval(secs => $4) \
         RETURNING request_hash, status, response",
    )
    .bind(caller.token_id)
    .bind(&key)
    .bind(&hash)
    .bind(f64::from(ABANDONED_AFTER_SECS))
    .fetch_optional(&state.db)
    .await
    .map_err(db)?;
    if taken.is_none() {
        let (stored_hash, status, response): (Vec<u8>, i16, serde_json::Value) = sqlx::query_as(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE token_id = $1 AND key = $2",
        )
        .bind(caller.token_id)
        .bind(&key)
        .fetch_one(&state.db)
        .await
        .map_err(db)?;
        if stored_hash != hash {
            return Err(ApiError::idempotency_mismatch().into_response());
        }
        if status == 0 {
            return Err(ApiError::conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )
            .into_response());
        }
        let status = StatusCode::from_u16(u16::try_from(status).unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(response)).into_response();
        if status.is_client_error() {
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
        }
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(response);
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, 16 * MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    // A response marked `no-store` (a new token's secret) is never kept.
    let no_store = parts
        .headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-store"));
    let stored = match (&json, parts.status.is_server_error() || no_store) {
        (Some(json), false) => sqlx::query(
            "UPDATE idempotency_keys SET status = $3, response = $4 WHERE token_id = $1 AND key = $2",
        )
        .bind(caller.token_id)
        .bind(&key)
        .bind(i16::try_from(parts.status.as_u16()).unwrap_or(500))
        .bind(json)
        .execute(&state.db)
        .await
        .map(drop),
        // A server error is not final, and a no-store response may not be
        // kept: release the key so a retry runs again.
        _ => sqlx::query("DELETE FROM idempotency_keys WHERE token_id = $1 AND key = $2")
            .bind(caller.token_id)
            .bind(&key)
            .execute(&state.db)
            .await
            .map(drop),
    };
    if let Err(e) = stored {
        tracing::warn!(error = %e, "could not record an Idempotency-Key's response");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// A JSON request body whose errors name the field at fault.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json")
                    || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        let bytes: Bytes = to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::too_large(MAX_BODY_BYTES))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Path parameters: axum's `Path`, refused as a problem document.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(e) if e.status().is_server_error() => {
                tracing::error!(error = %e.body_text(), "path parameters");
                Err(ApiError::internal())
            }
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// Query parameters: axum's `Query`, refused as a problem document.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Parses a JSON document, naming the field at fault.
///
/// # Errors
///
/// 400 for text that is not JSON, 422 naming the field for JSON of the wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
        } else {
            // serde's message ends with " at line 1 column 17": drop it.
            let message = inner.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m)
                .to_owned();
            // A missing field is reported at the object that lacks it:
            // name the field itself.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next());
            let field = match (path.as_str(), missing) {
                (".", Some(name)) => name.to_owned(),
                (".", None) => "body".to_owned(),
                (_, Some(name)) => format!("{path}.{name}"),
                (_, None) => path,
            };
            ApiError::invalid(field, message)
        }
    })
}

/// `?limit=&cursor=` of a list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size, validated.
    ///
    /// # Errors
    ///
    /// 400 naming `limit`.
    pub fn limit(&self) -> ApiResult<i64> {
        match self.limit {
            None => Ok(50),
            Some(n @ 1..=500) => Ok(i64::from(n)),
            Some(_) => Err(ApiError::bad_field("limit", "limit must be 1 to 500")),
        }
    }

    /// The sort key after which the page starts (decoded cursor), if any.
    ///
    /// # Errors
    ///
    /// 400 naming `cursor` when it was not made by this API.
    pub fn after(&self) -> ApiResult<Option<String>> {
        self.cursor
            .as_deref()
            .map(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| ApiError::bad_field("cursor", "cursor is not one this API gave"))
            })
            .transpose()
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` rows fetched in order: the extra row
    /// only says there is a next page; `key` gives a row's sort key.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last()
                .map(|last| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// One page of a list ordered by a text key: `sql` takes the key to start
/// after as `$1` (NULL on the first page) and the row limit as `$2`; `key`
/// gives a row's key.
///
/// # Errors
///
/// 400 for a bad `limit` or `cursor`; the catalog's errors.
pub async fn text_keyed_page<T>(
    db: &sqlx::PgPool,
    sql: impl sqlx::SqlSafeStr,
    q: &PageQuery,
    key: impl Fn(&T) -> String,
) -> ApiResult<axum::Json<Page<T>>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let limit = q.limit()?;
    let rows: Vec<T> = sqlx::query_as(sql)
        .bind(q.after()?)
        .bind(limit + 1)
        .fetch_all(db)
        .await?;
    Ok(axum::Json(Page::from_rows(rows, limit, key)))
}

/// Writes the audit row of a mutation, in the mutation's transaction.
///
/// # Errors
///
/// When the row cannot be written (the mutation then rolls back).
pub async fn audit<B: Serialize, A: Serialize>(
    tx: &mut Transaction<'_, Postgres>,
    caller: &Caller,
    action: &str,
    resource: &str,
    before: Option<&B>,
    after: Option<&A>,
) -> ApiResult<()> {
    let json = |v: Option<serde_json::Value>| v;
    sqlx::query(
        "INSERT INTO audit_log (actor, action, resource, before, after, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(caller.actor())
    .bind(action)
    .bind(resource)
    .bind(json(before.and_then(|b| serde_json::to_value(b).ok())))
    .bind(json(after.and_then(|a| serde_json::to_value(a).ok())))
    .bind(current_id())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Bumps the routing snapshot version in a mutation's transaction.
///
/// # Errors
///
/// 422 when the change would leave gateways an unusable snapshot (each
/// problem listed); the transaction is then dropped and nothing is written.
pub async fn publish(tx: &mut Transaction<'_, Postgres>, reason: &str) -> ApiResult<u64> {
    crate::feed::bump(tx, reason).await.map_err(|e| match e {
        crate::feed::BumpError::Db(e) => ApiError::from(e),
        crate::feed::BumpError::Invalid(problems) => ApiError::invalid(
            "body",
            format!(
                "the change would leave the routing snapshot invalid: {}",
                problems.join("; ")
            ),
        ),
    })
}
