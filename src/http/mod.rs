//! The HTTP server (axum): health and readiness, reload, the appliance's own `/metrics`, each
//! built-in collector at `/metrics/<name>`, and the Prometheus HTTP API subset with
//! Prometheus-identical JSON, `errorType`s and status codes.
//!
//! This module declares the narrow read traits it needs; `app.rs` implements them. It never
//! reaches into another module's internals.

pub mod alertmanager;
mod api;
pub mod auth;
pub mod serve;
mod ui;

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
    /// The URL users reach the appliance at, when behind a proxy. Its path is where the UI
    /// and API live unless `route_prefix` says otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_url: String,
    /// The path prefix the server answers under (Prometheus's `--web.route-prefix`); defaults
    /// to `external_url`'s path. `/` when a proxy strips the prefix before forwarding.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub route_prefix: String,
    /// Serve `/api/v1/admin/tsdb/*` (delete_series, clean_tombstones, snapshot). On by
    /// default; set `false` to refuse them as Prometheus does without `--web.enable-admin-api`.
    pub enable_admin_api: bool,
    /// Login: the admin password, read tokens, whether reads need a login.
    pub auth: auth::AuthConfig,
    /// A directory of Grafana dashboard JSON files shown beside the built-in ones (a file
    /// with a built-in's `uid` replaces it); relative to the config file's directory, read
    /// again at each request (a reload may point it elsewhere).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dashboards_dir: String,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed for the
    /// client's address (login throttling, logs). Empty: the peer's address is the client's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// Accept pushes on `/api/v1/write` (Prometheus's `--web.enable-remote-write-receiver`),
    /// from the admin or a `web.auth.write_tokens` bearer token.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub enable_remote_write_receiver: bool,
    /// Serve HTTPS (Prometheus's `tls_server_config`): certificate and key files, re-read
    /// when they change, and optional client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<serve::TlsServerConfig>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen_address: ":8080".into(),
            external_url: String::new(),
            route_prefix: String::new(),
            enable_admin_api: true,
            auth: auth::AuthConfig::default(),
            dashboards_dir: String::new(),
            trusted_proxies: Vec::new(),
            enable_remote_write_receiver: false,
            tls_config: None,
        }
    }
}

impl WebConfig {
    /// The path the browser sees (from `external_url`, else `route_prefix`), without a
    /// trailing `/`; empty at the root.
    pub fn base_path(&self) -> String {
        if !self.external_url.is_empty() {
            return url::Url::parse(&self.external_url)
                .map(|u| u.path().trim_end_matches('/').to_string())
                .unwrap_or_default();
        }
        normalize_prefix(&self.route_prefix)
    }

    /// The path the server answers under, without a trailing `/`; empty at the root.
    pub fn route_prefix(&self) -> String {
        if self.route_prefix.is_empty() {
            return self.base_path();
        }
        normalize_prefix(&self.route_prefix)
    }

    /// Checks `external_url` (an absolute http(s) URL) and `route_prefix`.
    pub fn validate(&self) -> Result<(), String> {
        if !self.external_url.is_empty() {
            let u = url::Url::parse(&self.external_url)
                .map_err(|e| format!("web.external_url {:?}: {e}", self.external_url))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(format!(
                    "web.external_url {:?}: the scheme must be http or https",
                    self.external_url
                ));
            }
        }
        if self.route_prefix.contains(['?', '#', ' ']) {
            return Err(format!(
                "web.route_prefix {:?}: a path only",
                self.route_prefix
            ));
        }
        self.proxies()?;
        check_listen_address(&self.listen_address)
            .map_err(|e| format!("web.listen_address {:?}: {e}", self.listen_address))?;
        if !self.auth.admin_password_file.is_empty() {
            let p = std::path::Path::new(&self.auth.admin_password_file);
            match crate::model::files::read_bounded(p, 4096) {
                Ok(t) if !t.trim().is_empty() => {}
                Ok(_) => {
                    return Err(format!(
                        "web.auth.admin_password_file {:?}: the file is empty",
                        self.auth.admin_password_file
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "web.auth.admin_password_file {:?}: {e}",
                        self.auth.admin_password_file
                    ))
                }
            }
        }
        if let Some(t) = &self.tls_config {
            t.validate().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// `trusted_proxies` parsed: (network, prefix length).
    pub fn proxies(&self) -> Result<Vec<(std::net::IpAddr, u8)>, String> {
        self.trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                parse_cidr(p).ok_or_else(|| {
                    format!("web.trusted_proxies[{i}] {p:?}: expected an address or CIDR range")
                })
            })
            .collect()
    }

    /// The scheme, host and port of `external_url` (empty without one), which browser
    /// mutations must come from.
    pub fn external_origin(&self) -> String {
        url::Url::parse(&self.external_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }

    /// Whether the browser reaches us over HTTPS, so cookies get `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.external_url.starts_with("https://") || self.tls_config.is_some()
    }
}

/// `10.0.0.0/8`, `::1` or `192.168.1.5` as (address, prefix length).
fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (
            a.parse::<std::net::IpAddr>().ok()?,
            Some(l.parse::<u8>().ok()?),
        ),
        None => (s.parse::<std::net::IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

fn in_cidr(ip: std::net::IpAddr, (net, len): (std::net::IpAddr, u8)) -> bool {
    let mask = |bits: u32, len: u8| -> u128 {
        if len == 0 {
            0
        } else {
            (!0u128) << (bits - len as u32)
        }
    };
    match (ip, net) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
            let m = mask(32, len) as u32;
            u32::from(a) & m == u32::from(b) & m
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => {
            let m = mask(128, len);
            u128::from(a) & m == u128::from(b) & m
        }
        (std::net::IpAddr::V6(a), b @ std::net::IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a4| in_cidr(std::net::IpAddr::V4(a4), (b, len))),
        _ => false,
    }
}

/// `tools/x/` → `/tools/x`; `/` → empty.
fn normalize_prefix(p: &str) -> String {
    let p = p.trim_end_matches('/');
    if p.is_empty() || p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// Whether `listen` (`:8080`, `host:port`, `[::1]:8080`) names a port to listen on; the
/// same check serves `check config`, a reload and `run --listen`.
pub fn check_listen_address(listen: &str) -> Result<(), String> {
    let a = bind_address(listen);
    if a.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err("expected host:port or :port".into());
    };
    port.parse::<u16>()
        .map_err(|_| format!("bad port {port:?}"))?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
    if !host_ok {
        return Err(format!("bad host {host:?}"));
    }
    Ok(())
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

/// The remote-write side: the receiver of pushes and the sending queues' status.
pub trait RemoteWriteSink: Send + Sync {
    /// Whether `/api/v1/write` accepts pushes.
    fn receiver_enabled(&self) -> bool;
    /// Writes one push (blocking: decompression, decoding and the commit).
    fn receive(
        &self,
        body: &[u8],
        protocol: crate::remote::proto::Protocol,
    ) -> Result<crate::remote::receive::Written, crate::remote::receive::ReceiveError>;
    /// The sending queues.
    fn queues(&self) -> Vec<crate::remote::QueueStatus>;
    /// Metadata pushed by other agents (for `/api/v1/metadata`).
    fn received_metadata(&self) -> Vec<crate::remote::FamilyMetadata>;
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
    /// The Grafana sync's latest outcome per item (`{"enabled": false}` without one).
    fn grafana(&self) -> serde_json::Value {
        serde_json::json!({"enabled": false})
    }
    /// `global.external_labels`, which `/federate` adds to every series without them.
    fn external_labels(&self) -> std::collections::BTreeMap<String, String> {
        Default::default()
    }
    /// `web.dashboards_dir` of the running config (resolved against the config file's
    /// directory), whose dashboards the UI lists besides the built-in ones; read at each
    /// request, so a reload that changes it takes effect.
    fn dashboards_dir(&self) -> std::path::PathBuf {
        std::path::PathBuf::new()
    }
    /// The data directory, for `/api/v1/status/runtimeinfo`.
    fn data_dir(&self) -> String {
        String::new()
    }
    /// The query lookback (ms): `/federate` serves each series' newest sample within it.
    fn lookback_ms(&self) -> i64 {
        5 * 60 * 1000
    }
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
    /// Sends a test notification to every receiver; how each went.
    fn send_test(
        &self,
    ) -> futures_util::future::BoxFuture<'_, Vec<crate::notify::notifier::HistoryEntry>>;
}

/// Alertmanager's API v2 (served under `/api/v2`), backed by the notifier. Bodies are the
/// API's JSON; errors carry the HTTP status to answer with.
pub trait AlertmanagerApi: Send + Sync {
    /// `GET /status`.
    fn status(&self) -> crate::notify::api::StatusView;
    /// `GET /receivers`: receiver names.
    fn receivers(&self) -> Vec<String>;
    /// `GET /alerts`.
    fn alerts(
        &self,
        f: &crate::notify::api::AlertFilter,
    ) -> Result<Vec<crate::notify::api::AlertView>, crate::notify::api::ApiError>;
    /// `GET /alerts/groups`.
    fn groups(&self) -> Vec<crate::notify::api::GroupView>;
    /// `POST /alerts`.
    fn post_alerts(
        &self,
        alerts: Vec<crate::notify::api::NewAlert>,
    ) -> Result<(), crate::notify::api::ApiError>;
    /// `GET /silences` with `filter` matchers.
    fn silences(
        &self,
        filters: &[String],
    ) -> Result<Vec<crate::notify::silence::Silence>, crate::notify::api::ApiError>;
    /// `GET /silence/{id}`.
    fn silence(&self, id: &str) -> Option<crate::notify::silence::Silence>;
    /// `POST /silences`: the new id.
    fn post_silence(
        &self,
        s: crate::notify::silence::Silence,
    ) -> Result<String, crate::notify::api::ApiError>;
    /// `DELETE /silence/{id}`.
    fn expire_silence(&self, id: &str) -> Result<(), crate::notify::api::ApiError>;
}

/// The built-in collectors the running config enables (they change on reload).
pub trait CollectorsSource: Send + Sync {
    /// The collector called `name`, if it is enabled.
    fn collector(&self, name: &str) -> Option<Arc<dyn Collector>>;
    /// The collector called `name` whether it is scraped or not, for its own port.
    fn exporter(&self, name: &str) -> Option<Arc<dyn Collector>>;
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
    /// The query timeout, which `format_query` and `parse_query` obey too.
    fn timeout(&self) -> std::time::Duration;
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
    fn timeout(&self) -> std::time::Duration {
        crate::promql::Engine::timeout(self)
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
    /// Login: credentials, sessions, throttling.
    pub auth: Arc<auth::Auth>,
    /// Path prefix the routes are mounted under (empty at the root).
    pub route_prefix: String,
    /// The path the browser sees the appliance at (empty at the root).
    pub base_path: String,
    /// Mark the session cookie `Secure` (the external URL is HTTPS).
    pub secure_cookies: bool,
    /// Proxies whose `X-Forwarded-For` is believed ([`WebConfig::proxies`]).
    pub trusted_proxies: Vec<(std::net::IpAddr, u8)>,
    /// The external URL's origin ([`WebConfig::external_origin`]), empty without one.
    pub external_origin: String,
    /// Remote write: receiver and queues.
    pub remote: Arc<dyn RemoteWriteSink>,
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
    let prefix = deps.route_prefix.clone();
    let state = AppState { deps, durations };
    let inner = Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/api/health", get(grafana_health).head(grafana_health))
        .route("/-/reload", post(reload).put(reload))
        .route("/metrics", get(own_metrics))
        .route("/metrics/{name}", get(collector_metrics))
        .route("/federate", get(api::federate))
        .merge(api::routes())
        .merge(alertmanager::routes())
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state);
    if prefix.is_empty() {
        return inner;
    }
    // The prefix is cut before routing (rather than `nest`ed) so that `/prefix`, `/prefix/`
    // and everything below reach the same routes, as behind a proxy that keeps the path.
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let prefix = prefix.clone();
                async move { strip_prefix(&prefix, req, next).await }
            },
        ))
}

async fn strip_prefix(prefix: &str, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let rest = match path.strip_prefix(prefix) {
        Some("") => "/".to_string(),
        Some(r) if r.starts_with('/') => r.to_string(),
        _ if path == "/" => {
            return axum::response::Redirect::to(&format!("{prefix}/")).into_response()
        }
        _ => {
            return (
                StatusCode::NOT_FOUND,
                format!("not found: everything is under {prefix}/\n"),
            )
                .into_response()
        }
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    let mut parts = req.uri().clone().into_parts();
    match pq.parse() {
        Ok(p) => parts.path_and_query = Some(p),
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    match axum::http::Uri::from_parts(parts) {
        Ok(u) => *req.uri_mut() = u,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    next.run(req).await
}

/// The client's address: the peer's (loopback when the server runs without connect info, as
/// in unit tests), or, when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not one (Prometheus-style proxies append the address they saw).
fn client_ip(
    ext: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    trusted: &[(std::net::IpAddr, u8)],
) -> std::net::IpAddr {
    let peer = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|n| in_cidr(ip, *n));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(v) = value.to_str() else { break };
        for hop in v.rsplit(',') {
            match hop.trim().parse::<std::net::IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !is_trusted(ip) {
                        return ip;
                    }
                }
                Err(_) => return client,
            }
        }
    }
    client
}

/// Whether a browser request comes from our own pages: its `Origin` (else `Referer`) is the
/// external URL's origin or the `Host` it was sent to. Without either header (not a
/// browser), there is nothing to check.
fn same_origin(headers: &axum::http::HeaderMap, external_origin: &str) -> bool {
    let h = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    let claimed = match (h(header::ORIGIN), h(header::REFERER)) {
        (Some(o), _) => o.to_string(),
        (None, Some(r)) => match url::Url::parse(r) {
            Ok(u) => u.origin().ascii_serialization(),
            Err(_) => return false,
        },
        (None, None) => return true,
    };
    if !external_origin.is_empty() && claimed.eq_ignore_ascii_case(external_origin) {
        return true;
    }
    let Some(host) = h(header::HOST) else {
        return false;
    };
    ["http://", "https://"]
        .iter()
        .any(|scheme| claimed.eq_ignore_ascii_case(&format!("{scheme}{host}")))
}

/// The media types a request body may have: JSON for Alertmanager's API, forms elsewhere (as
/// Prometheus). A cross-site form can send `text/plain` without a preflight, so it is refused.
fn body_type_ok(path: &str, headers: &axum::http::HeaderMap) -> bool {
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return true;
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = crate::model::httpconf::media_type(ct);
    if path.starts_with("/api/v2/") {
        media == "application/json"
    } else {
        matches!(
            media.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "application/json"
        )
    }
}

/// Requests that only read, though sent as `POST` (Prometheus accepts form bodies there).
const READ_POSTS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/format_query",
    "/api/v1/parse_query",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/query_exemplars",
];

/// Who may do what: health, login and static assets are open; the UI and everything that
/// changes state need the admin; reads need a login only with `web.auth.protect_reads`.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let open = matches!(
        path.as_str(),
        "/-/healthy" | "/-/ready" | "/api/health" | "/-/login" | "/-/logout" | "/favicon.ico"
    ) || path.starts_with("/assets/");
    if open {
        return next.run(req).await;
    }
    let ip = client_ip(req.extensions(), req.headers(), &st.deps.trusted_proxies);
    if path == api::WRITE_PATH && method == axum::http::Method::POST {
        return write_guard(&st, ip, req, next).await;
    }
    let is_read = matches!(
        method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    ) || (method == axum::http::Method::POST && READ_POSTS.contains(&path.as_str()));
    let is_ui = is_read && ui::is_page(&path);
    let needed = if is_ui || !is_read {
        auth::Access::Admin
    } else if st.deps.auth.protect_reads() {
        auth::Access::Read
    } else {
        auth::Access::None
    };
    if needed == auth::Access::None {
        return next.run(req).await;
    }
    let (a, c) = {
        let h = |n: header::HeaderName| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (h(header::AUTHORIZATION), h(header::COOKIE))
    };
    // A password check costs argon2's tens of milliseconds: off the async threads. Sessions
    // and tokens are a table lookup and stay here.
    let grant = if a.as_deref().is_some_and(|v| v.starts_with("Basic ")) {
        let auth = st.deps.auth.clone();
        tokio::task::spawn_blocking(move || auth.grant(a.as_deref(), c.as_deref(), ip))
            .await
            .unwrap_or(auth::Grant {
                access: auth::Access::None,
                session: false,
                throttled: false,
            })
    } else {
        st.deps.auth.grant(a.as_deref(), c.as_deref(), ip)
    };
    if grant.access >= needed {
        // A session cookie is sent by the browser whatever page asked: a change it
        // authenticates must come from our own pages.
        if !is_read && grant.session && !same_origin(req.headers(), &st.deps.external_origin) {
            return (
                StatusCode::FORBIDDEN,
                "cross-origin request refused: send it from the appliance's own pages, or use basic auth\n",
            )
                .into_response();
        }
        if !is_read && !body_type_ok(&path, req.headers()) {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                if path.starts_with("/api/v2/") {
                    "the body must be application/json\n"
                } else {
                    "the body must be application/x-www-form-urlencoded (or JSON)\n"
                },
            )
                .into_response();
        }
        return next.run(req).await;
    }
    if grant.throttled {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            "too many failed logins from this address; try again in a minute\n",
        )
            .into_response();
    }
    if is_ui {
        return axum::response::Redirect::to(&format!("{}/-/login", st.deps.base_path))
            .into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"appliance\"")],
        if needed == auth::Access::Admin {
            "this needs the admin login (user admin; HTTP basic auth or a UI session)\n"
        } else {
            "this needs a login (user admin) or a read token (Authorization: Bearer)\n"
        },
    )
        .into_response()
}

/// `/api/v1/write` takes the admin by basic auth or a write token; never a session cookie,
/// so no page elsewhere can make a browser push samples.
async fn write_guard(st: &AppState, ip: std::net::IpAddr, req: Request, next: Next) -> Response {
    let a = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ok = if a.as_deref().is_some_and(|v| v.starts_with("Basic ")) {
        let auth = st.deps.auth.clone();
        tokio::task::spawn_blocking(move || auth.grant(a.as_deref(), None, ip).access)
            .await
            .unwrap_or(auth::Access::None)
            == auth::Access::Admin
    } else {
        st.deps.auth.is_writer(a.as_deref(), ip)
    };
    if ok {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"appliance\"")],
        "pushing samples needs a write token (Authorization: Bearer, web.auth.write_tokens) or the admin login\n",
    )
        .into_response()
}

/// Headers every response carries: no sniffing, no framing (clickjacking), the content
/// security policy, and no full URLs leaking to other sites.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    if let Ok(v) = header::HeaderValue::from_str(ui::content_security_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let start = Instant::now();
    let span = tracing::info_span!("request", method = %req.method(), handler = %handler);
    let resp = tracing::Instrument::instrument(next.run(req), span).await;
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

/// Grafana's health endpoint, for checks written against the Grafana the appliance replaces.
async fn grafana_health(State(st): State<AppState>) -> Response {
    let ok = st.deps.ready.load(Ordering::Acquire);
    let body = serde_json::json!({
        "commit": "appliance",
        "database": if ok { "ok" } else { "failing" },
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
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
    page_response(result)
}

fn page_response(result: Result<crate::collect::Page, crate::collect::CollectError>) -> Response {
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

/// What a collector's own port (`collectors.<name>.listen_address`) needs.
#[derive(Clone)]
pub struct ExporterDeps {
    /// The login, for `web.auth.protect_reads`.
    pub auth: Arc<auth::Auth>,
    /// Where the collector is looked up, at every request (a reload replaces it).
    pub collectors: Arc<dyn CollectorsSource>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<(std::net::IpAddr, u8)>,
}

/// The router of a collector's own port: `GET /metrics` answers exactly as
/// `/metrics/<name>` does on the main port, so a Prometheus job written for node_exporter
/// (`:9100`), postgres_exporter (`:9187`) or redis_exporter (`:9121`) scrapes it unchanged.
/// Reads need a credential only with `web.auth.protect_reads`, as on the main port.
pub fn exporter_router(deps: ExporterDeps, name: &'static str) -> Router {
    let page = move |State(d): State<ExporterDeps>| async move {
        match d.collectors.exporter(name) {
            Some(c) => page_response(c.collect().await),
            None => (
                StatusCode::NOT_FOUND,
                format!("no collector named {name:?}\n"),
            )
                .into_response(),
        }
    };
    let landing = move || async move {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<html><head><title>appliance: {name}</title></head><body><h1>appliance: {name} collector</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n"
            ),
        )
    };
    Router::new()
        .route("/metrics", get(page))
        .route("/", get(landing))
        .layer(axum::middleware::from_fn_with_state(
            deps.clone(),
            exporter_guard,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(deps)
}

async fn exporter_guard(State(d): State<ExporterDeps>, req: Request, next: Next) -> Response {
    if !d.auth.protect_reads() {
        return next.run(req).await;
    }
    let ip = client_ip(req.extensions(), req.headers(), &d.trusted_proxies);
    let a = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth = d.auth.clone();
    // A password check costs argon2's tens of milliseconds: off the async threads.
    let grant = tokio::task::spawn_blocking(move || auth.grant(a.as_deref(), None, ip))
        .await
        .map(|g| g.access)
        .unwrap_or(auth::Access::None);
    if grant >= auth::Access::Read {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"appliance\"")],
        "unauthorized: send basic auth or a read token (web.auth.protect_reads is on)\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::WebConfig;

    fn web(external_url: &str, route_prefix: &str) -> WebConfig {
        WebConfig {
            external_url: external_url.into(),
            route_prefix: route_prefix.into(),
            ..WebConfig::default()
        }
    }

    #[test]
    fn prefixes_follow_prometheus() {
        // At the root by default.
        let w = web("", "");
        assert_eq!(
            (w.base_path(), w.route_prefix()),
            (String::new(), String::new())
        );
        // The external URL's path is where routes answer, unless the proxy strips it.
        let w = web("https://ops.example/appliance/", "");
        assert_eq!(w.base_path(), "/appliance");
        assert_eq!(w.route_prefix(), "/appliance");
        assert!(w.secure_cookies());
        let w = web("https://ops.example/appliance", "/");
        assert_eq!(
            (w.base_path(), w.route_prefix()),
            ("/appliance".into(), String::new())
        );
        // A route prefix alone also sets what the browser sees; a missing slash is added.
        let w = web("", "tools/appliance/");
        assert_eq!(w.route_prefix(), "/tools/appliance");
        assert_eq!(w.base_path(), "/tools/appliance");
        assert!(!w.secure_cookies());
    }

    #[test]
    fn bad_urls_are_refused_by_name() {
        assert!(web("https://ops.example/a/", "").validate().is_ok());
        let e = web("ops.example/a", "").validate().unwrap_err();
        assert!(e.starts_with("web.external_url"), "{e}");
        let e = web("ftp://ops.example/", "").validate().unwrap_err();
        assert!(e.contains("http or https"), "{e}");
        assert!(web("", "/a?b").validate().is_err());
    }
}
