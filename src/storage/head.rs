//! The in-memory head: series with XOR chunks, a hash index from label sets to series, and an
//! inverted index (postings) from label pairs to series for matcher lookups.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::chunk::{SealedChunk, XorChunk, XorIter, SAMPLES_PER_CHUNK};
use super::head_chunks::{ChunkStore, RefList, MAX_CHUNK_SPAN_MS};
use super::wal::HistogramRef;
use super::{
    Appendable, Appender, CommitStats, Querier, Series, SeriesRef, StorageError, TsdbStats,
};
use crate::model::{is_stale_nan, Labels, MatchOp, Matcher};

/// Head settings.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Chunks are cut where time crosses a multiple of this range (the block range), so a
    /// block cut from the head takes whole chunks and leaves whole chunks behind.
    pub chunk_range_ms: i64,
    /// Samples older than this are refused (they belong to persisted blocks) and skipped at
    /// WAL replay.
    pub min_valid_ms: i64,
    /// Fsync the write-ahead log on every commit instead of on the caller's interval.
    pub sync_every_commit: bool,
    /// Folder for sealed chunks (see [`super::head_chunks`]); None keeps them in memory.
    pub chunks_dir: Option<std::path::PathBuf>,
}

/// Prometheus's default block range: two hours.
pub const DEFAULT_BLOCK_RANGE_MS: i64 = 2 * 3600 * 1000;

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            chunk_range_ms: DEFAULT_BLOCK_RANGE_MS,
            min_valid_ms: i64::MIN,
            sync_every_commit: false,
            chunks_dir: None,
        }
    }
}

/// One series' data in a time range, copied out of the head for a block.
pub struct HeadSlice {
    /// The series.
    pub labels: Labels,
    /// Float chunks.
    pub chunks: Vec<SealedChunk>,
    /// Histogram samples.
    pub histograms: Vec<(i64, HistogramRef)>,
}

struct MemSeries {
    labels: Labels,
    /// `labels.stable_hash()`, kept for the index to rehash without reading the labels.
    hash: u64,
    /// Sealed chunks, oldest first; their bytes are in the head's [`ChunkStore`].
    closed: RefList,
    head: XorChunk,
    last_t: i64,
    last_v: u64,
    /// Native histogram samples, in time order (kept uncompressed: they are rare here).
    hists: Vec<(i64, HistogramRef)>,
    /// Truncation passes that found the series without samples; an appender may still hold
    /// a ref to a series it just created, so an empty series survives one pass.
    empty_passes: u8,
}

impl MemSeries {
    fn new(labels: Labels, hash: u64) -> Self {
        MemSeries {
            empty_passes: 0,
            labels,
            hash,
            closed: RefList::default(),
            head: XorChunk::default(),
            last_t: i64::MIN,
            last_v: 0,
            hists: Vec::new(),
        }
    }

    fn min_t(&self) -> i64 {
        let floats = self
            .closed
            .first()
            .map(|c| c.min_t())
            .unwrap_or(if self.head.is_empty() {
                i64::MAX
            } else {
                self.head.min_t()
            });
        floats.min(self.hists.first().map(|h| h.0).unwrap_or(i64::MAX))
    }

    fn histograms(&self, mint: i64, maxt: i64) -> Vec<(i64, HistogramRef)> {
        self.hists
            .iter()
            .filter(|(t, _)| *t >= mint && *t <= maxt)
            .cloned()
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.head.is_empty() && self.hists.is_empty()
    }

    fn samples(&self, store: &ChunkStore, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        let within = |t: &i64| *t >= mint && *t <= maxt;
        let mut buf = Vec::new();
        for c in self.closed.iter() {
            if c.is_empty() || c.max_t() < mint || c.min_t() > maxt {
                continue;
            }
            if store.read(&c, &mut buf) {
                out.extend(XorIter::over(&buf).filter(|(t, _)| within(t)));
            }
        }
        let h = &self.head;
        if !h.is_empty() && h.max_t() >= mint && h.min_t() <= maxt {
            out.extend(h.iter().filter(|(t, _)| within(t)));
        }
        out
    }

    fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.last_t != i64::MIN && self.last_t >= mint && self.min_t() <= maxt
    }
}

#[derive(Default)]
struct Inner {
    series: Vec<Option<MemSeries>>,
    /// The bytes of every series' sealed chunks.
    store: ChunkStore,
    /// Bumped each time a slot is reused, so refs to a removed series are detected.
    gens: Vec<u32>,
    /// Series ids by label hash: four bytes a series, where a map to a list per hash cost
    /// about eighty.
    by_hash: hashbrown::HashTable<u32>,
    /// Per-process seed mixed into `by_hash`'s hashes: label sets come from targets, and the
    /// stable hash is unseeded.
    seed: u64,
    postings: BTreeMap<String, BTreeMap<String, BTreeSet<u32>>>,
    free: Vec<u32>,
    live: u64,
    chunks: u64,
    min_t: i64,
    max_t: i64,
    /// Appends older than this are out of bounds (their range is persisted in blocks).
    min_valid: i64,
}

impl Inner {
    /// Puts a replayed series back in the slot its ref names, so refs stay stable across
    /// restarts and the log needs no renumbering.
    fn restore(&mut self, r: SeriesRef, labels: Labels) {
        let id = (r.0 & 0xffff_ffff) as u32;
        let gen = (r.0 >> 32) as u32;
        let idx = id as usize;
        if self.series.len() <= idx {
            self.series.resize_with(idx + 1, || None);
            self.gens.resize(idx + 1, 0);
        }
        if self.series[idx].is_some() {
            self.remove(id);
            self.free.retain(|f| *f != id);
        }
        self.gens[idx] = gen;
        self.insert_at(id, labels.stable_hash(), labels);
    }

    /// Puts a new series into slot `id` and indexes it.
    fn insert_at(&mut self, id: u32, hash: u64, labels: Labels) {
        // Names and values are cloned only when new to the index: replaying a million series
        // otherwise allocates ten million strings only to drop them.
        for l in labels.iter() {
            let vals = match self.postings.get_mut(l.name) {
                Some(v) => v,
                None => self.postings.entry(l.name.to_string()).or_default(),
            };
            match vals.get_mut(l.value) {
                Some(ids) => {
                    ids.insert(id);
                }
                None => {
                    vals.insert(l.value.to_string(), BTreeSet::from([id]));
                }
            }
        }
        self.series[id as usize] = Some(MemSeries::new(labels, hash));
        let (series, seed) = (&self.series, self.seed);
        self.by_hash.insert_unique(mix(hash, seed), id, |i| {
            mix(series[*i as usize].as_ref().map_or(0, |s| s.hash), seed)
        });
        self.live += 1;
        self.chunks += 1;
    }

    fn rebuild_free_list(&mut self) {
        self.free = (0..self.series.len() as u32)
            .filter(|i| self.series[*i as usize].is_none())
            .rev()
            .collect();
    }

    fn make_ref(&self, id: u32) -> SeriesRef {
        SeriesRef((u64::from(self.gens[id as usize]) << 32) | u64::from(id))
    }

    /// The slot of a live ref.
    fn resolve(&self, r: SeriesRef) -> Option<u32> {
        let id = (r.0 & 0xffff_ffff) as u32;
        let gen = (r.0 >> 32) as u32;
        let live = self
            .series
            .get(id as usize)
            .map(|s| s.is_some())
            .unwrap_or(false);
        (live && self.gens[id as usize] == gen).then_some(id)
    }

    fn find(&self, hash: u64, labels: &Labels) -> Option<u32> {
        self.by_hash
            .find(mix(hash, self.seed), |id| {
                self.series[*id as usize]
                    .as_ref()
                    .is_some_and(|s| s.hash == hash && &s.labels == labels)
            })
            .copied()
    }

    fn create(&mut self, hash: u64, labels: Labels) -> u32 {
        let id = match self.free.pop() {
            Some(id) => {
                self.gens[id as usize] = self.gens[id as usize].wrapping_add(1);
                id
            }
            None => {
                self.series.push(None);
                self.gens.push(0);
                (self.series.len() - 1) as u32
            }
        };
        self.insert_at(id, hash, labels);
        id
    }

    fn remove(&mut self, id: u32) {
        let Some(s) = self.series[id as usize].take() else {
            return;
        };
        if let Ok(e) = self
            .by_hash
            .find_entry(mix(s.hash, self.seed), |x| *x == id)
        {
            e.remove();
        }
        for l in s.labels.iter() {
            if let Some(vals) = self.postings.get_mut(l.name) {
                if let Some(set) = vals.get_mut(l.value) {
                    set.remove(&id);
                    if set.is_empty() {
                        vals.remove(l.value);
                    }
                }
                if vals.is_empty() {
                    self.postings.remove(l.name);
                }
            }
        }
        self.chunks -= s.closed.len() as u64 + 1;
        self.live -= 1;
        self.free.push(id);
    }

    /// Where a sample at `t` for `r` may go: its series' slot and whether `t` repeats the
    /// newest timestamp; None (counted in `st`) for an unknown ref, a time before the head's
    /// range, or a time before the series' newest sample.
    fn admit(&self, r: SeriesRef, t: i64, st: &mut CommitStats) -> Option<(u32, bool)> {
        let Some(id) = self.resolve(r) else {
            st.out_of_bounds += 1;
            return None;
        };
        if t < self.min_valid {
            st.out_of_bounds += 1;
            return None;
        }
        let s = self.series[id as usize].as_ref()?;
        if t < s.last_t {
            st.out_of_order += 1;
            return None;
        }
        Some((id, t == s.last_t))
    }

    /// Rewrites series `id`'s chunks without samples in `[mint, maxt]`.
    fn delete_range(&mut self, id: u32, mint: i64, maxt: i64, range: i64) {
        let Some(s) = self.series[id as usize].as_mut() else {
            return;
        };
        let before = s.closed.len() as u64 + 1;
        let mut kept: Vec<(i64, f64)> = s.samples(&self.store, i64::MIN, i64::MAX);
        kept.retain(|(t, _)| *t < mint || *t > maxt);
        let mut chunks: Vec<XorChunk> = Vec::new();
        let mut cur = XorChunk::default();
        for (t, v) in kept {
            if !cur.is_empty()
                && (cur.len() >= SAMPLES_PER_CHUNK
                    || t.div_euclid(range.max(1)) != cur.min_t().div_euclid(range.max(1))
                    || t - cur.min_t() > MAX_CHUNK_SPAN_MS)
            {
                chunks.push(std::mem::take(&mut cur));
            }
            cur.append(t, v);
        }
        // The old chunks' bytes stay in the store until their segment is truncated.
        s.closed = chunks.iter().map(|c| self.store.write(c)).collect();
        s.head = cur;
        s.hists.retain(|(t, _)| *t < mint || *t > maxt);
        let after = s.closed.len() as u64 + 1;
        self.chunks = self.chunks + after - before;
    }

    /// Series ids that may match: postings of the most selective positive matcher, or all.
    fn candidates(&self, matchers: &[Matcher]) -> Vec<u32> {
        let mut best: Option<BTreeSet<u32>> = None;
        for m in matchers {
            if m.matches_empty() {
                continue;
            }
            let mut set = BTreeSet::new();
            if let Some(vals) = self.postings.get(&m.name) {
                if m.op == MatchOp::Equal {
                    if let Some(ids) = vals.get(&m.value) {
                        set.extend(ids.iter().copied());
                    }
                } else {
                    for (v, ids) in vals {
                        if m.matches(v) {
                            set.extend(ids.iter().copied());
                        }
                    }
                }
            }
            if best.as_ref().map(|b| set.len() < b.len()).unwrap_or(true) {
                best = Some(set);
            }
        }
        match best {
            Some(b) => b.into_iter().collect(),
            None => (0..self.series.len() as u32).collect(),
        }
    }

    fn matching<'a>(
        &'a self,
        matchers: &'a [Matcher],
        mint: i64,
        maxt: i64,
    ) -> impl Iterator<Item = &'a MemSeries> + 'a {
        self.candidates(matchers).into_iter().filter_map(move |id| {
            let s = self.series[id as usize].as_ref()?;
            let ok = matchers
                .iter()
                .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
                && s.overlaps(mint, maxt);
            ok.then_some(s)
        })
    }
}

/// The index's hash of a series: its stable hash, seeded.
fn mix(hash: u64, seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&hash.to_le_bytes(), seed)
}

/// Own metrics of the head, registered under `appliance_tsdb_*`.
#[derive(Clone, Default)]
struct HeadMetrics {
    series: Gauge,
    chunks: Gauge,
    samples_appended: Counter,
    series_created: Counter,
    series_removed: Counter,
    out_of_order: Counter,
    wal_size: Gauge,
    wal_corruptions: Counter,
    truncations: Counter,
    out_of_bounds: Counter,
    chunks_storage: Gauge,
}

/// The in-memory head block.
#[derive(Clone)]
pub struct Head {
    inner: Arc<RwLock<Inner>>,
    opts: HeadOptions,
    metrics: HeadMetrics,
    commits: Arc<AtomicU64>,
    /// The write-ahead log, when the head is durable. Locked while the head's write lock is
    /// held, so the log's order is the head's order.
    wal: Option<Arc<parking_lot::Mutex<super::wal::Wal>>>,
    /// The newest exemplars, beside the samples (memory only).
    exemplars: Arc<super::exemplar::ExemplarStore>,
}

impl Head {
    /// An empty head.
    pub fn new(opts: HeadOptions) -> Self {
        let store = match &opts.chunks_dir {
            Some(d) => ChunkStore::open(d),
            None => ChunkStore::in_memory(),
        };
        let inner = Inner {
            store,
            seed: std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                0u64,
            ),
            min_t: i64::MAX,
            max_t: i64::MIN,
            min_valid: opts.min_valid_ms,
            ..Default::default()
        };
        Head {
            inner: Arc::new(RwLock::new(inner)),
            opts,
            metrics: HeadMetrics::default(),
            commits: Arc::default(),
            wal: None,
            exemplars: Arc::default(),
        }
    }

    /// A durable head: replays the write-ahead log in `dir` and logs to it from then on.
    /// Returns a description of any torn or corrupt tail that replay cut off.
    pub fn open(
        dir: &std::path::Path,
        opts: HeadOptions,
    ) -> Result<(Head, Option<String>), StorageError> {
        let head = Head::new(opts);
        let (wal, replay) = {
            // Records are applied as they are read: replay holds one record at a time, not
            // the log.
            let mut g = head.inner.write();
            let mut batch: Vec<(SeriesRef, i64, f64)> = Vec::new();
            let min_valid = head.opts.min_valid_ms;
            let r = super::wal::Wal::open(dir, &mut |rec| match rec {
                super::wal::Record::Series { sref, labels } => g.restore(SeriesRef(sref), labels),
                super::wal::Record::Samples(s) => {
                    batch.clear();
                    batch.extend(
                        s.into_iter()
                            // Older samples are already in blocks.
                            .filter(|(_, t, _)| *t >= min_valid)
                            .map(|(r, t, v)| (SeriesRef(r), t, v)),
                    );
                    head.commit_locked(&mut g, &batch, 0);
                }
                super::wal::Record::Histograms(hs) => {
                    let hs: Vec<(SeriesRef, i64, HistogramRef)> = hs
                        .into_iter()
                        .filter(|(_, t, _)| *t >= min_valid)
                        .map(|(r, t, h)| (SeriesRef(r), t, h))
                        .collect();
                    head.commit_histograms_locked(&mut g, &hs);
                }
                super::wal::Record::Delete(d) => {
                    for (r, a, b) in d {
                        if let Some(id) = g.resolve(SeriesRef(r)) {
                            g.delete_range(id, a, b, head.opts.chunk_range_ms);
                        }
                    }
                }
            });
            g.rebuild_free_list();
            r.map_err(|e| StorageError::Wal(e.to_string()))?
        };
        let mut head = head;
        head.wal = Some(Arc::new(parking_lot::Mutex::new(wal)));
        let g = head.inner.read();
        head.metrics.series.set(g.live as i64);
        head.metrics.chunks.set(g.chunks as i64);
        drop(g);
        if replay.corruption.is_some() {
            head.metrics.wal_corruptions.inc();
        }
        Ok((head, replay.corruption))
    }

    /// Flushes and fsyncs the write-ahead log (no-op for an in-memory head).
    pub fn sync(&self) -> Result<(), StorageError> {
        match &self.wal {
            Some(w) => w
                .lock()
                .sync()
                .map_err(|e| StorageError::Wal(e.to_string())),
            None => Ok(()),
        }
    }

    /// Bytes of write-ahead log on disk (also refreshes its gauge).
    pub fn wal_size(&self) -> u64 {
        let n = self.wal.as_ref().map(|w| w.lock().size()).unwrap_or(0);
        self.metrics.wal_size.set(n as i64);
        n
    }

    /// Registers the head's metrics in `reg`.
    pub fn register_metrics(&self, reg: &mut Registry) {
        let m = &self.metrics;
        reg.register(
            "appliance_tsdb_head_series",
            "Total number of series in the head block.",
            m.series.clone(),
        );
        reg.register(
            "appliance_tsdb_head_chunks",
            "Total number of chunks in the head block.",
            m.chunks.clone(),
        );
        reg.register(
            "appliance_tsdb_head_samples_appended",
            "Total number of appended samples.",
            m.samples_appended.clone(),
        );
        reg.register(
            "appliance_tsdb_head_series_created",
            "Total number of series created in the head.",
            m.series_created.clone(),
        );
        reg.register(
            "appliance_tsdb_head_series_removed",
            "Total number of series removed from the head.",
            m.series_removed.clone(),
        );
        reg.register(
            "appliance_tsdb_out_of_order_samples",
            "Total number of out of order samples refused.",
            m.out_of_order.clone(),
        );
        reg.register(
            "appliance_tsdb_wal_storage_size_bytes",
            "Size of the write-ahead log on disk.",
            m.wal_size.clone(),
        );
        reg.register(
            "appliance_tsdb_head_chunks_storage_size_bytes",
            "Size of the head's sealed chunks, on disk or in memory.",
            m.chunks_storage.clone(),
        );
        reg.register(
            "appliance_tsdb_head_truncations",
            "Total number of head truncations (after a block was cut).",
            m.truncations.clone(),
        );
        reg.register(
            "appliance_tsdb_out_of_bounds_samples",
            "Total number of samples refused as older than the head's range.",
            m.out_of_bounds.clone(),
        );
        reg.register(
            "appliance_tsdb_wal_corruptions",
            "Write-ahead log corruptions found (and cut off) at replay.",
            m.wal_corruptions.clone(),
        );
    }

    /// Drops chunks entirely older than `before` and series left without samples, refuses
    /// appends older than `before` from now on, and drops the write-ahead log's segments that
    /// only hold older samples. Called once a block holds everything before `before`.
    /// Returns the number of series removed.
    pub fn truncate_before(&self, before: i64) -> usize {
        let mut g = self.inner.write();
        g.min_valid = g.min_valid.max(before);
        let mut removed = Vec::new();
        let mut dropped_chunks = 0u64;
        for (id, s) in g.series.iter_mut().enumerate() {
            let Some(s) = s.as_mut() else { continue };
            dropped_chunks += s.closed.retain(|c| c.max_t() >= before) as u64;
            s.hists.retain(|(t, _)| *t >= before);
            if !s.head.is_empty()
                && s.head.max_t() < before
                && s.closed.is_empty()
                && s.hists.is_empty()
            {
                removed.push(id as u32);
            } else if s.is_empty() {
                s.empty_passes += 1;
                if s.empty_passes >= 2 {
                    removed.push(id as u32);
                }
            }
        }
        g.chunks -= dropped_chunks;
        for id in &removed {
            g.remove(*id);
        }
        g.store.truncate(before);
        self.metrics.chunks_storage.set(g.store.size() as i64);
        g.min_t = g
            .series
            .iter()
            .flatten()
            .map(|s| s.min_t())
            .min()
            .unwrap_or(i64::MAX);
        if g.live == 0 {
            g.max_t = i64::MIN;
        }
        self.metrics.series.set(g.live as i64);
        self.metrics.chunks.set(g.chunks as i64);
        self.metrics.series_removed.inc_by(removed.len() as u64);
        self.metrics.truncations.inc();
        drop(g);
        if let Some(w) = &self.wal {
            if let Err(e) = self.truncate_wal(w, before) {
                crate::failure!(error, "storage", "wal_truncate", error = %e, "truncating the write-ahead log failed; it is kept");
            }
            self.metrics.wal_size.set(w.lock().size() as i64);
        }
        removed.len()
    }

    /// Deletes samples in `[mint, maxt]` of matching series (logged, so replay repeats it).
    /// Returns the number of series touched.
    pub fn delete(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<u64, StorageError> {
        let mut g = self.inner.write();
        let ids: Vec<u32> = g
            .candidates(matchers)
            .into_iter()
            .filter(|id| {
                g.series[*id as usize].as_ref().is_some_and(|s| {
                    matchers
                        .iter()
                        .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
                        && s.overlaps(mint, maxt)
                })
            })
            .collect();
        let recs: Vec<(u64, i64, i64)> = ids
            .iter()
            .map(|id| (g.make_ref(*id).0, mint, maxt))
            .collect();
        if let Some(w) = &self.wal {
            w.lock()
                .log_delete(&recs)
                .map_err(|e| StorageError::Wal(e.to_string()))?;
        }
        for id in &ids {
            g.delete_range(*id, mint, maxt, self.opts.chunk_range_ms);
        }
        self.metrics.chunks.set(g.chunks as i64);
        Ok(ids.len() as u64)
    }

    /// Samples held in the head.
    pub fn num_samples(&self) -> u64 {
        let g = self.inner.read();
        g.series
            .iter()
            .flatten()
            .map(|s| {
                s.closed.iter().map(|c| u64::from(c.len())).sum::<u64>()
                    + u64::from(s.head.len())
                    + s.hists.len() as u64
            })
            .sum()
    }

    /// Checkpoints the live series and drops segments older than `before`, holding the log's
    /// lock only to cut and to delete, so appends continue while the checkpoint is written.
    fn truncate_wal(
        &self,
        w: &parking_lot::Mutex<super::wal::Wal>,
        before: i64,
    ) -> Result<(), super::wal::WalError> {
        let (doomed, dir) = {
            let mut w = w.lock();
            (w.truncation_plan(before)?, w.dir().to_path_buf())
        };
        if doomed.is_empty() {
            return Ok(());
        }
        let live: Vec<(u64, Labels)> = {
            let g = self.inner.read();
            g.series
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    s.as_ref()
                        .map(|s| (g.make_ref(i as u32).0, s.labels.clone()))
                })
                .collect()
        };
        super::wal::Wal::write_checkpoint(&dir, &live)?;
        w.lock().remove_segments(&doomed)?;
        Ok(())
    }

    /// Oldest and newest sample timestamps in the head (`i64::MAX`, `i64::MIN` when empty).
    pub fn time_range(&self) -> (i64, i64) {
        let g = self.inner.read();
        (g.min_t, g.max_t)
    }

    /// Appends older than this are refused.
    pub fn min_valid(&self) -> i64 {
        self.inner.read().min_valid
    }

    /// Series with samples in `[mint, maxt)`, in label order, with their refs.
    pub fn series_in(&self, mint: i64, maxt: i64) -> Vec<(Labels, SeriesRef)> {
        let g = self.inner.read();
        let mut out: Vec<(Labels, SeriesRef)> = g
            .series
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_ref()?;
                s.overlaps(mint, maxt - 1)
                    .then(|| (s.labels.clone(), g.make_ref(i as u32)))
            })
            .collect();
        drop(g);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Copies of the chunks of `series` holding samples in `[mint, maxt)`. Chunks are cut at
    /// block-range boundaries, so for an aligned range they hold no samples outside it.
    pub fn chunks_of(
        &self,
        series: &[(Labels, SeriesRef)],
        mint: i64,
        maxt: i64,
    ) -> Vec<HeadSlice> {
        let g = self.inner.read();
        series
            .iter()
            .filter_map(|(labels, r)| {
                let s = g.series[g.resolve(*r)? as usize].as_ref()?;
                let wanted = |min_t: i64, max_t: i64| max_t >= mint && min_t < maxt;
                let mut cs: Vec<SealedChunk> = s
                    .closed
                    .iter()
                    .filter(|c| !c.is_empty() && wanted(c.min_t(), c.max_t()))
                    .filter_map(|c| {
                        let mut buf = Vec::new();
                        g.store.read(&c, &mut buf).then(|| {
                            SealedChunk::from_parts(buf.into_boxed_slice(), c.min_t(), c.max_t())
                        })
                    })
                    .collect();
                if !s.head.is_empty() && wanted(s.head.min_t(), s.head.max_t()) {
                    cs.push(SealedChunk::from(s.head.clone()));
                }
                let hs = s.histograms(mint, maxt - 1);
                (!cs.is_empty() || !hs.is_empty()).then(|| HeadSlice {
                    labels: labels.clone(),
                    chunks: cs,
                    histograms: hs,
                })
            })
            .collect()
    }

    /// Bytes of sealed chunks in the head's chunk files (or memory), as Prometheus counts its
    /// `chunks_head` toward size retention.
    pub fn chunks_storage_size(&self) -> u64 {
        self.inner.read().store.size()
    }

    /// Approximate bytes of chunk data held (for size retention's head share).
    pub fn chunk_bytes(&self) -> u64 {
        let g = self.inner.read();
        g.series
            .iter()
            .flatten()
            .map(|s| s.closed.iter().map(|c| c.size() as u64).sum::<u64>() + s.head.size() as u64)
            .sum()
    }

    /// Cardinality statistics, top `limit` entries per list.
    pub fn stats(&self, limit: usize) -> TsdbStats {
        let g = self.inner.read();
        let top = |mut v: Vec<(String, u64)>| {
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(limit);
            v
        };
        let mut by_metric = Vec::new();
        let mut by_pair = Vec::new();
        let mut value_counts = Vec::new();
        let mut mem = Vec::new();
        let mut pairs = 0u64;
        for (name, vals) in &g.postings {
            pairs += vals.len() as u64;
            value_counts.push((name.clone(), vals.len() as u64));
            let mut bytes = 0u64;
            for (v, ids) in vals {
                bytes += (v.len() * ids.len()) as u64;
                by_pair.push((format!("{name}={v}"), ids.len() as u64));
                if name == crate::model::METRIC_NAME {
                    by_metric.push((v.clone(), ids.len() as u64));
                }
            }
            mem.push((name.clone(), bytes));
        }
        TsdbStats {
            num_series: g.live,
            num_label_pairs: pairs,
            chunk_count: g.chunks,
            min_time: g.min_t,
            max_time: g.max_t,
            series_count_by_metric_name: top(by_metric),
            label_value_count_by_label_name: top(value_counts),
            memory_in_bytes_by_label_name: top(mem),
            series_count_by_label_value_pair: top(by_pair),
            store: Default::default(),
        }
    }

    fn commit_batch(
        &self,
        batch: &[(SeriesRef, i64, f64)],
        hbatch: &[(SeriesRef, i64, HistogramRef)],
        series_added: u64,
    ) -> CommitStats {
        let mut g = self.inner.write();
        if let Some(w) = &self.wal {
            let hrecs: Vec<(u64, i64, HistogramRef)> = hbatch
                .iter()
                .map(|(r, t, h)| (r.0, *t, h.clone()))
                .collect();
            let mut w = w.lock();
            let r = w
                .log_samples(batch)
                .and_then(|_| w.log_histograms(&hrecs))
                .and_then(|_| {
                    if self.opts.sync_every_commit {
                        w.sync()
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = r {
                crate::failure!(error, "storage", "wal_write", error = %e, "writing the WAL failed; samples are kept in memory only");
            }
        }
        let mut st = self.commit_locked(&mut g, batch, series_added);
        if !hbatch.is_empty() {
            let h = self.commit_histograms_locked(&mut g, hbatch);
            st.appended += h.appended;
            st.out_of_order += h.out_of_order;
            st.out_of_bounds += h.out_of_bounds;
            st.duplicate += h.duplicate;
        }
        st
    }

    fn commit_locked(
        &self,
        g: &mut Inner,
        batch: &[(SeriesRef, i64, f64)],
        series_added: u64,
    ) -> CommitStats {
        let mut st = CommitStats {
            series_added,
            ..Default::default()
        };
        let range = self.opts.chunk_range_ms.max(1);
        for (r, t, v) in batch {
            let Some((id, repeat)) = g.admit(*r, *t, &mut st) else {
                continue;
            };
            let Some(s) = g.series[id as usize].as_mut() else {
                continue;
            };
            if repeat {
                // Same timestamp and value is a harmless repeat; a different value is refused.
                if v.to_bits() != s.last_v
                    && !(is_stale_nan(*v) && is_stale_nan(f64::from_bits(s.last_v)))
                {
                    st.duplicate += 1;
                }
                continue;
            }
            let mut new_chunk = false;
            let crosses = !s.head.is_empty()
                && (t.div_euclid(range) != s.head.min_t().div_euclid(range)
                    || t - s.head.min_t() > MAX_CHUNK_SPAN_MS);
            if s.head.len() >= SAMPLES_PER_CHUNK || crosses {
                s.closed.push(g.store.write(&s.head));
                s.head.clear();
                new_chunk = true;
            }
            s.head.append(*t, *v);
            s.last_t = *t;
            s.last_v = v.to_bits();
            st.appended += 1;
            if new_chunk {
                g.chunks += 1;
            }
            g.min_t = g.min_t.min(*t);
            g.max_t = g.max_t.max(*t);
        }
        self.metrics.series.set(g.live as i64);
        self.metrics.chunks.set(g.chunks as i64);
        self.metrics.chunks_storage.set(g.store.size() as i64);
        self.metrics.samples_appended.inc_by(st.appended);
        self.metrics.out_of_order.inc_by(st.out_of_order);
        self.metrics.out_of_bounds.inc_by(st.out_of_bounds);
        self.commits.fetch_add(1, Ordering::Relaxed);
        st
    }

    fn commit_histograms_locked(
        &self,
        g: &mut Inner,
        batch: &[(SeriesRef, i64, HistogramRef)],
    ) -> CommitStats {
        let mut st = CommitStats::default();
        for (r, t, h) in batch {
            let Some((id, repeat)) = g.admit(*r, *t, &mut st) else {
                continue;
            };
            let Some(s) = g.series[id as usize].as_mut() else {
                continue;
            };
            if repeat {
                if s.hists
                    .last()
                    .is_none_or(|(lt, lh)| *lt != *t || **lh != **h)
                {
                    st.duplicate += 1;
                }
                continue;
            }
            s.hists.push((*t, h.clone()));
            s.last_t = *t;
            st.appended += 1;
            g.min_t = g.min_t.min(*t);
            g.max_t = g.max_t.max(*t);
        }
        self.metrics.samples_appended.inc_by(st.appended);
        self.metrics.out_of_order.inc_by(st.out_of_order);
        self.metrics.out_of_bounds.inc_by(st.out_of_bounds);
        st
    }

    /// The ref of `labels`, creating the series when new (the bool says whether it was).
    fn get_or_create(&self, labels: &Labels) -> (SeriesRef, bool) {
        let hash = labels.stable_hash();
        {
            let g = self.inner.read();
            if let Some(id) = g.find(hash, labels) {
                return (g.make_ref(id), false);
            }
        }
        let mut g = self.inner.write();
        if let Some(id) = g.find(hash, labels) {
            return (g.make_ref(id), false);
        }
        let id = g.create(hash, labels.clone());
        if let Some(w) = &self.wal {
            if let Err(e) = w.lock().log_series(g.make_ref(id).0, labels) {
                crate::failure!(error, "storage", "wal_write", error = %e, "writing the WAL failed; series kept in memory only");
            }
        }
        self.metrics.series_created.inc();
        self.metrics.series.set(g.live as i64);
        (g.make_ref(id), true)
    }
}

struct HeadAppender {
    head: Head,
    batch: Vec<(SeriesRef, i64, f64)>,
    hbatch: Vec<(SeriesRef, i64, HistogramRef)>,
    ebatch: Vec<(Labels, super::Exemplar)>,
    series_added: u64,
}

impl Appender for HeadAppender {
    fn append(&mut self, labels: &Labels, t_ms: i64, v: f64) -> Result<SeriesRef, StorageError> {
        if labels.metric_name().is_empty() {
            return Err(StorageError::InvalidLabels(format!(
                "{labels}: no metric name"
            )));
        }
        let (r, created) = self.head.get_or_create(labels);
        self.series_added += u64::from(created);
        self.batch.push((r, t_ms, v));
        Ok(r)
    }

    fn append_ref(&mut self, r: SeriesRef, t_ms: i64, v: f64) -> Result<(), StorageError> {
        if self.head.inner.read().resolve(r).is_none() {
            return Err(StorageError::UnknownRef);
        }
        self.batch.push((r, t_ms, v));
        Ok(())
    }

    fn append_histogram(
        &mut self,
        labels: &Labels,
        t_ms: i64,
        h: HistogramRef,
    ) -> Result<SeriesRef, StorageError> {
        if labels.metric_name().is_empty() {
            return Err(StorageError::InvalidLabels(format!(
                "{labels}: no metric name"
            )));
        }
        let (r, created) = self.head.get_or_create(labels);
        self.series_added += u64::from(created);
        self.hbatch.push((r, t_ms, h));
        Ok(r)
    }

    fn append_exemplar(&mut self, labels: &Labels, e: super::Exemplar) {
        self.ebatch.push((labels.clone(), e));
    }

    fn commit(self: Box<Self>) -> Result<CommitStats, StorageError> {
        let stats = self
            .head
            .commit_batch(&self.batch, &self.hbatch, self.series_added);
        for (labels, e) in self.ebatch {
            // Repeats of the newest exemplar (every scrape of an unchanged target) and
            // stale ones are dropped, as Prometheus drops them.
            let _ = self.head.exemplars.add(&labels, e);
        }
        Ok(stats)
    }

    fn rollback(self: Box<Self>) {}
}

impl Appendable for Head {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(HeadAppender {
            head: self.clone(),
            batch: Vec::new(),
            hbatch: Vec::new(),
            ebatch: Vec::new(),
            series_added: 0,
        })
    }
}

impl Querier for Head {
    fn exemplars(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<super::ExemplarSeries> {
        self.exemplars.select(sets, mint, maxt)
    }

    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let g = self.inner.read();
        let mut out: Vec<Series> = g
            .matching(matchers, mint, maxt)
            .map(|s| Series {
                labels: s.labels.clone(),
                samples: s.samples(&g.store, mint, maxt),
                histograms: s.histograms(mint, maxt),
            })
            .filter(|s| !s.samples.is_empty() || !s.histograms.is_empty())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let g = self.inner.read();
        let mut out: Vec<Labels> = g
            .matching(matchers, mint, maxt)
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String> {
        let g = self.inner.read();
        let mut names = BTreeSet::new();
        for s in g.matching(matchers, mint, maxt) {
            names.extend(s.labels.iter().map(|l| l.name.to_string()));
        }
        names.into_iter().collect()
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String> {
        let g = self.inner.read();
        let mut vals = BTreeSet::new();
        for s in g.matching(matchers, mint, maxt) {
            if let Some(v) = s.labels.get(name) {
                vals.insert(v.to_string());
            }
        }
        vals.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    #[test]
    fn append_commit_query() {
        let h = Head::new(HeadOptions::default());
        let mut a = h.appender();
        for i in 0..300 {
            a.append(&l(&[("__name__", "up"), ("job", "a")]), i * 1000, i as f64)
                .unwrap();
            a.append(&l(&[("__name__", "up"), ("job", "b")]), i * 1000, 1.0)
                .unwrap();
        }
        let st = a.commit().unwrap();
        assert_eq!((st.appended, st.series_added), (600, 2));
        let s = h.select(
            &[
                m(MatchOp::Equal, "__name__", "up"),
                m(MatchOp::Regex, "job", "a|c"),
            ],
            10_000,
            20_000,
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].samples.len(), 11);
        assert_eq!(s[0].samples[0], (10_000, 10.0));
        assert_eq!(
            h.label_values("job", &[], i64::MIN, i64::MAX),
            vec!["a", "b"]
        );
        assert_eq!(
            h.label_names(&[m(MatchOp::Equal, "job", "b")], i64::MIN, i64::MAX),
            vec!["__name__", "job"]
        );
        assert_eq!(h.series(&[m(MatchOp::NotEqual, "job", "a")], 0, 1).len(), 1);
        assert!(h
            .select(&[m(MatchOp::Equal, "__name__", "up")], 400_000, 500_000)
            .is_empty());
        assert_eq!(h.stats(10).num_series, 2);
    }

    #[test]
    fn out_of_order_and_duplicates_are_counted_not_stored() {
        let h = Head::new(HeadOptions::default());
        let s = l(&[("__name__", "x")]);
        let mut a = h.appender();
        a.append(&s, 2000, 1.0).unwrap();
        a.append(&s, 1000, 1.0).unwrap();
        a.append(&s, 2000, 2.0).unwrap();
        a.append(&s, 2000, 1.0).unwrap();
        a.append(&s, 3000, stale_nan()).unwrap();
        let st = a.commit().unwrap();
        assert_eq!((st.appended, st.out_of_order, st.duplicate), (2, 1, 1));
        let got = h.select(&[m(MatchOp::Equal, "__name__", "x")], 0, 5000);
        assert!(crate::model::is_stale_nan(got[0].samples[1].1));
    }

    #[test]
    fn rollback_stores_nothing() {
        let h = Head::new(HeadOptions::default());
        let mut a = h.appender();
        a.append(&l(&[("__name__", "x")]), 1, 1.0).unwrap();
        a.rollback();
        assert!(h.series(&[], i64::MIN, i64::MAX).is_empty());
        assert!(h
            .select(&[m(MatchOp::Equal, "__name__", "x")], i64::MIN, i64::MAX)
            .is_empty());
    }

    #[test]
    fn refs_survive_until_the_series_is_removed() {
        let h = Head::new(HeadOptions::default());
        let mut a = h.appender();
        let r = a.append(&l(&[("__name__", "x")]), 0, 1.0).unwrap();
        a.append_ref(r, 10, 2.0).unwrap();
        a.commit().unwrap();
        h.truncate_before(99_000);
        let mut a = h.appender();
        assert_eq!(a.append_ref(r, 20, 3.0), Err(StorageError::UnknownRef));
        let r2 = a.append(&l(&[("__name__", "y")]), 100_000, 1.0).unwrap();
        assert_ne!(r, r2, "a reused slot gets a new generation");
    }

    /// A chunk never spans more than its ref can hold, whatever the block range.
    #[test]
    fn chunks_are_cut_before_their_span_outgrows_a_ref() {
        let h = Head::new(HeadOptions {
            chunk_range_ms: i64::MAX / 4,
            ..HeadOptions::default()
        });
        let day = 86_400_000i64;
        let x = l(&[("__name__", "x")]);
        let mut a = h.appender();
        for t in [0, day, 60 * day, 61 * day] {
            a.append(&x, t, t as f64).unwrap();
        }
        a.commit().unwrap();
        let got = h.select(&[m(MatchOp::Equal, "__name__", "x")], i64::MIN, i64::MAX);
        assert_eq!(got[0].samples.len(), 4);
        let slices = h.chunks_of(&h.series_in(i64::MIN, i64::MAX), i64::MIN, i64::MAX);
        let spans: Vec<(i64, i64)> = slices[0]
            .chunks
            .iter()
            .map(|c| (c.min_t(), c.max_t()))
            .collect();
        assert_eq!(spans, [(0, day), (60 * day, 61 * day)]);
    }

    #[test]
    fn truncate_drops_old_series_and_postings() {
        let h = Head::new(HeadOptions::default());
        let mut a = h.appender();
        a.append(&l(&[("__name__", "old")]), 0, 1.0).unwrap();
        a.append(&l(&[("__name__", "new")]), 5000, 1.0).unwrap();
        a.commit().unwrap();
        assert_eq!(h.truncate_before(4500), 1);
        assert_eq!(
            h.label_values("__name__", &[], i64::MIN, i64::MAX),
            vec!["new"]
        );
        let mut a = h.appender();
        a.append(&l(&[("__name__", "again")]), 6000, 1.0).unwrap();
        a.commit().unwrap();
        assert_eq!(
            h.label_values("__name__", &[], i64::MIN, i64::MAX),
            vec!["again", "new"]
        );
    }
}

#[cfg(test)]
mod durability_tests {
    use super::*;

    fn l(name: &str, i: usize) -> Labels {
        Labels::from_pairs([("__name__", name.to_string()), ("i", i.to_string())])
    }

    #[test]
    fn reopened_head_has_everything_synced() {
        let dir = tempfile::tempdir().unwrap();
        let all = |h: &Head| {
            h.select(
                &[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()],
                i64::MIN,
                i64::MAX,
            )
        };
        let before = {
            let (h, corruption) = Head::open(dir.path(), HeadOptions::default()).unwrap();
            assert!(corruption.is_none());
            for t in 0..300 {
                let mut a = h.appender();
                for i in 0..5 {
                    a.append(&l("m", i), t * 1000, (t * i as i64) as f64)
                        .unwrap();
                }
                a.commit().unwrap();
            }
            h.sync().unwrap();
            all(&h)
        };
        let (h, _) = Head::open(dir.path(), HeadOptions::default()).unwrap();
        assert_eq!(all(&h), before);
        // New series after a restart get refs that do not collide with replayed ones.
        let mut a = h.appender();
        a.append(&l("n", 0), 400_000, 1.0).unwrap();
        a.commit().unwrap();
        h.sync().unwrap();
        let (h2, _) = Head::open(dir.path(), HeadOptions::default()).unwrap();
        assert_eq!(all(&h2).len(), 6);
        assert_eq!(all(&h2)[..5], before[..]);
    }

    /// Sealed chunks in files answer exactly as chunks in memory do, through deletes,
    /// truncation and a restart, and their files go with the truncated range.
    #[test]
    fn chunks_in_files_answer_as_chunks_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("head_chunks");
        let opts = HeadOptions {
            chunk_range_ms: 7_200_000,
            chunks_dir: Some(chunks_dir.clone()),
            ..HeadOptions::default()
        };
        let all = |h: &Head| {
            h.select(
                &[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()],
                i64::MIN,
                i64::MAX,
            )
        };
        let mem = Head::new(HeadOptions::default());
        let (disk, _) = Head::open(&dir.path().join("wal"), opts.clone()).unwrap();
        // 3 hours at 10 s for 300 series: many chunks, many flushes, two block ranges.
        for t in 0..1080i64 {
            for h in [&mem, &disk] {
                let mut a = h.appender();
                for i in 0..300 {
                    a.append(&l("m", i), t * 10_000, (t * i as i64) as f64 * 0.25)
                        .unwrap();
                }
                a.commit().unwrap();
            }
        }
        assert!(
            all(&disk) == all(&mem),
            "chunks in files answer differently"
        );
        let on_disk = || -> u64 {
            std::fs::read_dir(&chunks_dir)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        assert!(
            on_disk() > 100_000,
            "sealed chunks are in files: {}",
            on_disk()
        );
        let sel = [Matcher::new(MatchOp::Regex, "i", "1.*").unwrap()];
        for h in [&mem, &disk] {
            h.delete(&sel, 1_000_000, 2_000_000).unwrap();
        }
        assert!(
            all(&disk) == all(&mem),
            "chunks in files answer differently"
        );
        let window = |h: &Head| h.chunks_of(&h.series_in(0, 7_200_000), 0, 7_200_000);
        let (a, b) = (window(&mem), window(&disk));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.chunks, y.chunks);
        }
        for h in [&mem, &disk] {
            h.truncate_before(7_200_000);
        }
        assert!(
            all(&disk) == all(&mem),
            "chunks in files answer differently"
        );
        disk.sync().unwrap();
        let expected = all(&disk);
        drop(disk);
        // As the Db does: what was truncated stays out of the replay.
        let opts = HeadOptions {
            min_valid_ms: 7_200_000,
            ..opts
        };
        let (reopened, _) = Head::open(&dir.path().join("wal"), opts).unwrap();
        assert!(all(&reopened) == expected, "the reopened head differs");
    }
}
