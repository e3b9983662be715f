//! Binary operators: arithmetic, comparison (with and without `bool`), `and` / `or` /
//! `unless`, with `on` / `ignoring` / `group_left` / `group_right` vector matching.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use std::sync::Arc;

use super::eval::{exec_err, Ev, R};
use super::{Sample, Value};
use crate::model::histogram::{CounterResetHint, FloatHistogram};
use crate::model::histogram_ops::OpNotes;
use crate::model::{Labels, METRIC_NAME};

/// One operand of an element-wise operation: a float or a native histogram.
#[derive(Clone, Copy)]
struct Operand<'a> {
    f: f64,
    h: Option<&'a Arc<FloatHistogram>>,
}

impl<'a> Operand<'a> {
    fn of(s: &'a Sample) -> Self {
        Operand {
            f: s.f,
            h: s.h.as_ref(),
        }
    }

    fn float(f: f64) -> Self {
        Operand { f, h: None }
    }

    fn type_name(&self) -> &'static str {
        if self.h.is_some() {
            "histogram"
        } else {
            "float"
        }
    }
}

/// The result of an element-wise operation.
struct Elem {
    f: f64,
    h: Option<Arc<FloatHistogram>>,
    /// Whether a comparison holds (always true for arithmetic).
    keep: bool,
}

/// Prometheus's `vectorElemBinop`: floats as usual; a histogram may be scaled by a float (`*`,
/// `/`), added to or subtracted from a histogram, or compared for (in)equality with one.
/// Other combinations give nothing (`None`, no result even with `bool`), with an info
/// annotation. Histograms with incompatible bucket layouts give nothing, with a warning.
fn elem_binop(ev: &Ev<'_>, op: &str, l: Operand<'_>, r: Operand<'_>) -> R<Option<Elem>> {
    let none = |ev: &Ev<'_>| {
        ev.info(format!(
            "incompatible sample types encountered for binary operator {op:?}: {} {op} {}",
            l.type_name(),
            r.type_name()
        ));
        None
    };
    let hist = |h: FloatHistogram| {
        Some(Elem {
            f: 0.0,
            h: Some(Arc::new(h)),
            keep: true,
        })
    };
    let scaled = |h: &FloatHistogram, by: f64, div: bool| {
        let mut h = h.clone();
        if div {
            h.div(by);
        } else {
            h.mul(by);
        }
        h.compact();
        hist(h)
    };
    Ok(match (l.h, r.h) {
        (None, None) if op == "</" || op == ">/" => none(ev),
        (None, None) => {
            let (f, keep) = elem(op, l.f, r.f)?;
            Some(Elem { f, h: None, keep })
        }
        (None, Some(rh)) => match op {
            "*" => scaled(rh, l.f, false),
            _ => none(ev),
        },
        (Some(lh), None) => match op {
            "*" => scaled(lh, r.f, false),
            "/" => scaled(lh, r.f, true),
            "</" | ">/" => {
                let mut h = (**lh).clone();
                h.trim_buckets(r.f, op == "</");
                hist(h)
            }
            _ => none(ev),
        },
        (Some(lh), Some(rh)) => match op {
            "+" | "-" => {
                let mut h = (**lh).clone();
                let res = if op == "+" {
                    h.try_add(rh)
                } else {
                    h.try_sub(rh)
                };
                match res {
                    Ok(notes) => {
                        let what = if op == "+" { "addition" } else { "subtraction" };
                        note_histogram_op(ev, notes, what);
                        if op == "-" {
                            h.hint = CounterResetHint::Gauge;
                        }
                        h.compact();
                        hist(h)
                    }
                    Err(_) => {
                        ev.warn(format!(
                            "incompatible bucket layout encountered for binary operator {op}"
                        ));
                        None
                    }
                }
            }
            "==" | "!=" => {
                let same = lh.equals(rh, |a, b| a == b || (a.is_nan() && b.is_nan()));
                Some(Elem {
                    f: 0.0,
                    h: Some(lh.clone()),
                    keep: same == (op == "=="),
                })
            }
            _ => none(ev),
        },
    })
}

/// Prometheus's annotations for what a histogram addition or subtraction reconciled.
pub(super) fn note_histogram_op(ev: &Ev<'_>, notes: OpNotes, what: &str) {
    if notes.counter_reset_collision {
        ev.warn(format!(
            "conflicting counter resets during histogram {what}"
        ));
    }
    if notes.custom_bounds_reconciled {
        ev.info(format!(
            "mismatched custom buckets were reconciled during {what}"
        ));
    }
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Whether the result keeps the metric name (Prometheus's `!changesMetricSchema`):
/// comparisons and the trim operators.
fn keeps_name(op: &str) -> bool {
    is_comparison(op) || op == "</" || op == ">/"
}

/// Applies `op` to two floats; the bool says whether a comparison holds (always true for
/// arithmetic).
fn elem(op: &str, l: f64, r: f64) -> R<(f64, bool)> {
    Ok(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => return exec_err(format!("operator {op:?} not allowed for scalar operations")),
    })
}

/// The matching signature of a sample's labels.
fn signature(l: &Labels, matching: &Option<LabelModifier>) -> Vec<(String, String)> {
    match matching {
        Some(LabelModifier::Include(on)) => on
            .labels
            .iter()
            .map(|n| (n.clone(), l.get(n).unwrap_or("").to_string()))
            .collect(),
        Some(LabelModifier::Exclude(ign)) => l
            .iter()
            .filter(|p| p.name != METRIC_NAME && !ign.labels.iter().any(|n| n == p.name))
            .map(|p| (p.name.to_string(), p.value.to_string()))
            .collect(),
        None => l
            .iter()
            .filter(|p| p.name != METRIC_NAME)
            .map(|p| (p.name.to_string(), p.value.to_string()))
            .collect(),
    }
}

fn sig_labels(sig: &[(String, String)]) -> Labels {
    Labels::from_pairs(sig.iter().cloned())
}

pub(super) fn eval_binary(ev: &Ev<'_>, b: &BinaryExpr, ts: i64) -> R<Value> {
    let (trim, trim_matching) = super::syntax::trim_op(b);
    let op = match trim {
        Some(true) => "</".to_string(),
        Some(false) => ">/".to_string(),
        None => b.op.to_string(),
    };
    let return_bool = b.modifier.as_ref().map(|m| m.return_bool).unwrap_or(false);
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = elem(&op, l, r)?;
            if is_comparison(&op) {
                // The parser only allows scalar comparisons with `bool`.
                return Ok(Value::Scalar(if keep { 1.0 } else { 0.0 }));
            }
            Ok(Value::Scalar(v))
        }
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(ev, &op, v, s, false, return_bool),
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(ev, &op, v, s, true, return_bool),
        (Value::Vector(l), Value::Vector(r)) => {
            let modifier = b.modifier.as_ref();
            let matching = match trim {
                Some(_) => trim_matching,
                None => modifier.and_then(|m| m.matching.clone()),
            };
            match op.as_str() {
                "and" => Ok(Value::Vector(and_unless(l, r, &matching, true))),
                "unless" => Ok(Value::Vector(and_unless(l, r, &matching, false))),
                "or" => Ok(Value::Vector(or(l, r, &matching))),
                _ => {
                    let card = modifier
                        .map(|m| m.card.clone())
                        .unwrap_or(VectorMatchCardinality::OneToOne);
                    let mut fill = modifier
                        .map(|m| (m.fill_values.lhs, m.fill_values.rhs))
                        .unwrap_or((None, None));
                    // With group_right the operands trade roles, and the fill values follow them
                    // (as Prometheus's tests expect).
                    if matches!(card, VectorMatchCardinality::OneToMany(_)) {
                        fill = (fill.1, fill.0);
                    }
                    let (l, r) = apply_fill(l, r, &matching, fill);
                    vector_vector(ev, &op, l, r, &matching, &card, return_bool).map(Value::Vector)
                }
            }
        }
        (l, r) => exec_err(format!(
            "binary operation {op} between {} and {} is not supported",
            l.type_name(),
            r.type_name()
        )),
    }
}

fn vector_scalar(
    ev: &Ev<'_>,
    op: &str,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> R<Value> {
    let mut out = Vec::with_capacity(v.len());
    for mut smp in v {
        let (l, r) = if scalar_left {
            (Operand::float(s), Operand::of(&smp))
        } else {
            (Operand::of(&smp), Operand::float(s))
        };
        let Some(Elem {
            f: mut value,
            mut h,
            keep,
        }) = elem_binop(ev, op, l, r)?
        else {
            continue;
        };
        if is_comparison(op) && scalar_left {
            // The vector's value is kept even when the scalar is on the left.
            value = smp.f;
            h = smp.h.clone();
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            h = None;
        } else if !keep {
            continue;
        }
        smp.f = value;
        smp.h = h;
        if !keeps_name(op) || return_bool {
            smp.drop_name = true;
        }
        out.push(smp);
    }
    Ok(Value::Vector(out))
}

fn and_unless(
    l: Vec<Sample>,
    r: Vec<Sample>,
    matching: &Option<LabelModifier>,
    and: bool,
) -> Vec<Sample> {
    let sigs: HashSet<Vec<(String, String)>> =
        r.iter().map(|s| signature(&s.metric, matching)).collect();
    l.into_iter()
        .filter(|s| sigs.contains(&signature(&s.metric, matching)) == and)
        .collect()
}

fn or(l: Vec<Sample>, r: Vec<Sample>, matching: &Option<LabelModifier>) -> Vec<Sample> {
    let sigs: HashSet<Vec<(String, String)>> =
        l.iter().map(|s| signature(&s.metric, matching)).collect();
    let mut out = l;
    out.extend(
        r.into_iter()
            .filter(|s| !sigs.contains(&signature(&s.metric, matching))),
    );
    out
}

/// Binary-operator fill modifiers (`fill`, `fill_left`, `fill_right`, experimental in
/// Prometheus): a sample with no match on the other side meets a synthetic one carrying the
/// fill value and its own matching labels.
fn apply_fill(
    mut l: Vec<Sample>,
    mut r: Vec<Sample>,
    matching: &Option<LabelModifier>,
    (fill_left, fill_right): (Option<f64>, Option<f64>),
) -> (Vec<Sample>, Vec<Sample>) {
    if fill_left.is_none() && fill_right.is_none() {
        return (l, r);
    }
    let lsigs: HashSet<Vec<(String, String)>> =
        l.iter().map(|s| signature(&s.metric, matching)).collect();
    let rsigs: HashSet<Vec<(String, String)>> =
        r.iter().map(|s| signature(&s.metric, matching)).collect();
    let mut extra_r = Vec::new();
    if let Some(v) = fill_right {
        for s in &l {
            if !rsigs.contains(&signature(&s.metric, matching)) {
                extra_r.push(Sample {
                    h: None,
                    metric: sig_labels(&signature(&s.metric, matching)),
                    f: v,
                    t: s.t,
                    drop_name: false,
                });
            }
        }
    }
    let mut extra_l = Vec::new();
    if let Some(v) = fill_left {
        for s in &r {
            if !lsigs.contains(&signature(&s.metric, matching)) {
                extra_l.push(Sample {
                    h: None,
                    metric: sig_labels(&signature(&s.metric, matching)),
                    f: v,
                    t: s.t,
                    drop_name: false,
                });
            }
        }
    }
    l.extend(extra_l);
    r.extend(extra_r);
    (l, r)
}

fn vector_vector(
    ev: &Ev<'_>,
    op: &str,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> R<Vec<Sample>> {
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_sigs: HashMap<Vec<(String, String)>, Sample> = HashMap::new();
    for s in one {
        let sig = signature(&s.metric, matching);
        if let Some(dup) = one_sigs.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            return exec_err(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                sig_labels(&sig),
                s.metric,
                dup.metric
            ));
        }
        one_sigs.insert(sig, s);
    }
    let include = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
    let mut matched: HashMap<Vec<(String, String)>, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ms in many {
        let sig = signature(&ms.metric, matching);
        let Some(os) = one_sigs.get(&sig) else {
            continue;
        };
        let (l, r) = if one_to_many {
            (Operand::of(os), Operand::of(&ms))
        } else {
            (Operand::of(&ms), Operand::of(os))
        };
        let Some(Elem {
            f: mut value,
            mut h,
            keep,
        }) = elem_binop(ev, op, l, r)?
        else {
            continue;
        };
        // Result labels come from the "many" side (the left one for one-to-one).
        let mut b = ms.metric.builder();
        if matches!(card, VectorMatchCardinality::OneToOne) {
            match matching {
                Some(LabelModifier::Include(on)) => {
                    b.retain(|p| on.labels.contains(&p.name));
                }
                Some(LabelModifier::Exclude(ign)) => {
                    b.retain(|p| !ign.labels.contains(&p.name));
                }
                None => {}
            }
        }
        for name in &include {
            match os.metric.get(name) {
                Some(v) => b.set(name.clone(), v.to_string()),
                None => b.del(name),
            };
        }
        let drop_name = !keeps_name(op) || return_bool || ms.drop_name;
        let metric = b.labels();
        // Uniqueness is checked before filtering, so a comparison that filters all but one
        // sample still reports ambiguous matching, as Prometheus does.
        let entry = matched.entry(sig).or_default();
        let key = if drop_name {
            super::eval::drop_name_labels(&metric)
        } else {
            metric.clone()
        };
        if matches!(card, VectorMatchCardinality::OneToOne) {
            if !entry.is_empty() {
                return exec_err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
            }
        } else if entry.contains(&key) {
            return exec_err(
                "multiple matches for labels: grouping labels must ensure unique matches",
            );
        }
        entry.insert(key);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            h = None;
        } else if !keep {
            continue;
        }
        out.push(Sample {
            h,
            metric,
            f: value,
            t: ms.t,
            drop_name,
        });
    }
    Ok(out)
}
