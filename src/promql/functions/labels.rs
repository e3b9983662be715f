//! Label and ordering functions: `label_replace`, `label_join`, `sort` and friends, `absent`,
//! `absent_over_time` and the experimental `info`. They pass native histogram samples through
//! untouched, except `sort`/`sort_desc`, which order by value and leave them out as
//! Prometheus does.

use promql_parser::parser::{Call, Expr};

use super::{arg, string_arg, FnImpl};
use crate::model::{Labels, METRIC_NAME};
use crate::promql::eval::{exec_err, Ev, R};
use crate::promql::{Sample, Value};

pub(super) const FUNCTIONS: &[(&str, FnImpl)] = &[
    ("absent", absent),
    ("absent_over_time", absent),
    ("sort", |ev, c, ts| sort(ev, c, ts, false)),
    ("sort_desc", |ev, c, ts| sort(ev, c, ts, true)),
    ("sort_by_label", |ev, c, ts| sort_by_label(ev, c, ts, false)),
    ("sort_by_label_desc", |ev, c, ts| {
        sort_by_label(ev, c, ts, true)
    }),
    ("label_replace", label_replace),
    ("label_join", label_join),
    ("info", info),
];

fn absent(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let present = match ev.eval(arg(c, 0)?, ts)? {
        Value::Vector(v) => !v.is_empty(),
        Value::Matrix(m) => !m.is_empty(),
        other => return exec_err(format!("{}: unexpected {}", c.func.name, other.type_name())),
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

/// Float samples by value (NaN last); histogram samples are left out.
fn sort(ev: &Ev<'_>, c: &Call, ts: i64, desc: bool) -> R<Value> {
    ev.sort_in_range_query();
    let mut v: Vec<Sample> = ev
        .eval_vector(arg(c, 0)?, ts)?
        .into_iter()
        .filter(|s| s.h.is_none())
        .collect();
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

fn sort_by_label(ev: &Ev<'_>, c: &Call, ts: i64, desc: bool) -> R<Value> {
    ev.sort_in_range_query();
    let mut v = ev.eval_vector(arg(c, 0)?, ts)?;
    let labels: Vec<String> = (1..c.args.args.len())
        .map(|i| string_arg(c, i))
        .collect::<R<_>>()?;
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

fn label_replace(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
    let v = ev.eval_vector(arg(c, 0)?, ts)?;
    let (dst, repl, src, re) = (
        string_arg(c, 1)?,
        string_arg(c, 2)?,
        string_arg(c, 3)?,
        string_arg(c, 4)?,
    );
    let regex = crate::model::matcher::anchored_regex(&re).map_err(|_| {
        crate::promql::PromqlError::Execution(format!(
            "invalid regular expression in label_replace(): {re}"
        ))
    })?;
    if dst.is_empty() || crate::promql::eval::has_raw_bytes(&dst) {
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

fn label_join(ev: &Ev<'_>, c: &Call, ts: i64) -> R<Value> {
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
        for m in crate::promql::eval::selector_matchers(vs)? {
            if m.name == crate::promql::eval::INFO_SENTINEL {
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
        .map_err(|e| crate::promql::PromqlError::Execution(e.to_string()))?;
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
                .map_err(|e| crate::promql::PromqlError::Execution(e.to_string()))?,
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
            if info_series.iter().any(|s| s.h.is_some()) {
                return exec_err("info sample should be float");
            }
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
