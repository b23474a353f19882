//! The `serve` process: shared state, the HTTP router with its
//! middleware, health and metrics endpoints, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Gauge, IntCounterVec, IntGaugeVec, Registry, TextEncoder};
use sqlx::PgPool;

use crate::api;
use crate::feed::Feed;
use crate::secrets::{SecretsKey, token_hash};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The catalog.
    pub db: PgPool,
    /// The key secrets are sealed under; `None` when `SECRETS_KEY` is unset
    /// (then DSNs with passwords are refused).
    pub key: Option<SecretsKey>,
    /// The routing feed.
    pub feed: Arc<Feed>,
    /// Redis, for publishing cache purges to gateways.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Request metrics.
    pub metrics: Metrics,
    /// Custom domains: validation rules, ownership checks, certificates.
    pub domains: crate::domains::DomainSettings,
}

/// tenant-admin's Prometheus metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Responses by route template and status class.
    pub responses: IntCounterVec,
    /// Certificate orders by outcome (`started`, `issued`, `failed`,
    /// `discarded`), this replica's.
    pub acme_orders: IntCounterVec,
    /// Custom domains by state, read from the catalog at each scrape.
    domains: IntGaugeVec,
    /// Days until the nearest certificate in force expires.
    nearest_expiry_days: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let responses = IntCounterVec::new(
            prometheus::Opts::new(
                "switchyard_admin_responses_total",
                "API responses by route template, method and status class",
            ),
            &["route", "method", "class"],
        )
        .expect("a valid metric");
        let acme_orders = IntCounterVec::new(
            prometheus::Opts::new(
                "switchyard_admin_acme_orders_total",
                "Certificate orders by this replica: started, issued, failed, discarded",
            ),
            &["outcome"],
        )
        .expect("a valid metric");
        let domains = IntGaugeVec::new(
            prometheus::Opts::new(
                "switchyard_admin_domains",
                "Custom domains by state (removed ones excluded), from the catalog",
            ),
            &["state"],
        )
        .expect("a valid metric");
        let nearest_expiry_days = Gauge::new(
            "switchyard_admin_certificate_nearest_expiry_days",
            "Days until the certificate in force that expires first does (absent without certificates)",
        )
        .expect("a valid metric");
        for metric in [
            Box::new(responses.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(acme_orders.clone()),
            Box::new(domains.clone()),
            Box::new(nearest_expiry_days.clone()),
        ] {
            registry.register(metric).expect("registered once");
        }
        Self {
            registry,
            responses,
            acme_orders,
            domains,
            nearest_expiry_days,
        }
    }
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let (api, openapi) = api::routes(state.clone());
    let openapi = Arc::new(openapi);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(api)
        .fallback(|| async { api::problem::ApiError::not_found("this path") })
        .method_not_allowed_fallback(|| async { api::problem::ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(middleware::from_fn(api::request::request_id))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let ping = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db),
    )
    .await;
    match ping {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "catalog unreachable\n"),
    }
}

/// Reads the catalog's domain and certificate figures into the gauges;
/// on a slow or failing catalog the previous figures stay.
async fn refresh_domain_gauges(state: &AppState) {
    let read = async {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state::text, count(*) FROM domains WHERE state <> 'removed' GROUP BY state",
        )
        .fetch_all(&state.db)
        .await?;
        let nearest: Option<f64> = sqlx::query_scalar(
            "SELECT (extract(epoch FROM min(c.not_after) - now()) / 86400)::float8 \
             FROM domains d JOIN certificates c ON c.id = d.certificate_id \
             WHERE d.state <> 'removed'",
        )
        .fetch_one(&state.db)
        .await?;
        Ok::<_, sqlx::Error>((counts, nearest))
    };
    if let Ok(Ok((counts, nearest))) = tokio::time::timeout(Duration::from_secs(2), read).await {
        // Every state but removed, zero included, so a state emptying
        // shows as 0 rather than vanishing.
        for s in api::domains::STATES.iter().filter(|s| **s != "removed") {
            let n = counts
                .iter()
                .find(|(k, _)| k.as_str() == *s)
                .map_or(0, |(_, n)| *n);
            state.metrics.domains.with_label_values(&[*s]).set(n);
        }
        state
            .metrics
            .nearest_expiry_days
            .set(nearest.unwrap_or(f64::NAN));
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    refresh_domain_gauges(&state).await;
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&state.metrics.registry.gather(), &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn count(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    state
        .metrics
        .responses
        .with_label_values(&[route.as_str(), method.as_str(), class])
        .inc();
    response
}

/// Settings of `tenant-admin serve`.
#[derive(Debug)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The catalog's URL.
    pub database_url: String,
    /// Redis for purges, if any.
    pub redis_url: Option<String>,
    /// A token to register as operator `bootstrap` at start.
    pub bootstrap_token: Option<String>,
    /// `SECRETS_KEY`.
    pub key: Option<SecretsKey>,
    /// Apply pending catalog migrations at start.
    pub migrate: bool,
    /// Custom domains and certificates.
    pub domains: crate::domains::DomainSettings,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The catalog is unreachable or failed.
    #[error("catalog: {0}")]
    Catalog(#[from] sqlx::Error),
    /// Catalog migrations failed.
    #[error("catalog migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The catalog is behind this build.
    #[error(
        "the catalog schema is at version {have}, this build needs {want}: run `tenant-admin migrate catalog` or start with --migrate"
    )]
    Behind {
        /// Applied.
        have: i64,
        /// Needed.
        want: i64,
    },
    /// Redis URL invalid.
    #[error("--redis-url: {0}")]
    Redis(String),
    /// Cannot listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Connects, prepares the catalog, and serves until SIGTERM or SIGINT.
///
/// # Errors
///
/// [`ServeError`] when start-up fails.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let options: sqlx::postgres::PgConnectOptions = config.database_url.parse()?;
    let db = crate::db::connect(options, 16, Duration::from_secs(5)).await?;
    use crate::migrations::{self, Schema};
    if config.migrate {
        migrations::apply(&db, Schema::Catalog).await?;
    }
    let have = migrations::applied(&db).await?.last().copied().unwrap_or(0);
    if have < Schema::Catalog.latest() {
        return Err(ServeError::Behind {
            have,
            want: Schema::Catalog.latest(),
        });
    }
    if let Some(token) = &config.bootstrap_token {
        // Registered (or re-activated) under the name `bootstrap`; the
        // token itself is never stored.
        sqlx::query(
            "INSERT INTO api_tokens (name, role, token_hash) VALUES ('bootstrap', 'operator', $1) \
             ON CONFLICT (token_hash) DO UPDATE SET revoked_at = NULL",
        )
        .bind(token_hash(token))
        .execute(&db)
        .await?;
    }
    let redis = match &config.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str())
                .map_err(|_| ServeError::Redis("is not a valid redis:// URL".into()))?;
            let settings = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)));
            // Connected lazily: Redis down at start must not stop the API.
            Some(
                redis::aio::ConnectionManager::new_lazy_with_config(client, settings)
                    .map_err(|e| ServeError::Redis(e.to_string()))?,
            )
        }
        None => None,
    };
    crate::feed::set_base_domains(config.domains.base_domains.clone());
    let feed = Feed::start(db.clone()).await?;
    let state = Arc::new(AppState {
        db: db.clone(),
        key: config.key,
        feed,
        redis,
        metrics: Metrics::default(),
        domains: config.domains,
    });
    crate::domains::check_key(&state.db, state.key.as_ref()).await;
    crate::jobs::start_worker(state.clone());
    crate::domains::start_worker(state.clone());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    tracing::info!(listen = %config.listen, "tenant-admin serving");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    db.close().await;
    tracing::info!("tenant-admin stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
