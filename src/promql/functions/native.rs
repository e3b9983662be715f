//! The `histogram_*` functions: over native histogram samples (floats left out, as
//! Prometheus does), and for `histogram_quantile(s)`/`histogram_fraction` over classic
//! `le`-labelled bucket series beside them.

use std::sync::Arc;

use promql_parser::parser::Call;

use super::{arg, go_f, scalar_arg, string_arg, FnImpl};
use crate::model::histogram::FloatHistogram;
use crate::promql::eval::{exec_err, Ev, R};
use crate::promql::histogram as h;
use crate::promql::{Sample, Value};

pub(super) const FUNCTIONS: &[(&str, FnImpl)] = &[
    ("histogram_avg", |ev, c, ts| {
        per_histogram(ev, c, ts, |h| h.sum / h.count)
    }),
    ("histogram_count", |ev, c, ts| {
        per_histogram(ev, c, ts, |h| h.count)
    }),
    ("histogram_sum", |ev, c, ts| {
        per_histogram(ev, c, ts, |h| h.sum)
    }),
    ("histogram_stddev", |ev, c, ts| {
        per_histogram(ev, c, ts, |x| h::native_variance(x).sqrt())
    }),
    ("histogram_stdvar", |ev, c, ts| {
        per_histogram(ev, c, ts, h::native_variance)
    }),
    ("histogram_fraction", histogram_fraction),
    ("histogram_quantile", histogram_quantile),
    ("histogram_quantiles", histogram_quantiles),
];

/// `f` of each native histogram sample of the first argument.
fn per_histogram(ev: &Ev<'_>, c: &Call, ts: i64, f: fn(&FloatHistogram) -> f64) -> R<Value> {
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
    Ok(Value::Vector(
        v.into_iter()
            .filter_map(|s| {
                let hist = s.h?;
                Some(Sample {
                    f: f(&hist),
                    h: None,
                    t: ts,
                    drop_name: true,
                    ..s
                })
            })
            .collect(),
    ))
}

fn histogram_fraction(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let lower = scalar_arg(ev, c, 0, ts)?;
    let upper = scalar_arg(ev, c, 1, ts)?;
    let (native, classic) = split_histograms(ev, ev.eval_vector(arg(c, 2)?, ts)?);
    let mut out: Vec<Sample> = native
        .into_iter()
        .map(|(s, hist)| Sample {
            f: h::native_fraction(ev, lower, upper, &hist, s.metric.metric_name()),
            t: ts,
            drop_name: true,
            ..s
        })
        .collect();
    out.extend(h::classic_fraction(ev, lower, upper, classic, ts));
    Ok(Value::Vector(out))
}

fn histogram_quantile(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let q = scalar_arg(ev, c, 0, ts)?;
    let v = ev.eval_vector(arg(c, 1)?, ts)?;
    Ok(Value::Vector(native_and_classic_quantile(ev, q, v, ts)))
}

/// Several quantiles at once, each result labelled with its quantile.
fn histogram_quantiles(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
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

/// Native histogram samples (with their histograms) apart from float samples. A native
/// histogram with the very labels of a classic one (its bucket series less `le`) conflicts:
/// both are left out, with Prometheus's warning.
fn split_histograms(
    ev: &Ev<'_>,
    v: Vec<Sample>,
) -> (Vec<(Sample, Arc<FloatHistogram>)>, Vec<Sample>) {
    let (mut native, mut classic) = (Vec::new(), Vec::new());
    for mut s in v {
        match s.h.take() {
            Some(hist) => native.push((s, hist)),
            None => classic.push(s),
        }
    }
    if native.is_empty() || classic.is_empty() {
        return (native, classic);
    }
    let keys: std::collections::HashSet<crate::model::Labels> = classic
        .iter()
        .filter(|s| {
            s.metric
                .get("le")
                .and_then(|l| l.parse::<f64>().ok())
                .is_some()
        })
        .map(|s| h::without_le(&s.metric))
        .collect();
    let mut conflicts = std::collections::HashSet::new();
    native.retain(|(s, _)| {
        if keys.contains(&s.metric) {
            ev.warn(format!(
                "vector contains a mix of classic and native histograms for metric name {:?}",
                s.metric.metric_name()
            ));
            conflicts.insert(s.metric.clone());
            return false;
        }
        true
    });
    classic.retain(|s| !conflicts.contains(&h::without_le(&s.metric)));
    (native, classic)
}

/// `histogram_quantile(q, v)`: native histograms one by one, classic bucket series grouped.
fn native_and_classic_quantile(ev: &Ev<'_>, q: f64, v: Vec<Sample>, ts: i64) -> Vec<Sample> {
    let (native, classic) = split_histograms(ev, v);
    if !native.is_empty() && !(0.0..=1.0).contains(&q) && classic.is_empty() {
        ev.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            go_f(q)
        ));
    }
    let mut out: Vec<Sample> = native
        .into_iter()
        .map(|(s, hist)| Sample {
            f: h::native_quantile(ev, q, &hist, s.metric.metric_name()),
            t: ts,
            drop_name: true,
            ..s
        })
        .collect();
    if !classic.is_empty() || out.is_empty() {
        out.extend(h::classic_quantile(ev, q, classic, ts));
    }
    out
}
