//! `telegram_configs`: a Telegram bot's `sendMessage` to a chat, as Alertmanager sends it.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{
    at_most_one, check_ok_field, host_of, join_url, truncate, DeliveryError, Http, Integration,
    Msg, SecretSource,
};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::Secret;
use crate::notify::config::GlobalConfig;

/// Telegram's Bot API.
pub const API_URL: &str = "https://api.telegram.org";
/// The most characters a message may have.
const MAX_MESSAGE: usize = 4096;

/// A `telegram_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The Bot API URL (default `global.telegram_api_url`).
    #[serde(default)]
    pub api_url: String,
    /// The bot's token (default `global.telegram_bot_token`).
    #[serde(default)]
    pub bot_token: Option<Secret>,
    /// A file holding the bot's token.
    #[serde(default)]
    pub bot_token_file: String,
    /// The chat to send to.
    #[serde(default)]
    pub chat_id: Option<i64>,
    /// A file holding the chat id.
    #[serde(default)]
    pub chat_id_file: String,
    /// Forum topic to send to.
    #[serde(default)]
    pub message_thread_id: Option<i64>,
    /// Message (template).
    #[serde(default)]
    pub message: Option<String>,
    /// Send silently.
    #[serde(default)]
    pub disable_notifications: bool,
    /// `Markdown`, `MarkdownV2`, `HTML` (default) or empty.
    #[serde(default)]
    pub parse_mode: Option<String>,
}

impl Integration for Config {
    const KIND: &'static str = "telegram";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        at_most_one("bot_token", self.bot_token.is_some(), &self.bot_token_file)?;
        super::inherit(
            &mut self.bot_token,
            &mut self.bot_token_file,
            &g.telegram_bot_token,
            &g.telegram_bot_token_file,
            "missing bot_token or bot_token_file on telegram_config",
        )?;
        if self.chat_id.is_none() && self.chat_id_file.is_empty() {
            return Err("missing chat_id on telegram_config".into());
        }
        at_most_one("chat_id", self.chat_id.is_some(), &self.chat_id_file)?;
        let mode = self.parse_mode.get_or_insert_with(|| "HTML".into());
        if !["", "Markdown", "MarkdownV2", "HTML"].contains(&mode.as_str()) {
            return Err("unknown parse_mode on telegram_config, must be Markdown, MarkdownV2, HTML or empty string".into());
        }
        if self.api_url.is_empty() {
            self.api_url = if g.telegram_api_url.is_empty() {
                API_URL.into()
            } else {
                g.telegram_api_url.clone()
            };
        }
        super::check_url("api_url", &self.api_url)?;
        Ok(())
    }

    common_settings!();

    fn target(&self) -> String {
        match self.chat_id {
            Some(id) => format!("{} chat {id}", host_of(&self.api_url)),
            None => host_of(&self.api_url),
        }
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let c = self;
            let template = c
                .message
                .as_deref()
                .unwrap_or(r#"{{ template "telegram.default.message" . }}"#);
            let mode = c.parse_mode.as_deref().unwrap_or("");
            // HTML mode escapes the data as Go's html/template does, and a message over the
            // limit is replaced rather than cut (a cut could leave a tag open).
            let text = if mode == "HTML" {
                let t = m.html(template)?;
                if t.chars().count() > MAX_MESSAGE {
                    "Alertmanager notification could not be sent: message length exceeds Telegram limits.\n\t\t\tPlease check the template used for producing the message content.".to_string()
                } else {
                    t
                }
            } else {
                truncate(&m.text(template)?, MAX_MESSAGE).0
            };
            let chat_id = match c.chat_id {
                Some(id) => id,
                None => {
                    let s = SecretSource::new(None, &c.chat_id_file).get("chat_id")?;
                    s.parse::<i64>().map_err(|e| {
                        DeliveryError::Setup(format!("chat_id_file {:?}: {e}", c.chat_id_file))
                    })?
                }
            };
            // The Bot API's parameters as Alertmanager's client (telebot) sends them: strings.
            let mut body = json!({
                "chat_id": chat_id.to_string(),
                "text": text,
                "disable_web_page_preview": "true",
            });
            if c.disable_notifications {
                body["disable_notification"] = json!("true");
            }
            if !mode.is_empty() {
                body["parse_mode"] = json!(mode);
            }
            if let Some(t) = c.message_thread_id.filter(|t| *t != 0) {
                body["message_thread_id"] = json!(t.to_string());
            }
            let url = join_url(
                &c.api_url,
                &format!(
                    "bot{}/sendMessage",
                    SecretSource::new(self.bot_token.as_ref(), &self.bot_token_file)
                        .get("bot_token")?
                ),
            );
            let answer = http.post_json(&url, &body).await?;
            check_ok_field(&answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "telegram",
            "telegram_configs:\n  - api_url: '{url}'\n    bot_token: '123:ABC'\n    chat_id: -1001234\n    message_thread_id: 7\n",
            &[],
        )
        .await;
    }
}
