//! `victorops_configs`: Splunk On-Call (VictorOps) REST endpoint events: CRITICAL (or the
//! configured type) while firing, RECOVERY once resolved, keyed by the group.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    at_most_one, host_of, join_url, truncate, DeliveryError, Http, Integration, Msg, SecretSource,
};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::Secret;
use crate::notify::config::GlobalConfig;

/// The REST endpoint's base.
pub const API_URL: &str = "https://alert.victorops.com/integrations/generic/20131114/alert/";

/// A `victorops_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// API key (default `global.victorops_api_key`).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// A file holding the API key.
    #[serde(default)]
    pub api_key_file: String,
    /// The endpoint's base (default `global.victorops_api_url`).
    #[serde(default)]
    pub api_url: String,
    /// Routing key of the team.
    #[serde(default)]
    pub routing_key: String,
    /// Event type while firing (template; default `CRITICAL`).
    #[serde(default)]
    pub message_type: Option<String>,
    /// Long description (template).
    #[serde(default)]
    pub state_message: Option<String>,
    /// Summary (template).
    #[serde(default)]
    pub entity_display_name: Option<String>,
    /// Sender (template).
    #[serde(default)]
    pub monitoring_tool: Option<String>,
    /// More fields (templates).
    #[serde(default)]
    pub custom_fields: BTreeMap<String, String>,
}

/// Fields the event sets itself; `custom_fields` may not replace them.
const RESERVED: &[&str] = &[
    "routing_key",
    "message_type",
    "state_message",
    "entity_display_name",
    "monitoring_tool",
    "entity_id",
    "entity_state",
];

impl Integration for Config {
    const KIND: &'static str = "victorops";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        at_most_one("api_key", self.api_key.is_some(), &self.api_key_file)?;
        super::inherit(
            &mut self.api_key,
            &mut self.api_key_file,
            &g.victorops_api_key,
            &g.victorops_api_key_file,
            "no global VictorOps API Key set",
        )?;
        if self.routing_key.is_empty() {
            return Err("missing Routing key in VictorOps config".into());
        }
        for k in self.custom_fields.keys() {
            if RESERVED.contains(&k.as_str()) {
                return Err(format!("victorOps config contains custom field {k} which cannot be used as it conflicts with the fixed/static fields"));
            }
        }
        if self.api_url.is_empty() {
            self.api_url = if g.victorops_api_url.is_empty() {
                API_URL.into()
            } else {
                g.victorops_api_url.clone()
            };
        }
        super::check_url("api_url", &self.api_url)?;
        Ok(())
    }

    common_settings!();

    fn target(&self) -> String {
        format!("{} {}", host_of(&self.api_url), self.routing_key)
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let c = self;
            let t = |v: &Option<String>, d: &str| m.text(v.as_deref().unwrap_or(d));
            // Only INFO, WARNING and CRITICAL open or update an incident; anything else is
            // sent as CRITICAL, and a resolved group as RECOVERY.
            let message_type = if m.resolved() {
                "RECOVERY".to_string()
            } else {
                let t = t(&c.message_type, "CRITICAL")?;
                if ["INFO", "WARNING", "CRITICAL"].contains(&t.as_str()) {
                    t
                } else {
                    "CRITICAL".to_string()
                }
            };
            let (display, _) = truncate(
                &t(
                    &c.entity_display_name,
                    r#"{{ template "victorops.default.entity_display_name" . }}"#,
                )?,
                1024,
            );
            let (state, _) = truncate(
                &t(
                    &c.state_message,
                    r#"{{ template "victorops.default.state_message" . }}"#,
                )?,
                20480,
            );
            let mut body = json!({
                "message_type": message_type,
                "entity_id": m.key_hash(),
                "entity_display_name": display,
                "state_message": state,
                "monitoring_tool": t(&c.monitoring_tool, r#"{{ template "victorops.default.monitoring_tool" . }}"#)?,
            });
            for (k, v) in &c.custom_fields {
                body[k] = Value::String(m.text(v)?);
            }
            let url = join_url(
                &c.api_url,
                &format!(
                    "{}/{}",
                    SecretSource::new(self.api_key.as_ref(), &self.api_key_file).get("api_key")?,
                    c.routing_key
                ),
            );
            http.post_json(&url, &body).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "victorops",
            "victorops_configs:\n  - api_url: '{url}/integrations/generic/20131114/alert/'\n    api_key: K3Y\n    routing_key: team-a\n    custom_fields: {service: '{{ .CommonLabels.job }}'}\n",
            &[],
        )
        .await;
    }
}
