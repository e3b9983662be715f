//! `rocketchat_configs`: Rocket.Chat's `chat.postMessage` with a personal access token, one
//! attachment per message, as Alertmanager sends it.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{at_most_one, host_of, join_url, DeliveryError, Http, Integration, Msg, SecretSource};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::Secret;
use crate::notify::config::GlobalConfig;

/// Rocket.Chat's default server.
pub const API_URL: &str = "https://open.rocket.chat/";

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

/// A `rocketchat_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default false).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The server (default `global.rocketchat_api_url`).
    #[serde(default)]
    pub api_url: String,
    /// Token id (the user id; default `global.rocketchat_token_id`).
    #[serde(default)]
    pub token_id: Option<Secret>,
    /// A file holding the token id.
    #[serde(default)]
    pub token_id_file: String,
    /// Personal access token (default `global.rocketchat_token`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding the token.
    #[serde(default)]
    pub token_file: String,
    /// Channel to post to (template).
    #[serde(default)]
    pub channel: String,
    /// Attachment colour (template).
    #[serde(default)]
    pub color: Option<String>,
    /// Attachment title (template).
    #[serde(default)]
    pub title: Option<String>,
    /// Link of the title (template).
    #[serde(default)]
    pub title_link: Option<String>,
    /// Attachment text (template).
    #[serde(default)]
    pub text: Option<String>,
    /// Attachment fields.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// Default `short` of the fields.
    #[serde(default)]
    pub short_fields: bool,
    /// Emoji as the sender's avatar (template).
    #[serde(default)]
    pub emoji: Option<String>,
    /// Sender avatar URL (template).
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
    /// Buttons.
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// A button of the attachment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// Always `button` (the only kind Rocket.Chat takes here).
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Label (template).
    #[serde(default)]
    pub text: String,
    /// Link (template).
    #[serde(default)]
    pub url: String,
    /// Message sent to the channel when pressed (template).
    #[serde(default)]
    pub msg: String,
}

impl Integration for Config {
    const KIND: &'static str = "rocketchat";
    const RESOLVED_BY_DEFAULT: bool = false;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        at_most_one("token", self.token.is_some(), &self.token_file)?;
        at_most_one("token_id", self.token_id.is_some(), &self.token_id_file)?;
        super::inherit(
            &mut self.token,
            &mut self.token_file,
            &g.rocketchat_token,
            &g.rocketchat_token_file,
            "no global Rocketchat Token set either inline or in a file",
        )?;
        super::inherit(
            &mut self.token_id,
            &mut self.token_id_file,
            &g.rocketchat_token_id,
            &g.rocketchat_token_id_file,
            "no global Rocketchat TokenID set either inline or in a file",
        )?;
        if self.api_url.is_empty() {
            self.api_url = if g.rocketchat_api_url.is_empty() {
                API_URL.into()
            } else {
                g.rocketchat_api_url.clone()
            };
        }
        super::check_url("api_url", &self.api_url)?;
        Ok(())
    }

    common_settings!();

    fn target(&self) -> String {
        format!("{} {}", host_of(&self.api_url), self.channel)
            .trim_end()
            .to_string()
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let c = self;
            let t = |v: &Option<String>, d: &str| m.text(v.as_deref().unwrap_or(d));
            let (title, _) = super::truncate(
                &t(&c.title, r#"{{ template "rocketchat.default.title" . }}"#)?,
                1024,
            );
            let mut att = json!({
                "title": title,
                "title_link": t(&c.title_link, r#"{{ template "rocketchat.default.titlelink" . }}"#)?,
                "text": t(&c.text, r#"{{ template "rocketchat.default.text" . }}"#)?,
                "color": t(&c.color, r#"{{ if eq .Status "firing" }}red{{ else }}green{{ end }}"#)?,
            });
            for (k, v) in [("image_url", &c.image_url), ("thumb_url", &c.thumb_url)] {
                let v = m.text(v)?;
                if !v.is_empty() {
                    att[k] = Value::String(v);
                }
            }
            if !c.fields.is_empty() {
                let mut fields = Vec::new();
                for f in &c.fields {
                    fields.push(json!({
                        "title": m.text(&f.title)?,
                        "value": m.text(&f.value)?,
                        "short": f.short.unwrap_or(c.short_fields),
                    }));
                }
                att["fields"] = Value::Array(fields);
            }
            if !c.actions.is_empty() {
                let mut actions = Vec::new();
                for a in &c.actions {
                    let mut o = json!({"type": "button"});
                    for (k, v) in [("text", &a.text), ("url", &a.url), ("msg", &a.msg)] {
                        let v = m.text(v)?;
                        if !v.is_empty() {
                            o[k] = Value::String(v);
                        }
                    }
                    actions.push(o);
                }
                att["actions"] = Value::Array(actions);
            }
            let mut body = json!({"attachments": [att]});
            for (k, v) in [
                ("channel", m.text(&c.channel)?),
                (
                    "emoji",
                    t(&c.emoji, r#"{{ template "rocketchat.default.emoji" . }}"#)?,
                ),
                (
                    "avatar",
                    t(
                        &c.icon_url,
                        r#"{{ template "rocketchat.default.iconurl" . }}"#,
                    )?,
                ),
            ] {
                if !v.is_empty() {
                    body[k] = Value::String(v);
                }
            }
            if c.link_names {
                body["link_names"] = json!(true);
            }
            let req = http
                .request(
                    reqwest::Method::POST,
                    &join_url(&c.api_url, "api/v1/chat.postMessage"),
                )?
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    "X-Auth-Token",
                    SecretSource::new(self.token.as_ref(), &self.token_file).get("token")?,
                )
                .header(
                    "X-User-Id",
                    SecretSource::new(self.token_id.as_ref(), &self.token_id_file)
                        .get("token_id")?,
                )
                .body(body.to_string());
            let answer = http.send(req).await?;
            super::check_ok_field(&answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "rocketchat",
            "rocketchat_configs:\n  - api_url: '{url}'\n    token: t0k3n\n    token_id: us3r\n    channel: '#alerts'\n    send_resolved: true\n",
            &[],
        )
        .await;
    }
}
