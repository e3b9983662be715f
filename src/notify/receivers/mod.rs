//! Alertmanager's integrations: one file per `*_configs` kind, each a typed config (read,
//! defaulted from `global` and checked once, when the configuration is loaded) and a
//! [`Receiver`] that builds the service's request from Alertmanager's template data.
//!
//! The list of integrations is `integrations!` below: adding one is a file (its config
//! and an [`Integration`] impl) plus a line there; the one [`Receiver`] implementation
//! delivers them all. This module owns the request shapes; it must not touch routing, grouping, the
//! notification log or retries (the notifier's), nor any other module's state.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::Digest;

use super::config::GlobalConfig;
use super::dispatch::Notification;
use super::template::Templates;
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::{Secret, SecretUrl};

/// The two settings every HTTP integration has and reads the same way: `send_resolved` and
/// `http_config` (expands to their [`Integration`] accessors).
macro_rules! common_settings {
    () => {
        fn send_resolved(&self) -> Option<bool> {
            self.send_resolved
        }

        fn http_config(&self) -> Option<&crate::model::httpconf::HttpClientConfig> {
            self.http_config.as_ref()
        }
    };
}

pub mod discord;
pub mod email;
pub mod incidentio;
pub mod jira;
pub mod mattermost;
pub mod msteams;
pub mod msteamsv2;
pub mod opsgenie;
pub mod pagerduty;
pub mod pushover;
pub mod rocketchat;
pub mod slack;
pub mod sns;
pub mod telegram;
pub mod victorops;
pub mod webex;
pub mod webhook;
pub mod wechat;

/// What every delivery needs besides the notification.
#[derive(Clone, Debug)]
pub struct DeliveryContext {
    /// The appliance's external URL (`.ExternalURL` in templates).
    pub external_url: String,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The request could not be made or got no answer.
    #[error("request failed: {0}")]
    Request(String),
    /// The service answered with a status other than 2xx; `body` is the start of its answer
    /// (services say why there: Slack's `invalid_token`, …), never a secret of ours.
    #[error("unexpected status code {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The service answered 2xx but said it refused (Slack's and Telegram's `ok: false`,
    /// WeChat's `errcode`).
    #[error("refused by the service: {0}")]
    Refused(String),
    /// A template failed, a secret file is unreadable, or an address is unusable.
    #[error("{0}")]
    Setup(String),
}

impl DeliveryError {
    /// Whether trying again soon may help, as Alertmanager's retrier decides: a request that
    /// got no answer, a 5xx or a 429 (rate limited). Any other 4xx, a refusal in the answer
    /// or a broken template or secret file will fail the same way until someone fixes it;
    /// the group still tries again at its next interval.
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Request(_) => true,
            DeliveryError::Status { status, .. } => *status == 429 || *status >= 500,
            DeliveryError::Refused(_) | DeliveryError::Setup(_) => false,
        }
    }
}

/// One way of delivering a notification (webhook, Slack, …).
pub trait Receiver: Send + Sync {
    /// Kind, for metrics and history (`webhook`, `slack`).
    fn kind(&self) -> &'static str;
    /// To whom it delivers, for the history, without secrets (addresses, a channel, a host).
    fn target(&self) -> String;
    /// Whether resolved alerts are sent.
    fn send_resolved(&self) -> bool;
    /// Delivers once.
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        ctx: &'a DeliveryContext,
    ) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// What building a receiver needs from the rest of the configuration.
pub struct Build<'a> {
    /// `global`, for the default HTTP settings.
    pub global: &'a GlobalConfig,
    /// Built-in templates plus the `templates:` files.
    pub templates: &'a Templates,
}

/// One `*_configs` kind: its typed settings, checked once, and how it sends a notification.
/// Every kind is delivered by the one [`Receiver`] implementation in this module.
pub trait Integration: DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The kind, as in `<kind>_configs`.
    const KIND: &'static str;
    /// Alertmanager's default for `send_resolved`.
    const RESOLVED_BY_DEFAULT: bool;
    /// Fills defaults from `global` and applies Alertmanager's checks (its messages).
    fn check(&mut self, global: &GlobalConfig) -> Result<(), String>;
    /// `send_resolved` as configured.
    fn send_resolved(&self) -> Option<bool>;
    /// Its own `http_config` (`None`: the global one).
    fn http_config(&self) -> Option<&HttpClientConfig>;
    /// How long one request may take.
    fn timeout(&self) -> std::time::Duration {
        TIMEOUT
    }
    /// To whom it delivers, for the history: a host, a channel, addresses; never a secret.
    fn target(&self) -> String;
    /// Sends the notification `m` once.
    fn send<'a>(
        &'a self,
        http: &'a Http,
        m: &'a Msg<'a>,
    ) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// A checked integration with its HTTP client (built when the configuration is checked, so a
/// bad TLS file is a config error) and the configuration's templates.
struct Built<C> {
    cfg: C,
    http: Http,
    templates: Templates,
}

impl<C: Integration> Receiver for Built<C> {
    fn kind(&self) -> &'static str {
        C::KIND
    }
    fn target(&self) -> String {
        self.cfg.target()
    }
    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved().unwrap_or(C::RESOLVED_BY_DEFAULT)
    }
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        ctx: &'a DeliveryContext,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let m = Msg::new(n, ctx, &self.templates);
            self.cfg.send(&self.http, &m).await
        })
    }
}

/// The receiver for `c`.
fn build<C: Integration>(c: &C, b: &Build<'_>) -> Result<Arc<dyn Receiver>, String> {
    Ok(Arc::new(Built {
        http: Http::new(c.http_config(), b, c.timeout())?,
        cfg: c.clone(),
        templates: b.templates.clone(),
    }))
}

macro_rules! integrations {
    ($($variant:ident => $module:ident),* $(,)?) => {
        /// One integration of a receiver, typed: a `*_configs` entry after defaults and checks.
        #[derive(Clone, Debug)]
        pub enum IntegrationConfig {
            $(
                #[doc = concat!("`", stringify!($module), "_configs`")]
                $variant($module::Config),
            )*
        }

        impl IntegrationConfig {
            /// The kind (`slack`, `email`, …).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$module::Config as Integration>::KIND,)*
                }
            }

            /// The receiver that delivers it.
            pub fn build(&self, b: &Build<'_>) -> Result<Arc<dyn Receiver>, String> {
                match self {
                    $(Self::$variant(c) => build(c, b),)*
                }
            }
        }

        /// Every kind, as `<kind>_configs`.
        pub const KEYS: &[&str] = &[$(concat!(stringify!($module), "_configs")),*];

        /// Reads the list under `key` (`slack_configs`, …); `None` if the key is not an
        /// integration Alertmanager knows.
        pub fn parse_list(
            key: &str,
            list: &Value,
            global: &GlobalConfig,
        ) -> Option<Result<Vec<IntegrationConfig>, String>> {
            $(
                if key == concat!(stringify!($module), "_configs") {
                    return Some(typed::<$module::Config>(list, global)
                        .map(|v| v.into_iter().map(IntegrationConfig::$variant).collect()));
                }
            )*
            None
        }
    };
}

integrations! {
    Discord => discord,
    Email => email,
    Incidentio => incidentio,
    Jira => jira,
    Mattermost => mattermost,
    Msteams => msteams,
    Msteamsv2 => msteamsv2,
    Opsgenie => opsgenie,
    Pagerduty => pagerduty,
    Pushover => pushover,
    Rocketchat => rocketchat,
    Slack => slack,
    Sns => sns,
    Telegram => telegram,
    Victorops => victorops,
    Webex => webex,
    Webhook => webhook,
    Wechat => wechat,
}

/// `null` means "not set" in Alertmanager's YAML; serde's typed fields want it absent.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn typed<C: Integration>(list: &Value, global: &GlobalConfig) -> Result<Vec<C>, String> {
    let items = match list {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err("must be a list".into()),
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut item = item.clone();
        strip_nulls(&mut item);
        let mut c: C = serde_json::from_value(item).map_err(|e| format!("[{i}]: {e}"))?;
        c.check(global).map_err(|e| format!("[{i}]: {e}"))?;
        out.push(c);
    }
    Ok(out)
}

// ----- shared by the integrations -----

/// A notification being rendered: Alertmanager's template data and the configured templates.
pub struct Msg<'a> {
    /// The notification.
    pub n: &'a Notification,
    /// Evaluation time (ms): which alerts count as resolved.
    pub now: i64,
    /// `.ExternalURL`.
    pub external_url: &'a str,
    templates: &'a Templates,
}

impl<'a> Msg<'a> {
    /// The notification as of now.
    pub fn new(n: &'a Notification, ctx: &'a DeliveryContext, templates: &'a Templates) -> Self {
        Msg {
            n,
            now: chrono::Utc::now().timestamp_millis(),
            external_url: &ctx.external_url,
            templates,
        }
    }

    /// Expands a template field (a field without `{{` is returned as it is).
    pub fn text(&self, t: &str) -> Result<String, DeliveryError> {
        self.templates
            .expand(t, self.n, self.now, self.external_url)
            .map_err(|e| DeliveryError::Setup(e.to_string()))
    }

    /// Expands a template field with its data escaped for HTML (Go's `html/template`).
    pub fn html(&self, t: &str) -> Result<String, DeliveryError> {
        self.templates
            .expand_html(t, self.n, self.now, self.external_url)
            .map_err(|e| DeliveryError::Setup(e.to_string()))
    }

    /// Alertmanager's `DeepCopyWithTemplate`: every string in `v` (keys too) is expanded,
    /// and a result that reads as YAML of another kind (a number, a list, a map, `null`)
    /// becomes that value, so `{{ .Alerts.Firing | toJson }}` gives structured JSON.
    pub fn deep(&self, v: &Value) -> Result<Value, DeliveryError> {
        Ok(match v {
            Value::String(t) => {
                let out = self.text(t)?;
                match serde_saphyr::from_str::<Value>(&out) {
                    Ok(Value::String(_)) | Err(_) => Value::String(out),
                    Ok(other) => other,
                }
            }
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.deep(x)).collect::<Result<_, _>>()?)
            }
            Value::Object(o) => {
                let mut out = serde_json::Map::new();
                for (k, x) in o {
                    out.insert(self.text(k)?, self.deep(x)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// The same message for another notification (a part of this one).
    pub fn with<'b>(&self, n: &'b Notification) -> Msg<'b>
    where
        'a: 'b,
    {
        Msg {
            n,
            now: self.now,
            external_url: self.external_url,
            templates: self.templates,
        }
    }

    /// Whether the group is resolved (every alert in it).
    pub fn resolved(&self) -> bool {
        self.n.status == "resolved"
    }

    /// Alertmanager's key for the group at a service (dedup key, alias, entity id): the
    /// SHA-256 of the group key, hex.
    pub fn key_hash(&self) -> String {
        hex(&sha2::Sha256::digest(self.n.group_key.as_bytes()))
    }

    /// How many alerts of the group fire.
    pub fn num_firing(&self) -> usize {
        self.n
            .alerts
            .iter()
            .filter(|a| !a.resolved(self.now))
            .count()
    }

    /// How many alerts of the group are resolved.
    pub fn num_resolved(&self) -> usize {
        self.n.alerts.len() - self.num_firing()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `s` cut to at most `n` characters, ending in `…` when cut (Alertmanager's
/// `notify.TruncateInRunes`), and whether it was cut.
pub fn truncate(s: &str, n: usize) -> (String, bool) {
    if s.chars().count() <= n {
        return (s.to_string(), false);
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    (out, true)
}

/// A secret given inline or as a file (read at every delivery, so rotation needs no
/// reload), as the integrations' `x` / `x_file` pairs are.
#[derive(Clone, Debug, Default)]
pub struct SecretSource {
    inline: Option<String>,
    file: String,
}

impl SecretSource {
    /// From an inline secret and a file path (either may be empty).
    pub fn new(inline: Option<&Secret>, file: &str) -> Self {
        SecretSource {
            inline: inline
                .map(|s| s.expose().to_string())
                .filter(|s| !s.is_empty()),
            file: file.to_string(),
        }
    }

    /// From an inline URL and a file path.
    pub fn url(inline: Option<&SecretUrl>, file: &str) -> Self {
        SecretSource {
            inline: inline
                .map(|s| s.expose().to_string())
                .filter(|s| !s.is_empty()),
            file: file.to_string(),
        }
    }

    /// `self`, or `fallback` when neither inline nor file is set.
    pub fn or(self, fallback: SecretSource) -> Self {
        if self.is_set() {
            self
        } else {
            fallback
        }
    }

    /// Whether a value or a file is given.
    pub fn is_set(&self) -> bool {
        self.inline.is_some() || !self.file.is_empty()
    }

    /// The secret now.
    pub fn get(&self, what: &str) -> Result<String, DeliveryError> {
        if let Some(s) = &self.inline {
            return Ok(s.clone());
        }
        if self.file.is_empty() {
            return Err(DeliveryError::Setup(format!("no {what} configured")));
        }
        std::fs::read_to_string(&self.file)
            .map(|s| s.trim().to_string())
            .map_err(|e| DeliveryError::Setup(format!("reading {what} file {:?}: {e}", self.file)))
    }
}

/// A secret and its file, or else the global pair; `missing` is Alertmanager's message when
/// neither is set.
pub fn inherit<T: Clone>(
    own: &mut Option<T>,
    own_file: &mut String,
    global: &Option<T>,
    global_file: &str,
    missing: &str,
) -> Result<(), String> {
    if own.is_none() && own_file.is_empty() {
        if global.is_none() && global_file.is_empty() {
            return Err(missing.to_string());
        }
        *own = global.clone();
        *own_file = global_file.to_string();
    }
    Ok(())
}

/// Alertmanager's URL check: `http` or `https` with a host (a template is checked when it
/// is expanded). `field` names it in the message; the URL itself is not shown (it may hold a
/// token).
pub fn check_url(field: &str, u: &str) -> Result<(), String> {
    if u.contains("{{") {
        return Ok(());
    }
    let parsed = url::Url::parse(u).map_err(|e| format!("{field}: {e}"))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(format!(
            "{field}: unsupported scheme {:?} for URL",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{field}: host is missing in URL"));
    }
    Ok(())
}

/// [`check_url`] for an optional secret URL.
pub fn check_secret_url(field: &str, u: &Option<SecretUrl>) -> Result<(), String> {
    match u {
        Some(u) if !u.is_empty() => check_url(field, u.expose()),
        _ => Ok(()),
    }
}

/// Alertmanager's "at most one of x & x_file" check.
pub fn at_most_one(name: &str, inline: bool, file: &str) -> Result<(), String> {
    if inline && !file.is_empty() {
        return Err(format!(
            "at most one of {name} & {name}_file must be configured"
        ));
    }
    Ok(())
}

/// `scheme://host` of a URL: where a delivery went, without the path that may hold a token.
pub fn host_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            format!("{scheme}://{}", host.rsplit('@').next().unwrap_or(host))
        }
        None => "<url>".into(),
    }
}

/// `base` joined with `path` as Go's `url.ResolveReference` does for the services' API URLs
/// (`https://api.opsgenie.com/` + `v2/alerts`).
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// The most of a response body kept in an error.
const BODY_IN_ERROR: usize = 512;

/// An integration's HTTP client: `http_config` (its own, else `global.http_config`).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    cfg: HttpClientConfig,
}

impl Http {
    /// The client for `own` or the global settings, with `timeout` per request.
    pub fn new(
        own: Option<&HttpClientConfig>,
        b: &Build<'_>,
        timeout: std::time::Duration,
    ) -> Result<Http, String> {
        let cfg = own
            .or(b.global.http_config.as_ref())
            .cloned()
            .unwrap_or_default();
        let client = cfg
            .client(timeout)
            .map_err(|e| format!("http_config: {e}"))?;
        Ok(Http { client, cfg })
    }

    /// The settings in force.
    pub fn config(&self) -> &HttpClientConfig {
        &self.cfg
    }

    /// A request with the configured credentials and headers.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, DeliveryError> {
        self.cfg
            .authorize(self.client.request(method, url))
            .map_err(DeliveryError::Setup)
    }

    /// Sends `req`; a non-2xx answer is an error carrying the start of the body.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, DeliveryError> {
        let resp = req.send().await.map_err(request_error)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(request_error)?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        Err(DeliveryError::Status {
            status: status.as_u16(),
            body: body_excerpt(&body),
        })
    }

    /// POSTs `body` as JSON to `url`.
    pub async fn post_json(&self, url: &str, body: &Value) -> Result<Vec<u8>, DeliveryError> {
        let req = self
            .request(reqwest::Method::POST, url)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(req).await
    }
}

/// A request error with its causes ("error sending request: client error (Connect):
/// tcp connect error: Connection refused"), without the URL, which may hold a token.
fn request_error(e: reqwest::Error) -> DeliveryError {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    DeliveryError::Request(msg)
}

/// The start of a response body, printable, for an error message, with what looks like a
/// credential hidden (a service may echo the request): URLs lose userinfo and secret query
/// parameters, `key=value` secrets and Slack-style tokens (`xoxb-…`) become `<secret>`.
pub fn body_excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let (cut, _) = truncate(s.trim(), BODY_IN_ERROR);
    cut.split_inclusive(char::is_whitespace)
        .map(|w| {
            let word = w.trim_end();
            let space = &w[word.len()..];
            let token = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            let hidden = if token.len() > 8
                && ["xoxb-", "xoxp-", "xoxa-", "xapp-"]
                    .iter()
                    .any(|p| token.starts_with(p))
            {
                word.replace(token, crate::model::secret::REDACTED)
            } else {
                crate::model::secret::redact_url(word).into_owned()
            };
            format!("{hidden}{space}")
        })
        .collect()
}

/// The default per-request timeout, as Alertmanager's clients have none but a stuck service
/// must not hold a delivery forever.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A JSON answer with `ok: false` (Slack's Web API, Telegram) or `success: false`
/// (Rocket.Chat) is a refusal.
pub fn check_ok_field(body: &[u8]) -> Result<(), DeliveryError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if v.get("ok") == Some(&Value::Bool(false)) || v.get("success") == Some(&Value::Bool(false))
        {
            let why = v
                .get("error")
                .or_else(|| v.get("description"))
                .and_then(Value::as_str)
                .unwrap_or("ok: false");
            return Err(DeliveryError::Refused(why.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::testing;

    fn built(yaml: &str, url: &str) -> std::sync::Arc<dyn super::Receiver> {
        let (cfg, i) = testing::integration(yaml, url);
        i.build(&super::Build {
            global: &cfg.global,
            templates: &cfg.template_set,
        })
        .unwrap()
    }

    fn ctx() -> super::DeliveryContext {
        super::DeliveryContext {
            external_url: "http://x".into(),
        }
    }

    #[tokio::test]
    async fn file_secrets_are_read_at_each_delivery() {
        let rec = testing::Recorder::start(&[]).await;
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("url");
        let pw_file = dir.path().join("pw");
        std::fs::write(&url_file, format!("{}/first\n", rec.url)).unwrap();
        std::fs::write(&pw_file, "one\n").unwrap();
        let r = built(
            &format!(
                "webhook_configs:\n  - url_file: '{}'\n    http_config: {{basic_auth: {{username: u, password_file: '{}'}}}}\n",
                url_file.display(),
                pw_file.display()
            ),
            &rec.url,
        );
        r.deliver(&testing::notification(false), &ctx())
            .await
            .unwrap();
        std::fs::write(&url_file, format!("{}/second", rec.url)).unwrap();
        std::fs::write(&pw_file, "two").unwrap();
        r.deliver(&testing::notification(false), &ctx())
            .await
            .unwrap();
        let got = rec.take();
        let auth = |i: usize| {
            got[i]
                .headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        use base64::Engine;
        let basic = |p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("u:{p}"))
            )
        };
        assert_eq!((got[0].path.as_str(), auth(0)), ("/first", basic("one")));
        assert_eq!((got[1].path.as_str(), auth(1)), ("/second", basic("two")));
        // A file that is gone fails the delivery with its name, and no secret.
        std::fs::remove_file(&url_file).unwrap();
        let e = r
            .deliver(&testing::notification(false), &ctx())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("url file"), "{e}");
    }

    #[tokio::test]
    async fn http_config_proxy_and_headers_apply() {
        // The recorder stands in for the proxy: the target name cannot resolve, so the
        // request only arrives if it went through the proxy.
        let proxy = testing::Recorder::start(&[]).await;
        let r = built(
            "discord_configs:\n  - webhook_url: 'http://discord.invalid/api/webhooks/1/t'\n    http_config:\n      proxy_url: '{url}'\n      http_headers: {X-Tenant: {values: [ops]}}\n",
            &proxy.url,
        );
        r.deliver(&testing::notification(false), &ctx())
            .await
            .unwrap();
        let got = proxy.take();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/api/webhooks/1/t");
        assert!(got[0]
            .headers
            .iter()
            .any(|(k, v)| k == "x-tenant" && v == "ops"));
        assert!(got[0]
            .headers
            .iter()
            .any(|(k, v)| k == "host" && v == "discord.invalid"));
    }

    #[test]
    fn an_unreadable_ca_file_is_a_config_error() {
        let e = crate::notify::config::NotifySection(
            serde_saphyr::from_str(
                "route: {receiver: a}\nreceivers: [{name: a, msteams_configs: [{webhook_url: 'https://x.example/', http_config: {tls_config: {ca_file: /nonexistent/ca.pem}}}]}]\n",
            )
            .unwrap(),
        )
        .load(std::path::Path::new("."))
        .unwrap_err();
        assert!(e.0.contains("ca.pem"), "{e}");
        assert!(e.0.contains("msteams_configs[0]"), "{e}");
    }

    #[test]
    fn response_bodies_in_errors_are_bounded_and_hide_credentials() {
        let e = super::body_excerpt(
            b"invalid_auth: token xoxb-1234-5678-abcdef rejected for https://bot:hunter2@hooks.example/x?token=abc123 password=pw1",
        );
        for leak in ["1234-5678", "hunter2", "abc123", "pw1"] {
            assert!(!e.contains(leak), "{leak} in {e}");
        }
        assert!(e.starts_with("invalid_auth: token"), "{e}");
        let long = "x".repeat(10_000);
        assert!(super::body_excerpt(long.as_bytes()).chars().count() <= 512);
    }

    #[tokio::test]
    async fn a_refused_connection_says_why_without_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = built(
            "webhook_configs:\n  - url: 'http://127.0.0.1:{url}/hook/s3cr3t'\n",
            &port.to_string(),
        );
        let e = r
            .deliver(&testing::notification(false), &ctx())
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.to_lowercase().contains("refused"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
        assert!(e.retryable());
    }

    #[test]
    fn urls_are_checked_as_alertmanager_does() {
        let check = |receiver: &str| {
            crate::notify::config::parse(&format!(
                "route: {{receiver: a}}\nreceivers: [{{name: a, {receiver}}}]\n"
            ))
            .map(|_| ())
            .map_err(|e| e.0)
        };
        let e = check("slack_configs: [{api_url: 'not a url'}]").unwrap_err();
        assert!(e.contains("api_url"), "{e}");
        assert!(!e.contains("not a url"), "the URL may hold a token: {e}");
        let e = check("jira_configs: [{api_url: 'ftp://jira.example/rest/api/2', project: P, issue_type: Bug}]")
            .unwrap_err();
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = check("webhook_configs: [{url: 'http://'}]").unwrap_err();
        assert!(e.contains("url"), "{e}");
        check("webhook_configs: [{url: 'http://hooks.example/{{ .GroupLabels.alertname }}'}]")
            .unwrap();
        let e = crate::notify::config::parse(
            "global: {opsgenie_api_url: 'opsgenie'}\nroute: {receiver: a}\nreceivers: [{name: a}]\n",
        )
        .unwrap_err();
        assert!(e.0.contains("global.opsgenie_api_url"), "{e}");
    }

    #[test]
    fn deep_templates_turn_yaml_results_into_values() {
        let n = testing::notification(false);
        let t = crate::notify::template::Templates::default();
        let c = ctx();
        let m = super::Msg::new(&n, &c, &t);
        let v = m
            .deep(&serde_json::json!({"n": "{{ len .Alerts }}", "s": "{{ .CommonLabels.job }}", "l": "[a, b]", "e": ""}))
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"n": 2, "s": "api", "l": ["a", "b"], "e": null})
        );
    }
}
