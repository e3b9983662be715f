//! `appliance test rules`: Prometheus's rule unit-test files (`promtool test rules`), run the
//! way promtool runs them: input series loaded lazily tick by tick, every group evaluated at
//! each `evaluation_interval`, alert checks after the tick at or before their time, PromQL
//! checks at the end, exact (or 1-ULP fuzzy) float comparison.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::file::{self, ParseOptions};
use super::group::{AlertSink, AlertState, EvalContext, Group, RuleEngine};
use crate::model::histogram::FloatHistogram;
use crate::model::time::Duration;
use crate::model::Labels;
use crate::storage::{Appendable, Querier};

/// A fresh store and engine for one test group.
pub struct TestEnv {
    /// Where inputs and rule results go.
    pub storage: Arc<dyn Appendable>,
    /// Reads for `for` restore (unused in tests, which start restored).
    pub querier: Arc<dyn Querier>,
    /// PromQL over that store.
    pub engine: Arc<dyn RuleEngine>,
}

/// Builds a [`TestEnv`]; the argument is the default subquery step (the evaluation interval).
pub type MakeEnv<'a> = &'a dyn Fn(i64) -> TestEnv;

/// Command-line options of `test rules`.
#[derive(Clone, Debug, Default)]
pub struct TestOptions {
    /// `--run`: only test groups whose name matches one of these (unanchored).
    pub run: Vec<String>,
    /// `--ignore-unknown-fields` for the rule files.
    pub ignore_unknown_fields: bool,
    /// `--junit FILE`: also write a JUnit XML report (a suite per file, a case per group).
    pub junit: Option<PathBuf>,
}

/// What one file's run found: per test group, its name and failures; or a file-level error.
struct FileReport {
    cases: Vec<(String, Vec<String>)>,
    error: Option<Vec<String>>,
    seconds: f64,
}

impl FileReport {
    fn failures(&self) -> Vec<String> {
        if let Some(e) = &self.error {
            return e.clone();
        }
        let mut out = Vec::new();
        for (name, errs) in &self.cases {
            if !errs.is_empty() {
                out.push(format!("    name: {name},"));
                out.extend(errs.iter().cloned());
            }
        }
        out
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn junit(files: &[PathBuf], reports: &[FileReport]) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (f, r) in files.iter().zip(reports) {
        let failures =
            r.cases.iter().filter(|c| !c.1.is_empty()).count() + usize::from(r.error.is_some());
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\">\n",
            xml(&f.display().to_string()),
            r.cases.len().max(usize::from(r.error.is_some())),
            r.seconds
        ));
        if let Some(e) = &r.error {
            x.push_str(&format!(
                "    <testcase name=\"{}\"><failure message=\"{}\"></failure></testcase>\n",
                xml(&f.display().to_string()),
                xml(e.join("\n").trim())
            ));
        }
        for (name, errs) in &r.cases {
            if errs.is_empty() {
                x.push_str(&format!(
                    "    <testcase name=\"{}\"></testcase>\n",
                    xml(name)
                ));
            } else {
                x.push_str(&format!(
                    "    <testcase name=\"{}\"><failure message=\"{}\"></failure></testcase>\n",
                    xml(name),
                    xml(errs.join("\n").trim())
                ));
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<Duration>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    fuzzy_compare: bool,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<Duration>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    start_timestamp: Option<StartTime>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StartTime {
    Num(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    #[serde(default)]
    eval_time: Duration,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTest {
    expr: String,
    #[serde(default)]
    eval_time: Duration,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    histogram: String,
}

struct NoSink;
impl AlertSink for NoSink {
    fn send(&self, _: &str, _: &[super::group::Alert]) {}
}

/// Runs every file; prints promtool's report to `out` / `err`. Returns whether all passed.
pub fn run_files(
    files: &[PathBuf],
    opts: &TestOptions,
    make_env: MakeEnv,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> bool {
    let mut ok = true;
    let mut reports = Vec::new();
    for f in files {
        let _ = writeln!(out, "Unit Testing:  {}", f.display());
        let started = std::time::Instant::now();
        let mut r = run_file(f, opts, make_env);
        r.seconds = started.elapsed().as_secs_f64();
        let errs = r.failures();
        if errs.is_empty() {
            let _ = writeln!(out, "  SUCCESS\n");
        } else {
            ok = false;
            let _ = writeln!(err, "  FAILED:");
            for e in errs {
                let _ = writeln!(err, "{e}");
            }
            let _ = writeln!(err);
        }
        reports.push(r);
    }
    if let Some(path) = &opts.junit {
        if let Err(e) = std::fs::write(path, junit(files, &reports)) {
            let _ = writeln!(err, "writing the JUnit report {}: {e}", path.display());
            ok = false;
        }
    }
    ok
}

fn run_file(path: &Path, opts: &TestOptions, make_env: MakeEnv) -> FileReport {
    let mut cases = Vec::new();
    match run_file_cases(path, opts, make_env, &mut cases) {
        Ok(()) => FileReport {
            cases,
            error: None,
            seconds: 0.0,
        },
        Err(e) => FileReport {
            cases,
            error: Some(e),
            seconds: 0.0,
        },
    }
}

fn run_file_cases(
    path: &Path,
    opts: &TestOptions,
    make_env: MakeEnv,
    cases: &mut Vec<(String, Vec<String>)>,
) -> Result<(), Vec<String>> {
    let text = crate::model::files::read_config_file(path).map_err(|e| vec![format!("    {e}")])?;
    let tf: TestFile = serde_saphyr::from_str(&text).map_err(|e| {
        vec![format!(
            "    {}",
            crate::model::yaml::first_line(&e.to_string())
        )]
    })?;
    let eval_ms = tf
        .evaluation_interval
        .map(|d| d.as_millis())
        .filter(|d| *d > 0)
        .unwrap_or(60_000);
    let mut seen = std::collections::HashSet::new();
    for g in &tf.group_eval_order {
        if !seen.insert(g) {
            return Err(vec![format!(
                "    group name repeated in evaluation order: {g}"
            )]);
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rule_files = Vec::new();
    for pat in &tf.rule_files {
        let full = base.join(pat);
        let matches = crate::model::files::glob_paths(&full);
        if matches.is_empty() {
            eprintln!("  WARNING: no file match pattern {pat}");
        }
        rule_files.extend(matches);
    }
    let run_re = if opts.run.is_empty() {
        None
    } else {
        Some(regex::Regex::new(&opts.run.join("|")).map_err(|e| vec![format!("    --run: {e}")])?)
    };
    for (i, tg) in tf.tests.iter().enumerate() {
        if let Some(re) = &run_re {
            if !re.is_match(&tg.name) {
                continue;
            }
        }
        let name = if tg.name.is_empty() {
            format!("unnamed#{i}")
        } else {
            tg.name.clone()
        };
        let errs = run_group(tg, &tf, eval_ms, &rule_files, opts, make_env).err();
        cases.push((name, errs.unwrap_or_default()));
    }
    Ok(())
}

fn start_ms(s: &Option<StartTime>) -> Result<i64, String> {
    match s {
        None => Ok(0),
        Some(StartTime::Num(n)) => Ok((n * 1000.0).round() as i64),
        Some(StartTime::Text(t)) => {
            if let Ok(n) = t.parse::<f64>() {
                return Ok((n * 1000.0).round() as i64);
            }
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_millis())
                .map_err(|e| format!("start_timestamp {t:?}: {e}"))
        }
    }
}

fn run_group(
    tg: &TestGroup,
    tf: &TestFile,
    eval_ms: i64,
    rule_files: &[PathBuf],
    opts: &TestOptions,
    make_env: MakeEnv,
) -> Result<(), Vec<String>> {
    let start = start_ms(&tg.start_timestamp).map_err(|e| vec![format!("    {e}")])?;
    let interval = tg
        .interval
        .map(|d| d.as_millis())
        .filter(|d| *d > 0)
        .unwrap_or(eval_ms);
    // Inputs, in time order, loaded as evaluation reaches them.
    let mut inputs: Vec<(i64, Labels, Input)> = Vec::new();
    for s in &tg.input_series {
        let labels = crate::promql::testlang::parse_series_id(s.series.trim()).map_err(|e| {
            vec![format!(
                "    could not parse input series {:?}: {e}",
                s.series
            )]
        })?;
        if s.values.contains("{{") {
            let hs = crate::model::histogram::expand_sequence(&s.values)
                .map_err(|e| vec![format!("    could not parse values of {:?}: {e}", s.series)])?;
            for (k, h) in hs.into_iter().enumerate() {
                if let Some(h) = h {
                    inputs.push((
                        start + k as i64 * interval,
                        labels.clone(),
                        Input::H(Arc::new(h)),
                    ));
                }
            }
            continue;
        }
        let (vals, _) = crate::promql::testlang::expand_values(&s.values)
            .map_err(|e| vec![format!("    could not parse values of {:?}: {e}", s.series)])?;
        for (k, v) in vals.into_iter().enumerate() {
            if let Some(v) = v {
                inputs.push((start + k as i64 * interval, labels.clone(), Input::F(v)));
            }
        }
    }
    inputs.sort_by_key(|x| x.0);
    let env = make_env(eval_ms);
    let mut groups = Vec::new();
    for f in rule_files {
        let parsed = file::load(
            f,
            ParseOptions {
                ignore_unknown_fields: opts.ignore_unknown_fields,
                ..Default::default()
            },
        )
        .map_err(|e| e.0.iter().map(|l| format!("    {l}")).collect::<Vec<_>>())?;
        for g in &parsed.groups {
            let mut grp = Group::new(g, &f.display().to_string(), interval);
            grp.mark_restored();
            groups.push(grp);
        }
    }
    // Listed groups first, in the listed order; the rest after, in file order.
    groups.sort_by_key(|g| {
        tf.group_eval_order
            .iter()
            .position(|n| *n == g.name)
            .unwrap_or(usize::MAX)
    });
    let ctx = EvalContext {
        engine: env.engine.clone(),
        storage: env.storage.clone(),
        querier: env.querier.clone(),
        sink: Arc::new(NoSink),
        external_labels: tg.external_labels.clone(),
        external_url: tg.external_url.clone(),
        resend_delay_ms: 60_000,
        outage_tolerance_ms: 3_600_000,
        for_grace_period_ms: 600_000,
    };
    let mut alert_tests: Vec<&AlertTest> = tg.alert_rule_test.iter().collect();
    alert_tests.sort_by_key(|a| a.eval_time.as_millis());
    let max_t = tg
        .alert_rule_test
        .iter()
        .map(|a| a.eval_time.as_millis())
        .chain(tg.promql_expr_test.iter().map(|p| p.eval_time.as_millis()))
        .max()
        .unwrap_or(0);
    let mut errs = Vec::new();
    let mut next_input = 0;
    let mut next_alert = 0;
    let mut ts = start;
    while ts <= start + max_t {
        let mut app = env.storage.appender();
        while next_input < inputs.len() && inputs[next_input].0 <= ts {
            let (t, l, v) = &inputs[next_input];
            append_input(app.as_mut(), l, *t, v);
            next_input += 1;
        }
        if let Err(e) = app.commit() {
            return Err(vec![format!("    loading input series: {e}")]);
        }
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            for e in g.eval(ts, &ctx) {
                eval_errs.push(format!("    {e}, time: {}", fmt_dur(ts - start)));
            }
        }
        if !eval_errs.is_empty() {
            return Err(eval_errs);
        }
        while next_alert < alert_tests.len() {
            let at = alert_tests[next_alert];
            let e = start + at.eval_time.as_millis();
            if !(ts <= e && e < ts + eval_ms) {
                if e < ts {
                    next_alert += 1;
                    continue;
                }
                break;
            }
            next_alert += 1;
            if let Err(e) = check_alerts(at, &groups) {
                errs.push(e);
            }
        }
        ts += eval_ms;
    }
    // Alert checks whose time the loop never reached (an eval_time before the first tick
    // cannot happen; after the last is impossible by construction).
    for at in alert_tests.iter().skip(next_alert) {
        if let Err(e) = check_alerts(at, &groups) {
            errs.push(e);
        }
    }
    // Everything left is loaded before the PromQL checks.
    let mut app = env.storage.appender();
    for (t, l, v) in inputs.iter().skip(next_input) {
        append_input(app.as_mut(), l, *t, v);
    }
    let _ = app.commit();
    for pt in &tg.promql_expr_test {
        if let Err(e) = check_promql(pt, start, tf.fuzzy_compare, env.engine.as_ref()) {
            errs.push(e);
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// An input sample: a float or a native histogram.
enum Input {
    F(f64),
    H(Arc<FloatHistogram>),
}

fn append_input(app: &mut dyn crate::storage::Appender, l: &Labels, t: i64, v: &Input) {
    let _ = match v {
        Input::F(f) => app.append(l, t, *f).map(|_| ()),
        Input::H(h) => app.append_histogram(l, t, h.clone()).map(|_| ()),
    };
}

fn fmt_dur(ms: i64) -> String {
    crate::model::time::Duration::from_millis(ms.max(0) as u64).to_string()
}

type AlertKey = (Vec<(String, String)>, Vec<(String, String)>);

fn check_alerts(at: &AlertTest, groups: &[Group]) -> Result<(), String> {
    if at.alertname.is_empty() {
        return Err("    alertname is missing in an alert_rule_test".into());
    }
    let mut got: Vec<AlertKey> = Vec::new();
    for g in groups {
        for r in &g.rules {
            if r.def.alert != at.alertname {
                continue;
            }
            for a in r.alerts() {
                if a.state != AlertState::Firing {
                    continue;
                }
                got.push((
                    a.labels
                        .iter()
                        .map(|l| (l.name.to_string(), l.value.to_string()))
                        .collect(),
                    a.annotations.clone().into_iter().collect(),
                ));
            }
        }
    }
    let mut exp: Vec<AlertKey> = at
        .exp_alerts
        .iter()
        .map(|e| {
            let mut l = e.exp_labels.clone();
            l.insert("alertname".into(), at.alertname.clone());
            (
                l.into_iter().collect(),
                e.exp_annotations.clone().into_iter().collect(),
            )
        })
        .collect();
    got.sort();
    exp.sort();
    if got == exp {
        return Ok(());
    }
    let show = |v: &[AlertKey]| {
        let items: Vec<String> = v
            .iter()
            .map(|(l, a)| {
                let ls: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                let an: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                format!(
                    "{{Labels:{{{}}} Annotations:{{{}}}}}",
                    ls.join(", "),
                    an.join(", ")
                )
            })
            .collect();
        format!("[{}]", items.join(" "))
    };
    Err(format!(
        "    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        at.alertname,
        fmt_dur(at.eval_time.as_millis()),
        show(&exp),
        show(&got)
    ))
}

/// Equal, or (fuzzy) one representable float apart.
fn float_eq(a: f64, b: f64, fuzzy: bool) -> bool {
    if a == b {
        return true;
    }
    if crate::model::is_stale_nan(a) && crate::model::is_stale_nan(b) {
        return true;
    }
    fuzzy && a.is_finite() && b.is_finite() && (next_up(a) == b || next_up(b) == a)
}

fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let bits = x.to_bits();
    f64::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

fn check_promql(
    pt: &PromqlTest,
    start: i64,
    fuzzy: bool,
    engine: &dyn RuleEngine,
) -> Result<(), String> {
    let t = start + pt.eval_time.as_millis();
    let fail = |e: String| {
        format!(
            "    expr: {:?}, time: {}, err: {e}",
            pt.expr,
            fmt_dur(pt.eval_time.as_millis())
        )
    };
    let mut got = engine.query(&pt.expr, t).map_err(fail)?;
    let mut exp: Vec<super::group::RuleSample> = Vec::new();
    for s in &pt.exp_samples {
        let labels = if s.labels.trim().is_empty() {
            Labels::default()
        } else {
            crate::promql::testlang::parse_series_id(s.labels.trim()).map_err(|e| {
                fail(format!(
                    "could not parse expected labels {:?}: {e}",
                    s.labels
                ))
            })?
        };
        if s.histogram.is_empty() {
            exp.push((labels, s.value.unwrap_or(0.0), None));
        } else {
            let h = FloatHistogram::parse(&s.histogram).map_err(|e| fail(e.to_string()))?;
            exp.push((labels, 0.0, Some(Arc::new(h))));
        }
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    // Histograms compare through their canonical rendering (the counter-reset hint included),
    // as promtool compares them.
    let same_value = |g: &super::group::RuleSample, e: &super::group::RuleSample| match (&g.2, &e.2)
    {
        (None, None) => float_eq(g.1, e.1, fuzzy),
        (Some(a), Some(b)) => a.to_string() == b.to_string(),
        _ => false,
    };
    let same = got.len() == exp.len()
        && got
            .iter()
            .zip(&exp)
            .all(|(g, e)| g.0 == e.0 && same_value(g, e));
    if same {
        return Ok(());
    }
    let show = |v: &[super::group::RuleSample]| {
        let items: Vec<String> = v
            .iter()
            .map(|(l, f, h)| match h {
                Some(h) => format!("{{Labels:{l} Histogram:{h}}}"),
                None => format!("{{Labels:{l} Value:{}}}", super::template::go_g(*f, None)),
            })
            .collect();
        format!("[{}]", items.join(" "))
    };
    Err(format!(
        "    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
        pt.expr,
        fmt_dur(pt.eval_time.as_millis()),
        show(&exp),
        show(&got)
    ))
}
