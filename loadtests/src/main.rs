//! `loadtest`: the Switchyard load-test harness's binary.
//!
//! A shim: flags are parsed here and the work is done by the library ([`loadtest`]).
//!
//! Exit status:
//! - 0: success (every SLO held; an upstream shut down by SIGTERM or Ctrl-C);
//! - 1: an SLO failed (`run`, `compare`), the upstream could not start, or `seed`
//!   failed for a reason of its own;
//! - 64: bad flags, target URL or `seed` output directory (clap's own 2 is mapped,
//!   as the spec asks);
//! - 73: the report or the seed's files could not be written;
//! - 78: the scenario (or the CA file) is unreadable or invalid.
//!
//! ```text
//! cargo run --release -p loadtest -- upstream --listen 127.0.0.1:8081 --name shard-a
//! cargo run --release -p loadtest -- run --scenario loadtests/scenarios/steady.toml \
//!     --target http://127.0.0.1:8080 --report target/loadtest/steady
//! ```

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use loadtest::population::Population;
use loadtest::report::{self, Report};
use loadtest::run::{self, RunError, RunOptions, Target};
use loadtest::scenario::Scenario;
use loadtest::seed::{self, SeedOptions};
use loadtest::upstream::{self, Config, UpstreamName};

/// Exit status for bad flags (sysexits' `EX_USAGE`).
const EX_USAGE: u8 = 64;
/// Exit status when the report cannot be written (`EX_CANTCREAT`).
const EX_CANTCREAT: u8 = 73;
/// Exit status for an unusable scenario (`EX_CONFIG`).
const EX_CONFIG: u8 = 78;
/// Exit status when an SLO failed.
const SLO_FAILED: u8 = 1;

/// The most worker threads `--threads` accepts.
const MAX_THREADS: u16 = 1024;

/// The longest shutdown grace `--grace-secs` accepts, in seconds.
const MAX_GRACE_SECS: u64 = 300;

/// The Switchyard load-test harness: open-loop multi-tenant load, latency reports,
/// SLO verdicts and side-by-side runs.
#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario against a target and report it
    ///
    /// Sends the scenario's load open-loop (every request at its scheduled time,
    /// whatever the target does; latency counts from that time), shows progress on a
    /// terminal, prints a summary and, with --report, writes report.json and
    /// report.html there. Exits 1 when an SLO of the scenario fails.
    Run(RunArgs),

    /// Run a scenario against several targets in turn and report them side by side
    ///
    /// Every target gets the same requests at the same times (the scenario's seed).
    /// Prints a table with each target's figures and their ratio to the first
    /// target's; with --report, writes compare.json, index.html and each target's
    /// own report. Exits 1 when an SLO fails for any target.
    Compare(CompareArgs),

    /// Write a routing snapshot, a CA, certificates and a gateway config for the
    /// tenants a scenario addresses (scale tests of the gateway)
    ///
    /// Tenant i is `{slug_prefix}{i}` at `{slug}.{base_domain}` and, for the first
    /// --domains tenants, at `{slug}.{domain_suffix}`: exactly the names a scenario
    /// with the same [tenants] sends requests to. With --scenario, the counts and
    /// names come from its [tenants] section. Writes seed.toml, snapshot.toml,
    /// gateway.toml, ca.pem (trust it with --ca), default.crt/key (*.base_domain)
    /// and certs/<domain>.crt/key into --out; then `gateway --config OUT/gateway.toml`.
    /// A directory of an earlier seed is updated (its CA kept); any other non-empty
    /// one is refused.
    Seed(SeedArgs),

    /// Run the fast demo/test upstream, which echoes what it received as JSON
    ///
    /// An HTTP/1.1 and h2c (prior knowledge) server that answers every request with a JSON
    /// echo of what it received: tenant headers, request id, x-forwarded-*. It mirrors
    /// x-tenant-id, -slug, -target, -region and x-request-id back as x-seen-tenant-id,
    /// x-seen-tenant-slug, x-seen-tenant-target, x-seen-tenant-region and x-seen-request-id,
    /// and names itself in x-upstream.
    ///
    /// Once it accepts connections it prints `listening on IP:PORT` on stdout. On SIGTERM
    /// or Ctrl-C it stops accepting, lets requests in flight finish within the grace, and
    /// exits 0.
    #[command(after_help = upstream::QUERY_HELP)]
    Upstream(UpstreamArgs),
}

/// What `run` and `compare` share.
#[derive(Debug, Args)]
struct LoadArgs {
    /// The scenario (TOML; see loadtests/scenarios/)
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,

    /// Directory for the report (created; files in it are replaced)
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,

    /// CA certificates (PEM) to trust on https targets, instead of the scenario's
    /// tls.ca or the system's roots
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Worker threads of the load generator [default: one per core]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_THREADS)),
    )]
    threads: Option<u16>,

    /// Measure for this many seconds instead of the scenario's duration_secs
    /// (checked, like the next two, as the scenario's own values are)
    #[arg(long, value_name = "SECS")]
    duration_secs: Option<f64>,

    /// Warm up for this many seconds instead of the scenario's warmup_secs
    #[arg(long, value_name = "SECS")]
    warmup_secs: Option<f64>,

    /// Multiply every rate of the scenario by this factor (e.g. 0.1 for a smoke run)
    #[arg(long, value_name = "FACTOR")]
    rate_scale: Option<f64>,

    /// Allow targets and resolve addresses that are not loopback
    #[arg(long)]
    allow_remote: bool,

    /// Do not draw the progress bar (it is only drawn on a terminal anyway)
    #[arg(long)]
    quiet: bool,
}

/// Flags of `loadtest run`.
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    load: LoadArgs,

    /// Where to send the load: http://HOST:PORT or https://HOST:PORT (request hosts
    /// and SNI come from the scenario's tenants)
    #[arg(long, value_name = "URL")]
    target: String,
}

/// Flags of `loadtest compare`.
#[derive(Debug, Args)]
struct CompareArgs {
    #[command(flatten)]
    load: LoadArgs,

    /// A target as NAME=URL (NAME: letters, digits, '-' and '_'); give two or more,
    /// the first is the baseline the others are compared with
    #[arg(long = "target", value_name = "NAME=URL", required = true, num_args = 1, value_parser = named_target)]
    targets: Vec<(String, String)>,

    /// Seconds to pause between targets, so one run's tail does not overlap the next
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = non_negative_secs)]
    pause_secs: f64,
}

/// Seconds from 0 to a day.
fn non_negative_secs(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("\"{text}\" is not a number"))?;
    let max = loadtest::scenario::MAX_RUN_SECS;
    if !(0.0..=max).contains(&secs) {
        return Err(format!("{secs} is not a number of seconds from 0 to {max}"));
    }
    Ok(secs)
}

fn named_target(text: &str) -> Result<(String, String), String> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| format!("\"{text}\" is not NAME=URL"))?;
    let valid = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!(
            "target name \"{name}\": 1 to 40 letters, digits, '-' or '_'"
        ));
    }
    Ok((name.to_owned(), url.to_owned()))
}

/// Flags of `loadtest seed`.
#[derive(Debug, Args)]
struct SeedArgs {
    /// Output directory (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// App server of every shard's pool, as IP:PORT (repeat for several; at least one)
    #[arg(long = "upstream", value_name = "ADDR", required = true)]
    upstreams: Vec<SocketAddr>,

    /// Take the tenants (count, custom domains, names) from this scenario's [tenants]
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tenants", "domains"])]
    scenario: Option<PathBuf>,

    /// Number of tenants (without --scenario)
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(loadtest::scenario::MAX_TENANTS)))]
    tenants: u32,

    /// How many of them (the largest first) have a custom domain (without --scenario)
    #[arg(long, value_name = "N", default_value_t = 0)]
    domains: u32,

    /// Shards to spread the tenants over (by the router's consistent-hash ring)
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(loadtest::seed::MAX_SHARDS)))]
    shards: u32,

    /// The gateway's and every shard's region
    #[arg(long, value_name = "NAME", default_value = "local")]
    region: String,

    /// Each tenant's rate limit, requests per second
    #[arg(long, value_name = "N", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    rate_per_sec: u32,

    /// Each tenant's burst above the rate
    #[arg(long, value_name = "N", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    burst: u32,

    /// The plan's default cache TTL in seconds (0: no response cache)
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    cache_ttl_secs: u32,

    /// Write no CA or certificates: the gateway serves plain HTTP only
    #[arg(long)]
    no_certificates: bool,

    /// The gateway's HTTP listener
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,

    /// The gateway's HTTPS listener
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    https_listen: SocketAddr,

    /// The gateway's admin listener (metrics, /readyz, /debug/route)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,

    /// The gateway's worker threads
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_THREADS)))]
    gateway_threads: u16,

    /// Turn off the gateway's JSON access log
    #[arg(long)]
    no_access_log: bool,
}

/// Flags of `loadtest upstream`.
#[derive(Debug, Args)]
struct UpstreamArgs {
    /// Address to listen on, as IP:PORT (port 0 picks a free port)
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,

    /// Name echoed in every body and sent as x-upstream (visible ASCII, up to 100 bytes)
    #[arg(long, default_value = "upstream")]
    name: UpstreamName,

    /// Worker threads (1 to 1024). The default of 1 leaves the other cores to the gateway
    /// and the load generator it shares the machine with; raise it when the upstream is
    /// the bottleneck
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_THREADS)),
    )]
    threads: u16,

    /// Seconds requests in flight get to finish after SIGTERM or Ctrl-C (0 to 300)
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = upstream::DEFAULT_GRACE.as_secs(),
        value_parser = clap::value_parser!(u64).range(0..=MAX_GRACE_SECS),
    )]
    grace_secs: u64,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `--help` and `--version` arrive here too, with clap's exit code 0.
            let code = if err.exit_code() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EX_USAGE)
            };
            // Nothing better to do if the terminal is gone.
            let _ = err.print();
            return code;
        }
    };
    match cli.command {
        Command::Run(args) => run_one(args),
        Command::Compare(args) => run_compare(args),
        Command::Seed(args) => run_seed(args),
        Command::Upstream(args) => run_upstream(args),
    }
}

/// Loads the scenario with the flags' overrides, or the exit status to leave with.
fn scenario(load: &LoadArgs) -> Result<Scenario, ExitCode> {
    let scenario = Scenario::load(&load.scenario).map_err(|err| {
        eprintln!("loadtest: {err}");
        ExitCode::from(EX_CONFIG)
    })?;
    scenario
        .with_overrides(load.duration_secs, load.warmup_secs, load.rate_scale)
        .map_err(|err| {
            eprintln!("loadtest: {err}");
            ExitCode::from(EX_USAGE)
        })
}

fn options(load: &LoadArgs) -> RunOptions {
    RunOptions {
        threads: load.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            usize::from,
        ),
        ca: load.ca.clone(),
        allow_remote: load.allow_remote,
        progress: !load.quiet,
    }
}

/// The exit status for a run that could not start.
fn failed(err: &RunError) -> ExitCode {
    eprintln!("loadtest: {err}");
    ExitCode::from(match err {
        RunError::Target { .. } => EX_USAGE,
        RunError::Tls(_) => EX_CONFIG,
        RunError::Runtime(_) => 1,
    })
}

/// Writes a report, or says why not.
fn written(dir: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<(), ExitCode> {
    write(dir).map_err(|err| {
        eprintln!(
            "loadtest: cannot write the report to {}: {err}",
            dir.display()
        );
        ExitCode::from(EX_CANTCREAT)
    })?;
    eprintln!("loadtest: report written to {}", dir.display());
    Ok(())
}

/// `loadtest run`.
fn run_one(args: RunArgs) -> ExitCode {
    let scenario = match scenario(&args.load) {
        Ok(scenario) => scenario,
        Err(code) => return code,
    };
    let target = match Target::parse("target", &args.target) {
        Ok(target) => target,
        Err(err) => return failed(&err),
    };
    let report = match run::run(&scenario, &target, &options(&args.load)) {
        Ok(report) => report,
        Err(err) => return failed(&err),
    };
    print!("{}", report::terminal::summary(&report));
    if let Some(dir) = &args.load.report
        && let Err(code) = written(dir, |dir| report::write(dir, &report))
    {
        return code;
    }
    verdict(std::slice::from_ref(&report))
}

/// `loadtest compare`.
fn run_compare(args: CompareArgs) -> ExitCode {
    let scenario = match scenario(&args.load) {
        Ok(scenario) => scenario,
        Err(code) => return code,
    };
    if args.targets.len() < 2 {
        eprintln!("loadtest: compare needs two targets or more (--target NAME=URL)");
        return ExitCode::from(EX_USAGE);
    }
    let mut targets = Vec::new();
    for (name, url) in &args.targets {
        if targets.iter().any(|t: &Target| &t.name == name) {
            eprintln!("loadtest: target name {name} is given twice");
            return ExitCode::from(EX_USAGE);
        }
        match Target::parse(name, url) {
            Ok(target) => targets.push(target),
            Err(err) => return failed(&err),
        }
    }
    let options = options(&args.load);
    // Every target's address and TLS settings are checked before the first run, so
    // a typo in the last one does not throw away the runs before it.
    for target in &targets {
        if let Err(err) = run::check(&scenario, target, &options) {
            return failed(&err);
        }
    }
    let mut reports = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_secs_f64(args.pause_secs));
        }
        eprintln!(
            "loadtest: running {} against {} ({})",
            scenario.name, target.name, target.url
        );
        match run::run(&scenario, target, &options) {
            Ok(report) => reports.push(report),
            Err(err) => return failed(&err),
        }
    }
    print!("{}", report::compare::table(&reports));
    if let Some(dir) = &args.load.report
        && let Err(code) = written(dir, |dir| report::write_compare(dir, &reports))
    {
        return code;
    }
    verdict(&reports)
}

/// `loadtest seed`.
fn run_seed(args: SeedArgs) -> ExitCode {
    let population = match &args.scenario {
        Some(path) => match Scenario::load(path) {
            Ok(scenario) => scenario.tenants.population,
            Err(err) => {
                eprintln!("loadtest: {err}");
                return ExitCode::from(EX_CONFIG);
            }
        },
        None => Population {
            custom_domains: args.domains,
            ..Population::new(args.tenants)
        },
    };
    if population.custom_domains > population.count {
        eprintln!(
            "loadtest: --domains {} is more than --tenants {}",
            population.custom_domains, population.count
        );
        return ExitCode::from(EX_USAGE);
    }
    let options = SeedOptions {
        shards: args.shards,
        region: args.region,
        rate_per_sec: args.rate_per_sec,
        burst: args.burst,
        cache_ttl_secs: args.cache_ttl_secs,
        certificates: !args.no_certificates,
        http_listen: args.http_listen,
        https_listen: args.https_listen,
        admin_listen: args.admin_listen,
        threads: usize::from(args.gateway_threads),
        access_log: !args.no_access_log,
        ..SeedOptions::new(population, args.out, args.upstreams)
    };
    match seed::seed(&options) {
        Ok(outcome) => {
            println!("{outcome}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("loadtest seed: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// 0 when every report's SLOs held, else 1.
fn verdict(reports: &[Report]) -> ExitCode {
    if reports.iter().all(|report| report.slo.passed) {
        ExitCode::SUCCESS
    } else {
        eprintln!("loadtest: an SLO failed");
        ExitCode::from(SLO_FAILED)
    }
}

/// `loadtest upstream`.
fn run_upstream(args: UpstreamArgs) -> ExitCode {
    let config = Config {
        grace: Duration::from_secs(args.grace_secs),
        ..Config::new(args.name)
    };
    let threads = NonZeroUsize::new(usize::from(args.threads)).unwrap_or(NonZeroUsize::MIN);
    match upstream::run(args.listen, threads, config) {
        Ok(served) => {
            eprintln!(
                "loadtest upstream: stopped after {} connections, {} requests cut off by the grace",
                served.connections, served.cut_off
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("loadtest upstream: {err}");
            ExitCode::FAILURE
        }
    }
}
