//! The gateway's Pingora proxy: thin phases that call into the router.
//!
//! ```text
//! request_filter ─ request id; trusted peer?; snapshot in force
//!   │              /.well-known/{acme,switchyard}-challenge/… → answered
//!   │                from the snapshot (challenge.rs), done
//!   │              RoutingTable::resolve
//!   │              write to a moving tenant → held until a newer snapshot,
//!   │                resolved again by it (write_hold.rs); none in time → 503
//!   │              refused → problem+json (400/403/404/413/503), done
//!   ▼
//! upstream_peer ── a backend of the decided pool (weighted round robin);
//!   │              on a retried connect failure, the next backend
//!   ▼
//! upstream_request_filter ─ strip spoofed x-tenant-*; set x-tenant-id/slug/
//!   │                       target/region, x-request-id, x-forwarded-*
//!   ▼
//! response_filter ─ x-request-id on every response
//!
//! fail_to_connect ─ idempotent request, first failure: retry elsewhere
//! fail_to_proxy ─── problem+json (502/504/…), mapped in problem.rs
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipnet::IpNet;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, RespCacheable};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::{ErrorSource, ErrorType};
use router::{HostError, Locality, RegionIdx, RouteError, RouteRequest};

use http::HeaderValue;
use http::header::{CONTENT_LENGTH, HOST};

use crate::access_log::{AccessLog, Line};
use crate::cache::{self, ResponseCache};
use crate::challenge;
use crate::clock;
use crate::config::{Config, UpstreamConfig};
use crate::headers::{
    self, RATELIMIT, RATELIMIT_POLICY, TENANT_PREFIX, X_CACHE, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PROTO, X_REQUEST_ID, X_TENANT_ID, X_TENANT_REGION, X_TENANT_SLUG, X_TENANT_TARGET,
};
use crate::limits::{self, IpLimits};
use crate::metrics::{HoldOutcome, Metrics};
use crate::problem::{Kind, Problem};
use crate::request_id::{self, RequestId};
use crate::snapshot_file::LoadedTable;
use crate::state::RoutingState;
use crate::tls::Sni;
use crate::upstreams::BackendState;
use crate::write_hold::{self, WriteHold};

/// The proxy service's shared state.
#[derive(Debug)]
pub struct Gateway {
    /// The routing table in force.
    state: Arc<RoutingState>,
    /// Peers whose x-tenant-id and x-forwarded-* are honoured.
    trusted_proxies: Vec<IpNet>,
    /// Timeouts applied to every upstream connection.
    upstream: UpstreamConfig,
    /// How long a write to a moving tenant waits for a newer snapshot.
    move_write_hold: Duration,
    /// Request, error and upstream metrics.
    metrics: Metrics,
    /// The JSON access log, when enabled.
    access_log: Option<AccessLog>,
    /// Per-client-IP rate-limit state, across snapshots.
    ip_limits: Arc<IpLimits>,
    /// The response cache of tenants whose plan enables it.
    cache: Arc<ResponseCache>,
}

impl Gateway {
    /// A proxy routing by `state`, with `config`'s trusted proxies,
    /// upstream timeouts and write hold.
    pub fn new(
        state: Arc<RoutingState>,
        config: &Config,
        metrics: Metrics,
        access_log: Option<AccessLog>,
        ip_limits: Arc<IpLimits>,
        cache: Arc<ResponseCache>,
    ) -> Self {
        Self {
            state,
            trusted_proxies: config.trusted_proxies.clone(),
            upstream: config.upstream.clone(),
            move_write_hold: config.routing.move_write_hold,
            metrics,
            access_log,
            ip_limits,
            cache,
        }
    }

    /// Applies the per-IP and then the tenant limit (so a refused address
    /// does not spend the tenant's quota). Returns the refusal, if any;
    /// otherwise leaves the rate-limit headers in `ctx`.
    fn limit(
        &self,
        loaded: &LoadedTable,
        tenant: router::TenantRef<'_>,
        client: Option<IpAddr>,
        ctx: &mut RequestCtx,
    ) -> Option<Problem> {
        // The request's arrival, read once already: one clock read less.
        let now = ctx.started.map_or_else(clock::now_ns, clock::ns_at);
        let ip = client.and_then(|ip| self.ip_limits.check(tenant, ip, now));
        if let Some(ip) = ip {
            let refused = ip.retry_after();
            self.metrics.rate_limit(true, refused.is_some());
            if let Some(wait) = refused {
                ctx.rate_headers = Some(limits::header_values(&[ip]));
                return Some(Problem {
                    retry_after: Some(limits::ceil_secs(wait) as u32),
                    ..Problem::IP_QUOTA_EXCEEDED
                });
            }
        }
        let tenant = loaded.limits.check(tenant, now)?;
        let refused = tenant.retry_after();
        self.metrics.rate_limit(false, refused.is_some());
        ctx.rate_headers = Some(match ip {
            Some(ip) => limits::header_values(&[tenant, ip]),
            None => limits::header_values(&[tenant]),
        });
        refused.map(|wait| Problem {
            retry_after: Some(limits::ceil_secs(wait) as u32),
            ..Problem::TENANT_QUOTA_EXCEEDED
        })
    }

    /// Answers with `problem` and ends the request.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        problem: Problem,
    ) -> Result<bool> {
        ctx.problem = Some(problem.kind);
        let mut extra = Vec::with_capacity(3);
        if let Some((policy, state)) = ctx.rate_headers.take() {
            extra.extend([("ratelimit-policy", policy), ("ratelimit", state)]);
        }
        if ctx.caching {
            ctx.cache_status = Some(cache::status::BYPASS);
            extra.push(("x-cache", HeaderValue::from_static(cache::status::BYPASS)));
        }
        problem
            .respond_with(session, &ctx.request_id, &extra)
            .await?;
        Ok(true)
    }

    /// Answers a request for an HTTP challenge from `loaded` and ends it.
    async fn challenge(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        loaded: &LoadedTable,
    ) -> Result<bool> {
        let req = session.req_header();
        let asked = challenge::Asked::parse(req.uri.path())
            .or_err(ErrorType::InternalError, "not a challenge path")?;
        let host = match req.uri.authority() {
            Some(authority) => Some(authority.as_str()),
            None => req.headers.get(HOST).and_then(|h| h.to_str().ok()),
        };
        let head = req.method == http::Method::HEAD;
        let answer = challenge::answer(&loaded.table, asked, &req.method, host);
        self.metrics.challenge(asked.kind, answer.outcome());
        match answer {
            challenge::Answer::Found(body) => {
                challenge::respond(session, &ctx.request_id, body, head).await?;
                Ok(true)
            }
            challenge::Answer::Unknown => {
                self.refuse(session, ctx, Problem::CHALLENGE_UNKNOWN).await
            }
            challenge::Answer::MethodNotAllowed => {
                ctx.problem = Some(Problem::METHOD_NOT_ALLOWED.kind);
                Problem::METHOD_NOT_ALLOWED
                    .respond_with(
                        session,
                        &ctx.request_id,
                        &[("allow", HeaderValue::from_static("GET, HEAD"))],
                    )
                    .await?;
                Ok(true)
            }
        }
    }

    fn is_trusted(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| self.trusted_proxies.iter().any(|net| net.contains(&ip)))
    }
}

/// What one request carries between phases.
#[derive(Debug, Default)]
pub struct RequestCtx {
    /// Kept or generated; on every response and upstream request.
    pub request_id: RequestId,
    /// The peer is a trusted proxy.
    trusted: bool,
    /// The snapshot the request was routed by, held until it finishes.
    table: Option<Arc<LoadedTable>>,
    /// The routed tenant's index in `table`.
    tenant: u32,
    /// The region of the pool that serves the request.
    pool_region: Option<RegionIdx>,
    /// Whether that pool is in this gateway's region.
    pub locality: Option<Locality>,
    /// Safe to send twice.
    idempotent: bool,
    /// Connect failures retried so far.
    retries: u8,
    /// The backend last tried; its breaker is told how the attempt went.
    backend: Option<Arc<BackendState>>,
    /// When the request header arrived.
    started: Option<Instant>,
    /// When the last backend was chosen.
    upstream_started: Option<Instant>,
    /// Time from choosing the backend to its response header.
    upstream_time: Option<Duration>,
    /// Set when the gateway answered with a problem of its own.
    problem: Option<Kind>,
    /// The tenant's plan limit on request bodies.
    max_body: u64,
    /// Request body bytes seen so far.
    body_bytes: u64,
    /// `RateLimit-Policy` and `RateLimit` for the response.
    rate_headers: Option<(HeaderValue, HeaderValue)>,
    /// The tenant's plan caches responses: `x-cache` on every response.
    caching: bool,
    /// The `x-cache` value sent, for the log.
    cache_status: Option<&'static str>,
}

impl RequestCtx {
    /// The tenant the request was routed to.
    fn routed_tenant(&self) -> Result<router::TenantRef<'_>> {
        self.table
            .as_ref()
            .and_then(|l| l.table.tenant(self.tenant))
            .or_err(ErrorType::InternalError, "no routing decision")
    }
}

/// The client a per-IP limit counts: the peer, or behind a trusted proxy
/// the address that proxy saw (the last `x-forwarded-for` entry).
fn client_ip(req: &RequestHeader, peer: Option<IpAddr>, trusted: bool) -> Option<IpAddr> {
    if trusted
        && let Some(forwarded) = req.headers.get(X_FORWARDED_FOR)
        && let Some(last) = forwarded
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(last);
    }
    peer
}

/// RFC 9110 idempotent methods: retried once on another backend when the
/// connection could not be made.
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.started = Some(Instant::now());
        let req = session.req_header();
        ctx.request_id = RequestId::keep_or_generate(req.headers.get(X_REQUEST_ID));
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.trusted = self.is_trusted(peer);
        let Some(mut loaded) = self.state.current() else {
            return self.refuse(session, ctx, Problem::NOT_READY).await;
        };

        let req = session.req_header();
        // One prefix comparison for every other request.
        if req.uri.path().starts_with(challenge::WELL_KNOWN)
            && challenge::Asked::parse(req.uri.path()).is_some()
        {
            return self.challenge(session, ctx, &loaded).await;
        }
        let host = match req.uri.authority() {
            Some(authority) => Some(Ok(authority.as_str())),
            None => req.headers.get(HOST).map(|h| h.to_str()),
        };
        let host = match host.transpose() {
            Ok(host) => host,
            Err(_) => {
                let e = RouteError::MalformedHost(HostError::InvalidCharacter);
                return self.refuse(session, ctx, Problem::for_route(&e)).await;
            }
        };
        let trusted_tenant = if ctx.trusted {
            req.headers.get(X_TENANT_ID).and_then(|v| v.to_str().ok())
        } else {
            None
        };
        let method = req.method.as_str();
        let route = RouteRequest {
            host,
            method,
            trusted_tenant,
        };
        // A write to a moving tenant waits for a newer table and is routed
        // by that one, for everything that follows; the hold starts once.
        let mut hold = None;
        let resolved = loop {
            let resolved = loaded.table.resolve(&route, loaded.region);
            let moving = match &resolved {
                Ok(d) if write_hold::holds_writes(d.tenant.status(), method) => d.tenant.index(),
                _ => break resolved,
            };
            let waiting = hold.get_or_insert_with(|| {
                WriteHold::start(&self.state, self.move_write_hold, &self.metrics)
            });
            match waiting.newer(&self.state, &loaded).await {
                Some(newer) => loaded = newer,
                None => {
                    if let Some(hold) = hold.take() {
                        hold.end(HoldOutcome::TimedOut);
                    }
                    // For the log and metrics; never shown to the client.
                    ctx.tenant = moving;
                    ctx.table = Some(loaded.clone());
                    return self.refuse(session, ctx, Problem::TENANT_MOVING).await;
                }
            }
        };
        if let Some(hold) = hold {
            hold.end(HoldOutcome::Released);
        }
        let decision = match resolved {
            Ok(d) => d,
            Err(e) => {
                if let RouteError::Suspended { tenant } | RouteError::TargetOffline { tenant } = e {
                    // For the log and metrics; never shown to the client.
                    ctx.tenant = tenant;
                    ctx.table = Some(loaded.clone());
                }
                return self.refuse(session, ctx, Problem::for_route(&e)).await;
            }
        };
        // A connection opened for one tenant must not carry another's
        // requests: its certificate vouched for the SNI name only.
        let sni = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|d| d.extension.get::<Sni>())
            .and_then(|s| s.0.as_deref());
        let misdirected = sni.is_some_and(|sni| {
            matches!(loaded.table.tenant_for_host(sni), Ok(Some(owner)) if owner.index() != decision.tenant.index())
        });
        if misdirected {
            return self.refuse(session, ctx, Problem::MISDIRECTED).await;
        }
        ctx.idempotent = is_idempotent(method);
        ctx.tenant = decision.tenant.index();
        ctx.locality = Some(decision.locality);
        ctx.pool_region = Some(match decision.locality {
            Locality::Local => loaded.region,
            Locality::CrossRegion => decision.tenant.region(),
        });
        let too_large = req
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > decision.tenant.plan().max_body_bytes);
        ctx.max_body = decision.tenant.plan().max_body_bytes;
        ctx.caching = decision.tenant.plan().cache;
        ctx.table = Some(loaded.clone());
        let client = client_ip(req, peer, ctx.trusted);
        if let Some(refused) = self.limit(&loaded, decision.tenant, client, ctx) {
            return self.refuse(session, ctx, refused).await;
        }
        if too_large {
            return self.refuse(session, ctx, Problem::BODY_TOO_LARGE).await;
        }
        Ok(false)
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        if !ctx.caching {
            return Ok(());
        }
        let req = session.req_header();
        let cacheable_method = req.method == http::Method::GET || req.method == http::Method::HEAD;
        if !cacheable_method || req.headers.contains_key(http::header::UPGRADE) {
            return Ok(());
        }
        self.cache.enable(session, ctx.routed_tenant()?.plan());
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        let tenant = ctx.routed_tenant()?;
        let req = session.req_header();
        let forwarded = ctx
            .trusted
            .then(|| req.headers.get(X_FORWARDED_PROTO))
            .flatten()
            .and_then(|v| v.to_str().ok());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let scheme = forwarded.unwrap_or(if tls { "https" } else { "http" });
        let host = match req.uri.authority() {
            Some(authority) => Some(authority.as_str()),
            None => req.headers.get(HOST).and_then(|h| h.to_str().ok()),
        };
        let host = cache::key_host(host);
        Ok(self.cache.key(tenant.id(), scheme, &host, req))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        ResponseCache::variance(meta, req)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        let tenant = ctx.routed_tenant()?;
        Ok(self
            .cache
            .cacheability(session.req_header(), resp, tenant.plan()))
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        // Stale-if-error for any failure to get a fresh response (refused,
        // timed out, no healthy backend, 5xx), not for the client's own
        // (a body over the plan, a dropped connection); never
        // stale-while-revalidate.
        error.is_some_and(|e| {
            e.esource() != &ErrorSource::Downstream
                && !matches!(e.etype(), ErrorType::HTTPStatus(code) if *code < 500)
        })
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(loaded), Some(region)) = (&ctx.table, ctx.pool_region) else {
            return Error::e_explain(ErrorType::InternalError, "no routing decision");
        };
        let tenant = loaded
            .table
            .tenant(ctx.tenant)
            .or_err(ErrorType::InternalError, "routed tenant vanished")?;
        let pool = loaded
            .balancers
            .get(tenant.target_index(), usize::from(region.index()))
            .or_err(ErrorType::InternalError, "decided pool has no balancer")?;
        let started = Instant::now();
        let tried = ctx.backend.as_ref().map(|b| b.addr);
        let chosen = match pool.select(tried, clock::ms_at(started)) {
            Some(chosen) => chosen,
            // The retry of a failed connect found no other backend: the
            // client gets the connect failure (502), not "no backend" (503).
            None if tried.is_some() => {
                return Error::e_explain(ErrorType::ConnectError, "no other backend to retry on");
            }
            None => {
                return Error::e_explain(
                    ErrorType::HTTPStatus(503),
                    "no healthy backend in the pool",
                );
            }
        };
        let addr = chosen.addr;
        ctx.backend = Some(chosen);
        ctx.upstream_started = Some(started);
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.upstream.connect_timeout);
        peer.options.read_timeout = Some(self.upstream.read_timeout);
        peer.options.write_timeout = Some(self.upstream.write_timeout);
        peer.options.idle_timeout = Some(self.upstream.idle_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let tenant = ctx.routed_tenant()?;
        let value = |text: &str| {
            HeaderValue::from_str(text).or_err(ErrorType::InternalError, "invalid header value")
        };
        let tenant_headers = [
            (X_TENANT_ID, value(tenant.id())?),
            (X_TENANT_SLUG, value(tenant.slug())?),
            (X_TENANT_TARGET, value(tenant.target().id.as_str())?),
            (X_TENANT_REGION, value(tenant.region_name().as_str())?),
            (X_REQUEST_ID, ctx.request_id.header().clone()),
        ];
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let req = session.req_header();
        let host = match req.uri.authority() {
            Some(authority) => Some(value(authority.as_str())?),
            None => req.headers.get(HOST).cloned(),
        };
        let trusted = ctx.trusted;
        headers::edit_upstream(upstream, 8, |headers| {
            if !trusted {
                // Rarely present: look before collecting.
                let spoofed = |name: &http::HeaderName| name.as_str().starts_with(TENANT_PREFIX);
                if headers.keys().any(spoofed) {
                    let names: Vec<_> = headers.keys().filter(|n| spoofed(n)).cloned().collect();
                    for name in names {
                        headers.remove(name);
                    }
                }
            }
            for (name, value) in tenant_headers {
                headers.insert(name, value);
            }
            match client_ip {
                Some(ip) => {
                    let prior = if trusted {
                        headers.get(X_FORWARDED_FOR)
                    } else {
                        None
                    };
                    let chain = headers::forwarded_for(prior, ip);
                    headers.insert(X_FORWARDED_FOR, chain);
                }
                None => {
                    headers.remove(X_FORWARDED_FOR);
                }
            }
            if !(trusted && headers.contains_key(X_FORWARDED_PROTO)) {
                let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
                headers.insert(X_FORWARDED_PROTO, proto);
            }
            if !(trusted && headers.contains_key(X_FORWARDED_HOST)) {
                match host {
                    Some(host) => headers.insert(X_FORWARDED_HOST, host),
                    None => headers.remove(X_FORWARDED_HOST),
                };
            }
        });
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A body without Content-Length (chunked, h2) is counted as it
        // streams; past the plan's limit the request is cut off with 413.
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > ctx.max_body {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over the plan limit",
                );
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(started) = ctx.upstream_started {
            let elapsed = started.elapsed();
            ctx.upstream_time = Some(elapsed);
            self.metrics.upstream(elapsed);
        }
        if let Some(backend) = &ctx.backend {
            backend.breaker.success();
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let id = ctx.request_id.header().clone();
        let rate = ctx.rate_headers.take();
        let cache_status = ctx.caching.then(|| cache::x_cache(&session.cache.phase()));
        ctx.cache_status = cache_status;
        if let Some(status) = cache_status {
            self.metrics.cache_result(status);
        }
        headers::edit_response(upstream_response, 4, |headers| {
            headers.insert(X_REQUEST_ID, id);
            if let Some((policy, state)) = rate {
                headers.insert(RATELIMIT_POLICY, policy);
                headers.insert(RATELIMIT, state);
            }
            if let Some(status) = cache_status {
                headers.insert(X_CACHE, HeaderValue::from_static(status));
            }
        });
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(backend) = &ctx.backend {
            backend.breaker.failure(clock::now_ms());
        }
        if ctx.idempotent && ctx.retries == 0 {
            ctx.retries += 1;
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        // A broken or timed-out response counts against the backend.
        if e.esource() == &ErrorSource::Upstream
            && let Some(backend) = &ctx.backend
        {
            backend.breaker.failure(clock::now_ms());
        }
        // Pingora's own rule: only idempotent requests with their body
        // still buffered may be retried on a fresh connection.
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let downstream_gone = e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            );
        if downstream_gone {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let problem = Problem::for_proxy_error(e);
        ctx.problem = Some(problem.kind);
        if ctx.request_id.is_empty() {
            ctx.request_id = request_id::generate();
        }
        let cache_status = ctx.caching.then(|| cache::x_cache(&session.cache.phase()));
        ctx.cache_status = cache_status;
        let extra: Vec<_> = cache_status
            .map(|status| ("x-cache", HeaderValue::from_static(status)))
            .into_iter()
            .collect();
        // The client may be gone already; nothing more to do then.
        let _ = problem.respond_with(session, &ctx.request_id, &extra).await;
        FailToProxy {
            error_code: problem.status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.map(|s| s.elapsed()).unwrap_or_default();
        let tenant = ctx.table.as_ref().and_then(|l| l.table.tenant(ctx.tenant));
        let target = tenant.map(|t| t.target());
        let counters = tenant.and_then(|t| {
            let loaded = ctx.table.as_ref()?;
            loaded.counters.target(t.target_index())
        });
        self.metrics
            .request(status, counters, ctx.locality, elapsed);
        let decision = match ctx.locality {
            Some(Locality::Local) => "local",
            Some(Locality::CrossRegion) => "cross_region",
            None => "none",
        };
        if let Some(kind) = ctx.problem {
            self.metrics.error(kind.as_str());
        }
        let Some(log) = &self.access_log else {
            return;
        };
        let req = session.req_header();
        log.log(&Line {
            request_id: ctx.request_id.as_str(),
            tenant_id: tenant.map(|t| t.id()),
            target: target.map(|t| t.id.as_str()),
            decision,
            method: req.method.as_str(),
            path: req.uri.path(),
            status,
            bytes: session.body_bytes_sent(),
            duration: elapsed,
            upstream: ctx.upstream_time,
            backend: ctx.backend.as_ref().map(|b| &*b.label),
            error: ctx.problem.map(Kind::as_str),
            cache: ctx.cache_status,
        });
    }
}
