//! The echo: the JSON document describing a request, and the request headers mirrored
//! back as response headers. The module docs of [`crate::upstream`] show both.

use std::borrow::Cow;

use hyper::Version;
use hyper::header::{HOST, HeaderMap, HeaderName};
use hyper::http::request::Parts;
use serde::Serialize;

/// The response header naming the upstream that answered.
pub(crate) static UPSTREAM: HeaderName = HeaderName::from_static("x-upstream");

/// Request headers the gateway adds, each with the response header that mirrors it.
pub(crate) static MIRRORED: [(HeaderName, HeaderName); 5] = [
    (
        HeaderName::from_static("x-tenant-id"),
        HeaderName::from_static("x-seen-tenant-id"),
    ),
    (
        HeaderName::from_static("x-tenant-slug"),
        HeaderName::from_static("x-seen-tenant-slug"),
    ),
    (
        HeaderName::from_static("x-tenant-target"),
        HeaderName::from_static("x-seen-tenant-target"),
    ),
    (
        HeaderName::from_static("x-tenant-region"),
        HeaderName::from_static("x-seen-tenant-region"),
    ),
    (
        HeaderName::from_static("x-request-id"),
        HeaderName::from_static("x-seen-request-id"),
    ),
];

/// The client address chain the gateway adds.
static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The scheme the client spoke, as the gateway forwards it.
static FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The host the client asked for, as the gateway forwards it.
static FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Copies every value of each [`MIRRORED`] request header into its response header.
/// Values are shared, not copied.
pub(crate) fn mirror(request: &HeaderMap, response: &mut HeaderMap) {
    for (received, seen) in &MIRRORED {
        for value in request.get_all(received) {
            response.append(seen.clone(), value.clone());
        }
    }
}

/// What the echo says about one request. Borrows everything from the request, so building
/// it allocates nothing unless a header is repeated or not UTF-8.
#[derive(Debug, Serialize)]
pub(crate) struct Echo<'r> {
    /// Which upstream answered.
    upstream: &'r str,
    /// The request method, e.g. `GET`.
    method: &'r str,
    /// The path, without the query.
    path: &'r str,
    /// The query string without the `?`, or null: a test sees what reached the upstream.
    query: Option<&'r str>,
    /// The protocol the request arrived over, e.g. `HTTP/1.1` or `HTTP/2.0`: shows whether
    /// the gateway reused HTTP/2 towards its upstreams.
    version: &'static str,
    /// The `Host` header (HTTP/1) or `:authority` (HTTP/2) the upstream saw.
    host: Option<Cow<'r, str>>,
    /// The tenant the gateway resolved, from its `x-tenant-*` headers.
    tenant: Tenant<'r>,
    /// `x-request-id`, to follow one request through gateway logs.
    request_id: Option<Cow<'r, str>>,
    /// The `x-forwarded-*` headers.
    forwarded: Forwarded<'r>,
    /// How many request body bytes arrived, for body-limit tests through the gateway.
    body_bytes: u64,
}

/// The `tenant` object of the echo.
#[derive(Debug, Serialize)]
struct Tenant<'r> {
    /// `x-tenant-id`.
    id: Option<Cow<'r, str>>,
    /// `x-tenant-slug`.
    slug: Option<Cow<'r, str>>,
    /// `x-tenant-target`: the shard or dedicated cluster.
    target: Option<Cow<'r, str>>,
    /// `x-tenant-region`.
    region: Option<Cow<'r, str>>,
}

/// The `forwarded` object of the echo.
#[derive(Debug, Serialize)]
struct Forwarded<'r> {
    /// `x-forwarded-for`: the client address chain.
    #[serde(rename = "for")]
    for_: Option<Cow<'r, str>>,
    /// `x-forwarded-proto`: `http` or `https` as the client spoke it.
    proto: Option<Cow<'r, str>>,
    /// `x-forwarded-host`: the host the client asked for.
    host: Option<Cow<'r, str>>,
}

impl<'r> Echo<'r> {
    /// The echo of a request with head `parts` and `body_bytes` of body, answered by the
    /// upstream called `upstream`.
    pub(crate) fn new(upstream: &'r str, parts: &'r Parts, body_bytes: u64) -> Self {
        let headers = &parts.headers;
        let [id, slug, target, region, request_id] = MIRRORED
            .each_ref()
            .map(|(received, _)| text(headers, received));
        Self {
            upstream,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            version: version(parts.version),
            host: parts
                .uri
                .authority()
                .map(|authority| Cow::Borrowed(authority.as_str()))
                .or_else(|| text(headers, &HOST)),
            tenant: Tenant {
                id,
                slug,
                target,
                region,
            },
            request_id,
            forwarded: Forwarded {
                for_: text(headers, &FORWARDED_FOR),
                proto: text(headers, &FORWARDED_PROTO),
                host: text(headers, &FORWARDED_HOST),
            },
            body_bytes,
        }
    }

    /// Appends the echo as compact JSON to `body`.
    ///
    /// # Errors
    ///
    /// Only if serde_json fails, which writing these types into memory never does.
    pub(crate) fn write(&self, body: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(body, self)
    }
}

/// Header `name` as text: absent is `None`, repeated values are joined with `, ` (so a
/// duplicated tenant header shows), bytes that are not UTF-8 become U+FFFD.
fn text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Cow<'h, str>> {
    let mut values = headers.get_all(name).iter();
    let mut text = String::from_utf8_lossy(values.next()?.as_bytes());
    for value in values {
        let joined = text.to_mut();
        joined.push_str(", ");
        joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    Some(text)
}

/// The protocol as it appears in a request line.
fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "unknown",
    }
}
