//! Assembling the Pingora server: the proxy service on its listeners and
//! the background services, so tests drive exactly what `gateway --config`
//! runs.

use std::sync::Arc;

use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;

use pingora::apps::http_app::HttpServer;
use pingora::services::listening::Service;

use crate::access_log::AccessLog;
use crate::admin::Admin;
use crate::cache::ResponseCache;
use crate::cert_store::CertStore;
use crate::cert_sync::CertSync;
use crate::config::{Config, Source};
use crate::limits::{IpLimits, IpSweeper};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::purge_bus::PurgeBus;
use crate::redis_link;
use crate::shared_limits::SharedLimits;
use crate::snapshot_feed::FeedFollower;
use crate::snapshot_watch::SnapshotWatcher;
use crate::state::RoutingState;
use crate::tls::{self, CertWatcher};
use crate::upstreams::Upstreams;

/// Pingora's server settings derived from the gateway's config.
pub fn server_conf(config: &Config) -> ServerConf {
    ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.shutdown.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(
            config.shutdown.graceful_shutdown_timeout.as_secs(),
        ),
        upgrade_sock: config.shutdown.upgrade_sock.display().to_string(),
        pid_file: config.shutdown.pid_file.display().to_string(),
        ..ServerConf::default()
    }
}

/// A bootstrapped Pingora server for `config`.
pub fn new_server(config: &Config, upgrade: bool) -> Server {
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(config));
    server.bootstrap();
    server
}

/// Adds the gateway's services to `server`: the proxy on its listeners,
/// the admin listener, and the snapshot watcher or the feed follower (and
/// the follower of its certificates).
///
/// # Errors
///
/// When the TLS listener cannot be set up.
pub fn build(
    server: &mut Server,
    config: &Config,
    state: Arc<RoutingState>,
    metrics: Metrics,
    certs: Arc<CertStore>,
    upstreams: Arc<Upstreams>,
) -> pingora::Result<()> {
    let ip_limits = Arc::new(IpLimits::default());
    server.add_service(background_service(
        "ip limit sweeper",
        IpSweeper::new(ip_limits.clone(), metrics.clone()),
    ));
    let cache = Arc::new(ResponseCache::new(&config.cache));
    // One id for this process among the gateways sharing Redis, and in
    // tenant-admin's list of gateways following its feed.
    let id = redis_link::gateway_id();
    let feed_id = id.clone();
    let purges = config.redis.as_ref().map(|redis| {
        let (bus, sender) = PurgeBus::new(
            redis.url.clone(),
            id.clone(),
            cache.clone(),
            metrics.clone(),
        );
        server.add_service(background_service("cache purges", bus));
        sender
    });
    let gateway = Gateway::new(
        state.clone(),
        config,
        metrics.clone(),
        config
            .access_log
            .then(|| AccessLog::start(std::io::stdout(), metrics.clone())),
        ip_limits,
        cache.clone(),
    );
    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "gateway");
    if let Some(addr) = config.http_listen {
        proxy.add_tcp(&addr.to_string());
    }
    if let Some(addr) = config.https_listen {
        proxy.add_tls_with_settings(
            &addr.to_string(),
            None,
            tls::settings(certs.clone(), metrics.clone())?,
        );
        if let Some(dir) = config.tls.as_ref().and_then(|t| t.cert_dir.clone()) {
            server.add_service(background_service(
                "certificate watcher",
                CertWatcher::new(dir, certs.clone(), metrics.clone()),
            ));
        }
    }
    server.add_service(proxy);

    let mut admin = Service::new(
        "admin".to_owned(),
        HttpServer::new_app(Admin::new(
            state.clone(),
            metrics.clone(),
            cache.clone(),
            purges,
        )),
    );
    admin.add_tcp(&config.admin_listen.to_string());
    server.add_service(admin);
    server.add_service(background_service(
        "health checks",
        upstreams.health_service(),
    ));

    if let Some(redis) = &config.redis {
        server.add_service(background_service(
            "shared rate limits",
            SharedLimits::new(redis.url.clone(), id, state.clone(), metrics.clone()),
        ));
    }

    match &config.source {
        Source::File { path } => {
            let watcher = SnapshotWatcher::new(
                path.clone(),
                config.clone(),
                state,
                metrics,
                upstreams.clone(),
            );
            server.add_service(background_service("snapshot watcher", watcher));
        }
        Source::Admin { .. } => {
            if let Some(follower) = FeedFollower::new(
                config,
                feed_id,
                state.clone(),
                metrics.clone(),
                upstreams.clone(),
            ) {
                // With an HTTPS listener, the certificates its snapshots
                // refer to, fetched right after each swap.
                if let Some(sync) = CertSync::new(config, follower.client(), state, certs, metrics)
                {
                    server.add_service(background_service("feed certificates", sync));
                }
                server.add_service(background_service("routing feed", follower));
            }
        }
    }
    Ok(())
}
