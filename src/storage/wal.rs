//! The write-ahead log: every new series and every committed batch of samples is appended to
//! checksummed segment files before it becomes visible, and replayed at start.
//!
//! Record framing: `[type u8][payload length u32 LE][crc32 of payload u32 LE][payload]`.
//! Series and sample records are written compact, as Prometheus writes its WAL: varint refs
//! and times as deltas, integral values as varints, and the payload compressed with snappy
//! (the raw block format). New series are gathered and logged as one record ahead of the
//! next samples record, so a scrape that creates 10k series writes one series record, not
//! 10k. Replay streams: one segment is read at a time and each record is handed to the
//! caller as it is decoded, so a restart never holds the whole log in memory.
//! A record that is cut short or fails its checksum ends the log: replay stops there, the
//! segment is truncated to the last good record and later segments are moved aside, so a torn
//! write after a crash never becomes a crash loop. The WAL knows nothing of queries.

use crate::model::histogram::FloatHistogram;

/// A shared, immutable histogram sample.
pub type HistogramRef = std::sync::Arc<FloatHistogram>;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::model::{Label, Labels};

/// Largest segment before a new one is started.
const SEGMENT_BYTES: u64 = 64 << 20;
const REC_SERIES: u8 = 1;
const REC_SAMPLES: u8 = 2;
const REC_DELETE: u8 = 3;
const REC_HISTOGRAMS: u8 = 4;
/// Series, compact: snappy of `count, {ref, n, {name, value}*}*` (varints, length-prefixed
/// strings).
const REC_SERIES_V2: u8 = 5;
/// Samples, compact: snappy of `count, base_t (zigzag), flags, {ref delta << 1 | integral,
/// [t - base_t], value}*`; see [`encode_samples`].
const REC_SAMPLES_V2: u8 = 6;
/// Flag of [`REC_SAMPLES_V2`]: every sample has the base time (one scrape), so no time is
/// written per sample.
const SAME_TIME: u8 = 1;
/// Largest decompressed record accepted; a larger claim is damage, not data.
const MAX_RECORD: usize = 1 << 30;
/// Pending new series are written out once their encoding reaches this size.
const SERIES_FLUSH_BYTES: usize = 1 << 20;

/// WAL failures.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("wal {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A record beyond the largest the log accepts (one commit of tens of millions of samples).
    #[error("wal record of {0} bytes is larger than the log accepts")]
    TooLarge(usize),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A series and the ref its samples use.
    Series {
        /// The ref.
        sref: u64,
        /// The labels.
        labels: Labels,
    },
    /// Samples as (ref, t, v).
    Samples(Vec<(u64, i64, f64)>),
    /// Deleted ranges as (ref, mint, maxt), inclusive.
    Delete(Vec<(u64, i64, i64)>),
    /// Native histogram samples as (ref, t, histogram).
    Histograms(Vec<(u64, i64, HistogramRef)>),
}

impl Record {
    /// The oldest and newest sample time in the record (`(MAX, MIN)` when it holds none).
    pub fn time_range(&self) -> (i64, i64) {
        let fold = |it: &mut dyn Iterator<Item = i64>| {
            it.fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)))
        };
        match self {
            Record::Samples(s) => fold(&mut s.iter().map(|x| x.1)),
            Record::Histograms(s) => fold(&mut s.iter().map(|x| x.1)),
            _ => (i64::MAX, i64::MIN),
        }
    }
}

/// What replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Records replayed.
    pub records: u64,
    /// Set when the log ended in a torn or corrupt record (and was cut there).
    pub corruption: Option<String>,
}

/// An open write-ahead log.
pub struct Wal {
    dir: PathBuf,
    seg_no: u64,
    seg_size: u64,
    out: BufWriter<File>,
    dirty: bool,
    /// New series not yet written: their count and encoding (see [`REC_SERIES_V2`]).
    pending_series: (u64, Vec<u8>),
    /// Reused encode and compress buffers, so a commit allocates nothing once warm.
    enc: Vec<u8>,
    snap: Vec<u8>,
    /// Oldest and newest sample time per segment, to know which segments retention has
    /// emptied and, once removed, which times they held (for remote write's catch-up).
    max_t: std::collections::BTreeMap<u64, (i64, i64)>,
}

/// The file listing removed segments' time ranges, one `segment min_t max_t` line each.
const REMOVED: &str = "removed-segments";
/// Lines kept in [`REMOVED`]: years of 2-hourly truncations.
const REMOVED_KEEP: usize = 20_000;

const CHECKPOINT: &str = "checkpoint";

/// Reads records from one file, handing each to `sink`; on a torn or corrupt record, cuts the
/// file there and reports it in `replay`. Returns the oldest and newest sample time seen.
fn replay_file(
    path: &Path,
    name: &str,
    replay: &mut Replay,
    sink: &mut dyn FnMut(Record),
) -> Result<(i64, i64), WalError> {
    let file = File::open(path).map_err(io(path))?;
    let mut rd = std::io::BufReader::with_capacity(1 << 20, file);
    let mut off = 0u64;
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    let mut payload = Vec::new();
    let mut scratch = Vec::new();
    loop {
        let mut h = [0u8; 9];
        match read_full(&mut rd, &mut h).map_err(io(path))? {
            0 => break,
            9 => {}
            _ => {
                replay.corruption = Some(format!("{name} torn at byte {off}"));
                break;
            }
        }
        let kind = h[0];
        let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let crc = u32::from_le_bytes([h[5], h[6], h[7], h[8]]);
        if len > MAX_RECORD {
            replay.corruption = Some(format!("{name} has an unreadable record at byte {off}"));
            break;
        }
        payload.resize(len, 0);
        if read_full(&mut rd, &mut payload).map_err(io(path))? != len {
            replay.corruption = Some(format!("{name} torn at byte {off}"));
            break;
        }
        if crc32fast::hash(&payload) != crc {
            replay.corruption = Some(format!("{name} has a bad checksum at byte {off}"));
            break;
        }
        let ok = decode_into(kind, &payload, &mut scratch, &mut |r| {
            let (a, b) = r.time_range();
            (min_t, max_t) = (min_t.min(a), max_t.max(b));
            replay.records += 1;
            sink(r);
        });
        if !ok {
            replay.corruption = Some(format!("{name} has an unreadable record at byte {off}"));
            break;
        }
        off += 9 + len as u64;
    }
    if replay.corruption.is_some() {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        f.set_len(off).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    Ok((min_t, max_t))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(rd: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match rd.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn segment_name(n: u64) -> String {
    format!("{n:08}")
}

/// The segment numbers in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    Ok(segments(dir)?.into_iter().map(|(n, _)| n).collect())
}

/// The time ranges `(segment, min_t, max_t)` of segments removed by truncation, oldest first
/// (as far back as the index keeps them).
pub fn removed_segments(dir: &Path) -> Vec<(u64, i64, i64)> {
    let Ok(text) = fs::read_to_string(dir.join(REMOVED)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(' ').map(str::parse::<i64>);
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(n)), Some(Ok(a)), Some(Ok(b))) if n >= 0 => Some((n as u64, a, b)),
                _ => None,
            }
        })
        .collect()
}

/// What one read of a segment found.
#[derive(Debug, Default)]
pub struct SegmentRead {
    /// Complete records with the offset each starts at.
    pub records: Vec<(u64, Record)>,
    /// The offset after the last complete record: where the next read starts.
    pub end: u64,
    /// A record that is complete on disk but fails its checksum or does not decode: the rest
    /// of the segment cannot be trusted.
    pub corrupt: Option<String>,
}

/// Reads the complete records of segment `n` from byte `offset`, about `max_bytes` at a time
/// (more when one record is larger). A record still being written is left for the next read.
/// `Ok(None)` when the segment does not exist (removed by truncation, or not yet started).
pub fn read_segment(
    dir: &Path,
    n: u64,
    offset: u64,
    max_bytes: usize,
) -> Result<Option<SegmentRead>, WalError> {
    use std::io::{Seek, SeekFrom};
    let path = dir.join(segment_name(n));
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let len = f.metadata().map_err(io(&path))?.len();
    let mut out = SegmentRead {
        end: offset,
        ..Default::default()
    };
    if len <= offset {
        return Ok(Some(out));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io(&path))?;
    let want = ((len - offset) as usize).min(max_bytes.max(9));
    let mut data = vec![0u8; want];
    f.read_exact(&mut data).map_err(io(&path))?;
    // One record larger than the window: read exactly it.
    if data.len() >= 9 {
        let need = 9 + u32::from_le_bytes([data[1], data[2], data[3], data[4]]) as usize;
        if need > data.len() && (need as u64) <= len - offset {
            data.resize(need, 0);
            f.seek(SeekFrom::Start(offset)).map_err(io(&path))?;
            f.read_exact(&mut data).map_err(io(&path))?;
        }
    }
    let mut off = 0usize;
    while let Some(h) = data.get(off..off + 9) {
        let kind = h[0];
        let plen = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let crc = u32::from_le_bytes([h[5], h[6], h[7], h[8]]);
        let Some(payload) = data.get(off + 9..off + 9 + plen) else {
            break;
        };
        let at = offset + off as u64;
        if crc32fast::hash(payload) != crc {
            out.corrupt = Some(format!(
                "segment {} has a bad checksum at byte {at}",
                segment_name(n)
            ));
            break;
        }
        let mut scratch = Vec::new();
        if !decode_into(kind, payload, &mut scratch, &mut |r| {
            out.records.push((at, r))
        }) {
            out.corrupt = Some(format!(
                "segment {} has an unreadable record at byte {at}",
                segment_name(n)
            ));
            break;
        }
        off += 9 + plen;
    }
    out.end = offset + off as u64;
    Ok(Some(out))
}

/// The series records of the checkpoint (the live series at the last truncation).
pub fn read_checkpoint(dir: &Path) -> Result<Vec<Record>, WalError> {
    let cp = dir.join(CHECKPOINT);
    let file = match File::open(&cp) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&cp)(e)),
    };
    let mut rd = std::io::BufReader::with_capacity(1 << 20, file);
    let mut out = Vec::new();
    let (mut payload, mut scratch) = (Vec::new(), Vec::new());
    loop {
        let mut h = [0u8; 9];
        if read_full(&mut rd, &mut h).map_err(io(&cp))? != 9 {
            break;
        }
        let plen = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        if plen > MAX_RECORD {
            break;
        }
        payload.resize(plen, 0);
        if read_full(&mut rd, &mut payload).map_err(io(&cp))? != plen
            || crc32fast::hash(&payload) != u32::from_le_bytes([h[5], h[6], h[7], h[8]])
        {
            break;
        }
        decode_into(h[0], &payload, &mut scratch, &mut |r| out.push(r));
    }
    Ok(out)
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The 9-byte header of a record.
fn frame(kind: u8, payload: &[u8]) -> [u8; 9] {
    let mut h = [0u8; 9];
    h[0] = kind;
    h[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[5..9].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h
}

/// Snappy (raw block format) of `body` into `out`, which is reused between calls.
fn compress<'a>(body: &[u8], out: &'a mut Vec<u8>) -> Result<&'a [u8], WalError> {
    if body.len() > MAX_RECORD {
        return Err(WalError::TooLarge(body.len()));
    }
    out.resize(snap::raw::max_compress_len(body.len()), 0);
    let n = snap::raw::Encoder::new()
        .compress(body, out)
        .map_err(|_| WalError::TooLarge(body.len()))?;
    Ok(&out[..n])
}

fn put_uvarint(buf: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, buf);
}

/// Signed to unsigned for varints, small magnitudes small (protobuf's zigzag).
pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Appends one series to a [`REC_SERIES_V2`] body (without its count).
fn encode_series(sref: u64, labels: &Labels, buf: &mut Vec<u8>) {
    put_uvarint(buf, sref);
    put_uvarint(buf, labels.len() as u64);
    for l in labels.iter() {
        put_str(buf, l.name);
        put_str(buf, l.value);
    }
}

/// The value as an exact integer, when it is one a varint holds (negative zero is not: its
/// sign would be lost).
fn as_integral(v: f64) -> Option<i64> {
    let i = v as i64;
    ((i as f64).to_bits() == v.to_bits() && v.abs() < 9.0e15).then_some(i)
}

/// Encodes a [`REC_SAMPLES_V2`] body in three columns, so snappy finds the runs: the refs,
/// as deltas from the previous sample's (a scrape's series are mostly consecutive, a run of
/// one byte) with an "integral value" bit in the low bit; the times, as offsets from the
/// first (left out when all are equal, the usual one-scrape batch); and the values, as zigzag
/// varints when integral (counters, most gauges) and 8 raw bytes otherwise.
fn encode_samples<R: Copy + Into<u64>>(samples: &[(R, i64, f64)], buf: &mut Vec<u8>) {
    let base_t = samples.first().map(|s| s.1).unwrap_or(0);
    let same = samples.iter().all(|s| s.1 == base_t);
    put_uvarint(buf, samples.len() as u64);
    put_uvarint(buf, zigzag(base_t));
    buf.push(if same { SAME_TIME } else { 0 });
    let mut prev_ref = 0u64;
    for (r, _, v) in samples {
        let r: u64 = (*r).into();
        let delta = r.wrapping_sub(prev_ref) as i64;
        prev_ref = r;
        put_uvarint(
            buf,
            (zigzag(delta) << 1) | u64::from(as_integral(*v).is_some()),
        );
    }
    if !same {
        for (_, t, _) in samples {
            put_uvarint(buf, zigzag(t.wrapping_sub(base_t)));
        }
    }
    for (_, _, v) in samples {
        match as_integral(*v) {
            Some(i) => put_uvarint(buf, zigzag(i)),
            None => buf.extend_from_slice(&v.to_bits().to_le_bytes()),
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn uvarint(&mut self) -> Option<u64> {
        let mut rest = self.b.get(self.i..)?;
        let before = rest.len();
        let v = prost::encoding::decode_varint(&mut rest).ok()?;
        self.i += before - rest.len();
        Some(v)
    }
    fn vstring(&mut self) -> Option<String> {
        let n = usize::try_from(self.uvarint()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }
}

/// Decodes one record's payload, handing each record in it to `sink` (a compact series
/// record holds many series). `scratch` is reused for decompression. False when the payload
/// is damaged; records handed over before the damage stand.
pub fn decode_into(
    kind: u8,
    payload: &[u8],
    scratch: &mut Vec<u8>,
    sink: &mut dyn FnMut(Record),
) -> bool {
    decode_checked(kind, payload, scratch, sink).is_some()
}

fn decompress<'a>(payload: &[u8], scratch: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let n = snap::raw::decompress_len(payload).ok()?;
    // Snappy expands at most 64 bytes per 3-byte copy: a claim beyond that is damage, refused
    // before it costs a large allocation.
    if n > MAX_RECORD || n > payload.len().saturating_mul(22) + 64 {
        return None;
    }
    scratch.resize(n, 0);
    let n = snap::raw::Decoder::new()
        .decompress(payload, scratch)
        .ok()?;
    scratch.get(..n)
}

fn decode_checked(
    kind: u8,
    payload: &[u8],
    scratch: &mut Vec<u8>,
    sink: &mut dyn FnMut(Record),
) -> Option<()> {
    let mut c = Cursor { b: payload, i: 0 };
    match kind {
        REC_SERIES_V2 => {
            let body = decompress(payload, scratch)?;
            let mut c = Cursor { b: body, i: 0 };
            let n = c.uvarint()?;
            for _ in 0..n {
                let sref = c.uvarint()?;
                let k = c.uvarint()?;
                let mut v = Vec::with_capacity((k as usize).min(64));
                for _ in 0..k {
                    let (name, value) = (c.vstring()?, c.vstring()?);
                    v.push(Label { name, value });
                }
                // Written from a label set, so already in order: checked, not sorted again.
                let ordered = v.windows(2).all(|w| w[0].name < w[1].name)
                    && v.iter().all(|l| !l.value.is_empty());
                let labels = if ordered {
                    Labels::from_sorted_unchecked(v)
                } else {
                    Labels::from_pairs(v.into_iter().map(|l| (l.name, l.value)))
                };
                sink(Record::Series { sref, labels });
            }
            c.done().then_some(())
        }
        REC_SAMPLES_V2 => {
            let body = decompress(payload, scratch)?;
            let mut c = Cursor { b: body, i: 0 };
            let n = c.uvarint()?;
            let base_t = unzigzag(c.uvarint()?);
            let same = c.take(1)?[0] & SAME_TIME != 0;
            // Each sample takes at least two bytes: a count beyond that is damage.
            let mut v = Vec::with_capacity((n as usize).min(body.len() / 2));
            let mut ints = Vec::with_capacity(v.capacity());
            let mut r = 0u64;
            for _ in 0..n {
                let head = c.uvarint()?;
                r = r.wrapping_add(unzigzag(head >> 1) as u64);
                v.push((r, base_t, 0.0));
                ints.push(head & 1 == 1);
            }
            if !same {
                for s in v.iter_mut() {
                    s.1 = base_t.wrapping_add(unzigzag(c.uvarint()?));
                }
            }
            for (s, int) in v.iter_mut().zip(&ints) {
                s.2 = if *int {
                    unzigzag(c.uvarint()?) as f64
                } else {
                    f64::from_bits(c.u64()?)
                };
            }
            if !c.done() {
                return None;
            }
            sink(Record::Samples(v));
            Some(())
        }
        REC_SERIES => {
            let sref = c.u64()?;
            let n = c.u32()? as usize;
            let mut v = Vec::with_capacity(n.min(payload.len() / 8));
            for _ in 0..n {
                let name = c.string()?;
                let value = c.string()?;
                v.push(Label { name, value });
            }
            sink(Record::Series {
                sref,
                labels: Labels::from_pairs(v.into_iter().map(|l| (l.name, l.value))),
            });
            Some(())
        }
        REC_SAMPLES => {
            let n = c.u32()? as usize;
            let mut v = Vec::with_capacity(n.min(payload.len() / 24));
            for _ in 0..n {
                v.push((c.u64()?, c.u64()? as i64, f64::from_bits(c.u64()?)));
            }
            sink(Record::Samples(v));
            Some(())
        }
        REC_HISTOGRAMS => {
            let n = c.u32()? as usize;
            let mut v = Vec::with_capacity(n.min(payload.len() / 20));
            for _ in 0..n {
                let r = c.u64()?;
                let t = c.u64()? as i64;
                let h = FloatHistogram::parse(&c.string()?).ok()?;
                v.push((r, t, std::sync::Arc::new(h)));
            }
            sink(Record::Histograms(v));
            Some(())
        }
        REC_DELETE => {
            let n = c.u32()? as usize;
            let mut v = Vec::with_capacity(n.min(payload.len() / 24));
            for _ in 0..n {
                v.push((c.u64()?, c.u64()? as i64, c.u64()? as i64));
            }
            sink(Record::Delete(v));
            Some(())
        }
        _ => None,
    }
}

impl Wal {
    /// Opens (creating) the log in `dir` and replays it, handing each record to `sink` in
    /// order. A torn or corrupt tail is cut off and reported in `Replay::corruption`; writing
    /// continues in a fresh segment.
    pub fn open(dir: &Path, sink: &mut dyn FnMut(Record)) -> Result<(Wal, Replay), WalError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut replay = Replay::default();
        let mut max_t = std::collections::BTreeMap::new();
        let cp = dir.join(CHECKPOINT);
        if cp.exists() {
            replay_file(&cp, CHECKPOINT, &mut replay, sink)?;
        }
        let segs = segments(dir)?;
        let mut last = 0;
        for (n, path) in &segs {
            last = *n;
            if replay.corruption.is_some() {
                // Everything after a corrupt record is unreliable: keep it aside, not in the log.
                let _ = fs::rename(path, path.with_extension("corrupt"));
                continue;
            }
            let name = format!("segment {}", segment_name(*n));
            let t = replay_file(path, &name, &mut replay, sink)?;
            max_t.insert(*n, t);
        }
        let seg_no = if segs.is_empty() { 0 } else { last + 1 };
        let path = dir.join(segment_name(seg_no));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            seg_no,
            seg_size: 0,
            out: BufWriter::with_capacity(1 << 16, file),
            dirty: false,
            pending_series: (0, Vec::new()),
            enc: Vec::new(),
            snap: Vec::new(),
            max_t,
        };
        Ok((wal, replay))
    }

    /// Drops the oldest segments whose samples are all older than `cutoff`, after writing a
    /// checkpoint of the live series (so later segments can still be replayed). Returns the
    /// number of segments deleted.
    pub fn truncate(&mut self, live: &[(u64, Labels)], cutoff: i64) -> Result<usize, WalError> {
        let doomed = self.truncation_plan(cutoff)?;
        if doomed.is_empty() {
            return Ok(0);
        }
        Wal::write_checkpoint(&self.dir, live)?;
        self.remove_segments(&doomed)
    }

    /// Starts a new segment and names the older segments whose samples all lie before
    /// `cutoff`. The caller then writes a checkpoint ([`Wal::write_checkpoint`], without
    /// holding the log, so appends go on) and removes them ([`Wal::remove_segments`]).
    pub fn truncation_plan(&mut self, cutoff: i64) -> Result<Vec<u64>, WalError> {
        self.cut()?;
        Ok(self
            .max_t
            .iter()
            .take_while(|(n, (_, t))| **n < self.seg_no && *t < cutoff)
            .map(|(n, _)| *n)
            .collect())
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the checkpoint of `live` series into `dir` (atomically replacing the old one).
    /// Series created meanwhile are logged in the segment `truncation_plan` started, which is
    /// kept, so nothing is lost.
    pub fn write_checkpoint(dir: &Path, live: &[(u64, Labels)]) -> Result<(), WalError> {
        let tmp = dir.join("checkpoint.tmp");
        {
            let mut f = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io(&tmp))?);
            let (mut body, mut packed) = (Vec::new(), Vec::new());
            for batch in live.chunks(10_000) {
                body.clear();
                put_uvarint(&mut body, batch.len() as u64);
                for (r, labels) in batch {
                    encode_series(*r, labels, &mut body);
                }
                let payload = compress(&body, &mut packed)?;
                f.write_all(&frame(REC_SERIES_V2, payload))
                    .and_then(|_| f.write_all(payload))
                    .map_err(io(&tmp))?;
            }
            f.flush().map_err(io(&tmp))?;
            f.get_ref().sync_all().map_err(io(&tmp))?;
        }
        let cp = dir.join(CHECKPOINT);
        fs::rename(&tmp, &cp).map_err(io(&cp))
    }

    /// Deletes the segments a plan named. Returns how many.
    pub fn remove_segments(&mut self, doomed: &[u64]) -> Result<usize, WalError> {
        self.note_removed(doomed);
        for n in doomed {
            let p = self.dir.join(segment_name(*n));
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
            self.max_t.remove(n);
        }
        Ok(doomed.len())
    }

    /// Appends the time ranges of `doomed` to the removed-segments index before they go, so
    /// a remote-write queue that had not read them yet knows which times to fetch from blocks.
    /// Best effort: without the index the queue falls back to a wider range.
    fn note_removed(&self, doomed: &[u64]) {
        let mut lines: Vec<String> = removed_segments(&self.dir)
            .into_iter()
            .map(|(n, a, b)| format!("{n} {a} {b}"))
            .collect();
        for n in doomed {
            if let Some((a, b)) = self.max_t.get(n) {
                lines.push(format!("{n} {a} {b}"));
            }
        }
        let skip = lines.len().saturating_sub(REMOVED_KEEP);
        let mut text = lines[skip..].join("\n");
        text.push('\n');
        let tmp = self.dir.join("removed-segments.tmp");
        if fs::write(&tmp, text).is_ok() {
            let _ = fs::rename(&tmp, self.dir.join(REMOVED));
        }
    }

    fn write_record(&mut self, kind: u8, payload: &[u8]) -> Result<(), WalError> {
        if kind != REC_SERIES_V2 {
            self.flush_series()?;
        }
        self.write_raw(kind, payload)
    }

    fn write_raw(&mut self, kind: u8, payload: &[u8]) -> Result<(), WalError> {
        if self.seg_size >= SEGMENT_BYTES {
            self.cut()?;
        }
        let path = self.dir.join(segment_name(self.seg_no));
        self.out
            .write_all(&frame(kind, payload))
            .and_then(|_| self.out.write_all(payload))
            .map_err(io(&path))?;
        self.seg_size += 9 + payload.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Writes the gathered new series as one record. Always before any other record, so a
    /// series is on disk before the first sample that names it.
    fn flush_series(&mut self) -> Result<(), WalError> {
        let (n, body) = &mut self.pending_series;
        if *n == 0 {
            return Ok(());
        }
        self.enc.clear();
        put_uvarint(&mut self.enc, *n);
        self.enc.extend_from_slice(body);
        *n = 0;
        body.clear();
        let mut snap = std::mem::take(&mut self.snap);
        let r = compress(&self.enc, &mut snap).and_then(|p| self.write_raw(REC_SERIES_V2, p));
        self.snap = snap;
        r
    }

    /// Logs a new series (written with the next samples, or at the next sync).
    pub fn log_series(&mut self, sref: u64, labels: &Labels) -> Result<(), WalError> {
        self.pending_series.0 += 1;
        encode_series(sref, labels, &mut self.pending_series.1);
        if self.pending_series.1.len() >= SERIES_FLUSH_BYTES {
            self.flush_series()?;
        }
        Ok(())
    }

    /// Widens the current segment's time range by `ts`.
    fn note_times(&mut self, ts: impl Iterator<Item = i64>) {
        let e = self
            .max_t
            .entry(self.seg_no)
            .or_insert((i64::MAX, i64::MIN));
        *e = ts.fold(*e, |(a, b), t| (a.min(t), b.max(t)));
    }

    /// Logs a batch of samples (refs as `u64` or the head's own ref type, so the head's batch
    /// is logged without a copy).
    pub fn log_samples<R: Copy + Into<u64>>(
        &mut self,
        samples: &[(R, i64, f64)],
    ) -> Result<(), WalError> {
        if samples.is_empty() {
            return Ok(());
        }
        self.note_times(samples.iter().map(|x| x.1));
        let mut enc = std::mem::take(&mut self.enc);
        let mut snap = std::mem::take(&mut self.snap);
        enc.clear();
        encode_samples(samples, &mut enc);
        let r = compress(&enc, &mut snap).and_then(|p| self.write_record(REC_SAMPLES_V2, p));
        (self.enc, self.snap) = (enc, snap);
        r
    }

    /// Logs a batch of native histogram samples (in the canonical notation, which
    /// round-trips every field exactly).
    pub fn log_histograms(&mut self, samples: &[(u64, i64, HistogramRef)]) -> Result<(), WalError> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(4 + samples.len() * 64);
        buf.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        self.note_times(samples.iter().map(|x| x.1));
        for (r, t, h) in samples {
            buf.extend_from_slice(&r.to_le_bytes());
            buf.extend_from_slice(&t.to_le_bytes());
            let text = h.to_string();
            buf.extend_from_slice(&(text.len() as u32).to_le_bytes());
            buf.extend_from_slice(text.as_bytes());
        }
        self.write_record(REC_HISTOGRAMS, &buf)
    }

    /// Logs deleted ranges, so replay deletes them again.
    pub fn log_delete(&mut self, ranges: &[(u64, i64, i64)]) -> Result<(), WalError> {
        if ranges.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(4 + ranges.len() * 24);
        buf.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
        for (r, a, b) in ranges {
            buf.extend_from_slice(&r.to_le_bytes());
            buf.extend_from_slice(&a.to_le_bytes());
            buf.extend_from_slice(&b.to_le_bytes());
        }
        self.write_record(REC_DELETE, &buf)?;
        self.sync()
    }

    /// Flushes buffered records and fsyncs the segment (called on the sync interval).
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.flush_series()?;
        if !self.dirty {
            return Ok(());
        }
        let path = self.dir.join(segment_name(self.seg_no));
        self.out.flush().map_err(io(&path))?;
        self.out.get_ref().sync_data().map_err(io(&path))?;
        self.dirty = false;
        Ok(())
    }

    /// Starts a new segment.
    pub fn cut(&mut self) -> Result<(), WalError> {
        self.sync()?;
        self.seg_no += 1;
        let path = self.dir.join(segment_name(self.seg_no));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.out = BufWriter::with_capacity(1 << 16, file);
        self.seg_size = 0;
        Ok(())
    }

    /// Total bytes of the log on disk.
    pub fn size(&self) -> u64 {
        let segs: u64 = segments(&self.dir)
            .map(|s| {
                s.iter()
                    .filter_map(|(_, p)| fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        segs + fs::metadata(self.dir.join(CHECKPOINT))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name), ("job", "j")])
    }

    fn series(sref: u64, name: &str) -> Record {
        Record::Series {
            sref,
            labels: l(name),
        }
    }

    /// Opens the log and collects what replay hands over.
    fn open(dir: &Path) -> (Wal, Vec<Record>, Option<String>) {
        let mut recs = Vec::new();
        let (w, r) = Wal::open(dir, &mut |rec| recs.push(rec)).unwrap();
        assert_eq!(r.records, recs.len() as u64);
        (w, recs, r.corruption)
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, r, _) = open(dir.path());
            assert!(r.is_empty());
            w.log_series(1, &l("a")).unwrap();
            w.log_samples(&[(1u64, 1000, 1.5), (1, 2000, f64::NAN)])
                .unwrap();
            w.sync().unwrap();
        }
        let (mut w, r, _) = open(dir.path());
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], series(1, "a"));
        w.log_samples(&[(1u64, 3000, 3.0)]).unwrap();
        w.sync().unwrap();
        drop(w);
        // Tear the last record in half.
        let segs = segments(dir.path()).unwrap();
        let last = &segs.last().unwrap().1;
        let len = fs::metadata(last).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (_w, r, corruption) = open(dir.path());
        assert_eq!(r.len(), 2, "the torn record is dropped, the rest kept");
        assert!(corruption.unwrap().contains("torn"));
    }

    #[test]
    fn bad_checksum_cuts_the_log_and_sets_later_segments_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, _, _) = open(dir.path());
            w.log_series(1, &l("a")).unwrap();
            w.log_samples(&[(1u64, 1000, 1.0)]).unwrap();
            w.cut().unwrap();
            w.log_samples(&[(1u64, 2000, 2.0)]).unwrap();
            w.sync().unwrap();
        }
        let first = dir.path().join(segment_name(0));
        let mut data = fs::read(&first).unwrap();
        let n = data.len();
        data[n - 1] ^= 0xff;
        fs::write(&first, data).unwrap();
        let (_w, r, corruption) = open(dir.path());
        assert_eq!(r.len(), 1);
        assert!(corruption.unwrap().contains("bad checksum"));
        assert!(dir
            .path()
            .join(segment_name(1))
            .with_extension("corrupt")
            .exists());
    }

    #[test]
    fn truncation_keeps_series_of_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, _, _) = open(dir.path());
            w.log_series(1, &l("a")).unwrap();
            w.log_samples(&[(1u64, 1000, 1.0)]).unwrap();
            w.cut().unwrap();
            w.log_samples(&[(1u64, 9000, 2.0)]).unwrap();
            w.cut().unwrap();
            assert_eq!(w.truncate(&[(1, l("a"))], 5000).unwrap(), 1);
            w.sync().unwrap();
        }
        let (_w, r, _) = open(dir.path());
        assert_eq!(
            r,
            vec![series(1, "a"), Record::Samples(vec![(1, 9000, 2.0)])]
        );
    }

    #[test]
    fn compact_samples_round_trip_every_value_exactly() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            42.0,
            1.5,
            -2.25,
            1e300,
            -1e-300,
            9.0e15,
            8.999_999_999_999_999e15,
            (1u64 << 60) as f64,
            f64::NAN,
            f64::from_bits(crate::model::STALE_NAN_BITS),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
        ];
        // Refs with generations in the high bits, going up and down; times same and varied.
        let refs = [1u64, 2, 3, (7 << 32) | 3, 0, u64::MAX, 5];
        let batches: Vec<Vec<(u64, i64, f64)>> = vec![
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (refs[i % refs.len()], 1_700_000_000_000, *v))
                .collect(),
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (refs[i % refs.len()], [i64::MIN, -5, 0, i64::MAX][i % 4], *v))
                .collect(),
        ];
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, _, _) = open(dir.path());
            w.log_series((9 << 32) | 4, &l("a")).unwrap();
            for b in &batches {
                w.log_samples(b).unwrap();
            }
            w.sync().unwrap();
        }
        let (_w, r, corruption) = open(dir.path());
        assert_eq!(corruption, None);
        assert_eq!(r.len(), 3);
        assert!(matches!(&r[0], Record::Series { sref, .. } if *sref == (9 << 32) | 4));
        for (got, want) in r[1..].iter().zip(&batches) {
            let Record::Samples(got) = got else {
                panic!("not samples: {got:?}")
            };
            let bits = |v: &[(u64, i64, f64)]| -> Vec<(u64, i64, u64)> {
                v.iter().map(|(r, t, v)| (*r, *t, v.to_bits())).collect()
            };
            assert_eq!(bits(got), bits(want));
        }
    }

    #[test]
    fn a_scrape_of_counters_costs_a_few_bytes_per_sample() {
        let dir = tempfile::tempdir().unwrap();
        let (series, scrapes) = (10_000u64, 10i64);
        {
            let (mut w, _, _) = open(dir.path());
            for i in 0..series {
                w.log_series(i, &l(&format!("m{i}"))).unwrap();
            }
            for k in 0..scrapes {
                let batch: Vec<(u64, i64, f64)> = (0..series)
                    .map(|i| {
                        (
                            i,
                            1_700_000_000_000 + k * 15_000,
                            (i * 7 + k as u64 * (i % 13)) as f64,
                        )
                    })
                    .collect();
                w.log_samples(&batch).unwrap();
            }
            w.sync().unwrap();
        }
        let seg: u64 = segments(dir.path())
            .unwrap()
            .iter()
            .map(|(_, p)| fs::metadata(p).unwrap().len())
            .sum();
        let samples = series * scrapes as u64;
        // The series records are part of the cost, as they are in Prometheus's figure.
        let per_sample = seg as f64 / samples as f64;
        eprintln!("{per_sample:.3} bytes per sample");
        assert!(per_sample < 4.0, "{per_sample:.2} bytes per sample");
        let (_w, r, _) = open(dir.path());
        let n: usize = r
            .iter()
            .map(|r| match r {
                Record::Samples(s) => s.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(n as u64, samples);
    }

    #[test]
    fn series_logged_alone_are_written_at_sync_and_before_the_next_samples() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, _, _) = open(dir.path());
            w.log_series(1, &l("a")).unwrap();
            w.sync().unwrap();
            w.log_series(2, &l("b")).unwrap();
            w.log_samples(&[(2u64, 1000, 1.0)]).unwrap();
            w.sync().unwrap();
        }
        let (_w, r, _) = open(dir.path());
        assert_eq!(
            r,
            vec![
                series(1, "a"),
                series(2, "b"),
                Record::Samples(vec![(2, 1000, 1.0)]),
            ]
        );
    }

    /// Records as the first WAL format wrote them (fixed-width, uncompressed); a log written
    /// by an older release must still replay.
    #[test]
    fn logs_of_the_first_format_still_replay() {
        fn rec(kind: u8, payload: &[u8]) -> Vec<u8> {
            let mut v = frame(kind, payload).to_vec();
            v.extend_from_slice(payload);
            v
        }
        let mut series = 7u64.to_le_bytes().to_vec();
        series.extend_from_slice(&2u32.to_le_bytes());
        for s in ["__name__", "up", "job", "j"] {
            series.extend_from_slice(&(s.len() as u32).to_le_bytes());
            series.extend_from_slice(s.as_bytes());
        }
        let mut samples = 1u32.to_le_bytes().to_vec();
        samples.extend_from_slice(&7u64.to_le_bytes());
        samples.extend_from_slice(&5000i64.to_le_bytes());
        samples.extend_from_slice(&2.5f64.to_bits().to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let mut data = rec(REC_SERIES, &series);
        data.extend(rec(REC_SAMPLES, &samples));
        fs::write(dir.path().join(segment_name(0)), data).unwrap();
        let (_w, r, corruption) = open(dir.path());
        assert_eq!(corruption, None);
        assert_eq!(
            r,
            vec![
                Record::Series {
                    sref: 7,
                    labels: Labels::from_pairs([("__name__", "up"), ("job", "j")])
                },
                Record::Samples(vec![(7, 5000, 2.5)]),
            ]
        );
    }

    #[test]
    fn damaged_compact_records_are_refused_not_trusted() {
        let mut body = Vec::new();
        encode_samples(&[(1u64, 1000, 1.0), (2, 1000, 2.5)], &mut body);
        let mut packed = Vec::new();
        let good = compress(&body, &mut packed).unwrap().to_vec();
        let mut scratch = Vec::new();
        let mut n = 0;
        assert!(decode_into(
            REC_SAMPLES_V2,
            &good,
            &mut scratch,
            &mut |_| n += 1
        ));
        assert_eq!(n, 1);
        // A count far beyond the bytes, a cut body, trailing bytes, a huge claimed size.
        let mut lying = Vec::new();
        put_uvarint(&mut lying, u64::MAX);
        lying.extend_from_slice(&body[1..]);
        let mut cut = body.clone();
        cut.pop();
        let mut trailing = body.clone();
        trailing.push(0);
        for bad in [lying, cut, trailing] {
            let p = compress(&bad, &mut packed).unwrap().to_vec();
            assert!(!decode_into(REC_SAMPLES_V2, &p, &mut scratch, &mut |_| {}));
        }
        let mut huge = Vec::new();
        put_uvarint(&mut huge, u64::from(u32::MAX));
        assert!(!decode_into(
            REC_SERIES_V2,
            &huge,
            &mut scratch,
            &mut |_| {}
        ));
        assert!(!decode_into(99, &good, &mut scratch, &mut |_| {}));
    }

    /// The fuzz smoke's seeds (fuzz/smoke.sh) are well-formed records, so the fuzzer starts
    /// from inputs that reach the decoders' depths.
    #[test]
    fn the_fuzz_seeds_decode() {
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        assert!(decode_into(
            6,
            b"\x05\x10\x01\x00\x01\x05\x04",
            &mut scratch,
            &mut |r| got.push(r)
        ));
        assert!(decode_into(
            5,
            b"\x0f\x38\x01\x01\x01\x08__name__\x02up",
            &mut scratch,
            &mut |r| got.push(r)
        ));
        assert_eq!(
            got,
            vec![
                Record::Samples(vec![(1, 0, 2.0)]),
                Record::Series {
                    sref: 1,
                    labels: Labels::from_pairs([("__name__", "up")])
                }
            ]
        );
    }

    /// Labels come back as a valid label set even from a record not written in order (or
    /// with an empty value): ordered records skip the sort, others are normalised.
    #[test]
    fn series_records_out_of_order_are_normalised() {
        let mut body = Vec::new();
        put_uvarint(&mut body, 1);
        put_uvarint(&mut body, 3);
        put_uvarint(&mut body, 3);
        for s in ["job", "j", "__name__", "up", "empty", ""] {
            put_str(&mut body, s);
        }
        let mut packed = Vec::new();
        let payload = compress(&body, &mut packed).unwrap().to_vec();
        let mut got = Vec::new();
        assert!(decode_into(
            REC_SERIES_V2,
            &payload,
            &mut Vec::new(),
            &mut |r| got.push(r)
        ));
        assert_eq!(
            got,
            vec![Record::Series {
                sref: 3,
                labels: Labels::from_pairs([("__name__", "up"), ("job", "j")])
            }]
        );
    }
}
