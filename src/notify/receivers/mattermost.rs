//! `mattermost_configs`: a Mattermost incoming-webhook post (text, channel, sender,
//! attachments and props passed through), as Alertmanager sends it.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::discord::webhook_target;
use super::{
    at_most_one, Build, DeliveryContext, DeliveryError, Http, Integration, Msg, Receiver,
    SecretSource,
};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::SecretUrl;
use crate::notify::config::GlobalConfig;
use crate::notify::dispatch::Notification;

/// A `mattermost_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The incoming-webhook URL (default `global.mattermost_webhook_url`).
    #[serde(default)]
    pub webhook_url: Option<SecretUrl>,
    /// A file holding the webhook URL.
    #[serde(default)]
    pub webhook_url_file: String,
    /// Channel to post to (template).
    #[serde(default)]
    pub channel: String,
    /// Sender name (template).
    #[serde(default)]
    pub username: String,
    /// Post text, markdown (template).
    #[serde(default)]
    pub text: Option<String>,
    /// Sender icon URL.
    #[serde(default)]
    pub icon_url: String,
    /// Sender icon emoji.
    #[serde(default)]
    pub icon_emoji: String,
    /// Message attachments, passed through.
    #[serde(default)]
    pub attachments: Option<Value>,
    /// Post props, passed through.
    #[serde(default)]
    pub props: Option<Value>,
    /// Post priority, passed through.
    #[serde(default)]
    pub priority: Option<Value>,
}

impl Integration for Config {
    const KIND: &'static str = "mattermost";

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        at_most_one(
            "webhook_url",
            self.webhook_url.is_some(),
            &self.webhook_url_file,
        )?;
        if self.webhook_url.is_none() && self.webhook_url_file.is_empty() {
            if g.mattermost_webhook_url.is_none() && g.mattermost_webhook_url_file.is_empty() {
                return Err("missing webhook_url or webhook_url_file on mattermost_config".into());
            }
            self.webhook_url = g.mattermost_webhook_url.clone();
            self.webhook_url_file = g.mattermost_webhook_url_file.clone();
        }
        Ok(())
    }

    fn build(&self, b: &Build<'_>) -> Result<Arc<dyn Receiver>, String> {
        Ok(Arc::new(Mattermost {
            http: Http::new(self.http_config.as_ref(), b, super::TIMEOUT)?,
            url: SecretSource::url(self.webhook_url.as_ref(), &self.webhook_url_file),
            cfg: self.clone(),
            templates: b.templates.clone(),
        }))
    }
}

struct Mattermost {
    http: Http,
    url: SecretSource,
    cfg: Config,
    templates: crate::notify::template::Templates,
}

impl Receiver for Mattermost {
    fn kind(&self) -> &'static str {
        "mattermost"
    }
    fn target(&self) -> String {
        let host = webhook_target(&self.cfg.webhook_url, &self.cfg.webhook_url_file);
        if self.cfg.channel.is_empty() {
            host
        } else {
            format!("{host} {}", self.cfg.channel)
        }
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
            let text = m.text(
                c.text
                    .as_deref()
                    .unwrap_or(r#"{{ template "mattermost.default.text" . }}"#),
            )?;
            let mut body = json!({"text": text});
            for (k, v) in [
                ("channel", m.text(&c.channel)?),
                ("username", m.text(&c.username)?),
                ("icon_url", c.icon_url.clone()),
                ("icon_emoji", c.icon_emoji.clone()),
            ] {
                if !v.is_empty() {
                    body[k] = Value::String(v);
                }
            }
            for (k, v) in [
                ("attachments", &c.attachments),
                ("props", &c.props),
                ("priority", &c.priority),
            ] {
                if let Some(v) = v {
                    body[k] = v.clone();
                }
            }
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
            "mattermost",
            "mattermost_configs:\n  - webhook_url: '{url}/hooks/xyz'\n    channel: town-square\n",
            &[],
        )
        .await;
    }
}
