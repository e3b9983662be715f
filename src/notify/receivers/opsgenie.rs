//! `opsgenie_configs`: Opsgenie's Alert API: create an alert (alias = the group) while
//! firing, close it by alias once resolved, and with `update_alerts` update its message and
//! description, as Alertmanager does.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    at_most_one, host_of, join_url, truncate, DeliveryError, Http, Integration, Msg, SecretSource,
};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::Secret;
use crate::notify::config::GlobalConfig;

/// Opsgenie's API.
pub const API_URL: &str = "https://api.opsgenie.com/";

/// Who is notified.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Responder {
    /// Id (template).
    #[serde(default)]
    pub id: String,
    /// Name (template).
    #[serde(default)]
    pub name: String,
    /// User name (template).
    #[serde(default)]
    pub username: String,
    /// `team`, `teams`, `user`, `escalation` or `schedule` (template).
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// An `opsgenie_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// API key (default `global.opsgenie_api_key`).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// A file holding the API key.
    #[serde(default)]
    pub api_key_file: String,
    /// The API's base (default `global.opsgenie_api_url`).
    #[serde(default)]
    pub api_url: String,
    /// Alert text, at most 130 characters (template).
    #[serde(default)]
    pub message: Option<String>,
    /// Description (template).
    #[serde(default)]
    pub description: Option<String>,
    /// Backlink (template).
    #[serde(default)]
    pub source: Option<String>,
    /// Extra details (templates), after the common labels.
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    /// Affected entity (template).
    #[serde(default)]
    pub entity: String,
    /// Who is notified.
    #[serde(default)]
    pub responders: Vec<Responder>,
    /// Actions, comma-separated (template).
    #[serde(default)]
    pub actions: String,
    /// Tags, comma-separated (template).
    #[serde(default)]
    pub tags: String,
    /// Note (template).
    #[serde(default)]
    pub note: String,
    /// `P1`–`P5` (template).
    #[serde(default)]
    pub priority: String,
    /// Also update message and description of an open alert.
    #[serde(default)]
    pub update_alerts: bool,
}

impl Integration for Config {
    const KIND: &'static str = "opsgenie";
    const RESOLVED_BY_DEFAULT: bool = true;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        at_most_one("api_key", self.api_key.is_some(), &self.api_key_file)?;
        super::inherit(
            &mut self.api_key,
            &mut self.api_key_file,
            &g.opsgenie_api_key,
            &g.opsgenie_api_key_file,
            "no global OpsGenie API Key set either inline or in a file",
        )?;
        for r in &self.responders {
            if r.id.is_empty() && r.username.is_empty() && r.name.is_empty() {
                return Err(format!("opsGenieConfig responder {r:?} has to have at least one of id, username or name specified"));
            }
            if !r.kind.contains("{{")
                && !["team", "teams", "user", "escalation", "schedule"]
                    .contains(&r.kind.to_ascii_lowercase().as_str())
            {
                return Err(format!("opsGenieConfig responder {r:?} type does not match valid options team,teams,user,escalation,schedule"));
            }
        }
        if self.api_url.is_empty() {
            self.api_url = if g.opsgenie_api_url.is_empty() {
                API_URL.into()
            } else {
                g.opsgenie_api_url.clone()
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
            let c = self;
            let alias = m.key_hash();
            let base = join_url(&c.api_url, "v2/alerts");
            if m.resolved() {
                let source = m.text(
                    c.source
                        .as_deref()
                        .unwrap_or(r#"{{ template "opsgenie.default.source" . }}"#),
                )?;
                let url = format!("{base}/{alias}/close?identifierType=alias");
                return self
                    .call(
                        http,
                        reqwest::Method::POST,
                        &url,
                        &json!({"source": source}),
                    )
                    .await;
            }
            let body = self.create(m, &alias)?;
            self.call(http, reqwest::Method::POST, &base, &body).await?;
            if c.update_alerts {
                self.call(
                    http,
                    reqwest::Method::PUT,
                    &format!("{base}/{alias}/message?identifierType=alias"),
                    &json!({"message": body["message"]}),
                )
                .await?;
                self.call(
                    http,
                    reqwest::Method::PUT,
                    &format!("{base}/{alias}/description?identifierType=alias"),
                    &json!({"description": body["description"]}),
                )
                .await?;
            }
            Ok(())
        })
    }
}

/// The comma-separated items of `s` (trimmed as a whole), without empty ones, as
/// Alertmanager's `safeSplit` gives them.
fn split(s: &str) -> Vec<String> {
    s.trim()
        .split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl Config {
    fn create(&self, m: &Msg<'_>, alias: &str) -> Result<Value, DeliveryError> {
        let c = self;
        let t = |v: &Option<String>, d: &str| m.text(v.as_deref().unwrap_or(d));
        let (message, _) = truncate(
            &t(&c.message, r#"{{ template "opsgenie.default.message" . }}"#)?,
            130,
        );
        let (description, _) = truncate(
            &t(
                &c.description,
                r#"{{ template "opsgenie.default.description" . }}"#,
            )?,
            15000,
        );
        let mut details: BTreeMap<String, String> = BTreeMap::new();
        let common = crate::notify::template::common_labels(m.n);
        details.extend(common);
        for (k, v) in &c.details {
            details.insert(k.clone(), m.text(v)?);
        }
        let mut responders = Vec::new();
        for r in &c.responders {
            let kind = m.text(&r.kind)?;
            if [&r.id, &r.name, &r.username].iter().all(|x| x.is_empty()) && kind.is_empty() {
                continue;
            }
            // `teams` names several teams at once, comma-separated.
            if kind == "teams" {
                for name in split(&m.text(&r.name)?) {
                    responders.push(json!({"name": name, "type": "team"}));
                }
                continue;
            }
            let mut o = serde_json::Map::new();
            for (k, v) in [("id", &r.id), ("name", &r.name), ("username", &r.username)] {
                let v = m.text(v)?;
                if !v.is_empty() {
                    o.insert(k.into(), Value::String(v));
                }
            }
            o.insert("type".into(), Value::String(kind));
            responders.push(Value::Object(o));
        }
        let mut body = json!({
            "alias": alias,
            "message": message,
            "details": details,
            "source": t(&c.source, r#"{{ template "opsgenie.default.source" . }}"#)?,
        });
        if !description.is_empty() {
            body["description"] = Value::String(description);
        }
        if !responders.is_empty() {
            body["responders"] = Value::Array(responders);
        }
        let tags = split(&m.text(&c.tags)?);
        if !tags.is_empty() {
            body["tags"] = json!(tags);
        }
        let actions = split(&m.text(&c.actions)?);
        if !actions.is_empty() {
            body["actions"] = json!(actions);
        }
        for (k, v) in [
            ("note", &c.note),
            ("priority", &c.priority),
            ("entity", &c.entity),
        ] {
            let v = m.text(v)?;
            if !v.is_empty() {
                body[k] = Value::String(v);
            }
        }
        Ok(body)
    }

    async fn call(
        &self,
        http: &Http,
        method: reqwest::Method,
        url: &str,
        body: &Value,
    ) -> Result<(), DeliveryError> {
        let req = http
            .request(method, url)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::AUTHORIZATION,
                format!(
                    "GenieKey {}",
                    SecretSource::new(self.api_key.as_ref(), &self.api_key_file).get("api_key")?
                ),
            )
            .body(body.to_string());
        http.send(req).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "opsgenie",
            "opsgenie_configs:\n  - api_url: '{url}/'\n    api_key: G3N13\n    tags: 'prod, {{ .CommonLabels.job }}'\n    priority: P2\n    responders: [{name: sre, type: team}, {name: 'db,web', type: teams}]\n    update_alerts: true\n",
            &[],
        )
        .await;
    }
}
