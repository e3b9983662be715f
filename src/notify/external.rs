//! External mode: alerts sent to external Alertmanagers, as Prometheus's notifier sends them
//! (`alerting: {alertmanagers: [...]}`): `POST …/api/v2/alerts` with the alerts' labels
//! (external labels added, `alert_relabel_configs` applied by the caller), annotations,
//! `startsAt`, `endsAt` and `generatorURL`. A failed send is logged and counted; the rules
//! re-send firing alerts on their own schedule, as with Prometheus.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::dispatch::Alert;
use crate::model::httpconf::{Authorization, BasicAuth, TlsConfig};
use crate::model::relabel::RelabelConfig;
use crate::model::time::Duration;

/// `alerting:` in Prometheus's syntax.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Relabelling of alerts before they are sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_relabel_configs: Vec<RelabelConfig>,
    /// External Alertmanagers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// One `alertmanagers` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Targets.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// `http` or `https`.
    #[serde(default = "http")]
    pub scheme: String,
    /// Prefix of the API path.
    #[serde(default)]
    pub path_prefix: String,
    /// Per-request timeout (default 10s).
    #[serde(default = "ten_seconds")]
    pub timeout: Duration,
    /// Only `v2` exists since Prometheus 3.
    #[serde(default = "v2")]
    pub api_version: String,
    /// HTTP basic auth (an Alertmanager behind a proxy, or another appliance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization` header credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// TLS settings for `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

/// `static_configs` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` targets.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels (not used for sending).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

fn http() -> String {
    "http".into()
}
fn v2() -> String {
    "v2".into()
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

impl AlertingConfig {
    /// Checks what Prometheus checks.
    pub fn validate(&self) -> Result<(), String> {
        for (i, am) in self.alertmanagers.iter().enumerate() {
            if am.api_version != "v2" {
                return Err(format!(
                    "alerting.alertmanagers[{i}]: expected Alertmanager API version to be one of [v2] but got {}",
                    am.api_version
                ));
            }
            if am.scheme != "http" && am.scheme != "https" {
                return Err(format!(
                    "alerting.alertmanagers[{i}]: unsupported scheme {:?}",
                    am.scheme
                ));
            }
            if am.basic_auth.is_some() && am.authorization.is_some() {
                return Err(format!(
                    "alerting.alertmanagers[{i}]: at most one of basic_auth, oauth2 & authorization must be configured"
                ));
            }
            if let Some(t) = &am.tls_config {
                t.client_config()
                    .map_err(|e| format!("alerting.alertmanagers[{i}].tls_config: {e}"))?;
            }
        }
        Ok(())
    }

    /// The `…/api/v2/alerts` URLs to post to, with their timeouts.
    pub fn urls(&self) -> Vec<(String, StdDuration)> {
        self.endpoints(None)
            .into_iter()
            .map(|e| (e.url, e.timeout))
            .collect()
    }

    /// Where and how to post: one endpoint per target, with its client (its own when the
    /// entry has `tls_config`, else `default`) and credentials.
    fn endpoints(&self, default: Option<&reqwest::Client>) -> Vec<Endpoint> {
        let mut out = Vec::new();
        for am in &self.alertmanagers {
            let prefix = am.path_prefix.trim_end_matches('/');
            let client = match (&am.tls_config, default) {
                (Some(t), Some(_)) => match t.client_config().and_then(|c| {
                    reqwest::Client::builder()
                        .tls_backend_preconfigured(c)
                        .no_proxy()
                        .build()
                        .map_err(|e| e.to_string())
                }) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        crate::failure!(error, "notify", "alertmanager_tls", error = %e, "alertmanager tls_config unusable; its alerts are not sent");
                        continue;
                    }
                },
                (_, d) => d.cloned(),
            };
            for sc in &am.static_configs {
                for t in &sc.targets {
                    out.push(Endpoint {
                        url: format!("{}://{t}{prefix}/api/v2/alerts", am.scheme),
                        timeout: StdDuration::from_millis(am.timeout.as_millis().max(1) as u64),
                        client: client.clone(),
                        basic_auth: am.basic_auth.clone(),
                        authorization: am.authorization.clone(),
                    });
                }
            }
        }
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AmLabel {
    alertmanager: String,
}

/// One Alertmanager to post to.
#[derive(Clone)]
struct Endpoint {
    url: String,
    timeout: StdDuration,
    client: Option<reqwest::Client>,
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
}

/// Sends alerts to the configured external Alertmanagers.
pub struct ExternalSender {
    http: reqwest::Client,
    targets: parking_lot::Mutex<Vec<Endpoint>>,
    sent: Family<AmLabel, Counter>,
    errors: Family<AmLabel, Counter>,
}

fn rfc3339(ms: i64) -> String {
    crate::model::time::format_rfc3339(ms)
}

/// The API v2 body for `alerts`.
pub fn postable(alerts: &[Alert]) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                let labels: std::collections::BTreeMap<&str, &str> =
                    a.labels.iter().map(|l| (l.name, l.value)).collect();
                json!({
                    "labels": labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": rfc3339(a.ends_at),
                    "generatorURL": a.generator_url,
                })
            })
            .collect(),
    )
}

impl ExternalSender {
    /// A sender using `http`.
    pub fn new(http: reqwest::Client) -> Arc<ExternalSender> {
        Arc::new(ExternalSender {
            http,
            targets: parking_lot::Mutex::new(Vec::new()),
            sent: Family::default(),
            errors: Family::default(),
        })
    }

    /// Registers `appliance_notifications_{sent,errors}_total{alertmanager}`.
    pub fn register_metrics(&self, reg: &mut Registry) {
        reg.register(
            "appliance_notifications_sent",
            "Total number of alerts sent to external Alertmanagers.",
            self.sent.clone(),
        );
        reg.register(
            "appliance_notifications_errors",
            "Total number of sent alerts affected by errors, per external Alertmanager.",
            self.errors.clone(),
        );
    }

    /// Installs the targets of `cfg`.
    pub fn apply(&self, cfg: &AlertingConfig) {
        *self.targets.lock() = cfg.endpoints(Some(&self.http));
    }

    /// Whether any external Alertmanager is configured.
    pub fn enabled(&self) -> bool {
        !self.targets.lock().is_empty()
    }

    /// Posts `alerts` to every Alertmanager, each in its own task.
    pub fn send(self: &Arc<Self>, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        let body = postable(&alerts).to_string();
        for ep in self.targets.lock().clone() {
            let me = self.clone();
            let body = body.clone();
            let n = alerts.len() as u64;
            tokio::spawn(async move {
                let url = ep.url.clone();
                let label = AmLabel {
                    alertmanager: url.clone(),
                };
                let http = ep.client.as_ref().unwrap_or(&me.http);
                let req = http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .timeout(ep.timeout);
                // Credential files are read at every send, so rotation needs no reload.
                let req = match (&ep.basic_auth, &ep.authorization) {
                    (Some(b), _) => b.credentials().map(|(u, p)| req.basic_auth(u, p)),
                    (None, Some(a)) => a.header_value().map(|h| req.header("Authorization", h)),
                    (None, None) => Ok(req),
                };
                let r = match req {
                    Ok(req) => req.send().await.map_err(|e| e.without_url().to_string()),
                    Err(e) => Err(e),
                };
                let err = match r {
                    Ok(resp) if resp.status().is_success() => None,
                    Ok(resp) => Some(format!("bad response status {}", resp.status())),
                    Err(e) => Some(e),
                };
                me.sent.get_or_create(&label).inc_by(n);
                if let Some(e) = err {
                    me.errors.get_or_create(&label).inc_by(n);
                    crate::failure!(error, "notify", "alertmanager_send", alertmanager = %url, count = n, error = %e, "error sending alerts");
                }
            });
        }
    }
}
