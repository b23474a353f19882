//! The `gateway` command line. Exit statuses follow sysexits: 64 for bad
//! flags, 78 for a bad config or snapshot.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::check::check;
use crate::config::Config;

/// Bad command-line usage.
pub const EXIT_USAGE: u8 = 64;
/// Bad configuration or snapshot.
pub const EXIT_CONFIG: u8 = 78;
/// A service the gateway needs is not available.
pub const EXIT_UNAVAILABLE: u8 = 69;

/// Switchyard gateway: terminates TLS for the platform's and every tenant's
/// domains, resolves each request's tenant and proxies it to the tenant's
/// shard or dedicated cluster in the right region.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Args {
    /// The gateway's config file (TOML; every key is documented in
    /// deploy/gateway.sample.toml).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the config and the routing snapshot, list every problem,
    /// and exit: 0 when valid, 78 when not.
    #[arg(long)]
    pub check: bool,
}

/// Parses the command line and runs the gateway.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        return match check(&config) {
            Ok(summary) => {
                for line in summary {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprintln!("gateway: {} problem(s):", problems.len());
                for p in problems {
                    eprintln!("  - {p}");
                }
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    eprintln!(
        "gateway: serving is not built yet: the Pingora data plane is in progress (issue 3); \
         only --check is available"
    );
    ExitCode::from(EXIT_UNAVAILABLE)
}
