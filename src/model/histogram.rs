//! Native (float) histograms: the data model, the `{{...}}` notation of Prometheus's PromQL
//! test scripts and rule unit tests (parse and canonical rendering), and bucket-wise
//! arithmetic for the notation's `+`/`-` expansions.
//!
//! Buckets are kept as absolute counts by bucket index per side (a `BTreeMap`), which makes
//! arithmetic and compaction simple; spans are derived when rendering. Nothing here touches
//! storage or PromQL evaluation.

use std::collections::BTreeMap;
use std::fmt;

#[path = "histogram_bounds.rs"]
mod bounds;

/// `x · 2^e` without overflowing the power on the way (Go's `math.Ldexp`).
fn ldexp(mut x: f64, e: i64) -> f64 {
    let mut e = e.clamp(-3000, 3000) as i32;
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e)
}

/// What a histogram sample says about counter resets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CounterResetHint {
    /// Not known.
    #[default]
    Unknown,
    /// A counter reset happened before this sample.
    Reset,
    /// No counter reset since the previous sample.
    NotReset,
    /// A gauge histogram (resets do not apply).
    Gauge,
}

impl CounterResetHint {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unknown" => Self::Unknown,
            "reset" => Self::Reset,
            "not_reset" => Self::NotReset,
            "gauge" => Self::Gauge,
            _ => return None,
        })
    }

    fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Reset => "reset",
            Self::NotReset => "not_reset",
            Self::Gauge => "gauge",
        }
    }
}

/// Schema number of histograms with custom bucket bounds.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Finest exponential schema stored (bucket growth factor 2^(2^-8)).
pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;

/// Coarsest exponential schema (growth factor 2^16).
pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;

/// A float histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FloatHistogram {
    /// Resolution (-4..8) or [`CUSTOM_BUCKETS_SCHEMA`].
    pub schema: i32,
    /// Observations, including the zero bucket and NaNs.
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Upper bounds of custom buckets (schema -53).
    pub custom_values: Vec<f64>,
    /// Positive buckets: index → absolute count.
    pub positive: BTreeMap<i32, f64>,
    /// Negative buckets: index → absolute count.
    pub negative: BTreeMap<i32, f64>,
    /// Counter-reset hint.
    pub hint: CounterResetHint,
}

/// Why a `{{...}}` notation could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("histogram {text:?}: {what}")]
pub struct NotationError {
    /// The notation.
    pub text: String,
    /// What is wrong.
    pub what: String,
}

fn num(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().trim_start_matches('+') {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

impl FloatHistogram {
    /// Parses `{{schema:0 sum:5 count:4 buckets:[1 2 1] ...}}` (the braces are optional).
    pub fn parse(text: &str) -> Result<FloatHistogram, NotationError> {
        let err = |what: String| NotationError {
            text: text.to_string(),
            what,
        };
        let inner = text
            .trim()
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .unwrap_or(text.trim());
        // Tokens: `key:value` or `key:[v v v]`.
        let mut h = FloatHistogram::default();
        let (mut buckets, mut n_buckets) = (Vec::new(), Vec::new());
        let (mut offset, mut n_offset) = (0i32, 0i32);
        let mut rest = inner.trim();
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once(':')
                .ok_or_else(|| err(format!("expected key:value at {rest:?}")))?;
            let key = key.trim();
            let after = after.trim_start();
            let (value, next) = if let Some(list) = after.strip_prefix('[') {
                let end = list.find(']').ok_or_else(|| err("unclosed [".into()))?;
                (&list[..end], list[end + 1..].trim_start())
            } else {
                match after.find(char::is_whitespace) {
                    Some(i) => (&after[..i], after[i..].trim_start()),
                    None => (after, ""),
                }
            };
            let list = || -> Result<Vec<f64>, NotationError> {
                value
                    .split_whitespace()
                    .map(|v| num(v).ok_or_else(|| err(format!("bad number {v:?} in {key}"))))
                    .collect()
            };
            let float = || num(value).ok_or_else(|| err(format!("bad number {value:?} for {key}")));
            let int = || {
                value
                    .parse::<i32>()
                    .map_err(|_| err(format!("bad integer {value:?} for {key}")))
            };
            match key {
                "schema" => h.schema = int()?,
                "sum" => h.sum = float()?,
                "count" => h.count = float()?,
                "z_bucket" => h.zero_count = float()?,
                "z_bucket_w" => h.zero_threshold = float()?,
                "buckets" => buckets = list()?,
                "n_buckets" => n_buckets = list()?,
                "offset" => offset = int()?,
                "n_offset" => n_offset = int()?,
                "custom_values" => h.custom_values = list()?,
                "counter_reset_hint" => {
                    h.hint = CounterResetHint::parse(value)
                        .ok_or_else(|| err(format!("bad counter_reset_hint {value:?}")))?
                }
                other => return Err(err(format!("unknown key {other:?}"))),
            }
            rest = next;
        }
        for (i, c) in buckets.into_iter().enumerate() {
            h.positive.insert(offset + i as i32, c);
        }
        for (i, c) in n_buckets.into_iter().enumerate() {
            h.negative.insert(n_offset + i as i32, c);
        }
        Ok(h)
    }

    /// Merges buckets down to the coarser exponential `target` schema (each bucket of the
    /// target covers 2^(schema − target) of the current ones), as Prometheus's
    /// `ReduceResolution`; custom-bucket histograms and finer targets are left alone.
    pub fn reduce_resolution(&mut self, target: i32) {
        if self.schema == CUSTOM_BUCKETS_SCHEMA || target >= self.schema {
            return;
        }
        let delta = (i64::from(self.schema) - i64::from(target)).min(31) as u32;
        let merge = |m: &BTreeMap<i32, f64>| {
            let mut out = BTreeMap::new();
            for (i, c) in m {
                // Bucket i covers (base^(i-1), base^i]; `>>` floors, also below zero.
                *out.entry(((i - 1) >> delta) + 1).or_insert(0.0) += c;
            }
            out
        };
        self.positive = merge(&self.positive);
        self.negative = merge(&self.negative);
        self.schema = target;
    }

    /// Every count and the sum multiplied by `f` (Prometheus's `Mul`).
    pub fn scale(&mut self, f: f64) {
        self.count *= f;
        self.sum *= f;
        self.zero_count *= f;
        for v in self.positive.values_mut().chain(self.negative.values_mut()) {
            *v *= f;
        }
    }

    /// Drops empty buckets (Prometheus's `Compact(0)`).
    pub fn compact(&mut self) {
        self.positive.retain(|_, v| *v != 0.0);
        self.negative.retain(|_, v| *v != 0.0);
    }

    /// One contiguous run of buckets per side, empty buckets at either end dropped: (offset,
    /// counts).
    fn run(side: &BTreeMap<i32, f64>) -> (i32, Vec<f64>) {
        let used: Vec<(&i32, &f64)> = side.iter().filter(|(_, v)| **v != 0.0).collect();
        let (Some(first), Some(last)) = (used.first(), used.last()) else {
            return (0, Vec::new());
        };
        let (a, b) = (*first.0, *last.0);
        (
            a,
            (a..=b)
                .map(|i| side.get(&i).copied().unwrap_or(0.0))
                .collect(),
        )
    }

    /// Whether two histograms are the same after compaction (floats compared with `eq`).
    pub fn equals(&self, o: &FloatHistogram, eq: impl Fn(f64, f64) -> bool) -> bool {
        let (pa, pb) = (Self::run(&self.positive), Self::run(&o.positive));
        let (na, nb) = (Self::run(&self.negative), Self::run(&o.negative));
        let lists =
            |x: &[f64], y: &[f64]| x.len() == y.len() && x.iter().zip(y).all(|(a, b)| eq(*a, *b));
        self.schema == o.schema
            && eq(self.count, o.count)
            && eq(self.sum, o.sum)
            && eq(self.zero_count, o.zero_count)
            && self.zero_threshold == o.zero_threshold
            && self.custom_values == o.custom_values
            && pa.0 == pb.0
            && lists(&pa.1, &pb.1)
            && na.0 == nb.0
            && lists(&na.1, &nb.1)
    }
}

impl FloatHistogram {
    /// Upper bound of exponential bucket `i` at this histogram's schema.
    pub(crate) fn exponential_bound(&self, i: i32) -> f64 {
        self.bound(i)
    }

    /// Upper bound of exponential bucket `i`, computed as Prometheus's
    /// `getBoundExponential` does (a table of fractions and an exact power of two), so the
    /// API prints the very same digits; the last finite bucket ends at `f64::MAX`.
    fn bound(&self, i: i32) -> f64 {
        let schema = self.schema;
        if schema < 0 {
            let exp = i64::from(i) << (-schema).min(8);
            if exp == 1024 {
                return f64::MAX;
            }
            return ldexp(1.0, exp);
        }
        let Some(table) = bounds::EXPONENTIAL_BOUNDS.get(schema as usize) else {
            return (f64::from(i) * (-f64::from(schema)).exp2()).exp2();
        };
        let frac = table[(i & ((1 << schema) - 1)) as usize];
        let exp = i64::from(i >> schema) + 1;
        if frac == 0.5 && exp == 1025 {
            return f64::MAX;
        }
        ldexp(frac, exp)
    }

    /// Non-empty buckets as Prometheus's API lists them: (boundary rule, lower, upper,
    /// count), negative buckets first, then the zero bucket, then positive buckets. Rules:
    /// 0 = (lower, upper], 1 = [lower, upper), 3 = [lower, upper].
    pub fn api_buckets(&self) -> Vec<(u8, f64, f64, f64)> {
        let mut out = Vec::new();
        if self.schema == CUSTOM_BUCKETS_SCHEMA {
            for (i, c) in &self.positive {
                if *c == 0.0 || *i < 0 {
                    continue;
                }
                let i = *i as usize;
                let lower = if i == 0 {
                    f64::NEG_INFINITY
                } else {
                    self.custom_values
                        .get(i - 1)
                        .copied()
                        .unwrap_or(f64::INFINITY)
                };
                let upper = self.custom_values.get(i).copied().unwrap_or(f64::INFINITY);
                out.push((0, lower, upper, *c));
            }
            return out;
        }
        for (i, c) in self.negative.iter().rev() {
            if *c != 0.0 {
                out.push((1, -self.bound(*i), -self.bound(*i - 1), *c));
            }
        }
        if self.zero_count != 0.0 {
            out.push((
                3,
                -self.zero_threshold,
                self.zero_threshold,
                self.zero_count,
            ));
        }
        for (i, c) in &self.positive {
            if *c != 0.0 {
                out.push((0, self.bound(*i - 1), self.bound(*i), *c));
            }
        }
        out
    }
}

/// The hint a later sample of an expansion carries once stored: gauges stay gauges, counter
/// histograms read back as "not reset" within a chunk, as from Prometheus's TSDB.
fn stored_hint(h: CounterResetHint) -> CounterResetHint {
    match h {
        CounterResetHint::Gauge => CounterResetHint::Gauge,
        _ => CounterResetHint::NotReset,
    }
}

/// Expands a value sequence of histograms as the test notations write it: `{{A}}`,
/// `{{A}}xN` (N+1 copies), `{{A}}+{{B}}xN` / `{{A}}-{{B}}xN` (A, A±B, A±2B, …), `_` and `_xN`
/// (gaps). Samples made by an expansion after its first carry the `not_reset` hint, as
/// Prometheus's loader sets it.
pub fn expand_sequence(text: &str) -> Result<Vec<Option<FloatHistogram>>, NotationError> {
    let err = |what: String| NotationError {
        text: text.to_string(),
        what,
    };
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    let literal = |r: &str| -> Result<(FloatHistogram, usize), NotationError> {
        let end = r.find("}}").ok_or_else(|| err("unclosed {{".into()))?;
        Ok((FloatHistogram::parse(&r[..end + 2])?, end + 2))
    };
    let count = |r: &str| -> (Option<usize>, usize) {
        let Some(d) = r.strip_prefix('x') else {
            return (None, 0);
        };
        let n: String = d.chars().take_while(|c| c.is_ascii_digit()).collect();
        (n.parse().ok(), 1 + n.len())
    };
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('_') {
            let (n, used) = count(r);
            out.extend(std::iter::repeat_n(None, n.unwrap_or(1)));
            rest = r[used..].trim_start();
            continue;
        }
        if !rest.starts_with("{{") {
            return Err(err(format!("expected {{{{...}}}} or _ at {rest:?}")));
        }
        let (a, used) = literal(rest)?;
        let r = &rest[used..];
        if let (Some(n), used) = count(r) {
            out.push(Some(a.clone()));
            let mut b = a;
            b.hint = stored_hint(b.hint);
            out.extend(std::iter::repeat_n(Some(b), n));
            rest = r[used..].trim_start();
        } else if let Some(op) = r.chars().next().filter(|c| *c == '+' || *c == '-') {
            let (d, used2) = literal(&r[1..])?;
            let (n, used3) = count(&r[1 + used2..]);
            let n = n.ok_or_else(|| err("an expansion needs xN".into()))?;
            let mut cur = a;
            out.push(Some(cur.clone()));
            for _ in 0..n {
                // As Prometheus's `Add`/`Sub`: the coarser schema, reconciled zero buckets.
                let r = if op == '+' {
                    cur.try_add(&d)
                } else {
                    cur.try_sub(&d)
                };
                r.map_err(|e| err(e.to_string()))?;
                cur.hint = stored_hint(cur.hint);
                out.push(Some(cur.clone()));
            }
            rest = r[1 + used2 + used3..].trim_start();
        } else {
            out.push(Some(a));
            rest = r.trim_start();
        }
    }
    Ok(out)
}

fn g(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

impl fmt::Display for FloatHistogram {
    /// The canonical notation promtool compares: keys in a fixed order, one run of buckets
    /// per side, zero fields and an `unknown` hint left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.schema != 0 {
            parts.push(format!("schema:{}", self.schema));
        }
        if self.count != 0.0 {
            parts.push(format!("count:{}", g(self.count)));
        }
        if self.sum != 0.0 {
            parts.push(format!("sum:{}", g(self.sum)));
        }
        if self.zero_count != 0.0 {
            parts.push(format!("z_bucket:{}", g(self.zero_count)));
        }
        if self.zero_threshold != 0.0 {
            parts.push(format!("z_bucket_w:{}", g(self.zero_threshold)));
        }
        let list = |v: &[f64]| v.iter().map(|x| g(*x)).collect::<Vec<_>>().join(" ");
        if !self.custom_values.is_empty() {
            parts.push(format!("custom_values:[{}]", list(&self.custom_values)));
        }
        if self.hint != CounterResetHint::Unknown {
            parts.push(format!("counter_reset_hint:{}", self.hint.as_str()));
        }
        let (po, pb) = Self::run(&self.positive);
        if !pb.is_empty() {
            if po != 0 {
                parts.push(format!("offset:{po}"));
            }
            parts.push(format!("buckets:[{}]", list(&pb)));
        }
        let (no, nb) = Self::run(&self.negative);
        if !nb.is_empty() {
            if no != 0 {
                parts.push(format!("n_offset:{no}"));
            }
            parts.push(format!("n_buckets:[{}]", list(&nb)));
        }
        write!(f, "{{{{{}}}}}", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bounds are Prometheus's to the last digit (its table, not `powf`), and the last finite
    /// bucket ends at `f64::MAX` rather than +Inf.
    #[test]
    fn bucket_bounds_match_prometheus_digits() {
        let h = |schema| FloatHistogram {
            schema,
            ..FloatHistogram::default()
        };
        assert_eq!(h(3).bound(-1), 0.9170040432046711);
        assert_eq!(h(3).bound(-2), 0.8408964152537144);
        // sqrt(2) as Prometheus prints it (the table's 0.7071067811865475 doubled).
        assert_eq!(h(3).bound(4).to_string(), "1.414213562373095");
        assert_eq!(h(1).bound(5), 5.65685424949238);
        assert_eq!(h(0).bound(0), 1.0);
        assert_eq!(h(0).bound(1024), f64::MAX);
        assert_eq!(h(0).bound(1025), f64::INFINITY);
        assert_eq!(h(-1).bound(1), 4.0);
        assert_eq!(h(-1).bound(-2), 0.0625);
        assert_eq!(h(-2).bound(256), f64::MAX);
        assert_eq!(h(8).bound(-1), 0.9972960560854698);
    }

    #[test]
    fn reduce_resolution_merges_pairs_and_floors_below_zero() {
        let mut h = FloatHistogram {
            schema: 1,
            positive: [(-1, 1.0), (0, 2.0), (1, 3.0), (2, 4.0), (3, 5.0)].into(),
            negative: [(1, 1.0), (2, 1.0)].into(),
            ..FloatHistogram::default()
        };
        h.reduce_resolution(0);
        assert_eq!(h.schema, 0);
        assert_eq!(
            h.positive.into_iter().collect::<Vec<_>>(),
            [(0, 3.0), (1, 7.0), (2, 5.0)]
        );
        assert_eq!(h.negative.into_iter().collect::<Vec<_>>(), [(1, 2.0)]);
    }

    #[test]
    fn notation_round_trips_canonically() {
        let h = FloatHistogram::parse("{{schema:1 sum:-0.3 count:32.1 z_bucket:7.1 z_bucket_w:0.05 buckets:[5.1 10 7] offset:-3 n_buckets:[4.1 5] n_offset:-5}}").unwrap();
        assert_eq!(
            h.to_string(),
            "{{schema:1 count:32.1 sum:-0.3 z_bucket:7.1 z_bucket_w:0.05 offset:-3 buckets:[5.1 10 7] n_offset:-5 n_buckets:[4.1 5]}}"
        );
        assert_eq!(FloatHistogram::parse(&h.to_string()).unwrap(), h);
        assert_eq!(FloatHistogram::parse("{{}}").unwrap().to_string(), "{{}}");
        let c = FloatHistogram::parse("{{schema:-53 sum:1 count:1 custom_values:[5 10] buckets:[1] counter_reset_hint:gauge}}").unwrap();
        assert_eq!(c.to_string(), "{{schema:-53 count:1 sum:1 custom_values:[5 10] counter_reset_hint:gauge buckets:[1]}}");
        assert!(FloatHistogram::parse("{{sum:x}}").is_err());
        assert!(FloatHistogram::parse("{{bogus:1}}").is_err());
    }

    #[test]
    fn api_buckets_have_prometheus_boundaries() {
        let h = FloatHistogram::parse("{{schema:0 count:6 sum:10 z_bucket:1 z_bucket_w:0.001 buckets:[1 2] n_buckets:[2] offset:0 n_offset:1}}").unwrap();
        assert_eq!(
            h.api_buckets(),
            vec![
                (1, -2.0, -1.0, 2.0),
                (3, -0.001, 0.001, 1.0),
                (0, 0.5, 1.0, 1.0),
                (0, 1.0, 2.0, 2.0)
            ]
        );
        let c =
            FloatHistogram::parse("{{schema:-53 count:3 custom_values:[5 10] buckets:[1 0 2]}}")
                .unwrap();
        assert_eq!(
            c.api_buckets(),
            vec![
                (0, f64::NEG_INFINITY, 5.0, 1.0),
                (0, 10.0, f64::INFINITY, 2.0)
            ]
        );
    }

    #[test]
    fn sequences_expand_as_promqltest_does() {
        let v = expand_sequence("{{sum:3 count:2 buckets:[2]}}+{{sum:1.3 count:1 buckets:[1]}}x2")
            .unwrap();
        let t: Vec<String> = v.iter().map(|h| h.as_ref().unwrap().to_string()).collect();
        assert_eq!(
            t,
            vec![
                "{{count:2 sum:3 buckets:[2]}}",
                "{{count:3 sum:4.3 counter_reset_hint:not_reset buckets:[3]}}",
                "{{count:4 sum:5.6 counter_reset_hint:not_reset buckets:[4]}}",
            ]
        );
        let v = expand_sequence("{{sum:3 count:2 buckets:[2]}}x2 _ _x2 {{}}").unwrap();
        assert_eq!(v.len(), 7);
        assert!(v[3].is_none() && v[5].is_none());
        assert_eq!(
            v[2].as_ref().unwrap().to_string(),
            "{{count:2 sum:3 counter_reset_hint:not_reset buckets:[2]}}"
        );
        assert!(expand_sequence("{{sum:1}}+{{sum:1}}").is_err());
        assert!(expand_sequence("1 2").is_err());
    }

    #[test]
    fn arithmetic_and_compaction() {
        let a = FloatHistogram::parse("{{sum:3 count:2 buckets:[2]}}").unwrap();
        let b = FloatHistogram::parse("{{sum:1.3 count:1 buckets:[1] offset:1}}").unwrap();
        let mut c = a.clone();
        c.try_add(&b).expect("same schema");
        c.try_add(&b).expect("same schema");
        assert_eq!(c.to_string(), "{{count:4 sum:5.6 buckets:[2 2]}}");
        c.try_sub(&b).expect("same schema");
        c.try_sub(&b).expect("same schema");
        assert!(c.equals(&a, |x, y| x == y));
        // Empty edge buckets do not change equality.
        let d = FloatHistogram::parse("{{sum:3 count:2 buckets:[0 2 0] offset:-1}}").unwrap();
        assert!(a.equals(&d, |x, y| x == y));
        assert!(!a.equals(&b, |x, y| x == y));
    }
}
