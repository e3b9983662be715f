//! `incidentio_configs`: incident.io's HTTP alert source, which takes Alertmanager's webhook
//! message with the source's token as a bearer credential.

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{at_most_one, DeliveryError, Http, Integration, Msg, SecretSource};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::{Secret, SecretUrl};
use crate::model::time::Duration;
use crate::notify::config::GlobalConfig;

/// An `incidentio_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The alert source's URL.
    #[serde(default)]
    pub url: Option<SecretUrl>,
    /// A file holding the URL.
    #[serde(default)]
    pub url_file: String,
    /// The alert source's token.
    #[serde(default)]
    pub alert_source_token: Option<Secret>,
    /// A file holding the token.
    #[serde(default)]
    pub alert_source_token_file: String,
    /// The most alerts one message carries; 0 is all.
    #[serde(default)]
    pub max_alerts: u64,
    /// How long a request may take.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl Integration for Config {
    const KIND: &'static str = "incidentio";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        let inline = self.url.as_ref().is_some_and(|u| !u.is_empty());
        if !inline && self.url_file.is_empty() {
            return Err("one of url or url_file must be configured".into());
        }
        at_most_one("url", inline, &self.url_file)?;
        at_most_one(
            "alert_source_token",
            self.alert_source_token.is_some(),
            &self.alert_source_token_file,
        )?;
        let http_auth = self
            .http_config
            .as_ref()
            .or(g.http_config.as_ref())
            .is_some_and(|h| h.has_authorization());
        let token = self.alert_source_token.is_some() || !self.alert_source_token_file.is_empty();
        if token && http_auth {
            return Err("at most one of alert_source_token/alert_source_token_file & http_config.authorization must be configured".into());
        }
        if !token && !http_auth {
            return Err(
                "one of alert_source_token or alert_source_token_file must be configured".into(),
            );
        }
        super::check_secret_url("url", &self.url)?;
        Ok(())
    }

    common_settings!();

    fn target(&self) -> String {
        super::webhook::url_target(&self.url, &self.url_file)
    }

    fn timeout(&self) -> std::time::Duration {
        super::webhook::timeout(self.timeout)
    }

    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let body = super::webhook::payload(m.n, m.now, m.external_url, self.max_alerts);
            let url = SecretSource::url(self.url.as_ref(), &self.url_file).get("url")?;
            let token = SecretSource::new(
                self.alert_source_token.as_ref(),
                &self.alert_source_token_file,
            );
            let mut req = http
                .request(reqwest::Method::POST, &url)?
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            if token.is_set() {
                req = req.header(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {}", token.get("alert_source_token")?),
                );
            }
            http.send(req).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "incidentio",
            "incidentio_configs:\n  - url: '{url}/v2/alert_events/http/01ABC'\n    alert_source_token: s0urce\n",
            &[],
        )
        .await;
    }
}
