//! `pushover_configs`: a Pushover message (form POST to the messages API): emergency
//! priority while firing by default, with retry and expiry, as Alertmanager sends it.

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{at_most_one, truncate, DeliveryError, Http, Integration, Msg, SecretSource};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::Secret;
use crate::model::time::Duration;
use crate::notify::config::GlobalConfig;

/// Pushover's messages API. Alertmanager has no setting for it; the environment variable
/// `APPLIANCE_PUSHOVER_API_URL` replaces it (a relay, or a test's recorder).
pub const API_URL: &str = "https://api.pushover.net/1/messages.json";

/// A `pushover_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The recipient's user key.
    #[serde(default)]
    pub user_key: Option<Secret>,
    /// A file holding the user key.
    #[serde(default)]
    pub user_key_file: String,
    /// The application's token.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding the token.
    #[serde(default)]
    pub token_file: String,
    /// Title (template).
    #[serde(default)]
    pub title: Option<String>,
    /// Message (template).
    #[serde(default)]
    pub message: Option<String>,
    /// Supplementary URL (template).
    #[serde(default)]
    pub url: Option<String>,
    /// Title of the URL (template).
    #[serde(default)]
    pub url_title: String,
    /// Device to send to (template).
    #[serde(default)]
    pub device: String,
    /// Sound (template).
    #[serde(default)]
    pub sound: String,
    /// Priority (template; default 2 while firing, 0 once resolved).
    #[serde(default)]
    pub priority: Option<String>,
    /// How often an emergency message is repeated (default 1m).
    #[serde(default)]
    pub retry: Option<Duration>,
    /// How long an emergency message is repeated (default 1h).
    #[serde(default)]
    pub expire: Option<Duration>,
    /// How long the message is kept on the device.
    #[serde(default)]
    pub ttl: Option<Duration>,
    /// The message is HTML.
    #[serde(default)]
    pub html: bool,
    /// The message is monospace.
    #[serde(default)]
    pub monospace: bool,
    /// Where messages go: Pushover's API, or `APPLIANCE_PUSHOVER_API_URL` (set when checked).
    #[serde(skip)]
    pub api_url: String,
}

impl Integration for Config {
    const KIND: &'static str = "pushover";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, _: &GlobalConfig) -> Result<(), String> {
        if self.user_key.is_none() && self.user_key_file.is_empty() {
            return Err("one of user_key or user_key_file must be configured".into());
        }
        at_most_one("user_key", self.user_key.is_some(), &self.user_key_file)?;
        if self.token.is_none() && self.token_file.is_empty() {
            return Err("one of token or token_file must be configured".into());
        }
        at_most_one("token", self.token.is_some(), &self.token_file)?;
        if self.html && self.monospace {
            return Err("at most one of monospace & html must be configured".into());
        }
        self.api_url = std::env::var("APPLIANCE_PUSHOVER_API_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| API_URL.into());
        Ok(())
    }

    common_settings!();

    fn target(&self) -> String {
        super::host_of(&self.api_url)
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
                &t(&c.title, r#"{{ template "pushover.default.title" . }}"#)?,
                250,
            );
            let (mut message, _) = truncate(
                &t(&c.message, r#"{{ template "pushover.default.message" . }}"#)?,
                1024,
            );
            if message.trim().is_empty() {
                message = "(no details)".into();
            }
            let (url, _) = truncate(
                &t(&c.url, r#"{{ template "pushover.default.url" . }}"#)?,
                512,
            );
            let mut form: Vec<(&str, String)> = vec![
                (
                    "token",
                    SecretSource::new(self.token.as_ref(), &self.token_file).get("token")?,
                ),
                (
                    "user",
                    SecretSource::new(self.user_key.as_ref(), &self.user_key_file)
                        .get("user_key")?,
                ),
                ("title", title),
                ("message", message),
                ("url", url),
                ("url_title", m.text(&c.url_title)?),
                (
                    "priority",
                    t(
                        &c.priority,
                        r#"{{ if eq .Status "firing" }}2{{ else }}0{{ end }}"#,
                    )?,
                ),
                ("retry", secs(c.retry, 60)),
                ("expire", secs(c.expire, 3600)),
                ("device", m.text(&c.device)?),
                ("sound", m.text(&c.sound)?),
            ];
            if let Some(ttl) = c.ttl.filter(|d| d.as_millis() > 0) {
                form.push(("ttl", secs(Some(ttl), 0)));
            }
            if c.html {
                form.push(("html", "1".into()));
            }
            if c.monospace {
                form.push(("monospace", "1".into()));
            }
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            let req = http
                .request(reqwest::Method::POST, &self.api_url)?
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body);
            http.send(req).await.map(|_| ())
        })
    }
}

fn secs(d: Option<Duration>, default: i64) -> String {
    d.map(|d| d.as_millis() / 1000)
        .unwrap_or(default)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        let rec = testing::Recorder::start(&[]).await;
        let (cfg, i) = testing::integration(
            "pushover_configs:\n  - user_key: US3R\n    token: T0K3N\n    sound: siren\n    retry: 30s\n",
            &rec.url,
        );
        let super::super::IntegrationConfig::Pushover(mut c) = i else {
            panic!("not pushover")
        };
        c.api_url = format!("{}/1/messages.json", rec.url);
        let b = super::super::Build {
            global: &cfg.global,
            templates: &cfg.template_set,
        };
        let r = super::super::IntegrationConfig::Pushover(c)
            .build(&b)
            .unwrap();
        testing::golden_receiver("pushover", &rec, r).await;
    }
}
