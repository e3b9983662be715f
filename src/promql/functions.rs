//! PromQL functions on floats: rates and deltas with Prometheus's extrapolation, the
//! `*_over_time` family, regression, classic `histogram_quantile`, label functions, date and
//! math functions, sorting and the rest.

use chrono::{Datelike, TimeZone, Timelike};
use promql_parser::parser::{Call, Expr};

use super::eval::{exec_err, Ev, R};
use super::{Sample, Value};
use crate::model::histogram::FloatHistogram;
use crate::model::{Labels, METRIC_NAME};

/// Kahan-Neumaier summation step, as Prometheus's `kahanSumInc`.
pub(super) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Prometheus's `quantile` over raw values (NaN sorts first).
pub(super) fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    vals[lower as usize] * (1.0 - weight) + vals[upper as usize] * weight
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`, with Prometheus's spellings of the specials.
pub fn go_f(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

/// The static type of an expression, as the parser would report it.
pub(super) fn static_type(e: &Expr) -> &'static str {
    match e {
        Expr::NumberLiteral(_) => "scalar",
        Expr::StringLiteral(_) => "string",
        Expr::Paren(p) => static_type(&p.expr),
        Expr::Unary(u) => static_type(&u.expr),
        Expr::VectorSelector(_) | Expr::Aggregate(_) => "vector",
        Expr::MatrixSelector(_) | Expr::Subquery(_) => "matrix",
        Expr::Binary(b) => {
            if static_type(&b.lhs) == "scalar" && static_type(&b.rhs) == "scalar" {
                "scalar"
            } else {
                "vector"
            }
        }
        Expr::Call(c) => match c.func.return_type {
            promql_parser::parser::value::ValueType::Scalar => "scalar",
            promql_parser::parser::value::ValueType::Matrix => "matrix",
            promql_parser::parser::value::ValueType::String => "string",
            promql_parser::parser::value::ValueType::Vector => "vector",
        },
        Expr::Extension(_) => "vector",
    }
}

fn arg(c: &Call, i: usize) -> R<&Expr> {
    match c.args.args.get(i) {
        Some(a) => Ok(a),
        None => exec_err(format!("{}: missing argument {}", c.func.name, i + 1)),
    }
}

/// Maps a function over an instant vector's values, dropping the metric name.
fn map_vector(ev: &Ev<'_>, c: &Call, ts: i64, f: impl Fn(f64) -> f64) -> R<Value> {
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
    Ok(Value::Vector(
        v.into_iter()
            .map(|s| Sample {
                f: f(s.f),
                drop_name: true,
                t: ts,
                ..s
            })
            .collect(),
    ))
}

fn date_fn(
    ev: &Ev<'_>,
    c: &Call,
    ts: i64,
    f: impl Fn(chrono::DateTime<chrono::Utc>) -> f64,
) -> R<Value> {
    let conv = |secs: f64| -> f64 {
        if !secs.is_finite() {
            return f64::NAN;
        }
        let ms = (secs * 1000.0) as i64;
        match chrono::Utc.timestamp_millis_opt(ms).single() {
            Some(t) => f(t),
            None => f64::NAN,
        }
    };
    if c.args.args.is_empty() {
        return Ok(Value::Vector(vec![Sample {
            h: None,
            metric: Labels::default(),
            f: conv(ts as f64 / 1000.0),
            t: ts,
            drop_name: false,
        }]));
    }
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
    Ok(Value::Vector(
        v.into_iter()
            .map(|s| Sample {
                f: conv(s.f),
                drop_name: true,
                t: ts,
                ..s
            })
            .collect(),
    ))
}

fn days_in_month(t: chrono::DateTime<chrono::Utc>) -> f64 {
    let (y, m) = (t.year(), t.month());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let first = chrono::NaiveDate::from_ymd_opt(y, m, 1);
    let next = chrono::NaiveDate::from_ymd_opt(ny, nm, 1);
    match (first, next) {
        (Some(a), Some(b)) => (b - a).num_days() as f64,
        _ => f64::NAN,
    }
}

/// Prometheus's `extrapolatedRate` for `rate`, `increase` and `delta`.
fn extrapolated_rate(
    points: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &points[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let w = Window {
        first_t,
        last_t,
        n: points.len(),
        range_start,
        range_end,
        range_ms,
    };
    Some(result * w.factor(is_counter, is_rate, first_v, result))
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

/// `rate`/`increase`/`delta` of a plain range selector: the calls whose native histograms
/// [`histogram_rates`] reads.
pub(super) fn histogram_rate_call(e: &Expr) -> Option<&Call> {
    match e {
        Expr::Paren(p) => histogram_rate_call(&p.expr),
        Expr::Call(c)
            if matches!(c.func.name, "rate" | "increase" | "delta")
                && matches!(
                    c.args.args.first().map(|a| &**a),
                    Some(Expr::MatrixSelector(_))
                ) =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// `rate`/`increase`/`delta` over the native histograms of a range selector, as Prometheus's
/// `histogramRate` and `extrapolatedRate`: the last histogram less the first (at the lowest
/// schema seen), counter resets added back, extrapolated like floats (by the counts), hint
/// `gauge`. A window that mixes floats and histograms gives nothing, with Prometheus's warning.
pub(super) fn histogram_rates(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Vec<Sample>> {
    let Some(Expr::MatrixSelector(m)) = c.args.args.first().map(|a| &**a) else {
        return Ok(Vec::new());
    };
    let name = c.func.name;
    let (is_counter, is_rate) = (name != "delta", name == "rate");
    let end = ev.selector_time(&m.vs.at, &m.vs.offset, ts);
    let range = m.range.as_millis() as i64;
    let start = end - range;
    let data = ev.load(&m.vs, start, end)?;
    let mut out = Vec::new();
    for s in data.iter() {
        let hs: Vec<&(i64, std::sync::Arc<FloatHistogram>)> = s
            .histograms
            .iter()
            .filter(|(t, _)| *t > start && *t <= end)
            .collect();
        if hs.is_empty() {
            continue;
        }
        let floats = s
            .samples
            .iter()
            .any(|(t, v)| *t > start && *t <= end && !crate::model::is_stale_nan(*v));
        if floats {
            ev.warn(format!(
                "encountered a mix of histograms and floats for metric name {:?}",
                s.labels.metric_name()
            ));
            continue;
        }
        if hs.len() < 2 {
            continue;
        }
        let points: Vec<&FloatHistogram> = hs.iter().map(|(_, h)| &**h).collect();
        let Some(mut h) =
            super::histogram::histogram_increase(ev, &points, is_counter, s.labels.metric_name())
        else {
            continue;
        };
        let w = Window {
            first_t: hs[0].0,
            last_t: hs[hs.len() - 1].0,
            n: hs.len(),
            range_start: start,
            range_end: end,
            range_ms: range,
        };
        let f = w.factor(is_counter, is_rate, points[0].count, h.count);
        h.scale(f);
        out.push(Sample {
            metric: s.labels.clone(),
            f: 0.0,
            t: ts,
            drop_name: true,
            h: Some(std::sync::Arc::new(h)),
        });
    }
    Ok(out)
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

fn over_time(
    ev: &Ev<'_>,
    c: &Call,
    ts: i64,
    idx: usize,
    keep_name: bool,
    f: impl Fn(&[(i64, f64)]) -> Option<f64>,
) -> R<Value> {
    let mut out = Vec::new();
    ev.for_each_window(arg(c, idx)?, ts, |metric, drop, points| {
        if let Some(v) = f(points) {
            out.push(Sample {
                h: None,
                metric: metric.clone(),
                f: v,
                t: ts,
                drop_name: !keep_name || drop,
            });
        }
    })?;
    Ok(Value::Vector(out))
}

fn scalar_arg(ev: &Ev<'_>, c: &Call, i: usize, ts: i64) -> R<f64> {
    ev.eval_scalar(arg(c, i)?, ts)
}

fn string_arg(c: &Call, i: usize) -> R<String> {
    let mut e = arg(c, i)?;
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    match e {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => exec_err(format!("{}: expected string literal", c.func.name)),
    }
}

pub(super) fn eval_call(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let name = c.func.name;
    match name {
        "time" => Ok(Value::Scalar(ts as f64 / 1000.0)),
        // Query-context functions (Prometheus's experimental duration expressions).
        "start" => Ok(Value::Scalar(ev.start as f64 / 1000.0)),
        "end" => Ok(Value::Scalar(ev.end as f64 / 1000.0)),
        "step" => Ok(Value::Scalar(ev.step as f64 / 1000.0)),
        "range" => Ok(Value::Scalar((ev.end - ev.start) as f64 / 1000.0)),
        "min_of" | "max_of" => {
            let mut acc: Option<f64> = None;
            for i in 0..c.args.args.len() {
                let v = scalar_arg(ev, c, i, ts)?;
                acc = Some(match acc {
                    None => v,
                    Some(a) if a.is_nan() || v.is_nan() => f64::NAN,
                    Some(a) if name == "min_of" => a.min(v),
                    Some(a) => a.max(v),
                });
            }
            Ok(Value::Scalar(acc.unwrap_or(f64::NAN)))
        }
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "vector" => {
            let f = scalar_arg(ev, c, 0, ts)?;
            Ok(Value::Vector(vec![Sample {
                h: None,
                metric: Labels::default(),
                f,
                t: ts,
                drop_name: false,
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].f } else { f64::NAN }))
        }
        "abs" => map_vector(ev, c, ts, f64::abs),
        "ceil" => map_vector(ev, c, ts, f64::ceil),
        "floor" => map_vector(ev, c, ts, f64::floor),
        "exp" => map_vector(ev, c, ts, f64::exp),
        "ln" => map_vector(ev, c, ts, f64::ln),
        "log2" => map_vector(ev, c, ts, f64::log2),
        "log10" => map_vector(ev, c, ts, f64::log10),
        "sqrt" => map_vector(ev, c, ts, f64::sqrt),
        "sgn" => map_vector(ev, c, ts, |f| {
            if f > 0.0 {
                1.0
            } else if f < 0.0 {
                -1.0
            } else {
                f
            }
        }),
        "acos" => map_vector(ev, c, ts, f64::acos),
        "acosh" => map_vector(ev, c, ts, f64::acosh),
        "asin" => map_vector(ev, c, ts, f64::asin),
        "asinh" => map_vector(ev, c, ts, f64::asinh),
        "atan" => map_vector(ev, c, ts, f64::atan),
        "atanh" => map_vector(ev, c, ts, f64::atanh),
        "cos" => map_vector(ev, c, ts, f64::cos),
        "cosh" => map_vector(ev, c, ts, f64::cosh),
        "sin" => map_vector(ev, c, ts, f64::sin),
        "sinh" => map_vector(ev, c, ts, f64::sinh),
        "tan" => map_vector(ev, c, ts, f64::tan),
        "tanh" => map_vector(ev, c, ts, f64::tanh),
        "deg" => map_vector(ev, c, ts, |f| f * 180.0 / std::f64::consts::PI),
        "rad" => map_vector(ev, c, ts, |f| f * std::f64::consts::PI / 180.0),
        "round" => {
            let to = if c.args.args.len() > 1 {
                scalar_arg(ev, c, 1, ts)?
            } else {
                1.0
            };
            let inv = 1.0 / to;
            map_vector(ev, c, ts, move |f| (f * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let (lo, hi) = (scalar_arg(ev, c, 1, ts)?, scalar_arg(ev, c, 2, ts)?);
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            map_vector(ev, c, ts, move |f| f.max(lo).min(hi))
        }
        "clamp_min" => {
            let lo = scalar_arg(ev, c, 1, ts)?;
            map_vector(ev, c, ts, move |f| f.max(lo))
        }
        "clamp_max" => {
            let hi = scalar_arg(ev, c, 1, ts)?;
            map_vector(ev, c, ts, move |f| f.min(hi))
        }
        "timestamp" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            Ok(Value::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        f: s.t as f64 / 1000.0,
                        t: ts,
                        drop_name: true,
                        ..s
                    })
                    .collect(),
            ))
        }
        "day_of_month" => date_fn(ev, c, ts, |t| t.day() as f64),
        "day_of_week" => date_fn(ev, c, ts, |t| t.weekday().num_days_from_sunday() as f64),
        "day_of_year" => date_fn(ev, c, ts, |t| t.ordinal() as f64),
        "days_in_month" => date_fn(ev, c, ts, days_in_month),
        "hour" => date_fn(ev, c, ts, |t| t.hour() as f64),
        "minute" => date_fn(ev, c, ts, |t| t.minute() as f64),
        "month" => date_fn(ev, c, ts, |t| t.month() as f64),
        "year" => date_fn(ev, c, ts, |t| t.year() as f64),
        "rate" | "increase" | "delta" => {
            let a = arg(c, 0)?;
            let (start, end) = range_bounds(ev, a, ts);
            let is_counter = name != "delta";
            let is_rate = name == "rate";
            let mut out = Vec::new();
            ev.for_each_window(a, ts, |metric, _, points| {
                if is_counter {
                    let n = metric.metric_name();
                    if !n.is_empty() && !["_total", "_sum", "_count", "_bucket"].iter().any(|suf| n.ends_with(suf)) {
                        ev.info(format!("metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"));
                    }
                }
                if let Some(v) = extrapolated_rate(points, start, end, end - start, is_counter, is_rate) {
                    out.push(Sample { h: None, metric: metric.clone(), f: v, t: ts, drop_name: true });
                }
            })?;
            Ok(Value::Vector(out))
        }
        "irate" | "idelta" => over_time(ev, c, ts, 0, false, |p| {
            if p.len() < 2 {
                return None;
            }
            let (t1, v1) = p[p.len() - 2];
            let (t2, v2) = p[p.len() - 1];
            let mut d = v2 - v1;
            if name == "irate" {
                if v2 < v1 {
                    d = v2;
                }
                let dt = (t2 - t1) as f64 / 1000.0;
                if dt == 0.0 {
                    return None;
                }
                d /= dt;
            }
            Some(d)
        }),
        "deriv" => over_time(ev, c, ts, 0, false, |p| {
            if p.len() < 2 {
                return None;
            }
            Some(linear_regression(p, p[0].0).0)
        }),
        "predict_linear" => {
            let dur = scalar_arg(ev, c, 1, ts)?;
            over_time(ev, c, ts, 0, false, |p| {
                if p.len() < 2 {
                    return None;
                }
                let (slope, intercept) = linear_regression(p, ts);
                Some(slope * dur + intercept)
            })
        }
        "avg_over_time" => over_time(ev, c, ts, 0, false, |p| {
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
            Some(if incremental {
                mean + comp
            } else {
                sum / count + comp / count
            })
        }),
        "sum_over_time" => over_time(ev, c, ts, 0, false, |p| {
            let (mut s, mut k) = (0.0, 0.0);
            for &(_, f) in p {
                (s, k) = kahan_inc(f, s, k);
            }
            Some(if (s + k).is_infinite() { s } else { s + k })
        }),
        "count_over_time" => over_time(ev, c, ts, 0, false, |p| Some(p.len() as f64)),
        "min_over_time" => over_time(ev, c, ts, 0, false, |p| {
            let mut m = p[0].1;
            for &(_, f) in p {
                if f < m || m.is_nan() {
                    m = f;
                }
            }
            Some(m)
        }),
        "max_over_time" => over_time(ev, c, ts, 0, false, |p| {
            let mut m = p[0].1;
            for &(_, f) in p {
                if f > m || m.is_nan() {
                    m = f;
                }
            }
            Some(m)
        }),
        "last_over_time" => over_time(ev, c, ts, 0, true, |p| p.last().map(|x| x.1)),
        "first_over_time" => over_time(ev, c, ts, 0, true, |p| p.first().map(|x| x.1)),
        "present_over_time" => over_time(ev, c, ts, 0, false, |_| Some(1.0)),
        "ts_of_last_over_time" => over_time(ev, c, ts, 0, false, |p| {
            p.last().map(|x| x.0 as f64 / 1000.0)
        }),
        "ts_of_first_over_time" => over_time(ev, c, ts, 0, false, |p| {
            p.first().map(|x| x.0 as f64 / 1000.0)
        }),
        "ts_of_max_over_time" | "ts_of_min_over_time" => {
            let max = name == "ts_of_max_over_time";
            over_time(ev, c, ts, 0, false, move |p| {
                let mut best = p[0];
                for &x in p {
                    let better = if max { x.1 >= best.1 } else { x.1 <= best.1 };
                    if better || best.1.is_nan() {
                        best = x;
                    }
                }
                Some(best.0 as f64 / 1000.0)
            })
        }
        "stddev_over_time" | "stdvar_over_time" => {
            let dev = name == "stddev_over_time";
            over_time(ev, c, ts, 0, false, move |p| {
                let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for &(_, f) in p {
                    count += 1.0;
                    let delta = f - (mean + cmean);
                    (mean, cmean) = kahan_inc(delta / count, mean, cmean);
                    (aux, caux) = kahan_inc(delta * (f - (mean + cmean)), aux, caux);
                }
                let var = (aux + caux) / count;
                Some(if dev { var.sqrt() } else { var })
            })
        }
        "quantile_over_time" => {
            let q = scalar_arg(ev, c, 0, ts)?;
            if !(0.0..=1.0).contains(&q) {
                ev.warn(format!(
                    "quantile value should be between 0 and 1, got {}",
                    go_f(q)
                ));
            }
            over_time(ev, c, ts, 1, false, |p| {
                let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
                Some(quantile(q, &mut vals))
            })
        }
        "mad_over_time" => over_time(ev, c, ts, 0, false, |p| {
            if p.iter().any(|x| x.1.is_nan()) {
                return Some(f64::NAN);
            }
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            let median = quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = vals.iter().map(|v| (v - median).abs()).collect();
            Some(quantile(0.5, &mut dev))
        }),
        "changes" => over_time(ev, c, ts, 0, false, |p| {
            let mut n = 0.0;
            for w in p.windows(2) {
                if w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()) {
                    n += 1.0;
                }
            }
            Some(n)
        }),
        "resets" => over_time(ev, c, ts, 0, false, |p| {
            Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64)
        }),
        "double_exponential_smoothing" | "holt_winters" => {
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
            over_time(ev, c, ts, 0, false, |p| {
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
        "absent" | "absent_over_time" => {
            let present = match ev.eval(arg(c, 0)?, ts)? {
                Value::Vector(v) => !v.is_empty(),
                Value::Matrix(m) => !m.is_empty(),
                other => return exec_err(format!("{name}: unexpected {}", other.type_name())),
            };
            if present {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(vec![Sample {
                h: None,
                metric: absent_labels(arg(c, 0)?),
                f: 1.0,
                t: ts,
                drop_name: false,
            }]))
        }
        "sort" | "sort_desc" => {
            ev.sort_in_range_query();
            let mut v = ev.eval_vector(arg(c, 0)?, ts)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| {
                use std::cmp::Ordering::*;
                match (a.f.is_nan(), b.f.is_nan()) {
                    (true, true) => Equal,
                    (true, false) => Greater,
                    (false, true) => Less,
                    _ => {
                        let o = a.f.partial_cmp(&b.f).unwrap_or(Equal);
                        if desc {
                            o.reverse()
                        } else {
                            o
                        }
                    }
                }
            });
            Ok(Value::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            ev.sort_in_range_query();
            let mut v = ev.eval_vector(arg(c, 0)?, ts)?;
            let labels: Vec<String> = (1..c.args.args.len())
                .map(|i| string_arg(c, i))
                .collect::<R<_>>()?;
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for l in &labels {
                    let o = natord(a.metric.get(l).unwrap_or(""), b.metric.get(l).unwrap_or(""));
                    if o != std::cmp::Ordering::Equal {
                        return if desc { o.reverse() } else { o };
                    }
                }
                let o = a.metric.cmp(&b.metric);
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
            Ok(Value::Vector(v))
        }
        "label_replace" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            let (dst, repl, src, re) = (
                string_arg(c, 1)?,
                string_arg(c, 2)?,
                string_arg(c, 3)?,
                string_arg(c, 4)?,
            );
            let regex = crate::model::matcher::anchored_regex(&re).map_err(|_| {
                super::PromqlError::Execution(format!(
                    "invalid regular expression in label_replace(): {re}"
                ))
            })?;
            if dst.is_empty() || dst.contains('\u{fffd}') {
                return exec_err(format!(
                    "invalid destination label name in label_replace(): {dst}"
                ));
            }
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let val = s.metric.get(&src).unwrap_or("").to_string();
                if let Some(caps) = regex.captures(&val) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    let mut b = s.metric.builder();
                    b.set(dst.clone(), res);
                    s.metric = b.labels();
                    if dst == METRIC_NAME {
                        s.drop_name = false;
                    }
                }
                out.push(s);
            }
            Ok(Value::Vector(out))
        }
        "label_join" => {
            let v = ev.eval_vector(arg(c, 0)?, ts)?;
            let dst = string_arg(c, 1)?;
            let sep = string_arg(c, 2)?;
            let srcs: Vec<String> = (3..c.args.args.len())
                .map(|i| string_arg(c, i))
                .collect::<R<_>>()?;
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let joined = srcs
                    .iter()
                    .map(|n| s.metric.get(n).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(&sep);
                let mut b = s.metric.builder();
                b.set(dst.clone(), joined);
                s.metric = b.labels();
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
                out.push(s);
            }
            Ok(Value::Vector(out))
        }
        "info" => info(ev, c, ts),
        // Native-histogram functions take the histogram samples and leave floats out, as
        // Prometheus does; the quantile and fraction take classic bucket series beside.
        "histogram_avg" | "histogram_count" | "histogram_sum" | "histogram_stddev"
        | "histogram_stdvar" => {
            let v = ev.eval_vector_with_histograms(arg(c, 0)?, ts)?;
            let f: fn(&FloatHistogram) -> f64 = match c.func.name {
                "histogram_avg" => |h| h.sum / h.count,
                "histogram_count" => |h| h.count,
                "histogram_sum" => |h| h.sum,
                "histogram_stddev" => |h| super::histogram::native_variance(h).sqrt(),
                _ => super::histogram::native_variance,
            };
            Ok(Value::Vector(
                v.into_iter()
                    .filter_map(|s| {
                        let h = s.h?;
                        Some(Sample {
                            f: f(&h),
                            h: None,
                            t: ts,
                            drop_name: true,
                            ..s
                        })
                    })
                    .collect(),
            ))
        }
        "histogram_fraction" => {
            let lower = scalar_arg(ev, c, 0, ts)?;
            let upper = scalar_arg(ev, c, 1, ts)?;
            let (native, classic) =
                split_histograms(ev.eval_vector_with_histograms(arg(c, 2)?, ts)?);
            let mut out: Vec<Sample> = native
                .into_iter()
                .map(|(s, h)| Sample {
                    f: super::histogram::native_fraction(
                        ev,
                        lower,
                        upper,
                        &h,
                        s.metric.metric_name(),
                    ),
                    t: ts,
                    drop_name: true,
                    ..s
                })
                .collect();
            out.extend(super::histogram::classic_fraction(
                ev, lower, upper, classic, ts,
            ));
            Ok(Value::Vector(out))
        }
        "histogram_quantiles" => {
            let v = ev.eval_vector_with_histograms(arg(c, 0)?, ts)?;
            let label = string_arg(c, 1)?;
            if v.iter().any(|s| s.metric.get(&label).is_some()) {
                return exec_err(format!(
                    "label {label:?} already exists in the input of histogram_quantiles"
                ));
            }
            let mut out = Vec::new();
            for i in 2..c.args.args.len() {
                let q = scalar_arg(ev, c, i, ts)?;
                for mut s in native_and_classic_quantile(ev, q, v.clone(), ts) {
                    let mut b = s.metric.builder();
                    b.set(
                        label.clone(),
                        crate::model::exposition::format_openmetrics_float(q),
                    );
                    s.metric = b.labels();
                    out.push(s);
                }
            }
            Ok(Value::Vector(out))
        }
        "histogram_quantile" => {
            let q = scalar_arg(ev, c, 0, ts)?;
            let v = ev.eval_vector_with_histograms(arg(c, 1)?, ts)?;
            Ok(Value::Vector(native_and_classic_quantile(ev, q, v, ts)))
        }
        other => exec_err(format!("function {other:?} is not supported yet")),
    }
}

/// Native histogram samples (with their histograms) apart from float samples.
fn split_histograms(
    v: Vec<Sample>,
) -> (Vec<(Sample, std::sync::Arc<FloatHistogram>)>, Vec<Sample>) {
    let (mut native, mut classic) = (Vec::new(), Vec::new());
    for mut s in v {
        match s.h.take() {
            Some(h) => native.push((s, h)),
            None => classic.push(s),
        }
    }
    (native, classic)
}

/// `histogram_quantile(q, v)`: native histograms one by one, classic bucket series grouped.
fn native_and_classic_quantile(ev: &Ev<'_>, q: f64, v: Vec<Sample>, ts: i64) -> Vec<Sample> {
    let (native, classic) = split_histograms(v);
    if !native.is_empty() && !(0.0..=1.0).contains(&q) && classic.is_empty() {
        ev.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            go_f(q)
        ));
    }
    let mut out: Vec<Sample> = native
        .into_iter()
        .map(|(s, h)| Sample {
            f: super::histogram::native_quantile(ev, q, &h, s.metric.metric_name()),
            t: ts,
            drop_name: true,
            ..s
        })
        .collect();
    if !classic.is_empty() || out.is_empty() {
        out.extend(super::histogram::classic_quantile(ev, q, classic, ts));
    }
    out
}

/// Labels that tie a series to its info series (`target_info` and friends).
const IDENTIFYING: [&str; 2] = ["instance", "job"];

fn quote_promql(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The experimental `info(v, [selector])`: adds data labels of matching info series.
fn info(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    use crate::model::{MatchOp, Matcher};
    let base = ev.eval_vector(arg(c, 0)?, ts)?;
    let (mut name_ms, mut data_ms) = (Vec::new(), Vec::new());
    if let Some(sel) = c.args.args.get(1) {
        let Expr::VectorSelector(vs) = &**sel else {
            return exec_err("info: expected a label selector as second argument");
        };
        for m in super::eval::selector_matchers(vs)? {
            if m.name == super::eval::INFO_SENTINEL {
                continue;
            }
            if m.name == METRIC_NAME {
                name_ms.push(m);
            } else {
                data_ms.push(m);
            }
        }
    }
    let target_info = Matcher::new(MatchOp::Equal, METRIC_NAME, "target_info")
        .map_err(|e| super::PromqlError::Execution(e.to_string()))?;
    // Which series count as info series (returned as they are, never enriched): those
    // matching every name matcher when at least one is positive; `target_info` when the
    // selector names none. With only negative name matchers, info series are the `*_info`
    // ones the negations leave.
    let has_positive = name_ms
        .iter()
        .any(|m| matches!(m.op, MatchOp::Equal | MatchOp::Regex));
    let ignore_ms: Vec<Matcher> = if name_ms.is_empty() {
        vec![target_info.clone()]
    } else if has_positive {
        name_ms.clone()
    } else {
        Vec::new()
    };
    if name_ms.is_empty() {
        name_ms.push(target_info);
    } else if !has_positive {
        name_ms.push(
            Matcher::new(MatchOp::Regex, METRIC_NAME, ".+_info")
                .map_err(|e| super::PromqlError::Execution(e.to_string()))?,
        );
    }
    let is_info =
        |l: &Labels| !ignore_ms.is_empty() && ignore_ms.iter().all(|m| m.matches(l.metric_name()));
    let mut id_values: Vec<(&str, std::collections::BTreeSet<String>)> = IDENTIFYING
        .iter()
        .map(|n| (*n, Default::default()))
        .collect();
    for s in base.iter().filter(|s| !is_info(&s.metric)) {
        for (n, set) in id_values.iter_mut() {
            if let Some(v) = s.metric.get(n) {
                set.insert(v.to_string());
            }
        }
    }
    let mut info_series: Vec<Sample> = Vec::new();
    if id_values.iter().any(|(_, v)| !v.is_empty()) {
        let mut parts: Vec<String> = Vec::new();
        for (n, vals) in &id_values {
            if !vals.is_empty() {
                let re = vals
                    .iter()
                    .map(|v| regex::escape(v))
                    .collect::<Vec<_>>()
                    .join("|");
                parts.push(format!("{n}=~{}", quote_promql(&re)));
            }
        }
        for m in name_ms.iter().chain(&data_ms) {
            let op = match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::Regex => "=~",
                MatchOp::NotRegex => "!~",
            };
            parts.push(format!("{}{op}{}", m.name, quote_promql(&m.value)));
        }
        let sel = format!("{{{}}}", parts.join(","));
        if let Ok(Expr::VectorSelector(vs)) = promql_parser::parser::parse(&sel) {
            info_series = ev.eval_vector_selector(&vs, ts)?;
        }
    }
    // Per (info metric name, identifying labels) keep the series with the newest sample.
    let sig = |name: &str, l: &Labels| -> String {
        let mut s = name.to_string();
        for n in IDENTIFYING {
            s.push('\u{0}');
            s.push_str(l.get(n).unwrap_or(""));
        }
        s
    };
    let mut by_sig: std::collections::HashMap<String, &Sample> = std::collections::HashMap::new();
    let mut names: Vec<String> = Vec::new();
    for s in &info_series {
        let name = s.metric.metric_name().to_string();
        if !names.contains(&name) {
            names.push(name.clone());
        }
        let k = sig(&name, &s.metric);
        match by_sig.get(&k) {
            Some(prev) if prev.t >= s.t => {}
            _ => {
                by_sig.insert(k, s);
            }
        }
    }
    names.sort();
    let mut out = Vec::with_capacity(base.len());
    for b in base {
        if is_info(&b.metric) {
            out.push(b);
            continue;
        }
        let mut lb = b.metric.builder();
        let mut added: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        let mut matched = false;
        for name in &names {
            let Some(is) = by_sig.get(&sig(name, &b.metric)) else {
                continue;
            };
            matched = true;
            for l in is.metric.iter() {
                if l.name == METRIC_NAME || IDENTIFYING.contains(&l.name) {
                    continue;
                }
                if !data_ms.is_empty() && !data_ms.iter().any(|m| m.name == l.name) {
                    continue;
                }
                if let Some(prev) = added.get(l.name) {
                    if prev != l.value {
                        return exec_err(format!("conflicting label: {}", l.name));
                    }
                    continue;
                }
                if b.metric.get(l.name).is_some() {
                    continue;
                }
                added.insert(l.name.to_string(), l.value.to_string());
                lb.set(l.name.to_string(), l.value.to_string());
            }
        }
        if !matched && data_ms.iter().any(|m| !m.matches_empty()) {
            continue;
        }
        out.push(Sample {
            metric: lb.labels(),
            ..b
        });
    }
    Ok(Value::Vector(out))
}

/// The labels `absent` reports: the equality matchers of a plain selector.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(m) => &m.vs,
        _ => return Labels::default(),
    };
    // A label with an equality matcher is reported, unless another matcher names it too.
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        let equal = matches!(m.op, promql_parser::label::MatchOp::Equal);
        if equal && !seen.contains(&m.name) {
            pairs.push((m.name.clone(), m.value.clone()));
        } else {
            pairs.retain(|(n, _)| n != &m.name);
        }
        seen.insert(m.name.clone());
    }
    Labels::from_pairs(pairs)
}

/// Natural ordering of label values, as `sort_by_label` uses.
fn natord(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut ai, mut bi) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (ai.peek().copied(), bi.peek().copied()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let mut na = String::new();
                while let Some(c) = ai.peek().copied().filter(char::is_ascii_digit) {
                    na.push(c);
                    ai.next();
                }
                let mut nb = String::new();
                while let Some(c) = bi.peek().copied().filter(char::is_ascii_digit) {
                    nb.push(c);
                    bi.next();
                }
                let (ta, tb) = (na.trim_start_matches('0'), nb.trim_start_matches('0'));
                let o = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                ai.next();
                bi.next();
            }
        }
    }
}
