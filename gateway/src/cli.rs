//! The `gateway` command line. Exit statuses follow sysexits: 64 for bad
//! flags, 78 for a bad config or snapshot.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use std::sync::Arc;

use crate::cert_store::{CertStore, load_pair};
use crate::check::check;
use crate::config::{Config, Source};
use crate::metrics::Metrics;
use crate::state::RoutingState;
use crate::upstreams::Upstreams;
use crate::{server, snapshot_feed, snapshot_file};

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
    /// Take over the listening sockets of a running gateway (send it
    /// SIGQUIT after starting this one): a restart with no refused connection.
    #[arg(long)]
    pub upgrade: bool,
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
    serve(&config, args.upgrade)
}

/// Loads the first snapshot and runs the gateway until it is stopped.
fn serve(config: &Config, upgrade: bool) -> ExitCode {
    let metrics = Metrics::new();
    let certs = Arc::new(CertStore::default());
    if let Some(tls) = &config.tls {
        if let Some((cert, key)) = &tls.default_cert {
            match load_pair(cert, key) {
                Ok(pair) => certs.set_default(pair),
                Err(e) => {
                    eprintln!("gateway: tls.default_cert: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        if let Some(dir) = &tls.cert_dir {
            let report = certs.scan(dir);
            for e in &report.errors {
                eprintln!("gateway: certificate not loaded: {e}");
            }
            eprintln!(
                "gateway: {} host certificate(s) loaded from {}",
                certs.len(),
                dir.display()
            );
            metrics.dir_certificates(certs.len());
        }
    }
    let state = Arc::new(RoutingState::default());
    let upstreams = Arc::new(Upstreams::new(config.upstream.clone()));
    match &config.source {
        Source::File { path } => match snapshot_file::load(path, config) {
            Ok(mut loaded) => {
                for p in loaded.prepare(&upstreams, None) {
                    eprintln!("gateway: {p}");
                }
                state.install(loaded, &metrics);
            }
            Err(rejected) => {
                eprintln!("gateway: {rejected}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        // Serve the last-known-good copy, if any; the feed follower
        // started by `server::build` takes it from there.
        Source::Admin { .. } => {
            snapshot_feed::start_from_cache(config, &state, &metrics, &upstreams, &certs);
        }
    }
    let mut server = server::new_server(config, upgrade);
    if let Err(e) = server::build(&mut server, config, state, metrics, certs, upstreams) {
        eprintln!("gateway: cannot set up the listeners: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    server.run_forever()
}
