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

/// A label set, always sorted by name with no duplicate names and no empty values.
///
/// Shared behind an `Arc`: label sets are cloned on every query step and every stored series
/// refers to one, so a clone must not copy strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<[Label]>);

impl Default for Labels {
    fn default() -> Self {
        Labels(Arc::from(Vec::new()))
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
        Labels(Arc::from(v))
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), or "" when unset.
    pub fn metric_name(&self) -> &str {
        self.get(super::METRIC_NAME).unwrap_or("")
    }

    /// Iterates the pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs as a slice.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// A stable 64-bit FNV-1a hash of the pairs; stable across processes and releases, so it can
    /// seed scrape offsets.
    pub fn stable_hash(&self) -> u64 {
        let mut h = Fnv64::default();
        for l in self.0.iter() {
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
            items: self.0.to_vec(),
        }
    }

    /// A copy without the metric name.
    pub fn without_name(&self) -> Labels {
        if self.get(super::METRIC_NAME).is_none() {
            return self.clone();
        }
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != super::METRIC_NAME)
                .cloned()
                .collect(),
        )
    }
}

impl fmt::Display for Labels {
    /// Prints `{a="1", b="2"}` as Prometheus's `labels.Labels.String` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
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
        Labels(Arc::from(v))
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

    #[test]
    fn legacy_names() {
        assert!(is_legacy_label_name("_a1"));
        assert!(!is_legacy_label_name("1a"));
        assert!(!is_legacy_label_name("a:b"));
        assert!(is_legacy_metric_name("a:b_c"));
        assert!(!is_legacy_metric_name("a.b"));
    }
}
