//! The Switchyard load-test harness (`loadtest`): open-loop multi-tenant load,
//! latency histograms, reports and side-by-side runs.
//!
//! What exists today is the harness's upstream: `loadtest upstream` ([`upstream`]), the
//! fast demo and test app server that plays a tenant's backend behind the gateway. It
//! echoes the tenant headers the gateway added and can be asked, per request, for latency,
//! a status, a body size or a cache lifetime. The rest of the harness (`loadtest run`,
//! `compare` and `seed`: scenarios, open-loop load, histograms, reports) arrives in
//! issue 7; until then the binary has no such subcommands.
//!
//! ```text
//! cargo run --release -p loadtest -- upstream --listen 127.0.0.1:8081 --name shard-a
//! curl -s -H 'x-tenant-id: t-1' 'http://127.0.0.1:8081/orders?delay_ms=20'
//! ```
//!
//! # Layout
//!
//! - `main.rs`: the `loadtest` binary, a shim that parses flags with clap and calls
//!   [`upstream::run`]; bad flags exit with status 64.
//! - `upstream.rs`: the upstream server: [`upstream::serve`] (the accept loop and graceful
//!   shutdown that tests drive directly) and [`upstream::run`] (runtime, socket, signals).
//!   - `upstream/config.rs`: [`upstream::Config`] and the validated [`upstream::UpstreamName`].
//!   - `upstream/answer.rs`: one request in, one response out.
//!   - `upstream/behaviour.rs`: the query parameters (`delay_ms`, `status`, `bytes`,
//!     `cache`) and their limits.
//!   - `upstream/echo.rs`: the JSON echo document and the mirrored headers.
//!   - `upstream/signal.rs`: SIGTERM and SIGINT as a shutdown future.
//!   - `upstream/error.rs`: [`upstream::UpstreamError`].
//!
//! The test-support library the other crates' tests use lives beside this crate in
//! `loadtests/testkit` (`switchyard-testkit`).

pub mod upstream;
