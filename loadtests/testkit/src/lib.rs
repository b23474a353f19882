//! Real servers for Switchyard's tests: throwaway PostgreSQL clusters, Redis servers and
//! HTTP upstreams, each on a free port of 127.0.0.1 and gone when its handle drops, and a
//! throwaway certificate authority for TLS tests.
//!
//! Nothing here is a mock. [`PgCluster`] runs the system's `initdb` and `postgres`,
//! [`RedisServer`] runs `redis-server`, and [`Upstream`] is a hyper server speaking HTTP/1.1
//! and h2c. Tests talk to them with the same clients production uses.
//!
//! ```no_run
//! use switchyard_testkit::{PgCluster, RedisServer, Upstream};
//!
//! let shards = PgCluster::start_many(2)?;
//! let redis = RedisServer::start()?;
//! let up = Upstream::builder().name("shard-a").respond(200, "ok").start()?;
//! println!("{} {} {}", shards[0].url(), redis.url(), up.url());
//! # Ok::<(), switchyard_testkit::TestkitError>(())
//! ```
//!
//! Every handle cleans up in `Drop`, which also runs while a failing test unwinds: servers
//! are signalled, waited for within a bound and killed if need be, and their temporary
//! directories deleted. A test process that is itself killed (`SIGKILL`, `abort`) leaves its
//! servers behind; they hold only temporary directories and loopback ports.
//!
//! When the tests run as root, PostgreSQL runs as the `postgres` system user, since it
//! refuses to run as root.
//!
//! # Layout
//!
//! - `postgres.rs`: [`PgCluster`], `initdb` + `postgres` in a temporary directory.
//! - `redis.rs`: [`RedisServer`], with stop and restart on the same port for outage tests.
//! - `upstream.rs`: [`Upstream`] and [`UpstreamBuilder`], a hyper server on its own thread.
//! - `request.rs`: [`RecordedRequest`], what an upstream saw.
//! - `reply.rs`: what an upstream answers, including the JSON echo format.
//! - `process.rs`: a spawned server process that is always stopped and reaped.
//! - `binary.rs`: finding `initdb`, `postgres`, `redis-server` and friends.
//! - `account.rs`: which system user a server runs as.
//! - `port.rs`: free loopback ports and the race for them.
//! - `ca.rs`: [`TestCa`], certificates for TLS tests and a client that trusts them.
//! - `pebble.rs`: [`Pebble`] and [`PebbleOptions`], an ACME server (Pebble) with its fake
//!   DNS server (`pebble-challtestsrv`).
//! - `error.rs`: [`TestkitError`].

mod account;
mod binary;
mod ca;
mod error;
mod pebble;
pub mod plain_http;
mod port;
mod postgres;
mod process;
mod redis;
pub mod reply;
mod request;
mod upstream;

pub use binary::workspace_binary;
pub use ca::{TestCa, client_trusting_pem};
pub use error::{Result, TestkitError};
pub use pebble::{Pebble, PebbleOptions};
pub use postgres::{PgCluster, SUPERUSER};
pub use redis::RedisServer;
pub use reply::UPSTREAM_HEADER;
pub use request::RecordedRequest;
pub use upstream::{Upstream, UpstreamBuilder};
