//! Experimental PromQL syntax the `promql-parser` crate does not take, handled by rewriting
//! the query text before parsing and marking the parsed tree after: duration expressions
//! (`[5m+1m]`, `[step()*2:1s]`, `offset (2*1m)`, `offset min_of(step(), 1s)`), folded to
//! literals with the query's start, end and step, and the native-histogram trim operators
//! `</` and `>/` (Prometheus's `TRIM_UPPER`/`TRIM_LOWER`).
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
    let code = code_mask(q);
    let mut out = String::with_capacity(q.len());
    let mut ops = Vec::new();
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        let c = b[i];
        if code[i] && (c == b'<' || c == b'>') && b.get(i + 1) != Some(&b'=') {
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

/// For each byte of `q`, whether it is query code: outside string literals (their quotes
/// included) and `#` comments.
fn code_mask(q: &str) -> Vec<bool> {
    let b = q.as_bytes();
    let mut mask = vec![false; b.len()];
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let mut i = 0;
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
        } else {
            mask[i] = true;
        }
        i += 1;
    }
    mask
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

/// The query's time frame, for `start()`, `end()`, `step()` and `range()` (ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct QueryFrame {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

/// The query with every duration expression (in `[...]` and after `offset`) folded into a
/// millisecond literal; `Ok(None)` when there is nothing to fold. An expression that does not
/// evaluate is an error naming it.
pub(super) fn fold_durations(q: &str, frame: QueryFrame) -> Result<Option<String>, String> {
    let b = q.as_bytes();
    let code = code_mask(q);
    let mut out = String::with_capacity(q.len());
    let mut changed = false;
    let (mut i, mut last) = (0, 0);
    while i < b.len() {
        let c = b[i];
        if !code[i] {
            i += 1;
            continue;
        }
        match c {
            b'[' => {
                let Some(close) = q[i..].find(']').map(|k| i + k) else {
                    break;
                };
                let inner = &q[i + 1..close];
                let (range, step) = match split_top_colon(inner) {
                    Some(k) => (&inner[..k], Some(&inner[k + 1..])),
                    None => (inner, None),
                };
                let folded_range = fold_part(range, frame)?;
                let folded_step = match step {
                    Some(st) if !st.trim().is_empty() => fold_part(st, frame)?,
                    _ => None,
                };
                if folded_range.is_some() || folded_step.is_some() {
                    out.push_str(&q[last..=i]);
                    out.push_str(folded_range.as_deref().unwrap_or(range));
                    if let Some(st) = step {
                        out.push(':');
                        out.push_str(folded_step.as_deref().unwrap_or(st));
                    }
                    out.push(']');
                    last = close + 1;
                    changed = true;
                }
                i = close + 1;
                continue;
            }
            b'o' | b'O'
                if q[i..].len() >= 6
                    && b[i..i + 6].eq_ignore_ascii_case(b"offset")
                    && (i == 0 || !is_ident(b[i - 1]))
                    && !b.get(i + 6).copied().is_some_and(is_ident) =>
            {
                let from = i + 6;
                let len = offset_atom(&q[from..]);
                let atom = &q[from..from + len];
                if let Some(folded) = fold_part(atom, frame)? {
                    if folded == "0ms" {
                        // The parser refuses a zero duration; no offset is the same.
                        out.push_str(&q[last..i]);
                    } else {
                        out.push_str(&q[last..from]);
                        out.push(' ');
                        out.push_str(&folded);
                    }
                    last = from + len;
                    changed = true;
                }
                i = from + len;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if !changed {
        return Ok(None);
    }
    out.push_str(&q[last..]);
    Ok(Some(out))
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Where a subquery's `range:step` splits, outside parentheses.
fn split_top_colon(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (k, c) in s.bytes().enumerate() {
        match c {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b':' if depth == 0 => return Some(k),
            _ => {}
        }
    }
    None
}

/// The length of the duration after `offset`: signs, then a literal, a parenthesised
/// expression or a function call (what follows, even `^`, belongs to the outer expression).
fn offset_atom(s: &str) -> usize {
    let b = s.as_bytes();
    let mut k = 0;
    while k < b.len() && (b[k].is_ascii_whitespace() || b[k] == b'+' || b[k] == b'-') {
        k += 1;
    }
    if k < b.len() && b[k] == b'(' {
        return k + matching_paren(&s[k..]);
    }
    let start = k;
    while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_' || b[k] == b'.') {
        k += 1;
    }
    let mut j = k;
    while j < b.len() && b[j].is_ascii_whitespace() {
        j += 1;
    }
    let word = &s[start..k];
    if j < b.len() && b[j] == b'(' && word.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return j + matching_paren(&s[j..]);
    }
    k
}

/// Length up to and including the parenthesis closing the one `s` starts with.
fn matching_paren(s: &str) -> usize {
    let mut depth = 0;
    for (k, c) in s.bytes().enumerate() {
        match c {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// A duration part folded to `<ms>ms` (`-<ms>ms` for a negative offset), or `None` when it
/// is a plain duration literal already.
fn fold_part(text: &str, frame: QueryFrame) -> Result<Option<String>, String> {
    let t = text.trim();
    if t.is_empty() || is_plain_duration(t) {
        return Ok(None);
    }
    let mut p = DurParser {
        s: t.as_bytes(),
        i: 0,
        frame,
        depth: 0,
    };
    let secs = p
        .expr()
        .map_err(|e| format!("invalid duration expression {t:?}: {e}"))?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!("invalid duration expression {t:?}"));
    }
    if !secs.is_finite() || secs.abs() > 1e13 {
        return Err(format!("duration expression {t:?} is out of range"));
    }
    let ms = (secs * 1000.0).round() as i64;
    Ok(Some(format!("{ms}ms")))
}

/// A literal the parser takes as it is (`5m`, `1h30m`), optionally signed.
fn is_plain_duration(t: &str) -> bool {
    let t = t.strip_prefix('-').unwrap_or(t);
    !t.is_empty()
        && t.bytes().all(|c| c.is_ascii_alphanumeric())
        && t.bytes().next().is_some_and(|c| c.is_ascii_digit())
        && t.bytes().any(|c| c.is_ascii_alphabetic())
        && crate::model::time::Duration::parse(t).is_ok()
}

/// A recursive-descent evaluator of duration arithmetic in seconds: numbers are seconds,
/// durations their length; `+ - * / % ^`, unary signs, parentheses, `step()`, `range()`,
/// `start()`, `end()`, `min_of(...)`, `max_of(...)`. Depth is bounded.
struct DurParser<'a> {
    s: &'a [u8],
    i: usize,
    frame: QueryFrame,
    depth: usize,
}

impl DurParser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn expr(&mut self) -> Result<f64, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("nested too deeply".into());
        }
        let mut v = self.term()?;
        while let Some(c @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.term()?;
            v = if c == b'+' { v + r } else { v - r };
        }
        self.depth -= 1;
        Ok(v)
    }

    fn term(&mut self) -> Result<f64, String> {
        let mut v = self.unary()?;
        while let Some(c @ (b'*' | b'/' | b'%')) = self.peek() {
            self.i += 1;
            let r = self.unary()?;
            v = match c {
                b'*' => v * r,
                b'/' => v / r,
                _ => v % r,
            };
        }
        Ok(v)
    }

    /// Unary signs bind looser than `^` (`-2^2` is -4), as in PromQL.
    fn unary(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'-') => {
                self.i += 1;
                Ok(-self.unary()?)
            }
            Some(b'+') => {
                self.i += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<f64, String> {
        let base = self.atom()?;
        if self.peek() == Some(b'^') {
            self.i += 1;
            let exp = self.unary()?;
            return Ok(base.powf(exp));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'(') => {
                self.i += 1;
                let v = self.expr()?;
                if self.peek() != Some(b')') {
                    return Err("missing )".into());
                }
                self.i += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'.')
                {
                    self.i += 1;
                }
                let tok = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                if let Ok(f) = tok.parse::<f64>() {
                    return Ok(f);
                }
                crate::model::time::Duration::parse(tok)
                    .map(|d| d.as_millis() as f64 / 1000.0)
                    .map_err(|_| format!("bad number or duration {tok:?}"))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.i < self.s.len() && is_ident(self.s[self.i]) {
                    self.i += 1;
                }
                let name = std::str::from_utf8(&self.s[start..self.i])
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if self.peek() != Some(b'(') {
                    return Err(format!("unexpected {name:?}"));
                }
                self.i += 1;
                let mut args = Vec::new();
                if self.peek() != Some(b')') {
                    loop {
                        args.push(self.expr()?);
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b')') => break,
                            _ => return Err("missing )".into()),
                        }
                    }
                }
                self.i += 1;
                let f = self.frame;
                let secs = |ms: i64| ms as f64 / 1000.0;
                match (name.as_str(), args.len()) {
                    ("step", 0) => Ok(secs(f.step)),
                    ("range", 0) => Ok(secs(f.end - f.start)),
                    ("start", 0) => Ok(secs(f.start)),
                    ("end", 0) => Ok(secs(f.end)),
                    ("min_of", n) if n > 0 => Ok(args.into_iter().fold(f64::INFINITY, f64::min)),
                    ("max_of", n) if n > 0 => {
                        Ok(args.into_iter().fold(f64::NEG_INFINITY, f64::max))
                    }
                    _ => Err(format!("function {name}() is not allowed in a duration")),
                }
            }
            other => Err(format!(
                "unexpected {:?}",
                other.map(|c| c as char).unwrap_or(' ')
            )),
        }
    }
}

/// Whether parsing `q` goes through any of this module's rewrites.
pub(super) fn uses_rewrites(q: &str) -> bool {
    !matches!(fold_durations(q, QueryFrame::default()), Ok(None))
        || rewrite_extended_selectors(q).is_some()
        || rewrite_trim_ops(q).is_some()
}

/// Matcher names marking a selector written with Prometheus's experimental `anchored` or
/// `smoothed` modifier; they match every series (`=""`) and are removed before selecting.
pub(super) const ANCHORED: &str = "__appliance_anchored__";
/// As [`ANCHORED`], for `smoothed`.
pub(super) const SMOOTHED: &str = "__appliance_smoothed__";

/// A selector's experimental modifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Extension {
    /// `anchored`: windows reach back to the last sample before their start.
    Anchored,
    /// `smoothed`: values interpolated at the window's edges (or at the evaluation time).
    Smoothed,
}

/// The modifier a selector was written with, if any.
pub(super) fn extension(vs: &promql_parser::parser::VectorSelector) -> Option<Extension> {
    vs.matchers
        .matchers
        .iter()
        .find_map(|m| match m.name.as_str() {
            ANCHORED => Some(Extension::Anchored),
            SMOOTHED => Some(Extension::Smoothed),
            _ => None,
        })
}

/// Whether a matcher is one of this module's markers (never used for selection).
pub(super) fn is_marker(name: &str) -> bool {
    name == ANCHORED || name == SMOOTHED
}

/// The query with each `anchored`/`smoothed` keyword removed and its selector marked with the
/// matching sentinel matcher; `None` when there is none.
pub(super) fn rewrite_extended_selectors(q: &str) -> Option<String> {
    let b = q.as_bytes();
    // (keyword start, keyword end, sentinel) outside strings and comments.
    let mut found: Vec<(usize, usize, &str)> = Vec::new();
    let code = code_mask(q);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if code[i] && (i == 0 || !is_ident(b[i - 1])) && c.is_ascii_alphabetic() {
            let end = (i..b.len()).find(|k| !is_ident(b[*k])).unwrap_or(b.len());
            let word = &q[i..end];
            if word == "anchored" || word == "smoothed" {
                found.push((
                    i,
                    end,
                    if word == "anchored" {
                        ANCHORED
                    } else {
                        SMOOTHED
                    },
                ));
            }
            i = end;
            continue;
        }
        i += 1;
    }
    if found.is_empty() {
        return None;
    }
    // Each keyword's selector: where its sentinel goes, and how.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (start, end, sentinel) in found {
        let at = selector_insert_point(q, start)?;
        let text = match at {
            Insert::IntoBraces(k) => {
                let empty = q[k..].trim_start().starts_with('}');
                (
                    k,
                    if empty {
                        format!("{sentinel}=\"\"")
                    } else {
                        format!("{sentinel}=\"\",")
                    },
                )
            }
            Insert::AfterName(k) => (k, format!("{{{sentinel}=\"\"}}")),
        };
        edits.push((text.0, text.0, text.1));
        edits.push((start, end, String::new()));
    }
    edits.sort_by_key(|e| (e.0, e.1));
    let mut out = String::with_capacity(q.len() + 64);
    let mut last = 0;
    for (from, to, text) in edits {
        if from < last {
            return None;
        }
        out.push_str(&q[last..from]);
        out.push_str(&text);
        last = to;
    }
    out.push_str(&q[last..]);
    Some(out)
}

enum Insert {
    /// Just after a selector's `{`.
    IntoBraces(usize),
    /// After a bare metric name.
    AfterName(usize),
}

/// Walks back from a modifier keyword over the selector's `@`/`offset` modifiers, range and
/// braces to where its sentinel matcher goes.
fn selector_insert_point(q: &str, keyword: usize) -> Option<Insert> {
    let b = q.as_bytes();
    let mut k = keyword;
    let back_ws = |mut k: usize| {
        while k > 0 && b[k - 1].is_ascii_whitespace() {
            k -= 1;
        }
        k
    };
    loop {
        k = back_ws(k);
        if k == 0 {
            return None;
        }
        // A modifier argument: a number/duration, `start()`/`end()`, or a signed one.
        let before = k;
        if b[k - 1] == b')' {
            let open = q[..k].rfind('(')?;
            let mut j = back_ws(open);
            while j > 0 && is_ident(b[j - 1]) {
                j -= 1;
            }
            k = j;
        } else {
            while k > 0 && (b[k - 1].is_ascii_alphanumeric() || b[k - 1] == b'.') {
                k -= 1;
            }
        }
        let arg_start = k;
        let mut j = back_ws(k);
        while j > 0 && (b[j - 1] == b'-' || b[j - 1] == b'+') {
            j = back_ws(j - 1);
        }
        if j > 0 && b[j - 1] == b'@' {
            k = j - 1;
            continue;
        }
        // Bytes, not `str`: six bytes back may fall inside a multi-byte character.
        if j >= 6 && b[j - 6..j].eq_ignore_ascii_case(b"offset") {
            k = j - 6;
            continue;
        }
        // Not a modifier: back to what the argument scan passed over.
        k = if arg_start == before {
            before
        } else {
            arg_start
        };
        if arg_start != before {
            // A bare metric name ends here.
            return Some(Insert::AfterName(before));
        }
        break;
    }
    if b[k - 1] == b']' {
        k = q[..k].rfind('[')?;
        k = back_ws(k);
    }
    if k > 0 && b[k - 1] == b'}' {
        let open = q[..k].rfind('{')?;
        return Some(Insert::IntoBraces(open + 1));
    }
    if k > 0 && is_ident(b[k - 1]) {
        return Some(Insert::AfterName(k));
    }
    None
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
    fn duration_expressions_fold_with_the_query_frame() {
        let f = QueryFrame {
            start: 50_000,
            end: 60_000,
            step: 5_000,
        };
        let fold = |q: &str| fold_durations(q, f).expect("folds");
        assert_eq!(fold("rate(x[5m])"), None);
        assert_eq!(fold("x[26m+4m]").as_deref(), Some("x[1800000ms]"));
        assert_eq!(fold("x[1800]").as_deref(), Some("x[1800000ms]"));
        assert_eq!(
            fold("x[29s+1s:5s+5s]").as_deref(),
            Some("x[30000ms:10000ms]")
        );
        assert_eq!(
            fold("x offset -step()*2").as_deref(),
            Some("x offset -5000ms*2")
        );
        assert_eq!(
            fold("x offset (-2 ^ 2)").as_deref(),
            Some("x offset -4000ms")
        );
        assert_eq!(
            fold("x offset 100 + 2").as_deref(),
            Some("x offset 100000ms + 2")
        );
        assert_eq!(fold(r#"x{a="[1+1]"}"#), None);
        assert!(fold_durations("x[1m+]", f).is_err());
    }

    #[test]
    fn anchored_and_smoothed_mark_their_selector() {
        let r = |q: &str| rewrite_extended_selectors(q).expect("rewritten");
        assert_eq!(
            r("increase(m[1m] anchored)"),
            "increase(m{__appliance_anchored__=\"\"}[1m] )"
        );
        assert_eq!(r("m smoothed + 0"), "m{__appliance_smoothed__=\"\"}  + 0");
        assert_eq!(
            r(r#"rate(m{a="b"}[5m] offset 1m smoothed)"#),
            r#"rate(m{__appliance_smoothed__="",a="b"}[5m] offset 1m )"#
        );
        assert_eq!(
            r("m @ 100 smoothed"),
            "m{__appliance_smoothed__=\"\"} @ 100 "
        );
        assert_eq!(
            r("m offset -100 smoothed"),
            "m{__appliance_smoothed__=\"\"} offset -100 "
        );
        assert!(rewrite_extended_selectors(r#"m{a="anchored"}"#).is_none());
        // Multi-byte characters next to where "offset" is looked for must not split.
        for q in [
            "éaéé smoothed",
            "oééé",
            "x oééé[1m]",
            "éé anchored",
            "m offsé",
        ] {
            let _ = rewrite_extended_selectors(q);
            let _ = fold_durations(q, QueryFrame::default());
            let _ = rewrite_trim_ops(q);
        }
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
