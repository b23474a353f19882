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
//! The test-support library the other crates' tests use lives beside this crate in
//! `loadtests/testkit` (`switchyard-testkit`).

pub mod population;
pub mod report;
pub mod run;
pub mod scenario;
pub mod seed;
pub mod upstream;
