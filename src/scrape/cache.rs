//! The scrape cache of one target: what each series line the target writes became (labels
//! after relabelling, storage ref, staleness state), keyed by the line's series bytes.
//!
//! Owns only this lookup; it knows nothing of parsing, relabelling or storage. A target writes
//! its series in the same order every scrape, so the cache first checks the entry the same
//! position held last scrape: a sequential walk the CPU prefetches, where a hash lookup costs
//! three random memory reads (table, entry, key) on a cache of 100k series. The keys live in
//! one arena in the order they were first seen, so that walk reads memory in order too.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use xxhash_rust::xxh3::Xxh3Builder;

use crate::model::Labels;
use crate::storage::SeriesRef;

/// What one series line became.
pub(super) struct CacheEntry {
    /// Final labels, or `None` when metric relabelling drops the series.
    pub labels: Option<Labels>,
    /// Storage handle once appended.
    pub sref: Option<SeriesRef>,
    /// Scrape number that last contained the series (set as it is appended, so a failed
    /// scrape puts back `prev_seen`).
    pub seen: u64,
    /// `seen` and `tracked` before the scrape in progress touched the entry.
    pub prev_seen: u64,
    pub prev_tracked: bool,
    /// Whether staleness applies (no explicit timestamp, or `track_timestamps_staleness`).
    pub tracked: bool,
}

impl CacheEntry {
    /// An entry for a series with `labels` (None: dropped by relabelling).
    pub fn new(labels: Option<Labels>) -> Self {
        CacheEntry {
            labels,
            sref: None,
            seen: 0,
            prev_seen: 0,
            prev_tracked: false,
            tracked: false,
        }
    }
}

struct Slot {
    /// The series bytes in the arena; empty for a free slot (a series line is never empty).
    key: (usize, usize),
    entry: CacheEntry,
}

/// The cache: entries in a slab, a hash table of slab indices, and the order of the last
/// committed scrape.
pub(super) struct SeriesCache {
    /// Seeded per process: the keys come from targets.
    hasher: Xxh3Builder,
    table: HashTable<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Every key, back to back; bytes of forgotten keys stay until they are half the arena.
    arena: Vec<u8>,
    dead: usize,
    /// Slab index of each sample position of the last committed scrape, and of the scrape
    /// in progress.
    order: Vec<u32>,
    next_order: Vec<u32>,
}

impl Default for SeriesCache {
    fn default() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        SeriesCache {
            hasher: Xxh3Builder::new().with_seed(seed),
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            arena: Vec::new(),
            dead: 0,
            order: Vec::new(),
            next_order: Vec::new(),
        }
    }
}

impl SeriesCache {
    /// The entry of `key`, the `pos`-th sample of the scrape in progress; recorded in this
    /// scrape's order.
    pub fn find(&mut self, key: &[u8], pos: usize) -> Option<u32> {
        let (slots, arena) = (&self.slots, &self.arena);
        let key_of = |i: u32| {
            let (a, n) = slots[i as usize].key;
            &arena[a..a + n]
        };
        let at = self
            .order
            .get(pos)
            .copied()
            .filter(|i| key_of(*i) == key)
            .or_else(|| {
                let h = self.hasher.hash_one(key);
                self.table.find(h, |i| key_of(*i) == key).copied()
            })?;
        self.next_order.push(at);
        Some(at)
    }

    /// Adds the entry of a new `key` (not in the cache), recorded in this scrape's order.
    pub fn insert(&mut self, key: &[u8], entry: CacheEntry) -> u32 {
        let slot = Slot {
            key: (self.arena.len(), key.len()),
            entry,
        };
        self.arena.extend_from_slice(key);
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let h = self.hasher.hash_one(key);
        let (slots, arena, hasher) = (&self.slots, &self.arena, &self.hasher);
        self.table.insert_unique(h, i, |j| {
            let (a, n) = slots[*j as usize].key;
            hasher.hash_one(&arena[a..a + n])
        });
        self.next_order.push(i);
        i
    }

    /// The entry at slab index `i` (from [`SeriesCache::find`] or [`SeriesCache::insert`]).
    pub fn get_mut(&mut self, i: u32) -> &mut CacheEntry {
        &mut self.slots[i as usize].entry
    }

    /// The scrape in progress committed: its order is the one to expect next.
    pub fn keep_order(&mut self) {
        std::mem::swap(&mut self.order, &mut self.next_order);
        self.next_order.clear();
    }

    /// The scrape in progress failed: the last committed order stays.
    pub fn drop_order(&mut self) {
        self.next_order.clear();
    }

    /// Every entry in use.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut CacheEntry> {
        self.slots
            .iter_mut()
            .filter(|s| s.key.1 != 0)
            .map(|s| &mut s.entry)
    }

    /// Forgets the entries `keep` refuses.
    pub fn retain(&mut self, mut keep: impl FnMut(&CacheEntry) -> bool) {
        let (slots, free, dead) = (&mut self.slots, &mut self.free, &mut self.dead);
        self.table.retain(|i| {
            let s = &mut slots[*i as usize];
            if keep(&s.entry) {
                return true;
            }
            *dead += s.key.1;
            s.key = (0, 0);
            s.entry = CacheEntry::new(None);
            free.push(*i);
            false
        });
        if self.dead > self.arena.len() / 2 {
            // Rewrite the arena with the live keys, in the order of the last scrape first so
            // the walk stays sequential.
            let mut arena = Vec::with_capacity(self.arena.len() - self.dead);
            let mut moved = vec![false; self.slots.len()];
            let order = self.order.iter().copied();
            let rest = 0..self.slots.len() as u32;
            for i in order.chain(rest) {
                let s = &mut self.slots[i as usize];
                if moved[i as usize] || s.key.1 == 0 {
                    continue;
                }
                moved[i as usize] = true;
                let (a, n) = s.key;
                s.key = (arena.len(), n);
                arena.extend_from_slice(&self.arena[a..a + n]);
            }
            self.arena = arena;
            self.dead = 0;
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.table.clear();
        self.slots.clear();
        self.free.clear();
        self.arena.clear();
        self.dead = 0;
        self.order.clear();
        self.next_order.clear();
    }

    /// Entries in use.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> CacheEntry {
        CacheEntry::new(Some(Labels::from_pairs([("__name__", name)])))
    }

    fn name(c: &mut SeriesCache, i: u32) -> String {
        c.get_mut(i)
            .labels
            .as_ref()
            .map(|l| l.metric_name().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn finds_by_position_by_hash_and_after_reordering() {
        let mut c = SeriesCache::default();
        for (p, k) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(c.find(k.as_bytes(), p), None);
            c.insert(k.as_bytes(), entry(k));
        }
        c.keep_order();
        // Same order, another order, one missing and one new: every key finds its own entry.
        for scrape in [
            vec!["a", "b", "c"],
            vec!["c", "a", "b"],
            vec!["b", "d", "a"],
        ] {
            for (p, k) in scrape.iter().enumerate() {
                match c.find(k.as_bytes(), p) {
                    Some(i) => assert_eq!(name(&mut c, i), *k),
                    None => {
                        assert_eq!(*k, "d");
                        c.insert(k.as_bytes(), entry(k));
                    }
                }
            }
            c.keep_order();
        }
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn a_failed_scrape_keeps_the_last_order_and_freed_slots_are_reused() {
        let mut c = SeriesCache::default();
        for (p, k) in ["a", "b"].iter().enumerate() {
            c.find(k.as_bytes(), p);
            c.insert(k.as_bytes(), entry(k));
        }
        c.keep_order();
        assert!(c.find(b"b", 0).is_some());
        c.drop_order();
        c.retain(|e| e.labels.as_ref().unwrap().metric_name() != "a");
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.find(b"a", 0),
            None,
            "the freed slot is not found by position"
        );
        let i = c.insert(b"z", entry("z"));
        assert_eq!(name(&mut c, i), "z");
        assert_eq!(c.find(b"z", 0), Some(i));
        assert_eq!(c.entries_mut().count(), 2);
        c.clear();
        assert_eq!(c.len(), 0);
        assert_eq!(c.find(b"b", 1), None);
    }

    #[test]
    fn the_arena_is_rewritten_once_half_of_it_is_forgotten_keys() {
        let mut c = SeriesCache::default();
        let keys: Vec<String> = (0..100).map(|i| format!("series_{i}")).collect();
        for (p, k) in keys.iter().enumerate() {
            c.find(k.as_bytes(), p);
            c.insert(k.as_bytes(), entry(k));
        }
        c.keep_order();
        let before = c.arena.len();
        c.retain(|e| e.labels.as_ref().unwrap().metric_name() < "series_5");
        assert!(c.arena.len() < before, "{} {before}", c.arena.len());
        assert_eq!(c.dead, 0);
        for (p, k) in keys.iter().enumerate() {
            match c.find(k.as_bytes(), p) {
                Some(i) => assert_eq!(name(&mut c, i), *k),
                None => assert!(k.as_str() >= "series_5", "{k} lost"),
            }
        }
        assert_eq!(
            c.len(),
            keys.iter().filter(|k| k.as_str() < "series_5").count()
        );
    }
}
