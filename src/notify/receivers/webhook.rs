//! `webhook_configs`: Alertmanager's webhook JSON (version 4) POSTed to a URL. The payload
//! builder is shared with incident.io, which takes the same message.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{host_of, DeliveryError, Http, Integration, Msg, SecretSource};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::SecretUrl;
use crate::model::time::Duration;
use crate::notify::config::GlobalConfig;
use crate::notify::dispatch::Notification;

/// A `webhook_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The endpoint to send to.
    #[serde(default)]
    pub url: Option<SecretUrl>,
    /// A file holding the endpoint.
    #[serde(default)]
    pub url_file: String,
    /// The most alerts one message carries; 0 is all (the rest are counted in
    /// `truncatedAlerts`).
    #[serde(default)]
    pub max_alerts: u64,
    /// How long a request may take (0: no limit beyond the default).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// A custom body replacing the webhook JSON: every string in it is a template over the
    /// notification's data, and a result that reads as YAML of another kind (a number, a
    /// list) becomes that value.
    #[serde(default)]
    pub payload: Option<Value>,
}

impl Integration for Config {
    const KIND: &'static str = "webhook";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, _: &GlobalConfig) -> Result<(), String> {
        let inline = self.url.as_ref().is_some_and(|u| !u.is_empty());
        if !inline && self.url_file.is_empty() {
            return Err("one of url or url_file must be configured".into());
        }
        super::at_most_one("url", inline, &self.url_file)?;
        super::check_secret_url("url", &self.url)?;
        Ok(())
    }

    common_settings!();

    fn timeout(&self) -> std::time::Duration {
        timeout(self.timeout)
    }

    fn target(&self) -> String {
        url_target(&self.url, &self.url_file)
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let full = m.n;
            let (kept, _) = truncated(full, self.max_alerts);
            let m = m.with(&kept);
            // The URL is a template too (Alertmanager 0.28+).
            let url = m.text(&SecretSource::url(self.url.as_ref(), &self.url_file).get("url")?)?;
            if url.is_empty() {
                return Err(DeliveryError::Setup(
                    "webhook URL is empty after templating".into(),
                ));
            }
            let body = match &self.payload {
                Some(p) => m.deep(p)?,
                None => payload(full, m.now, m.external_url, self.max_alerts),
            };
            http.post_json(&url, &body).await.map(|_| ())
        })
    }
}

/// Where a URL-configured integration delivers, for the history: the URL's host, or the
/// file it is read from.
pub fn url_target(url: &Option<SecretUrl>, file: &str) -> String {
    url.as_ref()
        .map(|u| host_of(u.expose()))
        .unwrap_or_else(|| file.to_string())
}

/// The request timeout: the configured one, else the default.
pub fn timeout(t: Option<Duration>) -> std::time::Duration {
    match t {
        Some(d) if d.as_millis() > 0 => std::time::Duration::from_millis(d.as_millis() as u64),
        _ => super::TIMEOUT,
    }
}

fn rfc3339(ms: i64) -> String {
    if ms == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        crate::model::time::format_rfc3339(ms)
    }
}

fn labels_obj(l: &crate::model::Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|x| (x.name.to_string(), x.value.to_string()))
        .collect()
}

/// Labels (or annotations) every alert of the notification shares.
fn common(maps: impl Iterator<Item = BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let mut it = maps;
    let Some(mut acc) = it.next() else {
        return BTreeMap::new();
    };
    for m in it {
        acc.retain(|k, v| m.get(k) == Some(v));
    }
    acc
}

/// The notification with at most `max_alerts` alerts (0: all), and how many were left out:
/// Alertmanager computes the whole message (status, common labels) from what is kept.
pub fn truncated(n: &Notification, max_alerts: u64) -> (Notification, usize) {
    let keep = if max_alerts == 0 {
        n.alerts.len()
    } else {
        n.alerts.len().min(max_alerts as usize)
    };
    let mut t = n.clone();
    t.alerts.truncate(keep);
    (t, n.alerts.len() - keep)
}

/// Alertmanager's webhook payload, version 4, with at most `max_alerts` alerts (0: all).
pub fn payload(n: &Notification, now: i64, external_url: &str, max_alerts: u64) -> Value {
    let (n, left_out) = truncated(n, max_alerts);
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": if a.resolved(now) { "resolved" } else { "firing" },
                "labels": labels_obj(&a.labels),
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(a.ends_at),
                "generatorURL": a.generator_url,
                "fingerprint": format!("{:016x}", a.fingerprint()),
            })
        })
        .collect();
    let firing = n.alerts.iter().any(|a| !a.resolved(now));
    json!({
        "receiver": n.receiver,
        "status": if firing { "firing" } else { "resolved" },
        "alerts": alerts,
        "groupLabels": n.group_labels,
        "commonLabels": common(n.alerts.iter().map(|a| labels_obj(&a.labels))),
        "commonAnnotations": common(n.alerts.iter().map(|a| a.annotations.clone())),
        "externalURL": external_url,
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": left_out,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "webhook",
            "webhook_configs:\n  - url: '{url}/hook'\n    max_alerts: 1\n    http_config:\n      basic_auth: {username: u, password: p}\n",
            &[],
        )
        .await;
    }

    #[tokio::test]
    async fn golden_custom_payload() {
        testing::golden(
            "webhook-payload",
            "webhook_configs:\n  - url: '{url}/hook/{{ .CommonLabels.job }}'\n    payload:\n      text: '{{ .CommonAnnotations.summary }}'\n      count: '{{ len .Alerts }}'\n      alerts: '{{ .Alerts.Firing | toJson }}'\n      '{{ .CommonLabels.severity }}': true\n",
            &[],
        )
        .await;
    }
}
