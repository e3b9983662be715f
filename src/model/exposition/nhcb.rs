//! Classic histograms read as native histograms with custom buckets while parsing, as
//! Prometheus's `NHCBParser` does for `convert_classic_histograms_to_nhcb`: the `_bucket`,
//! `_count` and `_sum` series of a `histogram` family become one histogram sample per label
//! set under the family's name; the classic series are passed on too only when asked.
//!
//! Wraps a [`Decoder`]; knows nothing of scraping or storage.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::{DecodeError, Decoder, Entry, LabelPairs, MetricType, Sample};
use crate::model::nhcb::TempHistogram;

type Item<'a> = Result<Entry<'a>, DecodeError>;

/// A label set as owned pairs, for grouping.
type Key = Vec<(String, String)>;

/// A [`Decoder`] that converts classic histograms (see the module docs); with `enabled` off
/// it passes everything through.
pub struct NhcbDecoder<'a> {
    inner: Decoder<'a>,
    enabled: bool,
    keep_classic: bool,
    types: HashMap<String, MetricType>,
    /// The histogram family being collected and its samples with their labels.
    family: Option<String>,
    buffered: Vec<(Sample<'a>, Cow<'a, str>, LabelPairs<'a>)>,
    /// Label sets of the family that came as native histograms already (not converted).
    native: HashSet<Key>,
    out: VecDeque<Item<'a>>,
    done: bool,
}

impl<'a> NhcbDecoder<'a> {
    /// Wraps `inner`; `keep_classic` also yields the classic series of converted histograms.
    pub fn new(inner: Decoder<'a>, enabled: bool, keep_classic: bool) -> Self {
        NhcbDecoder {
            inner,
            enabled,
            keep_classic,
            types: HashMap::new(),
            family: None,
            buffered: Vec::new(),
            native: HashSet::new(),
            out: VecDeque::new(),
            done: false,
        }
    }

    /// A sample's name and labels (see [`Decoder::series_labels`]); converted samples carry
    /// theirs.
    pub fn series_labels(
        &self,
        s: &Sample<'a>,
    ) -> Result<(Cow<'a, str>, LabelPairs<'a>), DecodeError> {
        self.inner.series_labels(s)
    }

    /// The histogram family a sample name belongs to, if it is one.
    fn family_of(&self, name: &str) -> Option<String> {
        let is_hist = |base: &str| self.types.get(base) == Some(&MetricType::Histogram);
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if is_hist(base) {
                    return Some(base.to_string());
                }
            }
        }
        is_hist(name).then(|| name.to_string())
    }

    /// Emits the collected family: its classic series if kept, then one histogram per label
    /// set and timestamp.
    fn flush(&mut self) {
        let Some(base) = self.family.take() else {
            return;
        };
        let buffered = std::mem::take(&mut self.buffered);
        let native = std::mem::take(&mut self.native);
        // Per label set (without `le`) and timestamp, in order of first appearance.
        let mut groups: Vec<(LabelPairs<'a>, Option<i64>, TempHistogram)> = Vec::new();
        let mut index: HashMap<(Key, Option<i64>), usize> = HashMap::new();
        let mut classic = Vec::new();
        for (s, name, labels) in buffered {
            let key_labels: LabelPairs<'a> =
                labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            let key: Key = key_labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if native.contains(&key) {
                classic.push(s);
                continue;
            }
            let i = *index.entry((key, s.timestamp_ms)).or_insert_with(|| {
                groups.push((key_labels, s.timestamp_ms, TempHistogram::default()));
                groups.len() - 1
            });
            let h = &mut groups[i].2;
            if name.strip_suffix("_bucket") == Some(base.as_str()) {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .and_then(|(_, v)| v.trim().parse::<f64>().ok());
                match le {
                    Some(le) => h.set_bucket(le, s.value),
                    None => {
                        classic.push(s);
                        continue;
                    }
                }
            } else if name.ends_with("_count") {
                h.set_count(s.value);
            } else if name.ends_with("_sum") {
                h.set_sum(s.value);
            }
            if self.keep_classic {
                classic.push(s);
            }
        }
        self.out
            .extend(classic.into_iter().map(|s| Ok(Entry::Sample(s))));
        for (labels, ts, h) in groups {
            // A histogram that does not convert (falling buckets, a count that differs
            // from +Inf) is left out, as Prometheus's parser leaves it.
            let Ok(h) = h.convert() else {
                continue;
            };
            let mut key = format!("\u{0}nhcb\u{0}{base}");
            for (k, v) in &labels {
                key.push('\u{0}');
                key.push_str(k);
                key.push('=');
                key.push_str(v);
            }
            self.out.push_back(Ok(Entry::Sample(Sample {
                series: Cow::Owned(key.into_bytes()),
                name: Cow::Owned(base.clone()),
                labels,
                labels_deferred: false,
                value: 0.0,
                timestamp_ms: ts,
                timestamp_raw: None,
                exemplar: None,
                histogram: Some(Arc::new(h)),
                more_exemplars: Vec::new(),
            })));
        }
    }

    fn step(&mut self, e: Item<'a>) {
        let s = match e {
            Ok(Entry::Sample(s)) => s,
            Ok(Entry::Type { name, kind }) => {
                if self.family.as_deref() != Some(&*name) {
                    self.flush();
                }
                self.types.insert(name.to_string(), kind);
                self.out.push_back(Ok(Entry::Type { name, kind }));
                return;
            }
            other => {
                let same = match &other {
                    Ok(Entry::Help { name, .. }) | Ok(Entry::Unit { name, .. }) => {
                        self.family.as_deref() == Some(&**name)
                    }
                    _ => false,
                };
                if !same {
                    self.flush();
                }
                self.out.push_back(other);
                return;
            }
        };
        let Some(base) = self.family_of(&s.name) else {
            self.flush();
            self.out.push_back(Ok(Entry::Sample(s)));
            return;
        };
        if self.family.as_deref() != Some(&base) {
            self.flush();
            self.family = Some(base);
        }
        let (name, labels) = match self.inner.series_labels(&s) {
            Ok(x) => x,
            Err(e) => {
                self.out.push_back(Err(e));
                return;
            }
        };
        if s.histogram.is_some() {
            self.native.insert(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            self.out.push_back(Ok(Entry::Sample(s)));
            return;
        }
        self.buffered.push((s, name, labels));
    }
}

impl<'a> Iterator for NhcbDecoder<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.enabled {
            return self.inner.next();
        }
        loop {
            if let Some(e) = self.out.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            match self.inner.next() {
                None => {
                    self.done = true;
                    self.flush();
                }
                Some(e) => self.step(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::exposition::{Format, ParserOptions, ProtoOptions, Wire};

    fn entries(text: &str, keep_classic: bool) -> Vec<(String, Option<String>)> {
        let dec = Decoder::new(
            text.as_bytes(),
            Wire::Text(Format::PrometheusText),
            ParserOptions {
                defer_labels: true,
                ..ParserOptions::default()
            },
            ProtoOptions::default(),
        );
        let conv = NhcbDecoder::new(dec, true, keep_classic);
        let mut out = Vec::new();
        let mut conv = conv;
        while let Some(e) = conv.next() {
            if let Ok(Entry::Sample(s)) = e {
                let (name, labels) = conv.series_labels(&s).expect("labels");
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push((
                    format!("{name}{{{}}}", l.join(",")),
                    s.histogram.map(|h| h.to_string()),
                ));
            }
        }
        out
    }

    const PAGE: &str = "# TYPE rpc_seconds histogram\n\
rpc_seconds_bucket{code=\"200\",le=\"0.1\"} 2\n\
rpc_seconds_bucket{code=\"200\",le=\"1\"} 5\n\
rpc_seconds_bucket{code=\"200\",le=\"+Inf\"} 6\n\
rpc_seconds_sum{code=\"200\"} 3.5\n\
rpc_seconds_count{code=\"200\"} 6\n\
# TYPE up gauge\n\
up 1\n";

    #[test]
    fn a_classic_family_becomes_one_custom_bucket_histogram() {
        let got = entries(PAGE, false);
        assert_eq!(
            got,
            vec![
                (
                    "rpc_seconds{code=200}".to_string(),
                    Some(
                        "{{schema:-53 count:6 sum:3.5 custom_values:[0.1 1] buckets:[2 3 1]}}"
                            .to_string()
                    )
                ),
                ("up{}".to_string(), None),
            ]
        );
    }

    #[test]
    fn classic_series_stay_when_asked() {
        let got = entries(PAGE, true);
        assert_eq!(got.len(), 7);
        assert!(got
            .iter()
            .any(|(n, h)| n == "rpc_seconds{code=200}" && h.is_some()));
        assert!(got
            .iter()
            .any(|(n, _)| n == "rpc_seconds_bucket{code=200,le=+Inf}"));
    }
}
