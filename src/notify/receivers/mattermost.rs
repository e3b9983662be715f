//! `mattermost_configs`: a Mattermost incoming-webhook post (text, channel, sender,
//! attachments and props passed through), as Alertmanager sends it.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::discord::webhook_target;
use super::{at_most_one, truncate, DeliveryError, Http, Integration, Msg, SecretSource};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::SecretUrl;
use crate::notify::config::GlobalConfig;

/// A field of an attachment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Title (template).
    #[serde(default)]
    pub title: String,
    /// Value (template).
    #[serde(default)]
    pub value: String,
    /// Shown side by side.
    #[serde(default)]
    pub short: Option<bool>,
}

/// A message attachment.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// Plain-text summary (template).
    #[serde(default)]
    pub fallback: String,
    /// Colour (template).
    #[serde(default)]
    pub color: String,
    /// Text above the attachment (template).
    #[serde(default)]
    pub pretext: String,
    /// Text (template).
    #[serde(default)]
    pub text: String,
    /// Author (template).
    #[serde(default)]
    pub author_name: String,
    /// Author link (template).
    #[serde(default)]
    pub author_link: String,
    /// Author icon (template).
    #[serde(default)]
    pub author_icon: String,
    /// Title (template).
    #[serde(default)]
    pub title: String,
    /// Title link (template).
    #[serde(default)]
    pub title_link: String,
    /// Fields.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// Thumbnail (template).
    #[serde(default)]
    pub thumb_url: String,
    /// Footer (template).
    #[serde(default)]
    pub footer: String,
    /// Footer icon (template).
    #[serde(default)]
    pub footer_icon: String,
    /// Image (template).
    #[serde(default)]
    pub image_url: String,
}

/// Message priority (Mattermost's `priority`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Priority {
    /// `urgent`, `important` or `standard` (template).
    #[serde(default)]
    pub priority: String,
    /// Ask for an acknowledgement (not with `standard`).
    #[serde(default)]
    pub requested_ack: bool,
    /// Repeat notifications (only with `urgent`).
    #[serde(default)]
    pub persistent_notifications: bool,
}

/// Post props.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Props {
    /// The post's card, markdown (template).
    #[serde(default)]
    pub card: String,
}

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
    /// Sender name (template; default `mattermost.default.username`).
    #[serde(default)]
    pub username: Option<String>,
    /// Text, markdown (template; default `mattermost.default.text`).
    #[serde(default)]
    pub text: Option<String>,
    /// Plain-text summary of the default attachment (template).
    #[serde(default)]
    pub fallback: Option<String>,
    /// Colour of the default attachment (template).
    #[serde(default)]
    pub color: Option<String>,
    /// Pretext of the default attachment (template).
    #[serde(default)]
    pub pretext: String,
    /// Author of the default attachment (template).
    #[serde(default)]
    pub author_name: String,
    /// Author link (template).
    #[serde(default)]
    pub author_link: String,
    /// Author icon (template).
    #[serde(default)]
    pub author_icon: String,
    /// Title of the default attachment (template).
    #[serde(default)]
    pub title: Option<String>,
    /// Title link of the default attachment (template).
    #[serde(default)]
    pub title_link: Option<String>,
    /// Fields of the default attachment.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// Thumbnail (template).
    #[serde(default)]
    pub thumb_url: String,
    /// Footer (template).
    #[serde(default)]
    pub footer: String,
    /// Footer icon (template).
    #[serde(default)]
    pub footer_icon: String,
    /// Image (template).
    #[serde(default)]
    pub image_url: String,
    /// Sender icon URL (template).
    #[serde(default)]
    pub icon_url: String,
    /// Sender icon emoji (template).
    #[serde(default)]
    pub icon_emoji: String,
    /// Attachments replacing the default one (the text then goes in the post).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Post type (template).
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Post props.
    #[serde(default)]
    pub props: Option<Props>,
    /// Post priority.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// The most characters of text a post takes.
const MAX_TEXT: usize = 16383;

impl Integration for Config {
    const KIND: &'static str = "mattermost";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        for f in self
            .fields
            .iter()
            .chain(self.attachments.iter().flat_map(|a| a.fields.iter()))
        {
            if f.title.is_empty() {
                return Err("missing title in Mattermost field configuration".into());
            }
            if f.value.is_empty() {
                return Err("missing value in Mattermost field configuration".into());
            }
        }
        at_most_one(
            "webhook_url",
            self.webhook_url.is_some(),
            &self.webhook_url_file,
        )?;
        super::inherit(
            &mut self.webhook_url,
            &mut self.webhook_url_file,
            &g.mattermost_webhook_url,
            &g.mattermost_webhook_url_file,
            "missing webhook_url or webhook_url_file on mattermost_config",
        )?;
        super::check_secret_url("webhook_url", &self.webhook_url)?;
        Ok(())
    }

    common_settings!();

    fn target(&self) -> String {
        let host = webhook_target(&self.webhook_url, &self.webhook_url_file);
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

fn put(o: &mut serde_json::Map<String, Value>, k: &str, v: String) {
    if !v.is_empty() {
        o.insert(k.into(), Value::String(v));
    }
}

fn fields(fs: &[Field], m: &Msg<'_>) -> Result<Vec<Value>, DeliveryError> {
    let mut out = Vec::new();
    for f in fs {
        let mut o = json!({"title": m.text(&f.title)?, "value": m.text(&f.value)?});
        if let Some(short) = f.short {
            o["short"] = json!(short);
        }
        out.push(o);
    }
    Ok(out)
}

/// One attachment from its templates.
fn attachment(a: &Attachment, text: String, m: &Msg<'_>) -> Result<Value, DeliveryError> {
    let mut o = serde_json::Map::new();
    put(&mut o, "fallback", m.text(&a.fallback)?);
    put(&mut o, "color", m.text(&a.color)?);
    put(&mut o, "pretext", m.text(&a.pretext)?);
    put(&mut o, "text", text);
    put(&mut o, "author_name", m.text(&a.author_name)?);
    put(&mut o, "author_link", m.text(&a.author_link)?);
    put(&mut o, "author_icon", m.text(&a.author_icon)?);
    put(&mut o, "title", m.text(&a.title)?);
    put(&mut o, "title_link", m.text(&a.title_link)?);
    if !a.fields.is_empty() {
        o.insert("fields".into(), Value::Array(fields(&a.fields, m)?));
    }
    put(&mut o, "thumb_url", m.text(&a.thumb_url)?);
    put(&mut o, "footer", m.text(&a.footer)?);
    put(&mut o, "footer_icon", m.text(&a.footer_icon)?);
    put(&mut o, "image_url", m.text(&a.image_url)?);
    Ok(Value::Object(o))
}

/// The post, as Alertmanager builds it: without `attachments`, one attachment holds the
/// text, title and colour; with them, the text goes in the post.
fn message(c: &Config, m: &Msg<'_>) -> Result<Value, DeliveryError> {
    let t = |v: &Option<String>, d: &str| m.text(v.as_deref().unwrap_or(d));
    let text = t(&c.text, r#"{{ template "mattermost.default.text" . }}"#)?;
    let mut req = serde_json::Map::new();
    put(&mut req, "channel", m.text(&c.channel)?);
    put(
        &mut req,
        "username",
        t(
            &c.username,
            r#"{{ template "mattermost.default.username" . }}"#,
        )?,
    );
    put(&mut req, "icon_url", m.text(&c.icon_url)?);
    put(&mut req, "icon_emoji", m.text(&c.icon_emoji)?);
    put(&mut req, "type", m.text(&c.kind)?);
    if c.attachments.is_empty() {
        let default = Attachment {
            fallback: c
                .fallback
                .clone()
                .unwrap_or_else(|| r#"{{ template "mattermost.default.fallback" . }}"#.into()),
            color: c
                .color
                .clone()
                .unwrap_or_else(|| r#"{{ template "mattermost.default.color" . }}"#.into()),
            pretext: c.pretext.clone(),
            text: String::new(),
            author_name: c.author_name.clone(),
            author_link: c.author_link.clone(),
            author_icon: c.author_icon.clone(),
            title: c
                .title
                .clone()
                .unwrap_or_else(|| r#"{{ template "mattermost.default.title" . }}"#.into()),
            title_link: c
                .title_link
                .clone()
                .unwrap_or_else(|| r#"{{ template "mattermost.default.titlelink" . }}"#.into()),
            fields: c.fields.clone(),
            thumb_url: c.thumb_url.clone(),
            footer: c.footer.clone(),
            footer_icon: c.footer_icon.clone(),
            image_url: c.image_url.clone(),
        };
        req.insert(
            "attachments".into(),
            json!([attachment(&default, text, m)?]),
        );
    } else {
        let mut list = Vec::new();
        for a in &c.attachments {
            let text = m.text(&a.text)?;
            list.push(attachment(a, text, m)?);
        }
        req.insert("attachments".into(), Value::Array(list));
        put(&mut req, "text", truncate(&text, MAX_TEXT).0);
    }
    if let Some(p) = c.props.as_ref().filter(|p| !p.card.is_empty()) {
        req.insert("props".into(), json!({"card": m.text(&p.card)?}));
    }
    if let Some(p) = c.priority.as_ref().filter(|p| !p.priority.is_empty()) {
        // Mattermost knows three priorities; an acknowledgement needs one above standard,
        // persistent notifications need urgent.
        let mut level = m.text(&p.priority)?.to_ascii_lowercase();
        if !["urgent", "important", "standard"].contains(&level.as_str()) {
            level = "standard".into();
        }
        let mut o = json!({"priority": level});
        if p.requested_ack && level != "standard" {
            o["requested_ack"] = json!(true);
        }
        if p.persistent_notifications && level == "urgent" {
            o["persistent_notifications"] = json!(true);
        }
        req.insert("priority".into(), o);
    }
    Ok(Value::Object(req))
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "mattermost",
            "mattermost_configs:\n  - webhook_url: '{url}/hooks/xyz'\n    channel: town-square\n    fields: [{title: Job, value: '{{ .CommonLabels.job }}', short: true}]\n    priority: {priority: Urgent, requested_ack: true}\n",
            &[],
        )
        .await;
    }
}
