//! The `notify:` section: an Alertmanager configuration (`global`, `route`, `receivers`,
//! `inhibit_rules`, `time_intervals`, `mute_time_intervals`, `templates`), read as
//! Alertmanager reads it and refused for the same reasons with the same words.
//!
//! Receiver integrations are kept as their YAML values (checked against each integration's
//! known keys and rules); the receivers module turns the ones it implements into senders.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::receivers::IntegrationConfig;
use super::route::{matchers_of, Route};
use crate::model::httpconf::HttpClientConfig;
use crate::model::secret::{Secret, SecretUrl};
use crate::model::Matcher;

/// Why a notify configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotifyConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, NotifyConfigError> {
    Err(NotifyConfigError(msg.into()))
}

/// A named receiver with its integrations.
#[derive(Clone, Debug)]
pub struct Receiver {
    /// Name, unique.
    pub name: String,
    /// Integrations in file order.
    pub integrations: Vec<IntegrationConfig>,
}

/// An inhibition rule.
#[derive(Clone, Debug)]
pub struct InhibitRule {
    /// Alerts matching these mute…
    pub source: Vec<Matcher>,
    /// …alerts matching these…
    pub target: Vec<Matcher>,
    /// …when these labels are equal on both.
    pub equal: Vec<String>,
}

/// A parsed, checked Alertmanager configuration.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// `global`, typed.
    pub global: GlobalConfig,
    /// The routing tree.
    pub route: Route,
    /// Receivers.
    pub receivers: Vec<Receiver>,
    /// Inhibition rules.
    pub inhibit_rules: Vec<InhibitRule>,
    /// Named time intervals (`time_intervals` and the older `mute_time_intervals`).
    pub time_intervals: BTreeMap<String, Vec<super::timeinterval::TimeInterval>>,
    /// Template file globs.
    pub templates: Vec<String>,
    /// The configuration as read (for the status API, redacted there).
    pub raw: Value,
    /// Built-in templates plus the `templates:` files.
    pub template_set: super::template::Templates,
}

const TOP_KEYS: &[&str] = &[
    "global",
    "route",
    "receivers",
    "inhibit_rules",
    "time_intervals",
    "mute_time_intervals",
    "templates",
    "tracing",
];

fn five_minutes() -> crate::model::time::Duration {
    crate::model::time::Duration::from_millis(5 * 60 * 1000)
}

/// `global`: defaults for every receiver, as Alertmanager 0.34 reads them.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// How long an alert posted without `endsAt` stays firing (default 5m).
    #[serde(default = "five_minutes")]
    pub resolve_timeout: crate::model::time::Duration,
    /// The HTTP settings of every integration without its own `http_config`.
    #[serde(default)]
    pub http_config: Option<HttpClientConfig>,
    /// Default e-mail sender.
    #[serde(default)]
    pub smtp_from: String,
    /// Name sent in SMTP HELO/EHLO (default `localhost`).
    #[serde(default)]
    pub smtp_hello: String,
    /// Default SMTP server, `host:port`.
    #[serde(default)]
    pub smtp_smarthost: String,
    /// SMTP user.
    #[serde(default)]
    pub smtp_auth_username: String,
    /// SMTP password (PLAIN/LOGIN).
    #[serde(default)]
    pub smtp_auth_password: Option<Secret>,
    /// File holding the SMTP password.
    #[serde(default)]
    pub smtp_auth_password_file: String,
    /// SMTP CRAM-MD5 secret.
    #[serde(default)]
    pub smtp_auth_secret: Option<Secret>,
    /// File holding the CRAM-MD5 secret.
    #[serde(default)]
    pub smtp_auth_secret_file: String,
    /// SMTP PLAIN identity.
    #[serde(default)]
    pub smtp_auth_identity: String,
    /// Require STARTTLS (default true).
    #[serde(default)]
    pub smtp_require_tls: Option<bool>,
    /// TLS settings for SMTP.
    #[serde(default)]
    pub smtp_tls_config: Option<crate::model::httpconf::TlsConfig>,
    /// Use implicit TLS (SMTPS) whatever the port.
    #[serde(default)]
    pub smtp_force_implicit_tls: Option<bool>,
    /// Default Slack webhook URL.
    #[serde(default)]
    pub slack_api_url: Option<SecretUrl>,
    /// File holding the Slack webhook URL.
    #[serde(default)]
    pub slack_api_url_file: String,
    /// Default Slack bot token.
    #[serde(default)]
    pub slack_app_token: Option<Secret>,
    /// File holding the Slack bot token.
    #[serde(default)]
    pub slack_app_token_file: String,
    /// Slack Web API URL for bot tokens (default `https://slack.com/api/chat.postMessage`).
    #[serde(default)]
    pub slack_app_url: String,
    /// Default VictorOps API key.
    #[serde(default)]
    pub victorops_api_key: Option<Secret>,
    /// File holding the VictorOps API key.
    #[serde(default)]
    pub victorops_api_key_file: String,
    /// VictorOps REST endpoint.
    #[serde(default)]
    pub victorops_api_url: String,
    /// PagerDuty events URL.
    #[serde(default)]
    pub pagerduty_url: String,
    /// Default Opsgenie API key.
    #[serde(default)]
    pub opsgenie_api_key: Option<Secret>,
    /// File holding the Opsgenie API key.
    #[serde(default)]
    pub opsgenie_api_key_file: String,
    /// Opsgenie API URL.
    #[serde(default)]
    pub opsgenie_api_url: String,
    /// WeChat API URL.
    #[serde(default)]
    pub wechat_api_url: String,
    /// WeChat API secret.
    #[serde(default)]
    pub wechat_api_secret: Option<Secret>,
    /// File holding the WeChat API secret.
    #[serde(default)]
    pub wechat_api_secret_file: String,
    /// WeChat corp id.
    #[serde(default)]
    pub wechat_api_corp_id: String,
    /// Telegram API URL.
    #[serde(default)]
    pub telegram_api_url: String,
    /// Default Telegram bot token.
    #[serde(default)]
    pub telegram_bot_token: Option<Secret>,
    /// File holding the Telegram bot token.
    #[serde(default)]
    pub telegram_bot_token_file: String,
    /// Webex API URL.
    #[serde(default)]
    pub webex_api_url: String,
    /// Rocket.Chat API URL.
    #[serde(default)]
    pub rocketchat_api_url: String,
    /// Default Rocket.Chat token.
    #[serde(default)]
    pub rocketchat_token: Option<Secret>,
    /// File holding the Rocket.Chat token.
    #[serde(default)]
    pub rocketchat_token_file: String,
    /// Default Rocket.Chat token id.
    #[serde(default)]
    pub rocketchat_token_id: Option<Secret>,
    /// File holding the Rocket.Chat token id.
    #[serde(default)]
    pub rocketchat_token_id_file: String,
    /// Default Mattermost webhook URL.
    #[serde(default)]
    pub mattermost_webhook_url: Option<SecretUrl>,
    /// File holding the Mattermost webhook URL.
    #[serde(default)]
    pub mattermost_webhook_url_file: String,
    /// Jira API URL.
    #[serde(default)]
    pub jira_api_url: String,
}

impl GlobalConfig {
    /// Reads `global` (null or absent: every default).
    fn from_value(v: &Value) -> Result<GlobalConfig, NotifyConfigError> {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.retain(|_, x| !x.is_null());
        }
        if v.is_null() {
            v = Value::Object(Default::default());
        }
        let mut g: GlobalConfig = serde_json::from_value(v)
            .map_err(|e| NotifyConfigError(format!("global: {}", unknown_field(&e.to_string()))))?;
        if g.smtp_hello.is_empty() {
            g.smtp_hello = "localhost".into();
        }
        if let Some(h) = &g.http_config {
            h.validate()
                .map_err(|e| NotifyConfigError(format!("global.http_config: {e}")))?;
        }
        let urls = [
            ("slack_app_url", g.slack_app_url.as_str()),
            ("victorops_api_url", &g.victorops_api_url),
            ("pagerduty_url", &g.pagerduty_url),
            ("opsgenie_api_url", &g.opsgenie_api_url),
            ("wechat_api_url", &g.wechat_api_url),
            ("telegram_api_url", &g.telegram_api_url),
            ("webex_api_url", &g.webex_api_url),
            ("rocketchat_api_url", &g.rocketchat_api_url),
            ("jira_api_url", &g.jira_api_url),
        ];
        for (k, u) in urls.into_iter().filter(|(_, u)| !u.is_empty()) {
            super::receivers::check_url(&format!("global.{k}"), u).map_err(NotifyConfigError)?;
        }
        for (k, u) in [
            ("slack_api_url", &g.slack_api_url),
            ("mattermost_webhook_url", &g.mattermost_webhook_url),
        ] {
            super::receivers::check_secret_url(&format!("global.{k}"), u)
                .map_err(NotifyConfigError)?;
        }
        Ok(g)
    }
}

/// serde's "unknown field `x`, expected one of …" in Alertmanager's words.
fn unknown_field(e: &str) -> String {
    match e
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
    {
        Some((f, _)) => format!("field {f} not found in type config.plain"),
        None => e.to_string(),
    }
}

fn set(v: &Value, key: &str) -> bool {
    match v.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The `notify:` section of the appliance config: an Alertmanager configuration inline, or
/// `{config_file: path}` naming an `alertmanager.yml`. Serializes with every secret replaced
/// by `<secret>`, so `/api/v1/status/config` never shows one.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(transparent)]
pub struct NotifySection(pub Value);

impl serde::Serialize for NotifySection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        redacted(&self.0).serialize(s)
    }
}

/// Whether a key holds a secret in Alertmanager's config (its `Secret`/`SecretURL` fields).
fn secret_key(k: &str) -> bool {
    k.ends_with("password")
        || k.ends_with("secret")
        || k.contains("token")
        || k.ends_with("_key")
        || k.ends_with("service_key")
        || k.ends_with("routing_key")
        || k.ends_with("user_key")
        || k.ends_with("webhook_url")
        || k == "slack_api_url"
        || k == "api_url"
        || k == "url"
        || k == "credentials"
        || k == "key"
}

/// `<secret>`, or for a URL its scheme and host with the rest hidden: tools that read the
/// configuration back (amtool 0.25 checks webhook URLs) still find a valid URL, and tokens
/// in paths and queries stay hidden.
fn mask(v: &str) -> String {
    match v.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/<secret>")
        }
        _ => "<secret>".into(),
    }
}

/// A copy of `v` with secret values replaced by `<secret>` (file paths are kept). Header
/// values (`headers` of e-mail, `http_headers` of `http_config`) are all hidden, since any of
/// them may carry a credential; any other URL keeps its host but not its userinfo or secret
/// query parameters (`proxy_url: http://user:<secret>@proxy:3128`).
pub fn redacted(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let hidden = secret_key(k) && !k.ends_with("_file") && !x.is_null();
                    let x = if k == "headers" || k == "http_headers" {
                        hide_leaves(x)
                    } else if hidden && !x.is_object() && !x.is_array() {
                        Value::String(mask(x.as_str().unwrap_or("")))
                    } else {
                        redacted(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redacted).collect()),
        Value::String(s) => Value::String(crate::model::secret::redact_url(s).into_owned()),
        other => other.clone(),
    }
}

/// `v` with every string below its keys replaced by `<secret>` (header names stay).
fn hide_leaves(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if k.ends_with("_file") || k == "files" {
                        x.clone()
                    } else {
                        hide_leaves(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(hide_leaves).collect()),
        Value::String(_) => Value::String(crate::model::secret::REDACTED.into()),
        other => other.clone(),
    }
}

impl NotifySection {
    /// The Alertmanager configuration it names: inline, or read from `config_file`
    /// (relative to `base`).
    pub fn load(&self, base: &std::path::Path) -> Result<Option<NotifyConfig>, NotifyConfigError> {
        match &self.0 {
            Value::Null => Ok(None),
            Value::Object(m) if m.len() == 1 && m.contains_key("config_file") => {
                let Some(f) = m.get("config_file").and_then(Value::as_str) else {
                    return err("notify.config_file must be a path");
                };
                let path = base.join(f);
                let text = crate::model::files::read_config_file(&path)
                    .map_err(|e| NotifyConfigError(format!("{}: {e}", path.display())))?;
                let mut c = parse(&text)
                    .map_err(|e| NotifyConfigError(format!("{}: {e}", path.display())))?;
                let dir = path.parent().unwrap_or(base);
                c.template_set = super::template::Templates::load(&c.templates, dir)
                    .map_err(|e| NotifyConfigError(format!("{}: {e}", path.display())))?;
                super::notifier::build_receivers(&c)
                    .map_err(|e| NotifyConfigError(format!("{}: {e}", path.display())))?;
                Ok(Some(c))
            }
            v => {
                let mut c = from_value(v).map_err(|e| NotifyConfigError(format!("notify: {e}")))?;
                c.template_set = super::template::Templates::load(&c.templates, base)
                    .map_err(|e| NotifyConfigError(format!("notify: {e}")))?;
                super::notifier::build_receivers(&c)
                    .map_err(|e| NotifyConfigError(format!("notify: {e}")))?;
                Ok(Some(c))
            }
        }
    }
}

/// The inhibition rules of the configuration [`from_env`] builds (and of the packaged
/// config's `notify:` example): one service outage is one message. The default rules give
/// `TargetDown` and `ProbeFailed` an `address` label (`host:port` of the target, of the
/// probed URL), so a scrape target that is down mutes the failing probe of the same address.
pub const DEFAULT_INHIBIT_RULES: &str = "
- source_matchers: ['alertname=\"TargetDown\"']
  target_matchers: ['alertname=\"ProbeFailed\"']
  equal: [address]
- source_matchers: ['severity=\"critical\"']
  target_matchers: ['severity=\"warning\"']
  equal: [alertname, job, instance]
";

/// The environment variables [`from_env`] reads, for messages that tell the user what to set.
pub const ENV_HINT: &str = "set SLACK_WEBHOOK_URL (and/or ALERT_EMAIL with SMTP_SMARTHOST, SMTP_FROM, SMTP_USERNAME, SMTP_PASSWORD), or add a notify: section";

/// The notification config a host without a `notify` section gets from its environment, as
/// the plan's `.env` sets it: `SLACK_WEBHOOK_URL` (with optional `SLACK_CHANNEL`) and/or
/// `ALERT_EMAIL` with `SMTP_SMARTHOST` (`host:port`), `SMTP_FROM`, optional `SMTP_USERNAME`,
/// `SMTP_PASSWORD` and `SMTP_REQUIRE_TLS` (default true). One receiver, grouped by alert
/// name and job, resolved messages on. `None` when neither Slack nor e-mail is set.
pub fn from_env(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<NotifyConfig>, NotifyConfigError> {
    let var = |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut receiver = serde_json::Map::new();
    receiver.insert("name".into(), Value::String("default".into()));
    if let Some(url) = var("SLACK_WEBHOOK_URL") {
        let mut slack = serde_json::json!({"api_url": url, "send_resolved": true});
        if let Some(ch) = var("SLACK_CHANNEL") {
            slack["channel"] = Value::String(ch);
        }
        receiver.insert("slack_configs".into(), Value::Array(vec![slack]));
    }
    if let Some(to) = var("ALERT_EMAIL") {
        let Some(smarthost) = var("SMTP_SMARTHOST") else {
            return err(
                "ALERT_EMAIL is set but SMTP_SMARTHOST (host:port of the mail server) is not",
            );
        };
        let from = var("SMTP_FROM").unwrap_or_else(|| format!("appliance@{}", host_of(&smarthost)));
        let mut email = serde_json::json!({
            "to": to,
            "from": from,
            "smarthost": smarthost,
            "send_resolved": true,
        });
        if let Some(u) = var("SMTP_USERNAME") {
            email["auth_username"] = Value::String(u);
        }
        if let Some(p) = var("SMTP_PASSWORD") {
            email["auth_password"] = Value::String(p);
        }
        if let Some(t) = var("SMTP_REQUIRE_TLS") {
            let b = match t.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return err(format!("SMTP_REQUIRE_TLS must be true or false, not {t:?}")),
            };
            email["require_tls"] = Value::Bool(b);
        }
        receiver.insert("email_configs".into(), Value::Array(vec![email]));
    }
    if receiver.len() == 1 {
        return Ok(None);
    }
    let inhibit: Value = serde_saphyr::from_str(DEFAULT_INHIBIT_RULES)
        .map_err(|e| NotifyConfigError(format!("default inhibit rules: {e}")))?;
    let v = serde_json::json!({
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "job"],
            "group_wait": "10s",
            "group_interval": "1m",
            "repeat_interval": "4h",
        },
        "receivers": [Value::Object(receiver)],
        "inhibit_rules": inhibit,
    });
    from_value(&v)
        .map(Some)
        .map_err(|e| NotifyConfigError(format!("from the environment: {}", e.0)))
}

fn host_of(smarthost: &str) -> &str {
    smarthost.rsplit_once(':').map_or(smarthost, |(h, _)| h)
}

/// Parses Alertmanager configuration YAML text.
pub fn parse(text: &str) -> Result<NotifyConfig, NotifyConfigError> {
    let v: Value = serde_saphyr::from_str(text)
        .map_err(|e| NotifyConfigError(crate::model::yaml::first_line(&e.to_string())))?;
    from_value(&v)
}

/// Checks and converts an Alertmanager configuration already read as a value.
pub fn from_value(v: &Value) -> Result<NotifyConfig, NotifyConfigError> {
    let Value::Object(top) = v else {
        return err("configuration must be a mapping");
    };
    for k in top.keys() {
        if !TOP_KEYS.contains(&k.as_str()) {
            return err(format!("field {k} not found in type config.plain"));
        }
    }
    check_global(v.get("global").unwrap_or(&Value::Null))?;
    let global = GlobalConfig::from_value(v.get("global").unwrap_or(&Value::Null))?;
    let Some(route_v) = v.get("route").filter(|r| !r.is_null()) else {
        return err("no route provided in config");
    };
    let route = Route::parse_root(route_v).map_err(|e| NotifyConfigError(e.0))?;
    let mut receivers = Vec::new();
    let mut names = HashSet::new();
    for r in v
        .get("receivers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let rec = receiver(r, &global)?;
        if !names.insert(rec.name.clone()) {
            return err(format!(
                "notification config name {:?} is not unique",
                rec.name
            ));
        }
        receivers.push(rec);
    }
    for name in route.receivers() {
        if !names.contains(name) {
            return err(format!("undefined receiver {name:?} used in route"));
        }
    }
    let mut time_intervals = BTreeMap::new();
    for key in ["time_intervals", "mute_time_intervals"] {
        for ti in v.get(key).and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = ti.get("name").and_then(Value::as_str) else {
                return err(format!("missing name in {key}"));
            };
            let parsed = super::timeinterval::parse_named(ti)
                .map_err(|e| NotifyConfigError(format!("{key} {name:?}: {e}")))?;
            if time_intervals.insert(name.to_string(), parsed).is_some() {
                return err(format!("time interval {name:?} is not unique"));
            }
        }
    }
    for name in route.time_intervals() {
        if !time_intervals.contains_key(name) {
            return err(format!("undefined time interval {name:?} used in route"));
        }
    }
    let mut inhibit_rules = Vec::new();
    for r in v
        .get("inhibit_rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        inhibit_rules.push(InhibitRule {
            source: matchers_of(r, "source_").map_err(|e| NotifyConfigError(e.0))?,
            target: matchers_of(r, "target_").map_err(|e| NotifyConfigError(e.0))?,
            equal: strings(r.get("equal")),
        });
    }
    Ok(NotifyConfig {
        global,
        route,
        receivers,
        inhibit_rules,
        time_intervals,
        templates: strings(v.get("templates")),
        raw: v.clone(),
        template_set: Default::default(),
    })
}

/// Alertmanager's checks of `global`: a secret and its `_file` form are exclusive.
fn check_global(g: &Value) -> Result<(), NotifyConfigError> {
    for key in [
        "smtp_auth_password",
        "slack_api_url",
        "slack_app_token",
        "opsgenie_api_key",
        "wechat_api_secret",
        "victorops_api_key",
        "telegram_bot_token",
        "rocketchat_token",
        "rocketchat_token_id",
        "mattermost_webhook_url",
    ] {
        if set(g, key) && set(g, &format!("{key}_file")) {
            return err(format!(
                "at most one of {key} & {key}_file must be configured"
            ));
        }
    }
    // Pointing `slack_api_url` at chat.postMessage was the way to use a bot token before
    // `slack_app_token` existed; Alertmanager still accepts that pair.
    let app_url = g
        .get("slack_app_url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .unwrap_or(super::receivers::slack::APP_URL)
        .trim_end_matches('/');
    let webhook_url = g
        .get("slack_api_url")
        .and_then(Value::as_str)
        .is_some_and(|u| !u.is_empty() && u.trim_end_matches('/') != app_url);
    if (set(g, "slack_app_token") || set(g, "slack_app_token_file"))
        && (webhook_url || set(g, "slack_api_url_file"))
    {
        return err("at most one of slack_app_token/slack_app_token_file & slack_api_url/slack_api_url_file must be configured");
    }
    Ok(())
}

fn receiver(r: &Value, g: &GlobalConfig) -> Result<Receiver, NotifyConfigError> {
    let Value::Object(map) = r else {
        return err("receiver must be a mapping");
    };
    let Some(name) = r
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return err("missing name in receiver");
    };
    let mut integrations = Vec::new();
    for (k, list) in map {
        if k == "name" {
            continue;
        }
        match super::receivers::parse_list(k, list, g) {
            Some(Ok(v)) => integrations.extend(v),
            Some(Err(e)) => {
                let e = match e.split_once("]: ") {
                    Some((i, rest)) => format!("{i}]: {}", unknown_field(rest)),
                    None => e,
                };
                return err(format!("receiver {name:?}: {k}{e}"));
            }
            None => return err(format!("field {k} not found in type config.plain")),
        }
    }
    Ok(Receiver {
        name: name.to_string(),
        integrations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn one_outage_is_one_message_with_the_default_inhibit_rules() {
        let c = from_env(env(&[(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T/B/X",
        )]))
        .unwrap()
        .unwrap();
        let alert = |pairs: &[(&str, &str)]| super::super::dispatch::Alert {
            labels: crate::model::Labels::from_pairs(pairs.iter().copied()),
            annotations: Default::default(),
            starts_at: 0,
            ends_at: 3_600_000,
            generator_url: String::new(),
        };
        let down = alert(&[
            ("alertname", "TargetDown"),
            ("job", "api-gateway"),
            ("instance", "gw:8000"),
            ("address", "gw:8000"),
            ("severity", "critical"),
        ]);
        let probe = alert(&[
            ("alertname", "ProbeFailed"),
            ("job", "blackbox"),
            ("instance", "http://gw:8000/health"),
            ("address", "gw:8000"),
            ("severity", "critical"),
        ]);
        let other = alert(&[
            ("alertname", "ProbeFailed"),
            ("job", "blackbox"),
            ("instance", "http://db:9000/health"),
            ("address", "db:9000"),
            ("severity", "critical"),
        ]);
        let all = [down.clone(), probe.clone(), other.clone()];
        let muted = |a: &super::super::dispatch::Alert| {
            super::super::dispatch::inhibited(&c.inhibit_rules, all.iter(), a, 0)
        };
        assert!(muted(&probe));
        assert!(!muted(&down));
        assert!(!muted(&other), "another service's probe still alerts");
    }

    #[test]
    fn the_packaged_example_carries_the_default_inhibit_rules() {
        let text = include_str!("../../packaging/deb/appliance.yml");
        let example: String = text
            .lines()
            .skip_while(|l| l.trim_end() != "# notify:")
            .skip(1)
            .take_while(|l| l.starts_with("#  "))
            .map(|l| format!("{}\n", &l[1..]))
            .collect();
        let packaged =
            parse(&example.replace("${SLACK_WEBHOOK_URL}", "https://hooks.slack.com/x")).unwrap();
        let env = from_env(env(&[(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T/B/X",
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(packaged.inhibit_rules.len(), 2, "{example}");
        assert_eq!(
            format!("{:?}", packaged.inhibit_rules),
            format!("{:?}", env.inhibit_rules)
        );
    }

    #[test]
    fn the_environment_chooses_slack_and_email() {
        assert!(from_env(env(&[])).unwrap().is_none());
        assert!(from_env(env(&[("SLACK_WEBHOOK_URL", "  ")]))
            .unwrap()
            .is_none());
        let c = from_env(env(&[(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T/B/X",
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(c.route.receiver, "default");
        let r = &c.receivers[0];
        assert_eq!(r.integrations.len(), 1);
        let IntegrationConfig::Slack(slack) = &r.integrations[0] else {
            panic!("{:?}", r.integrations[0])
        };
        assert_eq!(
            slack.api_url.as_ref().map(|u| u.expose()),
            Some("https://hooks.slack.com/services/T/B/X")
        );
        assert_eq!(slack.send_resolved, Some(true));

        let c = from_env(env(&[
            (
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T/B/X",
            ),
            ("SLACK_CHANNEL", "#ops"),
            ("ALERT_EMAIL", "ops@example.com"),
            ("SMTP_SMARTHOST", "mail.example.com:587"),
            ("SMTP_USERNAME", "u"),
            ("SMTP_PASSWORD", "p"),
            ("SMTP_REQUIRE_TLS", "false"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.receivers[0].integrations.len(), 2);
        for i in &c.receivers[0].integrations {
            match i {
                IntegrationConfig::Email(mail) => {
                    assert_eq!(mail.to, "ops@example.com");
                    assert_eq!(mail.from, "appliance@mail.example.com");
                    assert_eq!(mail.auth_password.as_ref().map(|p| p.expose()), Some("p"));
                    assert_eq!(mail.require_tls, Some(false));
                }
                IntegrationConfig::Slack(slack) => assert_eq!(slack.channel, "#ops"),
                other => panic!("{other:?}"),
            }
        }

        // E-mail without a server, or a bad flag, is a clear error naming the variable.
        let e = from_env(env(&[("ALERT_EMAIL", "ops@example.com")])).unwrap_err();
        assert!(e.0.contains("SMTP_SMARTHOST"), "{}", e.0);
        let e = from_env(env(&[
            ("ALERT_EMAIL", "ops@example.com"),
            ("SMTP_SMARTHOST", "m:25"),
            ("SMTP_REQUIRE_TLS", "maybe"),
        ]))
        .unwrap_err();
        assert!(e.0.contains("SMTP_REQUIRE_TLS"), "{}", e.0);
    }

    #[test]
    fn alertmanager_config_fixtures() {
        let Some(dir) = crate::testsupport::shared_testdata("alertmanager/config-testdata") else {
            return;
        };
        let good = [
            "conf.good.yml",
            "conf.empty-fields.yml",
            "conf.group-by-all.yml",
            "conf.http-config.good.yml",
            "conf.mattermost-default-webhook-url.yml",
            "conf.mattermost-default-webhook-url-file.yml",
            "conf.opsgenie-default-apikey.yml",
            "conf.opsgenie-default-apikey-file.yml",
            "conf.rocketchat-default-token.yml",
            "conf.rocketchat-default-token-file.yml",
            "conf.slack-default-api-url-file.yml",
            "conf.slack-default-app-token.yml",
            "conf.smtp-no-username-or-password.yml",
            "conf.smtp-password-global-and-local.yml",
            "conf.sns-topic-arn.yml",
            "conf.telegram-default-bot-token.yml",
            "conf.telegram-default-bot-token-file.yml",
            "conf.victorops-default-apikey.yml",
            "conf.victorops-default-apikey-file.yml",
            "conf.wechat-default-api-secret-file.yml",
        ];
        let load = |f: &str| parse(&std::fs::read_to_string(dir.join(f)).unwrap());
        for f in good {
            if let Err(e) = load(f) {
                panic!("{f}: {e}");
            }
        }
        let mattermost = "at most one of mattermost_webhook_url & mattermost_webhook_url_file must be configured";
        let telegram =
            "at most one of telegram_bot_token & telegram_bot_token_file must be configured";
        let bad = [
            ("conf.mattermost-both-webhook-url-and-file.yml", mattermost),
            ("conf.mattermost-valid-receiver-both-webhook-url-and-file.yml", mattermost),
            ("conf.mattermost-no-webhook-url.yml", "missing webhook_url or webhook_url_file on mattermost_config"),
            ("conf.opsgenie-both-file-and-apikey.yml", "at most one of opsgenie_api_key & opsgenie_api_key_file must be configured"),
            ("conf.opsgenie-no-apikey.yml", "no global OpsGenie API Key set either inline or in a file"),
            ("conf.opsgenie-default-apikey-old-team.yml", "teams"),
            ("conf.rocketchat-both-token-and-tokenfile.yml", "at most one of rocketchat_token & rocketchat_token_file must be configured"),
            ("conf.rocketchat-both-tokenid-and-tokenidfile.yml", "at most one of rocketchat_token_id & rocketchat_token_id_file must be configured"),
            ("conf.rocketchat-no-token.yml", "no global Rocketchat Token set either inline or in a file"),
            ("conf.slack-both-file-and-token.yml", "at most one of slack_app_token & slack_app_token_file must be configured"),
            ("conf.slack-both-file-and-url.yml", "at most one of slack_api_url & slack_api_url_file must be configured"),
            ("conf.slack-both-url-and-token.yml", "at most one of slack_app_token/slack_app_token_file & slack_api_url/slack_api_url_file must be configured"),
            ("conf.slack-no-api-url-or-token.yml", "no Slack API URL nor App token set either inline or in a file"),
            ("conf.slack-update-message-and-webhook.yml", "update_message can only be used with bot tokens"),
            ("conf.smtp-both-password-and-file.yml", "at most one of smtp_auth_password & smtp_auth_password_file must be configured"),
            ("conf.sns-invalid.yml", "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config"),
            ("conf.telegram-both-bot-token-and-file.yml", telegram),
            ("conf.telegram-valid-receiver-both-bot-token-and-file.yml", telegram),
            ("conf.telegram-no-bot-token.yml", "missing bot_token or bot_token_file on telegram_config"),
            ("conf.victorops-both-file-and-apikey.yml", "at most one of victorops_api_key & victorops_api_key_file must be configured"),
            ("conf.victorops-no-apikey.yml", "no global VictorOps API Key set"),
            ("conf.wechat-both-file-and-secret.yml", "at most one of wechat_api_secret & wechat_api_secret_file must be configured"),
            ("conf.wechat-no-api-secret.yml", "no global Wechat Api Secret set either inline or in a file"),
            ("conf.nil-match_re-route.yml", "invalid_label"),
            ("conf.nil-source_match_re-inhibition.yml", "invalid_source_label"),
            ("conf.nil-target_match_re-inhibition.yml", "invalid_target_label"),
        ];
        for (f, want) in bad {
            match load(f) {
                Ok(_) => panic!("{f}: accepted"),
                Err(e) => assert!(e.0.contains(want), "{f}: {e}"),
            }
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let v: Value = serde_saphyr::from_str("global:\n  slack_api_url: https://hooks.slack.com/services/T/B/X\n  smtp_auth_password: hunter2\n  smtp_auth_password_file: /run/pw\nreceivers:\n  - name: a\n    webhook_configs:\n      - url: http://hook/secret\n    pagerduty_configs:\n      - routing_key: abc\n    sns_configs:\n      - sigv4: {access_key: AKID, secret_key: wJalrXUt}\n").unwrap();
        let y = serde_saphyr::to_string(&NotifySection(v)).unwrap();
        for leak in [
            "services/T/B/X",
            "hunter2",
            "hook/secret",
            "abc",
            "wJalrXUt",
        ] {
            assert!(!y.contains(leak), "{leak} in {y}");
        }
        assert!(y.contains("/run/pw") && y.contains("<secret>"), "{y}");
    }

    #[test]
    fn amtool_check_config_fixtures() {
        let Some(dir) = crate::testsupport::shared_testdata("alertmanager") else {
            return;
        };
        for f in [
            "cli-testdata/conf.good.yml",
            "doc-examples/simple.yml",
            "examples-ha/alertmanager.yml",
        ] {
            if let Err(e) = parse(&std::fs::read_to_string(dir.join(f)).unwrap()) {
                panic!("{f}: {e}");
            }
        }
        assert!(
            parse(&std::fs::read_to_string(dir.join("cli-testdata/conf.bad.yml")).unwrap())
                .is_err()
        );
    }
}
