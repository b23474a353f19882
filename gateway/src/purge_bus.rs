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

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::cache::ResponseCache;
use crate::metrics::Metrics;
use crate::redis_link::{self, Outage};

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

    /// Sends queued purges while Redis answers.
    async fn publish(&self, mut conn: ConnectionManager, mut rx: mpsc::UnboundedReceiver<Purge>) {
        let mut queue: VecDeque<Purge> = VecDeque::new();
        let mut outage = Outage::default();
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
                    if outage.recovered() {
                        eprintln!("gateway: redis reachable again: queued cache purges sent");
                    }
                }
                Err(e) => {
                    self.metrics.redis_error("purge_publish");
                    if outage.failed() {
                        eprintln!(
                            "gateway: redis unavailable ({e}): cache purges apply to this gateway only and are queued for the others"
                        );
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// The next entries of the stream after `last`, waiting up to
    /// [`BLOCK`]. Without a `last`, starts at Redis's clock: entries
    /// written before this gateway first reached Redis concern a cache it
    /// did not have, and stream ids follow Redis's clock, not this host's.
    async fn read_after(
        conn: &mut ConnectionManager,
        last: &mut Option<String>,
    ) -> redis::RedisResult<Option<redis::streams::StreamReadReply>> {
        let from = match last {
            Some(id) => id.clone(),
            None => {
                let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
                last.insert(format!("{}-0", secs * 1000 + micros / 1000))
                    .clone()
            }
        };
        redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(&from)
            .query_async(conn)
            .await
    }

    /// Applies the purges other gateways add to the stream.
    async fn subscribe(&self, mut conn: ConnectionManager) {
        let mut last: Option<String> = None;
        let mut outage = Outage::default();
        loop {
            let reply = match Self::read_after(&mut conn, &mut last).await {
                Ok(reply) => {
                    if outage.recovered() {
                        eprintln!("gateway: redis reachable again: following cache purges");
                    }
                    reply
                }
                Err(e) => {
                    self.metrics.redis_error("purge_read");
                    if outage.failed() {
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
        let connect = |response_timeout| {
            redis_link::connect(&self.url, Duration::from_millis(500), response_timeout).ok()
        };
        let (Some(rx), Some(writer), Some(reader)) = (
            rx,
            connect(Duration::from_millis(500)),
            connect(BLOCK + Duration::from_millis(500)),
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
