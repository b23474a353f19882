//! Placement of *new* tenants: a weighted consistent-hash ring over the
//! shards of a region (the `consistent_hash` crate).
//!
//! The ring holds every shard of the region, whatever its status, with
//! [`VNODES_PER_WEIGHT`] virtual nodes per unit of weight. A tenant's
//! proposal is the first *active* shard among its candidates, so draining a
//! shard moves only that shard's share of proposals, and adding a shard of
//! weight `w` to a ring of weight `W` moves about `w / (W + w)` of them — all
//! to the new shard.
//!
//! Placement is persisted by tenant-admin: once a tenant has a stored
//! target, [`PlacementRing::place`] returns it whatever the ring says, and
//! moving a tenant is an explicit, data-copying operation.

use std::fmt;

use consistent_hash::{DefaultHash, Node, StaticHashRing};

use crate::ids::TargetId;
use crate::snapshot::{TargetKind, TargetStatus};
use crate::table::{RegionIdx, RoutingTable};

/// Virtual nodes per unit of shard weight. With weights of 10 or more a
/// shard's share of proposals is within a few percent of its weight's share.
pub const VNODES_PER_WEIGHT: usize = 40;

/// Largest shard weight: keeps a ring of a few hundred shards small
/// (40,000 virtual nodes for the heaviest shard).
pub const MAX_SHARD_WEIGHT: u32 = 1000;

/// A shard the ring may place tenants on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCandidate {
    /// The shard.
    pub id: TargetId,
    /// Relative capacity, 1 to [`MAX_SHARD_WEIGHT`] (larger is clamped).
    pub weight: u32,
    /// Only active shards receive new tenants.
    pub status: TargetStatus,
}

/// Where a tenant lives, and whether that was decided now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// The tenant already had a target; it stays there.
    Stored(&'a TargetId),
    /// A new tenant: the ring's proposal, to be persisted by the caller.
    Proposed(&'a TargetId),
    /// No active shard in the region.
    NoActiveShard,
}

/// The consistent-hash ring of one region's shards.
pub struct PlacementRing {
    ring: StaticHashRing<'static, TargetId, TargetStatus, DefaultHash>,
}

impl fmt::Debug for PlacementRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlacementRing")
            .field("shards", &self.ring.nodes().len())
            .field("virtual_nodes", &self.ring.len())
            .finish()
    }
}

impl PlacementRing {
    /// Builds the ring over `shards` (duplicates by id: the first wins).
    pub fn new(shards: impl IntoIterator<Item = ShardCandidate>) -> Self {
        let nodes = shards.into_iter().map(|s| {
            let weight = s.weight.clamp(1, MAX_SHARD_WEIGHT) as usize;
            Node::new(s.id)
                .value(s.status)
                .quantity(weight * VNODES_PER_WEIGHT)
        });
        Self {
            ring: StaticHashRing::new(DefaultHash, nodes),
        }
    }

    /// The ring over the shards homed in `region` of a routing table.
    pub fn for_region(table: &RoutingTable, region: RegionIdx) -> Self {
        Self::new(
            table
                .targets()
                .iter()
                .filter(|t| t.kind == TargetKind::Shard && t.region == region)
                .map(|t| ShardCandidate {
                    id: t.id.clone(),
                    weight: t.weight,
                    status: t.status,
                }),
        )
    }

    /// The shard the ring proposes for a new tenant keyed `tenant_key` (its
    /// immutable id): the first active candidate.
    pub fn propose(&self, tenant_key: &str) -> Option<&TargetId> {
        self.ring
            .calc_candidates(&tenant_key)
            .find(|n| n.value == TargetStatus::Active)
            .map(|n| &n.key)
    }

    /// The tenant's placement: its `stored` target when it has one (the
    /// stored placement is the truth), else the ring's proposal.
    pub fn place<'a>(&'a self, tenant_key: &str, stored: Option<&'a TargetId>) -> Placement<'a> {
        match stored {
            Some(target) => Placement::Stored(target),
            None => self
                .propose(tenant_key)
                .map_or(Placement::NoActiveShard, Placement::Proposed),
        }
    }
}
