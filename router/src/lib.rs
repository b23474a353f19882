//! Switchyard's routing core: the routing snapshot model and the decisions
//! built on it — host → tenant → placement → region → upstream pool — plus
//! the placement of new tenants on a weighted consistent-hash ring.
//!
//! Pure: no tokio, no Pingora, no sqlx. The gateway and tenant-admin both
//! call into it, so a decision is testable without a socket.
//!
//! ```
//! use router::{BuildOptions, Hostname, RouteRequest, RoutingTable, Snapshot};
//!
//! let snapshot = Snapshot::from_toml(r#"
//!     version = 7
//!     regions = [{ name = "eu-west" }]
//!     plans = [{ name = "starter", rate_per_sec = 50, burst = 100, max_body_bytes = 1048576 }]
//!     [[targets]]
//!     id = "shard-eu-1"
//!     kind = "shard"
//!     region = "eu-west"
//!     pools = { eu-west = ["10.0.0.1:8080"] }
//!     [[tenants]]
//!     id = "t-1"
//!     slug = "acme"
//!     plan = "starter"
//!     region = "eu-west"
//!     target = "shard-eu-1"
//!     domains = ["erp.acme.example"]
//! "#).unwrap();
//! let options = BuildOptions { base_domains: vec![Hostname::parse("app.example.test").unwrap()] };
//! let table = RoutingTable::build(&snapshot, &options).unwrap();
//! let region = table.region("eu-west").unwrap();
//!
//! let req = RouteRequest { host: Some("ACME.app.example.test:443"), method: "GET", trusted_tenant: None };
//! let decision = table.resolve(&req, region).unwrap();
//! assert_eq!(decision.tenant.id(), "t-1");
//! assert_eq!(&*decision.pool.backends[0].addr, "10.0.0.1:8080");
//! ```
//!
//! # Layout
//!
//! - [`hostname`]: normalising hosts and SNI names; the [`Hostname`] type.
//! - [`ids`]: validated identifier newtypes ([`TenantId`], [`Slug`], [`TargetId`] …).
//! - [`snapshot`]: the snapshot document as written in TOML/JSON, and its problems.
//! - [`table`]: validation and the compiled, compact [`RoutingTable`].
//! - [`resolve`]: the routing decision and its explanation.
//! - [`placement`]: the consistent-hash ring that proposes shards for new tenants.

pub mod certs;
pub mod hostname;
pub mod ids;
pub mod placement;
pub mod resolve;
pub mod snapshot;
pub mod table;

pub use certs::CertRef;
pub use hostname::{HostError, Hostname, normalize};
pub use ids::{IdError, PlanName, RegionName, Slug, TargetId, TenantId};
pub use placement::{Placement, PlacementRing, ShardCandidate};
pub use resolve::{
    Decision, Explanation, Locality, MatchedBy, RouteError, RouteRequest, TenantSummary,
    is_safe_method,
};
pub use snapshot::{
    BackendDoc, CertificateDoc, ChallengeDoc, ChallengeKind, PlanDoc, Problem, Problems, RegionDoc,
    Snapshot, SnapshotError, TargetDoc, TargetKind, TargetStatus, TenantDoc, TenantStatus,
};
pub use table::{Backend, BuildOptions, Plan, Pool, RegionIdx, RoutingTable, Target, TenantRef};
