//! `msteams_configs`: a Microsoft Teams connector "MessageCard" (title, summary, markdown
//! text, a colour by status), as Alertmanager sends it.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::discord::{check_webhook_url, webhook_target};
use super::{DeliveryError, Http, Integration, Msg, SecretSource};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::SecretUrl;
use crate::notify::config::GlobalConfig;

/// A `msteams_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The incoming-webhook URL.
    #[serde(default)]
    pub webhook_url: Option<SecretUrl>,
    /// A file holding the webhook URL.
    #[serde(default)]
    pub webhook_url_file: String,
    /// Card title (template).
    #[serde(default)]
    pub title: Option<String>,
    /// Card summary, shown in notifications (template).
    #[serde(default)]
    pub summary: Option<String>,
    /// Card text, markdown (template).
    #[serde(default)]
    pub text: Option<String>,
}

impl Integration for Config {
    const KIND: &'static str = "msteams";
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
                "@context": "http://schema.org/extensions",
                "type": "MessageCard",
                "title": t(&c.title, r#"{{ template "msteams.default.title" . }}"#)?,
                "summary": t(&c.summary, r#"{{ template "msteams.default.summary" . }}"#)?,
                "text": t(&c.text, r#"{{ template "msteams.default.text" . }}"#)?,
                "themeColor": if m.resolved() { "2DC72D" } else { "8C1A1A" },
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
            "msteams",
            "msteams_configs:\n  - webhook_url: '{url}/webhookb2/abc'\n",
            &[],
        )
        .await;
    }
}
