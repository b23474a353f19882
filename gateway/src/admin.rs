//! The admin listener: `/metrics`, `/healthz`, `/readyz`,
//! `/debug/route?host=&method=&path=&tenant=` and `POST /cache/purge`. For
//! operators only: keep it off public interfaces.
//!
//! `POST /cache/purge` takes `{"tenant": "<id>"}` (every cached response of
//! the tenant) or `{"tenant": "<id>", "paths": ["/a", ...]}` (those paths,
//! any host, scheme, query or variant), applies it here and, with Redis,
//! on every other gateway. Bad input is a problem+json naming the field.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use router::RouteRequest;

use crate::cache::ResponseCache;
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::purge_bus::{Purge, PurgeSender};
use crate::state::RoutingState;

/// Largest purge request body.
const MAX_PURGE_BODY: usize = 64 * 1024;
/// Most paths in one purge.
const MAX_PURGE_PATHS: usize = 1000;
/// Longest path in a purge.
const MAX_PATH_LEN: usize = 2048;

/// The admin HTTP app.
#[derive(Debug)]
pub struct Admin {
    state: Arc<RoutingState>,
    metrics: Metrics,
    cache: Arc<ResponseCache>,
    /// Carries purges to the other gateways, with Redis.
    purges: Option<PurgeSender>,
}

impl Admin {
    /// Serves `state`, `metrics` and purges of `cache`, sent on to other
    /// gateways through `purges` when given.
    pub fn new(
        state: Arc<RoutingState>,
        metrics: Metrics,
        cache: Arc<ResponseCache>,
        purges: Option<PurgeSender>,
    ) -> Self {
        Self {
            state,
            metrics,
            cache,
            purges,
        }
    }

    async fn purge(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            let mut r = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "purges are POST requests",
            );
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            return r;
        }
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_PURGE_BODY {
                        return problem(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "Body too large",
                            &format!("a purge body is at most {MAX_PURGE_BODY} bytes"),
                        );
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => {
                    return problem(StatusCode::BAD_REQUEST, "Bad request", "unreadable body");
                }
            }
        }
        let purge: Purge = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Invalid purge",
                    &format!(
                        "expected {{\"tenant\": \"<id>\", \"paths\": [\"/...\"]}} (paths optional): {e}"
                    ),
                );
            }
        };
        if let Some(paths) = &purge.paths {
            if paths.is_empty() || paths.len() > MAX_PURGE_PATHS {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Invalid purge",
                    &format!(
                        "paths: give 1 to {MAX_PURGE_PATHS} paths, or leave it out to purge the whole tenant"
                    ),
                );
            }
            if let Some((i, _)) = paths.iter().enumerate().find(|(_, p)| {
                !p.starts_with('/')
                    || p.len() > MAX_PATH_LEN
                    || p.bytes().any(|b| b.is_ascii_control() || b == b' ')
            }) {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Invalid purge",
                    &format!(
                        "paths[{i}]: must start with '/', hold no spaces or control characters and be at most {MAX_PATH_LEN} bytes"
                    ),
                );
            }
        }
        let known = self
            .state
            .current()
            .is_some_and(|l| l.table.tenant_by_id(&purge.tenant).is_some());
        if !known {
            return problem(
                StatusCode::NOT_FOUND,
                "Unknown tenant",
                "tenant: no tenant with this id in the routing snapshot in force",
            );
        }
        let removed = self.cache.purge(&purge.tenant, purge.paths.as_deref());
        self.metrics.cache_purge(purge.paths.is_none(), false);
        let scope = if purge.paths.is_some() {
            "paths"
        } else {
            "tenant"
        };
        let propagation = if self.purges.is_some() {
            "redis"
        } else {
            "local"
        };
        let reply = serde_json::json!({
            "tenant": purge.tenant,
            "scope": scope,
            "removed": removed,
            "propagation": propagation,
        });
        if let Some(sender) = &self.purges {
            sender.send(purge);
        }
        json(StatusCode::OK, &reply)
    }

    fn route(&self, query: Option<&str>) -> Response<Vec<u8>> {
        let mut host = None;
        let mut method = "GET".to_owned();
        let mut path = "/".to_owned();
        let mut tenant = None;
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "host" => host = Some(v.into_owned()),
                "method" => method = v.to_ascii_uppercase(),
                "path" => path = v.into_owned(),
                "tenant" => tenant = Some(v.into_owned()),
                _ => {}
            }
        }
        let Some(loaded) = self.state.current() else {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": "no routing snapshot loaded yet"}),
            );
        };
        if host.is_none() && tenant.is_none() {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "give host= (and optionally method=, path=, tenant= for a trusted x-tenant-id)"}),
            );
        }
        let req = RouteRequest {
            host: host.as_deref(),
            method: &method,
            trusted_tenant: tenant.as_deref(),
        };
        let explanation = loaded.table.explain(&req, loaded.region);
        let mut body = serde_json::to_value(&explanation).unwrap_or_default();
        body["path"] = serde_json::Value::String(path);
        json(StatusCode::OK, &body)
    }
}

/// An RFC 9457 problem.
fn problem(status: StatusCode, title: &str, detail: &str) -> Response<Vec<u8>> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    text(
        status,
        "application/problem+json",
        body.to_string().into_bytes(),
    )
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    text(status, "application/json", body.to_string().into_bytes())
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = response.body().len();
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, len.into());
    response
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let uri = session.req_header().uri.clone();
        match uri.path() {
            "/cache/purge" => self.purge(session).await,
            "/healthz" => text(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.state.version() {
                Some(version) => json(
                    StatusCode::OK,
                    &serde_json::json!({"ready": true, "snapshot_version": version}),
                ),
                None => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"ready": false}),
                ),
            },
            "/metrics" => {
                if let Some(loaded) = self.state.current() {
                    let (healthy, unhealthy, open) = loaded.balancers.census(now_ms());
                    self.metrics.backends(healthy, unhealthy, open);
                }
                let (entries, bytes) = self.cache.usage();
                self.metrics.cache_usage(entries, bytes);
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render(),
                )
            }
            "/debug/route" => self.route(uri.query()),
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not found"}),
            ),
        }
    }
}
