//! Placement of new tenants on the weighted consistent-hash ring.
//!
//! Movement is measured over 100,000 tenant keys; the stated tolerance is
//! ±2 percentage points of the expected share w / (W + w).

mod common;

use std::collections::HashMap;

use router::{Placement, PlacementRing, ShardCandidate, TargetId, TargetStatus};

const KEYS: usize = 100_000;
const TOLERANCE: f64 = 0.02;

fn shard(id: &str, weight: u32) -> ShardCandidate {
    ShardCandidate {
        id: TargetId::new(id).unwrap(),
        weight,
        status: TargetStatus::Active,
    }
}

fn keys() -> impl Iterator<Item = String> {
    (0..KEYS).map(|i| format!("tenant-{i:06}"))
}

fn proposals(ring: &PlacementRing) -> Vec<Option<TargetId>> {
    keys().map(|k| ring.propose(&k).cloned()).collect()
}

/// Fraction of keys whose proposal changed, and the set of shards they moved to.
fn moved(before: &[Option<TargetId>], after: &[Option<TargetId>]) -> (f64, HashMap<String, usize>) {
    let mut to = HashMap::new();
    let mut n = 0;
    for (b, a) in before.iter().zip(after) {
        if b != a {
            n += 1;
            *to.entry(a.as_ref().map_or("none".to_owned(), |t| t.to_string()))
                .or_insert(0) += 1;
        }
    }
    (n as f64 / before.len() as f64, to)
}

fn assert_share(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= TOLERANCE,
        "{what}: {actual:.4} is not within ±{TOLERANCE} of {expected:.4}"
    );
}

#[test]
fn adding_a_shard_moves_its_weight_share_of_proposals_to_it() {
    for (weights, added) in [
        (vec![100, 100, 100, 100, 100], 100),
        (vec![100, 200, 50], 150),
        (vec![10, 10], 5),
    ] {
        let mut shards: Vec<ShardCandidate> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| shard(&format!("shard-{i}"), w))
            .collect();
        let before = proposals(&PlacementRing::new(shards.clone()));
        shards.push(shard("shard-new", added));
        let after = proposals(&PlacementRing::new(shards));

        let total: u32 = weights.iter().sum();
        let expected = f64::from(added) / f64::from(total + added);
        let (fraction, to) = moved(&before, &after);
        assert_share(
            fraction,
            expected,
            &format!("weights {weights:?} + {added}"),
        );
        // Consistent hashing: every moved proposal moved to the new shard.
        assert_eq!(to.keys().collect::<Vec<_>>(), ["shard-new"], "{to:?}");
    }
}

#[test]
fn proposals_follow_shard_weights() {
    let ring = PlacementRing::new([shard("a", 100), shard("b", 300), shard("c", 600)]);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for k in keys() {
        *counts
            .entry(ring.propose(&k).unwrap().to_string())
            .or_default() += 1;
    }
    for (id, weight) in [("a", 0.1), ("b", 0.3), ("c", 0.6)] {
        assert_share(counts[id] as f64 / KEYS as f64, weight, id);
    }
}

#[test]
fn draining_and_offline_shards_are_skipped_to_the_next_candidate() {
    let active = [
        shard("a", 100),
        shard("b", 100),
        shard("c", 100),
        shard("d", 100),
    ];
    let before = proposals(&PlacementRing::new(active.clone()));
    let mut changed = active.clone();
    changed[1].status = TargetStatus::Draining;
    changed[2].status = TargetStatus::Offline;
    let after = proposals(&PlacementRing::new(changed));
    for (b, a) in before.iter().zip(&after) {
        let a = a.as_ref().unwrap().as_str();
        assert!(
            a == "a" || a == "d",
            "proposal on a draining/offline shard: {a}"
        );
        // Keys of the active shards stay where they were.
        let b = b.as_ref().unwrap().as_str();
        if b == "a" || b == "d" {
            assert_eq!(a, b);
        }
    }
    let (fraction, _) = moved(&before, &after);
    assert_share(fraction, 0.5, "two of four equal shards drained");
}

#[test]
fn no_active_shard_means_no_proposal() {
    let mut s = shard("a", 10);
    s.status = TargetStatus::Draining;
    let ring = PlacementRing::new([s]);
    assert_eq!(ring.propose("t-1"), None);
    assert_eq!(ring.place("t-1", None), Placement::NoActiveShard);
    assert_eq!(PlacementRing::new([]).propose("t-1"), None);
}

#[test]
fn stored_placement_wins_whatever_the_ring_says() {
    let ring = PlacementRing::new([shard("a", 100), shard("b", 100)]);
    let stored = TargetId::new("somewhere-else").unwrap();
    for k in keys().take(1000) {
        assert_eq!(ring.place(&k, Some(&stored)), Placement::Stored(&stored));
        assert!(matches!(ring.place(&k, None), Placement::Proposed(_)));
    }
}

#[test]
fn proposals_do_not_depend_on_input_order() {
    let one = PlacementRing::new([shard("a", 10), shard("b", 20), shard("c", 30)]);
    let two = PlacementRing::new([shard("c", 30), shard("a", 10), shard("b", 20)]);
    assert_eq!(proposals(&one), proposals(&two));
}

#[test]
fn region_ring_covers_only_that_regions_shards() {
    let table = common::sample_table();
    let eu = table.region("eu-west").unwrap();
    let ring = PlacementRing::for_region(&table, eu);
    // shard-eu-2 is draining and the dedicated cluster is never a candidate.
    for k in keys().take(2000) {
        assert_eq!(ring.propose(&k).unwrap().as_str(), "shard-eu-1");
    }
    let us = table.region("us-east").unwrap();
    let ring = PlacementRing::for_region(&table, us);
    assert_eq!(ring.propose("t-new").unwrap().as_str(), "shard-us-1");
}
