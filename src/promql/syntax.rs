//! Experimental PromQL syntax the `promql-parser` crate does not take, handled by rewriting
//! the query text before parsing and marking the parsed tree after: the native-histogram
//! trim operators `</` and `>/` (Prometheus's `TRIM_UPPER`/`TRIM_LOWER`).
//!
//! Chosen over forking the parser so the project keeps using the published crate: a rewrite
//! stays small, and it is undone on the tree, so evaluation sees Prometheus's operators.
//! Owns only text and tree rewriting; it evaluates nothing.

use promql_parser::parser::{BinaryExpr, Expr, LabelModifier};

/// Label name carried by a trim operator's `ignoring(...)` list after parsing, telling the
/// evaluator that the `<` it sees is `</`; it matches no series, so matching is unchanged.
pub(super) const TRIM_UPPER: &str = "__appliance_trim_upper__";
/// As [`TRIM_UPPER`], for `>/`.
pub(super) const TRIM_LOWER: &str = "__appliance_trim_lower__";

/// The query with `</` and `>/` turned into `< ` and `> `, and for every `<`/`>` comparison
/// token in source order whether it was a trim operator; `None` when there is none.
pub(super) fn rewrite_trim_ops(q: &str) -> Option<(String, Vec<bool>)> {
    let b = q.as_bytes();
    let mut out = String::with_capacity(q.len());
    let mut ops = Vec::new();
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        let c = b[i];
        if comment {
            comment = c != b'\n';
        } else if let Some(qc) = quote {
            if c == b'\\' && qc != b'`' {
                i += 2;
                continue;
            }
            if c == qc {
                quote = None;
            }
        } else if c == b'"' || c == b'\'' || c == b'`' {
            quote = Some(c);
        } else if c == b'#' {
            comment = true;
        } else if (c == b'<' || c == b'>') && b.get(i + 1) != Some(&b'=') {
            let trim = b.get(i + 1) == Some(&b'/');
            ops.push(trim);
            if trim {
                out.push_str(&q[last..=i]);
                out.push(' ');
                i += 2;
                last = i;
                continue;
            }
        }
        i += 1;
    }
    if !ops.iter().any(|t| *t) {
        return None;
    }
    out.push_str(&q[last.min(q.len())..]);
    Some((out, ops))
}

/// Marks the comparisons that were trim operators, visiting `<`/`>` in source order.
pub(super) fn mark_trim_ops(e: &mut Expr, ops: &[bool]) {
    let mut next = 0;
    walk(e, ops, &mut next);
}

fn walk(e: &mut Expr, ops: &[bool], next: &mut usize) {
    match e {
        Expr::Binary(b) => {
            walk(&mut b.lhs, ops, next);
            let op = b.op.to_string();
            if op == "<" || op == ">" {
                if ops.get(*next).copied().unwrap_or(false) {
                    mark(b, if op == "<" { TRIM_UPPER } else { TRIM_LOWER });
                }
                *next += 1;
            }
            walk(&mut b.rhs, ops, next);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = a.param.as_mut() {
                walk(p, ops, next);
            }
            walk(&mut a.expr, ops, next);
        }
        Expr::Call(c) => {
            for a in c.args.args.iter_mut() {
                walk(a, ops, next);
            }
        }
        Expr::Paren(p) => walk(&mut p.expr, ops, next),
        Expr::Unary(u) => walk(&mut u.expr, ops, next),
        Expr::Subquery(s) => walk(&mut s.expr, ops, next),
        _ => {}
    }
}

fn mark(b: &mut BinaryExpr, sentinel: &str) {
    let m = b.modifier.get_or_insert_with(Default::default);
    match m.matching.as_mut() {
        Some(LabelModifier::Include(l)) | Some(LabelModifier::Exclude(l)) => {
            l.labels.push(sentinel.to_string())
        }
        None => {
            m.matching = Some(LabelModifier::Exclude(promql_parser::label::Labels::new(
                vec![sentinel],
            )))
        }
    }
}

/// Whether a binary expression is a trim operator: `Some(true)` for `</`, `Some(false)` for
/// `>/`; the sentinel is removed from the returned matching.
pub(super) fn trim_op(b: &BinaryExpr) -> (Option<bool>, Option<LabelModifier>) {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
    let Some(mut m) = matching else {
        return (None, None);
    };
    let labels = match &mut m {
        LabelModifier::Include(l) | LabelModifier::Exclude(l) => l,
    };
    let kind = if labels.labels.iter().any(|l| l == TRIM_UPPER) {
        Some(true)
    } else if labels.labels.iter().any(|l| l == TRIM_LOWER) {
        Some(false)
    } else {
        None
    };
    if kind.is_none() {
        return (None, Some(m));
    }
    labels.labels.retain(|l| l != TRIM_UPPER && l != TRIM_LOWER);
    let empty_exclude = matches!(&m, LabelModifier::Exclude(l) if l.labels.is_empty());
    (kind, if empty_exclude { None } else { Some(m) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_operators_are_found_outside_strings() {
        let (text, ops) = rewrite_trim_ops(r#"a{x="</"} </ 3 > b >= c >/ 1"#).expect("has trims");
        assert_eq!(text, r#"a{x="</"} <  3 > b >= c >  1"#);
        assert_eq!(ops, vec![true, false, true]);
        assert!(rewrite_trim_ops("a < b").is_none());
    }

    #[test]
    fn marks_follow_source_order() {
        let (text, ops) = rewrite_trim_ops("(a > 1) + (b </ 2)").expect("has trims");
        let mut e = promql_parser::parser::parse(&text).expect("parses");
        mark_trim_ops(&mut e, &ops);
        let Expr::Binary(plus) = &e else { panic!() };
        let (Expr::Paren(l), Expr::Paren(r)) = (&*plus.lhs, &*plus.rhs) else {
            panic!()
        };
        let (Expr::Binary(l), Expr::Binary(r)) = (&*l.expr, &*r.expr) else {
            panic!()
        };
        assert_eq!(trim_op(l).0, None);
        assert_eq!(trim_op(r), (Some(true), None));
    }
}
