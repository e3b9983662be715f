//! `/api/v1/*`: series, labels, label values, targets, target metadata and status, with
//! Prometheus's JSON envelope, parameter parsing and error mapping (all in one place).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::AppState;
use crate::model::time::{format_rfc3339, parse_api_time, MAX_TIME_MS, MIN_TIME_MS};
use crate::model::{Labels, MatchOp, Matcher};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/parse_query", get(parse_query).post(parse_query))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/metadata", get(targets_metadata))
        .route("/api/v1/metadata", get(metadata))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route(WRITE_PATH, post(remote_write))
        .route("/api/v1/status/remote_write", get(remote_write_status))
        .route("/api/v1/status/grafana", get(grafana_status))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/tsdb", get(tsdb))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/notifications", get(notifications))
        .route("/api/v1/notifications/test", post(test_notifications))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(delete_series).put(delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(clean_tombstones).put(clean_tombstones),
        )
        .route("/api/v1/admin/tsdb/snapshot", post(snapshot).put(snapshot))
}

/// Prometheus's API error kinds.
#[derive(Debug, Clone, Copy)]
enum ErrorType {
    BadData,
    NotFound,
    Execution,
    Timeout,
    Unavailable,
    Internal,
}

struct ApiError(ErrorType, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, kind) = match self.0 {
            ErrorType::BadData => (StatusCode::BAD_REQUEST, "bad_data"),
            ErrorType::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorType::Execution => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
            ErrorType::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ErrorType::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ErrorType::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        (
            code,
            axum::Json(json!({"status": "error", "errorType": kind, "error": self.1})),
        )
            .into_response()
    }
}

fn ok(data: Value, warnings: Vec<String>) -> Response {
    let mut body = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    axum::Json(body).into_response()
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(ErrorType::BadData, msg.into())
}

/// Query string and form body parameters together, as Go's `r.Form`.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(query: Option<String>, body: &[u8]) -> Self {
        let mut v: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        if let Some(q) = query {
            v.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Params(v)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn time(&self, k: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(k) {
            None => Ok(default),
            Some(s) => parse_api_time(s).map_err(|e| {
                bad(format!(
                    "invalid parameter {k:?}: Invalid time value for '{k}': {e}"
                ))
            }),
        }
    }
    fn range(&self) -> Result<(i64, i64), ApiError> {
        let start = self.time("start", MIN_TIME_MS)?;
        let end = self.time("end", MAX_TIME_MS)?;
        if end < start {
            return Err(bad(
                "invalid parameter \"end\": end timestamp must not be before start time",
            ));
        }
        Ok((start, end))
    }
    fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(0),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(n as usize),
                Ok(_) => Err(bad("limit must be non-negative")),
                Err(_) => Err(bad(format!(
                    "invalid parameter \"limit\": cannot parse {s:?} to a valid limit"
                ))),
            },
        }
    }
}

/// Prometheus's limit on points per series in a range query.
const MAX_POINTS: i64 = 11_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A timestamp as Prometheus writes it in results: seconds, with up to three decimals and no
/// trailing zeros (`1764021585`, `1764021585.5`), as Go's float formatting gives.
fn write_time(out: &mut Vec<u8>, ms: i64) {
    use std::io::Write as _;
    if ms < 0 {
        out.push(b'-');
    }
    let abs = ms.unsigned_abs();
    let (secs, frac) = (abs / 1000, abs % 1000);
    let _ = if frac == 0 {
        write!(out, "{secs}")
    } else {
        let digits = format!("{frac:03}");
        write!(out, "{secs}.{}", digits.trim_end_matches('0'))
    };
}

/// A float as Prometheus's API writes it (`jsonutil.MarshalFloat`): Go's shortest `'f'`
/// form, but the `'e'` form (`1e-07`, `1e+21`) below 1e-6 and from 1e21 on.
pub fn api_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && abs.is_finite() && !(1e-6..1e21).contains(&abs) {
        let sci = format!("{f:e}");
        let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    crate::promql::format_value(f)
}

/// A native histogram as Prometheus's API renders it (no `buckets` when it has none).
fn histogram_json(h: &crate::model::histogram::FloatHistogram) -> Value {
    let f = api_float;
    let mut v = json!({
        "count": f(h.count),
        "sum": f(h.sum),
    });
    let buckets = h.api_buckets();
    if !buckets.is_empty() {
        v["buckets"] = buckets
            .into_iter()
            .map(|(rule, lo, hi, c)| json!([rule, f(lo), f(hi), f(c)]))
            .collect();
    }
    v
}

fn promql_error(e: crate::promql::PromqlError) -> ApiError {
    use crate::promql::PromqlError as E;
    match e {
        E::Parse(m) => bad(format!("invalid parameter \"query\": {m}")),
        E::Timeout(_) => ApiError(ErrorType::Timeout, e.to_string()),
        E::Execution(_) | E::TooManySamples(_) => ApiError(ErrorType::Execution, e.to_string()),
    }
}

/// Renders a query result as Prometheus's API does. The body is written straight into one
/// buffer: building a `serde_json::Value` per point first cost about 150 bytes per sample (a
/// 5.76 M-sample answer peaked at 1.9 GB).
fn result_json(r: crate::promql::QueryResult, t: i64) -> Response {
    use crate::promql::Value as V;
    use std::io::Write as _;
    let mut out: Vec<u8> = Vec::with_capacity(256);
    let num = write_time;
    let point = |out: &mut Vec<u8>, ms: i64, f: f64| {
        out.push(b'[');
        num(out, ms);
        out.push(b',');
        let _ = serde_json::to_writer(&mut *out, &api_float(f));
        out.push(b']');
    };
    let metric = |out: &mut Vec<u8>, l: &Labels| {
        let _ = serde_json::to_writer(&mut *out, &labels_json(l));
    };
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":");
    match &r.value {
        V::Scalar(f) => {
            out.extend_from_slice(b"\"scalar\",\"result\":");
            point(&mut out, t, *f);
        }
        V::String(st) => {
            out.extend_from_slice(b"\"string\",\"result\":[");
            num(&mut out, t);
            out.push(b',');
            let _ = serde_json::to_writer(&mut out, st);
            out.push(b']');
        }
        V::Vector(v) => {
            out.extend_from_slice(b"\"vector\",\"result\":[");
            for (i, smp) in v.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                metric(&mut out, &smp.metric);
                match &smp.h {
                    Some(h) => {
                        out.extend_from_slice(b",\"histogram\":[");
                        num(&mut out, t);
                        out.push(b',');
                        let _ = serde_json::to_writer(&mut out, &histogram_json(h));
                        out.push(b']');
                    }
                    None => {
                        out.extend_from_slice(b",\"value\":");
                        point(&mut out, t, smp.f);
                    }
                }
                out.push(b'}');
            }
            out.push(b']');
        }
        V::Matrix(m) => {
            out.extend_from_slice(b"\"matrix\",\"result\":[");
            for (i, series) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                metric(&mut out, &series.metric);
                // As Prometheus: each list only when it has points.
                if !series.points.is_empty() {
                    out.extend_from_slice(b",\"values\":[");
                    for (j, (pt, f)) in series.points.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        point(&mut out, *pt, *f);
                    }
                    out.push(b']');
                }
                if !series.histograms.is_empty() {
                    out.extend_from_slice(b",\"histograms\":[");
                    for (j, (pt, h)) in series.histograms.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        out.push(b'[');
                        num(&mut out, *pt);
                        out.push(b',');
                        let _ = serde_json::to_writer(&mut out, &histogram_json(h));
                        out.push(b']');
                    }
                    out.push(b']');
                }
                out.push(b'}');
            }
            out.push(b']');
        }
    }
    out.push(b'}');
    // The result is rendered; its memory goes before the body is handed on.
    drop(r.value);
    if !r.warnings.is_empty() {
        let _ = write!(out, ",\"warnings\":");
        let _ = serde_json::to_writer(&mut out, &r.warnings);
    }
    if !r.infos.is_empty() {
        let _ = write!(out, ",\"infos\":");
        let _ = serde_json::to_writer(&mut out, &r.infos);
    }
    out.push(b'}');
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response()
}

/// Parses a step or timeout: float seconds or a Prometheus duration.
fn parse_duration_param(name: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = f * 1000.0;
        if ms.is_finite() && ms.abs() < i64::MAX as f64 {
            return Ok(ms.round() as i64);
        }
        return Err(bad(format!("invalid parameter {name:?}: cannot parse {s:?} to a valid duration. It overflows int64")));
    }
    crate::model::time::Duration::parse(s)
        .map(|d| d.as_millis())
        .map_err(|_| {
            bad(format!(
                "invalid parameter {name:?}: cannot parse {s:?} to a valid duration"
            ))
        })
}

fn query_text(p: &Params) -> Result<String, ApiError> {
    match p.get("query") {
        Some(q) => Ok(q.to_string()),
        None => Err(bad("invalid parameter \"query\": unknown position: parse error: no expression found in input")),
    }
}

async fn query(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &body);
    let t = p.time("time", now_ms())?;
    let text = query_text(&p)?;
    if let Some(to) = p.get("timeout") {
        parse_duration_param("timeout", to)?;
    }
    let engine = st.deps.engine.clone();
    let r = tokio::task::spawn_blocking(move || engine.instant(&text, t))
        .await
        .map_err(|e| ApiError(ErrorType::Execution, e.to_string()))?
        .map_err(promql_error)?;
    Ok(result_json(r, t))
}

async fn query_range(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &body);
    let start = match p.get("start") {
        Some(s) => parse_api_time(s).map_err(|e| bad(format!("invalid parameter \"start\": Invalid time value for 'start': {e}")))?,
        None => return Err(bad("invalid parameter \"start\": Invalid time value for 'start': cannot parse \"\" to a valid timestamp")),
    };
    let end = match p.get("end") {
        Some(s) => parse_api_time(s).map_err(|e| bad(format!("invalid parameter \"end\": Invalid time value for 'end': {e}")))?,
        None => return Err(bad("invalid parameter \"end\": Invalid time value for 'end': cannot parse \"\" to a valid timestamp")),
    };
    if end < start {
        return Err(bad(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = match p.get("step") {
        Some(s) => parse_duration_param("step", s)?,
        None => {
            return Err(bad(
                "invalid parameter \"step\": cannot parse \"\" to a valid duration",
            ))
        }
    };
    if step <= 0 {
        return Err(bad("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(bad("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
    }
    let text = query_text(&p)?;
    let engine = st.deps.engine.clone();
    let r = tokio::task::spawn_blocking(move || engine.range(&text, start, end, step))
        .await
        .map_err(|e| ApiError(ErrorType::Execution, e.to_string()))?
        .map_err(promql_error)?;
    Ok(result_json(r, start))
}

async fn format_query(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &body);
    let text = query_text(&p)?;
    let budget = st.deps.engine.timeout();
    let pretty = parsed_blocking(text, budget, |e| Ok(e.prettify())).await?;
    Ok(ok(json!(pretty), Vec::new()))
}

async fn parse_query(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &body);
    let text = query_text(&p)?;
    let budget = st.deps.engine.timeout();
    // The parser crate serialises its AST in the JSON shape of Prometheus's parse_query.
    let ast = parsed_blocking(text, budget, |e| serde_json::to_value(e)).await?;
    Ok(ok(ast, Vec::new()))
}

/// Parses `text` off the async threads (on a stack its depth fits) and applies `f` there.
async fn parsed_blocking<T: Send + 'static>(
    text: String,
    budget: std::time::Duration,
    f: impl FnOnce(&promql_parser::parser::Expr) -> Result<T, serde_json::Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || crate::promql::with_parsed(&text, budget, f))
        .await
        .map_err(|e| ApiError(ErrorType::Execution, e.to_string()))?
        .map_err(promql_error)?
        .map_err(|e| ApiError(ErrorType::Execution, e.to_string()))
}

/// Parses a series selector with the PromQL parser into our matchers.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, String> {
    // A selector is one bracket deep; anything deeper is refused before the parser (which
    // recurses) sees it.
    if crate::promql::shape::nesting(s).map_err(|e| e.to_string())? > 4 {
        return Err(format!(
            "1:1: parse error: unexpected expression {s:?}, expected a vector selector"
        ));
    }
    let expr = promql_parser::parser::parse(s)?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "1:1: parse error: unexpected expression {s:?}, expected a vector selector"
        ));
    };
    let mut out = Vec::new();
    if let Some(n) = &vs.name {
        out.push(
            Matcher::new(MatchOp::Equal, crate::model::METRIC_NAME, n.clone())
                .map_err(|e| e.to_string())?,
        );
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            promql_parser::label::MatchOp::Equal => MatchOp::Equal,
            promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
            promql_parser::label::MatchOp::Re(_) => MatchOp::Regex,
            promql_parser::label::MatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())?);
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err("\"or\" in series selectors is not supported here".into());
    }
    if out.iter().all(|m| m.matches_empty()) {
        return Err("vector selector must contain at least one non-empty matcher".into());
    }
    Ok(out)
}

fn match_sets(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    p.all("match[]")
        .into_iter()
        .map(|s| parse_selector(s).map_err(|e| bad(format!("invalid parameter \"match[]\": {e}"))))
        .collect()
}

fn labels_json(l: &Labels) -> Value {
    let mut m = Map::new();
    for p in l.iter() {
        m.insert(p.name.to_string(), Value::String(p.value.to_string()));
    }
    Value::Object(m)
}

fn truncate<T>(v: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        warnings.push("results truncated due to limit".into());
    }
}

async fn series(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &body);
    let sets = match_sets(&p)?;
    if sets.is_empty() {
        return Err(bad("no match[] parameter provided"));
    }
    let (start, end) = p.range()?;
    let limit = p.limit()?;
    let mut all: Vec<Labels> = sets
        .iter()
        .flat_map(|m| st.deps.querier.series(m, start, end))
        .collect();
    all.sort();
    all.dedup();
    let mut warnings = Vec::new();
    truncate(&mut all, limit, &mut warnings);
    Ok(ok(
        Value::Array(all.iter().map(labels_json).collect()),
        warnings,
    ))
}

/// Runs `lookup` for each `match[]` set (or once with no matchers), merges the sorted
/// unique strings and applies `limit`: the shared shape of `labels` and `label/<n>/values`.
fn string_union(
    p: &Params,
    lookup: impl Fn(&[Matcher], i64, i64) -> Vec<String>,
) -> Result<Response, ApiError> {
    let sets = match_sets(p)?;
    let (start, end) = p.range()?;
    let limit = p.limit()?;
    let mut out: Vec<String> = if sets.is_empty() {
        lookup(&[], start, end)
    } else {
        sets.iter().flat_map(|m| lookup(m, start, end)).collect()
    };
    out.sort();
    out.dedup();
    let mut warnings = Vec::new();
    truncate(&mut out, limit, &mut warnings);
    Ok(ok(json!(out), warnings))
}

async fn labels(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &body);
    string_union(&p, |m, start, end| {
        st.deps.querier.label_names(m, start, end)
    })
}

async fn label_values(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &[]);
    let name = unescape_name(&name);
    if name.is_empty() {
        return Err(bad(format!("invalid label name: {name:?}")));
    }
    string_union(&p, |m, start, end| {
        st.deps.querier.label_values(&name, m, start, end)
    })
}

/// Undoes Prometheus's `U__` value-encoding escaping of label names in URL paths
/// (`U__http_2e_method` is `http.method`, `__` is `_`); anything malformed stays as written.
fn unescape_name(name: &str) -> String {
    let Some(esc) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let b = esc.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'_' {
            let ch = esc[i..].chars().next().unwrap_or('\u{fffd}');
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        i += 1;
        match b.get(i) {
            None => return name.to_string(),
            Some(b'_') => {
                out.push('_');
                i += 1;
            }
            Some(_) => {
                let mut v: u32 = 0;
                let mut digits = 0;
                loop {
                    match b.get(i) {
                        Some(b'_') => break,
                        Some(c) if c.is_ascii_hexdigit() && digits < 6 => {
                            v = v * 16 + (*c as char).to_digit(16).unwrap_or(0);
                            digits += 1;
                            i += 1;
                        }
                        _ => return name.to_string(),
                    }
                }
                let Some(ch) = char::from_u32(v) else {
                    return name.to_string();
                };
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

async fn targets(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::new(q, &[]);
    let state = p.get("state").unwrap_or("any").to_ascii_lowercase();
    let pool = p.get("scrapePool");
    let show_active = state == "active" || state == "any";
    let show_dropped = state == "dropped" || state == "any";
    let t = &st.deps.targets;
    let active: Vec<Value> = if show_active {
        t.active()
            .into_iter()
            .filter(|a| pool.map(|p| p == a.scrape_pool).unwrap_or(true))
            .map(|a| {
                json!({
                    "discoveredLabels": labels_json(&a.discovered_labels),
                    "labels": labels_json(&a.labels),
                    "scrapePool": a.scrape_pool,
                    "scrapeUrl": a.scrape_url,
                    "globalUrl": a.scrape_url,
                    "lastError": a.last_error,
                    "lastScrape": if a.last_scrape_ms == 0 { "0001-01-01T00:00:00Z".to_string() } else { format_rfc3339(a.last_scrape_ms) },
                    "lastScrapeDuration": a.last_scrape_duration,
                    "health": a.health.as_str(),
                    "scrapeInterval": a.scrape_interval,
                    "scrapeTimeout": a.scrape_timeout,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let dropped: Vec<Value> = if show_dropped {
        t.dropped()
            .into_iter()
            .filter(|d| pool.map(|p| p == d.scrape_pool).unwrap_or(true))
            .map(|d| json!({"discoveredLabels": labels_json(&d.discovered_labels)}))
            .collect()
    } else {
        Vec::new()
    };
    let counts: Map<String, Value> = t
        .dropped_counts()
        .into_iter()
        .filter(|(n, _)| pool.map(|p| p == n).unwrap_or(true))
        .map(|(n, c)| (n, json!(c)))
        .collect();
    Ok(ok(
        json!({"activeTargets": active, "droppedTargets": dropped, "droppedTargetCounts": counts}),
        Vec::new(),
    ))
}

async fn targets_metadata(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &[]);
    let limit = p.limit()?;
    let matchers = match p.get("match_target") {
        Some(s) => {
            let ms = parse_selector_lenient(s)
                .map_err(|e| bad(format!("invalid parameter \"match_target\": {e}")))?;
            Some(ms)
        }
        None => None,
    };
    let metric = p.get("metric");
    let mut out = Vec::new();
    for (target, m) in st.deps.targets.metadata() {
        if let Some(ms) = &matchers {
            if !ms
                .iter()
                .all(|x| x.matches(target.get(&x.name).unwrap_or("")))
            {
                continue;
            }
        }
        if metric.map(|n| n != m.metric).unwrap_or(false) {
            continue;
        }
        out.push(json!({"target": labels_json(&target), "metric": m.metric, "type": m.kind, "help": m.help, "unit": m.unit}));
        if limit > 0 && out.len() >= limit {
            break;
        }
    }
    if out.is_empty() {
        return Err(ApiError(
            ErrorType::NotFound,
            "specified metadata not found".into(),
        ));
    }
    Ok(ok(Value::Array(out), Vec::new()))
}

/// `GET /api/v1/metadata`: per metric name, the distinct metadata targets reported (and
/// pushes carried), as Prometheus answers; `metric`, `limit` and `limit_per_metric` filter.
async fn metadata(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::new(q, &[]);
    let limit = p.limit()?;
    let per_metric: usize = match p.get("limit_per_metric") {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| bad("invalid parameter \"limit_per_metric\""))?
            .max(0) as usize,
        None => 0,
    };
    let metric = p.get("metric");
    let mut by_name: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    let entries = st
        .deps
        .targets
        .metadata()
        .into_iter()
        .map(|(_, m)| (m.metric, m.kind, m.help, m.unit))
        .chain(
            st.deps
                .remote
                .received_metadata()
                .into_iter()
                .map(|m| (m.metric, m.kind, m.help, m.unit)),
        );
    for (name, kind, help, unit) in entries {
        if metric.is_some_and(|m| m != name) {
            continue;
        }
        let v = json!({"type": kind, "help": help, "unit": unit});
        let list = by_name.entry(name).or_default();
        if !list.contains(&v) && (per_metric == 0 || list.len() < per_metric) {
            list.push(v);
        }
    }
    let mut out = Map::new();
    for (k, v) in by_name {
        if limit > 0 && out.len() >= limit {
            break;
        }
        out.insert(k, Value::Array(v));
    }
    Ok(ok(Value::Object(out), Vec::new()))
}

/// `GET|POST /api/v1/query_exemplars`: the exemplars of the series the query's selectors
/// match in `[start, end]`, per series, as Prometheus answers (204 for a query without a
/// selector).
async fn query_exemplars(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(q, &body);
    let start = p.time("start", MIN_TIME_MS)?;
    let end = p.time("end", MAX_TIME_MS)?;
    if end < start {
        return Err(bad("end timestamp must not be before start timestamp"));
    }
    let text = p.get("query").unwrap_or("").to_string();
    let sets = tokio::task::spawn_blocking(move || crate::promql::selectors(&text))
        .await
        .map_err(|e| ApiError(ErrorType::Execution, e.to_string()))?
        .map_err(|e| match e {
            crate::promql::PromqlError::Parse(m) => bad(m),
            e => promql_error(e),
        })?;
    if sets.is_empty() {
        // Prometheus answers a query without a selector with 204 and no body.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut out: Vec<u8> = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":[");
    for (i, s) in st
        .deps
        .querier
        .exemplars(&sets, start, end)
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"seriesLabels\":");
        let _ = serde_json::to_writer(&mut out, &labels_json(&s.series));
        out.extend_from_slice(b",\"exemplars\":[");
        for (j, e) in s.exemplars.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"labels\":");
            let _ = serde_json::to_writer(&mut out, &labels_json(&e.labels));
            out.extend_from_slice(b",\"value\":");
            let _ = serde_json::to_writer(&mut out, &crate::promql::format_value(e.value));
            out.extend_from_slice(b",\"timestamp\":");
            write_time(&mut out, e.t_ms);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

/// `GET /federate?match[]=…`: the newest sample within the lookback of every series the
/// selectors match, in the text format, as Prometheus federates: families by name, all
/// `untyped`, the sample's own timestamp, external labels (and an empty `instance`) added
/// where the series has none of its own; stale markers left out. No `match[]`, no series.
pub(super) async fn federate(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    use std::fmt::Write as _;
    let p = Params::new(q, &[]);
    let mut sets = Vec::new();
    for s in p.all("match[]") {
        match parse_selector(s) {
            Ok(m) => sets.push(m),
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        }
    }
    let maxt = now_ms();
    let mint = maxt - st.deps.status.lookback_ms();
    let querier = st.deps.querier.clone();
    let series = match tokio::task::spawn_blocking(move || {
        let mut latest: std::collections::BTreeMap<Labels, (i64, f64)> = Default::default();
        for m in &sets {
            for s in querier.select(m, mint, maxt) {
                if let Some(&(t, v)) = s.samples.last() {
                    latest.insert(s.labels, (t, v));
                }
            }
        }
        latest
    })
    .await
    {
        Ok(s) => s,
        // An empty 200 would read as "no series" to the federating Prometheus.
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("federation failed: {e}\n"),
            )
                .into_response()
        }
    };
    let mut ext = st.deps.status.external_labels();
    ext.entry("instance".to_string()).or_default();
    // By name, then labels: the map is sorted by the whole label set, whose first label
    // is `__name__`.
    let mut out = String::new();
    let mut family = "";
    for (labels, (t, v)) in &series {
        if crate::model::is_stale_nan(*v) {
            continue;
        }
        let name = labels.metric_name();
        if name.is_empty() {
            continue;
        }
        if name != family {
            let _ = writeln!(out, "# TYPE {name} untyped");
            family = name;
        }
        out.push_str(name);
        let mut pairs: Vec<(&str, &str)> = labels
            .iter()
            .filter(|l| l.name != crate::model::METRIC_NAME && !l.value.is_empty())
            .map(|l| (l.name, l.value))
            .collect();
        for (k, val) in &ext {
            if labels.get(k).is_none_or(str::is_empty) {
                pairs.push((k, val));
            }
        }
        if !pairs.is_empty() {
            out.push('{');
            for (i, (k, val)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{k}=\"{}\"",
                    crate::model::exposition::escape_label_value(val)
                );
            }
            out.push('}');
        }
        let _ = writeln!(out, " {} {t}", crate::model::exposition::format_go_g(*v));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Where other agents push (Prometheus's receiver path).
pub const WRITE_PATH: &str = "/api/v1/write";
/// Largest compressed push accepted.
const MAX_PUSH_BYTES: usize = 32 << 20;

/// `POST /api/v1/write`: a remote-write 1.0 or 2.0 push (snappy-compressed protobuf).
/// Answers 204 with the `…-Written` headers; 400 for a body that cannot be read, or, after
/// writing the rest, when samples were refused (out of order, too old); 413 when too large.
async fn remote_write(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    use crate::remote::proto::Protocol;
    use crate::remote::receive::ReceiveError;
    if !st.deps.remote.receiver_enabled() {
        return (
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with web.enable_remote_write_receiver: true\n",
        )
            .into_response();
    }
    let h = |n: axum::http::header::HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let ct = h(axum::http::header::CONTENT_TYPE);
    let Some(protocol) = Protocol::from_content_type(if ct.is_empty() {
        "application/x-protobuf"
    } else {
        &ct
    }) else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type {ct:?}: send application/x-protobuf (proto=prometheus.WriteRequest or io.prometheus.write.v2.Request)\n"),
        )
            .into_response();
    };
    let enc = h(axum::http::header::CONTENT_ENCODING);
    if !enc.is_empty() && !enc.eq_ignore_ascii_case("snappy") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content encoding {enc:?}: send snappy\n"),
        )
            .into_response();
    }
    let bytes = match axum::body::to_bytes(body, MAX_PUSH_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("push larger than {MAX_PUSH_BYTES} bytes\n"),
            )
                .into_response()
        }
    };
    let remote = st.deps.remote.clone();
    let res = tokio::task::spawn_blocking(move || remote.receive(&bytes, protocol)).await;
    let written = |w: &crate::remote::receive::Written| {
        [
            (
                "X-Prometheus-Remote-Write-Samples-Written",
                w.samples.to_string(),
            ),
            (
                "X-Prometheus-Remote-Write-Histograms-Written",
                w.histograms.to_string(),
            ),
            (
                "X-Prometheus-Remote-Write-Exemplars-Written",
                "0".to_string(),
            ),
        ]
    };
    match res {
        Ok(Ok(w)) if w.refused == 0 => (StatusCode::NO_CONTENT, written(&w)).into_response(),
        Ok(Ok(w)) => (
            StatusCode::BAD_REQUEST,
            written(&w),
            format!(
                "{} samples refused (out of order, too old, or a different value at the same timestamp); the other {} were written\n",
                w.refused, w.samples + w.histograms
            ),
        )
            .into_response(),
        Ok(Err(e @ ReceiveError::Decode(crate::remote::proto::DecodeError::TooLarge(..)))) => {
            (StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n")).into_response()
        }
        Ok(Err(e @ (ReceiveError::Decode(_) | ReceiveError::Invalid(_)))) => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "push handling failed\n").into_response(),
    }
}

/// `GET /api/v1/status/remote_write`: each queue's shards, backlog, lag and last error.
async fn remote_write_status(State(st): State<AppState>) -> Response {
    ok(json!(st.deps.remote.queues()), Vec::new())
}

/// `GET /api/v1/status/grafana`: the Grafana sync, item by item.
async fn grafana_status(State(st): State<AppState>) -> Response {
    ok(st.deps.status.grafana(), Vec::new())
}

/// `match_target` is a label selector without a metric name, e.g. `{job="node"}`.
fn parse_selector_lenient(s: &str) -> Result<Vec<Matcher>, String> {
    match parse_selector(s) {
        Ok(m) => Ok(m),
        Err(e) if e.contains("non-empty matcher") => {
            let expr = promql_parser::parser::parse(&format!("x{s}"))?;
            let promql_parser::parser::Expr::VectorSelector(_) = expr else {
                return Err(e);
            };
            parse_selector(&format!("x{s}")).map(|mut v| {
                v.retain(|m| m.name != crate::model::METRIC_NAME);
                v
            })
        }
        Err(e) => Err(e),
    }
}

/// `GET /api/v1/status/buildinfo`: Prometheus's shape with the appliance's own facts,
/// stamped by build.rs (`rustVersion` where Prometheus has `goVersion`).
async fn buildinfo() -> Response {
    ok(
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": env!("APPLIANCE_REVISION"),
            "branch": env!("APPLIANCE_BRANCH"),
            "buildUser": env!("APPLIANCE_BUILD_USER"),
            "buildDate": env!("APPLIANCE_BUILD_DATE"),
            "rustVersion": env!("APPLIANCE_RUSTC"),
        }),
        Vec::new(),
    )
}

/// The process's resident memory in bytes (`VmRSS`), 0 where /proc does not say.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `GET /api/v1/status/runtimeinfo`: Prometheus's fields that apply (start, working
/// directory, reload state, retention) and the appliance's own (uptime, data directory,
/// memory, threads); none of Go's runtime settings.
async fn runtimeinfo(State(st): State<AppState>) -> Response {
    let (ok_reload, last) = st.deps.status.reload_status();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let uptime = (now_ms() - st.deps.start_ms).max(0) / 1000;
    ok(
        json!({
            "startTime": format_rfc3339(st.deps.start_ms),
            "uptimeSeconds": uptime,
            "CWD": cwd,
            "dataDir": st.deps.status.data_dir(),
            "reloadConfigSuccess": ok_reload,
            "lastConfigTime": format_rfc3339(last * 1000),
            "corruptionCount": 0,
            "residentMemoryBytes": rss_bytes(),
            "cpus": cpus,
            "storageRetention": st.deps.status.storage_retention(),
        }),
        Vec::new(),
    )
}

async fn flags(State(st): State<AppState>) -> Response {
    let m: Map<String, Value> = st
        .deps
        .status
        .flags()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    ok(Value::Object(m), Vec::new())
}

async fn config(State(st): State<AppState>) -> Response {
    ok(json!({"yaml": st.deps.status.config_yaml()}), Vec::new())
}

async fn tsdb(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::new(q, &[]);
    let limit = match p.get("limit") {
        None => 10,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("limit must be a positive number")),
        },
    };
    let s = st.deps.status.tsdb(limit);
    let list = |v: &Vec<(String, u64)>| {
        Value::Array(
            v.iter()
                .map(|(n, c)| json!({"name": n, "value": c}))
                .collect(),
        )
    };
    // The appliance's "head" is an implementation detail: headStats describes everything
    // stored (blocks and head), so an imported store reports its data; storageStats.head has
    // the in-memory head alone.
    let st = &s.store;
    let (min, max) = if st.num_series == 0 {
        (i64::MAX, i64::MIN)
    } else {
        (st.min_time, st.max_time)
    };
    Ok(ok(
        json!({
            "headStats": {"numSeries": st.num_series, "numLabelPairs": st.num_label_pairs, "chunkCount": st.chunk_count, "minTime": min, "maxTime": max},
            "storageStats": s.store,
            "seriesCountByMetricName": list(&s.series_count_by_metric_name),
            "labelValueCountByLabelName": list(&s.label_value_count_by_label_name),
            "memoryInBytesByLabelName": list(&s.memory_in_bytes_by_label_name),
            "seriesCountByLabelValuePair": list(&s.series_count_by_label_value_pair),
        }),
        Vec::new(),
    ))
}

fn alert_json(a: &crate::rules::group::Alert) -> Value {
    let mut v = json!({
        "labels": labels_json(&a.labels),
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": format_rfc3339(a.active_at),
        "value": crate::rules::template::go_e(a.value),
    });
    if a.keep_firing_since != 0 {
        v["keepFiringSince"] = json!(format_rfc3339(a.keep_firing_since));
    }
    v
}

fn eval_time(ms: i64) -> String {
    if ms == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        format_rfc3339(ms)
    }
}

async fn rules(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::new(q, &[]);
    let kind = p.get("type").map(|t| t.to_ascii_lowercase());
    let (want_alerts, want_records) = match kind.as_deref() {
        None => (true, true),
        Some("alert") => (true, false),
        Some("record") => (false, true),
        Some(other) => return Err(bad(format!("invalid query parameter type='{other}'"))),
    };
    let names = p.all("rule_name[]");
    let mut group_names = p.all("rule_group[]");
    group_names.extend(p.all("group_name[]"));
    let files = p.all("file[]");
    let exclude_alerts = matches!(p.get("exclude_alerts"), Some("true" | "1"));
    let mut groups = Vec::new();
    for g in st.deps.rules.rule_groups() {
        if !group_names.is_empty() && !group_names.contains(&g.name.as_str()) {
            continue;
        }
        if !files.is_empty() && !files.contains(&g.file.as_str()) {
            continue;
        }
        let mut rules = Vec::new();
        for r in &g.rules {
            if (r.alerting && !want_alerts) || (!r.alerting && !want_records) {
                continue;
            }
            if !names.is_empty() && !names.contains(&r.name.as_str()) {
                continue;
            }
            let common = |v: &mut Value| {
                v["health"] = json!(r.health.health);
                v["evaluationTime"] = json!(r.health.eval_seconds);
                v["lastEvaluation"] = json!(eval_time(r.health.last_eval_ms));
                if !r.health.last_error.is_empty() {
                    v["lastError"] = json!(r.health.last_error);
                }
            };
            let mut v = if r.alerting {
                let state = r
                    .alerts
                    .iter()
                    .map(|a| a.state)
                    .max_by_key(|s| match s {
                        crate::rules::group::AlertState::Firing => 2,
                        crate::rules::group::AlertState::Pending => 1,
                        crate::rules::group::AlertState::Inactive => 0,
                    })
                    .map(|s| s.as_str())
                    .unwrap_or("inactive");
                let mut v = json!({
                    "state": state,
                    "name": r.name,
                    "query": r.query,
                    "duration": r.for_s,
                    "keepFiringFor": r.keep_firing_for_s,
                    "labels": r.labels,
                    "annotations": r.annotations,
                    "type": "alerting",
                });
                if !exclude_alerts {
                    v["alerts"] = Value::Array(r.alerts.iter().map(alert_json).collect());
                }
                v
            } else {
                json!({"name": r.name, "query": r.query, "labels": r.labels, "type": "recording"})
            };
            common(&mut v);
            rules.push(v);
        }
        if rules.is_empty() && (!names.is_empty() || kind.is_some()) {
            continue;
        }
        groups.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": g.interval_s,
            "limit": g.limit,
            "evaluationTime": g.eval_seconds,
            "lastEvaluation": eval_time(g.last_eval_ms),
        }));
    }
    Ok(ok(json!({"groups": groups}), Vec::new()))
}

async fn notifications(State(st): State<AppState>) -> Response {
    ok(json!(st.deps.rules.notifications()), Vec::new())
}

/// `POST /api/v1/notifications/test` (admin): a test notification to every receiver now.
async fn test_notifications(State(st): State<AppState>) -> Response {
    ok(json!(st.deps.rules.send_test().await), Vec::new())
}

async fn alerts(State(st): State<AppState>) -> Response {
    let all: Vec<Value> = st
        .deps
        .rules
        .rule_groups()
        .iter()
        .flat_map(|g| g.rules.iter())
        .flat_map(|r| r.alerts.iter())
        .map(alert_json)
        .collect();
    ok(json!({"alerts": all}), Vec::new())
}

fn admin_enabled(st: &AppState) -> Result<(), ApiError> {
    if st.deps.admin.admin_enabled() {
        Ok(())
    } else {
        Err(ApiError(
            ErrorType::Unavailable,
            "admin APIs disabled".into(),
        ))
    }
}

/// Runs blocking admin work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(ApiError(ErrorType::Internal, e)),
        Err(e) => Err(ApiError(ErrorType::Internal, e.to_string())),
    }
}

async fn delete_series(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_enabled(&st)?;
    let p = Params::new(q, &body);
    let sets = match_sets(&p)?;
    if sets.is_empty() {
        return Err(bad("no match[] parameter provided"));
    }
    let (start, end) = p.range()?;
    let admin = st.deps.admin.clone();
    blocking(move || admin.delete_series(&sets, start, end)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn clean_tombstones(State(st): State<AppState>) -> Result<Response, ApiError> {
    admin_enabled(&st)?;
    let admin = st.deps.admin.clone();
    blocking(move || admin.clean_tombstones()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn snapshot(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_enabled(&st)?;
    let p = Params::new(q, &body);
    let skip_head = match p.get("skip_head") {
        None | Some("") => false,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => true,
            "0" | "f" | "false" => false,
            _ => {
                return Err(bad(format!(
                    "unable to parse boolean 'skip_head' argument: strconv.ParseBool: parsing {v:?}: invalid syntax"
                )))
            }
        },
    };
    let admin = st.deps.admin.clone();
    let name = blocking(move || admin.snapshot(skip_head)).await?;
    Ok(ok(json!({"name": name}), Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values below 1e-6 or from 1e21 on are written in Go's `'e'` form, as Prometheus's
    /// `MarshalFloat` does (a rate of rare events printed `0.0000001` here, `1e-07` there).
    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        for (f, want) in [
            (1e-7, "1e-07"),
            (-1e-128, "-1e-128"),
            (1.5e-6, "0.0000015"),
            (1e-6, "0.000001"),
            (9.99e-7, "9.99e-07"),
            (1e21, "1e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (-2.5e300, "-2.5e+300"),
            (0.0, "0"),
            (0.1, "0.1"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::MAX, "1.7976931348623157e+308"),
        ] {
            assert_eq!(api_float(f), want, "{f:e}");
        }
    }

    #[test]
    fn times_are_written_as_prometheus_writes_them() {
        for (ms, want) in [
            (1_764_021_585_000, "1764021585"),
            (1_764_021_585_500, "1764021585.5"),
            (1_764_021_585_042, "1764021585.042"),
            (0, "0"),
            (-1_500, "-1.5"),
        ] {
            let mut out = Vec::new();
            write_time(&mut out, ms);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn selectors() {
        let m = parse_selector("node_cpu_seconds_total{mode=~\"idle|user\",cpu!=\"1\"}").unwrap();
        assert_eq!(m.len(), 3);
        assert!(parse_selector("{a=\"\"}").is_err());
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector("x{").is_err());
        assert_eq!(parse_selector_lenient("{job=\"node\"}").unwrap().len(), 1);
    }

    #[test]
    fn histograms_render_as_prometheus_does() {
        let h = crate::model::histogram::FloatHistogram::parse(
            "{{schema:0 count:3 sum:4.5 z_bucket:1 buckets:[2] offset:1}}",
        )
        .unwrap();
        assert_eq!(
            histogram_json(&h),
            json!({"count": "3", "sum": "4.5", "buckets": [[3, "-0", "0", "1"], [0, "1", "2", "2"]]})
        );
    }

    #[test]
    fn escaped_label_names() {
        assert_eq!(unescape_name("job"), "job");
        assert_eq!(unescape_name("U__http_2e_method"), "http.method");
        assert_eq!(unescape_name("U__a__b"), "a_b");
        assert_eq!(unescape_name("U__bad_zz_"), "U__bad_zz_");
        assert_eq!(unescape_name("U__x_"), "U__x_");
    }
}
