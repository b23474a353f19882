//! The seeded routing snapshot: the document (the router's own [`Snapshot`]
//! model) and its TOML text.
//!
//! One region, `shards` shards whose pools hold every upstream, one plan, and
//! every tenant of the population placed by the router's consistent-hash ring
//! ([`PlacementRing`]), exactly as tenant-admin would propose it.
//!
//! The text is written by hand rather than through serde: the workspace's
//! `toml` is built without its serializer, and a `format!` per tenant keeps a
//! 100,000-tenant snapshot well under a second. Each tenant is one line of
//! an inline `tenants = [...]` array, so the file stays greppable.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use router::{
    BackendDoc, PlacementRing, PlanDoc, RegionDoc, ShardCandidate, Snapshot, TargetDoc, TargetId,
    TargetKind, TargetStatus, TenantDoc, TenantStatus,
};

use super::SeedOptions;

/// The one plan every seeded tenant is on.
pub(super) const PLAN: &str = "load";

/// Largest request body the seeded plan accepts: 64 MiB, so upload
/// scenarios are not cut short by a 413.
const MAX_BODY_BYTES: u64 = 64 << 20;

/// Placement weight of every seeded shard (they are equal).
const SHARD_WEIGHT: u32 = 100;

/// Target id of shard `n` (1-based).
pub(super) fn shard_id(n: u32) -> String {
    format!("shard-{n}")
}

/// The snapshot document for `options` at `version`, tenants placed by the
/// router's ring.
pub(super) fn document(options: &SeedOptions, version: u64) -> Snapshot {
    let region = options.region.clone();
    let pool: Vec<BackendDoc> = options
        .upstreams
        .iter()
        .map(|addr| BackendDoc::Addr(addr.to_string()))
        .collect();
    let targets: Vec<TargetDoc> = (1..=options.shards)
        .map(|n| TargetDoc {
            id: shard_id(n),
            kind: TargetKind::Shard,
            region: region.clone(),
            weight: SHARD_WEIGHT,
            status: TargetStatus::Active,
            pools: BTreeMap::from([(region.clone(), pool.clone())]),
        })
        .collect();
    // Shard ids are checked by the router below; one that is not a valid
    // TargetId simply never gets tenants, and validation names it.
    let ring = PlacementRing::new(targets.iter().filter_map(|t| {
        Some(ShardCandidate {
            id: TargetId::new(&t.id).ok()?,
            weight: t.weight,
            status: t.status,
        })
    }));
    let population = &options.population;
    let tenants = (0..population.count)
        .map(|i| {
            let id = population.tenant_id(i);
            let target = ring
                .propose(&id)
                .map_or_else(|| shard_id(1), |t| t.as_str().to_owned());
            TenantDoc {
                slug: population.slug(i),
                plan: PLAN.to_owned(),
                region: region.clone(),
                target,
                status: TenantStatus::Active,
                domains: population.custom_domain(i).into_iter().collect(),
                id,
            }
        })
        .collect();
    Snapshot {
        version,
        regions: vec![RegionDoc { name: region }],
        plans: vec![PlanDoc {
            name: PLAN.to_owned(),
            rate_per_sec: options.rate_per_sec,
            burst: options.burst,
            // Load comes from a few client addresses: a per-IP limit would
            // throttle the whole test.
            ip_rate_per_sec: 0,
            cache_ttl_secs: options.cache_ttl_secs,
            max_body_bytes: MAX_BODY_BYTES,
            cache: None,
            cache_max_object_bytes: None,
        }],
        targets,
        tenants,
        certificates: Vec::new(),
        challenges: Vec::new(),
    }
}

/// The TOML text of `snapshot`, after `header` (comment lines, each
/// starting with `#`). Certificate references and challenges are not
/// written: a seed has none, and a snapshot file may not hold certificates.
pub(super) fn to_toml(snapshot: &Snapshot, header: &str) -> String {
    let mut out = String::with_capacity(256 + snapshot.tenants.len() * 160);
    out.push_str(header);
    // Writing into a String cannot fail.
    let _ = write_document(&mut out, snapshot);
    out
}

fn write_document(out: &mut String, s: &Snapshot) -> std::fmt::Result {
    writeln!(out, "version = {}\n", s.version)?;

    out.push_str("regions = [\n");
    for r in &s.regions {
        out.push_str("  { name = ");
        string(out, &r.name);
        out.push_str(" },\n");
    }
    out.push_str("]\n\n");

    out.push_str("# Per-tenant limits (see deploy/snapshots/sample.toml for each key).\n");
    out.push_str("plans = [\n");
    for p in &s.plans {
        out.push_str("  { name = ");
        string(out, &p.name);
        write!(
            out,
            ", rate_per_sec = {}, burst = {}, ip_rate_per_sec = {}, cache_ttl_secs = {}, max_body_bytes = {}",
            p.rate_per_sec, p.burst, p.ip_rate_per_sec, p.cache_ttl_secs, p.max_body_bytes
        )?;
        if let Some(cache) = p.cache {
            write!(out, ", cache = {cache}")?;
        }
        if let Some(max) = p.cache_max_object_bytes {
            write!(out, ", cache_max_object_bytes = {max}")?;
        }
        out.push_str(" },\n");
    }
    out.push_str("]\n\n");

    out.push_str("# Shards and their app-server pools per region.\n");
    out.push_str("targets = [\n");
    for t in &s.targets {
        out.push_str("  { id = ");
        string(out, &t.id);
        out.push_str(", kind = ");
        string(out, target_kind(t.kind));
        out.push_str(", region = ");
        string(out, &t.region);
        write!(out, ", weight = {}, status = ", t.weight)?;
        string(out, target_status(t.status));
        out.push_str(", pools = {");
        for (i, (region, backends)) in t.pools.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            string(out, region);
            out.push_str(" = [");
            for (j, b) in backends.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                match b {
                    BackendDoc::Addr(addr) => string(out, addr),
                    BackendDoc::Weighted { addr, weight } => {
                        out.push_str("{ addr = ");
                        string(out, addr);
                        write!(out, ", weight = {weight} }}")?;
                    }
                }
            }
            out.push(']');
        }
        out.push_str(" } },\n");
    }
    out.push_str("]\n\n");

    out.push_str("# Tenant i: id tenant-{i}, at {slug}.{base_domain} and its custom domains.\n");
    out.push_str("tenants = [\n");
    for t in &s.tenants {
        out.push_str("  { id = ");
        string(out, &t.id);
        out.push_str(", slug = ");
        string(out, &t.slug);
        out.push_str(", plan = ");
        string(out, &t.plan);
        out.push_str(", region = ");
        string(out, &t.region);
        out.push_str(", target = ");
        string(out, &t.target);
        if t.status != TenantStatus::Active {
            out.push_str(", status = ");
            string(out, tenant_status(t.status));
        }
        if !t.domains.is_empty() {
            out.push_str(", domains = [");
            for (j, d) in t.domains.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                string(out, d);
            }
            out.push(']');
        }
        out.push_str(" },\n");
    }
    out.push_str("]\n");
    Ok(())
}

fn target_kind(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Shard => "shard",
        TargetKind::Dedicated => "dedicated",
    }
}

fn target_status(status: TargetStatus) -> &'static str {
    match status {
        TargetStatus::Active => "active",
        TargetStatus::Draining => "draining",
        TargetStatus::Offline => "offline",
    }
}

fn tenant_status(status: TenantStatus) -> &'static str {
    match status {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
        TenantStatus::Moving => "moving",
        TenantStatus::Deleted => "deleted",
    }
}

/// Appends `s` as a TOML basic string: quotes, backslashes and control
/// characters escaped, everything else as is.
pub(super) fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a TOML basic string.
pub(super) fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    string(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_so_toml_reads_them_back_unchanged() {
        #[derive(serde::Deserialize)]
        struct Doc {
            s: String,
        }
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "new\nline\ttab\r",
            "\u{7f}\u{1}é",
        ] {
            let doc: Doc = toml::from_str(&format!("s = {}", quoted(s))).unwrap();
            assert_eq!(doc.s, s);
        }
    }

    #[test]
    fn every_field_the_seed_can_write_reads_back_equal() {
        let mut snapshot = Snapshot::from_toml(
            r#"
            version = 3
            regions = [{ name = "local" }]
            plans = [{ name = "p", rate_per_sec = 1, burst = 2, ip_rate_per_sec = 3, cache_ttl_secs = 4, max_body_bytes = 5, cache = false, cache_max_object_bytes = 6 }]
            [[targets]]
            id = "s"
            kind = "shard"
            region = "local"
            status = "draining"
            pools = { local = ["127.0.0.1:1", { addr = "127.0.0.1:2", weight = 3 }], other = ["[::1]:4"] }
            [[targets]]
            id = "d"
            kind = "dedicated"
            region = "local"
            status = "offline"
            pools = { local = ["127.0.0.1:5"] }
            [[tenants]]
            id = "t"
            slug = "t"
            plan = "p"
            region = "local"
            target = "d"
            status = "moving"
            domains = ["a.example", "b.example"]
            "#,
        )
        .unwrap();
        snapshot.tenants.push(TenantDoc {
            id: "u".to_owned(),
            slug: "u".to_owned(),
            status: TenantStatus::Suspended,
            domains: Vec::new(),
            ..snapshot.tenants[0].clone()
        });
        let text = to_toml(&snapshot, "# header\n");
        assert!(text.starts_with("# header\nversion = 3\n"), "{text}");
        assert_eq!(Snapshot::from_toml(&text).unwrap(), snapshot, "{text}");
    }
}
