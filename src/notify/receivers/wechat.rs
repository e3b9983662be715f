//! `wechat_configs`: WeChat Work's message API: an access token from `gettoken` (kept until
//! the API says it expired), then `message/send`, as Alertmanager does.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    at_most_one, host_of, join_url, truncate, DeliveryError, Http, Integration, Msg, SecretSource,
};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::Secret;
use crate::notify::config::GlobalConfig;

/// WeChat Work's API.
pub const API_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/";
/// WeChat's "access token expired" error code.
const TOKEN_EXPIRED: i64 = 42001;

/// A `wechat_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whether to notify about resolved alerts (default false).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The HTTP client's settings.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// The application's secret (default `global.wechat_api_secret`).
    #[serde(default)]
    pub api_secret: Option<Secret>,
    /// A file holding the secret.
    #[serde(default)]
    pub api_secret_file: String,
    /// The corp id (default `global.wechat_api_corp_id`).
    #[serde(default)]
    pub corp_id: String,
    /// Message (template).
    #[serde(default)]
    pub message: Option<String>,
    /// The API's base (default `global.wechat_api_url`).
    #[serde(default)]
    pub api_url: String,
    /// Users (template).
    #[serde(default)]
    pub to_user: Option<String>,
    /// Parties (template).
    #[serde(default)]
    pub to_party: Option<String>,
    /// Tags (template).
    #[serde(default)]
    pub to_tag: Option<String>,
    /// The application's agent id (template).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// `text` (default) or `markdown`.
    #[serde(default)]
    pub message_type: Option<String>,
    /// The access token `gettoken` gave, kept until WeChat says it expired.
    #[serde(skip)]
    token_cache: Arc<Mutex<Option<String>>>,
}

impl Integration for Config {
    const KIND: &'static str = "wechat";
    const RESOLVED_BY_DEFAULT: bool = false;

    fn check(&mut self, g: &GlobalConfig) -> Result<(), String> {
        at_most_one(
            "api_secret",
            self.api_secret.is_some(),
            &self.api_secret_file,
        )?;
        super::inherit(
            &mut self.api_secret,
            &mut self.api_secret_file,
            &g.wechat_api_secret,
            &g.wechat_api_secret_file,
            "no global Wechat Api Secret set either inline or in a file",
        )?;
        if self.corp_id.is_empty() {
            if g.wechat_api_corp_id.is_empty() {
                return Err("no global Wechat CorpID set".into());
            }
            self.corp_id = g.wechat_api_corp_id.clone();
        }
        let t = self.message_type.get_or_insert_with(|| "text".into());
        if t != "text" && t != "markdown" {
            return Err(format!(
                "weChat message type {t:?} does not match valid options text,markdown"
            ));
        }
        if self.api_url.is_empty() {
            self.api_url = if g.wechat_api_url.is_empty() {
                API_URL.into()
            } else {
                g.wechat_api_url.clone()
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
            let t = |v: &Option<String>, d: &str| m.text(v.as_deref().unwrap_or(d));
            let (content, _) = truncate(
                &t(&c.message, r#"{{ template "wechat.default.message" . }}"#)?,
                2048,
            );
            let kind = c.message_type.clone().unwrap_or_else(|| "text".into());
            let mut body = json!({"msgtype": kind, "safe": "0"});
            body[kind.as_str()] = json!({"content": content});
            for (k, v, d) in [
                (
                    "touser",
                    &c.to_user,
                    r#"{{ template "wechat.default.to_user" . }}"#,
                ),
                (
                    "toparty",
                    &c.to_party,
                    r#"{{ template "wechat.default.to_party" . }}"#,
                ),
                (
                    "totag",
                    &c.to_tag,
                    r#"{{ template "wechat.default.to_tag" . }}"#,
                ),
                (
                    "agentid",
                    &c.agent_id,
                    r#"{{ template "wechat.default.agent_id" . }}"#,
                ),
            ] {
                let v = t(v, d)?;
                if !v.is_empty() {
                    body[k] = Value::String(v);
                }
            }
            let url = join_url(&c.api_url, "message/send");
            for attempt in 0..2 {
                let token = self.access_token(http).await?;
                let req = http
                    .request(
                        reqwest::Method::POST,
                        &format!(
                            "{url}?{}",
                            form_urlencoded::Serializer::new(String::new())
                                .append_pair("access_token", &token)
                                .finish()
                        ),
                    )?
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
                match errcode(&http.send(req).await?) {
                    Ok(_) => return Ok(()),
                    // An expired token is fetched again once.
                    Err(e)
                        if attempt == 0
                            && e.to_string().contains(&format!("errcode {TOKEN_EXPIRED}")) =>
                    {
                        *self.token_cache.lock() = None;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(DeliveryError::Refused("access token expired twice".into()))
        })
    }
}

/// WeChat's answer: `errcode` 0 is success.
fn errcode(body: &[u8]) -> Result<Value, DeliveryError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| DeliveryError::Refused(format!("unreadable answer: {e}")))?;
    match v.get("errcode").and_then(Value::as_i64).unwrap_or(0) {
        0 => Ok(v),
        code => Err(DeliveryError::Refused(format!(
            "errcode {code}: {}",
            v.get("errmsg").and_then(Value::as_str).unwrap_or("")
        ))),
    }
}

impl Config {
    async fn access_token(&self, http: &Http) -> Result<String, DeliveryError> {
        if let Some(t) = self.token_cache.lock().clone() {
            return Ok(t);
        }
        let url = join_url(&self.api_url, "gettoken");
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("corpid", &self.corp_id)
            .append_pair(
                "corpsecret",
                &SecretSource::new(self.api_secret.as_ref(), &self.api_secret_file)
                    .get("api_secret")?,
            )
            .finish();
        let req = http.request(reqwest::Method::GET, &format!("{url}?{query}"))?;
        let v = errcode(&http.send(req).await?)?;
        let t = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| DeliveryError::Refused("gettoken answered without access_token".into()))?
            .to_string();
        *self.token_cache.lock() = Some(t.clone());
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;

    #[tokio::test]
    async fn golden_requests() {
        testing::golden(
            "wechat",
            "wechat_configs:\n  - api_url: '{url}/cgi-bin/'\n    api_secret: S3CR3T\n    corp_id: corp1\n    to_user: '@all'\n    agent_id: '1000002'\n    send_resolved: true\n",
            &[
                ("GET", "/cgi-bin/gettoken", 200, r#"{"errcode":0,"access_token":"acc3ss"}"#),
                ("POST", "/cgi-bin/message/send", 200, r#"{"errcode":0,"errmsg":"ok"}"#),
            ],
        )
        .await;
    }
}
