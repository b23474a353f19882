//! What the gateway's Redis tasks ([`crate::shared_limits`],
//! [`crate::purge_bus`]) share: the gateway's id among those on one Redis,
//! connections that reconnect by themselves, and logging an outage once.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::clock;

/// The key prefix of everything the gateways keep in Redis.
pub const PREFIX: &str = "switchyard:";

/// A gateway process's id among those sharing Redis, and in tenant-admin's
/// list of gateways following its feed: `<host>-<pid>-<nonce>`. The host
/// name tells an operator which machine it is; pid and nonce make it
/// unique per process, so an upgraded process is a new gateway and the old
/// one fades out.
pub fn gateway_id() -> String {
    use std::hash::BuildHasher;
    let nonce = std::collections::hash_map::RandomState::new().hash_one(clock::now_ns());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}{}-{nonce:016x}", host_part(&host), std::process::id())
}

/// `host-` for a host name, kept to the characters of a DNS name and at
/// most 63 of them; empty when there is none.
fn host_part(host: &str) -> String {
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(63)
        .collect();
    if host.is_empty() { host } else { host + "-" }
}

/// A connection to the Redis at `url` that reconnects by itself, gives up
/// on a connect after `connect_timeout` and on a reply after
/// `response_timeout`; it never connects before its first use.
///
/// # Errors
///
/// When `url` is not a Redis URL.
pub fn connect(
    url: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Whether Redis is failing for one task, so each outage is logged once
/// when it starts and once when it ends, not on every failed call.
#[derive(Debug, Default)]
pub struct Outage {
    down: bool,
}

impl Outage {
    /// Records a failure; true when it starts an outage.
    pub fn failed(&mut self) -> bool {
        !std::mem::replace(&mut self.down, true)
    }

    /// Records a success; true when it ends an outage.
    pub fn recovered(&mut self) -> bool {
        std::mem::replace(&mut self.down, false)
    }

    /// Whether the last call failed.
    pub fn is_down(&self) -> bool {
        self.down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_ids_are_unique_and_name_the_host_in_dns_characters() {
        assert_ne!(gateway_id(), gateway_id());
        assert_eq!(host_part(" gw-eu-1.example\n"), "gw-eu-1.example-");
        assert_eq!(host_part("we ird/ho$t"), "weirdhot-");
        assert_eq!(host_part(""), "");
        assert_eq!(host_part(&"h".repeat(300)).len(), 64);
    }

    #[test]
    fn an_outage_starts_and_ends_once() {
        let mut outage = Outage::default();
        assert!(!outage.recovered());
        assert!(outage.failed());
        assert!(!outage.failed());
        assert!(outage.is_down());
        assert!(outage.recovered());
        assert!(!outage.recovered());
    }
}
