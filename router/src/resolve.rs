//! The routing decision: (host, trusted tenant header, method) → tenant →
//! target → pool, for a gateway in a given region.
//!
//! ```text
//!  Host ──normalise──► exact custom domain? ──yes──┐
//!    │ malformed: 400        │ no                  │
//!    │               {slug}.{base_domain}? ──yes──┤
//!    │                       │ no                  │
//!    └─absent──► trusted x-tenant-id? ─────yes────┤
//!                            │ no: 404             ▼
//!                                        tenant status: deleted 404,
//!                                        suspended 403, target offline 503
//!                                                  │
//!                         gateway region == home, or safe method and the
//!                         target has a pool here? ──► local pool
//!                                                  └► home-region pool
//! ```
//!
//! [`RoutingTable::resolve`] is the per-request path and allocates nothing;
//! [`RoutingTable::explain`] runs the very same code with a trace attached
//! and says why, for the gateway's `/debug/route`.

use std::borrow::Cow;

use serde::Serialize;

use crate::hostname::{HostError, is_within, normalize};
use crate::snapshot::{TargetStatus, TenantStatus};
use crate::table::{Pool, RegionIdx, RoutingTable, Target, TenantRef};

/// What the router needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// The `Host` header or `:authority`, as received; `None` when absent.
    pub host: Option<&'a str>,
    /// The HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// `x-tenant-id`, only when the peer is a trusted proxy. The gateway
    /// decides trust; the router never sees an untrusted header.
    pub trusted_tenant: Option<&'a str>,
}

/// How the tenant was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The host is one of the tenant's custom domains.
    CustomDomain,
    /// The host is `{slug}.{base_domain}`.
    Subdomain,
    /// The `x-tenant-id` header of a trusted proxy.
    TrustedHeader,
}

/// Whether the serving pool is in the gateway's region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Locality {
    /// The pool is in the gateway's region.
    Local,
    /// The tenant's home-region pool, in another region.
    CrossRegion,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'t> {
    /// The tenant.
    pub tenant: TenantRef<'t>,
    /// How the tenant was identified.
    pub matched_by: MatchedBy,
    /// The tenant's shard or dedicated cluster.
    pub target: &'t Target,
    /// The pool that serves this request.
    pub pool: &'t Pool,
    /// Whether that pool is in the gateway's region.
    pub locality: Locality,
}

/// Why a request cannot be routed. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The host is not a valid hostname (400).
    #[error("malformed host: {0}")]
    MalformedHost(#[from] HostError),
    /// No tenant has this host (404).
    #[error("no tenant is served at this host")]
    UnknownHost,
    /// No host, and the trusted header names no (live) tenant, or there is
    /// no trusted header (404).
    #[error("unknown tenant")]
    UnknownTenant,
    /// The tenant is suspended (403).
    #[error("tenant is suspended")]
    Suspended {
        /// The tenant's index in the table, for logs.
        tenant: u32,
    },
    /// The tenant's target is offline (503).
    #[error("tenant's target is offline")]
    TargetOffline {
        /// The tenant's index in the table, for logs.
        tenant: u32,
    },
}

impl RouteError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RouteError::MalformedHost(_) => 400,
            RouteError::UnknownHost | RouteError::UnknownTenant => 404,
            RouteError::Suspended { .. } => 403,
            RouteError::TargetOffline { .. } => 503,
        }
    }

    /// A stable, short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RouteError::MalformedHost(_) => "malformed_host",
            RouteError::UnknownHost => "unknown_host",
            RouteError::UnknownTenant => "unknown_tenant",
            RouteError::Suspended { .. } => "suspended",
            RouteError::TargetOffline { .. } => "target_offline",
        }
    }
}

/// RFC 9110 safe methods: served by a local read pool when there is one.
pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// Receives the reasons behind a decision. The unit type ignores them and
/// compiles away; a `Vec<String>` collects them for [`Explanation`].
trait Trace {
    fn note(&mut self, reason: impl FnOnce() -> String);
}

impl Trace for () {
    #[inline(always)]
    fn note(&mut self, _: impl FnOnce() -> String) {}
}

impl Trace for Vec<String> {
    fn note(&mut self, reason: impl FnOnce() -> String) {
        self.push(reason());
    }
}

impl RoutingTable {
    /// Decides where a request goes, for a gateway in `region`.
    ///
    /// # Errors
    ///
    /// A [`RouteError`] saying why the request is refused.
    pub fn resolve(
        &self,
        req: &RouteRequest<'_>,
        region: RegionIdx,
    ) -> Result<Decision<'_>, RouteError> {
        self.route(req, region, &mut ()).map_err(|(e, _)| e)
    }

    /// The tenant a hostname belongs to (custom domain, then
    /// `{slug}.{base_domain}`), without status checks: what the gateway
    /// compares between the TLS SNI name and the `Host` header.
    ///
    /// # Errors
    ///
    /// [`RouteError::MalformedHost`] when `host` is not a hostname.
    pub fn tenant_for_host(&self, host: &str) -> Result<Option<TenantRef<'_>>, RouteError> {
        let host = normalize(host)?;
        Ok(self.match_host(&host, &mut ()).map(|(t, _)| t))
    }

    /// Like [`resolve`](Self::resolve), and says why at every step.
    pub fn explain(&self, req: &RouteRequest<'_>, region: RegionIdx) -> Explanation {
        let mut steps = Vec::new();
        let result = self.route(req, region, &mut steps);
        let normalized_host = req
            .host
            .and_then(|h| normalize(h).ok())
            .map(Cow::into_owned);
        let mut out = Explanation {
            snapshot_version: self.version(),
            gateway_region: self.region_name(region).to_string(),
            host: req.host.map(str::to_owned),
            method: req.method.to_owned(),
            trusted_tenant: req.trusted_tenant.map(str::to_owned),
            normalized_host,
            routed: result.is_ok(),
            status: None,
            error: None,
            tenant: None,
            matched_by: None,
            target: None,
            pool_region: None,
            locality: None,
            backends: Vec::new(),
            steps,
        };
        match result {
            Ok(d) => {
                out.tenant = Some(TenantSummary::of(d.tenant));
                out.matched_by = Some(d.matched_by);
                out.target = Some(d.target.id.to_string());
                out.pool_region = Some(d.pool.region.to_string());
                out.locality = Some(d.locality);
                out.backends = d.pool.backends.iter().map(|b| b.addr.to_string()).collect();
            }
            Err((e, matched)) => {
                out.status = Some(e.status());
                out.error = Some(e.kind());
                if let RouteError::Suspended { tenant } | RouteError::TargetOffline { tenant } = e {
                    let t = self
                        .tenant(tenant)
                        .expect("error names a tenant of this table");
                    out.tenant = Some(TenantSummary::of(t));
                    out.target = Some(t.target().id.to_string());
                }
                out.matched_by = matched;
            }
        }
        out
    }

    /// The one implementation behind `resolve` and `explain`.
    #[inline]
    fn route<T: Trace>(
        &self,
        req: &RouteRequest<'_>,
        region: RegionIdx,
        trace: &mut T,
    ) -> Result<Decision<'_>, (RouteError, Option<MatchedBy>)> {
        let matched = match req.host {
            Some(raw) => {
                let host = normalize(raw).map_err(|e| {
                    trace.note(|| format!("host is malformed: {e}"));
                    (RouteError::MalformedHost(e), None)
                })?;
                trace.note(|| format!("host normalises to {host:?}"));
                self.match_host(&host, trace)
            }
            None => {
                trace.note(|| "request has no host".to_owned());
                None
            }
        };
        let (tenant, matched_by) = match matched {
            Some(found) => found,
            None => {
                match req.trusted_tenant {
                    Some(id) => {
                        let t = self.tenant_by_id(id).ok_or_else(|| {
                            trace.note(|| format!("trusted x-tenant-id {id:?} names no tenant"));
                            (RouteError::UnknownTenant, None)
                        })?;
                        trace.note(|| {
                            format!("trusted x-tenant-id {id:?} names tenant {:?}", t.slug())
                        });
                        (t, MatchedBy::TrustedHeader)
                    }
                    None if req.host.is_some() => {
                        trace.note(|| "no tenant matches the host, and there is no trusted x-tenant-id header".to_owned());
                        return Err((RouteError::UnknownHost, None));
                    }
                    None => {
                        trace.note(|| "no trusted x-tenant-id header either".to_owned());
                        return Err((RouteError::UnknownTenant, None));
                    }
                }
            }
        };
        let fail = |e: RouteError| (e, Some(matched_by));
        match tenant.status() {
            TenantStatus::Deleted => {
                trace.note(|| "tenant is deleted: treated as unknown".to_owned());
                return Err(fail(RouteError::UnknownTenant));
            }
            TenantStatus::Suspended => {
                trace.note(|| "tenant is suspended".to_owned());
                return Err(fail(RouteError::Suspended {
                    tenant: tenant.index(),
                }));
            }
            TenantStatus::Moving => {
                trace.note(|| "tenant is moving: served, writes may be held".to_owned());
            }
            TenantStatus::Active => {}
        }
        let target = tenant.target();
        trace.note(|| format!("tenant's target is {} ({:?})", target.id, target.kind));
        if target.status == TargetStatus::Offline {
            trace.note(|| "target is offline".to_owned());
            return Err(fail(RouteError::TargetOffline {
                tenant: tenant.index(),
            }));
        }
        let home = tenant.region();
        let (pool, locality) = if region == home {
            trace.note(|| "gateway is in the tenant's home region: local pool".to_owned());
            (target.pool(home), Locality::Local)
        } else {
            match target.pool(region) {
                Some(local) if is_safe_method(req.method) => {
                    trace.note(|| {
                        format!(
                            "{} is a safe method and the target has a pool in {}: local pool",
                            req.method,
                            self.region_name(region)
                        )
                    });
                    (Some(local), Locality::Local)
                }
                local => {
                    trace.note(|| {
                        let why = if local.is_some() {
                            format!("{} is not a safe method", req.method)
                        } else {
                            format!("the target has no pool in {}", self.region_name(region))
                        };
                        format!(
                            "{why}: cross-region to the home pool in {}",
                            self.region_name(home)
                        )
                    });
                    (target.pool(home), Locality::CrossRegion)
                }
            }
        };
        // Validation guarantees a pool in the target's home region, which is
        // the tenant's home region.
        let pool = pool.expect("validated: target has a pool in its home region");
        Ok(Decision {
            tenant,
            matched_by,
            target,
            pool,
            locality,
        })
    }

    /// Custom domain first, then `{slug}.{base_domain}`.
    ///
    /// Validation refuses custom domains at or below a base domain, so a
    /// host below one cannot be a custom domain and skips that index: the
    /// order holds, and a subdomain lookup costs one probe, not two.
    #[inline]
    fn match_host<T: Trace>(
        &self,
        host: &str,
        trace: &mut T,
    ) -> Option<(TenantRef<'_>, MatchedBy)> {
        let under_base = host.split_once('.').and_then(|(label, parent)| {
            self.base_domains()
                .iter()
                .find(|b| is_within(parent, b.as_str()))
                .map(|b| (label, parent, b))
        });
        let Some((label, parent, base)) = under_base else {
            return match self.tenant_by_domain(host) {
                Some(t) => {
                    trace.note(|| format!("{host:?} is a custom domain of tenant {:?}", t.slug()));
                    Some((t, MatchedBy::CustomDomain))
                }
                None => {
                    trace.note(|| {
                        format!("{host:?} is not a custom domain nor under a base domain")
                    });
                    None
                }
            };
        };
        trace.note(|| {
            format!("{host:?} is under base domain {base}, where no custom domain may be")
        });
        if parent != base.as_str() {
            trace.note(|| format!("{host:?} is more than one label below {base}"));
            return None;
        }
        match self.tenant_by_slug(label) {
            Some(t) => {
                trace.note(|| format!("{label:?} is a tenant slug under base domain {base}"));
                Some((t, MatchedBy::Subdomain))
            }
            None => {
                trace.note(|| format!("no tenant has slug {label:?} under base domain {base}"));
                None
            }
        }
    }
}

/// Why a request routes where it does: the answer of `/debug/route`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// Version of the snapshot that decided.
    pub snapshot_version: u64,
    /// The gateway's region.
    pub gateway_region: String,
    /// The host as given.
    pub host: Option<String>,
    /// The method as given.
    pub method: String,
    /// The trusted tenant header as given.
    pub trusted_tenant: Option<String>,
    /// The host after normalisation, when valid.
    pub normalized_host: Option<String>,
    /// Whether the request would be proxied.
    pub routed: bool,
    /// The error status when not routed.
    pub status: Option<u16>,
    /// The error kind when not routed.
    pub error: Option<&'static str>,
    /// The tenant, when one was identified.
    pub tenant: Option<TenantSummary>,
    /// How the tenant was identified.
    pub matched_by: Option<MatchedBy>,
    /// The tenant's target.
    pub target: Option<String>,
    /// The serving pool's region.
    pub pool_region: Option<String>,
    /// Local or cross-region.
    pub locality: Option<Locality>,
    /// The serving pool's backends.
    pub backends: Vec<String>,
    /// Each step of the decision, in order.
    pub steps: Vec<String>,
}

/// A tenant as shown by [`Explanation`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantSummary {
    /// Tenant id.
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Lifecycle state.
    pub status: TenantStatus,
    /// Plan name.
    pub plan: String,
    /// Home region.
    pub home_region: String,
}

impl TenantSummary {
    fn of(t: TenantRef<'_>) -> Self {
        Self {
            id: t.id().to_owned(),
            slug: t.slug().to_owned(),
            status: t.status(),
            plan: t.plan().name.to_string(),
            home_region: t.region_name().to_string(),
        }
    }
}
