//! `msteamsv2_configs`: a Microsoft Teams message through a Power Automate workflow: an
//! Adaptive Card with a heading coloured by status and the alert text, as Alertmanager
//! sends it.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::discord::{check_webhook_url, webhook_target};
use super::{DeliveryError, Http, Integration, Msg, SecretSource};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::SecretUrl;
use crate::notify::config::GlobalConfig;

/// A `msteamsv2_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The workflow's URL.
    #[serde(default)]
    pub webhook_url: Option<SecretUrl>,
    /// A file holding the workflow's URL.
    #[serde(default)]
    pub webhook_url_file: String,
    /// Card heading (template).
    #[serde(default)]
    pub title: Option<String>,
    /// Card text, markdown (template).
    #[serde(default)]
    pub text: Option<String>,
}

impl Integration for Config {
    const KIND: &'static str = "msteamsv2";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, _: &GlobalConfig) -> Result<(), String> {
        check_webhook_url(&self.webhook_url, &self.webhook_url_file)
    }

    common_settings!();

    fn target(&self) -> String {
        webhook_target(&self.webhook_url, &self.webhook_url_file)
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let c = self;
            let t = |v: &Option<String>, d: &str| m.text(v.as_deref().unwrap_or(d));
            let body = json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.2",
                        "body": [
                            {
                                "type": "TextBlock",
                                "text": t(&c.title, r#"{{ template "msteamsv2.default.title" . }}"#)?,
                                "weight": "Bolder",
                                "size": "Medium",
                                "wrap": true,
                                "style": "heading",
                                "color": if m.resolved() { "Good" } else { "Attention" },
                            },
                            {
                                "type": "TextBlock",
                                "text": t(&c.text, r#"{{ template "msteamsv2.default.text" . }}"#)?,
                                "wrap": true,
                            },
                        ],
                        "msteams": {"width": "full"},
                    },
                }],
            });
            http.post_json(
                &SecretSource::url(self.webhook_url.as_ref(), &self.webhook_url_file)
                    .get("webhook_url")?,
                &body,
            )
            .await
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "msteamsv2",
            "msteamsv2_configs:\n  - webhook_url: '{url}/workflows/abc/triggers/manual/paths/invoke'\n    title: 'Alert: {{ .CommonLabels.alertname }}'\n",
            &[],
        )
        .await;
    }
}
