//! `discord_configs`: a Discord webhook message with one embed (title, description and a
//! colour by status), as Alertmanager sends it.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{at_most_one, host_of, truncate, DeliveryError, Http, Integration, Msg, SecretSource};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::SecretUrl;
use crate::notify::config::GlobalConfig;

const RED: u32 = 0x992D22;
const GREEN: u32 = 0x2ECC71;

/// A `discord_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The webhook URL.
    #[serde(default)]
    pub webhook_url: Option<SecretUrl>,
    /// A file holding the webhook URL.
    #[serde(default)]
    pub webhook_url_file: String,
    /// Message content above the embed (template).
    #[serde(default)]
    pub content: Option<String>,
    /// Embed title (template).
    #[serde(default)]
    pub title: Option<String>,
    /// Embed description (template).
    #[serde(default)]
    pub message: Option<String>,
    /// Sender name.
    #[serde(default)]
    pub username: String,
    /// Sender avatar URL.
    #[serde(default)]
    pub avatar_url: String,
}

/// The webhook-URL checks shared by Discord and both Teams kinds.
pub fn check_webhook_url(url: &Option<SecretUrl>, file: &str) -> Result<(), String> {
    let inline = url.as_ref().is_some_and(|u| !u.is_empty());
    if !inline && file.is_empty() {
        return Err("one of webhook_url or webhook_url_file must be configured".into());
    }
    at_most_one("webhook_url", inline, file)?;
    super::check_secret_url("webhook_url", url)
}

/// Where a webhook-URL integration delivers, for the history.
pub fn webhook_target(url: &Option<SecretUrl>, file: &str) -> String {
    url.as_ref()
        .map(|u| host_of(u.expose()))
        .unwrap_or_else(|| file.to_string())
}

impl Integration for Config {
    const KIND: &'static str = "discord";
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
            let (title, _) = truncate(
                &t(&c.title, r#"{{ template "discord.default.title" . }}"#)?,
                256,
            );
            let (description, _) = truncate(
                &t(&c.message, r#"{{ template "discord.default.message" . }}"#)?,
                4096,
            );
            let (content, _) = truncate(
                &t(&c.content, r#"{{ template "discord.default.content" . }}"#)?,
                2000,
            );
            let mut body = json!({
                "content": content,
                "embeds": [{
                    "title": title,
                    "description": description,
                    "color": if m.resolved() { GREEN } else { RED },
                }],
            });
            for (k, v) in [
                ("username", c.username.clone()),
                ("avatar_url", c.avatar_url.clone()),
            ] {
                if !v.is_empty() {
                    body[k] = Value::String(v);
                }
            }
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
            "discord",
            "discord_configs:\n  - webhook_url: '{url}/api/webhooks/1/t0k3n'\n    username: appliance\n",
            &[],
        )
        .await;
    }
}
