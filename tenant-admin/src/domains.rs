//! Custom domains after they are added: ownership checks in the
//! background, certificate orders, renewals and expiry.
//!
//! A domain is added `pending_verification` (see [`crate::api::domains`]).
//! The worker ([`start_worker`]) then, once a second or when woken:
//!
//! 1. **checks pending domains** whose `next_check_at` is due (DNS TXT or
//!    HTTP proof, [`crate::verify`]); a proven one becomes `verified`, is
//!    routed, and gets a certificate order scheduled at once. A failed check
//!    is retried with backoff (10 s doubling to an hour) for
//!    [`VERIFY_FOR`], then the domain is `failed` with the reason.
//! 2. **orders certificates** ([`crate::acme`]) for domains whose
//!    `next_issue_at` is due: claimed in one catalog transaction under an
//!    advisory lock that also counts the CA orders of the last hour, globally
//!    and per tenant, so the limits hold across replicas; the claim sets a
//!    lease (`lease_owner`, `lease_until`), so exactly one replica orders for
//!    a domain at a time. The HTTP-01 challenges are published in the
//!    routing snapshot and the CA told they are ready only once every live
//!    gateway has applied that snapshot. The certificate is stored with its
//!    key sealed under `SECRETS_KEY`, published, and its renewal scheduled
//!    when a third of its lifetime remains (less a little jitter). A failed
//!    order is retried with jittered exponential backoff; the domain shows
//!    `failed` (no certificate yet), `renewing` (the current one still
//!    serves) or `expired`, with the reason in `last_error`.
//! 3. **expires** certificates past `not_after`: the domain turns
//!    `expired` and gateways stop serving that certificate.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{Mutex, Notify, Semaphore};

use crate::acme::{Acme, AcmeConfig, AcmeError};
use crate::api::request::{Caller, audit};
use crate::app::AppState;
use crate::secrets::Purpose;
use crate::verify::{Proof, Verifier};

/// How long a pending domain is re-checked before it is `failed`.
pub const VERIFY_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// First background re-check of a pending domain; doubles per failure.
const CHECK_BACKOFF_MIN: Duration = Duration::from_secs(10);
/// Longest wait between two background checks.
const CHECK_BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Pending domains checked per round.
const CHECKS_PER_ROUND: i64 = 32;
/// How long a claim on a domain's certificate order lasts; an order takes
/// far less ([`ORDER_DEADLINE`] plus the publication), and a replica that
/// dies mid-order leaves the domain to another once it runs out.
const LEASE: Duration = Duration::from_secs(600);
/// Longest time a whole order (account, order, publication, validation,
/// download) may take; well inside [`LEASE`].
const ORDER_BUDGET: Duration = Duration::from_secs(420);
/// Orders failing in a row before the domain is left alone (until
/// `POST …/renew` or a new verification).
const MAX_ISSUE_FAILURES: i32 = 20;
/// Longest time from "challenges ready" to the certificate downloaded.
const ORDER_DEADLINE: Duration = Duration::from_secs(180);
/// How long the gateways get to apply a snapshot with new challenges.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);
/// Longest retry delay after failed orders.
const ISSUE_BACKOFF_MAX: Duration = Duration::from_secs(24 * 3600);
/// Catalog advisory lock serialising certificate-order claims.
const CLAIM_LOCK: i64 = 5380;
/// Catalog advisory lock serialising ACME account registration.
const ACCOUNT_LOCK: i64 = 5381;

/// How tenant-admin orders certificates.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The CA.
    pub config: AcmeConfig,
    /// Orders started per rolling hour, all tenants together.
    pub orders_per_hour: u32,
    /// Orders started per rolling hour for one tenant.
    pub tenant_orders_per_hour: u32,
    /// Orders in flight at once (per replica and, through the claim, overall).
    pub concurrency: u32,
    /// First retry delay after a failed order; doubles per failure.
    pub retry_after: Duration,
}

/// The custom-domain settings of `tenant-admin serve`.
#[derive(Debug)]
pub struct DomainSettings {
    /// The platform's own domains: never a tenant's custom domain.
    pub base_domains: Vec<router::Hostname>,
    /// Names that may not be claimed, nor anything below them.
    pub deny: Vec<router::Hostname>,
    /// Checks ownership proofs.
    pub verifier: Verifier,
    /// Certificates, when a CA is configured; without one, verified
    /// domains route over HTTP (and HTTPS with the platform's default
    /// certificate) and no certificate is ordered.
    pub acme: Option<AcmeSettings>,
    /// This replica's name in leases.
    pub owner: String,
    /// Wakes the worker (a domain just verified or asked to renew).
    pub wake: Notify,
    account: Mutex<Option<Arc<Acme>>>,
}

impl DomainSettings {
    /// Settings for one replica.
    pub fn new(
        base_domains: Vec<router::Hostname>,
        deny: Vec<router::Hostname>,
        verifier: Verifier,
        acme: Option<AcmeSettings>,
    ) -> Self {
        let mut id = [0u8; 6];
        crate::secrets::random_bytes(&mut id);
        Self {
            base_domains,
            deny,
            verifier,
            acme,
            owner: format!("{}-{}", hostname_or_pid(), hex::encode(id)),
            wake: Notify::new(),
            account: Mutex::new(None),
        }
    }
}

fn hostname_or_pid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid{}", std::process::id()))
}

/// The wait before check or order number `failures + 1`: `base` doubled
/// per failure, capped, plus up to a fifth more at random so that many
/// domains failing together do not retry together.
pub(crate) fn backoff(base: Duration, failures: i32, max: Duration) -> Duration {
    let doubled = base.saturating_mul(1u32 << failures.clamp(0, 20));
    let wait = doubled.min(max);
    let mut r = [0u8; 2];
    crate::secrets::random_bytes(&mut r);
    let jitter = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX) * 0.2;
    wait.mul_f64(1.0 + jitter)
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// when a third of its lifetime remains, brought forward by up to a
/// thirtieth of it at random.
pub(crate) fn renewal_time(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> DateTime<Utc> {
    let life = (not_after - not_before).max(chrono::TimeDelta::zero());
    let mut r = [0u8; 2];
    crate::secrets::random_bytes(&mut r);
    let jitter = life / 30 * i32::from(u16::from_le_bytes(r) % 1000) / 1000;
    not_after - life / 3 - jitter
}

/// Starts the background worker.
pub fn start_worker(st: Arc<AppState>) {
    tokio::spawn(async move {
        let orders = Arc::new(Semaphore::new(
            st.domains
                .acme
                .as_ref()
                .map_or(1, |a| a.concurrency.max(1) as usize),
        ));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = st.domains.wake.notified() => {}
            }
            if let Err(e) = check_due(&st).await {
                tracing::warn!(error = %e, "domain checks: catalog unavailable");
            }
            if let Err(e) = expire(&st).await {
                tracing::warn!(error = %e, "certificate expiry: catalog unavailable");
            }
            if st.domains.acme.is_some() {
                match claim_orders(&st, orders.available_permits()).await {
                    Ok(claims) => {
                        for claim in claims {
                            let permit = orders.clone().acquire_owned().await;
                            let st = st.clone();
                            tokio::spawn(async move {
                                let _permit = permit;
                                order(&st, claim).await;
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "certificate orders: catalog unavailable"),
                }
            }
        }
    });
}

// ------------------------------------------------------------------ verification

/// Checks pending domains whose time has come.
async fn check_due(st: &Arc<AppState>) -> Result<(), sqlx::Error> {
    // Claimed by pushing their next check a minute on, so another replica
    // does not check them at the same time.
    let due: Vec<(i64, String, String)> = sqlx::query_as(
        "UPDATE domains SET next_check_at = now() + interval '1 minute' \
         WHERE id IN (SELECT d.id FROM domains d JOIN tenants t ON t.id = d.tenant_id \
            WHERE d.state = 'pending_verification' AND d.next_check_at <= now() \
                AND t.status = 'active' \
            ORDER BY d.next_check_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED) \
         RETURNING id, hostname, verification_token",
    )
    .bind(CHECKS_PER_ROUND)
    .fetch_all(&st.db)
    .await?;
    let checks = due.into_iter().map(|(id, host, token)| {
        let st = st.clone();
        async move {
            let outcome = st.domains.verifier.check(&host, &token).await;
            if let Err(e) = record_check(&st, id, &outcome, None).await {
                tracing::warn!(error = %e, hostname = %host, "cannot record a domain check");
            }
        }
    });
    futures::future::join_all(checks).await;
    Ok(())
}

/// Records the outcome of an ownership check of domain `id`: verified
/// (routed, certificate order scheduled), or the reason and the next check.
/// Whether the domain is verified now.
/// A check asked for through the API is audited under its `caller`.
pub(crate) async fn record_check(
    st: &AppState,
    id: i64,
    outcome: &Result<Proof, String>,
    caller: Option<&Caller>,
) -> Result<bool, sqlx::Error> {
    let mut tx = st.db.begin().await?;
    let row: Option<(String, i32, DateTime<Utc>, String, String)> = sqlx::query_as(
        "SELECT state::text, check_failures, coalesce(checks_since, created_at), hostname, \
            tenant_id FROM domains WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((state, failures, created_at, hostname, tenant)) = row else {
        return Ok(false);
    };
    if state != "pending_verification" {
        // Removed meanwhile, or verified by someone else.
        return Ok(state != "removed" && state != "failed");
    }
    match outcome {
        Ok(proof) => {
            sqlx::query(
                "UPDATE domains SET state = 'verified', verified_at = now(), verified_by = $2, \
                    last_error = NULL, next_check_at = NULL, check_failures = 0, \
                    next_issue_at = now(), updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .bind(proof.as_str())
            .execute(&mut *tx)
            .await?;
            let caller = caller.cloned().unwrap_or_else(worker);
            let resource = format!("/v1/tenants/{tenant}/domains/{hostname}");
            audit(
                &mut tx,
                &caller,
                "domain.verified",
                &resource,
                Some(&serde_json::json!({ "state": state })),
                Some(&serde_json::json!({ "state": "verified", "verified_by": proof.as_str() })),
            )
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("audit: {}", e.problem(None).detail)))?;
            bump(&mut tx, &format!("domain {hostname} verified")).await?;
            tx.commit().await?;
            tracing::info!(%hostname, proof = proof.as_str(), "domain verified");
            st.domains.wake.notify_one();
            Ok(true)
        }
        Err(reason) => {
            let age = (Utc::now() - created_at).to_std().unwrap_or_default();
            if age >= VERIFY_FOR {
                sqlx::query(
                    "UPDATE domains SET state = 'failed', next_check_at = NULL, \
                        last_error = $2, updated_at = now() WHERE id = $1",
                )
                .bind(id)
                .bind(format!(
                    "ownership not proven within {} days: {reason}",
                    VERIFY_FOR.as_secs() / 86400
                ))
                .execute(&mut *tx)
                .await?;
                // Its ownership challenge leaves the snapshot.
                bump(&mut tx, &format!("domain {hostname} not verified")).await?;
            } else {
                let wait = backoff(CHECK_BACKOFF_MIN, failures, CHECK_BACKOFF_MAX);
                sqlx::query(
                    "UPDATE domains SET check_failures = check_failures + 1, last_error = $2, \
                        next_check_at = now() + make_interval(secs => $3), updated_at = now() \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(reason)
                .bind(wait.as_secs_f64())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(false)
        }
    }
}

/// The actor the worker's audit rows name.
fn worker() -> Caller {
    Caller {
        token_id: 0,
        name: "domain worker".to_owned(),
        role: crate::api::request::Role::Operator,
    }
}

/// Removes domains (by id) in `tx`: they stop routing, their challenges
/// are withdrawn, and their certificates deleted with their keys. The
/// caller publishes the change.
pub(crate) async fn remove(tx: &mut sqlx::PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE domains SET state = 'removed', removed_at = now(), certificate_id = NULL, \
            next_check_at = NULL, next_issue_at = NULL, lease_owner = NULL, lease_until = NULL, \
            updated_at = now() WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM acme_challenges WHERE domain_id = ANY($1)")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM certificates WHERE domain_id = ANY($1)")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Publishes a new snapshot version from a worker transaction.
async fn bump(tx: &mut sqlx::PgConnection, reason: &str) -> Result<u64, sqlx::Error> {
    match crate::feed::bump(tx, reason).await {
        Ok(v) => Ok(v),
        Err(crate::feed::BumpError::Db(e)) => Err(e),
        Err(crate::feed::BumpError::Invalid(problems)) => Err(sqlx::Error::Protocol(format!(
            "routing would be invalid: {}",
            problems.join("; ")
        ))),
    }
}

// ------------------------------------------------------------------ expiry

/// Marks domains whose certificate has expired; gateways stop serving it.
async fn expire(st: &AppState) -> Result<(), sqlx::Error> {
    let mut tx = st.db.begin().await?;
    let expired: Vec<String> = sqlx::query_scalar(
        "UPDATE domains d SET state = 'expired', updated_at = now(), \
            last_error = coalesce(d.last_error, 'the certificate expired before it was renewed') \
         FROM certificates c WHERE c.id = d.certificate_id AND c.not_after <= now() \
            AND d.state IN ('active', 'renewing', 'failed') \
         RETURNING d.hostname",
    )
    .fetch_all(&mut *tx)
    .await?;
    if expired.is_empty() {
        return Ok(());
    }
    bump(
        &mut tx,
        &format!("certificates expired: {}", expired.join(", ")),
    )
    .await?;
    tx.commit().await?;
    for hostname in expired {
        tracing::warn!(%hostname, "certificate expired before it was renewed");
    }
    Ok(())
}

// ------------------------------------------------------------------ orders

/// A domain claimed for a certificate order by this replica.
#[derive(Debug)]
struct Claim {
    domain: i64,
    hostname: String,
    order_row: i64,
    failures: i32,
}

/// Claims up to `slots` domains due for a certificate, within the CA
/// limits; domains of a tenant over its limit are put off.
async fn claim_orders(st: &AppState, slots: usize) -> Result<Vec<Claim>, sqlx::Error> {
    let Some(acme) = &st.domains.acme else {
        return Ok(Vec::new());
    };
    if slots == 0 {
        return Ok(Vec::new());
    }
    let mut tx = st.db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CLAIM_LOCK)
        .execute(&mut *tx)
        .await?;
    let (last_hour, in_flight): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE finished_at IS NULL \
                AND started_at > now() - make_interval(secs => $1)) \
         FROM acme_orders WHERE started_at > now() - interval '1 hour'",
    )
    .bind(LEASE.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    let global_room = i64::from(acme.orders_per_hour) - last_hour;
    let flight_room = i64::from(acme.concurrency) - in_flight;
    let room = global_room.min(flight_room).min(slots as i64);
    if room <= 0 {
        if global_room <= 0 {
            tracing::debug!(
                limit = acme.orders_per_hour,
                "certificate orders: the hourly limit is reached"
            );
        }
        return Ok(Vec::new());
    }
    let due: Vec<(i64, String, String, bool, i32, i64)> = sqlx::query_as(
        "SELECT d.id, d.hostname, d.tenant_id, d.certificate_id IS NOT NULL, d.issue_failures, \
            (SELECT count(*) FROM acme_orders o WHERE o.tenant_id = d.tenant_id \
                AND o.started_at > now() - interval '1 hour') \
         FROM domains d JOIN tenants t ON t.id = d.tenant_id \
         WHERE d.next_issue_at <= now() AND d.verified_at IS NOT NULL \
            AND d.state IN ('verified', 'issuing', 'active', 'renewing', 'failed', 'expired') \
            AND (d.lease_until IS NULL OR d.lease_until < now()) AND t.status = 'active' \
         ORDER BY d.next_issue_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED",
    )
    .bind(room * 4)
    .fetch_all(&mut *tx)
    .await?;
    let mut claims = Vec::new();
    let mut taken: std::collections::HashMap<String, i64> = Default::default();
    for (domain, hostname, tenant, has_cert, failures, tenant_last_hour) in due {
        if claims.len() as i64 >= room {
            break;
        }
        let tenant_count = taken.entry(tenant.clone()).or_insert(tenant_last_hour);
        if *tenant_count >= i64::from(acme.tenant_orders_per_hour) {
            sqlx::query(
                "UPDATE domains SET next_issue_at = now() + interval '5 minutes', \
                    last_error = $2, updated_at = now() WHERE id = $1",
            )
            .bind(domain)
            .bind(format!(
                "waiting: the tenant's certificate orders are limited to {} per hour",
                acme.tenant_orders_per_hour
            ))
            .execute(&mut *tx)
            .await?;
            continue;
        }
        *tenant_count += 1;
        let order_row: i64 = sqlx::query_scalar(
            "INSERT INTO acme_orders (domain_id, tenant_id, hostname, renewal, owner) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(domain)
        .bind(&tenant)
        .bind(&hostname)
        .bind(has_cert)
        .bind(&st.domains.owner)
        .fetch_one(&mut *tx)
        .await?;
        // The lease names this order, not only this replica: an order that
        // outlived its lease cannot touch the one that took over.
        sqlx::query(
            "UPDATE domains SET lease_owner = $2, lease_until = now() + make_interval(secs => $3), \
                state = CASE WHEN $4 AND state IN ('active', 'renewing') THEN 'renewing' \
                    ELSE 'issuing' END::domain_state, \
                updated_at = now() WHERE id = $1",
        )
        .bind(domain)
        .bind(lease_token(&st.domains.owner, order_row))
        .bind(LEASE.as_secs_f64())
        .bind(has_cert)
        .execute(&mut *tx)
        .await?;
        claims.push(Claim {
            domain,
            hostname,
            order_row,
            failures,
        });
    }
    tx.commit().await?;
    Ok(claims)
}

/// The lease of order `order_row` by replica `owner`.
fn lease_token(owner: &str, order_row: i64) -> String {
    format!("{owner}/{order_row}")
}

/// Locks the claimed domain's row; whether this order still holds its
/// lease and the domain is not removed. Either way this order's own
/// challenges are withdrawn (row lock first, then challenges, in every path).
async fn hold_lease(
    tx: &mut sqlx::PgConnection,
    st: &AppState,
    claim: &Claim,
) -> Result<(bool, Option<i64>), sqlx::Error> {
    let row: Option<(String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT state::text, lease_owner, certificate_id FROM domains WHERE id = $1 FOR UPDATE",
    )
    .bind(claim.domain)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM acme_challenges WHERE order_id = $1")
        .bind(claim.order_row)
        .execute(&mut *tx)
        .await?;
    let token = lease_token(&st.domains.owner, claim.order_row);
    Ok(match row {
        Some((state, owner, cert)) => (
            state != "removed" && owner.as_deref() == Some(token.as_str()),
            cert,
        ),
        None => (false, None),
    })
}

/// The ACME account, loaded from the catalog or registered once.
async fn account(st: &AppState) -> Result<Arc<Acme>, AcmeError> {
    let settings = st
        .domains
        .acme
        .as_ref()
        .ok_or_else(|| AcmeError::Transient("no ACME directory is configured".into()))?;
    let mut cached = st.domains.account.lock().await;
    if let Some(acme) = cached.as_ref() {
        return Ok(acme.clone());
    }
    let key = st.key.as_ref().ok_or_else(|| {
        AcmeError::Transient("SECRETS_KEY is not set: certificates cannot be stored".into())
    })?;
    let catalog = |e: sqlx::Error| AcmeError::Transient(format!("catalog: {e}"));
    let mut tx = st.db.begin().await.map_err(catalog)?;
    // One registration across replicas.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ACCOUNT_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(catalog)?;
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT credentials_sealed FROM acme_accounts WHERE directory_url = $1")
            .bind(&settings.config.directory_url)
            .fetch_optional(&mut *tx)
            .await
            .map_err(catalog)?;
    let stored = stored
        .map(|sealed| key.open_text(Purpose::AcmeAccount, &sealed))
        .transpose()
        .map_err(|e| AcmeError::Transient(format!("the stored ACME account: {e}")))?;
    let (acme, created) = Acme::connect(&settings.config, stored.as_deref()).await?;
    if let Some(credentials) = created {
        sqlx::query(
            "INSERT INTO acme_accounts (directory_url, credentials_sealed) VALUES ($1, $2) \
             ON CONFLICT (directory_url) DO UPDATE SET credentials_sealed = EXCLUDED.credentials_sealed",
        )
        .bind(&settings.config.directory_url)
        .bind(key.seal(Purpose::AcmeAccount, credentials.as_bytes()))
        .execute(&mut *tx)
        .await
        .map_err(catalog)?;
        tracing::info!(directory = %settings.config.directory_url, "ACME account registered");
    }
    tx.commit().await.map_err(catalog)?;
    let acme = Arc::new(acme);
    *cached = Some(acme.clone());
    Ok(acme)
}

/// Orders, stores and publishes a certificate for a claimed domain, or
/// records why not.
async fn order(st: &AppState, claim: Claim) {
    st.metrics.acme_orders.with_label_values(&["started"]).inc();
    // Bounded well inside the lease, so no other order starts meanwhile.
    let outcome = match tokio::time::timeout(ORDER_BUDGET, issue(st, &claim)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(AcmeError::Transient(format!(
            "the order did not finish within {} s",
            ORDER_BUDGET.as_secs()
        ))),
    };
    let recorded = match &outcome {
        Ok(issued) => match store(st, &claim, issued).await {
            Ok(stored) => Ok(stored),
            // Not stored: record it as a failure, so the domain is retried
            // with backoff instead of waiting out its lease.
            Err(e) => {
                let error = AcmeError::Transient(format!("cannot store the certificate: {e}"));
                record_failure(st, &claim, &error).await.and(Err(e))
            }
        },
        Err(e) => record_failure(st, &claim, e).await,
    };
    let label = match (&outcome, &recorded) {
        (Ok(_), Ok(true)) => "issued",
        (Ok(_), _) => "discarded",
        (Err(_), _) => "failed",
    };
    st.metrics.acme_orders.with_label_values(&[label]).inc();
    match (&outcome, recorded) {
        (Ok(issued), Ok(true)) => tracing::info!(
            hostname = %claim.hostname,
            not_after = %issued.not_after,
            "certificate issued"
        ),
        (Ok(_), Ok(false)) => tracing::info!(
            hostname = %claim.hostname,
            "certificate issued for a domain no longer ours to serve: discarded"
        ),
        (Err(e), _) => {
            tracing::warn!(hostname = %claim.hostname, error = %e, "certificate order failed");
        }
        (_, Err(e)) => tracing::warn!(
            hostname = %claim.hostname,
            error = %e,
            "cannot record a certificate order"
        ),
    }
}

/// The ACME exchange: order, publish the challenges to the gateways, let
/// the CA validate, finalize.
async fn issue(st: &AppState, claim: &Claim) -> Result<crate::acme::Issued, AcmeError> {
    let acme = account(st).await?;
    let pending = acme.order(&claim.hostname).await?;
    if !pending.challenges().is_empty() {
        publish_challenges(st, claim, pending.challenges()).await?;
    }
    pending.complete(ORDER_DEADLINE).await
}

/// Puts the order's HTTP-01 answers in the routing snapshot and waits until
/// every live gateway serves them.
async fn publish_challenges(
    st: &AppState,
    claim: &Claim,
    challenges: &[crate::acme::Http01],
) -> Result<(), AcmeError> {
    let catalog = |e: sqlx::Error| AcmeError::Transient(format!("catalog: {e}"));
    let mut tx = st.db.begin().await.map_err(catalog)?;
    for c in challenges {
        sqlx::query(
            "INSERT INTO acme_challenges (token, domain_id, hostname, key_authorization, order_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token) DO NOTHING",
        )
        .bind(&c.token)
        .bind(claim.domain)
        .bind(&claim.hostname)
        .bind(&c.key_authorization)
        .bind(claim.order_row)
        .execute(&mut *tx)
        .await
        .map_err(catalog)?;
    }
    let version = bump(&mut tx, &format!("ACME challenge for {}", claim.hostname))
        .await
        .map_err(catalog)?;
    tx.commit().await.map_err(catalog)?;
    match crate::feed::wait_for_gateways(&st.db, version, PUBLISH_WAIT).await {
        Ok(()) => Ok(()),
        Err(crate::feed::Behind::Catalog(e)) => Err(catalog(e)),
        Err(crate::feed::Behind::Gateways(behind)) => Err(AcmeError::Transient(format!(
            "gateways {} did not apply the challenge within {} s",
            behind.join(", "),
            PUBLISH_WAIT.as_secs()
        ))),
    }
}

/// Stores an issued certificate and puts it in force, unless the domain
/// was removed or taken over meanwhile. Whether it was put in force.
async fn store(
    st: &AppState,
    claim: &Claim,
    issued: &crate::acme::Issued,
) -> Result<bool, sqlx::Error> {
    let Some(key) = st.key.as_ref() else {
        return Err(sqlx::Error::Protocol("SECRETS_KEY is not set".into()));
    };
    let mut tx = st.db.begin().await?;
    let (ours, previous) = hold_lease(&mut tx, st, claim).await?;
    if !ours {
        finish_order(
            &mut tx,
            claim,
            "failed",
            Some("the domain was removed, or its order taken over"),
        )
        .await?;
        withdrawn(tx, claim).await?;
        return Ok(false);
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO certificates (domain_id, hostname, chain_pem, key_sealed, not_before, not_after) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(claim.domain)
    .bind(&claim.hostname)
    .bind(&issued.chain_pem)
    .bind(key.seal(Purpose::PrivateKey, issued.key_pem.as_bytes()))
    .bind(issued.not_before)
    .bind(issued.not_after)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE domains SET certificate_id = $2, not_after = $3, state = 'active', \
            issue_failures = 0, last_error = NULL, next_issue_at = $4, \
            lease_owner = NULL, lease_until = NULL, updated_at = now() WHERE id = $1",
    )
    .bind(claim.domain)
    .bind(id)
    .bind(issued.not_after)
    .bind(renewal_time(issued.not_before, issued.not_after))
    .execute(&mut *tx)
    .await?;
    // The replaced certificate's key is destroyed with its row.
    if let Some(previous) = previous {
        sqlx::query("DELETE FROM certificates WHERE id = $1")
            .bind(previous)
            .execute(&mut *tx)
            .await?;
    }
    finish_order(&mut tx, claim, "issued", None).await?;
    bump(&mut tx, &format!("certificate for {}", claim.hostname)).await?;
    tx.commit().await?;
    Ok(true)
}

/// Records a failed order: the reason, the state the domain is in now and
/// when the next order is tried.
async fn record_failure(
    st: &AppState,
    claim: &Claim,
    error: &AcmeError,
) -> Result<bool, sqlx::Error> {
    let base = st
        .domains
        .acme
        .as_ref()
        .map_or(Duration::from_secs(300), |a| a.retry_after);
    let wait = match error {
        AcmeError::RateLimited {
            retry_after: Some(after),
            ..
        } => *after,
        AcmeError::RateLimited { .. } => Duration::from_secs(3600),
        _ => backoff(base, claim.failures, ISSUE_BACKOFF_MAX),
    };
    let reason = error.to_string();
    let mut tx = st.db.begin().await?;
    let (ours, _) = hold_lease(&mut tx, st, claim).await?;
    finish_order(&mut tx, claim, "failed", Some(&reason)).await?;
    // Past MAX_ISSUE_FAILURES in a row the domain is left alone: its name
    // most likely no longer points at the platform.
    let given_up = claim.failures + 1 >= MAX_ISSUE_FAILURES;
    let message = if given_up {
        format!(
            "certificate order failed {MAX_ISSUE_FAILURES} times in a row, no more are tried \
             until POST …/renew: {reason}"
        )
    } else {
        format!("certificate order failed: {reason}")
    };
    if ours {
        sqlx::query(
            "UPDATE domains d SET issue_failures = issue_failures + 1, last_error = $2, \
                next_issue_at = CASE WHEN $4 THEN NULL ELSE now() + make_interval(secs => $3) END, \
                lease_owner = NULL, lease_until = NULL, updated_at = now(), \
                state = coalesce((SELECT CASE WHEN c.not_after > now() THEN 'renewing' ELSE 'expired' END \
                    FROM certificates c WHERE c.id = d.certificate_id), 'failed')::domain_state \
             WHERE d.id = $1",
        )
        .bind(claim.domain)
        .bind(message)
        .bind(wait.as_secs_f64())
        .bind(given_up)
        .execute(&mut *tx)
        .await?;
    }
    withdrawn(tx, claim).await?;
    Ok(false)
}

/// Records how order `claim` ended.
async fn finish_order(
    tx: &mut sqlx::PgConnection,
    claim: &Claim,
    outcome: &str,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE acme_orders SET finished_at = now(), outcome = $2, error = $3 WHERE id = $1",
    )
    .bind(claim.order_row)
    .bind(outcome)
    .bind(error)
    .execute(tx)
    .await?;
    Ok(())
}

/// Publishes the withdrawal of `claim`'s challenges and commits.
async fn withdrawn(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    claim: &Claim,
) -> Result<(), sqlx::Error> {
    bump(
        &mut tx,
        &format!("ACME challenge for {} withdrawn", claim.hostname),
    )
    .await?;
    tx.commit().await
}

/// Whether `db` has certificate rows whose keys cannot be opened with the
/// configured key; logged at start so a wrong `SECRETS_KEY` is seen early.
pub async fn check_key(db: &PgPool, key: Option<&crate::secrets::SecretsKey>) {
    let sample: Option<Vec<u8>> =
        match sqlx::query_scalar("SELECT key_sealed FROM certificates LIMIT 1")
            .fetch_optional(db)
            .await
        {
            Ok(s) => s,
            Err(_) => return,
        };
    match (sample, key) {
        (Some(sealed), Some(key)) if key.open(Purpose::PrivateKey, &sealed).is_err() => {
            tracing::error!(
                "stored certificate keys cannot be decrypted with this SECRETS_KEY: gateways will get no certificates"
            );
        }
        (Some(_), None) => tracing::error!(
            "certificates are stored but SECRETS_KEY is not set: gateways will get no certificates"
        ),
        _ => {}
    }
}
