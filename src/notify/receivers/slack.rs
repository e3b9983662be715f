//! `slack_configs`: an incoming webhook (`api_url`) or the Web API's `chat.postMessage`
//! with a bot token (`app_token`), one attachment per message as Alertmanager sends it.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    at_most_one, check_ok_field, host_of, truncate, DeliveryError, Http, Integration, Msg,
    SecretSource,
};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::{Secret, SecretUrl};
use crate::model::time::Duration;
use crate::notify::config::GlobalConfig;

/// Slack's Web API endpoint for bot tokens (Alertmanager's default `slack_app_url`).
pub const APP_URL: &str = "https://slack.com/api/chat.postMessage";

/// The most characters of a title Slack shows (Alertmanager truncates to it).
const MAX_TITLE: usize = 1024;

/// A field of the attachment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Title (template).
    #[serde(default)]
    pub title: String,
    /// Value (template).
    #[serde(default)]
    pub value: String,
    /// Shown side by side (default `short_fields`).
    #[serde(default)]
    pub short: Option<bool>,
}

/// A `slack_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default false).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The incoming-webhook URL (default `global.slack_api_url`).
    #[serde(default)]
    pub api_url: Option<SecretUrl>,
    /// A file holding the webhook URL.
    #[serde(default)]
    pub api_url_file: String,
    /// A bot token for `chat.postMessage` (default `global.slack_app_token`).
    #[serde(default)]
    pub app_token: Option<Secret>,
    /// A file holding the bot token.
    #[serde(default)]
    pub app_token_file: String,
    /// The Web API URL used with a bot token (default `global.slack_app_url`).
    #[serde(default)]
    pub app_url: String,
    /// Channel or user to send to.
    #[serde(default)]
    pub channel: String,
    /// Sender name (template).
    #[serde(default)]
    pub username: Option<String>,
    /// Attachment colour (template).
    #[serde(default)]
    pub color: Option<String>,
    /// Attachment title (template).
    #[serde(default)]
    pub title: Option<String>,
    /// Link of the title (template).
    #[serde(default)]
    pub title_link: Option<String>,
    /// Text above the attachment (template).
    #[serde(default)]
    pub pretext: Option<String>,
    /// Attachment text (template). Unset: each alert's summary, description and labels
    /// (Alertmanager's default is empty).
    #[serde(default)]
    pub text: Option<String>,
    /// Attachment fields.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// Default `short` of the fields.
    #[serde(default)]
    pub short_fields: bool,
    /// Footer (template).
    #[serde(default)]
    pub footer: Option<String>,
    /// Plain-text summary (template).
    #[serde(default)]
    pub fallback: Option<String>,
    /// Callback id for interactive messages (template).
    #[serde(default)]
    pub callback_id: Option<String>,
    /// Emoji as the sender's icon (template).
    #[serde(default)]
    pub icon_emoji: Option<String>,
    /// Image URL as the sender's icon (template).
    #[serde(default)]
    pub icon_url: Option<String>,
    /// Image in the attachment.
    #[serde(default)]
    pub image_url: String,
    /// Thumbnail in the attachment.
    #[serde(default)]
    pub thumb_url: String,
    /// Link channel and user names.
    #[serde(default)]
    pub link_names: bool,
    /// Which fields Slack formats as mrkdwn (default fallback, pretext, text).
    #[serde(default)]
    pub mrkdwn_in: Option<Vec<String>>,
    /// Buttons, passed through with their text fields expanded.
    #[serde(default)]
    pub actions: Vec<Value>,
    /// Update the first message of a group instead of posting again (bot tokens only; the
    /// appliance posts each notification, threads are not kept).
    #[serde(default)]
    pub update_message: bool,
    /// Top-level message text (template).
    #[serde(default)]
    pub message_text: String,
    /// How long a request may take.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl Config {
    fn webhook(&self) -> bool {
        self.api_url.as_ref().is_some_and(|u| !u.is_empty()) || !self.api_url_file.is_empty()
    }
    fn token(&self) -> bool {
        self.app_token.as_ref().is_some_and(|t| !t.is_empty()) || !self.app_token_file.is_empty()
    }
}

impl Integration for Config {
    const KIND: &'static str = "slack";
    const RESOLVED_BY_DEFAULT: bool = false;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        at_most_one("api_url", self.api_url.is_some(), &self.api_url_file)?;
        at_most_one("app_token", self.app_token.is_some(), &self.app_token_file)?;
        if self.webhook() && self.token() {
            return Err(
                "at most one of api_url/api_url_file & app_token/app_token_file must be configured"
                    .into(),
            );
        }
        if !self.webhook() && !self.token() {
            // As Alertmanager: the global bot token applies unless this entry authorizes
            // itself (the old bot-token workaround), and the global webhook URL applies.
            let own_auth = self
                .http_config
                .as_ref()
                .is_some_and(|h| h.authorization.is_some());
            if !own_auth {
                self.app_token = g.slack_app_token.clone().filter(|t| !t.is_empty());
                self.app_token_file = g.slack_app_token_file.clone();
            }
            self.api_url = g.slack_api_url.clone().filter(|u| !u.is_empty());
            self.api_url_file = g.slack_api_url_file.clone();
            if !self.webhook() && !self.token() {
                return Err("no Slack API URL nor App token set either inline or in a file".into());
            }
            // With a token, messages go to the Web API URL (the old workaround pointed
            // slack_api_url there).
            if self.token() {
                self.api_url = None;
                self.api_url_file = String::new();
            }
        }
        if self.app_url.is_empty() {
            self.app_url = if g.slack_app_url.is_empty() {
                APP_URL.into()
            } else {
                g.slack_app_url.clone()
            };
        }
        let own_auth = self
            .http_config
            .as_ref()
            .is_some_and(|h| h.authorization.is_some());
        if self.token() && own_auth {
            return Err("http authorization can't be set when using Slack App tokens".into());
        }
        if self.update_message && !self.token() {
            return Err("update_message can only be used with bot tokens. app_token or app_token_file must be set".into());
        }
        super::check_secret_url("api_url", &self.api_url)?;
        super::check_url("app_url", &self.app_url)?;
        Ok(())
    }

    common_settings!();

    fn timeout(&self) -> std::time::Duration {
        super::webhook::timeout(self.timeout)
    }

    fn target(&self) -> String {
        let host = match &self.api_url {
            Some(u) if self.webhook() => host_of(u.expose()),
            _ if self.webhook() => self.api_url_file.clone(),
            _ => host_of(&self.app_url),
        };
        if self.channel.is_empty() {
            host
        } else {
            format!("{host} {}", self.channel)
        }
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let body = message(self, m)?;
            let url = if self.webhook() {
                SecretSource::url(self.api_url.as_ref(), &self.api_url_file).get("api_url")?
            } else {
                self.app_url.clone()
            };
            let token = SecretSource::new(self.app_token.as_ref(), &self.app_token_file);
            let mut req = http
                .request(reqwest::Method::POST, &url)?
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .body(body.to_string());
            if token.is_set() {
                req = req.header(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {}", token.get("app_token")?),
                );
            }
            let answer = http.send(req).await?;
            // The Web API answers 200 with `ok: false` when it refuses (channel_not_found,
            // invalid_auth); webhooks answer `ok` or an error status.
            check_ok_field(&answer)
        })
    }
}

/// Puts `v` under `k` unless it is empty (Slack's JSON omits empty fields).
fn put(o: &mut serde_json::Map<String, Value>, k: &str, v: String) {
    if !v.is_empty() {
        o.insert(k.into(), Value::String(v));
    }
}

/// `v` with every string in it expanded as a template (an action's text, URL, confirm…).
fn text_leaves(v: &Value, m: &Msg<'_>) -> Result<Value, DeliveryError> {
    Ok(match v {
        Value::String(t) => Value::String(m.text(t)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| text_leaves(x, m))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut out = serde_json::Map::new();
            for (k, x) in o {
                out.insert(k.clone(), text_leaves(x, m)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// The message for `m` as `c` configures it.
fn message(c: &Config, m: &Msg<'_>) -> Result<Value, DeliveryError> {
    let t = |v: &Option<String>, default: &str| m.text(v.as_deref().unwrap_or(default));
    let mut att = serde_json::Map::new();
    let (title, _) = truncate(
        &t(&c.title, r#"{{ template "slack.default.title" . }}"#)?,
        MAX_TITLE,
    );
    put(&mut att, "title", title);
    put(
        &mut att,
        "title_link",
        t(
            &c.title_link,
            r#"{{ template "slack.default.titlelink" . }}"#,
        )?,
    );
    put(
        &mut att,
        "pretext",
        t(&c.pretext, r#"{{ template "slack.default.pretext" . }}"#)?,
    );
    let text = match &c.text {
        Some(x) => m.text(x)?,
        None => m
            .text(r#"{{ template "appliance.slack.text" . }}"#)?
            .trim_end()
            .to_string(),
    };
    put(&mut att, "text", text);
    put(
        &mut att,
        "fallback",
        t(&c.fallback, r#"{{ template "slack.default.fallback" . }}"#)?,
    );
    put(
        &mut att,
        "callback_id",
        t(
            &c.callback_id,
            r#"{{ template "slack.default.callbackid" . }}"#,
        )?,
    );
    put(&mut att, "image_url", m.text(&c.image_url)?);
    put(&mut att, "thumb_url", m.text(&c.thumb_url)?);
    put(
        &mut att,
        "footer",
        t(&c.footer, r#"{{ template "slack.default.footer" . }}"#)?,
    );
    put(
        &mut att,
        "color",
        t(&c.color, r#"{{ template "slack.default.color" . }}"#)?,
    );
    let mrkdwn = c
        .mrkdwn_in
        .clone()
        .unwrap_or_else(|| vec!["fallback".into(), "pretext".into(), "text".into()]);
    att.insert("mrkdwn_in".into(), json!(mrkdwn));
    if !c.fields.is_empty() {
        let mut fields = Vec::new();
        for f in &c.fields {
            fields.push(json!({
                "title": m.text(&f.title)?,
                "value": m.text(&f.value)?,
                "short": f.short.unwrap_or(c.short_fields),
            }));
        }
        att.insert("fields".into(), Value::Array(fields));
    }
    if !c.actions.is_empty() {
        let mut actions = Vec::new();
        for a in &c.actions {
            actions.push(text_leaves(a, m)?);
        }
        att.insert("actions".into(), Value::Array(actions));
    }
    let mut req = serde_json::Map::new();
    put(&mut req, "channel", m.text(&c.channel)?);
    put(
        &mut req,
        "username",
        t(&c.username, r#"{{ template "slack.default.username" . }}"#)?,
    );
    put(
        &mut req,
        "icon_emoji",
        t(
            &c.icon_emoji,
            r#"{{ template "slack.default.iconemoji" . }}"#,
        )?,
    );
    put(
        &mut req,
        "icon_url",
        t(&c.icon_url, r#"{{ template "slack.default.iconurl" . }}"#)?,
    );
    if c.link_names {
        req.insert("link_names".into(), Value::Bool(true));
    }
    put(&mut req, "text", m.text(&c.message_text)?);
    req.insert("attachments".into(), json!([Value::Object(att)]));
    Ok(Value::Object(req))
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_webhook() {
        testing::golden(
            "slack",
            "slack_configs:\n  - api_url: '{url}/services/T/B/X'\n    channel: '#ops'\n    send_resolved: true\n    fields: [{title: Job, value: '{{ .CommonLabels.job }}'}]\n",
            &[],
        )
        .await;
    }

    #[tokio::test]
    async fn golden_bot_token() {
        testing::golden(
            "slack-bot",
            "slack_configs:\n  - app_token: xoxb-secret\n    app_url: '{url}/api/chat.postMessage'\n    channel: '#ops'\n    send_resolved: true\n    title: '{{ .CommonLabels.alertname }} on {{ .CommonLabels.job }}'\n    text: '{{ range .Alerts }}{{ .Annotations.description }} {{ end }}'\n",
            &[],
        )
        .await;
    }

    #[tokio::test]
    async fn a_refusal_from_the_web_api_is_an_error() {
        let rec = testing::Recorder::start(&[(
            "POST",
            "/api",
            200,
            r#"{"ok":false,"error":"channel_not_found"}"#,
        )])
        .await;
        let (cfg, i) = testing::integration(
            "slack_configs:\n  - app_token: xoxb-secret\n    app_url: '{url}/api/chat.postMessage'\n",
            &rec.url,
        );
        let r = i
            .build(&super::super::Build {
                global: &cfg.global,
                templates: &cfg.template_set,
            })
            .unwrap();
        let ctx = super::super::DeliveryContext {
            external_url: "http://x".into(),
        };
        let e = r
            .deliver(&testing::notification(false), &ctx)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("channel_not_found"), "{e}");
    }

    #[tokio::test]
    async fn global_token_url_and_the_old_workaround() {
        let rec = testing::Recorder::start(&[]).await;
        let u = &rec.url;
        let text = format!(
            "global:\n  slack_app_token: xoxb-global\n  slack_api_url: '{u}/api/chat.postMessage'\n  slack_app_url: '{u}/api/chat.postMessage'\nroute: {{receiver: s}}\nreceivers:\n  - name: s\n    slack_configs:\n      - channel: '#a1'\n      - {{channel: '#a2', app_token: xoxb-own}}\n      - {{channel: '#a3', app_url: '{u}/custom'}}\n      - {{channel: '#a4', http_config: {{authorization: {{credentials: xoxb-workaround}}}}}}\n      - {{api_url: '{u}/services/T/B/X'}}\n"
        );
        let cfg = crate::notify::config::parse(&text).unwrap();
        let b = super::super::Build {
            global: &cfg.global,
            templates: &cfg.template_set,
        };
        let ctx = super::super::DeliveryContext {
            external_url: "http://x".into(),
        };
        let mut seen = Vec::new();
        for i in &cfg.receivers[0].integrations {
            let r = i.build(&b).unwrap();
            r.deliver(&testing::notification(false), &ctx)
                .await
                .unwrap();
            let req = rec.take().pop().unwrap();
            let auth = req
                .headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            seen.push((req.path, auth));
        }
        let want = [
            ("/api/chat.postMessage", "Bearer xoxb-global"),
            ("/api/chat.postMessage", "Bearer xoxb-own"),
            ("/custom", "Bearer xoxb-global"),
            ("/api/chat.postMessage", "Bearer xoxb-workaround"),
            ("/services/T/B/X", ""),
        ];
        let seen: Vec<(&str, &str)> = seen.iter().map(|(p, a)| (p.as_str(), a.as_str())).collect();
        assert_eq!(seen, want);
    }
}
