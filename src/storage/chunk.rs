//! Gorilla (XOR) chunks in Prometheus's `chunkenc` layout: a 2-byte sample count, then the
//! first timestamp as a varint and value as 64 raw bits, then delta-of-delta timestamps and
//! XOR-compressed values. Using the same layout keeps the door open to reading and writing
//! Prometheus blocks later.

/// Samples per chunk before a new one is cut (Prometheus's default target).
pub const SAMPLES_PER_CHUNK: u16 = 120;

#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if bit {
            if let Some(last) = self.bytes.last_mut() {
                *last |= 1 << (self.free - 1);
            }
        }
        self.free -= 1;
    }

    fn write_bits(&mut self, v: u64, n: u8) {
        let mut n = n;
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let shift = n - take;
            let chunk = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
    }

    fn write_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.write_bits((v as u8 | 0x80) as u64, 8);
            v >>= 7;
        }
        self.write_bits(v, 8);
    }

    fn write_varint(&mut self, v: i64) {
        self.write_uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, n: u8) -> Option<u64> {
        let n = n as usize;
        if self.pos + n > self.bytes.len() * 8 {
            return None;
        }
        // A byte at a time rather than a bit at a time: decoding is the hot loop of every
        // query that reads stored data.
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[self.pos / 8];
            let avail = 8 - self.pos % 8;
            let take = avail.min(left);
            let bits = (u16::from(byte) >> (avail - take)) & ((1u16 << take) - 1);
            v = (v << take) | u64::from(bits);
            self.pos += take;
            left -= take;
        }
        Some(v)
    }

    fn read_uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        let mut s = 0u32;
        for _ in 0..10 {
            let b = self.read_bits(8)? as u8;
            if b < 0x80 {
                return Some(x | (u64::from(b) << s));
            }
            x |= u64::from(b & 0x7f) << s;
            s += 7;
        }
        None
    }

    fn read_varint(&mut self) -> Option<i64> {
        let u = self.read_uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// An XOR chunk being appended to (or finished; appending just stops).
#[derive(Clone, Debug)]
pub struct XorChunk {
    w: BitWriter,
    num: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
    min_t: i64,
}

impl Default for XorChunk {
    fn default() -> Self {
        XorChunk::over(Vec::new())
    }
}

impl XorChunk {
    /// Number of samples.
    pub fn len(&self) -> u16 {
        self.num
    }

    /// Whether the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.num == 0
    }

    /// First timestamp.
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Last timestamp.
    pub fn max_t(&self) -> i64 {
        self.t
    }

    /// Encoded size in bytes.
    pub fn size(&self) -> usize {
        self.w.bytes.len()
    }

    /// The encoded bytes, sample count included.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = self.w.bytes.clone();
        b[..2].copy_from_slice(&self.num.to_be_bytes());
        b
    }

    /// Appends the encoded bytes, sample count included, to `out` (no copy of the chunk).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.num.to_be_bytes());
        out.extend_from_slice(self.w.bytes.get(2..).unwrap_or_default());
    }

    /// Empties the chunk for reuse, keeping its buffer: a series seals a chunk every 120
    /// samples, and a fresh buffer each time is an allocation the allocator must place.
    pub fn clear(&mut self) {
        let mut bytes = std::mem::take(&mut self.w.bytes);
        bytes.clear();
        *self = XorChunk::over(bytes);
    }

    /// An empty chunk writing into `bytes` (emptied by the caller).
    fn over(mut bytes: Vec<u8>) -> Self {
        // The sample count's two bytes, filled in when the chunk is sealed.
        bytes.extend_from_slice(&[0, 0]);
        XorChunk {
            w: BitWriter { bytes, free: 0 },
            num: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0xff,
            trailing: 0,
            min_t: 0,
        }
    }

    /// Appends a sample; the caller guarantees `t` is above the last one.
    pub fn append(&mut self, t: i64, v: f64) {
        let vb = v.to_bits();
        match self.num {
            0 => {
                self.w.write_varint(t);
                self.w.write_bits(vb, 64);
                self.min_t = t;
            }
            1 => {
                let d = t - self.t;
                self.w.write_uvarint(d as u64);
                self.write_value(vb);
                self.t_delta = d;
            }
            _ => {
                let d = t - self.t;
                let dod = d - self.t_delta;
                let fits = |bits: u32| -(1i64 << (bits - 1)) < dod && dod <= (1i64 << (bits - 1));
                if dod == 0 {
                    self.w.write_bit(false);
                } else if fits(14) {
                    self.w.write_bits(0b10, 2);
                    self.w.write_bits(dod as u64 & ((1 << 14) - 1), 14);
                } else if fits(17) {
                    self.w.write_bits(0b110, 3);
                    self.w.write_bits(dod as u64 & ((1 << 17) - 1), 17);
                } else if fits(20) {
                    self.w.write_bits(0b1110, 4);
                    self.w.write_bits(dod as u64 & ((1 << 20) - 1), 20);
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(dod as u64, 64);
                }
                self.write_value(vb);
                self.t_delta = d;
            }
        }
        self.t = t;
        self.v = vb;
        self.num += 1;
    }

    fn write_value(&mut self, vb: u64) {
        let x = vb ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        let mut leading = x.leading_zeros() as u8;
        let trailing = x.trailing_zeros() as u8;
        if leading >= 32 {
            leading = 31;
        }
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.w.write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.w.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.w.write_bit(true);
            self.w.write_bits(u64::from(leading), 5);
            let sig = 64 - leading - trailing;
            // 64 significant bits do not fit in 6 bits; 0 stands for 64 as in Prometheus.
            self.w.write_bits(u64::from(sig) & 0x3f, 6);
            self.w.write_bits(x >> trailing, sig);
        }
    }

    /// Decodes every sample.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter::with_count(&self.w.bytes, self.num)
    }
}

/// A chunk that takes no more samples: its bytes (sample count included) and time range. A
/// head keeps tens of these per series; a growing [`XorChunk`] costs 72 bytes plus up to twice
/// its data, this 32 plus its data.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedChunk {
    bytes: Box<[u8]>,
    min_t: i64,
    max_t: i64,
}

impl SealedChunk {
    /// A chunk from its encoded bytes (sample count included) and time range.
    pub fn from_parts(bytes: Box<[u8]>, min_t: i64, max_t: i64) -> Self {
        SealedChunk {
            bytes,
            min_t,
            max_t,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> u16 {
        match *self.bytes {
            [a, b, ..] => u16::from_be_bytes([a, b]),
            _ => 0,
        }
    }

    /// Whether the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// First timestamp.
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Last timestamp.
    pub fn max_t(&self) -> i64 {
        self.max_t
    }

    /// Encoded size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The encoded bytes, sample count included (as [`XorChunk::bytes`]).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Decodes every sample.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter::over(&self.bytes)
    }
}

impl From<XorChunk> for SealedChunk {
    fn from(c: XorChunk) -> Self {
        let mut bytes = c.w.bytes;
        if let Some(head) = bytes.get_mut(..2) {
            head.copy_from_slice(&c.num.to_be_bytes());
        }
        SealedChunk {
            // Exactly its length: the spare capacity of the growing chunk goes back.
            bytes: bytes.into_boxed_slice(),
            min_t: c.min_t,
            max_t: c.t,
        }
    }
}

/// Decoder over an [`XorChunk`].
pub struct XorIter<'a> {
    r: BitReader<'a>,
    left: u16,
    n: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> XorIter<'a> {
    /// A decoder over encoded chunk bytes as [`XorChunk::bytes`] returns them (sample count
    /// in the first two bytes). Damaged bytes end the iteration early; they never panic.
    pub fn over(bytes: &'a [u8]) -> Self {
        let left = match bytes {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        };
        XorIter::with_count(bytes, left)
    }

    /// A decoder over `left` samples of encoded bytes (the count field is skipped).
    fn with_count(bytes: &'a [u8], left: u16) -> Self {
        XorIter {
            r: BitReader { bytes, pos: 16 },
            left,
            n: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        }
    }

    fn read_value(&mut self) -> Option<()> {
        if !self.r.read_bit()? {
            return Some(());
        }
        if self.r.read_bit()? {
            self.leading = self.r.read_bits(5)? as u8;
            let mut sig = self.r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            self.trailing = 64 - self.leading - sig;
        }
        let sig = 64 - self.leading - self.trailing;
        let bits = self.r.read_bits(sig)?;
        self.v ^= bits << self.trailing;
        Some(())
    }

    fn step(&mut self) -> Option<(i64, f64)> {
        match self.n {
            0 => {
                self.t = self.r.read_varint()?;
                self.v = self.r.read_bits(64)?;
            }
            1 => {
                self.t_delta = self.r.read_uvarint()? as i64;
                self.t += self.t_delta;
                self.read_value()?;
            }
            _ => {
                let mut prefix = 0u8;
                for _ in 0..4 {
                    if !self.r.read_bit()? {
                        break;
                    }
                    prefix += 1;
                }
                let dod = match prefix {
                    0 => 0,
                    1 => sign_extend(self.r.read_bits(14)?, 14),
                    2 => sign_extend(self.r.read_bits(17)?, 17),
                    3 => sign_extend(self.r.read_bits(20)?, 20),
                    _ => self.r.read_bits(64)? as i64,
                };
                self.t_delta += dod;
                self.t += self.t_delta;
                self.read_value()?;
            }
        }
        self.n += 1;
        Some((self.t, f64::from_bits(self.v)))
    }
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    // Values above half the range were negative when written (Prometheus's convention).
    if v > (1u64 << (bits - 1)) {
        v as i64 - (1i64 << bits)
    } else {
        v as i64
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.step()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_irregular_data() {
        let mut c = XorChunk::default();
        let mut want = Vec::new();
        let mut t = 1_700_000_000_000i64;
        let vals = [
            0.0,
            1.5,
            1.5,
            -3.25,
            f64::NAN,
            f64::INFINITY,
            1e300,
            5e-324,
            crate::model::stale_nan(),
            42.0,
            42.0,
            7.0,
        ];
        for i in 0..120 {
            t += [15_000, 15_001, 14_990, 1, 9_000_000, 70_000_000_000, 15_000][i % 7];
            let v = vals[i % vals.len()] + if i % 5 == 0 { i as f64 } else { 0.0 };
            c.append(t, v);
            want.push((t, v));
        }
        let got: Vec<_> = c.iter().collect();
        assert_eq!(got.len(), want.len());
        for ((gt, gv), (wt, wv)) in got.iter().zip(&want) {
            assert_eq!(gt, wt);
            assert_eq!(gv.to_bits(), wv.to_bits());
        }
        assert_eq!(&c.bytes()[..2], &120u16.to_be_bytes());
    }

    #[test]
    fn regular_data_is_compact() {
        let mut c = XorChunk::default();
        for i in 0..120 {
            c.append(i * 15_000, 100.0 + (i / 10) as f64);
        }
        assert!(c.size() < 120 * 2, "{} bytes", c.size());
    }

    #[test]
    fn a_sealed_chunk_keeps_every_sample_and_its_range() {
        let mut c = XorChunk::default();
        for i in 0..120i64 {
            c.append(1000 + i * 15_000, (i * i) as f64 / 3.0);
        }
        let want: Vec<(i64, f64)> = c.iter().collect();
        let (min, max, len, bytes) = (c.min_t(), c.max_t(), c.len(), c.bytes());
        let s = SealedChunk::from(c);
        assert_eq!(s.iter().collect::<Vec<_>>(), want);
        assert_eq!(
            (s.min_t(), s.max_t(), s.len(), s.bytes()),
            (min, max, len, &bytes[..])
        );
        assert_eq!(s.size(), bytes.len());
        let empty = SealedChunk::from(XorChunk::default());
        assert!(empty.is_empty());
        assert_eq!(empty.iter().count(), 0);
    }
}
