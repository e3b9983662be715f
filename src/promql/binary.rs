//! Binary operators: arithmetic, comparison (with and without `bool`), `and` / `or` /
//! `unless`, with `on` / `ignoring` / `group_left` / `group_right` vector matching.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{exec_err, Ev, R};
use super::{Sample, Value};
use crate::model::{Labels, METRIC_NAME};

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
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
    let op = b.op.to_string();
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
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(&op, v, s, false, return_bool),
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(&op, v, s, true, return_bool),
        (Value::Vector(l), Value::Vector(r)) => {
            let modifier = b.modifier.as_ref();
            let matching = modifier.and_then(|m| m.matching.clone());
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
                    vector_vector(&op, l, r, &matching, &card, return_bool).map(Value::Vector)
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
    op: &str,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> R<Value> {
    let mut out = Vec::with_capacity(v.len());
    for mut smp in v {
        let (l, r) = if scalar_left { (s, smp.f) } else { (smp.f, s) };
        let (mut value, keep) = elem(op, l, r)?;
        if is_comparison(op) && scalar_left {
            // The vector's value is kept even when the scalar is on the left.
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        smp.f = value;
        if !is_comparison(op) || return_bool {
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
            (os.f, ms.f)
        } else {
            (ms.f, os.f)
        };
        let (mut value, keep) = elem(op, l, r)?;
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
        let drop_name = !is_comparison(op) || return_bool || ms.drop_name;
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
        } else if !keep {
            continue;
        }
        out.push(Sample {
            h: None,
            metric,
            f: value,
            t: ms.t,
            drop_name,
        });
    }
    Ok(out)
}
