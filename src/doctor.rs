//! `appliance doctor`: the plan's verification checklist as one command, run against a
//! running appliance over its HTTP API only (readiness, storage, every target and built-in
//! collector, rules, receivers, remote write, Grafana), one line per item.
//!
//! Owns the checks and their wording; it reads nothing of the running process but its API,
//! so it tells what a user's browser or Prometheus would see.

use serde_json::Value;

/// Why the checklist could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Fine.
    Pass,
    /// Worth a look, but not a failure (e.g. no receiver configured).
    Warn,
    /// Failed.
    Fail,
}

/// One line of the checklist.
#[derive(Clone, Debug)]
pub struct Check {
    /// Pass, warn or fail.
    pub outcome: Outcome,
    /// What was checked (`target api-gateway 10.0.0.5:8000`).
    pub what: String,
    /// Why it failed, or a short fact.
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.outcome {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
        };
        if self.detail.is_empty() {
            write!(f, "{tag}  {}", self.what)
        } else {
            write!(f, "{tag}  {}: {}", self.what, self.detail)
        }
    }
}

/// What to check and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The appliance's base URL (with its route prefix).
    pub url: String,
    /// The admin password, for `protect_reads` and `send_test`.
    pub password: Option<String>,
    /// Also send a test notification to every receiver.
    pub send_test: bool,
}

/// Remote write this far behind fails the check.
const MAX_LAG_SECONDS: f64 = 120.0;

struct Api {
    http: reqwest::Client,
    base: String,
    password: Option<String>,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str) -> Result<(u16, String), String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base.trim_end_matches('/')));
        if let Some(p) = &self.password {
            req = req.basic_auth("admin", Some(p));
        }
        let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
        let code = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        Ok((code, body))
    }

    /// The `data` of a JSON API answer, or why there is none.
    async fn data(&self, path: &str) -> Result<Value, String> {
        let (code, body) = self.call(reqwest::Method::GET, path).await?;
        if code == 401 {
            return Err(
                "401: reads need a login (set APPLIANCE_ADMIN_PASSWORD or --password-file)".into(),
            );
        }
        let v: Value =
            serde_json::from_str(&body).map_err(|_| format!("HTTP {code}: not a JSON answer"))?;
        if code != 200 {
            return Err(format!(
                "HTTP {code}: {}",
                v["error"].as_str().unwrap_or("error")
            ));
        }
        Ok(v.get("data").cloned().unwrap_or(v))
    }
}

fn check(outcome: Outcome, what: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        outcome,
        what: what.into(),
        detail: detail.into(),
    }
}

fn pass_if(ok: bool, what: impl Into<String>, detail: impl Into<String>) -> Check {
    check(if ok { Outcome::Pass } else { Outcome::Fail }, what, detail)
}

/// Runs the checklist; the lines in order.
pub async fn run(opts: &Options) -> Result<Vec<Check>, DoctorError> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .tls_backend_preconfigured(
            crate::model::httpconf::TlsConfig::default()
                .client_config()
                .map_err(DoctorError::Client)?,
        )
        .build()
        .map_err(|e| DoctorError::Client(e.to_string()))?;
    let api = Api {
        http,
        base: opts.url.clone(),
        password: opts.password.clone(),
    };
    let mut out = Vec::new();

    // Up and ready: nothing else can be asked otherwise.
    match api.call(reqwest::Method::GET, "/-/ready").await {
        Ok((200, _)) => out.push(check(Outcome::Pass, "ready", opts.url.clone())),
        Ok((code, body)) => {
            out.push(check(
                Outcome::Fail,
                "ready",
                format!("{}: HTTP {code} {}", opts.url, body.trim()),
            ));
            return Ok(out);
        }
        Err(e) => {
            out.push(check(Outcome::Fail, "ready", format!("{}: {e}", opts.url)));
            return Ok(out);
        }
    }

    out.push(storage(&api).await);
    out.extend(targets(&api).await);
    out.extend(rules(&api).await);
    out.extend(receivers(&api).await);
    out.extend(remote_write(&api).await);
    out.extend(grafana(&api).await);
    if opts.send_test {
        out.extend(send_test(&api).await);
    }
    Ok(out)
}

async fn storage(api: &Api) -> Check {
    let stats = match api.data("/api/v1/status/tsdb").await {
        Ok(v) => v,
        Err(e) => return check(Outcome::Fail, "storage", e),
    };
    let st = &stats["storageStats"];
    let quarantined = st["quarantined"].as_array().map_or(0, Vec::len);
    // Storage failures are counted in the appliance's own metrics as they are logged.
    let errors: f64 = match api.call(reqwest::Method::GET, "/metrics").await {
        Ok((200, text)) => text
            .lines()
            .filter(|l| {
                l.starts_with("appliance_errors_total{") && l.contains("component=\"storage\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
        _ => 0.0,
    };
    let detail = format!(
        "{} series, {} blocks, {} quarantined, {} storage errors since start",
        stats["headStats"]["numSeries"],
        st["blocks"].as_array().map_or(0, Vec::len),
        quarantined,
        errors.max(0.0) as u64
    );
    pass_if(quarantined == 0 && errors == 0.0, "storage", detail)
}

async fn targets(api: &Api) -> Vec<Check> {
    let t = match api.data("/api/v1/targets?state=active").await {
        Ok(v) => v,
        Err(e) => return vec![check(Outcome::Fail, "targets", e)],
    };
    let list = t["activeTargets"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return vec![check(Outcome::Fail, "targets", "no target is scraped")];
    }
    let mut out: Vec<Check> = list
        .iter()
        .map(|t| {
            let job = t["labels"]["job"].as_str().unwrap_or("");
            let instance = t["labels"]["instance"].as_str().unwrap_or("");
            let builtin = t["scrapeUrl"]
                .as_str()
                .is_some_and(|u| u.starts_with("appliance://"));
            let what = if builtin {
                format!("collector {job}")
            } else {
                format!("target {job} {instance}")
            };
            match t["health"].as_str() {
                Some("up") => check(Outcome::Pass, what, "up"),
                // Not scraped yet (just started or reloaded): not a failure.
                Some("unknown") => check(Outcome::Warn, what, "not scraped yet"),
                _ => check(
                    Outcome::Fail,
                    what,
                    format!("down: {}", t["lastError"].as_str().unwrap_or("")),
                ),
            }
        })
        .collect();
    out.sort_by(|a, b| a.what.cmp(&b.what));
    out
}

async fn rules(api: &Api) -> Vec<Check> {
    let r = match api.data("/api/v1/rules").await {
        Ok(v) => v,
        Err(e) => return vec![check(Outcome::Fail, "rules", e)],
    };
    let groups = r["groups"].as_array().cloned().unwrap_or_default();
    let all: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    if all.is_empty() {
        return vec![check(Outcome::Fail, "rules", "no rules loaded")];
    }
    let failing: Vec<String> = all
        .iter()
        .filter(|r| r["health"] == "err")
        .map(|r| {
            format!(
                "{} ({})",
                r["name"].as_str().unwrap_or(""),
                r["lastError"].as_str().unwrap_or("")
            )
        })
        .collect();
    let never = groups
        .iter()
        .filter(|g| {
            g["lastEvaluation"]
                .as_str()
                .is_none_or(|t| t.starts_with("0001-"))
        })
        .count();
    let alerting = all.iter().filter(|r| r["type"] == "alerting").count();
    let mut out = vec![pass_if(
        failing.is_empty(),
        "rules",
        if failing.is_empty() {
            format!(
                "{} groups, {} rules ({alerting} alerting) loaded and evaluating without errors",
                groups.len(),
                all.len()
            )
        } else {
            format!("{} failing: {}", failing.len(), failing.join("; "))
        },
    )];
    if never > 0 {
        out.push(check(
            Outcome::Warn,
            "rules evaluated",
            format!("{never} groups not evaluated yet"),
        ));
    }
    out
}

async fn receivers(api: &Api) -> Vec<Check> {
    let names: Vec<String> = match api.call(reqwest::Method::GET, "/api/v2/receivers").await {
        Ok((200, body)) => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect(),
        Ok((code, _)) => return vec![check(Outcome::Fail, "receivers", format!("HTTP {code}"))],
        Err(e) => return vec![check(Outcome::Fail, "receivers", e)],
    };
    if names.is_empty() {
        return vec![check(
            Outcome::Warn,
            "receivers",
            "none configured: alerts are only logged (set SLACK_WEBHOOK_URL or add notify:)",
        )];
    }
    let history = api
        .data("/api/v1/notifications")
        .await
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    names
        .iter()
        .map(|name| {
            // The history is oldest first; the last entry of a receiver is its state.
            let last = history
                .iter()
                .rev()
                .find(|h| h["receiver"] == name.as_str());
            let what = format!("receiver {name}");
            match last {
                None => check(Outcome::Pass, what, "nothing sent yet"),
                Some(h) if h["success"] == true => check(
                    Outcome::Pass,
                    what,
                    format!(
                        "last {} delivery ok at {}",
                        h["integration"].as_str().unwrap_or(""),
                        h["time"].as_str().unwrap_or("")
                    ),
                ),
                Some(h) => check(
                    Outcome::Fail,
                    what,
                    format!(
                        "last {} delivery failed at {}: {}",
                        h["integration"].as_str().unwrap_or(""),
                        h["time"].as_str().unwrap_or(""),
                        h["error"].as_str().unwrap_or("")
                    ),
                ),
            }
        })
        .collect()
}

async fn remote_write(api: &Api) -> Vec<Check> {
    let queues = match api.data("/api/v1/status/remote_write").await {
        Ok(v) => v.as_array().cloned().unwrap_or_default(),
        Err(e) => return vec![check(Outcome::Fail, "remote write", e)],
    };
    queues
        .iter()
        .map(|q| {
            let lag = q["lagSeconds"].as_f64().unwrap_or(0.0);
            let what = format!("remote write {}", q["name"].as_str().unwrap_or(""));
            let err = q["lastError"].as_str().unwrap_or("");
            if lag <= MAX_LAG_SECONDS {
                check(
                    Outcome::Pass,
                    what,
                    format!("caught up ({lag:.0} s behind)"),
                )
            } else {
                check(
                    Outcome::Fail,
                    what,
                    format!("{lag:.0} s behind; last error: {err}"),
                )
            }
        })
        .collect()
}

async fn grafana(api: &Api) -> Vec<Check> {
    let g = match api.data("/api/v1/status/grafana").await {
        Ok(v) => v,
        Err(e) => return vec![check(Outcome::Fail, "grafana", e)],
    };
    if g["enabled"] != true {
        return Vec::new();
    }
    let items = g["items"].as_array().cloned().unwrap_or_default();
    let failed: Vec<String> = items
        .iter()
        .filter(|i| i["result"] != "ok")
        .map(|i| {
            format!(
                "{} {} ({})",
                i["kind"].as_str().unwrap_or(""),
                i["uid"].as_str().unwrap_or(""),
                i["error"].as_str().unwrap_or("")
            )
        })
        .collect();
    let synced = !items.is_empty() && failed.is_empty();
    vec![pass_if(
        synced,
        "grafana",
        if items.is_empty() {
            format!(
                "nothing pushed yet: {}",
                g["lastError"].as_str().unwrap_or("waiting for Grafana")
            )
        } else if synced {
            format!("{} items synced", items.len())
        } else {
            format!("{} failed: {}", failed.len(), failed.join("; "))
        },
    )]
}

async fn send_test(api: &Api) -> Vec<Check> {
    if api.password.is_none() {
        return vec![check(
            Outcome::Fail,
            "test notification",
            "needs the admin password (APPLIANCE_ADMIN_PASSWORD or --password-file)",
        )];
    }
    let (code, body) = match api
        .call(reqwest::Method::POST, "/api/v1/notifications/test")
        .await
    {
        Ok(x) => x,
        Err(e) => return vec![check(Outcome::Fail, "test notification", e)],
    };
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if code != 200 {
        return vec![check(
            Outcome::Fail,
            "test notification",
            format!("HTTP {code}: {}", body.trim()),
        )];
    }
    let sent = v["data"].as_array().cloned().unwrap_or_default();
    if sent.is_empty() {
        return vec![check(
            Outcome::Warn,
            "test notification",
            "no receiver to send to",
        )];
    }
    sent.iter()
        .map(|h| {
            let what = format!(
                "test notification {} {} ({})",
                h["receiver"].as_str().unwrap_or(""),
                h["integration"].as_str().unwrap_or(""),
                h["target"].as_str().unwrap_or("")
            );
            if h["success"] == true {
                check(Outcome::Pass, what, "delivered")
            } else {
                check(Outcome::Fail, what, h["error"].as_str().unwrap_or(""))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_a_checklist() {
        assert_eq!(
            check(Outcome::Fail, "target api 10.0.0.5:8000", "down: refused").to_string(),
            "FAIL  target api 10.0.0.5:8000: down: refused"
        );
        assert_eq!(pass_if(true, "ready", "").to_string(), "PASS  ready");
        assert_eq!(
            check(Outcome::Warn, "receivers", "none").to_string(),
            "WARN  receivers: none"
        );
    }
}
