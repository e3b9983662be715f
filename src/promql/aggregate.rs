//! Aggregation operators: `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`,
//! `topk`, `bottomk`, `quantile`, `count_values`, `limitk`, `limit_ratio`, with `by` /
//! `without`, following Prometheus's numerics (Kahan sums, incremental mean on overflow).

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::{exec_err, Ev, R};
use super::functions::{kahan_inc, quantile};
use super::{Sample, Value};
use crate::model::{Labels, METRIC_NAME};

fn group_labels(m: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(by)) => m.filter(|p| by.labels.iter().any(|n| n == p.name)),
        Some(LabelModifier::Exclude(without)) => {
            m.filter(|p| p.name != METRIC_NAME && !without.labels.iter().any(|n| n == p.name))
        }
        None => Labels::default(),
    }
}

/// One aggregation node's group labels by input series, kept across the steps of a range
/// query: the same series come back at every step, and building their group labels again
/// (a filter, an allocation, then hashing the new set) was most of a `sum by`'s own time.
///
/// Keyed by the address of the input labels' allocation, with a clone of those labels held
/// so the address cannot be reused by other labels while the entry lives. Group labels are
/// interned, so a step's groups are told apart by address too.
#[derive(Default)]
pub(super) struct GroupCache {
    by_input: HashMap<usize, (Labels, Labels)>,
    canon: HashMap<Labels, Labels>,
}

impl GroupCache {
    /// Inputs whose labels are new at every step (made by an operator below) would grow the
    /// cache by a step's worth each time; it starts over past a few steps' worth.
    fn bound(&mut self, input: usize) {
        if self.by_input.len() > 4 * input + 256 {
            self.by_input.clear();
            self.canon.clear();
        }
    }

    fn group(&mut self, metric: &Labels, modifier: &Option<LabelModifier>) -> Labels {
        if let Some((_, g)) = self.by_input.get(&metric.alloc_id()) {
            return g.clone();
        }
        let g = group_labels(metric, modifier);
        let g = self.canon.entry(g.clone()).or_insert(g).clone();
        self.by_input
            .insert(metric.alloc_id(), (metric.clone(), g.clone()));
        g
    }
}

#[derive(Default)]
struct Acc {
    count: f64,
    value: f64,
    kahan: f64,
    mean: f64,
    incremental: bool,
    seen: bool,
    drop_name: bool,
    /// `sum`/`avg` of native histograms: the running sum or mean (boxed: a group starts at
    /// every step, and most never see a histogram).
    h: Option<Box<crate::model::histogram_ops::HistogramAccumulator>>,
    has_float: bool,
    has_histogram: bool,
    /// Exponential and custom buckets met: the group gives nothing.
    incompatible: bool,
    reset_seen: bool,
    not_reset_seen: bool,
}

impl Acc {
    fn note_hint(&mut self, h: &crate::model::histogram::FloatHistogram) {
        use crate::model::histogram::CounterResetHint::*;
        match h.hint {
            Reset => self.reset_seen = true,
            NotReset => self.not_reset_seen = true,
            _ => {}
        }
    }
}

fn ignored(ev: &Ev<'_>, op: &str) {
    ev.info(format!("ignored histogram in {op} aggregation"));
}

pub(super) fn eval_aggregate(ev: &Ev<'_>, a: &AggregateExpr, ts: i64) -> R<Value> {
    let op = a.op.to_string();
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, ts)?),
        None => None,
    };
    let input = ev.eval_vector(&a.expr, ts)?;
    let m = &a.modifier;
    match op.as_str() {
        "topk" | "bottomk" | "limitk" => {
            let Some(Value::Scalar(k)) = param else {
                return exec_err(format!("{op}: expected scalar parameter"));
            };
            if k.is_nan() {
                return exec_err("Parameter value is NaN");
            }
            if k >= 9.223_372_036_854_776e18 || k <= -9.223_372_036_854_776e18 {
                return exec_err(format!("Scalar value {k} overflows int64"));
            }
            let k = k as i64;
            if k < 1 {
                return Ok(Value::Vector(Vec::new()));
            }
            let input = if op == "limitk" {
                input
            } else {
                let before = input.len();
                let floats: Vec<Sample> = input.into_iter().filter(|s| s.h.is_none()).collect();
                if floats.len() != before {
                    ignored(ev, &op);
                }
                floats
            };
            Ok(Value::Vector(select_k(&op, input, k as usize, m)))
        }
        "limit_ratio" => {
            let Some(Value::Scalar(r)) = param else {
                return exec_err("limit_ratio: expected scalar parameter");
            };
            if r.is_nan() {
                return exec_err("Ratio value is NaN");
            }
            let r = if !(-1.0..=1.0).contains(&r) {
                ev.warn(format!(
                    "ratio value should be between -1 and 1, got {r}, capping to {}",
                    r.clamp(-1.0, 1.0)
                ));
                r.clamp(-1.0, 1.0)
            } else {
                r
            };
            Ok(Value::Vector(
                input
                    .into_iter()
                    .filter(|s| ratio_keep(&s.metric, r))
                    .collect(),
            ))
        }
        "count_values" => {
            let Some(Value::String(label)) = param else {
                return exec_err("count_values: expected string parameter");
            };
            if label.is_empty() || super::eval::has_raw_bytes(&label) {
                return exec_err(format!(
                    "invalid label name {}",
                    super::eval::go_quote_raw(&label)
                ));
            }
            let mut groups: Vec<(Labels, f64)> = Vec::new();
            let mut index: HashMap<Labels, usize> = HashMap::new();
            for s in &input {
                let mut b = group_labels(&s.metric, m).builder();
                let value = match &s.h {
                    Some(h) => h.go_string(),
                    None => super::functions::go_f(s.f),
                };
                b.set(label.clone(), value);
                let l = b.labels();
                match index.get(&l) {
                    Some(i) => groups[*i].1 += 1.0,
                    None => {
                        index.insert(l.clone(), groups.len());
                        groups.push((l, 1.0));
                    }
                }
            }
            Ok(Value::Vector(
                groups
                    .into_iter()
                    .map(|(metric, f)| Sample {
                        h: None,
                        metric,
                        f,
                        t: ts,
                        drop_name: false,
                    })
                    .collect(),
            ))
        }
        "quantile" => {
            let Some(Value::Scalar(q)) = param else {
                return exec_err("quantile: expected scalar parameter");
            };
            if !(0.0..=1.0).contains(&q) {
                ev.warn(format!(
                    "quantile value should be between 0 and 1, got {}",
                    super::functions::go_f(q)
                ));
            }
            let mut groups: Vec<(Labels, Vec<f64>)> = Vec::new();
            let mut index: HashMap<Labels, usize> = HashMap::new();
            for s in input {
                if s.h.is_some() {
                    ignored(ev, "quantile");
                    continue;
                }
                let g = group_labels(&s.metric, m);
                match index.get(&g) {
                    Some(i) => groups[*i].1.push(s.f),
                    None => {
                        index.insert(g.clone(), groups.len());
                        groups.push((g, vec![s.f]));
                    }
                }
            }
            Ok(Value::Vector(
                groups
                    .into_iter()
                    .map(|(metric, mut vals)| Sample {
                        h: None,
                        metric,
                        f: quantile(q, &mut vals),
                        t: ts,
                        drop_name: false,
                    })
                    .collect(),
            ))
        }
        _ => {
            let mut groups: Vec<(Labels, Acc)> = Vec::new();
            // By the interned group labels' address (see `GroupCache`).
            let mut index: HashMap<usize, usize> = HashMap::new();
            let mut caches = ev.groups.borrow_mut();
            let cache = caches
                .entry(a as *const AggregateExpr as usize)
                .or_default();
            cache.bound(input.len());
            for s in input {
                let g = cache.group(&s.metric, m);
                let i = match index.get(&g.alloc_id()) {
                    Some(i) => *i,
                    None => {
                        index.insert(g.alloc_id(), groups.len());
                        groups.push((g, Acc::default()));
                        groups.len() - 1
                    }
                };
                let acc = &mut groups[i].1;
                if acc.seen && acc.incompatible {
                    continue;
                }
                acc.drop_name |= s.drop_name;
                match &s.h {
                    Some(h) => accumulate_histogram(ev, &op, acc, h, s.metric.metric_name())?,
                    None => {
                        if matches!(op.as_str(), "sum" | "avg") {
                            acc.has_float = true;
                        }
                        accumulate(&op, acc, s.f)?
                    }
                }
            }
            let mut out = Vec::with_capacity(groups.len());
            for (metric, mut acc) in groups {
                if !acc.seen {
                    continue;
                }
                // With delayed name removal, groups were formed with names still to be
                // dropped; they go now (Prometheus's documented side effect).
                let drop_name = acc.drop_name && metric.get(METRIC_NAME).is_some();
                let mut h = None;
                if matches!(op.as_str(), "sum" | "avg") && acc.has_histogram {
                    if acc.has_float {
                        ev.warn(
                            "encountered a mix of histograms and floats for aggregation".into(),
                        );
                        continue;
                    }
                    if acc.incompatible {
                        continue;
                    }
                    if acc.reset_seen && acc.not_reset_seen {
                        ev.warn("conflicting counter resets during histogram aggregation".into());
                    }
                    let Some(hacc) = acc.h.take() else {
                        continue;
                    };
                    h = Some(std::sync::Arc::new(if op == "avg" {
                        hacc.mean()
                    } else {
                        hacc.sum()
                    }));
                }
                out.push(Sample {
                    f: if h.is_some() { 0.0 } else { finish(&op, &acc) },
                    h,
                    metric,
                    t: ts,
                    drop_name,
                });
            }
            Ok(Value::Vector(out))
        }
    }
}

/// Adds a native histogram sample to a group: summed by `sum` and `avg`, counted by `count`
/// and `group`, ignored (with Prometheus's info annotation) by the others. Kept out of line:
/// the float path around it is the hot one.
#[cold]
#[inline(never)]
fn accumulate_histogram(
    ev: &Ev<'_>,
    op: &str,
    a: &mut Acc,
    h: &crate::model::histogram::FloatHistogram,
    name: &str,
) -> R<()> {
    match op {
        "sum" | "avg" => {
            a.has_histogram = true;
            a.note_hint(h);
            if !a.seen {
                a.seen = true;
                a.count = 1.0;
                a.h = Some(Box::new(
                    crate::model::histogram_ops::HistogramAccumulator::new(h),
                ));
                return Ok(());
            }
            a.count += 1.0;
            // A group that held floats first gives nothing anyway.
            if let Some(acc) = a.h.as_mut() {
                let r = if op == "avg" {
                    acc.add_to_mean(h)
                } else {
                    acc.add(h)
                };
                match r {
                    Ok(()) => {
                        if acc.notes.custom_bounds_reconciled {
                            ev.info(
                                "mismatched custom buckets were reconciled during aggregation"
                                    .into(),
                            );
                        }
                    }
                    Err(_) => {
                        ev.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"));
                        a.incompatible = true;
                    }
                }
            }
            Ok(())
        }
        "count" | "group" => accumulate(op, a, 0.0),
        _ => {
            ignored(ev, op);
            Ok(())
        }
    }
}

fn accumulate(op: &str, a: &mut Acc, f: f64) -> R<()> {
    if !a.seen {
        // The first sample initialises the group, as in Prometheus's aggregation.
        a.seen = true;
        a.count = 1.0;
        a.value = f;
        a.mean = f;
        match op {
            "stddev" | "stdvar" => {
                a.value = if f.is_nan() || f.is_infinite() {
                    f64::NAN
                } else {
                    0.0
                }
            }
            "group" => a.value = 1.0,
            "sum" | "avg" | "min" | "max" | "count" => {}
            _ => return exec_err(format!("aggregation {op:?} is not supported")),
        }
        return Ok(());
    }
    match op {
        "sum" => {
            let (v, c) = kahan_inc(f, a.value, a.kahan);
            a.value = v;
            a.kahan = c;
        }
        "avg" => {
            a.count += 1.0;
            if !a.incremental {
                let (v, c) = kahan_inc(f, a.value, a.kahan);
                if !v.is_infinite() {
                    a.value = v;
                    a.kahan = c;
                    return Ok(());
                }
                // The sum would overflow: continue with an incremental mean.
                a.incremental = true;
                a.mean = a.value / (a.count - 1.0);
                a.kahan /= a.count - 1.0;
            }
            if a.mean.is_infinite() {
                if f.is_infinite() && (a.mean > 0.0) == (f > 0.0) {
                    return Ok(());
                }
                if !f.is_infinite() && !f.is_nan() {
                    return Ok(());
                }
            }
            let current = a.mean + a.kahan;
            let (v, c) = kahan_inc(f / a.count - current / a.count, a.mean, a.kahan);
            a.mean = v;
            a.kahan = c;
        }
        "min" => {
            if a.value > f || a.value.is_nan() {
                a.value = f;
            }
        }
        "max" => {
            if a.value < f || a.value.is_nan() {
                a.value = f;
            }
        }
        "count" => a.count += 1.0,
        "group" => {}
        "stddev" | "stdvar" => {
            a.count += 1.0;
            let delta = f - a.mean;
            a.mean += delta / a.count;
            a.value += delta * (f - a.mean);
        }
        _ => return exec_err(format!("aggregation {op:?} is not supported")),
    }
    Ok(())
}

fn finish(op: &str, a: &Acc) -> f64 {
    match op {
        "sum" => a.value + a.kahan,
        "avg" => {
            if a.incremental {
                a.mean + a.kahan
            } else {
                a.value / a.count + a.kahan / a.count
            }
        }
        "count" => a.count,
        "stdvar" => a.value / a.count,
        "stddev" => (a.value / a.count).sqrt(),
        _ => a.value,
    }
}

/// `topk` / `bottomk` / `limitk`: per group, the first k by value (or input order for limitk).
fn select_k(op: &str, input: Vec<Sample>, k: usize, m: &Option<LabelModifier>) -> Vec<Sample> {
    let mut groups: Vec<Vec<Sample>> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in input {
        let g = group_labels(&s.metric, m);
        match index.get(&g) {
            Some(i) => groups[*i].push(s),
            None => {
                index.insert(g, groups.len());
                groups.push(vec![s]);
            }
        }
    }
    let mut out = Vec::new();
    for mut g in groups {
        // NaN sorts last for both topk and bottomk.
        match op {
            "topk" => g.sort_by(|a, b| cmp_top(b.f, a.f)),
            "bottomk" => g.sort_by(|a, b| cmp_bottom(a.f, b.f)),
            _ => {}
        }
        g.truncate(k);
        out.extend(g);
    }
    out
}

/// Descending order with NaN last (ascending `b` vs `a` with NaN as the smallest).
fn cmp_top(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Less,
        (false, true) => Greater,
        _ => a.partial_cmp(&b).unwrap_or(Equal),
    }
}

/// Ascending order with NaN last.
fn cmp_bottom(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => a.partial_cmp(&b).unwrap_or(Equal),
    }
}

/// `limit_ratio`: keeps a series when its label hash falls in the ratio's share of the hash
/// space (from the start for positive ratios, from the end for negative ones).
fn ratio_keep(l: &Labels, r: f64) -> bool {
    let offset = (l.stable_hash() as f64) / (u64::MAX as f64);
    if r >= 0.0 {
        offset < r
    } else {
        offset >= 1.0 + r
    }
}
