//! Per-sample math, dates and scalars: the functions that map each float sample of an
//! instant vector (native histogram samples are left out, as Prometheus's `simpleFloatFunc`
//! leaves them), the query-context functions and `scalar`/`vector`/`time`.

use chrono::{Datelike, TimeZone, Timelike};
use promql_parser::parser::Call;

use super::{arg, scalar_arg, FnImpl};
use crate::model::Labels;
use crate::promql::eval::{Ev, R};
use crate::promql::{Sample, Value};

pub(super) const FUNCTIONS: &[(&str, FnImpl)] = &[
    ("time", |_, _, ts| Ok(Value::Scalar(ts as f64 / 1000.0))),
    // Query-context functions (Prometheus's experimental duration expressions).
    ("start", |ev, _, _| {
        Ok(Value::Scalar(ev.start as f64 / 1000.0))
    }),
    ("end", |ev, _, _| Ok(Value::Scalar(ev.end as f64 / 1000.0))),
    ("step", |ev, _, _| {
        Ok(Value::Scalar(ev.step as f64 / 1000.0))
    }),
    ("range", |ev, _, _| {
        Ok(Value::Scalar((ev.end - ev.start) as f64 / 1000.0))
    }),
    ("min_of", |ev, c, ts| extreme_of(ev, c, ts, false)),
    ("max_of", |ev, c, ts| extreme_of(ev, c, ts, true)),
    ("pi", |_, _, _| Ok(Value::Scalar(std::f64::consts::PI))),
    ("vector", vector),
    ("scalar", scalar),
    ("abs", |ev, c, ts| map_floats(ev, c, ts, f64::abs)),
    ("ceil", |ev, c, ts| map_floats(ev, c, ts, f64::ceil)),
    ("floor", |ev, c, ts| map_floats(ev, c, ts, f64::floor)),
    ("exp", |ev, c, ts| map_floats(ev, c, ts, f64::exp)),
    ("ln", |ev, c, ts| map_floats(ev, c, ts, f64::ln)),
    ("log2", |ev, c, ts| map_floats(ev, c, ts, f64::log2)),
    ("log10", |ev, c, ts| map_floats(ev, c, ts, f64::log10)),
    ("sqrt", |ev, c, ts| map_floats(ev, c, ts, f64::sqrt)),
    ("sgn", |ev, c, ts| map_floats(ev, c, ts, sgn)),
    ("acos", |ev, c, ts| map_floats(ev, c, ts, f64::acos)),
    ("acosh", |ev, c, ts| map_floats(ev, c, ts, f64::acosh)),
    ("asin", |ev, c, ts| map_floats(ev, c, ts, f64::asin)),
    ("asinh", |ev, c, ts| map_floats(ev, c, ts, f64::asinh)),
    ("atan", |ev, c, ts| map_floats(ev, c, ts, f64::atan)),
    ("atanh", |ev, c, ts| map_floats(ev, c, ts, f64::atanh)),
    ("cos", |ev, c, ts| map_floats(ev, c, ts, f64::cos)),
    ("cosh", |ev, c, ts| map_floats(ev, c, ts, f64::cosh)),
    ("sin", |ev, c, ts| map_floats(ev, c, ts, f64::sin)),
    ("sinh", |ev, c, ts| map_floats(ev, c, ts, f64::sinh)),
    ("tan", |ev, c, ts| map_floats(ev, c, ts, f64::tan)),
    ("tanh", |ev, c, ts| map_floats(ev, c, ts, f64::tanh)),
    ("deg", |ev, c, ts| {
        map_floats(ev, c, ts, |f| f * 180.0 / std::f64::consts::PI)
    }),
    ("rad", |ev, c, ts| {
        map_floats(ev, c, ts, |f| f * std::f64::consts::PI / 180.0)
    }),
    ("round", round),
    ("clamp", clamp),
    ("clamp_min", |ev, c, ts| {
        let lo = scalar_arg(ev, c, 1, ts)?;
        map_floats(ev, c, ts, move |f| go_max(lo, f))
    }),
    ("clamp_max", |ev, c, ts| {
        let hi = scalar_arg(ev, c, 1, ts)?;
        map_floats(ev, c, ts, move |f| go_min(hi, f))
    }),
    ("timestamp", timestamp),
    ("day_of_month", |ev, c, ts| {
        date_fn(ev, c, ts, |t| t.day() as f64)
    }),
    ("day_of_week", |ev, c, ts| {
        date_fn(ev, c, ts, |t| t.weekday().num_days_from_sunday() as f64)
    }),
    ("day_of_year", |ev, c, ts| {
        date_fn(ev, c, ts, |t| t.ordinal() as f64)
    }),
    ("days_in_month", |ev, c, ts| {
        date_fn(ev, c, ts, days_in_month)
    }),
    ("hour", |ev, c, ts| date_fn(ev, c, ts, |t| t.hour() as f64)),
    ("minute", |ev, c, ts| {
        date_fn(ev, c, ts, |t| t.minute() as f64)
    }),
    ("month", |ev, c, ts| {
        date_fn(ev, c, ts, |t| t.month() as f64)
    }),
    ("year", |ev, c, ts| date_fn(ev, c, ts, |t| t.year() as f64)),
];

/// Maps `f` over the float samples of the first argument, dropping the metric name; native
/// histogram samples are left out.
fn map_floats(ev: &Ev<'_>, c: &Call, ts: i64, f: impl Fn(f64) -> f64) -> R<Value> {
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
    Ok(Value::Vector(
        v.into_iter()
            .filter(|s| s.h.is_none())
            .map(|s| Sample {
                f: f(s.f),
                drop_name: true,
                t: ts,
                ..s
            })
            .collect(),
    ))
}

fn sgn(f: f64) -> f64 {
    if f > 0.0 {
        1.0
    } else if f < 0.0 {
        -1.0
    } else {
        f
    }
}

fn extreme_of(ev: &Ev<'_>, c: &Call, ts: i64, max: bool) -> R<Value> {
    let mut acc: Option<f64> = None;
    for i in 0..c.args.args.len() {
        let v = scalar_arg(ev, c, i, ts)?;
        acc = Some(match acc {
            None => v,
            Some(a) if a.is_nan() || v.is_nan() => f64::NAN,
            Some(a) if max => a.max(v),
            Some(a) => a.min(v),
        });
    }
    Ok(Value::Scalar(acc.unwrap_or(f64::NAN)))
}

fn vector(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let f = scalar_arg(ev, c, 0, ts)?;
    Ok(Value::Vector(vec![Sample {
        h: None,
        metric: Labels::default(),
        f,
        t: ts,
        drop_name: false,
    }]))
}

/// The single float sample's value, NaN unless there is exactly one (histograms ignored).
fn scalar(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
    let mut floats = v.iter().filter(|s| s.h.is_none());
    Ok(Value::Scalar(match (floats.next(), floats.next()) {
        (Some(s), None) => s.f,
        _ => f64::NAN,
    }))
}

fn round(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let to = if c.args.args.len() > 1 {
        scalar_arg(ev, c, 1, ts)?
    } else {
        1.0
    };
    let inv = 1.0 / to;
    map_floats(ev, c, ts, move |f| (f * inv + 0.5).floor() / inv)
}

fn clamp(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let (lo, hi) = (scalar_arg(ev, c, 1, ts)?, scalar_arg(ev, c, 2, ts)?);
    if hi < lo {
        return Ok(Value::Vector(Vec::new()));
    }
    map_floats(ev, c, ts, move |f| go_max(lo, go_min(hi, f)))
}

/// Go's `math.Max`: NaN wins (Rust's `f64::max` ignores it).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// The timestamp of each sample, float or histogram.
fn timestamp(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
    Ok(Value::Vector(
        v.into_iter()
            .map(|s| Sample {
                f: s.t as f64 / 1000.0,
                h: None,
                t: ts,
                drop_name: true,
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
    map_floats(ev, c, ts, conv)
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
