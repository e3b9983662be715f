//! The HTTP server (axum): health and readiness, reload, the appliance's own `/metrics`, each
//! built-in collector at `/metrics/<name>`, and the Prometheus HTTP API subset with
//! Prometheus-identical JSON, `errorType`s and status codes.
//!
//! This module declares the narrow read traits it needs; `app.rs` implements them. It never
//! reaches into another module's internals.

mod alertmanager;
mod api;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::collect::Collector;
use crate::model::Labels;
use crate::scrape::{DroppedTarget, MetadataEntry, TargetStatus};
use crate::storage::{Querier, TsdbStats};

/// The `web` config section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Listen address, `:8080` or `host:port` (`--listen` overrides).
    pub listen_address: String,
    /// The URL users reach the appliance at, when behind a proxy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_url: String,
    /// Serve `/api/v1/admin/tsdb/*` (delete_series, clean_tombstones, snapshot). On by
    /// default; set `false` to refuse them as Prometheus does without `--web.enable-admin-api`.
    pub enable_admin_api: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen_address: ":8080".into(),
            external_url: String::new(),
            enable_admin_api: true,
        }
    }
}

/// Turns `:8080` into `0.0.0.0:8080`; other forms pass through.
pub fn bind_address(listen: &str) -> String {
    if listen.starts_with(':') {
        format!("0.0.0.0{listen}")
    } else {
        listen.to_string()
    }
}

/// Targets as the scrape manager sees them.
pub trait TargetsSource: Send + Sync {
    /// Active targets.
    fn active(&self) -> Vec<TargetStatus>;
    /// Dropped targets.
    fn dropped(&self) -> Vec<DroppedTarget>;
    /// Dropped counts per pool.
    fn dropped_counts(&self) -> Vec<(String, usize)>;
    /// Target metadata.
    fn metadata(&self) -> Vec<(Labels, MetadataEntry)>;
}

/// Facts for `/api/v1/status/*`.
pub trait StatusSource: Send + Sync {
    /// The running config as redacted YAML.
    fn config_yaml(&self) -> String;
    /// Command-line flags as name/value.
    fn flags(&self) -> Vec<(String, String)>;
    /// Whether the last reload succeeded and when the config was last loaded (Unix s).
    fn reload_status(&self) -> (bool, i64);
    /// Storage retention as text.
    fn storage_retention(&self) -> String;
    /// Head cardinality.
    fn tsdb(&self, limit: usize) -> TsdbStats;
}

/// The TSDB admin operations behind `/api/v1/admin/tsdb/*`. They block on disk work; the
/// server calls them off the async threads.
pub trait TsdbAdmin: Send + Sync {
    /// Whether the admin API is enabled (`web.enable_admin_api`).
    fn admin_enabled(&self) -> bool;
    /// Deletes samples of series matching any of `sets` in `[start, end]`.
    fn delete_series(
        &self,
        sets: &[Vec<crate::model::Matcher>],
        start: i64,
        end: i64,
    ) -> Result<(), String>;
    /// Rewrites blocks without their deleted data.
    fn clean_tombstones(&self) -> Result<(), String>;
    /// Writes a snapshot and returns its name.
    fn snapshot(&self, skip_head: bool) -> Result<String, String>;
}

/// Rule groups and their alerts, for `/api/v1/rules` and `/api/v1/alerts`.
pub trait RulesSource: Send + Sync {
    /// Every group's state.
    fn rule_groups(&self) -> Vec<crate::rules::manager::GroupSnapshot>;
    /// The notification history, newest first.
    fn notifications(&self) -> Vec<crate::notify::notifier::HistoryEntry>;
}

/// Alertmanager's API v2 (served under `/api/v2`), backed by the notifier. Bodies are the
/// API's JSON; errors carry the HTTP status to answer with.
pub trait AlertmanagerApi: Send + Sync {
    /// `GET /status`.
    fn status(&self) -> serde_json::Value;
    /// `GET /receivers`.
    fn receivers(&self) -> serde_json::Value;
    /// `GET /alerts` with its query parameters.
    fn alerts(&self, params: &[(String, String)]) -> Result<serde_json::Value, String>;
    /// `GET /alerts/groups`.
    fn groups(&self) -> serde_json::Value;
    /// `POST /alerts`.
    fn post_alerts(&self, body: &serde_json::Value) -> Result<(), String>;
    /// `GET /silences`.
    fn silences(&self, params: &[(String, String)]) -> Result<serde_json::Value, String>;
    /// `GET /silence/{id}`.
    fn silence(&self, id: &str) -> Option<serde_json::Value>;
    /// `POST /silences`: the new id, or (status, message).
    fn post_silence(&self, body: &serde_json::Value) -> Result<String, (u16, String)>;
    /// `DELETE /silence/{id}`.
    fn expire_silence(&self, id: &str) -> Result<(), (u16, String)>;
}

/// The built-in collectors the running config enables (they change on reload).
pub trait CollectorsSource: Send + Sync {
    /// The collector called `name`, if it is enabled.
    fn collector(&self, name: &str) -> Option<Arc<dyn Collector>>;
}

/// Applies the config file again.
pub trait Reloader: Send + Sync {
    /// Reloads; the error text is shown to the caller.
    fn reload(&self) -> Result<(), String>;
}

/// PromQL evaluation, as the query endpoints need it.
pub trait QueryEngine: Send + Sync {
    /// Instant query at `t_ms`.
    fn instant(
        &self,
        q: &str,
        t_ms: i64,
    ) -> Result<crate::promql::QueryResult, crate::promql::PromqlError>;
    /// Range query.
    fn range(
        &self,
        q: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<crate::promql::QueryResult, crate::promql::PromqlError>;
}

impl QueryEngine for crate::promql::Engine {
    fn instant(
        &self,
        q: &str,
        t_ms: i64,
    ) -> Result<crate::promql::QueryResult, crate::promql::PromqlError> {
        crate::promql::Engine::instant(self, q, t_ms)
    }
    fn range(
        &self,
        q: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<crate::promql::QueryResult, crate::promql::PromqlError> {
        crate::promql::Engine::range(self, q, start, end, step)
    }
}

/// What the server needs.
#[derive(Clone)]
pub struct Deps {
    /// Stored series.
    pub querier: Arc<dyn Querier>,
    /// PromQL.
    pub engine: Arc<dyn QueryEngine>,
    /// Targets.
    pub targets: Arc<dyn TargetsSource>,
    /// Status facts.
    pub status: Arc<dyn StatusSource>,
    /// Reload hook.
    pub reloader: Arc<dyn Reloader>,
    /// TSDB admin operations.
    pub admin: Arc<dyn TsdbAdmin>,
    /// Rules and alerts.
    pub rules: Arc<dyn RulesSource>,
    /// Alertmanager API v2.
    pub alertmanager: Arc<dyn AlertmanagerApi>,
    /// The appliance's own metrics.
    pub registry: Arc<Mutex<Registry>>,
    /// Built-in collectors of the running config, served at `/metrics/<name>`.
    pub collectors: Arc<dyn CollectorsSource>,
    /// Set once startup is done.
    pub ready: Arc<AtomicBool>,
    /// Process start (Unix ms).
    pub start_ms: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabel {
    handler: String,
}

#[derive(Clone)]
struct AppState {
    deps: Deps,
    durations: Family<HandlerLabel, Histogram>,
}

/// Builds the router and registers the HTTP metrics in `deps.registry`.
pub fn router(deps: Deps) -> Router {
    let durations = Family::<HandlerLabel, Histogram>::new_with_constructor(|| {
        Histogram::new([0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0])
    });
    deps.registry.lock().register(
        "appliance_http_request_duration_seconds",
        "Histogram of latencies for HTTP requests.",
        durations.clone(),
    );
    let state = AppState { deps, durations };
    Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", post(reload).put(reload))
        .route("/metrics", get(own_metrics))
        .route("/metrics/{name}", get(collector_metrics))
        .merge(api::routes())
        .merge(alertmanager::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    st.durations
        .get_or_create(&HandlerLabel { handler })
        .observe(start.elapsed().as_secs_f64());
    resp
}

async fn healthy() -> &'static str {
    "Appliance Server is Healthy.\n"
}

async fn ready(State(st): State<AppState>) -> Response {
    if st.deps.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Appliance Server is Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn reload(State(st): State<AppState>) -> Response {
    let r = st.deps.reloader.clone();
    match tokio::task::spawn_blocking(move || r.reload()).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn own_metrics(State(st): State<AppState>) -> Response {
    let mut s = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut s, &st.deps.registry.lock()) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, OPENMETRICS)], s).into_response()
}

async fn collector_metrics(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(c) = st.deps.collectors.collector(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no collector named {name:?}\n"),
        )
            .into_response();
    };
    // Probing collectors answer for one target, as blackbox_exporter's /probe?target= does.
    let result = match q.get("target") {
        Some(t) => c.collect_target(t).await,
        None => c.collect().await,
    };
    match result {
        Ok(page) => {
            let ct = match page.format {
                crate::model::exposition::Format::OpenMetrics => OPENMETRICS,
                crate::model::exposition::Format::PrometheusText => {
                    "text/plain; version=0.0.4; charset=utf-8"
                }
            };
            ([(header::CONTENT_TYPE, ct)], page.body).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
