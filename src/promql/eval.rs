//! The evaluator: walks the AST once per evaluation step. Selector data is loaded from storage
//! once per query (and widened on demand), then looked up per step by binary search.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::{EngineOptions, PromqlError, QueryResult, Sample, Series, Value};
use crate::model::histogram::FloatHistogram;
use crate::model::{is_stale_nan, Labels, MatchOp, Matcher, METRIC_NAME};
use crate::storage::Querier;

/// Parses a query; the error text is the parser's, as Prometheus returns it for `bad_data`.
/// The caller has bounded the query's shape (`shape::nesting`) and runs this where its depth
/// fits; `budget` bounds the search for a syntax error's position.
pub(super) fn parse(q: &str, budget: std::time::Duration) -> Result<Expr, PromqlError> {
    parse_in(q, budget, super::syntax::QueryFrame::default())
}

/// [`parse`] for a query evaluated over `frame` (duration expressions may use its step).
pub(super) fn parse_in(
    q: &str,
    budget: std::time::Duration,
    frame: super::syntax::QueryFrame,
) -> Result<Expr, PromqlError> {
    let folded = super::syntax::fold_durations(q, frame).map_err(PromqlError::Parse)?;
    let q = folded.as_deref().unwrap_or(q);
    let extended = super::syntax::rewrite_extended_selectors(q);
    let q = extended.as_deref().unwrap_or(q);
    // The position is a courtesy: it never costs more than half a second of CPU, whatever
    // the budget (a long query with a late mistake could otherwise burn its whole timeout).
    let deadline = Instant::now() + budget.min(std::time::Duration::from_millis(500));
    let fixed = go_byte_escapes(q);
    let q = fixed.as_deref().unwrap_or(q);
    if let Some((text, ops)) = super::syntax::rewrite_trim_ops(q) {
        if let Ok(mut e) = promql_parser::parser::parse(&text) {
            super::syntax::mark_trim_ops(&mut e, &ops);
            return Ok(e);
        }
    }
    match promql_parser::parser::parse(q) {
        Ok(e) => Ok(e),
        Err(err) => {
            // The parser crate refuses label selectors whose matchers all match the empty
            // string, even where Prometheus allows them: as `info()`'s second argument. Mark
            // such selectors with a sentinel matcher that `info()` ignores, and try again.
            if err.contains("at least one non-empty matcher") {
                if let Some(rewritten) = mark_info_selectors(q) {
                    if let Ok(e) = promql_parser::parser::parse(&rewritten) {
                        return Ok(e);
                    }
                }
            }
            // Prometheus prefixes syntax errors with `line:col:`; the parser crate does not.
            if err == "invalid promql query" {
                return Err(PromqlError::Parse(match locate_syntax_error(q, deadline) {
                    Some((line, col, tok)) => {
                        format!("{line}:{col}: parse error: unexpected {tok:?}")
                    }
                    None if Instant::now() > deadline => {
                        "parse error: invalid query (its position was not searched further, \
                         the query is too long)"
                            .to_string()
                    }
                    None => {
                        let (line, col) = line_col(q, q.trim_end().len());
                        format!("{line}:{col}: parse error: unexpected end of input")
                    }
                }));
            }
            if err.starts_with("unexpected") && !err.contains("end of input") {
                if let Some((line, col, _)) = locate_syntax_error(q, deadline) {
                    return Err(PromqlError::Parse(format!(
                        "{line}:{col}: parse error: {err}"
                    )));
                }
            }
            Err(PromqlError::Parse(err))
        }
    }
}

/// Byte offsets where a token starts (identifiers, numbers and durations, strings, operators,
/// brackets), for [`locate_syntax_error`].
fn token_starts(q: &str) -> Vec<usize> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        out.push(i);
        if c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'.' || c >= 0x80 {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || matches!(b[i], b'_' | b':' | b'.')
                    || b[i] >= 0x80)
            {
                i += 1;
            }
        } else if matches!(c, b'"' | b'\'' | b'`') {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' && c != b'`' { 2 } else { 1 };
            }
            i += 1;
        } else if i + 1 < b.len()
            && matches!(&b[i..i + 2], b"=~" | b"!~" | b"!=" | b"==" | b"<=" | b">=")
        {
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// The parser crate reports most syntax errors only as "invalid promql query". Find where the
/// query stops being the start of any valid query: the first token after which no simple
/// completion (an operand, a grouping, a matcher value, a duration, then the open brackets
/// closed) parses: that token's line, column and text; None when every prefix could go on.
fn locate_syntax_error(q: &str, deadline: Instant) -> Option<(usize, usize, String)> {
    const FILLERS: &[&str] = &[
        "",
        " x",
        " 1",
        "(x)",
        " (a) (x)",
        "=\"b\"",
        "\"b\"",
        "5m",
        " 5m",
        "[5m]",
        ":]",
        "5m:]",
        // Function arguments of each shape.
        " x[5m]",
        " 1, x",
        " 1, x[5m]",
        " x[5m], 1",
        " x, 1, 2",
        " \"a\", x",
        " x, \"a\", \"b\", \"c\"",
        " x, \"a\", \"b\", \"c\", \"d\"",
    ];
    let completable = |prefix: &str| {
        let mut closers = Vec::new();
        let mut quote = None;
        let mut esc = false;
        for ch in prefix.chars() {
            if let Some(qc) = quote {
                if esc {
                    esc = false;
                } else if ch == '\\' && qc != '`' {
                    esc = true;
                } else if ch == qc {
                    quote = None;
                }
                continue;
            }
            match ch {
                '"' | '\'' | '`' => quote = Some(ch),
                '(' => closers.push(')'),
                '[' => closers.push(']'),
                '{' => closers.push('}'),
                ')' | ']' | '}' => {
                    closers.pop();
                }
                _ => {}
            }
        }
        let close: String = closers.iter().rev().collect();
        // After the brackets close, a binary operator's grouping (`on(a)`) still needs its
        // right-hand operand.
        FILLERS.iter().any(|f| {
            ["", " x"].iter().any(|tail| {
                let mut cand = format!("{prefix}{f}");
                if let Some(qc) = quote {
                    cand.push(qc);
                }
                cand.push_str(&close);
                cand.push_str(tail);
                promql_parser::parser::parse(&cand).is_ok()
            })
        })
    };
    let starts = token_starts(q);
    // Bounded work on an error path: long queries are checked up to 400 tokens.
    for (k, &start) in starts.iter().enumerate().take(400) {
        // Each step re-parses a prefix: on a long query this is slow, and the position is a
        // courtesy, so it gives up at the deadline (a query's timeout must hold on errors too).
        if Instant::now() > deadline {
            return None;
        }
        let end = starts.get(k + 1).copied().unwrap_or(q.len());
        if !completable(q[..end].trim_end()) {
            let (line, col) = line_col(q, start);
            return Some((line, col, q[start..end].trim_end().to_string()));
        }
    }
    None
}

fn line_col(q: &str, at: usize) -> (usize, usize) {
    let before = &q[..at.min(q.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Go reads `\xHH` escapes in string literals as bytes, the parser crate as characters. Runs
/// of such escapes are rewritten to what Go makes of them: the UTF-8 text they spell, or U+FFFD
/// when they are not valid UTF-8 (which then fails where Go fails, e.g. as a label name).
/// Invalid UTF-8 bytes written as `\xNN` in a string literal are kept as private-use
/// characters U+10FF00 + byte: nothing valid matches them, and messages can print the
/// bytes as Go does.
const RAW_BYTE_BASE: u32 = 0x10_FF00;

fn raw_byte(b: u8) -> char {
    char::from_u32(RAW_BYTE_BASE + u32::from(b)).unwrap_or('\u{fffd}')
}

/// Whether a string from a query holds bytes that were not valid UTF-8.
pub(super) fn has_raw_bytes(s: &str) -> bool {
    s.chars()
        .any(|c| (RAW_BYTE_BASE..=RAW_BYTE_BASE + 0xff).contains(&u32::from(c)) || c == '\u{fffd}')
}

/// Go's `%q` of such a string: the raw bytes as `\xNN`.
pub(super) fn go_quote_raw(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let v = u32::from(c);
        if (RAW_BYTE_BASE..=RAW_BYTE_BASE + 0xff).contains(&v) {
            out.push_str(&format!("\\x{:02x}", v - RAW_BYTE_BASE));
        } else if c == '"' || c == '\\' {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn go_byte_escapes(q: &str) -> Option<String> {
    if !q.contains("\\x") {
        return None;
    }
    let b = q.as_bytes();
    let mut out = String::with_capacity(q.len());
    let mut i = 0;
    let mut quote: Option<u8> = None;
    let mut changed = false;
    while i < b.len() {
        let c = b[i];
        match quote {
            None => {
                if c == b'"' || c == b'\'' {
                    quote = Some(c);
                }
            }
            Some(qc) => {
                if c == b'\\' && b.get(i + 1) == Some(&b'x') {
                    let mut bytes = Vec::new();
                    let mut j = i;
                    while j + 3 < b.len() && b[j] == b'\\' && b[j + 1] == b'x' {
                        let Some(v) = q
                            .get(j + 2..j + 4)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                        else {
                            break;
                        };
                        bytes.push(v);
                        j += 4;
                    }
                    if !bytes.is_empty() && bytes.iter().any(|x| *x >= 0x80) {
                        match std::str::from_utf8(&bytes) {
                            Ok(text)
                                if text.chars().all(|ch| {
                                    !ch.is_control() && ch != '"' && ch != '\'' && ch != '\\'
                                }) =>
                            {
                                out.push_str(text)
                            }
                            Ok(_) => out.push_str(&q[i..j]),
                            Err(_) => {
                                for chunk in bytes.utf8_chunks() {
                                    out.push_str(chunk.valid());
                                    out.extend(chunk.invalid().iter().map(|b| raw_byte(*b)));
                                }
                            }
                        }
                        changed = true;
                        i = j;
                        continue;
                    }
                } else if c == b'\\' && i + 1 < b.len() {
                    out.push('\\');
                    let ch = q[i + 1..].chars().next().unwrap_or('\\');
                    out.push(ch);
                    i += 1 + ch.len_utf8();
                    continue;
                } else if c == qc {
                    quote = None;
                }
            }
        }
        let ch = q[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    changed.then_some(out)
}

/// A matcher added to `info()` selectors so they parse; never used for selection.
pub(super) const INFO_SENTINEL: &str = "__appliance_info_selector__";

/// Inserts the sentinel matcher into the `{...}` second argument of every `info(` call.
fn mark_info_selectors(q: &str) -> Option<String> {
    let b = q.as_bytes();
    let mut out = String::with_capacity(q.len() + 64);
    let mut i = 0;
    let mut changed = false;
    let mut in_str: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(qc) = in_str {
            if c == b'\\' && i + 1 < b.len() && q.is_char_boundary(i + 2) {
                out.push_str(&q[i..i + 2]);
                i += 2;
                continue;
            }
            if c == qc {
                in_str = None;
            }
        } else if c == b'"' || c == b'\'' || c == b'`' {
            in_str = Some(c);
        } else if q[i..].starts_with("info(")
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Find the top-level comma of this call, then a `{` after it.
            let mut inserted = false;
            let mut depth = 0;
            let mut j = i + 4;
            let mut quote: Option<u8> = None;
            while j < b.len() {
                let d = b[j];
                if let Some(qc) = quote {
                    if d == b'\\' {
                        j += 2;
                        continue;
                    }
                    if d == qc {
                        quote = None;
                    }
                } else if d == b'"' || d == b'\'' || d == b'`' {
                    quote = Some(d);
                } else if d == b'(' || d == b'{' || d == b'[' {
                    depth += 1;
                } else if d == b')' || d == b'}' || d == b']' {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                } else if d == b',' && depth == 1 {
                    let rest = &q[j + 1..];
                    let trimmed = rest.trim_start();
                    if trimmed.starts_with('{') {
                        let brace = j + 1 + (rest.len() - trimmed.len());
                        out.push_str(&q[i..=brace]);
                        out.push_str(&format!("{INFO_SENTINEL}=\"1\","));
                        i = brace + 1;
                        changed = true;
                        inserted = true;
                    }
                    break;
                }
                j += 1;
            }
            if inserted {
                continue;
            }
        }
        let ch = q[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    changed.then_some(out)
}

type Loaded = (i64, i64, Rc<Vec<crate::storage::Series>>);

/// Per-query evaluation state.
pub(super) struct Ev<'a> {
    q: &'a dyn Querier,
    pub(super) opts: &'a EngineOptions,
    /// Query start and end, for `@ start()` / `@ end()`.
    pub(super) start: i64,
    pub(super) end: i64,
    /// Whether this is a range query (some annotations only apply there).
    is_range: bool,
    /// The query's step in ms (0 for instant queries), for `step()`.
    pub(super) step: i64,
    /// Loaded data per selector node (keyed by the node's address: one AST per query).
    cache: RefCell<HashMap<usize, Loaded>>,
    /// Selector nodes whose native histograms only feed `histogram_count`/`_sum`/`_avg`
    /// (see [`stats_only_selectors`]).
    stats_only: std::collections::HashSet<usize>,
    /// Per selector node, per series, where the last window started and ended: steps move
    /// forward, so windows are found by walking on instead of a binary search (which misses
    /// the cache on every probe once the data outgrows it).
    cursors: RefCell<HashMap<usize, Cursors>>,
    /// Per subquery node, its inner results by inner step. Inner steps are aligned to
    /// multiples of the subquery's step, so successive outer steps share all but the newest
    /// few: each is evaluated once per query, not once per outer step (a `[30m:1m]` at a 60 s
    /// step did 30 times the work).
    subqueries: RefCell<HashMap<usize, SubqueryCache>>,
    /// Per aggregation node, each input series' group labels (see
    /// [`super::aggregate::GroupCache`]).
    pub(super) groups: RefCell<HashMap<usize, super::aggregate::GroupCache>>,
    deadline: Instant,
    samples: Cell<usize>,
    pub(super) warnings: RefCell<Vec<String>>,
    pub(super) infos: RefCell<Vec<String>>,
    /// The time range read from storage, to report data the store could not give.
    read_range: Cell<Option<(i64, i64)>>,
}

/// A native histogram sample of a range vector.
pub(super) type HPoint = (i64, Arc<FloatHistogram>);

/// A subquery's inner results by inner step time, and the first step its last window
/// needed (entries before it go once windows move past them).
#[derive(Default)]
struct SubqueryCache {
    first: i64,
    at: std::collections::BTreeMap<i64, Value>,
}

pub(super) type R<T> = Result<T, PromqlError>;

pub(super) fn exec_err<T>(msg: impl Into<String>) -> R<T> {
    Err(PromqlError::Execution(msg.into()))
}

fn ms(d: &std::time::Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms(d),
        Some(Offset::Neg(d)) => -ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Runs an instant (`step == 0`) or range query.
pub(super) fn run(
    q: &dyn Querier,
    opts: &EngineOptions,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
) -> R<QueryResult> {
    let ev = Ev {
        q,
        opts,
        start,
        end,
        is_range: step != 0,
        step,
        cache: RefCell::new(HashMap::new()),
        cursors: RefCell::new(HashMap::new()),
        subqueries: RefCell::new(HashMap::new()),
        stats_only: stats_only_selectors(expr),
        groups: RefCell::new(HashMap::new()),
        deadline: Instant::now() + opts.timeout,
        samples: Cell::new(0),
        warnings: RefCell::new(Vec::new()),
        infos: RefCell::new(Vec::new()),
        read_range: Cell::new(None),
    };
    let value =
        if step == 0 {
            ev.samples.set(0);
            match ev.eval(expr, start)? {
                Value::Vector(v) => Value::Vector(finish_vector(v)?),
                Value::Matrix(m) => Value::Matrix(finish_matrix(m)?),
                other => other,
            }
        } else {
            let kind = super::functions::static_type(expr);
            if kind == "matrix" || kind == "string" {
                return exec_err(format!(
                "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                if kind == "matrix" { "range vector" } else { "string" }
            ));
            }
            let mut acc = StepSeries::new(true);
            let mut t = start;
            while t <= end {
                ev.check_deadline()?;
                // The result itself counts against the sample limit, as in Prometheus: a
                // range query over many series and steps must not grow without bound.
                ev.samples.set(acc.points);
                acc.add(ev.eval(expr, t)?, t)?;
                if acc.points > opts.max_samples {
                    return Err(PromqlError::TooManySamples("query execution".into()));
                }
                t += step;
            }
            let mut m = finish_matrix(acc.finish())?;
            m.sort_by(|a, b| a.metric.cmp(&b.metric));
            Value::Matrix(m)
        };
    let mut warnings = ev.warnings.into_inner();
    // Data lost to a damaged (quarantined) block makes the answer partial: say so, as
    // Prometheus's warnings do for partial answers.
    if let Some((lo, hi)) = ev.read_range.get() {
        warnings.extend(q.missing(lo, hi));
    }
    Ok(QueryResult {
        value,
        warnings,
        infos: ev.infos.into_inner(),
    })
}

/// Selectors whose histograms reach only `histogram_count`, `histogram_sum` or
/// `histogram_avg` (no subquery, quantile, fraction or trim between): Prometheus reads them
/// without buckets, through an iterator that sets each unknown counter-reset hint by comparing
/// with the previous sample, and those hints show in the annotations of sums over them.
fn stats_only_selectors(e: &Expr) -> std::collections::HashSet<usize> {
    fn walk(e: &Expr, stats: bool, out: &mut std::collections::HashSet<usize>) {
        match e {
            Expr::VectorSelector(vs) => walk_vs(vs, stats, out),
            Expr::MatrixSelector(m) => walk_vs(&m.vs, stats, out),
            Expr::Subquery(_) => {}
            Expr::Call(c) => {
                let stats = match c.func.name {
                    "histogram_count" | "histogram_sum" | "histogram_avg" => true,
                    "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => return,
                    _ => stats,
                };
                for a in &c.args.args {
                    walk(a, stats, out);
                }
            }
            Expr::Binary(b) => {
                if super::syntax::trim_op(b).0.is_some() {
                    return;
                }
                walk(&b.lhs, stats, out);
                walk(&b.rhs, stats, out);
            }
            Expr::Aggregate(a) => {
                walk(&a.expr, stats, out);
                if let Some(p) = &a.param {
                    walk(p, stats, out);
                }
            }
            Expr::Paren(p) => walk(&p.expr, stats, out),
            Expr::Unary(u) => walk(&u.expr, stats, out),
            _ => {}
        }
    }
    fn walk_vs(vs: &VectorSelector, stats: bool, out: &mut std::collections::HashSet<usize>) {
        if stats {
            out.insert(vs as *const VectorSelector as usize);
        }
    }
    let mut out = std::collections::HashSet::new();
    walk(e, false, &mut out);
    out
}

/// Histograms reduced to count and sum, each unknown hint set against the sample before.
fn stats_only(hs: &mut [(i64, Arc<FloatHistogram>)]) {
    let mut prev: Option<Arc<FloatHistogram>> = None;
    for (_, h) in hs.iter_mut() {
        let full = h.clone();
        let hint = match (full.hint, &prev) {
            (crate::model::histogram::CounterResetHint::Unknown, Some(p)) => {
                if full.detect_reset(p) {
                    crate::model::histogram::CounterResetHint::Reset
                } else {
                    crate::model::histogram::CounterResetHint::NotReset
                }
            }
            (hint, _) => hint,
        };
        *h = Arc::new(FloatHistogram {
            schema: full.schema,
            count: full.count,
            sum: full.sum,
            hint,
            ..FloatHistogram::default()
        });
        prev = Some(full);
    }
}

/// Walking positions of one selector's series (see `Ev::cursors`).
pub(super) struct Cursors {
    last_t: i64,
    pos: Vec<[usize; 2]>,
}

impl Cursors {
    /// The number of samples with timestamp `<= t` in series `i`, walking from the last
    /// answer for slot `slot` (0: window start, 1: window end).
    fn advance(&mut self, i: usize, samples: &[(i64, f64)], t: i64, slot: usize) -> usize {
        let mut p = self.pos[i][slot].min(samples.len());
        if p > 0 && samples[p - 1].0 > t {
            p = samples.partition_point(|x| x.0 <= t);
        } else {
            let mut steps = 0;
            while p < samples.len() && samples[p].0 <= t {
                p += 1;
                steps += 1;
                if steps == 64 {
                    // Far behind (a long first step): finish with a binary search.
                    p += samples[p..].partition_point(|x| x.0 <= t);
                    break;
                }
            }
        }
        self.pos[i][slot] = p;
        p
    }
}

/// Collects per-step results into series, in order of first appearance.
struct StepSeries {
    series: HashMap<Labels, Series>,
    order: Vec<Labels>,
    /// Drop names now (final results) instead of carrying the flag (subquery results).
    apply_drop: bool,
    points: usize,
}

impl StepSeries {
    fn new(apply_drop: bool) -> Self {
        StepSeries {
            series: HashMap::new(),
            order: Vec::new(),
            apply_drop,
            points: 0,
        }
    }

    fn push(&mut self, metric: Labels, drop: bool, t: i64, f: f64, h: Option<Arc<FloatHistogram>>) {
        self.points += 1;
        // Final series are keyed by their labels after name removal, so two inputs that
        // collide once their names go are caught by `finish_matrix`'s duplicate check.
        let key = if drop && self.apply_drop {
            drop_name_labels(&metric)
        } else {
            metric
        };
        let s = match self.series.get_mut(&key) {
            Some(s) => s,
            None => {
                self.order.push(key.clone());
                let drop_name = drop && !self.apply_drop;
                self.series.entry(key.clone()).or_insert(Series {
                    metric: key,
                    points: Vec::new(),
                    histograms: Vec::new(),
                    drop_name,
                })
            }
        };
        match h {
            Some(h) => s.histograms.push((t, h)),
            None => s.points.push((t, f)),
        }
    }

    /// Adds one step's value; only scalars and instant vectors make series.
    fn add(&mut self, v: Value, t: i64) -> R<()> {
        match v {
            Value::Scalar(f) => self.push(Labels::default(), false, t, f, None),
            Value::Vector(v) => {
                for s in v {
                    self.push(s.metric, s.drop_name, t, s.f, s.h);
                }
            }
            other => {
                return exec_err(format!(
                    "unexpected {} in a range evaluation step",
                    other.type_name()
                ))
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Vec<Series> {
        let order = std::mem::take(&mut self.order);
        order
            .into_iter()
            .filter_map(|k| self.series.remove(&k))
            .collect()
    }
}

/// Applies delayed name removal to an instant vector and checks label-set uniqueness.
pub(super) fn finish_vector(v: Vec<Sample>) -> R<Vec<Sample>> {
    let mut out: Vec<Sample> = v
        .into_iter()
        .map(|mut s| {
            if s.drop_name {
                s.metric = drop_name_labels(&s.metric);
                s.drop_name = false;
            }
            s
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for s in &out {
        if !seen.insert(&s.metric) {
            return exec_err("vector cannot contain metrics with the same labelset");
        }
    }
    out.shrink_to_fit();
    Ok(out)
}

fn finish_matrix(m: Vec<Series>) -> R<Vec<Series>> {
    let mut out = Vec::with_capacity(m.len());
    let mut seen = std::collections::HashSet::new();
    for mut s in m {
        if s.drop_name {
            s.metric = drop_name_labels(&s.metric);
            s.drop_name = false;
        }
        let dup_h = s.histograms.windows(2).any(|w| w[0].0 == w[1].0)
            || (!s.histograms.is_empty()
                && s.points
                    .iter()
                    .any(|p| s.histograms.iter().any(|h| h.0 == p.0)));
        if s.points.windows(2).any(|w| w[0].0 == w[1].0) || dup_h || !seen.insert(s.metric.clone())
        {
            return exec_err("vector cannot contain metrics with the same labelset");
        }
        out.push(s);
    }
    Ok(out)
}

/// Explicit reset hints would be wrong on subquery points, which may skip the sample that
/// reset or repeat it: Prometheus makes them unknown, so resets are detected from the values.
#[cold]
#[inline(never)]
fn unknown_reset_hints(out: &mut [Series]) {
    use crate::model::histogram::CounterResetHint as H;
    for s in out.iter_mut() {
        for (_, h) in s.histograms.iter_mut() {
            if matches!(h.hint, H::Reset | H::NotReset) {
                let mut c = (**h).clone();
                c.hint = H::Unknown;
                *h = Arc::new(c);
            }
        }
    }
}

/// `-h`: every count and the sum negated, a gauge.
#[cold]
#[inline(never)]
fn negated(h: Arc<FloatHistogram>) -> Arc<FloatHistogram> {
    let mut h = (*h).clone();
    h.mul(-1.0);
    Arc::new(h)
}

/// Removes `__name__` (and the `__type__` / `__unit__` labels that describe it).
pub(super) fn drop_name_labels(l: &Labels) -> Labels {
    // Most results that drop their name have none left to drop: no rebuild for them.
    if [METRIC_NAME, "__type__", "__unit__"]
        .iter()
        .all(|n| l.get(n).is_none())
    {
        return l.clone();
    }
    let mut b = l.builder();
    b.del(METRIC_NAME).del("__type__").del("__unit__");
    b.labels()
}

impl<'a> Ev<'a> {
    fn note_read(&self, lo: i64, hi: i64) {
        let r = match self.read_range.get() {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        };
        self.read_range.set(Some(r));
    }

    pub(super) fn check_deadline(&self) -> R<()> {
        if Instant::now() > self.deadline {
            return Err(PromqlError::Timeout("query execution".into()));
        }
        Ok(())
    }

    /// Sorting a range query's result is pointless; Prometheus says so.
    pub(super) fn sort_in_range_query(&self) {
        if self.is_range {
            self.warn(
                "sort is ineffective for range queries since results are always ordered by labels"
                    .into(),
            );
        }
    }

    pub(super) fn warn(&self, msg: String) {
        let m = format!("PromQL warning: {msg}");
        let mut w = self.warnings.borrow_mut();
        if !w.contains(&m) {
            w.push(m);
        }
    }

    pub(super) fn info(&self, msg: String) {
        let m = format!("PromQL info: {msg}");
        let mut w = self.infos.borrow_mut();
        if !w.contains(&m) {
            w.push(m);
        }
    }

    fn count_samples(&self, n: usize) -> R<()> {
        let total = self.samples.get() + n;
        self.samples.set(total);
        if total > self.opts.max_samples {
            return Err(PromqlError::TooManySamples("query execution".into()));
        }
        Ok(())
    }

    fn matchers(vs: &VectorSelector) -> R<Vec<Matcher>> {
        selector_matchers(vs)
    }

    /// Stored series matching `vs` with samples covering `(mint, maxt]`.
    pub(super) fn load(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
    ) -> R<Rc<Vec<crate::storage::Series>>> {
        let key = vs as *const VectorSelector as usize;
        if let Some((lo, hi, data)) = self.cache.borrow().get(&key) {
            if *lo <= mint && *hi >= maxt {
                return Ok(data.clone());
            }
        }
        // Steps move forward, so the first load reaches to the query's end; a selector pinned
        // with `@` reads one window only.
        let (lo, hi) = match self.cache.borrow().get(&key) {
            Some((lo, hi, _)) => ((*lo).min(mint), (*hi).max(maxt)),
            None if vs.at.is_some() => (mint, maxt),
            None => (mint, maxt.max(self.end)),
        };
        let matchers = Self::matchers(vs)?;
        self.note_read(lo + 1, hi);
        let mut data = self.q.select(&matchers, lo + 1, hi);
        if self.stats_only.contains(&key) {
            for s in data.iter_mut() {
                stats_only(&mut s.histograms);
            }
        }
        let data = Rc::new(data);
        self.cache.borrow_mut().insert(key, (lo, hi, data.clone()));
        Ok(data)
    }

    /// The time a selector with `@`/`offset` reads at, for evaluation time `ts`.
    pub(super) fn selector_time(
        &self,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
        ts: i64,
    ) -> i64 {
        let base = match at {
            None => ts,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(t)) => system_time_ms(t),
        };
        base - offset_ms(offset)
    }

    /// Per-series positions for `vs`, valid when `t` did not go back since the last use.
    fn cursors(&self, vs: &VectorSelector, n: usize, t: i64) -> std::cell::RefMut<'_, Cursors> {
        let key = vs as *const VectorSelector as usize;
        let mut all = self.cursors.borrow_mut();
        let c = all.entry(key).or_insert_with(|| Cursors {
            last_t: i64::MIN,
            pos: Vec::new(),
        });
        if t < c.last_t || c.pos.len() != n {
            c.pos = vec![[0, 0]; n];
        }
        c.last_t = t;
        drop(all);
        std::cell::RefMut::map(self.cursors.borrow_mut(), |m| {
            m.get_mut(&key).unwrap_or_else(|| unreachable!())
        })
    }

    /// Instant vector selector at `ts`: per series the newest float or native histogram
    /// sample in `(t - lookback, t]`, unless it is a stale marker.
    pub(super) fn eval_vector_selector(&self, vs: &VectorSelector, ts: i64) -> R<Vec<Sample>> {
        if super::syntax::extension(vs) == Some(super::syntax::Extension::Smoothed) {
            return self.eval_smoothed_selector(vs, ts);
        }
        let t = self.selector_time(&vs.at, &vs.offset, ts);
        let lookback = self.opts.lookback_ms;
        let data = self.load(vs, t - lookback, t)?;
        let mut out = Vec::new();
        let mut cursors = self.cursors(vs, data.len(), t);
        for (i, s) in data.iter().enumerate() {
            let idx = cursors.advance(i, &s.samples, t, 1);
            let f = idx.checked_sub(1).map(|k| s.samples[k]);
            let h = if s.histograms.is_empty() {
                None
            } else {
                let k = s.histograms.partition_point(|x| x.0 <= t);
                k.checked_sub(1).map(|k| &s.histograms[k])
            };
            // The newer of the two kinds counts; a stale marker (a float) hides the series.
            let hist_newer = |ht: i64| f.map(|x| x.0 < ht).unwrap_or(true);
            match (f, h) {
                // (A histogram newer than the float but out of the lookback leaves the float
                // further out still.)
                (_, Some((ht, hv))) if hist_newer(*ht) && *ht > t - lookback => {
                    out.push(Sample {
                        metric: s.labels.clone(),
                        f: 0.0,
                        t: *ht,
                        drop_name: false,
                        h: Some(hv.clone()),
                    });
                }
                (Some((st, sv)), _) if st > t - lookback && !is_stale_nan(sv) => {
                    out.push(Sample {
                        h: None,
                        metric: s.labels.clone(),
                        f: sv,
                        t: st,
                        drop_name: false,
                    });
                }
                _ => {}
            }
        }
        self.count_samples(out.len())?;
        Ok(out)
    }

    /// A `smoothed` instant selector (Prometheus's `smoothSeries`): the sample at `t`, else
    /// the value interpolated between the samples either side within the lookback, else the
    /// last one before (histograms alike; a series holding both kinds there gives nothing,
    /// with a warning).
    fn eval_smoothed_selector(&self, vs: &VectorSelector, ts: i64) -> R<Vec<Sample>> {
        use crate::model::histogram::CounterResetHint;
        let t = self.selector_time(&vs.at, &vs.offset, ts);
        let lb = self.opts.lookback_ms;
        let data = self.load(vs, t - lb, t + lb)?;
        let mut out = Vec::new();
        for s in data.iter() {
            let fl: Vec<(i64, f64)> = s
                .samples
                .iter()
                .copied()
                .filter(|p| p.0 > t - lb && p.0 <= t + lb && !is_stale_nan(p.1))
                .collect();
            let hs: Vec<&HPoint> = s
                .histograms
                .iter()
                .filter(|p| p.0 > t - lb && p.0 <= t + lb)
                .collect();
            if fl.is_empty() && hs.is_empty() {
                continue;
            }
            let name = s.labels.metric_name();
            if !fl.is_empty() && !hs.is_empty() {
                self.warn(format!(
                    "encountered a mix of histograms and floats for metric name {name:?}"
                ));
                continue;
            }
            let sample = |f: f64, h: Option<Arc<FloatHistogram>>| Sample {
                metric: s.labels.clone(),
                f,
                t: ts,
                drop_name: false,
                h,
            };
            if !hs.is_empty() {
                let i = hs.partition_point(|p| p.0 < t);
                if i < hs.len() && hs[i].0 == t {
                    out.push(sample(0.0, Some(hs[i].1.clone())));
                } else if i > 0 && i < hs.len() {
                    let (a, b) = (hs[i - 1], hs[i]);
                    if a.1.uses_custom_buckets() != b.1.uses_custom_buckets() {
                        self.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"));
                        continue;
                    }
                    let counter =
                        a.1.hint != CounterResetHint::Gauge || b.1.hint != CounterResetHint::Gauge;
                    if let Some(h) =
                        super::functions::interpolate_histograms(self, a, b, t, counter, name)
                    {
                        out.push(sample(0.0, Some(Arc::new(h))));
                    }
                } else if i > 0 {
                    let mut h = (*hs[i - 1].1).clone();
                    h.hint = CounterResetHint::Unknown;
                    out.push(sample(0.0, Some(Arc::new(h))));
                }
                continue;
            }
            let i = fl.partition_point(|p| p.0 < t);
            if i < fl.len() && fl[i].0 == t {
                out.push(sample(fl[i].1, None));
            } else if i > 0 && i < fl.len() {
                out.push(sample(
                    super::functions::interpolate(fl[i - 1], fl[i], t, false),
                    None,
                ));
            } else if i > 0 {
                out.push(sample(fl[i - 1].1, None));
            }
        }
        self.count_samples(out.len())?;
        Ok(out)
    }

    /// Range selector: samples in `(t - range, t]`, stale markers left out.
    pub(super) fn eval_matrix_selector(
        &self,
        vs: &VectorSelector,
        range: i64,
        ts: i64,
    ) -> R<Vec<Series>> {
        let mut out = Vec::new();
        self.selector_windows(vs, range, ts, |metric, points, hists| {
            out.push(Series {
                metric: metric.clone(),
                points: points.to_vec(),
                histograms: hists.to_vec(),
                drop_name: false,
            });
        })?;
        Ok(out)
    }

    /// Calls `f(labels, drop_name, floats, histograms)` for each series of the range vector `e`
    /// at `ts`. A plain range selector is served straight from the loaded data, without
    /// copying, since this is the inner loop of `rate` and the `*_over_time` functions.
    pub(super) fn for_each_window(
        &self,
        e: &Expr,
        ts: i64,
        mut f: impl FnMut(&Labels, bool, &[(i64, f64)], &[HPoint]),
    ) -> R<()> {
        match e {
            Expr::MatrixSelector(m) => {
                self.selector_windows(&m.vs, ms(&m.range), ts, |l, p, h| f(l, false, p, h))
            }
            Expr::Paren(p) => self.for_each_window(&p.expr, ts, f),
            _ => {
                for s in self.eval_matrix(e, ts)? {
                    f(&s.metric, s.drop_name, &s.points, &s.histograms);
                }
                Ok(())
            }
        }
    }

    /// The windows `(t - range, t]` of a selector's series that hold samples, stale markers
    /// left out.
    fn selector_windows(
        &self,
        vs: &VectorSelector,
        range: i64,
        ts: i64,
        mut f: impl FnMut(&Labels, &[(i64, f64)], &[HPoint]),
    ) -> R<()> {
        let t = self.selector_time(&vs.at, &vs.offset, ts);
        // `anchored` and `smoothed` windows reach a lookback further, to the samples their
        // functions anchor or interpolate on.
        let lb = self.opts.lookback_ms;
        let (start, end) = match super::syntax::extension(vs) {
            None => (t - range, t),
            Some(super::syntax::Extension::Anchored) => (t - range - lb, t),
            Some(super::syntax::Extension::Smoothed) => (t - range - lb, t + lb),
        };
        let data = self.load(vs, start, end)?;
        let mut cursors = self.cursors(vs, data.len(), end);
        let mut n = 0;
        for (i, s) in data.iter().enumerate() {
            let lo = cursors.advance(i, &s.samples, start, 0);
            let hi = cursors.advance(i, &s.samples, end, 1);
            let window = &s.samples[lo..hi];
            let hists: &[HPoint] = if s.histograms.is_empty() {
                &[]
            } else {
                let a = s.histograms.partition_point(|x| x.0 <= start);
                let b = s.histograms.partition_point(|x| x.0 <= end);
                &s.histograms[a..b]
            };
            n += hists.len();
            if window.iter().any(|p| is_stale_nan(p.1)) {
                let kept: Vec<(i64, f64)> = window
                    .iter()
                    .copied()
                    .filter(|p| !is_stale_nan(p.1))
                    .collect();
                if !kept.is_empty() || !hists.is_empty() {
                    n += kept.len();
                    f(&s.labels, &kept, hists);
                }
            } else if !window.is_empty() || !hists.is_empty() {
                n += window.len();
                f(&s.labels, window, hists);
            }
        }
        drop(cursors);
        self.count_samples(n)
    }

    /// Evaluates a subquery at `ts` into a range vector.
    fn eval_subquery(&self, sq: &promql_parser::parser::SubqueryExpr, ts: i64) -> R<Vec<Series>> {
        let t = self.selector_time(&sq.at, &sq.offset, ts);
        let range = ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.opts.default_subquery_step_ms);
        // Steps are aligned to multiples of the step, as Prometheus does (Go's truncating
        // division included), and cover (t - range, t].
        let mut first = step * ((t - range) / step);
        if first <= t - range {
            first += step;
        }
        let key = sq as *const promql_parser::parser::SubqueryExpr as usize;
        let mut acc = StepSeries::new(false);
        let mut cur = first;
        while cur <= t {
            self.check_deadline()?;
            // No borrow is held across `eval`: the inner expression may hold subqueries too.
            let cached = self
                .subqueries
                .borrow()
                .get(&key)
                .and_then(|c| c.at.get(&cur).cloned());
            let v = match cached {
                Some(v) => v,
                None => {
                    let v = self.eval(&sq.expr, cur)?;
                    self.subqueries
                        .borrow_mut()
                        .entry(key)
                        .or_default()
                        .at
                        .insert(cur, v.clone());
                    v
                }
            };
            acc.add(v, cur)?;
            cur += step;
        }
        if let Some(c) = self.subqueries.borrow_mut().get_mut(&key) {
            // Outer steps move forward: a window never reaches back before this one again.
            if first >= c.first {
                c.at = c.at.split_off(&first);
            }
            c.first = first;
        }
        let mut out = acc.finish();
        if out.iter().any(|s| !s.histograms.is_empty()) {
            unknown_reset_hints(&mut out);
        }
        self.count_samples(
            out.iter()
                .map(|s| s.points.len() + s.histograms.len())
                .sum(),
        )?;
        Ok(out)
    }

    /// Evaluates `e` at `ts`.
    pub(super) fn eval(&self, e: &Expr, ts: i64) -> R<Value> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Value::Scalar(f) => Ok(Value::Scalar(-f)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            f: -s.f,
                            drop_name: true,
                            h: s.h.map(negated),
                            ..s
                        })
                        .collect(),
                )),
                other => exec_err(format!("unary minus on {}", other.type_name())),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.eval_vector_selector(vs, ts)?)),
            Expr::MatrixSelector(m) => Ok(Value::Matrix(self.eval_matrix_selector(
                &m.vs,
                ms(&m.range),
                ts,
            )?)),
            Expr::Subquery(sq) => Ok(Value::Matrix(self.eval_subquery(sq, ts)?)),
            Expr::Binary(b) => super::binary::eval_binary(self, b, ts),
            Expr::Aggregate(a) => super::aggregate::eval_aggregate(self, a, ts),
            Expr::Call(c) => super::functions::eval_call(self, c, ts),
            Expr::Extension(_) => exec_err("extension expressions are not supported"),
        }
    }

    /// Evaluates `e` and requires a scalar.
    pub(super) fn eval_scalar(&self, e: &Expr, ts: i64) -> R<f64> {
        match self.eval(e, ts)? {
            Value::Scalar(f) => Ok(f),
            other => exec_err(format!("expected scalar, got {}", other.type_name())),
        }
    }

    /// Evaluates `e` and requires an instant vector.
    pub(super) fn eval_vector(&self, e: &Expr, ts: i64) -> R<Vec<Sample>> {
        match self.eval(e, ts)? {
            Value::Vector(v) => Ok(v),
            other => exec_err(format!(
                "expected instant vector, got {}",
                other.type_name()
            )),
        }
    }

    /// Evaluates `e` and requires a range vector.
    pub(super) fn eval_matrix(&self, e: &Expr, ts: i64) -> R<Vec<Series>> {
        match self.eval(e, ts)? {
            Value::Matrix(m) => Ok(m),
            other => exec_err(format!("expected range vector, got {}", other.type_name())),
        }
    }
}

/// The matchers of a selector (its name as a `__name__` equality matcher).
pub(super) fn selector_matchers(vs: &VectorSelector) -> R<Vec<Matcher>> {
    let mut out = Vec::new();
    if let Some(n) = &vs.name {
        out.push(
            Matcher::new(MatchOp::Equal, METRIC_NAME, n.clone())
                .map_err(|e| PromqlError::Execution(e.to_string()))?,
        );
    }
    for m in &vs.matchers.matchers {
        if super::syntax::is_marker(&m.name) {
            continue;
        }
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| PromqlError::Execution(e.to_string()))?,
        );
    }
    Ok(out)
}
