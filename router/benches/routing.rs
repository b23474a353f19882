//! Routing at scale: 1,000,000 tenants with 1,000,000 custom domains.
//!
//! Prints the three figures of the router's targets after criterion's own
//! output: median time per routing decision (≤ 150 ns), snapshot build time
//! (≤ 2 s) and bytes per tenant (≤ 300).
//!
//! ```text
//! cargo bench -p router
//! ```
//!
//! Two traffic shapes are measured. `zipf`: tenants drawn with Zipf-skewed
//! popularity (exponent 1.0, the shape of a SaaS customer base: a few large
//! tenants, a long tail), spread across the table so hot tenants are not
//! neighbours in memory. `uniform`: every one of the million tenants equally
//! likely, so nearly every lookup misses the CPU caches — the worst case.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use router::{
    BackendDoc, BuildOptions, Hostname, PlanDoc, RegionDoc, RouteRequest, RoutingTable, Snapshot,
    TargetDoc, TargetKind, TargetStatus, TenantDoc, TenantStatus,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const TENANTS: usize = 1_000_000;
const SHARDS_PER_REGION: usize = 40;
const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];
const BASE: &str = "app.example.test";
/// Hosts per lookup set: a power of two so the index wraps with a mask.
const LOOKUPS: usize = 1 << 16;

fn snapshot() -> Snapshot {
    let regions = REGIONS
        .iter()
        .map(|r| RegionDoc { name: (*r).into() })
        .collect();
    let plans = vec![PlanDoc {
        name: "business".into(),
        rate_per_sec: 100,
        burst: 200,
        ip_rate_per_sec: 20,
        cache_ttl_secs: 30,
        max_body_bytes: 1 << 20,
        cache: None,
        cache_max_object_bytes: None,
    }];
    let mut targets = Vec::new();
    for (r, region) in REGIONS.iter().enumerate() {
        for s in 0..SHARDS_PER_REGION {
            let mut pools = BTreeMap::new();
            for (o, other) in REGIONS.iter().enumerate() {
                let addrs = (0..3)
                    .map(|b| BackendDoc::Addr(format!("10.{r}.{o}.{}:8080", s * 3 + b)))
                    .collect();
                pools.insert((*other).to_owned(), addrs);
            }
            targets.push(TargetDoc {
                id: format!("shard-{region}-{s:02}"),
                kind: TargetKind::Shard,
                region: (*region).into(),
                weight: 100,
                status: TargetStatus::Active,
                pools,
            });
        }
    }
    let tenants = (0..TENANTS)
        .map(|i| {
            let r = i % REGIONS.len();
            let s = (i / REGIONS.len()) % SHARDS_PER_REGION;
            TenantDoc {
                id: format!("t-{i:07}"),
                slug: format!("tenant-{i:07}"),
                plan: "business".into(),
                region: REGIONS[r].into(),
                target: format!("shard-{}-{s:02}", REGIONS[r]),
                status: TenantStatus::Active,
                domains: vec![format!("erp.customer-{i:07}.example")],
            }
        })
        .collect();
    Snapshot {
        version: 1,
        regions,
        plans,
        targets,
        tenants,
        certificates: Vec::new(),
        challenges: Vec::new(),
    }
}

fn options() -> BuildOptions {
    BuildOptions {
        base_domains: vec![Hostname::parse(BASE).unwrap()],
    }
}

/// A deterministic spread of tenant numbers (an LCG: no rand dependency).
fn spread(n: usize) -> Vec<usize> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as usize % TENANTS
        })
        .collect()
}

/// Tenant numbers with Zipf(1.0) popularity: rank r is drawn with
/// probability proportional to 1/r, and ranks are scattered over the table.
fn zipf(n: usize) -> Vec<usize> {
    let mut cumulative = Vec::with_capacity(TENANTS);
    let mut total = 0.0;
    for rank in 1..=TENANTS {
        total += 1.0 / rank as f64;
        cumulative.push(total);
    }
    spread(n)
        .into_iter()
        .map(|u| {
            let target = (u as f64 + 0.5) / TENANTS as f64 * total;
            let rank = cumulative.partition_point(|&c| c < target);
            // 618_033 is coprime with 10^6: a permutation of the tenants.
            (rank * 618_033) % TENANTS
        })
        .collect()
}

struct Hosts {
    custom: Vec<String>,
    subdomain: Vec<String>,
}

fn hosts(picks: &[usize]) -> Hosts {
    Hosts {
        custom: picks
            .iter()
            .map(|i| format!("erp.customer-{i:07}.example"))
            .collect(),
        subdomain: picks
            .iter()
            .map(|i| format!("tenant-{i:07}.{BASE}"))
            .collect(),
    }
}

fn resolve_one(table: &RoutingTable, region: router::RegionIdx, host: &str) -> usize {
    let req = RouteRequest {
        host: Some(host),
        method: "GET",
        trusted_tenant: None,
    };
    let d = table
        .resolve(&req, region)
        .expect("every benchmark host routes");
    d.pool.backends.len()
}

/// Per-decision latency over `rounds` passes of a lookup set: each decision
/// is timed on its own, and the median cost of an empty timed section (the
/// clock itself) is subtracted.
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    mean: f64,
}

fn clock_overhead_ns() -> f64 {
    let mut samples: Vec<u64> = (0..200_000)
        .map(|_| {
            let start = Instant::now();
            black_box(());
            start.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2] as f64
}

fn latency(table: &RoutingTable, hosts: &[String], rounds: usize, overhead: f64) -> Latency {
    let region = table.region("eu-west").unwrap();
    let mut samples: Vec<u64> = Vec::with_capacity(hosts.len() * rounds);
    for _ in 0..rounds {
        for h in hosts {
            let start = Instant::now();
            black_box(resolve_one(table, region, black_box(h)));
            samples.push(start.elapsed().as_nanos() as u64);
        }
    }
    let mean_start = Instant::now();
    for h in hosts {
        black_box(resolve_one(table, region, black_box(h)));
    }
    let mean = mean_start.elapsed().as_nanos() as f64 / hosts.len() as f64;
    samples.sort_unstable();
    let at =
        |q: f64| (samples[((samples.len() - 1) as f64 * q) as usize] as f64 - overhead).max(0.0);
    Latency {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        mean,
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    eprintln!("generating a snapshot of {TENANTS} tenants and {TENANTS} custom domains ...");
    let snapshot = snapshot();
    let options = options();

    // Bytes per tenant: net heap growth across a build, after the build's
    // temporaries are freed (the snapshot document is not counted).
    let region = Region::new(GLOBAL);
    let table = RoutingTable::build(&snapshot, &options).expect("generated snapshot is valid");
    let change = region.change();
    let table_bytes = change.bytes_allocated as f64 - change.bytes_deallocated as f64;
    let bytes_per_tenant = table_bytes / TENANTS as f64;
    let uniform = hosts(&spread(LOOKUPS));
    let skewed = hosts(&zipf(LOOKUPS));

    let mut group = criterion.benchmark_group("resolve_1m_tenants");
    group.throughput(Throughput::Elements(1));
    let eu = table.region("eu-west").unwrap();
    for (name, list) in [
        ("zipf_custom_domain", &skewed.custom),
        ("zipf_subdomain", &skewed.subdomain),
        ("uniform_custom_domain", &uniform.custom),
        ("uniform_subdomain", &uniform.subdomain),
    ] {
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (LOOKUPS - 1);
                resolve_one(&table, eu, black_box(&list[i]))
            });
        });
    }
    group.bench_function("hot_tenant", |b| {
        b.iter(|| resolve_one(&table, eu, black_box("erp.customer-0000042.example")));
    });
    group.finish();

    let mut group = criterion.benchmark_group("build_1m_tenants");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(12));
    group.bench_function("validate_and_compile", |b| {
        b.iter_batched(
            || (),
            |()| RoutingTable::build(&snapshot, &options).unwrap(),
            BatchSize::PerIteration,
        );
    });
    group.finish();

    // The figures, measured the same way every run.
    let overhead = clock_overhead_ns();
    let hot = vec!["erp.customer-0000042.example".to_owned(); 4096];
    let figures = [
        ("zipf", "custom domain", &skewed.custom),
        ("zipf", "subdomain", &skewed.subdomain),
        ("uniform", "custom domain", &uniform.custom),
        ("uniform", "subdomain", &uniform.subdomain),
        ("one hot", "custom domain", &hot),
    ]
    .map(|(shape, kind, hosts)| (shape, kind, latency(&table, hosts, 8, overhead)));
    let mut builds: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            drop(black_box(RoutingTable::build(&snapshot, &options).unwrap()));
            start.elapsed()
        })
        .collect();
    builds.sort();
    let build = builds[builds.len() / 2];

    println!();
    println!("== router figures: {TENANTS} tenants, {TENANTS} custom domains ==");
    println!(
        "resolution per decision (target: median <= 150 ns); clock overhead {overhead:.0} ns subtracted:"
    );
    for (shape, kind, l) in figures {
        println!(
            "  {shape:>7} traffic, {kind:<13}: median {:>4.0} ns  p90 {:>4.0} ns  p99 {:>4.0} ns  mean {:>4.0} ns",
            l.p50, l.p90, l.p99, l.mean
        );
    }
    println!(
        "snapshot build (validate + compile), median of 5: {:.2} s  (target <= 2 s)",
        build.as_secs_f64()
    );
    println!(
        "memory: {bytes_per_tenant:.0} bytes per tenant, {:.1} MiB in all  (target <= 300 bytes)",
        table_bytes / (1024.0 * 1024.0)
    );
    criterion.final_summary();
}
