//! `loadtest`: the Switchyard load-test harness's binary.
//!
//! A shim: flags are parsed here and the work is done by the library ([`loadtest`]).
//! Exit status: 0 on success (including a shutdown by SIGTERM or Ctrl-C), 64 for bad
//! flags (clap's own 2 is mapped, as the spec asks), 1 when the server cannot start
//! (e.g. the listen address is in use).
//!
//! ```text
//! cargo run --release -p loadtest -- upstream --listen 127.0.0.1:8081 --name shard-a
//! ```

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use loadtest::upstream::{self, Config, UpstreamName};

/// Exit status for bad flags (sysexits' `EX_USAGE`).
const EX_USAGE: u8 = 64;

/// The most worker threads `--threads` accepts.
const MAX_THREADS: u16 = 1024;

/// The longest shutdown grace `--grace-secs` accepts, in seconds.
const MAX_GRACE_SECS: u64 = 300;

/// The Switchyard load-test harness.
///
/// Today it holds the demo and test upstream; scenario runs (`run`, `compare`, `seed`)
/// arrive with the rest of the harness.
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
        Command::Upstream(args) => run_upstream(args),
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
