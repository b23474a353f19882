//! The Switchyard load-test harness (`loadtest`): open-loop multi-tenant load,
//! latency histograms, reports and side-by-side runs.
//!
//! # Layout
//!
//! Nothing yet: the harness is built in issue 7. The test-support library the
//! other crates' tests use lives beside it in `loadtests/testkit`
//! (`switchyard-testkit`).
