//! Label sets: sorted, duplicate-free lists of name/value pairs, and a builder for editing them.

use std::fmt;
use std::sync::Arc;

/// One label pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value; an empty value means the label is absent, as in Prometheus.
    pub value: String,
}

/// One pair of a label set, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelRef<'a> {
    /// Label name.
    pub name: &'a str,
    /// Label value (never empty in a [`Labels`]).
    pub value: &'a str,
}

impl LabelRef<'_> {
    /// An owned copy.
    pub fn to_label(&self) -> Label {
        Label {
            name: self.name.to_string(),
            value: self.value.to_string(),
        }
    }
}

/// A label set, always sorted by name with no duplicate names and no empty values.
///
/// One allocation per set: the pairs packed as length-prefixed strings behind an `Arc`
/// (Prometheus's `stringlabels` layout). A set of seven pairs held as separate strings cost 14
/// allocations and ~800 bytes per stored series, more than half of a series' memory; packed
/// it is one allocation of ~130. Clones share it, so a clone copies no strings.
///
/// The lengths are written in ASCII digits (see [`put_len`]), so the whole packing is a
/// `str` and reading a pair back slices it without validating UTF-8 again (validation was a
/// sixth of a `sum by` range query's time).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Labels(Arc<str>);

impl Default for Labels {
    fn default() -> Self {
        Labels(Arc::from(""))
    }
}

/// Appends `n` as base-64 digits, low first, each an ASCII byte: `0x40 | d` while more
/// follow, then `d` alone (0x00..=0x3f). A length under 64 is one byte.
fn put_len(out: &mut String, mut n: usize) {
    while n >= 0x40 {
        out.push(char::from(0x40 | (n & 0x3f) as u8));
        n >>= 6;
    }
    out.push(char::from(n as u8));
}

/// The next length-prefixed string of `b` from `*at`, advancing it; None at the end.
fn take_str<'a>(b: &'a str, at: &mut usize) -> Option<&'a str> {
    let bytes = b.as_bytes();
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let byte = *bytes.get(*at)?;
        *at += 1;
        n |= usize::from(byte & 0x3f) << shift;
        if byte < 0x40 {
            break;
        }
        shift += 6;
        if shift > 58 {
            return None;
        }
    }
    let s = b.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(s)
}

/// The pairs of a [`Labels`], in name order.
#[derive(Clone)]
pub struct LabelIter<'a> {
    b: &'a str,
    at: usize,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = LabelRef<'a>;

    fn next(&mut self) -> Option<LabelRef<'a>> {
        let name = take_str(self.b, &mut self.at)?;
        let value = take_str(self.b, &mut self.at)?;
        Some(LabelRef { name, value })
    }
}

impl Labels {
    /// Builds a label set from pairs in any order; later duplicates win, empty values are dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut b = LabelsBuilder::default();
        for (n, v) in pairs {
            b.set(n.into(), v.into());
        }
        b.labels()
    }

    /// Builds from a vector already sorted by name, duplicate-free and without empty values.
    /// Callers that cannot promise that use [`Labels::from_pairs`].
    pub fn from_sorted_unchecked(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Self::pack(v.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// Packs pairs already sorted, duplicate-free and without empty values.
    fn pack<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Self {
        let size: usize = pairs.clone().map(|(n, v)| n.len() + v.len() + 2).sum();
        let mut out = String::with_capacity(size);
        for (n, v) in pairs {
            put_len(&mut out, n.len());
            out.push_str(n);
            put_len(&mut out, v.len());
            out.push_str(v);
        }
        Labels(Arc::from(out))
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|l| l.name == name).map(|l| l.value)
    }

    /// The metric name (`__name__`), or "" when unset.
    pub fn metric_name(&self) -> &str {
        self.get(super::METRIC_NAME).unwrap_or("")
    }

    /// Iterates the pairs in name order.
    pub fn iter(&self) -> LabelIter<'_> {
        LabelIter { b: &self.0, at: 0 }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Owned copies of the pairs.
    pub fn to_vec(&self) -> Vec<Label> {
        self.iter().map(|l| l.to_label()).collect()
    }

    /// The address of the shared packing: equal for clones, and unique among label sets
    /// alive at the same time (empty sets may share one). For caches that hold a clone, so
    /// the address is not reused while they use it.
    pub fn alloc_id(&self) -> usize {
        Arc::as_ptr(&self.0) as *const u8 as usize
    }

    /// Bytes held by the packed pairs (not counting the shared header).
    pub fn packed_size(&self) -> usize {
        self.0.len()
    }

    /// A stable 64-bit FNV-1a hash of the pairs; stable across processes and releases, so it can
    /// seed scrape offsets.
    pub fn stable_hash(&self) -> u64 {
        let mut h = Fnv64::default();
        for l in self.iter() {
            h.write(l.name.as_bytes());
            h.write(&[0xff]);
            h.write(l.value.as_bytes());
            h.write(&[0xff]);
        }
        h.finish()
    }

    /// Starts an edit of this set.
    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            items: self.to_vec(),
        }
    }

    /// The pairs for which `keep` is true, packed without copying any to a `String` first.
    pub fn filter(&self, mut keep: impl FnMut(&LabelRef<'_>) -> bool) -> Labels {
        let kept: Vec<LabelRef<'_>> = self.iter().filter(|l| keep(l)).collect();
        Self::pack(kept.iter().map(|l| (l.name, l.value)))
    }

    /// A copy without the metric name.
    pub fn without_name(&self) -> Labels {
        if self.get(super::METRIC_NAME).is_none() {
            return self.clone();
        }
        Self::pack(
            self.iter()
                .filter(|l| l.name != super::METRIC_NAME)
                .map(|l| (l.name, l.value)),
        )
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    /// Pair by pair, name then value, a shorter prefix first (Prometheus's `labels.Compare`).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Labels")?;
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for Labels {
    /// Prints `{a="1", b="2"}` as Prometheus's `labels.Labels.String` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// Edits a label set; `labels()` returns the sorted, cleaned result.
#[derive(Clone, Debug, Default)]
pub struct LabelsBuilder {
    items: Vec<Label>,
}

impl LabelsBuilder {
    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: String, value: String) -> &mut Self {
        match self.items.iter_mut().find(|l| l.name == name) {
            Some(l) => l.value = value,
            None => self.items.push(Label { name, value }),
        }
        self
    }

    /// Adds `name` without looking for it first: the caller knows it is not set (labels of
    /// one parsed sample are unique). Keeps building a series of many labels linear.
    pub fn push_new(&mut self, name: String, value: String) -> &mut Self {
        self.items.push(Label { name, value });
        self
    }

    /// Deletes `name`.
    pub fn del(&mut self, name: &str) -> &mut Self {
        self.items.retain(|l| l.name != name);
        self
    }

    /// The current value of `name` ("" if unset).
    pub fn get(&self, name: &str) -> &str {
        self.items
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
            .unwrap_or("")
    }

    /// Keeps only the labels for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) -> &mut Self {
        self.items.retain(|l| keep(l));
        self
    }

    /// Iterates the current pairs (unsorted, may include empty values).
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.items.iter()
    }

    /// The finished, sorted label set.
    pub fn labels(&self) -> Labels {
        let mut v: Vec<Label> = self
            .items
            .iter()
            .filter(|l| !l.value.is_empty())
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.dedup_by(|a, b| a.name == b.name);
        Labels::from_sorted_unchecked(v)
    }
}

/// FNV-1a, 64 bit. Written out because it is six lines and must never change between builds.
#[derive(Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    /// Feeds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Whether `s` is a label name in the legacy (pre-UTF-8) charset `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_legacy_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    match b.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
        _ => return false,
    }
    b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Whether `s` is a metric name in the legacy charset `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_legacy_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    match b.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {}
        _ => return false,
    }
    b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_pairs_sorts_dedups_and_drops_empty() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("a", "3")]);
        assert_eq!(l.to_string(), r#"{a="3", b="2"}"#);
        assert_eq!(l.get("a"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn stable_hash_is_stable() {
        let l = Labels::from_pairs([("job", "node"), ("instance", "localhost:9100")]);
        assert_eq!(l.stable_hash(), l.clone().stable_hash());
        assert_ne!(
            l.stable_hash(),
            Labels::from_pairs([("job", "node")]).stable_hash()
        );
    }

    /// Packed sets read back as built and order as their pairs do (name, then value, a
    /// prefix first), with long (multi-byte length) and non-ASCII strings.
    #[test]
    fn packed_sets_round_trip_and_order_pair_by_pair() {
        let long = "v".repeat(300);
        // Lengths at each width of the ASCII length digits: 63/64, 4095/4096, and beyond.
        let edges: Vec<String> = [63, 64, 4095, 4096, 70_000]
            .iter()
            .map(|n| "é".repeat(n / 2) + &"x".repeat(n % 2))
            .collect();
        let sets: Vec<Vec<(&str, &str)>> = vec![
            vec![
                ("a", &edges[0]),
                ("b", &edges[1]),
                ("c", &edges[2]),
                ("d", &edges[3]),
                ("e", &edges[4]),
            ],
            vec![],
            vec![("a", "1")],
            vec![("a", "1"), ("b", "2")],
            vec![("a", "1"), ("b", "10")],
            vec![("a", "2")],
            vec![("a", long.as_str()), ("zé", "ünï")],
            vec![("__name__", "up"), ("job", "node")],
            vec![("ab", "1")],
        ];
        let mut built: Vec<(Vec<(String, String)>, Labels)> = sets
            .iter()
            .map(|p| {
                let owned: Vec<(String, String)> = p
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                (owned, Labels::from_pairs(p.iter().copied()))
            })
            .collect();
        for (pairs, l) in &built {
            let back: Vec<(String, String)> = l
                .iter()
                .map(|p| (p.name.to_string(), p.value.to_string()))
                .collect();
            assert_eq!(&back, pairs);
            assert_eq!(l.len(), pairs.len());
            assert_eq!(l.is_empty(), pairs.is_empty());
            for (n, v) in pairs {
                assert_eq!(l.get(n), Some(v.as_str()));
            }
            assert_eq!(&Labels::from_sorted_unchecked(l.to_vec()), l);
            assert_eq!(&l.builder().labels(), l);
        }
        let by_pairs = {
            let mut v = built.clone();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        built.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(built, by_pairs);
        let l = Labels::from_pairs([("__name__", "x"), ("a", "1"), ("b", "2")]);
        assert_eq!(l.without_name().to_string(), r#"{a="1", b="2"}"#);
        assert_eq!(l.filter(|p| p.name == "b").to_string(), r#"{b="2"}"#);
        assert_eq!(format!("{l:?}").matches("LabelRef").count(), 3);
    }

    #[test]
    fn legacy_names() {
        assert!(is_legacy_label_name("_a1"));
        assert!(!is_legacy_label_name("1a"));
        assert!(!is_legacy_label_name("a:b"));
        assert!(is_legacy_metric_name("a:b_c"));
        assert!(!is_legacy_metric_name("a.b"));
    }
}
