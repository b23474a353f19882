//! `tenant-admin` flags and exit statuses: 0 success, 64 bad flags, 78 a
//! missing setting, 69 the database unreachable, 1 a migration that failed.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use sqlx::postgres::PgPoolOptions;

use crate::migrations::{self, Schema};

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
    }
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
