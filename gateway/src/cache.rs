//! The tenant-safe response cache: what is cached, under which key, for
//! how long, and purges. Pingora's cache engine does the serving, the
//! cache lock (one miss fills an entry while the others wait) and
//! stale-if-error; [`crate::cache_store`] holds the bytes.
//!
//! # Keys
//!
//! A key is the length-prefixed concatenation of the tenant id, the
//! tenant's purge generation, the method (`HEAD` shares `GET`'s entries),
//! the scheme, the normalised host and the path with its query, plus the
//! request's values of the headers the response's `Vary` names. Each part
//! carries its length, so no choice of host, path or header can make one
//! tenant's key equal another's: the tenant id is the first part of every
//! key, and the tenant is the one the router resolved, never a header.
//!
//! # What is stored
//!
//! GET and HEAD of tenants whose plan caches; responses with a status RFC
//! 9111 lets a shared cache store by default, no `Set-Cookie`, no
//! `Vary: *` nor a `Vary` on a header the gateway rewrites
//! (`x-forwarded-*`, `x-tenant-*`, `x-request-id`); freshness from `Cache-Control` (`s-maxage`, `max-age`,
//! `no-cache`, `no-store`, `private`), else `Expires`, else the plan's
//! `cache_ttl_secs` (0: not stored). A request with `Authorization` or
//! `Cookie` is stored only when the response is explicitly `public` (or
//! has `s-maxage` or `must-revalidate`): a logged-in page must not reach
//! the tenant's other users. Bodies over the plan's
//! `cache_max_object_bytes` stream through uncached. Request
//! `Cache-Control` is ignored, so no client can force misses on others.
//!
//! # Purges
//!
//! A whole tenant: its generation goes up, so every old key is
//! unreachable at once and the old entries age out of the LRU. A path:
//! every entry of that tenant and path — any host, scheme, query or
//! variant — is removed through the store's purge tags.

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use http::header::{AUTHORIZATION, COOKIE, EXPIRES, SET_COOKIE, VARY};
use pingora::cache::cache_control::CacheControl;
use pingora::cache::eviction::{CacheEntryKeyRef, EvictionManager, lru};
use pingora::cache::filters::resp_cacheable;
use pingora::cache::key::HashBinary;
use pingora::cache::lock::CacheLock;
use pingora::cache::predictor::Predictor;
use pingora::cache::{
    CacheKey, CacheMeta, CacheMetaDefaults, CacheOptionOverrides, CachePhase, NoCacheReason,
    RespCacheable, VarianceBuilder,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use router::Plan;

use crate::cache_store::{MemoryStore, PurgeTag};
use crate::config::CacheConfig;

/// Statuses a shared cache may store without explicit freshness (RFC 9110
/// §15.1 "heuristically cacheable"), 206 aside: ranges are served from
/// whole entries instead.
const CACHEABLE_STATUSES: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// More `Vary` names than this and the response is not stored.
const MAX_VARY: usize = 8;

/// Why a response was not stored, in Pingora's terms; the status reason
/// is not remembered by the predictor, so a transient error does not stop
/// caching a URL.
const UNCACHEABLE_STATUS: NoCacheReason = NoCacheReason::Custom("status");

fn skip_reason(reason: &'static str) -> bool {
    reason == "status"
}

/// The process's response cache.
pub struct ResponseCache {
    store: &'static MemoryStore,
    eviction: &'static lru::Manager<16>,
    lock: &'static CacheLock,
    predictor: &'static Predictor<16>,
    defaults: CacheMetaDefaults,
    lock_timeout: Duration,
    stale_if_error: u32,
    /// Generations of tenants purged whole; absent means 0.
    generations: DashMap<Box<str>, u64>,
    /// Hashes tenant and path into purge tags.
    tags: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.store.len())
            .field("bytes", &self.store.bytes())
            .finish_non_exhaustive()
    }
}

/// `x-cache` values.
pub mod status {
    /// Served from the cache.
    pub const HIT: &str = "HIT";
    /// Not in the cache; fetched, and stored if the response allowed it.
    pub const MISS: &str = "MISS";
    /// Neither looked up nor stored: method, plan or response said no.
    pub const BYPASS: &str = "BYPASS";
    /// In the cache but expired; fetched again.
    pub const EXPIRED: &str = "EXPIRED";
    /// Expired, served anyway because the upstream failed.
    pub const STALE: &str = "STALE";
}

/// The `x-cache` value for a request of a caching tenant that reached
/// `phase`.
pub fn x_cache(phase: &CachePhase) -> &'static str {
    match phase {
        CachePhase::Hit | CachePhase::Revalidated => status::HIT,
        CachePhase::Miss | CachePhase::RevalidatedNoCache(_) => status::MISS,
        CachePhase::Expired => status::EXPIRED,
        CachePhase::Stale | CachePhase::StaleUpdating => status::STALE,
        _ => status::BYPASS,
    }
}

impl ResponseCache {
    /// A cache bounded by `config`. Its parts live as long as the process,
    /// as Pingora requires.
    pub fn new(config: &CacheConfig) -> Self {
        // Items per LRU shard preallocated: about 4 KiB a response.
        let per_shard = (config.max_bytes / 4096 / 16).clamp(64, 65_536);
        let stale_if_error = u32::try_from(config.stale_if_error.as_secs()).unwrap_or(u32::MAX);
        let store: &'static MemoryStore = Box::leak(Box::default());
        let eviction: &'static lru::Manager<16> = Box::leak(Box::new(lru::Manager::with_capacity(
            config.max_bytes,
            per_shard,
        )));
        store.set_eviction(eviction);
        Self {
            store,
            eviction,
            lock: Box::leak(CacheLock::new_boxed(config.lock_timeout)),
            predictor: Box::leak(Box::new(Predictor::new(4096, Some(skip_reason)))),
            defaults: CacheMetaDefaults::new(|_| None, 0, stale_if_error),
            lock_timeout: config.lock_timeout,
            stale_if_error,
            generations: DashMap::new(),
            tags: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Entries and bytes stored.
    pub fn usage(&self) -> (usize, usize) {
        (self.store.len(), self.store.bytes())
    }

    /// Turns the cache on for this request of a tenant on `plan`.
    pub fn enable(&self, session: &mut Session, plan: &Plan) {
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(self.lock_timeout);
        session.cache.enable(
            self.store,
            Some(self.eviction),
            Some(self.predictor),
            Some(self.lock),
            Some(overrides),
        );
        session.cache.set_max_file_size_bytes(
            usize::try_from(plan.cache_max_object_bytes).unwrap_or(usize::MAX),
        );
    }

    fn tag(&self, tenant: &str, path: &str) -> PurgeTag {
        PurgeTag(self.tags.hash_one((tenant, path)))
    }

    /// The key of `req` for `tenant`, reached through `host` (normalised)
    /// over `scheme`.
    pub fn key(&self, tenant: &str, scheme: &str, host: &str, req: &RequestHeader) -> CacheKey {
        let generation = if self.generations.is_empty() {
            0
        } else {
            self.generations.get(tenant).map_or(0, |g| *g)
        };
        let method = if req.method == http::Method::HEAD {
            "GET"
        } else {
            req.method.as_str()
        };
        let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut primary = Vec::with_capacity(64 + tenant.len() + host.len() + target.len());
        for part in [
            tenant.as_bytes(),
            &generation.to_le_bytes(),
            method.as_bytes(),
            scheme.as_bytes(),
            host.as_bytes(),
            target.as_bytes(),
        ] {
            primary.extend_from_slice(&(part.len() as u32).to_le_bytes());
            primary.extend_from_slice(part);
        }
        let mut key = CacheKey::new(primary, "");
        key.extensions.insert(self.tag(tenant, req.uri.path()));
        key
    }

    /// Whether and how long to store `resp`, the answer to `req` for a
    /// tenant on `plan`.
    pub fn cacheability(
        &self,
        req: &RequestHeader,
        resp: &ResponseHeader,
        plan: &Plan,
    ) -> RespCacheable {
        use RespCacheable::Uncacheable;
        if !CACHEABLE_STATUSES.contains(&resp.status.as_u16()) {
            return Uncacheable(UNCACHEABLE_STATUS);
        }
        if resp.headers.contains_key(SET_COOKIE) {
            return Uncacheable(NoCacheReason::Custom("set-cookie"));
        }
        match vary_names(resp) {
            // Headers the gateway rewrites for the upstream cannot key a
            // variant: the client's value is not what the origin saw.
            Some(names) if names.len() <= MAX_VARY && !names.iter().any(|n| gateway_managed(n)) => {
            }
            _ => return Uncacheable(NoCacheReason::Custom("vary")),
        }
        // A request with credentials (a token or a session cookie) is
        // stored only when the origin says the answer is for everyone.
        let authorized =
            req.headers.contains_key(AUTHORIZATION) || req.headers.contains_key(COOKIE);
        let cc = CacheControl::from_resp_headers(resp);
        let says_nothing = cc.as_ref().is_none_or(|cc| {
            !(cc.no_store()
                || cc.no_cache()
                || cc.private()
                || matches!(cc.max_age(), Ok(Some(_)) | Err(_))
                || matches!(cc.s_maxage(), Ok(Some(_)) | Err(_)))
        }) && !resp.headers.contains_key(EXPIRES);
        if !says_nothing {
            return resp_cacheable(cc.as_ref(), resp.clone(), authorized, &self.defaults);
        }
        let public = cc.as_ref().is_some_and(CacheControl::public);
        if plan.cache_ttl_secs == 0 || (authorized && !public) {
            return Uncacheable(NoCacheReason::OriginNotCache);
        }
        let now = SystemTime::now();
        let fresh_until = now + Duration::from_secs(u64::from(plan.cache_ttl_secs));
        RespCacheable::Cacheable(CacheMeta::new(
            fresh_until,
            now,
            0,
            self.stale_if_error,
            resp.clone(),
        ))
    }

    /// The variant of `req` under the `Vary` of a stored `meta`.
    pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
        let names = vary_names(meta.response_header())?;
        let mut builder = VarianceBuilder::new();
        for name in names {
            let value = req
                .headers
                .get_all(name.as_str())
                .iter()
                .flat_map(|v| [v.as_bytes(), b"\n"])
                .flatten()
                .copied()
                .collect::<Vec<u8>>();
            builder.add_owned_name_value(name, value);
        }
        builder.finalize()
    }

    /// Purges `tenant`: every entry when `paths` is `None`, else every
    /// entry of each path (any host, scheme, query or variant). Returns the
    /// entries removed (always 0 for a whole-tenant purge, whose entries
    /// become unreachable at once and age out).
    pub fn purge(&self, tenant: &str, paths: Option<&[String]>) -> usize {
        let Some(paths) = paths else {
            *self.generations.entry(tenant.into()).or_insert(0) += 1;
            return 0;
        };
        let mut removed = 0;
        for path in paths {
            let path = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
            for entry in self.store.purge_tag(self.tag(tenant, path)) {
                self.eviction.remove(CacheEntryKeyRef::from(&entry));
                removed += 1;
            }
        }
        removed
    }
}

/// Whether the gateway sets or rewrites header `name` (lowercase) on the
/// way to the upstream.
fn gateway_managed(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || name.starts_with("x-tenant-")
        || name == "x-request-id"
        || name == "forwarded"
}

/// The lowercase names `Vary` lists; `None` for `Vary: *`.
fn vary_names(resp: &ResponseHeader) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for value in resp.headers.get_all(VARY) {
        for name in value.to_str().ok()?.split(',') {
            let name = name.trim().to_ascii_lowercase();
            if name == "*" {
                return None;
            }
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    Some(names)
}

/// The normalised host for keys, or "" without one.
pub fn key_host(host: Option<&str>) -> std::borrow::Cow<'_, str> {
    host.and_then(|h| router::hostname::normalize(h).ok())
        .unwrap_or(std::borrow::Cow::Borrowed(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> ResponseCache {
        ResponseCache::new(&CacheConfig {
            max_bytes: 1 << 20,
            lock_timeout: Duration::from_secs(1),
            stale_if_error: Duration::from_secs(60),
        })
    }

    fn req(path: &str) -> RequestHeader {
        RequestHeader::build("GET", path.as_bytes(), None).unwrap()
    }

    fn plan(ttl: u32) -> Plan {
        let text = format!(
            "version = 1\nregions = [{{ name = \"eu\" }}]\n\
             plans = [{{ name = \"p\", rate_per_sec = 10, burst = 1, max_body_bytes = 1, cache = true, cache_ttl_secs = {ttl} }}]\n\
             [[targets]]\nid = \"s\"\nkind = \"shard\"\nregion = \"eu\"\npools = {{ eu = [\"127.0.0.1:1\"] }}\n"
        );
        let snapshot = router::Snapshot::from_toml(&text).unwrap();
        let table =
            router::RoutingTable::build(&snapshot, &router::BuildOptions::default()).unwrap();
        table.plans()[0].clone()
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn cacheable(c: &ResponseCache, req: &RequestHeader, r: &ResponseHeader, p: &Plan) -> bool {
        matches!(c.cacheability(req, r, p), RespCacheable::Cacheable(_))
    }

    #[test]
    fn keys_never_collide_across_tenants_hosts_or_paths() {
        let c = cache();
        let k = |tenant, host, path| {
            use pingora::cache::key::CacheHashKey;
            c.key(tenant, "https", host, &req(path)).primary_bin()
        };
        // Shifting bytes between parts changes the key.
        assert_ne!(k("t-a", "b.example", "/x"), k("t-ab", ".example", "/x"));
        assert_ne!(k("t-a", "h", "/x"), k("t-b", "h", "/x"));
        assert_ne!(k("t-a", "h", "/x"), k("t-a", "h", "/x?"));
        assert_eq!(k("t-a", "h", "/x"), k("t-a", "h", "/x"));
        // HEAD shares GET's entry; a whole-tenant purge changes the key.
        let head = RequestHeader::build("HEAD", b"/x", None).unwrap();
        use pingora::cache::key::CacheHashKey;
        assert_eq!(
            c.key("t-a", "https", "h", &head).primary_bin(),
            k("t-a", "h", "/x")
        );
        let before = k("t-a", "h", "/x");
        c.purge("t-a", None);
        assert_ne!(k("t-a", "h", "/x"), before);
        assert_eq!(k("t-b", "h", "/x"), k("t-b", "h", "/x"));
    }

    #[test]
    fn what_is_stored_follows_the_origin_then_the_plan() {
        let c = cache();
        let (p, none) = (plan(60), plan(0));
        let get = req("/");
        assert!(cacheable(&c, &get, &resp(200, &[]), &p));
        assert!(!cacheable(&c, &get, &resp(200, &[]), &none));
        assert!(cacheable(
            &c,
            &get,
            &resp(200, &[("cache-control", "max-age=5")]),
            &none
        ));
        assert!(!cacheable(
            &c,
            &get,
            &resp(200, &[("cache-control", "no-store")]),
            &p
        ));
        assert!(!cacheable(
            &c,
            &get,
            &resp(200, &[("cache-control", "private")]),
            &p
        ));
        assert!(!cacheable(
            &c,
            &get,
            &resp(200, &[("set-cookie", "s=1")]),
            &p
        ));
        assert!(!cacheable(&c, &get, &resp(200, &[("vary", "*")]), &p));
        assert!(cacheable(
            &c,
            &get,
            &resp(200, &[("vary", "accept-language")]),
            &p
        ));
        assert!(!cacheable(
            &c,
            &get,
            &resp(500, &[("cache-control", "max-age=60")]),
            &p
        ));
        assert!(!cacheable(&c, &get, &resp(206, &[]), &p));
        assert!(cacheable(&c, &get, &resp(404, &[]), &p));
        assert!(cacheable(
            &c,
            &get,
            &resp(200, &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")]),
            &none
        ));

        assert!(!cacheable(
            &c,
            &get,
            &resp(200, &[("vary", "X-Forwarded-For")]),
            &p
        ));
        let mut cookie = req("/");
        cookie.insert_header("cookie", "session=1").unwrap();
        assert!(!cacheable(&c, &cookie, &resp(200, &[]), &p));
        assert!(cacheable(
            &c,
            &cookie,
            &resp(200, &[("cache-control", "public")]),
            &p
        ));

        let mut authorized = req("/");
        authorized
            .insert_header("authorization", "Bearer x")
            .unwrap();
        assert!(!cacheable(&c, &authorized, &resp(200, &[]), &p));
        assert!(!cacheable(
            &c,
            &authorized,
            &resp(200, &[("cache-control", "max-age=60")]),
            &p
        ));
        assert!(cacheable(
            &c,
            &authorized,
            &resp(200, &[("cache-control", "public")]),
            &p
        ));
        assert!(cacheable(
            &c,
            &authorized,
            &resp(200, &[("cache-control", "public, max-age=60")]),
            &p
        ));
    }

    #[test]
    fn x_cache_names_each_phase() {
        assert_eq!(x_cache(&CachePhase::Hit), "HIT");
        assert_eq!(x_cache(&CachePhase::Miss), "MISS");
        assert_eq!(x_cache(&CachePhase::Expired), "EXPIRED");
        assert_eq!(x_cache(&CachePhase::Stale), "STALE");
        assert_eq!(
            x_cache(&CachePhase::Disabled(NoCacheReason::OriginNotCache)),
            "BYPASS"
        );
        assert_eq!(x_cache(&CachePhase::Bypass), "BYPASS");
    }
}
