//! Classic histograms (`X_bucket{le=...}`, `X_count`, `X_sum` float series) converted into
//! native histograms with custom buckets (NHCB, schema -53) stored under the base name `X`,
//! as Prometheus's `convertnhcb` package does for `load_with_nhcb` and
//! `convert_classic_histograms_to_nhcb`.
//!
//! Pure data conversion; storing the result is the caller's business.

use std::collections::HashMap;

use super::histogram::{FloatHistogram, CUSTOM_BUCKETS_SCHEMA};
use super::Labels;

/// Why a classic histogram does not convert.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NhcbError {
    /// A bucket with a negative count.
    #[error("bucket count must be non-negative: le={le}, count={count}")]
    NegativeBucketCount {
        /// The bucket's bound.
        le: f64,
        /// Its count.
        count: f64,
    },
    /// `le` is NaN.
    #[error("bucket boundary must not be NaN")]
    NanBucket,
    /// `_count` is negative.
    #[error("count must be non-negative: count={0}")]
    NegativeCount(f64),
    /// Cumulative counts fall from one bucket to the next.
    #[error("count is not cumulative: {0} < {1}")]
    NotCumulative(f64, f64),
    /// `_count` differs from the `+Inf` bucket.
    #[error("count mismatch: count={count} != le=+Inf count={inf}")]
    CountMismatch {
        /// `_count`.
        count: f64,
        /// The `+Inf` bucket.
        inf: f64,
    },
}

/// One classic histogram at one timestamp, collected series by series (Prometheus's
/// `TempHistogram`).
#[derive(Clone, Debug, Default)]
pub struct TempHistogram {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
    err: Option<NhcbError>,
}

impl TempHistogram {
    /// Sets the cumulative count of the bucket ending at `le`; a repeated bound is ignored.
    pub fn set_bucket(&mut self, le: f64, count: f64) {
        if self.err.is_some() {
            return;
        }
        if le.is_nan() {
            self.err = Some(NhcbError::NanBucket);
            return;
        }
        if count < 0.0 {
            self.err = Some(NhcbError::NegativeBucketCount { le, count });
            return;
        }
        let i = self.buckets.partition_point(|b| b.0 < le);
        if self.buckets.get(i).is_some_and(|b| b.0 == le) {
            return;
        }
        if let Some(prev) = i.checked_sub(1).map(|k| self.buckets[k].1) {
            if count < prev {
                self.err = Some(NhcbError::NotCumulative(count, prev));
                return;
            }
        }
        if let Some(next) = self.buckets.get(i).map(|b| b.1) {
            if count > next {
                self.err = Some(NhcbError::NotCumulative(next, count));
                return;
            }
        }
        self.buckets.insert(i, (le, count));
    }

    /// Sets `_count`.
    pub fn set_count(&mut self, count: f64) {
        if self.err.is_some() {
            return;
        }
        if count < 0.0 {
            self.err = Some(NhcbError::NegativeCount(count));
            return;
        }
        self.count = Some(count);
    }

    /// Sets `_sum`.
    pub fn set_sum(&mut self, sum: f64) {
        if self.err.is_none() {
            self.sum = sum;
        }
    }

    /// The native histogram: `_count` (else the highest bucket's count) as the count, a
    /// `+Inf` bucket added when missing.
    pub fn convert(mut self) -> Result<FloatHistogram, NhcbError> {
        if let Some(e) = self.err {
            return Err(e);
        }
        let count = match (self.count, self.buckets.last()) {
            (Some(c), _) => c,
            (None, Some(b)) => b.1,
            (None, None) => 0.0,
        };
        if self.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
            self.buckets.push((f64::INFINITY, count));
        }
        let mut h = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count,
            sum: self.sum,
            ..FloatHistogram::default()
        };
        let mut prev = 0.0;
        for (i, (le, c)) in self.buckets.iter().enumerate() {
            if *le != f64::INFINITY {
                h.custom_values.push(*le);
            }
            if c - prev != 0.0 {
                h.positive.insert(i as i32, c - prev);
            }
            prev = *c;
        }
        if count != prev {
            return Err(NhcbError::CountMismatch { count, inf: prev });
        }
        Ok(h)
    }
}

/// What a classic histogram series contributes, by its name's suffix.
enum Part {
    Bucket(f64),
    Count,
    Sum,
}

/// Converted series: base labels with their histograms by time.
pub type Converted = Vec<(Labels, Vec<(i64, FloatHistogram)>)>;

/// Converts the classic histograms among `series` (labels with float samples) into custom
/// bucket histograms per timestamp, keyed by the base series (name without the suffix, `le`
/// removed). A series group that does not convert at some timestamp is reported with the
/// error and left out whole.
pub fn convert_series<'a>(
    series: impl IntoIterator<Item = (&'a Labels, &'a [(i64, f64)])>,
) -> (Converted, Vec<(Labels, NhcbError)>) {
    let mut groups: HashMap<Labels, HashMap<i64, TempHistogram>> = HashMap::new();
    let mut order: Vec<Labels> = Vec::new();
    for (labels, samples) in series {
        let name = labels.metric_name();
        let (part, base) = if let Some(b) = name.strip_suffix("_bucket") {
            let Some(le) = labels.get("le").and_then(|v| v.trim().parse::<f64>().ok()) else {
                continue;
            };
            if le.is_nan() {
                continue;
            }
            (Part::Bucket(le), b)
        } else if let Some(b) = name.strip_suffix("_count") {
            (Part::Count, b)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (Part::Sum, b)
        } else {
            continue;
        };
        let mut lb = labels.builder();
        lb.set(super::METRIC_NAME.to_string(), base.to_string())
            .del("le");
        let key = lb.labels();
        let by_ts = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            HashMap::new()
        });
        for (t, v) in samples {
            let h = by_ts.entry(*t).or_default();
            match part {
                Part::Bucket(le) => h.set_bucket(le, *v),
                Part::Count => h.set_count(*v),
                Part::Sum => h.set_sum(*v),
            }
        }
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    'groups: for key in order {
        let Some(by_ts) = groups.remove(&key) else {
            continue;
        };
        let mut ts: Vec<(i64, TempHistogram)> = by_ts.into_iter().collect();
        ts.sort_by_key(|x| x.0);
        let mut hs = Vec::with_capacity(ts.len());
        for (t, h) in ts {
            match h.convert() {
                Ok(h) => hs.push((t, h)),
                Err(e) => {
                    errors.push((key, e));
                    continue 'groups;
                }
            }
        }
        out.push((key, hs));
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets_become_custom_buckets() {
        let mut t = TempHistogram::default();
        t.set_bucket(f64::INFINITY, 5.0);
        t.set_bucket(0.1, 2.0);
        t.set_bucket(1.0, 4.0);
        t.set_sum(7.5);
        let h = t.convert().expect("valid");
        assert_eq!(h.custom_values, vec![0.1, 1.0]);
        assert_eq!(h.count, 5.0);
        assert_eq!(h.sum, 7.5);
        assert_eq!(
            h.positive.into_iter().collect::<Vec<_>>(),
            vec![(0, 2.0), (1, 2.0), (2, 1.0)]
        );
    }

    #[test]
    fn count_must_match_the_inf_bucket() {
        let mut t = TempHistogram::default();
        t.set_bucket(1.0, 4.0);
        t.set_bucket(f64::INFINITY, 5.0);
        t.set_count(6.0);
        assert!(matches!(t.convert(), Err(NhcbError::CountMismatch { .. })));
    }

    #[test]
    fn falling_counts_are_refused() {
        let mut t = TempHistogram::default();
        t.set_bucket(1.0, 4.0);
        t.set_bucket(2.0, 3.0);
        assert!(matches!(t.convert(), Err(NhcbError::NotCumulative(..))));
    }

    #[test]
    fn series_group_by_base_name() {
        let b1 = Labels::from_pairs([("__name__", "x_bucket"), ("le", "1"), ("job", "a")]);
        let b2 = Labels::from_pairs([("__name__", "x_bucket"), ("le", "+Inf"), ("job", "a")]);
        let c = Labels::from_pairs([("__name__", "x_count"), ("job", "a")]);
        let other = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let s1 = [(0, 1.0), (10, 2.0)];
        let s2 = [(0, 3.0), (10, 4.0)];
        let sc = [(0, 3.0), (10, 4.0)];
        let (out, errs) = convert_series([
            (&b1, &s1[..]),
            (&b2, &s2[..]),
            (&c, &sc[..]),
            (&other, &s1[..]),
        ]);
        assert!(errs.is_empty());
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].0,
            Labels::from_pairs([("__name__", "x"), ("job", "a")])
        );
        assert_eq!(out[0].1.len(), 2);
        assert_eq!(out[0].1[1].1.count, 4.0);
    }
}
