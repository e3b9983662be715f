//! The PromQL test-script language of Prometheus's `promqltest` (`load`, `clear`, `eval`
//! with `expect` lines), parsed into commands. The conformance runner executes them; rule
//! unit tests (`test rules`) will share the series notation.

use crate::model::histogram::FloatHistogram;
use crate::model::time::Duration;
use crate::model::{stale_nan, Labels};

/// Why a script did not parse; names the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ScriptError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

/// One loaded series: labels and samples (ms, value).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSeries {
    /// Labels (with `__name__`).
    pub labels: Labels,
    /// Samples; `None` values are gaps.
    pub samples: Vec<(i64, f64)>,
    /// The line used native-histogram `{{...}}` notation.
    pub native: bool,
    /// Native histogram samples of the line (ms, histogram).
    pub histograms: Vec<(i64, FloatHistogram)>,
}

/// One value of a series line: a float or a native histogram.
#[derive(Clone, Debug, PartialEq)]
pub enum Point {
    /// A float (stale markers are the stale NaN).
    F(f64),
    /// A native histogram.
    H(FloatHistogram),
}

/// Expands a value sequence that may mix floats and `{{...}}` histograms (`1 2 {{count:1}}x2
/// _ stale`) into per-step points (`None` = gap).
pub fn expand_points(s: &str) -> Result<Vec<Option<Point>>, String> {
    let mut out = Vec::new();
    for tok in top_level_tokens(s) {
        if tok.contains("{{") {
            let hs = crate::model::histogram::expand_sequence(tok).map_err(|e| e.to_string())?;
            out.extend(hs.into_iter().map(|h| h.map(Point::H)));
        } else {
            let (fs, _) = expand_values(tok)?;
            out.extend(fs.into_iter().map(|f| f.map(Point::F)));
        }
    }
    Ok(out)
}

/// Splits at whitespace outside `{{...}}`.
fn top_level_tokens(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let (mut out, mut depth, mut start) = (Vec::new(), 0usize, None);
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"{{") {
            depth += 1;
            start.get_or_insert(i);
            i += 2;
            continue;
        }
        if b[i..].starts_with(b"}}") && depth > 0 {
            depth -= 1;
            i += 2;
            continue;
        }
        if depth == 0 && (b[i] == b' ' || b[i] == b'\t') {
            if let Some(st) = start.take() {
                out.push(&s[st..i]);
            }
        } else {
            start.get_or_insert(i);
        }
        i += 1;
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

/// How an eval is run.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalKind {
    /// `eval instant at <t>`
    Instant(i64),
    /// `eval range from <s> to <e> step <st>`
    Range {
        /// Start (ms).
        start: i64,
        /// End (ms).
        end: i64,
        /// Step (ms).
        step: i64,
    },
}

/// An expected annotation line.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// `expect warn` / `expect info` (any text), `msg:` (exact) or `regex:`.
    Any,
    /// Exact text.
    Msg(String),
    /// Unanchored regex.
    Regex(String),
}

/// One `eval` command.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Eval {
    /// Line of the `eval` command.
    pub line: usize,
    /// The query.
    pub expr: String,
    /// Instant or range.
    pub kind: Option<EvalKind>,
    /// `expect fail` (with an optional message or regex).
    pub fail: Option<Expect>,
    /// `expect warn ...` lines.
    pub warn: Vec<Expect>,
    /// `expect no_warn`.
    pub no_warn: bool,
    /// `expect info ...` lines.
    pub info: Vec<Expect>,
    /// `expect no_info`.
    pub no_info: bool,
    /// `expect ordered`.
    pub ordered: bool,
    /// `expect range vector from a to b step s`.
    pub range_vector: Option<(i64, i64, i64)>,
    /// `expect string "..."`.
    pub string: Option<String>,
    /// A bare number: the expected scalar.
    pub scalar: Option<f64>,
    /// Expected series with one value (or gap) per step.
    pub series: Vec<(Labels, Vec<Option<f64>>)>,
    /// An expected value used native-histogram notation.
    pub native: bool,
    /// Expected series as points (floats or histograms), one per step.
    pub points: Vec<(Labels, Vec<Option<Point>>)>,
}

/// A script command.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `load` / `load_with_nhcb`.
    Load {
        /// Line of the command.
        line: usize,
        /// Series to store.
        series: Vec<LoadSeries>,
        /// `load_with_nhcb` (classic histograms would also be converted).
        nhcb: bool,
    },
    /// `clear`
    Clear,
    /// `eval`
    Eval(Box<Eval>),
}

fn dur(s: &str, line: usize) -> Result<i64, ScriptError> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let ms = Duration::parse(body)
        .map_err(|e| ScriptError {
            line,
            msg: format!("bad duration {s:?}: {e}"),
        })?
        .as_millis();
    Ok(if neg { -ms } else { ms })
}

/// Parses a number as the scripts write them (Go's ParseFloat: also `Inf`, `NaN`, hex).
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (neg, body) = match lower.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, lower.trim_start_matches('+').to_string()),
    };
    let v = if let Some(hex) = body.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()? as f64
    } else {
        match body.as_str() {
            "inf" | "infinity" => f64::INFINITY,
            "nan" => f64::NAN,
            _ => body.parse::<f64>().ok()?,
        }
    };
    Some(if neg { -v } else { v })
}

/// Splits a series line into its identifier and the rest, honouring quotes and braces.
fn split_series(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut depth = 0;
    let mut in_str: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                in_str = None;
            }
        } else if c == b'"' || c == b'\'' || c == b'`' {
            in_str = Some(c);
        } else if c == b'{' {
            depth += 1;
        } else if c == b'}' {
            depth -= 1;
            if depth == 0 {
                return (&s[..=i], s[i + 1..].trim_start());
            }
        } else if depth == 0 && (c == b' ' || c == b'\t') {
            return (&s[..i], s[i..].trim_start());
        }
        i += 1;
    }
    (s, "")
}

/// Parses a series identifier (`name{a="b"}`, `{__name__="x"}`, `{}`) into labels.
pub fn parse_series_id(id: &str) -> Result<Labels, String> {
    if id == "{}" {
        return Ok(Labels::default());
    }
    let expr = promql_parser::parser::parse(id).or_else(|e| {
        // `{}` with only empty matchers does not parse as a selector; fall back to a
        // dummy name so label sets like `{a=""}` still read.
        promql_parser::parser::parse(&format!("__dummy__{id}")).map_err(|_| e)
    })?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(format!("{id:?} is not a series identifier"));
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(n) = vs.name.filter(|n| n != "__dummy__") {
        pairs.push(("__name__".into(), n));
    }
    for m in vs.matchers.matchers {
        pairs.push((m.name, m.value));
    }
    Ok(Labels::from_pairs(pairs))
}

/// Expands a value sequence (`0+10x10 _ stale 5`) into per-step values (`None` = gap,
/// stale markers as the stale NaN). The bool says native-histogram notation was used.
pub fn expand_values(s: &str) -> Result<(Vec<Option<f64>>, bool), String> {
    let mut out = Vec::new();
    let mut native = false;
    let mut rest = s.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            // Native histogram: consume through the matching `}}` and any `xN` suffix.
            native = true;
            let end = rest.find("}}").ok_or("unterminated {{")?;
            let mut tail = &rest[end + 2..];
            let mut count = 1usize;
            if let Some(t) = tail.strip_prefix('+').or_else(|| tail.strip_prefix('-')) {
                let e2 = t.find("}}").ok_or("unterminated {{")?;
                tail = &t[e2 + 2..];
            }
            if let Some(t) = tail.strip_prefix('x') {
                let n: String = t.chars().take_while(char::is_ascii_digit).collect();
                count = n
                    .parse::<usize>()
                    .map_err(|_| format!("bad repeat in {rest:?}"))?
                    + 1;
                tail = &t[n.len()..];
            }
            out.extend(std::iter::repeat_n(None, count));
            rest = tail.trim_start();
            continue;
        }
        let tok_end = rest.find([' ', '\t']).unwrap_or(rest.len());
        let tok = &rest[..tok_end];
        rest = rest[tok_end..].trim_start();
        if tok == "_" {
            out.push(None);
            continue;
        }
        if tok == "stale" {
            out.push(Some(stale_nan()));
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad item {tok:?}"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        // `a`, `axN`, `a+bxN`, `a-bxN`. Hex is not allowed here, so `x` is the repeat marker.
        let (base, times) = match tok.rfind('x') {
            Some(i)
                if !tok[..i].to_ascii_lowercase().ends_with("inf")
                    && tok[i + 1..].chars().all(|c| c.is_ascii_digit())
                    && i + 1 < tok.len() =>
            {
                (
                    &tok[..i],
                    Some(
                        tok[i + 1..]
                            .parse::<usize>()
                            .map_err(|_| format!("bad item {tok:?}"))?,
                    ),
                )
            }
            _ => (tok, None),
        };
        let split = base
            .char_indices()
            .skip(1)
            .find(|(i, c)| {
                (*c == '+' || *c == '-') && !matches!(base.as_bytes()[i - 1], b'e' | b'E')
            })
            .map(|(i, _)| i);
        match (split, times) {
            (Some(i), Some(n)) => {
                let a = parse_number(&base[..i]).ok_or(format!("bad number in {tok:?}"))?;
                let mut d = parse_number(&base[i + 1..]).ok_or(format!("bad number in {tok:?}"))?;
                if &base[i..=i] == "-" {
                    d = -d;
                }
                for k in 0..=n {
                    out.push(Some(a + d * k as f64));
                }
            }
            (None, Some(n)) => {
                let a = parse_number(base).ok_or(format!("bad number in {tok:?}"))?;
                out.extend(std::iter::repeat_n(Some(a), n + 1));
            }
            (_, None) => out.push(Some(parse_number(base).ok_or(format!("bad item {tok:?}"))?)),
        }
    }
    Ok((out, native))
}

fn parse_expect(eval: &mut Eval, rest: &str, line: usize) -> Result<(), ScriptError> {
    let err = |m: &str| ScriptError {
        line,
        msg: m.to_string(),
    };
    let (kind, tail) = rest
        .split_once(' ')
        .map(|(a, b)| (a, b.trim()))
        .unwrap_or((rest, ""));
    let expectation = || -> Expect {
        if let Some(m) = tail.strip_prefix("msg:") {
            Expect::Msg(m.trim().to_string())
        } else if let Some(r) = tail.strip_prefix("regex:") {
            Expect::Regex(r.trim().to_string())
        } else {
            Expect::Any
        }
    };
    match kind {
        "fail" => eval.fail = Some(expectation()),
        "warn" => eval.warn.push(expectation()),
        "info" => eval.info.push(expectation()),
        "no_warn" => eval.no_warn = true,
        "no_info" => eval.no_info = true,
        "ordered" => eval.ordered = true,
        "string" => {
            let t = tail.trim();
            let unq = t
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| t.strip_prefix('`').and_then(|x| x.strip_suffix('`')))
                .ok_or(err("bad expect string"))?;
            eval.string = Some(unq.replace("\\\"", "\"").replace("\\\\", "\\"));
        }
        "range" => {
            // expect range vector from <a> to <b> step <s>
            let w: Vec<&str> = tail.split_whitespace().collect();
            if w.len() != 7 || w[0] != "vector" || w[1] != "from" || w[3] != "to" || w[5] != "step"
            {
                return Err(err("bad expect range vector line"));
            }
            eval.range_vector = Some((dur(w[2], line)?, dur(w[4], line)?, dur(w[6], line)?));
        }
        other => return Err(err(&format!("unknown expect {other:?}"))),
    }
    Ok(())
}

/// Parses a whole script.
pub fn parse_script(text: &str) -> Result<Vec<Command>, ScriptError> {
    let lines: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let t = l.trim();
            (
                i + 1,
                if t.starts_with('#') {
                    String::new()
                } else {
                    t.to_string()
                },
            )
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (ln, l) = &lines[i];
        i += 1;
        if l.is_empty() {
            continue;
        }
        let err = |m: String| ScriptError { line: *ln, msg: m };
        let (word, rest) = l
            .split_once(char::is_whitespace)
            .map(|(a, b)| (a, b.trim()))
            .unwrap_or((l.as_str(), ""));
        match word {
            "clear" => cmds.push(Command::Clear),
            "load" | "load_with_nhcb" => {
                let step = dur(rest, *ln)?;
                let mut series: Vec<LoadSeries> = Vec::new();
                while i < lines.len() && !lines[i].1.is_empty() {
                    let (sl, s) = &lines[i];
                    i += 1;
                    let (id, vals) = split_series(s);
                    if id.ends_with("@st") || vals.starts_with("@st") {
                        // Start-timestamp lines are only in start_timestamps.test; ignored.
                        continue;
                    }
                    let labels =
                        parse_series_id(id).map_err(|e| ScriptError { line: *sl, msg: e })?;
                    let (values, native) =
                        expand_values(vals).map_err(|e| ScriptError { line: *sl, msg: e })?;
                    let mut samples: Vec<(i64, f64)> = values
                        .iter()
                        .enumerate()
                        .filter_map(|(k, v)| v.map(|v| (k as i64 * step, v)))
                        .collect();
                    let mut histograms = Vec::new();
                    if native {
                        samples.clear();
                        let points =
                            expand_points(vals).map_err(|e| ScriptError { line: *sl, msg: e })?;
                        for (k, p) in points.into_iter().enumerate() {
                            match p {
                                Some(Point::F(f)) => samples.push((k as i64 * step, f)),
                                Some(Point::H(h)) => histograms.push((k as i64 * step, h)),
                                None => {}
                            }
                        }
                    }
                    series.retain(|x| x.labels != labels);
                    series.push(LoadSeries {
                        labels,
                        samples,
                        native,
                        histograms,
                    });
                }
                cmds.push(Command::Load {
                    line: *ln,
                    series,
                    nhcb: word == "load_with_nhcb",
                });
            }
            w if w.starts_with("eval") => {
                let mut ev = Eval {
                    line: *ln,
                    ..Default::default()
                };
                match w {
                    "eval" => {}
                    "eval_fail" => ev.fail = Some(Expect::Any),
                    "eval_warn" => ev.warn.push(Expect::Any),
                    "eval_info" => ev.info.push(Expect::Any),
                    "eval_ordered" => ev.ordered = true,
                    _ => return Err(err(format!("unknown command {w:?}"))),
                }
                let parts: Vec<&str> = rest.splitn(2, ' ').collect();
                match parts.first().copied() {
                    Some("instant") => {
                        let r = parts.get(1).copied().unwrap_or("");
                        let r = r.strip_prefix("at ").ok_or(err("expected 'at'".into()))?;
                        let (t, expr) =
                            r.split_once(' ').ok_or(err("missing expression".into()))?;
                        ev.kind = Some(EvalKind::Instant(dur(t, *ln)?));
                        ev.expr = expr.trim().to_string();
                    }
                    Some("range") => {
                        let r = parts.get(1).copied().unwrap_or("");
                        let w: Vec<&str> = r.splitn(7, ' ').collect();
                        if w.len() < 7 || w[0] != "from" || w[2] != "to" || w[4] != "step" {
                            return Err(err("bad range eval".into()));
                        }
                        ev.kind = Some(EvalKind::Range {
                            start: dur(w[1], *ln)?,
                            end: dur(w[3], *ln)?,
                            step: dur(w[5], *ln)?,
                        });
                        ev.expr = w[6].trim().to_string();
                    }
                    _ => return Err(err("expected instant or range".into())),
                }
                while i < lines.len() && !lines[i].1.is_empty() {
                    let (sl, s) = &lines[i];
                    i += 1;
                    if let Some(r) = s.strip_prefix("expect ") {
                        parse_expect(&mut ev, r.trim(), *sl)?;
                        continue;
                    }
                    if let Some(m) = s.strip_prefix("expected_fail_message ") {
                        ev.fail = Some(Expect::Msg(m.trim().into()));
                        break;
                    }
                    if let Some(m) = s.strip_prefix("expected_fail_regexp ") {
                        ev.fail = Some(Expect::Regex(m.trim().into()));
                        break;
                    }
                    if let Some(v) = parse_number(s) {
                        ev.scalar = Some(v);
                        break;
                    }
                    let (id, vals) = split_series(s);
                    let labels =
                        parse_series_id(id).map_err(|e| ScriptError { line: *sl, msg: e })?;
                    let (values, native) =
                        expand_values(vals).map_err(|e| ScriptError { line: *sl, msg: e })?;
                    ev.native |= native;
                    let points = if native {
                        expand_points(vals).map_err(|e| ScriptError { line: *sl, msg: e })?
                    } else {
                        values.iter().map(|v| v.map(Point::F)).collect()
                    };
                    ev.points.push((labels.clone(), points));
                    ev.series.push((labels, values));
                }
                cmds.push(Command::Eval(Box::new(ev)));
            }
            other => return Err(err(format!("unknown command {other:?}"))),
        }
    }
    Ok(cmds)
}

/// Float equality as the upstream harness checks it (relative 1e-6; NaN equals NaN; a stale
/// marker equals only a stale marker).
pub fn almost_equal(a: f64, b: f64) -> bool {
    if crate::model::is_stale_nan(a) || crate::model::is_stale_nan(b) {
        return crate::model::is_stale_nan(a) && crate::model::is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_sequences() {
        let (v, n) = expand_values("0+10x3 _ stale 5 1x2 _x2 -1-1x2 1e3 -Inf").unwrap();
        assert!(!n);
        let s: Vec<String> = v
            .iter()
            .map(|x| match x {
                None => "_".into(),
                Some(f) if crate::model::is_stale_nan(*f) => "stale".into(),
                Some(f) => f.to_string(),
            })
            .collect();
        assert_eq!(
            s.join(" "),
            "0 10 20 30 _ stale 5 1 1 1 _ _ -1 -2 -3 1000 -inf"
        );
        assert!(expand_values("{{schema:0 sum:1}}x2 1").unwrap().1);
    }

    #[test]
    fn sequences_mix_floats_and_histograms() {
        let p = expand_points(
            "1 {{schema:0 count:2 sum:3 buckets:[1 1]}}x1 _ stale {{count:1}}+{{count:1}}x2 2x1",
        )
        .unwrap();
        let s: Vec<String> = p
            .iter()
            .map(|x| match x {
                None => "_".into(),
                Some(Point::F(f)) if crate::model::is_stale_nan(*f) => "stale".into(),
                Some(Point::F(f)) => f.to_string(),
                Some(Point::H(h)) => format!("h{}", h.count),
            })
            .collect();
        assert_eq!(s.join(" "), "1 h2 h2 _ stale h1 h2 h3 2 2");
        let script =
            "load 1m\n  m {{count:4 sum:1}} 7\n\neval instant at 0m m\n  m {{count:4 sum:1}}\n";
        let cmds = parse_script(script).unwrap();
        let Command::Load { series, .. } = &cmds[0] else {
            panic!()
        };
        assert_eq!(series[0].samples, [(60_000, 7.0)]);
        assert_eq!(series[0].histograms.len(), 1);
        assert_eq!(series[0].histograms[0].0, 0);
        let Command::Eval(e) = &cmds[1] else { panic!() };
        assert!(matches!(&e.points[0].1[0], Some(Point::H(h)) if h.count == 4.0));
    }

    #[test]
    fn series_ids() {
        assert_eq!(
            parse_series_id("a{b=\"c d\"}").unwrap().to_string(),
            r#"{__name__="a", b="c d"}"#
        );
        assert_eq!(parse_series_id("{}").unwrap(), Labels::default());
        assert_eq!(
            parse_series_id("{job=\"x\"}").unwrap().to_string(),
            r#"{job="x"}"#
        );
        assert_eq!(split_series("m{a=\"} x\"} 1 2"), ("m{a=\"} x\"}", "1 2"));
    }

    #[test]
    fn scripts() {
        let s = "load 5m\n  m{a=\"1\"} 0+1x2\n\n# c\neval instant at 10m m\n  expect warn msg: x\n  m{a=\"1\"} 2\n\neval range from 0 to 10m step 5m m\n  m{a=\"1\"} 0 1 _\n\neval instant at 0 1+1\n  2\n";
        let c = parse_script(s).unwrap();
        assert_eq!(c.len(), 4);
        let Command::Eval(e) = &c[1] else { panic!() };
        assert_eq!(e.kind, Some(EvalKind::Instant(600_000)));
        assert_eq!(e.warn, vec![Expect::Msg("x".into())]);
        let Command::Eval(e) = &c[3] else { panic!() };
        assert_eq!(e.scalar, Some(2.0));
    }
}
