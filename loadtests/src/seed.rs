//! `loadtest seed`: everything a gateway needs to serve the tenants of a
//! [`Population`], for scale tests — a routing snapshot, a CA, a certificate
//! per custom domain, a wildcard default certificate and a gateway config.
//!
//! The names come from [`Population`] alone, so a scenario and a gateway
//! seeded for it agree on every host without sharing a file.
//!
//! # Output
//!
//! ```text
//! OUT/
//!   seed.toml            what was seeded (the population), and
//!                        `generator = "loadtest seed"`: marks OUT as seed output
//!   snapshot.toml        one region, `shards` shards pooling every upstream, one plan,
//!                        every tenant (placed by the router's consistent-hash ring)
//!   gateway.toml         file source on snapshot.toml, the certificates below, no Redis
//!   ca.pem               the CA every certificate chains to: clients trust it
//!   ca.key               its key (mode 0600), so the next seed here reuses the CA
//!   default.crt/.key     *.{base_domain} and {base_domain}: the default certificate
//!   certs/<host>.crt/.key  one pair per custom domain (the gateway's cert_dir)
//! ```
//!
//! Without certificates (`certificates: false`) only `seed.toml`,
//! `snapshot.toml` and a plain-HTTP `gateway.toml` are written.
//!
//! The CA outlives a seed: a seed into a previous seed's directory reuses
//! its `ca.pem` and `ca.key` (unless they no longer vouch for a new
//! certificate: expired, or not a pair), so clients keep trusting the same
//! `ca.pem`, and a gateway already running on the directory — which reads
//! the default certificate only at start-up — keeps serving a valid one
//! while it reloads the snapshot and the per-domain pairs. It is a test CA:
//! whoever can read `ca.key` can impersonate any host to clients that trust it.
//!
//! # An existing output directory
//!
//! A missing or empty directory is used as is. A directory whose
//! `seed.toml` is a seed manifest carrying `generator = "loadtest seed"`
//! is a previous seed's output: the files listed above are replaced,
//! certificate pairs in `certs/` for domains this seed no longer has are
//! removed (a gateway would still serve them), and every other file is left
//! alone. Any other non-empty directory — one with no `seed.toml`, or with
//! a `seed.toml` someone else wrote — is refused before anything is written
//! or removed, so a typo in `--out` never litters someone's directory with
//! 20,000 files nor replaces their keys.
//!
//! Every file is written to a temporary name and renamed into place, so a
//! gateway already running on the directory reloads complete files only.
//! Before anything is written, the snapshot is validated by the router as
//! the gateway does (with the base domain); after writing, the file is read
//! back, compared and validated again.
//!
//! ```text
//! cargo run --release -p loadtest -- seed --out /tmp/seed --upstream 127.0.0.1:8081 --tenants 10000 --domains 1000
//! cargo run -p gateway -- --check --config /tmp/seed/gateway.toml
//! ```

mod certs;
mod files;
mod gateway_config;
mod snapshot;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use router::{
    BuildOptions, Hostname, Problems, RegionName, RoutingTable, Slug, Snapshot, SnapshotError,
    TenantId,
};
use serde::Deserialize;

use crate::population::Population;
use files::Privacy;

/// The manifest: what was seeded, and the mark of a seed's output directory.
pub const MANIFEST: &str = "seed.toml";
/// The manifest's `generator`: a `seed.toml` without it was not written by
/// a seed, and its directory is not a seed's output.
pub const GENERATOR: &str = "loadtest seed";
/// The routing snapshot.
pub const SNAPSHOT: &str = "snapshot.toml";
/// The gateway config.
pub const GATEWAY_CONFIG: &str = "gateway.toml";
/// The CA certificate (PEM).
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key (PEM), kept for the next seed.
pub const CA_KEY: &str = "ca.key";
/// The default (wildcard) certificate.
pub const DEFAULT_CERT: &str = "default.crt";
/// The default certificate's private key.
pub const DEFAULT_KEY: &str = "default.key";
/// The directory of per-domain pairs (the gateway's `tls.cert_dir`).
pub const CERT_DIR: &str = "certs";

/// The most shards a seed spreads tenants over.
pub const MAX_SHARDS: u32 = 1000;

/// What to seed and where.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// The tenants and their names: exactly what a scenario addresses.
    pub population: Population,
    /// Output directory (created if missing); see the module docs for what
    /// happens when it exists.
    pub out: PathBuf,
    /// App servers: every shard's pool holds all of them.
    pub upstreams: Vec<SocketAddr>,
    /// Shards the tenants are spread over (1 to [`MAX_SHARDS`]), so the
    /// gateway holds several pools and upstream headers tell them apart.
    pub shards: u32,
    /// The one region: the gateway's, and every shard's home.
    pub region: String,
    /// The plan's sustained requests per second per tenant.
    pub rate_per_sec: u32,
    /// The plan's burst above that.
    pub burst: u32,
    /// The plan's default cache TTL; 0 disables the response cache.
    pub cache_ttl_secs: u32,
    /// Whether to issue a CA and certificates and give the gateway an
    /// HTTPS listener.
    pub certificates: bool,
    /// The gateway's plain-HTTP listener.
    pub http_listen: SocketAddr,
    /// The gateway's HTTPS listener (only with `certificates`).
    pub https_listen: SocketAddr,
    /// The gateway's admin listener (metrics, `/readyz`, `/debug/route`).
    pub admin_listen: SocketAddr,
    /// The gateway's worker threads (1 to 1024).
    pub threads: usize,
    /// Whether the gateway writes its JSON access log (one line a request).
    pub access_log: bool,
}

impl SeedOptions {
    /// Seeds `population` into `out` with `upstreams` and these defaults: 4
    /// shards in region `local`, a plan of 1,000,000 requests a second and
    /// as much burst (rate limits out of the way), no cache, certificates,
    /// the gateway on 127.0.0.1:8080 (HTTP), :8443 (HTTPS) and :9090
    /// (admin) with 1 thread and its access log on (the gateway's defaults).
    pub fn new(population: Population, out: PathBuf, upstreams: Vec<SocketAddr>) -> Self {
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            population,
            out,
            upstreams,
            shards: 4,
            region: "local".to_owned(),
            rate_per_sec: 1_000_000,
            burst: 1_000_000,
            cache_ttl_secs: 0,
            certificates: true,
            http_listen: local(8080),
            https_listen: local(8443),
            admin_listen: local(9090),
            threads: 1,
            access_log: true,
        }
    }
}

/// Why a seed failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// No upstream was given.
    #[error("no upstream: give at least one app-server address for the shards' pools")]
    NoUpstreams,
    /// The same upstream twice (a pool may not list a backend twice).
    #[error("upstream {0} is given twice")]
    DuplicateUpstream(SocketAddr),
    /// Too few or too many shards.
    #[error("{0} shards: the tenants need 1 to {MAX_SHARDS}")]
    Shards(u32),
    /// Gateway threads out of range.
    #[error("{0} gateway threads: must be from 1 to 1024")]
    Threads(usize),
    /// A plan limit the router refuses.
    #[error("the plan's {field} is 0: it must be at least 1")]
    ZeroLimit {
        /// `rate_per_sec` or `burst`.
        field: &'static str,
    },
    /// Two gateway listeners on one address.
    #[error("the gateway's {first} and {second} listeners are both on {addr}")]
    SameListenAddress {
        /// One listener.
        first: &'static str,
        /// The other.
        second: &'static str,
        /// The address they share.
        addr: SocketAddr,
    },
    /// A name the router (or the gateway) refuses.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which name, and where it comes from.
        what: &'static str,
        /// The name.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// Custom domains that would fall inside the platform's domain.
    #[error(
        "custom domains under {suffix} are within the base domain {base}; custom domains must be outside it (pick another domain suffix)"
    )]
    DomainsInBaseDomain {
        /// The custom domains' parent.
        suffix: String,
        /// The platform's domain.
        base: String,
    },
    /// The router refused the generated snapshot (a bug in the seed if the
    /// checks above passed).
    #[error("the router refuses the generated snapshot: {0}")]
    Refused(Problems),
    /// `out` exists and is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// `out` holds files, and not a previous seed's.
    #[error(
        "{} is not empty and is not the output of an earlier `loadtest seed`: {reason}; nothing was written: use a new or empty directory",
        out.display()
    )]
    NotSeedOutput {
        /// The directory.
        out: PathBuf,
        /// Why it is not a seed's (naming its `seed.toml`, if any).
        reason: String,
    },
    /// A file or directory could not be created, written, read or removed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// To what.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A certificate could not be made.
    #[error("cannot issue a certificate for {names}: {source}")]
    Certificate {
        /// Its names, comma-separated (or "the CA").
        names: String,
        /// What rcgen says.
        source: rcgen::Error,
    },
    /// The snapshot as written does not read back.
    #[error("the written snapshot {} does not read back: {source}", path.display())]
    ReadBack {
        /// The file.
        path: PathBuf,
        /// Why.
        source: SnapshotError,
    },
    /// The snapshot reads back as something else than was generated.
    #[error(
        "the written snapshot {} reads back differently from what was generated (a bug in loadtest seed)",
        .0.display()
    )]
    RoundTrip(PathBuf),
    /// A `seed.toml` that is not a manifest written by a seed: it does not
    /// parse as one, or lacks `generator = "loadtest seed"`.
    #[error("{} is not a manifest written by `loadtest seed`: {reason}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl SeedError {
    /// The process exit code for this error, after `sysexits.h`:
    ///
    /// - 64 (`EX_USAGE`): bad flags or arguments — no upstreams, an
    ///   upstream given twice, shards or gateway threads out of range, a
    ///   rate or burst of 0, two listeners on one address, an invalid
    ///   region, slug, tenant id, base domain or custom domain, custom
    ///   domains inside the base domain, an `out` that is not a directory
    ///   or is non-empty and not an earlier seed's output, and a `seed.toml`
    ///   that is not a seed's manifest.
    /// - 73 (`EX_CANTCREAT`): an I/O failure creating, writing, reading
    ///   back or removing the output (including a written snapshot that
    ///   cannot be read back).
    /// - 1: anything else, a bug in the seed rather than in its input — a
    ///   certificate that cannot be made, a snapshot that reads back wrong
    ///   or that the router refuses although the options passed the checks.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        const USAGE: u8 = 64;
        const CANT_CREATE: u8 = 73;
        const INTERNAL: u8 = 1;
        match self {
            Self::NoUpstreams
            | Self::DuplicateUpstream(_)
            | Self::Shards(_)
            | Self::Threads(_)
            | Self::ZeroLimit { .. }
            | Self::SameListenAddress { .. }
            | Self::InvalidName { .. }
            | Self::DomainsInBaseDomain { .. }
            | Self::NotADirectory(_)
            | Self::NotSeedOutput { .. }
            | Self::Manifest { .. } => USAGE,
            Self::Io { .. }
            | Self::ReadBack {
                source: SnapshotError::Io { .. },
                ..
            } => CANT_CREATE,
            Self::Refused(_)
            | Self::Certificate { .. }
            | Self::ReadBack { .. }
            | Self::RoundTrip(_) => INTERNAL,
        }
    }

    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// The certificates a seed wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededTls {
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// Its private key.
    pub ca_key: PathBuf,
    /// Whether the CA of a previous seed into the same directory was reused
    /// (else a new one was made).
    pub ca_reused: bool,
    /// The default certificate (`*.{base_domain}` and `{base_domain}`).
    pub default_cert: PathBuf,
    /// Its private key.
    pub default_key: PathBuf,
    /// The directory of per-domain pairs.
    pub cert_dir: PathBuf,
    /// Pairs written into it: one per custom domain.
    pub certificates: u32,
    /// How long issuing and writing them took.
    pub elapsed: Duration,
}

/// What a seed wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedOutcome {
    /// The output directory.
    pub out: PathBuf,
    /// The manifest (`seed.toml`).
    pub manifest: PathBuf,
    /// The routing snapshot.
    pub snapshot: PathBuf,
    /// The gateway config.
    pub gateway_config: PathBuf,
    /// The snapshot's version: the seed's time in Unix seconds, so a
    /// gateway watching the file sees a re-seed as a newer version.
    pub version: u64,
    /// Tenants in the snapshot.
    pub tenants: u32,
    /// Custom domains in the snapshot.
    pub custom_domains: u32,
    /// Tenants per shard, in shard order (`shard-1` first).
    pub tenants_per_shard: Vec<(String, u32)>,
    /// The certificates, unless the seed was asked for none.
    pub tls: Option<SeededTls>,
    /// Files of a previous seed removed because this one does not have them.
    pub removed_files: u32,
    /// How long the whole seed took.
    pub elapsed: Duration,
}

impl fmt::Display for SeedOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seeded {} tenants ({} with a custom domain) on {} shards in {:.1?}",
            self.tenants,
            self.custom_domains,
            self.tenants_per_shard.len(),
            self.elapsed
        )?;
        write!(
            f,
            "\n  snapshot {} (version {})",
            self.snapshot.display(),
            self.version
        )?;
        if let Some(tls) = &self.tls {
            write!(
                f,
                "\n  {} certificates in {} ({:.1?}), default {}, {} CA {}",
                tls.certificates,
                tls.cert_dir.display(),
                tls.elapsed,
                tls.default_cert.display(),
                if tls.ca_reused { "kept" } else { "new" },
                tls.ca.display()
            )?;
        }
        if self.removed_files > 0 {
            write!(
                f,
                "\n  {} files of the previous seed removed",
                self.removed_files
            )?;
        }
        write!(f, "\n  gateway --config {}", self.gateway_config.display())
    }
}

/// Writes everything a gateway needs to serve `options.population` into
/// `options.out` (see the module docs for the layout and what happens to an
/// existing directory).
///
/// # Errors
///
/// [`SeedError`]: bad options or names (before anything is written), an
/// output directory that is not a seed's, a file that cannot be written,
/// or a certificate that cannot be made.
pub fn seed(options: &SeedOptions) -> Result<SeedOutcome, SeedError> {
    let started = Instant::now();
    let base = check(options)?;
    let version = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let document = snapshot::document(options, version);
    let build = BuildOptions {
        base_domains: vec![base],
    };
    validate(&document, &build, &options.region)?;

    let out = &options.out;
    prepare_out(out)?;
    let manifest = out.join(MANIFEST);
    files::write(
        &manifest,
        manifest_text(options, version).as_bytes(),
        Privacy::Public,
    )?;

    let population = &options.population;
    let hosts: Vec<String> = (0..population.custom_domains.min(population.count))
        .filter_map(|i| population.custom_domain(i))
        .collect();
    // New certificates go in before the snapshot that names their domains,
    // and stale ones go after the snapshot that drops them, so a gateway
    // running on the directory never routes a domain it has no pair for.
    let tls = if options.certificates {
        Some(write_certificates(options, &hosts)?)
    } else {
        None
    };

    let snapshot_path = out.join(SNAPSHOT);
    let header = format!(
        "# Routing snapshot written by `loadtest seed` ({} in this directory): {} tenants\n\
         # at {{slug}}.{}, {} custom domains, {} shards in region {}.\n\n",
        MANIFEST,
        options.population.count,
        options.population.base_domain,
        hosts.len(),
        options.shards,
        options.region,
    );
    files::write(
        &snapshot_path,
        snapshot::to_toml(&document, &header).as_bytes(),
        Privacy::Public,
    )?;
    let written = Snapshot::from_path(&snapshot_path).map_err(|source| SeedError::ReadBack {
        path: snapshot_path.clone(),
        source,
    })?;
    if written != document {
        return Err(SeedError::RoundTrip(snapshot_path));
    }
    validate(&written, &build, &options.region)?;

    let mut removed_files = remove_stale_certs(out, options.certificates, &hosts)?;
    if !options.certificates {
        for name in [CA_CERT, CA_KEY, DEFAULT_CERT, DEFAULT_KEY] {
            removed_files += u32::from(files::remove(&out.join(name))?);
        }
    }

    let gateway_config = out.join(GATEWAY_CONFIG);
    files::write(
        &gateway_config,
        gateway_config::text(options).as_bytes(),
        Privacy::Public,
    )?;

    let mut placed: HashMap<&str, u32> = HashMap::new();
    for tenant in &document.tenants {
        *placed.entry(&tenant.target).or_default() += 1;
    }
    let tenants_per_shard = (1..=options.shards)
        .map(|n| {
            let id = snapshot::shard_id(n);
            let count = placed.get(id.as_str()).copied().unwrap_or(0);
            (id, count)
        })
        .collect();
    Ok(SeedOutcome {
        out: out.clone(),
        manifest,
        snapshot: snapshot_path,
        gateway_config,
        version,
        tenants: options.population.count,
        custom_domains: u32::try_from(hosts.len()).unwrap_or(u32::MAX),
        tenants_per_shard,
        tls,
        removed_files,
        elapsed: started.elapsed(),
    })
}

/// The population recorded in a seed's output directory `out`, so a run can
/// address exactly the tenants that were seeded.
///
/// # Errors
///
/// [`SeedError::Io`] when `out/seed.toml` cannot be read,
/// [`SeedError::Manifest`] when it is not a manifest written by a seed
/// (it does not parse as one, or lacks `generator = "loadtest seed"`).
pub fn seeded_population(out: &Path) -> Result<Population, SeedError> {
    let path = out.join(MANIFEST);
    let text =
        std::fs::read_to_string(&path).map_err(|source| SeedError::io("read", &path, source))?;
    parse_manifest(&text).map_err(|reason| SeedError::Manifest { path, reason })
}

/// The population in a manifest's text, or why it is not a manifest a
/// seed wrote.
fn parse_manifest(text: &str) -> Result<Population, String> {
    #[derive(Deserialize)]
    struct Manifest {
        generator: Option<String>,
        population: Population,
    }
    let manifest =
        toml::from_str::<Manifest>(text).map_err(|e| e.message().trim_end().to_owned())?;
    match manifest.generator {
        Some(g) if g == GENERATOR => Ok(manifest.population),
        Some(other) => Err(format!("its generator is {other:?}, not {GENERATOR:?}")),
        None => Err(format!("it has no generator = {GENERATOR:?}")),
    }
}

/// Checks what the router and the gateway would refuse, with a message
/// naming the option at fault; returns the base domain.
fn check(o: &SeedOptions) -> Result<Hostname, SeedError> {
    if o.upstreams.is_empty() {
        return Err(SeedError::NoUpstreams);
    }
    let mut seen = HashSet::new();
    if let Some(&dup) = o.upstreams.iter().find(|a| !seen.insert(**a)) {
        return Err(SeedError::DuplicateUpstream(dup));
    }
    if !(1..=MAX_SHARDS).contains(&o.shards) {
        return Err(SeedError::Shards(o.shards));
    }
    if !(1..=1024).contains(&o.threads) {
        return Err(SeedError::Threads(o.threads));
    }
    for (field, value) in [("rate_per_sec", o.rate_per_sec), ("burst", o.burst)] {
        if value == 0 {
            return Err(SeedError::ZeroLimit { field });
        }
    }
    let mut listeners = vec![("HTTP", o.http_listen), ("admin", o.admin_listen)];
    if o.certificates {
        listeners.insert(1, ("HTTPS", o.https_listen));
    }
    for (i, &(first, addr)) in listeners.iter().enumerate() {
        if let Some(&(second, _)) = listeners[i + 1..].iter().find(|(_, a)| *a == addr) {
            return Err(SeedError::SameListenAddress {
                first,
                second,
                addr,
            });
        }
    }
    let invalid = |what, value: &str, reason: String| SeedError::InvalidName {
        what,
        value: value.to_owned(),
        reason,
    };
    RegionName::new(&o.region).map_err(|e| invalid("region", &o.region, e.to_string()))?;

    let p = &o.population;
    let base = hostname("base domain", &p.base_domain)?;
    if p.count > 0 {
        // Names grow with the index: the first and the last tenant bound them all.
        for i in [0, p.count - 1] {
            let slug = p.slug(i);
            Slug::new(&slug).map_err(|e| {
                invalid(
                    "slug (slug prefix then the tenant number)",
                    &slug,
                    e.to_string(),
                )
            })?;
            let id = p.tenant_id(i);
            TenantId::new(&id).map_err(|e| invalid("tenant id", &id, e.to_string()))?;
            hostname("tenant subdomain", &p.subdomain(i))?;
        }
    }
    let domains = p.custom_domains.min(p.count);
    if domains > 0 {
        let suffix = hostname("custom domain suffix", &p.domain_suffix)?;
        if suffix.is_within(&base) {
            return Err(SeedError::DomainsInBaseDomain {
                suffix: p.domain_suffix.clone(),
                base: p.base_domain.clone(),
            });
        }
        for i in [0, domains - 1] {
            let domain = p.custom_domain(i).unwrap_or_default();
            if hostname("custom domain", &domain)?.is_within(&base) {
                return Err(SeedError::DomainsInBaseDomain {
                    suffix: p.domain_suffix.clone(),
                    base: p.base_domain.clone(),
                });
            }
        }
    }
    Ok(base)
}

/// `name` as a hostname, which must already be in normal form (lowercase,
/// punycode, no trailing dot): certificates and file names use it verbatim.
fn hostname(what: &'static str, name: &str) -> Result<Hostname, SeedError> {
    let invalid = |reason: String| SeedError::InvalidName {
        what,
        value: name.to_owned(),
        reason,
    };
    let host = Hostname::parse(name).map_err(|e| invalid(e.to_string()))?;
    if host.as_str() != name {
        return Err(invalid(format!("write it in normal form: {host}")));
    }
    Ok(host)
}

/// Validates `snapshot` as the gateway does: the router's checks with the
/// base domain, and the gateway's region present.
fn validate(snapshot: &Snapshot, build: &BuildOptions, region: &str) -> Result<(), SeedError> {
    let table = RoutingTable::build(snapshot, build).map_err(SeedError::Refused)?;
    if table.region(region).is_none() {
        let mut problems = Problems::default();
        problems.push(
            "regions",
            format!("the gateway's region {region:?} is missing"),
        );
        return Err(SeedError::Refused(problems));
    }
    Ok(())
}

/// Creates `out`, or checks that it is empty or a previous seed's.
fn prepare_out(out: &Path) -> Result<(), SeedError> {
    match std::fs::metadata(out) {
        Ok(meta) if !meta.is_dir() => return Err(SeedError::NotADirectory(out.to_owned())),
        Ok(_) => {
            let mut entries = std::fs::read_dir(out)
                .map_err(|source| SeedError::io("read the directory", out, source))?;
            if entries.next().is_some() {
                let not_seed_output = |reason| SeedError::NotSeedOutput {
                    out: out.to_owned(),
                    reason,
                };
                if !out.join(MANIFEST).is_file() {
                    return Err(not_seed_output(format!("it holds no {MANIFEST}")));
                }
                match seeded_population(out) {
                    Ok(_) => {}
                    Err(e @ SeedError::Manifest { .. }) => {
                        return Err(not_seed_output(e.to_string()));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SeedError::io("inspect", out, source)),
    }
    std::fs::create_dir_all(out.join(CERT_DIR))
        .map_err(|source| SeedError::io("create the directory", &out.join(CERT_DIR), source))
}

/// Removes from `out/certs` the pairs (and leftover temporary files) of
/// domains not in `hosts`, or all of them without `certificates`; how many.
fn remove_stale_certs(out: &Path, certificates: bool, hosts: &[String]) -> Result<u32, SeedError> {
    let dir = out.join(CERT_DIR);
    let keep: HashSet<&str> = if certificates {
        hosts.iter().map(String::as_str).collect()
    } else {
        HashSet::new()
    };
    let entries = std::fs::read_dir(&dir)
        .map_err(|source| SeedError::io("read the directory", &dir, source))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|source| SeedError::io("read the directory", &dir, source))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let name_ = name.strip_suffix(files::TMP_SUFFIX).unwrap_or(name);
        let host = name_
            .strip_suffix(".crt")
            .or_else(|| name_.strip_suffix(".key"));
        if let Some(host) = host
            && (name_.len() != name.len() || !keep.contains(host))
        {
            removed += u32::from(files::remove(&entry.path())?);
        }
    }
    Ok(removed)
}

/// Issues (or reuses) the CA, the default certificate and one pair per
/// custom domain.
fn write_certificates(o: &SeedOptions, hosts: &[String]) -> Result<SeededTls, SeedError> {
    let started = Instant::now();
    let out = &o.out;
    let (ca_path, ca_key) = (out.join(CA_CERT), out.join(CA_KEY));
    let base = &o.population.base_domain;
    let default_names = [format!("*.{base}"), base.clone()];
    let kept = std::fs::read_to_string(&ca_path)
        .ok()
        .zip(std::fs::read_to_string(&ca_key).ok())
        .and_then(|(cert, key)| certs::Authority::kept(cert, &key).ok());
    // The default certificate doubles as the check that a kept CA still
    // vouches for what it signs.
    let reused = match kept {
        Some(ca) => {
            let default = ca.issue_pair(&default_names)?;
            ca.vouches_for(&default.0, base).then_some((ca, default))
        }
        None => None,
    };
    let ca_reused = reused.is_some();
    let (ca, (default_pem, default_key_pem)) = match reused {
        Some(kept) => kept,
        None => {
            let ca = certs::Authority::new().map_err(|source| SeedError::Certificate {
                names: "the CA".to_owned(),
                source,
            })?;
            let default = ca.issue_pair(&default_names)?;
            files::write(&ca_key, ca.key_pem().as_bytes(), Privacy::Secret)?;
            files::write(&ca_path, ca.pem().as_bytes(), Privacy::Public)?;
            (ca, default)
        }
    };
    let (default_cert, default_key) = (out.join(DEFAULT_CERT), out.join(DEFAULT_KEY));
    certs::write_pair(&default_pem, &default_key_pem, &default_cert, &default_key)?;
    let cert_dir = out.join(CERT_DIR);
    certs::issue_all(&ca, &cert_dir, hosts)?;
    Ok(SeededTls {
        ca: ca_path,
        ca_key,
        ca_reused,
        default_cert,
        default_key,
        cert_dir,
        certificates: u32::try_from(hosts.len()).unwrap_or(u32::MAX),
        elapsed: started.elapsed(),
    })
}

/// The manifest's text: the seed's settings and its [`Population`] (read
/// back by [`seeded_population`]).
fn manifest_text(o: &SeedOptions, version: u64) -> String {
    let p = &o.population;
    let q = snapshot::quoted;
    let upstreams: Vec<String> = o.upstreams.iter().map(|a| q(&a.to_string())).collect();
    format!(
        "# Written by `loadtest seed`: marks this directory as its output, so a new\n\
         # seed may replace the files it wrote, and records the tenants it seeded.\n\
         generator = {}\n\
         version = {version}\n\
         region = {}\n\
         shards = {}\n\
         upstreams = [{}]\n\
         certificates = {}\n\n\
         [population]\n\
         count = {}\n\
         slug_prefix = {}\n\
         base_domain = {}\n\
         custom_domains = {}\n\
         domain_suffix = {}\n",
        q(GENERATOR),
        q(&o.region),
        o.shards,
        upstreams.join(", "),
        o.certificates,
        p.count,
        q(&p.slug_prefix),
        q(&p.base_domain),
        p.custom_domains,
        q(&p.domain_suffix),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use router::{RouteRequest, TenantStatus};
    use rustls::RootCertStore;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::sign::CertifiedKey;

    use super::*;

    fn upstreams() -> Vec<SocketAddr> {
        vec![
            "127.0.0.1:9101".parse().unwrap(),
            "[::1]:9102".parse().unwrap(),
        ]
    }

    /// Options seeding `count` tenants, `domains` of them with a custom domain.
    fn options(out: &Path, count: u32, domains: u32) -> SeedOptions {
        let population = Population {
            custom_domains: domains,
            ..Population::new(count)
        };
        SeedOptions::new(population, out.to_owned(), upstreams())
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Checks that `cert`/`key` are a matching pair, chaining to `ca` and
    /// valid for `host`.
    fn verify(ca: &Path, cert: &Path, key: &Path, host: &str) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(ca).unwrap())
            .unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let signing = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::from_pem_file(key).unwrap())
            .unwrap();
        CertifiedKey::new(chain.clone(), signing).keys_match()?;
        let name = ServerName::try_from(host.to_owned()).unwrap();
        verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())?;
        Ok(())
    }

    fn table(outcome: &SeedOutcome, base: &str) -> RoutingTable {
        let snapshot = Snapshot::from_path(&outcome.snapshot).unwrap();
        let options = BuildOptions {
            base_domains: vec![Hostname::parse(base).unwrap()],
        };
        RoutingTable::build(&snapshot, &options).unwrap()
    }

    #[test]
    fn seeded_snapshot_routes_subdomains_and_custom_domains_to_their_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seed");
        let outcome = seed(&options(&out, 50, 10)).unwrap();
        assert_eq!((outcome.tenants, outcome.custom_domains), (50, 10));

        let table = table(&outcome, "app.example.test");
        assert_eq!(table.tenant_count(), 50);
        assert_eq!(table.domain_count(), 10);
        let region = table.region("local").unwrap();
        for (host, tenant) in [
            ("load-3.app.example.test", "tenant-3"),
            ("load-2.customers.example.test", "tenant-2"),
            ("LOAD-49.app.example.test:443", "tenant-49"),
        ] {
            let req = RouteRequest {
                host: Some(host),
                method: "GET",
                trusted_tenant: None,
            };
            let decision = table.resolve(&req, region).unwrap();
            assert_eq!(decision.tenant.id(), tenant, "{host}");
            assert_eq!(decision.tenant.status(), TenantStatus::Active);
            let pool: Vec<&str> = decision.pool.backends.iter().map(|b| &*b.addr).collect();
            assert_eq!(pool, ["127.0.0.1:9101", "[::1]:9102"], "{host}");
        }
        let unknown = RouteRequest {
            host: Some("load-10.customers.example.test"),
            method: "GET",
            trusted_tenant: None,
        };
        assert!(table.resolve(&unknown, region).is_err());
    }

    #[test]
    fn tenants_are_spread_over_every_shard_by_the_placement_ring() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = seed(&options(dir.path(), 400, 0)).unwrap();
        let ids: Vec<&str> = outcome
            .tenants_per_shard
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(ids, ["shard-1", "shard-2", "shard-3", "shard-4"]);
        let total: u32 = outcome.tenants_per_shard.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 400);
        for (id, n) in &outcome.tenants_per_shard {
            assert!((50..=150).contains(n), "{id} has {n} of 400 tenants");
        }
        // The same tenant lands on the same shard in every seed.
        let again = tempfile::tempdir().unwrap();
        let second = seed(&options(again.path(), 400, 0)).unwrap();
        assert_eq!(second.tenants_per_shard, outcome.tenants_per_shard);
    }

    #[test]
    fn every_custom_domain_has_a_pair_for_it_chaining_to_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = seed(&options(dir.path(), 50, 10)).unwrap();
        let tls = outcome.tls.clone().unwrap();
        assert_eq!(tls.certificates, 10);
        let population = &options(dir.path(), 50, 10).population;
        for i in 0..10 {
            let host = population.custom_domain(i).unwrap();
            let cert = tls.cert_dir.join(format!("{host}.crt"));
            let key = tls.cert_dir.join(format!("{host}.key"));
            verify(&tls.ca, &cert, &key, &host).unwrap();
            let other = population.custom_domain((i + 1) % 10).unwrap();
            assert!(
                verify(&tls.ca, &cert, &key, &other).is_err(),
                "{host} vs {other}"
            );
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&key).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "{host}.key");
        }
        let files = std::fs::read_dir(&tls.cert_dir).unwrap().count();
        assert_eq!(files, 20, "only the pairs, no temporary files");
        let default = |host: &str| verify(&tls.ca, &tls.default_cert, &tls.default_key, host);
        default("load-3.app.example.test").unwrap();
        default("app.example.test").unwrap();
        assert!(default("a.load-3.app.example.test").is_err());
        assert!(default("load-0.customers.example.test").is_err());
    }

    #[test]
    fn gateway_config_points_at_the_seeded_files() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = seed(&options(dir.path(), 5, 1)).unwrap();
        let text = std::fs::read_to_string(&outcome.gateway_config).unwrap();
        let config: toml::Table = toml::from_str(&text).unwrap();
        let get = |section: &str, key: &str| config[section][key].clone();
        assert_eq!(get("gateway", "region").as_str(), Some("local"));
        assert_eq!(
            get("gateway", "https_listen").as_str(),
            Some("127.0.0.1:8443")
        );
        assert_eq!(
            get("gateway", "base_domains").as_array().unwrap()[0].as_str(),
            Some("app.example.test")
        );
        assert_eq!(get("source", "kind").as_str(), Some("file"));
        assert!(config.get("redis").is_none());
        for (section, key) in [
            ("source", "path"),
            ("tls", "default_cert"),
            ("tls", "default_key"),
            ("tls", "cert_dir"),
        ] {
            let path = dir.path().join(get(section, key).as_str().unwrap());
            assert!(path.exists(), "{section}.{key}: {}", path.display());
        }
        assert_eq!(
            seeded_population(dir.path()).unwrap(),
            options(dir.path(), 5, 1).population
        );

        let plain = tempfile::tempdir().unwrap();
        let outcome = seed(&SeedOptions {
            certificates: false,
            ..options(plain.path(), 5, 1)
        })
        .unwrap();
        assert!(outcome.tls.is_none());
        let config: toml::Table =
            toml::from_str(&std::fs::read_to_string(&outcome.gateway_config).unwrap()).unwrap();
        assert!(config.get("tls").is_none());
        assert!(config["gateway"].get("https_listen").is_none());
        assert!(!plain.path().join(CA_CERT).exists());
    }

    #[test]
    fn reseeding_replaces_its_own_files_drops_stale_pairs_and_keeps_others() {
        let dir = tempfile::tempdir().unwrap();
        seed(&options(dir.path(), 20, 5)).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        std::fs::write(dir.path().join(CERT_DIR).join("README"), "mine").unwrap();

        let outcome = seed(&options(dir.path(), 20, 3)).unwrap();
        assert_eq!(outcome.removed_files, 4);
        let certs = dir.path().join(CERT_DIR);
        assert!(certs.join("load-2.customers.example.test.crt").exists());
        assert!(!certs.join("load-3.customers.example.test.crt").exists());
        assert!(!certs.join("load-4.customers.example.test.key").exists());
        assert!(certs.join("README").exists());
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(table(&outcome, "app.example.test").domain_count(), 3);

        let outcome = seed(&SeedOptions {
            certificates: false,
            ..options(dir.path(), 20, 3)
        })
        .unwrap();
        assert_eq!(outcome.removed_files, 6 + 4);
        assert!(!dir.path().join(DEFAULT_KEY).exists());
    }

    #[test]
    fn reseeding_keeps_the_ca_so_earlier_certificates_and_trust_stay_valid() {
        let dir = tempfile::tempdir().unwrap();
        let first = seed(&options(dir.path(), 5, 2)).unwrap().tls.unwrap();
        assert!(!first.ca_reused);
        let ca_pem = std::fs::read(&first.ca).unwrap();
        let saved = dir.path().join("first-default");
        std::fs::create_dir(&saved).unwrap();
        for file in [DEFAULT_CERT, DEFAULT_KEY] {
            std::fs::copy(dir.path().join(file), saved.join(file)).unwrap();
        }

        let second = seed(&options(dir.path(), 5, 2)).unwrap().tls.unwrap();
        assert!(second.ca_reused);
        assert_eq!(std::fs::read(&second.ca).unwrap(), ca_pem);
        let (cert, key) = (saved.join(DEFAULT_CERT), saved.join(DEFAULT_KEY));
        verify(&second.ca, &cert, &key, "load-1.app.example.test").unwrap();
        let host = "load-1.customers.example.test";
        let pair = |ext: &str| second.cert_dir.join(format!("{host}.{ext}"));
        verify(&second.ca, &pair("crt"), &pair("key"), host).unwrap();

        // A CA whose key is not its certificate's is replaced.
        let other = tempfile::tempdir().unwrap();
        seed(&options(other.path(), 1, 0)).unwrap();
        std::fs::copy(other.path().join(CA_KEY), dir.path().join(CA_KEY)).unwrap();
        let third = seed(&options(dir.path(), 5, 2)).unwrap().tls.unwrap();
        assert!(!third.ca_reused);
        assert_ne!(std::fs::read(&third.ca).unwrap(), ca_pem);
        verify(
            &third.ca,
            &third.default_cert,
            &third.default_key,
            "app.example.test",
        )
        .unwrap();
        verify(&third.ca, &pair("crt"), &pair("key"), host).unwrap();
    }

    #[test]
    fn a_foreign_directory_or_a_file_is_never_written_into() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("thesis.tex"), "years of work").unwrap();
        let err = seed(&options(dir.path(), 5, 1)).unwrap_err();
        assert!(matches!(err, SeedError::NotSeedOutput { .. }), "{err}");
        assert!(err.to_string().contains("is not empty"), "{err}");
        assert!(err.to_string().contains("holds no seed.toml"), "{err}");
        assert_eq!(err.exit_code(), 64);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let file = dir.path().join("thesis.tex");
        let err = seed(&options(&file, 5, 1)).unwrap_err();
        assert!(matches!(err, SeedError::NotADirectory(_)), "{err}");
        assert_eq!(err.exit_code(), 64);
    }

    /// Every file under `dir` and its contents.
    fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(tree(&path));
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
        files.sort();
        files
    }

    #[test]
    fn a_seed_toml_someone_else_wrote_does_not_make_a_directory_seed_output() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join(MANIFEST);
        let certs = dir.path().join(CERT_DIR);
        std::fs::create_dir(&certs).unwrap();
        std::fs::write(certs.join("prod.key"), "production key").unwrap();
        std::fs::write(certs.join("prod.crt"), "production certificate").unwrap();
        std::fs::write(dir.path().join(CA_KEY), "their CA key").unwrap();

        // Not a seed manifest at all; a seed manifest without the marker; a
        // seed manifest with another generator.
        let ours = manifest_text(&options(dir.path(), 5, 1), 1);
        let unmarked: String = ours
            .lines()
            .filter(|line| !line.starts_with("generator"))
            .map(|line| format!("{line}\n"))
            .collect();
        let theirs = ours.replace("\"loadtest seed\"", "\"their tool\"");
        for (text, reason) in [
            (
                "name = \"my project seed config\"\n".to_owned(),
                "missing field `population`",
            ),
            (unmarked, "it has no generator = \"loadtest seed\""),
            (theirs, "its generator is \"their tool\""),
        ] {
            std::fs::write(&manifest, &text).unwrap();
            let before = tree(dir.path());
            let err = seed(&options(dir.path(), 5, 1)).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, SeedError::NotSeedOutput { .. }), "{err}");
            assert!(message.contains(&manifest.display().to_string()), "{err}");
            assert!(message.contains(reason), "{err} (want {reason})");
            assert!(message.contains("nothing was written"), "{err}");
            assert_eq!(err.exit_code(), 64);
            assert_eq!(tree(dir.path()), before, "{text}");
            assert!(matches!(
                seeded_population(dir.path()),
                Err(SeedError::Manifest { .. })
            ));
        }

        // The marker the seed writes is what makes a directory its own.
        std::fs::write(&manifest, &ours).unwrap();
        assert!(ours.contains("generator = \"loadtest seed\"\n"));
        let outcome = seed(&options(dir.path(), 5, 1)).unwrap();
        assert_eq!(
            outcome.removed_files, 2,
            "prod.crt and prod.key, as stale pairs"
        );
    }

    #[test]
    fn a_leftover_temporary_key_file_does_not_widen_the_key_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        // A seed without certificates, so the next one makes a new CA.
        seed(&SeedOptions {
            certificates: false,
            ..options(dir.path(), 5, 1)
        })
        .unwrap();
        let certs = dir.path().join(CERT_DIR);
        let leftovers = [
            dir.path().join("ca.key.tmp"),
            dir.path().join("default.key.tmp"),
            certs.join("load-0.customers.example.test.key.tmp"),
        ];
        for tmp in &leftovers {
            std::fs::write(tmp, "left behind").unwrap();
            std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
            assert_eq!(mode(tmp), 0o666);
        }

        let tls = seed(&options(dir.path(), 5, 1)).unwrap().tls.unwrap();
        assert!(!tls.ca_reused);
        for key in [
            &tls.ca_key,
            &tls.default_key,
            &certs.join("load-0.customers.example.test.key"),
        ] {
            assert_eq!(mode(key), 0o600, "{}", key.display());
        }
        for tmp in &leftovers {
            assert!(!tmp.exists(), "{}", tmp.display());
        }
    }

    #[test]
    fn exit_codes_tell_bad_arguments_from_io_failures_from_bugs() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let usage = [
            SeedError::NoUpstreams,
            SeedError::Shards(0),
            SeedError::ZeroLimit { field: "burst" },
            SeedError::InvalidName {
                what: "region",
                value: "EU".to_owned(),
                reason: "uppercase".to_owned(),
            },
            SeedError::NotADirectory(PathBuf::from("f")),
            SeedError::NotSeedOutput {
                out: PathBuf::from("d"),
                reason: "it holds no seed.toml".to_owned(),
            },
        ];
        for err in &usage {
            assert_eq!(err.exit_code(), 64, "{err}");
        }
        let cant_create = [
            SeedError::io("write", Path::new("ca.key"), io()),
            SeedError::ReadBack {
                path: PathBuf::from(SNAPSHOT),
                source: SnapshotError::Io {
                    path: PathBuf::from(SNAPSHOT),
                    source: io(),
                },
            },
        ];
        for err in &cant_create {
            assert_eq!(err.exit_code(), 73, "{err}");
        }
        let internal = [
            SeedError::RoundTrip(PathBuf::from(SNAPSHOT)),
            SeedError::Refused(Problems::default()),
            SeedError::Certificate {
                names: "the CA".to_owned(),
                source: rcgen::Error::CouldNotParseCertificate,
            },
        ];
        for err in &internal {
            assert_eq!(err.exit_code(), 1, "{err}");
        }
        // What seed() itself returns for bad options.
        let dir = tempfile::tempdir().unwrap();
        let err = seed(&SeedOptions {
            upstreams: vec![upstreams()[0]; 2],
            ..options(dir.path(), 5, 1)
        })
        .unwrap_err();
        assert_eq!(err.exit_code(), 64, "{err}");
    }

    #[test]
    fn bad_options_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("never");
        let base = options(&out, 10, 2);
        let cases: Vec<(SeedOptions, &str)> = vec![
            (
                SeedOptions {
                    upstreams: Vec::new(),
                    ..base.clone()
                },
                "no upstream",
            ),
            (
                SeedOptions {
                    upstreams: vec![upstreams()[0]; 2],
                    ..base.clone()
                },
                "upstream 127.0.0.1:9101 is given twice",
            ),
            (
                SeedOptions {
                    shards: 0,
                    ..base.clone()
                },
                "0 shards",
            ),
            (
                SeedOptions {
                    burst: 0,
                    ..base.clone()
                },
                "burst is 0",
            ),
            (
                SeedOptions {
                    admin_listen: base.https_listen,
                    ..base.clone()
                },
                "HTTPS and admin listeners are both on 127.0.0.1:8443",
            ),
            (
                SeedOptions {
                    region: "EU".to_owned(),
                    ..base.clone()
                },
                "invalid region \"EU\"",
            ),
            (
                SeedOptions {
                    population: Population {
                        slug_prefix: "Load_".to_owned(),
                        ..base.population.clone()
                    },
                    ..base.clone()
                },
                "invalid slug (slug prefix then the tenant number) \"Load_0\"",
            ),
            (
                SeedOptions {
                    population: Population {
                        base_domain: "App.Example.test".to_owned(),
                        ..base.population.clone()
                    },
                    ..base.clone()
                },
                "write it in normal form: app.example.test",
            ),
            (
                SeedOptions {
                    population: Population {
                        domain_suffix: "eu.app.example.test".to_owned(),
                        ..base.population.clone()
                    },
                    ..base.clone()
                },
                "within the base domain app.example.test",
            ),
        ];
        for (options, expected) in cases {
            let err = seed(&options).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{err} (want {expected})"
            );
            assert_eq!(err.exit_code(), 64, "{err}");
        }
        assert!(!out.exists());
        // Without certificates the HTTPS address is not used.
        let plain = SeedOptions {
            certificates: false,
            admin_listen: base.https_listen,
            ..base
        };
        seed(&plain).unwrap();
    }
}
