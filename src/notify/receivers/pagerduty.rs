//! `pagerduty_configs`: PagerDuty Events API v2 (`routing_key`) or v1 (`service_key`),
//! triggering while the group fires and resolving it after, deduplicated by the group.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{host_of, truncate, DeliveryError, Http, Integration, Msg, SecretSource};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::Secret;
use crate::model::time::Duration;
use crate::notify::config::GlobalConfig;

/// Events API v2.
pub const V2_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Events API v1 (used with `service_key`).
pub const V1_URL: &str = "https://events.pagerduty.com/generic/2010-04-15/create_event.json";

/// An image shown in the incident.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Image URL (template).
    #[serde(default)]
    pub src: String,
    /// Alternative text (template).
    #[serde(default)]
    pub alt: String,
    /// Link (template).
    #[serde(default)]
    pub href: String,
}

/// A link shown in the incident.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// URL (template).
    #[serde(default)]
    pub href: String,
    /// Text (template).
    #[serde(default)]
    pub text: String,
}

/// A `pagerduty_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// Integration key of a "Prometheus" service (Events API v1).
    #[serde(default)]
    pub service_key: Option<Secret>,
    /// A file holding the service key.
    #[serde(default)]
    pub service_key_file: String,
    /// Integration key of an "Events API v2" service.
    #[serde(default)]
    pub routing_key: Option<Secret>,
    /// A file holding the routing key.
    #[serde(default)]
    pub routing_key_file: String,
    /// Events URL (default `global.pagerduty_url`; v1 keys use the v1 URL unless set here).
    #[serde(default)]
    pub url: Option<String>,
    /// Client shown in PagerDuty (template).
    #[serde(default)]
    pub client: Option<String>,
    /// Link back (template).
    #[serde(default)]
    pub client_url: Option<String>,
    /// Incident summary (template).
    #[serde(default)]
    pub description: Option<String>,
    /// Custom details (templates), merged over the defaults (firing, resolved, counts).
    #[serde(default)]
    pub details: BTreeMap<String, Value>,
    /// Images.
    #[serde(default)]
    pub images: Vec<Image>,
    /// Links.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Affected system (template; default the client).
    #[serde(default)]
    pub source: Option<String>,
    /// Severity (template; default `error`).
    #[serde(default)]
    pub severity: Option<String>,
    /// Class (template).
    #[serde(default)]
    pub class: String,
    /// Component (template).
    #[serde(default)]
    pub component: String,
    /// Group (template).
    #[serde(default)]
    pub group: String,
    /// How long a request may take.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl Integration for Config {
    const KIND: &'static str = "pagerduty";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        let routing = self.routing_key.is_some() || !self.routing_key_file.is_empty();
        let service = self.service_key.is_some() || !self.service_key_file.is_empty();
        if !routing && !service {
            return Err("missing service or routing key in PagerDuty config".into());
        }
        super::at_most_one(
            "routing_key",
            self.routing_key.is_some(),
            &self.routing_key_file,
        )?;
        super::at_most_one(
            "service_key",
            self.service_key.is_some(),
            &self.service_key_file,
        )?;
        if self.url.is_none() {
            self.url = Some(if service && !routing {
                V1_URL.to_string()
            } else if g.pagerduty_url.is_empty() {
                V2_URL.to_string()
            } else {
                g.pagerduty_url.clone()
            });
        }
        super::check_url("url", self.url.as_deref().unwrap_or(V2_URL))?;
        Ok(())
    }

    common_settings!();

    fn timeout(&self) -> std::time::Duration {
        super::webhook::timeout(self.timeout)
    }

    fn target(&self) -> String {
        host_of(self.url.as_deref().unwrap_or(V2_URL))
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let key = if self.v2() {
                SecretSource::new(self.routing_key.as_ref(), &self.routing_key_file)
                    .get("routing_key")?
            } else {
                SecretSource::new(self.service_key.as_ref(), &self.service_key_file)
                    .get("service_key")?
            };
            let body = self.body(m, &key)?;
            let url = self.url.as_deref().unwrap_or(V2_URL);
            http.post_json(url, &body).await.map(|_| ())
        })
    }
}

impl Config {
    /// Events API v2 (a routing key) rather than v1 (a service key).
    fn v2(&self) -> bool {
        self.routing_key.is_some() || !self.routing_key_file.is_empty()
    }

    /// Custom details: Alertmanager's defaults (the firing and resolved alerts as JSON,
    /// their counts) under the configured ones, every value templated as
    /// `DeepCopyWithTemplate` does.
    fn details(&self, m: &Msg<'_>) -> Result<serde_json::Map<String, Value>, DeliveryError> {
        let mut d = serde_json::Map::new();
        for (k, t) in [
            ("firing", "{{ .Alerts.Firing | toJson }}"),
            ("resolved", "{{ .Alerts.Resolved | toJson }}"),
            ("num_firing", "{{ .Alerts.Firing | len }}"),
            ("num_resolved", "{{ .Alerts.Resolved | len }}"),
        ] {
            if !self.details.contains_key(k) {
                d.insert(k.into(), m.deep(&Value::String(t.into()))?);
            }
        }
        for (k, v) in &self.details {
            d.insert(k.clone(), m.deep(v)?);
        }
        Ok(d)
    }

    fn body(&self, m: &Msg<'_>, key: &str) -> Result<Value, DeliveryError> {
        let c = self;
        let t = |v: &Option<String>, default: &str| m.text(v.as_deref().unwrap_or(default));
        let action = if m.resolved() { "resolve" } else { "trigger" };
        let (description, _) = truncate(
            &t(
                &c.description,
                r#"{{ template "pagerduty.default.description" . }}"#,
            )?,
            1024,
        );
        let client = t(&c.client, r#"{{ template "pagerduty.default.client" . }}"#)?;
        let client_url = t(
            &c.client_url,
            r#"{{ template "pagerduty.default.clientURL" . }}"#,
        )?;
        let details = self.details(m)?;
        if !self.v2() {
            let mut v = json!({
                "service_key": key,
                "event_type": action,
                "incident_key": m.key_hash(),
                "description": description,
                "details": details,
            });
            if !m.resolved() {
                v["client"] = json!(client);
                v["client_url"] = json!(client_url);
            }
            return Ok(v);
        }
        let mut payload = json!({
            "summary": description,
            "source": m.text(c.source.as_deref().or(c.client.as_deref()).unwrap_or(r#"{{ template "pagerduty.default.client" . }}"#))?,
            "severity": t(&c.severity, "error")?,
            "custom_details": details,
        });
        for (k, v) in [
            ("class", &c.class),
            ("component", &c.component),
            ("group", &c.group),
        ] {
            let v = m.text(v)?;
            if !v.is_empty() {
                payload[k] = json!(v);
            }
        }
        // Images without a source and links without a target are left out; empty lists
        // are not sent.
        let mut images = Vec::new();
        for i in &c.images {
            let src = m.text(&i.src)?;
            if !src.is_empty() {
                images.push(json!({"src": src, "alt": m.text(&i.alt)?, "href": m.text(&i.href)?}));
            }
        }
        let mut links = Vec::new();
        for l in &c.links {
            let href = m.text(&l.href)?;
            if !href.is_empty() {
                links.push(json!({"href": href, "text": m.text(&l.text)?}));
            }
        }
        let mut v = json!({
            "routing_key": key,
            "event_action": action,
            "dedup_key": m.key_hash(),
            "payload": payload,
        });
        for (k, x) in [("client", client), ("client_url", client_url)] {
            if !x.is_empty() {
                v[k] = Value::String(x);
            }
        }
        if !images.is_empty() {
            v["images"] = Value::Array(images);
        }
        if !links.is_empty() {
            v["links"] = Value::Array(links);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_events_v2() {
        testing::golden(
            "pagerduty-v2",
            "pagerduty_configs:\n  - routing_key: R0UT1NG\n    url: '{url}/v2/enqueue'\n    severity: '{{ .CommonLabels.severity }}'\n    details: {team: '{{ .CommonLabels.job }}'}\n    links: [{href: 'http://runbooks/{{ .CommonLabels.alertname }}', text: runbook}]\n",
            &[],
        )
        .await;
    }

    #[tokio::test]
    async fn golden_events_v1() {
        testing::golden(
            "pagerduty-v1",
            "pagerduty_configs:\n  - service_key: S3RV1CE\n    url: '{url}/generic/2010-04-15/create_event.json'\n",
            &[],
        )
        .await;
    }
}
