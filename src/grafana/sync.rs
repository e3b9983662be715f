//! Pushes the datasources, the folder and the dashboards to Grafana's HTTP API: waits for
//! `/api/health`, creates or updates each item by uid, retries with backoff until Grafana
//! answers, and pushes again on reload and when a dashboard's content changes. Each item's
//! result goes to the log, the `appliance_grafana_sync_*` metrics and [`GrafanaSync::status`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

use super::{bind_dashboard, Datasources, GrafanaConfig, GrafanaError, PROMETHEUS_UID};

/// The first wait after a failed sync; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);

/// Waits between failed pushes: 0.5 s, then doubling up to [`MAX_BACKOFF`]. The wait taken is
/// the one the log announced (it once doubled before waiting: the log said 0.5 s, the retry
/// came after 1 s, and five refusals cost 31 s instead of 15.5).
#[derive(Clone, Copy, Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(MIN_BACKOFF)
    }
}

impl Backoff {
    /// The next wait, without taking it.
    fn peek(&self) -> Duration {
        self.0
    }

    /// The next wait; the one after doubles.
    fn take(&mut self) -> Duration {
        let w = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        w
    }
}
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often dashboard files are looked at for changes.
const POLL: Duration = Duration::from_secs(5);
/// Per request: Grafana answers in milliseconds when it is up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer's body read (Grafana's answers are a few hundred bytes).
const MAX_BODY: usize = 256 * 1024;
/// Grafana's error bodies are quoted up to this many characters.
const MAX_ERROR_CHARS: usize = 200;

/// The dashboards to push, read again at every poll (files may change).
pub type DashboardSource = Arc<dyn Fn() -> Vec<(String, Vec<u8>)> + Send + Sync>;

/// What to push, and where.
#[derive(Clone)]
pub struct Job {
    /// The `grafana:` section.
    pub config: GrafanaConfig,
    /// The datasources.
    pub datasources: Datasources,
    /// The dashboards.
    pub dashboards: DashboardSource,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ItemLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Default)]
struct Metrics {
    items: Family<ItemLabels, Counter>,
    runs: Family<ResultLabel, Counter>,
    last_success: Gauge,
    failing: Gauge,
}

/// One item's latest outcome.
#[derive(Clone, Debug, serde::Serialize)]
struct ItemStatus {
    kind: &'static str,
    uid: String,
    name: String,
    result: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    at: String,
}

#[derive(Default)]
struct State {
    job: Option<Job>,
    /// Content hash of each item as last pushed successfully, by `kind/uid`.
    pushed: HashMap<String, u64>,
    /// Push everything on the next run (start, reload).
    full: bool,
    items: Vec<ItemStatus>,
    last_error: String,
    last_attempt: String,
    last_success: String,
}

/// The Grafana pusher: one background task, fed by [`GrafanaSync::apply`].
pub struct GrafanaSync {
    state: Mutex<State>,
    trigger: tokio::sync::Notify,
    metrics: Metrics,
    /// Rebuilt when `grafana.tls_config` changes.
    http: Mutex<reqwest::Client>,
}

fn client(
    tls: Option<&crate::model::httpconf::TlsConfig>,
) -> Result<reqwest::Client, GrafanaError> {
    let config = tls
        .cloned()
        .unwrap_or_default()
        .client_config()
        .map_err(GrafanaError::Credential)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("appliance/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| GrafanaError::Api(e.to_string()))
}

/// One thing to create or update in Grafana.
struct Item {
    kind: &'static str,
    uid: String,
    name: String,
    body: Value,
    hash: u64,
}

fn hash_of(v: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl GrafanaSync {
    /// A pusher with nothing to push yet.
    pub fn new() -> Result<Arc<Self>, GrafanaError> {
        Ok(Arc::new(GrafanaSync {
            state: Mutex::new(State::default()),
            trigger: tokio::sync::Notify::new(),
            metrics: Metrics::default(),
            http: Mutex::new(client(None)?),
        }))
    }

    /// Registers `appliance_grafana_sync_*`.
    pub fn register_metrics(&self, reg: &mut Registry) {
        let m = &self.metrics;
        reg.register(
            "appliance_grafana_sync_items",
            "Datasources, folders and dashboards pushed to Grafana, by kind and result.",
            m.items.clone(),
        );
        reg.register(
            "appliance_grafana_sync_runs",
            "Syncs with Grafana, by result.",
            m.runs.clone(),
        );
        reg.register(
            "appliance_grafana_sync_last_success_timestamp_seconds",
            "When every item was last in Grafana as the appliance has it.",
            m.last_success.clone(),
        );
        reg.register(
            "appliance_grafana_sync_failing_items",
            "Items whose last push to Grafana failed.",
            m.failing.clone(),
        );
    }

    /// Sets what to push (`None`: no Grafana configured) and pushes all of it again.
    pub fn apply(&self, job: Option<Job>) {
        if let Some(j) = &job {
            match client(j.config.tls_config.as_ref()) {
                Ok(c) => *self.http.lock() = c,
                Err(e) => tracing::error!(error = %e, "grafana.tls_config"),
            }
        }
        let mut st = self.state.lock();
        st.job = job;
        st.full = true;
        if st.job.is_none() {
            st.items.clear();
        }
        drop(st);
        self.trigger.notify_one();
    }

    /// The latest outcome per item, for the Status page and `/api/v1/status/grafana`.
    pub fn status(&self) -> Value {
        let st = self.state.lock();
        let Some(job) = &st.job else {
            return json!({"enabled": false});
        };
        json!({
            "enabled": true,
            "url": job.config.url.without_userinfo(),
            "lastAttempt": st.last_attempt,
            "lastSuccess": st.last_success,
            "lastError": st.last_error,
            "items": st.items,
        })
    }

    /// Runs until the process ends: pushes on every trigger, retries failures with backoff,
    /// and looks for changed dashboards every few seconds.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Backoff::default();
        let mut failing = false;
        loop {
            let wait = if failing { backoff.take() } else { POLL };
            tokio::select! {
                _ = self.trigger.notified() => backoff = Backoff::default(),
                _ = tokio::time::sleep(wait) => {}
            }
            match self.sync_once().await {
                Ok(()) => {
                    failing = false;
                    backoff = Backoff::default();
                }
                Err(e) => {
                    let next = backoff.peek();
                    if !failing || next >= MAX_BACKOFF {
                        crate::failure!(warn, "grafana", "sync", error = %e, retry_in_ms = next.as_millis() as u64, "pushing to Grafana failed; retrying");
                    }
                    failing = true;
                }
            }
        }
    }

    /// What differs from what Grafana was last given.
    fn pending(&self) -> Option<(Job, Vec<Item>)> {
        let mut st = self.state.lock();
        let job = st.job.clone()?;
        if std::mem::take(&mut st.full) {
            st.pushed.clear();
        }
        let mut items = Vec::new();
        for ds in job.datasources.list() {
            items.push(Item {
                kind: "datasource",
                uid: ds["uid"].as_str().unwrap_or_default().to_string(),
                name: ds["name"].as_str().unwrap_or_default().to_string(),
                hash: hash_of(&ds),
                body: ds,
            });
        }
        let folder = json!({"uid": PROMETHEUS_UID, "title": job.config.folder});
        items.push(Item {
            kind: "folder",
            uid: PROMETHEUS_UID.into(),
            name: job.config.folder.clone(),
            hash: hash_of(&folder),
            body: folder,
        });
        let mut seen = std::collections::HashSet::new();
        for (name, data) in (job.dashboards)() {
            match bind_dashboard(&name, &data, &job.config.datasource_name) {
                Ok(d) => {
                    let uid = d["uid"].as_str().unwrap_or_default().to_string();
                    if !seen.insert(uid.clone()) {
                        continue;
                    }
                    items.push(Item {
                        kind: "dashboard",
                        name: d["title"].as_str().unwrap_or(&name).to_string(),
                        uid,
                        hash: hash_of(&d),
                        body: d,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a dashboard is not sent to Grafana");
                }
            }
        }
        items.retain(|i| st.pushed.get(&format!("{}/{}", i.kind, i.uid)) != Some(&i.hash));
        Some((job, items))
    }

    async fn sync_once(&self) -> Result<(), GrafanaError> {
        let Some((job, items)) = self.pending() else {
            return Ok(());
        };
        if items.is_empty() {
            return Ok(());
        }
        self.state.lock().last_attempt = now();
        let result = self.push(&job, items).await;
        let mut st = self.state.lock();
        match &result {
            Ok(()) => {
                self.metrics
                    .runs
                    .get_or_create(&ResultLabel {
                        result: "success".into(),
                    })
                    .inc();
                self.metrics
                    .last_success
                    .set(chrono::Utc::now().timestamp());
                st.last_success = now();
                st.last_error.clear();
            }
            Err(e) => {
                self.metrics
                    .runs
                    .get_or_create(&ResultLabel {
                        result: "failure".into(),
                    })
                    .inc();
                st.last_error = e.to_string();
            }
        }
        self.metrics
            .failing
            .set(st.items.iter().filter(|i| i.result == "failed").count() as i64);
        result
    }

    async fn push(&self, job: &Job, items: Vec<Item>) -> Result<(), GrafanaError> {
        let base = job.config.url.expose().trim_end_matches('/').to_string();
        let auth = Credential::of(&job.config)?;
        // Grafana starting up answers 503 (or not at all) until its database is ready.
        let health = self
            .send(&auth, self.http().get(format!("{base}/api/health")))
            .await;
        match health {
            Ok((200, _)) => {}
            Ok((code, body)) => {
                return Err(GrafanaError::Api(format!(
                    "Grafana is not ready: /api/health answered {code}: {}",
                    clip(&body)
                )))
            }
            Err(e) => return Err(GrafanaError::Api(format!("Grafana does not answer: {e}"))),
        }
        let mut failed = 0;
        let mut first_error = String::new();
        for item in items {
            let r = match item.kind {
                "datasource" => self.put_datasource(&base, &auth, &item.body).await,
                "folder" => self.put_folder(&base, &auth, &item.body).await,
                _ => self.put_dashboard(&base, &auth, &item.body).await,
            };
            let ok = r.is_ok();
            self.metrics
                .items
                .get_or_create(&ItemLabels {
                    kind: item.kind.into(),
                    result: if ok { "success" } else { "failure" }.into(),
                })
                .inc();
            let error = r.err().map(|e| e.to_string()).unwrap_or_default();
            if ok {
                tracing::info!(kind = item.kind, uid = %item.uid, name = %item.name, "pushed to Grafana");
            } else {
                tracing::warn!(kind = item.kind, uid = %item.uid, name = %item.name, error = %error, "Grafana refused an item");
                failed += 1;
                if first_error.is_empty() {
                    first_error = format!("{} {}: {error}", item.kind, item.uid);
                }
            }
            let mut st = self.state.lock();
            if ok {
                st.pushed
                    .insert(format!("{}/{}", item.kind, item.uid), item.hash);
            }
            let status = ItemStatus {
                kind: item.kind,
                uid: item.uid.clone(),
                name: item.name.clone(),
                result: if ok { "ok" } else { "failed" },
                error,
                at: now(),
            };
            match st
                .items
                .iter_mut()
                .find(|i| i.kind == item.kind && i.uid == item.uid)
            {
                Some(i) => *i = status,
                None => st.items.push(status),
            }
        }
        if failed > 0 {
            return Err(GrafanaError::Api(format!(
                "{failed} item(s) failed; first: {first_error}"
            )));
        }
        Ok(())
    }

    async fn put_datasource(
        &self,
        base: &str,
        auth: &Credential,
        ds: &Value,
    ) -> Result<(), GrafanaError> {
        let uid = ds["uid"].as_str().unwrap_or_default();
        let at = format!("{base}/api/datasources/uid/{uid}");
        let (code, body) = self.send(auth, self.http().get(&at)).await?;
        let (code, body) = match code {
            200 => self.send(auth, with_json(self.http().put(&at), ds)).await?,
            404 => {
                self.send(
                    auth,
                    with_json(self.http().post(format!("{base}/api/datasources")), ds),
                )
                .await?
            }
            _ => (code, body),
        };
        expect_ok(code, &body)
    }

    async fn put_folder(
        &self,
        base: &str,
        auth: &Credential,
        folder: &Value,
    ) -> Result<(), GrafanaError> {
        let uid = folder["uid"].as_str().unwrap_or_default();
        let at = format!("{base}/api/folders/{uid}");
        let (code, body) = self.send(auth, self.http().get(&at)).await?;
        let (code, body) = match code {
            200 => {
                let current: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if current["title"] == folder["title"] {
                    return Ok(());
                }
                let update = json!({"title": folder["title"], "overwrite": true});
                self.send(auth, with_json(self.http().put(&at), &update))
                    .await?
            }
            404 => {
                self.send(
                    auth,
                    with_json(self.http().post(format!("{base}/api/folders")), folder),
                )
                .await?
            }
            _ => (code, body),
        };
        expect_ok(code, &body)
    }

    async fn put_dashboard(
        &self,
        base: &str,
        auth: &Credential,
        dashboard: &Value,
    ) -> Result<(), GrafanaError> {
        let body = json!({
            "dashboard": dashboard,
            "folderUid": PROMETHEUS_UID,
            "overwrite": true,
            "message": "provisioned by appliance",
        });
        let (code, text) = self
            .send(
                auth,
                with_json(self.http().post(format!("{base}/api/dashboards/db")), &body),
            )
            .await?;
        expect_ok(code, &text)
    }

    fn http(&self) -> reqwest::Client {
        self.http.lock().clone()
    }

    async fn send(
        &self,
        auth: &Credential,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, String), GrafanaError> {
        let req = match auth {
            Credential::None => req,
            Credential::Basic(u, p) => req.basic_auth(u, p.as_deref()),
            Credential::Bearer(t) => req.bearer_auth(t),
        };
        let resp = req
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            // The URL may hold credentials; the error without it still says what failed.
            .map_err(|e| GrafanaError::Api(e.without_url().to_string()))?;
        let code = resp.status().as_u16();
        // Only a status and a short message are read from an answer: a body past the bound is
        // cut, so a misbehaving server cannot make the appliance buffer without limit.
        let mut resp = resp;
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            let room = MAX_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY {
                break;
            }
        }
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// A JSON body (reqwest's `json` feature is not built in).
fn with_json(req: reqwest::RequestBuilder, v: &Value) -> reqwest::RequestBuilder {
    req.header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(v.to_string())
}

fn expect_ok(code: u16, body: &str) -> Result<(), GrafanaError> {
    if (200..300).contains(&code) {
        return Ok(());
    }
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    Err(GrafanaError::Api(format!("HTTP {code}: {}", clip(&msg))))
}

enum Credential {
    None,
    Basic(String, Option<String>),
    Bearer(String),
}

impl Credential {
    fn of(cfg: &GrafanaConfig) -> Result<Credential, GrafanaError> {
        if let Some(b) = &cfg.basic_auth {
            let (u, p) = b.credentials().map_err(GrafanaError::Credential)?;
            return Ok(Credential::Basic(u, p));
        }
        if let Some(t) = &cfg.api_token {
            return Ok(Credential::Bearer(t.expose().to_string()));
        }
        if !cfg.api_token_file.is_empty() {
            let t =
                crate::model::files::read_config_file(std::path::Path::new(&cfg.api_token_file))
                    .map_err(|e| {
                        GrafanaError::Credential(format!(
                            "grafana.api_token_file {}: {e}",
                            cfg.api_token_file
                        ))
                    })?;
            return Ok(Credential::Bearer(t.trim().to_string()));
        }
        Ok(Credential::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_what_the_log_announces_then_double() {
        let mut b = Backoff::default();
        let mut waits = Vec::new();
        for _ in 0..8 {
            let announced = b.peek();
            let taken = b.take();
            assert_eq!(announced, taken);
            waits.push(taken.as_millis());
        }
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }

    #[tokio::test]
    async fn a_huge_answer_is_read_only_up_to_the_bound() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 503 X\r\nContent-Length: 104857600\r\n\r\n");
            let chunk = vec![b'x'; 1 << 16];
            // Stops when the client hangs up.
            for _ in 0..1600 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let g = GrafanaSync::new().unwrap();
        let (code, body) = g
            .send(
                &Credential::None,
                g.http().get(format!("http://{addr}/api/health")),
            )
            .await
            .unwrap();
        assert_eq!(code, 503);
        assert_eq!(body.len(), MAX_BODY);
        assert!(clip(&body).chars().count() <= MAX_ERROR_CHARS + 1);
    }
}
