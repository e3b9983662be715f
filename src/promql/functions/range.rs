//! Functions over range vectors: `rate`/`increase`/`delta` with Prometheus's extrapolation,
//! `irate`/`idelta`, regression, smoothing and the `*_over_time` family, over float samples
//! and native histograms as Prometheus 3 treats each (summed, averaged, counted, compared
//! or, by the float-only functions, ignored with an info annotation).

use std::sync::Arc;

use promql_parser::parser::{Call, Expr};

use super::{arg, go_f, kahan_inc, quantile, scalar_arg, FnImpl};
use crate::model::histogram::{CounterResetHint, FloatHistogram};
use crate::model::histogram_ops::HistogramAccumulator;
use crate::model::Labels;
use crate::promql::eval::{exec_err, Ev, HPoint, R};
use crate::promql::syntax::Extension;
use crate::promql::{Sample, Value};

pub(super) const FUNCTIONS: &[(&str, FnImpl)] = &[
    ("rate", |ev, c, ts| rate_family(ev, c, ts, true, true)),
    ("increase", |ev, c, ts| rate_family(ev, c, ts, true, false)),
    ("delta", |ev, c, ts| rate_family(ev, c, ts, false, false)),
    ("irate", |ev, c, ts| instant_value(ev, c, ts, true)),
    ("idelta", |ev, c, ts| instant_value(ev, c, ts, false)),
    ("deriv", |ev, c, ts| {
        floats_over_time(ev, c, ts, 0, |p| {
            (p.len() >= 2).then(|| linear_regression(p, p[0].0).0)
        })
    }),
    ("predict_linear", predict_linear),
    ("avg_over_time", avg_over_time),
    ("sum_over_time", sum_over_time),
    ("count_over_time", |ev, c, ts| {
        over_time(ev, c, ts, 0, false, |w| {
            Some(Out::F((w.f.len() + w.h.len()) as f64))
        })
    }),
    ("present_over_time", |ev, c, ts| {
        over_time(ev, c, ts, 0, false, |_| Some(Out::F(1.0)))
    }),
    ("min_over_time", |ev, c, ts| {
        floats_over_time(ev, c, ts, 0, |p| extreme(p, false).map(|x| x.1))
    }),
    ("max_over_time", |ev, c, ts| {
        floats_over_time(ev, c, ts, 0, |p| extreme(p, true).map(|x| x.1))
    }),
    ("ts_of_min_over_time", |ev, c, ts| {
        floats_over_time(ev, c, ts, 0, |p| ts_of_extreme(p, false))
    }),
    ("ts_of_max_over_time", |ev, c, ts| {
        floats_over_time(ev, c, ts, 0, |p| ts_of_extreme(p, true))
    }),
    ("last_over_time", |ev, c, ts| {
        over_time(ev, c, ts, 0, true, |w| edge(w, true))
    }),
    ("first_over_time", |ev, c, ts| {
        over_time(ev, c, ts, 0, true, |w| edge(w, false))
    }),
    ("ts_of_last_over_time", |ev, c, ts| {
        over_time(ev, c, ts, 0, false, |w| {
            let tf = w.f.last().map(|x| x.0);
            let th = w.h.last().map(|x| x.0);
            Some(Out::F(tf.max(th)? as f64 / 1000.0))
        })
    }),
    ("ts_of_first_over_time", |ev, c, ts| {
        over_time(ev, c, ts, 0, false, |w| {
            let t = match (w.f.first(), w.h.first()) {
                (Some(f), Some(h)) => f.0.min(h.0),
                (Some(f), None) => f.0,
                (None, Some(h)) => h.0,
                (None, None) => return None,
            };
            Some(Out::F(t as f64 / 1000.0))
        })
    }),
    ("stddev_over_time", |ev, c, ts| {
        floats_over_time(ev, c, ts, 0, |p| Some(variance(p).sqrt()))
    }),
    ("stdvar_over_time", |ev, c, ts| {
        floats_over_time(ev, c, ts, 0, |p| Some(variance(p)))
    }),
    ("quantile_over_time", quantile_over_time),
    ("mad_over_time", |ev, c, ts| {
        floats_over_time(ev, c, ts, 0, |p| {
            if p.iter().any(|x| x.1.is_nan()) {
                return Some(f64::NAN);
            }
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            let median = quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = vals.iter().map(|v| (v - median).abs()).collect();
            Some(quantile(0.5, &mut dev))
        })
    }),
    ("changes", |ev, c, ts| {
        let start = anchor_start(ev, c, ts)?;
        over_time(ev, c, ts, 0, false, |w| {
            Some(Out::F(changes(&anchored(w, start)?)))
        })
    }),
    ("resets", |ev, c, ts| {
        let start = anchor_start(ev, c, ts)?;
        over_time(ev, c, ts, 0, false, |w| {
            Some(Out::F(resets(&anchored(w, start)?)))
        })
    }),
    ("double_exponential_smoothing", double_exponential_smoothing),
    ("holt_winters", double_exponential_smoothing),
];

/// One series' window of a range vector.
pub(super) struct Win<'a> {
    pub metric: &'a Labels,
    /// Float samples.
    pub f: &'a [(i64, f64)],
    /// Native histogram samples.
    pub h: &'a [HPoint],
}

/// A function's value for one window.
pub(super) enum Out {
    F(f64),
    /// Shared, so a histogram sample passes through without a copy (and the enum stays small
    /// on the per-window path).
    H(Arc<FloatHistogram>),
}

/// Applies `f` to each window of argument `idx`; `keep_name` keeps the metric name (the
/// functions that return a sample as it was).
fn over_time(
    ev: &Ev<'_>,
    c: &Call,
    ts: i64,
    idx: usize,
    keep_name: bool,
    mut f: impl FnMut(&Win<'_>) -> Option<Out>,
) -> R<Value> {
    let mut out = Vec::new();
    ev.for_each_window(arg(c, idx)?, ts, |metric, drop, fl, hs| {
        let w = Win {
            metric,
            f: fl,
            h: hs,
        };
        let (f, h) = match f(&w) {
            None => return,
            Some(Out::F(v)) => (v, None),
            Some(Out::H(h)) => (0.0, Some(h)),
        };
        out.push(Sample {
            h,
            metric: metric.clone(),
            f,
            t: ts,
            drop_name: !keep_name || drop,
        });
    })?;
    Ok(Value::Vector(out))
}

/// A function of float samples only: windows without floats give nothing, and histograms
/// beside floats are ignored with Prometheus's info annotation.
fn floats_over_time(
    ev: &Ev<'_>,
    c: &Call,
    ts: i64,
    idx: usize,
    f: impl Fn(&[(i64, f64)]) -> Option<f64>,
) -> R<Value> {
    over_time(ev, c, ts, idx, false, |w| {
        if w.f.is_empty() {
            return None;
        }
        if !w.h.is_empty() {
            ignored_in_mixed_range(ev, w.metric);
        }
        f(w.f).map(Out::F)
    })
}

fn ignored_in_mixed_range(ev: &Ev<'_>, metric: &Labels) {
    ev.info(format!(
        "ignored histograms in a range containing both floats and histograms for metric name {:?}",
        metric.metric_name()
    ));
}

fn mixed_warning(ev: &Ev<'_>, metric: &Labels) {
    ev.warn(format!(
        "encountered a mix of histograms and floats for metric name {:?}",
        metric.metric_name()
    ));
}

/// Range of the matrix argument's selector (or subquery) and its evaluation end, for the
/// extrapolating functions.
fn range_bounds(ev: &Ev<'_>, e: &Expr, ts: i64) -> (i64, i64) {
    match e {
        Expr::MatrixSelector(m) => {
            let end = ev.selector_time(&m.vs.at, &m.vs.offset, ts);
            let r = m.range.as_millis() as i64;
            (end - r, end)
        }
        Expr::Subquery(s) => {
            let end = ev.selector_time(&s.at, &s.offset, ts);
            let r = s.range.as_millis() as i64;
            (end - r, end)
        }
        Expr::Paren(p) => range_bounds(ev, &p.expr, ts),
        _ => (ts, ts),
    }
}

/// The modifier of a plain range selector argument.
fn extension_of(e: &Expr) -> Option<Extension> {
    match e {
        Expr::MatrixSelector(m) => crate::promql::syntax::extension(&m.vs),
        _ => None,
    }
}

/// For an `anchored` range selector, where its range starts (windows reach further back).
fn anchor_start(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Option<i64>> {
    let a = arg(c, 0)?;
    Ok((extension_of(a) == Some(Extension::Anchored)).then(|| range_bounds(ev, a, ts).0))
}

/// An anchored window from its anchor (Prometheus's `pickFirstSampleIndices`): the last
/// sample at or before the range start, then those after it; `None` when no sample lies after
/// the start. Plain windows pass through.
fn anchored<'a>(w: &Win<'a>, start: Option<i64>) -> Option<Win<'a>> {
    let Some(start) = start else {
        return Some(Win {
            metric: w.metric,
            f: w.f,
            h: w.h,
        });
    };
    let lf = w.f.partition_point(|p| p.0 <= start);
    let lh = w.h.partition_point(|p| p.0 <= start);
    if lf >= w.f.len() && lh >= w.h.len() {
        return None;
    }
    let (ff, fh) = match (lf.checked_sub(1), lh.checked_sub(1)) {
        (None, None) => (0, 0),
        (Some(f), None) => (f, 0),
        (None, Some(h)) => (0, h),
        (Some(f), Some(h)) if w.f[f].0 >= w.h[h].0 => (f, h + 1),
        (Some(_), Some(h)) => (lf, h),
    };
    Some(Win {
        metric: w.metric,
        f: &w.f[ff..],
        h: &w.h[fh..],
    })
}

/// `rate`, `increase` and `delta` (Prometheus's `extrapolatedRate`, or `extendedRate` for
/// `anchored` and `smoothed` selectors).
fn rate_family(ev: &Ev<'_>, c: &Call, ts: i64, is_counter: bool, is_rate: bool) -> R<Value> {
    let a = arg(c, 0)?;
    let (start, end) = range_bounds(ev, a, ts);
    if let Some(ext) = extension_of(a) {
        let smoothed = ext == Extension::Smoothed;
        return over_time(ev, c, ts, 0, false, |w| {
            if !w.f.is_empty() && !w.h.is_empty() {
                mixed_warning(ev, w.metric);
                return None;
            }
            let e = Extended {
                start,
                end,
                smoothed,
                is_counter,
                is_rate,
            };
            if !w.h.is_empty() {
                return e.histogram_rate(ev, w).map(|h| Out::H(Arc::new(h)));
            }
            e.float_rate(w.f).map(Out::F)
        });
    }
    let window = |first_t: i64, last_t: i64, n: usize| Window {
        first_t,
        last_t,
        n,
        range_start: start,
        range_end: end,
        range_ms: end - start,
    };
    over_time(ev, c, ts, 0, false, |w| {
        if !w.f.is_empty() && !w.h.is_empty() {
            mixed_warning(ev, w.metric);
            return None;
        }
        if !w.h.is_empty() {
            if w.h.len() < 2 {
                return None;
            }
            let points: Vec<&FloatHistogram> = w.h.iter().map(|(_, h)| &**h).collect();
            let mut h = crate::promql::histogram::histogram_increase(
                ev,
                &points,
                is_counter,
                w.metric.metric_name(),
            )?;
            let f = window(w.h[0].0, w.h[w.h.len() - 1].0, w.h.len()).factor(
                is_counter,
                is_rate,
                points[0].count,
                h.count,
            );
            h.scale(f);
            return Some(Out::H(Arc::new(h)));
        }
        if is_counter {
            let n = w.metric.metric_name();
            if !n.is_empty()
                && !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|suf| n.ends_with(suf))
            {
                ev.info(format!("metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"));
            }
        }
        let p = w.f;
        if p.len() < 2 {
            return None;
        }
        let (first_t, first_v) = p[0];
        let (last_t, last_v) = p[p.len() - 1];
        let mut result = last_v - first_v;
        if is_counter {
            let mut prev = first_v;
            for &(_, v) in &p[1..] {
                if v < prev {
                    result += prev;
                }
                prev = v;
            }
        }
        let f = window(first_t, last_t, p.len()).factor(is_counter, is_rate, first_v, result);
        Some(Out::F(result * f))
    })
}

/// The sampled part of a `rate` window, for the extrapolation factor.
#[derive(Clone, Copy)]
struct Window {
    first_t: i64,
    last_t: i64,
    n: usize,
    range_start: i64,
    range_end: i64,
    range_ms: i64,
}

impl Window {
    /// Prometheus's extrapolation: to the window's edges unless the samples stop more than
    /// 1.1 average intervals short of them, never below zero for counters (`first` and
    /// `result` are the first value and the raw increase; a histogram's counts).
    fn factor(&self, is_counter: bool, is_rate: bool, first_v: f64, result: f64) -> f64 {
        let Window {
            first_t,
            last_t,
            n,
            range_start,
            range_end,
            range_ms,
        } = *self;
        let n1 = (n - 1) as f64;
        let mut to_start = (first_t - range_start) as f64 / 1000.0;
        let mut to_end = (range_end - last_t) as f64 / 1000.0;
        let sampled = (last_t - first_t) as f64 / 1000.0;
        let avg = sampled / n1;
        let threshold = avg * 1.1;
        if to_start >= threshold {
            to_start = avg / 2.0;
        }
        if is_counter {
            let mut to_zero = to_start;
            if result > 0.0 && first_v >= 0.0 {
                to_zero = sampled * (first_v / result);
            }
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        if to_end >= threshold {
            to_end = avg / 2.0;
        }
        let mut factor = (sampled + to_start + to_end) / sampled;
        if is_rate {
            factor /= range_ms as f64 / 1000.0;
        }
        factor
    }
}

/// A sample of a merged float/histogram sequence.
#[derive(Clone)]
enum Any<'a> {
    F(f64),
    H(&'a FloatHistogram),
}

/// The window's samples in time order, floats and histograms merged.
fn merged<'a>(w: &Win<'a>) -> Vec<(i64, Any<'a>)> {
    let mut out: Vec<(i64, Any<'a>)> = Vec::with_capacity(w.f.len() + w.h.len());
    let (mut i, mut j) = (0, 0);
    while i < w.f.len() || j < w.h.len() {
        if j >= w.h.len() || (i < w.f.len() && w.f[i].0 < w.h[j].0) {
            out.push((w.f[i].0, Any::F(w.f[i].1)));
            i += 1;
        } else {
            out.push((w.h[j].0, Any::H(&w.h[j].1)));
            j += 1;
        }
    }
    out
}

/// `irate` and `idelta` (Prometheus's `instantValue`): the last two samples.
fn instant_value(ev: &Ev<'_>, c: &Call, ts: i64, is_rate: bool) -> R<Value> {
    over_time(ev, c, ts, 0, false, |w| {
        let all = merged(w);
        if all.len() < 2 {
            return None;
        }
        let ((t0, s0), (t1, s1)) = (&all[all.len() - 2], &all[all.len() - 1]);
        let dt = t1 - t0;
        if dt == 0 {
            return None;
        }
        let secs = dt as f64 / 1000.0;
        match (s0, s1) {
            (Any::F(v0), Any::F(v1)) => {
                let mut d = v1 - v0;
                if is_rate && v1 < v0 {
                    d = *v1;
                }
                Some(Out::F(if is_rate { d / secs } else { d }))
            }
            (Any::H(h0), Any::H(h1)) => {
                let name = w.metric.metric_name();
                let gauge = |h: &FloatHistogram| h.hint == CounterResetHint::Gauge;
                if is_rate && (gauge(h0) || gauge(h1)) {
                    ev.warn(format!(
                        "this native histogram metric is not a counter: {name:?}"
                    ));
                }
                if !(is_rate || gauge(h0) && gauge(h1)) {
                    ev.warn(format!(
                        "this native histogram metric is not a gauge: {name:?}"
                    ));
                }
                let mut out = (*h1).clone();
                if !is_rate || !crate::promql::histogram::detect_reset(h1, h0) {
                    match out.try_sub(h0) {
                        Ok(notes) if notes.custom_bounds_reconciled => ev.info(
                            "mismatched custom buckets were reconciled during subtraction".into(),
                        ),
                        Ok(_) => {}
                        Err(_) => {
                            ev.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"));
                            return None;
                        }
                    }
                }
                out.hint = CounterResetHint::Gauge;
                out.compact();
                if is_rate {
                    out.div(secs);
                }
                Some(Out::H(Arc::new(out)))
            }
            _ => {
                mixed_warning(ev, w.metric);
                None
            }
        }
    })
}

/// Prometheus's `linearRegression` with Kahan sums; returns (slope, intercept).
fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn predict_linear(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let dur = scalar_arg(ev, c, 1, ts)?;
    floats_over_time(ev, c, ts, 0, |p| {
        if p.len() < 2 {
            return None;
        }
        let (slope, intercept) = linear_regression(p, ts);
        Some(slope * dur + intercept)
    })
}

/// The first (or last) sample of a window, float or histogram, as it is.
fn edge(w: &Win<'_>, last: bool) -> Option<Out> {
    let (f, h) = if last {
        (w.f.last(), w.h.last())
    } else {
        (w.f.first(), w.h.first())
    };
    match (f, h) {
        (Some(f), Some(h)) if (f.0 > h.0) == last => Some(Out::F(f.1)),
        (Some(f), None) => Some(Out::F(f.1)),
        (_, Some(h)) => Some(Out::H(h.1.clone())),
        (None, None) => None,
    }
}

/// The smallest (or largest) value and its time; NaN gives way to any number.
fn extreme(p: &[(i64, f64)], max: bool) -> Option<(i64, f64)> {
    let mut best = *p.first()?;
    for &x in p {
        let better = if max { x.1 > best.1 } else { x.1 < best.1 };
        if better || best.1.is_nan() {
            best = x;
        }
    }
    Some(best)
}

/// The time of the last smallest (or largest) value.
fn ts_of_extreme(p: &[(i64, f64)], max: bool) -> Option<f64> {
    let mut best = *p.first()?;
    for &x in p {
        let better = if max { x.1 >= best.1 } else { x.1 <= best.1 };
        if better || best.1.is_nan() {
            best = x;
        }
    }
    Some(best.0 as f64 / 1000.0)
}

fn variance(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, f) in p {
        count += 1.0;
        let delta = f - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (f - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

fn quantile_over_time(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let q = scalar_arg(ev, c, 0, ts)?;
    if !(0.0..=1.0).contains(&q) {
        ev.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            go_f(q)
        ));
    }
    floats_over_time(ev, c, ts, 1, |p| {
        let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
        Some(quantile(q, &mut vals))
    })
}

/// Histograms of a window summed (or averaged), with Prometheus's annotations; `None` when
/// the window mixes exponential and custom buckets.
#[cold]
#[inline(never)]
fn sum_histograms(ev: &Ev<'_>, w: &Win<'_>, mean: bool) -> Option<FloatHistogram> {
    let (mut reset, mut not_reset) = (false, false);
    let mut track = |h: &FloatHistogram| match h.hint {
        CounterResetHint::Reset => reset = true,
        CounterResetHint::NotReset => not_reset = true,
        _ => {}
    };
    track(&w.h[0].1);
    let mut acc = HistogramAccumulator::new(&w.h[0].1);
    for (_, h) in &w.h[1..] {
        track(h);
        let r = if mean { acc.add_to_mean(h) } else { acc.add(h) };
        if r.is_err() {
            ev.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}", w.metric.metric_name()));
            return None;
        }
    }
    if reset && not_reset {
        ev.warn("conflicting counter resets during histogram aggregation".into());
    }
    if acc.notes.custom_bounds_reconciled {
        ev.info("mismatched custom buckets were reconciled during aggregation".into());
    }
    Some(if mean { acc.mean() } else { acc.sum() })
}

fn sum_over_time(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    over_time(ev, c, ts, 0, false, |w| {
        if !w.f.is_empty() && !w.h.is_empty() {
            mixed_warning(ev, w.metric);
            return None;
        }
        if !w.h.is_empty() {
            return Some(Out::H(Arc::new(sum_histograms(ev, w, false)?)));
        }
        let (mut s, mut k) = (0.0, 0.0);
        for &(_, f) in w.f {
            (s, k) = kahan_inc(f, s, k);
        }
        Some(Out::F(if (s + k).is_infinite() { s } else { s + k }))
    })
}

fn avg_over_time(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    over_time(ev, c, ts, 0, false, |w| {
        if !w.f.is_empty() && !w.h.is_empty() {
            mixed_warning(ev, w.metric);
            return None;
        }
        if !w.h.is_empty() {
            return Some(Out::H(Arc::new(sum_histograms(ev, w, true)?)));
        }
        let p = w.f;
        let (mut sum, mut comp, mut mean, mut incremental) = (p[0].1, 0.0, 0.0, false);
        let mut count = 1.0;
        for &(_, f) in &p[1..] {
            count += 1.0;
            if !incremental {
                let (s2, c2) = kahan_inc(f, sum, comp);
                if !s2.is_infinite() {
                    sum = s2;
                    comp = c2;
                    continue;
                }
                incremental = true;
                mean = sum / (count - 1.0);
                comp /= count - 1.0;
            }
            if mean.is_infinite() {
                if f.is_infinite() && (mean > 0.0) == (f > 0.0) {
                    continue;
                }
                if !f.is_infinite() && !f.is_nan() {
                    continue;
                }
            }
            let current = mean + comp;
            (mean, comp) = kahan_inc(f / count - current / count, mean, comp);
        }
        Some(Out::F(if incremental {
            mean + comp
        } else {
            sum / count + comp / count
        }))
    })
}

/// Changes between successive samples; a float next to a histogram is a change.
fn changes(w: &Win<'_>) -> f64 {
    let all = merged(w);
    let mut n = 0.0;
    for pair in all.windows(2) {
        let changed = match (&pair[0].1, &pair[1].1) {
            (Any::F(a), Any::F(b)) => a != b && !(a.is_nan() && b.is_nan()),
            (Any::H(a), Any::H(b)) => !a.equals(b, |x, y| x == y || (x.is_nan() && y.is_nan())),
            _ => true,
        };
        if changed {
            n += 1.0;
        }
    }
    n
}

/// Counter resets between successive samples; a float next to a histogram is a reset.
fn resets(w: &Win<'_>) -> f64 {
    let all = merged(w);
    let mut n = 0.0;
    for pair in all.windows(2) {
        let reset = match (&pair[0].1, &pair[1].1) {
            (Any::F(a), Any::F(b)) => b < a,
            (Any::H(a), Any::H(b)) => crate::promql::histogram::detect_reset(b, a),
            _ => true,
        };
        if reset {
            n += 1.0;
        }
    }
    n
}

fn double_exponential_smoothing(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let sf = scalar_arg(ev, c, 1, ts)?;
    let tf = scalar_arg(ev, c, 2, ts)?;
    if !(sf > 0.0 && sf < 1.0) {
        return exec_err(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
            go_f(sf)
        ));
    }
    if !(tf > 0.0 && tf < 1.0) {
        return exec_err(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {}",
            go_f(tf)
        ));
    }
    floats_over_time(ev, c, ts, 0, |p| {
        if p.len() < 2 {
            return None;
        }
        let (mut s0, mut s1) = (0.0, p[0].1);
        let mut b = p[1].1 - p[0].1;
        for (i, &(_, v)) in p.iter().enumerate().skip(1) {
            let x = sf * v;
            if i > 1 {
                b = tf * (s1 - s0) + (1.0 - tf) * b;
            }
            let y = (1.0 - sf) * (s1 + b);
            s0 = s1;
            s1 = x + y;
        }
        Some(s1)
    })
}

/// Linear interpolation at `t` between two samples; for counters a fall counts from zero.
pub(in crate::promql) fn interpolate(p1: (i64, f64), p2: (i64, f64), t: i64, counter: bool) -> f64 {
    let y1 = if counter && p2.1 < p1.1 { 0.0 } else { p1.1 };
    y1 + (p2.1 - y1) * (t - p1.0) as f64 / (p2.0 - p1.0) as f64
}

/// A histogram interpolated at `t` between two samples (a counter reset between them counts
/// from zero); `None`, with a warning, when their bucket kinds differ.
pub(in crate::promql) fn interpolate_histograms(
    ev: &Ev<'_>,
    a: &HPoint,
    b: &HPoint,
    t: i64,
    counter: bool,
    name: &str,
) -> Option<FloatHistogram> {
    if t == a.0 {
        return Some((*a.1).clone());
    }
    if t == b.0 {
        return Some((*b.1).clone());
    }
    let fraction = (t - a.0) as f64 / (b.0 - a.0) as f64;
    let mut out = (*b.1).clone();
    if counter && b.1.detect_reset(&a.1) {
        out.mul(fraction);
        return Some(out);
    }
    let r = out.try_sub(&a.1).and_then(|n1| {
        out.mul(fraction);
        out.try_add(&a.1).map(|n2| (n1, n2))
    });
    match r {
        Ok((n1, n2)) => {
            if n1.custom_bounds_reconciled {
                ev.info("mismatched custom buckets were reconciled during subtraction".into());
            }
            if n2.custom_bounds_reconciled {
                ev.info("mismatched custom buckets were reconciled during addition".into());
            }
            Some(out)
        }
        Err(_) => {
            ev.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"));
            None
        }
    }
}

/// The range of an `anchored`/`smoothed` rate and how to take it (Prometheus's
/// `extendedRate` and `extendedHistogramRate`): from the sample at or before the range start
/// (interpolated at the start when smoothed) to the last sample (interpolated at the end when
/// smoothed), counter resets added back, not extrapolated.
struct Extended {
    start: i64,
    end: i64,
    smoothed: bool,
    is_counter: bool,
    is_rate: bool,
}

impl Extended {
    /// First and last sample indices of the window, or `None` when it measures nothing.
    fn bounds(&self, times: &[i64]) -> Option<(usize, usize)> {
        let mut last = times.len().checked_sub(1)?;
        let first = times[..last]
            .partition_point(|t| *t <= self.start)
            .saturating_sub(1);
        if self.smoothed {
            last = times[..last].partition_point(|t| *t < self.end);
        }
        if times[last] <= self.start || (self.smoothed && times[first] > self.end) {
            return None;
        }
        Some((first, last))
    }

    fn secs(&self) -> f64 {
        (self.end - self.start) as f64 / 1000.0
    }

    fn float_rate(&self, f: &[(i64, f64)]) -> Option<f64> {
        let times: Vec<i64> = f.iter().map(|p| p.0).collect();
        let (mut first, mut last) = self.bounds(&times)?;
        let left = if self.smoothed && f[first].0 < self.start {
            interpolate(f[first], f[first + 1], self.start, self.is_counter)
        } else {
            f[first].1
        };
        let right = if self.smoothed && last > 0 && f[last].0 > self.end {
            interpolate(f[last - 1], f[last], self.end, self.is_counter)
        } else {
            f[last].1
        };
        let mut result = right - left;
        if self.is_counter {
            if f[first].0 <= self.start {
                first += 1;
            }
            if f[last].0 >= self.end {
                last = last.wrapping_sub(1);
            }
            let mut prev = left;
            if last != usize::MAX && first <= last {
                for p in &f[first..=last] {
                    if p.1 < prev {
                        result += prev;
                    }
                    prev = p.1;
                }
            }
            if right < prev {
                result += prev;
            }
        }
        if self.is_rate {
            result /= self.secs();
        }
        Some(result)
    }

    #[cold]
    #[inline(never)]
    fn histogram_rate(&self, ev: &Ev<'_>, w: &Win<'_>) -> Option<FloatHistogram> {
        let h = w.h;
        let name = w.metric.metric_name();
        let times: Vec<i64> = h.iter().map(|p| p.0).collect();
        let (first, last) = self.bounds(&times)?;
        let custom = h[first].1.uses_custom_buckets();
        for p in &h[first..=last] {
            if p.1.uses_custom_buckets() != custom {
                ev.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"));
                return None;
            }
            if self.is_counter && p.1.hint == CounterResetHint::Gauge {
                ev.warn(format!(
                    "this native histogram metric is not a counter: {name:?}"
                ));
            }
        }
        let left = if self.smoothed && h[first].0 < self.start {
            interpolate_histograms(
                ev,
                &h[first],
                &h[first + 1],
                self.start,
                self.is_counter,
                name,
            )?
        } else {
            (*h[first].1).clone()
        };
        let right = if self.smoothed && last > 0 && h[last].0 > self.end {
            interpolate_histograms(ev, &h[last - 1], &h[last], self.end, self.is_counter, name)?
        } else {
            (*h[last].1).clone()
        };
        let gauge = |x: &FloatHistogram| x.hint == CounterResetHint::Gauge;
        if !(self.is_counter || gauge(&left) && gauge(&right)) {
            ev.warn(format!(
                "this native histogram metric is not a gauge: {name:?}"
            ));
        }
        let mixed = |ev: &Ev<'_>| {
            ev.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"));
        };
        let mut result = right.clone();
        match result.try_sub(&left) {
            Ok(n) if n.custom_bounds_reconciled => {
                ev.info("mismatched custom buckets were reconciled during subtraction".into())
            }
            Ok(_) => {}
            Err(_) => {
                mixed(ev);
                return None;
            }
        }
        if self.is_counter {
            let mut correction: Option<FloatHistogram> = None;
            let mut add = |ev: &Ev<'_>, x: &FloatHistogram| -> Option<()> {
                match correction.as_mut() {
                    None => correction = Some(x.clone()),
                    Some(c) => match c.try_add(x) {
                        Ok(n) if n.custom_bounds_reconciled => ev.info(
                            "mismatched custom buckets were reconciled during addition".into(),
                        ),
                        Ok(_) => {}
                        Err(_) => {
                            mixed(ev);
                            return None;
                        }
                    },
                }
                Some(())
            };
            let mut from = first + 1;
            let mut prev: &FloatHistogram = &left;
            if self.smoothed && h[first].0 < self.start && h[first + 1].1.detect_reset(&h[first].1)
            {
                prev = &h[first + 1].1;
                from += 1;
            }
            let to = last as isize - 1;
            if from as isize <= to + 1 {
                if from as isize <= to {
                    for p in &h[from..=to as usize] {
                        if p.1.detect_reset(prev) {
                            add(ev, prev)?;
                        }
                        prev = &p.1;
                    }
                }
                if right.detect_reset(prev) {
                    add(ev, prev)?;
                }
            }
            if let Some(c) = correction {
                match result.try_add(&c) {
                    Ok(n) if n.custom_bounds_reconciled => {
                        ev.info("mismatched custom buckets were reconciled during addition".into())
                    }
                    Ok(_) => {}
                    Err(_) => {
                        mixed(ev);
                        return None;
                    }
                }
            }
        }
        if self.is_rate {
            result.div(self.secs());
        }
        result.hint = CounterResetHint::Gauge;
        result.compact();
        Some(result)
    }
}
