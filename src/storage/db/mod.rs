//! The durable store: the head (with its write-ahead log) plus the persisted blocks of one data
//! directory. It owns the blocks' life: cutting the head into blocks, compacting them,
//! retention, quarantining damaged blocks, tombstones and snapshots, and it answers queries by
//! merging blocks and head.
//!
//! It knows nothing of scraping, PromQL or HTTP; callers see the `Appendable`/`Querier` seams
//! and a few operations (`maintain`, `delete_series`, `snapshot`, `stats`).

mod admin;
mod compact;
mod quarantine;
mod retention;
mod stats;

use compact::delete_block_dir;
pub use compact::{write_block_from_chunks, write_block_from_head};
use quarantine::{earlier_quarantine, quarantine_dir};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::block::{self, Block, BlockCompaction, BlockError, BlockWriter};
use super::head::{HeadSlice, DEFAULT_BLOCK_RANGE_MS};
use super::{Appendable, Appender, Head, HeadOptions, Querier, Series, StorageError, TsdbStats};
use crate::model::{Labels, Matcher};

const HEAD_MIN_VALID_FILE: &str = "head_min_valid";
const QUARANTINE_DIR: &str = "quarantine";
const SNAPSHOT_DIR: &str = "snapshots";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A block could not be written or read.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The head or its log refused.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// File-system failure outside a block.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process (a running appliance) holds the data directory.
    #[error("{0}: the data directory is in use by another process (is the appliance running?)")]
    Locked(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Store settings.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Range of a block cut from the head (2 h, as Prometheus).
    pub block_range_ms: i64,
    /// Delete blocks whose end is older than this behind the newest block (0 = keep).
    pub retention_ms: i64,
    /// Delete the oldest blocks while WAL + blocks exceed this many bytes (0 = no limit).
    pub retention_bytes: u64,
    /// Fsync the WAL on every commit (`storage.wal.sync_interval: 0s`).
    pub wal_sync_every_commit: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            block_range_ms: DEFAULT_BLOCK_RANGE_MS,
            retention_ms: 15 * 24 * 3600 * 1000,
            retention_bytes: 0,
            wal_sync_every_commit: false,
        }
    }
}

impl DbOptions {
    /// Compaction ranges: the block range times powers of 3, up to a tenth of the retention
    /// time and at most 31 days (Prometheus's rule).
    pub fn ranges(&self) -> Vec<i64> {
        let month = 31 * 24 * 3600 * 1000;
        let max = if self.retention_ms > 0 {
            (self.retention_ms / 10).min(month)
        } else {
            month
        };
        let mut out = vec![self.block_range_ms];
        let mut r = self.block_range_ms;
        for _ in 0..9 {
            r *= 3;
            if r > max {
                break;
            }
            out.push(r);
        }
        out
    }
}

/// One persisted block, for `/api/v1/status/tsdb` and the UI.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockInfo {
    /// Its id.
    pub ulid: String,
    /// First timestamp covered (ms).
    pub min_time: i64,
    /// End of its range (ms, exclusive).
    pub max_time: i64,
    /// Series.
    pub num_series: u64,
    /// Samples.
    pub num_samples: u64,
    /// Chunks.
    pub num_chunks: u64,
    /// Tombstoned intervals.
    pub num_tombstones: u64,
    /// Compaction level.
    pub level: u32,
    /// Bytes on disk.
    pub bytes: u64,
}

/// A block moved aside because it failed a check.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedBlock {
    /// Its id (directory name).
    pub ulid: String,
    /// What was wrong.
    pub reason: String,
    /// Where it now lies.
    pub path: String,
    /// When it was moved (ms).
    pub time: i64,
    /// The time range it held (ms; 0 and 0 when its meta.json is unreadable).
    pub min_time: i64,
    /// End of that range.
    pub max_time: i64,
}

/// Figures of the in-memory head alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadFigures {
    /// Series in the head.
    pub num_series: u64,
    /// Label pairs in the head.
    pub num_label_pairs: u64,
    /// Chunks in the head.
    pub chunk_count: u64,
    /// Oldest sample in the head (ms), `i64::MAX` when empty.
    pub min_time: i64,
    /// Newest sample in the head (ms), `i64::MIN` when empty.
    pub max_time: i64,
}

/// Whole-store figures beside the head's.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStats {
    /// Distinct series over blocks and head.
    pub num_series: u64,
    /// Distinct label pairs over blocks and head.
    pub num_label_pairs: u64,
    /// Chunks in blocks and head.
    pub chunk_count: u64,
    /// Samples in blocks plus head.
    pub num_samples: u64,
    /// Oldest sample (ms), `i64::MAX` when empty.
    pub min_time: i64,
    /// Newest sample (ms), `i64::MIN` when empty.
    pub max_time: i64,
    /// Bytes of blocks on disk.
    pub blocks_bytes: u64,
    /// Bytes of write-ahead log on disk.
    pub wal_bytes: u64,
    /// Persisted blocks, oldest first.
    pub blocks: Vec<BlockInfo>,
    /// Blocks moved aside since start (and found in the quarantine folder).
    pub quarantined: Vec<QuarantinedBlock>,
    /// The in-memory head alone.
    pub head: HeadFigures,
}

#[derive(Clone)]
struct DbMetrics {
    blocks_loaded: Gauge,
    compactions: Counter,
    compactions_failed: Counter,
    compaction_duration: Histogram,
    time_retentions: Counter,
    size_retentions: Counter,
    blocks_bytes: Gauge,
    storage_bytes: Gauge,
    retention_limit_bytes: Gauge,
    lowest_timestamp: Gauge,
    head_min_time: Gauge,
    head_max_time: Gauge,
    quarantined: Counter,
    checksum_failures: Counter,
    head_cuts: Counter,
    head_cuts_failed: Counter,
    tombstone_cleanups: Counter,
}

impl Default for DbMetrics {
    fn default() -> Self {
        DbMetrics {
            blocks_loaded: Gauge::default(),
            compactions: Counter::default(),
            compactions_failed: Counter::default(),
            compaction_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 14),
            ),
            time_retentions: Counter::default(),
            size_retentions: Counter::default(),
            blocks_bytes: Gauge::default(),
            storage_bytes: Gauge::default(),
            retention_limit_bytes: Gauge::default(),
            lowest_timestamp: Gauge::default(),
            head_min_time: Gauge::default(),
            head_max_time: Gauge::default(),
            quarantined: Counter::default(),
            checksum_failures: Counter::default(),
            head_cuts: Counter::default(),
            head_cuts_failed: Counter::default(),
            tombstone_cleanups: Counter::default(),
        }
    }
}

struct Inner {
    dir: PathBuf,
    head: Head,
    /// Sorted by `min_time`, then ULID.
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Retention can change on reload; the block range cannot.
    opts: RwLock<DbOptions>,
    metrics: DbMetrics,
    quarantined: Mutex<Vec<QuarantinedBlock>>,
    /// One maintenance (cut, compaction, retention, deletion, snapshot) at a time.
    maintain: Mutex<()>,
    /// Held (locked) while the store is open, so two processes never share a WAL.
    _lock: fs::File,
}

/// The durable store of one data directory.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

/// What `Db::open` found worth reporting.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// A torn or corrupt WAL tail that replay cut off.
    pub wal_corruption: Option<String>,
    /// Blocks quarantined at open.
    pub quarantined: Vec<QuarantinedBlock>,
    /// Blocks loaded.
    pub blocks: usize,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Merges per-source sample lists of one series: time order, one sample per timestamp (the
/// first source's wins, so overlapping blocks never double-count).
fn merge_samples<T>(mut parts: Vec<Vec<(i64, T)>>) -> Vec<(i64, T)> {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let sorted_concat = parts.windows(2).all(|w| match (w[0].last(), w[1].first()) {
        (Some(a), Some(b)) => a.0 < b.0,
        _ => true,
    });
    let mut out: Vec<(i64, T)> = parts.into_iter().flatten().collect();
    if !sorted_concat {
        out.sort_by_key(|s| s.0);
        out.dedup_by_key(|s| s.0);
    }
    out
}

impl Db {
    /// Opens the store in `dir`: loads and checks blocks (quarantining damaged ones), removes
    /// leftovers of interrupted writes and compactions, and replays the WAL into the head.
    pub fn open(dir: &Path, opts: DbOptions) -> Result<(Db, OpenReport), DbError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(DbError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let mut report = OpenReport::default();
        let metrics = DbMetrics::default();
        let mut blocks: Vec<Block> = Vec::new();
        let rd = fs::read_dir(dir).map_err(io(dir))?;
        let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        let mut quarantined = Vec::new();
        // Damaged blocks quarantined in earlier runs stay visible.
        let mut all_q = earlier_quarantine(dir);
        for p in entries {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".tmp-for-creation") || name.ends_with(".tmp-for-deletion") {
                let _ = fs::remove_dir_all(&p);
                continue;
            }
            if !p.is_dir() || !p.join("meta.json").exists() {
                continue;
            }
            // The index is checked here; chunks are checked on every read and by `scrub`, so
            // a large store does not read all its data before it is ready.
            match Block::open(&p) {
                Ok(b) => blocks.push(b),
                Err(e) => {
                    metrics.checksum_failures.inc();
                    quarantined.push(quarantine_dir(dir, &p, &name, &e.to_string(), &metrics));
                }
            }
        }
        // A crash between writing a compacted block and deleting its parents leaves both.
        let parents: HashSet<String> = blocks
            .iter()
            .flat_map(|b| b.meta().compaction.parents.clone())
            .collect();
        blocks.retain(|b| {
            if parents.contains(&b.meta().ulid) {
                let _ = fs::remove_dir_all(b.dir());
                false
            } else {
                true
            }
        });
        blocks.sort_by(|a, b| {
            (a.meta().min_time, &a.meta().ulid).cmp(&(b.meta().min_time, &b.meta().ulid))
        });
        let min_valid = fs::read_to_string(dir.join(HEAD_MIN_VALID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(i64::MIN);
        let (head, wal_corruption) = Head::open(
            &dir.join("wal"),
            HeadOptions {
                chunk_range_ms: opts.block_range_ms,
                min_valid_ms: min_valid,
                sync_every_commit: opts.wal_sync_every_commit,
                chunks_dir: Some(dir.join("head_chunks")),
            },
        )?;
        report.wal_corruption = wal_corruption;
        report.blocks = blocks.len();
        all_q.extend(quarantined.iter().cloned());
        report.quarantined = quarantined;
        let db = Db {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                head,
                blocks: RwLock::new(blocks.into_iter().map(Arc::new).collect()),
                opts: RwLock::new(opts),
                metrics,
                quarantined: Mutex::new(all_q),
                maintain: Mutex::new(()),
                _lock: lock,
            }),
        };
        db.update_gauges();
        Ok((db, report))
    }

    /// Changes the retention limits (a config reload); the next maintenance applies them.
    pub fn set_retention(&self, retention_ms: i64, retention_bytes: u64) {
        let mut o = self.inner.opts.write();
        o.retention_ms = retention_ms;
        o.retention_bytes = retention_bytes;
    }

    /// The head (for its WAL sync and metrics).
    pub fn head(&self) -> &Head {
        &self.inner.head
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The open blocks, oldest first.
    pub fn blocks(&self) -> Vec<BlockInfo> {
        self.inner.blocks.read().iter().map(|b| info(b)).collect()
    }

    fn query_blocks<T>(
        &self,
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(&Block) -> Result<T, BlockError>,
    ) -> Vec<T> {
        let blocks = self.inner.blocks.read().clone();
        let mut out = Vec::new();
        for b in blocks {
            if b.meta().max_time <= mint || b.meta().min_time > maxt {
                continue;
            }
            match f(&b) {
                Ok(x) => out.push(x),
                Err(e) => {
                    crate::failure!(error, "storage", "block_damaged", ulid = %b.meta().ulid, error = %e, "block damaged; quarantining it and answering from the rest");
                    self.quarantine(&b, &e);
                }
            }
        }
        out
    }
}

fn info(b: &Block) -> BlockInfo {
    let m = b.meta();
    BlockInfo {
        ulid: m.ulid.clone(),
        min_time: m.min_time,
        max_time: m.max_time,
        num_series: m.stats.num_series,
        num_samples: m.stats.num_samples,
        num_chunks: m.stats.num_chunks,
        num_tombstones: m.stats.num_tombstones,
        level: m.compaction.level,
        bytes: b.size(),
    }
}

fn rand_u64() -> u64 {
    ulid::Ulid::new().random() as u64
}

impl Appendable for Db {
    fn appender(&self) -> Box<dyn Appender> {
        self.inner.head.appender()
    }
}

impl Querier for Db {
    fn exemplars(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<super::ExemplarSeries> {
        self.inner.head.exemplars(sets, mint, maxt)
    }

    fn missing(&self, mint: i64, maxt: i64) -> Vec<String> {
        self.inner
            .quarantined
            .lock()
            .iter()
            .filter(|q| q.max_time > mint && q.min_time <= maxt)
            .map(|q| {
                format!(
                    "PromQL warning: data from {} to {} is missing: block {} was quarantined as damaged ({})",
                    crate::model::time::format_rfc3339(q.min_time),
                    crate::model::time::format_rfc3339(q.max_time),
                    q.ulid,
                    q.reason.chars().take(200).collect::<String>()
                )
            })
            .collect()
    }

    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let per_block = self.query_blocks(mint, maxt, |b| {
            let mut out = Vec::new();
            for s in b.matching_series(matchers)? {
                if !s
                    .chunks
                    .iter()
                    .chain(&s.hchunks)
                    .any(|c| c.max_t >= mint && c.min_t <= maxt)
                {
                    continue;
                }
                let samples = b.samples(&s, mint, maxt)?;
                let hists = b.histograms(&s, mint, maxt)?;
                if !samples.is_empty() || !hists.is_empty() {
                    out.push((s.labels, samples, hists));
                }
            }
            Ok(out)
        });
        if per_block.is_empty() {
            return self.inner.head.select(matchers, mint, maxt);
        }
        type Parts = (
            Vec<Vec<(i64, f64)>>,
            Vec<Vec<(i64, super::wal::HistogramRef)>>,
        );
        let mut acc: BTreeMap<Labels, Parts> = BTreeMap::new();
        for (labels, samples, hists) in per_block.into_iter().flatten() {
            let e = acc.entry(labels).or_default();
            e.0.push(samples);
            e.1.push(hists);
        }
        for s in self.inner.head.select(matchers, mint, maxt) {
            let e = acc.entry(s.labels).or_default();
            e.0.push(s.samples);
            e.1.push(s.histograms);
        }
        acc.into_iter()
            .map(|(labels, (parts, hparts))| Series {
                labels,
                samples: merge_samples(parts),
                histograms: merge_samples(hparts),
            })
            .collect()
    }

    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let mut set: BTreeSet<Labels> = self
            .query_blocks(mint, maxt, |b| {
                Ok(b.matching_series(matchers)?
                    .into_iter()
                    .filter(|s| {
                        s.chunks
                            .iter()
                            .chain(&s.hchunks)
                            .any(|c| c.max_t >= mint && c.min_t <= maxt)
                    })
                    .map(|s| s.labels)
                    .collect::<Vec<_>>())
            })
            .into_iter()
            .flatten()
            .collect();
        set.extend(self.inner.head.series(matchers, mint, maxt));
        set.into_iter().collect()
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String> {
        let mut set: BTreeSet<String> = self
            .query_blocks(mint, maxt, |b| b.label_names(matchers))
            .into_iter()
            .flatten()
            .collect();
        set.extend(self.inner.head.label_names(matchers, mint, maxt));
        set.into_iter().collect()
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String> {
        let mut set: BTreeSet<String> = self
            .query_blocks(mint, maxt, |b| b.label_values(name, matchers))
            .into_iter()
            .flatten()
            .collect();
        set.extend(self.inner.head.label_values(name, matchers, mint, maxt));
        set.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchOp;

    const H: i64 = 3600 * 1000;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    fn value(t: i64, k: usize) -> f64 {
        (t / 15_000) as f64 * 0.5 + k as f64
    }

    /// Appends every 15 s sample in `[from, to)` for `n` series.
    fn fill(db: &Db, from: i64, to: i64, n: usize) {
        let mut a = db.appender();
        let mut t = from;
        while t < to {
            for k in 0..n {
                let name = format!("s{k}");
                a.append(&l(&[("__name__", "m"), ("k", &name)]), t, value(t, k))
                    .unwrap();
            }
            t += 15_000;
        }
        a.commit().unwrap();
    }

    fn all(db: &Db, mint: i64, maxt: i64) -> Vec<Series> {
        db.select(&[m(MatchOp::Equal, "__name__", "m")], mint, maxt)
    }

    fn check_complete(db: &Db, from: i64, to: i64, n: usize) {
        let got = all(db, from, to - 1);
        assert_eq!(got.len(), n);
        for (k, s) in got.iter().enumerate() {
            let want: Vec<(i64, f64)> = (0..)
                .map(|i| from + i * 15_000)
                .take_while(|t| *t < to)
                .map(|t| (t, value(t, k)))
                .collect();
            assert_eq!(s.samples.len(), want.len(), "series {k}");
            assert_eq!(s.samples, want, "series {k}");
        }
    }

    #[test]
    fn head_is_cut_into_blocks_and_queries_merge_them() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0, 7 * H, 3);
        db.maintain();
        let blocks = db.blocks();
        assert_eq!(blocks.len(), 2, "{blocks:?}");
        assert_eq!((blocks[0].min_time, blocks[0].max_time), (0, 2 * H));
        assert_eq!((blocks[1].min_time, blocks[1].max_time), (2 * H, 4 * H));
        assert_eq!(db.head().time_range().0, 4 * H);
        check_complete(&db, 0, 7 * H, 3);
        // Older samples than the head's range are refused now.
        let mut a = db.appender();
        a.append(&l(&[("__name__", "m"), ("k", "s0")]), H, 1.0)
            .unwrap();
        assert_eq!(a.commit().unwrap().out_of_bounds, 1);
        db.head().sync().unwrap();
        drop(db);
        // A restart replays only what the blocks do not hold.
        let (db, report) = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(report.blocks, 2);
        assert_eq!(db.head().time_range().0, 4 * H);
        check_complete(&db, 0, 7 * H, 3);
        let st = db.stats(10);
        assert_eq!(st.store.num_series, 3);
        assert_eq!(st.store.min_time, 0);
        assert_eq!(st.store.max_time, 7 * H - 15_000);
        assert_eq!(st.series_count_by_metric_name, vec![("m".to_string(), 3)]);
    }

    #[test]
    fn native_histograms_persist_through_wal_blocks_and_compaction() {
        use crate::model::histogram::FloatHistogram;
        let dir = tempfile::tempdir().unwrap();
        let lh = l(&[("__name__", "req_seconds"), ("job", "api")]);
        let h = |i: i64| {
            let mut x = FloatHistogram::parse("{{schema:1 count:2 sum:3 buckets:[1 1]}}").unwrap();
            x.count += i as f64;
            x.sum += i as f64 * 0.5;
            if let Some(b) = x.positive.get_mut(&0) {
                *b += i as f64;
            }
            std::sync::Arc::new(x)
        };
        let want: Vec<(i64, String)> = (0..(12 * 240))
            .map(|i| (i * 15_000, h(i).to_string()))
            .collect();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        let mut a = db.appender();
        for i in 0..(12 * 240) {
            a.append_histogram(&lh, i * 15_000, h(i)).unwrap();
            a.append(
                &l(&[("__name__", "m"), ("k", "s0")]),
                i * 15_000,
                value(i * 15_000, 0),
            )
            .unwrap();
        }
        assert_eq!(a.commit().unwrap().appended, 2 * 12 * 240);
        let got = |db: &Db| -> Vec<(i64, String)> {
            let s = db.select(&[m(MatchOp::Equal, "__name__", "req_seconds")], 0, 12 * H);
            assert_eq!(s.len(), 1);
            assert!(s[0].samples.is_empty());
            s[0].histograms
                .iter()
                .map(|(t, h)| (*t, h.to_string()))
                .collect()
        };
        assert_eq!(got(&db), want);
        db.maintain();
        assert!(!db.blocks().is_empty());
        assert!(db.blocks().iter().any(|b| b.level > 1), "compacted");
        assert_eq!(got(&db), want, "blocks and head together");
        db.head().sync().unwrap();
        drop(db);
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(got(&db), want, "after WAL replay");
        assert_eq!(db.scrub(), 0);
        let n = db
            .delete_series(&[m(MatchOp::Equal, "job", "api")], 0, 60_000)
            .unwrap();
        assert!(n >= 1);
        assert_eq!(got(&db).len(), want.len() - 5);
        check_complete(&db, 0, 12 * H, 1);
    }

    #[test]
    fn a_sample_from_the_future_does_not_flush_current_data() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        let now = now_ms() / 15_000 * 15_000;
        fill(&db, now - 2 * H, now, 1);
        let mut a = db.appender();
        a.append(&l(&[("__name__", "future")]), now + 365 * 24 * H, 1.0)
            .unwrap();
        a.commit().unwrap();
        db.maintain();
        assert!(db.blocks().is_empty());
        let mut a = db.appender();
        a.append(&l(&[("__name__", "m"), ("k", "s0")]), now + 15_000, 1.0)
            .unwrap();
        assert_eq!(a.commit().unwrap().appended, 1);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        let err = Db::open(dir.path(), DbOptions::default()).err().unwrap();
        assert!(matches!(err, DbError::Locked(_)), "{err}");
        drop(db);
        Db::open(dir.path(), DbOptions::default()).unwrap();
    }

    #[test]
    fn blocks_written_by_another_process_are_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        let labels = l(&[("__name__", "m"), ("k", "s0")]);
        let s: Vec<(i64, f64)> = (0..100)
            .map(|i| (i * 15_000, value(i * 15_000, 0)))
            .collect();
        write_block_from_chunks(
            dir.path(),
            0,
            2 * H,
            vec![(labels, block::encode_chunks(&s))],
        )
        .unwrap();
        assert!(all(&db, 0, 2 * H).is_empty());
        db.maintain();
        check_complete(&db, 0, 100 * 15_000, 1);
    }

    #[test]
    fn blocks_compact_into_larger_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0, 12 * H, 2);
        db.maintain();
        let blocks = db.blocks();
        // 0-6h compacted (complete range); 6-8h and 8-10h are blocks; 10-12h in the head.
        assert_eq!(
            blocks
                .iter()
                .map(|b| (b.min_time / H, b.max_time / H, b.level))
                .collect::<Vec<_>>(),
            vec![(0, 6, 2), (6, 8, 1), (8, 10, 1)]
        );
        check_complete(&db, 0, 12 * H, 2);
        let entries: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 26)
            .collect();
        assert_eq!(entries.len(), 3, "parents deleted: {entries:?}");
    }

    #[test]
    fn overlapping_blocks_merge_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let labels = l(&[("__name__", "m"), ("k", "s0")]);
        let s1: Vec<(i64, f64)> = (0..100)
            .map(|i| (i * 15_000, value(i * 15_000, 0)))
            .collect();
        let s2: Vec<(i64, f64)> = (50..200)
            .map(|i| (i * 15_000, value(i * 15_000, 0)))
            .collect();
        for s in [&s1, &s2] {
            let mut c = XorChunkSet::new();
            c.extend(s);
            write_block_from_chunks(dir.path(), 0, 2 * H, vec![(labels.clone(), c.0)]).unwrap();
        }
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(all(&db, 0, 2 * H)[0].samples.len(), 200);
        db.compact_now();
        assert_eq!(db.blocks().len(), 1);
        check_complete(&db, 0, 200 * 15_000, 1);
    }

    struct XorChunkSet(Vec<crate::storage::chunk::XorChunk>);
    impl XorChunkSet {
        fn new() -> Self {
            XorChunkSet(Vec::new())
        }
        fn extend(&mut self, s: &[(i64, f64)]) {
            self.0.extend(block::encode_chunks(s));
        }
    }

    fn blocks_of(db: &Db) -> Vec<(i64, i64)> {
        db.blocks()
            .iter()
            .map(|b| (b.min_time / H, b.max_time / H))
            .collect()
    }

    #[test]
    fn time_retention_deletes_the_oldest_blocks_only() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DbOptions {
            retention_ms: 5 * H,
            ..DbOptions::default()
        };
        // Small retention → compaction range capped below 6 h, so blocks stay 2 h.
        assert_eq!(opts.ranges(), vec![2 * H]);
        let (db, _) = Db::open(dir.path(), opts).unwrap();
        fill(&db, 0, 13 * H, 1);
        db.maintain();
        // Blocks 0-2 .. 8-10 were cut; newest ends at 10 h; those ending before 5 h go.
        assert_eq!(blocks_of(&db), vec![(4, 6), (6, 8), (8, 10)]);
        check_complete(&db, 4 * H, 13 * H, 1);
        assert!(all(&db, 0, 4 * H - 1).is_empty());
    }

    #[test]
    fn size_retention_counts_wal_head_chunks_and_blocks_and_deletes_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(
            dir.path(),
            DbOptions {
                retention_ms: 5 * H,
                ..DbOptions::default()
            },
        )
        .unwrap();
        fill(&db, 0, 13 * H, 20);
        db.maintain();
        let before = db.blocks();
        assert_eq!(before.len(), 3);
        let newest_two: u64 = before[1..].iter().map(|b| b.bytes).sum();
        drop(db);
        let (db, _) = Db::open(
            dir.path(),
            DbOptions {
                retention_ms: 5 * H,
                ..DbOptions::default()
            },
        )
        .unwrap();
        // The head's chunk files (written again by the replay) count as the WAL does.
        let head = db.head().wal_size() + db.head().chunks_storage_size();
        assert!(db.head().chunks_storage_size() > 0);
        db.set_retention(5 * H, head + newest_two + before[0].bytes / 2);
        db.maintain();
        assert_eq!(blocks_of(&db), vec![(6, 8), (8, 10)]);
    }

    #[test]
    fn damaged_block_is_quarantined_and_the_rest_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0, 7 * H, 2);
        db.maintain();
        let victim = db.blocks()[0].ulid.clone();
        db.head().sync().unwrap();
        drop(db);
        let chunks = dir.path().join(&victim).join("chunks");
        let mut c = fs::read(&chunks).unwrap();
        let n = c.len();
        c[n / 2] ^= 0x55;
        fs::write(&chunks, &c).unwrap();
        let (db, report) = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert!(
            report.quarantined.is_empty(),
            "only the index is checked at open"
        );
        assert_eq!(db.scrub(), 1);
        assert!(dir
            .path()
            .join("quarantine")
            .join(&victim)
            .join("chunks")
            .exists());
        check_complete(&db, 2 * H, 7 * H, 2);
        let st = db.stats(5);
        assert_eq!(st.store.quarantined.len(), 1);
        assert_eq!(st.store.quarantined[0].ulid, victim);
        assert!(
            st.store.quarantined[0].reason.contains("checksum"),
            "{st:?}"
        );
        drop(db);
        // Still reported after another restart.
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(db.stats(5).store.quarantined.len(), 1);
    }

    #[test]
    fn block_with_a_damaged_index_is_quarantined_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0, 7 * H, 2);
        db.maintain();
        let victim = db.blocks()[1].ulid.clone();
        db.head().sync().unwrap();
        drop(db);
        let index = dir.path().join(&victim).join("index");
        let mut c = fs::read(&index).unwrap();
        c[10] ^= 0x01;
        fs::write(&index, &c).unwrap();
        let (db, report) = Db::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(report.quarantined.len(), 1);
        assert!(report.quarantined[0]
            .reason
            .contains("index: checksum mismatch"));
        assert_eq!(db.blocks().len(), 1);
        check_complete(&db, 0, 2 * H, 2);
        check_complete(&db, 4 * H, 7 * H, 2);
    }

    #[test]
    fn block_damaged_while_serving_is_quarantined_at_read() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0, 7 * H, 2);
        db.maintain();
        let victim = db.blocks()[0].ulid.clone();
        // In place (no truncation: the block is mapped).
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(&victim).join("chunks"))
            .unwrap();
        f.seek(SeekFrom::Start(40)).unwrap();
        f.write_all(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
        drop(f);
        let got = all(&db, 0, 7 * H);
        assert_eq!(got.len(), 2);
        assert!(
            got.iter().all(|s| s.samples[0].0 == 2 * H),
            "the rest still answers"
        );
        assert!(db.blocks().iter().all(|b| b.ulid != victim));
        let q = db.stats(1).store.quarantined;
        assert_eq!(q.len(), 1);
        assert!(q[0].reason.contains("checksum mismatch"), "{q:?}");
        assert!(dir.path().join("quarantine").join(&victim).is_dir());
        // Issue 13: queries over the lost range say their answer is partial.
        let w = db.missing(0, 7 * H);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains(&victim) && w[0].contains("quarantined"),
            "{w:?}"
        );
        assert!(
            db.missing(6 * H + 1, 7 * H).is_empty(),
            "outside the block's range"
        );
        let engine = crate::promql::Engine::new(
            std::sync::Arc::new(db.clone()),
            crate::promql::EngineOptions::default(),
        );
        let r = engine.range("m", 0, 7 * H, 60_000).unwrap();
        assert!(
            r.warnings.iter().any(|w| w.contains(&victim)),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn sync_every_commit_survives_without_a_sync_call() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DbOptions {
            wal_sync_every_commit: true,
            ..DbOptions::default()
        };
        let (db, _) = Db::open(dir.path(), opts.clone()).unwrap();
        fill(&db, 0, H, 1);
        // A crash: nothing flushed or synced on the way out (the lock goes with the store,
        // the log's buffered writer is leaked unflushed).
        let head = db.head().clone();
        drop(db);
        std::mem::forget(head);
        let (db, _) = Db::open(dir.path(), opts).unwrap();
        check_complete(&db, 0, H, 1);
    }

    #[test]
    fn delete_series_then_clean_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0, 7 * H, 2);
        db.maintain();
        let sel = [m(MatchOp::Equal, "k", "s1")];
        let n = db.delete_series(&sel, H, 5 * H).unwrap();
        assert_eq!(n, 3, "two blocks and the head");
        let check = |db: &Db| {
            let got = all(db, 0, 7 * H);
            assert_eq!(got[0].samples.len(), 7 * 240);
            assert!(got[1].samples.iter().all(|(t, _)| *t < H || *t > 5 * H));
            assert_eq!(got[1].samples.len(), 7 * 240 - 4 * 240 - 1);
        };
        check(&db);
        db.head().sync().unwrap();
        drop(db);
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        check(&db);
        assert_eq!(db.clean_tombstones().unwrap(), 2);
        assert!(db.blocks().iter().all(|b| b.num_tombstones == 0));
        check(&db);
    }

    #[test]
    fn snapshot_holds_blocks_and_head() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
        fill(&db, 0, 5 * H, 1);
        db.maintain();
        let name = db.snapshot(false).unwrap();
        let snap = dir.path().join("snapshots").join(&name);
        let (copy, _) = Db::open(&snap, DbOptions::default()).unwrap();
        assert_eq!(copy.blocks().len(), 2);
        check_complete(&copy, 0, 5 * H, 1);
        let name = db.snapshot(true).unwrap();
        let (copy, _) = Db::open(
            &dir.path().join("snapshots").join(name),
            DbOptions::default(),
        )
        .unwrap();
        assert_eq!(copy.blocks().len(), 1);
    }
}
