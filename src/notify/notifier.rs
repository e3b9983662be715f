//! The notifier at run time: takes alerts from the rules (through the `AlertSink` app.rs
//! plugs in), runs the dispatcher on a timer, and delivers each notification to every
//! integration of its receiver through the one [`Receiver`] trait, with retries and
//! exponential backoff. Every delivery's outcome is kept in a bounded history (served by the
//! API) and counted in `appliance_notifications_*`. A failing integration never delays the
//! others: each delivery runs in its own task.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use futures_util::future::BoxFuture;
use md5::Digest;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde_json::{json, Value};

use super::config::NotifyConfig;
use super::dispatch::{Alert, Dispatcher, Notification};

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

/// What every delivery needs besides the notification.
#[derive(Clone)]
pub struct DeliveryContext {
    /// HTTP client (rustls), built by app.rs.
    pub http: reqwest::Client,
    /// The appliance's external URL.
    pub external_url: String,
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

fn rfc3339(ms: i64) -> String {
    if ms == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        crate::model::time::format_rfc3339(ms)
    }
}

fn labels_obj(l: &crate::model::Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|x| (x.name.clone(), x.value.clone()))
        .collect()
}

/// Labels (or annotations) every alert of the notification shares.
fn common<'a>(
    maps: impl Iterator<Item = BTreeMap<String, String>> + 'a,
) -> BTreeMap<String, String> {
    let mut it = maps;
    let Some(mut acc) = it.next() else {
        return BTreeMap::new();
    };
    for m in it {
        acc.retain(|k, v| m.get(k) == Some(v));
    }
    acc
}

/// Alertmanager's webhook payload, version 4.
pub fn webhook_payload(n: &Notification, now: i64, external_url: &str) -> Value {
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": if a.resolved(now) { "resolved" } else { "firing" },
                "labels": labels_obj(&a.labels),
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(a.ends_at),
                "generatorURL": a.generator_url,
                "fingerprint": format!("{:016x}", a.fingerprint()),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common(n.alerts.iter().map(|a| labels_obj(&a.labels))),
        "commonAnnotations": common(n.alerts.iter().map(|a| a.annotations.clone())),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

/// `scheme://host/…` of a URL: where a delivery went, without the path that may hold a token.
fn host_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            format!("{scheme}://{}", host.rsplit('@').next().unwrap_or(host))
        }
        None => "<url>".into(),
    }
}

/// Slack's incoming-webhook message for a notification: one attachment with a title like
/// Alertmanager's, each alert's summary/description and labels, and a colour by status.
pub fn slack_payload(n: &Notification, now: i64, channel: &str, external_url: &str) -> Value {
    let firing = n.alerts.iter().filter(|a| !a.resolved(now)).count();
    let group: Vec<&str> = n.group_labels.values().map(String::as_str).collect();
    let common_labels = common(n.alerts.iter().map(|a| labels_obj(&a.labels)));
    let mut title = format!(
        "[{}{}] {}",
        n.status.to_uppercase(),
        if n.status == "firing" {
            format!(":{firing}")
        } else {
            String::new()
        },
        if group.is_empty() {
            common_labels.get("alertname").cloned().unwrap_or_default()
        } else {
            group.join(" ")
        }
    );
    let extra: Vec<&str> = common_labels
        .iter()
        .filter(|(k, _)| !n.group_labels.contains_key(*k))
        .map(|(_, v)| v.as_str())
        .collect();
    if !extra.is_empty() {
        title.push_str(&format!(" ({})", extra.join(" ")));
    }
    let mut text = String::new();
    for a in &n.alerts {
        let state = if a.resolved(now) {
            "RESOLVED"
        } else {
            "FIRING"
        };
        let summary = a
            .annotations
            .get("summary")
            .cloned()
            .unwrap_or_else(|| a.labels.get("alertname").unwrap_or("").to_string());
        text.push_str(&format!("*{state}* {summary}\n"));
        if let Some(d) = a.annotations.get("description") {
            text.push_str(&format!("{d}\n"));
        }
        let labels: Vec<String> = a
            .labels
            .iter()
            .map(|l| format!("`{}={}`", l.name, l.value))
            .collect();
        text.push_str(&labels.join(" "));
        text.push('\n');
    }
    let mut msg = json!({
        "attachments": [{
            "title": title,
            "title_link": external_url,
            "text": text.trim_end(),
            "fallback": title,
            "color": if n.status == "firing" { "danger" } else { "good" },
            "mrkdwn_in": ["fallback", "pretext", "text"],
        }],
    });
    if !channel.is_empty() {
        msg["channel"] = json!(channel);
    }
    msg
}

/// E-mail through SMTP (`email_configs`), STARTTLS or implicit TLS, with optional auth.
pub struct Email {
    to: Vec<String>,
    from: String,
    smarthost: String,
    hello: String,
    auth: Option<(String, String)>,
    require_tls: bool,
    implicit_tls: bool,
    send_resolved: bool,
    settings: Value,
    templates: super::template::Templates,
}

/// Subject and plain-text body of a notification (shared by e-mail and chat messages).
pub fn subject_and_text(n: &Notification, now: i64) -> (String, String) {
    let v = slack_payload(n, now, "", "");
    let a = &v["attachments"][0];
    (
        a["title"].as_str().unwrap_or("").to_string(),
        a["text"].as_str().unwrap_or("").replace(['*', '`'], ""),
    )
}

fn html_body(text: &str, external_url: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let lines: Vec<String> = text.lines().map(|l| format!("<p>{}</p>", esc(l))).collect();
    format!(
        "<html><body>{}<p><a href=\"{}\">{}</a></p></body></html>",
        lines.join(""),
        esc(external_url),
        esc(external_url)
    )
}

impl Receiver for Email {
    fn kind(&self) -> &'static str {
        "email"
    }
    fn target(&self) -> String {
        self.to.join(", ")
    }
    fn send_resolved(&self) -> bool {
        self.send_resolved
    }
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        ctx: &'a DeliveryContext,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        use lettre::message::{Mailbox, MultiPart};
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::extension::ClientId;
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        Box::pin(async move {
            let e = |what: &str, x: &dyn std::fmt::Display| DeliveryError(format!("{what}: {x}"));
            let now = chrono::Utc::now().timestamp_millis();
            let (mut subject, mut text) = subject_and_text(n, now);
            let mut html = html_body(&text, &ctx.external_url);
            let x = |t: &str| {
                self.templates
                    .expand(t, n, now, &ctx.external_url)
                    .map_err(|e| DeliveryError(e.to_string()))
            };
            let headers = self.settings.get("headers");
            if let Some(t) = headers
                .and_then(|h| h.get("Subject").or_else(|| h.get("subject")))
                .and_then(Value::as_str)
            {
                subject = x(t)?;
            }
            if let Some(t) = self.settings.get("text").and_then(Value::as_str) {
                text = x(t)?;
            }
            if let Some(t) = self.settings.get("html").and_then(Value::as_str) {
                html = x(t)?;
            }
            let mut b = Message::builder()
                .from(self.from.parse::<Mailbox>().map_err(|x| e("from", &x))?)
                .subject(subject);
            for t in &self.to {
                b = b.to(t.parse::<Mailbox>().map_err(|x| e("to", &x))?);
            }
            let msg = b
                .multipart(MultiPart::alternative_plain_html(text, html))
                .map_err(|x| e("building the message", &x))?;
            let (host, port) = match self.smarthost.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse::<u16>().map_err(|x| e("smarthost port", &x))?,
                ),
                None => (self.smarthost.clone(), 25),
            };
            let mut t = if self.implicit_tls || port == 465 {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                    .map_err(|x| e("smarthost", &x))?
            } else if self.require_tls {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                    .map_err(|x| e("smarthost", &x))?
            } else {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            }
            .port(port)
            .timeout(Some(StdDuration::from_secs(10)));
            if !self.hello.is_empty() {
                t = t.hello_name(ClientId::Domain(self.hello.clone()));
            }
            if let Some((u, p)) = &self.auth {
                t = t.credentials(Credentials::new(u.clone(), p.clone()));
            }
            t.build()
                .send(msg)
                .await
                .map(|_| ())
                .map_err(|x| e("sending mail", &x))
        })
    }
}

/// The Events v2 body for a notification.
pub fn pagerduty_payload(
    n: &Notification,
    now: i64,
    routing_key: &str,
    severity: &str,
    external_url: &str,
) -> Value {
    let (summary, text) = subject_and_text(n, now);
    let resolved = n.status == "resolved";
    json!({
        "routing_key": routing_key,
        "event_action": if resolved { "resolve" } else { "trigger" },
        "dedup_key": format!("{:x}", md5::Md5::digest(n.group_key.as_bytes())),
        "payload": {
            "summary": summary.chars().take(1024).collect::<String>(),
            "source": external_url,
            "severity": if severity.is_empty() { "error" } else { severity },
            "custom_details": {
                "firing": text,
                "num_firing": n.alerts.iter().filter(|a| !a.resolved(now)).count(),
                "num_resolved": n.alerts.iter().filter(|a| a.resolved(now)).count(),
            },
        },
        "client": "appliance",
        "client_url": external_url,
    })
}

/// What an HTTP JSON integration posts.
enum Payload {
    /// Alertmanager's webhook JSON v4 (`webhook_configs`).
    Webhook,
    /// A Slack incoming-webhook message; configured fields are Alertmanager templates that
    /// replace the default message's.
    Slack {
        channel: String,
        settings: Value,
        templates: super::template::Templates,
    },
    /// A PagerDuty Events v2 event: `trigger` while firing, `resolve` once resolved,
    /// deduplicated by the group key.
    PagerDuty {
        routing_key: String,
        severity: String,
    },
}

/// An integration that POSTs JSON: webhook, Slack incoming webhook, PagerDuty Events v2.
pub struct HttpJson {
    kind: &'static str,
    url: String,
    send_resolved: bool,
    payload: Payload,
}

impl HttpJson {
    fn body(
        &self,
        n: &Notification,
        now: i64,
        ctx: &DeliveryContext,
    ) -> Result<Value, DeliveryError> {
        Ok(match &self.payload {
            Payload::Webhook => webhook_payload(n, now, &ctx.external_url),
            Payload::PagerDuty {
                routing_key,
                severity,
            } => pagerduty_payload(n, now, routing_key, severity, &ctx.external_url),
            Payload::Slack {
                channel,
                settings,
                templates,
            } => {
                let mut body = slack_payload(n, now, channel, &ctx.external_url);
                let x = |t: &str| {
                    templates
                        .expand(t, n, now, &ctx.external_url)
                        .map_err(|e| DeliveryError(e.to_string()))
                };
                for key in [
                    "title",
                    "title_link",
                    "text",
                    "pretext",
                    "color",
                    "fallback",
                    "footer",
                    "image_url",
                    "thumb_url",
                ] {
                    if let Some(t) = settings.get(key).and_then(Value::as_str) {
                        body["attachments"][0][key] = json!(x(t)?);
                    }
                }
                for key in ["channel", "username", "icon_emoji", "icon_url"] {
                    if let Some(t) = settings.get(key).and_then(Value::as_str) {
                        body[key] = json!(x(t)?);
                    }
                }
                if let Some(fields) = settings.get("fields").and_then(Value::as_array) {
                    let mut out = Vec::new();
                    for f in fields {
                        out.push(json!({
                            "title": x(f.get("title").and_then(Value::as_str).unwrap_or(""))?,
                            "value": x(f.get("value").and_then(Value::as_str).unwrap_or(""))?,
                            "short": f.get("short").and_then(Value::as_bool).unwrap_or(false),
                        }));
                    }
                    body["attachments"][0]["fields"] = Value::Array(out);
                }
                body
            }
        })
    }
}

impl Receiver for HttpJson {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn target(&self) -> String {
        match &self.payload {
            Payload::Slack { channel, .. } if !channel.is_empty() => {
                format!("{} {channel}", host_of(&self.url))
            }
            _ => host_of(&self.url),
        }
    }
    fn send_resolved(&self) -> bool {
        self.send_resolved
    }
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        ctx: &'a DeliveryContext,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let now = chrono::Utc::now().timestamp_millis();
            let body = self.body(n, now, ctx)?;
            post_json(&ctx.http, &self.url, &body).await
        })
    }
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Result<(), DeliveryError> {
    let resp = http
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .timeout(StdDuration::from_secs(10))
        .send()
        .await
        .map_err(|e| DeliveryError(format!("request failed: {}", e.without_url())))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError(format!(
            "unexpected status code {}",
            status.as_u16()
        )))
    }
}

/// A secret given inline or as `<key>_file` (read now), else the global default.
fn secret(c: &Value, key: &str, global: &BTreeMap<String, Value>, gkey: &str) -> Option<String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    c.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            c.get(format!("{key}_file"))
                .and_then(Value::as_str)
                .and_then(read)
        })
        .or_else(|| global.get(gkey).and_then(Value::as_str).map(str::to_string))
        .or_else(|| {
            global
                .get(&format!("{gkey}_file"))
                .and_then(Value::as_str)
                .and_then(read)
        })
        .filter(|s| !s.is_empty())
}

/// Deliverable integrations by receiver name.
pub type ReceiverMap = HashMap<String, Vec<Arc<dyn Receiver>>>;

/// The receivers the notifier can deliver to, by receiver name; the integrations it cannot
/// deliver yet are returned by name so they can be reported.
pub fn build_receivers(cfg: &NotifyConfig) -> (ReceiverMap, Vec<String>) {
    let mut out: HashMap<String, Vec<Arc<dyn Receiver>>> = HashMap::new();
    let mut unsupported = Vec::new();
    for r in &cfg.receivers {
        let list = out.entry(r.name.clone()).or_default();
        for i in &r.integrations {
            let c = &i.settings;
            let resolved = |default: bool| {
                c.get("send_resolved")
                    .and_then(Value::as_bool)
                    .unwrap_or(default)
            };
            match i.kind.as_str() {
                "webhook" => match secret(c, "url", &BTreeMap::new(), "") {
                    Some(url) => list.push(Arc::new(HttpJson {
                        kind: "webhook",
                        url,
                        send_resolved: resolved(true),
                        payload: Payload::Webhook,
                    })),
                    None => unsupported.push(format!("{}: webhook without a readable url", r.name)),
                },
                "slack" => match secret(c, "api_url", &cfg.global, "slack_api_url") {
                    Some(url) => list.push(Arc::new(HttpJson {
                        kind: "slack",
                        url,
                        send_resolved: resolved(false),
                        payload: Payload::Slack {
                            channel: c
                                .get("channel")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            settings: c.clone(),
                            templates: cfg.template_set.clone(),
                        },
                    })),
                    None => unsupported.push(format!(
                        "{}: slack without a webhook URL (bot tokens are not supported yet)",
                        r.name
                    )),
                },
                "email" => {
                    let g = |k: &str| {
                        cfg.global
                            .get(k)
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string()
                    };
                    let pick = |k: &str, gk: &str| {
                        c.get(k)
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_else(|| g(gk))
                    };
                    let user = pick("auth_username", "smtp_auth_username");
                    let password = secret(c, "auth_password", &cfg.global, "smtp_auth_password");
                    let bool_of = |k: &str, gk: &str, default: bool| {
                        c.get(k)
                            .and_then(Value::as_bool)
                            .or_else(|| cfg.global.get(gk).and_then(Value::as_bool))
                            .unwrap_or(default)
                    };
                    list.push(Arc::new(Email {
                        to: c
                            .get("to")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect(),
                        from: pick("from", "smtp_from"),
                        smarthost: pick("smarthost", "smtp_smarthost"),
                        hello: pick("hello", "smtp_hello"),
                        auth: (!user.is_empty()).then(|| (user, password.unwrap_or_default())),
                        require_tls: bool_of("require_tls", "smtp_require_tls", true),
                        implicit_tls: bool_of(
                            "force_implicit_tls",
                            "smtp_force_implicit_tls",
                            false,
                        ),
                        send_resolved: resolved(false),
                        settings: c.clone(),
                        templates: cfg.template_set.clone(),
                    }));
                }
                "pagerduty" => match secret(c, "routing_key", &BTreeMap::new(), "") {
                    Some(routing_key) => list.push(Arc::new(HttpJson {
                        kind: "pagerduty",
                        url: c
                            .get("url")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .or_else(|| {
                                cfg.global
                                    .get("pagerduty_url")
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                            })
                            .unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into()),
                        send_resolved: resolved(true),
                        payload: Payload::PagerDuty {
                            routing_key,
                            severity: c
                                .get("severity")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        },
                    })),
                    None => unsupported.push(format!(
                        "{}: pagerduty with service_key (Events API v1) is not supported yet",
                        r.name
                    )),
                },
                other => unsupported.push(format!("{}: {other}", r.name)),
            }
        }
    }
    (out, unsupported)
}

/// One delivery, as the history shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When it finished (RFC 3339).
    pub time: String,
    /// Receiver name.
    pub receiver: String,
    /// Integration kind.
    pub integration: String,
    /// To whom (addresses, channel, host; never a secret).
    pub target: String,
    /// Group key.
    pub group_key: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Alert names and counts.
    pub alerts: Vec<String>,
    /// Whether it was delivered.
    pub success: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, if any.
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabel {
    integration: String,
}

#[derive(Clone, Default)]
struct Metrics {
    sent: Family<IntegrationLabel, Counter>,
    failed: Family<IntegrationLabel, Counter>,
    requests: Family<IntegrationLabel, Counter>,
    requests_failed: Family<IntegrationLabel, Counter>,
}

struct State {
    dispatcher: Dispatcher,
    config: Option<NotifyConfig>,
    receivers: ReceiverMap,
    /// The configuration as YAML with secrets hidden, for `/api/v2/status`.
    original: String,
}

const HISTORY: usize = 1000;
/// The alert name of `send_test`'s notifications.
pub const TEST_ALERT: &str = "ApplianceTestNotification";
/// Labels (and annotations) one posted alert may have.
pub const MAX_ALERT_LABELS: usize = 256;
const ATTEMPTS: u32 = 5;

/// The running notifier.
pub struct Notifier {
    state: Mutex<State>,
    history: Mutex<VecDeque<HistoryEntry>>,
    metrics: Metrics,
    ctx: DeliveryContext,
    wake: tokio::sync::Notify,
    /// First retry delay; doubles each attempt.
    backoff: StdDuration,
    /// Where the notification log is kept, so a restart neither re-sends nor forgets.
    log_file: Option<std::path::PathBuf>,
    /// Silences.
    silences: Mutex<super::silence::Silences>,
    /// Start time (ms), for the status API.
    started: i64,
}

impl Notifier {
    /// A notifier delivering through `ctx`, keeping its notification log in `state_dir`.
    pub fn new(ctx: DeliveryContext, state_dir: Option<&std::path::Path>) -> Arc<Notifier> {
        let log_file = state_dir.map(|d| d.join("nflog.json"));
        let mut dispatcher = Dispatcher::default();
        if let Some(f) = &log_file {
            match std::fs::read(f) {
                Ok(b) => match serde_json::from_slice(&b) {
                    Ok(log) => dispatcher.log = log,
                    Err(e) => {
                        crate::failure!(warn, "notify", "nflog_read", file = %f.display(), error = %e, "notification log unreadable; starting empty")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "notification log unreadable; starting empty")
                }
            }
        }
        Arc::new(Notifier {
            log_file,
            silences: Mutex::new(super::silence::Silences::open(
                state_dir.map(|d| d.join("silences.json")),
            )),
            started: chrono::Utc::now().timestamp_millis(),
            state: Mutex::new(State {
                dispatcher,
                config: None,
                receivers: HashMap::new(),
                original: String::new(),
            }),
            history: Mutex::new(VecDeque::new()),
            metrics: Metrics::default(),
            ctx,
            wake: tokio::sync::Notify::new(),
            backoff: StdDuration::from_millis(500),
        })
    }

    /// Registers `appliance_notifications_*`.
    pub fn register_metrics(&self, reg: &mut Registry) {
        let m = &self.metrics;
        reg.register(
            "appliance_notifications",
            "The total number of attempted notifications.",
            m.sent.clone(),
        );
        reg.register(
            "appliance_notifications_failed",
            "The total number of failed notifications (after all retries).",
            m.failed.clone(),
        );
        reg.register(
            "appliance_notification_requests",
            "The total number of attempted notification requests.",
            m.requests.clone(),
        );
        reg.register(
            "appliance_notification_requests_failed",
            "The total number of failed notification requests.",
            m.requests_failed.clone(),
        );
    }

    /// Installs a configuration (None: notifications off, alerts only logged).
    pub fn apply(&self, cfg: Option<NotifyConfig>) {
        let mut st = self.state.lock();
        st.original = cfg
            .as_ref()
            .map(|c| serde_saphyr::to_string(&super::config::redacted(&c.raw)).unwrap_or_default())
            .unwrap_or_default();
        let (receivers, unsupported) = cfg.as_ref().map(build_receivers).unwrap_or_default();
        for u in unsupported {
            tracing::warn!(integration = %u, "this integration is not delivered yet");
        }
        st.receivers = receivers;
        st.config = cfg;
        drop(st);
        self.wake.notify_one();
    }

    /// Whether a configuration is installed.
    pub fn enabled(&self) -> bool {
        self.state.lock().config.is_some()
    }

    /// Takes in alerts (firing or resolved) at `now`.
    pub fn push(&self, alerts: Vec<Alert>, now: i64) {
        let mut st = self.state.lock();
        let Some(cfg) = st.config.clone() else {
            return;
        };
        for a in alerts {
            st.dispatcher.insert(&cfg.route, a, now);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The delivery history, newest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.history.lock().iter().rev().cloned().collect()
    }

    /// Runs the dispatch loop until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let due = self.state.lock().dispatcher.next_due();
            let wait = match due {
                Some(t) if t <= now => StdDuration::ZERO,
                Some(t) => StdDuration::from_millis((t - now) as u64),
                None => StdDuration::from_secs(3600),
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake.notified() => continue,
                }
            }
            let now = chrono::Utc::now().timestamp_millis();
            let jobs = self.flush(now);
            for (n, r) in jobs {
                let me = self.clone();
                let span = tracing::info_span!("delivery", receiver = %n.receiver, integration = r.kind(), group = %n.group_key);
                tokio::spawn(tracing::Instrument::instrument(
                    async move { me.deliver(n, r).await },
                    span,
                ));
            }
        }
    }

    fn flush(&self, now: i64) -> Vec<(Notification, Arc<dyn Receiver>)> {
        let mut st = self.state.lock();
        let Some(cfg) = st.config.clone() else {
            return Vec::new();
        };
        let receivers = st.receivers.clone();
        let integrations = |name: &str| {
            receivers
                .get(name)
                .map(|v| v.iter().map(|r| r.send_resolved()).collect())
                .unwrap_or_default()
        };
        let snapshot = st.dispatcher.alerts();
        let silences = self.silences.lock();
        let muted = |a: &Alert| {
            !silences.muting(&a.labels, now).is_empty()
                || super::dispatch::inhibited(&cfg.inhibit_rules, snapshot.iter(), a, now)
        };
        let before = st.dispatcher.log.clone();
        let in_interval = |name: &str| {
            cfg.time_intervals
                .get(name)
                .is_some_and(|t| super::timeinterval::any_contains(t, now))
        };
        let notes = st
            .dispatcher
            .flush(now, &integrations, &muted, &in_interval);
        if st.dispatcher.log != before {
            self.save_log(&st.dispatcher.log);
        }
        drop(silences);
        let mut out = Vec::new();
        for n in notes {
            match receivers
                .get(&n.receiver)
                .and_then(|v| v.get(n.integration))
            {
                Some(r) => out.push((n, r.clone())),
                // The receiver changed under a reload between flush and here: nothing to
                // deliver to; the group settles and the next flush uses the new receivers.
                None => st.dispatcher.delivered(&n, false),
            }
        }
        out
    }

    fn save_log(&self, log: &HashMap<String, super::dispatch::LogEntry>) {
        let Some(f) = &self.log_file else { return };
        let write = || -> std::io::Result<()> {
            if let Some(d) = f.parent() {
                std::fs::create_dir_all(d)?;
            }
            let tmp = f.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(log).unwrap_or_default())?;
            std::fs::rename(&tmp, f)
        };
        if let Err(e) = write() {
            crate::failure!(warn, "notify", "nflog_write", file = %f.display(), error = %e, "saving the notification log failed");
        }
    }

    /// Sends one test notification to every integration of every receiver, once each (no
    /// routing, grouping or retries), and returns how each went; each is in the history too.
    /// For `appliance doctor --send-test`.
    pub async fn send_test(&self) -> Vec<HistoryEntry> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut targets: Vec<(String, usize, Arc<dyn Receiver>)> = {
            let st = self.state.lock();
            st.receivers
                .iter()
                .flat_map(|(name, v)| {
                    v.iter()
                        .enumerate()
                        .map(|(i, r)| (name.clone(), i, r.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        targets.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut out = Vec::new();
        for (name, i, r) in targets {
            let labels = crate::model::Labels::from_pairs(vec![
                ("alertname".to_string(), TEST_ALERT.to_string()),
                ("receiver".to_string(), name.clone()),
                ("severity".to_string(), "info".to_string()),
            ]);
            let annotations = BTreeMap::from([
                (
                    "summary".to_string(),
                    "Test notification from appliance doctor --send-test".to_string(),
                ),
                (
                    "description".to_string(),
                    "If you can read this, the appliance reaches this receiver.".to_string(),
                ),
            ]);
            let n = Notification {
                receiver: name.clone(),
                integration: i,
                log_entry: Default::default(),
                group_key: format!("{{}}:{{alertname=\"{TEST_ALERT}\"}}"),
                group_labels: BTreeMap::from([("alertname".to_string(), TEST_ALERT.to_string())]),
                alerts: vec![Alert {
                    labels,
                    annotations,
                    starts_at: now,
                    ends_at: now + 5 * 60 * 1000,
                    generator_url: self.ctx.external_url.clone(),
                }],
                status: "firing",
            };
            let label = IntegrationLabel {
                integration: r.kind().to_string(),
            };
            self.metrics.requests.get_or_create(&label).inc();
            let result = r.deliver(&n, &self.ctx).await;
            if result.is_err() {
                self.metrics.requests_failed.get_or_create(&label).inc();
            }
            let entry = HistoryEntry {
                time: crate::model::time::format_rfc3339(chrono::Utc::now().timestamp_millis()),
                receiver: name,
                integration: r.kind().to_string(),
                target: r.target(),
                group_key: n.group_key.clone(),
                status: "test".into(),
                alerts: vec![format!("{TEST_ALERT}×1")],
                success: result.is_ok(),
                attempts: 1,
                error: result.err().map(|e| e.0).unwrap_or_default(),
            };
            tracing::info!(receiver = %entry.receiver, integration = %entry.integration, success = entry.success, error = %entry.error, "test notification sent");
            let mut h = self.history.lock();
            if h.len() >= HISTORY {
                h.pop_front();
            }
            h.push_back(entry.clone());
            out.push(entry);
        }
        out
    }

    async fn deliver(&self, n: Notification, r: Arc<dyn Receiver>) {
        let label = IntegrationLabel {
            integration: r.kind().to_string(),
        };
        self.metrics.sent.get_or_create(&label).inc();
        let mut delay = self.backoff;
        let mut last_err = String::new();
        let mut attempts = 0;
        let mut ok = false;
        while attempts < ATTEMPTS {
            attempts += 1;
            self.metrics.requests.get_or_create(&label).inc();
            match r.deliver(&n, &self.ctx).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => {
                    self.metrics.requests_failed.get_or_create(&label).inc();
                    tracing::warn!(receiver = %n.receiver, integration = r.kind(), attempt = attempts, error = %e, "notification failed; retrying");
                    last_err = e.0;
                    if attempts < ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        if !ok {
            self.metrics.failed.get_or_create(&label).inc();
            crate::failure!(error, "notify", "delivery", receiver = %n.receiver, integration = r.kind(), error = %last_err, "notification failed after all retries; sent again at the group's next interval");
        }
        // Only a delivered notification enters the log; a failed one is sent again at the
        // group's next flush.
        {
            let mut st = self.state.lock();
            st.dispatcher.delivered(&n, ok);
            if ok {
                self.save_log(&st.dispatcher.log);
            }
        }
        self.wake.notify_one();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for a in &n.alerts {
            *names
                .entry(a.labels.get("alertname").unwrap_or("").to_string())
                .or_default() += 1;
        }
        let entry = HistoryEntry {
            time: crate::model::time::format_rfc3339(chrono::Utc::now().timestamp_millis()),
            receiver: n.receiver.clone(),
            integration: r.kind().to_string(),
            target: r.target(),
            group_key: n.group_key.clone(),
            status: n.status.to_string(),
            alerts: names.into_iter().map(|(k, c)| format!("{k}×{c}")).collect(),
            success: ok,
            attempts,
            error: if ok { String::new() } else { last_err },
        };
        let mut h = self.history.lock();
        if h.len() >= HISTORY {
            h.pop_front();
        }
        h.push_back(entry);
    }
}

/// Alertmanager's API v2, as far as the notifier serves it (`amtool` and Grafana use it).
impl Notifier {
    fn alert_json(&self, a: &Alert, cfg: &NotifyConfig, all: &[Alert], now: i64) -> Value {
        let silenced = self.silences.lock().muting(&a.labels, now);
        let inhibited = super::dispatch::inhibited(&cfg.inhibit_rules, all.iter(), a, now);
        let receivers: Vec<Value> = cfg
            .route
            .matching(&a.labels)
            .iter()
            .map(|r| json!({"name": r.receiver}))
            .collect();
        let state = if silenced.is_empty() && !inhibited {
            "active"
        } else {
            "suppressed"
        };
        json!({
            "labels": labels_obj(&a.labels),
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
            "endsAt": rfc3339(a.ends_at),
            "updatedAt": rfc3339(now),
            "generatorURL": a.generator_url,
            "fingerprint": format!("{:016x}", a.fingerprint()),
            "receivers": receivers,
            "status": {"state": state, "silencedBy": silenced, "inhibitedBy": [], "mutedBy": []},
        })
    }

    /// `GET /api/v2/status`.
    pub fn api_status(&self) -> Value {
        json!({
            "cluster": {"status": "disabled", "peers": [], "name": ""},
            "versionInfo": {
                "version": env!("CARGO_PKG_VERSION"), "revision": "", "branch": "",
                "buildUser": "", "buildDate": "", "goVersion": "",
            },
            "config": {"original": self.state.lock().original},
            "uptime": rfc3339(self.started),
        })
    }

    /// `GET /api/v2/receivers`.
    pub fn api_receivers(&self) -> Value {
        let st = self.state.lock();
        let names: Vec<Value> = st
            .config
            .iter()
            .flat_map(|c| c.receivers.iter().map(|r| json!({"name": r.name})))
            .collect();
        Value::Array(names)
    }

    /// `GET /api/v2/alerts` with Alertmanager's query parameters (`filter` matchers, `active`,
    /// `silenced`, `inhibited`, `receiver` regex).
    pub fn api_alerts(&self, params: &[(String, String)]) -> Result<Value, String> {
        let now = chrono::Utc::now().timestamp_millis();
        let st = self.state.lock();
        let Some(cfg) = st.config.clone() else {
            return Ok(json!([]));
        };
        let all = st.dispatcher.alerts();
        drop(st);
        let flag = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v != "false")
                .unwrap_or(true)
        };
        let mut filters = Vec::new();
        for (k, v) in params {
            if k == "filter" {
                filters.push(super::route::parse_matcher(v).map_err(|e| e.0)?);
            }
        }
        let receiver = params
            .iter()
            .find(|(k, _)| k == "receiver")
            .map(|(_, v)| regex::Regex::new(&format!("^(?:{v})$")).map_err(|e| e.to_string()))
            .transpose()?;
        let mut out = Vec::new();
        for a in all.iter().filter(|a| !a.resolved(now)) {
            if !filters
                .iter()
                .all(|m| m.matches(a.labels.get(&m.name).unwrap_or("")))
            {
                continue;
            }
            let j = self.alert_json(a, &cfg, &all, now);
            let silenced = !j["status"]["silencedBy"]
                .as_array()
                .is_none_or(|x| x.is_empty());
            let suppressed = j["status"]["state"] == "suppressed";
            let inhibited = suppressed && !silenced;
            if (!silenced || flag("silenced"))
                && (!inhibited || flag("inhibited"))
                && (suppressed || flag("active"))
                && receiver.as_ref().is_none_or(|re| {
                    j["receivers"].as_array().is_some_and(|rs| {
                        rs.iter()
                            .any(|r| re.is_match(r["name"].as_str().unwrap_or("")))
                    })
                })
            {
                out.push(j);
            }
        }
        Ok(Value::Array(out))
    }

    /// `GET /api/v2/alerts/groups`.
    pub fn api_groups(&self) -> Value {
        let now = chrono::Utc::now().timestamp_millis();
        let st = self.state.lock();
        let Some(cfg) = st.config.clone() else {
            return json!([]);
        };
        let all = st.dispatcher.alerts();
        drop(st);
        let mut groups: BTreeMap<(String, String), (Value, Vec<Value>)> = BTreeMap::new();
        for a in all.iter().filter(|a| !a.resolved(now)) {
            for r in cfg.route.matching(&a.labels) {
                let gl = super::route::group_labels(r, &a.labels);
                let key = (r.receiver.clone(), format!("{}{gl:?}", r.key));
                let e = groups.entry(key).or_insert_with(|| {
                    (
                        json!({"labels": gl, "receiver": {"name": r.receiver}, "routeLabels": {}}),
                        Vec::new(),
                    )
                });
                e.1.push(self.alert_json(a, &cfg, &all, now));
            }
        }
        Value::Array(
            groups
                .into_values()
                .map(|(mut g, alerts)| {
                    g["alerts"] = Value::Array(alerts);
                    g
                })
                .collect(),
        )
    }

    /// `POST /api/v2/alerts`: alerts from other tools (startsAt defaults to now, endsAt to
    /// `resolve_timeout` from now, as Alertmanager does).
    pub fn api_post_alerts(&self, body: &Value) -> Result<(), String> {
        let now = chrono::Utc::now().timestamp_millis();
        let Some(list) = body.as_array() else {
            return Err("body must be a JSON array of alerts".into());
        };
        let resolve_ms = self
            .state
            .lock()
            .config
            .as_ref()
            .and_then(|c| {
                c.global
                    .get("resolve_timeout")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .and_then(|s| crate::model::time::Duration::parse(&s).ok())
            .map(|d| d.as_millis())
            .unwrap_or(5 * 60 * 1000);
        let time = |v: Option<&Value>| -> Result<Option<i64>, String> {
            match v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                    .map(|d| Some(d.timestamp_millis()))
                    .map_err(|e| format!("bad time {s:?}: {e}")),
            }
        };
        let mut out = Vec::new();
        for a in list {
            let Some(Value::Object(l)) = a.get("labels") else {
                return Err("labels are required".into());
            };
            // Every label is hashed, routed and matched against silences and inhibitions:
            // a bound keeps one request from costing seconds of CPU.
            let annotation_count = match a.get("annotations") {
                Some(Value::Object(m)) => m.len(),
                _ => 0,
            };
            if l.len() > MAX_ALERT_LABELS || annotation_count > MAX_ALERT_LABELS {
                return Err(format!(
                    "an alert may have at most {MAX_ALERT_LABELS} labels and {MAX_ALERT_LABELS} annotations"
                ));
            }
            let labels = crate::model::Labels::from_pairs(
                l.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())),
            );
            if labels.is_empty() {
                return Err("at least one label pair required".into());
            }
            let annotations: BTreeMap<String, String> = match a.get("annotations") {
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect(),
                _ => BTreeMap::new(),
            };
            let starts_at = time(a.get("startsAt"))?.unwrap_or(now);
            let ends_at = time(a.get("endsAt"))?.unwrap_or(now + resolve_ms);
            if ends_at < starts_at {
                return Err("start time must be before end time".into());
            }
            out.push(Alert {
                labels,
                annotations,
                starts_at,
                ends_at,
                generator_url: a
                    .get("generatorURL")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
        self.push(out, now);
        Ok(())
    }

    fn silence_json(s: &super::silence::Silence, now: i64) -> Value {
        json!({
            "id": s.id,
            "status": {"state": s.state(now)},
            "updatedAt": rfc3339(s.updated_at),
            "matchers": s.matchers,
            "startsAt": rfc3339(s.starts_at),
            "endsAt": rfc3339(s.ends_at),
            "createdBy": s.created_by,
            "comment": s.comment,
            "annotations": {},
        })
    }

    /// `GET /api/v2/silences` (`filter` matchers select silences whose matchers include them).
    pub fn api_silences(&self, params: &[(String, String)]) -> Result<Value, String> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut wanted = Vec::new();
        for (k, v) in params {
            if k == "filter" {
                wanted.push(super::route::parse_matcher(v).map_err(|e| e.0)?);
            }
        }
        let list: Vec<Value> = self
            .silences
            .lock()
            .all()
            .iter()
            .filter(|s| {
                wanted.iter().all(|w| {
                    s.matchers
                        .iter()
                        .any(|m| m.name == w.name && w.matches(&m.value))
                })
            })
            .map(|s| Self::silence_json(s, now))
            .collect();
        Ok(Value::Array(list))
    }

    /// `GET /api/v2/silence/{id}`.
    pub fn api_silence(&self, id: &str) -> Option<Value> {
        let now = chrono::Utc::now().timestamp_millis();
        self.silences
            .lock()
            .get(id)
            .map(|s| Self::silence_json(s, now))
    }

    /// `POST /api/v2/silences`: creates (or, with an `id`, replaces) a silence.
    pub fn api_post_silence(&self, body: &Value) -> Result<String, super::silence::SilenceError> {
        use super::silence::{Silence, SilenceError};
        let now = chrono::Utc::now().timestamp_millis();
        let bad = |m: String| SilenceError::Invalid(m);
        let time = |k: &str| -> Result<i64, SilenceError> {
            let s = body
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{k} in body is required")))?;
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| d.timestamp_millis())
                .map_err(|e| bad(format!("{k}: {e}")))
        };
        let matchers = serde_json::from_value(body.get("matchers").cloned().unwrap_or(Value::Null))
            .map_err(|e| bad(format!("matchers: {e}")))?;
        let s = Silence {
            id: body
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            matchers,
            // A silence cannot start in the past (Alertmanager moves it to now).
            starts_at: time("startsAt")?.max(now),
            ends_at: time("endsAt")?,
            updated_at: now,
            created_by: body
                .get("createdBy")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            comment: body
                .get("comment")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        };
        let id = self.silences.lock().upsert(s, now)?;
        self.wake.notify_one();
        Ok(id)
    }

    /// `DELETE /api/v2/silence/{id}`.
    pub fn api_expire_silence(&self, id: &str) -> Result<(), super::silence::SilenceError> {
        let now = chrono::Utc::now().timestamp_millis();
        self.silences.lock().expire(id, now)?;
        self.wake.notify_one();
        Ok(())
    }
}
