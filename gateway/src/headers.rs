//! Header names the gateway reads and writes, and the cheap way to edit the
//! upstream request's headers.
//!
//! Pingora's `RequestHeader::insert_header` keeps a second map that remembers
//! each name's original case, and parses the name again on every call; with
//! a dozen headers to set per request that was the largest cost the gateway
//! added to the framework (measured with callgrind: about 1,700 instructions
//! per header). [`edit_upstream`] and [`edit_response`] take the header
//! apart into `http`'s `Parts`, set the headers on the plain [`HeaderMap`]
//! with names parsed once at compile time, and put it back together.
//!
//! Upstreams and clients then see lowercase names for non-standard headers
//! and canonical case for standard ones (`Host`, `Content-Type`), as HAProxy
//! sends them; HTTP/1.1 names are case-insensitive (RFC 9110 §5.1) and
//! HTTP/2 requires lowercase.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

/// The tenant the request was routed to, by id.
pub const X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
/// The tenant's slug.
pub const X_TENANT_SLUG: HeaderName = HeaderName::from_static("x-tenant-slug");
/// The shard or dedicated cluster serving the tenant.
pub const X_TENANT_TARGET: HeaderName = HeaderName::from_static("x-tenant-target");
/// The tenant's home region.
pub const X_TENANT_REGION: HeaderName = HeaderName::from_static("x-tenant-region");
/// The request id, on the upstream request and on every response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The client address chain.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `http` or `https`, as the client connected.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The host the client asked for.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The rate-limit policies applied (draft-ietf-httpapi-ratelimit-headers-11).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// What remains of each policy's quota.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `x-cache`: how the response cache answered.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Headers the client may not set itself: any name with this prefix is
/// removed unless the peer is a trusted proxy.
pub const TENANT_PREFIX: &str = "x-tenant-";

/// Runs `edit` on the headers of the upstream request `req`, with room for
/// `additional` more, keeping its method, target, version and extensions.
pub fn edit_upstream(
    req: &mut RequestHeader,
    additional: usize,
    edit: impl FnOnce(&mut HeaderMap),
) {
    // A target the URI cannot carry (absolute-form, bytes that are not
    // UTF-8) lives beside it in the header; keep it to restore afterwards.
    let raw_target = {
        let raw = req.raw_path();
        let uri = req.uri.path_and_query().map(|p| p.as_str().as_bytes());
        (uri != Some(raw)).then(|| raw.to_vec())
    };
    let end_stream = req.send_end_stream();
    let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, empty));
    parts.headers.reserve(additional);
    edit(&mut parts.headers);
    *req = RequestHeader::from(parts);
    if let Some(raw) = raw_target {
        // It was accepted when the request was read, so it parses again.
        let _ = req.set_raw_path(&raw);
    }
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
}

/// Runs `edit` on the headers of the response `resp`, with room for
/// `additional` more, keeping its status, version and reason phrase.
pub fn edit_response(
    resp: &mut ResponseHeader,
    additional: usize,
    edit: impl FnOnce(&mut HeaderMap),
) {
    let reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != resp.status.canonical_reason())
        .map(str::to_owned);
    let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, empty));
    parts.headers.reserve(additional);
    edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
    if reason.is_some() {
        // Any phrase the upstream sent was accepted when it was read.
        let _ = resp.set_reason_phrase(reason.as_deref());
    }
}

/// The `x-forwarded-for` value: `prior, client` when a trusted proxy sent a
/// chain, else the client address alone.
pub fn forwarded_for(prior: Option<&HeaderValue>, client: IpAddr) -> HeaderValue {
    let mut text = [0u8; 39];
    let len = write_ip(&mut text, client);
    let ip = &text[..len];
    let value = match prior.filter(|p| !p.is_empty()) {
        Some(prior) => {
            let mut chain = Vec::with_capacity(prior.len() + 2 + ip.len());
            chain.extend_from_slice(prior.as_bytes());
            chain.extend_from_slice(b", ");
            chain.extend_from_slice(ip);
            HeaderValue::from_maybe_shared(bytes::Bytes::from(chain))
        }
        None => HeaderValue::from_bytes(ip),
    };
    // The prior chain was a valid header value and an address is ASCII.
    value.unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Writes `ip` into `out` (at least 39 bytes), returning the length.
fn write_ip(out: &mut [u8], ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => write_ipv4(out, v4),
        IpAddr::V6(v6) => {
            let room = out.len();
            let mut cursor = &mut out[..];
            // 39 bytes hold any IPv6 address text.
            let _ = write!(cursor, "{v6}");
            room - cursor.len()
        }
    }
}

/// Dotted-quad text without the formatting machinery (this runs on every
/// request; `Display` for `Ipv4Addr` handles padding and width it never
/// needs here).
fn write_ipv4(out: &mut [u8], ip: Ipv4Addr) -> usize {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            out[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            out[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        out[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_std_displays_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "203.0.113.7",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forwarded_for(None, ip).to_str().unwrap(), ip.to_string());
        }
    }

    #[test]
    fn a_trusted_chain_is_extended() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let prior = HeaderValue::from_static("203.0.113.7, 198.51.100.2");
        assert_eq!(
            forwarded_for(Some(&prior), ip),
            "203.0.113.7, 198.51.100.2, 192.0.2.1"
        );
        assert_eq!(
            forwarded_for(Some(&HeaderValue::from_static("")), ip),
            "192.0.2.1"
        );
    }

    #[test]
    fn editing_keeps_method_target_and_other_headers() {
        let mut req = RequestHeader::build("POST", b"/a/b?c=d", None).unwrap();
        req.insert_header("Content-Type", "text/plain").unwrap();
        req.insert_header("X-Custom", "1").unwrap();
        edit_upstream(&mut req, 1, |headers| {
            headers.insert(X_TENANT_ID, HeaderValue::from_static("t-1"));
        });
        assert_eq!(req.method, "POST");
        assert_eq!(req.raw_path(), b"/a/b?c=d");
        assert_eq!(req.headers["content-type"], "text/plain");
        assert_eq!(req.headers["x-custom"], "1");
        assert_eq!(req.headers["x-tenant-id"], "t-1");
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("Content-Type: text/plain\r\n"), "{wire}");
        assert!(wire.contains("x-tenant-id: t-1\r\n"), "{wire}");
    }

    #[test]
    fn a_response_edit_keeps_status_reason_and_headers() {
        let mut resp = ResponseHeader::build(299, None).unwrap();
        resp.set_reason_phrase(Some("Custom Thing")).unwrap();
        resp.insert_header("Content-Type", "text/plain").unwrap();
        edit_response(&mut resp, 1, |headers| {
            headers.insert(X_REQUEST_ID, HeaderValue::from_static("r-1"));
        });
        assert_eq!(resp.status, 299);
        assert_eq!(resp.get_reason_phrase(), Some("Custom Thing"));
        assert_eq!(resp.headers["content-type"], "text/plain");
        assert_eq!(resp.headers["x-request-id"], "r-1");
    }

    #[test]
    fn an_absolute_form_target_survives_an_edit() {
        let mut req = RequestHeader::build("GET", b"http://a.example/x?y", None).unwrap();
        let before = req.raw_path().to_vec();
        edit_upstream(&mut req, 0, |_| {});
        assert_eq!(req.raw_path(), &before[..]);
    }
}
