//! `histogram_quantile` and `histogram_fraction` over classic (`le`-labelled) bucket series, with
//! Prometheus's bucket coalescing, monotonicity repair and annotations, and over native
//! histograms (with `histogram_stddev`/`_stdvar`), as Prometheus 3 interpolates them.

use std::collections::HashMap;

use super::eval::Ev;
use super::functions::go_f;
use super::Sample;
use crate::model::histogram::{CounterResetHint, FloatHistogram, CUSTOM_BUCKETS_SCHEMA};
use crate::model::Labels;

const SMALL_DELTA: f64 = 1e-12;

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Prometheus's `BucketQuantile`; returns (value, forced monotonic).
pub(super) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().map(|b| b.0 != f64::INFINITY).unwrap_or(true) {
        return (f64::NAN, false);
    }
    // Coalesce buckets with the same bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    let mut forced = false;
    let mut prev = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA) {
            b.1 = prev;
            continue;
        }
        if curr < prev {
            b.1 = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    if merged.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let n = merged.len() - 1;
    let b = merged[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return (merged[n - 1].0, forced);
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return (merged[0].0, forced);
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

/// Prometheus's `BucketFraction`: the share of observations between `lower` and `upper`,
/// interpolating linearly inside buckets.
pub(super) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if buckets.is_empty() {
        return f64::NAN;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets[buckets.len() - 1].0 != f64::INFINITY {
        return f64::NAN;
    }
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    let count = merged[merged.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    // Positive-only buckets start at 0; otherwise the first bucket reaches down to -Inf.
    let mut lower_bound = if merged[0].0 <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, &(upper_bound, bcount)) in merged.iter().enumerate() {
        if i > 0 {
            lower_bound = merged[i - 1].0;
        }
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                return bcount;
            }
            rank + (bcount - rank) * (v - lower_bound) / (upper_bound - lower_bound)
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = bcount;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Groups bucket samples by their labels without `le` (the name is dropped from the result
/// later, so two bucket series that differ only by name collide there, as in Prometheus).
fn group_buckets(ev: &Ev<'_>, v: Vec<Sample>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in v {
        let le = s.metric.get("le").and_then(|l| l.parse::<f64>().ok());
        let Some(ub) = le else {
            ev.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                s.metric.get("le").unwrap_or(""),
                s.metric.metric_name()
            ));
            continue;
        };
        let key = without_le(&s.metric);
        match index.get(&key) {
            Some(i) => groups[*i].2.push((ub, s.f)),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, s.metric.metric_name().to_string(), vec![(ub, s.f)]));
            }
        }
    }
    groups
}

/// Evaluates `histogram_fraction(lower, upper, v)` for classic buckets.
pub(super) fn classic_fraction(
    ev: &Ev<'_>,
    lower: f64,
    upper: f64,
    v: Vec<Sample>,
    ts: i64,
) -> Vec<Sample> {
    group_buckets(ev, v)
        .into_iter()
        .map(|(metric, _, mut buckets)| Sample {
            h: None,
            metric,
            f: bucket_fraction(lower, upper, &mut buckets),
            t: ts,
            drop_name: true,
        })
        .collect()
}

/// Output labels, metric name (for annotations) and (upper bound, count) buckets.
type Group = (Labels, String, Vec<(f64, f64)>);

/// Evaluates `histogram_quantile(q, v)` for classic buckets.
pub(super) fn classic_quantile(ev: &Ev<'_>, q: f64, v: Vec<Sample>, ts: i64) -> Vec<Sample> {
    if !(0.0..=1.0).contains(&q) {
        ev.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            go_f(q)
        ));
    }
    let groups = group_buckets(ev, v);
    let mut out = Vec::new();
    for (metric, name, mut buckets) in groups {
        let (f, forced) = bucket_quantile(q, &mut buckets);
        if forced {
            ev.info(format!(
                "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {name:?}"
            ));
        }
        out.push(Sample {
            h: None,
            metric,
            f,
            t: ts,
            drop_name: true,
        });
    }
    out
}

/// A bucket series' labels without `le`: its classic histogram's identity.
pub(super) fn without_le(l: &Labels) -> Labels {
    let mut b = l.builder();
    b.del("le");
    b.labels()
}

/// A native histogram's non-empty buckets as (lower, upper, count), in the order of
/// Prometheus's `AllBucketIterator`: negative buckets from the lowest, the zero bucket, then
/// positive buckets.
fn native_buckets(h: &FloatHistogram) -> Vec<(f64, f64, f64)> {
    h.api_buckets()
        .into_iter()
        .map(|(_, lo, hi, c)| (lo, hi, c))
        .collect()
}

/// Annotation suffix naming the metric, as Prometheus's `maybeAddMetricName`.
fn for_metric(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" for metric name {name:?}")
    }
}

/// Prometheus's `HistogramQuantile` over a native histogram: the bucket holding the rank is
/// found from the side nearer to it, and interpolated exponentially inside exponential
/// buckets (linearly in the zero bucket and custom buckets).
pub(super) fn native_quantile(ev: &Ev<'_>, q: f64, h: &FloatHistogram, name: &str) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let custom = h.schema == CUSTOM_BUCKETS_SCHEMA;
    let mut buckets = native_buckets(h);
    let forward = h.sum.is_nan() || q < 0.5;
    let mut rank = if forward {
        q * h.count
    } else {
        buckets.reverse();
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut at = None;
    for (i, b) in buckets.iter().enumerate() {
        count += b.2;
        at = Some(i);
        if count >= rank {
            break;
        }
    }
    // No populated bucket at all (every observation NaN): Prometheus goes on with an empty
    // bucket, which falls short of the rank.
    let (mut lower, mut upper, bcount) = at.map(|i| buckets[i]).unwrap_or((0.0, 0.0, 0.0));
    if !custom && lower < 0.0 && upper > 0.0 {
        if h.negative.is_empty() && !h.positive.is_empty() {
            lower = 0.0;
        } else if h.positive.is_empty() && !h.negative.is_empty() {
            upper = 0.0;
        }
    } else if custom {
        if lower == f64::NEG_INFINITY {
            if upper <= 0.0 {
                return upper;
            }
            lower = 0.0;
        } else if upper == f64::INFINITY {
            return lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            ev.info(format!(
                "input to histogram_quantile has NaN observations, result is NaN{}",
                for_metric(name)
            ));
            return f64::NAN;
        }
        return upper;
    }
    if forward {
        rank -= count - bcount;
    } else {
        rank = count - rank;
    }
    if h.sum.is_nan() {
        let rest = at.map(|i| i + 1).unwrap_or(buckets.len());
        let total: f64 = count + buckets[rest..].iter().map(|b| b.2).sum::<f64>();
        if total < h.count {
            ev.info(format!(
                "input to histogram_quantile has NaN observations, result is skewed higher{}",
                for_metric(name)
            ));
        }
    }
    let fraction = rank / bcount;
    if custom || (lower <= 0.0 && upper >= 0.0) {
        return lower + (upper - lower) * fraction;
    }
    let log_lower = lower.abs().log2();
    let log_upper = upper.abs().log2();
    if lower > 0.0 {
        (log_lower + (log_upper - log_lower) * fraction).exp2()
    } else {
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
    }
}

/// Prometheus's `HistogramFraction` over a native histogram: the share of observations
/// between `lower` and `upper`, interpolating as [`native_quantile`] does.
pub(super) fn native_fraction(
    ev: &Ev<'_>,
    lower: f64,
    upper: f64,
    h: &FloatHistogram,
    name: &str,
) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let custom = h.schema == CUSTOM_BUCKETS_SCHEMA;
    let buckets = native_buckets(h);
    let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut seen = 0;
    for &(blo, bhi, bc) in &buckets {
        seen += 1;
        count += bc;
        let (mut blo, mut bhi) = (blo, bhi);
        let zero_bucket = blo <= 0.0 && bhi >= 0.0;
        if zero_bucket {
            if h.negative.is_empty() && !h.positive.is_empty() {
                blo = 0.0;
            } else if h.positive.is_empty() && !h.negative.is_empty() {
                bhi = 0.0;
            }
        }
        let below = |v: f64, linear: bool| -> f64 {
            if linear {
                if blo == f64::NEG_INFINITY {
                    return bc;
                }
                return rank + bc * (v - blo) / (bhi - blo);
            }
            let (ll, lu, lv) = (blo.abs().log2(), bhi.abs().log2(), v.abs().log2());
            let f = if v > 0.0 {
                (lv - ll) / (lu - ll)
            } else {
                1.0 - (lv - lu) / (ll - lu)
            };
            rank + bc * f
        };
        if !lower_set && blo >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && blo >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        let linear = custom || zero_bucket;
        if !lower_set && blo < lower && bhi > lower {
            lower_rank = below(lower, linear);
            lower_set = true;
        }
        if !upper_set && blo < upper && bhi > upper {
            upper_rank = below(upper, linear);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += bc;
    }
    if h.sum.is_nan() {
        count += buckets[seen..].iter().map(|b| b.2).sum::<f64>();
        if count < h.count {
            ev.info(format!(
                "input to histogram_fraction has NaN observations, which are excluded from all fractions{}",
                for_metric(name)
            ));
        }
    } else {
        count = h.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / h.count
}

/// Prometheus's `histogramVariance`: observations placed at each bucket's geometric mean (0
/// in the zero bucket, the arithmetic mean in custom buckets), Kahan-summed.
pub(super) fn native_variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let custom = h.schema == CUSTOM_BUCKETS_SCHEMA;
    let (mut variance, mut c) = (0.0, 0.0);
    for (lo, hi, count) in native_buckets(h) {
        let val = if custom {
            (hi + lo) / 2.0
        } else if lo <= 0.0 && hi >= 0.0 {
            0.0
        } else {
            let v = (hi * lo).sqrt();
            if hi < 0.0 {
                -v
            } else {
                v
            }
        };
        let delta = val - mean;
        (variance, c) = super::functions::kahan_inc(count * delta * delta, variance, c);
    }
    (variance + c) / h.count
}

/// Prometheus's `DetectReset` (see [`FloatHistogram::detect_reset`]).
pub(super) fn detect_reset(cur: &FloatHistogram, prev: &FloatHistogram) -> bool {
    cur.detect_reset(prev)
}

/// Prometheus's `histogramRate` before extrapolation: the last histogram less the first, at
/// the lowest schema in the window, with each counter reset's previous histogram added back;
/// `None` (with Prometheus's warning) when exponential and custom buckets mix.
pub(super) fn histogram_increase(
    ev: &Ev<'_>,
    points: &[&FloatHistogram],
    is_counter: bool,
    name: &str,
) -> Option<FloatHistogram> {
    let custom = |h: &FloatHistogram| h.schema == CUSTOM_BUCKETS_SCHEMA;
    let mut prev: FloatHistogram = points[0].clone();
    let last = points[points.len() - 1];
    if is_counter && (prev.hint == CounterResetHint::Gauge || last.hint == CounterResetHint::Gauge)
    {
        ev.warn(format!(
            "this native histogram metric is not a counter: {name:?}"
        ));
    }
    if is_counter && detect_reset(points[1], &prev) {
        prev = FloatHistogram {
            schema: points[1].schema,
            custom_values: points[1].custom_values.clone(),
            ..FloatHistogram::default()
        };
    }
    if points.iter().skip(1).any(|h| custom(h) != custom(&prev)) {
        ev.warn(format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
        ));
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    for h in &points[1..points.len() - 1] {
        if is_counter {
            if h.hint == CounterResetHint::Gauge {
                ev.warn(format!(
                    "this native histogram metric is not a counter: {name:?}"
                ));
            }
            min_schema = min_schema.min(h.schema);
        }
    }
    let at = |h: &FloatHistogram| {
        let mut h = h.clone();
        h.reduce_resolution(min_schema);
        h
    };
    let mut out = at(last);
    // Mixed bucket kinds were refused above, so these cannot fail; custom bounds that differ
    // are intersected, with Prometheus's info annotation.
    let reconciled = |ev: &Ev<'_>, r: Result<crate::model::histogram_ops::OpNotes, _>, what| {
        if matches!(r, Ok(n) if n.custom_bounds_reconciled) {
            ev.info(format!(
                "mismatched custom buckets were reconciled during {what}"
            ));
        }
    };
    reconciled(ev, out.try_sub(&at(&prev)), "subtraction");
    if is_counter {
        let mut before = prev;
        for cur in &points[1..] {
            if detect_reset(cur, &before) {
                reconciled(ev, out.try_add(&at(&before)), "addition");
            }
            before = (*cur).clone();
        }
    } else if points[0].hint != CounterResetHint::Gauge || last.hint != CounterResetHint::Gauge {
        ev.warn(format!(
            "this native histogram metric is not a gauge: {name:?}"
        ));
    }
    out.hint = CounterResetHint::Gauge;
    out.compact();
    Some(out)
}
