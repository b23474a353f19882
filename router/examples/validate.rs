//! Validates a routing snapshot file and lists every problem it has.
//!
//! ```text
//! cargo run -p router --example validate -- deploy/snapshots/sample.toml --base-domain app.example.test
//! ```
//!
//! Exits 0 when the snapshot is valid, 1 when it has problems, 64 on bad
//! arguments. The gateway's `gateway --check` does the same with its config.

use std::path::PathBuf;
use std::process::ExitCode;

use router::{BuildOptions, Hostname, RoutingTable, Snapshot};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut path: Option<PathBuf> = None;
    let mut options = BuildOptions::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--base-domain" => match args.next().as_deref().map(Hostname::parse) {
                Some(Ok(h)) => options.base_domains.push(h),
                Some(Err(e)) => return usage(&format!("--base-domain: {e}")),
                None => return usage("--base-domain needs a value"),
            },
            "-h" | "--help" => {
                println!("usage: validate SNAPSHOT [--base-domain NAME]...");
                return ExitCode::SUCCESS;
            }
            _ if path.is_none() && !arg.starts_with('-') => path = Some(arg.into()),
            _ => return usage(&format!("unexpected argument {arg:?}")),
        }
    }
    let Some(path) = path else {
        return usage("missing SNAPSHOT path");
    };
    let snapshot = match Snapshot::from_path(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match RoutingTable::build(&snapshot, &options) {
        Ok(table) => {
            println!(
                "{}: valid: version {}, {} regions, {} plans, {} targets, {} tenants, {} custom domains",
                path.display(),
                table.version(),
                table.regions().len(),
                table.plans().len(),
                table.targets().len(),
                table.tenant_count(),
                table.domain_count()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("{}: {problems}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("validate: {message}\nusage: validate SNAPSHOT [--base-domain NAME]...");
    ExitCode::from(64)
}
