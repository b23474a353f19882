//! Cache purges carried to every gateway on one Redis.
//!
//! A purge asked of one gateway is applied there at once, then appended
//! to a Redis stream ([`STREAM`], capped at [`STREAM_LEN`] entries). Every
//! gateway reads the stream with a blocking `XREAD` and applies the
//! entries other gateways wrote, typically within milliseconds.
//!
//! A stream rather than pub/sub: a gateway whose connection drops for a
//! moment resumes reading after the last entry it saw, so it misses no
//! purge published meanwhile (pub/sub would lose them silently).
//!
//! When Redis is down, purges queue here (up to [`QUEUE_LIMIT`]; past it
//! the oldest are dropped and counted as errors) and are sent once it
//! answers again. Reading retries by itself. Both log once per outage.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use crate::cache::ResponseCache;
use crate::metrics::Metrics;

/// The stream of purges.
pub const STREAM: &str = "switchyard:purges";

/// Entries kept in the stream (approximately).
pub const STREAM_LEN: usize = 10_000;

/// Purges kept here while Redis is down.
pub const QUEUE_LIMIT: usize = 10_000;

/// How long one `XREAD` blocks waiting for entries.
const BLOCK: Duration = Duration::from_millis(1000);

/// Pause between attempts while Redis fails.
const RETRY: Duration = Duration::from_millis(250);

/// One purge: a whole tenant, or some of its paths.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Purge {
    /// The tenant id.
    pub tenant: String,
    /// Paths to purge; `None` purges the whole tenant.
    pub paths: Option<Vec<String>>,
}

/// Sends purges to the other gateways.
#[derive(Debug, Clone)]
pub struct PurgeSender {
    tx: mpsc::UnboundedSender<Purge>,
}

impl PurgeSender {
    /// Queues `purge` for the other gateways.
    pub fn send(&self, purge: Purge) {
        // The receiver lives as long as the server.
        let _ = self.tx.send(purge);
    }
}

/// The background service that publishes this gateway's purges and
/// applies everyone else's.
pub struct PurgeBus {
    url: String,
    id: String,
    cache: Arc<ResponseCache>,
    metrics: Metrics,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Purge>>>,
}

impl std::fmt::Debug for PurgeBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PurgeBus").field("id", &self.id).finish()
    }
}

impl PurgeBus {
    /// A bus on the Redis at `url` for the gateway `id`, and the sender
    /// its admin listener uses.
    pub fn new(
        url: String,
        id: String,
        cache: Arc<ResponseCache>,
        metrics: Metrics,
    ) -> (Self, PurgeSender) {
        let (tx, rx) = mpsc::unbounded_channel();
        let bus = Self {
            url,
            id,
            cache,
            metrics,
            rx: std::sync::Mutex::new(Some(rx)),
        };
        (bus, PurgeSender { tx })
    }

    fn connection(&self, response_timeout: Duration) -> Option<ConnectionManager> {
        let client = redis::Client::open(self.url.as_str()).ok()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(1);
        ConnectionManager::new_lazy_with_config(client, config).ok()
    }

    /// Sends queued purges while Redis answers.
    async fn publish(&self, mut conn: ConnectionManager, mut rx: mpsc::UnboundedReceiver<Purge>) {
        let mut queue: VecDeque<Purge> = VecDeque::new();
        let mut failing = false;
        loop {
            if queue.is_empty() {
                match rx.recv().await {
                    Some(purge) => queue.push_back(purge),
                    None => return,
                }
            }
            while let Ok(purge) = rx.try_recv() {
                queue.push_back(purge);
            }
            while queue.len() > QUEUE_LIMIT {
                queue.pop_front();
                self.metrics.redis_error("purge_dropped");
            }
            let Some(purge) = queue.front() else { continue };
            let paths = purge
                .paths
                .as_ref()
                .map(|p| serde_json::to_string(p).unwrap_or_default())
                .unwrap_or_default();
            let sent: redis::RedisResult<String> = redis::cmd("XADD")
                .arg(STREAM)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_LEN)
                .arg("*")
                .arg("origin")
                .arg(&self.id)
                .arg("tenant")
                .arg(&purge.tenant)
                .arg("paths")
                .arg(paths)
                .query_async(&mut conn)
                .await;
            match sent {
                Ok(_) => {
                    queue.pop_front();
                    if failing {
                        failing = false;
                        eprintln!("gateway: redis reachable again: queued cache purges sent");
                    }
                }
                Err(e) => {
                    self.metrics.redis_error("purge_publish");
                    if !failing {
                        failing = true;
                        eprintln!(
                            "gateway: redis unavailable ({e}): cache purges apply to this gateway only and are queued for the others"
                        );
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Applies the purges other gateways add to the stream.
    async fn subscribe(&self, mut conn: ConnectionManager) {
        // Only purges from now on: entries written before this gateway
        // first reached Redis concern a cache it did not have. The start is
        // Redis's own clock (stream ids are), not this host's.
        let mut last: Option<String> = None;
        let mut failing = false;
        loop {
            let from = match &last {
                Some(id) => id.clone(),
                None => match redis::cmd("TIME")
                    .query_async::<(u64, u64)>(&mut conn)
                    .await
                {
                    Ok((secs, micros)) => {
                        let id = format!("{}-0", secs * 1000 + micros / 1000);
                        last = Some(id.clone());
                        id
                    }
                    Err(e) => {
                        self.metrics.redis_error("purge_read");
                        if !failing {
                            failing = true;
                            eprintln!(
                                "gateway: redis unavailable ({e}): purges from other gateways wait until it answers"
                            );
                        }
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
            };
            let read: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(BLOCK.as_millis() as u64)
                    .arg("COUNT")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg(STREAM)
                    .arg(&from)
                    .query_async(&mut conn)
                    .await;
            let reply = match read {
                Ok(reply) => {
                    if failing {
                        failing = false;
                        eprintln!("gateway: redis reachable again: following cache purges");
                    }
                    reply
                }
                Err(e) => {
                    self.metrics.redis_error("purge_read");
                    if !failing {
                        failing = true;
                        eprintln!(
                            "gateway: redis unavailable ({e}): purges from other gateways wait until it answers"
                        );
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let Some(reply) = reply else { continue };
            for entry in reply.keys.iter().flat_map(|k| &k.ids) {
                last = Some(entry.id.clone());
                let origin: Option<String> = entry.get("origin");
                if origin.as_deref() == Some(self.id.as_str()) {
                    continue;
                }
                let Some(tenant) = entry.get::<String>("tenant") else {
                    continue;
                };
                let paths: Option<Vec<String>> = match entry.get::<String>("paths") {
                    Some(p) if !p.is_empty() => match serde_json::from_str(&p) {
                        Ok(paths) => Some(paths),
                        Err(_) => continue,
                    },
                    _ => None,
                };
                self.cache.purge(&tenant, paths.as_deref());
                self.metrics.cache_purge(paths.is_none(), true);
            }
        }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for PurgeBus {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let rx = self
            .rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let (Some(rx), Some(writer), Some(reader)) = (
            rx,
            self.connection(Duration::from_millis(500)),
            self.connection(BLOCK + Duration::from_millis(500)),
        ) else {
            eprintln!("gateway: redis.url is not usable; cache purges stay local");
            return;
        };
        tokio::select! {
            _ = self.publish(writer, rx) => {}
            _ = self.subscribe(reader) => {}
            _ = shutdown.changed() => {}
        }
    }
}
