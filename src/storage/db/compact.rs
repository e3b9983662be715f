//! Cutting the head into blocks, loading blocks other processes wrote, planning and running
//! compactions, and writing blocks (from the head, from chunks, from merged blocks). It owns no
//! retention decision.

use super::*;

impl Db {
    /// Opens block directories that appeared since the last look (an import while running,
    /// a block copied in by hand), as Prometheus's block reload does.
    pub(super) fn load_new_blocks(&self) {
        let Ok(rd) = fs::read_dir(&self.inner.dir) else {
            return;
        };
        let known: HashSet<String> = self
            .inner
            .blocks
            .read()
            .iter()
            .map(|b| b.meta().ulid.clone())
            .collect();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            if known.contains(&name)
                || name.contains('.')
                || !p.is_dir()
                || !p.join("meta.json").exists()
            {
                continue;
            }
            match Block::open(&p) {
                Ok(b) => {
                    tracing::info!(ulid = %name, "new block found in the data directory");
                    self.add_block(b);
                }
                Err(e) => {
                    self.inner.metrics.checksum_failures.inc();
                    let q = quarantine_dir(
                        &self.inner.dir,
                        &p,
                        &name,
                        &e.to_string(),
                        &self.inner.metrics,
                    );
                    self.inner.quarantined.lock().push(q);
                }
            }
        }
    }

    /// Cuts blocks from the head while it spans more than 1.5 block ranges, compacts, and
    /// applies retention. Called every minute; errors are counted and logged, and the next
    /// call retries.
    pub fn maintain(&self) {
        let _g = self.inner.maintain.lock();
        self.load_new_blocks();
        let range = self.inner.opts.read().block_range_ms;
        loop {
            let (hmin, hmax) = self.inner.head.time_range();
            // A sample stamped far in the future (a target's clock, `honor_timestamps`) must
            // not push current data out of the head: the wall clock caps the head's end.
            let hmax = hmax.min(now_ms());
            if hmin == i64::MAX || hmax - hmin <= range / 2 * 3 {
                break;
            }
            let a = hmin.div_euclid(range) * range;
            if let Err(e) = self.cut_head(a, a + range) {
                self.inner.metrics.head_cuts_failed.inc();
                crate::failure!(error, "storage", "head_persist", error = %e, "persisting a block from the head failed; will retry");
                break;
            }
        }
        self.compact_all();
        self.apply_retention();
        self.update_gauges();
    }

    /// Persists the head's samples in `[a, b)` as a block, then drops them from the head and
    /// the WAL.
    pub(super) fn cut_head(&self, a: i64, b: i64) -> Result<(), DbError> {
        if let Some(block) = write_block_from_head(&self.inner.dir, &self.inner.head, a, b)? {
            let opened = Block::open(&self.inner.dir.join(&block.ulid))?;
            tracing::info!(ulid = %block.ulid, series = block.stats.num_series, samples = block.stats.num_samples, "block persisted from the head");
            self.add_block(opened);
            self.inner.metrics.head_cuts.inc();
        }
        let path = self.inner.dir.join(HEAD_MIN_VALID_FILE);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, b.to_string()).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.inner.head.truncate_before(b);
        Ok(())
    }

    pub(super) fn add_block(&self, b: Block) {
        let mut list = self.inner.blocks.write();
        list.push(Arc::new(b));
        list.sort_by(|a, b| {
            (a.meta().min_time, &a.meta().ulid).cmp(&(b.meta().min_time, &b.meta().ulid))
        });
    }

    /// Runs compaction plans until none is left.
    pub(super) fn compact_all(&self) {
        for _ in 0..64 {
            let Some(group) = self.plan() else { return };
            let started = std::time::Instant::now();
            match self.compact(&group) {
                Ok(meta) => {
                    self.inner.metrics.compactions.inc();
                    self.inner
                        .metrics
                        .compaction_duration
                        .observe(started.elapsed().as_secs_f64());
                    tracing::info!(ulid = %meta.ulid, sources = group.len(), min_time = meta.min_time, max_time = meta.max_time, "blocks compacted");
                }
                Err(e) => {
                    self.inner.metrics.compactions_failed.inc();
                    crate::failure!(error, "storage", "compaction", error = %e, "compaction failed");
                    return;
                }
            }
        }
    }

    /// Which blocks to merge next: overlapping blocks first, then, per compaction range,
    /// aligned groups that fill the range or lie before the newest block (Prometheus's plan).
    pub(super) fn plan(&self) -> Option<Vec<Arc<Block>>> {
        let blocks = self.inner.blocks.read().clone();
        // Overlaps (backfill over existing data, or a crash that re-cut the head).
        let mut group: Vec<Arc<Block>> = Vec::new();
        let mut group_max = i64::MIN;
        for b in &blocks {
            if !group.is_empty() && b.meta().min_time < group_max {
                group.push(b.clone());
                group_max = group_max.max(b.meta().max_time);
                continue;
            }
            if group.len() > 1 {
                return Some(group);
            }
            group = vec![b.clone()];
            group_max = b.meta().max_time;
        }
        if group.len() > 1 {
            return Some(group);
        }
        if blocks.len() < 2 {
            return None;
        }
        // The newest block is left alone, giving backups a window (as Prometheus does).
        let cands = &blocks[..blocks.len() - 1];
        let high = cands.last().map(|b| b.meta().min_time).unwrap_or(i64::MIN);
        for r in self.inner.opts.read().ranges().into_iter().skip(1) {
            let mut windows: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in cands {
                let w = b.meta().min_time.div_euclid(r) * r;
                if b.meta().max_time <= w + r {
                    windows.entry(w).or_default().push(b.clone());
                }
            }
            for (_, p) in windows {
                let mint = p[0].meta().min_time;
                let maxt = p.iter().map(|b| b.meta().max_time).max().unwrap_or(mint);
                if p.len() > 1 && (maxt - mint == r || maxt <= high) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Merges `group` into one block, series by series (memory bounded by one series' samples
    /// plus the new index), then swaps it in and deletes the parents.
    pub(super) fn compact(&self, group: &[Arc<Block>]) -> Result<block::BlockMeta, DbError> {
        let mint = group.iter().map(|b| b.meta().min_time).min().unwrap_or(0);
        let maxt = group.iter().map(|b| b.meta().max_time).max().unwrap_or(0);
        let mut symbols = BTreeSet::new();
        for b in group {
            symbols.extend(b.symbols().map(str::to_string));
        }
        let ulid = block::new_ulid();
        let mut w = BlockWriter::create(&self.inner.dir, &ulid, mint, maxt, symbols)?;
        let mut cursors = Vec::with_capacity(group.len());
        for b in group {
            cursors.push(SeriesCursor::new(b)?);
        }
        let result = (|| -> Result<(), (usize, BlockError)> {
            loop {
                let mut next: Option<Labels> = None;
                for c in &cursors {
                    if let Some(s) = &c.cur {
                        if next.as_ref().is_none_or(|n| s.labels < *n) {
                            next = Some(s.labels.clone());
                        }
                    }
                }
                let Some(labels) = next else { return Ok(()) };
                let holders: Vec<usize> = (0..cursors.len())
                    .filter(|i| cursors[*i].cur.as_ref().is_some_and(|s| s.labels == labels))
                    .collect();
                let single = holders.len() == 1 && {
                    let c = &cursors[holders[0]];
                    let id = c.cur.as_ref().map(|s| s.id).unwrap_or(0);
                    !c.block.tombstones().intervals.iter().any(|t| t.0 == id)
                };
                if single {
                    let c = &cursors[holders[0]];
                    let Some(s) = c.cur.as_ref() else {
                        return Ok(());
                    };
                    let mut chunks = Vec::with_capacity(s.chunks.len());
                    for m in &s.chunks {
                        let data = c.block.chunk_bytes(m.offset).map_err(|e| (holders[0], e))?;
                        let n = u64::from(u16::from_be_bytes([data[0], data[1]]));
                        chunks.push((m.min_t, m.max_t, data.to_vec(), n));
                    }
                    let mut hchunks = Vec::with_capacity(s.hchunks.len());
                    for m in &s.hchunks {
                        let data = c.block.chunk_bytes(m.offset).map_err(|e| (holders[0], e))?;
                        hchunks.push((
                            m.min_t,
                            m.max_t,
                            data.to_vec(),
                            block::hist_chunk_len(data),
                        ));
                    }
                    w.add_series(&labels, &chunks, &hchunks)
                        .map_err(|e| (usize::MAX, e))?;
                } else {
                    let mut parts = Vec::with_capacity(holders.len());
                    let mut hparts = Vec::with_capacity(holders.len());
                    for i in &holders {
                        let c = &cursors[*i];
                        if let Some(s) = c.cur.as_ref() {
                            parts.push(
                                c.block
                                    .samples(s, i64::MIN, i64::MAX)
                                    .map_err(|e| (*i, e))?,
                            );
                            hparts.push(
                                c.block
                                    .histograms(s, i64::MIN, i64::MAX)
                                    .map_err(|e| (*i, e))?,
                            );
                        }
                    }
                    let samples = merge_samples(parts);
                    let hists = merge_samples(hparts);
                    if !samples.is_empty() || !hists.is_empty() {
                        w.add_samples(&labels, &samples, &hists)
                            .map_err(|e| (usize::MAX, e))?;
                    }
                }
                for i in holders {
                    cursors[i].advance().map_err(|e| (i, e))?;
                }
            }
        })();
        if let Err((i, e)) = result {
            let _ = fs::remove_dir_all(self.inner.dir.join(format!("{ulid}.tmp-for-creation")));
            if let Some(b) = group.get(i) {
                crate::failure!(error, "storage", "block_damaged", ulid = %b.meta().ulid, error = %e, "block damaged; quarantining it");
                self.quarantine(b, &e);
            }
            return Err(e.into());
        }
        let level = group
            .iter()
            .map(|b| b.meta().compaction.level)
            .max()
            .unwrap_or(1)
            + 1;
        let mut sources: Vec<String> = group
            .iter()
            .flat_map(|b| b.meta().compaction.sources.clone())
            .collect();
        sources.sort();
        sources.dedup();
        let meta = w.finish(BlockCompaction {
            level,
            sources,
            parents: group.iter().map(|b| b.meta().ulid.clone()).collect(),
        })?;
        let opened = Block::open(&self.inner.dir.join(&meta.ulid))?;
        {
            let mut list = self.inner.blocks.write();
            list.retain(|x| !group.iter().any(|g| Arc::ptr_eq(g, x)));
            list.push(Arc::new(opened));
            list.sort_by(|a, b| {
                (a.meta().min_time, &a.meta().ulid).cmp(&(b.meta().min_time, &b.meta().ulid))
            });
        }
        for b in group {
            delete_block_dir(b.dir());
        }
        Ok(meta)
    }

    /// Persists every sample in the head as blocks (used by import and snapshots).
    pub fn flush_head(&self) -> Result<(), DbError> {
        let _g = self.inner.maintain.lock();
        let range = self.inner.opts.read().block_range_ms;
        loop {
            let (hmin, _) = self.inner.head.time_range();
            if hmin == i64::MAX {
                return Ok(());
            }
            let a = hmin.div_euclid(range) * range;
            self.cut_head(a, a + range)?;
        }
    }

    /// Runs compaction now (after an import).
    pub fn compact_now(&self) {
        let _g = self.inner.maintain.lock();
        self.compact_all();
        self.update_gauges();
    }
}

/// Series per batch when a block is cut from the head: only one batch of chunk copies is
/// held at a time, so cutting a large head does not double its memory.
const CUT_BATCH: usize = 10_000;

/// Walks a block's series in label order, one decoded entry at a time.
struct SeriesCursor<'a> {
    block: &'a Block,
    ids: Vec<u32>,
    pos: usize,
    cur: Option<block::BlockSeries>,
}

impl<'a> SeriesCursor<'a> {
    fn new(block: &'a Arc<Block>) -> Result<Self, BlockError> {
        let ids = block.all_ids()?;
        let mut c = SeriesCursor {
            block,
            ids,
            pos: 0,
            cur: None,
        };
        c.advance()?;
        Ok(c)
    }

    fn advance(&mut self) -> Result<(), BlockError> {
        self.cur = match self.ids.get(self.pos) {
            Some(id) => Some(self.block.series(*id)?),
            None => None,
        };
        self.pos += 1;
        Ok(())
    }
}

pub(super) fn delete_block_dir(dir: &Path) {
    let tmp = dir.with_extension("tmp-for-deletion");
    let target = if fs::rename(dir, &tmp).is_ok() {
        tmp
    } else {
        dir.to_path_buf()
    };
    if let Err(e) = fs::remove_dir_all(&target) {
        crate::failure!(error, "storage", "block_delete", path = %target.display(), error = %e, "deleting a block failed");
    }
}

/// Writes head chunks (whole chunks inside `[a, b)` as they are, others re-encoded from their
/// samples in range) as a new level-1 block under `parent`.
pub fn write_block_from_chunks(
    parent: &Path,
    a: i64,
    b: i64,
    series: Vec<(Labels, Vec<crate::storage::chunk::XorChunk>)>,
) -> Result<block::BlockMeta, DbError> {
    let symbols = symbols_of(series.iter().map(|(l, _)| l));
    let slices = series.into_iter().map(|(labels, chunks)| HeadSlice {
        labels,
        chunks: chunks
            .into_iter()
            .map(crate::storage::chunk::SealedChunk::from)
            .collect(),
        histograms: Vec::new(),
    });
    write_series_block(parent, a, b, symbols, slices)
}

/// Writes the head's samples in `[a, b)` as a new level-1 block under `parent`; `None` when
/// the head has none there.
pub fn write_block_from_head(
    parent: &Path,
    head: &Head,
    a: i64,
    b: i64,
) -> Result<Option<block::BlockMeta>, DbError> {
    let list = head.series_in(a, b);
    if list.is_empty() {
        return Ok(None);
    }
    let symbols = symbols_of(list.iter().map(|(l, _)| l));
    let batches = list
        .chunks(CUT_BATCH)
        .flat_map(|batch| head.chunks_of(batch, a, b));
    write_series_block(parent, a, b, symbols, batches).map(Some)
}

pub(super) fn symbols_of<'a>(labels: impl Iterator<Item = &'a Labels>) -> BTreeSet<String> {
    let mut symbols = BTreeSet::new();
    for l in labels {
        for x in l.iter() {
            if !symbols.contains(x.name) {
                symbols.insert(x.name.to_string());
            }
            if !symbols.contains(x.value) {
                symbols.insert(x.value.to_string());
            }
        }
    }
    symbols
}

pub(super) fn write_series_block(
    parent: &Path,
    a: i64,
    b: i64,
    symbols: BTreeSet<String>,
    series: impl Iterator<Item = HeadSlice>,
) -> Result<block::BlockMeta, DbError> {
    let ulid = block::new_ulid();
    let mut w = BlockWriter::create(parent, &ulid, a, b, symbols)?;
    for HeadSlice {
        labels,
        chunks,
        histograms,
    } in series
    {
        let hists: Vec<_> = histograms
            .into_iter()
            .filter(|(t, _)| *t >= a && *t < b)
            .collect();
        if chunks.iter().all(|c| c.min_t() >= a && c.max_t() < b) {
            let enc: Vec<(i64, i64, Vec<u8>, u64)> = chunks
                .iter()
                .map(|c| (c.min_t(), c.max_t(), c.bytes().to_vec(), u64::from(c.len())))
                .collect();
            w.add_series(&labels, &enc, &block::encode_hist_chunks(&hists))?;
        } else {
            let samples: Vec<(i64, f64)> = chunks
                .iter()
                .flat_map(|c| c.iter().collect::<Vec<_>>())
                .filter(|(t, _)| *t >= a && *t < b)
                .collect();
            if !samples.is_empty() || !hists.is_empty() {
                w.add_samples(&labels, &samples, &hists)?;
            }
        }
    }
    Ok(w.finish(BlockCompaction {
        level: 1,
        sources: vec![ulid],
        parents: Vec::new(),
    })?)
}
