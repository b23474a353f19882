//! Custom domains of a tenant: `POST /v1/tenants/{id}/domains` claims a
//! name and answers how to prove ownership of it, `…/verify` checks the
//! proof now, `…/renew` orders a new certificate now, `DELETE` removes
//! the domain (its routing and certificate with it). The background work
//! (re-checks, certificate orders, renewals) is [`crate::domains`].
//!
//! Also the gateway-only `GET /v1/routing/certificates?ids=`: the chains
//! and private keys of the certificates the routing snapshot references.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::catalog::{conflict_as, location};
use super::problem::{ApiError, ApiResult, Problem};
use super::request::{Caller, JsonBody, Page, PageQuery, Path, Query, audit, publish};
use super::tenants::lock_tenant;
use super::validate;
use crate::app::AppState;
use crate::secrets::Purpose;

type St = State<Arc<AppState>>;

/// The DNS name of the TXT ownership proof, below the domain.
pub const TXT_LABEL: &str = "_switchyard-challenge";
/// The path prefix of the HTTP ownership proof.
pub const HTTP_PROOF_PATH: &str = "/.well-known/switchyard-challenge/";
/// Most certificates a gateway may ask for at once.
pub const MAX_CERTIFICATE_IDS: usize = 100;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_domains, add_domain))
        .routes(routes!(get_domain, remove_domain))
        .routes(routes!(verify_domain))
        .routes(routes!(renew_domain))
        .routes(routes!(certificates))
}

/// How to prove control of a domain: either proof will do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    /// The token both proofs carry.
    pub token: String,
    /// A DNS TXT record: `name` with `value`.
    pub dns: DnsProof,
    /// An HTTP answer: `GET url` must return `body` (the platform's
    /// gateways answer it once the name points at them).
    pub http: HttpProof,
    /// `dns` or `http` once proven.
    pub verified_by: Option<String>,
    /// When it was proven.
    pub verified_at: Option<DateTime<Utc>>,
    /// When tenant-admin checks again by itself, while pending.
    pub next_check_at: Option<DateTime<Utc>>,
}

/// The TXT record proving control.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DnsProof {
    /// Always `TXT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `_switchyard-challenge.<hostname>`.
    pub name: String,
    /// The token.
    pub value: String,
}

/// The HTTP answer proving the name points at the platform.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HttpProof {
    /// `http://<hostname>/.well-known/switchyard-challenge/<token>`.
    pub url: String,
    /// What it must answer.
    pub body: String,
}

/// The certificate in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CertificateInfo {
    /// Its id (the routing snapshot references it).
    pub id: i64,
    /// Valid from.
    pub not_before: DateTime<Utc>,
    /// Valid until.
    pub not_after: DateTime<Utc>,
}

/// A custom domain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Domain {
    /// The hostname, normalised (lowercase, punycode, no trailing dot).
    pub hostname: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// `pending_verification`, `verified` (routes; no certificate yet),
    /// `issuing`, `active` (routes with its certificate), `renewing` (the
    /// current certificate still serves), `failed` (see `last_error`),
    /// `expired` or `removed`.
    pub state: String,
    /// Ownership proof.
    pub verification: Verification,
    /// The certificate in force, if any.
    pub certificate: Option<CertificateInfo>,
    /// When the next certificate order (first, retry or renewal) is due.
    pub next_issue_at: Option<DateTime<Utc>>,
    /// Why the last check or order failed.
    pub last_error: Option<String>,
    /// Added.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Removed.
    pub removed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct DomainRow {
    id: i64,
    hostname: String,
    tenant_id: String,
    state: String,
    verification_token: String,
    verified_by: Option<String>,
    verified_at: Option<DateTime<Utc>>,
    next_check_at: Option<DateTime<Utc>>,
    certificate_id: Option<i64>,
    not_before: Option<DateTime<Utc>>,
    not_after: Option<DateTime<Utc>>,
    next_issue_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    removed_at: Option<DateTime<Utc>>,
}

const DOMAIN_SELECT: &str = "SELECT d.id, d.hostname, d.tenant_id, d.state::text AS state, \
        d.verification_token, d.verified_by, d.verified_at, d.next_check_at, d.certificate_id, \
        c.not_before, c.not_after, d.next_issue_at, d.last_error, d.created_at, d.updated_at, \
        d.removed_at \
    FROM domains d LEFT JOIN certificates c ON c.id = d.certificate_id";

impl From<DomainRow> for Domain {
    fn from(r: DomainRow) -> Self {
        let token = r.verification_token;
        Domain {
            verification: Verification {
                dns: DnsProof {
                    kind: "TXT".to_owned(),
                    name: format!("{TXT_LABEL}.{}", r.hostname),
                    value: token.clone(),
                },
                http: HttpProof {
                    url: format!("http://{}{HTTP_PROOF_PATH}{token}", r.hostname),
                    body: token.clone(),
                },
                token,
                verified_by: r.verified_by,
                verified_at: r.verified_at,
                next_check_at: r
                    .next_check_at
                    .filter(|_| r.state == "pending_verification"),
            },
            certificate: match (r.certificate_id, r.not_before, r.not_after) {
                (Some(id), Some(not_before), Some(not_after)) => Some(CertificateInfo {
                    id,
                    not_before,
                    not_after,
                }),
                _ => None,
            },
            hostname: r.hostname,
            tenant: r.tenant_id,
            state: r.state,
            next_issue_at: r.next_issue_at,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            removed_at: r.removed_at,
        }
    }
}

/// Tenant `tenant`'s domain `hostname` that is not removed, locked for the
/// rest of `tx` when `lock`; 404 when there is none.
async fn fetch_domain(
    db: &mut sqlx::PgConnection,
    tenant: &str,
    hostname: &str,
    lock: bool,
) -> ApiResult<DomainRow> {
    // The path's hostname is normalised as the stored one was, so
    // `ERP.Example.com.` finds `erp.example.com`.
    let host = router::normalize(hostname)
        .map(|h| h.into_owned())
        .unwrap_or_else(|_| hostname.to_owned());
    let sql = format!(
        "{DOMAIN_SELECT} WHERE d.tenant_id = $1 AND d.hostname = $2 AND d.state <> 'removed'{}",
        if lock { " FOR UPDATE OF d" } else { "" }
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(&host)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("domain {host:?} of tenant {tenant:?}")))
}

async fn domain_by_id(db: &mut sqlx::PgConnection, id: i64) -> ApiResult<Domain> {
    let sql = format!("{DOMAIN_SELECT} WHERE d.id = $1");
    let row: DomainRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(db)
        .await?;
    Ok(row.into())
}

/// `GET /v1/tenants/{id}/domains` filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DomainFilter {
    /// Only domains in this state (`removed` lists removed ones, which are
    /// otherwise left out).
    pub state: Option<String>,
}

/// Every state a domain can be in.
pub const STATES: [&str; 8] = [
    "pending_verification",
    "verified",
    "issuing",
    "active",
    "failed",
    "renewing",
    "expired",
    "removed",
];

/// Lists a tenant's custom domains by hostname.
#[utoipa::path(get, path = "/v1/tenants/{id}/domains", tag = "domains", params(PageQuery, DomainFilter),
    responses((status = 200, body = Page<Domain>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
async fn list_domains(
    State(st): St,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    Query(f): Query<DomainFilter>,
) -> ApiResult<Json<Page<Domain>>> {
    let limit = q.limit()?;
    if let Some(s) = &f.state
        && !STATES.contains(&s.as_str())
    {
        return Err(ApiError::bad_field(
            "state",
            format!("state must be one of {}", STATES.join(", ")),
        ));
    }
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1")
        .bind(&id)
        .fetch_optional(&st.db)
        .await?;
    if exists.is_none() {
        return Err(ApiError::not_found(format!("tenant {id:?}")));
    }
    let sql = format!(
        "{DOMAIN_SELECT} WHERE d.tenant_id = $1 AND ($2::text IS NULL OR d.hostname > $2) \
         AND (CASE WHEN $3::text IS NULL THEN d.state <> 'removed' ELSE d.state::text = $3 END) \
         ORDER BY d.hostname, d.id LIMIT $4"
    );
    let rows: Vec<DomainRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&id)
        .bind(q.after()?)
        .bind(&f.state)
        .bind(limit + 1)
        .fetch_all(&st.db)
        .await?;
    let rows: Vec<Domain> = rows.into_iter().map(Domain::from).collect();
    Ok(Json(Page::from_rows(rows, limit, |d| d.hostname.clone())))
}

/// `POST /v1/tenants/{id}/domains`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// The custom hostname, e.g. `erp.customer.com` (stored normalised:
    /// lowercase, internationalised names in punycode, no trailing dot).
    pub hostname: String,
}

/// Checks that `raw` may be claimed as a custom domain; the normalised name.
fn claimable(st: &AppState, raw: &str) -> ApiResult<String> {
    if st.domains.base_domains.is_empty() {
        // Without them a tenant could claim a platform name (even another
        // tenant's `{slug}.{base}`), and gateways would refuse the snapshot.
        return Err(ApiError::unavailable(
            "custom domains are off: tenant-admin runs without BASE_DOMAINS (the platform's own domains)",
        ));
    }
    let host = validate::hostname("hostname", raw)?;
    if host.parse::<std::net::Ipv6Addr>().is_ok() || host.starts_with('[') {
        return Err(ApiError::invalid(
            "hostname",
            "must be a DNS name, not an IP address",
        ));
    }
    if !host.contains('.') {
        return Err(ApiError::invalid(
            "hostname",
            format!("{host} is a single label; a custom domain needs at least two"),
        ));
    }
    let name =
        router::Hostname::parse(&host).map_err(|e| ApiError::invalid("hostname", e.to_string()))?;
    if let Some(base) = st.domains.base_domains.iter().find(|b| name.is_within(b)) {
        return Err(ApiError::invalid(
            "hostname",
            format!(
                "{host} is within the platform's domain {base}; tenants get {{slug}}.{base} without adding it"
            ),
        ));
    }
    if let Some(denied) = st.domains.deny.iter().find(|d| name.is_within(d)) {
        return Err(ApiError::invalid(
            "hostname",
            format!("names at or below {denied} cannot be claimed"),
        ));
    }
    Ok(host)
}

/// Adds a custom domain to a tenant and answers how to prove ownership.
///
/// The domain routes once proven (`POST …/verify`, or tenant-admin's own
/// re-checks), then gets its certificate. Refused: a name that is not a
/// DNS name, within the platform's base domains, on the deny list,
/// already claimed (by any tenant), or past the plan's `max_domains`.
#[utoipa::path(post, path = "/v1/tenants/{id}/domains", tag = "domains", request_body = NewDomain,
    responses((status = 201, body = Domain), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn add_domain(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NewDomain>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Domain>)> {
    let host = claimable(&st, &body.hostname)?;
    let mut tx = st.db.begin().await?;
    let tenant = lock_tenant(&mut tx, &id).await?;
    if tenant.status == "deleted" {
        return Err(ApiError::conflict("the tenant is deleted"));
    }
    let (count, cap): (i64, i32) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM domains WHERE tenant_id = $1 AND state <> 'removed'), \
            (SELECT max_domains FROM plans WHERE name = $2)",
    )
    .bind(&id)
    .bind(&tenant.plan)
    .fetch_one(&mut *tx)
    .await?;
    let claimed: Option<String> = sqlx::query_scalar(
        "SELECT tenant_id FROM domains WHERE hostname = $1 AND state <> 'removed'",
    )
    .bind(&host)
    .fetch_optional(&mut *tx)
    .await?;
    match claimed {
        Some(owner) if owner == id => {
            return Err(ApiError::conflict_on(
                "hostname",
                format!("the tenant already has {host}: GET /v1/tenants/{id}/domains/{host}"),
            ));
        }
        // Never say which tenant has it.
        Some(_) => {
            return Err(ApiError::conflict_on(
                "hostname",
                format!("{host} is already claimed by another tenant"),
            ));
        }
        None => {}
    }
    if count >= i64::from(cap) {
        return Err(ApiError::conflict_on(
            "hostname",
            format!(
                "plan {:?} allows {cap} custom domain{}; the tenant has {count}",
                tenant.plan,
                if cap == 1 { "" } else { "s" }
            ),
        ));
    }
    let mut token = [0u8; 24];
    crate::secrets::random_bytes(&mut token);
    let token = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token);
    let domain_id: i64 = sqlx::query_scalar(
        "INSERT INTO domains (hostname, tenant_id, verification_token, next_check_at) \
         VALUES ($1, $2, $3, now() + interval '10 seconds') RETURNING id",
    )
    .bind(&host)
    .bind(&id)
    .bind(&token)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        conflict_as(
            e,
            "hostname",
            format!("{host} is already claimed by another tenant"),
        )
    })?;
    let domain = domain_by_id(&mut tx, domain_id).await?;
    let resource = format!("/v1/tenants/{id}/domains/{host}");
    audit(
        &mut tx,
        &caller,
        "domain.add",
        &resource,
        None::<&Domain>,
        Some(&domain),
    )
    .await?;
    // The gateways start answering the HTTP proof.
    publish(&mut tx, &format!("domain.add {host}")).await?;
    tx.commit().await?;
    tracing::info!(tenant = %id, hostname = %host, "custom domain added");
    Ok((StatusCode::CREATED, location(&resource), Json(domain)))
}

/// A tenant's custom domain: its state, ownership proof and certificate.
#[utoipa::path(get, path = "/v1/tenants/{id}/domains/{hostname}", tag = "domains",
    responses((status = 200, body = Domain), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_domain(
    State(st): St,
    Path((id, hostname)): Path<(String, String)>,
) -> ApiResult<Json<Domain>> {
    let mut conn = st.db.acquire().await?;
    Ok(Json(
        fetch_domain(&mut conn, &id, &hostname, false).await?.into(),
    ))
}

/// Checks the ownership proofs now (DNS TXT record, then the HTTP answer).
///
/// 200 with the domain: `verified` when a proof holds (it routes at once,
/// and its certificate is ordered), else still `pending_verification` with
/// the reason in `last_error`. A domain that failed verification is given
/// another chance; one already verified is returned as it is.
#[utoipa::path(post, path = "/v1/tenants/{id}/domains/{hostname}/verify", tag = "domains",
    responses((status = 200, body = Domain), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn verify_domain(
    State(st): St,
    caller: Caller,
    Path((id, hostname)): Path<(String, String)>,
) -> ApiResult<Json<Domain>> {
    let mut conn = st.db.acquire().await?;
    let row = fetch_domain(&mut conn, &id, &hostname, false).await?;
    drop(conn);
    if row.verified_at.is_some() {
        return Ok(Json(row.into()));
    }
    if row.state == "failed" {
        // Verification gave up; the customer asks again: the HTTP proof is
        // published again, and the background checks resume.
        let mut tx = st.db.begin().await?;
        sqlx::query(
            "UPDATE domains SET state = 'pending_verification', check_failures = 0, \
                checks_since = now(), next_check_at = now() + interval '10 seconds', \
                updated_at = now() WHERE id = $1 AND state = 'failed'",
        )
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
        let version = publish(&mut tx, &format!("domain.verify {}", row.hostname)).await?;
        tx.commit().await?;
        // Best effort: the HTTP proof needs the gateways to answer it.
        let _ = crate::feed::wait_for_gateways(&st.db, version, Duration::from_secs(5)).await;
    }
    let outcome = st
        .domains
        .verifier
        .check(&row.hostname, &row.verification_token)
        .await;
    crate::domains::record_check(&st, row.id, &outcome, Some(&caller))
        .await
        .map_err(ApiError::from)?;
    let mut conn = st.db.acquire().await?;
    Ok(Json(domain_by_id(&mut conn, row.id).await?))
}

/// Orders a new certificate now (the domain must be verified), instead
/// of waiting for the renewal time or the next retry.
#[utoipa::path(post, path = "/v1/tenants/{id}/domains/{hostname}/renew", tag = "domains",
    responses((status = 202, body = Domain), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn renew_domain(
    State(st): St,
    caller: Caller,
    Path((id, hostname)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Domain>)> {
    if st.domains.acme.is_none() {
        return Err(ApiError::conflict(
            "no ACME CA is configured (--acme-directory): certificates are not ordered",
        ));
    }
    let mut tx = st.db.begin().await?;
    let row = fetch_domain(&mut tx, &id, &hostname, true).await?;
    if row.verified_at.is_none() {
        return Err(ApiError::conflict(
            "the domain's ownership is not proven yet: verify it first",
        ));
    }
    let before: Domain = row.into();
    sqlx::query(
        "UPDATE domains SET next_issue_at = now(), issue_failures = 0, updated_at = now() \
         WHERE tenant_id = $1 AND hostname = $2 AND state <> 'removed'",
    )
    .bind(&id)
    .bind(&before.hostname)
    .execute(&mut *tx)
    .await?;
    let resource = format!("/v1/tenants/{id}/domains/{}", before.hostname);
    audit(
        &mut tx,
        &caller,
        "domain.renew",
        &resource,
        Some(&before),
        Some(&json!({"next_issue_at": "now"})),
    )
    .await?;
    let after = fetch_domain(&mut tx, &id, &before.hostname, false).await?;
    tx.commit().await?;
    st.domains.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(after.into())))
}

/// Removes a custom domain: it stops routing and its certificate stops
/// being served at once; the certificate's key is destroyed.
#[utoipa::path(delete, path = "/v1/tenants/{id}/domains/{hostname}", tag = "domains",
    responses((status = 200, body = Domain), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
async fn remove_domain(
    State(st): St,
    caller: Caller,
    Path((id, hostname)): Path<(String, String)>,
) -> ApiResult<Json<Domain>> {
    let mut tx = st.db.begin().await?;
    let row = fetch_domain(&mut tx, &id, &hostname, true).await?;
    let domain_id = row.id;
    let before: Domain = row.into();
    crate::domains::remove(&mut tx, &[domain_id]).await?;
    let after = domain_by_id(&mut tx, domain_id).await?;
    let resource = format!("/v1/tenants/{id}/domains/{}", before.hostname);
    audit(
        &mut tx,
        &caller,
        "domain.remove",
        &resource,
        Some(&before),
        Some(&after),
    )
    .await?;
    publish(&mut tx, &format!("domain.remove {}", before.hostname)).await?;
    tx.commit().await?;
    tracing::info!(tenant = %id, hostname = %before.hostname, "custom domain removed");
    Ok(Json(after))
}

// ---------------------------------------------------------------- certificates for gateways

/// `GET /v1/routing/certificates` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CertificateQuery {
    /// Comma-separated certificate ids from the snapshot's `certificates`
    /// (at most 100).
    pub ids: Option<String>,
}

/// One certificate with its private key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificatePair {
    /// The id the snapshot references.
    pub id: i64,
    /// The domain it is for.
    pub hostname: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
    /// The chain, leaf first (PEM).
    pub chain_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// `GET /v1/routing/certificates` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificatePairs {
    /// The certificates asked for that are still in force; ids no longer
    /// referenced are left out.
    pub certificates: Vec<CertificatePair>,
}

/// The certificates (with private keys) of the snapshot's `certificates`
/// references, for gateways: only the `gateway` role may ask.
#[utoipa::path(get, path = "/v1/routing/certificates", tag = "feed", params(CertificateQuery),
    responses((status = 200, body = CertificatePairs), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)))]
async fn certificates(State(st): St, Query(q): Query<CertificateQuery>) -> ApiResult<Response> {
    let ids: Vec<i64> =
        q.ids
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::bad_field("ids", format!("{s:?} is not a certificate id"))
                })
            })
            .collect::<ApiResult<_>>()?;
    if ids.is_empty() || ids.len() > MAX_CERTIFICATE_IDS {
        return Err(ApiError::bad_field(
            "ids",
            format!("ids must list 1 to {MAX_CERTIFICATE_IDS} certificate ids, comma-separated"),
        ));
    }
    let key = st.key.as_ref().ok_or_else(|| {
        ApiError::unavailable("SECRETS_KEY is not set: certificate keys cannot be opened")
    })?;
    let rows: Vec<(i64, String, i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT c.id, c.hostname, extract(epoch FROM c.not_after)::bigint, c.chain_pem, c.key_sealed \
         FROM certificates c JOIN domains d ON d.certificate_id = c.id \
            JOIN tenants t ON t.id = d.tenant_id \
         WHERE c.id = ANY($1) AND d.state <> 'removed' AND t.status = 'active' \
            AND c.not_after > now() ORDER BY c.id",
    )
    .bind(&ids)
    .fetch_all(&st.db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, hostname, not_after, chain_pem, sealed) in rows {
        // One key that cannot be opened leaves that certificate out (the
        // gateway retries it), not the whole batch.
        let Ok(key_pem) = key.open_text(Purpose::PrivateKey, &sealed).inspect_err(|e| {
            tracing::error!(certificate = id, %hostname, error = %e, "cannot open a certificate key");
        }) else {
            continue;
        };
        out.push(CertificatePair {
            id,
            hostname,
            not_after,
            chain_pem,
            key_pem,
        });
    }
    let mut response = Json(CertificatePairs { certificates: out }).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
