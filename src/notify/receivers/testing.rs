//! Test support for the integrations: a local recorder that answers as the services do,
//! fixed firing and resolved notifications, and the golden request files under
//! `src/notify/receivers/testdata/` (regenerated with `UPDATE_GOLDEN=1`, reviewed in the diff).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{DeliveryContext, IntegrationConfig};
use crate::notify::dispatch::{Alert, Notification};

/// One request the recorder received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// A local HTTP server that records every request and answers `200 {"ok":true}` unless a
/// path prefix given at start says otherwise.
pub struct Recorder {
    /// `http://127.0.0.1:port`.
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

type Answers = Arc<Vec<(String, String, u16, String)>>;

impl Recorder {
    /// Starts it; `answers` are (method, path prefix, status, body), first match wins.
    pub async fn start(answers: &[(&str, &str, u16, &str)]) -> Recorder {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let answers: Answers = Arc::new(
            answers
                .iter()
                .map(|(m, p, s, b)| (m.to_string(), p.to_string(), *s, b.to_string()))
                .collect(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let reqs = requests.clone();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: axum::http::HeaderMap,
                  body: axum::body::Bytes| {
                let reqs = reqs.clone();
                let answers = answers.clone();
                async move {
                    let path = uri
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    reqs.lock().push(Recorded {
                        method: method.to_string(),
                        path: path.clone(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                            })
                            .collect(),
                        body: body.to_vec(),
                    });
                    let (status, body) = answers
                        .iter()
                        .find(|(m, p, _, _)| *m == method.as_str() && path.starts_with(p.as_str()))
                        .map(|(_, _, s, b)| (*s, b.clone()))
                        .unwrap_or((200, r#"{"ok":true}"#.to_string()));
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [("content-type", "application/json")],
                        body,
                    )
                }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder { url, requests }
    }

    /// The requests so far, emptied.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock())
    }
}

/// Headers that vary per run or per client library, left out of golden files.
const UNSTABLE: &[&str] = &[
    "host",
    "content-length",
    "accept",
    "accept-encoding",
    "user-agent",
    "x-amz-date",
];

/// Headers whose values are credentials: only the scheme (first word) is kept.
const SECRET_HEADERS: &[&str] = &["authorization", "x-auth-token", "x-user-id"];

/// The requests as a golden file shows them: method, path, headers less secrets, body
/// (JSON pretty-printed, forms one field per line).
pub fn render(reqs: &[Recorded]) -> String {
    let mut out = String::new();
    for r in reqs {
        out.push_str(&format!("{} {}\n", r.method, r.path));
        let mut headers: Vec<&(String, String)> = r
            .headers
            .iter()
            .filter(|(k, _)| !UNSTABLE.contains(&k.as_str()))
            .collect();
        headers.sort();
        for (k, v) in headers {
            let v = if SECRET_HEADERS.contains(&k.as_str()) {
                match v.split_once(' ') {
                    Some((scheme, _)) => format!("{scheme} <secret>"),
                    None => "<secret>".into(),
                }
            } else if k == "x-amz-content-sha256" || k.starts_with("x-amz-security") {
                "<varies>".into()
            } else {
                v.clone()
            };
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
        let ct = r
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body) {
            out.push_str(&serde_json::to_string_pretty(&v).unwrap());
            out.push('\n');
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            for (k, v) in form_urlencoded::parse(&r.body) {
                out.push_str(&format!("{k}={v:?}\n"));
            }
        } else {
            out.push_str(&String::from_utf8_lossy(&r.body));
            out.push('\n');
        }
        out.push_str("----\n");
    }
    out
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

fn alert(instance: &str, ends_at: &str) -> Alert {
    Alert {
        labels: crate::model::Labels::from_pairs(vec![
            ("alertname".to_string(), "HighLatency".to_string()),
            ("instance".to_string(), instance.to_string()),
            ("job".to_string(), "api".to_string()),
            ("severity".to_string(), "critical".to_string()),
        ]),
        annotations: BTreeMap::from([
            ("summary".to_string(), "p95 latency above 1s".to_string()),
            (
                "description".to_string(),
                format!("{instance} answers slowly"),
            ),
        ]),
        starts_at: ms("2026-01-01T00:00:00Z"),
        ends_at: ms(ends_at),
        generator_url: "http://appliance.example:8080/graph?g0.expr=up".into(),
    }
}

/// A group of two firing alerts (`status` firing), or the same two resolved.
pub fn notification(resolved: bool) -> Notification {
    let ends = if resolved {
        "2026-01-01T00:10:00Z"
    } else {
        "2999-01-01T00:00:00Z"
    };
    Notification {
        receiver: "team".into(),
        integration: 0,
        log_entry: Default::default(),
        group_key: "{}:{alertname=\"HighLatency\"}".into(),
        group_labels: BTreeMap::from([("alertname".to_string(), "HighLatency".to_string())]),
        alerts: vec![alert("a:9000", ends), alert("b:9000", ends)],
        status: if resolved { "resolved" } else { "firing" },
    }
}

/// The integration a config with one receiver `team` holding `integration` (YAML, with
/// `{url}` standing for the recorder) reads as, checked and typed.
pub fn integration(
    yaml: &str,
    url: &str,
) -> (crate::notify::config::NotifyConfig, IntegrationConfig) {
    let text = format!(
        "route: {{receiver: team}}\nreceivers:\n  - name: team\n{}",
        yaml.replace("{url}", url)
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    let cfg = crate::notify::config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let i = cfg.receivers[0].integrations[0].clone();
    (cfg, i)
}

/// Delivers a firing then a resolved group through the integration `yaml` describes, to a
/// recorder answering `answers`, and checks the requests against
/// `testdata/<name>.golden`. Returns the requests.
pub async fn golden(name: &str, yaml: &str, answers: &[(&str, &str, u16, &str)]) -> Vec<Recorded> {
    let rec = Recorder::start(answers).await;
    let (cfg, i) = integration(yaml, &rec.url);
    let r = i
        .build(&super::Build {
            global: &cfg.global,
            templates: &cfg.template_set,
        })
        .unwrap();
    golden_receiver(name, &rec, r).await
}

/// [`golden`] for a receiver already built against `rec`.
pub async fn golden_receiver(
    name: &str,
    rec: &Recorder,
    r: Arc<dyn super::Receiver>,
) -> Vec<Recorded> {
    let ctx = DeliveryContext {
        external_url: "http://appliance.example:8080".into(),
    };
    let mut all = Vec::new();
    for resolved in [false, true] {
        let n = notification(resolved);
        r.deliver(&n, &ctx)
            .await
            .unwrap_or_else(|e| panic!("{name} resolved={resolved}: {e}"));
        all.extend(rec.take());
    }
    crate::testsupport::assert_golden(
        &format!("src/notify/receivers/testdata/{name}.golden"),
        &render(&all),
    );
    all
}

/// A minimal SMTP server (no TLS, no auth) that records each message: envelope and data,
/// with the parts that vary per run (date, message id, MIME boundary) replaced.
pub struct SmtpRecorder {
    /// `127.0.0.1:port`.
    pub addr: String,
    mails: Arc<Mutex<Vec<String>>>,
}

impl SmtpRecorder {
    /// Starts it.
    pub async fn start() -> SmtpRecorder {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mails: Arc<Mutex<Vec<String>>> = Arc::default();
        let out = mails.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let out = out.clone();
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    let _ = w.write_all(b"220 localhost ESMTP test\r\n").await;
                    let mut mail = String::new();
                    let mut line = String::new();
                    let mut in_data = false;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            break;
                        }
                        if in_data {
                            if line == ".\r\n" {
                                in_data = false;
                                out.lock().push(std::mem::take(&mut mail));
                                let _ = w.write_all(b"250 OK\r\n").await;
                            } else {
                                mail.push_str(&line.replace("\r\n", "\n"));
                            }
                            continue;
                        }
                        let cmd = line.trim_end().to_string();
                        let upper = cmd.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250 localhost\r\n"
                        } else if upper.starts_with("DATA") {
                            in_data = true;
                            b"354 go ahead\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            break;
                        } else {
                            if upper.starts_with("MAIL") || upper.starts_with("RCPT") {
                                mail.push_str(&format!("{cmd}\n"));
                            }
                            b"250 OK\r\n"
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        SmtpRecorder { addr, mails }
    }

    /// The messages so far, emptied, with varying parts replaced.
    pub fn take(&self) -> String {
        let mails = std::mem::take(&mut *self.mails.lock());
        let mut out = String::new();
        for m in mails {
            let boundary = m
                .split("boundary=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string();
            let mut m = if boundary.is_empty() {
                m
            } else {
                m.replace(&boundary, "BOUNDARY")
            };
            m = m
                .lines()
                .map(|l| {
                    if l.starts_with("Date: ") {
                        "Date: <varies>".to_string()
                    } else if l.starts_with("Message-ID: ") {
                        "Message-ID: <varies>".to_string()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            out.push_str(&m);
            out.push_str("\n----\n");
        }
        out
    }
}
