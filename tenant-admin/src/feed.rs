//! The routing feed: the catalog's routing state as a [`router::Snapshot`],
//! versioned, published to gateways.
//!
//! Every mutation that changes routing calls [`bump`] in its transaction:
//! the snapshot the transaction would publish is built and validated with
//! the router's own [`RoutingTable::build`] (a change that would give
//! gateways an unusable snapshot is refused before anything is written), a
//! version row is inserted, and `pg_notify` tells every tenant-admin
//! replica at commit. [`Feed`] follows those notifications (and polls once a
//! second in case one is lost) so a long-polling gateway is answered as soon
//! as the version moves, and keeps the serialised snapshot of the newest
//! version so a fleet of gateways costs one build per version.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use router::snapshot::{
    BackendDoc, CertificateDoc, ChallengeDoc, ChallengeKind, PlanDoc, RegionDoc, TargetDoc,
    TargetKind, TargetStatus, TenantDoc, TenantStatus,
};
use router::{BuildOptions, RoutingTable, Snapshot};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, watch};

/// The notification channel carrying new versions.
pub const CHANNEL: &str = "switchyard_snapshot";

/// How often the version is polled besides notifications.
const POLL: Duration = Duration::from_secs(1);

/// Reads the routing snapshot the catalog holds, as seen by `conn`'s
/// transaction (or a fresh one), at `version`.
///
/// # Errors
///
/// When the catalog cannot be read.
pub async fn read_snapshot(conn: &mut PgConnection, version: u64) -> Result<Snapshot, sqlx::Error> {
    let regions: Vec<(String,)> = sqlx::query_as("SELECT name FROM regions ORDER BY name")
        .fetch_all(&mut *conn)
        .await?;
    type PlanRow = (String, i32, i32, Option<i32>, bool, i32, i64, i64);
    let plans: Vec<PlanRow> = sqlx::query_as(
        "SELECT name, rate_per_sec, burst, ip_rate_per_sec, cache, cache_ttl_secs, \
                cache_max_object_bytes, max_body_bytes FROM plans ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let targets: Vec<(String, String, String, i32, String)> = sqlx::query_as(
        "SELECT id, kind::text, region, weight, status::text FROM targets ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let pools: Vec<(String, String, String, i32)> = sqlx::query_as(
        "SELECT target_id, region, address, weight FROM target_pools \
         ORDER BY target_id, region, address",
    )
    .fetch_all(&mut *conn)
    .await?;
    // Provisioning tenants are not routed until their database is ready;
    // deleted ones are unknown to gateways.
    let tenants: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
        "SELECT id, slug, plan, region, target_id, \
            CASE WHEN writes_held_since IS NOT NULL AND status = 'active' THEN 'moving' \
                ELSE status::text END \
         FROM tenants WHERE status IN ('active', 'suspended') ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    // A domain routes once its ownership is proven, until it is removed
    // or its tenant suspended or deleted.
    let domains: Vec<(String, String)> = sqlx::query_as(
        "SELECT d.tenant_id, d.hostname FROM domains d JOIN tenants t ON t.id = d.tenant_id \
         WHERE d.verified_at IS NOT NULL AND d.state <> 'removed' AND t.status = 'active' \
         ORDER BY d.tenant_id, d.hostname",
    )
    .fetch_all(&mut *conn)
    .await?;
    // The certificate in force for each of those domains, until it expires.
    let certificates: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT d.hostname, c.id, extract(epoch FROM c.not_after)::bigint \
         FROM domains d JOIN tenants t ON t.id = d.tenant_id \
            JOIN certificates c ON c.id = d.certificate_id \
         WHERE d.verified_at IS NOT NULL AND d.state <> 'removed' AND t.status = 'active' \
            AND c.not_after > now() \
         ORDER BY d.hostname",
    )
    .fetch_all(&mut *conn)
    .await?;
    // Ownership proofs of pending domains and ACME challenges in flight.
    let challenges: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT 'ownership', d.hostname, d.verification_token, d.verification_token \
            FROM domains d JOIN tenants t ON t.id = d.tenant_id \
            WHERE d.state = 'pending_verification' AND t.status = 'active' \
         UNION ALL \
         SELECT 'acme-http01', c.hostname, c.token, c.key_authorization \
            FROM acme_challenges c JOIN domains d ON d.id = c.domain_id \
            WHERE d.state <> 'removed' \
         ORDER BY 1, 2, 3",
    )
    .fetch_all(&mut *conn)
    .await?;

    let count = |n: i32| u32::try_from(n).unwrap_or(0);
    let bytes = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut targets: Vec<TargetDoc> = targets
        .into_iter()
        .map(|(id, kind, region, weight, status)| TargetDoc {
            id,
            kind: if kind == "dedicated" {
                TargetKind::Dedicated
            } else {
                TargetKind::Shard
            },
            region,
            weight: count(weight),
            status: match status.as_str() {
                "draining" => TargetStatus::Draining,
                "offline" => TargetStatus::Offline,
                _ => TargetStatus::Active,
            },
            pools: Default::default(),
        })
        .collect();
    for (target_id, region, address, weight) in pools {
        if let Ok(i) = targets.binary_search_by(|t| t.id.as_str().cmp(&target_id)) {
            let backend = if weight == 1 {
                BackendDoc::Addr(address)
            } else {
                BackendDoc::Weighted {
                    addr: address,
                    weight: count(weight),
                }
            };
            targets[i].pools.entry(region).or_default().push(backend);
        }
    }
    let mut tenants: Vec<TenantDoc> = tenants
        .into_iter()
        .map(|(id, slug, plan, region, target, status)| TenantDoc {
            id,
            slug,
            plan,
            region,
            target,
            status: match status.as_str() {
                "suspended" => TenantStatus::Suspended,
                "moving" => TenantStatus::Moving,
                _ => TenantStatus::Active,
            },
            domains: Vec::new(),
        })
        .collect();
    for (tenant_id, hostname) in domains {
        if let Ok(i) = tenants.binary_search_by(|t| t.id.as_str().cmp(&tenant_id)) {
            tenants[i].domains.push(hostname);
        }
    }
    Ok(Snapshot {
        version,
        regions: regions
            .into_iter()
            .map(|(name,)| RegionDoc { name })
            .collect(),
        plans: plans
            .into_iter()
            .map(
                |(name, rate, burst, ip_rate, cache, ttl, max_object, max_body)| PlanDoc {
                    name,
                    rate_per_sec: count(rate),
                    burst: count(burst),
                    ip_rate_per_sec: ip_rate.map_or(0, count),
                    cache_ttl_secs: count(ttl),
                    max_body_bytes: bytes(max_body),
                    cache: Some(cache),
                    cache_max_object_bytes: Some(bytes(max_object)),
                },
            )
            .collect(),
        targets,
        tenants,
        certificates: certificates
            .into_iter()
            .map(|(hostname, id, not_after)| CertificateDoc {
                hostname,
                id: u64::try_from(id).unwrap_or(0),
                not_after,
            })
            .collect(),
        challenges: challenges
            .into_iter()
            .map(|(kind, hostname, token, response)| ChallengeDoc {
                kind: if kind == "ownership" {
                    ChallengeKind::Ownership
                } else {
                    ChallengeKind::AcmeHttp01
                },
                hostname,
                token,
                response,
            })
            .collect(),
    })
}

/// The platform's base domains, checked as gateways check them: set once
/// at start ([`set_base_domains`]).
static BASE_DOMAINS: std::sync::OnceLock<Vec<router::Hostname>> = std::sync::OnceLock::new();

/// Makes [`bump`] refuse a snapshot with a custom domain at or below one
/// of `base_domains`, as a gateway with those base domains would.
pub fn set_base_domains(base_domains: Vec<router::Hostname>) {
    let _ = BASE_DOMAINS.set(base_domains);
}

/// The newest version in the catalog (0 before the first change).
///
/// # Errors
///
/// When the catalog cannot be read.
pub async fn current_version(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let v: i64 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM snapshot_versions")
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(v).unwrap_or(0))
}

/// Why a change was refused by [`bump`].
#[derive(Debug)]
pub enum BumpError {
    /// The catalog failed.
    Db(sqlx::Error),
    /// The change would make the snapshot invalid: each problem with its location.
    Invalid(Vec<String>),
}

impl From<sqlx::Error> for BumpError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

/// Checks the snapshot `conn`'s transaction would publish and records a new
/// version for `reason`; gateways hear of it when the transaction commits.
///
/// # Errors
///
/// [`BumpError::Invalid`] when the routing state is not one gateways could use.
pub async fn bump(conn: &mut PgConnection, reason: &str) -> Result<u64, BumpError> {
    // One bump at a time, so versions commit in order.
    sqlx::query("SELECT pg_advisory_xact_lock(5377)")
        .execute(&mut *conn)
        .await?;
    let snapshot = read_snapshot(&mut *conn, 0).await?;
    let options = BuildOptions {
        base_domains: BASE_DOMAINS.get().cloned().unwrap_or_default(),
    };
    if let Err(problems) = RoutingTable::build(&snapshot, &options) {
        return Err(BumpError::Invalid(
            problems
                .iter()
                .map(|p| format!("{}: {}", p.location, p.message))
                .collect(),
        ));
    }
    let version: i64 =
        sqlx::query_scalar("INSERT INTO snapshot_versions (reason) VALUES ($1) RETURNING version")
            .bind(reason)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(version.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(u64::try_from(version).unwrap_or(0))
}

/// The published feed: the newest version and its serialised snapshot.
#[derive(Debug)]
pub struct Feed {
    db: PgPool,
    version: watch::Sender<u64>,
    built: Mutex<Option<(u64, Bytes)>>,
}

impl Feed {
    /// Follows the catalog's versions from now on.
    ///
    /// # Errors
    ///
    /// When the catalog cannot be read at start.
    pub async fn start(db: PgPool) -> Result<Arc<Self>, sqlx::Error> {
        let mut conn = db.acquire().await?;
        let now = current_version(&mut conn).await?;
        drop(conn);
        let (version, _) = watch::channel(now);
        let feed = Arc::new(Self {
            db,
            version,
            built: Mutex::new(None),
        });
        tokio::spawn(follow(Arc::downgrade(&feed)));
        Ok(feed)
    }

    /// The newest version known.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    fn saw(&self, version: u64) {
        self.version.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }

    /// Waits up to `wait` for a version newer than `since`; the newest version then.
    pub async fn wait_newer(&self, since: u64, wait: Duration) -> u64 {
        let mut rx = self.version.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|v| *v > since)).await;
        self.version()
    }

    /// The newest snapshot, serialised as JSON, built at most once per version.
    ///
    /// # Errors
    ///
    /// When the catalog cannot be read.
    pub async fn snapshot_json(&self) -> Result<(u64, Bytes), sqlx::Error> {
        let mut built = self.built.lock().await;
        if let Some((v, bytes)) = built.as_ref()
            && *v >= self.version()
        {
            return Ok((*v, bytes.clone()));
        }
        // Version and content from one consistent view of the catalog.
        let mut tx = self.db.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let version = current_version(&mut tx).await?;
        let snapshot = read_snapshot(&mut tx, version).await?;
        tx.commit().await?;
        let bytes = Bytes::from(serde_json::to_vec(&snapshot).expect("a snapshot serialises"));
        self.saw(version);
        *built = Some((version, bytes.clone()));
        Ok((version, bytes))
    }
}

/// Follows notifications (reconnecting as needed) and polls as a backstop,
/// until the feed is dropped.
async fn follow(feed: std::sync::Weak<Feed>) {
    let mut listener: Option<PgListener> = None;
    let mut poll = tokio::time::interval(POLL);
    loop {
        let Some(strong) = feed.upgrade() else { return };
        let db = strong.db.clone();
        drop(strong);
        if listener.is_none() {
            match PgListener::connect_with(&db).await {
                Ok(mut l) => match l.listen(CHANNEL).await {
                    Ok(()) => listener = Some(l),
                    Err(e) => tracing::warn!(error = %e, "cannot listen for snapshot versions"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot listen for snapshot versions"),
            }
        }
        let heard = match listener.as_mut() {
            Some(l) => tokio::select! {
                n = l.try_recv() => match n {
                    Ok(Some(n)) => n.payload().parse::<u64>().ok(),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the snapshot notification connection");
                        listener = None;
                        None
                    }
                },
                _ = poll.tick() => None,
            },
            None => {
                poll.tick().await;
                None
            }
        };
        let Some(strong) = feed.upgrade() else { return };
        match heard {
            Some(v) => strong.saw(v),
            None => {
                if let Ok(mut conn) = db.acquire().await
                    && let Ok(v) = current_version(&mut conn).await
                {
                    strong.saw(v);
                }
            }
        }
    }
}

/// A gateway that polled the feed this recently is live: changes that
/// need every gateway wait for it.
pub const LIVE_GATEWAY_SECS: f64 = 30.0;

/// Why [`wait_for_gateways`] gave up.
#[derive(Debug)]
pub enum Behind {
    /// The catalog failed.
    Catalog(sqlx::Error),
    /// These live gateways had not applied the version in time.
    Gateways(Vec<String>),
}

/// Waits up to `timeout` until every live gateway has applied `version`.
///
/// # Errors
///
/// [`Behind`]: the gateways still behind, or the catalog's error.
pub async fn wait_for_gateways(db: &PgPool, version: u64, timeout: Duration) -> Result<(), Behind> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let behind: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM gateways WHERE applied_version < $1 \
                AND last_seen_at > now() - make_interval(secs => $2) ORDER BY id",
        )
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .bind(LIVE_GATEWAY_SECS)
        .fetch_all(db)
        .await
        .map_err(Behind::Catalog)?;
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Behind::Gateways(behind));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
