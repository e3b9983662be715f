//! Persisted blocks: an immutable directory per time range holding `meta.json`, a `chunks`
//! file of checksummed XOR chunks, an `index` (symbols, series with chunk metas, postings per
//! label pair) and optional `tombstones`. Reads go through memory maps.
//!
//! This file owns the on-disk format only; deciding when blocks are cut, merged or deleted is
//! `db.rs`'s job. The layout follows Prometheus's TSDB (same directory names and `meta.json`
//! fields, so its tooling's habits carry over), with a simpler binary encoding of our own.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::chunk::{XorChunk, XorIter, SAMPLES_PER_CHUNK};
use super::wal::HistogramRef;
use crate::model::histogram::FloatHistogram;
use crate::model::{Label, Labels, MatchOp, Matcher};

/// Index format 2 adds per-series histogram chunks; format 1 (floats only) is still read.
const INDEX_MAGIC: &[u8; 8] = b"APIDX\x00\x00\x02";
const INDEX_MAGIC_V1: &[u8; 8] = b"APIDX\x00\x00\x01";
const CHUNKS_MAGIC: &[u8; 8] = b"APCHK\x00\x00\x01";
/// Series entries start on 16-byte boundaries so a posting can be `offset / 16` in a `u32`.
const SERIES_ALIGN: usize = 16;
const TOC_LEN: usize = 4 * 8 + 4;

/// Why a block could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// File-system failure, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data does not match its checksum or structure.
    #[error("{path}: {what}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, what: impl Into<String>) -> BlockError {
    BlockError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Block statistics in `meta.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    /// Samples stored.
    pub num_samples: u64,
    /// Series stored.
    pub num_series: u64,
    /// Chunks stored.
    pub num_chunks: u64,
    /// Tombstoned intervals.
    #[serde(default)]
    pub num_tombstones: u64,
}

/// Compaction lineage in `meta.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BlockCompaction {
    /// 1 for a block cut from the head or imported, +1 per compaction.
    pub level: u32,
    /// ULIDs of the level-1 blocks whose data this block holds.
    pub sources: Vec<String>,
    /// ULIDs of the blocks merged into this one; they are deleted once this one is written,
    /// and deleted at open if a crash left them behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
}

/// `meta.json`: what a block covers. `max_time` is exclusive, as in Prometheus.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    /// The block's id and directory name.
    pub ulid: String,
    /// First timestamp covered (ms, inclusive).
    pub min_time: i64,
    /// End of the covered range (ms, exclusive).
    pub max_time: i64,
    /// Counts.
    pub stats: BlockStats,
    /// Lineage.
    pub compaction: BlockCompaction,
    /// Format version of this appliance's block encoding.
    pub version: u32,
}

/// A new ULID string.
pub fn new_ulid() -> String {
    ulid::Ulid::new().to_string()
}

fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

/// A bounds-checked reader over a byte slice; every read returns `None` past the end.
struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn new(b: &'a [u8], pos: usize) -> Self {
        Dec { b, pos }
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        let mut s = 0u32;
        loop {
            let b = *self.b.get(self.pos)?;
            self.pos += 1;
            if s >= 64 {
                return None;
            }
            if b < 0x80 {
                return Some(x | (u64::from(b) << s));
            }
            x |= u64::from(b & 0x7f) << s;
            s += 7;
        }
    }

    fn varint(&mut self) -> Option<i64> {
        let u = self.uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        let s = self.bytes(4)?;
        Some(u32::from_le_bytes(s.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        let s = self.bytes(8)?;
        Some(u64::from_le_bytes(s.try_into().ok()?))
    }
}

/// Where one chunk of a series lives and what it covers (inclusive bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    /// First timestamp.
    pub min_t: i64,
    /// Last timestamp.
    pub max_t: i64,
    /// Offset of the chunk record in the `chunks` file.
    pub offset: u64,
}

fn read_metas(d: &mut Dec<'_>) -> Option<Vec<ChunkMeta>> {
    let n = d.uvarint()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    let (mut prev_t, mut prev_off) = (0i64, 0u64);
    for i in 0..n {
        let min_t = if i == 0 {
            d.varint()?
        } else {
            prev_t + d.varint()?
        };
        let max_t = min_t + d.uvarint()? as i64;
        let offset = prev_off + d.uvarint()?;
        out.push(ChunkMeta {
            min_t,
            max_t,
            offset,
        });
        prev_t = max_t;
        prev_off = offset;
    }
    Some(out)
}

fn put_metas(buf: &mut Vec<u8>, metas: &[ChunkMeta]) {
    put_uvarint(buf, metas.len() as u64);
    let (mut prev_t, mut prev_off) = (0i64, 0u64);
    for (i, m) in metas.iter().enumerate() {
        if i == 0 {
            put_varint(buf, m.min_t);
        } else {
            put_varint(buf, m.min_t - prev_t);
        }
        put_uvarint(buf, (m.max_t - m.min_t) as u64);
        // Offsets only grow within a list; the first is absolute.
        put_uvarint(buf, m.offset - if i == 0 { 0 } else { prev_off });
        prev_t = m.max_t;
        prev_off = m.offset;
    }
}

/// Samples grouped into XOR chunks of at most [`SAMPLES_PER_CHUNK`] samples.
pub fn encode_chunks(samples: &[(i64, f64)]) -> Vec<XorChunk> {
    samples
        .chunks(SAMPLES_PER_CHUNK as usize)
        .map(|part| {
            let mut c = XorChunk::default();
            for (t, v) in part {
                c.append(*t, *v);
            }
            c
        })
        .collect()
}

/// Histogram samples grouped into chunks of at most [`SAMPLES_PER_CHUNK`]: (min t, max t,
/// bytes, samples). A histogram chunk is a sample count, then per sample the time (first
/// absolute, then the delta) and the histogram in its canonical notation.
pub fn encode_hist_chunks(samples: &[(i64, HistogramRef)]) -> Vec<(i64, i64, Vec<u8>, u64)> {
    samples
        .chunks(SAMPLES_PER_CHUNK as usize)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut b = Vec::new();
            put_uvarint(&mut b, part.len() as u64);
            let mut prev = 0i64;
            for (i, (t, h)) in part.iter().enumerate() {
                put_varint(&mut b, if i == 0 { *t } else { t - prev });
                prev = *t;
                let text = h.to_string();
                put_uvarint(&mut b, text.len() as u64);
                b.extend_from_slice(text.as_bytes());
            }
            (part[0].0, part[part.len() - 1].0, b, part.len() as u64)
        })
        .collect()
}

/// Samples in an encoded histogram chunk.
pub fn hist_chunk_len(data: &[u8]) -> u64 {
    Dec::new(data, 0).uvarint().unwrap_or(0)
}

fn decode_hist_chunk(data: &[u8]) -> Option<Vec<(i64, HistogramRef)>> {
    let mut d = Dec::new(data, 0);
    let n = d.uvarint()? as usize;
    let mut out = Vec::with_capacity(n.min(1024));
    let mut t = 0i64;
    for i in 0..n {
        let v = d.varint()?;
        t = if i == 0 { v } else { t + v };
        let len = d.uvarint()? as usize;
        let text = std::str::from_utf8(d.bytes(len)?).ok()?;
        out.push((t, std::sync::Arc::new(FloatHistogram::parse(text).ok()?)));
    }
    Some(out)
}

/// Writes one block into a temporary directory and renames it into place on `finish`, so a
/// crash never leaves a half-written block where `open` would find it.
pub struct BlockWriter {
    final_dir: PathBuf,
    tmp_dir: PathBuf,
    chunks: BufWriter<File>,
    chunks_len: u64,
    index: Vec<u8>,
    symbols: HashMap<String, u32>,
    series_start: usize,
    postings: BTreeMap<(u32, u32), Vec<u32>>,
    all: Vec<u32>,
    stats: BlockStats,
    min_time: i64,
    max_time: i64,
    last_labels: Option<Labels>,
}

impl BlockWriter {
    /// Starts block `ulid` under `parent` covering `[min_time, max_time)`. `symbols` must hold
    /// every label name and value the series will use.
    pub fn create(
        parent: &Path,
        ulid: &str,
        min_time: i64,
        max_time: i64,
        symbols: impl IntoIterator<Item = String>,
    ) -> Result<Self, BlockError> {
        let final_dir = parent.join(ulid);
        let tmp_dir = parent.join(format!("{ulid}.tmp-for-creation"));
        let _ = fs::remove_dir_all(&tmp_dir);
        fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
        let cpath = tmp_dir.join("chunks");
        let mut chunks =
            BufWriter::with_capacity(1 << 16, File::create(&cpath).map_err(io(&cpath))?);
        chunks.write_all(CHUNKS_MAGIC).map_err(io(&cpath))?;
        let mut syms: Vec<String> = symbols.into_iter().collect();
        syms.push(String::new());
        syms.sort_unstable();
        syms.dedup();
        let mut index = Vec::with_capacity(1 << 16);
        index.extend_from_slice(INDEX_MAGIC);
        put_uvarint(&mut index, syms.len() as u64);
        let mut symbols = HashMap::with_capacity(syms.len());
        for (i, s) in syms.into_iter().enumerate() {
            put_uvarint(&mut index, s.len() as u64);
            index.extend_from_slice(s.as_bytes());
            symbols.insert(s, i as u32);
        }
        let series_start = index.len();
        Ok(BlockWriter {
            final_dir,
            tmp_dir,
            chunks,
            chunks_len: CHUNKS_MAGIC.len() as u64,
            index,
            symbols,
            series_start,
            postings: BTreeMap::new(),
            all: Vec::new(),
            stats: BlockStats::default(),
            min_time,
            max_time,
            last_labels: None,
        })
    }

    /// Writes one encoded chunk; returns its offset.
    fn write_chunk(&mut self, data: &[u8]) -> Result<u64, BlockError> {
        let off = self.chunks_len;
        let mut head = Vec::with_capacity(10);
        put_uvarint(&mut head, data.len() as u64);
        let path = self.tmp_dir.join("chunks");
        self.chunks.write_all(&head).map_err(io(&path))?;
        self.chunks.write_all(data).map_err(io(&path))?;
        self.chunks
            .write_all(&crc32fast::hash(data).to_le_bytes())
            .map_err(io(&path))?;
        self.chunks_len += (head.len() + data.len() + 4) as u64;
        Ok(off)
    }

    /// Adds a series with its encoded float and histogram chunks `(min_t, max_t, bytes,
    /// samples)`, in label order.
    pub fn add_series(
        &mut self,
        labels: &Labels,
        chunks: &[(i64, i64, Vec<u8>, u64)],
        hchunks: &[(i64, i64, Vec<u8>, u64)],
    ) -> Result<(), BlockError> {
        if chunks.is_empty() && hchunks.is_empty() {
            return Ok(());
        }
        if let Some(prev) = &self.last_labels {
            if prev >= labels {
                return Err(corrupt(
                    &self.tmp_dir,
                    format!("series out of order: {labels} after {prev}"),
                ));
            }
        }
        let mut metas = Vec::with_capacity(chunks.len());
        for (mint, maxt, data, n) in chunks {
            let off = self.write_chunk(data)?;
            metas.push(ChunkMeta {
                min_t: *mint,
                max_t: *maxt,
                offset: off,
            });
            self.stats.num_samples += n;
            self.stats.num_chunks += 1;
        }
        let mut hmetas = Vec::with_capacity(hchunks.len());
        for (mint, maxt, data, n) in hchunks {
            let off = self.write_chunk(data)?;
            hmetas.push(ChunkMeta {
                min_t: *mint,
                max_t: *maxt,
                offset: off,
            });
            self.stats.num_samples += n;
            self.stats.num_chunks += 1;
        }
        while !(self.index.len() - self.series_start).is_multiple_of(SERIES_ALIGN) {
            self.index.push(0);
        }
        let id = ((self.index.len() - self.series_start) / SERIES_ALIGN) as u32;
        put_uvarint(&mut self.index, labels.len() as u64);
        for l in labels.iter() {
            let (Some(n), Some(v)) = (self.symbols.get(l.name), self.symbols.get(l.value)) else {
                return Err(corrupt(
                    &self.tmp_dir,
                    format!("{labels}: label not in symbols"),
                ));
            };
            put_uvarint(&mut self.index, u64::from(*n));
            put_uvarint(&mut self.index, u64::from(*v));
            self.postings.entry((*n, *v)).or_default().push(id);
        }
        put_metas(&mut self.index, &metas);
        put_metas(&mut self.index, &hmetas);
        self.all.push(id);
        self.stats.num_series += 1;
        self.last_labels = Some(labels.clone());
        Ok(())
    }

    /// Adds a series from raw samples (sorted by time), encoding them into chunks.
    pub fn add_samples(
        &mut self,
        labels: &Labels,
        samples: &[(i64, f64)],
        hists: &[(i64, HistogramRef)],
    ) -> Result<(), BlockError> {
        let chunks: Vec<(i64, i64, Vec<u8>, u64)> = encode_chunks(samples)
            .into_iter()
            .map(|c| (c.min_t(), c.max_t(), c.bytes(), u64::from(c.len())))
            .collect();
        self.add_series(labels, &chunks, &encode_hist_chunks(hists))
    }

    /// Writes postings, the table of contents, `meta.json`; syncs and renames into place.
    pub fn finish(mut self, compaction: BlockCompaction) -> Result<BlockMeta, BlockError> {
        let cpath = self.tmp_dir.join("chunks");
        self.chunks.flush().map_err(io(&cpath))?;
        self.chunks.get_ref().sync_all().map_err(io(&cpath))?;
        let postings_off = self.index.len();
        let mut table = Vec::new();
        let empty = self.symbols.get("").copied().unwrap_or(0);
        let all = std::mem::take(&mut self.all);
        let lists =
            std::iter::once(((empty, empty), all)).chain(std::mem::take(&mut self.postings));
        for ((n, v), ids) in lists {
            table.push((n, v, self.index.len() as u64));
            put_uvarint(&mut self.index, ids.len() as u64);
            for id in ids {
                self.index.extend_from_slice(&id.to_le_bytes());
            }
        }
        let table_off = self.index.len();
        put_uvarint(&mut self.index, table.len() as u64);
        for (n, v, off) in table {
            put_uvarint(&mut self.index, u64::from(n));
            put_uvarint(&mut self.index, u64::from(v));
            put_uvarint(&mut self.index, off);
        }
        for off in [
            INDEX_MAGIC.len(),
            self.series_start,
            postings_off,
            table_off,
        ] {
            self.index.extend_from_slice(&(off as u64).to_le_bytes());
        }
        let crc = crc32fast::hash(&self.index);
        self.index.extend_from_slice(&crc.to_le_bytes());
        let ipath = self.tmp_dir.join("index");
        write_synced(&ipath, &self.index)?;
        let meta = BlockMeta {
            ulid: self
                .final_dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            min_time: self.min_time,
            max_time: self.max_time,
            stats: self.stats.clone(),
            compaction,
            version: 1,
        };
        write_meta(&self.tmp_dir, &meta)?;
        fs::rename(&self.tmp_dir, &self.final_dir).map_err(io(&self.final_dir))?;
        sync_dir(self.final_dir.parent().unwrap_or(Path::new(".")));
        Ok(meta)
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), BlockError> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Best effort: a directory fsync makes a rename durable; some file systems refuse it.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Writes `meta.json` atomically (temp file + rename).
pub fn write_meta(dir: &Path, meta: &BlockMeta) -> Result<(), BlockError> {
    let tmp = dir.join("meta.json.tmp");
    let body = serde_json::to_vec_pretty(meta).map_err(|e| corrupt(&tmp, e.to_string()))?;
    write_synced(&tmp, &body)?;
    let path = dir.join("meta.json");
    fs::rename(&tmp, &path).map_err(io(&path))
}

/// Reads `meta.json` of the block in `dir`.
pub fn read_meta(dir: &Path) -> Result<BlockMeta, BlockError> {
    let path = dir.join("meta.json");
    let body = fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&body).map_err(|e| corrupt(&path, e.to_string()))
}

/// Deleted time ranges per series of a block (`tombstones` file, JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Tombstones {
    /// `(series id, min_t, max_t)`, inclusive.
    pub intervals: Vec<(u32, i64, i64)>,
}

impl Tombstones {
    fn for_series(&self, id: u32) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.intervals
            .iter()
            .filter(move |(s, _, _)| *s == id)
            .map(|(_, a, b)| (*a, *b))
    }
}

/// A series read from a block: its labels and chunk metas.
#[derive(Clone, Debug)]
pub struct BlockSeries {
    /// Series id inside the block.
    pub id: u32,
    /// Labels.
    pub labels: Labels,
    /// Float chunk metas in time order.
    pub chunks: Vec<ChunkMeta>,
    /// Histogram chunk metas in time order.
    pub hchunks: Vec<ChunkMeta>,
}

/// An open, memory-mapped block.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: Mmap,
    chunks: Mmap,
    /// `(offset, len)` of each symbol, in sorted order.
    symbols: Vec<(u32, u32)>,
    series_start: usize,
    /// name symbol → (value symbol, postings offset), values sorted.
    postings: BTreeMap<u32, Vec<(u32, u64)>>,
    all_postings: u64,
    tombstones: Tombstones,
    size: u64,
    /// Index format 2: series entries list histogram chunks too.
    with_histograms: bool,
}

/// CRC-32 of the first `len` bytes of the file, read through a small buffer rather than the
/// block's memory map: summing through the map made every page of the index resident in the
/// process (file-backed, but counted in its RSS) for as long as the block was open; ~20 MB a
/// block at 100k series, so each new block raised RSS by that much.
fn file_crc32(path: &Path, len: u64) -> Result<u32, BlockError> {
    use std::io::Read;
    let f = fs::File::open(path).map_err(io(path))?;
    let mut r = f.take(len);
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = r.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize())
}

fn map(path: &Path) -> Result<Mmap, BlockError> {
    let f = File::open(path).map_err(io(path))?;
    // SAFETY: block files are immutable once renamed into place; the appliance never writes
    // to them again and deletes them only after dropping every map.
    unsafe { Mmap::map(&f) }.map_err(io(path))
}

impl Block {
    /// Opens the block in `dir`, verifying the index checksum and structure.
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let meta = read_meta(dir)?;
        let ipath = dir.join("index");
        let cpath = dir.join("chunks");
        let index = map(&ipath)?;
        let chunks = map(&cpath)?;
        if chunks.len() < CHUNKS_MAGIC.len() || &chunks[..CHUNKS_MAGIC.len()] != CHUNKS_MAGIC {
            return Err(corrupt(&cpath, "bad magic"));
        }
        if index.len() < INDEX_MAGIC.len() + TOC_LEN
            || (&index[..INDEX_MAGIC.len()] != INDEX_MAGIC
                && &index[..INDEX_MAGIC.len()] != INDEX_MAGIC_V1)
        {
            return Err(corrupt(&ipath, "bad magic or too short"));
        }
        let with_histograms = &index[..INDEX_MAGIC.len()] == INDEX_MAGIC;
        let body = index.len() - 4;
        let mut d = Dec::new(&index, body);
        let want = d.u32().ok_or_else(|| corrupt(&ipath, "no checksum"))?;
        if file_crc32(&ipath, body as u64)? != want {
            return Err(corrupt(&ipath, "checksum mismatch"));
        }
        let mut toc = Dec::new(&index, body - 32);
        let bad = || corrupt(&ipath, "bad table of contents");
        let sym_off = toc.u64().ok_or_else(bad)? as usize;
        let series_start = toc.u64().ok_or_else(bad)? as usize;
        let _postings_off = toc.u64().ok_or_else(bad)? as usize;
        let table_off = toc.u64().ok_or_else(bad)? as usize;
        let mut d = Dec::new(&index, sym_off);
        let n = d.uvarint().ok_or_else(bad)? as usize;
        let mut symbols = Vec::with_capacity(n.min(index.len()));
        for _ in 0..n {
            let len = d.uvarint().ok_or_else(bad)? as usize;
            let off = d.pos;
            let s = d.bytes(len).ok_or_else(bad)?;
            if std::str::from_utf8(s).is_err() {
                return Err(corrupt(&ipath, "symbol is not UTF-8"));
            }
            symbols.push((off as u32, len as u32));
        }
        let mut d = Dec::new(&index, table_off);
        let n = d.uvarint().ok_or_else(bad)? as usize;
        let mut postings: BTreeMap<u32, Vec<(u32, u64)>> = BTreeMap::new();
        let mut all_postings = 0;
        for i in 0..n {
            let name = d.uvarint().ok_or_else(bad)? as u32;
            let value = d.uvarint().ok_or_else(bad)? as u32;
            let off = d.uvarint().ok_or_else(bad)?;
            if name as usize >= symbols.len() || value as usize >= symbols.len() {
                return Err(bad());
            }
            if i == 0 {
                all_postings = off;
            } else {
                postings.entry(name).or_default().push((value, off));
            }
        }
        let tpath = dir.join("tombstones");
        let tombstones = match fs::read(&tpath) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| corrupt(&tpath, e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tombstones::default(),
            Err(e) => return Err(io(&tpath)(e)),
        };
        let size = dir_size(dir);
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
            symbols,
            series_start,
            postings,
            all_postings,
            tombstones,
            size,
            with_histograms,
        })
    }

    /// The block's `meta.json`.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes on disk.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Its tombstones.
    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    fn symbol(&self, i: u32) -> &str {
        self.symbols
            .get(i as usize)
            .and_then(|(o, l)| self.index.get(*o as usize..(*o + *l) as usize))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    fn find_symbol(&self, s: &str) -> Option<u32> {
        let mut lo = 0usize;
        let mut hi = self.symbols.len();
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.symbol(mid as u32).cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }

    fn postings_at(&self, off: u64) -> Result<Vec<u32>, BlockError> {
        let mut d = Dec::new(&self.index, off as usize);
        let bad = || corrupt(&self.dir.join("index"), "bad postings list");
        let n = d.uvarint().ok_or_else(bad)? as usize;
        let raw = d.bytes(n.checked_mul(4).ok_or_else(bad)?).ok_or_else(bad)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Sorted ids of series that may match all of `matchers`.
    fn candidates(&self, matchers: &[Matcher]) -> Result<Vec<u32>, BlockError> {
        let mut result: Option<Vec<u32>> = None;
        for m in matchers {
            if m.matches_empty() {
                continue;
            }
            let mut ids = Vec::new();
            if let Some(n) = self.find_symbol(&m.name) {
                if let Some(vals) = self.postings.get(&n) {
                    if m.op == MatchOp::Equal {
                        if let Some(v) = self.find_symbol(&m.value) {
                            if let Ok(i) = vals.binary_search_by_key(&v, |(v, _)| *v) {
                                ids = self.postings_at(vals[i].1)?;
                            }
                        }
                    } else {
                        for (v, off) in vals {
                            if m.matches(self.symbol(*v)) {
                                ids.extend(self.postings_at(*off)?);
                            }
                        }
                        ids.sort_unstable();
                        ids.dedup();
                    }
                }
            }
            result = Some(match result {
                None => ids,
                Some(prev) => intersect(&prev, &ids),
            });
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                break;
            }
        }
        match result {
            Some(r) => Ok(r),
            None => self.postings_at(self.all_postings),
        }
    }

    /// Decodes series `id` (labels and chunk metas).
    fn series_at(&self, id: u32) -> Result<BlockSeries, BlockError> {
        let bad = || corrupt(&self.dir.join("index"), format!("bad series entry {id}"));
        let mut d = Dec::new(&self.index, self.series_start + id as usize * SERIES_ALIGN);
        let n = d.uvarint().ok_or_else(bad)? as usize;
        let mut labels = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let name = d.uvarint().ok_or_else(bad)? as u32;
            let value = d.uvarint().ok_or_else(bad)? as u32;
            if name as usize >= self.symbols.len() || value as usize >= self.symbols.len() {
                return Err(bad());
            }
            labels.push(Label {
                name: self.symbol(name).to_string(),
                value: self.symbol(value).to_string(),
            });
        }
        let chunks = read_metas(&mut d).ok_or_else(bad)?;
        let hchunks = if self.with_histograms {
            read_metas(&mut d).ok_or_else(bad)?
        } else {
            Vec::new()
        };
        Ok(BlockSeries {
            id,
            labels: Labels::from_sorted_unchecked(labels),
            chunks,
            hchunks,
        })
    }

    /// Series matching all `matchers`, in label order (chunks not read).
    pub fn matching_series(&self, matchers: &[Matcher]) -> Result<Vec<BlockSeries>, BlockError> {
        let mut out = Vec::new();
        for id in self.candidates(matchers)? {
            let s = self.series_at(id)?;
            if matchers
                .iter()
                .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Ids of every series, in label order.
    pub fn all_ids(&self) -> Result<Vec<u32>, BlockError> {
        self.postings_at(self.all_postings)
    }

    /// Series `id` (labels and chunk metas).
    pub fn series(&self, id: u32) -> Result<BlockSeries, BlockError> {
        self.series_at(id)
    }

    /// Every series in label order.
    pub fn all_series(&self) -> Result<Vec<BlockSeries>, BlockError> {
        self.postings_at(self.all_postings)?
            .into_iter()
            .map(|id| self.series_at(id))
            .collect()
    }

    /// The checksummed bytes of the chunk at `offset`.
    pub fn chunk_bytes(&self, offset: u64) -> Result<&[u8], BlockError> {
        let cpath = || self.dir.join("chunks");
        let mut d = Dec::new(&self.chunks, offset as usize);
        let len = d
            .uvarint()
            .ok_or_else(|| corrupt(&cpath(), format!("chunk at {offset}: bad length")))?;
        let data = d
            .bytes(len as usize)
            .ok_or_else(|| corrupt(&cpath(), format!("chunk at {offset}: truncated")))?;
        let crc = d
            .u32()
            .ok_or_else(|| corrupt(&cpath(), format!("chunk at {offset}: truncated")))?;
        if crc32fast::hash(data) != crc {
            return Err(corrupt(
                &cpath(),
                format!("chunk at {offset}: checksum mismatch"),
            ));
        }
        if data.len() < 2 {
            return Err(corrupt(&cpath(), format!("chunk at {offset}: too short")));
        }
        Ok(data)
    }

    /// Samples of `s` in `[mint, maxt]`, tombstones applied.
    pub fn samples(
        &self,
        s: &BlockSeries,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(i64, f64)>, BlockError> {
        let mut out = Vec::new();
        for c in &s.chunks {
            if c.max_t < mint || c.min_t > maxt {
                continue;
            }
            let data = self.chunk_bytes(c.offset)?;
            out.extend(XorIter::over(data).filter(|(t, _)| *t >= mint && *t <= maxt));
        }
        let dead: Vec<(i64, i64)> = self.tombstones.for_series(s.id).collect();
        if !dead.is_empty() {
            out.retain(|(t, _)| !dead.iter().any(|(a, b)| t >= a && t <= b));
        }
        Ok(out)
    }

    /// Histogram samples of `s` in `[mint, maxt]`, tombstones applied.
    pub fn histograms(
        &self,
        s: &BlockSeries,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(i64, HistogramRef)>, BlockError> {
        let mut out = Vec::new();
        for c in &s.hchunks {
            if c.max_t < mint || c.min_t > maxt {
                continue;
            }
            let data = self.chunk_bytes(c.offset)?;
            let all = decode_hist_chunk(data).ok_or_else(|| {
                corrupt(
                    &self.dir.join("chunks"),
                    format!("histogram chunk at {}: undecodable", c.offset),
                )
            })?;
            out.extend(all.into_iter().filter(|(t, _)| *t >= mint && *t <= maxt));
        }
        let dead: Vec<(i64, i64)> = self.tombstones.for_series(s.id).collect();
        if !dead.is_empty() {
            out.retain(|(t, _)| !dead.iter().any(|(a, b)| t >= a && t <= b));
        }
        Ok(out)
    }

    /// Sorted label names over series matching `matchers`.
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, BlockError> {
        if matchers.is_empty() {
            return Ok(self
                .postings
                .keys()
                .map(|n| self.symbol(*n).to_string())
                .filter(|n| !n.is_empty())
                .collect());
        }
        let mut names = std::collections::BTreeSet::new();
        for s in self.matching_series(matchers)? {
            names.extend(s.labels.iter().map(|l| l.name.to_string()));
        }
        Ok(names.into_iter().collect())
    }

    /// Sorted values of `name` over series matching `matchers`.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, BlockError> {
        if matchers.is_empty() {
            let Some(n) = self.find_symbol(name) else {
                return Ok(Vec::new());
            };
            return Ok(self
                .postings
                .get(&n)
                .map(|vals| {
                    vals.iter()
                        .map(|(v, _)| self.symbol(*v).to_string())
                        .collect()
                })
                .unwrap_or_default());
        }
        let mut vals = std::collections::BTreeSet::new();
        for s in self.matching_series(matchers)? {
            if let Some(v) = s.labels.get(name) {
                vals.insert(v.to_string());
            }
        }
        Ok(vals.into_iter().collect())
    }

    /// Every symbol, sorted (for compaction's symbol table).
    pub fn symbols(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.symbols.len() as u32).map(|i| self.symbol(i))
    }

    /// Checks every chunk's checksum (the index was checked at open).
    pub fn verify_chunks(&self) -> Result<(), BlockError> {
        for id in self.all_ids()? {
            let s = self.series_at(id)?;
            for c in s.chunks.iter().chain(&s.hchunks) {
                self.chunk_bytes(c.offset)?;
            }
        }
        Ok(())
    }

    /// Adds tombstones and rewrites the `tombstones` file.
    pub fn add_tombstones(&mut self, more: &[(u32, i64, i64)]) -> Result<(), BlockError> {
        if more.is_empty() {
            return Ok(());
        }
        self.tombstones.intervals.extend_from_slice(more);
        let path = self.dir.join("tombstones");
        let tmp = self.dir.join("tombstones.tmp");
        let body =
            serde_json::to_vec(&self.tombstones).map_err(|e| corrupt(&path, e.to_string()))?;
        write_synced(&tmp, &body)?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.meta.stats.num_tombstones = self.tombstones.intervals.len() as u64;
        write_meta(&self.dir, &self.meta)
    }
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Total bytes of regular files under `dir` (one level deep plus files).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn write_block(dir: &Path) -> BlockMeta {
        let series = [
            l(&[("__name__", "a"), ("job", "x")]),
            l(&[("__name__", "a"), ("job", "y")]),
            l(&[("__name__", "b"), ("job", "x")]),
        ];
        let syms = series.iter().flat_map(|s| {
            s.iter()
                .flat_map(|l| [l.name.to_string(), l.value.to_string()])
                .collect::<Vec<_>>()
        });
        let mut w = BlockWriter::create(dir, "B1", 0, 1_000_000, syms).unwrap();
        for (i, s) in series.iter().enumerate() {
            let samples: Vec<(i64, f64)> = (0..300)
                .map(|k| (k * 1000, (k + i as i64) as f64))
                .collect();
            w.add_samples(s, &samples, &[]).unwrap();
        }
        w.finish(BlockCompaction {
            level: 1,
            sources: vec!["B1".into()],
            parents: vec![],
        })
        .unwrap()
    }

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    #[test]
    fn written_block_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let meta = write_block(tmp.path());
        assert_eq!(meta.stats.num_series, 3);
        assert_eq!(meta.stats.num_samples, 900);
        assert_eq!(meta.stats.num_chunks, 9);
        let b = Block::open(&tmp.path().join("B1")).unwrap();
        let s = b
            .matching_series(&[
                m(MatchOp::Equal, "__name__", "a"),
                m(MatchOp::Regex, "job", "y|z"),
            ])
            .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels, l(&[("__name__", "a"), ("job", "y")]));
        let got = b.samples(&s[0], 5000, 130_000).unwrap();
        assert_eq!(got.len(), 126);
        assert_eq!(got[0], (5000, 6.0));
        assert_eq!(b.label_values("job", &[]).unwrap(), vec!["x", "y"]);
        assert_eq!(b.label_names(&[]).unwrap(), vec!["__name__", "job"]);
        assert_eq!(
            b.label_values("__name__", &[m(MatchOp::Equal, "job", "y")])
                .unwrap(),
            vec!["a"]
        );
        assert_eq!(
            b.matching_series(&[m(MatchOp::NotEqual, "job", "x")])
                .unwrap()
                .len(),
            1
        );
        b.verify_chunks().unwrap();
    }

    /// Opening a block reads its symbols and postings table, not the whole index: summing the
    /// checksum through the map once made every index page resident for the block's life.
    #[cfg(target_os = "linux")]
    #[test]
    fn opening_a_block_leaves_most_of_its_index_out_of_memory() {
        let tmp = tempfile::tempdir().unwrap();
        // Many series of many labels: the series and postings sections, which queries read
        // piece by piece, are most of the index. (The kernel may map whole large folios
        // around each page touched, hence the loose bound; reading it all maps all of it.)
        let series: Vec<Labels> = (0..100_000)
            .map(|i| {
                let mut pairs = vec![("__name__".to_string(), "m".to_string())];
                for k in 0..12 {
                    pairs.push((format!("l{k}"), format!("{}", (i / (k + 1)) % 50)));
                }
                pairs.push(("id".to_string(), i.to_string()));
                Labels::from_pairs(pairs)
            })
            .collect();
        let syms = series.iter().flat_map(|s| {
            s.iter()
                .flat_map(|l| [l.name.to_string(), l.value.to_string()])
                .collect::<Vec<_>>()
        });
        let mut w = BlockWriter::create(tmp.path(), "B2", 0, 1_000_000, syms).unwrap();
        let mut sorted = series.clone();
        sorted.sort();
        for s in &sorted {
            w.add_samples(s, &[(0, 1.0), (1000, 2.0)], &[]).unwrap();
        }
        w.finish(BlockCompaction {
            level: 1,
            sources: vec!["B2".into()],
            parents: vec![],
        })
        .unwrap();
        let index = tmp.path().join("B2").join("index");
        let size = fs::metadata(&index).unwrap().len() / 1024;
        let b = Block::open(&tmp.path().join("B2")).unwrap();
        // The index mapping's resident kB, from this process's smaps.
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        let name = index.to_str().unwrap();
        let mut lines = smaps.lines();
        let mut rss = None;
        while let Some(line) = lines.next() {
            if line.ends_with(name) {
                rss = lines
                    .find_map(|l| l.strip_prefix("Rss:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
                break;
            }
        }
        let rss = rss.expect("the index is mapped");
        assert!(size > 1024, "index of {size} kB is too small to tell");
        assert!(
            rss * 2 < size,
            "{rss} kB of a {size} kB index resident after open"
        );
        drop(b);
    }

    #[test]
    fn damaged_index_is_refused_and_damaged_chunk_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_block(tmp.path());
        let dir = tmp.path().join("B1");
        let mut c = fs::read(dir.join("chunks")).unwrap();
        c[20] ^= 0xff;
        fs::write(dir.join("chunks"), &c).unwrap();
        let b = Block::open(&dir).unwrap();
        let err = b.verify_chunks().unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        drop(b);
        let mut i = fs::read(dir.join("index")).unwrap();
        i[12] ^= 0x01;
        fs::write(dir.join("index"), &i).unwrap();
        let err = Block::open(&dir).err().unwrap().to_string();
        assert!(err.contains("index: checksum mismatch"), "{err}");
    }

    #[test]
    fn tombstones_hide_samples() {
        let tmp = tempfile::tempdir().unwrap();
        write_block(tmp.path());
        let mut b = Block::open(&tmp.path().join("B1")).unwrap();
        let s = b.matching_series(&[m(MatchOp::Equal, "job", "y")]).unwrap();
        b.add_tombstones(&[(s[0].id, 10_000, 19_000)]).unwrap();
        let b = Block::open(&tmp.path().join("B1")).unwrap();
        let got = b.samples(&s[0], 0, 30_000).unwrap();
        assert_eq!(got.len(), 21);
        assert_eq!(b.meta().stats.num_tombstones, 1);
    }
}
