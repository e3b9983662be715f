//! Between the store's types and the wire's: native histograms (float form out; integer or
//! float form in) and metadata type names.

use std::collections::BTreeMap;

use super::proto::{BucketSpan, Histogram};
use crate::model::histogram::{CounterResetHint, FloatHistogram};

fn spans_of(b: &BTreeMap<i32, f64>) -> (Vec<BucketSpan>, Vec<f64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut counts = Vec::with_capacity(b.len());
    let mut prev: Option<i32> = None;
    for (&i, &c) in b {
        match prev {
            Some(p) if i == p + 1 => {
                if let Some(s) = spans.last_mut() {
                    s.length += 1;
                }
            }
            Some(p) => spans.push(BucketSpan {
                offset: i - p - 1,
                length: 1,
            }),
            None => spans.push(BucketSpan {
                offset: i,
                length: 1,
            }),
        }
        counts.push(c);
        prev = Some(i);
    }
    (spans, counts)
}

/// The wire form (float counts) of a stored histogram sample.
pub fn to_proto(h: &FloatHistogram, t: i64) -> Histogram {
    let (positive_spans, positive_counts) = spans_of(&h.positive);
    let (negative_spans, negative_counts) = spans_of(&h.negative);
    Histogram {
        count_float: Some(h.count),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count_float: Some(h.zero_count),
        negative_spans,
        negative_counts,
        positive_spans,
        positive_counts,
        reset_hint: match h.hint {
            CounterResetHint::Unknown => 0,
            CounterResetHint::Reset => 1,
            CounterResetHint::NotReset => 2,
            CounterResetHint::Gauge => 3,
        },
        timestamp: t,
        custom_values: h.custom_values.clone(),
        ..Default::default()
    }
}

/// Why a received histogram was refused.
#[derive(Debug, thiserror::Error)]
#[error("histogram: {0}")]
pub struct HistogramError(String);

/// Most buckets one received histogram may carry (a bound on what a push can allocate).
const MAX_BUCKETS: u64 = 1 << 16;

fn buckets_of(
    spans: &[BucketSpan],
    deltas: &[i64],
    counts: &[f64],
) -> Result<BTreeMap<i32, f64>, HistogramError> {
    let total: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    if total > MAX_BUCKETS {
        return Err(HistogramError(format!(
            "{total} buckets exceed {MAX_BUCKETS}"
        )));
    }
    let float = !counts.is_empty();
    let n = if float { counts.len() } else { deltas.len() };
    if n as u64 != total {
        return Err(HistogramError(format!(
            "spans describe {total} buckets but {n} counts were sent"
        )));
    }
    let mut out = BTreeMap::new();
    let mut idx: i64 = 0;
    let mut k = 0usize;
    let mut acc: i64 = 0;
    // The first span's offset is its first index; a later one's counts from one past the
    // previous span's end, which is where `idx` stands.
    for s in spans {
        idx += i64::from(s.offset);
        for _ in 0..s.length {
            let c = if float {
                counts[k]
            } else {
                acc = acc.wrapping_add(deltas[k]);
                if acc < 0 {
                    return Err(HistogramError("negative bucket count".into()));
                }
                acc as f64
            };
            let i = i32::try_from(idx)
                .map_err(|_| HistogramError("bucket index out of range".into()))?;
            if c != 0.0 || float {
                out.insert(i, c);
            }
            k += 1;
            idx += 1;
        }
    }
    Ok(out)
}

/// A received histogram (integer or float form) as the store keeps it.
pub fn from_proto(h: &Histogram) -> Result<FloatHistogram, HistogramError> {
    if !(-4..=8).contains(&h.schema) && h.schema != crate::model::histogram::CUSTOM_BUCKETS_SCHEMA {
        return Err(HistogramError(format!("unknown schema {}", h.schema)));
    }
    let count = match (h.count_int, h.count_float) {
        (_, Some(f)) => f,
        (Some(i), None) => i as f64,
        (None, None) => 0.0,
    };
    let zero_count = match (h.zero_count_int, h.zero_count_float) {
        (_, Some(f)) => f,
        (Some(i), None) => i as f64,
        (None, None) => 0.0,
    };
    Ok(FloatHistogram {
        schema: h.schema,
        count,
        sum: h.sum,
        zero_count,
        zero_threshold: h.zero_threshold,
        custom_values: h.custom_values.clone(),
        positive: buckets_of(&h.positive_spans, &h.positive_deltas, &h.positive_counts)?,
        negative: buckets_of(&h.negative_spans, &h.negative_deltas, &h.negative_counts)?,
        hint: match h.reset_hint {
            1 => CounterResetHint::Reset,
            2 => CounterResetHint::NotReset,
            3 => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        },
    })
}

/// The metadata type number (the same in 1.0 and 2.0) of a type name.
pub fn type_number(kind: &str) -> i32 {
    match kind {
        "counter" => 1,
        "gauge" => 2,
        "histogram" => 3,
        "gaugehistogram" => 4,
        "summary" => 5,
        "info" => 6,
        "stateset" => 7,
        _ => 0,
    }
}

/// The metric family a series of type `kind` belongs to, as OpenMetrics names families:
/// `x_total` of a counter is family `x`, `x_bucket`/`x_count`/`x_sum` of a histogram are `x`.
/// 2.0 carries metadata per series, without the family's name, so a receiver derives it.
pub fn family_name<'a>(series: &'a str, kind: &str) -> &'a str {
    let suffixes: &[&str] = match kind {
        // `_created` is left alone: `x_created` is as often a family of its own (a counter of
        // created things) as a counter's created-time series.
        "counter" => &["_total"],
        "histogram" | "gaugehistogram" => &["_bucket", "_count", "_sum", "_gcount", "_gsum"],
        "summary" => &["_count", "_sum"],
        "info" => &["_info"],
        _ => &[],
    };
    suffixes
        .iter()
        .find_map(|s| series.strip_suffix(s).filter(|b| !b.is_empty()))
        .unwrap_or(series)
}

/// The type name of a metadata type number.
pub fn type_name(n: i32) -> &'static str {
    match n {
        1 => "counter",
        2 => "gauge",
        3 => "histogram",
        4 => "gaugehistogram",
        5 => "summary",
        6 => "info",
        7 => "stateset",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_with_gaps() {
        let mut h = FloatHistogram {
            schema: 1,
            count: 10.0,
            sum: 3.5,
            zero_count: 1.0,
            zero_threshold: 0.001,
            hint: CounterResetHint::NotReset,
            ..Default::default()
        };
        h.positive.extend([(-2, 1.0), (-1, 2.0), (3, 4.0)]);
        h.negative.insert(0, 2.0);
        let p = to_proto(&h, 1000);
        assert_eq!(
            p.positive_spans,
            vec![
                BucketSpan {
                    offset: -2,
                    length: 2
                },
                BucketSpan {
                    offset: 3,
                    length: 1
                }
            ]
        );
        assert_eq!(from_proto(&p).unwrap(), h);
    }

    #[test]
    fn family_names_follow_openmetrics() {
        assert_eq!(
            family_name("http_requests_total", "counter"),
            "http_requests"
        );
        assert_eq!(
            family_name("rpc_seconds_bucket", "histogram"),
            "rpc_seconds"
        );
        assert_eq!(family_name("rpc_seconds_sum", "summary"), "rpc_seconds");
        assert_eq!(family_name("temperature", "gauge"), "temperature");
        assert_eq!(family_name("_total", "counter"), "_total");
        assert_eq!(family_name("series_created", "counter"), "series_created");
    }

    #[test]
    fn integer_histograms_decode_from_deltas() {
        let p = Histogram {
            count_int: Some(6),
            zero_count_int: Some(1),
            schema: 0,
            positive_spans: vec![
                BucketSpan {
                    offset: 0,
                    length: 2,
                },
                BucketSpan {
                    offset: 1,
                    length: 1,
                },
            ],
            positive_deltas: vec![2, -1, 1],
            ..Default::default()
        };
        let h = from_proto(&p).unwrap();
        assert_eq!(h.positive, BTreeMap::from([(0, 2.0), (1, 1.0), (3, 2.0)]));
        assert_eq!(h.count, 6.0);
        let bad = Histogram {
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: u32::MAX,
            }],
            ..Default::default()
        };
        assert!(from_proto(&bad).is_err());
    }
}
