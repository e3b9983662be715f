//! Runs Prometheus's PromQL test scripts (`../shared/testdata/promql/*.test`) as the upstream
//! harness does (FORMAT.md there), including running every instant eval as a range query.
//!
//! Cases may be skipped only through `tests/testdata/promql_skip.tsv`, which names each case
//! and why: `start-timestamps` (the cases that need per-sample start times stored; see
//! `START_TIMESTAMPS`), `native-histograms`, `experimental` (syntax or features behind
//! Prometheus feature flags) or `not-yet` (work in progress).
//! Listed cases still run (native histograms are loaded as the scripts give them, and compared
//! field by field), and one that passes fails the run until it is taken off the list, so the
//! list only shrinks. `PROMQL_SKIP_REGEN=1` rewrites the list.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use appliance::model::Labels;
use appliance::promql::testlang::{
    almost_equal, parse_script, Command, Eval, EvalKind, Expect, Point,
};

use appliance::promql::{Engine, EngineOptions, QueryResult, Value};
use appliance::storage::{Appendable, Head, HeadOptions};

const SKIP_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/testdata/promql_skip.tsv"
);

fn engine(head: &Head) -> Engine {
    let opts = EngineOptions {
        max_samples: 10_000,
        timeout: std::time::Duration::from_secs(100),
        ..Default::default()
    };
    Engine::new(Arc::new(head.clone()), opts)
}

fn matches(e: &Expect, text: &str) -> bool {
    match e {
        Expect::Any => true,
        Expect::Msg(m) => text.trim() == m.trim(),
        Expect::Regex(r) => regex::Regex::new(r)
            .map(|re| re.is_match(text))
            .unwrap_or(false),
    }
}

fn check_annotations(
    kind: &str,
    want: &[Expect],
    none: bool,
    got: &[String],
) -> Result<(), String> {
    if none && !got.is_empty() {
        return Err(format!("expected no {kind} annotations, got {got:?}"));
    }
    if want.is_empty() {
        return Ok(());
    }
    if got.is_empty() {
        return Err(format!("expected {kind} annotations, got none"));
    }
    if want.iter().all(|w| *w == Expect::Any) {
        return Ok(());
    }
    for w in want {
        if !got.iter().any(|g| matches(w, g)) {
            return Err(format!("expected {kind} {w:?} among {got:?}"));
        }
    }
    for g in got {
        if !want.iter().any(|w| matches(w, g)) {
            return Err(format!("unexpected {kind} annotation {g:?}"));
        }
    }
    Ok(())
}

fn fmt_f(v: f64) -> String {
    if appliance::model::is_stale_nan(v) {
        "stale".into()
    } else {
        format!("{v}")
    }
}

fn fmt_p(p: &Point) -> String {
    match p {
        Point::F(f) => fmt_f(*f),
        Point::H(h) => h.to_string(),
    }
}

/// Floats as the upstream harness compares them; histograms field by field with the same
/// tolerance (the counter-reset hint is not compared, as upstream unless a test sets it).
fn point_eq(a: &Point, b: &Point) -> bool {
    match (a, b) {
        (Point::F(x), Point::F(y)) => almost_equal(*x, *y),
        (Point::H(x), Point::H(y)) => x.equals(y, almost_equal),
        _ => false,
    }
}

/// Compares an instant-vector result (labels -> value) with the expectation.
fn check_vector(e: &Eval, got: &[(Labels, Point)]) -> Result<(), String> {
    let want: Vec<(Labels, Point)> = e
        .points
        .iter()
        .map(|(l, v)| {
            (
                l.clone(),
                v.first().cloned().flatten().unwrap_or(Point::F(f64::NAN)),
            )
        })
        .collect();
    if e.points.iter().any(|(_, v)| v.len() != 1) {
        return Err("instant eval expects exactly one value per series".into());
    }
    let show = |got: &[(Labels, Point)]| {
        got.iter()
            .map(|(l, v)| format!("{l} {}", fmt_p(v)))
            .collect::<Vec<_>>()
    };
    if got.len() != want.len() {
        return Err(format!(
            "expected {} series, got {}: {:?}",
            want.len(),
            got.len(),
            show(got)
        ));
    }
    for (i, (l, v)) in want.iter().enumerate() {
        let found = if e.ordered {
            (got[i].0 == *l).then_some(&got[i].1)
        } else {
            got.iter().find(|(gl, _)| gl == l).map(|x| &x.1)
        };
        match found {
            None => {
                return Err(format!(
                    "missing series {l} (ordered: {}); got {:?}",
                    e.ordered,
                    show(got)
                ))
            }
            Some(g) if !point_eq(g, v) => {
                return Err(format!("{l}: expected {}, got {}", fmt_p(v), fmt_p(g)))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A result series' points, floats and histograms merged in time order.
fn series_points(s: &appliance::promql::Series) -> Vec<(i64, Point)> {
    let mut out: Vec<(i64, Point)> = s.points.iter().map(|p| (p.0, Point::F(p.1))).collect();
    out.extend(
        s.histograms
            .iter()
            .map(|(t, h)| (*t, Point::H((**h).clone()))),
    );
    out.sort_by_key(|p| p.0);
    out
}

fn check_matrix(
    e: &Eval,
    got: &[appliance::promql::Series],
    start: i64,
    step: i64,
) -> Result<(), String> {
    if got.windows(2).any(|w| w[0].metric > w[1].metric) {
        return Err("range result is not sorted by labels".into());
    }
    if got.len() != e.points.len() {
        return Err(format!(
            "expected {} series, got {}: {:?}",
            e.points.len(),
            got.len(),
            got.iter().map(|s| s.metric.to_string()).collect::<Vec<_>>()
        ));
    }
    for (l, vals) in &e.points {
        let Some(s) = got.iter().find(|s| &s.metric == l) else {
            return Err(format!("missing series {l}"));
        };
        let want: Vec<(i64, Point)> = vals
            .iter()
            .enumerate()
            .filter_map(|(k, v)| v.clone().map(|v| (start + k as i64 * step, v)))
            .collect();
        let have = series_points(s);
        if want.len() != have.len()
            || want
                .iter()
                .zip(&have)
                .any(|(a, b)| a.0 != b.0 || !point_eq(&a.1, &b.1))
        {
            return Err(format!(
                "{l}: expected {:?}, got {:?}",
                want.iter().map(|p| (p.0, fmt_p(&p.1))).collect::<Vec<_>>(),
                have.iter().map(|p| (p.0, fmt_p(&p.1))).collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

fn check_result(e: &Eval, r: &QueryResult, range: Option<(i64, i64)>) -> Result<(), String> {
    check_annotations("warn", &e.warn, e.no_warn, &r.warnings)?;
    check_annotations("info", &e.info, e.no_info, &r.infos)?;
    match (&r.value, range) {
        (Value::Matrix(m), Some((start, step))) => check_matrix(e, m, start, step),
        (Value::Matrix(m), None) => match e.range_vector {
            Some((a, _, s)) => check_matrix(e, m, a, s),
            None if m.is_empty() && e.series.is_empty() && e.scalar.is_none() => Ok(()),
            None => Err("unexpected range vector result".into()),
        },
        (Value::Scalar(f), None) => match e.scalar {
            Some(w) if almost_equal(*f, w) => Ok(()),
            Some(w) => Err(format!("expected scalar {w}, got {f}")),
            None => Err(format!("unexpected scalar {f}")),
        },
        (Value::String(s), None) => match &e.string {
            Some(w) if w == s => Ok(()),
            _ => Err(format!("unexpected string {s:?}")),
        },
        (Value::Vector(v), None) => {
            if e.scalar.is_some() || e.string.is_some() || e.range_vector.is_some() {
                return Err("expected another result type, got a vector".into());
            }
            let got: Vec<(Labels, Point)> = v
                .iter()
                .map(|s| {
                    let p = match &s.h {
                        Some(h) => Point::H((**h).clone()),
                        None => Point::F(s.f),
                    };
                    (s.metric.clone(), p)
                })
                .collect();
            check_vector(e, &got)
        }
        (other, _) => Err(format!("unexpected result type {}", other.type_name())),
    }
}

/// Upstream's extra check: an instant eval as a range query over t-1m..t+1m must give the
/// same result at its middle step.
fn check_as_range(eng: &Engine, e: &Eval, t: i64) -> Result<(), String> {
    let r = eng
        .range(&e.expr, t - 60_000, t + 60_000, 60_000)
        .map_err(|err| format!("as range query: {err}"))?;
    let Value::Matrix(m) = &r.value else {
        return Err("range query did not return a matrix".into());
    };
    if let Some(w) = e.scalar {
        let p = m.first().and_then(|s| s.points.iter().find(|p| p.0 == t));
        return match p {
            Some(p) if almost_equal(p.1, w) => Ok(()),
            other => Err(format!(
                "as range query: expected scalar {w} at middle step, got {other:?}"
            )),
        };
    }
    let got: Vec<(Labels, Point)> = m
        .iter()
        .filter_map(|s| {
            series_points(s)
                .into_iter()
                .find(|p| p.0 == t)
                .map(|p| (s.metric.clone(), p.1))
        })
        .collect();
    let mut plain = e.clone();
    plain.ordered = false;
    check_vector(&plain, &got).map_err(|err| format!("as range query: {err}"))
}

/// Adds `@ t` to every selector and subquery that has none (not inside one that has), as the
/// upstream harness does for its @-invariance check.
fn add_at(e: &mut promql_parser::parser::Expr, at: &promql_parser::parser::AtModifier) {
    use promql_parser::parser::Expr as E;
    match e {
        E::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(at.clone()),
        E::MatrixSelector(m) if m.vs.at.is_none() => m.vs.at = Some(at.clone()),
        // Pre-order, as upstream: the subquery gets the @ and what is inside it is then "inside a
        // subquery that already has @", so it is left alone.
        E::Subquery(sq) if sq.at.is_none() => sq.at = Some(at.clone()),
        E::Aggregate(a) => {
            add_at(&mut a.expr, at);
            if let Some(p) = a.param.as_mut() {
                add_at(p, at);
            }
        }
        E::Unary(u) => add_at(&mut u.expr, at),
        E::Binary(b) => {
            add_at(&mut b.lhs, at);
            add_at(&mut b.rhs, at);
        }
        E::Paren(p) => add_at(&mut p.expr, at),
        E::Call(c) => {
            for a in c.args.args.iter_mut() {
                add_at(a, at);
            }
        }
        _ => {}
    }
}

fn at_modifier(ms: i64) -> promql_parser::parser::AtModifier {
    let t = if ms >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_millis((-ms) as u64)
    };
    promql_parser::parser::AtModifier::At(t)
}

/// Upstream's @-invariance check: with `@ t` on every selector, evaluating at other times
/// must give the same result.
fn check_at_invariance(eng: &Engine, e: &Eval, t: i64) -> Result<(), String> {
    const TIME_FNS: [&str; 15] = [
        "time(",
        "timestamp(",
        "day_of_month(",
        "day_of_week(",
        "day_of_year(",
        "days_in_month(",
        "hour(",
        "minute(",
        "month(",
        "year(",
        "predict_linear(",
        "start(",
        "end(",
        "range(",
        "step(",
    ];
    if TIME_FNS.iter().any(|f| e.expr.contains(f)) {
        return Ok(());
    }
    let Ok(mut expr) = promql_parser::parser::parse(&e.expr) else {
        return Ok(());
    };
    add_at(&mut expr, &at_modifier(t));
    let text = expr.to_string();
    let times: Vec<i64> = if t == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * t, 0, t / 5, t, 10 * t]
    };
    for at in times {
        let mut probe = e.clone();
        probe.expr = text.clone();
        probe.kind = Some(EvalKind::Instant(at));
        run_eval_once(eng, &probe)
            .map_err(|err| format!("with @ {t}ms, evaluated at {at}ms ({text}): {err}"))?;
    }
    Ok(())
}

fn run_eval(eng: &Engine, e: &Eval) -> Result<(), String> {
    run_eval_once(eng, e)?;
    if let (Some(EvalKind::Instant(t)), None) = (e.kind.clone(), &e.fail) {
        if !e.ordered && e.range_vector.is_none() && e.string.is_none() {
            check_at_invariance(eng, e, t)?;
        }
    }
    Ok(())
}

fn run_eval_once(eng: &Engine, e: &Eval) -> Result<(), String> {
    let (res, range) = match e.kind {
        Some(EvalKind::Instant(t)) => {
            let t = e.range_vector.map(|(_, b, _)| b).unwrap_or(t);
            (eng.instant(&e.expr, t), None)
        }
        Some(EvalKind::Range { start, end, step }) => {
            (eng.range(&e.expr, start, end, step), Some((start, step)))
        }
        None => return Err("eval without kind".into()),
    };
    match (&e.fail, res) {
        (Some(f), Err(err)) => {
            if matches(f, &err.to_string()) {
                Ok(())
            } else {
                Err(format!("expected failure {f:?}, got {err}"))
            }
        }
        (Some(_), Ok(r)) => Err(format!("expected failure, got {:?}", r.value.type_name())),
        (None, Err(err)) => Err(format!("unexpected error: {err}")),
        (None, Ok(r)) => {
            check_result(e, &r, range)?;
            if let Some(EvalKind::Instant(t)) = e.kind {
                let ctx_fn = ["start()", "end()", "range()", "step()"]
                    .iter()
                    .any(|f| e.expr.contains(f));
                if !e.ordered && e.range_vector.is_none() && e.string.is_none() && !ctx_fn {
                    check_as_range(eng, e, t)?;
                }
            }
            Ok(())
        }
    }
}

/// Why a case may be listed. Start timestamps come first: those cases (native histograms
/// among them) need each sample's start time stored, which Prometheus added behind a feature
/// flag (prometheus/proposals#60, PromQL use in prometheus/prometheus#18344) and the
/// appliance's storage does not keep.
const START_TIMESTAMPS: &str =
    "start-timestamps: needs per-sample start times in storage (prometheus/proposals#60, prometheus/prometheus#18344)";

fn classify(flags: &str) -> Option<&'static str> {
    if flags.split(',').any(|f| f == "start-timestamps") {
        return Some(START_TIMESTAMPS);
    }
    if flags.split(',').any(|f| f == "native-histograms") {
        return Some("native-histograms");
    }
    let experimental = [
        "duration-expr",
        "anchored/smoothed",
        "fill-modifier",
        "type-unit-labels",
        "start-timestamps",
        "query-ctx-func",
    ];
    if flags.split(',').any(|f| experimental.contains(&f)) {
        return Some("experimental");
    }
    None
}

#[test]
fn promql_test_scripts() {
    let Some(dir) = appliance::testsupport::shared_testdata("promql") else {
        return;
    };
    let regen = std::env::var("PROMQL_SKIP_REGEN").is_ok();
    let index = std::fs::read_to_string(dir.join("EVAL-INDEX.tsv")).unwrap();
    let mut flags: HashMap<(String, usize), String> = HashMap::new();
    for l in index.lines().skip(1) {
        let f: Vec<&str> = l.split('\t').collect();
        flags.insert((f[0].to_string(), f[1].parse().unwrap()), f[4].to_string());
    }
    let mut skip: HashMap<(String, usize), String> = HashMap::new();
    if !regen {
        for l in std::fs::read_to_string(SKIP_FILE)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let f: Vec<&str> = l.split('\t').collect();
            skip.insert((f[0].to_string(), f[1].parse().unwrap()), f[2].to_string());
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().map(|x| x == "test").unwrap_or(false))
        .collect();
    files.sort();
    let mut report: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut new_skips: Vec<(String, usize, String)> = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let cmds = parse_script(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut head = Head::new(HeadOptions::default());
        let counts = report.entry(name.clone()).or_default();
        for c in cmds {
            match c {
                Command::Clear => head = Head::new(HeadOptions::default()),
                Command::Load { series, nhcb, .. } => {
                    let mut a = head.appender();
                    if nhcb {
                        let (converted, _) = appliance::model::nhcb::convert_series(
                            series.iter().map(|s| (&s.labels, &s.samples[..])),
                        );
                        for (l, hs) in converted {
                            for (t, h) in hs {
                                let _ = a.append_histogram(&l, t, std::sync::Arc::new(h));
                            }
                        }
                    }
                    for s in &series {
                        // In time order, floats and histograms interleaved: a series may
                        // change kind, and storage refuses samples older than its newest.
                        // One commit applies floats before histograms, so a series of both
                        // kinds commits sample by sample.
                        let mixed = !s.samples.is_empty() && !s.histograms.is_empty();
                        if mixed {
                            a.commit().unwrap();
                            a = head.appender();
                        }
                        let (mut i, mut j) = (0, 0);
                        while i < s.samples.len() || j < s.histograms.len() {
                            let float_next = j >= s.histograms.len()
                                || (i < s.samples.len() && s.samples[i].0 <= s.histograms[j].0);
                            if float_next {
                                let (t, v) = s.samples[i];
                                a.append(&s.labels, t, v).unwrap();
                                i += 1;
                                if mixed {
                                    a.commit().unwrap();
                                    a = head.appender();
                                }
                            } else {
                                let (t, h) = &s.histograms[j];
                                let _ = a.append_histogram(
                                    &s.labels,
                                    *t,
                                    std::sync::Arc::new(h.clone()),
                                );
                                j += 1;
                                if mixed {
                                    a.commit().unwrap();
                                    a = head.appender();
                                }
                            }
                        }
                    }
                    a.commit().unwrap();
                }
                Command::Eval(e) => {
                    let key = (name.clone(), e.line);
                    let class = classify(flags.get(&key).map(String::as_str).unwrap_or("core"));
                    // Every case runs; a failure must be listed, and a listed case that
                    // passes must come off the list, so the list only ever shrinks.
                    let eng = engine(&head);
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_eval(&eng, &e)
                    }))
                    .unwrap_or_else(|_| Err("panicked".into()));
                    match (outcome, skip.get(&key).map(String::as_str)) {
                        (Ok(()), Some(reason)) => {
                            failures.push(format!("{name}:{} ({reason}) now passes; remove it from promql_skip.tsv (PROMQL_SKIP_REGEN=1)", e.line))
                        }
                        (Ok(()), None) => counts.0 += 1,
                        (Err(msg), Some(reason)) => {
                            counts.2 += 1;
                            // A triage aid: why each listed case still fails.
                            if std::env::var("PROMQL_SHOW_SKIPPED").is_ok() {
                                println!("SKIPPED {name}:{} ({reason}): {}\n    {msg}", e.line, e.expr);
                            }
                        }
                        (Err(msg), None) => {
                            counts.1 += 1;
                            if regen {
                                new_skips.push((name.clone(), e.line, class.unwrap_or("not-yet").to_string()));
                            } else {
                                failures.push(format!("{name}:{}: {}\n    {msg}", e.line, e.expr));
                            }
                        }
                    }
                }
            }
        }
    }
    println!(
        "{:<28} {:>6} {:>6} {:>8}",
        "file", "pass", "fail", "skipped"
    );
    for (f, (p, fl, s)) in &report {
        println!("{f:<28} {p:>6} {fl:>6} {s:>8}");
    }
    if regen {
        let mut out = String::from("# PromQL conformance cases not run, with why (see tests/promql_conformance.rs).\n# file\tline\treason\n");
        for (f, l, r) in &new_skips {
            out.push_str(&format!("{f}\t{l}\t{r}\n"));
        }
        std::fs::write(SKIP_FILE, out).unwrap();
        return;
    }
    assert!(
        failures.is_empty(),
        "{} conformance failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
