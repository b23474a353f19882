//! A bare Pingora proxy: every request to one upstream, no routing, no
//! headers, no logging. The framework's floor in `deploy/bench/proxies`,
//! against which the gateway's own cost is measured.
//!
//! ```text
//! cargo run --release -p gateway --example bare_proxy -- \
//!     --listen 127.0.0.1:8081 --upstream 127.0.0.1:9101 [--tls-listen 127.0.0.1:8444 --cert C --key K]
//! curl -H 'Host: anything' http://127.0.0.1:8081/
//! ```

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};

#[derive(Debug, Parser)]
struct Args {
    /// Plain-HTTP listener.
    #[arg(long)]
    listen: SocketAddr,
    /// The one upstream.
    #[arg(long)]
    upstream: SocketAddr,
    /// Optional TLS listener, with --cert and --key.
    #[arg(long, requires_all = ["cert", "key"])]
    tls_listen: Option<SocketAddr>,
    #[arg(long)]
    cert: Option<String>,
    #[arg(long)]
    key: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The same allocator as the gateway binary, so the floor is comparable.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare(SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: format!("/tmp/bare-proxy-{}.sock", std::process::id()),
        pid_file: format!("/tmp/bare-proxy-{}.pid", std::process::id()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Bare(args.upstream));
    proxy.add_tcp(&args.listen.to_string());
    if let (Some(addr), Some(cert), Some(key)) = (args.tls_listen, &args.cert, &args.key) {
        proxy
            .add_tls(&addr.to_string(), cert, key)
            .expect("TLS certificate and key load");
    }
    server.add_service(proxy);
    server.run_forever();
}
