//! The admin listener: `/metrics`, `/healthz`, `/readyz` and
//! `/debug/route?host=&method=&path=&tenant=`. For operators only: keep it
//! off public interfaces.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use router::RouteRequest;

use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::state::RoutingState;

/// The admin HTTP app.
#[derive(Debug)]
pub struct Admin {
    state: Arc<RoutingState>,
    metrics: Metrics,
}

impl Admin {
    /// Serves `state` and `metrics`.
    pub fn new(state: Arc<RoutingState>, metrics: Metrics) -> Self {
        Self { state, metrics }
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
        let uri = &session.req_header().uri;
        match uri.path() {
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
