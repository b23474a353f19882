//! Every error the gateway answers itself, as RFC 9457 problem+json, built
//! in this one place. Each problem has a kind (`user`, `upstream`,
//! `internal` …) that is also its metric label.
//!
//! Client-visible text is fixed per problem: it never names another
//! tenant, an upstream address or an internal error.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::{ErrorSource, ErrorType};
use router::RouteError;

use crate::request_id::RequestId;

/// Who is at fault, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request itself (malformed, unknown host, suspended tenant …).
    User,
    /// An upstream failed or timed out.
    Upstream,
    /// The control plane's work in progress (a tenant move not finished in
    /// time).
    ControlPlane,
    /// Something in the gateway.
    Internal,
}

impl Kind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Upstream => "upstream",
            Kind::ControlPlane => "control_plane",
            Kind::Internal => "internal",
        }
    }
}

/// A problem the gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// Last segment of the problem type URI.
    pub type_: &'static str,
    /// Short, fixed summary.
    pub title: &'static str,
    /// Fixed explanation; never built from request or upstream data.
    pub detail: &'static str,
    /// Who is at fault.
    pub kind: Kind,
    /// Seconds for `Retry-After`, when retrying makes sense.
    pub retry_after: Option<u32>,
}

/// The base of every problem type URI.
pub const TYPE_BASE: &str = "https://switchyard.dev/problems/";

impl Problem {
    const fn new(
        status: u16,
        type_: &'static str,
        title: &'static str,
        detail: &'static str,
        kind: Kind,
    ) -> Self {
        Self {
            status,
            type_,
            title,
            detail,
            kind,
            retry_after: None,
        }
    }

    /// The answer to a request the router refused.
    pub fn for_route(e: &RouteError) -> Self {
        match e {
            RouteError::MalformedHost(_) => Self::new(
                400,
                "malformed-host",
                "Bad Request",
                "The Host of the request is not a valid hostname.",
                Kind::User,
            ),
            RouteError::UnknownHost | RouteError::UnknownTenant => Self::new(
                404,
                "unknown-tenant",
                "Not Found",
                "No tenant is served at this address.",
                Kind::User,
            ),
            RouteError::Suspended { .. } => Self::new(
                403,
                "tenant-suspended",
                "Forbidden",
                "This account is suspended.",
                Kind::User,
            ),
            RouteError::TargetOffline { .. } => Self {
                retry_after: Some(30),
                ..Self::new(
                    503,
                    "unavailable",
                    "Service Unavailable",
                    "The service is temporarily unavailable.",
                    Kind::Upstream,
                )
            },
        }
    }

    /// The tenant's request rate is over its plan's limit.
    pub const TENANT_QUOTA_EXCEEDED: Self = Self::new(
        429,
        "quota-exceeded",
        "Too Many Requests",
        "This account's request rate limit (policy \"tenant\") is exceeded.",
        Kind::User,
    );

    /// One client address's request rate is over the plan's per-IP limit.
    pub const IP_QUOTA_EXCEEDED: Self = Self::new(
        429,
        "quota-exceeded",
        "Too Many Requests",
        "The request rate limit for one client address (policy \"ip\") is exceeded.",
        Kind::User,
    );

    /// A request body larger than the tenant's plan allows.
    pub const BODY_TOO_LARGE: Self = Self::new(
        413,
        "body-too-large",
        "Content Too Large",
        "The request body is larger than this account's plan allows.",
        Kind::User,
    );

    /// The TLS connection was opened (SNI) for another tenant than the
    /// request's Host names.
    pub const MISDIRECTED: Self = Self::new(
        421,
        "misdirected-request",
        "Misdirected Request",
        "This connection was opened for another site; open a new one for this host.",
        Kind::User,
    );

    /// A write to a tenant being moved, still moving when the hold ended.
    /// Says nothing of targets or how far the move is.
    pub const TENANT_MOVING: Self = Self {
        retry_after: Some(2),
        ..Self::new(
            503,
            "tenant-moving",
            "Service Unavailable",
            "This account is being moved; retry shortly.",
            Kind::ControlPlane,
        )
    };

    /// No HTTP challenge is published at this path (for this host). Says
    /// nothing of challenges published for other hosts.
    pub const CHALLENGE_UNKNOWN: Self = Self::new(
        404,
        "not-found",
        "Not Found",
        "Nothing is published at this address.",
        Kind::User,
    );

    /// A method other than GET or HEAD on a challenge path.
    pub const METHOD_NOT_ALLOWED: Self = Self::new(
        405,
        "method-not-allowed",
        "Method Not Allowed",
        "This address answers GET and HEAD only.",
        Kind::User,
    );

    /// The gateway has no routing snapshot yet.
    pub const NOT_READY: Self = Self {
        retry_after: Some(5),
        ..Self::new(
            503,
            "unavailable",
            "Service Unavailable",
            "The service is starting; try again shortly.",
            Kind::Internal,
        )
    };

    /// The answer for an error Pingora reports while proxying.
    pub fn for_proxy_error(e: &Error) -> Self {
        match e.etype() {
            ErrorType::HTTPStatus(413) => Self::BODY_TOO_LARGE,
            ErrorType::HTTPStatus(503) => Self {
                retry_after: Some(5),
                ..Self::new(
                    503,
                    "no-healthy-upstream",
                    "Service Unavailable",
                    "The service is temporarily unavailable.",
                    Kind::Upstream,
                )
            },
            ErrorType::HTTPStatus(code) if (400..500).contains(code) => Self::new(
                400,
                "bad-request",
                "Bad Request",
                "The request could not be processed.",
                Kind::User,
            ),
            ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::TLSHandshakeFailure => Self::new(
                502,
                "bad-gateway",
                "Bad Gateway",
                "The service could not be reached.",
                Kind::Upstream,
            ),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                Self::new(
                    504,
                    "gateway-timeout",
                    "Gateway Timeout",
                    "The service did not answer in time.",
                    Kind::Upstream,
                )
            }
            _ => match e.esource() {
                ErrorSource::Upstream => Self::new(
                    502,
                    "bad-gateway",
                    "Bad Gateway",
                    "The service answered with an invalid response.",
                    Kind::Upstream,
                ),
                ErrorSource::Downstream => Self::new(
                    400,
                    "bad-request",
                    "Bad Request",
                    "The request could not be processed.",
                    Kind::User,
                ),
                ErrorSource::Internal | ErrorSource::Unset => Self::new(
                    500,
                    "internal",
                    "Internal Server Error",
                    "The gateway failed to process the request.",
                    Kind::Internal,
                ),
            },
        }
    }

    /// The JSON body, with the request id so a user can quote it.
    pub fn body(&self, request_id: &str) -> Bytes {
        let body = serde_json::json!({
            "type": format!("{TYPE_BASE}{}", self.type_),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "request_id": request_id,
        });
        Bytes::from(body.to_string())
    }

    /// Writes the problem as the whole response.
    ///
    /// # Errors
    ///
    /// When the client connection is gone.
    pub async fn respond(&self, session: &mut Session, request_id: &RequestId) -> Result<()> {
        self.respond_with(session, request_id, &[]).await
    }

    /// [`Self::respond`], adding `extra` headers (rate-limit state).
    pub async fn respond_with(
        &self,
        session: &mut Session,
        request_id: &RequestId,
        extra: &[(&'static str, http::HeaderValue)],
    ) -> Result<()> {
        let body = self.body(request_id.as_str());
        let mut header = ResponseHeader::build(self.status, Some(5 + extra.len()))?;
        header.insert_header("content-type", "application/problem+json")?;
        header.insert_header("content-length", body.len().to_string())?;
        header.insert_header("x-request-id", request_id.header().clone())?;
        if let Some(secs) = self.retry_after {
            header.insert_header("retry-after", secs.to_string())?;
        }
        for (name, value) in extra {
            header.insert_header(*name, value.clone())?;
        }
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await
    }
}
