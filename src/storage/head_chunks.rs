//! Where the head's sealed chunks live: append-only segment files under the data directory
//! (`head_chunks/`), read back with positioned reads, so a head's finished chunks cost the
//! page cache, not the process's heap. Prometheus keeps them the same way (`chunks_head/`,
//! memory-mapped); without this the heap grew by every chunk sealed until the next block cut.
//!
//! The files are a cache, not a source of truth: the write-ahead log still holds every sample,
//! so they are not fsynced, and opening a head empties the folder before the log's replay
//! seals its chunks again. A head without a folder (tests, imports) keeps its segments in
//! memory. A failed write keeps the chunk in memory; it is never lost while the head runs.
//!
//! This module owns the files and the bytes in them; which chunk belongs to which series is
//! the head's business.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::chunk::XorChunk;
use super::wal::{unzigzag, zigzag};

/// A file segment is cut at this size (Prometheus's `chunks_head` default).
const FILE_SEGMENT_BYTES: usize = 128 << 20;
/// In memory, smaller segments, so truncation frees memory sooner.
const MEM_SEGMENT_BYTES: usize = 8 << 20;
/// Appended bytes are written to the file once this many are pending: one write per many
/// chunks, and a short one, as it happens under the head's write lock.
const FLUSH_BYTES: usize = 256 << 10;

/// The longest time a head chunk may span, so a [`ChunkRef`] holds it in 32 bits (the head
/// cuts chunks at block-range boundaries anyway; this only binds ranges over 49 days).
pub const MAX_CHUNK_SPAN_MS: i64 = u32::MAX as i64;

/// Where one sealed chunk is, with what the head needs to know without reading it. 24 bytes:
/// a series holds one per chunk until the block cut (45 at a 2 s interval over 3 h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    min_t: i64,
    /// `max_t - min_t`.
    span: u32,
    seg: u32,
    off: u32,
    /// Encoded bytes (a chunk of 120 samples is at most ~2.2 KB).
    bytes: u16,
    samples: u16,
}

impl ChunkRef {
    /// First timestamp.
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Last timestamp.
    pub fn max_t(&self) -> i64 {
        self.min_t + i64::from(self.span)
    }

    /// Number of samples.
    pub fn len(&self) -> u16 {
        self.samples
    }

    /// Whether the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// Encoded size in bytes.
    pub fn size(&self) -> usize {
        self.bytes as usize
    }
}

/// A series' sealed chunk refs, oldest first, each varint-encoded against the one before it:
/// about 12 bytes a chunk where a [`ChunkRef`] takes 24, with the last ref's position kept
/// in fixed width at the end (16 bytes) so a push does not decode the list. A series gains
/// one ref per chunk until the block cut drops them, so this is most of the head's growth
/// under a steady load.
#[derive(Default)]
pub struct RefList {
    /// Entries, then the tail: the last entry's `max_t` (i64), `seg` and `off` (u32), LE.
    buf: Vec<u8>,
}

/// The fields an entry is encoded against.
#[derive(Clone, Copy, Default)]
struct Prev {
    max_t: i64,
    seg: u32,
    off: u32,
}

const TAIL: usize = 16;

impl RefList {
    /// Appends a ref (newer than every ref already held).
    pub fn push(&mut self, r: ChunkRef) {
        let prev = self.tail();
        let mut entry = [0u8; 48];
        let mut w: &mut [u8] = &mut entry;
        encode_ref(&mut w, prev, &r);
        let n = 48 - w.len();
        self.buf.truncate(self.entries_len());
        if self.buf.capacity() < self.buf.len() + n + TAIL {
            // Room for this entry and about one more: a series gains refs one at a time, and
            // doubling would leave up to half of every series' list unused (a step in memory
            // at each power of two under a steady load).
            self.buf.reserve_exact(n + TAIL + 12);
        }
        self.buf.extend_from_slice(&entry[..n]);
        self.buf.extend_from_slice(&r.max_t().to_le_bytes());
        self.buf.extend_from_slice(&r.seg.to_le_bytes());
        self.buf.extend_from_slice(&r.off.to_le_bytes());
    }

    /// The refs, oldest first.
    pub fn iter(&self) -> RefIter<'_> {
        RefIter {
            b: &self.buf[..self.entries_len()],
            prev: Prev::default(),
        }
    }

    /// Whether no ref is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Number of refs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The oldest ref.
    pub fn first(&self) -> Option<ChunkRef> {
        self.iter().next()
    }

    /// Keeps the refs for which `keep` holds; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&ChunkRef) -> bool) -> usize {
        let all: Vec<ChunkRef> = self.iter().collect();
        let kept: Vec<ChunkRef> = all.iter().copied().filter(|r| keep(r)).collect();
        let gone = all.len() - kept.len();
        if gone > 0 {
            *self = kept.into_iter().collect();
        }
        gone
    }

    /// Bytes this list holds on the heap.
    pub fn heap_size(&self) -> usize {
        self.buf.capacity()
    }

    fn entries_len(&self) -> usize {
        self.buf.len().saturating_sub(TAIL)
    }

    fn tail(&self) -> Prev {
        let Some(t) = self.buf.get(self.entries_len()..) else {
            return Prev::default();
        };
        let (Some(max_t), Some(seg), Some(off)) = (
            t.get(0..8).and_then(|b| b.try_into().ok()),
            t.get(8..12).and_then(|b| b.try_into().ok()),
            t.get(12..16).and_then(|b| b.try_into().ok()),
        ) else {
            return Prev::default();
        };
        Prev {
            max_t: i64::from_le_bytes(max_t),
            seg: u32::from_le_bytes(seg),
            off: u32::from_le_bytes(off),
        }
    }
}

impl FromIterator<ChunkRef> for RefList {
    fn from_iter<I: IntoIterator<Item = ChunkRef>>(it: I) -> Self {
        let mut l = RefList::default();
        for r in it {
            l.push(r);
        }
        // Built whole (truncation, deletion): no room for growth beyond what it holds.
        l.buf.shrink_to_fit();
        l
    }
}

/// At most 36 bytes (six varints).
fn encode_ref(buf: &mut impl prost::bytes::BufMut, p: Prev, r: &ChunkRef) {
    use prost::encoding::encode_varint;
    encode_varint(zigzag(r.min_t.wrapping_sub(p.max_t)), buf);
    encode_varint(u64::from(r.span), buf);
    encode_varint(zigzag(i64::from(r.seg.wrapping_sub(p.seg) as i32)), buf);
    let off = if r.seg == p.seg {
        i64::from(r.off) - i64::from(p.off)
    } else {
        i64::from(r.off)
    };
    encode_varint(zigzag(off), buf);
    encode_varint(u64::from(r.bytes), buf);
    encode_varint(u64::from(r.samples), buf);
}

/// Decodes a [`RefList`]; stops at the end (or at bytes it cannot read, which the list never
/// writes).
pub struct RefIter<'a> {
    b: &'a [u8],
    prev: Prev,
}

impl Iterator for RefIter<'_> {
    type Item = ChunkRef;

    fn next(&mut self) -> Option<ChunkRef> {
        use prost::encoding::decode_varint;
        if self.b.is_empty() {
            return None;
        }
        let b = &mut self.b;
        let p = self.prev;
        let min_t = p.max_t.wrapping_add(unzigzag(decode_varint(b).ok()?));
        let span = u32::try_from(decode_varint(b).ok()?).ok()?;
        let seg = p
            .seg
            .wrapping_add(unzigzag(decode_varint(b).ok()?) as i32 as u32);
        let d = unzigzag(decode_varint(b).ok()?);
        let off = if seg == p.seg {
            u32::try_from(i64::from(p.off) + d).ok()?
        } else {
            u32::try_from(d).ok()?
        };
        let bytes = u16::try_from(decode_varint(b).ok()?).ok()?;
        let samples = u16::try_from(decode_varint(b).ok()?).ok()?;
        let r = ChunkRef {
            min_t,
            span,
            seg,
            off,
            bytes,
            samples,
        };
        self.prev = Prev {
            max_t: r.max_t(),
            seg,
            off,
        };
        Some(r)
    }
}

struct Segment {
    seq: u32,
    /// None for a memory segment, or once the file could not be created.
    file: Option<File>,
    /// Bytes in the file; the chunk at `off` is in the file when `off < flushed`.
    flushed: u32,
    /// Bytes after `flushed`, not yet written (all of a memory segment's bytes).
    pending: Vec<u8>,
    /// Newest sample time of any chunk here: the segment goes when the head drops everything
    /// up to it.
    max_t: i64,
    /// A write failed: the rest of this segment stays in memory.
    broken: bool,
}

impl Segment {
    fn len(&self) -> usize {
        self.flushed as usize + self.pending.len()
    }

    fn flush(&mut self) {
        let Some(f) = &self.file else { return };
        if self.broken || self.pending.is_empty() {
            return;
        }
        // Written at the end the file already has; a short write leaves `flushed` as it was,
        // and the bytes stay readable from memory.
        match f.write_all_at(&self.pending, u64::from(self.flushed)) {
            Ok(()) => {
                self.flushed += self.pending.len() as u32;
                self.pending.clear();
            }
            Err(e) => {
                self.broken = true;
                crate::failure!(error, "storage", "head_chunks_write", error = %e, segment = self.seq,
                    "writing head chunks failed; this segment's chunks stay in memory");
            }
        }
    }
}

/// The sealed chunks of one head.
#[derive(Default)]
pub struct ChunkStore {
    dir: Option<PathBuf>,
    /// A segment is cut past this size (0: the default for files or memory).
    segment_bytes: usize,
    segs: VecDeque<Segment>,
    next_seq: u32,
}

impl ChunkStore {
    /// Chunks kept in memory.
    pub fn in_memory() -> Self {
        ChunkStore {
            dir: None,
            segment_bytes: MEM_SEGMENT_BYTES,
            segs: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Chunks kept in files under `dir`, emptied first (the log's replay writes them again).
    /// When the folder cannot be prepared the chunks stay in memory, and the failure is logged.
    pub fn open(dir: &Path) -> Self {
        match Self::prepare(dir) {
            Ok(()) => ChunkStore {
                dir: Some(dir.to_path_buf()),
                segment_bytes: FILE_SEGMENT_BYTES,
                segs: VecDeque::new(),
                next_seq: 0,
            },
            Err(e) => {
                crate::failure!(error, "storage", "head_chunks_open", error = %e, dir = %dir.display(),
                    "the head chunks folder cannot be used; sealed chunks stay in memory");
                Self::in_memory()
            }
        }
    }

    fn prepare(dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            // Only our own segment names: anything else in the folder is not ours to delete.
            if segment_seq(&e.file_name().to_string_lossy()).is_some() {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }

    /// Stores a sealed chunk.
    pub fn write(&mut self, c: &XorChunk) -> ChunkRef {
        let size = c.size();
        let limit = match self.segment_bytes {
            0 => MEM_SEGMENT_BYTES,
            n => n,
        };
        let cut = self
            .segs
            .back()
            .is_none_or(|s| s.len() > 0 && s.len() + size > limit);
        if cut {
            self.cut();
        }
        // Never empty here: an empty store always cuts.
        let last = self.segs.len().saturating_sub(1);
        let seg = &mut self.segs[last];
        let off = seg.len() as u32;
        c.encode_into(&mut seg.pending);
        // Both bounds hold by construction (120 samples a chunk, spans cut by the head); the
        // clamps only keep a broken caller from wrapping.
        let bytes = u16::try_from(seg.len() as u32 - off).unwrap_or(u16::MAX);
        let span = u32::try_from(c.max_t() - c.min_t()).unwrap_or(u32::MAX);
        seg.max_t = seg.max_t.max(c.max_t());
        if seg.pending.len() >= FLUSH_BYTES {
            seg.flush();
        }
        ChunkRef {
            min_t: c.min_t(),
            span,
            seg: seg.seq,
            off,
            bytes,
            samples: c.len(),
        }
    }

    /// Starts a new segment.
    fn cut(&mut self) {
        if let Some(last) = self.segs.back_mut() {
            last.flush();
            // Only bytes that reached the file may go; in a memory segment (or one whose
            // writes failed) `pending` is the only copy.
            if last.pending.is_empty() {
                last.pending = Vec::new();
            } else {
                last.pending.shrink_to_fit();
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let file = self.dir.as_ref().and_then(|d| {
            let p = d.join(segment_name(seq));
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)
            {
                Ok(f) => Some(f),
                Err(e) => {
                    crate::failure!(error, "storage", "head_chunks_write", error = %e, file = %p.display(),
                        "creating a head chunks segment failed; its chunks stay in memory");
                    None
                }
            }
        });
        let broken = self.dir.is_some() && file.is_none();
        self.segs.push_back(Segment {
            seq,
            file,
            flushed: 0,
            pending: Vec::new(),
            max_t: i64::MIN,
            broken,
        });
    }

    /// Reads chunk `r` into `buf` (replacing its contents). False, with the failure logged,
    /// when it cannot be read: the caller treats the chunk as empty.
    pub fn read(&self, r: &ChunkRef, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let Some(first) = self.segs.front() else {
            return false;
        };
        let Some(seg) = self.segs.get(r.seg.wrapping_sub(first.seq) as usize) else {
            return false;
        };
        if r.off >= seg.flushed {
            let at = (r.off - seg.flushed) as usize;
            match seg.pending.get(at..at + r.bytes as usize) {
                Some(b) => {
                    buf.extend_from_slice(b);
                    true
                }
                None => false,
            }
        } else {
            let Some(f) = &seg.file else { return false };
            buf.resize(r.bytes as usize, 0);
            match f.read_exact_at(buf, u64::from(r.off)) {
                Ok(()) => true,
                Err(e) => {
                    buf.clear();
                    crate::failure!(error, "storage", "head_chunks_read", error = %e, segment = seg.seq,
                        "reading a head chunk failed; its samples are missing from this read");
                    false
                }
            }
        }
    }

    /// Drops the segments whose chunks all end before `before` (the head has dropped them),
    /// except the one being written.
    pub fn truncate(&mut self, before: i64) {
        while self.segs.len() > 1 && self.segs.front().is_some_and(|s| s.max_t < before) {
            let Some(s) = self.segs.pop_front() else {
                break;
            };
            if let (Some(d), Some(f)) = (&self.dir, s.file) {
                drop(f);
                let p = d.join(segment_name(s.seq));
                if let Err(e) = std::fs::remove_file(&p) {
                    crate::failure!(warn, "storage", "head_chunks_remove", error = %e, file = %p.display(),
                        "removing a head chunks segment failed");
                }
            }
        }
    }

    /// Bytes held, on disk and in memory.
    pub fn size(&self) -> u64 {
        self.segs.iter().map(|s| s.len() as u64).sum()
    }

    /// Writes what is pending to the current file (no fsync: the log is the durable copy).
    pub fn flush(&mut self) {
        if let Some(s) = self.segs.back_mut() {
            s.flush();
        }
    }
}

fn segment_name(seq: u32) -> String {
    format!("{seq:08}.chunks")
}

fn segment_seq(name: &str) -> Option<u32> {
    let n = name.strip_suffix(".chunks")?;
    (n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::chunk::XorIter;

    fn chunk(from: i64, n: i64) -> XorChunk {
        let mut c = XorChunk::default();
        for t in from..from + n {
            c.append(t * 1000, t as f64 * 0.5);
        }
        c
    }

    fn decoded(s: &ChunkStore, r: &ChunkRef) -> Vec<(i64, f64)> {
        let mut buf = Vec::new();
        assert!(s.read(r, &mut buf));
        XorIter::over(&buf).collect()
    }

    /// Refs read back exactly as pushed, whatever their fields (backwards offsets, wrapped
    /// segment numbers, extreme times), and keep reading back after a retain.
    #[test]
    fn ref_list_round_trips_and_is_compact() {
        let mut refs = Vec::new();
        let mut t = 1_700_000_000_000i64;
        for i in 0..50u32 {
            refs.push(ChunkRef {
                min_t: t,
                span: 238_000,
                seg: u32::MAX - 2 + i / 20,
                off: (i % 20) * 1_500_000,
                bytes: 140 + (i % 7) as u16,
                samples: 120,
            });
            t += 240_000;
        }
        refs.push(ChunkRef {
            min_t: i64::MIN,
            span: u32::MAX,
            seg: 0,
            off: u32::MAX,
            bytes: u16::MAX,
            samples: 0,
        });
        refs.push(ChunkRef {
            min_t: i64::MAX - i64::from(u32::MAX),
            span: u32::MAX,
            seg: 7,
            off: 0,
            bytes: 0,
            samples: u16::MAX,
        });
        let mut l = RefList::default();
        for r in &refs {
            l.push(*r);
        }
        assert_eq!(l.iter().collect::<Vec<_>>(), refs);
        assert_eq!(l.len(), refs.len());
        assert_eq!(l.first(), Some(refs[0]));
        // The steady case (a 2 s interval's chunks) is about half a ChunkRef a chunk.
        let steady: RefList = refs[..50].iter().copied().collect();
        assert!(
            steady.heap_size() <= 50 * 14 + TAIL,
            "{} bytes",
            steady.heap_size()
        );
        let gone = l.retain(|r| r.seg != u32::MAX - 1);
        assert_eq!(gone, 20);
        let kept: Vec<ChunkRef> = refs
            .iter()
            .copied()
            .filter(|r| r.seg != u32::MAX - 1)
            .collect();
        assert_eq!(l.iter().collect::<Vec<_>>(), kept);
        l.push(refs[3]);
        assert_eq!(l.iter().last(), Some(refs[3]));
        assert_eq!(l.retain(|_| false), kept.len() + 1);
        assert!(l.is_empty() && l.first().is_none());
        assert_eq!(l.len(), 0);
    }

    /// Every chunk reads back, whichever segment, flushed or pending, holds it. (A memory
    /// store once dropped a whole segment's chunks when it cut the next: `tsdb import` lost
    /// four fifths of a day.)
    #[test]
    fn chunks_read_back_from_memory_and_from_files_across_flushes_and_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let small = |mut s: ChunkStore| {
            s.segment_bytes = 64 << 10;
            s
        };
        for mut store in [
            ChunkStore::in_memory(),
            ChunkStore::open(tmp.path()),
            small(ChunkStore::in_memory()),
            small(ChunkStore::open(&tmp.path().join("small"))),
        ] {
            let mut refs = Vec::new();
            // Enough chunks to flush many times; the last ones stay pending.
            for i in 0..3000 {
                let c = chunk(i * 120, 120);
                let r = store.write(&c);
                assert_eq!((r.min_t(), r.max_t(), r.len()), (c.min_t(), c.max_t(), 120));
                refs.push((r, c.iter().collect::<Vec<_>>()));
            }
            for (r, want) in &refs {
                assert_eq!(&decoded(&store, r), want);
            }
            if store.segment_bytes == 64 << 10 {
                assert!(store.segs.len() > 3, "many segments: {}", store.segs.len());
            }
        }
        assert!(std::fs::read_dir(tmp.path()).unwrap().count() >= 1);
    }

    #[test]
    fn truncation_removes_old_segment_files_and_opening_empties_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep.txt"), "not ours").unwrap();
        let mut store = ChunkStore::open(tmp.path());
        let old = store.write(&chunk(0, 120));
        store.cut();
        let new = store.write(&chunk(1000, 120));
        store.flush();
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(), ["00000000.chunks", "00000001.chunks", "keep.txt"]);
        store.truncate(old.max_t() + 1);
        assert_eq!(names(), ["00000001.chunks", "keep.txt"]);
        assert!(!store.read(&old, &mut Vec::new()));
        assert_eq!(decoded(&store, &new).len(), 120);
        // The segment being written stays even when everything in it is older.
        store.truncate(i64::MAX);
        assert_eq!(names(), ["00000001.chunks", "keep.txt"]);
        drop(store);
        let _reopened = ChunkStore::open(tmp.path());
        assert_eq!(names(), ["keep.txt"]);
    }

    #[test]
    fn a_chunk_that_cannot_be_written_stays_readable_from_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = ChunkStore::open(tmp.path());
        let first = store.write(&chunk(0, 120));
        // The file is replaced by a read-only handle: the next flush fails.
        if let Some(s) = store.segs.back_mut() {
            s.file = Some(File::open(tmp.path().join(segment_name(s.seq))).unwrap());
        }
        let mut refs = vec![(first, chunk(0, 120))];
        for i in 1..2000 {
            let c = chunk(i * 120, 120);
            refs.push((store.write(&c), c));
        }
        assert!(store.segs.back().unwrap().broken);
        for (r, c) in &refs {
            assert_eq!(decoded(&store, r), c.iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_chunk_ref_is_24_bytes() {
        assert_eq!(std::mem::size_of::<ChunkRef>(), 24);
    }

    #[test]
    fn segment_names_round_trip_and_others_are_not_ours() {
        assert_eq!(segment_seq(&segment_name(42)), Some(42));
        for other in ["keep.txt", "1.chunks", "0000000a.chunks", "00000001.chunk"] {
            assert_eq!(segment_seq(other), None, "{other}");
        }
    }
}
