//! PromQL functions, looked up by name in one table (Prometheus's `FunctionCalls` map), one
//! small function each, grouped by kind: [`math`] (per-sample math, dates, scalars),
//! [`range`] (rates and the `*_over_time` family over range vectors), [`labels`] (label
//! rewriting, sorting, `absent`, `info`) and [`native`] (the `histogram_*` functions).
//!
//! Functions see storage only through the evaluator (`Ev`); they know nothing of HTTP, rules
//! or scraping.

mod labels;
mod math;
mod native;
mod range;

use std::collections::HashMap;
use std::sync::LazyLock;

use promql_parser::parser::{Call, Expr};

use super::eval::{exec_err, Ev, R};
use super::Value;

/// One function's implementation: the call (for its arguments) at evaluation time `ts`.
type FnImpl = fn(&Ev<'_>, &Call, i64) -> R<Value>;

/// Every function by name.
static FUNCTIONS: LazyLock<HashMap<&'static str, FnImpl>> = LazyLock::new(|| {
    math::FUNCTIONS
        .iter()
        .chain(range::FUNCTIONS)
        .chain(labels::FUNCTIONS)
        .chain(native::FUNCTIONS)
        .copied()
        .collect()
});

/// Evaluates a function call at `ts`.
pub(super) fn eval_call(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    check_extension(c)?;
    match FUNCTIONS.get(c.func.name) {
        Some(f) => f(ev, c, ts),
        None => exec_err(format!("function {:?} is not supported yet", c.func.name)),
    }
}

pub(super) use crate::model::histogram_ops::kahan_inc;
pub(super) use range::{interpolate, interpolate_histograms};

/// `anchored` and `smoothed` range selectors only go to the functions that read their
/// extended windows (Prometheus's `AnchoredSafeFunctions` / `SmoothedSafeFunctions`).
fn check_extension(c: &Call) -> R<()> {
    use super::syntax::Extension;
    for a in &c.args.args {
        let Expr::MatrixSelector(m) = &**a else {
            continue;
        };
        let (what, allowed): (&str, &[&str]) = match super::syntax::extension(&m.vs) {
            None => continue,
            Some(Extension::Anchored) => (
                "anchored",
                &["changes", "delta", "increase", "rate", "resets"],
            ),
            Some(Extension::Smoothed) => ("smoothed", &["delta", "increase", "rate"]),
        };
        if !allowed.contains(&c.func.name) {
            return exec_err(format!(
                "{what} modifier can only be used with: {} - not with {}",
                allowed.join(", "),
                c.func.name
            ));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_the_parser_knows_is_in_the_table() {
        // `info` is in the table; the parser crate's list is the reference for the rest.
        for name in [
            "abs",
            "absent",
            "absent_over_time",
            "avg_over_time",
            "ceil",
            "changes",
            "clamp",
            "count_over_time",
            "delta",
            "deriv",
            "histogram_quantile",
            "histogram_count",
            "holt_winters",
            "idelta",
            "increase",
            "irate",
            "label_join",
            "label_replace",
            "last_over_time",
            "predict_linear",
            "rate",
            "resets",
            "round",
            "scalar",
            "sort",
            "sort_by_label",
            "time",
            "timestamp",
            "vector",
            "year",
            "info",
        ] {
            assert!(FUNCTIONS.contains_key(name), "{name} missing");
        }
    }
}
