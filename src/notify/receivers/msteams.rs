//! `msteams_configs`: a Microsoft Teams connector "MessageCard" (title, summary, markdown
//! text, a colour by status), as Alertmanager sends it.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::discord::{check_webhook_url, webhook_target};
use super::{
    Build, DeliveryContext, DeliveryError, Http, Integration, Msg, Receiver, SecretSource,
};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::SecretUrl;
use crate::notify::config::GlobalConfig;
use crate::notify::dispatch::Notification;

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

    fn check(&mut self, _: &GlobalConfig) -> Result<(), String> {
        check_webhook_url(&self.webhook_url, &self.webhook_url_file)
    }

    fn build(&self, b: &Build<'_>) -> Result<Arc<dyn Receiver>, String> {
        Ok(Arc::new(Teams {
            http: Http::new(self.http_config.as_ref(), b, super::TIMEOUT)?,
            url: SecretSource::url(self.webhook_url.as_ref(), &self.webhook_url_file),
            cfg: self.clone(),
            templates: b.templates.clone(),
        }))
    }
}

struct Teams {
    http: Http,
    url: SecretSource,
    cfg: Config,
    templates: crate::notify::template::Templates,
}

impl Receiver for Teams {
    fn kind(&self) -> &'static str {
        "msteams"
    }
    fn target(&self) -> String {
        webhook_target(&self.cfg.webhook_url, &self.cfg.webhook_url_file)
    }
    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved.unwrap_or(true)
    }
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        ctx: &'a DeliveryContext,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let c = &self.cfg;
            let m = Msg::new(n, ctx, &self.templates);
            let t = |v: &Option<String>, d: &str| m.text(v.as_deref().unwrap_or(d));
            let body = json!({
                "@context": "http://schema.org/extensions",
                "type": "MessageCard",
                "title": t(&c.title, r#"{{ template "msteams.default.title" . }}"#)?,
                "summary": t(&c.summary, r#"{{ template "msteams.default.summary" . }}"#)?,
                "text": t(&c.text, r#"{{ template "msteams.default.text" . }}"#)?,
                "themeColor": if m.resolved() { "2DC72D" } else { "8C1A1A" },
            });
            self.http
                .post_json(&self.url.get("webhook_url")?, &body)
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
