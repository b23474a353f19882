//! HTTP challenges published in the routing snapshot by tenant-admin,
//! answered by the gateway itself before any tenant is resolved, on both
//! listeners:
//!
//! - `GET`/`HEAD /.well-known/acme-challenge/{token}`: ACME HTTP-01, for
//!   any host (the CA asks through the name it validates) → `200
//!   text/plain` with the key authorization;
//! - `GET`/`HEAD /.well-known/switchyard-challenge/{token}`: a domain's
//!   ownership proof → `200 text/plain` with the response, only when the
//!   request's normalised host is the hostname it was published for.
//!
//! Anything else under those two paths is the gateway's too: an unknown
//! token (or the right token through another host) is a 404 problem that
//! says nothing more, another method a 405. Such requests never reach the
//! cache, the rate limits or an upstream; other `/.well-known/` paths are
//! routed to the tenant as usual. The proxy checks one path prefix,
//! [`WELL_KNOWN`], before looking further.

use bytes::Bytes;
use http::Method;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use router::{ChallengeKind, RoutingTable};

use crate::metrics::ChallengeOutcome;
use crate::request_id::RequestId;

/// Every challenge path starts with this.
pub const WELL_KNOWN: &str = "/.well-known/";
const ACME: &str = "/.well-known/acme-challenge/";
const OWNERSHIP: &str = "/.well-known/switchyard-challenge/";

/// A request for a challenge: which kind, and the path's last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked<'a> {
    /// Which well-known path.
    pub kind: ChallengeKind,
    /// Everything after it (a valid token has no `/`).
    pub token: &'a str,
}

impl<'a> Asked<'a> {
    /// The challenge `path` asks for; `None` when it is not a challenge
    /// path (the request is routed as usual).
    pub fn parse(path: &'a str) -> Option<Self> {
        if let Some(token) = path.strip_prefix(ACME) {
            Some(Self {
                kind: ChallengeKind::AcmeHttp01,
                token,
            })
        } else {
            path.strip_prefix(OWNERSHIP).map(|token| Self {
                kind: ChallengeKind::Ownership,
                token,
            })
        }
    }
}

/// What a challenge request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'t> {
    /// 200 with this body.
    Found(&'t str),
    /// 404.
    Unknown,
    /// 405.
    MethodNotAllowed,
}

impl Answer<'_> {
    /// The metric outcome.
    pub fn outcome(&self) -> ChallengeOutcome {
        match self {
            Self::Found(_) => ChallengeOutcome::Answered,
            Self::Unknown => ChallengeOutcome::Unknown,
            Self::MethodNotAllowed => ChallengeOutcome::MethodNotAllowed,
        }
    }
}

/// Looks `asked` up in `table` for a `method` request to `host` (the
/// `Host` as sent, if any).
pub fn answer<'t>(
    table: &'t RoutingTable,
    asked: Asked<'_>,
    method: &Method,
    host: Option<&str>,
) -> Answer<'t> {
    if method != Method::GET && method != Method::HEAD {
        return Answer::MethodNotAllowed;
    }
    let found = match asked.kind {
        ChallengeKind::AcmeHttp01 => table.acme_challenge(asked.token),
        ChallengeKind::Ownership => host
            .and_then(|h| router::normalize(h).ok())
            .and_then(|h| table.ownership_challenge(&h, asked.token)),
    };
    found.map_or(Answer::Unknown, Answer::Found)
}

/// Writes a found challenge's `body` as the whole response: `200
/// text/plain`, not to be cached; no body for `HEAD`.
///
/// # Errors
///
/// When the client connection is gone.
pub async fn respond(
    session: &mut Session,
    request_id: &RequestId,
    body: &str,
    head: bool,
) -> Result<()> {
    let mut header = ResponseHeader::build(200, Some(4))?;
    header.insert_header("content-type", "text/plain")?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    header.insert_header("x-request-id", request_id.header().clone())?;
    if head {
        return session.write_response_header(Box::new(header), true).await;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    let body = Bytes::copy_from_slice(body.as_bytes());
    session.write_response_body(Some(body), true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use router::{BuildOptions, Hostname, Snapshot};

    fn table() -> RoutingTable {
        let snapshot = Snapshot::from_toml(
            r#"
version = 1
regions = [{ name = "eu-west" }]
plans = [{ name = "p", rate_per_sec = 10, burst = 10, max_body_bytes = 1024 }]

[[targets]]
id = "shard-a"
kind = "shard"
region = "eu-west"
pools = { eu-west = ["127.0.0.1:1"] }

[[tenants]]
id = "t-acme"
slug = "acme"
plan = "p"
region = "eu-west"
target = "shard-a"
domains = ["erp.acme.test"]

[[challenges]]
kind = "acme-http01"
hostname = "erp.acme.test"
token = "tok-acme_1"
response = "tok-acme_1.thumbprint"

[[challenges]]
kind = "ownership"
hostname = "erp.acme.test"
token = "own-1"
response = "switchyard-verify=abc"
"#,
        )
        .unwrap();
        let options = BuildOptions {
            base_domains: vec![Hostname::parse("app.example.test").unwrap()],
        };
        RoutingTable::build(&snapshot, &options).unwrap()
    }

    #[test]
    fn only_the_two_challenge_paths_are_the_gateways() {
        assert_eq!(
            Asked::parse("/.well-known/acme-challenge/abc"),
            Some(Asked {
                kind: ChallengeKind::AcmeHttp01,
                token: "abc"
            })
        );
        assert_eq!(
            Asked::parse("/.well-known/switchyard-challenge/"),
            Some(Asked {
                kind: ChallengeKind::Ownership,
                token: ""
            })
        );
        for routed in [
            "/.well-known/openid-configuration",
            "/.well-known/acme-challenge",
            "/acme-challenge/abc",
            "/",
        ] {
            assert_eq!(Asked::parse(routed), None, "{routed}");
        }
    }

    #[test]
    fn acme_answers_for_any_host_and_ownership_only_for_its_own() {
        let table = table();
        let get = &Method::GET;
        let acme = Asked::parse("/.well-known/acme-challenge/tok-acme_1").unwrap();
        for host in [Some("erp.acme.test"), Some("elsewhere.test:80"), None] {
            assert_eq!(
                answer(&table, acme, get, host),
                Answer::Found("tok-acme_1.thumbprint")
            );
        }
        assert_eq!(
            answer(&table, acme, &Method::HEAD, None),
            Answer::Found("tok-acme_1.thumbprint")
        );

        let own = Asked::parse("/.well-known/switchyard-challenge/own-1").unwrap();
        assert_eq!(
            answer(&table, own, get, Some("ERP.acme.test.:8080")),
            Answer::Found("switchyard-verify=abc")
        );
        for host in [Some("acme.app.example.test"), Some("bad host"), None] {
            assert_eq!(answer(&table, own, get, host), Answer::Unknown, "{host:?}");
        }
        // Each token answers on its own path only.
        let crossed = Asked::parse("/.well-known/acme-challenge/own-1").unwrap();
        assert_eq!(
            answer(&table, crossed, get, Some("erp.acme.test")),
            Answer::Unknown
        );
        let nested = Asked::parse("/.well-known/acme-challenge/tok-acme_1/x").unwrap();
        assert_eq!(answer(&table, nested, get, None), Answer::Unknown);
        assert_eq!(
            answer(&table, acme, &Method::POST, None),
            Answer::MethodNotAllowed
        );
    }
}
