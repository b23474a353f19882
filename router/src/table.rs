//! The compiled routing table: a validated [`Snapshot`] in a compact,
//! read-only form built for lookups on every request.
//!
//! Layout, chosen for a million tenants and a million custom domains:
//!
//! - each tenant is one *block* in a byte arena: 16 bytes of fixed fields
//!   (target, plan, region, status …) followed by its id, slug and custom
//!   domains — no per-string allocation, and everything a decision reads
//!   about a tenant sits in one or two adjacent cache lines;
//! - the three indexes (id, slug, domain) are `hashbrown::HashTable`s of
//!   block offsets hashed by the string they point at, so an index entry
//!   costs 4–12 bytes plus a control byte.
//!
//! With a million tenants the table is far larger than the CPU caches, so a
//! lookup of a cold tenant costs one cache miss per memory region touched:
//! the index's control bytes, its bucket, and the tenant's block.
//!
//! A table is built only from a snapshot that passes every check; a
//! snapshot with problems produces the full list and no table.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::SocketAddr;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use serde::Serialize;

use crate::certs::{self, CertRef, TlsRefs};
use crate::hostname::Hostname;
use crate::ids::{PlanName, RegionName, Slug, TargetId, TenantId};
use crate::placement::MAX_SHARD_WEIGHT;
use crate::snapshot::{
    BackendDoc, PlanDoc, Problems, Snapshot, TargetDoc, TargetKind, TargetStatus, TenantDoc,
    TenantStatus,
};

/// Largest response cached when a plan does not say.
pub const DEFAULT_CACHE_MAX_OBJECT_BYTES: u64 = 1 << 20;

/// What the table needs to know beyond the snapshot.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The platform's own domains: `{slug}.{base}` routes to the tenant with
    /// that slug, and no tenant may claim a custom domain at or below one.
    pub base_domains: Vec<Hostname>,
}

/// Index of a region within one [`RoutingTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionIdx(pub(crate) u16);

impl RegionIdx {
    /// Position in [`RoutingTable::regions`].
    pub fn index(self) -> u16 {
        self.0
    }
}

/// A plan's limits, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Plan name.
    pub name: PlanName,
    /// Sustained requests per second for the tenant.
    pub rate_per_sec: u32,
    /// Burst above the sustained rate.
    pub burst: u32,
    /// Per-client-IP rate within the tenant; `None` when unlimited.
    pub ip_rate_per_sec: Option<u32>,
    /// Whether responses are cached.
    pub cache: bool,
    /// Default TTL when the origin says nothing.
    pub cache_ttl_secs: u32,
    /// Largest object cached.
    pub cache_max_object_bytes: u64,
    /// Largest request body accepted.
    pub max_body_bytes: u64,
}

/// One upstream app server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// `host:port`, as configured.
    pub addr: Box<str>,
    /// Relative share of the pool's traffic.
    pub weight: u32,
}

/// The app servers of one target in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pool {
    /// Where these servers run.
    pub region: RegionName,
    /// The servers, never empty.
    pub backends: Box<[Backend]>,
}

/// A shard or dedicated cluster, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Target id.
    pub id: TargetId,
    /// Shard or dedicated cluster.
    pub kind: TargetKind,
    /// Home region: where the primary database is.
    pub region: RegionIdx,
    /// Relative capacity for placement.
    pub weight: u32,
    /// Active, draining or offline.
    pub status: TargetStatus,
    /// Pools indexed by [`RegionIdx`]; `None` where the target has none.
    pools: Box<[Option<Pool>]>,
}

impl Target {
    /// The pool in `region`, if the target has one there.
    pub fn pool(&self, region: RegionIdx) -> Option<&Pool> {
        self.pools
            .get(usize::from(region.0))
            .and_then(Option::as_ref)
    }

    /// Every pool of the target.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter().flatten()
    }
}

/// A string in the arena.
#[derive(Clone, Copy)]
struct StrRef {
    offset: u32,
    len: u32,
}

/// Bytes of fixed fields at the head of a tenant's block.
const HEADER: usize = 16;

/// A tenant's fixed fields, stored little-endian at the head of its block:
/// `index u32 | target u32 | plan u16 | region u16 | status u8 | id_len u8 |
/// slug_len u8 | 0`, then the id and slug bytes.
#[derive(Clone, Copy)]
struct TenantRec {
    index: u32,
    target: u32,
    plan: u16,
    region: u16,
    status: TenantStatus,
}

impl TenantRec {
    fn encode(&self, id: &[u8], slug: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.target.to_le_bytes());
        out.extend_from_slice(&self.plan.to_le_bytes());
        out.extend_from_slice(&self.region.to_le_bytes());
        let status = match self.status {
            TenantStatus::Active => 0,
            TenantStatus::Suspended => 1,
            TenantStatus::Moving => 2,
            TenantStatus::Deleted => 3,
        };
        out.extend_from_slice(&[status, id.len() as u8, slug.len() as u8, 0]);
        out.extend_from_slice(id);
        out.extend_from_slice(slug);
    }

    fn decode(arena: &[u8], block: u32) -> Self {
        let h = &arena[block as usize..block as usize + HEADER];
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        Self {
            index: u32_at(0),
            target: u32_at(4),
            plan: u16_at(8),
            region: u16_at(10),
            status: match h[12] {
                0 => TenantStatus::Active,
                1 => TenantStatus::Suspended,
                2 => TenantStatus::Moving,
                _ => TenantStatus::Deleted,
            },
        }
    }
}

/// The id bytes of the tenant whose block starts at `block`.
fn block_id(arena: &[u8], block: u32) -> &[u8] {
    let b = block as usize;
    let id_len = usize::from(arena[b + 13]);
    &arena[b + HEADER..b + HEADER + id_len]
}

/// The slug bytes of the tenant whose block starts at `block`.
fn block_slug(arena: &[u8], block: u32) -> &[u8] {
    let b = block as usize;
    let (id_len, slug_len) = (usize::from(arena[b + 13]), usize::from(arena[b + 14]));
    &arena[b + HEADER + id_len..b + HEADER + id_len + slug_len]
}

/// Arena bytes as text: every string in the arena was copied from a `&str`.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// A custom domain and its tenant's block.
#[derive(Clone, Copy)]
struct DomainRec {
    name: StrRef,
    block: u32,
}

/// The compiled, immutable routing table. Cheap to share behind an `Arc`
/// and swap whole when a new snapshot arrives.
pub struct RoutingTable {
    version: u64,
    regions: Box<[RegionName]>,
    plans: Box<[Plan]>,
    targets: Box<[Target]>,
    /// Block offset of each tenant, in snapshot order.
    blocks: Box<[u32]>,
    /// Every tenant's block: fixed fields, id, slug, domains.
    arena: Box<[u8]>,
    /// Tenant block by id (all tenants, for the trusted header).
    by_id: HashTable<u32>,
    /// Tenant block by slug (tenants that are not deleted).
    by_slug: HashTable<u32>,
    /// Custom domains of tenants that are not deleted.
    by_domain: HashTable<DomainRec>,
    base_domains: Box<[Hostname]>,
    /// Certificate references and HTTP challenges.
    tls: TlsRefs,
    /// Seeded per table, so a tenant cannot pick domain names that collide
    /// in every gateway's index.
    hasher: RandomState,
}

impl fmt::Debug for RoutingTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutingTable")
            .field("version", &self.version)
            .field("regions", &self.regions)
            .field("plans", &self.plans.len())
            .field("targets", &self.targets.len())
            .field("tenants", &self.blocks.len())
            .field("domains", &self.by_domain.len())
            .finish_non_exhaustive()
    }
}

/// A tenant of a [`RoutingTable`].
#[derive(Clone, Copy)]
pub struct TenantRef<'t> {
    table: &'t RoutingTable,
    block: u32,
}

impl fmt::Debug for TenantRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id())
            .field("slug", &self.slug())
            .field("status", &self.status())
            .finish()
    }
}

impl<'t> TenantRef<'t> {
    fn rec(&self) -> TenantRec {
        TenantRec::decode(&self.table.arena, self.block)
    }

    /// Position of the tenant in the table (its snapshot order).
    pub fn index(&self) -> u32 {
        self.rec().index
    }

    /// The tenant's id.
    pub fn id(&self) -> &'t str {
        text(block_id(&self.table.arena, self.block))
    }

    /// The tenant's slug.
    pub fn slug(&self) -> &'t str {
        text(block_slug(&self.table.arena, self.block))
    }

    /// Lifecycle state.
    pub fn status(&self) -> TenantStatus {
        self.rec().status
    }

    /// The tenant's plan.
    pub fn plan(&self) -> &'t Plan {
        &self.table.plans[usize::from(self.rec().plan)]
    }

    /// Home region.
    pub fn region(&self) -> RegionIdx {
        RegionIdx(self.rec().region)
    }

    /// Home region's name.
    pub fn region_name(&self) -> &'t RegionName {
        self.table.region_name(self.region())
    }

    /// Position of the tenant's target in [`RoutingTable::targets`].
    pub fn target_index(&self) -> u32 {
        self.rec().target
    }

    /// The shard or dedicated cluster holding the tenant's data.
    pub fn target(&self) -> &'t Target {
        &self.table.targets[self.rec().target as usize]
    }
}

impl RoutingTable {
    /// Validates `snapshot` and compiles it.
    ///
    /// # Errors
    ///
    /// Every problem found, each with its location in the document. Nothing
    /// of a snapshot with problems is used.
    pub fn build(snapshot: &Snapshot, options: &BuildOptions) -> Result<Self, Problems> {
        Builder::new(snapshot, options).build()
    }

    /// The snapshot version this table was built from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Looks a region up by name.
    pub fn region(&self, name: &str) -> Option<RegionIdx> {
        self.regions
            .iter()
            .position(|r| r.as_str() == name)
            .map(|i| RegionIdx(i as u16))
    }

    /// A region's name.
    ///
    /// # Panics
    ///
    /// If `region` comes from another table with fewer regions.
    pub fn region_name(&self, region: RegionIdx) -> &RegionName {
        &self.regions[usize::from(region.0)]
    }

    /// Every region.
    pub fn regions(&self) -> &[RegionName] {
        &self.regions
    }

    /// Every plan.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    /// Every target.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The platform's base domains.
    pub fn base_domains(&self) -> &[Hostname] {
        &self.base_domains
    }

    /// Number of tenants, deleted ones included.
    pub fn tenant_count(&self) -> usize {
        self.blocks.len()
    }

    /// Number of routable custom domains.
    pub fn domain_count(&self) -> usize {
        self.by_domain.len()
    }

    /// The tenant at `index`, if any.
    pub fn tenant(&self, index: u32) -> Option<TenantRef<'_>> {
        self.blocks
            .get(index as usize)
            .map(|&block| TenantRef { table: self, block })
    }

    /// Every tenant, in snapshot order.
    pub fn tenants(&self) -> impl Iterator<Item = TenantRef<'_>> {
        self.blocks
            .iter()
            .map(|&block| TenantRef { table: self, block })
    }

    /// The tenant with `id`, deleted ones included.
    pub fn tenant_by_id(&self, id: &str) -> Option<TenantRef<'_>> {
        let hash = self.hasher.hash_one(id);
        self.by_id
            .find(hash, |&b| block_id(&self.arena, b) == id.as_bytes())
            .map(|&block| TenantRef { table: self, block })
    }

    /// The (not deleted) tenant with `slug`.
    pub fn tenant_by_slug(&self, slug: &str) -> Option<TenantRef<'_>> {
        let hash = self.hasher.hash_one(slug);
        self.by_slug
            .find(hash, |&b| block_slug(&self.arena, b) == slug.as_bytes())
            .map(|&block| TenantRef { table: self, block })
    }

    /// The (not deleted) tenant that claims the normalised custom domain `host`.
    pub fn tenant_by_domain(&self, host: &str) -> Option<TenantRef<'_>> {
        let hash = self.hasher.hash_one(host);
        self.by_domain
            .find(hash, |d| self.bytes(d.name) == host.as_bytes())
            .map(|d| TenantRef {
                table: self,
                block: d.block,
            })
    }

    fn bytes(&self, r: StrRef) -> &[u8] {
        &self.arena[r.offset as usize..(r.offset + r.len) as usize]
    }

    /// The certificate in force for each custom domain that has one.
    pub fn certificates(&self) -> &[CertRef] {
        &self.tls.certificates
    }

    /// The ACME HTTP-01 key authorization for `token`, for any host.
    pub fn acme_challenge(&self, token: &str) -> Option<&str> {
        self.tls.acme_response(token)
    }

    /// The ownership-proof response for `token`, only when asked through
    /// the normalised `host` it was issued for.
    pub fn ownership_challenge(&self, host: &str, token: &str) -> Option<&str> {
        self.tls.ownership_response(host, token)
    }

    /// Number of HTTP challenges published.
    pub fn challenge_count(&self) -> usize {
        self.tls.challenge_count()
    }
}

/// Builds a table, collecting problems as it goes.
struct Builder<'s> {
    snapshot: &'s Snapshot,
    options: &'s BuildOptions,
    problems: Problems,
}

/// Where a tenant's fields are, for messages.
fn tenant_loc(i: usize, t: &TenantDoc) -> String {
    format!("tenants[{i}] (id {:?})", t.id)
}

fn target_loc(i: usize, t: &TargetDoc) -> String {
    format!("targets[{i}] (id {:?})", t.id)
}

impl<'s> Builder<'s> {
    fn new(snapshot: &'s Snapshot, options: &'s BuildOptions) -> Self {
        Self {
            snapshot,
            options,
            problems: Problems::default(),
        }
    }

    fn build(mut self) -> Result<RoutingTable, Problems> {
        let regions = self.regions();
        let region_index: HashMap<&str, u16> = regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i as u16))
            .collect();
        let plans = self.plans();
        let plan_index: HashMap<&str, u16> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i as u16))
            .collect();
        let targets = self.targets(&region_index, regions.len());
        let target_index: HashMap<&str, u32> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i as u32))
            .collect();
        let tenants = self.tenants(&region_index, &plan_index, &targets, &target_index);
        let tls = certs::build(
            &self.snapshot.certificates,
            &self.snapshot.challenges,
            |host| tenants.has_domain(host),
            &mut self.problems,
        );
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        let Tenants {
            blocks,
            mut arena,
            by_id,
            by_slug,
            by_domain,
            hasher,
        } = tenants;
        arena.shrink_to_fit();
        Ok(RoutingTable {
            version: self.snapshot.version,
            regions: regions.into(),
            plans: plans.into(),
            targets: targets.into(),
            blocks: blocks.into(),
            arena: arena.into(),
            by_id,
            by_slug,
            by_domain,
            base_domains: self.options.base_domains.clone().into(),
            tls,
            hasher,
        })
    }

    fn regions(&mut self) -> Vec<RegionName> {
        let mut regions: Vec<RegionName> = Vec::new();
        for (i, doc) in self.snapshot.regions.iter().enumerate() {
            let loc = format!("regions[{i}].name");
            match RegionName::new(&doc.name) {
                Ok(name) if regions.contains(&name) => {
                    self.problems
                        .push(loc, format!("duplicate region {:?}", doc.name));
                }
                Ok(name) => regions.push(name),
                Err(e) => self
                    .problems
                    .push(loc, format!("invalid region name {:?}: {e}", doc.name)),
            }
        }
        if self.snapshot.regions.len() > usize::from(u16::MAX) {
            self.problems
                .push("regions", "more than 65535 regions".to_owned());
        }
        regions
    }

    fn plans(&mut self) -> Vec<Plan> {
        let mut plans: Vec<Plan> = Vec::new();
        for (i, doc) in self.snapshot.plans.iter().enumerate() {
            let loc = format!("plans[{i}] (name {:?})", doc.name);
            if let Some(plan) = self.plan(&loc, doc) {
                if plans.iter().any(|p| p.name == plan.name) {
                    self.problems
                        .push(format!("{loc}.name"), "duplicate plan name".to_owned());
                } else {
                    plans.push(plan);
                }
            }
        }
        if plans.len() > usize::from(u16::MAX) {
            self.problems
                .push("plans", "more than 65535 plans".to_owned());
        }
        plans
    }

    fn plan(&mut self, loc: &str, doc: &PlanDoc) -> Option<Plan> {
        let before = self.problems.len();
        let name = PlanName::new(&doc.name)
            .map_err(|e| self.problems.push(format!("{loc}.name"), e.to_string()))
            .ok();
        let mut positive = |field: &str, value: u64| {
            if value == 0 {
                self.problems
                    .push(format!("{loc}.{field}"), "must be at least 1".to_owned());
            }
        };
        positive("rate_per_sec", u64::from(doc.rate_per_sec));
        positive("burst", u64::from(doc.burst));
        positive("max_body_bytes", doc.max_body_bytes);
        if let Some(max) = doc.cache_max_object_bytes {
            positive("cache_max_object_bytes", max);
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Plan {
            name: name?,
            rate_per_sec: doc.rate_per_sec,
            burst: doc.burst,
            ip_rate_per_sec: (doc.ip_rate_per_sec > 0).then_some(doc.ip_rate_per_sec),
            cache: doc.cache.unwrap_or(doc.cache_ttl_secs > 0),
            cache_ttl_secs: doc.cache_ttl_secs,
            cache_max_object_bytes: doc
                .cache_max_object_bytes
                .unwrap_or(DEFAULT_CACHE_MAX_OBJECT_BYTES),
            max_body_bytes: doc.max_body_bytes,
        })
    }

    fn targets(&mut self, regions: &HashMap<&str, u16>, region_count: usize) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, doc) in self.snapshot.targets.iter().enumerate() {
            let loc = target_loc(i, doc);
            if let Some(&first) = seen.get(doc.id.as_str()) {
                self.problems.push(
                    format!("{loc}.id"),
                    format!("duplicate target id (also targets[{first}])"),
                );
                continue;
            }
            seen.insert(&doc.id, i);
            if let Some(target) = self.target(&loc, doc, regions, region_count) {
                targets.push(target);
            }
        }
        targets
    }

    fn target(
        &mut self,
        loc: &str,
        doc: &TargetDoc,
        regions: &HashMap<&str, u16>,
        region_count: usize,
    ) -> Option<Target> {
        let before = self.problems.len();
        let id = TargetId::new(&doc.id)
            .map_err(|e| {
                self.problems
                    .push(format!("{loc}.id"), format!("invalid target id: {e}"))
            })
            .ok();
        let region = regions.get(doc.region.as_str()).copied();
        if region.is_none() {
            self.problems.push(
                format!("{loc}.region"),
                format!("unknown region {:?}", doc.region),
            );
        }
        if doc.kind == TargetKind::Shard && !(1..=MAX_SHARD_WEIGHT).contains(&doc.weight) {
            self.problems.push(
                format!("{loc}.weight"),
                format!(
                    "must be from 1 to {MAX_SHARD_WEIGHT} (use status = \"draining\" to stop placing tenants on a shard)"
                ),
            );
        }
        let mut pools: Vec<Option<Pool>> = vec![None; region_count];
        if doc.pools.is_empty() {
            self.problems
                .push(format!("{loc}.pools"), "target has no pools".to_owned());
        }
        for (pool_region, backends) in &doc.pools {
            let ploc = format!("{loc}.pools.{pool_region}");
            let Some(&r) = regions.get(pool_region.as_str()) else {
                self.problems
                    .push(ploc, format!("unknown region {pool_region:?}"));
                continue;
            };
            if let Some(pool) = self.pool(&ploc, backends, pool_region) {
                pools[usize::from(r)] = Some(pool);
            }
        }
        if region.is_some() && !doc.pools.is_empty() && !doc.pools.contains_key(&doc.region) {
            self.problems.push(
                format!("{loc}.pools"),
                format!(
                    "no pool in the target's home region {:?}: writes would have nowhere to go",
                    doc.region
                ),
            );
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Target {
            id: id?,
            kind: doc.kind,
            region: RegionIdx(region?),
            weight: doc.weight,
            status: doc.status,
            pools: pools.into(),
        })
    }

    fn pool(&mut self, loc: &str, backends: &[BackendDoc], region: &str) -> Option<Pool> {
        let before = self.problems.len();
        if backends.is_empty() {
            self.problems
                .push(loc.to_owned(), "pool is empty".to_owned());
        }
        let mut out: Vec<Backend> = Vec::with_capacity(backends.len());
        for (j, b) in backends.iter().enumerate() {
            let bloc = format!("{loc}[{j}]");
            if let Err(e) = check_backend_addr(b.addr()) {
                self.problems
                    .push(bloc, format!("invalid address {:?}: {e}", b.addr()));
                continue;
            }
            if b.weight() == 0 {
                self.problems
                    .push(format!("{bloc}.weight"), "must be at least 1".to_owned());
                continue;
            }
            if out.iter().any(|o| &*o.addr == b.addr()) {
                self.problems
                    .push(bloc, format!("duplicate backend {:?}", b.addr()));
                continue;
            }
            out.push(Backend {
                addr: b.addr().into(),
                weight: b.weight(),
            });
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Pool {
            region: RegionName::new(region).ok()?,
            backends: out.into(),
        })
    }

    fn tenants(
        &mut self,
        regions: &HashMap<&str, u16>,
        plans: &HashMap<&str, u16>,
        targets: &[Target],
        target_index: &HashMap<&str, u32>,
    ) -> Tenants {
        let docs = &self.snapshot.tenants;
        let mut out = Tenants::with_capacity(docs);
        // For "one dedicated target, one tenant" and domain conflicts.
        let mut dedicated_owner: HashMap<u32, usize> = HashMap::new();
        for (i, doc) in docs.iter().enumerate() {
            let loc = tenant_loc(i, doc);
            if let Err(e) = TenantId::new(&doc.id) {
                self.problems
                    .push(format!("{loc}.id"), format!("invalid tenant id: {e}"));
            }
            if let Err(e) = Slug::new(&doc.slug) {
                self.problems.push(
                    format!("{loc}.slug"),
                    format!("invalid slug {:?}: {e}", doc.slug),
                );
            }
            let plan = plans.get(doc.plan.as_str()).copied();
            if plan.is_none() {
                let message = if self.snapshot.plans.iter().any(|p| p.name == doc.plan) {
                    format!("plan {:?} is invalid (see its problems)", doc.plan)
                } else {
                    format!("unknown plan {:?}", doc.plan)
                };
                self.problems.push(format!("{loc}.plan"), message);
            }
            let region = regions.get(doc.region.as_str()).copied();
            if region.is_none() {
                self.problems.push(
                    format!("{loc}.region"),
                    format!("unknown region {:?}", doc.region),
                );
            }
            let target = target_index.get(doc.target.as_str()).copied();
            match target {
                None if self.snapshot.targets.iter().any(|t| t.id == doc.target) => {
                    // The target exists but is itself invalid: already reported.
                    self.problems.push(
                        format!("{loc}.target"),
                        format!("target {:?} is invalid (see its problems)", doc.target),
                    );
                }
                None => self.problems.push(
                    format!("{loc}.target"),
                    format!("unknown target {:?}", doc.target),
                ),
                Some(t) => {
                    let target = &targets[t as usize];
                    if let Some(r) = region
                        && target.region.0 != r
                    {
                        self.problems.push(
                            format!("{loc}.region"),
                            format!(
                                "tenant's home region {:?} differs from its target {:?}'s region {:?}",
                                doc.region,
                                doc.target,
                                self.snapshot.regions[usize::from(target.region.0)].name
                            ),
                        );
                    }
                    if target.kind == TargetKind::Dedicated && doc.status != TenantStatus::Deleted {
                        if let Some(&other) = dedicated_owner.get(&t) {
                            self.problems.push(
                                format!("{loc}.target"),
                                format!(
                                    "dedicated target {:?} is already used by {}",
                                    doc.target,
                                    tenant_loc(other, &docs[other])
                                ),
                            );
                        } else {
                            dedicated_owner.insert(t, i);
                        }
                    }
                }
            }
            let domains = self.domains(&loc, doc);
            out.push(
                i,
                doc,
                TenantParts {
                    target: target.unwrap_or_default(),
                    plan: plan.unwrap_or_default(),
                    region: region.unwrap_or_default(),
                },
                &domains,
                &mut self.problems,
            );
        }
        out
    }

    /// Normalises and checks a tenant's domains.
    fn domains(&mut self, loc: &str, doc: &TenantDoc) -> Vec<Hostname> {
        let mut out: Vec<Hostname> = Vec::with_capacity(doc.domains.len());
        for (j, raw) in doc.domains.iter().enumerate() {
            let dloc = format!("{loc}.domains[{j}]");
            match Hostname::parse(raw) {
                Err(e) => self
                    .problems
                    .push(dloc, format!("invalid domain {raw:?}: {e}")),
                Ok(h) if out.contains(&h) => self
                    .problems
                    .push(dloc, format!("domain {h} is listed twice")),
                Ok(h) => {
                    if let Some(base) = self.options.base_domains.iter().find(|b| h.is_within(b)) {
                        self.problems.push(
                            dloc,
                            format!(
                                "domain {h} is within the platform's base domain {base}; custom domains must be outside it"
                            ),
                        );
                    } else if h.as_str().split('.').count() < 2 {
                        self.problems.push(
                            dloc,
                            format!(
                                "domain {h} is a single label; a custom domain needs at least two"
                            ),
                        );
                    } else {
                        out.push(h);
                    }
                }
            }
        }
        out
    }
}

/// Checks a backend's `host:port`: an IP socket address, or a hostname and
/// a port from 1 to 65535.
fn check_backend_addr(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("expected host:port".to_owned());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => return Err("port must be a number from 1 to 65535".to_owned()),
    }
    match Hostname::parse(host) {
        Ok(h) if h.as_str() == host => Ok(()),
        Ok(_) => Err("host must be written in lowercase ASCII".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// The resolved references of a tenant.
struct TenantParts {
    target: u32,
    plan: u16,
    region: u16,
}

/// The tenant half of a table under construction. Every tenant document
/// gets a record, so a record's index is its document index and duplicate
/// messages can name the first claimant; a table with problems is dropped.
struct Tenants {
    blocks: Vec<u32>,
    arena: Vec<u8>,
    by_id: HashTable<u32>,
    by_slug: HashTable<u32>,
    by_domain: HashTable<DomainRec>,
    hasher: RandomState,
}

/// Longest id or slug a block can hold; longer ones are invalid anyway and
/// only kept (truncated) to report duplicates before the table is dropped.
const MAX_BLOCK_STR: usize = u8::MAX as usize;

fn clamp(s: &str) -> &[u8] {
    &s.as_bytes()[..s.len().min(MAX_BLOCK_STR)]
}

impl Tenants {
    fn with_capacity(docs: &[TenantDoc]) -> Self {
        // Size the arena exactly: one allocation, no slack counted per tenant.
        let bytes: usize = docs
            .iter()
            .map(|t| {
                HEADER
                    + t.id.len()
                    + t.slug.len()
                    + t.domains.iter().map(String::len).sum::<usize>()
            })
            .sum();
        let domains: usize = docs.iter().map(|t| t.domains.len()).sum();
        Self {
            blocks: Vec::with_capacity(docs.len()),
            arena: Vec::with_capacity(bytes),
            by_id: HashTable::with_capacity(docs.len()),
            by_slug: HashTable::with_capacity(docs.len()),
            by_domain: HashTable::with_capacity(domains),
            hasher: RandomState::default(),
        }
    }

    fn offset(&self) -> u32 {
        u32::try_from(self.arena.len()).expect("routing snapshot exceeds 4 GiB of names")
    }

    /// Adds the tenant of document `i`, reporting an id, slug or domain that
    /// an earlier tenant already holds.
    fn push(
        &mut self,
        i: usize,
        doc: &TenantDoc,
        parts: TenantParts,
        domains: &[Hostname],
        problems: &mut Problems,
    ) {
        let loc = tenant_loc(i, doc);
        let block = self.offset();
        let rec = TenantRec {
            index: self.blocks.len() as u32,
            target: parts.target,
            plan: parts.plan,
            region: parts.region,
            status: doc.status,
        };
        rec.encode(clamp(&doc.id), clamp(&doc.slug), &mut self.arena);
        self.blocks.push(block);
        if let Some(first) =
            Self::claim(&mut self.by_id, &self.hasher, &self.arena, block, block_id)
        {
            problems.push(
                format!("{loc}.id"),
                format!("duplicate tenant id (also {})", self.doc_of(first)),
            );
        }
        if doc.status == TenantStatus::Deleted {
            // A deleted tenant keeps its id; its slug and domains are free.
            return;
        }
        if let Some(first) = Self::claim(
            &mut self.by_slug,
            &self.hasher,
            &self.arena,
            block,
            block_slug,
        ) {
            problems.push(
                format!("{loc}.slug"),
                format!(
                    "slug {:?} is already used by {}",
                    doc.slug,
                    self.doc_of(first)
                ),
            );
        }
        for (j, h) in domains.iter().enumerate() {
            let name = StrRef {
                offset: self.offset(),
                len: h.as_str().len() as u32,
            };
            self.arena.extend_from_slice(h.as_str().as_bytes());
            let (arena, hasher) = (&self.arena, &self.hasher);
            let get = |r: StrRef| &arena[r.offset as usize..(r.offset + r.len) as usize];
            match self.by_domain.entry(
                hasher.hash_one(h.as_str()),
                |d| get(d.name) == h.as_str().as_bytes(),
                |d| hasher.hash_one(text(get(d.name))),
            ) {
                Entry::Occupied(first) => {
                    let first = first.get().block;
                    problems.push(
                        format!("{loc}.domains[{j}]"),
                        format!("domain {h} is also claimed by {}", self.doc_of(first)),
                    );
                }
                Entry::Vacant(slot) => {
                    slot.insert(DomainRec { name, block });
                }
            }
        }
    }

    /// Whether a tenant that is not deleted claims the normalised `host`.
    fn has_domain(&self, host: &str) -> bool {
        let get = |r: StrRef| &self.arena[r.offset as usize..(r.offset + r.len) as usize];
        self.by_domain
            .find(self.hasher.hash_one(host), |d| {
                get(d.name) == host.as_bytes()
            })
            .is_some()
    }

    /// `tenants[N]` for the tenant whose block starts at `block`.
    fn doc_of(&self, block: u32) -> String {
        format!("tenants[{}]", TenantRec::decode(&self.arena, block).index)
    }

    /// Inserts `block` into `table` under the string `key` reads from it, or
    /// returns the block that already holds that string.
    fn claim(
        table: &mut HashTable<u32>,
        hasher: &RandomState,
        arena: &[u8],
        block: u32,
        key: fn(&[u8], u32) -> &[u8],
    ) -> Option<u32> {
        let name = key(arena, block);
        match table.entry(
            hasher.hash_one(text(name)),
            |&b| key(arena, b) == name,
            |&b| hasher.hash_one(text(key(arena, b))),
        ) {
            Entry::Occupied(first) => Some(*first.get()),
            Entry::Vacant(slot) => {
                slot.insert(block);
                None
            }
        }
    }
}
