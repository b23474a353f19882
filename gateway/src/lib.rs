//! The Switchyard gateway: a Pingora reverse proxy that terminates TLS for the
//! platform's domains and every tenant's custom domain, resolves the tenant of
//! each request with the [`router`](../router/index.html) crate, applies the
//! tenant's limits and cache, and proxies to the tenant's shard or dedicated
//! cluster in the right region.
//!
//! # Layout
//!
//! Nothing yet: the data plane is built in issue 3 ("Gateway data plane on
//! Pingora"). This crate exists so the workspace, lints and CI are in place
//! before it lands; it deliberately exposes no API that could be mistaken for
//! a working proxy.
