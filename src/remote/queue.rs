//! One remote's queue: a reader thread tails the write-ahead log (as Prometheus's WAL watcher
//! does) and hands samples to shards by series hash, so each series stays in order; each shard
//! batches, sends with retries, and records how far it got in a small state file, so a restart
//! or a SIGKILL resumes where the receiver last acknowledged. When the receiver was away longer
//! than the log holds, the reader fetches the missing time range from the store's blocks.
//!
//! Reads the WAL's files and the store through [`Querier`]; never writes to either.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use parking_lot::{Mutex, RwLock};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};

use super::client::{Attempt, Client};
use super::config::RemoteWriteConfig;
use super::convert;
use super::proto::{self, v1, v2, Protocol};
use super::{FamilyMetadata, MetadataSource, QueueMetrics, QueueStatus};
use crate::model::matcher::{MatchOp, Matcher};
use crate::model::{relabel, Labels};
use crate::storage::wal::{self, HistogramRef, Record};
use crate::storage::Querier;

/// A place in the log: segment, record offset, sample index in the record. Ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    seg: u64,
    off: u64,
    idx: u32,
}

impl Pos {
    /// The position right after this one: what a shard records once this sample is
    /// acknowledged (the slots hold the first position not yet acknowledged).
    fn succ(self) -> Pos {
        match self.idx.checked_add(1) {
            Some(idx) => Pos { idx, ..self },
            None => Pos {
                off: self.off.saturating_add(1),
                idx: 0,
                ..self
            },
        }
    }
}

const MAGIC: &[u8; 8] = b"APRWQ001";
const HEADER: u64 = 12;
const SLOT: u64 = 24;

/// Per shard, the first position not yet acknowledged, one fixed slot each, updated in place after every
/// acknowledged batch (a 24-byte `pwrite`: cheap, and whole after a SIGKILL).
pub struct StateFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl StateFile {
    /// Opens the state in `dir`; `None` for the positions when there is none (a new remote).
    fn open(dir: &Path) -> std::io::Result<(StateFile, Option<Vec<Pos>>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("state");
        let slots = match std::fs::read(&path) {
            Ok(b) if b.len() >= HEADER as usize && &b[..8] == MAGIC => {
                let n = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
                let mut v = Vec::with_capacity(n.min(1024));
                for i in 0..n {
                    let at = HEADER as usize + i * SLOT as usize;
                    let Some(s) = b.get(at..at + SLOT as usize) else {
                        break;
                    };
                    v.push(Pos {
                        seg: u64::from_le_bytes(s[0..8].try_into().unwrap_or_default()),
                        off: u64::from_le_bytes(s[8..16].try_into().unwrap_or_default()),
                        idx: u32::from_le_bytes(s[16..20].try_into().unwrap_or_default()),
                    });
                }
                (v.len() == n && n > 0).then_some(v)
            }
            _ => None,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Ok((
            StateFile {
                path,
                file: Mutex::new(file),
            },
            slots,
        ))
    }

    /// Replaces the whole state (a new shard count), atomically.
    fn reset(&self, slots: &[Pos]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(HEADER as usize + slots.len() * SLOT as usize);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(slots.len() as u32).to_le_bytes());
        for p in slots {
            buf.extend_from_slice(&encode_slot(*p));
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        *self.file.lock() = OpenOptions::new().read(true).write(true).open(&self.path)?;
        Ok(())
    }

    fn write_slot(&self, i: usize, p: Pos) -> std::io::Result<()> {
        self.file
            .lock()
            .write_all_at(&encode_slot(p), HEADER + i as u64 * SLOT)
    }

    fn sync(&self) {
        let _ = self.file.lock().sync_data();
    }
}

fn encode_slot(p: Pos) -> [u8; SLOT as usize] {
    let mut s = [0u8; SLOT as usize];
    s[0..8].copy_from_slice(&p.seg.to_le_bytes());
    s[8..16].copy_from_slice(&p.off.to_le_bytes());
    s[16..20].copy_from_slice(&p.idx.to_le_bytes());
    s
}

/// FNV-1a over label pairs: a shard assignment that stays the same across restarts and
/// builds, so persisted per-shard positions keep their meaning.
fn fnv(labels: impl Iterator<Item = (impl AsRef<[u8]>, impl AsRef<[u8]>)>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for (n, v) in labels {
        eat(n.as_ref());
        eat(v.as_ref());
    }
    h
}

/// A series as it goes on the wire.
pub struct SeriesEntry {
    labels: Vec<v1::Label>,
    /// The labels as `TimeSeries` field 1, encoded once.
    labels_pb: Vec<u8>,
    family: String,
    shard_hash: u64,
    /// Newest sample time handed to a shard: the log holds each series in time order, so
    /// anything not newer was already sent (catch-up from blocks overlaps the log).
    last_t: AtomicI64,
}

enum Val {
    F(f64),
    H(HistogramRef),
}

struct Item {
    series: Arc<SeriesEntry>,
    t: i64,
    v: Val,
    pos: Pos,
}

enum Msg {
    Items(Vec<Item>),
    Flush(oneshot::Sender<()>),
}

/// What a queue shares between its reader, shards and the status page.
pub struct Shared {
    /// The config.
    pub cfg: RemoteWriteConfig,
    /// Queue name.
    pub name: String,
    client: Client,
    pub(super) metrics: QueueMetrics,
    meta: RwLock<Arc<HashMap<String, FamilyMetadata>>>,
    status: Mutex<Status>,
    stop: watch::Receiver<bool>,
    pending: AtomicI64,
    dispatched: AtomicU64,
    acked: AtomicU64,
    send_nanos: AtomicU64,
    highest_read: AtomicI64,
    highest_sent: AtomicI64,
    last_failure: Mutex<Option<Instant>>,
    catching_up: AtomicBool,
    shards: AtomicU64,
    desired: AtomicU64,
}

#[derive(Default)]
struct Status {
    last_error: String,
    last_error_ms: i64,
    last_success_ms: i64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Shared {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn note_error(&self, e: &str) {
        let mut s = self.status.lock();
        s.last_error = e.to_string();
        s.last_error_ms = now_ms();
        *self.last_failure.lock() = Some(Instant::now());
    }

    /// The figures the status page and API show.
    pub fn status(&self) -> QueueStatus {
        let s = self.status.lock();
        let read = self.highest_read.load(Ordering::Relaxed);
        let sent = self.highest_sent.load(Ordering::Relaxed);
        let pending = self.pending.load(Ordering::Relaxed).max(0);
        QueueStatus {
            name: self.name.clone(),
            url: self.cfg.url.redacted(),
            protocol: match self.cfg.protobuf_message {
                Protocol::V1 => "1.0",
                Protocol::V2 => "2.0",
            }
            .into(),
            shards: self.shards.load(Ordering::Relaxed),
            desired_shards: self.desired.load(Ordering::Relaxed),
            pending_samples: pending as u64,
            samples_sent: self.metrics.samples.get(),
            samples_failed: self.metrics.samples_failed.get(),
            samples_retried: self.metrics.samples_retried.get(),
            samples_dropped: self.metrics.samples_dropped.get(),
            highest_read_ms: (read > i64::MIN).then_some(read),
            highest_sent_ms: (sent > i64::MIN).then_some(sent),
            lag_seconds: if pending == 0 || read == i64::MIN {
                0.0
            } else if sent == i64::MIN {
                ((read - self.started_ms()) as f64 / 1000.0).max(0.0)
            } else {
                ((read - sent) as f64 / 1000.0).max(0.0)
            },
            catching_up: self.catching_up.load(Ordering::Relaxed),
            last_error: s.last_error.clone(),
            last_error_ms: (s.last_error_ms > 0).then_some(s.last_error_ms),
            last_success_ms: (s.last_success_ms > 0).then_some(s.last_success_ms),
        }
    }

    fn started_ms(&self) -> i64 {
        self.metrics.started_ms
    }
}

/// The metadata of the family series `name` belongs to: its own entry (text format names
/// families after their series) or the OpenMetrics family whose type explains the suffix.
fn metadata_for<'a>(
    m: &'a HashMap<String, FamilyMetadata>,
    name: &str,
) -> Option<&'a FamilyMetadata> {
    if let Some(x) = m.get(name) {
        return Some(x);
    }
    [
        "_total", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info",
    ]
    .iter()
    .filter_map(|suffix| m.get(name.strip_suffix(suffix)?))
    .find(|x| convert::family_name(name, &x.kind) == x.metric)
}

/// A running queue.
pub struct Queue {
    /// State shared with the tasks.
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Queue {
    /// Starts the reader and shards for `cfg`, resuming from the state in `state_dir`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        cfg: RemoteWriteConfig,
        external_labels: Vec<(String, String)>,
        wal_dir: PathBuf,
        state_dir: PathBuf,
        querier: Arc<dyn Querier>,
        metadata: Arc<dyn MetadataSource>,
        metrics: QueueMetrics,
        rt: tokio::runtime::Handle,
    ) -> Result<Queue, String> {
        let client = Client::new(&cfg)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (state, slots) = StateFile::open(&state_dir)
            .map_err(|e| format!("remote write state in {}: {e}", state_dir.display()))?;
        let name = cfg.queue_name();
        let shared = Arc::new(Shared {
            name: name.clone(),
            client,
            metrics,
            meta: RwLock::new(Arc::new(HashMap::new())),
            status: Mutex::new(Status::default()),
            stop: stop_rx,
            pending: AtomicI64::new(0),
            dispatched: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            send_nanos: AtomicU64::new(0),
            highest_read: AtomicI64::new(i64::MIN),
            highest_sent: AtomicI64::new(i64::MIN),
            last_failure: Mutex::new(None),
            catching_up: AtomicBool::new(false),
            shards: AtomicU64::new(0),
            desired: AtomicU64::new(0),
            cfg,
        });
        let slots = match slots {
            Some(s) => s,
            None => {
                // A new remote starts at the log's end, as Prometheus's does: it sends what
                // is scraped from now on, not the whole history.
                let segs = wal::list_segments(&wal_dir).unwrap_or_default();
                let last = segs.last().copied().unwrap_or(0);
                let len = std::fs::metadata(wal_dir.join(format!("{last:08}")))
                    .map(|m| m.len())
                    .unwrap_or(0);
                let n = shared.cfg.queue_config.min_shards;
                let s = vec![
                    Pos {
                        seg: last,
                        off: len,
                        idx: 0
                    };
                    n
                ];
                state
                    .reset(&s)
                    .map_err(|e| format!("remote write state in {}: {e}", state_dir.display()))?;
                s
            }
        };
        let state = Arc::new(state);
        let reader = Reader::new(
            shared.clone(),
            wal_dir,
            querier,
            state,
            slots,
            rt.clone(),
            external_labels,
        );
        std::thread::Builder::new()
            .name(format!("remote-write-{name}"))
            .spawn(move || reader.run())
            .map_err(|e| format!("starting the remote write reader: {e}"))?;
        if shared.cfg.metadata_config.send {
            rt.spawn(metadata_loop(shared.clone(), metadata));
        }
        Ok(Queue {
            shared,
            stop: stop_tx,
        })
    }

    /// Stops the reader and shards; what was not acknowledged is sent after the next start.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How much of the log one read takes.
const READ_BYTES: usize = 4 << 20;
/// How long the reader sleeps when the log has nothing new.
const IDLE: StdDuration = StdDuration::from_millis(100);
/// How often the shard count is reconsidered (Prometheus: 10 s).
const RESHARD_EVERY: StdDuration = StdDuration::from_secs(10);
/// Width of one catch-up query over the blocks.
const CATCH_UP_WINDOW_MS: i64 = 3_600_000;

struct Reader {
    shared: Arc<Shared>,
    wal_dir: PathBuf,
    querier: Arc<dyn Querier>,
    state: Arc<StateFile>,
    /// Per shard, the first position not acknowledged before this start: earlier samples
    /// are skipped.
    acked: Vec<Pos>,
    series: HashMap<u64, Option<Arc<SeriesEntry>>>,
    /// Entries by a hash of their stored labels, so catch-up and the log share `last_t`.
    by_labels: HashMap<u64, Arc<SeriesEntry>>,
    shards: Vec<mpsc::Sender<Msg>>,
    bufs: Vec<Vec<Item>>,
    rt: tokio::runtime::Handle,
    external: Vec<(String, String)>,
    seg: u64,
    off: u64,
}

impl Reader {
    fn new(
        shared: Arc<Shared>,
        wal_dir: PathBuf,
        querier: Arc<dyn Querier>,
        state: Arc<StateFile>,
        acked: Vec<Pos>,
        rt: tokio::runtime::Handle,
        external: Vec<(String, String)>,
    ) -> Reader {
        let mut r = Reader {
            shared,
            wal_dir,
            querier,
            state,
            series: HashMap::new(),
            by_labels: HashMap::new(),
            shards: Vec::new(),
            bufs: Vec::new(),
            rt,
            external,
            seg: 0,
            off: 0,
            acked: Vec::new(),
        };
        r.spawn_shards(acked.len());
        r.acked = acked;
        r
    }

    fn spawn_shards(&mut self, n: usize) {
        let q = &self.shared.cfg.queue_config;
        let depth = (q.capacity / q.max_samples_per_send.max(1)).max(2);
        self.shards.clear();
        self.bufs.clear();
        for i in 0..n {
            let (tx, rx) = mpsc::channel(depth);
            self.shards.push(tx);
            self.bufs.push(Vec::new());
            self.rt
                .spawn(run_shard(self.shared.clone(), i, rx, self.state.clone()));
        }
        self.shared.shards.store(n as u64, Ordering::Relaxed);
        self.shared.metrics.shards.set(n as i64);
    }

    fn entry_for(&mut self, labels: &Labels) -> Option<Arc<SeriesEntry>> {
        let key = fnv(labels
            .iter()
            .map(|l| (l.name.as_bytes(), l.value.as_bytes())));
        if let Some(e) = self.by_labels.get(&key) {
            return Some(e.clone());
        }
        let mut b = labels.builder();
        for (k, v) in &self.external {
            if labels.get(k).is_none() {
                b.set(k.clone(), v.clone());
            }
        }
        if !relabel::process(&self.shared.cfg.write_relabel_configs, &mut b) {
            return None;
        }
        let out = b.labels();
        let labels: Vec<v1::Label> = out
            .iter()
            .map(|l| v1::Label {
                name: l.name.to_string(),
                value: l.value.to_string(),
            })
            .collect();
        let mut labels_pb = Vec::new();
        for l in &labels {
            prost::encoding::message::encode(1, l, &mut labels_pb);
        }
        let e = Arc::new(SeriesEntry {
            labels_pb,
            shard_hash: fnv(labels
                .iter()
                .map(|l| (l.name.as_bytes(), l.value.as_bytes()))),
            family: out.get(crate::model::METRIC_NAME).unwrap_or("").to_string(),
            labels,
            last_t: AtomicI64::new(i64::MIN),
        });
        self.by_labels.insert(key, e.clone());
        Some(e)
    }

    fn load_checkpoint(&mut self) {
        match wal::read_checkpoint(&self.wal_dir) {
            Ok(recs) => {
                for r in recs {
                    if let Record::Series { sref, labels } = r {
                        let e = self.entry_for(&labels);
                        self.series.insert(sref, e);
                    }
                }
            }
            Err(e) => {
                crate::failure!(error, "remote_write", "wal_read", remote = %self.shared.name, error = %e, "reading the WAL checkpoint failed")
            }
        }
    }

    /// Hands one sample to its shard, unless it was sent already or is too old.
    fn dispatch(&mut self, e: Arc<SeriesEntry>, t: i64, v: Val, pos: Pos, age_floor: i64) -> bool {
        if t <= e.last_t.load(Ordering::Relaxed) {
            return true;
        }
        let n = self.shards.len().max(1);
        let shard = (e.shard_hash % n as u64) as usize;
        if self.acked.get(shard).is_some_and(|a| pos < *a) {
            return true;
        }
        if t < age_floor {
            let is_h = matches!(v, Val::H(_));
            if is_h {
                self.shared.metrics.histograms_dropped.inc();
            } else {
                self.shared.metrics.samples_dropped.inc();
            }
            return true;
        }
        e.last_t.store(t, Ordering::Relaxed);
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.pending.inc();
        self.shared.dispatched.fetch_add(1, Ordering::Relaxed);
        let prev = self.shared.highest_read.fetch_max(t, Ordering::Relaxed);
        if t > prev {
            self.shared.metrics.highest_read.set(t as f64 / 1000.0);
        }
        self.bufs[shard].push(Item {
            series: e,
            t,
            v,
            pos,
        });
        if self.bufs[shard].len() >= self.shared.cfg.queue_config.max_samples_per_send {
            return self.send_buf(shard);
        }
        true
    }

    fn send_buf(&mut self, shard: usize) -> bool {
        let items = std::mem::take(&mut self.bufs[shard]);
        if items.is_empty() {
            return true;
        }
        // Blocks while the shard is full (the receiver is slow or down): that is the
        // back-pressure that keeps memory bounded; the log holds the rest.
        self.shards[shard].blocking_send(Msg::Items(items)).is_ok()
    }

    fn flush_bufs(&mut self) -> bool {
        (0..self.bufs.len()).all(|i| self.send_buf(i))
    }

    fn age_floor(&self) -> i64 {
        let lim = self.shared.cfg.queue_config.sample_age_limit;
        if lim.is_zero() {
            i64::MIN
        } else {
            now_ms() - lim.as_millis()
        }
    }

    /// Dispatches one record's samples, each at its position in the record.
    fn dispatch_record(
        &mut self,
        seg: u64,
        at: u64,
        samples: impl Iterator<Item = (u64, i64, Val)>,
        floor: i64,
    ) -> bool {
        for (i, (r, t, v)) in samples.enumerate() {
            let Some(Some(e)) = self.series.get(&r).cloned() else {
                continue;
            };
            let pos = Pos {
                seg,
                off: at,
                idx: i as u32,
            };
            if !self.dispatch(e, t, v, pos, floor) {
                return false;
            }
        }
        true
    }

    fn handle(&mut self, seg: u64, at: u64, rec: Record) -> bool {
        let floor = self.age_floor();
        match rec {
            Record::Series { sref, labels } => {
                let e = self.entry_for(&labels);
                self.series.insert(sref, e);
            }
            Record::Samples(s) => {
                return self.dispatch_record(
                    seg,
                    at,
                    s.into_iter().map(|(r, t, v)| (r, t, Val::F(v))),
                    floor,
                )
            }
            Record::Histograms(s) if self.shared.cfg.send_native_histograms => {
                return self.dispatch_record(
                    seg,
                    at,
                    s.into_iter().map(|(r, t, h)| (r, t, Val::H(h))),
                    floor,
                )
            }
            _ => {}
        }
        true
    }

    /// Sends what the removed segments `[from, to)` held, from the store, then the live
    /// series of the checkpoint (their records may have been in the removed segments).
    fn catch_up(&mut self, from: u64, to: u64) -> bool {
        let ranges: Vec<(u64, i64, i64)> = wal::removed_segments(&self.wal_dir)
            .into_iter()
            .filter(|(n, _, _)| *n >= from && *n < to)
            .collect();
        let (mut mint, maxt) = if ranges.is_empty() {
            // The index is gone: everything the store has up to now, filtered by what was
            // already sent.
            (0, now_ms())
        } else {
            ranges
                .iter()
                .fold((i64::MAX, i64::MIN), |(a, b), r| (a.min(r.1), b.max(r.2)))
        };
        self.shared.catching_up.store(true, Ordering::Relaxed);
        tracing::warn!(remote = %self.shared.name, from_segment = from, to_segment = to, mint, maxt,
            "the receiver fell behind the write-ahead log; sending the missing range from the blocks");
        let floor = self.age_floor();
        if mint < floor {
            // Counted as the samples are read below; the query starts at the floor.
            let dropped = self.count_range(mint, floor.min(maxt));
            self.shared.metrics.samples_dropped.inc_by(dropped);
            if dropped > 0 {
                crate::failure!(warn, "remote_write", "sample_age_limit", remote = %self.shared.name, samples = dropped,
                    "samples older than queue_config.sample_age_limit were not sent");
            }
            mint = floor;
        }
        let pos = Pos {
            seg: to.saturating_sub(1),
            off: u64::MAX,
            idx: 0,
        };
        let Ok(all) = Matcher::new(MatchOp::Regex, crate::model::METRIC_NAME, ".+") else {
            return true;
        };
        let mut a = mint;
        while a <= maxt {
            if self.shared.stopped() {
                return false;
            }
            let b = a.saturating_add(CATCH_UP_WINDOW_MS - 1).min(maxt);
            for s in self.querier.select(std::slice::from_ref(&all), a, b) {
                let Some(e) = self.entry_for(&s.labels) else {
                    continue;
                };
                let mut samples = s
                    .samples
                    .into_iter()
                    .map(|(t, v)| (t, Val::F(v)))
                    .collect::<Vec<_>>();
                if self.shared.cfg.send_native_histograms {
                    samples.extend(s.histograms.into_iter().map(|(t, h)| (t, Val::H(h))));
                    samples.sort_by_key(|x| x.0);
                }
                for (t, v) in samples {
                    if t < a || t > b {
                        continue;
                    }
                    if !self.dispatch(e.clone(), t, v, pos, i64::MIN) {
                        return false;
                    }
                }
            }
            if !self.flush_bufs() {
                return false;
            }
            a = b.saturating_add(1);
        }
        self.load_checkpoint();
        self.shared.catching_up.store(false, Ordering::Relaxed);
        tracing::info!(remote = %self.shared.name, "caught up from the blocks; reading the write-ahead log again");
        true
    }

    fn count_range(&self, mint: i64, maxt: i64) -> u64 {
        let Ok(all) = Matcher::new(MatchOp::Regex, crate::model::METRIC_NAME, ".+") else {
            return 0;
        };
        self.querier
            .select(std::slice::from_ref(&all), mint, maxt.saturating_sub(1))
            .iter()
            .map(|s| s.samples.len() as u64)
            .sum()
    }

    /// Drains every shard, then restarts with `n` of them (the hash changes with the count, so
    /// nothing may be in flight while it does).
    fn reshard(&mut self, n: usize) -> bool {
        if !self.flush_bufs() {
            return false;
        }
        let mut waits = Vec::new();
        for tx in &self.shards {
            let (d, w) = oneshot::channel();
            if tx.blocking_send(Msg::Flush(d)).is_err() {
                return false;
            }
            waits.push(w);
        }
        for w in waits {
            if w.blocking_recv().is_err() {
                return false;
            }
        }
        let here = Pos {
            seg: self.seg,
            off: self.off,
            idx: 0,
        };
        let slots = vec![here; n];
        if let Err(e) = self.state.reset(&slots) {
            crate::failure!(error, "remote_write", "state_write", remote = %self.shared.name, error = %e, "writing the remote write state failed");
            return true;
        }
        tracing::info!(remote = %self.shared.name, from = self.shards.len(), to = n, "resharding");
        self.acked = slots;
        self.spawn_shards(n);
        true
    }

    fn desired_shards(&self, last: &mut (Instant, u64, u64, u64)) -> usize {
        let q = &self.shared.cfg.queue_config;
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64().max(0.001);
        let din = self.shared.dispatched.load(Ordering::Relaxed);
        let dout = self.shared.acked.load(Ordering::Relaxed);
        let dns = self.shared.send_nanos.load(Ordering::Relaxed);
        let (in_rate, out_n, nanos) = ((din - last.1) as f64 / dt, dout - last.2, dns - last.3);
        *last = (now, din, dout, dns);
        let cur = self.shards.len();
        if out_n == 0 {
            return cur;
        }
        // Prometheus's rule: time per sample × (incoming rate + 5 % of the backlog per second).
        let per_sample = nanos as f64 / 1e9 / out_n as f64;
        let pending = self.shared.pending.load(Ordering::Relaxed).max(0) as f64;
        let want = (per_sample * (in_rate + 0.05 * pending)).ceil() as usize;
        let want = want.clamp(q.min_shards, q.max_shards);
        self.shared.desired.store(want as u64, Ordering::Relaxed);
        self.shared.metrics.shards_desired.set(want as f64);
        // Within 30 % either way is not worth a drain.
        let (lo, hi) = (cur as f64 * 0.7, cur as f64 * 1.3);
        if (want as f64) >= lo && (want as f64) <= hi {
            return cur;
        }
        want
    }

    fn run(mut self) {
        self.load_checkpoint();
        let segs = wal::list_segments(&self.wal_dir).unwrap_or_default();
        let first = segs.first().copied().unwrap_or(0);
        let resume = self.acked.iter().min().copied().unwrap_or_default();
        // The first segment still holding unacknowledged samples (a catch-up's marker
        // position lies past its segment's end).
        let from = if resume.off == u64::MAX {
            resume.seg + 1
        } else {
            resume.seg
        };
        if from < first && !segs.is_empty() {
            // The receiver (or this process) was away longer than the log holds.
            if !self.catch_up(from, first) {
                return;
            }
        }
        self.seg = first;
        self.off = 0;
        let mut stats = (Instant::now(), 0u64, 0u64, 0u64);
        let mut last_reshard_check = Instant::now();
        loop {
            if self.shared.stopped() {
                return;
            }
            if last_reshard_check.elapsed() >= RESHARD_EVERY {
                last_reshard_check = Instant::now();
                let want = self.desired_shards(&mut stats);
                let failing = self
                    .shared
                    .last_failure
                    .lock()
                    .is_some_and(|t| t.elapsed() < RESHARD_EVERY);
                if want != self.shards.len() && !failing && !self.reshard(want) {
                    return;
                }
            }
            match wal::read_segment(&self.wal_dir, self.seg, self.off, READ_BYTES) {
                Ok(Some(r)) => {
                    let progressed = r.end > self.off;
                    for (at, rec) in r.records {
                        if !self.handle(self.seg, at, rec) {
                            return;
                        }
                    }
                    self.off = r.end;
                    if !self.flush_bufs() {
                        return;
                    }
                    if let Some(c) = &r.corrupt {
                        crate::failure!(error, "remote_write", "wal_corrupt", remote = %self.shared.name, problem = %c, "skipping the rest of a damaged WAL segment");
                    }
                    if progressed && r.corrupt.is_none() {
                        continue;
                    }
                    // At the segment's end: move on once the writer has moved on.
                    let next = wal::list_segments(&self.wal_dir)
                        .unwrap_or_default()
                        .into_iter()
                        .find(|n| *n > self.seg);
                    match next {
                        Some(n) => {
                            if n > self.seg + 1 && !self.catch_up(self.seg + 1, n) {
                                return;
                            }
                            self.seg = n;
                            self.off = 0;
                        }
                        None => std::thread::sleep(IDLE),
                    }
                }
                Ok(None) => {
                    let next = wal::list_segments(&self.wal_dir)
                        .unwrap_or_default()
                        .into_iter()
                        .find(|n| *n > self.seg);
                    match next {
                        Some(n) => {
                            // Truncation removed segments this queue had not read.
                            if !self.catch_up(self.seg, n) {
                                return;
                            }
                            self.seg = n;
                            self.off = 0;
                        }
                        None => std::thread::sleep(IDLE),
                    }
                }
                Err(e) => {
                    crate::failure!(error, "remote_write", "wal_read", remote = %self.shared.name, error = %e, "reading the WAL failed; retrying");
                    std::thread::sleep(StdDuration::from_secs(1));
                }
            }
        }
    }
}

/// A 1.0 `WriteRequest` for `items`, with the float and histogram sample counts.
fn encode_v1(items: &[Item]) -> (Vec<u8>, u64, u64) {
    let (mut nf, mut nh) = (0u64, 0u64);
    // The `WriteRequest` is written field by field with prost's encoders, each
    // series' labels from the bytes encoded once when the series was first seen:
    // cloning label strings into message structs per batch was most of the cost.
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, message, WireType};
    let mut out = Vec::with_capacity(items.len() * 64);
    let mut i = 0;
    while i < items.len() {
        let series = &items[i].series;
        // A run of samples of one series (usually one: a batch holds scrapes).
        let mut j = i;
        while j < items.len() && Arc::ptr_eq(&items[j].series, series) {
            j += 1;
        }
        let mut samples = Vec::with_capacity(j - i);
        let mut hists = Vec::new();
        for it in &items[i..j] {
            match &it.v {
                Val::F(v) => samples.push(v1::Sample {
                    value: *v,
                    timestamp: it.t,
                }),
                Val::H(h) => hists.push(convert::to_proto(h, it.t)),
            }
        }
        nf += samples.len() as u64;
        nh += hists.len() as u64;
        let len = series.labels_pb.len()
            + message::encoded_len_repeated(2, &samples)
            + message::encoded_len_repeated(4, &hists);
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(len as u64, &mut out);
        out.reserve(len + encoded_len_varint(len as u64));
        out.extend_from_slice(&series.labels_pb);
        for x in &samples {
            message::encode(2, x, &mut out);
        }
        for x in &hists {
            message::encode(4, x, &mut out);
        }
        i = j;
    }
    (out, nf, nh)
}

/// Builds the compressed body for a batch; returns it with the sample and histogram counts.
fn encode(shared: &Shared, items: &[Item]) -> (Vec<u8>, u64, u64) {
    let (mut nf, mut nh) = (0u64, 0u64);
    let raw = match shared.cfg.protobuf_message {
        Protocol::V1 => {
            let (raw, f, h) = encode_v1(items);
            (nf, nh) = (f, h);
            raw
        }
        Protocol::V2 => {
            let meta = shared.meta.read().clone();
            let mut symbols: Vec<String> = vec![String::new()];
            let mut symtab: HashMap<String, u32> = HashMap::from([(String::new(), 0)]);
            let mut sym = |s: &str| -> u32 {
                if let Some(i) = symtab.get(s) {
                    return *i;
                }
                let i = symbols.len() as u32;
                symbols.push(s.to_string());
                symtab.insert(s.to_string(), i);
                i
            };
            let mut index: HashMap<*const SeriesEntry, usize> = HashMap::new();
            let mut ts: Vec<v2::TimeSeries> = Vec::new();
            for it in items {
                let i = match index.get(&Arc::as_ptr(&it.series)) {
                    Some(i) => *i,
                    None => {
                        let mut refs = Vec::with_capacity(it.series.labels.len() * 2);
                        for l in &it.series.labels {
                            refs.push(sym(&l.name));
                            refs.push(sym(&l.value));
                        }
                        let metadata = if shared.cfg.metadata_config.send {
                            metadata_for(&meta, &it.series.family).map(|m| v2::Metadata {
                                r#type: convert::type_number(&m.kind),
                                help_ref: sym(&m.help),
                                unit_ref: sym(&m.unit),
                            })
                        } else {
                            None
                        };
                        ts.push(v2::TimeSeries {
                            labels_refs: refs,
                            metadata,
                            ..Default::default()
                        });
                        index.insert(Arc::as_ptr(&it.series), ts.len() - 1);
                        ts.len() - 1
                    }
                };
                match &it.v {
                    Val::F(v) => {
                        nf += 1;
                        ts[i].samples.push(v2::Sample {
                            value: *v,
                            timestamp: it.t,
                            start_timestamp: 0,
                        })
                    }
                    Val::H(h) => {
                        nh += 1;
                        ts[i].histograms.push(convert::to_proto(h, it.t))
                    }
                }
            }
            v2::Request {
                symbols,
                timeseries: ts,
            }
            .encode_to_vec()
        }
    };
    (proto::compress(&raw), nf, nh)
}

/// Waits `d`, or less when the queue stops. Returns false when stopped.
async fn pause(shared: &Shared, d: StdDuration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !shared.stopped(),
        _ = stop_signal(shared.stop.clone()) => false,
    }
}

/// Resolves when the queue is told to stop.
async fn stop_signal(mut stop: watch::Receiver<bool>) {
    // The guard `wait_for` yields is not `Send`; drop it here, inside.
    // An error means the sender is gone: the queue was dropped, which is a stop too.
    let _stopped = stop.wait_for(|s| *s).await.is_ok();
}

/// Sends one batch until it is acknowledged or refused for good. Returns false when the
/// queue stopped first (the batch is then left to the next start).
async fn send_batch(shared: &Shared, shard: usize, items: &[Item], state: &StateFile) -> bool {
    let Some(last) = items.last() else {
        return true;
    };
    let (body, nf, nh) = encode(shared, items);
    let body = axum::body::Bytes::from(body);
    let max_t = items.iter().map(|i| i.t).max().unwrap_or(i64::MIN);
    let q = &shared.cfg.queue_config;
    let mut backoff = q.min_backoff.std();
    let mut attempt = 0u32;
    let m = &shared.metrics;
    loop {
        if shared.stopped() {
            return false;
        }
        let began = Instant::now();
        let outcome = shared
            .client
            .post(body.clone(), shared.cfg.protobuf_message, attempt)
            .await;
        let took = began.elapsed();
        m.batch_duration.observe(took.as_secs_f64());
        match outcome {
            Attempt::Ok {
                samples_written,
                histograms_written,
            } => {
                m.samples.inc_by(nf);
                m.histograms.inc_by(nh);
                m.bytes.inc_by(body.len() as u64);
                if let Some(w) = samples_written.filter(|w| *w < nf) {
                    m.samples_failed.inc_by(nf - w);
                    tracing::warn!(remote = %shared.name, sent = nf, written = w, "the receiver wrote fewer samples than were sent");
                }
                if let Some(w) = histograms_written.filter(|w| *w < nh) {
                    m.histograms_failed.inc_by(nh - w);
                }
                shared
                    .send_nanos
                    .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                shared.status.lock().last_success_ms = now_ms();
                let prev = shared.highest_sent.fetch_max(max_t, Ordering::Relaxed);
                if max_t > prev {
                    m.highest_sent.set(max_t as f64 / 1000.0);
                }
                break;
            }
            Attempt::Retry { error, after } => {
                m.samples_retried.inc_by(nf);
                m.histograms_retried.inc_by(nh);
                if attempt.is_multiple_of(10) {
                    crate::failure!(warn, "remote_write", "send_retry", remote = %shared.name, attempt, error = %error, "sending failed; retrying");
                }
                shared.note_error(&error);
                let wait = after.unwrap_or(backoff);
                backoff = (backoff * 2).min(q.max_backoff.std());
                attempt += 1;
                if !pause(shared, wait).await {
                    return false;
                }
            }
            Attempt::Permanent { error } => {
                m.samples_failed.inc_by(nf);
                m.histograms_failed.inc_by(nh);
                crate::failure!(error, "remote_write", "send_refused", remote = %shared.name, samples = nf + nh, error = %error, "the receiver refused a batch; it is dropped");
                shared.note_error(&error);
                break;
            }
        }
    }
    let n = items.len() as u64;
    shared.pending.fetch_sub(n as i64, Ordering::Relaxed);
    m.pending.dec_by(n as i64);
    shared.acked.fetch_add(n, Ordering::Relaxed);
    if let Err(e) = state.write_slot(shard, last.pos.succ()) {
        crate::failure!(error, "remote_write", "state_write", remote = %shared.name, error = %e, "writing the remote write state failed");
    }
    true
}

async fn run_shard(
    shared: Arc<Shared>,
    idx: usize,
    mut rx: mpsc::Receiver<Msg>,
    state: Arc<StateFile>,
) {
    let max = shared.cfg.queue_config.max_samples_per_send;
    let deadline = shared.cfg.queue_config.batch_send_deadline.std();
    let mut batch: Vec<Item> = Vec::with_capacity(max.min(10_000));
    let mut since: Option<tokio::time::Instant> = None;
    let mut synced = Instant::now();
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = async {
                match since {
                    Some(s) => tokio::time::sleep_until(s + deadline).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                let b = std::mem::take(&mut batch);
                since = None;
                if !send_batch(&shared, idx, &b, &state).await {
                    return;
                }
                continue;
            }
            _ = stop_signal(shared.stop.clone()) => return,
        };
        match msg {
            None => return,
            Some(Msg::Items(v)) => {
                for it in v {
                    batch.push(it);
                    if batch.len() >= max {
                        let b = std::mem::replace(&mut batch, Vec::with_capacity(max.min(10_000)));
                        since = None;
                        if !send_batch(&shared, idx, &b, &state).await {
                            return;
                        }
                    }
                }
                if !batch.is_empty() && since.is_none() {
                    since = Some(tokio::time::Instant::now());
                }
            }
            Some(Msg::Flush(done)) => {
                let b = std::mem::take(&mut batch);
                since = None;
                if !send_batch(&shared, idx, &b, &state).await {
                    return;
                }
                let _ = done.send(());
            }
        }
        // The slots survive a SIGKILL in the page cache; an fsync now and then covers a
        // power cut too.
        if synced.elapsed() > StdDuration::from_secs(5) {
            state.sync();
            synced = Instant::now();
        }
    }
}

/// Keeps the metadata 2.0 sends inline fresh and, for 1.0, sends it on its interval.
async fn metadata_loop(shared: Arc<Shared>, source: Arc<dyn MetadataSource>) {
    let every = shared
        .cfg
        .metadata_config
        .send_interval
        .std()
        .max(StdDuration::from_secs(1));
    // 2.0 carries metadata with each series, so its table follows new targets within
    // seconds rather than waiting a whole send interval.
    let refresh = every.min(StdDuration::from_secs(5));
    let mut last_send: Option<Instant> = None;
    loop {
        let fams = source.families();
        *shared.meta.write() =
            Arc::new(fams.iter().map(|f| (f.metric.clone(), f.clone())).collect());
        let due = last_send.is_none_or(|t| t.elapsed() >= every);
        if shared.cfg.protobuf_message == Protocol::V1 && !fams.is_empty() && due {
            last_send = Some(Instant::now());
            for chunk in fams.chunks(shared.cfg.metadata_config.max_samples_per_send) {
                let req = v1::WriteRequest {
                    timeseries: Vec::new(),
                    metadata: chunk
                        .iter()
                        .map(|f| v1::MetricMetadata {
                            r#type: convert::type_number(&f.kind),
                            metric_family_name: f.metric.clone(),
                            help: f.help.clone(),
                            unit: f.unit.clone(),
                        })
                        .collect(),
                };
                let body = axum::body::Bytes::from(proto::compress(&req.encode_to_vec()));
                let n = chunk.len() as u64;
                let mut backoff = shared.cfg.queue_config.min_backoff.std();
                // Metadata is resent in full every interval, so a few retries are enough.
                for attempt in 0..5u32 {
                    match shared
                        .client
                        .post(body.clone(), Protocol::V1, attempt)
                        .await
                    {
                        Attempt::Ok { .. } => {
                            shared.metrics.metadata.inc_by(n);
                            shared.metrics.bytes.inc_by(body.len() as u64);
                            break;
                        }
                        Attempt::Retry { error, after } => {
                            shared.metrics.metadata_retried.inc_by(n);
                            if attempt == 4 {
                                shared.metrics.metadata_failed.inc_by(n);
                                shared.note_error(&error);
                            } else if !pause(&shared, after.unwrap_or(backoff)).await {
                                return;
                            }
                            backoff = (backoff * 2).min(shared.cfg.queue_config.max_backoff.std());
                        }
                        Attempt::Permanent { error } => {
                            shared.metrics.metadata_failed.inc_by(n);
                            shared.note_error(&error);
                            break;
                        }
                    }
                }
            }
        }
        if !pause(&shared, refresh).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_and_succ() {
        let a = Pos {
            seg: 1,
            off: 10,
            idx: 3,
        };
        assert!(
            a < a.succ()
                && a.succ()
                    < Pos {
                        seg: 1,
                        off: 11,
                        idx: 0
                    }
        );
        let end = Pos {
            seg: 1,
            off: 10,
            idx: u32::MAX,
        };
        assert_eq!(
            end.succ(),
            Pos {
                seg: 1,
                off: 11,
                idx: 0
            }
        );
        // A fresh log's first sample is not skipped by a fresh slot.
        assert!(Pos::default() >= Pos::default());
    }

    #[test]
    fn metadata_is_found_only_where_the_type_explains_the_suffix() {
        let fam = |metric: &str, kind: &str| {
            (
                metric.to_string(),
                FamilyMetadata {
                    metric: metric.into(),
                    kind: kind.into(),
                    help: String::new(),
                    unit: String::new(),
                },
            )
        };
        let m: HashMap<String, FamilyMetadata> = [
            fam("reqs", "counter"),
            fam("lat", "histogram"),
            fam("temp", "gauge"),
            fam("jobs_total", "counter"),
        ]
        .into_iter()
        .collect();
        assert_eq!(metadata_for(&m, "reqs_total").unwrap().metric, "reqs");
        assert_eq!(metadata_for(&m, "lat_bucket").unwrap().metric, "lat");
        assert_eq!(metadata_for(&m, "jobs_total").unwrap().metric, "jobs_total");
        // A gauge explains no suffix: `temp_count` is not `temp`.
        assert!(metadata_for(&m, "temp_count").is_none());
    }

    fn entry(pairs: &[(&str, &str)]) -> Arc<SeriesEntry> {
        let labels: Vec<v1::Label> = pairs
            .iter()
            .map(|(n, v)| v1::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect();
        let mut labels_pb = Vec::new();
        for l in &labels {
            prost::encoding::message::encode(1, l, &mut labels_pb);
        }
        Arc::new(SeriesEntry {
            labels,
            labels_pb,
            family: String::new(),
            shard_hash: 0,
            last_t: AtomicI64::new(i64::MIN),
        })
    }

    /// The field-by-field encoding decodes as the message prost builds from structs.
    #[test]
    fn v1_batches_decode_as_write_requests() {
        let a = entry(&[("__name__", "a"), ("job", "x")]);
        let b = entry(&[("__name__", "b")]);
        let h = Arc::new(crate::model::histogram::FloatHistogram {
            count: 2.0,
            sum: 1.0,
            ..Default::default()
        });
        let item = |s: &Arc<SeriesEntry>, t: i64, v: Val| Item {
            series: s.clone(),
            t,
            v,
            pos: Pos::default(),
        };
        let items = vec![
            item(&a, 1, Val::F(1.0)),
            item(&a, 2, Val::F(f64::from_bits(crate::model::STALE_NAN_BITS))),
            item(&b, 1, Val::H(h.clone())),
            item(&a, 3, Val::F(3.0)),
        ];
        let (raw, nf, nh) = encode_v1(&items);
        assert_eq!((nf, nh), (3, 1));
        let got = v1::WriteRequest::decode(raw.as_slice()).unwrap();
        let ts =
            |e: &Arc<SeriesEntry>, s: Vec<(i64, f64)>, hs: Vec<v1::Histogram>| v1::TimeSeries {
                labels: e.labels.clone(),
                samples: s
                    .into_iter()
                    .map(|(timestamp, value)| v1::Sample { value, timestamp })
                    .collect(),
                histograms: hs,
                exemplars: vec![],
            };
        let want = vec![
            ts(
                &a,
                vec![(1, 1.0), (2, f64::from_bits(crate::model::STALE_NAN_BITS))],
                vec![],
            ),
            ts(&b, vec![], vec![convert::to_proto(&h, 1)]),
            ts(&a, vec![(3, 3.0)], vec![]),
        ];
        assert_eq!(got.timeseries.len(), 3);
        for (g, w) in got.timeseries.iter().zip(&want) {
            assert_eq!(g.labels, w.labels);
            assert_eq!(g.histograms, w.histograms);
            // Compared by bits: the stale marker is a NaN.
            let bits = |x: &v1::TimeSeries| {
                x.samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(g), bits(w));
        }
    }

    #[test]
    fn state_slots_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (s, slots) = StateFile::open(dir.path()).unwrap();
        assert!(slots.is_none());
        s.reset(&[Pos::default(); 3]).unwrap();
        let p = Pos {
            seg: 4,
            off: 99,
            idx: 2,
        };
        s.write_slot(1, p).unwrap();
        drop(s);
        let (_, slots) = StateFile::open(dir.path()).unwrap();
        assert_eq!(slots.unwrap(), vec![Pos::default(), p, Pos::default()]);
    }

    #[test]
    fn shard_hash_is_stable() {
        // A changed hash would send persisted positions to the wrong shards after an upgrade.
        assert_eq!(fnv([("a", "b")].into_iter()), 0xd2b3_7181_9297_f98a);
        assert_ne!(
            fnv([("a", "bc")].into_iter()),
            fnv([("ab", "c")].into_iter())
        );
    }
}
