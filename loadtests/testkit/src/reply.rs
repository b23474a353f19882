//! What an [`Upstream`](crate::Upstream) answers.
//!
//! By default an upstream *echoes*: it answers 200 with a JSON document describing the
//! request it received and naming itself, so a test of a proxy can see in one response which
//! upstream was chosen and which headers the proxy added:
//!
//! ```json
//! {
//!   "upstream": "shard-a",
//!   "method": "GET",
//!   "path": "/orders?page=2",
//!   "version": "HTTP/1.1",
//!   "host": "acme.example.com",
//!   "headers": { "x-tenant-id": "acme", "x-request-id": "r-1", "x-forwarded-for": "127.0.0.1" }
//! }
//! ```
//!
//! `headers` holds only the headers a proxy is expected to add or pass through
//! ([`is_echoed_header`]); repeated values are joined with `, `. Every response, echoed or
//! fixed, also carries `x-upstream: <name>`.
//!
//! A request can shape its own response, for cache tests: each query parameter
//! `h=<name>:<value>` (percent-encoded) adds that response header, and `status=<code>`
//! replaces the status.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::request::RecordedRequest;

/// The response header naming the upstream that answered.
pub const UPSTREAM_HEADER: &str = "x-upstream";

/// The body of the responses an upstream sends.
#[derive(Debug, Clone)]
pub(crate) enum ReplyBody {
    /// The JSON description of the request (see the module docs).
    Echo,
    /// These bytes, as given to the builder.
    Fixed(Bytes),
}

/// How an upstream answers every request.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// The status line's code.
    pub(crate) status: StatusCode,
    /// The body.
    pub(crate) body: ReplyBody,
    /// Extra headers, e.g. `cache-control` for a caching test.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// How long to wait before answering, for timeout tests.
    pub(crate) delay: Duration,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            status: StatusCode::OK,
            body: ReplyBody::Echo,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

impl Reply {
    /// The response to `request` from the upstream called `name`.
    pub(crate) fn render(&self, name: &str, request: &RecordedRequest) -> Response<Full<Bytes>> {
        let (body, content_type) = match &self.body {
            ReplyBody::Echo => (
                Bytes::from(echo(name, request).to_string()),
                "application/json",
            ),
            ReplyBody::Fixed(bytes) => (bytes.clone(), "text/plain; charset=utf-8"),
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(value) = HeaderValue::from_str(name) {
            headers.insert(HeaderName::from_static(UPSTREAM_HEADER), value);
        }
        for (header, value) in &self.headers {
            headers.append(header.clone(), value.clone());
        }
        let query = request
            .path_and_query
            .split_once('?')
            .map_or("", |(_, q)| q);
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "h" => {
                    if let Some((name, value)) = value.split_once(':')
                        && let (Ok(name), Ok(value)) = (
                            HeaderName::from_bytes(name.trim().as_bytes()),
                            HeaderValue::from_str(value.trim()),
                        )
                    {
                        response.headers_mut().append(name, value);
                    }
                }
                "status" => {
                    if let Some(status) = value
                        .parse()
                        .ok()
                        .and_then(|s| StatusCode::from_u16(s).ok())
                    {
                        *response.status_mut() = status;
                    }
                }
                _ => {}
            }
        }
        response
    }
}

/// Whether the echo body lists header `name` (lowercase): the tenant, request-id and
/// forwarding headers a proxy adds.
pub fn is_echoed_header(name: &str) -> bool {
    name.starts_with("x-tenant-")
        || name.starts_with("x-forwarded-")
        || name == "x-request-id"
        || name == "forwarded"
}

/// The echo document for `request` (see the module docs).
fn echo(name: &str, request: &RecordedRequest) -> Value {
    let mut headers = Map::new();
    for (header, value) in request
        .headers
        .iter()
        .filter(|(header, _)| is_echoed_header(header))
    {
        match headers.get_mut(header) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(header.clone(), Value::String(value.clone()));
            }
        }
    }
    json!({
        "upstream": name,
        "method": request.method,
        "path": request.path_and_query,
        "version": request.version,
        "host": request.host,
        "headers": headers,
    })
}
