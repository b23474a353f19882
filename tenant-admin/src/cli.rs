//! `tenant-admin` flags and exit statuses: 0 success, 64 bad flags (or an
//! unknown target), 78 a missing or bad setting, 69 the database
//! unreachable, 75 another migration job still running, 1 a migration that
//! failed (on any target).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::app::{self, ServeConfig, ServeError};
use crate::db;
use crate::fleet::{self, FleetError, FleetOptions, JobOutcome, Outcome};
use crate::migrations::{self, Schema};
use crate::secrets::SecretsKey;

/// How long connecting to the catalog may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// sysexits(3) statuses.
const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(name = "tenant-admin", version, about = "Switchyard's control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the operator API and the routing feed.
    Serve(ServeArgs),
    /// Applies pending schema migrations.
    Migrate {
        #[command(subcommand)]
        schema: Migrate,
    },
}

#[derive(Debug, Subcommand)]
enum Migrate {
    /// tenant-admin's catalog.
    Catalog(Common),
    /// The tenant schema on every shard and dedicated cluster (or those
    /// named), resuming the last run that did not finish.
    Tenants {
        #[command(flatten)]
        common: Common,
        /// Only this target (repeatable); default: every target not offline.
        #[arg(long = "target", value_name = "ID")]
        targets: Vec<String>,
        /// Targets migrated at once.
        #[arg(long, default_value_t = fleet::DEFAULT_CONCURRENCY as u16,
              value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
        /// The key DSN passwords are sealed under (prefer the environment: a
        /// flag shows in `ps`).
        #[arg(long, env = "SECRETS_KEY", hide_env_values = true)]
        secrets_key: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, env = "ADMIN_LISTEN", default_value = "127.0.0.1:7070")]
    listen: std::net::SocketAddr,
    /// The catalog's PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Redis, for publishing cache purges to the gateways.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Apply pending catalog migrations before serving.
    #[arg(long)]
    migrate: bool,
    #[command(flatten)]
    domains: DomainArgs,
}

/// Custom domains: what may be claimed, how ownership is proven, where
/// certificates come from.
#[derive(Debug, clap::Args)]
struct DomainArgs {
    /// The platform's base domains, comma-separated: no tenant may claim
    /// one as a custom domain, nor a name below one.
    #[arg(
        long,
        env = "BASE_DOMAINS",
        value_delimiter = ',',
        value_name = "HOSTS"
    )]
    base_domains: Vec<String>,
    /// Names no tenant may claim, nor anything below them, comma-separated
    /// (besides the reserved localhost, local, internal, invalid, arpa, onion).
    #[arg(long, env = "DOMAIN_DENY", value_delimiter = ',', value_name = "HOSTS")]
    domain_deny: Vec<String>,
    /// DNS server (IP:port) asked for ownership proofs; default: the system's resolvers.
    #[arg(long, env = "DNS_RESOLVER", value_name = "ADDR")]
    dns_resolver: Option<std::net::SocketAddr>,
    /// Port the HTTP ownership proof is fetched from.
    #[arg(long, env = "CHALLENGE_HTTP_PORT", default_value_t = 80)]
    challenge_http_port: u16,
    /// Let the HTTP ownership proof reach loopback and private addresses
    /// (local stacks and tests only: it lets a tenant make tenant-admin
    /// fetch from inside the network).
    #[arg(long, env = "CHALLENGE_ALLOW_PRIVATE")]
    challenge_allow_private: bool,
    /// The ACME CA's directory URL (https://); without one, verified domains
    /// route but no certificate is ordered.
    #[arg(long, env = "ACME_DIRECTORY", value_name = "URL")]
    acme_directory: Option<String>,
    /// A PEM root certificate to trust for the ACME CA's API (a private CA).
    #[arg(long, env = "ACME_CA_ROOT", value_name = "FILE")]
    acme_ca_root: Option<std::path::PathBuf>,
    /// Contact e-mail registered with the ACME account.
    #[arg(long, env = "ACME_CONTACT", value_name = "EMAIL")]
    acme_contact: Option<String>,
    /// Certificate orders per rolling hour, all tenants together.
    #[arg(long, env = "ACME_ORDERS_PER_HOUR", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    acme_orders_per_hour: u32,
    /// Certificate orders per rolling hour for one tenant.
    #[arg(long, env = "ACME_TENANT_ORDERS_PER_HOUR", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    acme_tenant_orders_per_hour: u32,
    /// Certificate orders in flight at once.
    #[arg(long, env = "ACME_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=32))]
    acme_concurrency: u32,
    /// Seconds before the first retry of a failed order (doubling per
    /// failure, up to a day, with jitter).
    #[arg(long, env = "ACME_RETRY_AFTER_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    acme_retry_after_secs: u64,
}

/// Names no tenant may claim whatever the configuration.
const RESERVED: [&str; 6] = ["localhost", "local", "internal", "invalid", "arpa", "onion"];

/// Checks the domain flags; the settings, or a message naming the flag.
fn domain_settings(
    args: DomainArgs,
    key: Option<&SecretsKey>,
) -> Result<crate::domains::DomainSettings, String> {
    let hosts = |flag: &str, list: &[String]| -> Result<Vec<router::Hostname>, String> {
        list.iter()
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
            .map(|h| {
                router::Hostname::parse(h)
                    .map_err(|e| format!("{flag}: {h:?} is not a hostname: {e}"))
            })
            .collect()
    };
    let base_domains = hosts("--base-domains (BASE_DOMAINS)", &args.base_domains)?;
    let mut deny = hosts("--domain-deny (DOMAIN_DENY)", &args.domain_deny)?;
    for r in RESERVED {
        deny.push(router::Hostname::parse(r).map_err(|e| e.to_string())?);
    }
    let verifier = crate::verify::Verifier::new(crate::verify::VerifierConfig {
        resolver: args.dns_resolver,
        http_port: args.challenge_http_port,
        allow_private: args.challenge_allow_private,
        timeout: Duration::from_secs(5),
    })
    .map_err(|e| format!("--dns-resolver (DNS_RESOLVER): {e}"))?;
    let acme = match args.acme_directory {
        None => None,
        Some(url) => {
            if !url.starts_with("https://") || url::Url::parse(&url).is_err() {
                return Err(format!(
                    "--acme-directory (ACME_DIRECTORY): {url:?} is not an https:// URL"
                ));
            }
            if key.is_none() {
                return Err(
                    "--acme-directory (ACME_DIRECTORY) needs SECRETS_KEY: certificate keys are stored sealed under it"
                        .to_owned(),
                );
            }
            if let Some(root) = &args.acme_ca_root
                && let Err(e) = std::fs::read(root)
            {
                return Err(format!(
                    "--acme-ca-root (ACME_CA_ROOT): cannot read {}: {e}",
                    root.display()
                ));
            }
            let contact = match args.acme_contact.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(c) => {
                    let address = c.strip_prefix("mailto:").unwrap_or(c);
                    if !address.contains('@') || address.contains(char::is_whitespace) {
                        return Err(format!(
                            "--acme-contact (ACME_CONTACT): {c:?} is not an e-mail address"
                        ));
                    }
                    Some(format!("mailto:{address}"))
                }
            };
            Some(crate::domains::AcmeSettings {
                config: crate::acme::AcmeConfig {
                    directory_url: url,
                    ca_root: args.acme_ca_root,
                    contact,
                    call_timeout: Duration::from_secs(30),
                },
                orders_per_hour: args.acme_orders_per_hour,
                tenant_orders_per_hour: args.acme_tenant_orders_per_hour,
                concurrency: args.acme_concurrency,
                retry_after: Duration::from_secs(args.acme_retry_after_secs),
            })
        }
    };
    Ok(crate::domains::DomainSettings::new(
        base_domains,
        deny,
        verifier,
        acme,
    ))
}

/// Flags every `migrate` takes.
#[derive(Debug, Args)]
struct Common {
    /// The catalog's PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// List what would be applied, change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs the command line; the process's exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EX_USAGE),
            };
        }
    };
    if let Command::Serve(args) = cli.command {
        return serve(args);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tenant-admin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Command::Migrate { schema } = cli.command else {
        unreachable!("serve is handled above")
    };
    let status = runtime.block_on(async {
        match schema {
            Migrate::Catalog(common) => migrate_catalog(common).await,
            Migrate::Tenants {
                common,
                targets,
                concurrency,
                secrets_key,
            } => {
                let opts = FleetOptions {
                    targets: (!targets.is_empty()).then_some(targets),
                    concurrency: usize::from(concurrency),
                    dry_run: common.dry_run,
                };
                migrate_tenants(common.database_url, secrets_key, opts).await
            }
        }
    });
    match status {
        Ok(()) => ExitCode::SUCCESS,
        Err(status) => ExitCode::from(status),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging();
    let Some(database_url) = args.database_url else {
        eprintln!("tenant-admin: --database-url (or DATABASE_URL) is required");
        return ExitCode::from(78);
    };
    let key = match std::env::var("SECRETS_KEY") {
        Ok(text) if !text.trim().is_empty() => match SecretsKey::parse(&text) {
            Ok(key) => Some(key),
            Err(e) => {
                eprintln!("tenant-admin: {e}");
                return ExitCode::from(78);
            }
        },
        _ => None,
    };
    let bootstrap_token = std::env::var("ADMIN_BOOTSTRAP_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    if let Some(token) = &bootstrap_token
        && token.trim().len() < 24
    {
        eprintln!("tenant-admin: ADMIN_BOOTSTRAP_TOKEN must be at least 24 characters");
        return ExitCode::from(78);
    }
    if let Some(url) = &args.redis_url
        && !url.starts_with("redis://")
    {
        eprintln!("tenant-admin: --redis-url (REDIS_URL) must start with redis://");
        return ExitCode::from(78);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tenant-admin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let domains = match runtime.block_on(async { domain_settings(args.domains, key.as_ref()) }) {
        Ok(domains) => domains,
        Err(e) => {
            eprintln!("tenant-admin: {e}");
            return ExitCode::from(78);
        }
    };
    let config = ServeConfig {
        listen: args.listen,
        database_url,
        redis_url: args.redis_url,
        bootstrap_token: bootstrap_token.map(|t| t.trim().to_owned()),
        key,
        migrate: args.migrate,
        domains,
    };
    match runtime.block_on(app::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (ServeError::Catalog(_) | ServeError::Migrate(_))) => {
            eprintln!("tenant-admin: {e}");
            ExitCode::from(69)
        }
        Err(e) => {
            eprintln!("tenant-admin: {e}");
            ExitCode::from(78)
        }
    }
}

/// JSON log lines on stderr; `RUST_LOG` filters (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}

/// Connects to the catalog: 78 without a URL, 69 when it cannot be reached.
async fn connect_catalog(url: Option<String>) -> Result<PgPool, u8> {
    let Some(url) = url else {
        eprintln!("tenant-admin: --database-url (or DATABASE_URL) is required");
        return Err(EX_CONFIG);
    };
    let options: PgConnectOptions = url.parse().map_err(|e| {
        // The URL parser's messages never quote the URL.
        eprintln!("tenant-admin: --database-url (or DATABASE_URL) is not a PostgreSQL URL: {e}");
        EX_CONFIG
    })?;
    // Two: the lease renewal runs beside the per-target bookkeeping.
    db::connect(options, 2, CONNECT_TIMEOUT).await.map_err(|e| {
        // sqlx's message names host and database, never the password.
        eprintln!("tenant-admin: cannot reach the catalog database: {e}");
        EX_UNAVAILABLE
    })
}

async fn migrate_catalog(common: Common) -> Result<(), u8> {
    let pool = connect_catalog(common.database_url).await?;
    let schema = Schema::Catalog;
    let name = schema.name();
    if common.dry_run {
        let pending = migrations::pending(&pool, schema).await.map_err(|e| {
            eprintln!("tenant-admin: {name}: {e}");
            EX_UNAVAILABLE
        })?;
        let pending: Vec<(i64, String)> = pending
            .into_iter()
            .map(|(v, d)| (v, d.to_owned()))
            .collect();
        print_pending(name, &pending, schema.latest());
        return Ok(());
    }
    match migrations::apply(&pool, schema).await {
        Ok(applied) => {
            print_applied(name, &applied, schema.latest());
            Ok(())
        }
        Err(e) => {
            eprintln!("tenant-admin: {name}: migration failed: {e}");
            Err(1)
        }
    }
}

async fn migrate_tenants(
    url: Option<String>,
    secrets_key: Option<String>,
    opts: FleetOptions,
) -> Result<(), u8> {
    let key = match secrets_key.as_deref().map(SecretsKey::parse).transpose() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("tenant-admin: {e}");
            return Err(EX_CONFIG);
        }
    };
    let catalog = connect_catalog(url).await?;
    match migrations::pending(&catalog, Schema::Catalog).await {
        Ok(pending) if pending.is_empty() => {}
        Ok(_) => {
            eprintln!(
                "tenant-admin: the catalog is not migrated: run `tenant-admin migrate catalog` first"
            );
            return Err(EX_CONFIG);
        }
        Err(e) => {
            eprintln!("tenant-admin: catalog: {e}");
            return Err(EX_UNAVAILABLE);
        }
    }
    let outcome = match fleet::start_job(&catalog, &opts).await {
        Ok(job) => fleet::run_job(&catalog, key.as_ref(), job, opts.concurrency).await,
        Err(e) => Err(e),
    };
    let outcome = outcome.map_err(|e| {
        eprintln!("tenant-admin: migrate tenants: {e}");
        match e {
            FleetError::UnknownTargets(_) | FleetError::NoTargets => EX_USAGE,
            FleetError::Busy(_) | FleetError::Leased(_) | FleetError::LeaseLost(_) => EX_TEMPFAIL,
            FleetError::Catalog(_) => EX_UNAVAILABLE,
            FleetError::NoSuchJob(_)
            | FleetError::Finished { .. }
            | FleetError::BadParams { .. } => 1,
        }
    })?;
    print_outcome(&outcome);
    if outcome.counts.failed == 0 {
        Ok(())
    } else {
        Err(1)
    }
}

/// `NAME: applied 0001` per version, or `NAME: up to date at version N`.
fn print_applied(name: &str, applied: &[i64], version: i64) {
    if applied.is_empty() {
        println!("{name}: up to date at version {version}");
    }
    for v in applied {
        println!("{name}: applied {v:04}");
    }
}

/// `NAME: would apply 0001 initial` per migration, or `NAME: up to date at version N`.
fn print_pending(name: &str, pending: &[(i64, String)], version: i64) {
    if pending.is_empty() {
        println!("{name}: up to date at version {version}");
    }
    for (v, description) in pending {
        println!("{name}: would apply {v:04} {description}");
    }
}

/// One line per target (or per migration), then the summary.
fn print_outcome(outcome: &JobOutcome) {
    for target in &outcome.targets {
        let name = target.target.as_str();
        let version = target.version.unwrap_or(0);
        match target.outcome {
            Outcome::Applied | Outcome::UpToDate => print_applied(name, &target.applied, version),
            Outcome::WouldApply => {
                let pending: Vec<(i64, String)> = target
                    .would_apply
                    .iter()
                    .map(|m| (m.version, m.description.clone()))
                    .collect();
                print_pending(name, &pending, version);
            }
            Outcome::Earlier => println!("{name}: applied by an earlier run, not redone"),
            Outcome::Failed => println!(
                "{name}: failed: {}",
                target.error.as_deref().unwrap_or("unknown error")
            ),
        }
    }
    let c = &outcome.counts;
    let done = if outcome.dry_run {
        format!("{} would apply", c.would_apply)
    } else {
        format!("{} applied, {} earlier", c.applied, c.earlier)
    };
    println!(
        "migrate tenants: job {} {}{}: {} targets, {done}, {} up to date, {} failed",
        outcome.job_id,
        outcome.state,
        if outcome.dry_run { " (dry run)" } else { "" },
        c.targets,
        c.up_to_date,
        c.failed,
    );
}
