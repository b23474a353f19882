//! The Switchyard load-test harness (`loadtest`): open-loop multi-tenant load,
//! latency histograms, reports and side-by-side runs.
//!
//! - `loadtest run --scenario FILE --target URL [--report DIR]` sends a scenario's
//!   load ([`scenario`]) to a target ([`run`]) and reports it ([`report`]).
//! - `loadtest compare --scenario FILE --target NAME=URL ...` runs it against each
//!   target in turn and reports them side by side.
//! - `loadtest seed` writes a routing snapshot, a CA and certificates for the tenants
//!   a scenario addresses ([`seed`], [`population`]).
//! - `loadtest upstream --listen ADDR` is the fast demo and test app server that plays
//!   a tenant's backend behind the gateway ([`upstream`]).
//!
//! # Layout
//!
//! - `main.rs`: the binary, a shim over this library (flags, exit statuses).
//! - `scenario.rs`: [`scenario::Scenario`], read from TOML and checked, every problem
//!   named by its key; `scenario/template.rs`: request paths with placeholders.
//! - `population.rs`: the tenants' names, shared by scenarios and `seed`.
//! - `run.rs`: the open-loop engine: a dispatcher thread follows the schedule
//!   (`run/plan.rs`), a task per request goes through the connection pool
//!   (`run/client.rs`: HTTP/1.1, TLS with SNI per host, the connection cap), and one
//!   collector builds the report (`run/recorder.rs`: HDR histograms, SLO checks).
//! - `report.rs`: the report model (`report/model.rs`), the terminal summary, the
//!   HTML pages and SVG plots, and the side-by-side comparison.
//! - `seed.rs`: snapshot, CA, certificates and gateway config for a population.
//! - `upstream.rs`: the demo upstream.
//!
//! The test-support library the other crates' tests use lives beside this crate in
//! `loadtests/testkit` (`switchyard-testkit`).

pub mod population;
pub mod report;
pub mod run;
pub mod scenario;
pub mod seed;
pub mod upstream;
