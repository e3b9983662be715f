//! `webex_configs`: a Webex message (markdown) to a room, authenticated by the bot token in
//! `http_config.authorization`, as Alertmanager sends it.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{host_of, DeliveryError, Http, Integration, Msg};
use crate::model::httpconf::HttpClientConfig;
use crate::notify::config::GlobalConfig;

/// Webex's messages API.
pub const API_URL: &str = "https://webexapis.com/v1/messages";
/// The most bytes of markdown Webex takes in one message.
const MAX_MESSAGE: usize = 7439;

/// A `webex_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings; `authorization` carries the bot token and is required.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The messages API (default `global.webex_api_url`).
    #[serde(default)]
    pub api_url: String,
    /// Message, markdown (template).
    #[serde(default)]
    pub message: Option<String>,
    /// The room to post to.
    #[serde(default)]
    pub room_id: String,
}

impl Integration for Config {
    const KIND: &'static str = "webex";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        if self.room_id.is_empty() {
            return Err("missing room_id on webex_config".into());
        }
        let auth = self
            .http_config
            .as_ref()
            .or(g.http_config.as_ref())
            .is_some_and(|h| h.authorization.is_some());
        if !auth {
            return Err("missing webex_configs.http_config.authorization".into());
        }
        if self.api_url.is_empty() {
            self.api_url = if g.webex_api_url.is_empty() {
                API_URL.into()
            } else {
                g.webex_api_url.clone()
            };
        }
        super::check_url("api_url", &self.api_url)?;
        Ok(())
    }

    common_settings!();

    fn target(&self) -> String {
        host_of(&self.api_url)
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let text = m.text(
                self.message
                    .as_deref()
                    .unwrap_or(r#"{{ template "webex.default.message" . }}"#),
            )?;
            let body = json!({"roomId": m.text(&self.room_id)?, "markdown": cut_bytes(&text, MAX_MESSAGE)});
            http.post_json(&self.api_url, &body).await.map(|_| ())
        })
    }
}

/// `s` cut to at most `n` bytes on a character boundary.
fn cut_bytes(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = n;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "webex",
            "webex_configs:\n  - api_url: '{url}/v1/messages'\n    room_id: R00M\n    http_config: {authorization: {credentials: b0t}}\n",
            &[],
        )
        .await;
    }

    #[test]
    fn a_room_and_a_token_are_required() {
        let e = crate::notify::config::parse(
            "route: {receiver: a}\nreceivers: [{name: a, webex_configs: [{room_id: r}]}]\n",
        )
        .unwrap_err();
        assert!(e.0.contains("http_config.authorization"), "{e}");
    }
}
