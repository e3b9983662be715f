//! The Prometheus protobuf exposition format (`application/vnd.google.protobuf;
//! proto=io.prometheus.client.MetricFamily; encoding=delimited`): a stream of
//! varint-length-prefixed `io.prometheus.client.MetricFamily` messages, the only format that
//! carries native histograms from client_golang, client_java and friends.
//!
//! The messages are prost derives of client_model's `metrics.proto` (as kept in Prometheus's
//! `prompb/io/prometheus/client/`), written out here as `remote::proto` does for remote write:
//! there is no `protoc` to run a build script with, and the wire is all prost needs. Decoding
//! is prost's; this file turns families into the same [`Entry`] stream the text parser yields,
//! as Prometheus's `ProtobufParser` orders it (a summary's `_count`, `_sum`, then quantiles; a
//! native histogram first, then its classic series when asked for).
//!
//! Owns decoding only: limits that need the scrape config (bucket limits, schema caps) are the
//! scraper's.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use prost::Message;

use super::{format_openmetrics_float, Entry, Exemplar, MetricType, Sample};
use crate::model::histogram::{CounterResetHint, FloatHistogram};

/// The media type this format is offered and recognised by.
pub const MEDIA_TYPE: &str = "application/vnd.google.protobuf";

/// client_model's messages (`package io.prometheus.client`).
pub mod pb {
    /// `LabelPair`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        /// Label name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Label value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `MetricType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// A counter.
        Counter = 0,
        /// A gauge.
        Gauge = 1,
        /// A summary.
        Summary = 2,
        /// An untyped metric.
        Untyped = 3,
        /// A histogram (classic, native or both).
        Histogram = 4,
        /// A gauge histogram.
        GaugeHistogram = 5,
    }

    /// `Gauge`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        /// Value.
        #[prost(double, tag = "1")]
        pub value: f64,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Timestamp {
        /// Seconds since the epoch.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds within the second.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `Counter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Counter {
        /// Value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Exemplar.
        #[prost(message, optional, tag = "2")]
        pub exemplar: Option<Exemplar>,
        /// When the counter started (created timestamp).
        #[prost(message, optional, tag = "3")]
        pub start_timestamp: Option<Timestamp>,
    }

    /// `Quantile`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Quantile {
        /// The quantile (0..1).
        #[prost(double, tag = "1")]
        pub quantile: f64,
        /// Its value.
        #[prost(double, tag = "2")]
        pub value: f64,
    }

    /// `Summary`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        /// Observations.
        #[prost(uint64, tag = "1")]
        pub sample_count: u64,
        /// Sum of observations.
        #[prost(double, tag = "2")]
        pub sample_sum: f64,
        /// Quantiles.
        #[prost(message, repeated, tag = "3")]
        pub quantile: Vec<Quantile>,
        /// Created timestamp.
        #[prost(message, optional, tag = "4")]
        pub start_timestamp: Option<Timestamp>,
    }

    /// `Untyped`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Untyped {
        /// Value.
        #[prost(double, tag = "1")]
        pub value: f64,
    }

    /// `Histogram`: classic buckets, native (sparse) buckets, or both.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        /// Observations.
        #[prost(uint64, tag = "1")]
        pub sample_count: u64,
        /// Observations as a float (overrides `sample_count` when > 0).
        #[prost(double, tag = "4")]
        pub sample_count_float: f64,
        /// Sum of observations.
        #[prost(double, tag = "2")]
        pub sample_sum: f64,
        /// Classic buckets, by increasing upper bound; `+Inf` optional.
        #[prost(message, repeated, tag = "3")]
        pub bucket: Vec<Bucket>,
        /// Created timestamp.
        #[prost(message, optional, tag = "15")]
        pub start_timestamp: Option<Timestamp>,
        /// Native: resolution.
        #[prost(sint32, tag = "5")]
        pub schema: i32,
        /// Native: width of the zero bucket.
        #[prost(double, tag = "6")]
        pub zero_threshold: f64,
        /// Native: observations in the zero bucket.
        #[prost(uint64, tag = "7")]
        pub zero_count: u64,
        /// Native: the same as a float (overrides `zero_count` when > 0).
        #[prost(double, tag = "8")]
        pub zero_count_float: f64,
        /// Native: negative bucket spans.
        #[prost(message, repeated, tag = "9")]
        pub negative_span: Vec<BucketSpan>,
        /// Native: negative bucket counts, each as a delta from the one before.
        #[prost(sint64, repeated, tag = "10")]
        pub negative_delta: Vec<i64>,
        /// Native: negative bucket counts, absolute (float histograms).
        #[prost(double, repeated, tag = "11")]
        pub negative_count: Vec<f64>,
        /// Native: positive bucket spans.
        #[prost(message, repeated, tag = "12")]
        pub positive_span: Vec<BucketSpan>,
        /// Native: positive bucket counts, each as a delta from the one before.
        #[prost(sint64, repeated, tag = "13")]
        pub positive_delta: Vec<i64>,
        /// Native: positive bucket counts, absolute (float histograms).
        #[prost(double, repeated, tag = "14")]
        pub positive_count: Vec<f64>,
        /// Native: exemplars.
        #[prost(message, repeated, tag = "16")]
        pub exemplars: Vec<Exemplar>,
    }

    /// `Bucket` (classic).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Bucket {
        /// Cumulative count.
        #[prost(uint64, tag = "1")]
        pub cumulative_count: u64,
        /// The same as a float (overrides `cumulative_count` when > 0).
        #[prost(double, tag = "4")]
        pub cumulative_count_float: f64,
        /// Inclusive upper bound.
        #[prost(double, tag = "2")]
        pub upper_bound: f64,
        /// Exemplar.
        #[prost(message, optional, tag = "3")]
        pub exemplar: Option<Exemplar>,
    }

    /// `BucketSpan`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct BucketSpan {
        /// Gap to the previous span, or the first span's starting index.
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        /// Consecutive buckets.
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }

    /// `Exemplar`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        /// Labels.
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        /// Value.
        #[prost(double, tag = "2")]
        pub value: f64,
        /// Timestamp.
        #[prost(message, optional, tag = "3")]
        pub timestamp: Option<Timestamp>,
    }

    /// `Metric`: one series (or one histogram/summary) of a family.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        /// Labels.
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        /// Gauge value.
        #[prost(message, optional, tag = "2")]
        pub gauge: Option<Gauge>,
        /// Counter value.
        #[prost(message, optional, tag = "3")]
        pub counter: Option<Counter>,
        /// Summary.
        #[prost(message, optional, tag = "4")]
        pub summary: Option<Summary>,
        /// Untyped value.
        #[prost(message, optional, tag = "5")]
        pub untyped: Option<Untyped>,
        /// Histogram.
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
        /// Timestamp in milliseconds (0: none).
        #[prost(int64, tag = "6")]
        pub timestamp_ms: i64,
    }

    /// `MetricFamily`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricFamily {
        /// Name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// HELP text.
        #[prost(string, tag = "2")]
        pub help: String,
        /// Type.
        #[prost(enumeration = "MetricType", tag = "3")]
        pub r#type: i32,
        /// Series.
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
        /// Unit.
        #[prost(string, tag = "5")]
        pub unit: String,
    }
}

/// What to make of histograms.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtoOptions {
    /// Read native histograms as such (`scrape_native_histograms`); otherwise only their
    /// classic buckets are read, as Prometheus does with native histograms off.
    pub native_histograms: bool,
    /// Also read the classic buckets of a histogram read as native
    /// (`always_scrape_classic_histograms`).
    pub classic_histograms: bool,
}

/// Why a protobuf body could not be read; `family` is 1-based.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("protobuf metric family {family}: {msg}")]
pub struct ProtoError {
    /// Which family of the body (1-based).
    pub family: usize,
    /// What is wrong.
    pub msg: String,
}

/// Reads a delimited protobuf body family by family; iterate it for entries.
pub struct ProtoParser<'a> {
    buf: &'a [u8],
    pos: usize,
    family: usize,
    opts: ProtoOptions,
    pending: VecDeque<Entry<'a>>,
    failed: bool,
}

impl<'a> ProtoParser<'a> {
    /// A parser over `buf`.
    pub fn new(buf: &'a [u8], opts: ProtoOptions) -> Self {
        ProtoParser {
            buf,
            pos: 0,
            family: 0,
            opts,
            pending: VecDeque::new(),
            failed: false,
        }
    }

    fn err(&self, msg: impl Into<String>) -> ProtoError {
        ProtoError {
            family: self.family,
            msg: msg.into(),
        }
    }

    /// Decodes the next family into `pending`.
    fn next_family(&mut self) -> Result<(), ProtoError> {
        self.family += 1;
        let mut rest = &self.buf[self.pos..];
        let before = rest.len();
        let len = prost::encoding::decode_varint(&mut rest)
            .map_err(|e| self.err(format!("reading the length prefix: {e}")))?;
        let head = before - rest.len();
        // The length is checked against what is left before anything is allocated for it.
        if len > rest.len() as u64 {
            return Err(self.err(format!(
                "length prefix {len} exceeds the {} bytes left in the body",
                rest.len()
            )));
        }
        let len = len as usize;
        let mf = pb::MetricFamily::decode(&rest[..len]).map_err(|e| self.err(e.to_string()))?;
        self.pos += head + len;
        self.expand(mf)
    }

    fn expand(&mut self, mf: pb::MetricFamily) -> Result<(), ProtoError> {
        if mf.name.is_empty() {
            return Err(self.err("invalid metric name: \"\""));
        }
        let kind = pb::MetricType::try_from(mf.r#type).map_err(|_| {
            self.err(format!(
                "unknown metric type for metric {:?}: {}",
                mf.name, mf.r#type
            ))
        })?;
        let name = mf.name;
        self.pending.push_back(Entry::Help {
            name: Cow::Owned(name.clone()),
            text: Cow::Owned(mf.help),
        });
        if !mf.unit.is_empty() {
            self.pending.push_back(Entry::Unit {
                name: Cow::Owned(name.clone()),
                unit: Cow::Owned(mf.unit),
            });
        }
        self.pending.push_back(Entry::Type {
            name: Cow::Owned(name.clone()),
            kind: match kind {
                pb::MetricType::Counter => MetricType::Counter,
                pb::MetricType::Gauge => MetricType::Gauge,
                pb::MetricType::Summary => MetricType::Summary,
                pb::MetricType::Untyped => MetricType::Unknown,
                pb::MetricType::Histogram => MetricType::Histogram,
                pb::MetricType::GaugeHistogram => MetricType::GaugeHistogram,
            },
        });
        let (family, opts) = (self.family, self.opts);
        for m in mf.metric {
            let labels = self.labels(&m.label)?;
            let ts = (m.timestamp_ms != 0).then_some(m.timestamp_ms);
            let mut out = Out {
                pending: &mut self.pending,
                labels: &labels,
                ts,
            };
            match kind {
                pb::MetricType::Counter => {
                    let c = m.counter.unwrap_or_default();
                    out.float(&name, None, c.value, c.exemplar.as_ref().map(exemplar));
                }
                pb::MetricType::Gauge => {
                    out.float(&name, None, m.gauge.unwrap_or_default().value, None);
                }
                pb::MetricType::Untyped => {
                    out.float(&name, None, m.untyped.unwrap_or_default().value, None);
                }
                pb::MetricType::Summary => {
                    let s = m.summary.unwrap_or_default();
                    out.float(&format!("{name}_count"), None, s.sample_count as f64, None);
                    out.float(&format!("{name}_sum"), None, s.sample_sum, None);
                    for q in &s.quantile {
                        let l = ("quantile", format_openmetrics_float(q.quantile));
                        out.float(&name, Some(l), q.value, None);
                    }
                }
                pb::MetricType::Histogram | pb::MetricType::GaugeHistogram => {
                    let h = m.histogram.unwrap_or_default();
                    let gauge = kind == pb::MetricType::GaugeHistogram;
                    let native = opts.native_histograms && is_native(&h);
                    if native {
                        let fh = native_histogram(&h, gauge).map_err(|e| ProtoError {
                            family,
                            msg: format!("histogram {name:?}: {e}"),
                        })?;
                        let mut exs = native_exemplars(&h);
                        let first = (!exs.is_empty()).then(|| exs.remove(0));
                        out.histogram(&name, fh, first, exs);
                    }
                    if !native || (opts.classic_histograms && !h.bucket.is_empty()) {
                        out.classic(&name, &h);
                    }
                }
            }
        }
        Ok(())
    }

    /// A metric's labels, sorted by name; empty or repeated names are errors, as in
    /// Prometheus's scrape (`label name "x" is not unique`).
    fn labels(&self, pairs: &[pb::LabelPair]) -> Result<Vec<(String, String)>, ProtoError> {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (n, _)) in v.iter().enumerate() {
            if n.is_empty() {
                return Err(self.err("invalid label name \"\""));
            }
            if n == crate::model::METRIC_NAME || (i > 0 && v[i - 1].0 == *n) {
                return Err(self.err(format!(
                    "label name {} is not unique",
                    super::bounded_quote(n)
                )));
            }
        }
        Ok(v)
    }
}

/// Prometheus's `isNativeHistogram`: a histogram with spans or a zero bucket is native (an
/// empty native histogram carries a no-op span for this reason).
fn is_native(h: &pb::Histogram) -> bool {
    !h.positive_span.is_empty()
        || !h.negative_span.is_empty()
        || h.zero_threshold > 0.0
        || h.zero_count > 0
}

/// The native part of `h` as a float histogram, empty buckets left out (Prometheus compacts
/// what it scrapes the same way).
fn native_histogram(h: &pb::Histogram, gauge: bool) -> Result<FloatHistogram, String> {
    let float = h.sample_count_float > 0.0 || h.zero_count_float > 0.0;
    let (pos, neg) = if float {
        (h.positive_count.len(), h.negative_count.len())
    } else {
        (h.positive_delta.len(), h.negative_delta.len())
    };
    // Schemas 9..=52 are reserved for finer resolutions and stored reduced to 8 (the
    // scraper does that); anything else has no meaning.
    if !(-4..=52).contains(&h.schema) {
        return Err(format!(
            "histogram has an unknown schema, which must be between -4 and 52 for exponential buckets, got schema {}",
            h.schema
        ));
    }
    check_spans("positive", &h.positive_span, pos)?;
    check_spans("negative", &h.negative_span, neg)?;
    let mut fh = FloatHistogram {
        schema: h.schema,
        count: if float {
            h.sample_count_float
        } else {
            h.sample_count as f64
        },
        sum: h.sample_sum,
        zero_count: if float {
            h.zero_count_float
        } else {
            h.zero_count as f64
        },
        zero_threshold: h.zero_threshold,
        hint: if gauge {
            CounterResetHint::Gauge
        } else {
            CounterResetHint::Unknown
        },
        ..FloatHistogram::default()
    };
    let absolute = |deltas: &[i64], counts: &[f64]| -> Vec<f64> {
        if float {
            counts.to_vec()
        } else {
            let mut c = 0i64;
            deltas
                .iter()
                .map(|d| {
                    c = c.wrapping_add(*d);
                    c as f64
                })
                .collect()
        }
    };
    fill(
        &mut fh.positive,
        &h.positive_span,
        &absolute(&h.positive_delta, &h.positive_count),
    );
    fill(
        &mut fh.negative,
        &h.negative_span,
        &absolute(&h.negative_delta, &h.negative_count),
    );
    validate(&fh)?;
    Ok(fh)
}

/// Prometheus's histogram validation on append: no negative counts, and no more observations
/// in the buckets than the count says (unless the sum is NaN, which NaN observations explain).
/// An invalid histogram stored here would be refused by every Prometheus it is sent to, and
/// being refused with a 5xx it would hold a remote-write queue forever.
fn validate(h: &FloatHistogram) -> Result<(), String> {
    let buckets = h.positive.values().chain(h.negative.values());
    if h.count < 0.0 || h.zero_count < 0.0 || buckets.clone().any(|c| *c < 0.0) {
        return Err("histogram has a negative count".into());
    }
    let in_buckets = h.zero_count + buckets.sum::<f64>();
    if !h.sum.is_nan() && in_buckets > h.count * (1.0 + 1e-12) {
        return Err(format!(
            "{:.6} observations found in buckets, but the Count field is {:.6}: histogram's observation count should be at least the number of observations found in the buckets",
            in_buckets, h.count
        ));
    }
    Ok(())
}

/// Prometheus's `checkProtoSpanBucketConsistency`.
fn check_spans(side: &str, spans: &[pb::BucketSpan], buckets: usize) -> Result<(), String> {
    let total: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    if total != buckets as u64 {
        return Err(format!(
            "{side} side: spans require {total} buckets, have {buckets}"
        ));
    }
    Ok(())
}

fn fill(out: &mut std::collections::BTreeMap<i32, f64>, spans: &[pb::BucketSpan], counts: &[f64]) {
    let mut idx: i64 = 0;
    let mut k = 0;
    for s in spans {
        idx += i64::from(s.offset);
        for _ in 0..s.length {
            if let (Some(c), Ok(i)) = (counts.get(k), i32::try_from(idx)) {
                if *c != 0.0 {
                    out.insert(i, *c);
                }
            }
            k += 1;
            idx += 1;
        }
    }
}

fn exemplar(e: &pb::Exemplar) -> Exemplar<'static> {
    Exemplar {
        labels: e
            .label
            .iter()
            .map(|l| (Cow::Owned(l.name.clone()), Cow::Owned(l.value.clone())))
            .collect(),
        value: e.value,
        timestamp_ms: e.timestamp.map(|t| {
            t.seconds
                .saturating_mul(1000)
                .saturating_add(i64::from(t.nanos / 1_000_000))
        }),
    }
}

/// A native histogram's exemplars: its own list, or else its classic buckets'; only those
/// with a timestamp count (Prometheus cannot order the others against the histogram).
fn native_exemplars(h: &pb::Histogram) -> Vec<Exemplar<'static>> {
    let list: Vec<&pb::Exemplar> = if h.exemplars.is_empty() {
        h.bucket
            .iter()
            .filter_map(|b| b.exemplar.as_ref())
            .collect()
    } else {
        h.exemplars.iter().collect()
    };
    list.into_iter()
        .filter(|e| e.timestamp.is_some())
        .map(exemplar)
        .collect()
}

/// Where one metric's samples go.
struct Out<'p, 'a> {
    pending: &'p mut VecDeque<Entry<'a>>,
    labels: &'p [(String, String)],
    ts: Option<i64>,
}

impl<'a> Out<'_, 'a> {
    fn sample(
        &mut self,
        name: &str,
        extra: Option<(&str, String)>,
        value: f64,
        histogram: Option<Arc<FloatHistogram>>,
        exemplar: Option<Exemplar<'a>>,
        more_exemplars: Vec<Exemplar<'a>>,
    ) {
        let mut labels: Vec<(Cow<'a, str>, Cow<'a, str>)> = self
            .labels
            .iter()
            .map(|(n, v)| (Cow::Owned(n.clone()), Cow::Owned(v.clone())))
            .collect();
        if let Some((n, v)) = extra {
            let at = labels.partition_point(|(k, _)| k.as_ref() < n);
            labels.insert(at, (Cow::Owned(n.to_string()), Cow::Owned(v)));
        }
        // The scraper's cache key: name and labels joined by 0xff as Prometheus's
        // `entryBytes`. It starts with 0xff, which no text exposition's series (UTF-8)
        // holds, so a target that switches formats never meets a text entry; then a marker,
        // so a histogram and a float series of the same labels never share an entry.
        let mut key = Vec::with_capacity(name.len() + 32);
        key.push(0xff);
        key.push(if histogram.is_some() { b'h' } else { b'f' });
        key.extend_from_slice(name.as_bytes());
        for (n, v) in &labels {
            key.push(0xff);
            key.extend_from_slice(n.as_bytes());
            key.push(0xff);
            key.extend_from_slice(v.as_bytes());
        }
        self.pending.push_back(Entry::Sample(Sample {
            series: Cow::Owned(key),
            name: Cow::Owned(name.to_string()),
            labels,
            labels_deferred: false,
            value,
            timestamp_ms: self.ts,
            timestamp_raw: None,
            exemplar,
            histogram,
            more_exemplars,
        }));
    }

    fn float(
        &mut self,
        name: &str,
        extra: Option<(&str, String)>,
        v: f64,
        ex: Option<Exemplar<'a>>,
    ) {
        self.sample(name, extra, v, None, ex, Vec::new());
    }

    fn histogram(
        &mut self,
        name: &str,
        h: FloatHistogram,
        ex: Option<Exemplar<'a>>,
        more: Vec<Exemplar<'a>>,
    ) {
        self.sample(name, None, f64::NAN, Some(Arc::new(h)), ex, more);
    }

    /// `_count`, `_sum`, then each bucket, with `+Inf` added when the exposition left it out.
    fn classic(&mut self, name: &str, h: &pb::Histogram) {
        let count = if h.sample_count_float > 0.0 {
            h.sample_count_float
        } else {
            h.sample_count as f64
        };
        self.float(&format!("{name}_count"), None, count, None);
        self.float(&format!("{name}_sum"), None, h.sample_sum, None);
        let bucket = format!("{name}_bucket");
        let mut saw_inf = false;
        for b in &h.bucket {
            let v = if b.cumulative_count_float > 0.0 {
                b.cumulative_count_float
            } else {
                b.cumulative_count as f64
            };
            let le = format_openmetrics_float(b.upper_bound);
            self.float(
                &bucket,
                Some(("le", le)),
                v,
                b.exemplar.as_ref().map(exemplar),
            );
            if b.upper_bound == f64::INFINITY {
                saw_inf = true;
                break;
            }
        }
        if !saw_inf {
            self.float(&bucket, Some(("le", "+Inf".into())), count, None);
        }
    }
}

impl<'a> Iterator for ProtoParser<'a> {
    type Item = Result<Entry<'a>, ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            if self.failed || self.pos >= self.buf.len() {
                return None;
            }
            if let Err(e) = self.next_family() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}

/// Encodes families as a delimited body (for tests, benchmarks and fuzzing seeds).
pub fn encode_delimited(families: &[pb::MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families {
        // Writing into a Vec cannot fail.
        let _ = f.encode_length_delimited(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample as (name, labels, value, histogram).
    type Flat = (String, Vec<(String, String)>, f64, Option<FloatHistogram>);

    fn lp(n: &str, v: &str) -> pb::LabelPair {
        pb::LabelPair {
            name: n.into(),
            value: v.into(),
        }
    }

    fn samples(body: &[u8], opts: ProtoOptions) -> Vec<Flat> {
        ProtoParser::new(body, opts)
            .filter_map(|e| match e.unwrap() {
                Entry::Sample(s) => Some((
                    s.name.into_owned(),
                    s.labels
                        .into_iter()
                        .map(|(a, b)| (a.into_owned(), b.into_owned()))
                        .collect(),
                    s.value,
                    s.histogram.map(|h| (*h).clone()),
                )),
                _ => None,
            })
            .collect()
    }

    fn rpc_family() -> pb::MetricFamily {
        crate::testsupport::native_histogram_family("rpc_durations_seconds", 10)
    }

    #[test]
    fn a_native_histogram_decodes_to_absolute_buckets_by_index() {
        let body = encode_delimited(&[rpc_family()]);
        let opts = ProtoOptions {
            native_histograms: true,
            classic_histograms: false,
        };
        let got = samples(&body, opts);
        assert_eq!(got.len(), 1);
        let (name, labels, _, h) = &got[0];
        assert_eq!(name, "rpc_durations_seconds");
        assert_eq!(labels, &vec![("svc".into(), "a".into())]);
        let h = h.as_ref().unwrap();
        assert_eq!(
            (h.schema, h.count, h.sum, h.zero_count),
            (3, 10.0, 5.0, 1.0)
        );
        // Deltas 2, +1, -2 → 2, 3, 1 at indexes -2, -1 and (after a gap of 3) 3.
        assert_eq!(
            h.positive.iter().map(|(i, c)| (*i, *c)).collect::<Vec<_>>(),
            vec![(-2, 2.0), (-1, 3.0), (3, 1.0)]
        );
        assert_eq!(h.negative.get(&0), Some(&3.0));
        assert_eq!(h.hint, CounterResetHint::Unknown);
    }

    #[test]
    fn classic_series_follow_the_native_histogram_when_asked_and_replace_it_when_off() {
        let body = encode_delimited(&[rpc_family()]);
        let both = samples(
            &body,
            ProtoOptions {
                native_histograms: true,
                classic_histograms: true,
            },
        );
        let names: Vec<String> = both
            .iter()
            .map(|(n, l, _, _)| {
                let le = l.iter().find(|(k, _)| k == "le").map(|(_, v)| v.as_str());
                format!("{n}{}", le.map(|v| format!("/{v}")).unwrap_or_default())
            })
            .collect();
        assert_eq!(
            names,
            [
                "rpc_durations_seconds",
                "rpc_durations_seconds_count",
                "rpc_durations_seconds_sum",
                "rpc_durations_seconds_bucket/0.5",
                "rpc_durations_seconds_bucket/1.0",
                "rpc_durations_seconds_bucket/+Inf"
            ]
        );
        // The added +Inf bucket holds the count.
        assert_eq!(both[5].2, 10.0);
        let classic_only = samples(&body, ProtoOptions::default());
        assert_eq!(classic_only.len(), 5);
        assert!(classic_only.iter().all(|s| s.3.is_none()));
    }

    #[test]
    fn summaries_counters_and_gauges_read_as_prometheus_orders_them() {
        let fams = vec![
            pb::MetricFamily {
                name: "s".into(),
                r#type: pb::MetricType::Summary as i32,
                metric: vec![pb::Metric {
                    summary: Some(pb::Summary {
                        sample_count: 3,
                        sample_sum: 1.5,
                        quantile: vec![
                            pb::Quantile {
                                quantile: 0.5,
                                value: 0.4,
                            },
                            pb::Quantile {
                                quantile: 1.0,
                                value: 0.9,
                            },
                        ],
                        start_timestamp: None,
                    }),
                    timestamp_ms: 1234,
                    ..Default::default()
                }],
                ..Default::default()
            },
            pb::MetricFamily {
                name: "c_total".into(),
                r#type: pb::MetricType::Counter as i32,
                metric: vec![pb::Metric {
                    counter: Some(pb::Counter {
                        value: 7.0,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ];
        let body = encode_delimited(&fams);
        let got = samples(&body, ProtoOptions::default());
        let flat: Vec<(String, f64)> = got
            .iter()
            .map(|(n, l, v, _)| {
                let q = l
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                (format!("{n}{{{q}}}"), *v)
            })
            .collect();
        assert_eq!(
            flat,
            vec![
                ("s_count{}".into(), 3.0),
                ("s_sum{}".into(), 1.5),
                ("s{quantile=0.5}".into(), 0.4),
                ("s{quantile=1.0}".into(), 0.9),
                ("c_total{}".into(), 7.0),
            ]
        );
        let ts: Vec<Option<i64>> = ProtoParser::new(&body, ProtoOptions::default())
            .filter_map(|e| match e.unwrap() {
                Entry::Sample(s) => Some(s.timestamp_ms),
                _ => None,
            })
            .collect();
        assert_eq!(
            ts,
            vec![Some(1234), Some(1234), Some(1234), Some(1234), None]
        );
    }

    #[test]
    fn hostile_bodies_are_errors_not_panics() {
        let good = encode_delimited(&[rpc_family()]);
        // A length prefix past the end, a truncated message, junk, an unknown type, spans that
        // promise more buckets than given, repeated label names.
        let mut long = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        long.extend_from_slice(b"abc");
        let mut bad_type = rpc_family();
        bad_type.r#type = 9;
        let mut bad_spans = rpc_family();
        if let Some(h) = bad_spans.metric[0].histogram.as_mut() {
            h.positive_span[0].length = 1000;
        }
        let mut bad_schema = rpc_family();
        if let Some(h) = bad_schema.metric[0].histogram.as_mut() {
            h.schema = -53;
        }
        let mut overfull = rpc_family();
        if let Some(h) = overfull.metric[0].histogram.as_mut() {
            h.positive_delta[2] += 1;
        }
        let mut negative = rpc_family();
        if let Some(h) = negative.metric[0].histogram.as_mut() {
            h.negative_delta[0] = -1;
            h.sample_count = 20;
        }
        let mut dup = rpc_family();
        dup.metric[0].label.push(lp("svc", "x"));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (long, "exceeds"),
            (good[..good.len() - 3].to_vec(), "exceeds"),
            (vec![0x05, 0xff, 0xff, 0xff, 0xff, 0xff], "family 1"),
            (encode_delimited(&[bad_type]), "unknown metric type"),
            (
                encode_delimited(&[bad_spans]),
                "spans require 1001 buckets, have 3",
            ),
            (encode_delimited(&[dup]), "not unique"),
            (encode_delimited(&[bad_schema]), "unknown schema"),
            (
                encode_delimited(&[overfull]),
                "11.000000 observations found in buckets, but the Count field is 10.000000",
            ),
            (encode_delimited(&[negative]), "negative count"),
        ];
        let opts = ProtoOptions {
            native_histograms: true,
            classic_histograms: false,
        };
        for (body, want) in cases {
            let err = ProtoParser::new(&body, opts)
                .find_map(|e| e.err())
                .unwrap_or_else(|| panic!("no error for {want}"));
            assert!(err.to_string().contains(want), "{err} lacks {want}");
        }
    }

    #[test]
    fn float_histograms_and_gauge_histograms_keep_their_counts_and_hint() {
        let mut f = rpc_family();
        f.r#type = pb::MetricType::GaugeHistogram as i32;
        if let Some(h) = f.metric[0].histogram.as_mut() {
            h.sample_count_float = 2.5;
            h.positive_delta.clear();
            h.positive_count = vec![0.5, 0.0, 1.5];
            h.negative_delta.clear();
            h.negative_count = vec![0.25];
        }
        let body = encode_delimited(&[f]);
        let got = samples(
            &body,
            ProtoOptions {
                native_histograms: true,
                classic_histograms: false,
            },
        );
        let h = got[0].3.as_ref().unwrap();
        assert_eq!(h.count, 2.5);
        assert_eq!(h.hint, CounterResetHint::Gauge);
        // The empty bucket at index -1 is left out.
        assert_eq!(
            h.positive.iter().map(|(i, c)| (*i, *c)).collect::<Vec<_>>(),
            vec![(-2, 0.5), (3, 1.5)]
        );
    }
}
