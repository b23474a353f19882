//! The routing snapshot document: the versioned, immutable set of regions,
//! plans, targets and tenants a gateway routes by, exactly as it is written
//! in a snapshot file (TOML or JSON) or served by tenant-admin's feed.
//!
//! Names and addresses are kept as plain strings here so that validation
//! ([`RoutingTable::build`](crate::RoutingTable::build)) can report *every*
//! problem with its location instead of stopping at the first; the compiled
//! table holds the validated, typed form.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A routing snapshot document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Monotonic version, bumped by tenant-admin whenever routing changes;
    /// gateways report which one they applied.
    pub version: u64,
    /// Every region with gateways or pools.
    #[serde(default)]
    pub regions: Vec<RegionDoc>,
    /// Per-tenant limits.
    #[serde(default)]
    pub plans: Vec<PlanDoc>,
    /// Shards and dedicated clusters, with their pools per region.
    #[serde(default)]
    pub targets: Vec<TargetDoc>,
    /// Tenants and their placement.
    #[serde(default)]
    pub tenants: Vec<TenantDoc>,
    /// The certificate in force for each custom domain that has one: a
    /// reference only. Gateways of the feed fetch the chain and key by `id`
    /// from tenant-admin's gateway-only endpoint; keys never travel in the
    /// snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateDoc>,
    /// HTTP challenges gateways answer while a domain is being verified or
    /// a certificate issued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<ChallengeDoc>,
}

/// `[[certificates]]`: which certificate a custom domain is served with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateDoc {
    /// The custom domain (one of a tenant's `domains`).
    pub hostname: String,
    /// Opaque id of this issuance; a renewal gets a new one.
    pub id: u64,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

/// Which well-known path a challenge is answered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChallengeKind {
    /// ACME HTTP-01: `/.well-known/acme-challenge/{token}`, answered for any
    /// host (the CA asks through the name being validated).
    AcmeHttp01,
    /// Domain ownership: `/.well-known/switchyard-challenge/{token}`,
    /// answered only for `hostname`.
    Ownership,
}

/// `[[challenges]]`: one HTTP challenge response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeDoc {
    /// Which path.
    pub kind: ChallengeKind,
    /// The domain being proven.
    pub hostname: String,
    /// The last path segment: base64url characters.
    pub token: String,
    /// The response body (for ACME, the key authorization).
    pub response: String,
}

/// `[[regions]]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionDoc {
    /// Region name, such as `eu-west`.
    pub name: String,
}

/// `[[plans]]`: the limits a tenant's plan grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDoc {
    /// Plan name, referenced by tenants.
    pub name: String,
    /// Sustained requests per second for the whole tenant.
    pub rate_per_sec: u32,
    /// Requests allowed in a burst above the sustained rate.
    pub burst: u32,
    /// Sustained requests per second per client IP within the tenant;
    /// 0 disables the per-IP limit.
    #[serde(default)]
    pub ip_rate_per_sec: u32,
    /// Default cache TTL when the origin gives no freshness information.
    #[serde(default)]
    pub cache_ttl_secs: u32,
    /// Largest request body accepted.
    pub max_body_bytes: u64,
    /// Whether responses of this plan's tenants are cached. Defaults to
    /// `cache_ttl_secs > 0`, so a plan with a TTL caches without saying so twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// Largest response cached; larger ones are streamed. Default 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_object_bytes: Option<u64>,
}

/// Whether a target is a shared shard or an enterprise tenant's own cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A shared database cluster holding many tenants.
    Shard,
    /// A database cluster for exactly one tenant.
    Dedicated,
}

/// Whether a target takes traffic and new tenants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetStatus {
    /// Serves its tenants and receives new ones.
    #[default]
    Active,
    /// Serves its tenants; receives no new ones.
    Draining,
    /// Serves nothing: its tenants get 503.
    Offline,
}

/// `[[targets]]`: a shard or dedicated cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDoc {
    /// Target id, referenced by tenants; sent upstream as `x-tenant-target`.
    pub id: String,
    /// Shard or dedicated cluster.
    pub kind: TargetKind,
    /// The region of the target's primary database: its tenants' home region.
    pub region: String,
    /// Relative capacity for placing new tenants (shards only), 1 to
    /// [`MAX_SHARD_WEIGHT`](crate::placement::MAX_SHARD_WEIGHT).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Active, draining or offline.
    #[serde(default)]
    pub status: TargetStatus,
    /// App-server pools, keyed by region. The home region's pool serves
    /// writes; pools elsewhere serve safe (read) requests locally.
    #[serde(default)]
    pub pools: BTreeMap<String, Vec<BackendDoc>>,
}

fn default_weight() -> u32 {
    1
}

/// One upstream app server: `"host:port"`, or `{ addr = "host:port", weight = 2 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackendDoc {
    /// Just the address, weight 1.
    Addr(String),
    /// Address and load-balancing weight.
    Weighted {
        /// `host:port`.
        addr: String,
        /// Relative share of the pool's traffic.
        weight: u32,
    },
}

impl BackendDoc {
    /// The `host:port` address.
    pub fn addr(&self) -> &str {
        match self {
            BackendDoc::Addr(addr) | BackendDoc::Weighted { addr, .. } => addr,
        }
    }

    /// The load-balancing weight (1 when not given).
    pub fn weight(&self) -> u32 {
        match self {
            BackendDoc::Addr(_) => 1,
            BackendDoc::Weighted { weight, .. } => *weight,
        }
    }
}

/// A tenant's lifecycle state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Served normally.
    #[default]
    Active,
    /// Answered with 403.
    Suspended,
    /// Being moved to another target: served, with writes held briefly.
    Moving,
    /// Soft-deleted: treated as unknown (404).
    Deleted,
}

/// `[[tenants]]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDoc {
    /// Immutable, opaque id; sent upstream as `x-tenant-id`.
    pub id: String,
    /// DNS label used as `{slug}.{base_domain}`.
    pub slug: String,
    /// Plan name.
    pub plan: String,
    /// Home region: where the tenant's data lives.
    pub region: String,
    /// The shard or dedicated cluster holding the tenant's data.
    pub target: String,
    /// Lifecycle state.
    #[serde(default)]
    pub status: TenantStatus,
    /// Verified custom domains.
    #[serde(default)]
    pub domains: Vec<String>,
}

/// A snapshot file could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read.
    #[error("cannot read snapshot {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or not the snapshot's shape (the message has the line).
    #[error("snapshot is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// Not valid JSON, or not the snapshot's shape (the message has the line).
    #[error("snapshot is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Parsed, but inconsistent: every problem found.
    #[error(transparent)]
    Invalid(#[from] Problems),
}

impl Snapshot {
    /// Parses a TOML snapshot.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Toml`] with the line and column of the first problem.
    pub fn from_toml(text: &str) -> Result<Self, SnapshotError> {
        Ok(toml::from_str(text)?)
    }

    /// Parses a JSON snapshot.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Json`] with the line and column of the first problem.
    pub fn from_json(text: &str) -> Result<Self, SnapshotError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Parses a snapshot that is either JSON (first non-blank character `{`)
    /// or TOML.
    ///
    /// # Errors
    ///
    /// As [`Snapshot::from_toml`] or [`Snapshot::from_json`].
    pub fn from_text(text: &str) -> Result<Self, SnapshotError> {
        if text.trim_start().starts_with('{') {
            Self::from_json(text)
        } else {
            Self::from_toml(text)
        }
    }

    /// Reads and parses a snapshot file (JSON or TOML, by content).
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Io`] if the file cannot be read, else as
    /// [`Snapshot::from_text`].
    pub fn from_path(path: &Path) -> Result<Self, SnapshotError> {
        let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_text(&text)
    }
}

/// One validation problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where, as a path into the document: `tenants[3] (id "acme").plan`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

/// Every validation problem of a snapshot, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

/// At most this many problems are spelled out by `Display`; the rest are
/// counted. A broken million-tenant snapshot must not produce a
/// million-line log entry.
const DISPLAYED_PROBLEMS: usize = 50;

impl Problems {
    /// Records a problem at `location`.
    pub fn push(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            location: location.into(),
            message: message.into(),
        });
    }

    /// True when there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems in document order.
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "routing snapshot has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.0.iter().take(DISPLAYED_PROBLEMS) {
            write!(f, "\n  - {}: {}", p.location, p.message)?;
        }
        if n > DISPLAYED_PROBLEMS {
            write!(f, "\n  … and {} more", n - DISPLAYED_PROBLEMS)?;
        }
        Ok(())
    }
}
