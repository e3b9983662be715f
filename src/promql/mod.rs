//! PromQL: evaluates expressions parsed by the `promql-parser` crate over `storage::Querier`,
//! with Prometheus 3.x semantics (left-open windows, 5-minute lookback, staleness markers,
//! delayed `__name__` removal, `@` and `offset`, subqueries).
//!
//! The engine knows storage only through `Querier`; it knows nothing of HTTP, rules or
//! scraping. Results carry Prometheus's warning and info annotations.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod histogram;
pub mod shape;
mod syntax;
pub mod testlang;

use std::sync::Arc;
use std::time::Duration;

use crate::model::Labels;
use crate::storage::Querier;

pub use functions::go_f as format_value;
pub use shape::{MAX_DEPTH, MAX_QUERY_BYTES};

/// One sample of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Labels.
    pub metric: Labels,
    /// Value.
    pub f: f64,
    /// Timestamp of the stored sample (ms), for `timestamp()`; the evaluation time otherwise.
    pub t: i64,
    /// `__name__` is to be removed at the end of evaluation (delayed name removal).
    pub drop_name: bool,
    /// A native histogram sample (then `f` is 0).
    pub h: Option<std::sync::Arc<crate::model::histogram::FloatHistogram>>,
}

/// One series of a range vector or range-query result.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Labels.
    pub metric: Labels,
    /// Float points in time order.
    pub points: Vec<(i64, f64)>,
    /// Native histogram points in time order.
    pub histograms: Vec<(i64, std::sync::Arc<crate::model::histogram::FloatHistogram>)>,
    /// `__name__` is to be removed at the end of evaluation.
    pub drop_name: bool,
}

/// A PromQL value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector (or a range query's result).
    Matrix(Vec<Series>),
    /// A string.
    String(String),
}

impl Value {
    /// The type name Prometheus uses (`scalar`, `vector`, `matrix`, `string`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::String(_) => "string",
        }
    }
}

/// Why a query failed; each maps to one Prometheus `errorType`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromqlError {
    /// The query does not parse (`bad_data`).
    #[error("{0}")]
    Parse(String),
    /// Evaluation failed (`execution`).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its deadline (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(String),
    /// The query loaded more samples than allowed (`execution`).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(String),
}

/// Engine limits and defaults.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (default 5m).
    pub lookback_ms: i64,
    /// Samples a query may hold at once (default 50,000,000).
    pub max_samples: usize,
    /// Wall-clock limit per query (default 2m).
    pub timeout: Duration,
    /// Subquery step when `[range:]` omits it (default 1m).
    pub default_subquery_step_ms: i64,
    /// Queries evaluated at once (Prometheus's `--query.max-concurrency`, default 20); more
    /// wait for a slot within their timeout. With `max_samples` this bounds query memory.
    pub max_concurrency: usize,
}

/// The `query` config section: limits every query obeys (Prometheus's `--query.*` flags).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Longest a query may run (default 2m).
    pub timeout: crate::model::time::Duration,
    /// Most samples a query may hold at once (default 50,000,000).
    pub max_samples: usize,
    /// How far back an instant selector looks (default 5m).
    pub lookback_delta: crate::model::time::Duration,
    /// Queries evaluated at once (default 20); more wait for a slot.
    pub max_concurrency: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout: crate::model::time::Duration::from_secs(120),
            max_samples: 50_000_000,
            lookback_delta: crate::model::time::Duration::from_secs(300),
            max_concurrency: 20,
        }
    }
}

impl EngineOptions {
    /// Options from the `query` section.
    pub fn from_config(c: &QueryConfig) -> Self {
        EngineOptions {
            lookback_ms: c.lookback_delta.as_millis().max(1),
            max_samples: c.max_samples,
            timeout: c.timeout.std(),
            max_concurrency: c.max_concurrency.max(1),
            ..Default::default()
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_ms: 300_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
            max_concurrency: 20,
        }
    }
}

/// A query's result with its annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The value (a matrix for range queries).
    pub value: Value,
    /// `PromQL warning: ...` texts.
    pub warnings: Vec<String>,
    /// `PromQL info: ...` texts.
    pub infos: Vec<String>,
}

/// The PromQL engine.
#[derive(Clone)]
pub struct Engine {
    querier: Arc<dyn Querier>,
    opts: EngineOptions,
    gate: Arc<Gate>,
}

/// Slots for queries running at once.
struct Gate {
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    max: usize,
}

/// A query's slot, given back when dropped.
struct Slot<'a>(&'a Gate);

impl Gate {
    /// Waits for a slot until `deadline`.
    fn enter(&self, deadline: std::time::Instant) -> Result<Slot<'_>, PromqlError> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= self.max {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(PromqlError::Timeout(
                    "queue (too many concurrent queries)".into(),
                ));
            }
            used = self
                .freed
                .wait_timeout(used, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *used += 1;
        Ok(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

impl Engine {
    /// An engine reading from `querier`.
    pub fn new(querier: Arc<dyn Querier>, opts: EngineOptions) -> Self {
        let gate = Arc::new(Gate {
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
            max: opts.max_concurrency.max(1),
        });
        Engine {
            querier,
            opts,
            gate,
        }
    }

    /// The query timeout.
    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    /// Evaluates `query` at `t_ms`.
    pub fn instant(&self, query: &str, t_ms: i64) -> Result<QueryResult, PromqlError> {
        self.run(query, t_ms, t_ms, 0)
    }

    /// Evaluates `query` from `start` to `end` (inclusive) every `step` (all ms).
    pub fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, PromqlError> {
        self.run(query, start, end, step)
    }

    fn run(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, PromqlError> {
        let depth = shape::nesting(query)?;
        let _slot = self
            .gate
            .enter(std::time::Instant::now() + self.opts.timeout)?;
        shape::on_query_stack(depth, || {
            let frame = syntax::QueryFrame { start, end, step };
            let expr = eval::parse_in(query, self.opts.timeout, frame)?;
            eval::run(&*self.querier, &self.opts, &expr, start, end, step)
        })
    }
}

/// Parses a query, refusing what is too long or too deep to handle (see [`shape`]). The
/// error text is the parser's, as Prometheus returns it for `bad_data`.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, PromqlError> {
    let depth = shape::nesting(query)?;
    shape::on_query_stack(depth, || eval::parse(query, ERROR_LOCATION_BUDGET))
}

/// Runs `f` over the parsed `query` where its depth fits (see [`shape`]); the tree is dropped
/// there too.
pub fn with_parsed<T: Send>(
    query: &str,
    budget: Duration,
    f: impl FnOnce(&promql_parser::parser::Expr) -> T + Send,
) -> Result<T, PromqlError> {
    let depth = shape::nesting(query)?;
    shape::on_query_stack(depth, || eval::parse(query, budget).map(|e| f(&e)))
}

/// Every selector in `query` as its matchers, in the order they are written (Prometheus's
/// `parser.ExtractSelectors`), for `/api/v1/query_exemplars`.
pub fn selectors(query: &str) -> Result<Vec<Vec<crate::model::Matcher>>, PromqlError> {
    fn walk(
        e: &promql_parser::parser::Expr,
        out: &mut Vec<Vec<crate::model::Matcher>>,
    ) -> Result<(), PromqlError> {
        use promql_parser::parser::Expr as E;
        match e {
            E::VectorSelector(vs) => out.push(eval::selector_matchers(vs)?),
            E::MatrixSelector(m) => out.push(eval::selector_matchers(&m.vs)?),
            E::Paren(p) => walk(&p.expr, out)?,
            E::Unary(u) => walk(&u.expr, out)?,
            E::Subquery(sq) => walk(&sq.expr, out)?,
            E::Binary(b) => {
                walk(&b.lhs, out)?;
                walk(&b.rhs, out)?;
            }
            E::Aggregate(a) => {
                if let Some(p) = &a.param {
                    walk(p, out)?;
                }
                walk(&a.expr, out)?;
            }
            E::Call(c) => {
                for a in &c.args.args {
                    walk(a, out)?;
                }
            }
            E::NumberLiteral(_) | E::StringLiteral(_) | E::Extension(_) => {}
        }
        Ok(())
    }
    with_parsed(query, ERROR_LOCATION_BUDGET, |e| {
        let mut out = Vec::new();
        walk(e, &mut out).map(|()| out)
    })?
}

/// Prometheus's `format_query`: the query pretty-printed.
pub fn format_query(query: &str) -> Result<String, PromqlError> {
    let text = with_parsed(query, ERROR_LOCATION_BUDGET, |e| e.prettify())?;
    // Experimental syntax is parsed through rewrites (see `syntax`) whose markers the printed
    // tree would show; such a query comes back as written.
    if syntax::uses_rewrites(query) {
        return Ok(query.trim().to_string());
    }
    Ok(text)
}

/// How long a syntax error may be searched for its position where no query timeout applies.
const ERROR_LOCATION_BUDGET: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests;
