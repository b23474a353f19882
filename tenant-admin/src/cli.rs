//! `tenant-admin` flags and exit statuses: 0 success, 64 bad flags, 78 a
//! missing setting, 69 the database unreachable, 1 a migration that failed.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use sqlx::postgres::PgPoolOptions;

use crate::app::{self, ServeConfig, ServeError};
use crate::migrations::{self, Schema};
use crate::secrets::SecretsKey;

/// How long connecting to a database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        /// Which schema.
        schema: Which,
        /// The catalog's PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// List what would be applied, change nothing.
        #[arg(long)]
        dry_run: bool,
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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Which {
    /// tenant-admin's catalog.
    Catalog,
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
                _ => ExitCode::from(64),
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
    match cli.command {
        Command::Migrate {
            schema: Which::Catalog,
            database_url,
            dry_run,
        } => runtime.block_on(migrate(Schema::Catalog, database_url, dry_run)),
        Command::Serve(_) => unreachable!("handled above"),
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
    let config = ServeConfig {
        listen: args.listen,
        database_url,
        redis_url: args.redis_url,
        bootstrap_token: bootstrap_token.map(|t| t.trim().to_owned()),
        key,
        migrate: args.migrate,
    };
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

async fn migrate(schema: Schema, url: Option<String>, dry_run: bool) -> ExitCode {
    let Some(url) = url else {
        eprintln!("tenant-admin: --database-url (or DATABASE_URL) is required");
        return ExitCode::from(78);
    };
    let pool = match PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect(&url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            // sqlx's message names host and database, never the password.
            eprintln!(
                "tenant-admin: cannot reach the {} database: {e}",
                schema.name()
            );
            return ExitCode::from(69);
        }
    };
    let name = schema.name();
    if dry_run {
        return match migrations::pending(&pool, schema).await {
            Ok(pending) if pending.is_empty() => {
                println!("{name}: up to date at version {}", schema.latest());
                ExitCode::SUCCESS
            }
            Ok(pending) => {
                for (version, description) in pending {
                    println!("{name}: would apply {version:04} {description}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tenant-admin: {name}: {e}");
                ExitCode::from(69)
            }
        };
    }
    match migrations::apply(&pool, schema).await {
        Ok(applied) if applied.is_empty() => {
            println!("{name}: up to date at version {}", schema.latest());
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            for version in applied {
                println!("{name}: applied {version:04}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tenant-admin: {name}: migration failed: {e}");
            ExitCode::FAILURE
        }
    }
}
