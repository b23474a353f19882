//! The response cache's in-memory storage, for Pingora's cache engine.
//!
//! Why not pingora-cache's `MemCache`: it is documented as test-only, it
//! copies the whole body on every hit, and it panics when a key is purged
//! or evicted while a fill of that key is in flight — which a purge API
//! and a byte-bounded LRU make a matter of time. This store
//!
//! - keeps each complete response as one [`Bytes`], so a hit is a
//!   reference count, not a copy;
//! - writes nothing visible until a fill finishes (no partial entries), so
//!   a purge or an eviction during a fill simply removes the older entry;
//!   concurrent misses wait on Pingora's cache lock instead of reading a
//!   half-written body;
//! - gives every stored response an entry id, so the eviction manager
//!   removes exactly the entry it admitted and never a newer fill of the
//!   same key;
//! - indexes entries by a *purge tag* (tenant and path, set by
//!   [`crate::cache`] in the key's extensions), so a purge by path finds
//!   every host, scheme and `Vary` variant of that path.
//!
//! The byte bound is the eviction manager's: Pingora admits each finished
//! fill to it and purges what it evicts from here.

use std::any::Any;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use pingora::cache::eviction::{CacheEntryKey, CacheEntryKeyRef, EvictionManager};
use pingora::cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use pingora::cache::storage::{HandleHit, HandleMiss, MissFinishType};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{
    CacheEntryId, CacheKey, CacheMeta, HitHandler, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType, Storage,
};
use pingora::{Error, ErrorType, Result};

/// What groups entries for a purge by path: a hash of tenant and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PurgeTag(pub u64);

/// Bytes an entry costs beyond its body and metadata: map slots, the
/// index, the `Arc`.
const ENTRY_OVERHEAD: usize = 256;

/// One complete response.
#[derive(Debug)]
struct Entry {
    id: CacheEntryId,
    /// `CacheMeta::serialize`'s two parts.
    meta: (Vec<u8>, Vec<u8>),
    body: Bytes,
    tag: Option<PurgeTag>,
    /// The key as the eviction manager knows it.
    compact: CompactCacheKey,
}

impl Entry {
    fn weight(&self) -> usize {
        self.body.len() + self.meta.0.len() + self.meta.1.len() + ENTRY_OVERHEAD
    }
}

/// The in-memory response store; one per process, `'static` as Pingora
/// requires.
#[derive(Default)]
pub struct MemoryStore {
    entries: DashMap<HashBinary, Arc<Entry>>,
    /// Purge tag → the keys of the entries carrying it.
    by_tag: DashMap<PurgeTag, HashSet<HashBinary>>,
    next_id: AtomicU64,
    bytes: AtomicUsize,
    /// Path purges so far: a fill that started before one is not stored,
    /// since it may hold what that purge removed.
    purges: AtomicU64,
    /// Told when an entry is replaced, so it stops counting the old one.
    eviction: OnceLock<&'static (dyn EvictionManager + Sync)>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.len())
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// Tells `eviction` about entries replaced by a newer fill.
    pub fn set_eviction(&self, eviction: &'static (dyn EvictionManager + Sync)) {
        let _ = self.eviction.set(eviction);
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes stored, bodies, metadata and bookkeeping included.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn insert(&self, key: HashBinary, entry: Entry) {
        self.bytes.fetch_add(entry.weight(), Ordering::Relaxed);
        let tag = entry.tag;
        // In the map first, then in the index: a purge that takes the index
        // in between misses nothing older than itself (fills older than a
        // purge are dropped in `Fill::finish`).
        if let Some(old) = self.entries.insert(key, Arc::new(entry)) {
            self.forget(&key, &old, false);
            if let Some(eviction) = self.eviction.get() {
                eviction.remove(CacheEntryKeyRef::from_entry_id(&old.compact, Some(old.id)));
            }
        }
        if let Some(tag) = tag {
            self.by_tag.entry(tag).or_default().insert(key);
        }
    }

    /// Accounts for `entry`, just removed from the map under `key`;
    /// `untag` when no entry of that key remains.
    fn forget(&self, key: &HashBinary, entry: &Entry, untag: bool) {
        self.bytes.fetch_sub(entry.weight(), Ordering::Relaxed);
        if untag && let Some(tag) = entry.tag {
            self.by_tag.remove_if_mut(&tag, |_, keys| {
                keys.remove(key);
                keys.is_empty()
            });
        }
    }

    /// Removes the entry under `key` if `id` is none or matches.
    fn remove(&self, key: &HashBinary, id: Option<CacheEntryId>) -> Option<CacheEntryId> {
        let (key, entry) = self
            .entries
            .remove_if(key, |_, e| id.is_none_or(|id| e.id == id))?;
        self.forget(&key, &entry, true);
        Some(entry.id)
    }

    /// Removes every entry tagged `tag`; returns them as the eviction
    /// manager knows them, so it can stop counting them.
    pub fn purge_tag(&self, tag: PurgeTag) -> Vec<CacheEntryKey> {
        self.purges.fetch_add(1, Ordering::AcqRel);
        let Some((_, keys)) = self.by_tag.remove(&tag) else {
            return Vec::new();
        };
        keys.into_iter()
            .filter_map(|key| {
                let (_, entry) = self.entries.remove(&key)?;
                self.bytes.fetch_sub(entry.weight(), Ordering::Relaxed);
                Some(CacheEntryKey::identified(entry.compact.clone(), entry.id))
            })
            .collect()
    }
}

fn internal(context: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InternalError, context)
}

#[async_trait]
impl Storage for MemoryStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(entry) = self.entries.get(&key.combined_bin()).map(|e| e.clone()) else {
            return Ok(None);
        };
        let meta = CacheMeta::deserialize(&entry.meta.0, &entry.meta.1)?;
        let hit = Hit {
            range: 0..entry.body.len(),
            entry,
            done: false,
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Fill {
            store: self,
            key: key.combined_bin(),
            id: CacheEntryId::new(self.next_id.fetch_add(1, Ordering::Relaxed)),
            meta: meta.serialize()?,
            tag: key.extensions.get::<PurgeTag>().copied(),
            compact: key.to_compact(),
            purges: self.purges.load(Ordering::Acquire),
            body: BytesMut::new(),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let id = match target {
            PurgeTarget::Exact(entry) => entry.entry_id(),
            PurgeTarget::Active(_) => None,
        };
        Ok(match self.remove(&target.key().combined_bin(), id) {
            Some(id) => PurgeOutcome::Purged(Some(id)),
            None => PurgeOutcome::NotFound,
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let Some(mut slot) = self.entries.get_mut(&key.combined_bin()) else {
            // Purged or evicted while revalidating: nothing to update.
            return Ok(false);
        };
        let old = slot.clone();
        // A newer fill may have replaced the entry being revalidated:
        // never put one response's headers on another's body.
        let stored = CacheMeta::deserialize(&old.meta.0, &old.meta.1)?;
        let same = [
            http::header::ETAG,
            http::header::CONTENT_LENGTH,
            http::header::LAST_MODIFIED,
        ]
        .iter()
        .all(|name| stored.headers().get(name) == meta.headers().get(name));
        if !same {
            return Ok(false);
        }
        let meta = meta.serialize()?;
        let entry = Entry {
            id: old.id,
            meta,
            body: old.body.clone(),
            tag: old.tag,
            compact: old.compact.clone(),
        };
        self.bytes.fetch_add(entry.weight(), Ordering::Relaxed);
        self.bytes.fetch_sub(old.weight(), Ordering::Relaxed);
        *slot = Arc::new(entry);
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Reading one stored body, whole or a byte range of it.
#[derive(Debug)]
struct Hit {
    entry: Arc<Entry>,
    range: std::ops::Range<usize>,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.entry.body.slice(self.range.clone())))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.entry.body.len();
        if start >= len {
            return Err(internal("seek past the end of a cached body"));
        }
        self.range = start..end.map_or(len, |end| end.min(len));
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.entry.weight()
    }

    fn entry_id(&self) -> Option<CacheEntryId> {
        Some(self.entry.id)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// A response being stored: invisible until it finishes.
struct Fill {
    store: &'static MemoryStore,
    key: HashBinary,
    id: CacheEntryId,
    meta: (Vec<u8>, Vec<u8>),
    tag: Option<PurgeTag>,
    compact: CompactCacheKey,
    /// The store's purge count when the fill started.
    purges: u64,
    body: BytesMut,
}

#[async_trait]
impl HandleMiss for Fill {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let entry = Entry {
            id: self.id,
            meta: self.meta,
            body: self.body.freeze(),
            tag: self.tag,
            compact: self.compact,
        };
        let weight = entry.weight();
        if self.store.purges.load(Ordering::Acquire) != self.purges {
            // A purge ran while this response was on its way: it may be
            // what the purge meant to remove. Not stored; the next request
            // fetches it again. (Pingora still admits the weight, and its
            // eviction later finds nothing to remove.)
            return Ok(MissFinishType::Created(0));
        }
        self.store.insert(self.key, entry);
        Ok(MissFinishType::Created(weight))
    }

    fn entry_id(&self) -> Option<CacheEntryId> {
        Some(self.id)
    }
}
