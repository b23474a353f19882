//! Errors as RFC 9457 problem documents (`application/problem+json`),
//! naming the offending field when there is one. Database errors are
//! translated: a unique violation is a 409, a missing reference a 422, a
//! row still referenced a 409; anything else is a 500 whose detail says
//! nothing about the internals (the cause is logged with the request id).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `urn:switchyard:problem:validation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The request's field at fault, as a JSON path (`placement.shard`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The request id, also in the `x-request-id` header and the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// An API error: becomes a problem response.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    field: Option<String>,
    retry_after: Option<u32>,
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            kind,
            title,
            detail,
            field: None,
            retry_after: None,
        }
    }

    /// 422: a field's value is not acceptable.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        let detail = format!("{field}: {}", detail.into());
        Self {
            field: Some(field),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                detail,
            )
        }
    }

    /// 400: the request itself is malformed (not JSON, bad query).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Malformed request",
            detail.into(),
        )
    }

    /// 400 naming a field.
    pub fn bad_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::bad_request(detail)
        }
    }

    /// 401: no or unknown token.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail.into(),
        )
    }

    /// 403: the token's role may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed",
            detail.into(),
        )
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("{} does not exist", what.into()),
        )
    }

    /// 409: conflicts with the catalog's state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail.into())
    }

    /// 409 naming a field.
    pub fn conflict_on(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::conflict(detail)
        }
    }

    /// 405: the path exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this path does not take that method; see /v1/openapi.json".to_owned(),
        )
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request body too large",
            format!("the body is over {limit} bytes"),
        )
    }

    /// 415: not JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json".to_owned(),
        )
    }

    /// 422: an `Idempotency-Key` reused with another request.
    pub fn idempotency_mismatch() -> Self {
        Self {
            field: Some("Idempotency-Key".to_owned()),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was already used with a different request; use a new key"
                    .to_owned(),
            )
        }
    }

    /// 503: a dependency is unavailable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                detail.into(),
            )
        }
    }

    /// 500 with a detail that says nothing about internals. The cause is
    /// logged by the caller.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request failed; the request id identifies it in tenant-admin's log".to_owned(),
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem document for a request.
    pub fn problem(&self, request_id: Option<String>) -> Problem {
        Problem {
            kind: format!("urn:switchyard:problem:{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            field: self.field.clone(),
            request_id,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(self.problem(super::request::current_id())),
        )
            .into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            let constraint = db.constraint().unwrap_or("");
            match db.code().as_deref() {
                // unique_violation
                Some("23505") => {
                    return Self::conflict(format!(
                        "already exists ({})",
                        describe_constraint(constraint)
                    ));
                }
                // foreign_key_violation: a missing reference on insert, or a
                // row still referenced on delete.
                Some("23503") => {
                    let message = db.message();
                    return if message.contains("still referenced")
                        || message.contains("update or delete")
                    {
                        Self::conflict(format!(
                            "still in use ({})",
                            describe_constraint(constraint)
                        ))
                    } else {
                        Self::invalid(
                            constraint_field(constraint),
                            "refers to something that does not exist",
                        )
                    };
                }
                // check_violation, not_null_violation, invalid_text_representation
                Some("23514" | "23502" | "22P02") => {
                    return Self::invalid(
                        constraint_field(constraint),
                        "is not an acceptable value",
                    );
                }
                _ => {}
            }
        }
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::error!(error = %e, "catalog unavailable");
                Self::unavailable("the catalog database is unavailable")
            }
            other => {
                tracing::error!(error = %other, "catalog query failed");
                Self::internal()
            }
        }
    }
}

/// A constraint name as words: `tenants_slug_key` → `tenants slug`.
fn describe_constraint(constraint: &str) -> String {
    constraint
        .trim_end_matches("_key")
        .trim_end_matches("_fkey")
        .trim_end_matches("_pkey")
        .replace('_', " ")
}

/// The column a constraint is about: `tenants_plan_fkey` → `plan`.
fn constraint_field(constraint: &str) -> String {
    let words = describe_constraint(constraint);
    words
        .split_once(' ')
        .map_or(words.clone(), |(_, rest)| rest.replace(' ', "_"))
}
