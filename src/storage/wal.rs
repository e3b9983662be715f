//! The write-ahead log: every new series and every committed batch of samples is appended to
//! checksummed segment files before it becomes visible, and replayed at start.
//!
//! Record framing: `[type u8][payload length u32 LE][crc32 of payload u32 LE][payload]`.
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
    /// Records in order.
    pub records: Vec<Record>,
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
    /// Oldest and newest sample time per segment, to know which segments retention has
    /// emptied and, once removed, which times they held (for remote write's catch-up).
    max_t: std::collections::BTreeMap<u64, (i64, i64)>,
}

/// The file listing removed segments' time ranges, one `segment min_t max_t` line each.
const REMOVED: &str = "removed-segments";
/// Lines kept in [`REMOVED`]: years of 2-hourly truncations.
const REMOVED_KEEP: usize = 20_000;

const CHECKPOINT: &str = "checkpoint";

/// Reads records from one file into `replay`; on a torn or corrupt record, cuts the file
/// there and reports it. Returns the newest sample time seen.
fn replay_file(path: &Path, name: &str, replay: &mut Replay) -> Result<(i64, i64), WalError> {
    let mut data = Vec::new();
    File::open(path)
        .map_err(io(path))?
        .read_to_end(&mut data)
        .map_err(io(path))?;
    let mut off = 0usize;
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    while off < data.len() {
        let Some(h) = data.get(off..off + 9) else {
            replay.corruption = Some(format!("{name} torn at byte {off}"));
            break;
        };
        let kind = h[0];
        let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let crc = u32::from_le_bytes([h[5], h[6], h[7], h[8]]);
        let Some(payload) = data.get(off + 9..off + 9 + len) else {
            replay.corruption = Some(format!("{name} torn at byte {off}"));
            break;
        };
        if crc32fast::hash(payload) != crc {
            replay.corruption = Some(format!("{name} has a bad checksum at byte {off}"));
            break;
        }
        match decode(kind, payload) {
            Some(r) => {
                let (a, b) = r.time_range();
                (min_t, max_t) = (min_t.min(a), max_t.max(b));
                replay.records.push(r);
            }
            None => {
                replay.corruption = Some(format!("{name} has an unreadable record at byte {off}"));
                break;
            }
        }
        off += 9 + len;
    }
    if replay.corruption.is_some() {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        f.set_len(off as u64).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    Ok((min_t, max_t))
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
        match decode(kind, payload) {
            Some(r) => out.records.push((at, r)),
            None => {
                out.corrupt = Some(format!(
                    "segment {} has an unreadable record at byte {at}",
                    segment_name(n)
                ));
                break;
            }
        }
        off += 9 + plen;
    }
    out.end = offset + off as u64;
    Ok(Some(out))
}

/// The series records of the checkpoint (the live series at the last truncation).
pub fn read_checkpoint(dir: &Path) -> Result<Vec<Record>, WalError> {
    let cp = dir.join(CHECKPOINT);
    let mut data = Vec::new();
    match File::open(&cp) {
        Ok(mut f) => {
            f.read_to_end(&mut data).map_err(io(&cp))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&cp)(e)),
    }
    let mut out = Vec::new();
    let mut off = 0usize;
    while let Some(h) = data.get(off..off + 9) {
        let plen = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let Some(payload) = data.get(off + 9..off + 9 + plen) else {
            break;
        };
        if crc32fast::hash(payload) != u32::from_le_bytes([h[5], h[6], h[7], h[8]]) {
            break;
        }
        if let Some(r) = decode(h[0], payload) {
            out.push(r);
        }
        off += 9 + plen;
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

fn encode_series(sref: u64, labels: &Labels, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&sref.to_le_bytes());
    buf.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    for l in labels.iter() {
        buf.extend_from_slice(&(l.name.len() as u32).to_le_bytes());
        buf.extend_from_slice(l.name.as_bytes());
        buf.extend_from_slice(&(l.value.len() as u32).to_le_bytes());
        buf.extend_from_slice(l.value.as_bytes());
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.i..self.i + n)?;
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
}

fn decode(kind: u8, payload: &[u8]) -> Option<Record> {
    let mut c = Cursor { b: payload, i: 0 };
    match kind {
        REC_SERIES => {
            let sref = c.u64()?;
            let n = c.u32()? as usize;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let name = c.string()?;
                let value = c.string()?;
                v.push(Label { name, value });
            }
            Some(Record::Series {
                sref,
                labels: Labels::from_pairs(v.into_iter().map(|l| (l.name, l.value))),
            })
        }
        REC_SAMPLES => {
            let n = c.u32()? as usize;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push((c.u64()?, c.u64()? as i64, f64::from_bits(c.u64()?)));
            }
            Some(Record::Samples(v))
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
            Some(Record::Histograms(v))
        }
        REC_DELETE => {
            let n = c.u32()? as usize;
            let mut v = Vec::with_capacity(n.min(payload.len() / 24));
            for _ in 0..n {
                v.push((c.u64()?, c.u64()? as i64, c.u64()? as i64));
            }
            Some(Record::Delete(v))
        }
        _ => None,
    }
}

impl Wal {
    /// Opens (creating) the log in `dir` and replays it. A torn or corrupt tail is cut off
    /// and reported in `Replay::corruption`; writing continues in a fresh segment.
    pub fn open(dir: &Path) -> Result<(Wal, Replay), WalError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut replay = Replay::default();
        let mut max_t = std::collections::BTreeMap::new();
        let cp = dir.join(CHECKPOINT);
        if cp.exists() {
            replay_file(&cp, CHECKPOINT, &mut replay)?;
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
            let t = replay_file(path, &format!("segment {}", segment_name(*n)), &mut replay)?;
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
            let mut buf = Vec::new();
            for (r, labels) in live {
                buf.clear();
                encode_series(*r, labels, &mut buf);
                let mut h = [0u8; 9];
                h[0] = REC_SERIES;
                h[1..5].copy_from_slice(&(buf.len() as u32).to_le_bytes());
                h[5..9].copy_from_slice(&crc32fast::hash(&buf).to_le_bytes());
                f.write_all(&h).map_err(io(&tmp))?;
                f.write_all(&buf).map_err(io(&tmp))?;
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
        if self.seg_size >= SEGMENT_BYTES {
            self.cut()?;
        }
        let mut h = [0u8; 9];
        h[0] = kind;
        h[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        h[5..9].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        let path = self.dir.join(segment_name(self.seg_no));
        self.out.write_all(&h).map_err(io(&path))?;
        self.out.write_all(payload).map_err(io(&path))?;
        self.seg_size += 9 + payload.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Logs a new series.
    pub fn log_series(&mut self, sref: u64, labels: &Labels) -> Result<(), WalError> {
        let mut buf = Vec::with_capacity(64);
        encode_series(sref, labels, &mut buf);
        self.write_record(REC_SERIES, &buf)
    }

    /// Widens the current segment's time range by `ts`.
    fn note_times(&mut self, ts: impl Iterator<Item = i64>) {
        let e = self
            .max_t
            .entry(self.seg_no)
            .or_insert((i64::MAX, i64::MIN));
        *e = ts.fold(*e, |(a, b), t| (a.min(t), b.max(t)));
    }

    /// Logs a batch of samples.
    pub fn log_samples(&mut self, samples: &[(u64, i64, f64)]) -> Result<(), WalError> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(4 + samples.len() * 24);
        buf.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        self.note_times(samples.iter().map(|x| x.1));
        for (r, t, v) in samples {
            buf.extend_from_slice(&r.to_le_bytes());
            buf.extend_from_slice(&t.to_le_bytes());
            buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        self.write_record(REC_SAMPLES, &buf)
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

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, r) = Wal::open(dir.path()).unwrap();
            assert!(r.records.is_empty());
            w.log_series(1, &l("a")).unwrap();
            w.log_samples(&[(1, 1000, 1.5), (1, 2000, f64::NAN)])
                .unwrap();
            w.sync().unwrap();
        }
        let (mut w, r) = Wal::open(dir.path()).unwrap();
        assert_eq!(r.records.len(), 2);
        assert_eq!(
            r.records[0],
            Record::Series {
                sref: 1,
                labels: l("a")
            }
        );
        w.log_samples(&[(1, 3000, 3.0)]).unwrap();
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
        let (_w, r) = Wal::open(dir.path()).unwrap();
        assert_eq!(
            r.records.len(),
            2,
            "the torn record is dropped, the rest kept"
        );
        assert!(r.corruption.unwrap().contains("torn"));
    }

    #[test]
    fn bad_checksum_cuts_the_log_and_sets_later_segments_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, _) = Wal::open(dir.path()).unwrap();
            w.log_series(1, &l("a")).unwrap();
            w.log_samples(&[(1, 1000, 1.0)]).unwrap();
            w.cut().unwrap();
            w.log_samples(&[(1, 2000, 2.0)]).unwrap();
            w.sync().unwrap();
        }
        let first = dir.path().join(segment_name(0));
        let mut data = fs::read(&first).unwrap();
        let n = data.len();
        data[n - 1] ^= 0xff;
        fs::write(&first, data).unwrap();
        let (_w, r) = Wal::open(dir.path()).unwrap();
        assert_eq!(r.records.len(), 1);
        assert!(r.corruption.unwrap().contains("bad checksum"));
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
            let (mut w, _) = Wal::open(dir.path()).unwrap();
            w.log_series(1, &l("a")).unwrap();
            w.log_samples(&[(1, 1000, 1.0)]).unwrap();
            w.cut().unwrap();
            w.log_samples(&[(1, 9000, 2.0)]).unwrap();
            w.cut().unwrap();
            assert_eq!(w.truncate(&[(1, l("a"))], 5000).unwrap(), 1);
            w.sync().unwrap();
        }
        let (_w, r) = Wal::open(dir.path()).unwrap();
        assert_eq!(
            r.records,
            vec![
                Record::Series {
                    sref: 1,
                    labels: l("a")
                },
                Record::Samples(vec![(1, 9000, 2.0)])
            ]
        );
    }
}
